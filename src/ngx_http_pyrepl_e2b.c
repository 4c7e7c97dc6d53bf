/*
 * ngx_http_pyrepl_e2b.c: "pyrepl_dialect e2b;", a location that serves
 * the API of E2B's code interpreter, so that its SDKs
 * (@e2b/code-interpreter, e2b-code-interpreter) run unchanged once
 * pointed at it (debug mode with sandboxUrl):
 *
 *   GET /health                   200 "OK"
 *   POST /execute {code, context_id?, language?, env_vars?}
 *                                 200 NDJSON, one object a line as the
 *                                 run goes: stdout and stderr {text,
 *                                 timestamp}; result {text, html, markdown,
 *                                 svg, png, jpeg, pdf, latex, json,
 *                                 javascript, is_main_result} for the
 *                                 run's value and for each display();
 *                                 error {name, value, traceback (one
 *                                 string)}; number_of_executions; last,
 *                                 end_of_execution; keepalive lines while
 *                                 the code is silent
 *   POST /contexts {language?, cwd?}
 *                                 200 {id, language, cwd}
 *   GET /contexts                 200 [{id, language, cwd}, ...]
 *   DELETE /contexts/{id}         204
 *   POST /contexts/{id}/restart   204, a new process: a fresh namespace in
 *                                 the session's home (its cwd from then on)
 *
 * A context is a session of the caller's key (so its TTL, limits and
 * jail apply) that carries a record saying so (its cwd, and whether it is
 * the key's default for its language).  A run without context_id goes to
 * the key's default context for its language (python unless given), made
 * by the first such run; two runs at once in one context take turns, as
 * in E2B (ngx_http_pyrepl_run.c waits for the first).  Languages: python
 * and bash; any other is 400.  env_vars are for that run only.  The
 * client closing the stream interrupts the run; the context stays.
 *
 * Keys: the SDK sends X-Access-Token (runCode, when the sandbox has an
 * envd access token) and E2B-Traffic-Access-Token (every call, when set);
 * both are taken as X-API-Key is (ngx_http_pyrepl_auth.c).  ngx_http_pyrepl_run.c
 * writes the NDJSON; what each line says is decided here
 * (ngx_http_pyrepl_e2b_line).
 */

#include "ngx_http_pyrepl_e2b.h"

#include "ngx_http_pyrepl_auth.h"
#include "ngx_http_pyrepl_reply.h"
#include "ngx_http_pyrepl_restart.h"
#include "ngx_http_pyrepl_run.h"
#include "ngx_http_pyrepl_sandbox.h"
#include "ngx_http_pyrepl_session.h"
#include "ngx_http_pyrepl_table.h"


typedef struct {
    const char  *mime;
    const char  *field;
} ngx_http_pyrepl_e2b_mime_t;


static ngx_int_t ngx_http_pyrepl_e2b_health(ngx_http_request_t *r);
static void ngx_http_pyrepl_e2b_execute(ngx_http_request_t *r);
static ngx_int_t ngx_http_pyrepl_e2b_language(json_t *v, ngx_uint_t *lang);
static ngx_int_t ngx_http_pyrepl_e2b_contexts(ngx_http_request_t *r,
    uint64_t tenant);
static ngx_int_t ngx_http_pyrepl_e2b_context_route(ngx_http_request_t *r,
    uint64_t tenant, u_char *p, u_char *last);
static ngx_int_t ngx_http_pyrepl_e2b_restarted(ngx_http_request_t *r,
    ngx_http_pyrepl_session_t *s);
static json_t *ngx_http_pyrepl_e2b_result(json_t *in, ngx_uint_t is_main);
static json_t *ngx_http_pyrepl_e2b_error(json_t *in);
static json_t *ngx_http_pyrepl_e2b_timestamp(void);


static ngx_http_pyrepl_e2b_mime_t  ngx_http_pyrepl_e2b_mimes[] = {
    { "text/plain", "text" },
    { "text/html", "html" },
    { "text/markdown", "markdown" },
    { "image/svg+xml", "svg" },
    { "image/png", "png" },
    { "image/jpeg", "jpeg" },
    { "application/pdf", "pdf" },
    { "text/latex", "latex" },
    { "application/json", "json" },
    { "application/javascript", "javascript" },
    { NULL, NULL }
};


