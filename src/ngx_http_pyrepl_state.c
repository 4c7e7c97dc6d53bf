/*
 * ngx_http_pyrepl_state.c: a Python session's state between runs, asked
 * of the session process itself on a connection of its own:
 *
 *   GET  /session/{id}/namespace   its runtime's namespace(): variables
 *                                  with type, size and whether they can
 *                                  be saved, and the functions and classes
 *                                  defined in the session with their source
 *   POST /session/{id}/commit      an explicit transaction's effects stay
 *   POST /session/{id}/rollback    or are undone; a rollback's new process
 *                                  goes to the table and the supervisor
 */

#include "ngx_http_pyrepl_state.h"

#include "ngx_http_pyrepl_control.h"
#include "ngx_http_pyrepl_peer.h"
#include "ngx_http_pyrepl_reply.h"
#include "ngx_http_pyrepl_supervisor.h"
#include "ngx_http_pyrepl_table.h"


static ngx_int_t ngx_http_pyrepl_state_ask(ngx_http_request_t *r, u_char *id,
    pr_type_t type, ngx_http_pyrepl_frame_pt answered);
static ngx_int_t ngx_http_pyrepl_namespace_answered(
    ngx_http_pyrepl_peer_t *peer, pr_frame_t *frame);
static ngx_int_t ngx_http_pyrepl_tx_answered(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame);
static void ngx_http_pyrepl_state_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason);


ngx_int_t
ngx_http_pyrepl_namespace_handler(ngx_http_request_t *r, u_char *id)
{
    return ngx_http_pyrepl_state_ask(r, id, PR_T_NAMESPACE,
                                     ngx_http_pyrepl_namespace_answered);
}


ngx_int_t
ngx_http_pyrepl_commit_handler(ngx_http_request_t *r, u_char *id)
{
    return ngx_http_pyrepl_state_ask(r, id, PR_T_COMMIT,
                                     ngx_http_pyrepl_tx_answered);
}


ngx_int_t
ngx_http_pyrepl_rollback_handler(ngx_http_request_t *r, u_char *id)
{
    return ngx_http_pyrepl_state_ask(r, id, PR_T_ROLLBACK,
                                     ngx_http_pyrepl_tx_answered);
}


