/*
 * ngx_http_pyrepl_upgrade.h: the WebSocket handshake, the HTTP side
 * (ngx_http_pyrepl_upgrade.c).
 */

#ifndef NGX_HTTP_PYREPL_UPGRADE_H
#define NGX_HTTP_PYREPL_UPGRADE_H


#include "ngx_http_pyrepl_module.h"


const char *ngx_http_pyrepl_upgrade(ngx_http_request_t *r,
    const char *subprotocol, ngx_uint_t *chosen);

#endif /* NGX_HTTP_PYREPL_UPGRADE_H */
