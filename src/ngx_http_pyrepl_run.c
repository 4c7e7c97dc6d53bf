/*
 * ngx_http_pyrepl_run.c: POST /session/{id}/run.  The worker marks the
 * session busy in the shared table, connects to the session process's
 * socket, sends one "run" frame and turns the frames that come back into
 * the answer: SSE events as they arrive (init, stdout, stderr, result,
 * error, execution_complete), or with "Accept: application/json" one JSON
 * document at the end.
 *
 * Flow control: when the client cannot take more (the output filter says
 * NGX_AGAIN), the session connection is paused, so the session process
 * blocks on its own writes and nothing grows without bound here; the
 * client's write event resumes it.  A client that goes away finalizes the
 * request, whose pool cleanup closes the session connection, which the
 * session process takes as an interrupt of the run.
 */

#include "ngx_http_pyrepl_module.h"

#include <sys/random.h>


#define PYREPL_PING_INTERVAL  15000
#define PYREPL_SSE_MIN_BUF    8192


typedef struct {
    u_char                      *data;
    size_t                       len;
    size_t                       cap;
} ngx_http_pyrepl_text_t;


typedef struct {
    ngx_http_pyrepl_peer_t       peer;
    ngx_http_request_t          *request;
    ngx_http_pyrepl_main_conf_t *pmcf;

    u_char                       id[PYREPL_ID_LEN];
    u_char                       exec_id[PYREPL_ID_LEN];
    ngx_str_t                    code;
    ngx_msec_t                   timeout;

    ngx_uint_t                   seq;           /* SSE "id:" of the next */
    ngx_uint_t                   execution_count;

    ngx_chain_t                 *free;
    ngx_chain_t                 *busy;

    ngx_event_t                  ping;
    ngx_event_t                  deadline;

    /* the JSON answer, built as frames arrive */
    ngx_http_pyrepl_text_t       out;
    ngx_http_pyrepl_text_t       err;
    json_t                      *result;
    json_t                      *error;

    unsigned                     json:1;        /* Accept: application/json */
    unsigned                     ended:1;       /* table updated */
    unsigned                     timed_out:1;
} ngx_http_pyrepl_run_t;


static void ngx_http_pyrepl_run_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_pyrepl_run_parse(ngx_http_request_t *r,
    ngx_http_pyrepl_run_t *ctx, json_t *body);
static ngx_int_t ngx_http_pyrepl_run_start(ngx_http_request_t *r,
    ngx_http_pyrepl_run_t *ctx);
static ngx_int_t ngx_http_pyrepl_run_frame(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame);
static void ngx_http_pyrepl_run_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason);
static ngx_int_t ngx_http_pyrepl_run_complete(ngx_http_pyrepl_run_t *ctx,
    const char *status, ngx_uint_t count, ngx_msec_t ms);
static ngx_int_t ngx_http_pyrepl_run_crashed(ngx_http_pyrepl_run_t *ctx,
    const char *why);
static ngx_int_t ngx_http_pyrepl_run_emit(ngx_http_pyrepl_run_t *ctx,
    const char *event, json_t *data, ngx_uint_t last);
static ngx_int_t ngx_http_pyrepl_run_send_headers(ngx_http_request_t *r);
static ngx_int_t ngx_http_pyrepl_run_send_document(
    ngx_http_pyrepl_run_t *ctx, const char *status, ngx_uint_t count,
    ngx_msec_t ms);
static ngx_int_t ngx_http_pyrepl_text_append(ngx_http_pyrepl_text_t *t,
    pr_str_t *s, ngx_log_t *log);
static void ngx_http_pyrepl_run_client_write(ngx_http_request_t *r);
static void ngx_http_pyrepl_run_client_read(ngx_http_request_t *r);
static void ngx_http_pyrepl_run_ping(ngx_event_t *ev);
static void ngx_http_pyrepl_run_deadline(ngx_event_t *ev);
static void ngx_http_pyrepl_run_cleanup(void *data);
static void ngx_http_pyrepl_run_count(ngx_http_pyrepl_run_t *ctx,
    const char *status, ngx_msec_t ms);
