/*
 * ngx_http_pyrepl_checkpoint.c: saving a Python session's namespace and
 * bringing it back, each a chain of one-frame requests:
 *
 *   POST /session/{id}/checkpoint
 *       session "checkpoint" (it writes CKPT_FILE in its own directory,
 *       pickled, checksummed, at most pyrepl_checkpoint_max_size), then
 *       supervisor "store" (the file moves to pyrepl_checkpoint_path, under
 *       the caller's tenant) -> 201 {checkpoint_id, size_bytes, created_at,
 *       unsaved: [{name, reason}]}
 *   POST /session/{id}/restore {"checkpoint_id"}
 *       supervisor "load" (a copy of the tenant's checkpoint into the
 *       session's directory as RESTORE_FILE), then session "restore" ->
 *       200 session + {restored_from, restored: [names], failed: [...]}
 *   POST /session {"from_checkpoint"}
 *       the same once the session is created -> 201; if the restore
 *       fails, the new session is ended and the error answered
 *   GET /session/checkpoints
 *       supervisor "list" -> 200 {checkpoints: [{checkpoint_id,
 *       size_bytes, created_at}]}, the caller's, newest first
 *   DELETE /session/checkpoints/{checkpoint id}
 *       supervisor "remove" -> 204, or 404 (none such for this caller)
 *
 * Checkpoints are files named by the tenant (the hash of the API key) and
 * a random id, so another tenant's id is simply not found; they outlive
 * sessions and nginx restarts.  The supervisor alone reads and writes
 * them (nginx workers never touch the files); it refuses a store that
 * would take the tenant past pyrepl_checkpoint_quota (413
 * quota_exceeded), and describes every checkpoint as one
 * "<id> <size> <mtime>" entry, which both the store's and the list's
 * answers show.
 */

#include "ngx_http_pyrepl_checkpoint.h"

#include "ngx_http_pyrepl_auth.h"
#include "ngx_http_pyrepl_control.h"
#include "ngx_http_pyrepl_peer.h"
#include "ngx_http_pyrepl_reply.h"
#include "ngx_http_pyrepl_state.h"
#include "ngx_http_pyrepl_supervisor.h"
#include "ngx_http_pyrepl_table.h"

#include <sys/random.h>


#define PYREPL_CKPT_FILE     ".pyrepl-checkpoint"
#define PYREPL_RESTORE_FILE  ".pyrepl-restore"


typedef struct {
    ngx_http_pyrepl_control_t    cl;        /* first: the session side */
    ngx_http_pyrepl_peer_t       sup;
    json_t                      *doc;       /* the session's answer */
    ngx_http_pyrepl_session_t    s;
    u_char                       cid[PYREPL_ID_LEN];
    unsigned                     created:1; /* POST /session's: 201, and */
                                            /* no session left on failure */
} ngx_http_pyrepl_ckpt_t;


static ngx_http_pyrepl_ckpt_t *ngx_http_pyrepl_ckpt_create(
    ngx_http_request_t *r, u_char *id);
static void ngx_http_pyrepl_ckpt_cleanup(void *data);
static ngx_int_t ngx_http_pyrepl_ckpt_session(ngx_http_pyrepl_ckpt_t *ck,
    pr_type_t type, const char *file, ngx_http_pyrepl_frame_pt answered);
static ngx_int_t ngx_http_pyrepl_ckpt_supervisor(ngx_http_pyrepl_ckpt_t *ck,
    pr_type_t type, ngx_http_pyrepl_frame_pt answered);
static ngx_int_t ngx_http_pyrepl_ckpt_written(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame);
static ngx_int_t ngx_http_pyrepl_ckpt_stored(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame);
static void ngx_http_pyrepl_restore_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_pyrepl_restore_loaded(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame);
static ngx_int_t ngx_http_pyrepl_restore_done(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame);
static ngx_int_t ngx_http_pyrepl_ckpt_ask(ngx_http_request_t *r,
    u_char *cid, ngx_http_pyrepl_frame_pt answered);
static ngx_int_t ngx_http_pyrepl_ckpt_listed(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame);
static ngx_int_t ngx_http_pyrepl_ckpt_removed(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame);
static void ngx_http_pyrepl_ckpt_ask_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason);
static json_t *ngx_http_pyrepl_ckpt_entry(pr_str_t *entry);
static ngx_uint_t ngx_http_pyrepl_ckpt_errcode(pr_frame_t *frame,
    const char *code);
