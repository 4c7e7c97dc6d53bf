/*
 * ngx_http_pyrepl_session.c: the session routes.  POST /session asks the
 * supervisor for a session process and records it in the shared table;
 * GET lists or shows sessions from the table; DELETE has the supervisor
 * kill the session's processes and drops it from the table.  Both ask the
 * supervisor through ngx_http_pyrepl_supervisor.c.
 */

#include "ngx_http_pyrepl_session.h"

#include "ngx_http_pyrepl_auth.h"
#include "ngx_http_pyrepl_checkpoint.h"
#include "ngx_http_pyrepl_command.h"
#include "ngx_http_pyrepl_control.h"
#include "ngx_http_pyrepl_e2b.h"
#include "ngx_http_pyrepl_exec_parse.h"
#include "ngx_http_pyrepl_jupyter.h"
#include "ngx_http_pyrepl_memory.h"
#include "ngx_http_pyrepl_opensandbox.h"
#include "ngx_http_pyrepl_peer.h"
#include "ngx_http_pyrepl_reply.h"
#include "ngx_http_pyrepl_run.h"
#include "ngx_http_pyrepl_supervisor.h"
#include "ngx_http_pyrepl_table.h"

#include <sys/random.h>


/* what a create is for (ngx_http_pyrepl_create_begin) */
#define PYREPL_CREATE_SESSION  0      /* POST /session */
#define PYREPL_CREATE_COMMAND  1      /* execd's POST /command */
#define PYREPL_CREATE_KERNEL   2      /* Jupyter's POST /kernels */
#define PYREPL_CREATE_NOTEBOOK 3      /* Jupyter's POST /sessions */
#define PYREPL_CREATE_CONTEXT  4      /* E2B's POST /contexts */
#define PYREPL_CREATE_DEFAULT  5      /* ... a run's default context */


typedef struct {
    ngx_http_pyrepl_peer_t       peer;
    ngx_http_request_t          *request;
    ngx_http_pyrepl_session_t    session;
    u_char                       from[PYREPL_ID_LEN];  /* from_checkpoint */
    ngx_str_t                    cwd;          /* the create's, or empty */
    ngx_array_t                 *env;          /* of "NAME=VALUE", or NULL */
    unsigned                     restore:1;
    unsigned                     one_shot:1;   /* execd's POST /command */
    unsigned                     kernel:1;     /* Jupyter's POST /kernels */
    ngx_http_pyrepl_record_t    *nb;           /* ... POST /sessions */
    ngx_http_pyrepl_record_t    *rec;          /* E2B's context */
    unsigned                     background:1; /* ... {background: true} */
    ngx_str_t                    command;      /* a background one's */
    ngx_msec_t                   timeout;
} ngx_http_pyrepl_ctl_t;


static void ngx_http_pyrepl_create_body_handler(ngx_http_request_t *r);
static void ngx_http_pyrepl_command_body_handler(ngx_http_request_t *r);
static void ngx_http_pyrepl_kernel_body_handler(ngx_http_request_t *r);
static void ngx_http_pyrepl_notebook_body_handler(ngx_http_request_t *r);
static void ngx_http_pyrepl_context_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_pyrepl_create_context(ngx_http_request_t *r,
    ngx_http_pyrepl_ctl_t *ctl, ngx_uint_t is_default);
static void ngx_http_pyrepl_create_begin(ngx_http_request_t *r,
    ngx_uint_t mode);
static ngx_int_t ngx_http_pyrepl_create_parse(ngx_http_request_t *r,
    json_t *body, ngx_http_pyrepl_ctl_t *ctl);
static void ngx_http_pyrepl_create_refused(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_pyrepl_created(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame);
static const char *ngx_http_pyrepl_create_place_parse(ngx_http_request_t *r,
    json_t *body, ngx_http_pyrepl_ctl_t *ctl);
static void ngx_http_pyrepl_create_answer(ngx_http_pyrepl_ctl_t *ctl);
static void ngx_http_pyrepl_create_reply(ngx_http_pyrepl_ctl_t *ctl);
static void ngx_http_pyrepl_create_place(ngx_http_pyrepl_ctl_t *ctl);
static ngx_int_t ngx_http_pyrepl_create_placed(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame);
static void ngx_http_pyrepl_create_place_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason);
static void ngx_http_pyrepl_create_undo(ngx_http_pyrepl_ctl_t *ctl);
static void ngx_http_pyrepl_create_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason);
static ngx_int_t ngx_http_pyrepl_deleted(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame);
static void ngx_http_pyrepl_delete_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason);
static json_t *ngx_http_pyrepl_session_detail(ngx_http_request_t *r,
    ngx_http_pyrepl_session_t *s);


