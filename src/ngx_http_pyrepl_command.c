/*
 * ngx_http_pyrepl_command.c: execd's background commands, for locations
 * of the "opensandbox" dialect (ngx_http_pyrepl_opensandbox.c routes
 * them):
 *
 *   POST /command {command, background: true, cwd?, envs?, timeout? (ms)}
 *       a bash session made for it (ngx_http_pyrepl_session.c) runs the
 *       command with no client waiting (worker/bash/bs_bg.c); answered at
 *       once with execd's SSE: init {text: the session id, which names
 *       the command from then on}, execution_complete
 *   GET /command/status/{id}
 *       {id, content, running, exit_code, error, started_at, finished_at}
 *       (exit_code and finished_at null while it runs)
 *   GET /command/{id}/logs?cursor=N
 *       text/plain: what it wrote to stdout and stderr from byte N on (at
 *       most 1 MiB of it), the byte after that in the
 *       EXECD-COMMANDS-TAIL-CURSOR header
 *   DELETE /command?id={id} interrupts it, as any run
 *
 * The command's session is an ordinary one of its key: its TTL applies,
 * DELETE /session/{id} ends it, its output keeps the last 4 MiB, and each
 * status or logs request counts as activity for pyrepl_idle_timeout.  An
 * id of a session that had no background command is 404.
 */

#include "ngx_http_pyrepl_command.h"

#include "ngx_http_pyrepl_control.h"
#include "ngx_http_pyrepl_opensandbox.h"
#include "ngx_http_pyrepl_reply.h"
#include "ngx_http_pyrepl_supervisor.h"
#include "ngx_http_pyrepl_table.h"


#define PYREPL_CURSOR_HEADER  "EXECD-COMMANDS-TAIL-CURSOR"

/* a status frame's bytes besides the command (bs_bg_status) */
#define PYREPL_COMMAND_FRAME_SLACK  256


static ngx_int_t ngx_http_pyrepl_command_launched(
    ngx_http_pyrepl_peer_t *peer, pr_frame_t *frame);
static void ngx_http_pyrepl_command_launch_failed(
    ngx_http_pyrepl_peer_t *peer, const char *reason);
static void ngx_http_pyrepl_command_undo(ngx_http_request_t *r, u_char *id,
    const char *why);
static ngx_int_t ngx_http_pyrepl_command_sse(ngx_http_request_t *r,
    u_char *id);
static u_char *ngx_http_pyrepl_command_event(u_char *p, u_char *last,
    const char *event, json_t *data);
static ngx_int_t ngx_http_pyrepl_command_ask(ngx_http_request_t *r,
    u_char *id, pr_frame_t *frame, ngx_http_pyrepl_frame_pt handler);
static ngx_int_t ngx_http_pyrepl_command_status_answered(
    ngx_http_pyrepl_peer_t *peer, pr_frame_t *frame);
static ngx_int_t ngx_http_pyrepl_command_logs_answered(
    ngx_http_pyrepl_peer_t *peer, pr_frame_t *frame);
static void ngx_http_pyrepl_command_ask_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason);
static ngx_uint_t ngx_http_pyrepl_command_refused(
    ngx_http_pyrepl_control_t *cl, pr_frame_t *frame);


/*
 * The body's "command" and "timeout" (ms) of a background command into
 * *code and *timeout: NGX_OK, or r answered (400, or 413 for a command
 * over pyrepl_max_code_size or too long for its status frame to fit in
 * pyrepl_max_frame) and NGX_ERROR.
 */
