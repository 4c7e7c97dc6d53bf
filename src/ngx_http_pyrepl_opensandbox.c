/*
 * ngx_http_pyrepl_opensandbox.c: "pyrepl_dialect opensandbox;", a location
 * that speaks the bash-session API of OpenSandbox's execd, so that its
 * SDKs work against PyREPL unchanged:
 *
 *   POST /session {"cwd"?}                 200 {"session_id", ...} (not 201)
 *   POST /session/{id}/run {"command", "cwd"?, "timeout"? (ms)}
 *                                          SSE whose data objects carry
 *                                          "type" and "timestamp" (Unix ms),
 *                                          output as "text", errors nested
 *                                          as "error": {ename, evalue,
 *                                          traceback}, a command's non-zero
 *                                          exit as ename "CommandExecError"
 *                                          with the exit code as evalue,
 *                                          execution_complete with
 *                                          "execution_time" (ms)
 *   DELETE /session/{id}                   as always
 *   GET /ping                              200, execd's health check
 *   POST /command {command, cwd?, envs?, timeout?, background?}
 *                                          a one-shot command, its own session
 *   GET /command/status/{id}, GET /command/{id}/logs?cursor=
 *                                          a background one's state and
 *                                          output (ngx_http_pyrepl_command.c)
 *   DELETE /command?id={session id}        interrupt that session's run
 *   X-EXECD-ACCESS-TOKEN: <key>            accepted everywhere, like X-API-Key
 *
 * The event names, ids and every PyREPL field stay; only fields are added
 * or nested; a run that was interrupted or timed out also gets an error
 * event (CommandExecError with its exit code), as execd's SDKs read the
 * exit code from the error alone.  Pair it with "pyrepl_default_language
 * bash;" so that a create without a body gets a shell, as execd's does;
 * /ping and /command are locations of their own ("location = /ping {
 * pyrepl; }"), with the dialect.  POST /command {command, cwd, envs,
 * timeout} runs a one-shot command in a bash session of its own, made for
 * it and gone with it; a background one's session stays, and its id names
 * the command.
 */

#include "ngx_http_pyrepl_opensandbox.h"

#include "ngx_http_pyrepl_command.h"
#include "ngx_http_pyrepl_control.h"
#include "ngx_http_pyrepl_reply.h"
#include "ngx_http_pyrepl_session.h"
#include "ngx_http_pyrepl_table.h"


ngx_conf_enum_t  ngx_http_pyrepl_dialects[] = {
    { ngx_string("pyrepl"), PYREPL_DIALECT_PYREPL },
    { ngx_string("opensandbox"), PYREPL_DIALECT_OPENSANDBOX },
    { ngx_string("jupyter"), PYREPL_DIALECT_JUPYTER },
    { ngx_string("e2b"), PYREPL_DIALECT_E2B },
    { ngx_null_string, 0 }
};


static json_t *ngx_http_pyrepl_opensandbox_error(json_t *data);
static ngx_int_t ngx_http_pyrepl_opensandbox_command(ngx_http_request_t *r,
    uint64_t tenant);
static ngx_uint_t ngx_http_pyrepl_opensandbox_owned(ngx_http_request_t *r,
    u_char *id, size_t len, uint64_t tenant, ngx_int_t *rc);


ngx_uint_t
ngx_http_pyrepl_dialect(ngx_http_request_t *r)
{
    ngx_http_pyrepl_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_pyrepl_module);

    return plcf->dialect;
}


/* One SSE event's data in execd's shape (data stolen); NULL: no memory. */
json_t *
ngx_http_pyrepl_opensandbox_event(const char *event, json_t *data)
{
    json_t     *v, *add;
    ngx_msec_t  now;
    ngx_time_t *tp;

    tp = ngx_timeofday();
    now = (ngx_msec_t) tp->sec * 1000 + tp->msec;

    add = NULL;

    if (ngx_strcmp(event, "init") == 0) {
        v = json_object_get(data, "session_id");
        add = json_pack("{s:O?}", "text", v);

    } else if (ngx_strcmp(event, "result") == 0) {
        v = json_object_get(json_object_get(data, "data"), "text/plain");
        add = json_pack("{s:{s:O?}}", "results", "text", v);

    } else if (ngx_strcmp(event, "error") == 0) {
        add = ngx_http_pyrepl_opensandbox_error(data);

    } else if (ngx_strcmp(event, "execution_complete") == 0) {
        v = json_object_get(data, "duration_ms");
        add = json_pack("{s:O?}", "execution_time", v);

    } else {
        add = json_object();
    }

    if (add == NULL
        || json_object_set_new(add, "type", json_string(event)) != 0
        || json_object_set_new(add, "timestamp", json_integer(now)) != 0
        || json_object_update_missing(data, add) != 0)
    {
        json_decref(add);
        json_decref(data);
        return NULL;
    }

    json_decref(add);

    return data;
}


/*
 * {"error": {ename, evalue, traceback}}; a bash command's non-zero exit
 * ("CommandError", "exit status N") becomes execd's "CommandExecError"
 * with evalue "N", from which its SDKs read the exit code.
 */
