/*
 * ngx_http_pyrepl_jupyter.c: "pyrepl_dialect jupyter;", a location that
 * serves Jupyter's kernel REST API, so that Jupyter front ends (through a
 * gateway, or @jupyterlab/services directly) use PyREPL's Python sessions
 * as kernels.  Below the location's prefix ("location /api"):
 *
 *   GET /kernelspecs, /kernelspecs/python3   the one kernel spec
 *   GET /kernels                             the caller's kernels
 *   POST /kernels {"name"?, "env"?}          201, a new kernel: a Python
 *                                            session (env: KERNEL_* names
 *                                            only, as a gateway sends its
 *                                            whole environment)
 *   GET, DELETE /kernels/{id}                its model; 204
 *   POST /kernels/{id}/interrupt             204
 *   POST /kernels/{id}/restart               200, its model: a new
 *                                            process (the supervisor's
 *                                            kill, then create, under the
 *                                            same id), a fresh namespace
 *                                            and execution count; 409
 *                                            while it runs code
 *   GET /kernels/{id}/channels               the channels WebSocket
 *                                            (ngx_http_pyrepl_jupyter_ws.c)
 *   GET, POST /sessions                      notebooks' sessions: a path,
 *   GET, PATCH, DELETE /sessions/{id}        name and type on a kernel (a
 *                                            new one, or kernel.id); a
 *                                            kernel has one at most; DELETE
 *                                            ends its kernel too
 *
 * A kernel is a PyREPL session: its id is the session's, written as a
 * UUID (8-4-4-4-12, the form Jupyter's routes match), tenancy, TTL,
 * reaping, the pool and the isolation all apply; bash sessions are no
 * kernels (404).  The model: {"id", "name", "last_activity" (exactly
 * %Y-%m-%dT%H:%M:%S.%fZ), "execution_state", "connections"}.  Keys come
 * as "Authorization: token KEY" too (ngx_http_pyrepl_auth.c).
 */

#include "ngx_http_pyrepl_jupyter.h"

#include "ngx_http_pyrepl_auth.h"
#include "ngx_http_pyrepl_control.h"
#include "ngx_http_pyrepl_reply.h"
#include "ngx_http_pyrepl_peer.h"
#include "ngx_http_pyrepl_restart.h"
#include "ngx_http_pyrepl_session.h"
#include "ngx_http_pyrepl_supervisor.h"
#include "ngx_http_pyrepl_table.h"


#define PYREPL_UUID_LEN       36
#define PYREPL_KERNEL_NAME    "python3"


static ngx_int_t ngx_http_pyrepl_jupyter_kernels(ngx_http_request_t *r,
    uint64_t tenant, u_char *p, u_char *last);
static ngx_int_t ngx_http_pyrepl_jupyter_list(ngx_http_request_t *r,
    uint64_t tenant);
static json_t *ngx_http_pyrepl_jupyter_spec(void);
static ngx_uint_t ngx_http_pyrepl_jupyter_id(u_char *p, u_char *last,
    u_char *id);
static ngx_int_t ngx_http_pyrepl_jupyter_sessions(ngx_http_request_t *r,
    uint64_t tenant, u_char *p, u_char *last);
static ngx_int_t ngx_http_pyrepl_jupyter_session_find(ngx_http_request_t *r,
    uint64_t tenant, u_char *id, ngx_http_pyrepl_record_t *nb);
static void ngx_http_pyrepl_jupyter_patch(ngx_http_request_t *r);
static const char *ngx_http_pyrepl_jupyter_nb_fields(json_t *body,
    ngx_http_pyrepl_record_t *nb);
static json_t *ngx_http_pyrepl_jupyter_session_json(
    ngx_http_pyrepl_record_t *nb, ngx_http_pyrepl_session_t *s);
static ngx_uint_t ngx_http_pyrepl_jupyter_kernel_of(ngx_http_request_t *r,
    uint64_t tenant, json_t *kernel, ngx_http_pyrepl_session_t *s);
static ngx_int_t ngx_http_pyrepl_jupyter_restarted(ngx_http_request_t *r,
    ngx_http_pyrepl_session_t *s);
static ngx_uint_t ngx_http_pyrepl_jupyter_owned(ngx_http_request_t *r,
    uint64_t tenant, u_char *p, u_char *last, ngx_http_pyrepl_session_t *s);


