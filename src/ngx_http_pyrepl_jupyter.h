/*
 * ngx_http_pyrepl_jupyter.h: Jupyter's kernel REST API
 * (ngx_http_pyrepl_jupyter.c).
 */

#ifndef NGX_HTTP_PYREPL_JUPYTER_H
#define NGX_HTTP_PYREPL_JUPYTER_H


#include "ngx_http_pyrepl_module.h"

#include <jansson.h>


ngx_int_t ngx_http_pyrepl_jupyter_route(ngx_http_request_t *r,
    uint64_t tenant, u_char *p, u_char *last);
json_t *ngx_http_pyrepl_jupyter_kernel(ngx_http_pyrepl_session_t *s);
json_t *ngx_http_pyrepl_jupyter_create_body(json_t *body, const char **why);
ngx_http_pyrepl_record_t *ngx_http_pyrepl_jupyter_notebook(
    ngx_http_request_t *r, json_t *body, json_t **kernel);
ngx_int_t ngx_http_pyrepl_jupyter_notebook_made(ngx_http_request_t *r,
    ngx_http_pyrepl_session_t *s, ngx_http_pyrepl_record_t *nb);
void ngx_http_pyrepl_jupyter_uuid(u_char *id, u_char *uuid);
ngx_uint_t ngx_http_pyrepl_jupyter_is_channels(u_char *p, u_char *last);

/* ngx_http_pyrepl_jupyter_ws.c */
ngx_int_t ngx_http_pyrepl_jupyter_channels(ngx_http_request_t *r,
    u_char *id);

#endif /* NGX_HTTP_PYREPL_JUPYTER_H */