static json_t *
ngx_http_pyrepl_opensandbox_error(json_t *data)
{
    char        tb[64];
    json_t     *ename, *evalue, *traceback;
    const char *value;

    ename = json_object_get(data, "ename");
    evalue = json_object_get(data, "evalue");
    traceback = json_object_get(data, "traceback");

    value = json_string_value(evalue);

    if (json_is_string(ename)
        && ngx_strcmp(json_string_value(ename), "CommandError") == 0
        && value != NULL
        && ngx_strncmp(value, "exit status ", sizeof("exit status ") - 1)
           == 0)
    {
        value += sizeof("exit status ") - 1;
        *ngx_snprintf((u_char *) tb, sizeof(tb) - 1,
                      "command exited with code %s", (u_char *) value)
            = '\0';

        return json_pack("{s:{s:s,s:s,s:[s]}}", "error",
                         "ename", "CommandExecError", "evalue", value,
                         "traceback", tb);
    }

    return json_pack("{s:{s:O?,s:O?,s:O?}}", "error", "ename", ename,
                     "evalue", evalue, "traceback", traceback);
}


/*
 * execd's routes outside /session, for a request of a location with this
 * dialect: NGX_DECLINED when r is not one of them, else what its handler
 * returned.
 */
ngx_int_t
ngx_http_pyrepl_opensandbox_route(ngx_http_request_t *r, uint64_t tenant)
{
    ngx_int_t   rc;
    ngx_str_t   arg;
    ngx_str_t   get = ngx_string("GET, HEAD");
    ngx_str_t   del = ngx_string("DELETE");

    if (r->uri.len == sizeof("/ping") - 1
        && ngx_strncmp(r->uri.data, "/ping", r->uri.len) == 0)
    {
        if (!(r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD))) {
            ngx_http_discard_request_body(r);
            return ngx_http_pyrepl_send_not_allowed(r, &get);
        }

        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_pyrepl_send_json(r, NGX_HTTP_OK,
                                         json_pack("{s:s}", "status", "ok"));
    }

    if (r->uri.len < sizeof("/command") - 1
        || ngx_strncmp(r->uri.data, "/command", sizeof("/command") - 1) != 0
        || (r->uri.len > sizeof("/command") - 1
            && r->uri.data[sizeof("/command") - 1] != '/'))
    {
        return NGX_DECLINED;
    }

    if (r->uri.len > sizeof("/command") - 1) {
        return ngx_http_pyrepl_opensandbox_command(r, tenant);
    }

    if (r->method == NGX_HTTP_POST) {
        return ngx_http_pyrepl_command_handler(r);
    }

    if (r->method != NGX_HTTP_DELETE) {
        ngx_http_discard_request_body(r);
        return ngx_http_pyrepl_send_not_allowed(r, &del);
    }

    /* DELETE /command?id=: interrupt, for the session's owner alone */
    if (ngx_http_arg(r, (u_char *) "id", 2, &arg) != NGX_OK
        || arg.len != PYREPL_ID_LEN)
    {
        ngx_http_discard_request_body(r);
        return ngx_http_pyrepl_send_error(r, NGX_HTTP_BAD_REQUEST,
                                          "bad_request",
                                          "\"id\" must be a session id");
    }

    if (!ngx_http_pyrepl_opensandbox_owned(r, arg.data, arg.len, tenant,
                                           &rc))
    {
        return rc;
    }

    /* a background command leaves its session idle in the table */
    return ngx_http_pyrepl_interrupt(r, arg.data, 1);
}


/*
 * GET /command/status/{id} and GET /command/{id}/logs: a background
 * command's state and output.
 */
static ngx_int_t
ngx_http_pyrepl_opensandbox_command(ngx_http_request_t *r, uint64_t tenant)
{
    u_char     *p, *last;
    ngx_int_t   rc;
    ngx_str_t   get = ngx_string("GET, HEAD");

    p = r->uri.data + sizeof("/command/") - 1;
    last = r->uri.data + r->uri.len;

    if (!(r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD))) {
        ngx_http_discard_request_body(r);
        return ngx_http_pyrepl_send_not_allowed(r, &get);
    }

    if ((size_t) (last - p) > sizeof("status/") - 1
        && ngx_strncmp(p, "status/", sizeof("status/") - 1) == 0)
    {
        p += sizeof("status/") - 1;

        if (!ngx_http_pyrepl_opensandbox_owned(r, p, last - p, tenant, &rc)) {
            return rc;
        }

        return ngx_http_pyrepl_command_status_handler(r, p);
    }

    if ((size_t) (last - p) == PYREPL_ID_LEN + sizeof("/logs") - 1
        && ngx_strncmp(p + PYREPL_ID_LEN, "/logs", sizeof("/logs") - 1) == 0)
    {
        if (!ngx_http_pyrepl_opensandbox_owned(r, p, PYREPL_ID_LEN, tenant,
                                               &rc))
        {
            return rc;
        }

        return ngx_http_pyrepl_command_logs_handler(r, p);
    }

    ngx_http_discard_request_body(r);

    return ngx_http_pyrepl_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                      "no such route");
}


/*
 * Whether id (len bytes) names a live session of tenant's: 1, or 0 with r
 * answered 404 (*rc, the handler's to return).
 */
static ngx_uint_t
ngx_http_pyrepl_opensandbox_owned(ngx_http_request_t *r, u_char *id,
    size_t len, uint64_t tenant, ngx_int_t *rc)
{
    ngx_http_pyrepl_session_t     s;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    if (len == PYREPL_ID_LEN
        && ngx_http_pyrepl_table_get_own(pmcf->shm_zone, id, tenant, &s)
           == NGX_OK)
    {
        return 1;
    }

    ngx_http_discard_request_body(r);

    *rc = (len == PYREPL_ID_LEN)
          ? ngx_http_pyrepl_send_not_found(r, id)
          : ngx_http_pyrepl_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                       "no such command");
    return 0;
}