/*
 * A request of a location with this dialect, p the URI below the
 * location's prefix; tenant is the caller's.  Returns what its handler
 * returned.
 */
ngx_int_t
ngx_http_pyrepl_jupyter_route(ngx_http_request_t *r, uint64_t tenant,
    u_char *p, u_char *last)
{
    json_t     *o;
    ngx_str_t   get = ngx_string("GET, HEAD");

    if ((size_t) (last - p) >= sizeof("/kernelspecs") - 1
        && ngx_strncmp(p, "/kernelspecs", sizeof("/kernelspecs") - 1) == 0)
    {
        p += sizeof("/kernelspecs") - 1;

        if (p != last && !(last - p == sizeof("/" PYREPL_KERNEL_NAME) - 1
                           && ngx_strncmp(p, "/" PYREPL_KERNEL_NAME,
                                          last - p) == 0))
        {
            ngx_http_discard_request_body(r);
            return ngx_http_pyrepl_send_error(r, NGX_HTTP_NOT_FOUND,
                                              "not_found",
                                              "no such kernel spec");
        }

        if (!(r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD))) {
            ngx_http_discard_request_body(r);
            return ngx_http_pyrepl_send_not_allowed(r, &get);
        }

        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        o = ngx_http_pyrepl_jupyter_spec();

        if (o != NULL && p == last) {
            o = json_pack("{s:s,s:{s:o}}", "default", PYREPL_KERNEL_NAME,
                          "kernelspecs", PYREPL_KERNEL_NAME, o);
        }

        return o ? ngx_http_pyrepl_send_json(r, NGX_HTTP_OK, o)
                 : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if ((size_t) (last - p) >= sizeof("/sessions") - 1
        && ngx_strncmp(p, "/sessions", sizeof("/sessions") - 1) == 0
        && (last - p == sizeof("/sessions") - 1
            || p[sizeof("/sessions") - 1] == '/'))
    {
        return ngx_http_pyrepl_jupyter_sessions(r, tenant,
                                                p + sizeof("/sessions") - 1,
                                                last);
    }

    if ((size_t) (last - p) >= sizeof("/kernels") - 1
        && ngx_strncmp(p, "/kernels", sizeof("/kernels") - 1) == 0
        && (last - p == sizeof("/kernels") - 1
            || p[sizeof("/kernels") - 1] == '/'))
    {
        return ngx_http_pyrepl_jupyter_kernels(r, tenant,
                                               p + sizeof("/kernels") - 1,
                                               last);
    }

    ngx_http_discard_request_body(r);

    return ngx_http_pyrepl_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                      "no such route");
}


/* /kernels[/{id}[/<action>]], p after "/kernels". */
static ngx_int_t
ngx_http_pyrepl_jupyter_kernels(ngx_http_request_t *r, uint64_t tenant,
    u_char *p, u_char *last)
{
    ngx_str_t                     allow;
    ngx_http_pyrepl_session_t     s;

    if (p == last || (last - p == 1 && *p == '/')) {
        if (r->method == NGX_HTTP_POST) {
            return ngx_http_pyrepl_kernel_create_handler(r);
        }

        if (r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD)) {
            return ngx_http_pyrepl_jupyter_list(r, tenant);
        }

        ngx_str_set(&allow, "GET, HEAD, POST");
        goto not_allowed;
    }

    p++;                                                  /* the '/' */

    /* another key's kernel, or a bash session, does not exist here */
    if (!ngx_http_pyrepl_jupyter_owned(r, tenant, p, last, &s)) {
        ngx_http_discard_request_body(r);
        return ngx_http_pyrepl_send_error(r, NGX_HTTP_NOT_FOUND,
                                          "not_found", "no such kernel");
    }

    p += PYREPL_UUID_LEN;

    if (p == last) {
        if (r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD)) {
            if (ngx_http_discard_request_body(r) != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            return ngx_http_pyrepl_send_json(r, NGX_HTTP_OK,
                                        ngx_http_pyrepl_jupyter_kernel(&s));
        }

        if (r->method == NGX_HTTP_DELETE) {
            return ngx_http_pyrepl_delete_handler(r, s.id);
        }

        ngx_str_set(&allow, "GET, HEAD, DELETE");
        goto not_allowed;
    }

    if (last - p == sizeof("/channels") - 1
        && ngx_strncmp(p, "/channels", last - p) == 0)
    {
        if (r->method == NGX_HTTP_GET) {
            return ngx_http_pyrepl_jupyter_channels(r, s.id);
        }

        ngx_str_set(&allow, "GET");
        goto not_allowed;
    }

    if (last - p == sizeof("/restart") - 1
        && ngx_strncmp(p, "/restart", last - p) == 0)
    {
        if (r->method == NGX_HTTP_POST) {
            return ngx_http_pyrepl_restart(r, &s,
                                           ngx_http_pyrepl_jupyter_restarted);
        }

        ngx_str_set(&allow, "POST");
        goto not_allowed;
    }

    if (last - p == sizeof("/interrupt") - 1
        && ngx_strncmp(p, "/interrupt", last - p) == 0)
    {
        if (r->method == NGX_HTTP_POST) {
            return ngx_http_pyrepl_interrupt_handler(r, s.id);
        }

        ngx_str_set(&allow, "POST");
        goto not_allowed;
    }

    ngx_http_discard_request_body(r);

    return ngx_http_pyrepl_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                      "no such route");

