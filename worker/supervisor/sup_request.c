/*
 * sup_request.c: the supervisor's control protocol.  Validates one request
 * frame from an nginx worker and turns it into exactly one reply:
 *
 *   create {id, lang}  ->  ok {id, pid}  |  fail {errcode, message}
 *                          (deferred while it waits for a pool process);
 *                          lang "python", or "bash" with --bash
 *   kill {id}          ->  ok {id}       (idempotent)
 *   store {id, file, text, max_size, quota}
 *                      ->  ok {id, checkpoints: [the new one's entry]}
 *   load {id, file, text}
 *                      ->  ok {id}
 *   list {text}        ->  ok {checkpoints}: tenant text's, newest first
 *   remove {text}      ->  ok  |  fail {errcode: "not_found"}
 *   move {id, pid}     ->  ok {id, pid}
 *   status {}          ->  ok {pool, zygote, sessions}: pool processes
 *                          ready, the zygote's pid (0 while it is not
 *                          ready), live sessions
 *   anything else      ->  fail {errcode: "bad_request"}
 *
 * errcode is "bad_request", "conflict" (the id is in use), "not_found",
 * "too_large", "quota_exceeded" (checkpoints) or "unavailable" (the
 * supervisor could not do it: out of memory, descriptors, processes).
 * The id names files, so it is checked strictly (pyrepl_id_valid).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sup.h"
#include "wk_log.h"


static int sup_request_id(const pr_frame_t *req, char *id);
static int sup_request_name(const pr_frame_t *req, char *name, size_t size);
static void sup_request_fail(pr_frame_t *reply, sup_err_t *err,
    const char *code, const char *msg);


/* Copy a valid id from req into id (PYREPL_ID_LEN + 1 bytes); 0 or -1. */
static int
sup_request_id(const pr_frame_t *req, char *id)
{
    if (!pr_has(req, id)
        || !pyrepl_id_valid((const unsigned char *) req->id.data,
                            req->id.len))
    {
        return -1;
    }

    memcpy(id, req->id.data, PYREPL_ID_LEN);
    id[PYREPL_ID_LEN] = '\0';

    return 0;
}


/* Copy req's text, without NULs, into name (size bytes); 0 or -1. */
static int
sup_request_name(const pr_frame_t *req, char *name, size_t size)
{
    if (!pr_has(req, text) || req->text.len >= size
        || memchr(req->text.data, '\0', req->text.len) != NULL)
    {
        return -1;
    }

    memcpy(name, req->text.data, req->text.len);
    name[req->text.len] = '\0';

    return 0;
}


static void
sup_request_fail(pr_frame_t *reply, sup_err_t *err, const char *code,
    const char *msg)
{
    if (code != NULL) {
        err->code = code;
        (void) snprintf(err->message, sizeof(err->message), "%s", msg);
        wk_log("bad request: %s", msg);
    }

    reply->type = PR_T_FAIL;
    pr_set_cstr(reply, errcode, err->code);
    pr_set_cstr(reply, message, err->message);
}


