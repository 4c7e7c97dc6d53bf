/*
 * ngx_http_pyrepl_exec_parse.h: reading a run request into an exec, and
 * the "cwd" and "env" a create shares with it
 * (ngx_http_pyrepl_exec_parse.c).
 */

#ifndef NGX_HTTP_PYREPL_EXEC_PARSE_H
#define NGX_HTTP_PYREPL_EXEC_PARSE_H


#include "ngx_http_pyrepl_module.h"
#include "ngx_http_pyrepl_exec.h"


/* a run frame's bytes besides its code, cwd, env and stdin */
#define PYREPL_RUN_FRAME_SLACK  4096


ngx_int_t ngx_http_pyrepl_exec_parse(ngx_http_pyrepl_exec_t *ex,
    json_t *body);

/*
 * A request's "cwd" (a non-empty string) into *cwd, or its "env" (an
 * object of strings) into *env, ngx_str_t "NAME=VALUE" each; in pool,
 * untouched when v is NULL (absent).  Names are non-empty, without "=";
 * nothing may hold a NUL.  NULL, or what is wrong.
 */
const char *ngx_http_pyrepl_parse_cwd(ngx_pool_t *pool, json_t *v,
    ngx_str_t *cwd);
const char *ngx_http_pyrepl_parse_env(ngx_pool_t *pool, json_t *v,
    ngx_array_t **env);

/* env ("NAME=VALUE" each, or NULL) as frame's env field. */
ngx_int_t ngx_http_pyrepl_env_frame(ngx_pool_t *pool, ngx_array_t *env,
    pr_frame_t *frame);

#endif /* NGX_HTTP_PYREPL_EXEC_PARSE_H */