static json_t *ngx_http_pyrepl_ckpt_parse(pr_frame_t *frame);
static ngx_uint_t ngx_http_pyrepl_ckpt_refused(ngx_http_pyrepl_ckpt_t *ck,
    json_t *doc);
static void ngx_http_pyrepl_ckpt_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason);
static void ngx_http_pyrepl_ckpt_error(ngx_http_request_t *r,
    const char *code, const char *message);
static void ngx_http_pyrepl_ckpt_abandon(ngx_http_pyrepl_ckpt_t *ck);


ngx_int_t
ngx_http_pyrepl_checkpoint_handler(ngx_http_request_t *r, u_char *id)
{
    u_char                   raw[PYREPL_ID_LEN / 2];
    ngx_int_t                rc;
    ngx_uint_t               status;
    const char              *code, *message;
    ngx_http_pyrepl_ckpt_t  *ck;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    ck = ngx_http_pyrepl_ckpt_create(r, id);
    if (ck == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    status = ngx_http_pyrepl_state_refusal(&ck->s, &code, &message);
    if (status != 0) {
        return ngx_http_pyrepl_send_error(r, status, code, "%s", message);
    }

    if (getrandom(raw, sizeof(raw), 0) != (ssize_t) sizeof(raw)) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_hex_dump(ck->cid, raw, sizeof(raw));

    rc = ngx_http_pyrepl_ckpt_session(ck, PR_T_CHECKPOINT, PYREPL_CKPT_FILE,
                                      ngx_http_pyrepl_ckpt_written);

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


ngx_int_t
ngx_http_pyrepl_restore_handler(ngx_http_request_t *r, u_char *id)
{
    if (ngx_http_pyrepl_ckpt_create(r, id) == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_pyrepl_read_body(r, ngx_http_pyrepl_restore_body);
}


/* The request's state, with the session as the table has it. */
static ngx_http_pyrepl_ckpt_t *
ngx_http_pyrepl_ckpt_create(ngx_http_request_t *r, u_char *id)
{
    ngx_pool_cleanup_t           *cln;
    ngx_http_pyrepl_ckpt_t       *ck;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    ck = ngx_pcalloc(r->pool, sizeof(ngx_http_pyrepl_ckpt_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (ck == NULL || cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_pyrepl_ckpt_cleanup;
    cln->data = ck;

    ck->cl.request = r;
    ngx_memcpy(ck->cl.id, id, PYREPL_ID_LEN);
    ngx_http_set_ctx(r, ck, ngx_http_pyrepl_module);

    /* the router found it, with the caller's tenant */
    if (ngx_http_pyrepl_table_get(pmcf->shm_zone, id, &ck->s) != NGX_OK) {
        ck->s.state = PYREPL_STATE_TERMINATED;
    }

    return ck;
}


static void
ngx_http_pyrepl_ckpt_cleanup(void *data)
{
    ngx_http_pyrepl_ckpt_t  *ck = data;

    ngx_http_pyrepl_peer_close(&ck->sup);

    if (ck->doc != NULL) {
        json_decref(ck->doc);
        ck->doc = NULL;
    }
}


/* Send the session type; NGX_OK, NGX_DECLINED (its process is gone), or
 * NGX_ERROR. */
static ngx_int_t
ngx_http_pyrepl_ckpt_session(ngx_http_pyrepl_ckpt_t *ck, pr_type_t type,
    const char *file, ngx_http_pyrepl_frame_pt answered)
{
    ngx_int_t                     rc;
    pr_frame_t                    frame;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(ck->cl.request,
                                         ngx_http_pyrepl_module);

    ck->cl.peer.frame_handler = answered;
    ck->cl.peer.fail_handler = ngx_http_pyrepl_ckpt_failed;

    ngx_memzero(&frame, sizeof(pr_frame_t));
    frame.type = type;
    pr_set_cstr(&frame, file, file);

    if (type == PR_T_CHECKPOINT) {
        pr_set_int(&frame, max_size, (int64_t) pmcf->checkpoint_max_size);
    }

    rc = ngx_http_pyrepl_control_send(&ck->cl, &frame);

    if (rc == NGX_OK) {
        /* the session's answer may take longer than a supervisor's */
        ck->cl.peer.read_timeout = pmcf->run_timeout_max;
    }

    return rc;
}


/*
 * "store" the checkpoint the session wrote, or "load" a copy of it into
 * the session's directory: NGX_OK, or NGX_DECLINED (no supervisor).
 */
static ngx_int_t
ngx_http_pyrepl_ckpt_supervisor(ngx_http_pyrepl_ckpt_t *ck, pr_type_t type,
    ngx_http_pyrepl_frame_pt answered)
{
    ngx_http_request_t           *r;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    r = ck->cl.request;
    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    ck->sup.data = ck;
    ck->sup.log = r->connection->log;
    ck->sup.frame_handler = answered;
    ck->sup.fail_handler = ngx_http_pyrepl_ckpt_failed;

    return ngx_http_pyrepl_supervisor_checkpoint(pmcf, r->pool, &ck->sup,
                                                 type, ck->cl.id,
                                                 type == PR_T_STORE
                                                 ? PYREPL_CKPT_FILE
                                                 : PYREPL_RESTORE_FILE,
                                                 ck->s.tenant, ck->cid);
}


/* The session wrote its checkpoint (or says why not): store it. */
static ngx_int_t
ngx_http_pyrepl_ckpt_written(ngx_http_pyrepl_peer_t *peer, pr_frame_t *frame)
{
    ngx_http_pyrepl_ckpt_t  *ck;

    ck = peer->data;

    if (frame->type == PR_T_STDOUT || frame->type == PR_T_STDERR) {
        return NGX_OK;
    }

    ck->doc = ngx_http_pyrepl_ckpt_parse(frame);

    ngx_http_pyrepl_peer_close(peer);

    if (ngx_http_pyrepl_ckpt_refused(ck, ck->doc)) {
        return NGX_DONE;
    }

    if (ngx_http_pyrepl_ckpt_supervisor(ck, PR_T_STORE,
                                        ngx_http_pyrepl_ckpt_stored)
        != NGX_OK)
    {
        ngx_http_pyrepl_finalize_error(ck->cl.request,
                                       NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "unavailable",
                                       "the supervisor is not running");
    }

    return NGX_DONE;
}


/*
 * The supervisor stored the checkpoint (its answer has the entry), or
 * refused it: past the caller's quota, 413 quota_exceeded with the
 * supervisor's account of it; anything else is the server's trouble.
 */
static ngx_int_t
ngx_http_pyrepl_ckpt_stored(ngx_http_pyrepl_peer_t *peer, pr_frame_t *frame)
{
    u_char                       *msg;
    json_t                       *answer, *unsaved;
    ngx_http_request_t           *r;
    ngx_http_pyrepl_ckpt_t       *ck;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    ck = peer->data;
    r = ck->cl.request;

    if (ngx_http_pyrepl_ckpt_errcode(frame, "quota_exceeded")) {
        msg = ngx_pnalloc(r->pool, frame->message.len + 1);
        if (msg != NULL) {
            *ngx_cpymem(msg, frame->message.data, frame->message.len) = '\0';
        }

        ngx_http_pyrepl_peer_close(peer);
        ngx_http_pyrepl_ckpt_error(r, "quota_exceeded",
                                   msg ? (char *) msg
                                       : "pyrepl_checkpoint_quota reached");
        return NGX_DONE;
    }

    if (frame->type != PR_T_OK || !pr_has(frame, checkpoints)
        || frame->checkpoints.n != 1)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "pyrepl: checkpoint of %*s not stored: %*s",
                      (size_t) PYREPL_ID_LEN, ck->cl.id,
                      frame->message.len, frame->message.data);
        ngx_http_pyrepl_peer_close(peer);
        ngx_http_pyrepl_ckpt_error(r, "unavailable",
                                   "the checkpoint could not be stored");
        return NGX_DONE;
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);
    ngx_http_pyrepl_table_set_checkpoint(pmcf->shm_zone, ck->cl.id, ck->cid);

    answer = ngx_http_pyrepl_ckpt_entry(&frame->checkpoints.items[0]);

    ngx_http_pyrepl_peer_close(peer);

    unsaved = json_object_get(ck->doc, "unsaved");

    if (answer != NULL
        && json_object_set_new(answer, "unsaved", unsaved
                                                  ? json_incref(unsaved)
                                                  : json_null()) != 0)
    {
        json_decref(answer);
        answer = NULL;
    }

    ngx_http_finalize_request(r, answer
        ? ngx_http_pyrepl_send_json(r, NGX_HTTP_CREATED, answer)
        : NGX_HTTP_INTERNAL_SERVER_ERROR);

    return NGX_DONE;
}


ngx_int_t
ngx_http_pyrepl_checkpoints_handler(ngx_http_request_t *r)
{
    return ngx_http_pyrepl_ckpt_ask(r, NULL, ngx_http_pyrepl_ckpt_listed);
}


ngx_int_t
ngx_http_pyrepl_checkpoint_delete_handler(ngx_http_request_t *r,
    u_char *cid)
{
    return ngx_http_pyrepl_ckpt_ask(r, cid, ngx_http_pyrepl_ckpt_removed);
}


/*
 * One request to the supervisor about the caller's checkpoints: "list"
 * them all (cid NULL), or "remove" cid; under the caller's tenant, so no
 * key reaches another's.  The answer goes to answered.  Returns what a
 * content handler returns.
 */
static ngx_int_t
ngx_http_pyrepl_ckpt_ask(ngx_http_request_t *r, u_char *cid,
    ngx_http_pyrepl_frame_pt answered)
{
    uint64_t                      tenant;
    ngx_int_t                     rc;
    ngx_http_pyrepl_control_t    *cl;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_pyrepl_authenticate(r, &tenant) != NGX_OK) {
        return NGX_HTTP_UNAUTHORIZED;          /* checked by the router */
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    cl = ngx_pcalloc(r->pool, sizeof(ngx_http_pyrepl_control_t));
    if (cl == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cl->request = r;
    cl->peer.data = cl;
    cl->peer.log = r->connection->log;
    cl->peer.frame_handler = answered;
    cl->peer.fail_handler = ngx_http_pyrepl_ckpt_ask_failed;

    if (cid != NULL) {
        ngx_memcpy(cl->id, cid, PYREPL_ID_LEN);
    }

    return ngx_http_pyrepl_supervisor_wait(r,
               ngx_http_pyrepl_supervisor_checkpoints(pmcf, r->pool,
                                                      &cl->peer, tenant,
                                                      cid));
}


/* GET /session/checkpoints: 200 {"checkpoints": [...]} */
static ngx_int_t
ngx_http_pyrepl_ckpt_listed(ngx_http_pyrepl_peer_t *peer, pr_frame_t *frame)
{
    json_t                     *list, *o;
    uint32_t                    i;
    ngx_http_request_t         *r;
    ngx_http_pyrepl_control_t  *cl;

    cl = peer->data;
    r = cl->request;

    if (frame->type != PR_T_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "pyrepl: checkpoints not listed: %*s",
                      frame->message.len, frame->message.data);
        ngx_http_pyrepl_peer_close(peer);
        ngx_http_pyrepl_ckpt_error(r, "unavailable",
                                   "the checkpoints could not be listed");
        return NGX_DONE;
    }

    list = json_array();

    for (i = 0; list != NULL && pr_has(frame, checkpoints)
                && i < frame->checkpoints.n; i++)
    {
        o = ngx_http_pyrepl_ckpt_entry(&frame->checkpoints.items[i]);

        if (o == NULL || json_array_append_new(list, o) != 0) {
            json_decref(list);
            list = NULL;
        }
    }

    ngx_http_pyrepl_peer_close(peer);

    o = list ? json_pack("{s:o}", "checkpoints", list) : NULL;

    ngx_http_finalize_request(r, o
        ? ngx_http_pyrepl_send_json(r, NGX_HTTP_OK, o)
        : NGX_HTTP_INTERNAL_SERVER_ERROR);

    return NGX_DONE;
}


/* DELETE /session/checkpoints/{id}: 204, or 404 (none such of this key) */
static ngx_int_t
ngx_http_pyrepl_ckpt_removed(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame)
{
    ngx_http_request_t         *r;
    ngx_http_pyrepl_control_t  *cl;

    cl = peer->data;
    r = cl->request;

    if (frame->type == PR_T_OK) {
        ngx_http_pyrepl_peer_close(peer);
        ngx_http_finalize_request(r, ngx_http_pyrepl_send_json(r,
                                         NGX_HTTP_NO_CONTENT, NULL));
        return NGX_DONE;
    }

    if (ngx_http_pyrepl_ckpt_errcode(frame, "not_found")) {
        ngx_http_pyrepl_peer_close(peer);
        ngx_http_pyrepl_ckpt_error(r, "not_found", "no such checkpoint");
        return NGX_DONE;
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "pyrepl: checkpoint %*s not removed: %*s",
                  (size_t) PYREPL_ID_LEN, cl->id,
                  frame->message.len, frame->message.data);
    ngx_http_pyrepl_peer_close(peer);
    ngx_http_pyrepl_ckpt_error(r, "unavailable",
                               "the checkpoint could not be removed");

    return NGX_DONE;
}


static void
ngx_http_pyrepl_ckpt_ask_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason)
{
    ngx_http_pyrepl_control_t  *cl;

    cl = peer->data;

    ngx_log_error(NGX_LOG_ERR, peer->log, 0,
                  "pyrepl: supervisor request failed: %s", reason);

    ngx_http_pyrepl_ckpt_error(cl->request, "unavailable",
                               "the pyrepl supervisor did not answer");
}


/*
 * The supervisor's "<id> <size> <mtime>" as the API shows a checkpoint:
 * {checkpoint_id, size_bytes, created_at}; NULL if it is malformed or
 * memory ran out.
 */
static json_t *
ngx_http_pyrepl_ckpt_entry(pr_str_t *entry)
{
    off_t    size;
    time_t   mtime;
    u_char  *p, *last, *sp;

    p = (u_char *) entry->data;
    last = p + entry->len;

    if (entry->len < PYREPL_ID_LEN + 4 || p[PYREPL_ID_LEN] != ' ') {
        return NULL;
    }

    sp = ngx_strlchr(p + PYREPL_ID_LEN + 1, last, ' ');
    if (sp == NULL) {
        return NULL;
    }

    size = ngx_atoof(p + PYREPL_ID_LEN + 1, sp - p - PYREPL_ID_LEN - 1);
    mtime = ngx_atotm(sp + 1, last - sp - 1);

    if (size == NGX_ERROR || mtime == NGX_ERROR) {
        return NULL;
    }

    return json_pack("{s:s%,s:I,s:o}",
                     "checkpoint_id", p, (size_t) PYREPL_ID_LEN,
                     "size_bytes", (json_int_t) size,
                     "created_at", ngx_http_pyrepl_time_json(mtime));
}


/* Whether frame is the supervisor's "fail" with errcode code. */
static ngx_uint_t
ngx_http_pyrepl_ckpt_errcode(pr_frame_t *frame, const char *code)
{
    return frame->type == PR_T_FAIL
           && frame->errcode.len == ngx_strlen(code)
           && ngx_strncmp(frame->errcode.data, code, frame->errcode.len) == 0;
}


void
ngx_http_pyrepl_restore_created(ngx_http_request_t *r, u_char *id,
    u_char *cid)
{
    ngx_http_pyrepl_ckpt_t       *ck;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    ck = ngx_http_pyrepl_ckpt_create(r, id);

    if (ck == NULL || ck->s.state != PYREPL_STATE_IDLE) {
        /* no session is left behind */
        pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);
        ngx_http_pyrepl_table_remove(pmcf->shm_zone, id);
        ngx_http_pyrepl_supervisor_kill_now(pmcf, id, r->connection->log);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ck->created = 1;
    ngx_memcpy(ck->cid, cid, PYREPL_ID_LEN);

    if (ngx_http_pyrepl_ckpt_supervisor(ck, PR_T_LOAD,
                                        ngx_http_pyrepl_restore_loaded)
        != NGX_OK)
    {
        ngx_http_pyrepl_ckpt_abandon(ck);
        ngx_http_pyrepl_finalize_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "unavailable",
                                       "the supervisor is not running");
    }
}


/* A create whose restore failed leaves no session behind. */
static void
ngx_http_pyrepl_ckpt_abandon(ngx_http_pyrepl_ckpt_t *ck)
{
    ngx_http_pyrepl_main_conf_t  *pmcf;

    if (!ck->created) {
        return;
    }

    pmcf = ngx_http_get_module_main_conf(ck->cl.request,
                                         ngx_http_pyrepl_module);

    ngx_http_pyrepl_table_remove(pmcf->shm_zone, ck->cl.id);
    ngx_http_pyrepl_supervisor_kill_now(pmcf, ck->cl.id,
                                        ck->cl.request->connection->log);
}


/* POST /session/{id}/restore {"checkpoint_id"}: load, then restore. */
static void
ngx_http_pyrepl_restore_body(ngx_http_request_t *r)
{
    json_t                  *body, *cid;
    const char              *s, *code, *message;
    ngx_uint_t               i, status;
    ngx_http_pyrepl_ckpt_t  *ck;

    if (ngx_http_pyrepl_read_json_body(r, &body) != NGX_OK) {
        return;
    }

    ck = ngx_http_get_module_ctx(r, ngx_http_pyrepl_module);

    cid = body ? json_object_get(body, "checkpoint_id") : NULL;
    s = json_string_value(cid);

    for (i = 0; s != NULL && i < PYREPL_ID_LEN; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            break;
        }
    }

    if (s == NULL || i != PYREPL_ID_LEN || s[i] != '\0') {
        json_decref(body);
        ngx_http_pyrepl_finalize_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                       "\"checkpoint_id\" must be 32 "
                                       "lowercase hex characters");
        return;
    }

    ngx_memcpy(ck->cid, s, PYREPL_ID_LEN);
    json_decref(body);


    status = ngx_http_pyrepl_state_refusal(&ck->s, &code, &message);
    if (status != 0) {
        ngx_http_pyrepl_finalize_error(r, status, code, message);
        return;
    }

    if (ngx_http_pyrepl_ckpt_supervisor(ck, PR_T_LOAD,
                                        ngx_http_pyrepl_restore_loaded)
        != NGX_OK)
    {
        ngx_http_pyrepl_finalize_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "unavailable",
                                       "the supervisor is not running");
    }
}