ngx_int_t
ngx_http_pyrepl_command_parse(ngx_http_request_t *r, json_t *body,
    ngx_str_t *code, ngx_msec_t *timeout)
{
    size_t                        max;
    u_char                       *msg;
    json_t                       *v;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    v = json_object_get(body, "command");

    if (!json_is_string(v) || json_string_length(v) == 0) {
        ngx_http_pyrepl_finalize_error(r, NGX_HTTP_BAD_REQUEST,
                                       "bad_request",
                                       "\"command\" must be a non-empty "
                                       "string");
        return NGX_ERROR;
    }

    /* the command comes back whole in its status frame */
    max = pmcf->max_frame - PYREPL_COMMAND_FRAME_SLACK;

    if (max > pmcf->max_code_size) {
        max = pmcf->max_code_size;
    }

    if (json_string_length(v) > max) {
        msg = ngx_pnalloc(r->pool, NGX_INT64_LEN + 64);
        if (msg == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return NGX_ERROR;
        }

        ngx_sprintf(msg, "the command is over %uz bytes%Z", max);
        ngx_http_pyrepl_finalize_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                       "too_large", (char *) msg);
        return NGX_ERROR;
    }

    code->len = json_string_length(v);
    code->data = ngx_pnalloc(r->pool, code->len);
    if (code->data == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NGX_ERROR;
    }

    ngx_memcpy(code->data, json_string_value(v), code->len);

    v = json_object_get(body, "timeout");
    *timeout = 0;

    if (v != NULL && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 0
            || json_integer_value(v) > 30LL * 24 * 3600 * 1000)
        {
            ngx_http_pyrepl_finalize_error(r, NGX_HTTP_BAD_REQUEST,
                                           "bad_request",
                                           "\"timeout\" must be "
                                           "milliseconds, from 0 (none) to "
                                           "30 days");
            return NGX_ERROR;
        }

        *timeout = (ngx_msec_t) json_integer_value(v);
    }

    return NGX_OK;
}


/*
 * Start code detached in session id, made for it by this request (whose
 * body is read): answered execd's way once the session took it; if it
 * does not, the session goes and the request is refused.  Finalizes r.
 */
void
ngx_http_pyrepl_command_launch(ngx_http_request_t *r, u_char *id,
    ngx_str_t *code, ngx_msec_t timeout)
{
    pr_frame_t                  frame;
    ngx_http_pyrepl_control_t  *cl;

    cl = ngx_http_pyrepl_control_create(r, id);
    if (cl == NULL) {
        ngx_http_pyrepl_command_undo(r, id, "out of memory");
        return;
    }

    cl->peer.frame_handler = ngx_http_pyrepl_command_launched;
    cl->peer.fail_handler = ngx_http_pyrepl_command_launch_failed;

    ngx_memzero(&frame, sizeof(pr_frame_t));
    frame.type = PR_T_RUN;
    pr_set_str(&frame, code, code->data, code->len);
    pr_set_int(&frame, detach, 1);

    if (timeout) {
        pr_set_int(&frame, timeout_ms, (int64_t) timeout);
    }

    if (ngx_http_pyrepl_control_send(cl, &frame) != NGX_OK) {
        ngx_http_pyrepl_command_undo(r, id, "the session is gone");
    }

    /* the request's reference (the body handler's) waits for the answer */
}


static ngx_int_t
ngx_http_pyrepl_command_launched(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame)
{
    ngx_http_request_t         *r;
    ngx_http_pyrepl_control_t  *cl;

    cl = peer->data;
    r = cl->request;

    if (frame->type != PR_T_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "pyrepl: session %*s refused a background command: "
                      "%*s", (size_t) PYREPL_ID_LEN, cl->id,
                      frame->message.len, frame->message.data);
        ngx_http_pyrepl_peer_close(peer);
        ngx_http_pyrepl_command_undo(r, cl->id,
                                     "the session did not take the command");
        return NGX_DONE;
    }

    ngx_http_pyrepl_peer_close(peer);
    ngx_http_finalize_request(r, ngx_http_pyrepl_command_sse(r, cl->id));

    return NGX_DONE;
}


static void
ngx_http_pyrepl_command_launch_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason)
{
    ngx_http_pyrepl_control_t  *cl;

    cl = peer->data;

    ngx_log_error(NGX_LOG_ERR, peer->log, 0,
                  "pyrepl: background command not started: %s", reason);

    ngx_http_pyrepl_command_undo(cl->request, cl->id,
                                 "the session did not take the command");
}


/* The command's session goes; r is refused 503 with why. */
static void
ngx_http_pyrepl_command_undo(ngx_http_request_t *r, u_char *id,
    const char *why)
{
    ngx_http_pyrepl_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    ngx_http_pyrepl_table_remove(pmcf->shm_zone, id);
    ngx_http_pyrepl_supervisor_kill_now(pmcf, id, r->connection->log);

    ngx_http_pyrepl_finalize_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "unavailable", why);
}


