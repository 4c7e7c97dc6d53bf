/*
 * ngx_http_pyrepl_run.c: POST /session/{id}/run, the HTTP sinks of an exec
 * (ngx_http_pyrepl_exec.c): SSE events as they arrive (init, stdout,
 * stderr, result, error, execution_complete), or with "Accept:
 * application/json" one JSON document at the end.
 *
 * Flow control: when the client cannot take more (the output filter says
 * NGX_AGAIN), the exec is paused, so the session process blocks on its own
 * writes and nothing grows without bound here; the client's write event
 * resumes it.  A client that goes away finalizes the request, whose pool
 * cleanup closes the session connection, which the session process takes
 * as an interrupt of the run.
 */

#include "ngx_http_pyrepl_module.h"


#define PYREPL_PING_INTERVAL  15000
#define PYREPL_SSE_MIN_BUF    8192


typedef struct {
    u_char                      *data;
    size_t                       len;
    size_t                       cap;
} ngx_http_pyrepl_text_t;


typedef struct {
    ngx_http_pyrepl_exec_t       exec;
    ngx_http_request_t          *request;

    ngx_uint_t                   seq;           /* SSE "id:" of the next */
    ngx_chain_t                 *free;
    ngx_chain_t                 *busy;
    ngx_event_t                  ping;

    /* the JSON answer, built as events arrive */
    ngx_http_pyrepl_text_t       out;
    ngx_http_pyrepl_text_t       err;
    json_t                      *result;
    json_t                      *error;

    unsigned                     json:1;        /* Accept: application/json */
} ngx_http_pyrepl_run_t;


static void ngx_http_pyrepl_run_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_pyrepl_run_start(ngx_http_request_t *r,
    ngx_http_pyrepl_run_t *ctx);
static ngx_int_t ngx_http_pyrepl_sse_event(ngx_http_pyrepl_exec_t *ex,
    const char *event, json_t *data);
static void ngx_http_pyrepl_sse_done(ngx_http_pyrepl_exec_t *ex,
    const char *status, ngx_uint_t count, ngx_msec_t ms);
static ngx_int_t ngx_http_pyrepl_sse_write(ngx_http_pyrepl_run_t *ctx,
    const char *event, json_t *data, ngx_uint_t last);
static ngx_int_t ngx_http_pyrepl_json_event(ngx_http_pyrepl_exec_t *ex,
    const char *event, json_t *data);
static void ngx_http_pyrepl_json_done(ngx_http_pyrepl_exec_t *ex,
    const char *status, ngx_uint_t count, ngx_msec_t ms);
static ngx_int_t ngx_http_pyrepl_run_send_headers(ngx_http_request_t *r);
static ngx_int_t ngx_http_pyrepl_text_append(ngx_http_pyrepl_text_t *t,
    json_t *text, ngx_log_t *log);
static void ngx_http_pyrepl_run_client_write(ngx_http_request_t *r);
static void ngx_http_pyrepl_run_client_read(ngx_http_request_t *r);
static void ngx_http_pyrepl_run_ping(ngx_event_t *ev);
static void ngx_http_pyrepl_run_cleanup(void *data);
static ngx_uint_t ngx_http_pyrepl_accepts_json(ngx_http_request_t *r);


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

    cln->handler = ngx_http_pyrepl_run_cleanup;
    cln->data = ctx;

    ctx->request = r;
    ctx->exec.pool = r->pool;
    ctx->exec.log = r->connection->log;
    ctx->exec.pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);
    ctx->exec.data = ctx;
    ngx_memcpy(ctx->exec.id, id, PYREPL_ID_LEN);

    ngx_http_set_ctx(r, ctx, ngx_http_pyrepl_module);

    return ngx_http_pyrepl_read_body(r, ngx_http_pyrepl_run_body_handler);
}


