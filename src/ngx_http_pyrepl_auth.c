/*
 * ngx_http_pyrepl_auth.c: API keys and tenancy.  With no pyrepl_api_key
 * configured the API is open (for local use).  With keys, a request must
 * carry "Authorization: Bearer <key>" (or Jupyter's "token <key>") or
 * "X-API-Key: <key>" (or the header a client dialect sends its token in,
 * ngx_http_pyrepl_key_headers) (else 401),
 * and its tenant is an 8-byte SHA-1 prefix of the key: sessions record
 * the tenant that created them, and every other tenant is told 404, as if
 * the session did not exist.  Keys are compared in constant time (every
 * configured key, every byte) and never logged.
 *
 * A browser cannot set headers on a WebSocket: an upgrade to the
 * WebSocket route may carry its key as "?token=KEY" instead (Jupyter's
 * convention; the router decides, ngx_http_pyrepl_authenticate_with).
 * Every token argument is blanked out of the request line first, which
 * nginx's error and access logs quote ("request: ...", $request), so no
 * log line holds it (ngx_http_pyrepl_token_take).
 */

#include "ngx_http_pyrepl_auth.h"
#include "pyrepl_ws.h"


#define PYREPL_KEY_MIN  16
#define PYREPL_KEY_MAX  256


/* headers whose whole value is the key, as the client dialects send it */
static ngx_str_t  ngx_http_pyrepl_key_headers[] = {
    ngx_string("X-API-Key"),
    ngx_string("X-EXECD-ACCESS-TOKEN"),         /* OpenSandbox's execd */
    ngx_string("X-Access-Token"),               /* E2B's envd token */
    ngx_string("E2B-Traffic-Access-Token"),     /* E2B's, on every call */
    ngx_null_string
};


static char *ngx_http_pyrepl_add_key(ngx_conf_t *cf,
    ngx_http_pyrepl_main_conf_t *pmcf, ngx_str_t *key, ngx_str_t *where);
static void ngx_http_pyrepl_keys_exposed(ngx_conf_t *cf,
    ngx_file_info_t *fi, ngx_str_t *name, ngx_uint_t key_file);
static ngx_int_t ngx_http_pyrepl_presented_key(ngx_http_request_t *r,
    ngx_str_t *key);
static uint64_t ngx_http_pyrepl_tenant_of(u_char *key, size_t len);


/* pyrepl_api_key <key>; (repeatable) */
char *
ngx_http_pyrepl_api_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_str_t        *value;
    ngx_file_info_t   fi;

    value = cf->args->elts;

    if (ngx_fd_info(cf->conf_file->file.fd, &fi) != NGX_FILE_ERROR) {
        ngx_http_pyrepl_keys_exposed(cf, &fi, &cf->conf_file->file.name, 0);
    }

    return ngx_http_pyrepl_add_key(cf, conf, &value[1], NULL);
}


/* pyrepl_api_key_file <path>; one key a line, "#" starts a comment */
char *
ngx_http_pyrepl_api_key_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    u_char           *p, *last, *eol;
    char             *rc;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_str_t        *value, key, data;
    ngx_file_info_t   fi;

    value = cf->args->elts;

    if (ngx_conf_full_name(cf->cycle, &value[1], 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(value[1].data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot open pyrepl_api_key_file \"%V\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > 1024 * 1024)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pyrepl_api_key_file \"%V\" is unreadable or over "
                           "1m", &value[1]);
        ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    ngx_http_pyrepl_keys_exposed(cf, &fi, &value[1], 1);

    data.len = ngx_file_size(&fi);
    data.data = ngx_pnalloc(cf->temp_pool, data.len + 1);
    if (data.data == NULL) {
        ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_fd(fd, data.data, data.len);
    ngx_close_file(fd);

    if (n != (ssize_t) data.len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot read pyrepl_api_key_file \"%V\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    p = data.data;
    last = data.data + data.len;

    for ( /* void */ ; p < last; p = eol + 1) {
        eol = ngx_strlchr(p, last, '\n');
        if (eol == NULL) {
            eol = last;
        }

        key.data = p;
        key.len = eol - p;

        while (key.len && (key.data[0] == ' ' || key.data[0] == '\t')) {
            key.data++;
            key.len--;
        }

        while (key.len && (key.data[key.len - 1] == ' '
                           || key.data[key.len - 1] == '\t'
                           || key.data[key.len - 1] == '\r'))
        {
            key.len--;
        }

        if (key.len == 0 || key.data[0] == '#') {
            continue;
        }

        rc = ngx_http_pyrepl_add_key(cf, conf, &key, &value[1]);
        if (rc != NGX_CONF_OK) {
            return rc;
        }
    }

    return NGX_CONF_OK;
}


/*
 * Keys are secrets: warn (nginx -t shows it too) when the file that holds
 * them can be read by anyone but its owner, as Debian's 0644
 * /etc/nginx/nginx.conf can.
 */
static void
ngx_http_pyrepl_keys_exposed(ngx_conf_t *cf, ngx_file_info_t *fi,
    ngx_str_t *name, ngx_uint_t key_file)
{
    ngx_uint_t  mode;

    mode = ngx_file_access(fi);

    if ((mode & (S_IRGRP | S_IROTH)) == 0) {
        return;
    }

    if (key_file) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "pyrepl_api_key_file \"%V\" can be read by users "
                           "other than its owner (mode 0%ui%ui%ui): "
                           "\"chmod 0600\" it", name, (mode >> 6) & 7,
                           (mode >> 3) & 7, mode & 7);
        return;
    }

    ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                       "pyrepl_api_key is written in \"%V\", which users "
                       "other than its owner can read (mode 0%ui%ui%ui): put "
                       "the keys in a \"pyrepl_api_key_file\" of mode 0600",
                       name, (mode >> 6) & 7, (mode >> 3) & 7, mode & 7);
}