ngx_int_t
ngx_http_pyrepl_create_handler(ngx_http_request_t *r)
{
    return ngx_http_pyrepl_read_body(r, ngx_http_pyrepl_create_body_handler);
}


/*
 * OpenSandbox execd's POST /command {command, cwd, envs, timeout}: a
 * one-shot command, in a bash session of its own made in cwd with envs,
 * which goes when the command's run ends (ngx_http_pyrepl_run_one_shot);
 * with "background": true, the session stays and runs it with no client
 * waiting (ngx_http_pyrepl_command.c).
 */
ngx_int_t
ngx_http_pyrepl_command_handler(ngx_http_request_t *r)
{
    return ngx_http_pyrepl_read_body(r, ngx_http_pyrepl_command_body_handler);
}


static void
ngx_http_pyrepl_create_body_handler(ngx_http_request_t *r)
{
    ngx_http_pyrepl_create_begin(r, PYREPL_CREATE_SESSION);
}


static void
ngx_http_pyrepl_command_body_handler(ngx_http_request_t *r)
{
    ngx_http_pyrepl_create_begin(r, PYREPL_CREATE_COMMAND);
}


/*
 * Jupyter's POST /kernels {"name"?, "env"?}: a Python session, answered
 * with its kernel model (ngx_http_pyrepl_jupyter.c).
 */
ngx_int_t
ngx_http_pyrepl_kernel_create_handler(ngx_http_request_t *r)
{
    return ngx_http_pyrepl_read_body(r, ngx_http_pyrepl_kernel_body_handler);
}


static void
ngx_http_pyrepl_kernel_body_handler(ngx_http_request_t *r)
{
    ngx_http_pyrepl_create_begin(r, PYREPL_CREATE_KERNEL);
}


/*
 * Jupyter's POST /sessions {"path", "name", "type", "kernel"}: a
 * notebook's session on a new kernel, or on the caller's kernel.id
 * (ngx_http_pyrepl_jupyter.c answers that one).
 */
ngx_int_t
ngx_http_pyrepl_notebook_create_handler(ngx_http_request_t *r)
{
    return ngx_http_pyrepl_read_body(r,
                                     ngx_http_pyrepl_notebook_body_handler);
}


static void
ngx_http_pyrepl_notebook_body_handler(ngx_http_request_t *r)
{
    ngx_http_pyrepl_create_begin(r, PYREPL_CREATE_NOTEBOOK);
}


/*
 * E2B's POST /contexts {language?, cwd?}: a session with a context record,
 * answered {id, language, cwd} (ngx_http_pyrepl_e2b.c).
 */
ngx_int_t
ngx_http_pyrepl_context_create_handler(ngx_http_request_t *r)
{
    return ngx_http_pyrepl_read_body(r, ngx_http_pyrepl_context_body_handler);
}


static void
ngx_http_pyrepl_context_body_handler(ngx_http_request_t *r)
{
    ngx_http_pyrepl_create_begin(r, PYREPL_CREATE_CONTEXT);
}


/*
 * E2B's POST /execute (its body read) whose key has no default context
 * for the run's language: one is made and the run goes there; if
 * another request made one meanwhile, the run goes to that one.
 */
void
ngx_http_pyrepl_context_create_default(ngx_http_request_t *r)
{
    ngx_http_pyrepl_create_begin(r, PYREPL_CREATE_DEFAULT);
}