not_allowed:

    ngx_http_discard_request_body(r);

    return ngx_http_pyrepl_send_not_allowed(r, &allow);
}


/* A restarted kernel: 200 with its model. */
static ngx_int_t
ngx_http_pyrepl_jupyter_restarted(ngx_http_request_t *r,
    ngx_http_pyrepl_session_t *s)
{
    return ngx_http_pyrepl_send_json(r, NGX_HTTP_OK,
                                     ngx_http_pyrepl_jupyter_kernel(s));
}


/* /sessions[/{id}], p after "/sessions". */
static ngx_int_t
ngx_http_pyrepl_jupyter_sessions(ngx_http_request_t *r, uint64_t tenant,
    u_char *p, u_char *last)
{
    json_t                       *list, *o;
    u_char                        id[PYREPL_ID_LEN];
    ngx_int_t                     rc;
    ngx_str_t                     allow;
    ngx_uint_t                    i;
    ngx_array_t                  *nbs;
    ngx_http_pyrepl_record_t   *nb;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    if (p == last || (last - p == 1 && *p == '/')) {
        if (r->method == NGX_HTTP_POST) {
            return ngx_http_pyrepl_notebook_create_handler(r);
        }

        if (!(r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD))) {
            ngx_str_set(&allow, "GET, HEAD, POST");
            goto not_allowed;
        }

        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        nbs = ngx_http_pyrepl_table_records(pmcf->shm_zone, r->pool,
                                            tenant, PYREPL_RECORD_NOTEBOOK);
        list = json_array();

        if (nbs == NULL || list == NULL) {
            json_decref(list);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        nb = nbs->elts;

        for (i = 0; i < nbs->nelts; i++) {
            o = ngx_http_pyrepl_jupyter_session_json(&nb[i], &nb[i].session);

            if (o == NULL || json_array_append_new(list, o) != 0) {
                json_decref(list);
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }

        return ngx_http_pyrepl_send_json(r, NGX_HTTP_OK, list);
    }

    p++;

    if (!ngx_http_pyrepl_jupyter_id(p, last, id)
        || p + PYREPL_UUID_LEN != last)
    {
        ngx_http_discard_request_body(r);
        return ngx_http_pyrepl_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                          "no such session");
    }

    nb = ngx_pcalloc(r->pool, sizeof(ngx_http_pyrepl_record_t));
    if (nb == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_pyrepl_jupyter_session_find(r, tenant, id, nb);
    if (rc != NGX_OK) {
        ngx_http_discard_request_body(r);
        return (rc == NGX_DECLINED)
               ? ngx_http_pyrepl_send_error(r, NGX_HTTP_NOT_FOUND,
                                            "not_found", "no such session")
               : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD)) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_pyrepl_send_json(r, NGX_HTTP_OK,
                   ngx_http_pyrepl_jupyter_session_json(nb, &nb->session));
    }

    if (r->method == NGX_HTTP_DELETE) {
        /* as Jupyter's server does, the session's kernel goes with it */
        return ngx_http_pyrepl_delete_handler(r, nb->session.id);
    }

    if (r->method == NGX_HTTP_PATCH) {
        ngx_http_set_ctx(r, nb, ngx_http_pyrepl_module);
        return ngx_http_pyrepl_read_body(r, ngx_http_pyrepl_jupyter_patch);
    }

    ngx_str_set(&allow, "GET, HEAD, PATCH, DELETE");

