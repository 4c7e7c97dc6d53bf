/*
 * ngx_http_pyrepl_control.c: the small POSTs that steer a session without
 * running code: renew (a new expiry in the shared table), interrupt and
 * input (one frame to the session process on a connection of their own,
 * so they work from any worker, whichever worker streams the run); that
 * one-frame connection, which the state and checkpoint routes use too;
 * and the path of a session process's socket, which every connection to
 * one starts from.
 */

#include "ngx_http_pyrepl_control.h"

#include "ngx_http_pyrepl_peer.h"
#include "ngx_http_pyrepl_reply.h"
#include "ngx_http_pyrepl_table.h"


static void ngx_http_pyrepl_renew_body_handler(ngx_http_request_t *r);
static void ngx_http_pyrepl_interrupt_sent(ngx_http_pyrepl_peer_t *peer);
static void ngx_http_pyrepl_interrupt_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason);
static void ngx_http_pyrepl_input_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_pyrepl_input_answered(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame);
static void ngx_http_pyrepl_input_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason);


ngx_http_pyrepl_control_t *
ngx_http_pyrepl_control_create(ngx_http_request_t *r, u_char *id)
{
    ngx_http_pyrepl_control_t  *cl;

    cl = ngx_pcalloc(r->pool, sizeof(ngx_http_pyrepl_control_t));
    if (cl == NULL) {
        return NULL;
    }

    cl->request = r;
    ngx_memcpy(cl->id, id, PYREPL_ID_LEN);
    ngx_http_set_ctx(r, cl, ngx_http_pyrepl_module);

    return cl;
}


/*
 * Connect to the session process and queue frame.  Returns NGX_OK,
 * NGX_DECLINED when the process is gone, or NGX_ERROR.
 */
ngx_int_t
ngx_http_pyrepl_control_send(ngx_http_pyrepl_control_t *cl,
    pr_frame_t *frame)
{
    ngx_int_t                     rc;
    ngx_str_t                     sock;
    ngx_http_request_t           *r;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    r = cl->request;
    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    if (ngx_http_pyrepl_socket_path(pmcf, r->pool, cl->id, &sock) != NGX_OK)
    {
        return NGX_ERROR;
    }

    cl->peer.data = cl;
    cl->peer.log = r->connection->log;
    cl->peer.max_frame = pmcf->max_frame;
    cl->peer.read_timeout = pmcf->supervisor_timeout;

    rc = ngx_http_pyrepl_peer_connect(&cl->peer, &sock, r->pool);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_pyrepl_peer_send(&cl->peer, r->pool, frame);
}


