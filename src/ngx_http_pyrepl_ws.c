/*
 * ngx_http_pyrepl_ws.c: WebSocket connections, and GET /session/{id}/ws,
 * the WebSocket API.  The handshake (ngx_http_pyrepl_upgrade.c) answers
 * 101 and the connection is taken over from HTTP; from then on client
 * frames go through the RFC 6455 parser (src/codec/pyrepl_ws.c), control
 * frames are answered here and text and binary ones go to the
 * connection's protocol (ngx_http_pyrepl_ws_proto_t): Jupyter's channels
 * (ngx_http_pyrepl_jupyter_ws.c), or PyREPL's own, below.
 *
 * PyREPL's: each message is a JSON object ("pyrepl.msgpack" subprotocol:
 * the same as msgpack in binary frames) with a "type":
 *
 *   run        {id, code, timeout_ms, ...}: start a run (one at a time)
 *   input      {value, request_id?}: answer the run's input()
 *   interrupt  {}: KeyboardInterrupt in the run
 *
 * The run's events go back as {"type": event, "id": run id, ...data}, the
 * run being an exec (ngx_http_pyrepl_exec.c) in a pool of its own that is
 * destroyed when it completes.  Requests the server refuses are answered
 * {"type": "error", "id", "error": {"code", "message"}}.
 *
 * Output waits in a queue of frames; past PYREPL_WS_HIGH bytes (each frame
 * counted with PYREPL_WS_FRAME_COST more) the exec is
 * paused (the session process then blocks on its own writes), and the
 * client's own frames are not read (each may be answered: a pong, a refusal),
 * until the client has read the queue down to PYREPL_WS_LOW; output the
 * client does not take for send_timeout ends the connection.  Closing the
 * socket destroys the running exec, which the session takes as an interrupt.
 *
 * A graceful reload or quit lets a run finish, as it does an SSE stream:
 * from the upgrade on the connection's events come here, not to nginx's
 * request handler (which ends a request marked c->close without a close
 * frame), and the connection counts as idle only between runs.  So an
 * exiting worker closes an idle WebSocket with 1001 at once and one with
 * a run when the run completes (the run's watchdog timer keeps the worker
 * alive meanwhile, worker_shutdown_timeout bounds it); the send timer
 * keeps it alive until the close frame is out.
 */

#include "ngx_http_pyrepl_ws.h"

#include "ngx_http_pyrepl_exec.h"
#include "ngx_http_pyrepl_exec_parse.h"
#include "ngx_http_pyrepl_reply.h"
#include "ngx_http_pyrepl_table.h"
#include "ngx_http_pyrepl_upgrade.h"
#include "pyrepl_ws.h"
#include "pyrepl_mpjson.h"


#define PYREPL_WS_HIGH        (1024 * 1024)
#define PYREPL_WS_LOW         (256 * 1024)

/*
 * What a queued frame costs besides its bytes (its buffer, chain link and
 * allocation), counted in out_size: a flood of pings answered with 2-byte
 * pongs must not queue hundreds of thousands of them.
 */
#define PYREPL_WS_FRAME_COST  128
#define PYREPL_WS_READ_BUF    16384


static void ngx_http_pyrepl_ws_event_handler(ngx_event_t *ev);
static void ngx_http_pyrepl_ws_read(ngx_http_request_t *r);
static void ngx_http_pyrepl_ws_write(ngx_http_request_t *r);
static ngx_int_t ngx_http_pyrepl_ws_input(ngx_http_pyrepl_ws_t *ws,
    const u_char *p, size_t n);
static ngx_int_t ngx_http_pyrepl_ws_frame(ngx_http_pyrepl_ws_t *ws,
    pr_ws_frame_t *f);
static ngx_int_t ngx_http_pyrepl_ws_data(ngx_http_pyrepl_ws_t *ws,
    pr_ws_frame_t *f);
static ngx_int_t ngx_http_pyrepl_ws_message(ngx_http_pyrepl_ws_t *ws,
    json_t *msg);
static ngx_int_t ngx_http_pyrepl_ws_run(ngx_http_pyrepl_ws_t *ws,
    json_t *msg);
static ngx_int_t ngx_http_pyrepl_ws_event(ngx_http_pyrepl_exec_t *ex,
    const char *event, json_t *data);
static void ngx_http_pyrepl_ws_done(ngx_http_pyrepl_exec_t *ex,
    const char *status, ngx_uint_t count, ngx_msec_t ms);
static ngx_int_t ngx_http_pyrepl_ws_input_done(ngx_http_pyrepl_exec_t *ex,
    ngx_uint_t taken);
