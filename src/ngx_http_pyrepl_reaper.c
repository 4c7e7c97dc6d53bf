/*
 * ngx_http_pyrepl_reaper.c: ending sessions whose TTL ran out or that sat
 * idle past pyrepl_idle_timeout.  Worker 0 runs it on a timer, right after
 * it starts (so sessions that expired while nginx reloaded go at once) and
 * then every pyrepl_reap_interval.  The table marks them terminated (they
 * answer 404 from then on); one connection to the supervisor carries a
 * "kill" per session, pipelined, and each confirmed kill removes the entry.
 * Kills that fail stay terminated and are sent again on the next round.
 *
 * The same kind of connection kills one session on demand (a run that
 * ignored its timeout): ngx_http_pyrepl_kill_session, which leaves the
 * table entry to read "crashed" instead of removing it; and tells the
 * supervisor of a rollback's new process: ngx_http_pyrepl_move_session.
 */

#include "ngx_http_pyrepl_module.h"


typedef struct {
    ngx_http_pyrepl_peer_t       peer;
    ngx_pool_t                  *pool;
    ngx_uint_t                   pending;
    ngx_uint_t                   reaping;   /* remove entries when killed */
} ngx_http_pyrepl_reap_t;


static void ngx_http_pyrepl_reap(ngx_event_t *ev);
static ngx_int_t ngx_http_pyrepl_reaped(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame);
static void ngx_http_pyrepl_reap_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason);
static void ngx_http_pyrepl_reap_done(ngx_http_pyrepl_reap_t *reap);
static void ngx_http_pyrepl_tell_supervisor(ngx_http_pyrepl_main_conf_t *pmcf,
    pr_frame_t *frame, ngx_log_t *log);
static ngx_http_pyrepl_reap_t *ngx_http_pyrepl_reap_create(
    ngx_http_pyrepl_main_conf_t *pmcf, ngx_log_t *log);


static ngx_event_t                   ngx_http_pyrepl_reap_event;
static ngx_connection_t              ngx_http_pyrepl_reap_dummy;
static ngx_http_pyrepl_main_conf_t  *ngx_http_pyrepl_reap_conf;
static ngx_uint_t                    ngx_http_pyrepl_reaping;


void
ngx_http_pyrepl_reaper_start(ngx_cycle_t *cycle,
    ngx_http_pyrepl_main_conf_t *pmcf)
{
    ngx_http_pyrepl_reap_conf = pmcf;

    ngx_http_pyrepl_reap_dummy.fd = (ngx_socket_t) -1;

    ngx_http_pyrepl_reap_event.handler = ngx_http_pyrepl_reap;
    ngx_http_pyrepl_reap_event.data = &ngx_http_pyrepl_reap_dummy;
    ngx_http_pyrepl_reap_event.log = cycle->log;
    ngx_http_pyrepl_reap_event.cancelable = 1;

    ngx_add_timer(&ngx_http_pyrepl_reap_event, 1);
}


