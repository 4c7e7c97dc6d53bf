/*
 * lg_single.c: pyrepl-load's blocking modes, one connection at a time.
 *
 * stream: one run on one connection (SSE, or a WebSocket message until
 * its --done markers): the bytes, the duration and the delay of every
 * "@@<ns>" stamp from the print to the read that brought it (lg_scan).
 * create: sequential creates on one keep-alive connection, each optionally
 * followed by the first answer (ready: an HTTP request on the same
 * connection, or a message on a new WebSocket, lg_ready_ws) and by a
 * delete, not timed.  Each prints one JSON object.
 */

#define _GNU_SOURCE

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lg_mode.h"


#define LG_STAMP_DIGITS 10


/* the "@@<digits>" scanner of the stream mode */
typedef struct {
    int            scan;
    int            state;               /* 0, 1 ("@"), 2 (digits) */
    int            ndigits;
    uint64_t       v;
    uint64_t       now;
    uint64_t       bytes;
    lg_samples_t  *s;
} lg_scan_t;


/* the string value of "key" in a JSON text, copied into out */
static int
lg_json_str(const char *p, size_t n, const char *key, char *out,
    size_t size)
{
    char         pat[128];
    const char  *q, *end = p + n, *e;

    snprintf(pat, sizeof(pat), "\"%s\"", key);
    q = memmem(p, n, pat, strlen(pat));
    if (q == NULL) {
        return -1;
    }

    for (q += strlen(pat); q < end && (*q == ' ' || *q == ':'); q++) {
        /* void */
    }
    if (q == end || *q != '"') {
        return -1;
    }
    q++;

    e = memchr(q, '"', end - q);
    if (e == NULL || (size_t) (e - q) >= size) {
        return -1;
    }

    memcpy(out, q, e - q);
    out[e - q] = '\0';
    return 0;
}


static void
lg_scan(void *arg, const char *p, size_t n)
{
    lg_scan_t  *sc = arg;
    size_t      i;
    int         ch;

    sc->bytes += n;
    if (!sc->scan) {
        return;
    }

    for (i = 0; i < n; i++) {
        ch = (unsigned char) p[i];

        if (sc->state == 2 && ch >= '0' && ch <= '9') {
            sc->v = sc->v * 10 + (ch - '0');
            sc->ndigits++;
            continue;
        }

        if (sc->state == 2 && sc->ndigits >= LG_STAMP_DIGITS) {
            lg_push(sc->s, sc->now > sc->v ? sc->now - sc->v : 0);
        }

        if (ch == '@') {
            sc->state = (sc->state == 1) ? 2 : 1;
            sc->v = 0;
            sc->ndigits = 0;
        } else {
            sc->state = 0;
        }
    }
}


/* stream mode ---------------------------------------------------------- */


int
lg_mode_stream(void)
{
    lg_conn_t     c;
    lg_http_t     h;
    lg_ws_t       w;
    lg_buf_t      tmp = { 0 };
    lg_samples_t  st = { 0 };
    lg_scan_t     sc;
    const char   *m;
    size_t        used, len;
    uint64_t      t0, t1;
    int           rc, ok = 0;
    char          tok[48];

    if (o.npaths == 0) {
        lg_die("stream needs --path");
    }

    memset(&sc, 0, sizeof(sc));
    memset(&h, 0, sizeof(h));
    memset(&w, 0, sizeof(w));
    sc.scan = o.stamps;
    sc.s = &st;

    if (lg_connect(&c, o.port) != 0) {
        return 1;
    }

    if (o.ws) {
        if (!o.msg || !o.ndone
            || lg_ws_upgrade(&c, o.port, o.paths[0], o.headers,
                             o.subprotocol) != 0)
        {
            return 1;
        }
        snprintf(tok, sizeof(tok), "s%d", (int) getpid());
        lg_subst(&tmp, o.msg, "{rid}", tok);
        if (lg_ws_frame(&c.out, LG_WS_TEXT, tmp.buf, tmp.len) != 0) {
            return 1;
        }
        snprintf(tok, sizeof(tok), "\"s%d\"", (int) getpid());

        t0 = lg_now();
        if (lg_flush(&c) != 1) {
            return 1;
        }

        for ( ;; ) {
            rc = lg_ws_recv(&c, &w, &m, &len, &sc.now);
            if (rc != 1) {
                fprintf(stderr, "pyrepl-load: stream ended early\n");
                return 1;
            }
            if (!lg_has(m, len, tok)) {
                continue;
            }
            lg_scan(&sc, m, len);
            if (lg_has(m, len, o.done[0])) {
                ok = o.ok == NULL || lg_has(m, len, o.ok);
                if (o.ndone == 1) {
                    break;
                }
            }
            if (o.ndone == 2 && lg_has(m, len, o.done[1])) {
                break;
            }
        }
        t1 = lg_now();

    } else {
        h.sink = lg_scan;
        h.arg = &sc;
        lg_request(&c.out, o.method, o.paths[0], o.body, o.accept);

        t0 = lg_now();
        if (lg_flush(&c) != 1) {
            return 1;
        }

        for ( ;; ) {
            rc = lg_http_feed(&h, c.in.buf + c.in.pos, c.in.len - c.in.pos,
                              &used);
            c.in.pos += used;
            if (rc != 0) {
                break;
            }
            if (lg_fill(&c) <= 0) {
                rc = -1;
                break;
            }
            sc.now = c.t_read;
        }
        t1 = lg_now();
        ok = rc == 1 && h.status == o.status;
    }

    printf("{\"mode\": \"stream\", \"transport\": \"%s\", \"ok\": %s, "
           "\"bytes\": %llu, \"seconds\": %.6f, ",
           o.ws ? "ws" : "http", ok ? "true" : "false",
           (unsigned long long) sc.bytes, (t1 - t0) / 1e9);
    lg_print_stats("stamp_us", &st);
    printf("}\n");

    lg_close(&c);
    return ok ? 0 : 2;
}


