/*
 * ngx_http_pyrepl_spool.c: the part of a JSON answer that has to wait for
 * the end of a run (ngx_http_pyrepl_run.c: a run's stderr and closing
 * fields, after its stdout).  It is built as it comes, escaped or as it
 * is, in memory up to PYREPL_SPOOL_MEM bytes; past that, what memory
 * holds goes to the end of a temporary file in client_body_temp_path
 * (made and unlinked at once, as the proxy module does with a response
 * it buffers) and memory starts over.  At the end the file, then memory,
 * join the answer's chain.  So an answer costs this worker
 * PYREPL_SPOOL_MEM bytes of memory at most, whatever its size.
 *
 * Escaping for the inside of a JSON string is here too, in pieces that
 * surely fit a buffer, which the answer's stdout shares.
 */

#include "ngx_http_pyrepl_spool.h"


#define PYREPL_SPOOL_MIN  8192
#define PYREPL_SPOOL_MEM  65536


static ngx_int_t ngx_http_pyrepl_spool_spill(ngx_http_pyrepl_spool_t *sp);
static int ngx_http_pyrepl_spool_dump(const char *buffer, size_t size,
    void *data);


/*
 * Append data, escaped for the inside of a JSON string if escape.
 * Returns NGX_OK or NGX_ERROR.
 */
ngx_int_t
ngx_http_pyrepl_spool_add(ngx_http_pyrepl_spool_t *sp, u_char *data,
    size_t len, ngx_uint_t escape)
{
    size_t      n;
    ngx_int_t   rc;
    ngx_buf_t  *b;

    b = sp->buf;

    if (b == NULL) {
        b = ngx_create_temp_buf(sp->request->pool, PYREPL_SPOOL_MIN);
        if (b == NULL) {
            return NGX_ERROR;
        }

        sp->buf = b;
    }

    for ( ;; ) {
        if (escape) {
            n = ngx_http_pyrepl_json_escape(&b->last, b->end, data, len);

        } else {
            n = ngx_min(len, (size_t) (b->end - b->last));
            b->last = ngx_cpymem(b->last, data, n);
        }

        data += n;
        len -= n;

        if (len == 0) {
            return NGX_OK;
        }

        rc = ngx_http_pyrepl_buf_grow(sp->request->pool, b,
                                      PYREPL_SPOOL_MEM);

        if (rc == NGX_DECLINED) {
            rc = ngx_http_pyrepl_spool_spill(sp);
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }
    }
}


/* Move what memory holds to the end of the temporary file. */
static ngx_int_t
ngx_http_pyrepl_spool_spill(ngx_http_pyrepl_spool_t *sp)
{
    ssize_t                    n;
    ngx_chain_t                cl;
    ngx_temp_file_t           *tf;
    ngx_http_request_t        *r;
    ngx_http_core_loc_conf_t  *clcf;

    r = sp->request;
    tf = sp->file;

    if (tf == NULL) {
        tf = ngx_pcalloc(r->pool, sizeof(ngx_temp_file_t));
        if (tf == NULL) {
            return NGX_ERROR;
        }

        clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

        tf->file.fd = NGX_INVALID_FILE;
        tf->file.log = r->connection->log;
        tf->path = clcf->client_body_temp_path;
        tf->pool = r->pool;
        tf->log_level = NGX_LOG_INFO;
        tf->warn = "pyrepl: a run's stderr is buffered to a temporary file";

        sp->file = tf;
    }

    cl.buf = sp->buf;
    cl.next = NULL;

    n = ngx_write_chain_to_temp_file(tf, &cl);

    if (n == NGX_ERROR) {
        return NGX_ERROR;
    }

    tf->offset += n;
    sp->buf->last = sp->buf->pos;

    return NGX_OK;
}


/*
 * Each field of obj as it stands in a JSON object, ',"key":value'.
 * Returns NGX_OK or NGX_ERROR.
 */
