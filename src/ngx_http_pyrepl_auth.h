/*
 * ngx_http_pyrepl_auth.h: API keys and tenants (ngx_http_pyrepl_auth.c).
 */

#ifndef NGX_HTTP_PYREPL_AUTH_H
#define NGX_HTTP_PYREPL_AUTH_H


#include "ngx_http_pyrepl_module.h"


char *ngx_http_pyrepl_api_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_pyrepl_api_key_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_pyrepl_authenticate(ngx_http_request_t *r,
    uint64_t *tenant);
ngx_int_t ngx_http_pyrepl_authenticate_with(ngx_http_request_t *r,
    ngx_str_t *token, uint64_t *tenant);
ngx_int_t ngx_http_pyrepl_token_take(ngx_http_request_t *r,
    ngx_str_t *token);

#endif /* NGX_HTTP_PYREPL_AUTH_H */