static ngx_int_t
ngx_http_pyrepl_restore_loaded(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame)
{
    ngx_int_t                rc;
    ngx_http_request_t      *r;
    ngx_http_pyrepl_ckpt_t  *ck;

    ck = peer->data;
    r = ck->cl.request;

    if (frame->type != PR_T_OK) {
        rc = ngx_http_pyrepl_ckpt_errcode(frame, "not_found");
        ngx_http_pyrepl_peer_close(peer);
        ngx_http_pyrepl_ckpt_abandon(ck);
        ngx_http_pyrepl_finalize_error(r, rc ? NGX_HTTP_NOT_FOUND
                                             : NGX_HTTP_SERVICE_UNAVAILABLE,
                                       rc ? "not_found" : "unavailable",
                                       rc ? "no such checkpoint"
                                          : "the checkpoint cannot be read");
        return NGX_DONE;
    }

    ngx_http_pyrepl_peer_close(peer);

    rc = ngx_http_pyrepl_ckpt_session(ck, PR_T_RESTORE, PYREPL_RESTORE_FILE,
                                      ngx_http_pyrepl_restore_done);
    if (rc == NGX_DECLINED) {
        ngx_http_pyrepl_ckpt_abandon(ck);
        ngx_http_pyrepl_finalize_error(r, NGX_HTTP_CONFLICT,
                                       "session_crashed",
                                       "the session process is gone");

    } else if (rc != NGX_OK) {
        ngx_http_pyrepl_ckpt_abandon(ck);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
    }

    return NGX_DONE;
}


