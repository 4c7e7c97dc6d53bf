/*
 * ngx_http_pyrepl_keepalive.h: the idle connections a worker keeps to
 * session processes (ngx_http_pyrepl_keepalive.c).
 */

#ifndef NGX_HTTP_PYREPL_KEEPALIVE_H
#define NGX_HTTP_PYREPL_KEEPALIVE_H


#include "ngx_http_pyrepl_module.h"
#include "ngx_http_pyrepl_peer.h"


ngx_int_t ngx_http_pyrepl_keepalive_init(ngx_cycle_t *cycle,
    ngx_http_pyrepl_main_conf_t *pmcf);
ngx_int_t ngx_http_pyrepl_keepalive_connect(ngx_http_pyrepl_peer_t *peer,
    u_char *id, ngx_str_t *path, ngx_pool_t *pool);
void ngx_http_pyrepl_keepalive_release(ngx_http_pyrepl_peer_t *peer,
    u_char *id);

#endif /* NGX_HTTP_PYREPL_KEEPALIVE_H */
