/*
 * ngx_http_pyrepl_reply.h: JSON answers, errors, request bodies
 * (ngx_http_pyrepl_reply.c).
 */

#ifndef NGX_HTTP_PYREPL_REPLY_H
#define NGX_HTTP_PYREPL_REPLY_H


#include "ngx_http_pyrepl_module.h"

#include <jansson.h>


/* "no session <id>" with its NUL */
#define PYREPL_NO_SESSION_LEN  (sizeof("no session ") + PYREPL_ID_LEN)


ngx_int_t ngx_http_pyrepl_send_json(ngx_http_request_t *r,
    ngx_uint_t status, json_t *body);
/* fmt: nginx's formats (ngx_vslprintf), not libc's */
ngx_int_t ngx_http_pyrepl_send_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *fmt, ...);
ngx_int_t ngx_http_pyrepl_send_not_found(ngx_http_request_t *r, u_char *id);
/* 405 method_not_allowed, with allow (the route's methods) in Allow */
ngx_int_t ngx_http_pyrepl_send_not_allowed(ngx_http_request_t *r,
    ngx_str_t *allow);
u_char *ngx_http_pyrepl_no_session(u_char *buf, u_char *id);
void ngx_http_pyrepl_finalize_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *message);
ngx_int_t ngx_http_pyrepl_read_body(ngx_http_request_t *r,
    ngx_http_client_body_handler_pt handler);
ngx_int_t ngx_http_pyrepl_read_json_body(ngx_http_request_t *r,
    json_t **body);
json_t *ngx_http_pyrepl_session_json(ngx_http_pyrepl_session_t *s,
    ngx_uint_t full);
json_t *ngx_http_pyrepl_time_json(time_t t);
const char *ngx_http_pyrepl_state_name(ngx_uint_t state);
const char *ngx_http_pyrepl_lang_name(ngx_uint_t lang);
ngx_table_elt_t *ngx_http_pyrepl_header(ngx_http_request_t *r,
    const char *name);

#endif /* NGX_HTTP_PYREPL_REPLY_H */
