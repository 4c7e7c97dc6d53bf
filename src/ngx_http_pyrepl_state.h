/*
 * ngx_http_pyrepl_state.h: a Python session's state between runs: namespace,
 * commit, rollback (ngx_http_pyrepl_state.c).
 */

#ifndef NGX_HTTP_PYREPL_STATE_H
#define NGX_HTTP_PYREPL_STATE_H


#include "ngx_http_pyrepl_module.h"


ngx_int_t ngx_http_pyrepl_namespace_handler(ngx_http_request_t *r,
    u_char *id);
ngx_int_t ngx_http_pyrepl_commit_handler(ngx_http_request_t *r, u_char *id);
ngx_int_t ngx_http_pyrepl_rollback_handler(ngx_http_request_t *r,
    u_char *id);
ngx_uint_t ngx_http_pyrepl_state_refusal(ngx_http_pyrepl_session_t *s,
    const char **code, const char **message);

#endif /* NGX_HTTP_PYREPL_STATE_H */