static void
ngx_http_pyrepl_create_begin(ngx_http_request_t *r, ngx_uint_t mode)
{
    json_t                       *body, *asked;
    ngx_int_t                     rc;
    ngx_uint_t                    one_shot;
    ngx_http_pyrepl_record_t   *nb;
    const char                   *why;
    ngx_http_pyrepl_ctl_t        *ctl;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    if (ngx_http_pyrepl_read_json_body(r, &body) != NGX_OK) {
        return;
    }

    one_shot = (mode == PYREPL_CREATE_COMMAND);
    nb = NULL;

    if (mode == PYREPL_CREATE_NOTEBOOK) {
        /* an existing kernel's is answered there; else its kernel's body */
        nb = ngx_http_pyrepl_jupyter_notebook(r, body, &asked);
        json_decref(body);

        if (nb == NULL) {
            return;
        }

        body = asked;
        mode = PYREPL_CREATE_KERNEL;
    }

    if (mode == PYREPL_CREATE_KERNEL || mode == PYREPL_CREATE_CONTEXT
        || mode == PYREPL_CREATE_DEFAULT)
    {
        asked = body;
        body = (mode == PYREPL_CREATE_KERNEL)
               ? ngx_http_pyrepl_jupyter_create_body(asked, &why)
               : ngx_http_pyrepl_e2b_create_body(asked,
                                                 mode == PYREPL_CREATE_DEFAULT,
                                                 &why);
        json_decref(asked);

        if (body == NULL) {
            ngx_http_pyrepl_finalize_error(r, why ? NGX_HTTP_BAD_REQUEST
                                              : NGX_HTTP_INTERNAL_SERVER_ERROR,
                                           why ? "bad_request" : "internal",
                                           why ? why : "out of memory");
            return;
        }
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    ctl = ngx_pcalloc(r->pool, sizeof(ngx_http_pyrepl_ctl_t));
    if (ctl == NULL) {
        json_decref(body);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ctl->one_shot = one_shot;
    ctl->kernel = (mode == PYREPL_CREATE_KERNEL);
    ctl->nb = nb;
    ctl->background = one_shot
                      && json_is_true(json_object_get(body, "background"));

    if (ctl->background
        && ngx_http_pyrepl_command_parse(r, body, &ctl->command,
                                         &ctl->timeout)
           != NGX_OK)
    {
        json_decref(body);
        return;
    }

    rc = ngx_http_pyrepl_create_parse(r, body, ctl);
    json_decref(body);

    if (rc != NGX_OK) {
        return;
    }

    if ((mode == PYREPL_CREATE_CONTEXT || mode == PYREPL_CREATE_DEFAULT)
        && ngx_http_pyrepl_create_context(r, ctl,
                                          mode == PYREPL_CREATE_DEFAULT)
           != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (one_shot) {
        ctl->session.lang = PYREPL_LANG_BASH;
    }

    if (ngx_http_pyrepl_new_id(r, ctl->session.id) != NGX_OK) {
        ngx_http_pyrepl_finalize_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "unavailable",
                                       "no randomness for a session id");
        return;
    }

    if (ngx_http_pyrepl_authenticate(r, &ctl->session.tenant) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_UNAUTHORIZED);
        return;                                /* checked by the router */
    }

    ctl->session.state = PYREPL_STATE_STARTING;
    ctl->session.runner = ngx_pid;          /* the worker finishing it */
    ctl->session.created = ngx_time();
    ctl->session.last_activity = ctl->session.created;
    ctl->session.expires += ctl->session.created;

    rc = ngx_http_pyrepl_table_insert(pmcf->shm_zone, &ctl->session,
                                      ctl->rec, pmcf->max_sessions,
                                      pmcf->max_sessions_per_key);

    if (rc == NGX_DONE) {
        /* another request made the default context: the run goes there */
        ngx_http_finalize_request(r,
            ngx_http_pyrepl_run_handler(r, ctl->session.id));
        return;
    }

    if (rc != NGX_OK) {
        ngx_http_pyrepl_create_refused(r, rc);
        return;
    }

    ctl->request = r;
    ctl->peer.data = ctl;
    ctl->peer.log = r->connection->log;
    ctl->peer.frame_handler = ngx_http_pyrepl_created;
    ctl->peer.fail_handler = ngx_http_pyrepl_create_failed;

    rc = ngx_http_pyrepl_supervisor_create(pmcf, r->pool, &ctl->peer,
                                           ctl->session.id,
                                           ctl->session.lang);
    if (rc != NGX_OK) {
        ngx_http_pyrepl_table_remove(pmcf->shm_zone, ctl->session.id);
        ngx_http_pyrepl_finalize_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "unavailable",
                                       "the pyrepl supervisor is not running");
    }
}