/* create mode ---------------------------------------------------------- */


static int
lg_ready_ws(const char *sid)
{
    lg_conn_t    c;
    lg_ws_t      w;
    lg_buf_t     path = { 0 }, msg = { 0 };
    const char  *m;
    size_t       len;
    int          rc = -1;
    char         rid[160], tok[168];

    memset(&w, 0, sizeof(w));
    lg_subst(&path, o.ready_ws_path, "{sid}", sid);
    lg_buf_append(&path, "", 1);
    snprintf(rid, sizeof(rid), "r%dx%s", (int) getpid(), sid);
    lg_subst(&msg, o.ready_msg, "{rid}", rid);
    snprintf(tok, sizeof(tok), "\"%s\"", rid);

    if (lg_connect(&c, o.port) != 0
        || lg_ws_upgrade(&c, o.port, path.buf, o.headers, NULL) != 0
        || lg_ws_frame(&c.out, LG_WS_TEXT, msg.buf, msg.len) != 0
        || lg_flush(&c) != 1)
    {
        goto done;
    }

    while (lg_ws_recv(&c, &w, &m, &len, NULL) == 1) {
        if (lg_has(m, len, tok) && lg_has(m, len, o.ready_done)) {
            rc = 0;
            break;
        }
    }

done:

    lg_close(&c);
    lg_ws_free(&w);
    lg_buf_free(&path);
    lg_buf_free(&msg);
    return rc;
}


int
lg_mode_create(void)
{
    lg_conn_t     c;
    lg_http_t     h;
    lg_buf_t      body = { 0 }, path = { 0 }, ids = { 0 };
    lg_samples_t  cr = { 0 }, rd = { 0 };
    uint64_t      t0, t1, t2;
    long          i, errors = 0;
    char          sid[128];

    if (o.npaths == 0 || o.count < 1) {
        lg_die("create needs --path and --count");
    }

    memset(&h, 0, sizeof(h));
    h.sink = lg_keep_body;
    h.arg = &body;

    if (lg_connect(&c, o.port) != 0) {
        return 1;
    }

    for (i = 0; i < o.count; i++) {
        lg_http_reset(&h);
        body.pos = body.len = 0;
        lg_request(&c.out, "POST", o.paths[0], o.body, o.accept);

        t0 = lg_now();
        if (lg_http_roundtrip(&c, &h) != 0) {
            lg_die("create: connection failed");
        }
        t1 = lg_now();

        if (h.status != o.status
            || lg_json_str(body.buf, body.len, o.id_key, sid, sizeof(sid))
               != 0)
        {
            fprintf(stderr, "pyrepl-load: create answered %d: %.*s\n",
                    h.status, (int) (body.len > 300 ? 300 : body.len),
                    body.buf);
            errors++;
            break;
        }
        lg_push(&cr, t1 - t0);

        if (o.ready_path) {
            lg_http_reset(&h);
            body.pos = body.len = 0;
            path.pos = path.len = 0;
            lg_subst(&path, o.ready_path, "{sid}", sid);
            lg_buf_append(&path, "", 1);
            lg_request(&c.out, "POST", path.buf, o.ready_body,
                       "application/json");
            if (lg_http_roundtrip(&c, &h) != 0) {
                lg_die("ready: connection failed");
            }
            t2 = lg_now();
            if (h.status != 200
                || (o.ok && !lg_has(body.buf, body.len, o.ok)))
            {
                errors++;
            } else {
                lg_push(&rd, t2 - t0);
            }

        } else if (o.ready_ws_path) {
            if (lg_ready_ws(sid) != 0) {
                errors++;
            } else {
                lg_push(&rd, lg_now() - t0);
            }
        }

        if (o.keep) {
            lg_buf_append(&ids, ids.len ? ", \"" : "\"", ids.len ? 3 : 1);
            lg_buf_append(&ids, sid, strlen(sid));
            lg_buf_append(&ids, "\"", 1);
        }

        if (o.delete_path) {
            lg_http_reset(&h);
            path.pos = path.len = 0;
            lg_subst(&path, o.delete_path, "{sid}", sid);
            lg_buf_append(&path, "", 1);
            lg_request(&c.out, "DELETE", path.buf, NULL, NULL);
            if (lg_http_roundtrip(&c, &h) != 0 || h.status / 100 != 2) {
                errors++;
            }
        }

        if (h.close) {
            lg_close(&c);
            if (lg_connect(&c, o.port) != 0) {
                return 1;
            }
        }

        if (o.pace_ms) {
            usleep(o.pace_ms * 1000);
        }
    }

    printf("{\"mode\": \"create\", \"errors\": %ld, ", errors);
    lg_print_stats("create_us", &cr);
    printf(", ");
    lg_print_stats("ready_us", &rd);
    printf(", \"ids\": [%.*s]}\n", (int) ids.len, ids.buf ? ids.buf : "");

    lg_close(&c);
    return errors ? 2 : 0;
}
