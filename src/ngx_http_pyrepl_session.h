/*
 * ngx_http_pyrepl_session.h: the session routes: create, list, get, delete
 * (ngx_http_pyrepl_session.c).
 */

#ifndef NGX_HTTP_PYREPL_SESSION_H
#define NGX_HTTP_PYREPL_SESSION_H


#include "ngx_http_pyrepl_module.h"


ngx_int_t ngx_http_pyrepl_create_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_pyrepl_command_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_pyrepl_kernel_create_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_pyrepl_notebook_create_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_pyrepl_context_create_handler(ngx_http_request_t *r);
void ngx_http_pyrepl_context_create_default(ngx_http_request_t *r);
ngx_int_t ngx_http_pyrepl_new_id(ngx_http_request_t *r, u_char *id);
ngx_int_t ngx_http_pyrepl_list_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_pyrepl_get_handler(ngx_http_request_t *r, u_char *id);
ngx_int_t ngx_http_pyrepl_delete_handler(ngx_http_request_t *r, u_char *id);

#endif /* NGX_HTTP_PYREPL_SESSION_H */