static ngx_uint_t ngx_http_pyrepl_accepts_json(ngx_http_request_t *r);
static json_t *ngx_http_pyrepl_json_str(pr_str_t *s);


static u_char  ngx_http_pyrepl_ping_comment[] = ": ping\n\n";


ngx_int_t
ngx_http_pyrepl_run_handler(ngx_http_request_t *r, u_char *id)
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

    ctx->request = r;
    ctx->pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);
    ctx->ended = 1;                  /* nothing to undo until start_run */
    ngx_memcpy(ctx->id, id, PYREPL_ID_LEN);

    cln->handler = ngx_http_pyrepl_run_cleanup;
    cln->data = ctx;

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

    rc = ngx_http_pyrepl_run_parse(r, ctx, body);
    json_decref(body);

    if (rc != NGX_OK) {
        return;
    }

    rc = ngx_http_pyrepl_run_start(r, ctx);

    if (rc != NGX_OK && rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/*
 * Validate the run body.  Returns NGX_OK, or NGX_DONE when it answered 400
 * and finalized the request.
 */
static ngx_int_t
ngx_http_pyrepl_run_parse(ngx_http_request_t *r, ngx_http_pyrepl_run_t *ctx,
    json_t *body)
{
    json_t      *code, *v;
    size_t       len;
    const char  *msg, *unsupported[] = { "cwd", "env" };
    ngx_uint_t   i;

    msg = NULL;

    code = body ? json_object_get(body, "code") : NULL;
    if (code == NULL && body) {
        code = json_object_get(body, "command");
    }

    if (code == NULL || !json_is_string(code)) {
        msg = "\"code\" must be a string";
        goto invalid;
    }

    len = json_string_length(code);
    ctx->code.data = ngx_pnalloc(r->pool, len ? len : 1);
    if (ctx->code.data == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NGX_DONE;
    }

    ngx_memcpy(ctx->code.data, json_string_value(code), len);
    ctx->code.len = len;

    v = json_object_get(body, "timeout_ms");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 0
            || json_integer_value(v) > 7 * 86400 * 1000LL)
        {
            msg = "\"timeout_ms\" must be a non-negative integer";
            goto invalid;
        }

        ctx->timeout = (ngx_msec_t) json_integer_value(v);
    }

    v = json_object_get(body, "tx_policy");
    if (v != NULL
        && !(json_is_string(v)
             && ngx_strcmp(json_string_value(v), "commit_always") == 0))
    {
        msg = "\"tx_policy\" must be \"commit_always\" on this server";
        goto invalid;
    }

    for (i = 0; i < sizeof(unsupported) / sizeof(char *); i++) {
        if (json_object_get(body, unsupported[i]) != NULL) {
            ngx_http_finalize_request(r,
                ngx_http_pyrepl_send_error(r, NGX_HTTP_BAD_REQUEST,
                                           "bad_request",
                                           "\"%s\" is not supported by this "
                                           "server yet", unsupported[i]));
            return NGX_DONE;
        }
    }

    ctx->json = ngx_http_pyrepl_accepts_json(r);

    return NGX_OK;

invalid:

    ngx_http_pyrepl_finalize_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                   msg);
    return NGX_DONE;
}


/*
 * Take the session, open its socket, start the answer and send the code.
 * Returns NGX_OK while the run goes on, NGX_DONE when the request has been
 * answered and finalized, else a status to finalize it with.
 */
