/*
 * ngx_http_pyrepl_spool.h: the tail of a JSON answer, bounded in memory
 * and spilled to a temporary file beyond; JSON string escaping into
 * fixed buffers (ngx_http_pyrepl_spool.c).
 */

#ifndef NGX_HTTP_PYREPL_SPOOL_H
#define NGX_HTTP_PYREPL_SPOOL_H


#include "ngx_http_pyrepl_module.h"

#include <jansson.h>


#define PYREPL_JSON_ESCAPED   6         /* the most a byte escapes to */


typedef struct {
    ngx_http_request_t          *request;   /* its pool, log, temp path */
    ngx_buf_t                   *buf;       /* in memory, NULL until used */
    ngx_temp_file_t             *file;      /* what went past memory */
} ngx_http_pyrepl_spool_t;


ngx_int_t ngx_http_pyrepl_spool_add(ngx_http_pyrepl_spool_t *sp,
    u_char *data, size_t len, ngx_uint_t escape);
ngx_int_t ngx_http_pyrepl_spool_fields(ngx_http_pyrepl_spool_t *sp,
    json_t *obj);
ngx_int_t ngx_http_pyrepl_spool_json(ngx_http_pyrepl_spool_t *sp,
    json_t *value);
ngx_int_t ngx_http_pyrepl_spool_chain(ngx_http_pyrepl_spool_t *sp,
    ngx_chain_t ***ll);
size_t ngx_http_pyrepl_json_escape(u_char **pos, u_char *end, u_char *src,
    size_t len);
ngx_int_t ngx_http_pyrepl_buf_grow(ngx_pool_t *pool, ngx_buf_t *b,
    size_t max);

#endif /* NGX_HTTP_PYREPL_SPOOL_H */
