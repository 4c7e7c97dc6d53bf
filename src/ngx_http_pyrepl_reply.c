/*
 * ngx_http_pyrepl_reply.c: JSON in and out for the pyrepl handlers.  Every
 * answer body is built with jansson and sent here; every non-2xx answer is
 * {"error": {"code", "message"}} as API.md promises; request bodies are
 * read back from memory or the temp file nginx spilled them to and parsed
 * as one JSON object.
 */

#include "ngx_http_pyrepl_reply.h"


static const char  *ngx_http_pyrepl_states[] = {
    "starting", "idle", "busy", "crashed", "terminated", "reaping"
};

static const char  *ngx_http_pyrepl_langs[] = { "python", "bash" };


const char *
ngx_http_pyrepl_lang_name(ngx_uint_t lang)
{
    return lang < 2 ? ngx_http_pyrepl_langs[lang] : "python";
}


const char *
ngx_http_pyrepl_state_name(ngx_uint_t state)
{
    if (state >= sizeof(ngx_http_pyrepl_states) / sizeof(char *)) {
        return "unknown";
    }

    return ngx_http_pyrepl_states[state];
}


/*
 * Send body (reference stolen) as the whole answer with the given status.
 * Returns what the output filter returned, for ngx_http_finalize_request.
 */
ngx_int_t
ngx_http_pyrepl_send_json(ngx_http_request_t *r, ngx_uint_t status,
    json_t *body)
{
    size_t        len;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    r->headers_out.status = status;

    if (body == NULL) {
        /* 204 */
        r->header_only = 1;
        r->headers_out.content_length_n = 0;
        rc = ngx_http_send_header(r);

        if (rc == NGX_ERROR || rc > NGX_OK) {
            return rc;
        }

        return ngx_http_send_special(r, NGX_HTTP_LAST);
    }

    len = json_dumpb(body, NULL, 0, JSON_COMPACT);

    b = ngx_create_temp_buf(r->pool, len + 1);
    if (b == NULL || len == 0) {
        json_decref(body);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last += json_dumpb(body, (char *) b->pos, len, JSON_COMPACT);
    *b->last++ = '\n';
    json_decref(body);

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_length_n = b->last - b->pos;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * The one way an error answer is made: {"error": {"code", "message"}} with
 * status.  fmt is nginx's format (ngx_vslprintf: "%V", "%ui", "%*s" takes a
 * length and a pointer, "%O" an off_t), like every other format string of
 * the module; the message is cut at 511 bytes.
 */
ngx_int_t
ngx_http_pyrepl_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *fmt, ...)
{
    u_char   *last, message[512];
    va_list   args;
    json_t   *body;

    va_start(args, fmt);
    last = ngx_vslprintf(message, message + sizeof(message), fmt, args);
    va_end(args);

    body = json_pack("{s:{s:s,s:s%}}", "error", "code", code,
                     "message", message, (size_t) (last - message));
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_pyrepl_send_json(r, status, body);
}


/*
 * 404 for session id: what an unknown id, a session that has ended and
 * another tenant's session all answer, word for word.
 */
ngx_int_t
ngx_http_pyrepl_send_not_found(ngx_http_request_t *r, u_char *id)
{
    u_char  message[PYREPL_NO_SESSION_LEN];

    return ngx_http_pyrepl_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                      "%s",
                                      ngx_http_pyrepl_no_session(message, id));
}


ngx_int_t
ngx_http_pyrepl_send_not_allowed(ngx_http_request_t *r, ngx_str_t *allow)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Allow");
    h->value = *allow;

    return ngx_http_pyrepl_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                      "method_not_allowed",
                                      "%V is not allowed here: this route "
                                      "takes %V", &r->method_name, allow);
}


/* That 404's message, in buf (PYREPL_NO_SESSION_LEN bytes); returns buf. */
u_char *
ngx_http_pyrepl_no_session(u_char *buf, u_char *id)
{
    ngx_sprintf(buf, "no session %*s%Z", (size_t) PYREPL_ID_LEN, id);

    return buf;
}


void
ngx_http_pyrepl_finalize_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message)
{
    ngx_http_finalize_request(r, ngx_http_pyrepl_send_error(r, status, code,
                                                            "%s", message));
}


/*
 * Parse the request body, already read by ngx_http_read_client_request_body,
 * as one JSON object; for use in a body handler.  Returns NGX_OK with *body
 * set (NULL for an empty body), or NGX_DONE when the body was bad and the
 * request has been answered (400 or 413) and finalized already.
 */