#define ngx_http_pyrepl_e2b_is(p, last, s)                                    \
    ((size_t) ((last) - (p)) == sizeof(s) - 1                                 \
     && ngx_strncmp(p, s, sizeof(s) - 1) == 0)


/*
 * The dialect's routes, p..last the URI below the location's prefix.
 * Returns what the handler returned.
 */
ngx_int_t
ngx_http_pyrepl_e2b_route(ngx_http_request_t *r, uint64_t tenant,
    u_char *p, u_char *last)
{
    ngx_int_t  rc;
    ngx_str_t  allow;

    if (ngx_http_pyrepl_e2b_is(p, last, "/health")) {
        if (r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD)) {
            return ngx_http_pyrepl_e2b_health(r);
        }

        ngx_str_set(&allow, "GET, HEAD");
        goto not_allowed;
    }

    if (ngx_http_pyrepl_e2b_is(p, last, "/execute")) {
        if (r->method == NGX_HTTP_POST) {
            rc = ngx_http_pyrepl_read_body(r, ngx_http_pyrepl_e2b_execute);
            return rc;
        }

        ngx_str_set(&allow, "POST");
        goto not_allowed;
    }

    if (ngx_http_pyrepl_e2b_is(p, last, "/contexts")) {
        if (r->method == NGX_HTTP_POST) {
            return ngx_http_pyrepl_context_create_handler(r);
        }

        if (r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD)) {
            return ngx_http_pyrepl_e2b_contexts(r, tenant);
        }

        ngx_str_set(&allow, "GET, HEAD, POST");
        goto not_allowed;
    }

    if ((size_t) (last - p) > sizeof("/contexts/") - 1
        && ngx_strncmp(p, "/contexts/", sizeof("/contexts/") - 1) == 0)
    {
        return ngx_http_pyrepl_e2b_context_route(r, tenant,
                                                 p + sizeof("/contexts/") - 1,
                                                 last);
    }

    ngx_http_discard_request_body(r);

    return ngx_http_pyrepl_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                      "no such route");

not_allowed:

    ngx_http_discard_request_body(r);

    return ngx_http_pyrepl_send_not_allowed(r, &allow);
}


static ngx_int_t
ngx_http_pyrepl_e2b_health(ngx_http_request_t *r)
{
    ngx_int_t    rc;
    ngx_buf_t   *b;
    ngx_chain_t  out;

    static u_char  ok[] = "OK";

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = sizeof(ok) - 1;
    ngx_str_set(&r->headers_out.content_type, "text/plain");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = ok;
    b->last = ok + sizeof(ok) - 1;
    b->memory = 1;
    b->last_buf = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * POST /execute, its body read: the run goes to the context named, or
 * to the key's default context for the language, which a create makes
 * first when there is none (ngx_http_pyrepl_session.c).
 */
static void
ngx_http_pyrepl_e2b_execute(ngx_http_request_t *r)
{
    json_t                       *body, *cid, *lang;
    u_char                       *id;
    uint64_t                      tenant;
    ngx_uint_t                    l;
    ngx_http_pyrepl_session_t     s;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    if (ngx_http_pyrepl_read_json_body(r, &body) != NGX_OK) {
        return;
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    cid = json_object_get(body, "context_id");
    lang = json_object_get(body, "language");

    if (json_is_null(cid)) {
        cid = NULL;
    }

    if (json_is_null(lang)) {
        lang = NULL;
    }

    if (cid != NULL && lang != NULL) {
        json_decref(body);
        ngx_http_pyrepl_finalize_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                       "give \"context_id\" or "
                                       "\"language\", not both");
        return;
    }

    if (ngx_http_pyrepl_authenticate(r, &tenant) != NGX_OK) {
        json_decref(body);
        ngx_http_finalize_request(r, NGX_HTTP_UNAUTHORIZED);
        return;                                /* checked by the router */
    }

    if (cid != NULL) {
        id = (u_char *) json_string_value(cid);

        if (id == NULL || ngx_strlen(id) != PYREPL_ID_LEN
            || ngx_http_pyrepl_table_get_own(pmcf->shm_zone, id, tenant, &s)
               != NGX_OK)
        {
            json_decref(body);
            ngx_http_pyrepl_finalize_error(r, NGX_HTTP_NOT_FOUND,
                                           "not_found", "no such context");
            return;
        }

        json_decref(body);
        ngx_http_finalize_request(r, ngx_http_pyrepl_run_handler(r, s.id));
        return;
    }

    if (ngx_http_pyrepl_e2b_language(lang, &l) != NGX_OK) {
        json_decref(body);
        ngx_http_pyrepl_finalize_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                       "\"language\" must be \"python\" or "
                                       "\"bash\"");
        return;
    }

    json_decref(body);

    if (ngx_http_pyrepl_table_default(pmcf->shm_zone, tenant, l, &s)
        == NGX_OK)
    {
        ngx_http_finalize_request(r, ngx_http_pyrepl_run_handler(r, s.id));
        return;
    }

    /* runs there once made; made by another request meanwhile, there */
    ngx_http_pyrepl_context_create_default(r);
}