static ngx_int_t
ngx_http_pyrepl_run_start(ngx_http_request_t *r, ngx_http_pyrepl_run_t *ctx)
{
    u_char                      raw[PYREPL_ID_LEN / 2];
    ngx_int_t                   rc;
    ngx_str_t                   sock;
    pr_frame_t                  frame;
    ngx_http_pyrepl_session_t   s;

    rc = ngx_http_pyrepl_table_start_run(ctx->pmcf->shm_zone, ctx->id, &s);

    if (rc == NGX_DECLINED) {
        ngx_http_finalize_request(r,
            ngx_http_pyrepl_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                       "no session %.*s", PYREPL_ID_LEN,
                                       (char *) ctx->id));
        return NGX_DONE;
    }

    if (rc == NGX_BUSY || (rc == NGX_ABORT
                           && s.state == PYREPL_STATE_STARTING))
    {
        ngx_http_pyrepl_finalize_error(r, NGX_HTTP_CONFLICT, "session_busy",
                                       "the session is running code");
        return NGX_DONE;
    }

    if (getrandom(raw, sizeof(raw), 0) != (ssize_t) sizeof(raw)) {
        if (rc == NGX_OK) {
            ngx_http_pyrepl_table_end_run(ctx->pmcf->shm_zone, ctx->id,
                                          PYREPL_STATE_IDLE, 0);
        }
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_hex_dump(ctx->exec_id, raw, sizeof(raw));

    ctx->ended = (rc != NGX_OK);
    ctx->execution_count = s.execution_count;

    r->read_event_handler = ngx_http_pyrepl_run_client_read;
    r->write_event_handler = ngx_http_pyrepl_run_client_write;

    if (!ctx->json) {
        rc = ngx_http_pyrepl_run_send_headers(r);
        if (rc == NGX_ERROR || rc > NGX_OK) {
            return rc;
        }

        rc = ngx_http_pyrepl_run_emit(ctx, "init",
                                      json_pack("{s:s%,s:s%}",
                                                "session_id", ctx->id,
                                                (size_t) PYREPL_ID_LEN,
                                                "execution_id", ctx->exec_id,
                                                (size_t) PYREPL_ID_LEN),
                                      0);
        if (rc == NGX_ERROR) {
            return NGX_DONE;         /* run_emit finalized the request */
        }

        ctx->ping.handler = ngx_http_pyrepl_run_ping;
        ctx->ping.data = ctx;
        ctx->ping.log = r->connection->log;
        ctx->ping.cancelable = 1;
        ngx_add_timer(&ctx->ping, PYREPL_PING_INTERVAL);
    }

    if (s.state == PYREPL_STATE_CRASHED) {
        return ngx_http_pyrepl_run_crashed(ctx, "the session process is gone");
    }

    ctx->peer.data = ctx;
    ctx->peer.log = r->connection->log;
    ctx->peer.max_frame = ctx->pmcf->max_frame;
    ctx->peer.frame_handler = ngx_http_pyrepl_run_frame;
    ctx->peer.fail_handler = ngx_http_pyrepl_run_failed;

    if (ngx_http_pyrepl_session_socket(r, ctx->id, &sock) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_pyrepl_peer_connect(&ctx->peer, &sock, r->pool);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_pyrepl_run_crashed(ctx, "the session process is gone");
    }

    ngx_memzero(&frame, sizeof(pr_frame_t));
    frame.type = PR_T_RUN;
    pr_set_str(&frame, code, ctx->code.data, ctx->code.len);
    pr_set_int(&frame, timeout_ms, (int64_t) ctx->timeout);

    if (ngx_http_pyrepl_peer_send(&ctx->peer, r->pool, &frame) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ctx->timeout) {
        ctx->deadline.handler = ngx_http_pyrepl_run_deadline;
        ctx->deadline.data = ctx;
        ctx->deadline.log = r->connection->log;
        ngx_add_timer(&ctx->deadline, ctx->timeout);
    }

    return NGX_OK;
}


/*
 * One frame from the session process.  Returns NGX_OK to go on reading, or
 * NGX_DONE once the request has been finalized.
 */