static ngx_int_t ngx_http_pyrepl_ws_refuse(ngx_http_pyrepl_ws_t *ws,
    json_t *id, const char *code, const char *message);
static ngx_int_t ngx_http_pyrepl_ws_refused(ngx_http_pyrepl_ws_t *ws,
    json_t *id, ngx_http_pyrepl_exec_t *ex);
static ngx_int_t ngx_http_pyrepl_ws_send_json(ngx_http_pyrepl_ws_t *ws,
    json_t *o);
static ngx_int_t ngx_http_pyrepl_ws_flush(ngx_http_pyrepl_ws_t *ws);
static void ngx_http_pyrepl_ws_finish(ngx_http_pyrepl_ws_t *ws);
static void ngx_http_pyrepl_ws_finish_handler(ngx_event_t *ev);
static void ngx_http_pyrepl_ws_cleanup(void *data);
static void ngx_http_pyrepl_ws_keepalive(ngx_event_t *ev);


/* PyREPL's own messages; "pyrepl.msgpack" makes them msgpack */
static const ngx_http_pyrepl_ws_proto_t  ngx_http_pyrepl_ws_pyrepl = {
    "pyrepl.msgpack",
    ngx_http_pyrepl_ws_data,
    NULL
};


ngx_int_t
ngx_http_pyrepl_ws_handler(ngx_http_request_t *r, u_char *id)
{
    return ngx_http_pyrepl_ws_open(r, id, &ngx_http_pyrepl_ws_pyrepl, NULL);
}


ngx_int_t
ngx_http_pyrepl_ws_open(ngx_http_request_t *r, u_char *id,
    const ngx_http_pyrepl_ws_proto_t *proto, void *data)
{
    ngx_int_t                    rc;
    ngx_uint_t                   chosen;
    const char                  *invalid;
    ngx_pool_cleanup_t          *cln;
    ngx_http_pyrepl_ws_t        *ws;
    ngx_http_core_loc_conf_t    *clcf;
    ngx_http_pyrepl_session_t    s;
    ngx_http_pyrepl_loc_conf_t  *plcf;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ws = ngx_pcalloc(r->pool, sizeof(ngx_http_pyrepl_ws_t));
    if (ws == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ws->request = r;
    ws->pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);
    ws->proto = proto;
    ws->data = data;
    ws->last_out = &ws->out;
    ws->finish.handler = ngx_http_pyrepl_ws_finish_handler;
    ws->finish.data = ws;
    ws->finish.log = r->connection->log;
    ngx_memcpy(ws->id, id, PYREPL_ID_LEN);

    if (ngx_http_pyrepl_table_get(ws->pmcf->shm_zone, id, &s) != NGX_OK) {
        return ngx_http_pyrepl_send_not_found(r, id);
    }

    invalid = ngx_http_pyrepl_upgrade(r, proto->subprotocol, &chosen);
    if (invalid) {
        return ngx_http_pyrepl_send_error(r, NGX_HTTP_BAD_REQUEST,
                                          "bad_request", "%s", invalid);
    }

    ws->subproto = chosen;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_pyrepl_module);

    pr_ws_parser_init(&ws->parser,
                      plcf->max_body_size ? (size_t) plcf->max_body_size
                                          : ws->pmcf->max_frame,
                      plcf->max_body_size ? (size_t) plcf->max_body_size
                                          : ws->pmcf->max_frame);

    ws->inputs = json_array();
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (ws->inputs == NULL || cln == NULL) {
        json_decref(ws->inputs);
        pr_ws_parser_free(&ws->parser);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_pyrepl_ws_cleanup;
    cln->data = ws;

    ngx_http_set_ctx(r, ws, ngx_http_pyrepl_module);

    r->headers_out.status = NGX_HTTP_SWITCHING_PROTOCOLS;
    r->headers_out.content_length_n = -1;
    r->keepalive = 0;

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    if (ngx_http_send_special(r, NGX_HTTP_FLUSH) == NGX_ERROR) {
        return NGX_ERROR;
    }

    r->main->count++;
    r->read_event_handler = ngx_http_pyrepl_ws_read;
    r->write_event_handler = ngx_http_pyrepl_ws_write;
    r->connection->read->handler = ngx_http_pyrepl_ws_event_handler;
    r->connection->write->handler = ngx_http_pyrepl_ws_event_handler;
    r->connection->log->action = "serving a pyrepl WebSocket";

    /* a graceful shutdown closes it (1001) between runs */
    r->connection->idle = 1;

    if (ws->pmcf->keepalive) {
        ws->keepalive.handler = ngx_http_pyrepl_ws_keepalive;
        ws->keepalive.data = ws;
        ws->keepalive.log = r->connection->log;
        ws->keepalive.cancelable = 1;
        ws->sent_at = ngx_current_msec;
        ngx_add_timer(&ws->keepalive, ngx_max(ws->pmcf->keepalive / 2, 1));
    }

    /* small frames each way: Nagle would hold them for the client's ACK */

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->tcp_nodelay && ngx_tcp_nodelay(r->connection) != NGX_OK) {
        return NGX_DONE;
    }

    /* frames the client sent right behind its handshake */

    if (r->header_in->pos < r->header_in->last) {
        rc = ngx_http_pyrepl_ws_input(ws, r->header_in->pos,
                                      r->header_in->last - r->header_in->pos);
        r->header_in->pos = r->header_in->last;

        if (rc != NGX_OK) {
            return NGX_DONE;
        }
    }

    ngx_http_pyrepl_ws_read(r);

    return NGX_DONE;
}


