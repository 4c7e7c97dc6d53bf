/*
 * ngx_http_pyrepl_run.c: POST /session/{id}/run, the HTTP sinks of an exec
 * (ngx_http_pyrepl_exec.c): SSE events as they arrive (init, stdout,
 * stderr, result, error, execution_complete), or with "Accept:
 * application/json" one JSON document.
 *
 * Flow control: when the client cannot take more (the output filter says
 * NGX_AGAIN), the exec is paused, so the session process blocks on its own
 * writes and nothing grows without bound here; the client's write event
 * resumes it.  A client that goes away finalizes the request, whose pool
 * cleanup closes the session connection, which the session process takes
 * as an interrupt of the run.
 *
 * A run request that carries Last-Event-ID is an EventSource reconnecting
 * once the stream of a run it already had ended: it runs nothing and gets
 * 204, the answer that makes an EventSource stop.
 *
 * The JSON document, {"stdout", "stderr", "displays", "status", "result",
 * "error", "execution_count", "duration_ms", "changes", ...}, is written as
 * the run goes and never held whole.  stdout is escaped into one buffer
 * (at most PYREPL_JSON_OUT bytes) that goes to the client whenever it
 * fills, under the flow control above: a text that does not fit waits,
 * unescaped, for the client.  stderr, which comes after stdout in the
 * document, goes to the spool (ngx_http_pyrepl_spool.c): bounded memory,
 * the rest in a temporary file in client_body_temp_path; display data
 * and then the closing fields to a second one.  So what
 * a JSON run costs this worker in escaped output is bounded, whatever
 * pyrepl_max_output.  The headers go out with the first
 * full stdout buffer (then the body is chunked), or at the end with a
 * Content-Length, which also lets a run the session refused answer 409.
 */

#include "ngx_http_pyrepl_run.h"

#include "ngx_http_pyrepl_e2b.h"
#include "ngx_http_pyrepl_exec.h"
#include "ngx_http_pyrepl_exec_parse.h"
#include "ngx_http_pyrepl_opensandbox.h"
#include "ngx_http_pyrepl_reply.h"
#include "ngx_http_pyrepl_spool.h"
#include "ngx_http_pyrepl_supervisor.h"
#include "ngx_http_pyrepl_table.h"


#define PYREPL_RUN_MIN_BUF    8192
#define PYREPL_JSON_OUT       65536     /* escaped stdout on its way */
#define PYREPL_RUN_TURN       10        /* ms: E2B's runs look again */


typedef struct {
    ngx_http_pyrepl_exec_t       exec;
    ngx_http_request_t          *request;

    ngx_chain_t                 *free;          /* our buffers, to reuse */
    ngx_chain_t                 *busy;          /* ... once the client has */

    ngx_uint_t                   seq;           /* SSE "id:" of the next */
    ngx_event_t                  ping;
    ngx_event_t                  turn;          /* E2B's: waits its turn */
    ngx_msec_t                   waited;

    /* the JSON answer */
    ngx_chain_t                 *out;           /* stdout being escaped */
    json_t                      *pending;       /* stdout not escaped yet */
    size_t                       pending_pos;
    ngx_http_pyrepl_spool_t      spool;         /* stderr */
    ngx_http_pyrepl_spool_t      dspool;        /* displays, then the end */
    ngx_uint_t                   displays;
    json_t                      *result;
    json_t                      *error;

    unsigned                     json:1;        /* Accept: application/json */
    unsigned                     opened:1;      /* '{"stdout":"' is out */
    unsigned                     complete:1;    /* dspool holds the end */
} ngx_http_pyrepl_run_t;


static void ngx_http_pyrepl_run_body_handler(ngx_http_request_t *r);
static void ngx_http_pyrepl_run_refused(ngx_http_request_t *r,
    ngx_http_pyrepl_exec_t *ex);
static ngx_int_t ngx_http_pyrepl_run_start(ngx_http_request_t *r,
    ngx_http_pyrepl_run_t *ctx);
static ngx_chain_t *ngx_http_pyrepl_run_buf(ngx_http_pyrepl_run_t *ctx,
    size_t size);
static ngx_int_t ngx_http_pyrepl_run_send(ngx_http_pyrepl_run_t *ctx,
    ngx_chain_t *cl, ngx_uint_t last);
static ngx_int_t ngx_http_pyrepl_sse_event(ngx_http_pyrepl_exec_t *ex,
    const char *event, json_t *data);
static void ngx_http_pyrepl_sse_done(ngx_http_pyrepl_exec_t *ex,
    const char *status, ngx_uint_t count, ngx_msec_t ms);
static ngx_int_t ngx_http_pyrepl_sse_write(ngx_http_pyrepl_run_t *ctx,
    const char *event, json_t *data, ngx_uint_t last);
static ngx_int_t ngx_http_pyrepl_ndjson_write(ngx_http_pyrepl_run_t *ctx,
    json_t *lines, ngx_uint_t last);
static void ngx_http_pyrepl_run_turn(ngx_event_t *ev);
static ngx_int_t ngx_http_pyrepl_run_open(ngx_http_request_t *r,
    ngx_http_pyrepl_run_t *ctx);
