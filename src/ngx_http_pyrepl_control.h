/*
 * ngx_http_pyrepl_control.h: renew, interrupt, input; one-frame requests to a
 * session process and its socket's path (ngx_http_pyrepl_control.c).
 */

#ifndef NGX_HTTP_PYREPL_CONTROL_H
#define NGX_HTTP_PYREPL_CONTROL_H


#include "ngx_http_pyrepl_module.h"
#include "ngx_http_pyrepl_peer.h"


/* one request to a session process on a connection of its own */
typedef struct {
    ngx_http_pyrepl_peer_t       peer;
    ngx_http_request_t          *request;
    u_char                       id[PYREPL_ID_LEN];
} ngx_http_pyrepl_control_t;

ngx_http_pyrepl_control_t *ngx_http_pyrepl_control_create(
    ngx_http_request_t *r, u_char *id);
ngx_int_t ngx_http_pyrepl_control_send(ngx_http_pyrepl_control_t *cl,
    pr_frame_t *frame);
ngx_int_t ngx_http_pyrepl_socket_path(ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_pool_t *pool, u_char *id, ngx_str_t *path);

ngx_int_t ngx_http_pyrepl_renew_handler(ngx_http_request_t *r, u_char *id);
ngx_int_t ngx_http_pyrepl_interrupt_handler(ngx_http_request_t *r,
    u_char *id);
ngx_int_t ngx_http_pyrepl_interrupt(ngx_http_request_t *r, u_char *id,
    ngx_uint_t idle_too);
ngx_int_t ngx_http_pyrepl_input_handler(ngx_http_request_t *r, u_char *id);

#endif /* NGX_HTTP_PYREPL_CONTROL_H */