ngx_int_t
ngx_http_pyrepl_read_json_body(ngx_http_request_t *r, json_t **body)
{
    u_char                      *data, *p;
    size_t                       len;
    ssize_t                      n;
    ngx_buf_t                   *b;
    ngx_chain_t                 *cl;
    json_error_t                 jerr;
    ngx_http_pyrepl_loc_conf_t  *plcf;

    *body = NULL;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    len = 0;
    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        len += b->in_file ? (size_t) (b->file_last - b->file_pos)
                          : (size_t) (b->last - b->pos);
    }

    if (len == 0) {
        return NGX_OK;
    }

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_pyrepl_module);

    if (plcf->max_body_size && (off_t) len > plcf->max_body_size) {
        r->keepalive = 0;
        ngx_http_finalize_request(r,
            ngx_http_pyrepl_send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                       "too_large",
                                       "request body over %O bytes",
                                       plcf->max_body_size));
        return NGX_DONE;
    }

    data = ngx_pnalloc(r->pool, len);
    if (data == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NGX_DONE;
    }

    p = data;
    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                              b->file_pos);
            if (n != b->file_last - b->file_pos) {
                ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
                return NGX_DONE;
            }

            p += n;
            continue;
        }

        p = ngx_cpymem(p, b->pos, b->last - b->pos);
    }

    *body = json_loadb((char *) data, len, JSON_REJECT_DUPLICATES, &jerr);

    if (*body == NULL) {
        ngx_http_finalize_request(r,
            ngx_http_pyrepl_send_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                       "invalid JSON body at line %d "
                                       "column %d: %s", jerr.line,
                                       jerr.column, jerr.text));
        return NGX_DONE;
    }

    if (!json_is_object(*body)) {
        json_decref(*body);
        *body = NULL;
        ngx_http_pyrepl_finalize_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                       "the request body must be a JSON "
                                       "object");
        return NGX_DONE;
    }

    return NGX_OK;
}


json_t *
ngx_http_pyrepl_time_json(time_t t)
{
    u_char    buf[sizeof("2026-01-01T00:00:00Z")];
    ngx_tm_t  tm;

    ngx_gmtime(t, &tm);

    ngx_sprintf(buf, "%4d-%02d-%02dT%02d:%02d:%02dZ%Z",
                tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);

    return json_string((char *) buf);
}


/*
 * The session as API.md shows it; "full" adds the fields of
 * GET /session/{id}.
 */
json_t *
ngx_http_pyrepl_session_json(ngx_http_pyrepl_session_t *s, ngx_uint_t full)
{
    size_t   node;
    json_t  *o;

    o = json_pack("{s:s%,s:s,s:s,s:o,s:o}",
                  "session_id", (char *) s->id, (size_t) PYREPL_ID_LEN,
                  "language", ngx_http_pyrepl_lang_name(s->lang),
                  "state", ngx_http_pyrepl_state_name(s->state),
                  "created_at", ngx_http_pyrepl_time_json(s->created),
                  "expires_at", ngx_http_pyrepl_time_json(s->expires));

    node = pyrepl_id_node_len(s->id);

    if (o != NULL && node != 0
        && json_object_set_new(o, "node",
                               json_stringn((char *) s->id, node)) != 0)
    {
        json_decref(o);
        return NULL;
    }

    if (o != NULL && s->restored
        && json_object_set_new(o, "restored_from",
                               json_stringn((char *) s->restored_from,
                                            PYREPL_ID_LEN)) != 0)
    {
        json_decref(o);
        return NULL;
    }

    if (o == NULL || !full) {
        return o;
    }

    if (json_object_set_new(o, "last_activity",
                            ngx_http_pyrepl_time_json(s->last_activity))
        || json_object_set_new(o, "execution_count",
                               json_integer(s->execution_count)))
    {
        json_decref(o);
        return NULL;
    }

    return o;
}


/*
 * Start reading the request body with client_max_body_size enforced here
 * (see the location merge).  Returns what a content handler returns.
 */
ngx_int_t
ngx_http_pyrepl_read_body(ngx_http_request_t *r,
    ngx_http_client_body_handler_pt handler)
{
    ngx_int_t                    rc;
    ngx_http_pyrepl_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_pyrepl_module);

    if (plcf->max_body_size
        && r->headers_in.content_length_n > plcf->max_body_size)
    {
        ngx_http_discard_request_body(r);
        r->keepalive = 0;
        return ngx_http_pyrepl_send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                          "too_large",
                                          "request body over %O bytes",
                                          plcf->max_body_size);
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/* The first request header called name (any case), or NULL. */
ngx_table_elt_t *
ngx_http_pyrepl_header(ngx_http_request_t *r, const char *name)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
}
