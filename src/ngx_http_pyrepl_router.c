/*
 * ngx_http_pyrepl_router.c: which handler answers a request of a
 * "pyrepl" location, by its method and its path below the location's
 * prefix (here "location /session"):
 *
 *   POST, GET             /session
 *   GET                   /session/checkpoints
 *   DELETE                /session/checkpoints/{checkpoint id}
 *   GET, DELETE           /session/{id}
 *   POST or GET           /session/{id}/<action>, from the table below
 *
 * HEAD is answered wherever GET is (but on the WebSocket route), without
 * the body.  A request from a foreign web page is refused first (403),
 * a CORS preflight answered (ngx_http_pyrepl_origin.c).  Every other
 * request needs a valid API key (401); a session id is exactly 32
 * lowercase hex digits and the caller's own (else 404, as for an unknown
 * one); anything else is 404 no such route or 405 with the route's
 * methods in Allow.
 */

#include "ngx_http_pyrepl_router.h"

#include "ngx_http_pyrepl_auth.h"
#include "ngx_http_pyrepl_checkpoint.h"
#include "ngx_http_pyrepl_control.h"
#include "ngx_http_pyrepl_e2b.h"
#include "ngx_http_pyrepl_jupyter.h"
#include "ngx_http_pyrepl_opensandbox.h"
#include "ngx_http_pyrepl_origin.h"
#include "ngx_http_pyrepl_reply.h"
#include "ngx_http_pyrepl_run.h"
#include "ngx_http_pyrepl_session.h"
#include "ngx_http_pyrepl_state.h"
#include "ngx_http_pyrepl_table.h"
#include "ngx_http_pyrepl_ws.h"


typedef ngx_int_t (*ngx_http_pyrepl_action_pt)(ngx_http_request_t *r,
    u_char *id);

/* <method> /session/{id}/<name> */
typedef struct {
    ngx_str_t                    name;
    ngx_uint_t                   method;
    ngx_http_pyrepl_action_pt    handler;
} ngx_http_pyrepl_action_t;


static ngx_http_pyrepl_action_t  ngx_http_pyrepl_actions[] = {
    { ngx_string("run"), NGX_HTTP_POST, ngx_http_pyrepl_run_handler },
    { ngx_string("renew"), NGX_HTTP_POST, ngx_http_pyrepl_renew_handler },
    { ngx_string("interrupt"), NGX_HTTP_POST,
      ngx_http_pyrepl_interrupt_handler },
    { ngx_string("input"), NGX_HTTP_POST, ngx_http_pyrepl_input_handler },
    { ngx_string("namespace"), NGX_HTTP_GET,
      ngx_http_pyrepl_namespace_handler },
    { ngx_string("commit"), NGX_HTTP_POST, ngx_http_pyrepl_commit_handler },
    { ngx_string("checkpoint"), NGX_HTTP_POST,
      ngx_http_pyrepl_checkpoint_handler },
    { ngx_string("restore"), NGX_HTTP_POST,
      ngx_http_pyrepl_restore_handler },
    { ngx_string("rollback"), NGX_HTTP_POST,
      ngx_http_pyrepl_rollback_handler },
    { ngx_string("ws"), NGX_HTTP_GET, ngx_http_pyrepl_ws_handler },
    { ngx_null_string, 0, NULL }
};


static ngx_int_t ngx_http_pyrepl_parse_path(ngx_http_request_t *r,
    u_char **id, ngx_http_pyrepl_action_t **action);
static void ngx_http_pyrepl_below_prefix(ngx_http_request_t *r, u_char **p,
    u_char **last);
static ngx_uint_t ngx_http_pyrepl_is_id(u_char *p, u_char *last);
static void ngx_http_pyrepl_route_allow(ngx_int_t rc, u_char *id,
    ngx_http_pyrepl_action_t *action, ngx_str_t *allow);