/*
 * Every event of the upgraded connection.  c->close: an exiting worker
 * closes its idle connections, and at worker_shutdown_timeout all of
 * them; either way the client gets a close frame.
 */
static void
ngx_http_pyrepl_ws_event_handler(ngx_event_t *ev)
{
    ngx_connection_t      *c;
    ngx_http_request_t    *r;
    ngx_http_pyrepl_ws_t  *ws;

    c = ev->data;
    r = c->data;
    ws = ngx_http_get_module_ctx(r, ngx_http_pyrepl_module);

    if (ev->write && ev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "pyrepl: WebSocket client timed out");
        c->timedout = 1;
        ngx_http_pyrepl_ws_finish(ws);
        return;
    }

    if (c->close) {
        ngx_http_pyrepl_ws_close(ws, PR_WS_CLOSE_GOING_AWAY,
                                 "server shutting down");

        /*
         * An exiting worker looks for open connections before it runs
         * posted events: end the request now if the frame is out.
         */
        if (ws->finish.posted) {
            ngx_delete_posted_event(&ws->finish);
            ngx_http_pyrepl_ws_finish_handler(&ws->finish);
        }

        return;
    }

    if (ev->write) {
        ngx_http_pyrepl_ws_write(r);

    } else {
        ngx_http_pyrepl_ws_read(r);
    }
}


static void
ngx_http_pyrepl_ws_read(ngx_http_request_t *r)
{
    u_char                 buf[PYREPL_WS_READ_BUF];
    ssize_t                n;
    ngx_connection_t      *c;
    ngx_http_pyrepl_ws_t  *ws;

    ws = ngx_http_get_module_ctx(r, ngx_http_pyrepl_module);
    c = r->connection;

    while (!ws->finished) {
        if (ws->out_size > PYREPL_WS_HIGH) {
            /* until the client reads its answers (ngx_http_pyrepl_ws_flush) */
            ws->deaf = 1;
            return;
        }

        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_http_pyrepl_ws_finish(ws);
            return;
        }

        if (ngx_http_pyrepl_ws_input(ws, buf, n) != NGX_OK) {
            return;
        }
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_pyrepl_ws_finish(ws);
    }
}


/*
 * Feed client bytes to the parser and act on what it yields.  Returns
 * NGX_OK to read on, or NGX_DONE when the connection is closing or gone.
 */
static ngx_int_t
ngx_http_pyrepl_ws_input(ngx_http_pyrepl_ws_t *ws, const u_char *p, size_t n)
{
    int            rc;
    size_t         used;
    pr_ws_frame_t  f;

    while (!ws->finished && n > 0) {
        rc = pr_ws_parse(&ws->parser, p, n, &used, &f);

        if (rc == PR_WS_AGAIN) {
            return NGX_OK;
        }

        if (rc != PR_WS_FRAME) {
            ngx_log_error(NGX_LOG_INFO, ws->request->connection->log, 0,
                          "pyrepl: WebSocket closed: %s",
                          pr_ws_parser_error(&ws->parser));
            ngx_http_pyrepl_ws_close(ws, pr_ws_close_status(rc),
                                     pr_ws_parser_error(&ws->parser));
            return NGX_DONE;
        }

        p += used;
        n -= used;

        if (ngx_http_pyrepl_ws_frame(ws, &f) != NGX_OK) {
            return NGX_DONE;
        }
    }

    return ws->finished ? NGX_DONE : NGX_OK;
}