/*
 * The context record of an E2B context being made: its cwd (the
 * create's), and whether it is its key's default for the language.
 * NGX_OK, or NGX_ERROR out of memory.
 */
static ngx_int_t
ngx_http_pyrepl_create_context(ngx_http_request_t *r,
    ngx_http_pyrepl_ctl_t *ctl, ngx_uint_t is_default)
{
    ngx_http_pyrepl_record_t  *rec;

    rec = ngx_pcalloc(r->pool, sizeof(ngx_http_pyrepl_record_t));
    if (rec == NULL) {
        return NGX_ERROR;
    }

    rec->kind = PYREPL_RECORD_CONTEXT;
    rec->is_default = is_default;

    /* at most PYREPL_NB_PATH (ngx_http_pyrepl_e2b_create_body) */
    if (ctl->cwd.len) {
        rec->path_len = ngx_min(ctl->cwd.len, PYREPL_NB_PATH);
        ngx_memcpy(rec->path, ctl->cwd.data, rec->path_len);
    }

    ctl->rec = rec;

    return NGX_OK;
}


/*
 * 429 too_many_sessions for a refused table insert: NGX_ABORT, the
 * caller's key is at pyrepl_max_sessions_per_key (other keys may go on);
 * NGX_ERROR, the session table's zone is full; else every session the
 * server may hold exists.
 */
static void
ngx_http_pyrepl_create_refused(ngx_http_request_t *r, ngx_int_t rc)
{
    u_char                        msg[128], *last;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    if (rc == NGX_ABORT) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "pyrepl: session refused: the key is at "
                      "pyrepl_max_sessions_per_key %ui",
                      pmcf->max_sessions_per_key);
        last = ngx_snprintf(msg, sizeof(msg) - 1, "this API key has its "
                            "%ui sessions (pyrepl_max_sessions_per_key); "
                            "delete one first", pmcf->max_sessions_per_key);

    } else if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "pyrepl: session refused: pyrepl_zone \"%V\" (%uz "
                      "bytes) is full; make it larger",
                      &pmcf->shm_zone->shm.name, pmcf->shm_zone->shm.size);
        last = ngx_snprintf(msg, sizeof(msg) - 1, "the server's session "
                            "table is full (pyrepl_zone \"%V\", %uz bytes)",
                            &pmcf->shm_zone->shm.name,
                            pmcf->shm_zone->shm.size);

    } else {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "pyrepl: session refused: pyrepl_max_sessions %ui "
                      "reached", pmcf->max_sessions);
        last = ngx_snprintf(msg, sizeof(msg) - 1, "at most %ui sessions may "
                            "exist at once", pmcf->max_sessions);
    }

    *last = '\0';

    ngx_http_pyrepl_finalize_error(r, NGX_HTTP_TOO_MANY_REQUESTS,
                                   "too_many_sessions", (char *) msg);
}


/*
 * Validate the create body into *s (expires holds the TTL for now).
 * Returns NGX_OK, or NGX_DONE when it answered 400 and finalized.
 */