/* The content handler of a "pyrepl" location. */
ngx_int_t
ngx_http_pyrepl_router_handler(ngx_http_request_t *r)
{
    u_char                       *id, *p, *last;
    uint64_t                      tenant;
    ngx_int_t                     rc, orc;
    ngx_str_t                     allow, token;
    ngx_uint_t                    get, ws, has_token;
    ngx_table_elt_t              *h;
    ngx_http_pyrepl_session_t     s;
    ngx_http_pyrepl_action_t     *action;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    /* before anything may log the request line */
    has_token = (ngx_http_pyrepl_token_take(r, &token) == NGX_OK);

    rc = ngx_http_pyrepl_parse_path(r, &id, &action);

    ngx_http_pyrepl_route_allow(rc, id, action, &allow);

    /* a key as ?token= only on the WebSocket routes' upgrades */
    ngx_http_pyrepl_below_prefix(r, &p, &last);

    ws = (((rc == NGX_OK && action != NULL
            && action->handler == ngx_http_pyrepl_ws_handler)
           || (ngx_http_pyrepl_dialect(r) == PYREPL_DIALECT_JUPYTER
               && ngx_http_pyrepl_jupyter_is_channels(p, last)))
          && r->headers_in.upgrade != NULL
          && r->headers_in.upgrade->value.len == sizeof("websocket") - 1
          && ngx_strncasecmp(r->headers_in.upgrade->value.data,
                             (u_char *) "websocket",
                             sizeof("websocket") - 1) == 0);

    /* a foreign web page's request, or a CORS preflight (no key in it) */
    orc = ngx_http_pyrepl_origin_check(r, &allow);
    if (orc != NGX_DECLINED) {
        return orc;
    }

    if (ngx_http_pyrepl_authenticate_with(r, (ws && has_token) ? &token
                                                               : NULL,
                                          &tenant)
        != NGX_OK)
    {
        ngx_http_discard_request_body(r);

        h = ngx_list_push(&r->headers_out.headers);
        if (h != NULL) {
            h->hash = 1;
            ngx_str_set(&h->key, "WWW-Authenticate");
            ngx_str_set(&h->value, "Bearer realm=\"pyrepl\"");
        }

        return ngx_http_pyrepl_send_error(r, NGX_HTTP_UNAUTHORIZED,
                                          "unauthorized",
                                          "a valid API key is required "
                                          "(Authorization: Bearer <key> or "
                                          "X-API-Key: <key>; a WebSocket "
                                          "may pass ?token=<key>)");
    }

    if (ngx_http_pyrepl_dialect(r) == PYREPL_DIALECT_JUPYTER) {
        return ngx_http_pyrepl_jupyter_route(r, tenant, p, last);
    }

    if (ngx_http_pyrepl_dialect(r) == PYREPL_DIALECT_E2B) {
        return ngx_http_pyrepl_e2b_route(r, tenant, p, last);
    }

    if (ngx_http_pyrepl_dialect(r) == PYREPL_DIALECT_OPENSANDBOX) {
        orc = ngx_http_pyrepl_opensandbox_route(r, tenant);
        if (orc != NGX_DECLINED) {
            return orc;
        }
    }

    if (rc != NGX_OK && rc != NGX_DONE) {
        ngx_http_discard_request_body(r);
        return ngx_http_pyrepl_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                          "no such route");
    }

    /*
     * Another tenant's session does not exist, as far as this one knows:
     * it answers as an unknown id does, word for word.
     */

    if (rc == NGX_OK && id != NULL
        && ngx_http_pyrepl_table_get_own(pmcf->shm_zone, id, tenant, &s)
           != NGX_OK)
    {
        ngx_http_discard_request_body(r);
        return ngx_http_pyrepl_send_not_found(r, id);
    }

    get = (r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD)) != 0;

    if (rc == NGX_DONE) {                       /* /session/checkpoints... */
        if (id == NULL && get) {
            return ngx_http_pyrepl_checkpoints_handler(r);
        }

        if (id != NULL && r->method == NGX_HTTP_DELETE) {
            return ngx_http_pyrepl_checkpoint_delete_handler(r, id);
        }

    } else if (id == NULL) {                            /* /session */
        if (r->method == NGX_HTTP_POST) {
            return ngx_http_pyrepl_create_handler(r);
        }

        if (get) {
            return ngx_http_pyrepl_list_handler(r);
        }

    } else if (action == NULL) {                        /* /session/{id} */
        if (get) {
            return ngx_http_pyrepl_get_handler(r, id);
        }

        if (r->method == NGX_HTTP_DELETE) {
            return ngx_http_pyrepl_delete_handler(r, id);
        }

    } else if (r->method == action->method              /* /session/{id}/x */
               || (get && action->method == NGX_HTTP_GET
                   && action->handler != ngx_http_pyrepl_ws_handler))
    {
        return action->handler(r, id);
    }

    ngx_http_discard_request_body(r);

    return ngx_http_pyrepl_send_not_allowed(r, &allow);
}