static ngx_int_t
ngx_http_pyrepl_run_frame(ngx_http_pyrepl_peer_t *peer, pr_frame_t *frame)
{
    u_char                  status[32];
    json_t                 *data, *tb;
    ngx_int_t               rc;
    ngx_uint_t              i;
    ngx_http_pyrepl_run_t  *ctx;

    ctx = peer->data;

    switch (frame->type) {

    case PR_T_STDOUT:
    case PR_T_STDERR:
        if (ctx->json) {
            rc = ngx_http_pyrepl_text_append(frame->type == PR_T_STDOUT
                                             ? &ctx->out : &ctx->err,
                                             &frame->text, peer->log);
            break;
        }

        data = json_pack("{s:o}", "text",
                         ngx_http_pyrepl_json_str(&frame->text));

        rc = ngx_http_pyrepl_run_emit(ctx, frame->type == PR_T_STDOUT
                                           ? "stdout" : "stderr", data, 0);
        break;

    case PR_T_RESULT:
        data = json_pack("{s:{s:o},s:I}",
                         "data", "text/plain",
                         ngx_http_pyrepl_json_str(&frame->text),
                         "execution_count", (json_int_t) frame->count);

        if (ctx->json) {
            json_decref(ctx->result);
            ctx->result = data;
            rc = data ? NGX_OK : NGX_ERROR;
            break;
        }

        rc = ngx_http_pyrepl_run_emit(ctx, "result", data, 0);
        break;

    case PR_T_ERROR:
        tb = json_array();
        for (i = 0; tb && i < frame->traceback.n; i++) {
            json_array_append_new(tb, ngx_http_pyrepl_json_str(
                                           &frame->traceback.items[i]));
        }

        data = json_pack("{s:o,s:o,s:o}",
                         "ename", ngx_http_pyrepl_json_str(&frame->ename),
                         "evalue", ngx_http_pyrepl_json_str(&frame->evalue),
                         "traceback", tb);

        if (ctx->json) {
            json_decref(ctx->error);
            ctx->error = data;
            rc = data ? NGX_OK : NGX_ERROR;
            break;
        }

        rc = ngx_http_pyrepl_run_emit(ctx, "error", data, 0);
        break;

    case PR_T_COMPLETE:
        /* frame strings live in the peer's buffer: copy before closing */

        if (ctx->timed_out) {
            ngx_cpystrn(status, (u_char *) "timeout", sizeof(status));

        } else if (frame->status.len == 0) {
            ngx_cpystrn(status, (u_char *) "ok", sizeof(status));

        } else {
            ngx_cpystrn(status, (u_char *) frame->status.data,
                        ngx_min(frame->status.len + 1, sizeof(status)));
        }

        ngx_http_pyrepl_peer_close(peer);

        return ngx_http_pyrepl_run_complete(ctx, (char *) status,
                                            (ngx_uint_t) frame->count,
                                            (ngx_msec_t) frame->ms);

    case PR_T_FAIL:
        /* the session process refused the run: another one is unwinding */
        ngx_http_pyrepl_peer_close(peer);

        if (ctx->json) {
            ngx_http_pyrepl_table_end_run(ctx->pmcf->shm_zone, ctx->id,
                                          PYREPL_STATE_IDLE, 0);
            ctx->ended = 1;
            ngx_http_pyrepl_finalize_error(ctx->request, NGX_HTTP_CONFLICT,
                                           "session_busy",
                                           "the session is still finishing "
                                           "an earlier run");
            return NGX_DONE;
        }

        data = json_pack("{s:s,s:s,s:[]}", "ename", "SessionBusy",
                         "evalue", "the session is still finishing an "
                         "earlier run", "traceback");

        if (ngx_http_pyrepl_run_emit(ctx, "error", data, 0) == NGX_ERROR) {
            return NGX_DONE;
        }

        return ngx_http_pyrepl_run_complete(ctx, "error",
                                            ctx->execution_count, 0);

    default:
        ngx_log_error(NGX_LOG_ERR, peer->log, 0,
                      "pyrepl: unexpected \"%s\" frame from session %*s",
                      pr_type_name(frame->type), (size_t) PYREPL_ID_LEN,
                      ctx->id);
        return NGX_OK;
    }

    if (rc == NGX_ERROR) {
        if (ctx->json) {
            /* run_emit finalizes by itself; the JSON paths do it here */
            ngx_http_finalize_request(ctx->request, NGX_ERROR);
        }

        return NGX_DONE;
    }

    return NGX_OK;
}


static void
ngx_http_pyrepl_run_failed(ngx_http_pyrepl_peer_t *peer, const char *reason)
{
    ngx_http_pyrepl_run_t  *ctx;

    ctx = peer->data;

    ngx_log_error(NGX_LOG_WARN, peer->log, 0,
                  "pyrepl: session %*s lost during a run: %s",
                  (size_t) PYREPL_ID_LEN, ctx->id, reason);

    ngx_http_pyrepl_run_crashed(ctx, "the session process exited");
}