not_allowed:

    ngx_http_discard_request_body(r);

    return ngx_http_pyrepl_send_not_allowed(r, &allow);
}


/*
 * The tenant's session id into *nb (its kernel's session in nb->session):
 * NGX_OK, NGX_DECLINED if it has none such, or NGX_ERROR.
 */
static ngx_int_t
ngx_http_pyrepl_jupyter_session_find(ngx_http_request_t *r, uint64_t tenant,
    u_char *id, ngx_http_pyrepl_record_t *nb)
{
    ngx_uint_t                    i;
    ngx_array_t                  *nbs;
    ngx_http_pyrepl_record_t   *all;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    nbs = ngx_http_pyrepl_table_records(pmcf->shm_zone, r->pool, tenant,
                                        PYREPL_RECORD_NOTEBOOK);
    if (nbs == NULL) {
        return NGX_ERROR;
    }

    all = nbs->elts;

    for (i = 0; i < nbs->nelts; i++) {
        if (ngx_memcmp(all[i].id, id, PYREPL_ID_LEN) == 0) {
            *nb = all[i];
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/*
 * PATCH /sessions/{id} {"path"?, "name"?, "type"?, "kernel"?}: new
 * fields; kernel.id moves the session to that kernel of the caller's
 * (kernel.name keeps its kernel: python3 is the one kind).
 */
static void
ngx_http_pyrepl_jupyter_patch(ngx_http_request_t *r)
{
    json_t                       *body, *kernel;
    uint64_t                      tenant;
    ngx_int_t                     rc;
    const char                   *why;
    ngx_http_pyrepl_session_t     s;
    ngx_http_pyrepl_record_t   *nb;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    if (ngx_http_pyrepl_read_json_body(r, &body) != NGX_OK) {
        return;
    }

    nb = ngx_http_get_module_ctx(r, ngx_http_pyrepl_module);
    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    if (ngx_http_pyrepl_authenticate(r, &tenant) != NGX_OK) {
        json_decref(body);
        ngx_http_finalize_request(r, NGX_HTTP_UNAUTHORIZED);
        return;                                /* checked by the router */
    }

    why = ngx_http_pyrepl_jupyter_nb_fields(body, nb);

    if (why != NULL) {
        json_decref(body);
        ngx_http_pyrepl_finalize_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                       why);
        return;
    }

    s = nb->session;
    kernel = json_object_get(body, "kernel");

    if (json_object_get(kernel, "id") != NULL
        && !ngx_http_pyrepl_jupyter_kernel_of(r, tenant, kernel, &s))
    {
        json_decref(body);
        return;                                 /* answered */
    }

    json_decref(body);

    if (ngx_memcmp(s.id, nb->session.id, PYREPL_ID_LEN) != 0) {
        (void) ngx_http_pyrepl_table_record(pmcf->shm_zone,
                                              nb->session.id, tenant, NULL);
    }

    rc = ngx_http_pyrepl_table_record(pmcf->shm_zone, s.id, tenant, nb);

    if (rc != NGX_OK) {
        ngx_http_pyrepl_finalize_error(r, rc == NGX_DECLINED
                                          ? NGX_HTTP_NOT_FOUND
                                          : NGX_HTTP_SERVICE_UNAVAILABLE,
                                       rc == NGX_DECLINED ? "not_found"
                                                          : "unavailable",
                                       rc == NGX_DECLINED
                                       ? "the kernel is gone"
                                       : "the session table is full");
        return;
    }

    ngx_http_finalize_request(r,
        ngx_http_pyrepl_send_json(r, NGX_HTTP_OK,
                              ngx_http_pyrepl_jupyter_session_json(nb, &s)));
}


/*
 * POST /sessions: its body's notebook fields into a new record (a new
 * id), with *kernel the body of the kernel to create for it; or, for a
 * kernel.id of the caller's, the record given to that kernel and r
 * answered 201 (NULL returned, as for a bad body, answered 400).
 */
ngx_http_pyrepl_record_t *
ngx_http_pyrepl_jupyter_notebook(ngx_http_request_t *r, json_t *body,
    json_t **kernel)
{
    json_t                      *k;
    uint64_t                     tenant;
    const char                  *why;
    ngx_http_pyrepl_session_t    s;
    ngx_http_pyrepl_record_t    *nb;

    *kernel = NULL;

    nb = ngx_pcalloc(r->pool, sizeof(ngx_http_pyrepl_record_t));
    if (nb == NULL || ngx_http_pyrepl_new_id(r, nb->id) != NGX_OK
        || ngx_http_pyrepl_authenticate(r, &tenant) != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NULL;
    }

    nb->kind = PYREPL_RECORD_NOTEBOOK;
    ngx_memcpy(nb->type, "notebook", sizeof("notebook") - 1);
    nb->type_len = sizeof("notebook") - 1;

    why = ngx_http_pyrepl_jupyter_nb_fields(body, nb);
    k = json_object_get(body, "kernel");

    if (why == NULL && k != NULL && !json_is_object(k) && !json_is_null(k))
    {
        why = "\"kernel\" must be an object";
    }

    if (why != NULL) {
        ngx_http_pyrepl_finalize_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                       why);
        return NULL;
    }

    if (json_object_get(k, "id") != NULL) {
        if (ngx_http_pyrepl_jupyter_kernel_of(r, tenant, k, &s)) {
            ngx_http_finalize_request(r,
                ngx_http_pyrepl_jupyter_notebook_made(r, &s, nb));
        }

        return NULL;
    }

    *kernel = json_pack("{s:O?}", "name", json_object_get(k, "name"));
    if (*kernel == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NULL;
    }

    return nb;
}


/* The record given to the new kernel s: 201 with the session model. */
ngx_int_t
ngx_http_pyrepl_jupyter_notebook_made(ngx_http_request_t *r,
    ngx_http_pyrepl_session_t *s, ngx_http_pyrepl_record_t *nb)
{
    ngx_int_t                     rc;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    rc = ngx_http_pyrepl_table_record(pmcf->shm_zone, s->id, s->tenant,
                                        nb);
    if (rc != NGX_OK) {
        return ngx_http_pyrepl_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                          "unavailable",
                                          "the kernel is gone, or the "
                                          "session table is full");
    }

    return ngx_http_pyrepl_send_json(r, NGX_HTTP_CREATED,
                               ngx_http_pyrepl_jupyter_session_json(nb, s));
}