static ngx_int_t
ngx_http_pyrepl_restore_done(ngx_http_pyrepl_peer_t *peer, pr_frame_t *frame)
{
    json_t                  *doc, *o;
    ngx_http_request_t      *r;
    ngx_http_pyrepl_ckpt_t  *ck;

    ck = peer->data;
    r = ck->cl.request;

    if (frame->type == PR_T_STDOUT || frame->type == PR_T_STDERR) {
        return NGX_OK;
    }

    doc = ngx_http_pyrepl_ckpt_parse(frame);

    ngx_http_pyrepl_peer_close(peer);

    if (ngx_http_pyrepl_ckpt_refused(ck, doc)) {
        json_decref(doc);
        return NGX_DONE;
    }

    o = ngx_http_pyrepl_session_json(&ck->s, !ck->created);

    if (o == NULL
        || json_object_set_new(o, "restored_from",
                               json_stringn((char *) ck->cid,
                                            PYREPL_ID_LEN)) != 0
        || json_object_update(o, doc) != 0)
    {
        json_decref(doc);
        json_decref(o);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NGX_DONE;
    }

    json_decref(doc);

    ngx_http_finalize_request(r, ngx_http_pyrepl_send_json(r,
                                     ck->created ? NGX_HTTP_CREATED
                                                 : NGX_HTTP_OK, o));

    return NGX_DONE;
}


