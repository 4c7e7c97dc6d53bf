/*
 * ngx_http_pyrepl_origin.h: which web pages may use the API, by their
 * Origin, and CORS for those allowed (ngx_http_pyrepl_origin.c).
 */

#ifndef NGX_HTTP_PYREPL_ORIGIN_H
#define NGX_HTTP_PYREPL_ORIGIN_H


#include "ngx_http_pyrepl_module.h"


char *ngx_http_pyrepl_cors_origin(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/*
 * Before anything else of a request to a "pyrepl" location: NGX_DECLINED
 * when it goes on (a request without Origin, or from an origin allowed,
 * with the CORS headers added), else the status the request was answered
 * with (403 for a foreign origin, 204 for a CORS preflight).  allow: the
 * route's methods, for a preflight's Access-Control-Allow-Methods.
 */
ngx_int_t ngx_http_pyrepl_origin_check(ngx_http_request_t *r,
    ngx_str_t *allow);

#endif /* NGX_HTTP_PYREPL_ORIGIN_H */