static ngx_int_t
ngx_http_pyrepl_ws_frame(ngx_http_pyrepl_ws_t *ws, pr_ws_frame_t *f)
{
    ws->pinged = 0;             /* the client is there */

    switch (f->opcode) {

    case PR_WS_OP_PING:
        return ngx_http_pyrepl_ws_send_frame(ws, PR_WS_OP_PONG, f->payload,
                                             f->len);

    case PR_WS_OP_PONG:
        return NGX_OK;          /* (every frame clears ws->pinged) */

    case PR_WS_OP_CLOSE:
        ngx_http_pyrepl_ws_close(ws, f->close_code == PR_WS_CLOSE_NO_STATUS
                                     ? PR_WS_CLOSE_NORMAL : f->close_code,
                                 NULL);
        return NGX_DONE;

    default:                    /* text, binary: the protocol's */
        return ws->proto->message(ws, f);
    }
}


/* A PyREPL message: JSON in a text frame, msgpack in a binary one. */
static ngx_int_t
ngx_http_pyrepl_ws_data(ngx_http_pyrepl_ws_t *ws, pr_ws_frame_t *f)
{
    json_t            *msg;
    json_error_t       jerr;
    msgpack_unpacked   up;

    switch (f->opcode) {

    case PR_WS_OP_TEXT:
        msg = json_loadb((char *) f->payload, f->len, JSON_REJECT_DUPLICATES,
                         &jerr);
        break;

    default: /* PR_WS_OP_BINARY */
        msgpack_unpacked_init(&up);
        msg = NULL;

        if (msgpack_unpack_next(&up, (char *) f->payload, f->len, NULL)
            == MSGPACK_UNPACK_SUCCESS)
        {
            msg = pr_msgpack_to_json(&up.data);
        }

        msgpack_unpacked_destroy(&up);
        break;
    }

    if (msg == NULL || !json_is_object(msg)) {
        json_decref(msg);
        return ngx_http_pyrepl_ws_refuse(ws, NULL, "bad_request",
                                         "a message must be one JSON object "
                                         "(msgpack map in binary frames)");
    }

    return ngx_http_pyrepl_ws_message(ws, msg);
}


/* One client message (reference stolen). */
static ngx_int_t
ngx_http_pyrepl_ws_message(ngx_http_pyrepl_ws_t *ws, json_t *msg)
{
    json_t      *value, *rid, *id;
    ngx_int_t    rc;
    const char  *type;

    type = json_string_value(json_object_get(msg, "type"));
    id = json_object_get(msg, "id");

    if (type == NULL) {
        rc = ngx_http_pyrepl_ws_refuse(ws, id, "bad_request",
                                       "\"type\" must be run, input or "
                                       "interrupt");

    } else if (ngx_strcmp(type, "run") == 0) {
        rc = ngx_http_pyrepl_ws_run(ws, msg);

    } else if (ngx_strcmp(type, "interrupt") == 0) {
        rc = NGX_OK;
        if (ws->exec) {
            (void) ngx_http_pyrepl_exec_interrupt(ws->exec);
        }

    } else if (ngx_strcmp(type, "input") == 0) {
        value = json_object_get(msg, "value");
        rid = json_object_get(msg, "request_id");

        if (!json_is_string(value) || (rid && !json_is_string(rid))) {
            rc = ngx_http_pyrepl_ws_refuse(ws, id, "bad_request",
                                           "\"value\" must be a string");

        } else if (ws->exec == NULL
                   || ngx_http_pyrepl_exec_input(ws->exec, value, rid)
                      != NGX_OK)
        {
            rc = ngx_http_pyrepl_ws_refuse(ws, id, "no_pending_input",
                                           "no run is waiting for input");

        } else {
            /* the session answers it in order: ngx_http_pyrepl_ws_input_done */
            rc = json_array_append(ws->inputs, id ? id : json_null()) == 0
                 ? NGX_OK : NGX_ERROR;
        }

    } else {
        rc = ngx_http_pyrepl_ws_refuse(ws, id, "bad_request",
                                       "\"type\" must be run, input or "
                                       "interrupt");
    }

    json_decref(msg);

    return rc;
}