ngx_int_t
ngx_http_pyrepl_spool_fields(ngx_http_pyrepl_spool_t *sp, json_t *obj)
{
    json_t      *value;
    const char  *key;

    json_object_foreach(obj, key, value) {
        if (ngx_http_pyrepl_spool_add(sp, (u_char *) ",\"", 2, 0) != NGX_OK
            || ngx_http_pyrepl_spool_add(sp, (u_char *) key,
                                         ngx_strlen(key), 0)
               != NGX_OK
            || ngx_http_pyrepl_spool_add(sp, (u_char *) "\":", 2, 0)
               != NGX_OK
            || ngx_http_pyrepl_spool_json(sp, value) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* value as JSON, to the spool.  Returns NGX_OK or NGX_ERROR. */
ngx_int_t
ngx_http_pyrepl_spool_json(ngx_http_pyrepl_spool_t *sp, json_t *value)
{
    return json_dump_callback(value, ngx_http_pyrepl_spool_dump, sp,
                              JSON_COMPACT | JSON_ENCODE_ANY) == 0
           ? NGX_OK : NGX_ERROR;
}


/* jansson's json_dump_callback() output, to the spool as it is. */
static int
ngx_http_pyrepl_spool_dump(const char *buffer, size_t size, void *data)
{
    return ngx_http_pyrepl_spool_add(data, (u_char *) buffer, size, 0)
           == NGX_OK ? 0 : -1;
}


/*
 * Link the spool, its file then its memory (which must have been used),
 * at *ll, and move *ll past them.  Returns NGX_OK or NGX_ERROR.
 */
ngx_int_t
ngx_http_pyrepl_spool_chain(ngx_http_pyrepl_spool_t *sp, ngx_chain_t ***ll)
{
    ngx_buf_t    *b;
    ngx_pool_t   *pool;
    ngx_chain_t  *cl;

    pool = sp->request->pool;

    if (sp->file) {
        cl = ngx_alloc_chain_link(pool);
        b = ngx_calloc_buf(pool);

        if (cl == NULL || b == NULL) {
            return NGX_ERROR;
        }

        b->in_file = 1;
        b->file = &sp->file->file;
        b->file_last = sp->file->offset;
        cl->buf = b;
        **ll = cl;
        *ll = &cl->next;
    }

    cl = ngx_alloc_chain_link(pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    cl->buf = sp->buf;
    cl->next = NULL;
    **ll = cl;
    *ll = &cl->next;

    return NGX_OK;
}


/*
 * Escape src for the inside of a JSON string into [*pos, end), as much of
 * it as surely fits: ngx_escape_json() writes what jansson would, and no
 * byte takes more than PYREPL_JSON_ESCAPED ("\u0000").  Returns how many
 * bytes of src it took.
 */
size_t
ngx_http_pyrepl_json_escape(u_char **pos, u_char *end, u_char *src,
    size_t len)
{
    size_t  n, took;

    for (took = 0; took < len; took += n) {
        n = ngx_min(len - took, (size_t) (end - *pos) / PYREPL_JSON_ESCAPED);
        if (n == 0) {
            break;
        }

        *pos = (u_char *) ngx_escape_json(*pos, src + took, n);
    }

    return took;
}


/*
 * Double b, a buffer of ours yet to be sent, up to max bytes.  Returns
 * NGX_OK, NGX_DECLINED when it has max bytes already, or NGX_ERROR.
 */
ngx_int_t
ngx_http_pyrepl_buf_grow(ngx_pool_t *pool, ngx_buf_t *b, size_t max)
{
    u_char  *p;
    size_t   size;

    size = b->end - b->start;

    if (size >= max) {
        return NGX_DECLINED;
    }

    size = ngx_min(size * 2, max);

    p = ngx_palloc(pool, size);
    if (p == NULL) {
        return NGX_ERROR;
    }

    b->last = ngx_cpymem(p, b->pos, b->last - b->pos);
    ngx_pfree(pool, b->start);

    b->start = p;
    b->pos = p;
    b->end = p + size;

    return NGX_OK;
}
