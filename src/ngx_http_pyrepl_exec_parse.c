/*
 * ngx_http_pyrepl_exec_parse.c: what a run request may ask, whichever
 * sink it came to (POST .../run's body, a WebSocket's run message):
 *
 *   code (or command)    the code, at most pyrepl_max_code_size bytes
 *   timeout_ms           1 to pyrepl_run_timeout_max, which is also the
 *                        default (OpenSandbox's dialect: "timeout")
 *   tx_policy            commit_always (bash sessions: the only one),
 *                        commit_on_success, rollback_on_failure, explicit
 *   cwd, env             for that run only (E2B's dialect: env_vars)
 *   stdin                bash sessions only, for that run
 *
 * read into the exec, or refused (PYREPL_REFUSED_BAD_REQUEST or
 * PYREPL_REFUSED_TOO_LARGE) with the words of why.
 */

#include "ngx_http_pyrepl_exec_parse.h"

#include "ngx_http_pyrepl_exec.h"
#include "ngx_http_pyrepl_table.h"


static const char *ngx_http_pyrepl_exec_check(ngx_http_pyrepl_exec_t *ex,
    json_t *body);
static const char *ngx_http_pyrepl_exec_parse_place(
    ngx_http_pyrepl_exec_t *ex, json_t *body);
static const char *ngx_http_pyrepl_exec_tx_policy(json_t *v);


/*
 * Read a run request ({"code" | "command", "timeout_ms", "tx_policy",
 * "cwd", "env", and for bash sessions "stdin"}) into ex.  Returns NGX_OK, or
 * NGX_DECLINED with ex->refusal and ex->why saying what is wrong.
 */
ngx_int_t
ngx_http_pyrepl_exec_parse(ngx_http_pyrepl_exec_t *ex, json_t *body)
{
    size_t        size;
    ngx_str_t    *e;
    ngx_uint_t    i;

    ex->why = ngx_http_pyrepl_exec_check(ex, body);

    if (ex->why == NULL) {
        /* the run frame holds it all (pyrepl_max_frame may be the lower) */
        size = PYREPL_RUN_FRAME_SLACK + ex->code.len + ex->cwd.len
               + ex->stdin_text.len;

        for (i = 0, e = ex->env ? ex->env->elts : NULL;
             ex->env && i < ex->env->nelts;
             i++)
        {
            size += e[i].len + 8;
        }

        if (size <= ex->pmcf->max_frame) {
            return NGX_OK;
        }

        ex->refusal = PYREPL_REFUSED_TOO_LARGE;
        ngx_snprintf(ex->text, sizeof(ex->text) - 1,
                     "the run's code, cwd, env and stdin are over what a "
                     "frame holds (pyrepl_max_frame %uz bytes)%Z",
                     ex->pmcf->max_frame);
        ex->why = (char *) ex->text;

        return NGX_DECLINED;
    }

    if (ex->refusal == 0) {
        ex->refusal = PYREPL_REFUSED_BAD_REQUEST;
    }

    return NGX_DECLINED;
}


/* NULL, or what is wrong with the run request (in ex->text, or static). */
static const char *
ngx_http_pyrepl_exec_check(ngx_http_pyrepl_exec_t *ex, json_t *body)
{
    json_t                     *code, *v;
    size_t                      len;
    ngx_http_pyrepl_session_t   s;

    ex->exit_code = -1;

    if (ngx_http_pyrepl_table_get(ex->pmcf->shm_zone, ex->id, &s) == NGX_OK) {
        ex->lang = s.lang;
    }

    code = body ? json_object_get(body, "code") : NULL;
    if (code == NULL && body) {
        code = json_object_get(body, "command");
    }

    if (code == NULL || !json_is_string(code)) {
        return "\"code\" must be a string";
    }

    len = json_string_length(code);

    if (len > ex->pmcf->max_code_size) {
        ex->refusal = PYREPL_REFUSED_TOO_LARGE;
        ngx_snprintf(ex->text, sizeof(ex->text) - 1,
                     "the code is over pyrepl_max_code_size (%uz bytes)%Z",
                     ex->pmcf->max_code_size);
        return (char *) ex->text;
    }

    ex->code.data = ngx_pnalloc(ex->pool, len ? len : 1);
    if (ex->code.data == NULL) {
        return "out of memory";
    }

    ngx_memcpy(ex->code.data, json_string_value(code), len);
    ex->code.len = len;

    ex->timeout = ex->pmcf->run_timeout_max;

    v = json_object_get(body, "timeout_ms");
    if (v == NULL && ex->opensandbox) {
        v = json_object_get(body, "timeout");    /* execd's, milliseconds */
    }

    if (v != NULL && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1
            || json_integer_value(v) > (json_int_t) ex->pmcf->run_timeout_max)
        {
            ngx_snprintf(ex->text, sizeof(ex->text) - 1,
                         "\"timeout_ms\" must be an integer from 1 to %M%Z",
                         ex->pmcf->run_timeout_max);
            return (char *) ex->text;
        }

        ex->timeout = (ngx_msec_t) json_integer_value(v);
    }

    v = json_object_get(body, "tx_policy");
    if (v != NULL && !json_is_null(v) && ex->e2b) {
        /* E2B's API has no commit or rollback to end an explicit one */
        return "E2B's runs take no \"tx_policy\"";
    }

    if (v != NULL && !json_is_null(v)) {
        ex->tx_policy = ngx_http_pyrepl_exec_tx_policy(v);

        if (ex->tx_policy == NULL) {
            return "\"tx_policy\" must be \"commit_always\", "
                   "\"commit_on_success\", \"rollback_on_failure\" or "
                   "\"explicit\"";
        }

        if (ex->lang == PYREPL_LANG_BASH
            && ngx_strcmp(ex->tx_policy, "commit_always") != 0)
        {
            return "bash sessions cannot roll back: their \"tx_policy\" "
                   "is \"commit_always\"";
        }
    }

    if (ex->lang != PYREPL_LANG_BASH && json_object_get(body, "stdin")) {
        return "\"stdin\" is for bash sessions (python code reads no "
               "stdin: input() asks the client)";
    }

    if (ex->one_shot) {
        return NULL;            /* its session was made in its cwd and env */
    }

    return ngx_http_pyrepl_exec_parse_place(ex, body);
}


