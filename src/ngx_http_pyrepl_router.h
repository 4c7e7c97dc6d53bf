/*
 * ngx_http_pyrepl_router.h: the content handler of a "pyrepl" location,
 * which routes by method and path (ngx_http_pyrepl_router.c).
 */

#ifndef NGX_HTTP_PYREPL_ROUTER_H
#define NGX_HTTP_PYREPL_ROUTER_H


#include "ngx_http_pyrepl_module.h"


ngx_int_t ngx_http_pyrepl_router_handler(ngx_http_request_t *r);

#endif /* NGX_HTTP_PYREPL_ROUTER_H */