/* The whole SSE answer of a started background command: init, complete. */
static ngx_int_t
ngx_http_pyrepl_command_sse(ngx_http_request_t *r, u_char *id)
{
    u_char       *p;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    b = ngx_create_temp_buf(r->pool, 1024);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_http_pyrepl_command_event(b->pos, b->end, "init",
                                      json_pack("{s:s%}", "session_id",
                                                (char *) id,
                                                (size_t) PYREPL_ID_LEN));
    p = ngx_http_pyrepl_command_event(p, b->end, "execution_complete",
                                      json_pack("{s:i}", "duration_ms", 0));
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = p;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "text/event-stream");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * "event: <event>\ndata: <execd's JSON>\n\n" at p, before last; data is
 * stolen.  Returns the end, or NULL when it does not fit (or p is NULL).
 */
static u_char *
ngx_http_pyrepl_command_event(u_char *p, u_char *last, const char *event,
    json_t *data)
{
    size_t  n, room;

    data = data ? ngx_http_pyrepl_opensandbox_event(event, data) : NULL;

    if (p == NULL || data == NULL) {
        json_decref(data);
        return NULL;
    }

    p = ngx_slprintf(p, last, "event: %s\ndata: ", event);
    room = (size_t) (last - p);

    n = json_dumpb(data, (char *) p, room, JSON_COMPACT);
    json_decref(data);

    if (n == 0 || n + 2 > room) {
        return NULL;
    }

    p += n;
    *p++ = '\n';
    *p++ = '\n';

    return p;
}


/* GET /command/status/{id}, for the session's owner (the router checked). */
ngx_int_t
ngx_http_pyrepl_command_status_handler(ngx_http_request_t *r, u_char *id)
{
    pr_frame_t  frame;

    ngx_memzero(&frame, sizeof(pr_frame_t));
    frame.type = PR_T_STATUS;

    return ngx_http_pyrepl_command_ask(r, id, &frame,
                                     ngx_http_pyrepl_command_status_answered);
}


/* GET /command/{id}/logs?cursor=N, for the session's owner. */
ngx_int_t
ngx_http_pyrepl_command_logs_handler(ngx_http_request_t *r, u_char *id)
{
    ngx_str_t   arg;
    ngx_int_t   cursor;
    pr_frame_t  frame;

    cursor = 0;

    if (ngx_http_arg(r, (u_char *) "cursor", 6, &arg) == NGX_OK) {
        cursor = ngx_atoi(arg.data, arg.len);

        if (cursor == NGX_ERROR) {
            ngx_http_discard_request_body(r);
            return ngx_http_pyrepl_send_error(r, NGX_HTTP_BAD_REQUEST,
                                              "bad_request",
                                              "\"cursor\" must be a byte "
                                              "offset, 0 or more");
        }
    }

    ngx_memzero(&frame, sizeof(pr_frame_t));
    frame.type = PR_T_TAIL;
    pr_set_int(&frame, cursor, (int64_t) cursor);

    return ngx_http_pyrepl_command_ask(r, id, &frame,
                                       ngx_http_pyrepl_command_logs_answered);
}


