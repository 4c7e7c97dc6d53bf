/*
 * ngx_http_pyrepl_revive.c: "pyrepl_restore_on_crash on;": a session
 * whose process died comes back from its latest checkpoint instead of
 * staying crashed.  Worker 0 runs it with the reaper, every
 * pyrepl_reap_interval: an idle session with a checkpoint whose socket is
 * gone (the supervisor unlinks the socket of a process that dies) is
 * marked crashed, and each crashed one with a checkpoint is revived, one
 * supervisor or session request after the other:
 *
 *   kill      the dead process's leftovers (files, orphans)
 *   create    a new process for the same session id
 *   load      a copy of the checkpoint into its directory
 *   restore   into its namespace
 *
 * Meanwhile the session reads "starting"; then "idle" with restored_from,
 * or "crashed" for good if any step fails.
 */

#include "ngx_http_pyrepl_revive.h"

#include "ngx_http_pyrepl_control.h"
#include "ngx_http_pyrepl_peer.h"
#include "ngx_http_pyrepl_supervisor.h"
#include "ngx_http_pyrepl_table.h"

#include <jansson.h>


#define PYREPL_REVIVE_KILL     0
#define PYREPL_REVIVE_CREATE   1
#define PYREPL_REVIVE_LOAD     2
#define PYREPL_REVIVE_RESTORE  3
#define PYREPL_REVIVE_FILE     ".pyrepl-restore"


typedef struct {
    ngx_pool_t                   *pool;
    ngx_log_t                    *log;
    ngx_http_pyrepl_main_conf_t  *pmcf;
    ngx_http_pyrepl_revivable_t   rv;
    ngx_http_pyrepl_peer_t       *peer;
    ngx_uint_t                    step;
    ngx_pid_t                     pid;
} ngx_http_pyrepl_revive_t;


static void ngx_http_pyrepl_revive_start(ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_http_pyrepl_revivable_t *rv, ngx_log_t *log);
static void ngx_http_pyrepl_revive_step(ngx_http_pyrepl_revive_t *rc);
static ngx_int_t ngx_http_pyrepl_revive_answered(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame);
static void ngx_http_pyrepl_revive_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason);
static void ngx_http_pyrepl_revive_end(ngx_http_pyrepl_revive_t *rc,
    ngx_pid_t pid, const char *why);


void
ngx_http_pyrepl_revive(ngx_http_pyrepl_main_conf_t *pmcf, ngx_log_t *log)
{
    ngx_str_t                     path;
    ngx_uint_t                    i;
    ngx_pool_t                   *pool;
    ngx_array_t                  *a;
    ngx_file_info_t               fi;
    ngx_http_pyrepl_revivable_t  *rv;

    pool = ngx_create_pool(4096, log);
    if (pool == NULL) {
        return;
    }

    a = ngx_http_pyrepl_table_revivable(pmcf->shm_zone, pool, 1);

    for (i = 0; a != NULL && i < a->nelts; i++) {
        rv = (ngx_http_pyrepl_revivable_t *) a->elts + i;

        if (rv->crashed) {
            ngx_http_pyrepl_revive_start(pmcf, rv, log);
            continue;
        }

        /* an idle one: the next round revives it if its process is gone */
        if (ngx_http_pyrepl_socket_path(pmcf, pool, rv->id, &path) == NGX_OK
            && ngx_file_info(path.data, &fi) == NGX_FILE_ERROR
            && ngx_errno == NGX_ENOENT)
        {
            ngx_http_pyrepl_table_set_state(pmcf->shm_zone, rv->id,
                                            PYREPL_STATE_CRASHED);
        }
    }

    ngx_destroy_pool(pool);
}


static void
ngx_http_pyrepl_revive_start(ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_http_pyrepl_revivable_t *rv, ngx_log_t *log)
{
    ngx_pool_t                *pool;
    ngx_http_pyrepl_revive_t  *rc;

    pool = ngx_create_pool(4096, log);
    if (pool == NULL) {
        ngx_http_pyrepl_table_revived(pmcf->shm_zone, rv->id, 0);
        return;
    }

    rc = ngx_pcalloc(pool, sizeof(ngx_http_pyrepl_revive_t));
    if (rc == NULL) {
        ngx_destroy_pool(pool);
        ngx_http_pyrepl_table_revived(pmcf->shm_zone, rv->id, 0);
        return;
    }

    rc->pool = pool;
    rc->log = log;
    rc->pmcf = pmcf;
    rc->rv = *rv;
    rc->step = PYREPL_REVIVE_KILL;

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "pyrepl: session %*s crashed, restoring it from "
                  "checkpoint %*s", (size_t) PYREPL_ID_LEN, rv->id,
                  (size_t) PYREPL_ID_LEN, rv->checkpoint);

    ngx_http_pyrepl_revive_step(rc);
}