static ngx_int_t
ngx_http_pyrepl_create_parse(ngx_http_request_t *r, json_t *body,
    ngx_http_pyrepl_ctl_t *ctl)
{
    json_t                       *v;
    const char                   *cid, *why;
    ngx_uint_t                    i;
    ngx_http_pyrepl_session_t    *s;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    s = &ctl->session;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    s->lang = pmcf->default_language;
    s->expires = pmcf->session_ttl;

    if (body == NULL) {
        return NGX_OK;
    }

    v = json_object_get(body, "language");

    if (v != NULL) {
        if (json_is_string(v)
            && ngx_strcmp(json_string_value(v), "python") == 0)
        {
            s->lang = PYREPL_LANG_PYTHON;

        } else if (json_is_string(v)
                   && ngx_strcmp(json_string_value(v), "bash") == 0)
        {
            s->lang = PYREPL_LANG_BASH;

        } else {
            ngx_http_pyrepl_finalize_error(r, NGX_HTTP_BAD_REQUEST,
                                           "bad_request",
                                           "\"language\" must be \"python\" "
                                           "or \"bash\"");
            return NGX_DONE;
        }
    }

    v = json_object_get(body, "ttl_seconds");

    if (v != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 1
            || json_integer_value(v) > pmcf->session_ttl_max)
        {
            ngx_http_finalize_request(r,
                ngx_http_pyrepl_send_error(r, NGX_HTTP_BAD_REQUEST,
                                           "bad_request",
                                           "\"ttl_seconds\" must be an "
                                           "integer from 1 to %T",
                                           pmcf->session_ttl_max));
            return NGX_DONE;
        }

        s->expires = (time_t) json_integer_value(v);
    }

    v = json_object_get(body, "from_checkpoint");

    if (v != NULL) {
        cid = json_string_value(v);

        for (i = 0; cid != NULL && i < PYREPL_ID_LEN; i++) {
            if (!((cid[i] >= '0' && cid[i] <= '9')
                  || (cid[i] >= 'a' && cid[i] <= 'f')))
            {
                break;
            }
        }

        if (cid == NULL || i != PYREPL_ID_LEN || cid[i] != '\0'
            || s->lang != PYREPL_LANG_PYTHON)
        {
            ngx_http_pyrepl_finalize_error(r, NGX_HTTP_BAD_REQUEST,
                                           "bad_request",
                                           "\"from_checkpoint\" must be a "
                                           "checkpoint id (32 lowercase hex "
                                           "characters), for a python "
                                           "session");
            return NGX_DONE;
        }

        ngx_memcpy(ctl->from, cid, PYREPL_ID_LEN);
        ctl->restore = 1;
    }

    why = ngx_http_pyrepl_create_place_parse(r, body, ctl);

    if (why != NULL) {
        ngx_http_pyrepl_finalize_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                       why);
        return NGX_DONE;
    }

    return NGX_OK;
}


/* The create's "cwd" and "env" into ctl; NULL, or what is wrong. */
static const char *
ngx_http_pyrepl_create_place_parse(ngx_http_request_t *r, json_t *body,
    ngx_http_pyrepl_ctl_t *ctl)
{
    json_t      *v;
    const char  *why;

    why = ngx_http_pyrepl_parse_cwd(r->pool, json_object_get(body, "cwd"),
                                    &ctl->cwd);
    if (why != NULL) {
        return why;
    }

    v = json_object_get(body, "env");

    if (v == NULL && ctl->one_shot) {
        v = json_object_get(body, "envs");          /* execd's name */
    }

    why = ngx_http_pyrepl_parse_env(r->pool, v, &ctl->env);
    if (why != NULL) {
        return why;
    }

    if (ctl->restore && (ctl->cwd.len || ctl->env)) {
        return "\"cwd\" and \"env\" are not taken with "
               "\"from_checkpoint\"";
    }

    return NULL;
}


static ngx_int_t
ngx_http_pyrepl_created(ngx_http_pyrepl_peer_t *peer, pr_frame_t *frame)
{
    ngx_http_request_t           *r;
    ngx_http_pyrepl_ctl_t        *ctl;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    ctl = peer->data;
    r = ctl->request;
    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    if (frame->type != PR_T_OK || !pr_has(frame, pid)) {
        ngx_http_pyrepl_table_remove(pmcf->shm_zone, ctl->session.id);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "pyrepl: supervisor refused a session: %*s",
                      frame->message.len, frame->message.data);
        ngx_http_pyrepl_peer_close(peer);
        ngx_http_pyrepl_finalize_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "unavailable",
                                       "the supervisor could not start a "
                                       "session");
        return NGX_DONE;
    }

    ngx_http_pyrepl_peer_close(peer);

    ctl->session.pid = (ngx_pid_t) frame->pid;
    ctl->session.state = PYREPL_STATE_IDLE;

    if (ngx_http_pyrepl_table_set_ready(pmcf->shm_zone, ctl->session.id,
                                        ctl->session.pid)
        != NGX_OK)
    {
        ngx_http_pyrepl_finalize_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "unavailable",
                                       "the session was removed meanwhile");
        return NGX_DONE;
    }

    if (ctl->restore) {
        /* answered once the checkpoint is in (ngx_http_pyrepl_checkpoint.c) */
        ngx_http_pyrepl_restore_created(r, ctl->session.id, ctl->from);
        return NGX_DONE;
    }

    if (ctl->cwd.len || ctl->env) {
        /* answered once the session is in its place */
        ngx_http_pyrepl_create_place(ctl);
        return NGX_DONE;
    }

    ngx_http_pyrepl_create_answer(ctl);
    return NGX_DONE;
}


