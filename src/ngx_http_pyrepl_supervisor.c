/*
 * ngx_http_pyrepl_supervisor.c: every message an nginx worker sends the
 * supervisor, in the manner of NGINX Unit's nxt_port_rpc: one file owns
 * the conversation with that peer process, and the rest of the module
 * asks through its functions.  Each request goes on a non-blocking frame
 * connection of its own (ngx_http_pyrepl_peer.c) to the supervisor's
 * socket; the frames are those of worker/sup_request.c:
 *
 *   create {id, lang}                   a session process for id
 *   kill {id}                           a session's processes and files
 *   move {id, pid}                      a rollback's new process is id's
 *   store {id, file, text, max_size, quota}
 *   load {id, file, text}               a checkpoint out of a session's
 *                                       directory, or a copy into it
 *   list {text}, remove {text}          a tenant's checkpoints
 *   status {}                           the pool and the zygote
 *
 * Three kinds of caller.  A request that waits for the answer (a route, a
 * revival) hands in its own peer with data, log and the ready and error
 * handlers (frame_handler, fail_handler) set: the answer, "ok" or "fail"
 * {errcode, message}, goes to the first, no answer to the second (and a
 * route's content handler returns ngx_http_pyrepl_supervisor_wait).  A kill
 * or a move that nobody waits for gets a connection in a pool of its own,
 * since the request that caused it may be gone before the answer: a
 * refusal is logged.  The reaper's round pipelines its kills on one such
 * connection.  And whether the supervisor listens at all is a connect()
 * that answers at once (ngx_http_pyrepl_supervisor_up).
 */

#include "ngx_http_pyrepl_supervisor.h"

#include "ngx_http_pyrepl_peer.h"
#include "ngx_http_pyrepl_reply.h"
#include "ngx_http_pyrepl_table.h"


/* "<tenant, 16 hex>/<checkpoint id>" */
#define PYREPL_CKPT_NAME_LEN  (16 + 1 + PYREPL_ID_LEN)


/* a connection nobody waits on: a kill or a move, or the reaper's round */
typedef struct {
    ngx_http_pyrepl_peer_t       peer;
    ngx_pool_t                  *pool;
    ngx_http_pyrepl_main_conf_t  *pmcf;
    ngx_uint_t                   pending;   /* answers still to come */
    ngx_http_pyrepl_reaped_pt    reaped;    /* the reaper's round: done */
} ngx_http_pyrepl_sup_conn_t;


static void ngx_http_pyrepl_supervisor_frame(pr_frame_t *frame,
    pr_type_t type, u_char *id);
static ngx_int_t ngx_http_pyrepl_supervisor_send(
    ngx_http_pyrepl_main_conf_t *pmcf, ngx_pool_t *pool,
    ngx_http_pyrepl_peer_t *peer, pr_frame_t *frame);
static ngx_int_t ngx_http_pyrepl_supervisor_connect(
    ngx_http_pyrepl_main_conf_t *pmcf, ngx_pool_t *pool,
    ngx_http_pyrepl_peer_t *peer);
static void ngx_http_pyrepl_supervisor_name(pr_frame_t *frame, u_char *name,
    uint64_t tenant, u_char *cid);
static void ngx_http_pyrepl_supervisor_tell(ngx_http_pyrepl_main_conf_t *pmcf,
    pr_frame_t *frame, ngx_log_t *log);
static ngx_http_pyrepl_sup_conn_t *ngx_http_pyrepl_supervisor_conn(
    ngx_http_pyrepl_main_conf_t *pmcf, ngx_log_t *log);
static ngx_int_t ngx_http_pyrepl_supervisor_told(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame);
static void ngx_http_pyrepl_supervisor_lost(ngx_http_pyrepl_peer_t *peer,
    const char *reason);
static void ngx_http_pyrepl_supervisor_close(ngx_http_pyrepl_sup_conn_t *sc);


/*
 * The requests whose answer the caller waits for.  peer is the caller's,
 * in pool (whose cleanup closes it), with data, log, frame_handler and
 * fail_handler set, and read_timeout when the answer may take longer
 * than pyrepl_supervisor_timeout (0: that).  Each returns NGX_OK once
 * the frame is on its way, or NGX_DECLINED when the supervisor cannot be
 * reached (nothing was sent, the peer is closed).
 */