/* The methods route (what parse_path found) takes, for Allow. */
static void
ngx_http_pyrepl_route_allow(ngx_int_t rc, u_char *id,
    ngx_http_pyrepl_action_t *action, ngx_str_t *allow)
{
    if (rc == NGX_DONE) {                       /* /session/checkpoints... */
        if (id == NULL) {
            ngx_str_set(allow, "GET, HEAD");
        } else {
            ngx_str_set(allow, "DELETE");
        }

    } else if (rc != NGX_OK) {                  /* no such route */
        ngx_str_set(allow, "GET, HEAD, POST, DELETE");

    } else if (id == NULL) {                    /* /session */
        ngx_str_set(allow, "GET, HEAD, POST");

    } else if (action == NULL) {                /* /session/{id} */
        ngx_str_set(allow, "GET, HEAD, DELETE");

    } else if (action->method == NGX_HTTP_POST) {
        ngx_str_set(allow, "POST");

    } else if (action->handler == ngx_http_pyrepl_ws_handler) {
        ngx_str_set(allow, "GET");

    } else {
        ngx_str_set(allow, "GET, HEAD");
    }
}


/*
 * Split the URI below the location's prefix into a session id (NULL for
 * the collection) and an action (NULL for the session itself).  Returns
 * NGX_DONE for /checkpoints (*id NULL) and /checkpoints/{id} (*id the
 * checkpoint's), NGX_DECLINED for anything else; an id must be exactly
 * 32 lowercase hex digits, so "../" or NUL never reach a file name.
 */
static ngx_int_t
ngx_http_pyrepl_parse_path(ngx_http_request_t *r, u_char **id,
    ngx_http_pyrepl_action_t **action)
{
    u_char                    *p, *last;
    ngx_http_pyrepl_action_t  *a;

    *id = NULL;
    *action = NULL;

    ngx_http_pyrepl_below_prefix(r, &p, &last);

    if (p == last || (last - p == 1 && *p == '/')) {
        return NGX_OK;
    }

    if (*p++ != '/') {
        return NGX_DECLINED;
    }

    if ((size_t) (last - p) >= sizeof("checkpoints") - 1
        && ngx_strncmp(p, "checkpoints", sizeof("checkpoints") - 1) == 0)
    {
        p += sizeof("checkpoints") - 1;

        if (p == last) {
            return NGX_DONE;
        }

        if (*p++ != '/' || last - p != PYREPL_ID_LEN
            || !ngx_http_pyrepl_is_id(p, last))
        {
            return NGX_DECLINED;
        }

        *id = p;
        return NGX_DONE;
    }

    if (!ngx_http_pyrepl_is_id(p, last)) {
        return NGX_DECLINED;
    }

    *id = p;
    p += PYREPL_ID_LEN;

    if (p == last) {
        return NGX_OK;
    }

    if (*p++ != '/') {
        return NGX_DECLINED;
    }

    for (a = ngx_http_pyrepl_actions; a->handler; a++) {
        if ((size_t) (last - p) == a->name.len
            && ngx_strncmp(p, a->name.data, a->name.len) == 0)
        {
            *action = a;
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/*
 * The URI below the location's prefix ("location /session": "/x" of
 * "/session/x"), the whole URI for a regex location.
 */
static void
ngx_http_pyrepl_below_prefix(ngx_http_request_t *r, u_char **p,
    u_char **last)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    *p = r->uri.data;
    *last = r->uri.data + r->uri.len;

    if (!clcf->regex && r->uri.len >= clcf->name.len) {
        *p += clcf->name.len;
        if (clcf->name.len && clcf->name.data[clcf->name.len - 1] == '/') {
            (*p)--;
        }
    }
}


/* Whether p starts with a session id (pyrepl_id_valid) before last. */
static ngx_uint_t
ngx_http_pyrepl_is_id(u_char *p, u_char *last)
{
    return last - p >= PYREPL_ID_LEN && pyrepl_id_valid(p, PYREPL_ID_LEN);
}