static ngx_int_t ngx_http_pyrepl_json_event(ngx_http_pyrepl_exec_t *ex,
    const char *event, json_t *data);
static void ngx_http_pyrepl_json_done(ngx_http_pyrepl_exec_t *ex,
    const char *status, ngx_uint_t count, ngx_msec_t ms);
static ngx_int_t ngx_http_pyrepl_json_pump(ngx_http_pyrepl_run_t *ctx);
static ngx_int_t ngx_http_pyrepl_json_send_out(ngx_http_pyrepl_run_t *ctx);
static ngx_buf_t *ngx_http_pyrepl_json_out(ngx_http_pyrepl_run_t *ctx);
static ngx_int_t ngx_http_pyrepl_json_spool(ngx_http_pyrepl_run_t *ctx,
    u_char *data, size_t len, ngx_uint_t escape);
static ngx_int_t ngx_http_pyrepl_json_close(ngx_http_pyrepl_run_t *ctx,
    json_t *end);
static void ngx_http_pyrepl_json_end(ngx_http_pyrepl_run_t *ctx);
static ngx_int_t ngx_http_pyrepl_run_send_headers(ngx_http_request_t *r,
    ngx_uint_t json, off_t length);
static void ngx_http_pyrepl_run_client_write(ngx_http_request_t *r);
static void ngx_http_pyrepl_run_client_read(ngx_http_request_t *r);
static void ngx_http_pyrepl_run_client_left(ngx_http_request_t *r);
static ngx_uint_t ngx_http_pyrepl_run_client_gone(ngx_http_request_t *r);
static void ngx_http_pyrepl_run_ping(ngx_event_t *ev);
static ngx_int_t ngx_http_pyrepl_run_begin(ngx_http_request_t *r,
    u_char *id, ngx_uint_t one_shot);
static void ngx_http_pyrepl_run_cleanup(void *data);
static ngx_uint_t ngx_http_pyrepl_accepts_json(ngx_http_request_t *r);


static u_char  ngx_http_pyrepl_ping_comment[] = ": ping\n\n";
static u_char  ngx_http_pyrepl_keepalive_line[] = "{\"type\":\"keepalive\"}\n";
static u_char  ngx_http_pyrepl_json_opening[] = "{\"stdout\":\"";
static u_char  ngx_http_pyrepl_json_stderr[] = "\",\"stderr\":\"";


ngx_int_t
ngx_http_pyrepl_run_handler(ngx_http_request_t *r, u_char *id)
{
    /* an EventSource that reconnects */
    if (ngx_http_pyrepl_header(r, "Last-Event-ID") != NULL) {
        ngx_http_discard_request_body(r);
        return NGX_HTTP_NO_CONTENT;
    }

    return ngx_http_pyrepl_run_begin(r, id, 0);
}


/*
 * A one-shot command's run, in the session made for it, whose request
 * (execd's POST /command) is read already and is this run's: the session
 * goes when the request does (ngx_http_pyrepl_run_cleanup).
 */
ngx_int_t
ngx_http_pyrepl_run_one_shot(ngx_http_request_t *r, u_char *id)
{
    return ngx_http_pyrepl_run_begin(r, id, 1);
}


static ngx_int_t
ngx_http_pyrepl_run_begin(ngx_http_request_t *r, u_char *id,
    ngx_uint_t one_shot)
{
    ngx_pool_cleanup_t     *cln;
    ngx_http_pyrepl_run_t  *ctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_pyrepl_run_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_pyrepl_run_cleanup;
    cln->data = ctx;

    ctx->request = r;
    ctx->spool.request = r;
    ctx->dspool.request = r;
    ctx->exec.pool = r->pool;
    ctx->exec.log = r->connection->log;
    ctx->exec.pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);
    ctx->exec.data = ctx;
    ctx->exec.one_shot = one_shot;
    ngx_memcpy(ctx->exec.id, id, PYREPL_ID_LEN);

    ngx_http_set_ctx(r, ctx, ngx_http_pyrepl_module);

    return ngx_http_pyrepl_read_body(r, ngx_http_pyrepl_run_body_handler);
}