/* {"type": "run", "id", "code", ...}: start an exec in a pool of its own. */
static ngx_int_t
ngx_http_pyrepl_ws_run(ngx_http_pyrepl_ws_t *ws, json_t *msg)
{
    json_t                  *id;
    ngx_int_t                rc;
    ngx_pool_t              *pool;
    ngx_http_pyrepl_exec_t  *ex;

    id = json_object_get(msg, "id");

    pool = ngx_create_pool(4096, ws->request->connection->log);
    if (pool == NULL) {
        return ngx_http_pyrepl_ws_refuse(ws, id, "unavailable",
                                         "out of memory");
    }

    ex = ngx_pcalloc(pool, sizeof(ngx_http_pyrepl_exec_t));
    if (ex == NULL) {
        ngx_destroy_pool(pool);
        return ngx_http_pyrepl_ws_refuse(ws, id, "unavailable",
                                         "out of memory");
    }

    ex->pool = pool;
    ex->log = ws->request->connection->log;
    ex->pmcf = ws->pmcf;
    ex->data = ws;
    ex->event = ngx_http_pyrepl_ws_event;
    ex->done = ngx_http_pyrepl_ws_done;
    ex->input_done = ngx_http_pyrepl_ws_input_done;
    ex->interactive = 1;
    ngx_memcpy(ex->id, ws->id, PYREPL_ID_LEN);

    if (ws->exec) {
        ex->refusal = PYREPL_REFUSED_RUNNING;   /* one run at a time here */
        rc = NGX_DECLINED;

    } else {
        rc = ngx_http_pyrepl_exec_parse(ex, msg);

        if (rc == NGX_OK) {
            rc = ngx_http_pyrepl_exec_reserve(ex);
        }
    }

    if (rc != NGX_OK) {
        rc = (rc == NGX_DECLINED)
             ? ngx_http_pyrepl_ws_refused(ws, id, ex)
             : ngx_http_pyrepl_ws_refuse(ws, id, "unavailable",
                                         "out of memory");
        ngx_destroy_pool(pool);
        return rc;
    }

    ngx_http_pyrepl_ws_busy(ws, ex);
    ws->run_id = json_incref(id ? id : json_null());

    rc = ngx_http_pyrepl_exec_start(ex);

    if (rc == NGX_ERROR) {
        ngx_http_pyrepl_ws_end_exec(ws);
        ngx_http_pyrepl_ws_idle(ws);
        return ngx_http_pyrepl_ws_refuse(ws, id, "unavailable",
                                         "the run could not start");
    }

    return ws->finished ? NGX_DONE : NGX_OK;
}


