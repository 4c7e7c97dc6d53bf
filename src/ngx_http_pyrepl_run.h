/*
 * ngx_http_pyrepl_run.h: POST .../run, the SSE and JSON answers
 * (ngx_http_pyrepl_run.c).
 */

#ifndef NGX_HTTP_PYREPL_RUN_H
#define NGX_HTTP_PYREPL_RUN_H


#include "ngx_http_pyrepl_module.h"


ngx_int_t ngx_http_pyrepl_run_handler(ngx_http_request_t *r, u_char *id);
ngx_int_t ngx_http_pyrepl_run_one_shot(ngx_http_request_t *r, u_char *id);

#endif /* NGX_HTTP_PYREPL_RUN_H */
