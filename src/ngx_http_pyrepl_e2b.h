/*
 * ngx_http_pyrepl_e2b.h: E2B's code interpreter API
 * (ngx_http_pyrepl_e2b.c).
 */

#ifndef NGX_HTTP_PYREPL_E2B_H
#define NGX_HTTP_PYREPL_E2B_H


#include "ngx_http_pyrepl_module.h"

#include <jansson.h>


ngx_int_t ngx_http_pyrepl_e2b_route(ngx_http_request_t *r, uint64_t tenant,
    u_char *p, u_char *last);
json_t *ngx_http_pyrepl_e2b_create_body(json_t *body, ngx_uint_t for_run,
    const char **why);
json_t *ngx_http_pyrepl_e2b_context(ngx_http_request_t *r,
    ngx_http_pyrepl_record_t *rec, ngx_http_pyrepl_session_t *s);
ngx_int_t ngx_http_pyrepl_e2b_line(const char *event, json_t **data);
json_t *ngx_http_pyrepl_e2b_end(ngx_uint_t execution_count);
json_t *ngx_http_pyrepl_e2b_refused(const char *code, const char *message);

#endif /* NGX_HTTP_PYREPL_E2B_H */