/*
 * 201 with the new session, or a one-shot command's run in it, or a
 * background command started in it.
 */
static void
ngx_http_pyrepl_create_answer(ngx_http_pyrepl_ctl_t *ctl)
{
    ngx_http_request_t  *r;

    r = ctl->request;

    if (ctl->background) {
        ngx_http_pyrepl_command_launch(r, ctl->session.id, &ctl->command,
                                       ctl->timeout);
        return;
    }

    if (ctl->one_shot) {
        ngx_http_finalize_request(r,
            ngx_http_pyrepl_run_one_shot(r, ctl->session.id));
        return;
    }

    if (ctl->rec != NULL && ctl->rec->is_default) {
        ngx_http_finalize_request(r,
            ngx_http_pyrepl_run_handler(r, ctl->session.id));
        return;
    }

    ngx_http_pyrepl_create_reply(ctl);
}


/* 201 with the new session (OpenSandbox's clients take 200 only). */
static void
ngx_http_pyrepl_create_reply(ngx_http_pyrepl_ctl_t *ctl)
{
    ngx_http_request_t  *r;

    r = ctl->request;

    if (ctl->nb != NULL) {
        ngx_http_finalize_request(r,
            ngx_http_pyrepl_jupyter_notebook_made(r, &ctl->session, ctl->nb));
        return;
    }

    if (ctl->kernel) {
        ngx_http_finalize_request(r,
            ngx_http_pyrepl_send_json(r, NGX_HTTP_CREATED,
                ngx_http_pyrepl_jupyter_kernel(&ctl->session)));
        return;
    }

    if (ctl->rec != NULL) {
        ngx_http_finalize_request(r,
            ngx_http_pyrepl_send_json(r, NGX_HTTP_OK,
                ngx_http_pyrepl_e2b_context(r, ctl->rec, &ctl->session)));
        return;
    }

    ngx_http_finalize_request(r,
        ngx_http_pyrepl_send_json(r, ngx_http_pyrepl_dialect(r)
                                     == PYREPL_DIALECT_OPENSANDBOX
                                     ? NGX_HTTP_OK : NGX_HTTP_CREATED,
                                  ngx_http_pyrepl_session_json(&ctl->session,
                                                               0)));
}


/*
 * The create's cwd and env go to the new session process ("place"); the
 * create is answered when it took them, or refused 400 with its words
 * (a cwd it cannot make or enter), no session left behind.
 */
static void
ngx_http_pyrepl_create_place(ngx_http_pyrepl_ctl_t *ctl)
{
    ngx_str_t                     sock;
    pr_frame_t                    frame;
    ngx_http_request_t           *r;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    r = ctl->request;
    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    ngx_memzero(&frame, sizeof(pr_frame_t));
    frame.type = PR_T_PLACE;

    if (ctl->cwd.len) {
        pr_set_str(&frame, cwd, ctl->cwd.data, ctl->cwd.len);
    }

    if (ngx_http_pyrepl_env_frame(r->pool, ctl->env, &frame) != NGX_OK) {
        goto failed;
    }

    ctl->peer.data = ctl;
    ctl->peer.log = r->connection->log;
    ctl->peer.max_frame = pmcf->max_frame;
    ctl->peer.read_timeout = pmcf->supervisor_timeout;
    ctl->peer.closed = 0;
    ctl->peer.frame_handler = ngx_http_pyrepl_create_placed;
    ctl->peer.fail_handler = ngx_http_pyrepl_create_place_failed;

    if (ngx_http_pyrepl_socket_path(pmcf, r->pool, ctl->session.id, &sock)
        != NGX_OK
        || ngx_http_pyrepl_peer_connect(&ctl->peer, &sock, r->pool) != NGX_OK
        || ngx_http_pyrepl_peer_send(&ctl->peer, r->pool, &frame) != NGX_OK)
    {
        goto failed;
    }

    return;

failed:

    ngx_http_pyrepl_peer_close(&ctl->peer);
    ngx_http_pyrepl_create_place_failed(&ctl->peer, "no connection");
}