ngx_int_t
ngx_http_pyrepl_supervisor_create(ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_pool_t *pool, ngx_http_pyrepl_peer_t *peer, u_char *id,
    ngx_uint_t lang)
{
    pr_frame_t  frame;

    ngx_http_pyrepl_supervisor_frame(&frame, PR_T_CREATE, id);
    pr_set_cstr(&frame, lang, ngx_http_pyrepl_lang_name(lang));

    return ngx_http_pyrepl_supervisor_send(pmcf, pool, peer, &frame);
}


ngx_int_t
ngx_http_pyrepl_supervisor_kill(ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_pool_t *pool, ngx_http_pyrepl_peer_t *peer, u_char *id)
{
    pr_frame_t  frame;

    ngx_http_pyrepl_supervisor_frame(&frame, PR_T_KILL, id);

    return ngx_http_pyrepl_supervisor_send(pmcf, pool, peer, &frame);
}


/*
 * Checkpoint cid of tenant, type PR_T_STORE: file moves out of session
 * id's directory into pyrepl_checkpoint_path (at most
 * pyrepl_checkpoint_max_size, within pyrepl_checkpoint_quota, else "fail
 * too_large" or "quota_exceeded"); PR_T_LOAD: a copy of it goes into the
 * session's directory as file ("fail not_found" if tenant has none such).
 */
ngx_int_t
ngx_http_pyrepl_supervisor_checkpoint(ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_pool_t *pool, ngx_http_pyrepl_peer_t *peer, pr_type_t type,
    u_char *id, const char *file, uint64_t tenant, u_char *cid)
{
    u_char      name[PYREPL_CKPT_NAME_LEN];
    pr_frame_t  frame;

    ngx_http_pyrepl_supervisor_frame(&frame, type, id);
    pr_set_cstr(&frame, file, file);
    ngx_http_pyrepl_supervisor_name(&frame, name, tenant, cid);

    if (type == PR_T_STORE) {
        pr_set_int(&frame, max_size, (int64_t) pmcf->checkpoint_max_size);
        pr_set_int(&frame, quota, (int64_t) pmcf->checkpoint_quota);
    }

    return ngx_http_pyrepl_supervisor_send(pmcf, pool, peer, &frame);
}


/*
 * tenant's checkpoints: "list" them all, newest first (cid NULL), or
 * "remove" cid ("fail not_found" if tenant has none such).
 */
ngx_int_t
ngx_http_pyrepl_supervisor_checkpoints(ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_pool_t *pool, ngx_http_pyrepl_peer_t *peer, uint64_t tenant,
    u_char *cid)
{
    u_char      name[PYREPL_CKPT_NAME_LEN];
    pr_frame_t  frame;

    ngx_http_pyrepl_supervisor_frame(&frame, cid ? PR_T_REMOVE : PR_T_LIST,
                                     NULL);
    ngx_http_pyrepl_supervisor_name(&frame, name, tenant, cid);

    return ngx_http_pyrepl_supervisor_send(pmcf, pool, peer, &frame);
}


/*
 * ok {reason}: why session id's processes ended (out_of_memory, exited,
 * killed, none), answered once the supervisor has seen them go.
 */
ngx_int_t
ngx_http_pyrepl_supervisor_ended(ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_pool_t *pool, ngx_http_pyrepl_peer_t *peer, u_char *id)
{
    pr_frame_t  frame;

    ngx_http_pyrepl_supervisor_frame(&frame, PR_T_ENDED, id);

    return ngx_http_pyrepl_supervisor_send(pmcf, pool, peer, &frame);
}


/* ok {pool, zygote, sessions}: pool processes ready, the zygote's pid */
ngx_int_t
ngx_http_pyrepl_supervisor_status(ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_pool_t *pool, ngx_http_pyrepl_peer_t *peer)
{
    pr_frame_t  frame;

    ngx_http_pyrepl_supervisor_frame(&frame, PR_T_STATUS, NULL);

    return ngx_http_pyrepl_supervisor_send(pmcf, pool, peer, &frame);
}


/* A frame of type, about session id unless id is NULL. */
static void
ngx_http_pyrepl_supervisor_frame(pr_frame_t *frame, pr_type_t type,
    u_char *id)
{
    ngx_memzero(frame, sizeof(pr_frame_t));
    frame->type = type;

    if (id != NULL) {
        pr_set_str(frame, id, id, PYREPL_ID_LEN);
    }
}