/*
 * The session's answer: its JSON document; a refusal of the session
 * process's own (busy with another request) as {"error": {"code",
 * "message"}}; or NULL (it sent neither).
 */
static json_t *
ngx_http_pyrepl_ckpt_parse(pr_frame_t *frame)
{
    if (frame->type == PR_T_FAIL && pr_has(frame, errcode)
        && pr_has(frame, message))
    {
        return json_pack("{s:{s:s%,s:s%}}", "error",
                         "code", frame->errcode.data, frame->errcode.len,
                         "message", frame->message.data, frame->message.len);
    }

    if (frame->type != PR_T_OK || !pr_has(frame, text)) {
        return NULL;
    }

    return json_loadb(frame->text.data, frame->text.len, 0, NULL);
}


/*
 * Whether the session refused (doc NULL or with "error"): then the
 * request is finalized with the error, and a create's session ended.
 * Called with the session connection closed.
 */
static ngx_uint_t
ngx_http_pyrepl_ckpt_refused(ngx_http_pyrepl_ckpt_t *ck, json_t *doc)
{
    json_t      *error;
    const char  *code, *message;

    error = doc ? json_object_get(doc, "error") : NULL;

    if (doc != NULL && error == NULL) {
        return 0;
    }

    ngx_http_pyrepl_ckpt_abandon(ck);

    if (error != NULL) {
        code = json_string_value(json_object_get(error, "code"));
        message = json_string_value(json_object_get(error, "message"));
        ngx_http_pyrepl_ckpt_error(ck->cl.request, code, message);

    } else {
        ngx_http_pyrepl_finalize_error(ck->cl.request,
                                       NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "unavailable",
                                       "the session did not answer (it may "
                                       "be running code)");
    }

    return 1;
}