/* Send a frame of type to an idle Python session; answered calls back. */
static ngx_int_t
ngx_http_pyrepl_state_ask(ngx_http_request_t *r, u_char *id, pr_type_t type,
    ngx_http_pyrepl_frame_pt answered)
{
    ngx_int_t                     rc;
    ngx_uint_t                    status;
    pr_frame_t                    frame;
    const char                   *code, *message;
    ngx_http_pyrepl_session_t     s;
    ngx_http_pyrepl_control_t    *cl;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_pyrepl_table_get(pmcf->shm_zone, id, &s) != NGX_OK) {
        return ngx_http_pyrepl_send_not_found(r, id);
    }

    status = ngx_http_pyrepl_state_refusal(&s, &code, &message);
    if (status != 0) {
        return ngx_http_pyrepl_send_error(r, status, code, "%s", message);
    }

    if (type != PR_T_NAMESPACE && !s.tx_pending) {
        return ngx_http_pyrepl_send_error(r, NGX_HTTP_CONFLICT,
                                          "no_transaction",
                                          "no run waits for a commit or a "
                                          "rollback");
    }

    cl = ngx_http_pyrepl_control_create(r, id);
    if (cl == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cl->peer.frame_handler = answered;
    cl->peer.fail_handler = ngx_http_pyrepl_state_failed;

    ngx_memzero(&frame, sizeof(pr_frame_t));
    frame.type = type;

    rc = ngx_http_pyrepl_control_send(cl, &frame);

    if (rc == NGX_DECLINED) {
        return ngx_http_pyrepl_send_error(r, NGX_HTTP_CONFLICT,
                                          "session_crashed",
                                          "the session process is gone");
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->main->count++;

    return NGX_DONE;
}


/*
 * Why a state request to session s cannot be made now: an HTTP status
 * with its code and message, or 0 when s is an idle Python session.
 */
ngx_uint_t
ngx_http_pyrepl_state_refusal(ngx_http_pyrepl_session_t *s,
    const char **code, const char **message)
{
    if (s->lang != PYREPL_LANG_PYTHON) {
        *code = "bad_request";
        *message = "only Python sessions have a namespace, transactions "
                   "and checkpoints";
        return NGX_HTTP_BAD_REQUEST;
    }

    if (s->state == PYREPL_STATE_BUSY || s->state == PYREPL_STATE_STARTING) {
        *code = "session_busy";
        *message = "the session is running code";
        return NGX_HTTP_CONFLICT;
    }

    if (s->state != PYREPL_STATE_IDLE) {
        *code = "session_crashed";
        *message = "the session process is gone";
        return NGX_HTTP_CONFLICT;
    }

    return 0;
}


/* ok {tx, pid?}: 204; a rollback's new process is recorded and moved to */
static ngx_int_t
ngx_http_pyrepl_tx_answered(ngx_http_pyrepl_peer_t *peer, pr_frame_t *frame)
{
    ngx_pid_t                     pid;
    ngx_http_request_t           *r;
    ngx_http_pyrepl_control_t    *cl;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    cl = peer->data;
    r = cl->request;
    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    if (frame->type == PR_T_STDOUT || frame->type == PR_T_STDERR) {
        return NGX_OK;
    }

    pid = (frame->type == PR_T_OK && pr_has(frame, pid))
          ? (ngx_pid_t) frame->pid : 0;

    ngx_http_pyrepl_peer_close(peer);

    if (frame->type != PR_T_OK) {
        ngx_http_pyrepl_finalize_error(r, NGX_HTTP_CONFLICT,
                                       "no_transaction",
                                       "no run waits for a commit or a "
                                       "rollback");
        return NGX_DONE;
    }

    ngx_http_pyrepl_table_set_tx(pmcf->shm_zone, cl->id, 0, pid);

    if (pid > 0) {
        ngx_http_pyrepl_supervisor_move(pmcf, cl->id, pid,
                                        r->connection->log);
    }

    ngx_http_finalize_request(r, ngx_http_pyrepl_send_json(r,
                                                           NGX_HTTP_NO_CONTENT,
                                                           NULL));
    return NGX_DONE;
}


/* stdout/stderr that user __reduce__ or __sizeof__ wrote are dropped */
static ngx_int_t
ngx_http_pyrepl_namespace_answered(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame)
{
    json_t                     *doc;
    json_error_t                err;
    ngx_uint_t                  busy;
    ngx_http_request_t         *r;
    ngx_http_pyrepl_control_t  *cl;

    cl = peer->data;
    r = cl->request;

    if (frame->type == PR_T_STDOUT || frame->type == PR_T_STDERR) {
        return NGX_OK;
    }

    if (frame->type == PR_T_OK && pr_has(frame, text)) {
        doc = json_loadb(frame->text.data, frame->text.len, 0, &err);
        ngx_http_pyrepl_peer_close(peer);

        if (doc == NULL) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "pyrepl: session %*s sent a bad namespace: %s",
                          (size_t) PYREPL_ID_LEN, cl->id, err.text);
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return NGX_DONE;
        }

        ngx_http_finalize_request(r, ngx_http_pyrepl_send_json(r, NGX_HTTP_OK,
                                                               doc));
        return NGX_DONE;
    }

    busy = (frame->type == PR_T_FAIL && frame->errcode.len == 12
            && ngx_strncmp(frame->errcode.data, "session_busy", 12) == 0);

    ngx_http_pyrepl_peer_close(peer);     /* frees what frame points to */

    if (busy) {
        ngx_http_pyrepl_finalize_error(r, NGX_HTTP_CONFLICT, "session_busy",
                                       "the session is running code");
        return NGX_DONE;
    }

    ngx_http_pyrepl_finalize_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "unavailable",
                                   "the session could not describe its "
                                   "namespace");
    return NGX_DONE;
}


static void
ngx_http_pyrepl_state_failed(ngx_http_pyrepl_peer_t *peer, const char *reason)
{
    ngx_http_pyrepl_control_t  *cl;

    cl = peer->data;

    ngx_log_error(NGX_LOG_WARN, peer->log, 0,
                  "pyrepl: session %*s did not answer: %s",
                  (size_t) PYREPL_ID_LEN, cl->id, reason);

    ngx_http_pyrepl_finalize_error(cl->request, NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "unavailable",
                                   "the session did not answer");
}
