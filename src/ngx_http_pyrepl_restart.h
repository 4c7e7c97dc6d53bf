/*
 * ngx_http_pyrepl_restart.h: a session's process replaced by a new one
 * under the same id (ngx_http_pyrepl_restart.c).
 */

#ifndef NGX_HTTP_PYREPL_RESTART_H
#define NGX_HTTP_PYREPL_RESTART_H


#include "ngx_http_pyrepl_module.h"


/*
 * Answer r for the restarted session s: returns what to finalize r with.
 */
typedef ngx_int_t (*ngx_http_pyrepl_restarted_pt)(ngx_http_request_t *r,
    ngx_http_pyrepl_session_t *s);

ngx_int_t ngx_http_pyrepl_restart(ngx_http_request_t *r,
    ngx_http_pyrepl_session_t *s, ngx_http_pyrepl_restarted_pt answer);

#endif /* NGX_HTTP_PYREPL_RESTART_H */