static ngx_int_t
ngx_http_pyrepl_ws_event(ngx_http_pyrepl_exec_t *ex, const char *event,
    json_t *data)
{
    ngx_http_pyrepl_ws_t  *ws;

    ws = ex->data;

    if (data == NULL
        || json_object_set_new(data, "type", json_string(event)) != 0
        || json_object_set(data, "id", ws->run_id) != 0)
    {
        json_decref(data);
        ngx_http_pyrepl_ws_close(ws, PR_WS_CLOSE_INTERNAL_ERROR,
                                 "out of memory");
        return NGX_ERROR;
    }

    if (ngx_http_pyrepl_ws_send_json(ws, data) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_pyrepl_ws_backpressure(ws, ex);
}


ngx_int_t
ngx_http_pyrepl_ws_backpressure(ngx_http_pyrepl_ws_t *ws,
    ngx_http_pyrepl_exec_t *ex)
{
    if (ws->out_size > PYREPL_WS_HIGH) {
        ws->paused = 1;
        ngx_http_pyrepl_exec_pause(ex);
        return NGX_AGAIN;
    }

    return NGX_OK;
}


/*
 * The session took the oldest input message not answered yet, or refused
 * it: no_pending_input, as POST .../input answers 409.
 */
static ngx_int_t
ngx_http_pyrepl_ws_input_done(ngx_http_pyrepl_exec_t *ex, ngx_uint_t taken)
{
    json_t                *id;
    ngx_int_t              rc;
    ngx_http_pyrepl_ws_t  *ws;

    ws = ex->data;

    id = json_incref(json_array_get(ws->inputs, 0));
    (void) json_array_remove(ws->inputs, 0);

    rc = NGX_OK;

    if (!taken) {
        rc = ngx_http_pyrepl_ws_refuse(ws, json_is_null(id) ? NULL : id,
                                       "no_pending_input",
                                       "no input() is waiting (or its "
                                       "request_id is another one)");
    }

    json_decref(id);

    return rc;
}


static void
ngx_http_pyrepl_ws_done(ngx_http_pyrepl_exec_t *ex, const char *status,
    ngx_uint_t count, ngx_msec_t ms)
{
    json_t                *data;
    ngx_http_pyrepl_ws_t  *ws;

    ws = ex->data;

    data = json_pack("{s:s,s:O,s:s,s:I,s:I}",
                     "type", "execution_complete",
                     "id", ws->run_id,
                     "status", status,
                     "execution_count", (json_int_t) count,
                     "duration_ms", (json_int_t) ms);

    if (data && ngx_http_pyrepl_exec_summary(ex, data) != NGX_OK) {
        json_decref(data);
        data = NULL;
    }

    ngx_http_pyrepl_ws_end_exec(ws);

    if (data == NULL) {
        ngx_http_pyrepl_ws_close(ws, PR_WS_CLOSE_INTERNAL_ERROR,
                                 "out of memory");
        return;
    }

    if (ngx_http_pyrepl_ws_send_json(ws, data) == NGX_OK) {
        ngx_http_pyrepl_ws_idle(ws);
    }
}


void
ngx_http_pyrepl_ws_busy(ngx_http_pyrepl_ws_t *ws, ngx_http_pyrepl_exec_t *ex)
{
    ws->exec = ex;

    /* a graceful shutdown waits for the run (ngx_http_pyrepl_ws_idle) */
    ws->request->connection->idle = 0;
}


/*
 * Between runs: an exiting worker closes the connection now, as it
 * closed its idle ones when it began to exit; else it is idle again.
 */
void
ngx_http_pyrepl_ws_idle(ngx_http_pyrepl_ws_t *ws)
{
    if (ws->finished || ws->closing) {
        return;
    }

    if (ngx_exiting || ngx_terminate) {
        ngx_http_pyrepl_ws_close(ws, PR_WS_CLOSE_GOING_AWAY,
                                 "server shutting down");
        return;
    }

    ws->request->connection->idle = 1;
}


static ngx_int_t
ngx_http_pyrepl_ws_refuse(ngx_http_pyrepl_ws_t *ws, json_t *id,
    const char *code, const char *message)
{
    json_t  *o;

    o = json_pack("{s:s,s:O,s:{s:s,s:s}}", "type", "error",
                  "id", id ? id : json_null(),
                  "error", "code", code, "message", message);

    if (o == NULL) {
        ngx_http_pyrepl_ws_close(ws, PR_WS_CLOSE_INTERNAL_ERROR,
                                 "out of memory");
        return NGX_DONE;
    }

    return ngx_http_pyrepl_ws_send_json(ws, o);
}


/* A run that did not start, refused with its error. */
static ngx_int_t
ngx_http_pyrepl_ws_refused(ngx_http_pyrepl_ws_t *ws, json_t *id,
    ngx_http_pyrepl_exec_t *ex)
{
    const char  *code, *message;

    (void) ngx_http_pyrepl_exec_refusal(ex, &code, &message);

    return ngx_http_pyrepl_ws_refuse(ws, id, code, message);
}


/* Queue o (reference stolen) as a text or, with msgpack, binary frame. */
static ngx_int_t
ngx_http_pyrepl_ws_send_json(ngx_http_pyrepl_ws_t *ws, json_t *o)
{
    char             *text;
    ngx_int_t         rc;
    msgpack_packer    pk;
    msgpack_sbuffer   sb;

    if (ws->subproto) {
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);

        rc = (pr_json_to_msgpack(o, &pk) == 0)
             ? ngx_http_pyrepl_ws_send_frame(ws, PR_WS_OP_BINARY,
                                             (u_char *) sb.data, sb.size)
             : NGX_ERROR;

        msgpack_sbuffer_destroy(&sb);

    } else {
        text = json_dumps(o, JSON_COMPACT);

        rc = text ? ngx_http_pyrepl_ws_send_frame(ws, PR_WS_OP_TEXT,
                                                  (u_char *) text,
                                                  ngx_strlen(text))
                  : NGX_ERROR;
        free(text);
    }

    json_decref(o);

    if (rc == NGX_ERROR && !ws->finished) {
        ngx_http_pyrepl_ws_close(ws, PR_WS_CLOSE_INTERNAL_ERROR,
                                 "cannot encode a message");
    }

    return rc == NGX_ERROR ? NGX_DONE : rc;
}


/*
 * Queue one server frame and start writing.  Returns NGX_OK, or NGX_DONE
 * when the connection is gone (or going).
 */