/*
 * cwd: str, env: {name: str}, and for bash stdin: str; they apply to this
 * run only.
 */
static const char *
ngx_http_pyrepl_exec_parse_place(ngx_http_pyrepl_exec_t *ex, json_t *body)
{
    json_t      *v;
    const char  *why;

    why = ngx_http_pyrepl_parse_cwd(ex->pool, json_object_get(body, "cwd"),
                                    &ex->cwd);
    if (why != NULL) {
        return why;
    }

    ex->has_cwd = (ex->cwd.len != 0);

    v = json_object_get(body, "stdin");
    if (v != NULL) {
        if (!json_is_string(v)) {
            return "\"stdin\" must be a string";
        }

        ex->stdin_text.len = json_string_length(v);
        ex->stdin_text.data = ngx_pnalloc(ex->pool,
                                          ex->stdin_text.len + 1);
        if (ex->stdin_text.data == NULL) {
            return "out of memory";
        }

        ngx_memcpy(ex->stdin_text.data, json_string_value(v),
                   ex->stdin_text.len);
        ex->has_stdin = 1;
    }

    v = json_object_get(body, "env");

    if (v == NULL && ex->e2b) {
        v = json_object_get(body, "env_vars");      /* E2B's, maybe null */
        v = json_is_null(v) ? NULL : v;
    }

    return ngx_http_pyrepl_parse_env(ex->pool, v, &ex->env);
}


const char *
ngx_http_pyrepl_parse_cwd(ngx_pool_t *pool, json_t *v, ngx_str_t *cwd)
{
    if (v == NULL) {
        return NULL;
    }

    if (!json_is_string(v) || json_string_length(v) == 0
        || ngx_strlen(json_string_value(v)) != json_string_length(v))
    {
        return "\"cwd\" must be a non-empty string";
    }

    cwd->len = json_string_length(v);
    cwd->data = ngx_pnalloc(pool, cwd->len);
    if (cwd->data == NULL) {
        return "out of memory";
    }

    ngx_memcpy(cwd->data, json_string_value(v), cwd->len);

    return NULL;
}


const char *
ngx_http_pyrepl_parse_env(ngx_pool_t *pool, json_t *v, ngx_array_t **env)
{
    u_char       *p;
    size_t        len;
    json_t       *val;
    ngx_str_t    *kv;
    const char   *name;

    if (v == NULL) {
        return NULL;
    }

    if (!json_is_object(v)) {
        return "\"env\" must be an object of strings";
    }

    *env = ngx_array_create(pool, json_object_size(v) + 1,
                            sizeof(ngx_str_t));
    if (*env == NULL) {
        return "out of memory";
    }

    json_object_foreach(v, name, val) {
        len = ngx_strlen(name);

        if (!json_is_string(val) || len == 0
            || ngx_strchr(name, '=') != NULL
            || ngx_strlen(json_string_value(val)) != json_string_length(val))
        {
            return "\"env\" must map names (without \"=\") to strings";
        }

        kv = ngx_array_push(*env);
        if (kv == NULL) {
            return "out of memory";
        }

        kv->len = len + 1 + json_string_length(val);
        kv->data = ngx_pnalloc(pool, kv->len);
        if (kv->data == NULL) {
            return "out of memory";
        }

        p = ngx_cpymem(kv->data, name, len);
        *p++ = '=';
        ngx_memcpy(p, json_string_value(val), json_string_length(val));
    }

    return NULL;
}


ngx_int_t
ngx_http_pyrepl_env_frame(ngx_pool_t *pool, ngx_array_t *env,
    pr_frame_t *frame)
{
    ngx_str_t   *kv;
    ngx_uint_t   i;

    if (env == NULL) {
        return NGX_OK;
    }

    frame->env.items = ngx_palloc(pool, (env->nelts + 1) * sizeof(pr_str_t));
    if (frame->env.items == NULL) {
        return NGX_ERROR;
    }

    kv = env->elts;

    for (i = 0; i < env->nelts; i++) {
        frame->env.items[i].data = (const char *) kv[i].data;
        frame->env.items[i].len = kv[i].len;
    }

    frame->env.n = (uint32_t) env->nelts;
    frame->has |= PR_BIT(env);

    return NGX_OK;
}


static const char *
ngx_http_pyrepl_exec_tx_policy(json_t *v)
{
    ngx_uint_t   i;
    const char  *s;

    static const char  *policies[] = {
        "commit_always", "commit_on_success", "rollback_on_failure",
        "explicit"
    };

    if (!json_is_string(v)) {
        return NULL;
    }

    s = json_string_value(v);

    for (i = 0; i < sizeof(policies) / sizeof(policies[0]); i++) {
        if (ngx_strcmp(s, policies[i]) == 0) {
            return policies[i];
        }
    }

    return NULL;
}