static void
ngx_http_pyrepl_run_body_handler(ngx_http_request_t *r)
{
    json_t                 *body;
    ngx_int_t               rc;
    const char             *invalid;
    ngx_http_pyrepl_run_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_pyrepl_module);

    if (ngx_http_pyrepl_read_json_body(r, &body) != NGX_OK) {
        return;
    }

    ctx->exec.opensandbox = (ngx_http_pyrepl_dialect(r)
                             == PYREPL_DIALECT_OPENSANDBOX);

    invalid = ngx_http_pyrepl_exec_parse(&ctx->exec, body);
    json_decref(body);

    if (invalid) {
        if (ctx->exec.too_large) {
            ngx_http_pyrepl_finalize_error(r,
                                           NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                           "too_large", invalid);
            return;
        }

        ngx_http_pyrepl_finalize_error(r, NGX_HTTP_BAD_REQUEST,
                                       "bad_request", invalid);
        return;
    }

    ctx->json = ngx_http_pyrepl_accepts_json(r);
    ctx->exec.interactive = !ctx->json;
    ctx->exec.event = ctx->json ? ngx_http_pyrepl_json_event
                                : ngx_http_pyrepl_sse_event;
    ctx->exec.done = ctx->json ? ngx_http_pyrepl_json_done
                               : ngx_http_pyrepl_sse_done;

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
    ngx_int_t                  rc;
    ngx_http_core_loc_conf_t  *clcf;

    rc = ngx_http_pyrepl_exec_reserve(&ctx->exec);

    if (rc == NGX_DECLINED) {
        ngx_http_finalize_request(r,
            ngx_http_pyrepl_send_not_found(r, ctx->exec.id));
        return NGX_DONE;
    }

    if (rc == NGX_BUSY) {
        ngx_http_pyrepl_finalize_error(r, NGX_HTTP_CONFLICT, "session_busy",
                                       "the session is running code");
        return NGX_DONE;
    }

    if (rc == NGX_AGAIN) {
        ngx_http_pyrepl_finalize_error(r, NGX_HTTP_CONFLICT,
                                       "transaction_pending",
                                       "the last run waits for a commit or "
                                       "a rollback");
        return NGX_DONE;
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->read_event_handler = ngx_http_pyrepl_run_client_read;
    r->write_event_handler = ngx_http_pyrepl_run_client_write;

    if (!ctx->json) {
        rc = ngx_http_pyrepl_run_send_headers(r);
        if (rc == NGX_ERROR || rc > NGX_OK) {
            return rc;
        }

        /*
         * nginx turns Nagle off only when a connection goes keepalive; a
         * stream of small events on a first request needs it off now
         */

        clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

        if (clcf->tcp_nodelay && ngx_tcp_nodelay(r->connection) != NGX_OK) {
            return NGX_ERROR;
        }

        ctx->ping.handler = ngx_http_pyrepl_run_ping;
        ctx->ping.data = ctx;
        ctx->ping.log = r->connection->log;
        ctx->ping.cancelable = 1;
        ngx_add_timer(&ctx->ping, PYREPL_PING_INTERVAL);
    }

    rc = ngx_http_pyrepl_exec_start(&ctx->exec);

    return rc == NGX_ERROR ? NGX_ERROR : NGX_OK;
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
    json_t                 *data;
    ngx_int_t               rc;
    ngx_http_pyrepl_run_t  *ctx;

    ctx = ex->data;

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
    size_t                     jlen, size;
    ngx_int_t                  rc;
    ngx_buf_t                 *b;
    ngx_chain_t               *cl;
    ngx_http_request_t        *r;
    ngx_http_core_loc_conf_t  *clcf;

    r = ctx->request;

    if (data != NULL && ctx->exec.opensandbox) {
        data = ngx_http_pyrepl_opensandbox_event(event, data);
    }

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
        ngx_http_pyrepl_exec_pause(&ctx->exec);

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


/* JSON mode: collect the events into the one document of the answer. */
static ngx_int_t
ngx_http_pyrepl_json_event(ngx_http_pyrepl_exec_t *ex, const char *event,
    json_t *data)
{
    ngx_int_t               rc;
    ngx_http_pyrepl_run_t  *ctx;

    ctx = ex->data;
    rc = NGX_OK;

    if (data == NULL) {
        rc = NGX_ERROR;

    } else if (ngx_strcmp(event, "stdout") == 0
               || ngx_strcmp(event, "stderr") == 0)
    {
        rc = ngx_http_pyrepl_text_append(event[3] == 'o' ? &ctx->out
                                                         : &ctx->err,
                                         json_object_get(data, "text"),
                                         ex->log);
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


static void
ngx_http_pyrepl_json_done(ngx_http_pyrepl_exec_t *ex, const char *status,
    ngx_uint_t count, ngx_msec_t ms)
{
    json_t                 *doc;
    ngx_http_pyrepl_run_t  *ctx;

    ctx = ex->data;

    if (ex->refused) {
        ngx_http_pyrepl_finalize_error(ctx->request, NGX_HTTP_CONFLICT,
                                       "session_busy",
                                       "the session is still finishing an "
                                       "earlier run");
        return;
    }

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

    if (doc && ngx_http_pyrepl_exec_summary(ex, doc) != NGX_OK) {
        json_decref(doc);
        doc = NULL;
    }

    ngx_http_finalize_request(ctx->request,
                              doc ? ngx_http_pyrepl_send_json(ctx->request,
                                                              NGX_HTTP_OK,
                                                              doc)
                                  : NGX_HTTP_INTERNAL_SERVER_ERROR);
}


static ngx_int_t
ngx_http_pyrepl_run_send_headers(ngx_http_request_t *r)
{
    ngx_table_elt_t  *h;

    r->headers_out.status = NGX_HTTP_OK;
    ngx_str_set(&r->headers_out.content_type,
                "text/event-stream; charset=utf-8");
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
ngx_http_pyrepl_text_append(ngx_http_pyrepl_text_t *t, json_t *text,
    ngx_log_t *log)
{
    u_char  *p;
    size_t   cap, len;

    if (!json_is_string(text)) {
        return NGX_ERROR;
    }

    len = json_string_length(text);

    if (t->len + len > t->cap) {
        cap = ngx_max(t->cap * 2, t->len + len);
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

    ngx_memcpy(t->data + t->len, json_string_value(text), len);
    t->len += len;

    return NGX_OK;
}


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

    if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    ngx_http_pyrepl_exec_resume(&ctx->exec);
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

    if (ngx_http_output_filter(r, cl) == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    ngx_add_timer(ev, PYREPL_PING_INTERVAL);
}


static void
ngx_http_pyrepl_run_cleanup(void *data)
{
    ngx_http_pyrepl_run_t  *ctx = data;

    if (ctx->ping.timer_set) {
        ngx_del_timer(&ctx->ping);
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