int
sup_request(const sup_conf_t *conf, sup_client_t *client,
    const pr_frame_t *req, pr_frame_t *reply, sup_err_t *err)
{
    int      rc, lang;
    pid_t    pid;
    char     id[PYREPL_ID_LEN + 1], msg[128], file[256], name[64];

    memset(reply, 0, sizeof(pr_frame_t));

    switch (req->type) {

    case PR_T_CREATE:
        if (sup_request_id(req, id) == -1) {
            sup_request_fail(reply, err, "bad_request",
                             "id must be a session id");
            return 0;
        }

        if (pr_has(req, lang) && req->lang.len == 6
            && memcmp(req->lang.data, "python", 6) == 0)
        {
            lang = SUP_LANG_PYTHON;

        } else if (conf->bash != NULL && pr_has(req, lang)
                   && req->lang.len == 4
                   && memcmp(req->lang.data, "bash", 4) == 0)
        {
            lang = SUP_LANG_BASH;

        } else {
            sup_request_fail(reply, err, "bad_request",
                             conf->bash ? "lang must be \"python\" or "
                                          "\"bash\""
                                        : "lang must be \"python\"");
            return 0;
        }

        rc = sup_create(conf, client, id, lang, &pid, err);

        if (rc == 1) {
            return 1;       /* waits for a pool process */
        }

        if (rc == -1) {
            wk_log("create %s failed: %s: %s", id, err->code, err->message);
            sup_request_fail(reply, err, NULL, NULL);
            return 0;
        }

        wk_log("session %s started, pid %ld", id, (long) pid);

        reply->type = PR_T_OK;
        pr_set_str(reply, id, req->id.data, req->id.len);
        pr_set_int(reply, pid, pid);
        return 0;

    case PR_T_STORE:
    case PR_T_LOAD:
        if (sup_request_id(req, id) == -1 || !pr_has(req, file)
            || req->file.len >= sizeof(file)
            || sup_request_name(req, name, sizeof(name)) == -1)
        {
            sup_request_fail(reply, err, "bad_request",
                             "store and load take an id, a file and a name");
            return 0;
        }

        memcpy(file, req->file.data, req->file.len);
        file[req->file.len] = '\0';

        if (strlen(file) != req->file.len || !sup_checkpoint_file_ok(file)) {
            sup_request_fail(reply, err, "bad_request",
                             "the file must be a plain name");
            return 0;
        }

        rc = (req->type == PR_T_STORE)
             ? sup_checkpoint_store(conf, id, file, name,
                                    pr_has(req, max_size) ? req->max_size : 0,
                                    pr_has(req, quota) ? req->quota : 0,
                                    &reply->checkpoints, err)
             : sup_checkpoint_load(conf, id, file, name, err);

        if (rc == -1) {
            sup_request_fail(reply, err, NULL, NULL);
            return 0;
        }

        reply->type = PR_T_OK;
        pr_set_str(reply, id, req->id.data, req->id.len);

        if (req->type == PR_T_STORE) {
            reply->has |= PR_BIT(checkpoints);
        }

        return 0;

    case PR_T_LIST:
        if (sup_request_name(req, name, sizeof(name)) == -1) {
            sup_request_fail(reply, err, "bad_request", "list takes a tenant");
            return 0;
        }

        if (sup_checkpoint_list(conf, name, conf->max_frame,
                                &reply->checkpoints, err) == -1)
        {
            sup_request_fail(reply, err, NULL, NULL);
            return 0;
        }

        reply->type = PR_T_OK;
        reply->has |= PR_BIT(checkpoints);
        return 0;

    case PR_T_REMOVE:
        if (sup_request_name(req, name, sizeof(name)) == -1) {
            sup_request_fail(reply, err, "bad_request", "remove takes a name");
            return 0;
        }

        if (sup_checkpoint_remove(conf, name, err) == -1) {
            sup_request_fail(reply, err, NULL, NULL);
            return 0;
        }

        reply->type = PR_T_OK;
        return 0;

    case PR_T_MOVE:
        if (sup_request_id(req, id) == -1 || !pr_has(req, pid)
            || req->pid <= 0 || req->pid > INT32_MAX)
        {
            sup_request_fail(reply, err, "bad_request",
                             "move takes an id and a pid");
            return 0;
        }

        if (sup_move(conf, id, (pid_t) req->pid, err) == -1) {
            sup_request_fail(reply, err, NULL, NULL);
            return 0;
        }

        reply->type = PR_T_OK;
        pr_set_str(reply, id, req->id.data, req->id.len);
        pr_set_int(reply, pid, req->pid);
        return 0;

    case PR_T_KILL:
        if (sup_request_id(req, id) == -1) {
            sup_request_fail(reply, err, "bad_request",
                             "id must be a session id");
            return 0;
        }

        sup_kill(conf, id);

        wk_log("session %s killed", id);

        reply->type = PR_T_OK;
        pr_set_str(reply, id, req->id.data, req->id.len);
        return 0;

    case PR_T_ENDED:
        if (sup_request_id(req, id) == -1) {
            sup_request_fail(reply, err, "bad_request",
                             "id must be a session id");
            return 0;
        }

        rc = sup_ended(client, id, reply, err);

        if (rc == -1) {
            sup_request_fail(reply, err, NULL, NULL);
        }

        return (rc == 1) ? 1 : 0;

    case PR_T_STATUS:
        reply->type = PR_T_OK;
        pr_set_int(reply, pool, (int64_t) sup_pool_idle());
        pr_set_int(reply, zygote, (int64_t) sup_zygote_pid());
        pr_set_int(reply, sessions, (int64_t) sup_session_live());
        return 0;

    default:
        (void) snprintf(msg, sizeof(msg), "unexpected \"%s\" request: the "
                        "supervisor takes create, kill, store, load, list, "
                        "remove, move, status and ended",
                        pr_type_name(req->type));
        sup_request_fail(reply, err, "bad_request", msg);
        return 0;
    }
}


void
sup_request_release(pr_frame_t *reply)
{
    if (pr_has(reply, checkpoints)) {
        free(reply->checkpoints.items);
        reply->has &= ~PR_BIT(checkpoints);
    }
}