/* Send the current step's request on a connection of its own. */
static void
ngx_http_pyrepl_revive_step(ngx_http_pyrepl_revive_t *rc)
{
    ngx_int_t    rv;
    ngx_str_t    path;
    pr_frame_t   frame;

    rc->peer = ngx_pcalloc(rc->pool, sizeof(ngx_http_pyrepl_peer_t));
    if (rc->peer == NULL) {
        ngx_http_pyrepl_revive_end(rc, 0, "out of memory");
        return;
    }

    rc->peer->data = rc;
    rc->peer->log = rc->log;
    rc->peer->read_timeout = rc->pmcf->run_timeout_max;
    rc->peer->frame_handler = ngx_http_pyrepl_revive_answered;
    rc->peer->fail_handler = ngx_http_pyrepl_revive_failed;

    switch (rc->step) {

    case PYREPL_REVIVE_KILL:
        rv = ngx_http_pyrepl_supervisor_kill(rc->pmcf, rc->pool, rc->peer,
                                             rc->rv.id);
        break;

    case PYREPL_REVIVE_CREATE:
        rv = ngx_http_pyrepl_supervisor_create(rc->pmcf, rc->pool, rc->peer,
                                               rc->rv.id, PYREPL_LANG_PYTHON);
        break;

    case PYREPL_REVIVE_LOAD:
        rv = ngx_http_pyrepl_supervisor_checkpoint(rc->pmcf, rc->pool,
                                                   rc->peer, PR_T_LOAD,
                                                   rc->rv.id,
                                                   PYREPL_REVIVE_FILE,
                                                   rc->rv.tenant,
                                                   rc->rv.checkpoint);
        break;

    default: /* PYREPL_REVIVE_RESTORE, to the session process */
        if (ngx_http_pyrepl_socket_path(rc->pmcf, rc->pool, rc->rv.id, &path)
            != NGX_OK)
        {
            ngx_http_pyrepl_revive_end(rc, 0, "out of memory");
            return;
        }

        ngx_memzero(&frame, sizeof(pr_frame_t));
        frame.type = PR_T_RESTORE;
        pr_set_cstr(&frame, file, PYREPL_REVIVE_FILE);

        rc->peer->max_frame = rc->pmcf->max_frame;

        rv = (ngx_http_pyrepl_peer_connect(rc->peer, &path, rc->pool)
              == NGX_OK
              && ngx_http_pyrepl_peer_send(rc->peer, rc->pool, &frame)
                 == NGX_OK)
             ? NGX_OK : NGX_DECLINED;
    }

    if (rv != NGX_OK) {
        ngx_http_pyrepl_revive_end(rc, 0, "cannot connect");
    }
}


static ngx_int_t
ngx_http_pyrepl_revive_answered(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame)
{
    json_t                     *doc;
    ngx_http_pyrepl_session_t   s;
    ngx_http_pyrepl_revive_t   *rc;

    rc = peer->data;

    if (frame->type == PR_T_STDOUT || frame->type == PR_T_STDERR) {
        return NGX_OK;
    }

    if (frame->type != PR_T_OK) {
        ngx_http_pyrepl_peer_close(peer);
        ngx_http_pyrepl_revive_end(rc, 0, "a step was refused");
        return NGX_DONE;
    }

    if (rc->step == PYREPL_REVIVE_CREATE) {
        rc->pid = pr_has(frame, pid) ? (ngx_pid_t) frame->pid : 0;

        /* deleted meanwhile: what was just created goes too */
        if (ngx_http_pyrepl_table_get(rc->pmcf->shm_zone, rc->rv.id, &s)
            != NGX_OK || !s.reviving)
        {
            ngx_http_pyrepl_peer_close(peer);
            ngx_http_pyrepl_supervisor_kill_now(rc->pmcf, rc->rv.id,
                                                rc->log);
            ngx_http_pyrepl_revive_end(rc, 0, "the session was deleted");
            return NGX_DONE;
        }
    }

    if (rc->step == PYREPL_REVIVE_RESTORE) {
        doc = pr_has(frame, text)
              ? json_loadb(frame->text.data, frame->text.len, 0, NULL)
              : NULL;

        ngx_http_pyrepl_peer_close(peer);

        if (doc == NULL || json_object_get(doc, "error") != NULL) {
            json_decref(doc);
            ngx_http_pyrepl_revive_end(rc, 0, "the checkpoint did not load");
            return NGX_DONE;
        }

        json_decref(doc);
        ngx_http_pyrepl_revive_end(rc, rc->pid, NULL);
        return NGX_DONE;
    }

    ngx_http_pyrepl_peer_close(peer);

    rc->step++;
    ngx_http_pyrepl_revive_step(rc);

    return NGX_DONE;
}


static void
ngx_http_pyrepl_revive_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason)
{
    ngx_http_pyrepl_revive_end(peer->data, 0, reason);
}


static void
ngx_http_pyrepl_revive_end(ngx_http_pyrepl_revive_t *rc, ngx_pid_t pid,
    const char *why)
{
    if (pid > 0) {
        ngx_log_error(NGX_LOG_NOTICE, rc->log, 0,
                      "pyrepl: session %*s restored from checkpoint %*s, "
                      "pid %P", (size_t) PYREPL_ID_LEN, rc->rv.id,
                      (size_t) PYREPL_ID_LEN, rc->rv.checkpoint, pid);
    } else {
        ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                      "pyrepl: session %*s could not be restored from "
                      "checkpoint %*s (step %ui): %s",
                      (size_t) PYREPL_ID_LEN, rc->rv.id,
                      (size_t) PYREPL_ID_LEN, rc->rv.checkpoint, rc->step,
                      why);
    }

    ngx_http_pyrepl_table_revived(rc->pmcf->shm_zone, rc->rv.id, pid);

    ngx_destroy_pool(rc->pool);     /* its cleanups close the peers */
}