static char *
ngx_http_pyrepl_add_key(ngx_conf_t *cf, ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_str_t *key, ngx_str_t *where)
{
    size_t                  i;
    ngx_http_pyrepl_key_t  *k;

    /* the messages name the file, never the key */

    if (key->len < PYREPL_KEY_MIN || key->len > PYREPL_KEY_MAX) {
        if (where) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "a pyrepl API key in \"%V\" is not %d to %d "
                               "characters long", where, PYREPL_KEY_MIN,
                               PYREPL_KEY_MAX);
        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "a pyrepl API key must be %d to %d "
                               "characters long", PYREPL_KEY_MIN,
                               PYREPL_KEY_MAX);
        }

        return NGX_CONF_ERROR;
    }

    for (i = 0; i < key->len; i++) {
        if (key->data[i] <= ' ' || key->data[i] >= 0x7f) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "a pyrepl API key may hold printable ASCII "
                               "only, no spaces");
            return NGX_CONF_ERROR;
        }
    }

    if (pmcf->api_keys == NULL) {
        pmcf->api_keys = ngx_array_create(cf->pool, 4,
                                          sizeof(ngx_http_pyrepl_key_t));
        if (pmcf->api_keys == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    k = ngx_array_push(pmcf->api_keys);
    if (k == NULL) {
        return NGX_CONF_ERROR;
    }

    k->key.len = key->len;
    k->key.data = ngx_pnalloc(cf->pool, key->len);
    if (k->key.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(k->key.data, key->data, key->len);
    k->tenant = ngx_http_pyrepl_tenant_of(key->data, key->len);

    return NGX_CONF_OK;
}


/*
 * The request's tenant: 0 when no keys are configured (open API), else
 * that of the key it presents in a header.  Returns NGX_OK, or
 * NGX_DECLINED when the request must be answered 401.
 */
ngx_int_t
ngx_http_pyrepl_authenticate(ngx_http_request_t *r, uint64_t *tenant)
{
    return ngx_http_pyrepl_authenticate_with(r, NULL, tenant);
}


/*
 * As ngx_http_pyrepl_authenticate(), with token (a WebSocket upgrade's
 * ?token=, ngx_http_pyrepl_token_take) taken when no header has a key.
 */
ngx_int_t
ngx_http_pyrepl_authenticate_with(ngx_http_request_t *r, ngx_str_t *token,
    uint64_t *tenant)
{
    u_char                        diff;
    size_t                        i, j;
    uint64_t                      found;
    ngx_str_t                     presented;
    ngx_http_pyrepl_key_t        *k;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    *tenant = 0;

    if (pmcf->api_keys == NULL) {
        return NGX_OK;
    }

    if (ngx_http_pyrepl_presented_key(r, &presented) != NGX_OK) {
        if (token == NULL) {
            return NGX_DECLINED;
        }

        presented = *token;
    }

    /* look at every key and every byte, whatever matches */

    found = 0;
    k = pmcf->api_keys->elts;

    for (i = 0; i < pmcf->api_keys->nelts; i++) {
        diff = (u_char) (k[i].key.len != presented.len);

        for (j = 0; j < k[i].key.len; j++) {
            diff |= k[i].key.data[j]
                    ^ (j < presented.len ? presented.data[j] : 0);
        }

        found |= (diff == 0) ? k[i].tenant : 0;
    }

    if (found == 0) {
        return NGX_DECLINED;
    }

    *tenant = found;

    return NGX_OK;
}


static ngx_int_t
ngx_http_pyrepl_presented_key(ngx_http_request_t *r, ngx_str_t *key)
{
    size_t            scheme;
    ngx_str_t        *k;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NGX_DECLINED;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        for (k = ngx_http_pyrepl_key_headers; k->len; k++) {
            if (h[i].key.len == k->len
                && ngx_strncasecmp(h[i].key.data, k->data, k->len) == 0)
            {
                *key = h[i].value;
                return NGX_OK;
            }
        }

        if (h[i].key.len != sizeof("Authorization") - 1
            || ngx_strncasecmp(h[i].key.data, (u_char *) "Authorization",
                               sizeof("Authorization") - 1) != 0)
        {
            continue;
        }

        /* Jupyter's clients say "token <key>" */
        scheme = (h[i].value.len > sizeof("Bearer ") - 1
                  && ngx_strncasecmp(h[i].value.data, (u_char *) "Bearer ",
                                     sizeof("Bearer ") - 1) == 0)
                 ? sizeof("Bearer ") - 1
                 : (h[i].value.len > sizeof("token ") - 1
                    && ngx_strncasecmp(h[i].value.data, (u_char *) "token ",
                                       sizeof("token ") - 1) == 0)
                   ? sizeof("token ") - 1 : 0;

        if (scheme) {
            key->data = h[i].value.data + scheme;
            key->len = h[i].value.len - scheme;

            while (key->len && key->data[0] == ' ') {
                key->data++;
                key->len--;
            }

            return NGX_OK;
        }
    }
}


/*
 * Blank every "token" argument out of the request line (a client may put
 * its key in any URL; r->args is part of r->request_line, which nginx's
 * error and access logs quote), keeping the first, percent-decoded, in
 * *token (in the request's pool).  Called once per request, before
 * anything is logged or answered: NGX_OK when there was a token.
 */
ngx_int_t
ngx_http_pyrepl_token_take(ngx_http_request_t *r, ngx_str_t *token)
{
    u_char     *p, *last, *end, *dst, *src;
    ngx_int_t   rc;

    rc = NGX_DECLINED;

    if (r->args.len == 0) {
        return rc;                      /* (and args.data may be NULL) */
    }

    p = r->args.data;
    last = r->args.data + r->args.len;

    for ( /* void */ ; p < last; p = end + 1) {
        end = ngx_strlchr(p, last, '&');
        if (end == NULL) {
            end = last;
        }

        if (end - p <= (ssize_t) sizeof("token=") - 1
            || ngx_strncmp(p, "token=", sizeof("token=") - 1) != 0)
        {
            continue;
        }

        p += sizeof("token=") - 1;

        if (rc != NGX_OK) {
            token->data = ngx_pnalloc(r->pool, end - p);

            if (token->data != NULL) {
                dst = token->data;
                src = p;
                ngx_unescape_uri(&dst, &src, end - p, 0);
                token->len = dst - token->data;
                rc = NGX_OK;
            }
        }

        ngx_memset(p, '*', end - p);
    }

    return rc;
}


/* Never 0, which stands for "no keys configured". */
static uint64_t
ngx_http_pyrepl_tenant_of(u_char *key, size_t len)
{
    uint8_t       digest[20];
    uint64_t      tenant;
    ngx_uint_t    i;
    pr_ws_sha1_t  sha1;

    pr_ws_sha1_init(&sha1);
    pr_ws_sha1_update(&sha1, "pyrepl tenant\n", sizeof("pyrepl tenant\n") - 1);
    pr_ws_sha1_update(&sha1, key, len);
    pr_ws_sha1_final(&sha1, digest);

    tenant = 0;
    for (i = 0; i < 8; i++) {
        tenant = (tenant << 8) | digest[i];
    }

    return tenant ? tenant : 1;
}
