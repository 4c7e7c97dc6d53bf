/*
 * ngx_http_pyrepl_sandbox.h: the confinement of session processes: its
 * directives, checks and supervisor options (ngx_http_pyrepl_sandbox.c).
 */

#ifndef NGX_HTTP_PYREPL_SANDBOX_H
#define NGX_HTTP_PYREPL_SANDBOX_H


#include "ngx_http_pyrepl_module.h"


#define NGX_HTTP_PYREPL_SANDBOX_ARGS  64     /* argv entries, at most */
#define NGX_HTTP_PYREPL_MAX_BINDS     16

/* a jailed session's home and working directory (worker/sandbox) */
#define PYREPL_JAIL_HOME              "/home/pyrepl"


extern ngx_conf_enum_t  ngx_http_pyrepl_seccomp_modes[];

void ngx_http_pyrepl_sandbox_create(ngx_http_pyrepl_sandbox_conf_t *sb);
char *ngx_http_pyrepl_user(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_pyrepl_session_uids(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_pyrepl_limit_size(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_pyrepl_limit_time(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_pyrepl_env(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_pyrepl_bind(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char **ngx_http_pyrepl_sandbox_envp(ngx_http_pyrepl_main_conf_t *pmcf);
char *ngx_http_pyrepl_sandbox_init(ngx_conf_t *cf,
    ngx_http_pyrepl_sandbox_conf_t *sb);
ngx_int_t ngx_http_pyrepl_sandbox_check(ngx_cycle_t *cycle,
    ngx_http_pyrepl_main_conf_t *pmcf);
ngx_uint_t ngx_http_pyrepl_sandbox_argv(ngx_http_pyrepl_main_conf_t *pmcf,
    char **argv, u_char (*bufs)[NGX_INT64_LEN + 1]);

/* the binds against each other and PyREPL's own folders (nginx -t) */
ngx_int_t ngx_http_pyrepl_binds_check(ngx_conf_t *cf, ngx_array_t *binds,
    ngx_str_t *own, ngx_uint_t nown);

#endif /* NGX_HTTP_PYREPL_SANDBOX_H */
