/*
 * ngx_http_pyrepl_restart.c: a session's process replaced by a new one
 * under the same id, for Jupyter's kernel restart and E2B's context
 * restart.  The supervisor kills the session's processes (its files go
 * with them), then starts a new process under the same id, which its
 * create waits for until the old one is purged; the table keeps the
 * session, its key and its records, with a fresh execution count.
 */

#include "ngx_http_pyrepl_restart.h"

#include "ngx_http_pyrepl_peer.h"
#include "ngx_http_pyrepl_reply.h"
#include "ngx_http_pyrepl_supervisor.h"
#include "ngx_http_pyrepl_table.h"


typedef struct {
    ngx_http_request_t            *request;
    ngx_http_pyrepl_peer_t         peer;
    ngx_http_pyrepl_session_t      session;
    ngx_http_pyrepl_restarted_pt   answer;
    unsigned                       created:1;  /* the kill is done */
} ngx_http_pyrepl_restart_t;


static ngx_int_t ngx_http_pyrepl_restarted(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame);
static void ngx_http_pyrepl_restart_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason);


/*
 * Restart session s (the caller's, checked) for request r: answered by
 * answer() once the new process is up, 404 for a session that
 * is gone, 409 while it runs code or starts.
 */
ngx_int_t
ngx_http_pyrepl_restart(ngx_http_request_t *r, ngx_http_pyrepl_session_t *s,
    ngx_http_pyrepl_restarted_pt answer)
{
    ngx_int_t                     rc;
    ngx_http_pyrepl_restart_t    *rs;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    rs = ngx_pcalloc(r->pool, sizeof(ngx_http_pyrepl_restart_t));
    if (rs == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_pyrepl_table_restart(pmcf->shm_zone, s->id);

    if (rc == NGX_DECLINED) {
        return ngx_http_pyrepl_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                          "no such session");
    }

    if (rc == NGX_BUSY) {
        return ngx_http_pyrepl_send_error(r, NGX_HTTP_CONFLICT,
                                          "session_busy",
                                          "it is running code or starting: "
                                          "interrupt it first");
    }

    rs->request = r;
    rs->answer = answer;
    rs->session = *s;
    rs->peer.data = rs;
    rs->peer.log = r->connection->log;
    rs->peer.frame_handler = ngx_http_pyrepl_restarted;
    rs->peer.fail_handler = ngx_http_pyrepl_restart_failed;

    return ngx_http_pyrepl_supervisor_wait(r,
               ngx_http_pyrepl_supervisor_kill(pmcf, r->pool, &rs->peer,
                                               rs->session.id));
}


/* The kill is done: the create; the create is done: the answer. */
static ngx_int_t
ngx_http_pyrepl_restarted(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame)
{
    ngx_int_t                     rc;
    ngx_http_request_t           *r;
    ngx_http_pyrepl_restart_t    *rs;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    rs = peer->data;
    r = rs->request;
    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    if (frame->type != PR_T_OK
        || (rs->created && !pr_has(frame, pid)))
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "pyrepl: restart of %*s failed: %*s",
                      (size_t) PYREPL_ID_LEN, rs->session.id,
                      frame->message.len, frame->message.data);
        ngx_http_pyrepl_peer_close(peer);
        ngx_http_pyrepl_restart_failed(peer, "refused");
        return NGX_DONE;
    }

    ngx_http_pyrepl_peer_close(peer);

    if (!rs->created) {
        rs->created = 1;

        ngx_memzero(&rs->peer, sizeof(ngx_http_pyrepl_peer_t));
        rs->peer.data = rs;
        rs->peer.log = r->connection->log;
        rs->peer.frame_handler = ngx_http_pyrepl_restarted;
        rs->peer.fail_handler = ngx_http_pyrepl_restart_failed;

        rc = ngx_http_pyrepl_supervisor_create(pmcf, r->pool, &rs->peer,
                                               rs->session.id,
                                               rs->session.lang);
        if (rc != NGX_OK) {
            ngx_http_pyrepl_restart_failed(&rs->peer, "no supervisor");
        }

        return NGX_DONE;
    }

    rs->session.pid = (ngx_pid_t) frame->pid;

    if (ngx_http_pyrepl_table_set_ready(pmcf->shm_zone, rs->session.id,
                                        rs->session.pid)
        != NGX_OK)
    {
        ngx_http_pyrepl_supervisor_kill_now(pmcf, rs->session.id,
                                            r->connection->log);
        ngx_http_pyrepl_finalize_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                       "the session was deleted meanwhile");
        return NGX_DONE;
    }

    rs->session.state = PYREPL_STATE_IDLE;
    rs->session.last_activity = ngx_time();

    ngx_http_finalize_request(r, rs->answer(r, &rs->session));
    return NGX_DONE;
}


/* The session has no process now: it reads crashed until deleted. */
static void
ngx_http_pyrepl_restart_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason)
{
    ngx_http_pyrepl_restart_t    *rs;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    rs = peer->data;
    pmcf = ngx_http_get_module_main_conf(rs->request,
                                         ngx_http_pyrepl_module);

    ngx_log_error(NGX_LOG_ERR, peer->log, 0,
                  "pyrepl: restart failed: %s", reason);

    (void) ngx_http_pyrepl_table_set_state(pmcf->shm_zone, rs->session.id,
                                           PYREPL_STATE_CRASHED);

    ngx_http_pyrepl_finalize_error(rs->request,
                                   NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "unavailable",
                                   "the session could not be restarted");
}
