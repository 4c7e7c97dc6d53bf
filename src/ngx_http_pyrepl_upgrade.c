/*
 * ngx_http_pyrepl_upgrade.c: the HTTP side of a WebSocket (RFC 6455):
 * whether a request is an upgrade this server takes (HTTP/1.1, Upgrade:
 * websocket, Connection: upgrade, version 13, a well-formed key), and the
 * headers of its 101: the accept key, and the subprotocol the route
 * speaks when the client offered it.  What comes after the 101 is the
 * route's own (ngx_http_pyrepl_ws.c).
 */

#include "ngx_http_pyrepl_upgrade.h"

#include "ngx_http_pyrepl_reply.h"
#include "pyrepl_ws.h"


/*
 * Check the upgrade request and add the 101's headers, and the
 * subprotocol's if the client offered it (*chosen says whether).
 * Returns NULL, or why the request is no WebSocket upgrade (for a 400).
 */
const char *
ngx_http_pyrepl_upgrade(ngx_http_request_t *r, const char *subprotocol,
    ngx_uint_t *chosen)
{
    u_char            *accept;
    ngx_table_elt_t   *upgrade, *connection, *key, *version, *proto, *h;

    *chosen = 0;

    /* nginx 1.22 keeps no pointer to Connection: look both up */
    upgrade = ngx_http_pyrepl_header(r, "Upgrade");
    connection = ngx_http_pyrepl_header(r, "Connection");
    key = ngx_http_pyrepl_header(r, "Sec-WebSocket-Key");
    version = ngx_http_pyrepl_header(r, "Sec-WebSocket-Version");
    proto = ngx_http_pyrepl_header(r, "Sec-WebSocket-Protocol");

    if (r->http_version != NGX_HTTP_VERSION_11
        || upgrade == NULL
        || ngx_strlcasestrn(upgrade->value.data,
                            upgrade->value.data + upgrade->value.len,
                            (u_char *) "websocket", sizeof("websocket") - 2)
           == NULL
        || connection == NULL
        || ngx_strlcasestrn(connection->value.data,
                            connection->value.data + connection->value.len,
                            (u_char *) "upgrade", sizeof("upgrade") - 2)
           == NULL)
    {
        return "this route takes an HTTP/1.1 WebSocket upgrade";
    }

    if (version == NULL || version->value.len != 2
        || ngx_strncmp(version->value.data, "13", 2) != 0)
    {
        h = ngx_list_push(&r->headers_out.headers);
        if (h != NULL) {
            h->hash = 1;
            ngx_str_set(&h->key, "Sec-WebSocket-Version");
            ngx_str_set(&h->value, "13");
        }

        return "Sec-WebSocket-Version must be 13";
    }

    accept = ngx_pnalloc(r->pool, PR_WS_ACCEPT_LEN + 1);
    if (accept == NULL) {
        return "out of memory";
    }

    if (key == NULL
        || pr_ws_accept_key((char *) key->value.data, key->value.len,
                            (char *) accept) != 0)
    {
        return "Sec-WebSocket-Key is missing or malformed";
    }

    *chosen = proto != NULL
              && ngx_strlcasestrn(proto->value.data,
                                  proto->value.data + proto->value.len,
                                  (u_char *) subprotocol,
                                  ngx_strlen(subprotocol) - 1)
                 != NULL;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return "out of memory";
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Upgrade");
    ngx_str_set(&h->value, "websocket");

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return "out of memory";
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Sec-WebSocket-Accept");
    h->value.data = accept;
    h->value.len = PR_WS_ACCEPT_LEN;

    if (*chosen) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return "out of memory";
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Sec-WebSocket-Protocol");
        h->value.data = (u_char *) subprotocol;
        h->value.len = ngx_strlen(subprotocol);
    }

    return NULL;
}