static ngx_int_t
ngx_http_pyrepl_create_placed(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame)
{
    u_char                 *msg;
    ngx_http_request_t     *r;
    ngx_http_pyrepl_ctl_t  *ctl;

    ctl = peer->data;
    r = ctl->request;

    if (frame->type != PR_T_OK && frame->type != PR_T_FAIL) {
        return NGX_OK;              /* what the shell said on its way */
    }

    if (frame->type == PR_T_OK) {
        ngx_http_pyrepl_peer_close(peer);
        ngx_http_pyrepl_create_answer(ctl);
        return NGX_DONE;
    }

    /* the frame lives in the peer's buffer: its words first */
    msg = ngx_pnalloc(r->pool, frame->message.len + 1);
    if (msg != NULL) {
        *ngx_cpymem(msg, frame->message.data, frame->message.len) = '\0';
    }

    ngx_http_pyrepl_peer_close(peer);
    ngx_http_pyrepl_create_undo(ctl);

    if (msg == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NGX_DONE;
    }

    ngx_http_pyrepl_finalize_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                   (char *) msg);
    return NGX_DONE;
}


static void
ngx_http_pyrepl_create_place_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason)
{
    ngx_http_request_t     *r;
    ngx_http_pyrepl_ctl_t  *ctl;

    ctl = peer->data;
    r = ctl->request;

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "pyrepl: session %*s did not take its cwd and env: %s",
                  (size_t) PYREPL_ID_LEN, ctl->session.id, reason);

    ngx_http_pyrepl_create_undo(ctl);
    ngx_http_pyrepl_finalize_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "unavailable",
                                   "the new session did not answer");
}


static void
ngx_http_pyrepl_create_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason)
{
    ngx_http_request_t           *r;
    ngx_http_pyrepl_ctl_t        *ctl;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    ctl = peer->data;
    r = ctl->request;
    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "pyrepl: supervisor request failed: %s", reason);

    ngx_http_pyrepl_table_remove(pmcf->shm_zone, ctl->session.id);
    ngx_http_pyrepl_finalize_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "unavailable",
                                   "the pyrepl supervisor did not answer");
}