/* E2B's language (absent: python) into *lang: NGX_OK, or NGX_DECLINED. */
static ngx_int_t
ngx_http_pyrepl_e2b_language(json_t *v, ngx_uint_t *lang)
{
    const char  *name;

    if (v == NULL || json_is_null(v)) {
        *lang = PYREPL_LANG_PYTHON;
        return NGX_OK;
    }

    name = json_string_value(v);

    if (name != NULL && ngx_strcmp(name, "python") == 0) {
        *lang = PYREPL_LANG_PYTHON;
        return NGX_OK;
    }

    if (name != NULL && ngx_strcmp(name, "bash") == 0) {
        *lang = PYREPL_LANG_BASH;
        return NGX_OK;
    }

    return NGX_DECLINED;
}


/*
 * The body of a context's create as POST /session takes it ({language,
 * cwd}), from E2B's {language?, cwd?} (nulls as absent; for a run's
 * default context, the run's body, whose language alone counts).  NULL
 * with *why set: a bad request; with *why NULL: no memory.
 */
json_t *
ngx_http_pyrepl_e2b_create_body(json_t *body, ngx_uint_t for_run,
    const char **why)
{
    json_t      *out, *cwd;
    ngx_uint_t   lang;

    *why = NULL;

    if (body != NULL && !json_is_object(body)) {
        *why = "the body must be a JSON object";
        return NULL;
    }

    if (ngx_http_pyrepl_e2b_language(json_object_get(body, "language"),
                                     &lang)
        != NGX_OK)
    {
        *why = "\"language\" must be \"python\" or \"bash\"";
        return NULL;
    }

    out = json_pack("{s:s}", "language", ngx_http_pyrepl_lang_name(lang));
    if (out == NULL) {
        return NULL;
    }

    cwd = for_run ? NULL : json_object_get(body, "cwd");

    if (cwd != NULL && !json_is_null(cwd)) {
        if (!json_is_string(cwd)
            || json_string_length(cwd) > PYREPL_NB_PATH)
        {
            json_decref(out);
            *why = "\"cwd\" must be a path of at most 1024 bytes";
            return NULL;
        }

        if (json_object_set(out, "cwd", cwd) != 0) {
            json_decref(out);
            return NULL;
        }
    }

    return out;
}


