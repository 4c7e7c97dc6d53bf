/*
 * ngx_http_pyrepl_opensandbox.h: OpenSandbox execd's dialect
 * (ngx_http_pyrepl_opensandbox.c).
 */

#ifndef NGX_HTTP_PYREPL_OPENSANDBOX_H
#define NGX_HTTP_PYREPL_OPENSANDBOX_H


#include "ngx_http_pyrepl_module.h"

#include <jansson.h>


extern ngx_conf_enum_t  ngx_http_pyrepl_dialects[];

ngx_uint_t ngx_http_pyrepl_dialect(ngx_http_request_t *r);
json_t *ngx_http_pyrepl_opensandbox_event(const char *event, json_t *data);
ngx_int_t ngx_http_pyrepl_opensandbox_route(ngx_http_request_t *r,
    uint64_t tenant);

#endif /* NGX_HTTP_PYREPL_OPENSANDBOX_H */
