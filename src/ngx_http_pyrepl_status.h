/*
 * ngx_http_pyrepl_status.h: pyrepl_status, health JSON and metrics
 * (ngx_http_pyrepl_status.c).
 */

#ifndef NGX_HTTP_PYREPL_STATUS_H
#define NGX_HTTP_PYREPL_STATUS_H


#include "ngx_http_pyrepl_module.h"


ngx_int_t ngx_http_pyrepl_status_handler(ngx_http_request_t *r);
ngx_uint_t ngx_http_pyrepl_run_status(const char *status);

#endif /* NGX_HTTP_PYREPL_STATUS_H */