static void
ngx_http_pyrepl_run_body_handler(ngx_http_request_t *r)
{
    json_t                 *body;
    ngx_int_t               rc;
    ngx_http_pyrepl_run_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_pyrepl_module);

    if (ngx_http_pyrepl_read_json_body(r, &body) != NGX_OK) {
        return;
    }

    ctx->exec.opensandbox = (ngx_http_pyrepl_dialect(r)
                             == PYREPL_DIALECT_OPENSANDBOX);
    ctx->exec.e2b = (ngx_http_pyrepl_dialect(r) == PYREPL_DIALECT_E2B);

    rc = ngx_http_pyrepl_exec_parse(&ctx->exec, body);
    json_decref(body);

    if (rc != NGX_OK) {
        ngx_http_pyrepl_run_refused(r, &ctx->exec);
        return;
    }

    /* E2B's NDJSON goes the SSE way: its client cannot answer input() */
    ctx->json = !ctx->exec.e2b && ngx_http_pyrepl_accepts_json(r);
    ctx->exec.interactive = !ctx->json && !ctx->exec.e2b;
    ctx->exec.event = ctx->json ? ngx_http_pyrepl_json_event
                                : ngx_http_pyrepl_sse_event;
    ctx->exec.done = ctx->json ? ngx_http_pyrepl_json_done
                               : ngx_http_pyrepl_sse_done;

    /*
     * a client that left before its run could start (while its E2B
     * default context was made) was heard by no one: its run never
     * starts, and its connection's own read handler, posted, ends the
     * request (which this may not do from another connection's event)
     */
    if (r->connection->read->ready && ngx_http_pyrepl_run_client_gone(r)) {
        r->read_event_handler = ngx_http_pyrepl_run_client_left;
        ngx_post_event(r->connection->read, &ngx_posted_events);
        return;
    }

    rc = ngx_http_pyrepl_run_start(r, ctx);

    if (rc != NGX_OK && rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/*
 * Reserve the session, start the answer and send the code.  Returns NGX_OK
 * while the run goes on, NGX_DONE when the request has been finalized,
 * else a status to finalize it with.
 */
static ngx_int_t
ngx_http_pyrepl_run_start(ngx_http_request_t *r, ngx_http_pyrepl_run_t *ctx)
{
    ngx_int_t  rc;

    rc = ngx_http_pyrepl_exec_reserve(&ctx->exec);

    if (rc == NGX_DECLINED && ctx->exec.e2b
        && ctx->exec.refusal == PYREPL_REFUSED_BUSY
        && ctx->waited < ctx->exec.timeout)
    {
        /*
         * runs in one E2B context take turns, in the order they came
         * (the exec's ticket, ngx_http_pyrepl_table_start_run): this one
         * looks again soon, for as long as it may run (a client that
         * goes away meanwhile ends the request); a worker that is
         * quitting waits for it, as for a run going on (not cancelable:
         * one left would be dropped with its open connection).  The
         * answer begins at once, as E2B's does, keepalives and all: the
         * SDK gives up on an answer whose headers take longer than its
         * request timeout.
         */
        rc = ngx_http_pyrepl_run_open(r, ctx);
        if (rc != NGX_OK) {
            return rc;
        }

        ctx->turn.handler = ngx_http_pyrepl_run_turn;
        ctx->turn.data = ctx;
        ctx->turn.log = r->connection->log;
        ctx->waited += PYREPL_RUN_TURN;

        ngx_add_timer(&ctx->turn, PYREPL_RUN_TURN);
        r->read_event_handler = ngx_http_pyrepl_run_client_read;

        return NGX_OK;
    }

    if (rc == NGX_DECLINED) {
        ngx_http_pyrepl_run_refused(r, &ctx->exec);
        return NGX_DONE;
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->read_event_handler = ngx_http_pyrepl_run_client_read;
    r->write_event_handler = ngx_http_pyrepl_run_client_write;

    if (!ctx->json) {
        rc = ngx_http_pyrepl_run_open(r, ctx);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    rc = ngx_http_pyrepl_exec_start(&ctx->exec);

    return rc == NGX_ERROR ? NGX_ERROR : NGX_OK;
}


/*
 * A stream's answer begins (once): its headers, and keepalives from then
 * on.  NGX_OK, or what to finalize the request with.
 */
static ngx_int_t
ngx_http_pyrepl_run_open(ngx_http_request_t *r, ngx_http_pyrepl_run_t *ctx)
{
    ngx_int_t  rc;

    if (r->header_sent) {
        return NGX_OK;
    }

    rc = ngx_http_pyrepl_run_send_headers(r, 0, -1);
    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    ctx->ping.handler = ngx_http_pyrepl_run_ping;
    ctx->ping.data = ctx;
    ctx->ping.log = r->connection->log;
    ctx->ping.cancelable = 1;

    if (ctx->exec.pmcf->keepalive) {
        ngx_add_timer(&ctx->ping, ctx->exec.pmcf->keepalive);
    }

    return NGX_OK;
}


/* An E2B run's turn to look whether its context is free. */
static void
ngx_http_pyrepl_run_turn(ngx_event_t *ev)
{
    ngx_int_t               rc;
    ngx_http_pyrepl_run_t  *ctx;

    ctx = ev->data;

    rc = ngx_http_pyrepl_run_start(ctx->request, ctx);

    if (rc != NGX_OK && rc != NGX_DONE) {
        ngx_http_finalize_request(ctx->request, rc);
    }
}


/*
 * Answer a run that did not start with its error, and finalize; an E2B
 * answer that began already (its run waited its turn) says it in lines.
 */
static void
ngx_http_pyrepl_run_refused(ngx_http_request_t *r, ngx_http_pyrepl_exec_t *ex)
{
    json_t      *lines;
    ngx_int_t    rc;
    ngx_uint_t   status;
    const char  *code, *message;

    status = ngx_http_pyrepl_exec_refusal(ex, &code, &message);

    if (r->header_sent) {
        lines = ngx_http_pyrepl_e2b_refused(code, message);

        rc = (lines == NULL) ? NGX_ERROR
                             : ngx_http_pyrepl_ndjson_write(ex->data, lines,
                                                            1);
        ngx_http_finalize_request(r, rc == NGX_ERROR ? NGX_ERROR : rc);
        return;
    }

    ngx_http_pyrepl_finalize_error(r, status, code, message);
}


/*
 * A buffer of ours with room for size bytes, one the client has emptied if
 * there is one.  Returns its chain link, or NULL.
 */
static ngx_chain_t *
ngx_http_pyrepl_run_buf(ngx_http_pyrepl_run_t *ctx, size_t size)
{
    ngx_buf_t    *b;
    ngx_pool_t   *pool;
    ngx_chain_t  *cl;

    pool = ctx->request->pool;

    cl = ngx_chain_get_free_buf(pool, &ctx->free);
    if (cl == NULL) {
        return NULL;
    }

    b = cl->buf;

    if (b->start == NULL || (size_t) (b->end - b->start) < size) {
        if (b->start) {
            ngx_pfree(pool, b->start);
        }

        size = ngx_max(size, PYREPL_RUN_MIN_BUF);
        b->start = ngx_palloc(pool, size);
        if (b->start == NULL) {
            return NULL;
        }

        b->end = b->start + size;
    }

    b->pos = b->start;
    b->last = b->start;
    b->temporary = 1;
    b->tag = (ngx_buf_tag_t) &ngx_http_pyrepl_module;

    return cl;
}


/*
 * Hand cl to the client, which puts off a stream's next keepalive.  If it
 * cannot take more, the exec is paused and, unless this was the last of
 * the answer (finalizing the request sees to that), the client's write
 * event armed.  Returns NGX_OK, NGX_AGAIN or NGX_ERROR.
 */
static ngx_int_t
ngx_http_pyrepl_run_send(ngx_http_pyrepl_run_t *ctx, ngx_chain_t *cl,
    ngx_uint_t last)
{
    ngx_int_t                  rc;
    ngx_http_request_t        *r;
    ngx_http_core_loc_conf_t  *clcf;

    r = ctx->request;

    rc = ngx_http_output_filter(r, cl);

    ngx_chain_update_chains(r->pool, &ctx->free, &ctx->busy, &cl,
                            (ngx_buf_tag_t) &ngx_http_pyrepl_module);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    /* a stream that sent something needs no keepalive for a while */
    if (ctx->ping.timer_set) {
        ngx_add_timer(&ctx->ping, ctx->exec.pmcf->keepalive);
    }

    if (rc != NGX_AGAIN && !r->connection->buffered) {
        return NGX_OK;
    }

    ngx_http_pyrepl_exec_pause(&ctx->exec);

    if (!last) {
        clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

        /* a write limit_rate delays has its timer: that one wakes it */
        if (!r->connection->write->delayed) {
            ngx_add_timer(r->connection->write, clcf->send_timeout);
        }

        if (ngx_handle_write_event(r->connection->write, clcf->send_lowat)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_AGAIN;
}


static ngx_int_t
ngx_http_pyrepl_sse_event(ngx_http_pyrepl_exec_t *ex, const char *event,
    json_t *data)
{
    return ngx_http_pyrepl_sse_write(ex->data, event, data, 0);
}


static void
ngx_http_pyrepl_sse_done(ngx_http_pyrepl_exec_t *ex, const char *status,
    ngx_uint_t count, ngx_msec_t ms)
{
    u_char                  buf[32], *last;
    json_t                 *data;
    ngx_int_t               rc;
    ngx_http_pyrepl_run_t  *ctx;

    ctx = ex->data;

    if (ex->e2b) {
        data = ngx_http_pyrepl_e2b_end(count);

        rc = (data == NULL) ? NGX_ERROR
                            : ngx_http_pyrepl_ndjson_write(ctx, data, 1);
        if (rc == NGX_ERROR) {
            ngx_http_finalize_request(ctx->request, NGX_ERROR);
            return;
        }

        ngx_http_finalize_request(ctx->request, rc);
        return;
    }

    /*
     * execd's SDKs read a command's exit code from an error event alone:
     * one interrupted or timed out says so (130: killed by SIGINT)
     */
    if (ex->opensandbox
        && (ngx_strcmp(status, "interrupted") == 0
            || ngx_strcmp(status, "timeout") == 0))
    {
        last = ngx_snprintf(buf, sizeof(buf), "exit status %i",
                            ex->exit_code > 0 ? ex->exit_code : 130);

        data = json_pack("{s:s,s:s%,s:[]}", "ename", "CommandError",
                         "evalue", (char *) buf, (size_t) (last - buf),
                         "traceback");

        if (ngx_http_pyrepl_sse_write(ctx, "error", data, 0) == NGX_ERROR) {
            return;
        }
    }

    data = json_pack("{s:s,s:I,s:I}", "status", status,
                     "execution_count", (json_int_t) count,
                     "duration_ms", (json_int_t) ms);

    if (data && ngx_http_pyrepl_exec_summary(ex, data) != NGX_OK) {
        json_decref(data);
        data = NULL;
    }

    rc = ngx_http_pyrepl_sse_write(ctx, "execution_complete", data, 1);

    if (rc != NGX_ERROR) {
        ngx_http_finalize_request(ctx->request, rc);
    }
}


/*
 * Write one SSE event (data reference stolen).  On a client that cannot
 * keep up, the exec is paused.  Returns NGX_OK or NGX_AGAIN, or NGX_ERROR
 * after it has finalized the request.
 */
static ngx_int_t
ngx_http_pyrepl_sse_write(ngx_http_pyrepl_run_t *ctx, const char *event,
    json_t *data, ngx_uint_t last)
{
    size_t        jlen;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (data != NULL && ctx->exec.opensandbox) {
        data = ngx_http_pyrepl_opensandbox_event(event, data);
    }

    if (data != NULL && ctx->exec.e2b) {
        rc = ngx_http_pyrepl_e2b_line(event, &data);

        if (rc == NGX_DECLINED) {
            return NGX_OK;                  /* no line for this event */
        }

        rc = (rc == NGX_OK) ? ngx_http_pyrepl_ndjson_write(ctx, data, last)
                            : NGX_ERROR;
        if (rc == NGX_ERROR) {
            goto failed;
        }

        return rc;
    }

    if (data == NULL) {
        goto failed;
    }

    jlen = json_dumpb(data, NULL, 0, JSON_COMPACT);

    cl = ngx_http_pyrepl_run_buf(ctx, sizeof("event: \nid: \ndata: \n\n")
                                      + ngx_strlen(event) + NGX_INT_T_LEN
                                      + jlen);
    if (cl == NULL) {
        json_decref(data);
        goto failed;
    }

    b = cl->buf;
    b->last = ngx_sprintf(b->pos, "event: %s\nid: %ui\ndata: ", event,
                          ctx->seq++);
    b->last += json_dumpb(data, (char *) b->last, jlen, JSON_COMPACT);
    b->last = ngx_cpymem(b->last, "\n\n", 2);
    json_decref(data);

    b->flush = 1;
    b->last_buf = last;

    rc = ngx_http_pyrepl_run_send(ctx, cl, last);

    if (rc == NGX_ERROR) {
        goto failed;
    }

    return rc;

failed:

    ngx_http_finalize_request(ctx->request, NGX_ERROR);

    return NGX_ERROR;
}


/*
 * E2B's NDJSON: lines (an object, or an array of them; reference stolen)
 * each as one line.  As ngx_http_pyrepl_sse_write(), but NGX_ERROR
 * leaves finalizing to the caller.
 */
static ngx_int_t
ngx_http_pyrepl_ndjson_write(ngx_http_pyrepl_run_t *ctx, json_t *lines,
    ngx_uint_t last)
{
    size_t        len;
    json_t       *line;
    ngx_buf_t    *b;
    ngx_uint_t    i, n;
    ngx_chain_t  *cl;

    n = json_is_array(lines) ? json_array_size(lines) : 1;
    len = 0;

    for (i = 0; i < n; i++) {
        line = json_is_array(lines) ? json_array_get(lines, i) : lines;
        len += json_dumpb(line, NULL, 0, JSON_COMPACT) + 1;
    }

    cl = ngx_http_pyrepl_run_buf(ctx, len);
    if (cl == NULL) {
        json_decref(lines);
        return NGX_ERROR;
    }

    b = cl->buf;

    for (i = 0; i < n; i++) {
        line = json_is_array(lines) ? json_array_get(lines, i) : lines;
        b->last += json_dumpb(line, (char *) b->last, b->end - b->last,
                              JSON_COMPACT);
        *b->last++ = '\n';
    }

    json_decref(lines);

    b->flush = 1;
    b->last_buf = last;

    return ngx_http_pyrepl_run_send(ctx, cl, last);
}


/*
 * JSON mode: stdout goes out as it comes (ngx_http_pyrepl_json_pump),
 * stderr to the spool, display data to the other, the result and the
 * error wait for the end.  The
 * exec sends nothing more on stdout while it is paused, so one text at
 * most is pending.
 */
static ngx_int_t
ngx_http_pyrepl_json_event(ngx_http_pyrepl_exec_t *ex, const char *event,
    json_t *data)
{
    json_t                 *text;
    ngx_int_t               rc;
    ngx_http_pyrepl_run_t  *ctx;

    ctx = ex->data;
    rc = NGX_OK;

    if (data == NULL) {
        rc = NGX_ERROR;

    } else if (ngx_strcmp(event, "stdout") == 0
               || ngx_strcmp(event, "stderr") == 0)
    {
        text = json_object_get(data, "text");

        if (!json_is_string(text)) {
            rc = NGX_ERROR;

        } else if (event[3] == 'o') {
            ctx->pending = json_incref(text);
            ctx->pending_pos = 0;
            rc = ngx_http_pyrepl_json_pump(ctx);

        } else {
            rc = ngx_http_pyrepl_json_spool(ctx,
                                            (u_char *) json_string_value(text),
                                            json_string_length(text), 1);
        }

        json_decref(data);

    } else if (ngx_strcmp(event, "display_data") == 0) {
        rc = ngx_http_pyrepl_spool_add(&ctx->dspool, (u_char *) ",",
                                       ctx->displays++ ? 1 : 0, 0);
        if (rc == NGX_OK) {
            rc = ngx_http_pyrepl_spool_json(&ctx->dspool, data);
        }

        json_decref(data);

    } else if (ngx_strcmp(event, "result") == 0) {
        json_decref(ctx->result);
        ctx->result = data;

    } else if (ngx_strcmp(event, "error") == 0) {
        json_decref(ctx->error);
        ctx->error = data;

    } else {
        json_decref(data);                        /* init */
    }

    if (rc == NGX_ERROR) {
        ngx_http_finalize_request(ctx->request, NGX_ERROR);
    }

    return rc;
}


/*
 * The run is over: the closing fields go to the spool, and the answer ends
 * now, or once the client has taken the stdout that still waits.
 */
static void
ngx_http_pyrepl_json_done(ngx_http_pyrepl_exec_t *ex, const char *status,
    ngx_uint_t count, ngx_msec_t ms)
{
    json_t                 *end;
    ngx_int_t               rc;
    ngx_http_request_t     *r;
    ngx_http_pyrepl_run_t  *ctx;

    ctx = ex->data;
    r = ctx->request;

    if (ex->refusal && !r->header_sent) {
        ngx_http_pyrepl_run_refused(r, ex);
        return;
    }

    end = json_pack("{s:s,s:O?,s:O?,s:I,s:I}",
                    "status", status,
                    "result", ctx->result ? json_object_get(ctx->result,
                                                            "data") : NULL,
                    "error", ctx->error,
                    "execution_count", (json_int_t) count,
                    "duration_ms", (json_int_t) ms);

    rc = NGX_ERROR;

    if (end && ngx_http_pyrepl_exec_summary(ex, end) == NGX_OK) {
        rc = ngx_http_pyrepl_json_close(ctx, end);
    }

    json_decref(end);

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, r->header_sent
                                     ? NGX_ERROR
                                     : NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ctx->complete = 1;

    if (ctx->pending == NULL) {
        ngx_http_pyrepl_json_end(ctx);
    }
}


/*
 * Escape the pending stdout into the stdout buffer, which goes to the
 * client each time it is full.  Returns NGX_OK once all of it is escaped,
 * NGX_AGAIN when the client cannot take more (the exec is paused and
 * ngx_http_pyrepl_run_client_write goes on from there), or NGX_ERROR.
 */
static ngx_int_t
ngx_http_pyrepl_json_pump(ngx_http_pyrepl_run_t *ctx)
{
    size_t      len;
    u_char     *text;
    ngx_int_t   rc;
    ngx_buf_t  *b;

    while (ctx->pending) {
        b = ngx_http_pyrepl_json_out(ctx);
        if (b == NULL) {
            return NGX_ERROR;
        }

        text = (u_char *) json_string_value(ctx->pending);
        len = json_string_length(ctx->pending);

        ctx->pending_pos += ngx_http_pyrepl_json_escape(&b->last, b->end,
                                                  text + ctx->pending_pos,
                                                  len - ctx->pending_pos);

        if (ctx->pending_pos == len) {
            json_decref(ctx->pending);
            ctx->pending = NULL;
        }

        if (b->end - b->last >= PYREPL_JSON_ESCAPED) {
            continue;
        }

        rc = ngx_http_pyrepl_buf_grow(ctx->request->pool, b,
                                      PYREPL_JSON_OUT);

        if (rc == NGX_DECLINED) {
            rc = ngx_http_pyrepl_json_send_out(ctx);
        }

        if (rc != NGX_OK) {
            return rc;
        }
    }

    return NGX_OK;
}


/* Hand the full stdout buffer to the client, the headers first. */
static ngx_int_t
ngx_http_pyrepl_json_send_out(ngx_http_pyrepl_run_t *ctx)
{
    ngx_int_t     rc;
    ngx_chain_t  *cl;

    if (!ctx->request->header_sent) {
        rc = ngx_http_pyrepl_run_send_headers(ctx->request, 1, -1);

        if (rc == NGX_ERROR || rc > NGX_OK) {
            return NGX_ERROR;
        }
    }

    cl = ctx->out;
    ctx->out = NULL;
    cl->buf->flush = 1;

    return ngx_http_pyrepl_run_send(ctx, cl, 0);
}


/* The stdout buffer, begun with the document's opening if nothing was. */
static ngx_buf_t *
ngx_http_pyrepl_json_out(ngx_http_pyrepl_run_t *ctx)
{
    ngx_buf_t  *b;

    if (ctx->out == NULL) {
        ctx->out = ngx_http_pyrepl_run_buf(ctx, PYREPL_RUN_MIN_BUF);
        if (ctx->out == NULL) {
            return NULL;
        }
    }

    b = ctx->out->buf;

    if (!ctx->opened) {
        b->last = ngx_cpymem(b->last, ngx_http_pyrepl_json_opening,
                             sizeof(ngx_http_pyrepl_json_opening) - 1);
        ctx->opened = 1;
    }

    return b;
}


/*
 * Append to the spool, escaped for the inside of a JSON string if escape:
 * it starts with the end of stdout and the key of stderr.  Returns NGX_OK
 * or NGX_ERROR.
 */
static ngx_int_t
ngx_http_pyrepl_json_spool(ngx_http_pyrepl_run_t *ctx, u_char *data,
    size_t len, ngx_uint_t escape)
{
    if (ctx->spool.buf == NULL
        && ngx_http_pyrepl_spool_add(&ctx->spool, ngx_http_pyrepl_json_stderr,
                                     sizeof(ngx_http_pyrepl_json_stderr) - 1,
                                     0)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_pyrepl_spool_add(&ctx->spool, data, len, escape);
}


/*
 * End the document: close the stderr string and open the displays in the
 * spool; close them in the other, then each field of end.  Returns NGX_OK
 * or NGX_ERROR.
 */
static ngx_int_t
ngx_http_pyrepl_json_close(ngx_http_pyrepl_run_t *ctx, json_t *end)
{
    static u_char  displays[] = "\",\"displays\":[";

    if (ngx_http_pyrepl_json_spool(ctx, displays, sizeof(displays) - 1, 0)
           != NGX_OK
        || ngx_http_pyrepl_spool_add(&ctx->dspool, (u_char *) "]", 1, 0)
           != NGX_OK
        || ngx_http_pyrepl_spool_fields(&ctx->dspool, end) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_pyrepl_spool_add(&ctx->dspool, (u_char *) "}\n", 2, 0);
}


/*
 * Send the rest of the document, the stdout buffer then the spools (each
 * its file, its memory), with a Content-Length if nothing went out before.
 * Finalizes the request.
 */
static void
ngx_http_pyrepl_json_end(ngx_http_pyrepl_run_t *ctx)
{
    off_t                size;
    ngx_int_t            rc;
    ngx_chain_t         *out, *cl, **ll;
    ngx_http_request_t  *r;

    r = ctx->request;
    ll = &out;

    if (!ctx->opened || ctx->out) {
        if (ngx_http_pyrepl_json_out(ctx) == NULL) {
            goto failed;
        }

        *ll = ctx->out;
        ll = &ctx->out->next;
        ctx->out = NULL;
    }

    ctx->dspool.buf->last_buf = 1;

    if (ngx_http_pyrepl_spool_chain(&ctx->spool, &ll) != NGX_OK
        || ngx_http_pyrepl_spool_chain(&ctx->dspool, &ll) != NGX_OK)
    {
        goto failed;
    }

    if (!r->header_sent) {
        size = 0;

        for (cl = out; cl; cl = cl->next) {
            size += ngx_buf_size(cl->buf);
        }

        rc = ngx_http_pyrepl_run_send_headers(r, 1, size);

        if (rc == NGX_ERROR || rc > NGX_OK) {
            ngx_http_finalize_request(r, rc);
            return;
        }
    }

    ngx_http_finalize_request(r, ngx_http_pyrepl_run_send(ctx, out, 1));
    return;

failed:

    ngx_http_finalize_request(r, r->header_sent
                                 ? NGX_ERROR
                                 : NGX_HTTP_INTERNAL_SERVER_ERROR);
}


/*
 * 200 and the type of the answer; length -1 for a stream (chunked), which
 * goes out in pieces as they come.
 */
static ngx_int_t
ngx_http_pyrepl_run_send_headers(ngx_http_request_t *r, ngx_uint_t json,
    off_t length)
{
    ngx_table_elt_t           *h;
    ngx_http_core_loc_conf_t  *clcf;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = length;

    /*
     * nginx turns Nagle off only when a connection goes keepalive; pieces
     * of a stream on a first request need it off now
     */

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (length == -1 && clcf->tcp_nodelay
        && ngx_tcp_nodelay(r->connection) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (json) {
        ngx_str_set(&r->headers_out.content_type, "application/json");
        r->headers_out.content_type_len = r->headers_out.content_type.len;

        return ngx_http_send_header(r);
    }

    if (ngx_http_pyrepl_dialect(r) == PYREPL_DIALECT_E2B) {
        ngx_str_set(&r->headers_out.content_type, "application/x-ndjson");

    } else {
        ngx_str_set(&r->headers_out.content_type,
                    "text/event-stream; charset=utf-8");
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    ngx_str_set(&h->value, "no-cache");

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "X-Accel-Buffering");
    ngx_str_set(&h->value, "no");

    return ngx_http_send_header(r);
}


/*
 * The client took what was waiting: a JSON answer escapes the stdout that
 * waited with it, and ends if the run has; then the session goes on.
 */
static void
ngx_http_pyrepl_run_client_write(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ngx_chain_t               *out;
    ngx_event_t               *wev;
    ngx_http_pyrepl_run_t     *ctx;
    ngx_http_core_loc_conf_t  *clcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_pyrepl_module);
    wev = r->connection->write;

    if (wev->timedout) {
        r->connection->timedout = 1;
        ngx_http_finalize_request(r, NGX_HTTP_REQUEST_TIME_OUT);
        return;
    }

    rc = ngx_http_output_filter(r, NULL);

    /* update_chains reads *out: it needs a real (empty) chain */
    out = NULL;
    ngx_chain_update_chains(r->pool, &ctx->free, &ctx->busy, &out,
                            (ngx_buf_tag_t) &ngx_http_pyrepl_module);

    if (rc == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    if (rc == NGX_AGAIN || r->connection->buffered) {
        clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

        if (!wev->delayed) {
            ngx_add_timer(wev, clcf->send_timeout);
        }

        if (ngx_handle_write_event(wev, clcf->send_lowat) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_ERROR);
        }

        return;
    }

    /* limit_rate's delay, when it set one, still wakes the next write */
    if (wev->timer_set && !wev->delayed) {
        ngx_del_timer(wev);
    }

    if (ctx->json) {
        rc = ngx_http_pyrepl_json_pump(ctx);

        if (rc == NGX_ERROR) {
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }

        if (rc == NGX_AGAIN) {
            return;
        }

        if (ctx->complete) {
            ngx_http_pyrepl_json_end(ctx);
            return;
        }
    }

    ngx_http_pyrepl_exec_resume(&ctx->exec);
}


/* A client that closes its connection mid-run ends the request. */
static void
ngx_http_pyrepl_run_client_read(ngx_http_request_t *r)
{
    if (ngx_http_pyrepl_run_client_gone(r)) {
        ngx_http_pyrepl_run_client_left(r);
        return;
    }

    if (ngx_handle_read_event(r->connection->read, 0) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_ERROR);
    }
}


static void
ngx_http_pyrepl_run_client_left(ngx_http_request_t *r)
{
    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "pyrepl: client closed the connection during a run");
    r->connection->error = 1;
    ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
}


/* Whether the client has closed its connection (or it failed). */
static ngx_uint_t
ngx_http_pyrepl_run_client_gone(ngx_http_request_t *r)
{
    u_char     buf;
    ssize_t    n;
    ngx_err_t  err;

    n = recv(r->connection->fd, &buf, 1, MSG_PEEK);
    err = ngx_socket_errno;

    return n == 0 || (n == -1 && err != NGX_EAGAIN && err != NGX_EINTR);
}


static void
ngx_http_pyrepl_run_ping(ngx_event_t *ev)
{
    ngx_buf_t              *b;
    ngx_chain_t            *cl;
    ngx_http_request_t     *r;
    ngx_http_pyrepl_run_t  *ctx;

    ctx = ev->data;
    r = ctx->request;

    cl = ngx_alloc_chain_link(r->pool);
    b = ngx_calloc_buf(r->pool);

    if (cl == NULL || b == NULL) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    if (ctx->exec.e2b) {
        b->pos = ngx_http_pyrepl_keepalive_line;
        b->last = b->pos + sizeof(ngx_http_pyrepl_keepalive_line) - 1;

    } else {
        b->pos = ngx_http_pyrepl_ping_comment;
        b->last = b->pos + sizeof(ngx_http_pyrepl_ping_comment) - 1;
    }

    b->memory = 1;
    b->flush = 1;
    cl->buf = b;
    cl->next = NULL;

    if (ngx_http_output_filter(r, cl) == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    ngx_add_timer(ev, ctx->exec.pmcf->keepalive);
}


static void
ngx_http_pyrepl_run_cleanup(void *data)
{
    ngx_http_pyrepl_run_t  *ctx = data;

    if (ctx->ping.timer_set) {
        ngx_del_timer(&ctx->ping);
    }

    if (ctx->turn.timer_set) {
        ngx_del_timer(&ctx->turn);
    }

    if (ctx->exec.one_shot) {
        /* the command's session goes with it, however its run ended */
        ngx_http_pyrepl_table_remove(ctx->exec.pmcf->shm_zone, ctx->exec.id);
        ngx_http_pyrepl_supervisor_kill_now(ctx->exec.pmcf, ctx->exec.id,
                                            ctx->request->connection->log);
    }

    json_decref(ctx->pending);
    json_decref(ctx->result);
    json_decref(ctx->error);
}


/* "Accept: application/json" (and not text/event-stream) asks for JSON. */
static ngx_uint_t
ngx_http_pyrepl_accepts_json(ngx_http_request_t *r)
{
    ngx_table_elt_t  *h;

    h = ngx_http_pyrepl_header(r, "Accept");

    return h != NULL
           && ngx_strlcasestrn(h->value.data, h->value.data + h->value.len,
                               (u_char *) "application/json",
                               sizeof("application/json") - 2) != NULL
           && ngx_strlcasestrn(h->value.data, h->value.data + h->value.len,
                               (u_char *) "text/event-stream",
                               sizeof("text/event-stream") - 2) == NULL;
}