/*
 * Whether kernel.id names a kernel of tenant's (into *s); if not, r is
 * answered 404 (finalized).
 */
static ngx_uint_t
ngx_http_pyrepl_jupyter_kernel_of(ngx_http_request_t *r, uint64_t tenant,
    json_t *kernel, ngx_http_pyrepl_session_t *s)
{
    const char  *v;

    v = json_string_value(json_object_get(kernel, "id"));

    if (v != NULL && json_string_length(json_object_get(kernel, "id"))
                     == PYREPL_UUID_LEN
        && ngx_http_pyrepl_jupyter_owned(r, tenant, (u_char *) v,
                                         (u_char *) v + PYREPL_UUID_LEN, s))
    {
        return 1;
    }

    ngx_http_pyrepl_finalize_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                   "no such kernel");
    return 0;
}


/*
 * Whether p starts with the UUID of a kernel of tenant's (into *s):
 * another key's session, or a bash session, is no kernel here.
 */
static ngx_uint_t
ngx_http_pyrepl_jupyter_owned(ngx_http_request_t *r, uint64_t tenant,
    u_char *p, u_char *last, ngx_http_pyrepl_session_t *s)
{
    u_char                        id[PYREPL_ID_LEN];
    ngx_http_pyrepl_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    return ngx_http_pyrepl_jupyter_id(p, last, id)
           && ngx_http_pyrepl_table_get_own(pmcf->shm_zone, id, tenant, s)
              == NGX_OK
           && s->lang == PYREPL_LANG_PYTHON;
}


