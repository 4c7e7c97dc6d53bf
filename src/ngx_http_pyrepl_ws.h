/*
 * ngx_http_pyrepl_ws.h: GET .../ws, the WebSocket API (ngx_http_pyrepl_ws.c).
 */

#ifndef NGX_HTTP_PYREPL_WS_H
#define NGX_HTTP_PYREPL_WS_H


#include "ngx_http_pyrepl_module.h"


ngx_int_t ngx_http_pyrepl_ws_handler(ngx_http_request_t *r, u_char *id);

#endif /* NGX_HTTP_PYREPL_WS_H */