/*
 * A refusal (the runtime's {"code", "message"}, the session process's or
 * the supervisor's) as the API answers it: too_large and quota_exceeded
 * 413, bad_checkpoint 400, not_found 404, session_busy 409, anything else
 * 503.  A NULL code or message is the session failing.
 */
static void
ngx_http_pyrepl_ckpt_error(ngx_http_request_t *r, const char *code,
    const char *message)
{
    ngx_uint_t  status;

    if (code == NULL || message == NULL) {
        code = "unavailable";
        message = "the session failed";
    }

    status = ngx_strcmp(code, "too_large") == 0
             || ngx_strcmp(code, "quota_exceeded") == 0
             ? NGX_HTTP_REQUEST_ENTITY_TOO_LARGE
             : ngx_strcmp(code, "bad_checkpoint") == 0 ? NGX_HTTP_BAD_REQUEST
             : ngx_strcmp(code, "not_found") == 0 ? NGX_HTTP_NOT_FOUND
             : ngx_strcmp(code, "session_busy") == 0 ? NGX_HTTP_CONFLICT
             : NGX_HTTP_SERVICE_UNAVAILABLE;

    ngx_http_pyrepl_finalize_error(r, status, code, message);
}


static void
ngx_http_pyrepl_ckpt_failed(ngx_http_pyrepl_peer_t *peer, const char *reason)
{
    ngx_http_pyrepl_ckpt_t  *ck;

    ck = peer->data;

    ngx_log_error(NGX_LOG_WARN, peer->log, 0,
                  "pyrepl: checkpoint or restore of %*s failed: %s",
                  (size_t) PYREPL_ID_LEN, ck->cl.id, reason);

    ngx_http_pyrepl_ckpt_abandon(ck);

    ngx_http_pyrepl_finalize_error(ck->cl.request,
                                   NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "unavailable", reason);
}