ngx_int_t
ngx_http_pyrepl_ws_send_frame(ngx_http_pyrepl_ws_t *ws, int opcode,
    const u_char *payload, size_t len)
{
    u_char             hdr[PR_WS_MAX_SERVER_HDR];
    size_t             hlen;
    ngx_buf_t         *b;
    ngx_chain_t       *cl;
    ngx_connection_t  *c;

    if (ws->finished || ws->closing) {
        return ws->finished ? NGX_DONE : NGX_OK;
    }

    hlen = pr_ws_header(hdr, opcode, 1, len);
    if (hlen == 0) {
        ngx_http_pyrepl_ws_close(ws, PR_WS_CLOSE_INTERNAL_ERROR,
                                 "bad frame");
        return NGX_DONE;
    }

    cl = ngx_chain_get_free_buf(ws->request->pool, &ws->free);
    if (cl == NULL) {
        ngx_http_pyrepl_ws_finish(ws);
        return NGX_DONE;
    }

    b = cl->buf;
    ngx_memzero(b, sizeof(ngx_buf_t));

    b->start = ngx_alloc(hlen + len, ws->request->connection->log);
    if (b->start == NULL) {
        ngx_http_pyrepl_ws_finish(ws);
        return NGX_DONE;
    }

    b->pos = b->start;
    b->last = ngx_cpymem(b->start, hdr, hlen);
    b->last = ngx_cpymem(b->last, payload, len);
    b->end = b->last;
    b->temporary = 1;

    cl->next = NULL;
    *ws->last_out = cl;
    ws->last_out = &cl->next;
    ws->out_size += hlen + len + PYREPL_WS_FRAME_COST;
    ws->sent_at = ngx_current_msec;

    /*
     * A message goes out from the write event, posted: the events a
     * session's frames bring in one pass of the loop (a run's result,
     * then its end) leave in one write.  Control frames go at once, with
     * whatever waits before them: a close must be out before an exiting
     * worker looks for open connections.
     */

    c = ws->request->connection;

    if (opcode == PR_WS_OP_TEXT || opcode == PR_WS_OP_BINARY) {
        if (!c->write->posted) {
            ngx_post_event(c->write, &ngx_posted_events);
        }

        return NGX_OK;
    }

    if (ngx_http_pyrepl_ws_flush(ws) == NGX_ERROR) {
        ngx_http_pyrepl_ws_finish(ws);
        return NGX_DONE;
    }

    return NGX_OK;
}


/*
 * Write the queued frames, in one writev(2) as far as the socket takes
 * them.  Returns NGX_OK (all written), NGX_AGAIN, or NGX_ERROR.
 */