/* "<socket_dir>/<id>.sock", NUL-terminated, in pool. */
ngx_int_t
ngx_http_pyrepl_socket_path(ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_pool_t *pool, u_char *id, ngx_str_t *path)
{
    path->len = pmcf->socket_dir.len + 1 + PYREPL_ID_LEN
                + sizeof(PYREPL_SESSION_SUFFIX) - 1;
    path->data = ngx_pnalloc(pool, path->len + 1);
    if (path->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(path->data, "%V/%*s" PYREPL_SESSION_SUFFIX "%Z",
                &pmcf->socket_dir, (size_t) PYREPL_ID_LEN, id);

    return NGX_OK;
}


ngx_int_t
ngx_http_pyrepl_renew_handler(ngx_http_request_t *r, u_char *id)
{
    if (ngx_http_pyrepl_control_create(r, id) == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_pyrepl_read_body(r, ngx_http_pyrepl_renew_body_handler);
}


/* POST /session/{id}/renew {"ttl_seconds"}: a new expiry from now. */
static void
ngx_http_pyrepl_renew_body_handler(ngx_http_request_t *r)
{
    json_t                       *body, *ttl;
    time_t                        expires;
    ngx_http_pyrepl_control_t    *cl;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    if (ngx_http_pyrepl_read_json_body(r, &body) != NGX_OK) {
        return;
    }

    cl = ngx_http_get_module_ctx(r, ngx_http_pyrepl_module);
    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    ttl = body ? json_object_get(body, "ttl_seconds") : NULL;

    if (ttl == NULL || !json_is_integer(ttl) || json_integer_value(ttl) < 1
        || json_integer_value(ttl) > pmcf->session_ttl_max)
    {
        json_decref(body);
        ngx_http_finalize_request(r,
            ngx_http_pyrepl_send_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                       "\"ttl_seconds\" must be an integer "
                                       "from 1 to %T",
                                       pmcf->session_ttl_max));
        return;
    }

    expires = ngx_time() + (time_t) json_integer_value(ttl);
    json_decref(body);

    if (ngx_http_pyrepl_table_renew(pmcf->shm_zone, cl->id, expires)
        != NGX_OK)
    {
        ngx_http_finalize_request(r,
                                  ngx_http_pyrepl_send_not_found(r, cl->id));
        return;
    }

    ngx_http_finalize_request(r,
        ngx_http_pyrepl_send_json(r, NGX_HTTP_OK,
                                  json_pack("{s:o}", "expires_at",
                                            ngx_http_pyrepl_time_json(
                                                expires))));
}


/*
 * POST /session/{id}/interrupt: KeyboardInterrupt in a running run; an
 * idle session has nothing to interrupt.  204 once the frame is written.
 */
ngx_int_t
ngx_http_pyrepl_interrupt_handler(ngx_http_request_t *r, u_char *id)
{
    return ngx_http_pyrepl_interrupt(r, id, 0);
}


/*
 * The interrupt; with idle_too set, a bash session the table shows idle
 * gets it too (its background command runs with no request of nginx's
 * waiting, ngx_http_pyrepl_command.c).
 */
ngx_int_t
ngx_http_pyrepl_interrupt(ngx_http_request_t *r, u_char *id,
    ngx_uint_t idle_too)
{
    ngx_int_t                     rc;
    pr_frame_t                    frame;
    ngx_http_pyrepl_session_t     s;
    ngx_http_pyrepl_control_t    *cl;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    if (ngx_http_pyrepl_table_get(pmcf->shm_zone, id, &s) != NGX_OK) {
        return ngx_http_pyrepl_send_not_found(r, id);
    }

    if (s.state != PYREPL_STATE_BUSY
        && !(idle_too && s.state == PYREPL_STATE_IDLE
             && s.lang == PYREPL_LANG_BASH))
    {
        return ngx_http_pyrepl_send_json(r, NGX_HTTP_NO_CONTENT, NULL);
    }

    cl = ngx_http_pyrepl_control_create(r, id);
    if (cl == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cl->peer.fail_handler = ngx_http_pyrepl_interrupt_failed;
    cl->peer.sent_handler = ngx_http_pyrepl_interrupt_sent;

    ngx_memzero(&frame, sizeof(pr_frame_t));
    frame.type = PR_T_INTERRUPT;

    rc = ngx_http_pyrepl_control_send(cl, &frame);

    if (rc == NGX_DECLINED) {
        /* the process is gone: there is nothing left to interrupt */
        return ngx_http_pyrepl_send_json(r, NGX_HTTP_NO_CONTENT, NULL);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_pyrepl_interrupt_sent(ngx_http_pyrepl_peer_t *peer)
{
    ngx_http_pyrepl_control_t  *cl;

    cl = peer->data;

    ngx_http_pyrepl_peer_close(peer);
    ngx_http_finalize_request(cl->request,
                              ngx_http_pyrepl_send_json(cl->request,
                                                        NGX_HTTP_NO_CONTENT,
                                                        NULL));
}


static void
ngx_http_pyrepl_interrupt_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason)
{
    ngx_http_pyrepl_control_t  *cl;

    cl = peer->data;

    ngx_log_error(NGX_LOG_WARN, peer->log, 0,
                  "pyrepl: interrupt not delivered: %s", reason);

    ngx_http_finalize_request(cl->request,
                              ngx_http_pyrepl_send_json(cl->request,
                                                        NGX_HTTP_NO_CONTENT,
                                                        NULL));
}


ngx_int_t
ngx_http_pyrepl_input_handler(ngx_http_request_t *r, u_char *id)
{
    if (ngx_http_pyrepl_control_create(r, id) == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_pyrepl_read_body(r, ngx_http_pyrepl_input_body_handler);
}


/*
 * POST /session/{id}/input {"value", "request_id"?}: the answer to the
 * input() the running code waits in.  204 once the session took it, 409
 * no_pending_input when nothing waits (or request_id names another).
 */
static void
ngx_http_pyrepl_input_body_handler(ngx_http_request_t *r)
{
    json_t                       *body, *value, *rid;
    ngx_int_t                     rc;
    pr_frame_t                    frame;
    ngx_http_pyrepl_session_t     s;
    ngx_http_pyrepl_control_t    *cl;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    if (ngx_http_pyrepl_read_json_body(r, &body) != NGX_OK) {
        return;
    }

    cl = ngx_http_get_module_ctx(r, ngx_http_pyrepl_module);
    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    value = body ? json_object_get(body, "value") : NULL;
    rid = body ? json_object_get(body, "request_id") : NULL;

    if (!json_is_string(value) || (rid && !json_is_string(rid))) {
        json_decref(body);
        ngx_http_pyrepl_finalize_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                       "\"value\" (and \"request_id\" if "
                                       "given) must be strings");
        return;
    }

    if (ngx_http_pyrepl_table_get(pmcf->shm_zone, cl->id, &s) != NGX_OK) {
        json_decref(body);
        ngx_http_finalize_request(r,
                                  ngx_http_pyrepl_send_not_found(r, cl->id));
        return;
    }

    ngx_memzero(&frame, sizeof(pr_frame_t));
    frame.type = PR_T_INPUT;
    pr_set_str(&frame, text, json_string_value(value),
               json_string_length(value));

    if (rid) {
        pr_set_str(&frame, id, json_string_value(rid),
                   json_string_length(rid));
    }

    cl->peer.frame_handler = ngx_http_pyrepl_input_answered;
    cl->peer.fail_handler = ngx_http_pyrepl_input_failed;

    rc = (s.state == PYREPL_STATE_BUSY)
         ? ngx_http_pyrepl_control_send(cl, &frame) : NGX_DECLINED;

    json_decref(body);          /* the frame was copied into a buffer */

    if (rc == NGX_DECLINED) {
        ngx_http_pyrepl_finalize_error(r, NGX_HTTP_CONFLICT,
                                       "no_pending_input",
                                       "no run is waiting for input");
        return;
    }

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
    }

    /* the body handler's reference keeps the request until the answer */
}


static ngx_int_t
ngx_http_pyrepl_input_answered(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame)
{
    ngx_http_pyrepl_control_t  *cl;

    cl = peer->data;

    ngx_http_pyrepl_peer_close(peer);

    if (frame->type == PR_T_OK) {
        ngx_http_finalize_request(cl->request,
                                  ngx_http_pyrepl_send_json(cl->request,
                                                          NGX_HTTP_NO_CONTENT,
                                                          NULL));
        return NGX_DONE;
    }

    ngx_http_pyrepl_finalize_error(cl->request, NGX_HTTP_CONFLICT,
                                   "no_pending_input",
                                   "no run is waiting for this input");
    return NGX_DONE;
}


static void
ngx_http_pyrepl_input_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason)
{
    ngx_http_pyrepl_control_t  *cl;

    cl = peer->data;

    ngx_log_error(NGX_LOG_WARN, peer->log, 0,
                  "pyrepl: input not delivered: %s", reason);

    ngx_http_pyrepl_finalize_error(cl->request, NGX_HTTP_CONFLICT,
                                   "no_pending_input",
                                   "the session did not take the input");
}