/* The body's "path", "name" and "type" into nb; NULL, or what is wrong. */
static const char *
ngx_http_pyrepl_jupyter_nb_fields(json_t *body, ngx_http_pyrepl_record_t *nb)
{
    json_t      *v;
    size_t       max, *len;
    u_char      *to;
    ngx_uint_t   i;

    static const char  *keys[] = { "path", "name", "type" };

    for (i = 0; i < 3; i++) {
        v = json_object_get(body, keys[i]);

        /* older clients: {"notebook": {"path", "name"}} */
        if (v == NULL && i < 2) {
            v = json_object_get(json_object_get(body, "notebook"), keys[i]);
        }

        if (v == NULL || json_is_null(v)) {
            continue;
        }

        to = (i == 0) ? nb->path : (i == 1) ? nb->name : nb->type;
        len = (i == 0) ? &nb->path_len
              : (i == 1) ? &nb->name_len : &nb->type_len;
        max = (i == 0) ? PYREPL_NB_PATH
              : (i == 1) ? PYREPL_NB_NAME : PYREPL_NB_TYPE;

        if (!json_is_string(v) || json_string_length(v) > max) {
            return "\"path\", \"name\" and \"type\" must be strings of "
                   "at most 1024, 256 and 32 bytes";
        }

        *len = json_string_length(v);
        ngx_memcpy(to, json_string_value(v), *len);
    }

    return NULL;
}


/* Jupyter's session model of nb, on kernel s; NULL: no memory. */
static json_t *
ngx_http_pyrepl_jupyter_session_json(ngx_http_pyrepl_record_t *nb,
    ngx_http_pyrepl_session_t *s)
{
    u_char  uuid[PYREPL_UUID_LEN];

    ngx_http_pyrepl_jupyter_uuid(nb->id, uuid);

    return json_pack("{s:s%,s:s%,s:s%,s:s%,s:o,s:{s:s%,s:s%}}",
                     "id", (char *) uuid, (size_t) PYREPL_UUID_LEN,
                     "path", (char *) nb->path, nb->path_len,
                     "name", (char *) nb->name, nb->name_len,
                     "type", (char *) nb->type, nb->type_len,
                     "kernel", ngx_http_pyrepl_jupyter_kernel(s),
                     "notebook",
                     "path", (char *) nb->path, nb->path_len,
                     "name", (char *) nb->name, nb->name_len);
}