static ngx_int_t
ngx_http_pyrepl_ws_flush(ngx_http_pyrepl_ws_t *ws)
{
    off_t                      sent;
    ngx_chain_t               *cl, *rest;
    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_http_core_loc_conf_t  *clcf;

    r = ws->request;
    c = r->connection;

    /* the 101 answer may still wait in the HTTP output chain */

    if ((r->out || c->buffered)
        && ngx_http_output_filter(r, NULL) == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    if (!r->out && !c->buffered && ws->out) {
        sent = c->sent;
        rest = c->send_chain(c, ws->out, 0);

        if (rest == NGX_CHAIN_ERROR) {
            return NGX_ERROR;
        }

        ws->out_size -= c->sent - sent;

        while (ws->out != rest) {
            cl = ws->out;
            ws->out = cl->next;

            ngx_free(cl->buf->start);
            cl->buf->start = NULL;
            ws->out_size -= PYREPL_WS_FRAME_COST;

            cl->next = ws->free;
            ws->free = cl;
        }

        if (ws->out == NULL) {
            ws->last_out = &ws->out;
        }
    }

    if (r->out || c->buffered || ws->out) {
        /* the client takes no more for now: wait, for send_timeout */
        if (!c->write->timer_set) {
            clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
            ngx_add_timer(c->write, clcf->send_timeout);
        }

        return ngx_handle_write_event(c->write, 0) == NGX_OK
               ? NGX_AGAIN : NGX_ERROR;
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (ws->deaf && ws->out_size <= PYREPL_WS_LOW) {
        ws->deaf = 0;
        ngx_post_event(c->read, &ngx_posted_events);
    }

    if (ws->paused && ws->out_size <= PYREPL_WS_LOW && ws->exec) {
        ws->paused = 0;
        ngx_http_pyrepl_exec_resume(ws->exec);
    }

    if (ws->closing) {
        /* our close frame is out: the connection is done */
        ngx_http_pyrepl_ws_finish(ws);
    }

    return NGX_OK;
}


static void
ngx_http_pyrepl_ws_write(ngx_http_request_t *r)
{
    ngx_http_pyrepl_ws_t  *ws;

    ws = ngx_http_get_module_ctx(r, ngx_http_pyrepl_module);

    if (ngx_http_pyrepl_ws_flush(ws) == NGX_ERROR) {
        ngx_http_pyrepl_ws_finish(ws);
    }
}


/* Queue a close frame; the connection ends once it is written. */
void
ngx_http_pyrepl_ws_close(ngx_http_pyrepl_ws_t *ws, uint16_t code,
    const char *reason)
{
    u_char  payload[PR_WS_MAX_CONTROL];
    size_t  len;

    if (ws->closing || ws->finished) {
        return;
    }

    ngx_http_pyrepl_ws_end_exec(ws);

    len = pr_ws_close_payload(payload, code, reason,
                              reason ? ngx_strlen(reason) : 0);

    if (ngx_http_pyrepl_ws_send_frame(ws, PR_WS_OP_CLOSE, payload, len)
        != NGX_OK)
    {
        return;
    }

    ws->closing = 1;

    if (ws->out == NULL) {
        ngx_http_pyrepl_ws_finish(ws);
    }
}


/*
 * The connection is over.  The request ends from a posted event, so that
 * whatever called this may still use ws until it returns to the loop.
 */
static void
ngx_http_pyrepl_ws_finish(ngx_http_pyrepl_ws_t *ws)
{
    if (ws->finished) {
        return;
    }

    ws->finished = 1;
    ngx_post_event(&ws->finish, &ngx_posted_events);
}


static void
ngx_http_pyrepl_ws_finish_handler(ngx_event_t *ev)
{
    ngx_http_pyrepl_ws_t  *ws = ev->data;

    /* keepalive is off since the 101, so this closes the connection */
    ngx_http_finalize_request(ws->request, NGX_OK);
}


/* Drop the running exec, if any: closing its peer interrupts the run. */
void
ngx_http_pyrepl_ws_end_exec(ngx_http_pyrepl_ws_t *ws)
{
    ngx_pool_t  *pool;

    if (ws->exec == NULL) {
        return;
    }

    pool = ws->exec->pool;
    ws->exec = NULL;
    ws->paused = 0;

    (void) json_array_clear(ws->inputs);

    json_decref(ws->run_id);
    ws->run_id = NULL;

    ngx_destroy_pool(pool);
}


static void
ngx_http_pyrepl_ws_cleanup(void *data)
{
    ngx_http_pyrepl_ws_t  *ws = data;

    ngx_chain_t  *cl;

    ws->finished = 1;

    if (ws->finish.posted) {
        ngx_delete_posted_event(&ws->finish);
    }

    if (ws->keepalive.timer_set) {
        ngx_del_timer(&ws->keepalive);
    }

    ngx_http_pyrepl_ws_end_exec(ws);

    if (ws->proto->cleanup) {
        ws->proto->cleanup(ws);
    }

    for (cl = ws->out; cl; cl = cl->next) {
        ngx_free(cl->buf->start);
    }

    ws->out = NULL;

    json_decref(ws->inputs);
    ws->inputs = NULL;

    pr_ws_parser_free(&ws->parser);
}


/*
 * Twice every pyrepl_keepalive: a socket nothing was sent on for half of
 * it gets a ping, so that proxies in between (proxy_read_timeout) never
 * hear nothing for a whole one; one whose client sent nothing for a whole
 * one since a ping, not even the pong, is closed (1001).  A client whose
 * frames are not being read (ws->deaf: it does not take its output) is
 * judged by send_timeout instead.
 */
static void
ngx_http_pyrepl_ws_keepalive(ngx_event_t *ev)
{
    ngx_msec_t             half;
    ngx_http_pyrepl_ws_t  *ws;

    ws = ev->data;

    if (ws->finished || ws->closing) {
        return;
    }

    half = ngx_max(ws->pmcf->keepalive / 2, 1);

    if (ws->pinged && !ws->deaf
        && ngx_current_msec - ws->pinged_at >= ws->pmcf->keepalive)
    {
        ngx_log_error(NGX_LOG_INFO, ev->log, 0,
                      "pyrepl: WebSocket client stopped answering pings");
        ngx_http_pyrepl_ws_close(ws, PR_WS_CLOSE_GOING_AWAY,
                                 "no answer to pings");
        return;
    }

    if (ngx_current_msec - ws->sent_at >= half) {
        if (ngx_http_pyrepl_ws_send_frame(ws, PR_WS_OP_PING,
                                          (u_char *) "pyrepl", 6)
            == NGX_DONE)
        {
            return;
        }

        if (!ws->pinged && !ws->deaf) {
            ws->pinged = 1;
            ws->pinged_at = ngx_current_msec;
        }
    }

    ngx_add_timer(ev, half);
}
