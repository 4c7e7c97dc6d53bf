/*
 * ngx_http_pyrepl_exec_parse.h: reading a run request into an exec
 * (ngx_http_pyrepl_exec_parse.c).
 */

#ifndef NGX_HTTP_PYREPL_EXEC_PARSE_H
#define NGX_HTTP_PYREPL_EXEC_PARSE_H


#include "ngx_http_pyrepl_module.h"
#include "ngx_http_pyrepl_exec.h"


ngx_int_t ngx_http_pyrepl_exec_parse(ngx_http_pyrepl_exec_t *ex,
    json_t *body);

#endif /* NGX_HTTP_PYREPL_EXEC_PARSE_H */