/* GET /kernels: the caller's Python sessions, as kernels. */
static ngx_int_t
ngx_http_pyrepl_jupyter_list(ngx_http_request_t *r, uint64_t tenant)
{
    json_t                       *list, *o;
    ngx_uint_t                    i;
    ngx_array_t                  *sessions;
    ngx_http_pyrepl_session_t    *s;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    sessions = ngx_http_pyrepl_table_list(pmcf->shm_zone, r->pool, tenant);
    list = json_array();

    if (sessions == NULL || list == NULL) {
        json_decref(list);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    s = sessions->elts;

    for (i = 0; i < sessions->nelts; i++) {
        if (s[i].lang != PYREPL_LANG_PYTHON) {
            continue;
        }

        o = ngx_http_pyrepl_jupyter_kernel(&s[i]);

        if (o == NULL || json_array_append_new(list, o) != 0) {
            json_decref(list);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_http_pyrepl_send_json(r, NGX_HTTP_OK, list);
}


/* The kernel model of session s; NULL: no memory. */
json_t *
ngx_http_pyrepl_jupyter_kernel(ngx_http_pyrepl_session_t *s)
{
    u_char       uuid[PYREPL_UUID_LEN], when[sizeof("2026-01-01T00:00:00Z")];
    ngx_tm_t     tm;
    const char  *state;

    ngx_http_pyrepl_jupyter_uuid(s->id, uuid);

    ngx_gmtime(s->last_activity, &tm);
    ngx_sprintf(when, "%4d-%02d-%02dT%02d:%02d:%02d%Z",
                tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);

    switch (s->state) {

    case PYREPL_STATE_IDLE:
        state = "idle";
        break;

    case PYREPL_STATE_BUSY:
        state = "busy";
        break;

    case PYREPL_STATE_STARTING:
        state = "starting";
        break;

    default:
        state = "dead";
        break;
    }

    return json_pack("{s:s%,s:s,s:s+,s:s,s:i}",
                     "id", (char *) uuid, (size_t) PYREPL_UUID_LEN,
                     "name", PYREPL_KERNEL_NAME,
                     "last_activity", (char *) when, ".000000Z",
                     "execution_state", state,
                     "connections", 0);
}


/* {"name", "spec", "resources"} of the one kernel spec; NULL: no memory. */
static json_t *
ngx_http_pyrepl_jupyter_spec(void)
{
    return json_pack("{s:s,s:{s:[s],s:s,s:s,s:s,s:{},s:{}},s:{}}",
                     "name", PYREPL_KERNEL_NAME,
                     "spec",
                     "argv", "pyrepl",
                     "display_name", "Python 3 (PyREPL)",
                     "language", "python",
                     "interrupt_mode", "signal",
                     "env",
                     "metadata",
                     "resources");
}


/*
 * The body of a kernel create, {"name"?, "env"?}, as a session create's:
 * {"language": "python", "env": its KERNEL_* names}.  Returns a new
 * reference, or NULL with *why set (a bad body; why NULL: no memory).
 */
json_t *
ngx_http_pyrepl_jupyter_create_body(json_t *body, const char **why)
{
    json_t      *name, *env, *keep, *v, *o;
    const char  *key;

    *why = NULL;

    name = body ? json_object_get(body, "name") : NULL;
    env = body ? json_object_get(body, "env") : NULL;

    if (name != NULL && !json_is_null(name)
        && !(json_is_string(name)
             && ngx_strcmp(json_string_value(name), PYREPL_KERNEL_NAME) == 0))
    {
        *why = "the one kernel is \"" PYREPL_KERNEL_NAME "\"";
        return NULL;
    }

    if (env != NULL && !json_is_null(env) && !json_is_object(env)) {
        *why = "\"env\" must be an object";
        return NULL;
    }

    keep = json_object();
    if (keep == NULL) {
        return NULL;
    }

    json_object_foreach(env, key, v) {
        if (ngx_strncmp(key, "KERNEL_", sizeof("KERNEL_") - 1) == 0
            && json_is_string(v)
            && json_object_set(keep, key, v) != 0)
        {
            json_decref(keep);
            return NULL;
        }
    }

    o = json_pack("{s:s}", "language", "python");

    if (o != NULL && json_object_size(keep) != 0) {
        if (json_object_set(o, "env", keep) != 0) {
            json_decref(o);
            o = NULL;
        }
    }

    json_decref(keep);

    return o;
}


/* Whether p is ".../kernels/{id}/channels", a WebSocket route. */
ngx_uint_t
ngx_http_pyrepl_jupyter_is_channels(u_char *p, u_char *last)
{
    return (size_t) (last - p) >= sizeof("/kernels//channels") - 1
                                  + PYREPL_UUID_LEN
           && ngx_strncmp(last - (sizeof("/channels") - 1), "/channels",
                          sizeof("/channels") - 1) == 0;
}


/* id as a UUID: 8-4-4-4-12. */
void
ngx_http_pyrepl_jupyter_uuid(u_char *id, u_char *uuid)
{
    ngx_uint_t  i, j;

    for (i = 0, j = 0; i < PYREPL_ID_LEN; i++) {
        if (i == 8 || i == 12 || i == 16 || i == 20) {
            uuid[j++] = '-';
        }

        uuid[j++] = id[i];
    }
}


/*
 * Whether p starts with the UUID form of a session id (its characters,
 * with dashes where a UUID has them) followed by last or '/'; its id into
 * id.
 */
static ngx_uint_t
ngx_http_pyrepl_jupyter_id(u_char *p, u_char *last, u_char *id)
{
    u_char      c;
    ngx_uint_t  i, j;

    if (last - p < PYREPL_UUID_LEN
        || (last - p > PYREPL_UUID_LEN && p[PYREPL_UUID_LEN] != '/'))
    {
        return 0;
    }

    for (i = 0, j = 0; i < PYREPL_UUID_LEN; i++) {
        c = p[i];

        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') {
                return 0;
            }

            continue;
        }

        id[j++] = c;
    }

    return pyrepl_id_valid(id, PYREPL_ID_LEN);
}