/* Send frame to session id; handler answers r. */
static ngx_int_t
ngx_http_pyrepl_command_ask(ngx_http_request_t *r, u_char *id,
    pr_frame_t *frame, ngx_http_pyrepl_frame_pt handler)
{
    ngx_int_t                     rc;
    ngx_http_pyrepl_control_t    *cl;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    ngx_http_pyrepl_table_touch(pmcf->shm_zone, id);

    cl = ngx_http_pyrepl_control_create(r, id);
    if (cl == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cl->peer.frame_handler = handler;
    cl->peer.fail_handler = ngx_http_pyrepl_command_ask_failed;

    rc = ngx_http_pyrepl_control_send(cl, frame);

    if (rc == NGX_DECLINED) {
        return ngx_http_pyrepl_send_not_found(r, id);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->main->count++;

    return NGX_DONE;
}


static ngx_int_t
ngx_http_pyrepl_command_status_answered(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame)
{
    u_char                      msg[64];
    json_t                     *o;
    ngx_uint_t                  running;
    ngx_http_request_t         *r;
    ngx_http_pyrepl_control_t  *cl;

    cl = peer->data;
    r = cl->request;

    if (ngx_http_pyrepl_command_refused(cl, frame)) {
        return NGX_DONE;
    }

    /* frame's strings live in the peer's buffer: copied before it goes */
    running = !pr_has(frame, exit_code);

    o = json_pack("{s:s%,s:s%,s:b,s:o,s:o}",
                  "id", (char *) cl->id, (size_t) PYREPL_ID_LEN,
                  "content", frame->code.data ? frame->code.data : "",
                  frame->code.len,
                  "running", (int) running,
                  "started_at",
                  ngx_http_pyrepl_time_json((time_t) (frame->started / 1000)),
                  "status", json_stringn(frame->status.data,
                                         frame->status.len));

    if (o != NULL && !running) {
        *ngx_snprintf(msg, sizeof(msg) - 1, "exit status %L",
                      frame->exit_code) = '\0';

        if (json_object_set_new(o, "exit_code",
                                json_integer(frame->exit_code)) != 0
            || json_object_set_new(o, "finished_at",
                                   ngx_http_pyrepl_time_json(
                                       (time_t) (frame->finished / 1000)))
               != 0
            || (frame->exit_code != 0
                && json_object_set_new(o, "error",
                                       json_string((char *) msg)) != 0))
        {
            json_decref(o);
            o = NULL;
        }
    }

    ngx_http_pyrepl_peer_close(peer);

    ngx_http_finalize_request(r, o ? ngx_http_pyrepl_send_json(r,
                                                               NGX_HTTP_OK, o)
                                   : NGX_HTTP_INTERNAL_SERVER_ERROR);
    return NGX_DONE;
}


static ngx_int_t
ngx_http_pyrepl_command_logs_answered(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame)
{
    ngx_int_t                   rc;
    ngx_buf_t                  *b;
    ngx_chain_t                 out;
    ngx_table_elt_t            *h;
    ngx_http_request_t         *r;
    ngx_http_pyrepl_control_t  *cl;

    cl = peer->data;
    r = cl->request;

    if (ngx_http_pyrepl_command_refused(cl, frame)) {
        return NGX_DONE;
    }

    h = ngx_list_push(&r->headers_out.headers);
    b = ngx_calloc_buf(r->pool);

    if (h == NULL || b == NULL) {
        ngx_http_pyrepl_peer_close(peer);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NGX_DONE;
    }

    h->hash = 1;
    ngx_str_set(&h->key, PYREPL_CURSOR_HEADER);
    h->value.data = ngx_pnalloc(r->pool, NGX_INT64_LEN);

    if (h->value.data == NULL) {
        ngx_http_pyrepl_peer_close(peer);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NGX_DONE;
    }

    h->value.len = ngx_sprintf(h->value.data, "%L", frame->cursor)
                   - h->value.data;

    /* the text lives in the peer's buffer: copied before it goes */
    if (frame->text.len) {
        b->start = ngx_pnalloc(r->pool, frame->text.len);
        if (b->start == NULL) {
            ngx_http_pyrepl_peer_close(peer);
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return NGX_DONE;
        }

        ngx_memcpy(b->start, frame->text.data, frame->text.len);
        b->pos = b->start;
        b->last = b->start + frame->text.len;
        b->end = b->last;
        b->memory = 1;
    }

    ngx_http_pyrepl_peer_close(peer);

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = frame->text.len;
    ngx_str_set(&r->headers_out.content_type, "text/plain; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    out.buf = b;
    out.next = NULL;

    ngx_http_finalize_request(r, ngx_http_output_filter(r, &out));
    return NGX_DONE;
}


static void
ngx_http_pyrepl_command_ask_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason)
{
    ngx_http_pyrepl_control_t  *cl;

    cl = peer->data;

    ngx_log_error(NGX_LOG_WARN, peer->log, 0,
                  "pyrepl: session %*s did not answer about its command: %s",
                  (size_t) PYREPL_ID_LEN, cl->id, reason);

    /* it is there (the table said so): busy, say, not gone */
    ngx_http_finalize_request(cl->request,
        ngx_http_pyrepl_send_error(cl->request, NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "unavailable",
                                   "session %*s did not answer: %s",
                                   (size_t) PYREPL_ID_LEN, cl->id, reason));
}


/*
 * A session that answers no ok has no background command (a fail
 * not_found, or a python session that takes no such frame): the peer
 * closed, 404, and 1.  Else 0, the peer open (frame's strings are in its
 * buffer).
 */
static ngx_uint_t
ngx_http_pyrepl_command_refused(ngx_http_pyrepl_control_t *cl,
    pr_frame_t *frame)
{
    ngx_http_request_t  *r;

    if (frame->type == PR_T_OK) {
        return 0;
    }

    ngx_http_pyrepl_peer_close(&cl->peer);

    r = cl->request;

    ngx_http_finalize_request(r,
        ngx_http_pyrepl_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                   "session %*s has no background command",
                                   (size_t) PYREPL_ID_LEN, cl->id));
    return 1;
}