static void
ngx_http_pyrepl_reap(ngx_event_t *ev)
{
    u_char                       *id;
    ngx_uint_t                    i;
    ngx_pool_t                   *pool;
    pr_frame_t                    frame;
    ngx_array_t                  *ids;
    ngx_http_pyrepl_reap_t       *reap;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    pmcf = ngx_http_pyrepl_reap_conf;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ngx_add_timer(ev, pmcf->reap_interval);

    if (pmcf->restore_on_crash) {
        ngx_http_pyrepl_revive(pmcf, ev->log);
    }

    if (ngx_http_pyrepl_reaping) {
        return;                       /* the last round is still going */
    }

    pool = ngx_create_pool(4096, ev->log);
    if (pool == NULL) {
        return;
    }

    ids = ngx_http_pyrepl_table_reap(pmcf->shm_zone, ngx_time(),
                                     pmcf->idle_timeout, pool);

    if (ids == NULL || ids->nelts == 0) {
        ngx_destroy_pool(pool);
        return;
    }

    reap = ngx_http_pyrepl_reap_create(pmcf, ev->log);
    if (reap == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    id = ids->elts;

    for (i = 0; i < ids->nelts; i++, id += PYREPL_ID_LEN) {
        ngx_memzero(&frame, sizeof(pr_frame_t));
        frame.type = PR_T_KILL;
        pr_set_str(&frame, id, id, PYREPL_ID_LEN);

        if (ngx_http_pyrepl_peer_send(&reap->peer, reap->pool, &frame)
            != NGX_OK)
        {
            break;
        }

        reap->pending++;
    }

    ngx_destroy_pool(pool);

    if (reap->pending == 0) {
        ngx_destroy_pool(reap->pool);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, ev->log, 0,
                  "pyrepl: reaping %ui expired session(s)", reap->pending);

    reap->reaping = 1;
    ngx_http_pyrepl_reaping = 1;
}


/*
 * Tell the supervisor that a rollback handed session id to process pid
 * (ngx_http_pyrepl_exec.c, ngx_http_pyrepl_state.c); it kills the old
 * process, which waits for that.
 */
void
ngx_http_pyrepl_move_session(ngx_http_pyrepl_main_conf_t *pmcf, u_char *id,
    ngx_pid_t pid, ngx_log_t *log)
{
    pr_frame_t  frame;

    ngx_memzero(&frame, sizeof(pr_frame_t));
    frame.type = PR_T_MOVE;
    pr_set_str(&frame, id, id, PYREPL_ID_LEN);
    pr_set_int(&frame, pid, pid);

    ngx_http_pyrepl_tell_supervisor(pmcf, &frame, log);
}


/*
 * Have the supervisor kill one session's processes now; its entry stays
 * and reads "crashed" once the run's connection sees the process go.
 */
void
ngx_http_pyrepl_kill_session(ngx_http_pyrepl_main_conf_t *pmcf, u_char *id,
    ngx_log_t *log)
{
    pr_frame_t  frame;

    ngx_memzero(&frame, sizeof(pr_frame_t));
    frame.type = PR_T_KILL;
    pr_set_str(&frame, id, id, PYREPL_ID_LEN);

    ngx_http_pyrepl_tell_supervisor(pmcf, &frame, log);
}


/* One request to the supervisor that nobody waits for (a refusal is logged). */
static void
ngx_http_pyrepl_tell_supervisor(ngx_http_pyrepl_main_conf_t *pmcf,
    pr_frame_t *frame, ngx_log_t *log)
{
    ngx_http_pyrepl_reap_t  *reap;

    reap = ngx_http_pyrepl_reap_create(pmcf, log);
    if (reap == NULL) {
        return;
    }

    if (ngx_http_pyrepl_peer_send(&reap->peer, reap->pool, frame) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "pyrepl: cannot send the supervisor a \"%s\" for %*s",
                      pr_type_name(frame->type), frame->id.len,
                      frame->id.data);
        ngx_destroy_pool(reap->pool);
        return;
    }

    reap->pending = 1;
}


/* A pool with a supervisor connection in it, or NULL (logged). */
static ngx_http_pyrepl_reap_t *
ngx_http_pyrepl_reap_create(ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_log_t *log)
{
    ngx_pool_t              *pool;
    ngx_http_pyrepl_reap_t  *reap;

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    reap = ngx_pcalloc(pool, sizeof(ngx_http_pyrepl_reap_t));
    if (reap == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    reap->pool = pool;
    reap->peer.data = reap;
    /* not a request's log: the request may be gone before the answer */
    reap->peer.log = ngx_cycle->log;
    reap->peer.max_frame = pmcf->max_frame;
    reap->peer.read_timeout = pmcf->supervisor_timeout;
    reap->peer.frame_handler = ngx_http_pyrepl_reaped;
    reap->peer.fail_handler = ngx_http_pyrepl_reap_failed;

    if (ngx_http_pyrepl_peer_connect(&reap->peer, &pmcf->supervisor_sock,
                                     pool)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "pyrepl: the supervisor is not running");
        ngx_destroy_pool(pool);
        return NULL;
    }

    return reap;
}


static ngx_int_t
ngx_http_pyrepl_reaped(ngx_http_pyrepl_peer_t *peer, pr_frame_t *frame)
{
    ngx_http_pyrepl_reap_t       *reap;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    reap = peer->data;
    pmcf = ngx_http_pyrepl_reap_conf;

    if (frame->type == PR_T_FAIL) {
        ngx_log_error(NGX_LOG_ERR, peer->log, 0,
                      "pyrepl: the supervisor refused: %*s",
                      frame->message.len, frame->message.data);
    }

    if (reap->reaping && frame->type == PR_T_OK && pr_has(frame, id)
        && frame->id.len == PYREPL_ID_LEN)
    {
        ngx_http_pyrepl_table_remove(pmcf->shm_zone, (u_char *) frame->id.data);
        ngx_atomic_fetch_add(
            &ngx_http_pyrepl_table_counters(pmcf->shm_zone)->reaped, 1);
    }

    if (--reap->pending == 0) {
        ngx_http_pyrepl_reap_done(reap);
        return NGX_DONE;
    }

    return NGX_OK;
}


static void
ngx_http_pyrepl_reap_failed(ngx_http_pyrepl_peer_t *peer, const char *reason)
{
    ngx_http_pyrepl_reap_t  *reap;

    reap = peer->data;

    ngx_log_error(NGX_LOG_WARN, peer->log, 0,
                  "pyrepl: reaping stopped: supervisor %s; retrying", reason);

    ngx_http_pyrepl_reap_done(reap);
}


static void
ngx_http_pyrepl_reap_done(ngx_http_pyrepl_reap_t *reap)
{
    if (reap->reaping) {
        ngx_http_pyrepl_reaping = 0;
    }

    ngx_destroy_pool(reap->pool);     /* its cleanup closes the peer */
}