static ngx_int_t
ngx_http_pyrepl_supervisor_send(ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_pool_t *pool, ngx_http_pyrepl_peer_t *peer, pr_frame_t *frame)
{
    if (ngx_http_pyrepl_supervisor_connect(pmcf, pool, peer) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (ngx_http_pyrepl_peer_send(peer, pool, frame) != NGX_OK) {
        ngx_http_pyrepl_peer_close(peer);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * What a content handler returns once it asked the supervisor (rc: what
 * the request function returned): NGX_DONE, the answer finalizing the
 * request later, or now 503 unavailable.
 */
ngx_int_t
ngx_http_pyrepl_supervisor_wait(ngx_http_request_t *r, ngx_int_t rc)
{
    if (rc != NGX_OK) {
        return ngx_http_pyrepl_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                          "unavailable",
                                          "the pyrepl supervisor is not "
                                          "running");
    }

    r->main->count++;

    return NGX_DONE;
}


/* NGX_OK, or NGX_DECLINED when nobody listens on the supervisor's socket */
static ngx_int_t
ngx_http_pyrepl_supervisor_connect(ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_pool_t *pool, ngx_http_pyrepl_peer_t *peer)
{
    peer->max_frame = pmcf->max_frame;

    if (peer->read_timeout == 0) {
        peer->read_timeout = pmcf->supervisor_timeout;
    }

    if (ngx_http_pyrepl_peer_connect(peer, &pmcf->supervisor_sock, pool)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * A checkpoint's name as the supervisor files it, in frame's text:
 * "<tenant, 16 hex>" for the tenant's, "<tenant>/<cid>" for one of them,
 * so that no key ever names another's.  name is the caller's buffer.
 */
static void
ngx_http_pyrepl_supervisor_name(pr_frame_t *frame, u_char *name,
    uint64_t tenant, u_char *cid)
{
    u_char  *last;

    last = ngx_sprintf(name, "%016xL", tenant);

    if (cid != NULL) {
        last = ngx_sprintf(last, "/%*s", (size_t) PYREPL_ID_LEN, cid);
    }

    pr_set_str(frame, text, name, last - name);
}


/*
 * Have the supervisor kill one session's processes now (a run past its
 * deadline and grace, a create whose restore failed, a revival of a
 * session deleted meanwhile); nobody waits for the answer.
 */
void
ngx_http_pyrepl_supervisor_kill_now(ngx_http_pyrepl_main_conf_t *pmcf,
    u_char *id, ngx_log_t *log)
{
    pr_frame_t  frame;

    ngx_http_pyrepl_supervisor_frame(&frame, PR_T_KILL, id);

    ngx_http_pyrepl_supervisor_tell(pmcf, &frame, log);
}


/*
 * Tell the supervisor that a rollback handed session id to process pid
 * (ngx_http_pyrepl_exec.c, ngx_http_pyrepl_state.c); it kills the old
 * process, which waits for that.
 */
void
ngx_http_pyrepl_supervisor_move(ngx_http_pyrepl_main_conf_t *pmcf,
    u_char *id, ngx_pid_t pid, ngx_log_t *log)
{
    pr_frame_t  frame;

    ngx_http_pyrepl_supervisor_frame(&frame, PR_T_MOVE, id);
    pr_set_int(&frame, pid, pid);

    ngx_http_pyrepl_supervisor_tell(pmcf, &frame, log);
}


/* One request to the supervisor nobody waits for (a refusal is logged). */
static void
ngx_http_pyrepl_supervisor_tell(ngx_http_pyrepl_main_conf_t *pmcf,
    pr_frame_t *frame, ngx_log_t *log)
{
    ngx_http_pyrepl_sup_conn_t  *sc;

    sc = ngx_http_pyrepl_supervisor_conn(pmcf, log);
    if (sc == NULL) {
        return;
    }

    if (ngx_http_pyrepl_peer_send(&sc->peer, sc->pool, frame) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "pyrepl: cannot send the supervisor a \"%s\" for %*s",
                      pr_type_name(frame->type), frame->id.len,
                      frame->id.data);
        ngx_destroy_pool(sc->pool);
        return;
    }

    sc->pending = 1;
}


/*
 * The reaper's round: a "kill" for each of ids (PYREPL_ID_LEN bytes
 * each), pipelined on one connection; a confirmed kill removes the
 * session from the table and counts it reaped.  Returns how many kills
 * went out; unless none did, reaped is called once the round is over
 * (every answer in, or the connection lost).  Sessions whose kill was
 * not confirmed stay marked for the next round.
 */
ngx_uint_t
ngx_http_pyrepl_supervisor_reap(ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_array_t *ids, ngx_http_pyrepl_reaped_pt reaped, ngx_log_t *log)
{
    u_char                      *id;
    ngx_uint_t                   i;
    pr_frame_t                   frame;
    ngx_http_pyrepl_sup_conn_t  *sc;

    sc = ngx_http_pyrepl_supervisor_conn(pmcf, log);
    if (sc == NULL) {
        return 0;
    }

    id = ids->elts;

    for (i = 0; i < ids->nelts; i++, id += PYREPL_ID_LEN) {
        ngx_http_pyrepl_supervisor_frame(&frame, PR_T_KILL, id);

        if (ngx_http_pyrepl_peer_send(&sc->peer, sc->pool, &frame)
            != NGX_OK)
        {
            break;
        }

        sc->pending++;
    }

    if (sc->pending == 0) {
        ngx_destroy_pool(sc->pool);
        return 0;
    }

    sc->reaped = reaped;

    return sc->pending;
}


/* A pool with a supervisor connection in it, or NULL (logged). */
static ngx_http_pyrepl_sup_conn_t *
ngx_http_pyrepl_supervisor_conn(ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_log_t *log)
{
    ngx_pool_t                  *pool;
    ngx_http_pyrepl_sup_conn_t  *sc;

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    sc = ngx_pcalloc(pool, sizeof(ngx_http_pyrepl_sup_conn_t));
    if (sc == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    sc->pool = pool;
    sc->pmcf = pmcf;
    sc->peer.data = sc;
    /* not a request's log: the request may be gone before the answer */
    sc->peer.log = ngx_cycle->log;
    sc->peer.frame_handler = ngx_http_pyrepl_supervisor_told;
    sc->peer.fail_handler = ngx_http_pyrepl_supervisor_lost;

    if (ngx_http_pyrepl_supervisor_connect(pmcf, pool, &sc->peer)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "pyrepl: the supervisor is not running");
        ngx_destroy_pool(pool);
        return NULL;
    }

    return sc;
}


static ngx_int_t
ngx_http_pyrepl_supervisor_told(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame)
{
    ngx_http_pyrepl_sup_conn_t  *sc;

    sc = peer->data;

    if (frame->type == PR_T_FAIL) {
        ngx_log_error(NGX_LOG_ERR, peer->log, 0,
                      "pyrepl: the supervisor refused: %*s",
                      frame->message.len, frame->message.data);
    }

    if (sc->reaped && frame->type == PR_T_OK && pr_has(frame, id)
        && frame->id.len == PYREPL_ID_LEN)
    {
        ngx_http_pyrepl_table_remove(sc->pmcf->shm_zone,
                                     (u_char *) frame->id.data);
        ngx_atomic_fetch_add(
            &ngx_http_pyrepl_table_counters(sc->pmcf->shm_zone)->reaped, 1);
    }

    if (--sc->pending == 0) {
        ngx_http_pyrepl_supervisor_close(sc);
        return NGX_DONE;
    }

    return NGX_OK;
}


static void
ngx_http_pyrepl_supervisor_lost(ngx_http_pyrepl_peer_t *peer,
    const char *reason)
{
    ngx_log_error(NGX_LOG_WARN, peer->log, 0,
                  "pyrepl: reaping stopped: supervisor %s; retrying", reason);

    ngx_http_pyrepl_supervisor_close(peer->data);
}


static void
ngx_http_pyrepl_supervisor_close(ngx_http_pyrepl_sup_conn_t *sc)
{
    if (sc->reaped) {
        sc->reaped();
    }

    ngx_destroy_pool(sc->pool);     /* its cleanup closes the peer */
}


/*
 * Does the supervisor accept connections?  connect() on a Unix socket
 * answers at once, so this never blocks the worker (nor the master,
 * which asks before it starts one).
 */
ngx_int_t
ngx_http_pyrepl_supervisor_up(ngx_http_pyrepl_main_conf_t *pmcf)
{
    int                 fd, rc;
    ngx_err_t           err;
    struct sockaddr_un  sun;

    ngx_memzero(&sun, sizeof(struct sockaddr_un));
    sun.sun_family = AF_UNIX;
    ngx_memcpy(sun.sun_path, pmcf->supervisor_sock.data,
               pmcf->supervisor_sock.len);

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        return NGX_ERROR;
    }

    rc = connect(fd, (struct sockaddr *) &sun, sizeof(struct sockaddr_un));
    err = ngx_errno;
    close(fd);

    /* a full backlog (EAGAIN) still means somebody listens */
    return (rc == 0 || err == NGX_EAGAIN) ? NGX_OK : NGX_DECLINED;
}
