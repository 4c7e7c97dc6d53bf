/*
 * ngx_http_pyrepl_origin.c: which web pages may use the API.  A browser
 * sends Origin with every cross-site request and every WebSocket upgrade,
 * and a page of any site may make one: a text/plain POST needs no
 * preflight (the page cannot read the answer, but the session is made),
 * and a WebSocket none at all (cross-site WebSocket hijacking).  So a
 * request whose Origin is neither the server's own (the Host it was sent
 * to) nor one that pyrepl_cors_origin allows is refused 403; one from an
 * allowed foreign origin gets the CORS headers, and its preflights
 * (OPTIONS with Access-Control-Request-Method) are answered 204, without
 * an API key, as browsers send none there.  Requests without Origin
 * (curl, SDKs) go on as before.
 *
 *   pyrepl_cors_origin ORIGIN|*;   (repeatable) "https://ide.example.com"
 */

#include "ngx_http_pyrepl_origin.h"

#include "ngx_http_pyrepl_reply.h"


#define PYREPL_CORS_HEADERS                                                  \
    "Authorization, X-API-Key, Content-Type, Accept, Last-Event-ID"


static ngx_uint_t ngx_http_pyrepl_origin_own(ngx_http_request_t *r,
    ngx_str_t *origin);
static ngx_uint_t ngx_http_pyrepl_origin_host_named(ngx_http_request_t *r,
    ngx_str_t *host);
static ngx_uint_t ngx_http_pyrepl_origin_allowed(ngx_http_request_t *r,
    ngx_str_t *origin);
static ngx_int_t ngx_http_pyrepl_origin_add(ngx_http_request_t *r,
    const char *key, ngx_str_t *value);


char *
ngx_http_pyrepl_cors_origin(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_pyrepl_loc_conf_t *plcf = conf;

    u_char     *p;
    ngx_str_t  *value, *o;

    value = cf->args->elts;

    if (plcf->cors_origins == NGX_CONF_UNSET_PTR || plcf->cors_origins == NULL)
    {
        plcf->cors_origins = ngx_array_create(cf->pool, 2, sizeof(ngx_str_t));
        if (plcf->cors_origins == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    /* "*", or scheme://host[:port] as browsers send it: no path, no "/" */
    if (!(value[1].len == 1 && value[1].data[0] == '*')) {
        p = (u_char *) ngx_strstr(value[1].data, "://");

        if (p == NULL || p == value[1].data
            || ngx_strlchr(p + 3, value[1].data + value[1].len, '/') != NULL
            || p + 3 == value[1].data + value[1].len)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "pyrepl_cors_origin \"%V\": an origin is "
                               "scheme://host[:port], or \"*\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    o = ngx_array_push(plcf->cors_origins);
    if (o == NULL) {
        return NGX_CONF_ERROR;
    }

    *o = value[1];

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_pyrepl_origin_check(ngx_http_request_t *r, ngx_str_t *allow)
{
    ngx_str_t         max_age = ngx_string("600");
    ngx_str_t         headers = ngx_string(PYREPL_CORS_HEADERS);
    ngx_str_t         vary = ngx_string("Origin");
    ngx_table_elt_t  *h;

    h = ngx_http_pyrepl_header(r, "Origin");

    if (h == NULL || ngx_http_pyrepl_origin_own(r, &h->value)) {
        return NGX_DECLINED;
    }

    if (!ngx_http_pyrepl_origin_allowed(r, &h->value)) {
        ngx_http_discard_request_body(r);
        return ngx_http_pyrepl_send_error(r, NGX_HTTP_FORBIDDEN, "forbidden",
                                          "pages of %V may not use this "
                                          "API (pyrepl_cors_origin)",
                                          &h->value);
    }

    if (ngx_http_pyrepl_origin_add(r, "Access-Control-Allow-Origin",
                                   &h->value) != NGX_OK
        || ngx_http_pyrepl_origin_add(r, "Vary", &vary) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (r->method != NGX_HTTP_OPTIONS) {
        return NGX_DECLINED;
    }

    /* a preflight: what the route takes, and the headers clients send */
    if (ngx_http_pyrepl_origin_add(r, "Access-Control-Allow-Methods", allow)
           != NGX_OK
        || ngx_http_pyrepl_origin_add(r, "Access-Control-Allow-Headers",
                                      &headers) != NGX_OK
        || ngx_http_pyrepl_origin_add(r, "Access-Control-Max-Age", &max_age)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_discard_request_body(r);

    return NGX_HTTP_NO_CONTENT;
}


/*
 * Whether origin is the server's own: its host[:port] is the Host the
 * request was sent to (whatever the scheme: TLS may end at a proxy), and
 * that host is one the server answers for by name (a server_name of its),
 * an IP address or localhost.  Not any name: a page whose name an
 * attacker points at 127.0.0.1 (DNS rebinding) has an Origin that equals
 * its Host.
 */
static ngx_uint_t
ngx_http_pyrepl_origin_own(ngx_http_request_t *r, ngx_str_t *origin)
{
    u_char     *p;
    ngx_str_t  *host;

    if (r->headers_in.host == NULL) {
        return 0;
    }

    host = &r->headers_in.host->value;
    p = (u_char *) ngx_strlcasestrn(origin->data, origin->data + origin->len,
                                    (u_char *) "://", 3 - 1);

    if (p == NULL || p == origin->data) {
        return 0;
    }

    p += 3;

    return (size_t) (origin->data + origin->len - p) == host->len
           && ngx_strncasecmp(p, host->data, host->len) == 0
           && ngx_http_pyrepl_origin_host_named(r, host);
}


/* Whether host[:port] names this server: see above. */
static ngx_uint_t
ngx_http_pyrepl_origin_host_named(ngx_http_request_t *r, ngx_str_t *host)
{
    u_char                      *colon;
    size_t                       len;
    ngx_str_t                   *sn;
    ngx_uint_t                   i;
    ngx_http_pyrepl_loc_conf_t  *plcf;

    if (host->len > 0 && host->data[0] == '[') {
        return 1;                               /* an IPv6 address */
    }

    colon = ngx_strlchr(host->data, host->data + host->len, ':');
    len = (colon != NULL) ? (size_t) (colon - host->data) : host->len;

    if ((len == sizeof("localhost") - 1
         && ngx_strncasecmp(host->data, (u_char *) "localhost", len) == 0)
        || ngx_inet_addr(host->data, len) != INADDR_NONE)
    {
        return 1;
    }

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_pyrepl_module);

    if (plcf->server_names == NULL) {
        return 0;
    }

    sn = plcf->server_names->elts;

    for (i = 0; i < plcf->server_names->nelts; i++) {
        if (sn[i].len == len
            && ngx_strncasecmp(sn[i].data, host->data, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static ngx_uint_t
ngx_http_pyrepl_origin_allowed(ngx_http_request_t *r, ngx_str_t *origin)
{
    ngx_str_t                   *o;
    ngx_uint_t                   i;
    ngx_http_pyrepl_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_pyrepl_module);

    if (plcf->cors_origins == NULL) {
        return 0;
    }

    o = plcf->cors_origins->elts;

    for (i = 0; i < plcf->cors_origins->nelts; i++) {
        if ((o[i].len == 1 && o[i].data[0] == '*')
            || (o[i].len == origin->len
                && ngx_strncasecmp(o[i].data, origin->data, o[i].len) == 0))
        {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_http_pyrepl_origin_add(ngx_http_request_t *r, const char *key,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value = *value;

    return NGX_OK;
}