/* {id, language, cwd} of context s (its record rec); NULL: no memory. */
json_t *
ngx_http_pyrepl_e2b_context(ngx_http_request_t *r,
    ngx_http_pyrepl_record_t *rec, ngx_http_pyrepl_session_t *s)
{
    u_char                       *home, *last;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    if (rec->path_len) {
        return json_pack("{s:s%,s:s,s:s%}", "id", s->id,
                         (size_t) PYREPL_ID_LEN,
                         "language", ngx_http_pyrepl_lang_name(s->lang),
                         "cwd", rec->path, rec->path_len);
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    /* its home: the jail's, or its folder in pyrepl_workdir */
    home = ngx_pnalloc(r->pool, pmcf->workdir.len + PYREPL_ID_LEN + 16);
    if (home == NULL) {
        return NULL;
    }

    if (pmcf->sandbox.jail) {
        last = ngx_cpymem(home, PYREPL_JAIL_HOME,
                          sizeof(PYREPL_JAIL_HOME) - 1);

    } else {
        last = ngx_sprintf(home, "%V/%*s", &pmcf->workdir,
                           (size_t) PYREPL_ID_LEN, s->id);
    }

    return json_pack("{s:s%,s:s,s:s%}", "id", s->id, (size_t) PYREPL_ID_LEN,
                     "language", ngx_http_pyrepl_lang_name(s->lang),
                     "cwd", home, (size_t) (last - home));
}


/* GET /contexts: the key's contexts. */
static ngx_int_t
ngx_http_pyrepl_e2b_contexts(ngx_http_request_t *r, uint64_t tenant)
{
    json_t                       *list, *o;
    ngx_uint_t                    i;
    ngx_array_t                  *recs;
    ngx_http_pyrepl_record_t     *rec;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    recs = ngx_http_pyrepl_table_records(pmcf->shm_zone, r->pool, tenant,
                                         PYREPL_RECORD_CONTEXT);
    list = json_array();

    if (recs == NULL || list == NULL) {
        json_decref(list);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rec = recs->elts;

    for (i = 0; i < recs->nelts; i++) {
        o = ngx_http_pyrepl_e2b_context(r, &rec[i], &rec[i].session);

        if (o == NULL || json_array_append_new(list, o) != 0) {
            json_decref(list);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_http_pyrepl_send_json(r, NGX_HTTP_OK, list);
}


/* /contexts/{id} and /contexts/{id}/restart, p at the id. */
static ngx_int_t
ngx_http_pyrepl_e2b_context_route(ngx_http_request_t *r, uint64_t tenant,
    u_char *p, u_char *last)
{
    u_char                        id[PYREPL_ID_LEN + 1];
    ngx_str_t                     allow;
    ngx_http_pyrepl_session_t     s;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    if (last - p < PYREPL_ID_LEN
        || (last - p > PYREPL_ID_LEN
            && !ngx_http_pyrepl_e2b_is(p + PYREPL_ID_LEN, last, "/restart")))
    {
        ngx_http_discard_request_body(r);
        return ngx_http_pyrepl_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                          "no such route");
    }

    *ngx_cpymem(id, p, PYREPL_ID_LEN) = '\0';

    if (ngx_strlen(id) != PYREPL_ID_LEN
        || ngx_http_pyrepl_table_get_own(pmcf->shm_zone, id, tenant, &s)
           != NGX_OK)
    {
        ngx_http_discard_request_body(r);
        return ngx_http_pyrepl_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                          "no such context");
    }

    if (last - p == PYREPL_ID_LEN) {
        if (r->method == NGX_HTTP_DELETE) {
            return ngx_http_pyrepl_delete_handler(r, s.id);
        }

        ngx_str_set(&allow, "DELETE");

    } else {
        if (r->method == NGX_HTTP_POST) {
            return ngx_http_pyrepl_restart(r, &s,
                                           ngx_http_pyrepl_e2b_restarted);
        }

        ngx_str_set(&allow, "POST");
    }

    ngx_http_discard_request_body(r);

    return ngx_http_pyrepl_send_not_allowed(r, &allow);
}


/*
 * A restarted context: 204.  Its new process is in the session's home,
 * and its record says so from now on.
 */
static ngx_int_t
ngx_http_pyrepl_e2b_restarted(ngx_http_request_t *r,
    ngx_http_pyrepl_session_t *s)
{
    ngx_uint_t                    i;
    ngx_array_t                  *recs;
    ngx_http_pyrepl_record_t     *rec;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    recs = ngx_http_pyrepl_table_records(pmcf->shm_zone, r->pool, s->tenant,
                                         PYREPL_RECORD_CONTEXT);
    if (recs == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rec = recs->elts;

    for (i = 0; i < recs->nelts; i++) {
        if (ngx_strncmp(rec[i].session.id, s->id, PYREPL_ID_LEN) == 0
            && rec[i].path_len)
        {
            rec[i].path_len = 0;

            if (ngx_http_pyrepl_table_record(pmcf->shm_zone, s->id,
                                             s->tenant, &rec[i])
                == NGX_ERROR)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }
    }

    return ngx_http_pyrepl_send_json(r, NGX_HTTP_NO_CONTENT, NULL);
}


/*
 * The NDJSON line of a run's event (*data, taken and replaced): NGX_OK,
 * NGX_DECLINED for an event that has no line (*data NULL), NGX_ERROR out
 * of memory.
 */
ngx_int_t
ngx_http_pyrepl_e2b_line(const char *event, json_t **data)
{
    json_t  *in, *out;

    in = *data;

    if (ngx_strcmp(event, "stdout") == 0 || ngx_strcmp(event, "stderr") == 0)
    {
        out = json_pack("{s:s,s:O?,s:o}", "type", event,
                        "text", json_object_get(in, "text"),
                        "timestamp", ngx_http_pyrepl_e2b_timestamp());

    } else if (ngx_strcmp(event, "result") == 0) {
        out = ngx_http_pyrepl_e2b_result(in, 1);

    } else if (ngx_strcmp(event, "display_data") == 0) {
        out = ngx_http_pyrepl_e2b_result(in, 0);

    } else if (ngx_strcmp(event, "error") == 0) {
        out = ngx_http_pyrepl_e2b_error(in);

    } else {
        json_decref(in);
        *data = NULL;
        return NGX_DECLINED;
    }

    json_decref(in);
    *data = out;

    return out != NULL ? NGX_OK : NGX_ERROR;
}


/*
 * The lines of a run refused once its answer began (it waited its turn
 * too long, its context went meanwhile): the error, then the end.
 */
json_t *
ngx_http_pyrepl_e2b_refused(const char *code, const char *message)
{
    return json_pack("[{s:s,s:s,s:s,s:s},{s:s}]",
                     "type", "error", "name", code, "value", message,
                     "traceback", "", "type", "end_of_execution");
}


/* The last lines of a run: its count, then its end (a JSON array). */
json_t *
ngx_http_pyrepl_e2b_end(ngx_uint_t execution_count)
{
    return json_pack("[{s:s,s:I},{s:s}]",
                     "type", "number_of_executions",
                     "execution_count", (json_int_t) execution_count,
                     "type", "end_of_execution");
}


/*
 * A result line from a result or display_data event's {data: {mime:
 * value}}: the MIME types E2B names become its fields, any other stays
 * under its own name (the SDK's Result.extra).
 */
static json_t *
ngx_http_pyrepl_e2b_result(json_t *in, ngx_uint_t is_main)
{
    json_t                      *out, *value;
    const char                  *mime, *field;
    ngx_http_pyrepl_e2b_mime_t  *m;

    out = json_pack("{s:s,s:b}", "type", "result", "is_main_result",
                    (int) is_main);
    if (out == NULL) {
        return NULL;
    }

    json_object_foreach(json_object_get(in, "data"), mime, value) {
        field = mime;

        for (m = ngx_http_pyrepl_e2b_mimes; m->mime; m++) {
            if (ngx_strcmp(m->mime, mime) == 0) {
                field = m->field;
                break;
            }
        }

        if (ngx_strcmp(field, "type") != 0
            && ngx_strcmp(field, "is_main_result") != 0
            && json_object_set(out, field, value) != 0)
        {
            json_decref(out);
            return NULL;
        }
    }

    return out;
}


/* {type: error, name, value, traceback: its lines as one string}. */
static json_t *
ngx_http_pyrepl_e2b_error(json_t *in)
{
    u_char      *buf, *p;
    size_t       len, n;
    json_t      *tb, *line, *out;
    ngx_uint_t   i;
    const char  *s;

    tb = json_object_get(in, "traceback");
    len = 0;

    json_array_foreach(tb, i, line) {
        len += json_string_length(line) + 1;
    }

    buf = ngx_alloc(len + 1, ngx_cycle->log);
    if (buf == NULL) {
        return NULL;
    }

    p = buf;

    json_array_foreach(tb, i, line) {
        s = json_string_value(line);
        n = json_string_length(line);

        if (s == NULL) {
            continue;
        }

        if (p != buf && p[-1] != '\n') {
            *p++ = '\n';
        }

        p = ngx_cpymem(p, s, n);
    }

    out = json_pack("{s:s,s:O?,s:O?,s:s%}", "type", "error",
                    "name", json_object_get(in, "ename"),
                    "value", json_object_get(in, "evalue"),
                    "traceback", (char *) buf, (size_t) (p - buf));

    ngx_free(buf);

    return out;
}


/* Now as ISO 8601 in UTC, with milliseconds. */
static json_t *
ngx_http_pyrepl_e2b_timestamp(void)
{
    u_char      buf[sizeof("1970-01-01T00:00:00.000Z")], *last;
    ngx_tm_t    tm;
    ngx_time_t *tp;

    tp = ngx_timeofday();
    ngx_gmtime(tp->sec, &tm);

    last = ngx_sprintf(buf, "%4d-%02d-%02dT%02d:%02d:%02d.%03MZ",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                       tp->msec);

    return json_stringn((char *) buf, last - buf);
}
