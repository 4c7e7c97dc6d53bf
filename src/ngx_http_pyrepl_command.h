/*
 * ngx_http_pyrepl_command.h: execd's background commands
 * (ngx_http_pyrepl_command.c).
 */

#ifndef NGX_HTTP_PYREPL_COMMAND_H
#define NGX_HTTP_PYREPL_COMMAND_H


#include "ngx_http_pyrepl_module.h"

#include <jansson.h>


ngx_int_t ngx_http_pyrepl_command_parse(ngx_http_request_t *r, json_t *body,
    ngx_str_t *code, ngx_msec_t *timeout);
void ngx_http_pyrepl_command_launch(ngx_http_request_t *r, u_char *id,
    ngx_str_t *code, ngx_msec_t timeout);
ngx_int_t ngx_http_pyrepl_command_status_handler(ngx_http_request_t *r,
    u_char *id);
ngx_int_t ngx_http_pyrepl_command_logs_handler(ngx_http_request_t *r,
    u_char *id);

#endif /* NGX_HTTP_PYREPL_COMMAND_H */
