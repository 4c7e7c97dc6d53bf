/*
 * ngx_http_pyrepl_checkpoint.h: checkpoints of Python sessions and restoring
 * them (ngx_http_pyrepl_checkpoint.c).
 */

#ifndef NGX_HTTP_PYREPL_CHECKPOINT_H
#define NGX_HTTP_PYREPL_CHECKPOINT_H


#include "ngx_http_pyrepl_module.h"


ngx_int_t ngx_http_pyrepl_checkpoint_handler(ngx_http_request_t *r,
    u_char *id);
ngx_int_t ngx_http_pyrepl_restore_handler(ngx_http_request_t *r, u_char *id);
ngx_int_t ngx_http_pyrepl_checkpoints_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_pyrepl_checkpoint_delete_handler(ngx_http_request_t *r,
    u_char *cid);
void ngx_http_pyrepl_restore_created(ngx_http_request_t *r, u_char *id,
    u_char *cid);

#endif /* NGX_HTTP_PYREPL_CHECKPOINT_H */