ngx_int_t
ngx_http_pyrepl_list_handler(ngx_http_request_t *r)
{
    json_t                       *list, *o;
    uint64_t                      tenant;
    ngx_uint_t                    i;
    ngx_array_t                  *sessions;
    ngx_http_pyrepl_session_t    *s;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    if (ngx_http_pyrepl_authenticate(r, &tenant) != NGX_OK) {
        return NGX_HTTP_UNAUTHORIZED;          /* checked by the router */
    }

    sessions = ngx_http_pyrepl_table_list(pmcf->shm_zone, r->pool, tenant);
    if (sessions == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    list = json_array();
    if (list == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    s = sessions->elts;
    for (i = 0; i < sessions->nelts; i++) {
        o = ngx_http_pyrepl_session_detail(r, &s[i]);

        if (o == NULL || json_array_append_new(list, o) != 0) {
            json_decref(list);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    o = json_pack("{s:o}", "sessions", list);
    if (o == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_pyrepl_send_json(r, NGX_HTTP_OK, o);
}


ngx_int_t
ngx_http_pyrepl_get_handler(ngx_http_request_t *r, u_char *id)
{
    json_t                       *o;
    ngx_http_pyrepl_session_t     s;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    if (ngx_http_pyrepl_table_get(pmcf->shm_zone, id, &s) != NGX_OK) {
        return ngx_http_pyrepl_send_not_found(r, id);
    }

    o = ngx_http_pyrepl_session_detail(r, &s);
    if (o == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_pyrepl_send_json(r, NGX_HTTP_OK, o);
}


/*
 * The full session answer.  An idle session whose socket is gone has lost
 * its process (the supervisor removes the socket of a session process that
 * dies), so it is marked crashed here; memory_bytes is what
 * ngx_http_pyrepl_memory() finds.
 */
static json_t *
ngx_http_pyrepl_session_detail(ngx_http_request_t *r,
    ngx_http_pyrepl_session_t *s)
{
    json_t                       *o;
    uint64_t                      bytes;
    ngx_str_t                     sock;
    ngx_file_info_t               fi;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    if (s->state == PYREPL_STATE_IDLE
        && ngx_http_pyrepl_socket_path(pmcf, r->pool, s->id, &sock)
           == NGX_OK
        && ngx_file_info(sock.data, &fi) == NGX_FILE_ERROR
        && ngx_errno == NGX_ENOENT)
    {
        s->state = PYREPL_STATE_CRASHED;
        ngx_http_pyrepl_table_set_state(pmcf->shm_zone, s->id,
                                        PYREPL_STATE_CRASHED);
    }

    o = ngx_http_pyrepl_session_json(s, 1);
    if (o == NULL) {
        return NULL;
    }

    bytes = (s->pid > 0 && s->state != PYREPL_STATE_CRASHED)
            ? ngx_http_pyrepl_memory(s->pid) : 0;

    if (json_object_set_new(o, "memory_bytes",
                            json_integer((json_int_t) bytes)))
    {
        json_decref(o);
        return NULL;
    }

    return o;
}


ngx_int_t
ngx_http_pyrepl_delete_handler(ngx_http_request_t *r, u_char *id)
{
    ngx_http_pyrepl_ctl_t        *ctl;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    ctl = ngx_pcalloc(r->pool, sizeof(ngx_http_pyrepl_ctl_t));
    if (ctl == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_pyrepl_table_get(pmcf->shm_zone, id, &ctl->session)
        != NGX_OK)
    {
        return ngx_http_pyrepl_send_not_found(r, id);
    }

    ctl->request = r;
    ctl->peer.data = ctl;
    ctl->peer.log = r->connection->log;
    ctl->peer.frame_handler = ngx_http_pyrepl_deleted;
    ctl->peer.fail_handler = ngx_http_pyrepl_delete_failed;

    return ngx_http_pyrepl_supervisor_wait(r,
               ngx_http_pyrepl_supervisor_kill(pmcf, r->pool, &ctl->peer,
                                               ctl->session.id));
}


static ngx_int_t
ngx_http_pyrepl_deleted(ngx_http_pyrepl_peer_t *peer, pr_frame_t *frame)
{
    ngx_http_request_t           *r;
    ngx_http_pyrepl_ctl_t        *ctl;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    ctl = peer->data;
    r = ctl->request;
    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    ngx_http_pyrepl_peer_close(peer);

    if (frame->type != PR_T_OK) {
        ngx_http_pyrepl_finalize_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "unavailable",
                                       "the supervisor could not delete "
                                       "the session");
        return NGX_DONE;
    }

    ngx_http_pyrepl_table_remove(pmcf->shm_zone, ctl->session.id);

    ngx_http_finalize_request(r,
                              ngx_http_pyrepl_send_json(r, NGX_HTTP_NO_CONTENT,
                                                        NULL));
    return NGX_DONE;
}


static void
ngx_http_pyrepl_delete_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason)
{
    ngx_http_pyrepl_ctl_t  *ctl;

    ctl = peer->data;

    ngx_log_error(NGX_LOG_ERR, ctl->request->connection->log, 0,
                  "pyrepl: supervisor request failed: %s", reason);

    ngx_http_pyrepl_finalize_error(ctl->request, NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "unavailable",
                                   "the pyrepl supervisor did not answer");
}


/*
 * A new session id (PYREPL_ID_LEN): random hex digits after the node's
 * name and "_" when pyrepl_node names this host.
 */
ngx_int_t
ngx_http_pyrepl_new_id(ngx_http_request_t *r, u_char *id)
{
    u_char                       *p, hex[PYREPL_ID_LEN];
    u_char                        raw[PYREPL_ID_LEN / 2];
    ngx_http_pyrepl_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    if (getrandom(raw, sizeof(raw), 0) != (ssize_t) sizeof(raw)) {
        return NGX_ERROR;
    }

    ngx_hex_dump(hex, raw, sizeof(raw));

    p = id;

    if (pmcf->node.len != 0) {
        p = ngx_cpymem(p, pmcf->node.data, pmcf->node.len);
        *p++ = '_';
    }

    ngx_memcpy(p, hex, PYREPL_ID_LEN - (p - id));

    return NGX_OK;
}


/* A create refused after its session was made leaves none behind. */
static void
ngx_http_pyrepl_create_undo(ngx_http_pyrepl_ctl_t *ctl)
{
    ngx_http_request_t           *r;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    r = ctl->request;
    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    ngx_http_pyrepl_table_remove(pmcf->shm_zone, ctl->session.id);
    ngx_http_pyrepl_supervisor_kill_now(pmcf, ctl->session.id,
                                        r->connection->log);
}