/*
 * End the run as crashed: an error event and a "crashed" completion.
 * Returns NGX_DONE (the request is finalized).
 */
static ngx_int_t
ngx_http_pyrepl_run_crashed(ngx_http_pyrepl_run_t *ctx, const char *why)
{
    json_t  *data;

    ngx_http_pyrepl_table_end_run(ctx->pmcf->shm_zone, ctx->id,
                                  PYREPL_STATE_CRASHED, 0);
    ngx_http_pyrepl_table_set_state(ctx->pmcf->shm_zone, ctx->id,
                                    PYREPL_STATE_CRASHED);
    ctx->ended = 1;

    data = json_pack("{s:s,s:s,s:[]}", "ename", "SessionCrashed",
                     "evalue", why, "traceback");

    if (ctx->json) {
        json_decref(ctx->error);
        ctx->error = data;

    } else if (ngx_http_pyrepl_run_emit(ctx, "error", data, 0) != NGX_OK) {
        return NGX_DONE;
    }

    return ngx_http_pyrepl_run_complete(ctx, "crashed", ctx->execution_count,
                                        0);
}


/*
 * The last event: update the table and finish the answer.  Returns NGX_DONE
 * (the request is finalized, so the peer must not be touched any more).
 */
static ngx_int_t
ngx_http_pyrepl_run_complete(ngx_http_pyrepl_run_t *ctx, const char *status,
    ngx_uint_t count, ngx_msec_t ms)
{
    json_t              *data;
    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = ctx->request;

    if (!ctx->ended) {
        ngx_http_pyrepl_table_end_run(ctx->pmcf->shm_zone, ctx->id,
                                      PYREPL_STATE_IDLE, count);
        ctx->ended = 1;
    }

    ngx_http_pyrepl_run_count(ctx, status, ms);

    if (ctx->json) {
        rc = ngx_http_pyrepl_run_send_document(ctx, status, count, ms);
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    data = json_pack("{s:s,s:I,s:I}", "status", status,
                     "execution_count", (json_int_t) count,
                     "duration_ms", (json_int_t) ms);

    rc = ngx_http_pyrepl_run_emit(ctx, "execution_complete", data, 1);

    if (rc != NGX_ERROR) {
        ngx_http_finalize_request(r, rc);
    }

    return NGX_DONE;
}


/*
 * Write one SSE event (data reference stolen).  On a client that cannot
 * keep up, the session connection is paused.  Returns NGX_OK or NGX_AGAIN,
 * or NGX_ERROR after it has finalized the request.
 */
static ngx_int_t
ngx_http_pyrepl_run_emit(ngx_http_pyrepl_run_t *ctx, const char *event,
    json_t *data, ngx_uint_t last)
{
    size_t                     jlen, size;
    ngx_int_t                  rc;
    ngx_buf_t                 *b;
    ngx_chain_t               *cl;
    ngx_http_request_t        *r;
    ngx_http_core_loc_conf_t  *clcf;

    r = ctx->request;

    if (data == NULL) {
        goto failed;
    }

    jlen = json_dumpb(data, NULL, 0, JSON_COMPACT);
    size = sizeof("event: \nid: \ndata: \n\n") + ngx_strlen(event)
           + NGX_INT_T_LEN + jlen;

    cl = ngx_chain_get_free_buf(r->pool, &ctx->free);
    if (cl == NULL) {
        goto failed;
    }

    b = cl->buf;

    if (b->start == NULL || (size_t) (b->end - b->start) < size) {
        if (b->start) {
            ngx_pfree(r->pool, b->start);
        }

        size = ngx_max(size, PYREPL_SSE_MIN_BUF);
        b->start = ngx_palloc(r->pool, size);
        if (b->start == NULL) {
            goto failed;
        }

        b->end = b->start + size;
    }

    b->pos = b->start;
    b->last = ngx_sprintf(b->start, "event: %s\nid: %ui\ndata: ", event,
                          ctx->seq++);
    b->last += json_dumpb(data, (char *) b->last, jlen, JSON_COMPACT);
    b->last = ngx_cpymem(b->last, "\n\n", 2);
    json_decref(data);
    data = NULL;

    b->temporary = 1;
    b->memory = 0;
    b->flush = 1;
    b->last_buf = last;
    b->tag = (ngx_buf_tag_t) &ngx_http_pyrepl_module;

    rc = ngx_http_output_filter(r, cl);

    ngx_chain_update_chains(r->pool, &ctx->free, &ctx->busy, &cl,
                            (ngx_buf_tag_t) &ngx_http_pyrepl_module);

    if (rc == NGX_ERROR) {
        goto failed;
    }

    if (ctx->ping.timer_set) {
        ngx_add_timer(&ctx->ping, PYREPL_PING_INTERVAL);
    }

    if (rc == NGX_AGAIN || r->connection->buffered) {
        if (!ctx->peer.closed) {
            ngx_http_pyrepl_peer_pause(&ctx->peer);
        }

        if (!last) {
            clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
            ngx_add_timer(r->connection->write, clcf->send_timeout);

            if (ngx_handle_write_event(r->connection->write,
                                       clcf->send_lowat)
                != NGX_OK)
            {
                goto failed;
            }
        }

        return NGX_AGAIN;
    }

    return NGX_OK;

failed:

    json_decref(data);
    ngx_http_finalize_request(r, NGX_ERROR);

    return NGX_ERROR;
}


static ngx_int_t
ngx_http_pyrepl_run_send_headers(ngx_http_request_t *r)
{
    ngx_table_elt_t  *h;

    r->headers_out.status = NGX_HTTP_OK;
    ngx_str_set(&r->headers_out.content_type, "text/event-stream");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_length_n = -1;

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


static ngx_int_t
ngx_http_pyrepl_run_send_document(ngx_http_pyrepl_run_t *ctx,
    const char *status, ngx_uint_t count, ngx_msec_t ms)
{
    json_t  *doc;

    doc = json_pack("{s:s,s:s%,s:s%,s:O?,s:O?,s:I,s:I}",
                    "status", status,
                    "stdout", ctx->out.data ? (char *) ctx->out.data : "",
                    ctx->out.len,
                    "stderr", ctx->err.data ? (char *) ctx->err.data : "",
                    ctx->err.len,
                    "result", ctx->result ? json_object_get(ctx->result,
                                                            "data") : NULL,
                    "error", ctx->error,
                    "execution_count", (json_int_t) count,
                    "duration_ms", (json_int_t) ms);

    if (doc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_pyrepl_send_json(ctx->request, NGX_HTTP_OK, doc);
}


static ngx_int_t
ngx_http_pyrepl_text_append(ngx_http_pyrepl_text_t *t, pr_str_t *s,
    ngx_log_t *log)
{
    u_char  *p;
    size_t   cap;

    if (t->len + s->len > t->cap) {
        cap = ngx_max(t->cap * 2, t->len + s->len);
        cap = ngx_max(cap, 4096);

        p = ngx_alloc(cap, log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (t->data) {
            ngx_memcpy(p, t->data, t->len);
            ngx_free(t->data);
        }

        t->data = p;
        t->cap = cap;
    }

    ngx_memcpy(t->data + t->len, s->data, s->len);
    t->len += s->len;

    return NGX_OK;
}


static void
ngx_http_pyrepl_run_client_write(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
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

    ngx_chain_update_chains(r->pool, &ctx->free, &ctx->busy, NULL,
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

    if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    ngx_http_pyrepl_peer_resume(&ctx->peer);
}


/* A client that closes its connection mid-run ends the request. */
static void
ngx_http_pyrepl_run_client_read(ngx_http_request_t *r)
{
    u_char             buf;
    ssize_t            n;
    ngx_err_t          err;
    ngx_connection_t  *c;

    c = r->connection;

    n = recv(c->fd, &buf, 1, MSG_PEEK);
    err = ngx_socket_errno;

    if (n == 0 || (n == -1 && err != NGX_EAGAIN && err != NGX_EINTR)) {
        ngx_log_error(NGX_LOG_INFO, c->log, n == 0 ? 0 : err,
                      "pyrepl: client closed the connection during a run");
        c->error = 1;
        ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
        return;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_ERROR);
    }
}


static void
ngx_http_pyrepl_run_ping(ngx_event_t *ev)
{
    ngx_int_t               rc;
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

    b->pos = ngx_http_pyrepl_ping_comment;
    b->last = b->pos + sizeof(ngx_http_pyrepl_ping_comment) - 1;
    b->memory = 1;
    b->flush = 1;
    cl->buf = b;
    cl->next = NULL;

    rc = ngx_http_output_filter(r, cl);

    if (rc == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    ngx_add_timer(ev, PYREPL_PING_INTERVAL);
}


/* timeout_ms reached: interrupt the run; it completes as "timeout". */
static void
ngx_http_pyrepl_run_deadline(ngx_event_t *ev)
{
    pr_frame_t              frame;
    ngx_http_pyrepl_run_t  *ctx;

    ctx = ev->data;
    ctx->timed_out = 1;

    ngx_memzero(&frame, sizeof(pr_frame_t));
    frame.type = PR_T_INTERRUPT;

    if (ngx_http_pyrepl_peer_send(&ctx->peer, ctx->request->pool, &frame)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                      "pyrepl: cannot interrupt session %*s at its deadline",
                      (size_t) PYREPL_ID_LEN, ctx->id);
    }
}


static void
ngx_http_pyrepl_run_cleanup(void *data)
{
    ngx_http_pyrepl_run_t  *ctx = data;

    if (!ctx->ended) {
        ngx_http_pyrepl_table_end_run(ctx->pmcf->shm_zone, ctx->id,
                                      PYREPL_STATE_IDLE, 0);
    }

    if (ctx->ping.timer_set) {
        ngx_del_timer(&ctx->ping);
    }

    if (ctx->deadline.timer_set) {
        ngx_del_timer(&ctx->deadline);
    }

    json_decref(ctx->result);
    json_decref(ctx->error);

    if (ctx->out.data) {
        ngx_free(ctx->out.data);
    }

    if (ctx->err.data) {
        ngx_free(ctx->err.data);
    }
}


/* The run's outcome in the counters pyrepl_status reports. */
static void
ngx_http_pyrepl_run_count(ngx_http_pyrepl_run_t *ctx, const char *status,
    ngx_msec_t ms)
{
    ngx_uint_t                   i;
    static const ngx_msec_t      bounds[] = PYREPL_RUN_BUCKETS;
    ngx_http_pyrepl_counters_t  *c;

    c = ngx_http_pyrepl_table_counters(ctx->pmcf->shm_zone);

    ngx_atomic_fetch_add(&c->runs[ngx_http_pyrepl_run_status(status)], 1);
    ngx_atomic_fetch_add(&c->run_ms_sum, ms);

    for (i = 0; i < PYREPL_RUN_NBUCKETS - 1 && ms > bounds[i]; i++) {
        /* void */
    }

    ngx_atomic_fetch_add(&c->run_buckets[i], 1);
}


/* "Accept: application/json" (and not text/event-stream) asks for JSON. */
static ngx_uint_t
ngx_http_pyrepl_accepts_json(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return 0;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("Accept") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Accept",
                               sizeof("Accept") - 1) == 0)
        {
            return ngx_strlcasestrn(h[i].value.data,
                                    h[i].value.data + h[i].value.len,
                                    (u_char *) "application/json",
                                    sizeof("application/json") - 2) != NULL
                   && ngx_strlcasestrn(h[i].value.data,
                                       h[i].value.data + h[i].value.len,
                                       (u_char *) "text/event-stream",
                                       sizeof("text/event-stream") - 2)
                      == NULL;
        }
    }
}


/* Session processes send valid UTF-8; anything else becomes U+FFFD. */
static json_t *
ngx_http_pyrepl_json_str(pr_str_t *s)
{
    json_t   *j;
    uint8_t  *clean;
    size_t    n;

    j = json_stringn(s->data ? s->data : "", s->len);

    if (j != NULL || s->len == 0) {
        return j;
    }

    clean = malloc(s->len * 3);
    if (clean == NULL) {
        return NULL;
    }

    n = pr_utf8_sanitize((const uint8_t *) s->data, s->len, clean);
    j = json_stringn((char *) clean, n);
    free(clean);

    return j;
}
