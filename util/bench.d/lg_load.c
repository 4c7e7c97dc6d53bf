/*
 * lg_main.c: pyrepl-load's command line, measuring modes and statistics.
 * It prints one JSON object on stdout; util/bench.d/bench.py drives it.
 *
 *   pyrepl-load load   many connections in one epoll loop, each a closed
 *                      loop of one request (HTTP keep-alive) or one
 *                      WebSocket message at a time: latency and rate
 *   pyrepl-load stream one run on one connection (SSE or WebSocket):
 *                      bytes, duration, and the delay of every "@@<ns>"
 *                      stamp (CLOCK_MONOTONIC, printed by the code) from
 *                      the print to the read that brought it
 *   pyrepl-load create sequential creates on one keep-alive connection,
 *                      optionally until the first answer ("ready") and
 *                      a delete (not timed) after each
 *
 * Options (all modes): --port N, --header "Name: value" (repeatable),
 * --path P (repeatable; --paths-file F, one a line), --method M, --body B,
 * --accept A, --status N (expected; default 200); WebSocket: --ws,
 * --msg TEMPLATE ("{rid}" becomes a request id unique to the run),
 * --done S (repeatable, up to 2: a request is complete when messages
 * carrying "<rid>" contained each), --ok S (the first --done message or
 * the HTTP body must contain S, else the request counts as an error),
 * --subprotocol P.  load: --conns N, --warmup SEC, --duration SEC,
 * --count N, --once (HTTP: every path once, spread over the connections;
 * WebSocket: one message on each connection).
 * stream: --stamps.  create: --count N, --id-key K, --ready-path P
 * --ready-body B (HTTP, same connection) or --ready-ws-path P --ready-msg M
 * --ready-done S (a new WebSocket), --delete-path P ("{sid}" is the new
 * id), --pace-ms N, --keep (print the ids).  --quickack: see lg.h.
 */

#define _GNU_SOURCE

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "lg.h"


#define LG_MAX_DONE     2
#define LG_BODY_KEEP    (256 * 1024)    /* HTTP body kept for --ok */
#define LG_DRAIN_NS     10000000000ull  /* in-flight requests at the end */
#define LG_STAMP_DIGITS 10


typedef struct {
    const char   *mode;
    int           port;
    char          headers[4096];        /* extra lines, each CRLF-ended */
    size_t        headers_len;
    const char   *method;
    const char  **paths;
    size_t        npaths;
    size_t        paths_cap;
    const char   *body;
    const char   *accept;
    int           status;
    int           ws;
    const char   *msg;
    const char   *done[LG_MAX_DONE];
    int           ndone;
    const char   *ok;
    const char   *subprotocol;
    int           conns;
    double        warmup;
    double        duration;
    long          count;
    int           once;
    int           stamps;
    const char   *id_key;
    const char   *ready_path;
    const char   *ready_body;
    const char   *ready_ws_path;
    const char   *ready_msg;
    const char   *ready_done;
    const char   *delete_path;
    int           pace_ms;
    int           keep;
} lg_opts_t;


typedef struct {
    uint64_t  *v;
    size_t     n;
    size_t     cap;
} lg_samples_t;


/* one connection of the load mode */
typedef struct {
    lg_conn_t     c;
    lg_http_t     h;
    lg_ws_t       w;
    lg_buf_t      req;                  /* the fixed HTTP request */
    lg_buf_t      body;                 /* the answer's body, for --ok */
    size_t        next_path;            /* --once */
    uint64_t      t0;
    unsigned      seq;
    int           idx;
    char          rid[40];
    int           got;                  /* --done markers seen, bits */
    int           bad;
    int           busy;
    int           dead;
    int           want_out;
} lg_client_t;


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


static lg_opts_t  o;


static void
lg_die(const char *what)
{
    fprintf(stderr, "pyrepl-load: %s\n", what);
    exit(1);
}


static void
lg_push(lg_samples_t *s, uint64_t v)
{
    uint64_t  *p;

    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        p = realloc(s->v, s->cap * sizeof(uint64_t));
        if (p == NULL) {
            lg_die("out of memory");
        }
        s->v = p;
    }
    s->v[s->n++] = v;
}


static int
lg_cmp(const void *a, const void *b)
{
    uint64_t  x = *(const uint64_t *) a, y = *(const uint64_t *) b;

    return (x > y) - (x < y);
}


/* nearest-rank percentile in microseconds of sorted samples */
static double
lg_pct(const lg_samples_t *s, double p)
{
    size_t  k;

    if (s->n == 0) {
        return 0;
    }
    k = (size_t) (p * s->n + 0.999999);
    k = k ? k - 1 : 0;
    if (k >= s->n) {
        k = s->n - 1;
    }
    return s->v[k] / 1000.0;
}


static void
lg_print_stats(const char *name, lg_samples_t *s)
{
    double  sum = 0;
    size_t  i;

    qsort(s->v, s->n, sizeof(uint64_t), lg_cmp);
    for (i = 0; i < s->n; i++) {
        sum += s->v[i];
    }

    printf("\"%s\": {\"n\": %zu, \"min\": %.1f, \"p50\": %.1f, "
           "\"p90\": %.1f, \"p99\": %.1f, \"p999\": %.1f, \"max\": %.1f, "
           "\"mean\": %.1f}",
           name, s->n, s->n ? s->v[0] / 1000.0 : 0, lg_pct(s, 0.50),
           lg_pct(s, 0.90), lg_pct(s, 0.99), lg_pct(s, 0.999),
           lg_pct(s, 1.0), s->n ? sum / s->n / 1000.0 : 0);
}


/* append tmpl to out with every key replaced by val */
static void
lg_subst(lg_buf_t *out, const char *tmpl, const char *key, const char *val)
{
    const char  *p;
    size_t       klen = strlen(key);

    while ((p = strstr(tmpl, key)) != NULL) {
        if (lg_buf_append(out, tmpl, p - tmpl) != 0
            || lg_buf_append(out, val, strlen(val)) != 0)
        {
            lg_die("out of memory");
        }
        tmpl = p + klen;
    }

    if (lg_buf_append(out, tmpl, strlen(tmpl)) != 0) {
        lg_die("out of memory");
    }
}


static void
lg_request(lg_buf_t *out, const char *method, const char *path,
    const char *body, const char *accept)
{
    char    head[2048];
    size_t  blen = body ? strlen(body) : 0;
    int     n;

    n = snprintf(head, sizeof(head),
                 "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s%s%s",
                 method, path, o.port,
                 accept ? "Accept: " : "", accept ? accept : "",
                 accept ? "\r\n" : "");
    if (n < 0 || (size_t) n >= sizeof(head)) {
        lg_die("request head too long");
    }

    if (body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
        n += snprintf(head + n, sizeof(head) - n,
                      "Content-Type: application/json\r\n"
                      "Content-Length: %zu\r\n", blen);
        if ((size_t) n >= sizeof(head)) {
            lg_die("request head too long");
        }
    }

    if (lg_buf_append(out, head, n) != 0
        || lg_buf_append(out, o.headers, o.headers_len) != 0
        || lg_buf_append(out, "\r\n", 2) != 0
        || (blen && lg_buf_append(out, body, blen) != 0))
    {
        lg_die("out of memory");
    }
}


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
lg_keep_body(void *arg, const char *p, size_t n)
{
    lg_buf_t  *b = arg;

    if (b->len + n <= LG_BODY_KEEP) {
        (void) lg_buf_append(b, p, n);
    }
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


/* load mode ------------------------------------------------------------ */


static int
lg_client_open(lg_client_t *cl, int ep)
{
    struct epoll_event  ev;

    if (lg_connect(&cl->c, o.port) != 0) {
        return -1;
    }

    if (o.ws && lg_ws_upgrade(&cl->c, o.port, o.paths[cl->idx % o.npaths],
                              o.headers, o.subprotocol) != 0)
    {
        return -1;
    }

    if (lg_nonblock(&cl->c) != 0) {
        return -1;
    }

    ev.events = EPOLLIN;
    ev.data.ptr = cl;
    return epoll_ctl(ep, EPOLL_CTL_ADD, cl->c.fd, &ev);
}


static void
lg_client_out(lg_client_t *cl, int ep, int want)
{
    struct epoll_event  ev;

    if (cl->want_out == want) {
        return;
    }
    cl->want_out = want;
    ev.events = EPOLLIN | (want ? EPOLLOUT : 0);
    ev.data.ptr = cl;
    (void) epoll_ctl(ep, EPOLL_CTL_MOD, cl->c.fd, &ev);
}


/* start the client's next request; 0 if there is none left (--once) */
static int
lg_client_send(lg_client_t *cl, int ep)
{
    lg_buf_t  tmp = { 0 };
    int       rc;

    if (o.ws) {
        if (o.once && cl->seq > 0) {
            return 0;
        }
        snprintf(cl->rid, sizeof(cl->rid), "q%dc%dn%u", (int) getpid(),
                 cl->idx, ++cl->seq);
        lg_subst(&tmp, o.msg, "{rid}", cl->rid);
        if (lg_ws_frame(&cl->c.out, LG_WS_TEXT, tmp.buf, tmp.len) != 0) {
            lg_die("out of memory");
        }
        lg_buf_free(&tmp);

    } else if (o.once) {
        if (cl->next_path >= o.npaths) {
            return 0;
        }
        lg_request(&cl->c.out, o.method, o.paths[cl->next_path], o.body,
                   o.accept);
        cl->next_path += o.conns;

    } else {
        if (lg_buf_append(&cl->c.out, cl->req.buf, cl->req.len) != 0) {
            lg_die("out of memory");
        }
    }

    lg_http_reset(&cl->h);
    cl->body.pos = cl->body.len = 0;
    cl->got = 0;
    cl->bad = 0;
    cl->busy = 1;
    cl->t0 = lg_now();

    rc = lg_flush(&cl->c);
    if (rc < 0) {
        cl->dead = 1;
    } else if (rc == 0) {
        lg_client_out(cl, ep, 1);
    }
    return 1;
}


typedef struct {
    uint64_t      warm_end;
    uint64_t      end;
    int           stopping;
    long          errors;
    long          reconnects;
    long          done;
    uint64_t      last;
    lg_samples_t  lat;
} lg_load_t;


static void
lg_client_done(lg_client_t *cl, lg_load_t *ld, uint64_t now, int ok)
{
    cl->busy = 0;
    ld->done++;

    if (!ok) {
        ld->errors++;

    } else if (cl->t0 >= ld->warm_end && now <= ld->end) {
        lg_push(&ld->lat, now - cl->t0);
        ld->last = now;
    }
}


/* consume what has arrived; returns -1 if the connection is unusable */
static int
lg_client_input(lg_client_t *cl, lg_load_t *ld, int ep)
{
    const char  *m;
    size_t       used, len;
    int          rc, op, i, ok;
    char         tok[48];

    for ( ;; ) {
        if (cl->c.in.pos == cl->c.in.len) {
            return 0;
        }

        if (!o.ws) {
            rc = lg_http_feed(&cl->h, cl->c.in.buf + cl->c.in.pos,
                              cl->c.in.len - cl->c.in.pos, &used);
            cl->c.in.pos += used;
            if (rc < 0 || (rc == 1 && !cl->busy)) {
                return -1;
            }
            if (rc == 0) {
                return 0;
            }

            ok = cl->h.status == o.status
                 && (o.ok == NULL || lg_has(cl->body.buf, cl->body.len,
                                            o.ok));
            lg_client_done(cl, ld, cl->c.t_read, ok);

            if (cl->h.close) {
                return 1;               /* reconnect */
            }

        } else {
            rc = lg_ws_feed(&cl->w, cl->c.in.buf + cl->c.in.pos,
                            cl->c.in.len - cl->c.in.pos, &used, &op, &m,
                            &len);
            cl->c.in.pos += used;
            if (rc < 0) {
                return -1;
            }
            if (rc == 0) {
                return 0;
            }

            if (op == LG_WS_PING) {
                if (lg_ws_frame(&cl->c.out, LG_WS_PONG, m, len) != 0) {
                    return -1;
                }
                if (lg_flush(&cl->c) == 0) {
                    lg_client_out(cl, ep, 1);
                }
                continue;
            }
            if (op == LG_WS_CLOSE) {
                return -1;
            }
            if (op == LG_WS_PONG || !cl->busy) {
                continue;
            }

            snprintf(tok, sizeof(tok), "\"%s\"", cl->rid);
            if (!lg_has(m, len, tok)) {
                continue;
            }

            for (i = 0; i < o.ndone; i++) {
                if (lg_has(m, len, o.done[i])) {
                    cl->got |= 1 << i;
                    if (i == 0 && o.ok && !lg_has(m, len, o.ok)) {
                        cl->bad = 1;
                    }
                }
            }

            if (cl->got != (1 << o.ndone) - 1) {
                continue;
            }

            lg_client_done(cl, ld, cl->c.t_read, !cl->bad);
        }

        if (!ld->stopping && !lg_client_send(cl, ep)) {
            return 0;
        }
    }
}


static int
lg_mode_load(void)
{
    struct epoll_event   evs[256];
    lg_client_t         *cls, *cl;
    lg_load_t            ld;
    uint64_t             start, now;
    double               secs;
    int                  ep, i, n, busy, rc;

    if (o.conns < 1 || o.npaths == 0 || (o.ws && (!o.msg || !o.ndone))) {
        lg_die("load needs --conns, --path and, with --ws, --msg and --done");
    }

    ep = epoll_create1(EPOLL_CLOEXEC);
    cls = calloc(o.conns, sizeof(lg_client_t));
    if (ep == -1 || cls == NULL) {
        lg_die("epoll_create1 or calloc failed");
    }

    memset(&ld, 0, sizeof(ld));

    for (i = 0; i < o.conns; i++) {
        cl = &cls[i];
        cl->idx = i;
        cl->next_path = i;
        cl->h.sink = lg_keep_body;
        cl->h.arg = &cl->body;

        if (!o.ws && !o.once) {
            lg_request(&cl->req, o.method, o.paths[i % o.npaths], o.body,
                       o.accept);
        }

        if (lg_client_open(cl, ep) != 0) {
            lg_die("could not open a connection");
        }
    }

    start = lg_now();
    ld.warm_end = o.once ? 0 : start + (uint64_t) (o.warmup * 1e9);
    ld.end = (o.once || o.count) ? UINT64_MAX
                                 : ld.warm_end + (uint64_t) (o.duration * 1e9);

    for (i = 0; i < o.conns; i++) {
        (void) lg_client_send(&cls[i], ep);
    }

    for ( ;; ) {
        n = epoll_wait(ep, evs, 256, 5);
        if (n < 0 && errno != EINTR) {
            lg_die("epoll_wait failed");
        }

        for (i = 0; i < n; i++) {
            cl = evs[i].data.ptr;
            if (cl->dead) {
                continue;
            }

            if (evs[i].events & EPOLLOUT) {
                rc = lg_flush(&cl->c);
                if (rc < 0) {
                    cl->dead = 1;
                } else if (rc == 1) {
                    lg_client_out(cl, ep, 0);
                }
            }

            if (!(evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                continue;
            }

            rc = lg_fill(&cl->c);
            if (rc == 0 || (rc < 0 && errno != EAGAIN)) {
                cl->dead = 1;
            } else if (rc > 0) {
                rc = lg_client_input(cl, &ld, ep);
                if (rc < 0) {
                    cl->dead = 1;
                } else if (rc == 1) {
                    /* the server closed a keep-alive connection */
                    (void) epoll_ctl(ep, EPOLL_CTL_DEL, cl->c.fd, NULL);
                    lg_close(&cl->c);
                    cl->want_out = 0;
                    ld.reconnects++;
                    if (lg_client_open(cl, ep) != 0) {
                        cl->dead = 1;
                    } else if (!ld.stopping) {
                        (void) lg_client_send(cl, ep);
                    }
                }
            }

            if (cl->dead) {
                if (cl->busy) {
                    ld.errors++;
                    cl->busy = 0;
                }
                (void) epoll_ctl(ep, EPOLL_CTL_DEL, cl->c.fd, NULL);
                fprintf(stderr, "pyrepl-load: connection %d lost\n", cl->idx);
            }
        }

        now = lg_now();
        if (!ld.stopping
            && (now >= ld.end || (o.count && (long) ld.lat.n >= o.count)))
        {
            ld.stopping = 1;
            if (ld.end == UINT64_MAX) {
                ld.end = now;
            }
        }

        for (busy = 0, i = 0; i < o.conns; i++) {
            busy += cls[i].busy && !cls[i].dead;
        }

        if (busy == 0 || (ld.stopping && now > ld.end + LG_DRAIN_NS)) {
            break;
        }
    }

    if (o.once || o.count) {
        secs = (ld.last > ld.warm_end ? ld.last - (o.once ? start
                                                          : ld.warm_end)
                                      : 1) / 1e9;
    } else {
        secs = o.duration;
    }

    for (i = 0, n = 0; i < o.conns; i++) {
        n += cls[i].dead;
    }

    printf("{\"mode\": \"load\", \"transport\": \"%s\", \"conns\": %d, "
           "\"requests\": %zu, \"errors\": %ld, \"dead\": %d, "
           "\"reconnects\": %ld, \"seconds\": %.3f, \"rate\": %.1f, ",
           o.ws ? "ws" : "http", o.conns, ld.lat.n, ld.errors, n,
           ld.reconnects, secs, secs > 0 ? ld.lat.n / secs : 0);
    lg_print_stats("lat_us", &ld.lat);
    printf("}\n");

    return ld.errors || n ? 2 : 0;
}


/* stream mode ---------------------------------------------------------- */


static int
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


static int
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


/* command line --------------------------------------------------------- */


static void
lg_add_path(const char *p)
{
    const char  **np;

    if (o.npaths == o.paths_cap) {
        o.paths_cap = o.paths_cap ? o.paths_cap * 2 : 16;
        np = realloc(o.paths, o.paths_cap * sizeof(char *));
        if (np == NULL) {
            lg_die("out of memory");
        }
        o.paths = np;
    }
    o.paths[o.npaths++] = p;
}


static void
lg_paths_file(const char *name)
{
    FILE     *f = fopen(name, "r");
    char     *line = NULL;
    size_t    cap = 0;
    ssize_t   n;

    if (f == NULL) {
        lg_die("cannot open --paths-file");
    }

    while ((n = getline(&line, &cap, f)) > 0) {
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
            line[--n] = '\0';
        }
        if (n) {
            lg_add_path(strdup(line));
        }
    }

    free(line);
    fclose(f);
}


int
main(int argc, char **argv)
{
    static const struct option  opts[] = {
        { "port", required_argument, NULL, 'p' },
        { "header", required_argument, NULL, 'H' },
        { "path", required_argument, NULL, 'P' },
        { "paths-file", required_argument, NULL, 'F' },
        { "method", required_argument, NULL, 'm' },
        { "body", required_argument, NULL, 'b' },
        { "accept", required_argument, NULL, 'a' },
        { "status", required_argument, NULL, 's' },
        { "ws", no_argument, NULL, 'w' },
        { "msg", required_argument, NULL, 'M' },
        { "done", required_argument, NULL, 'd' },
        { "ok", required_argument, NULL, 'o' },
        { "subprotocol", required_argument, NULL, 'S' },
        { "conns", required_argument, NULL, 'c' },
        { "warmup", required_argument, NULL, 'W' },
        { "duration", required_argument, NULL, 'D' },
        { "count", required_argument, NULL, 'n' },
        { "once", no_argument, NULL, '1' },
        { "stamps", no_argument, NULL, 't' },
        { "id-key", required_argument, NULL, 'k' },
        { "ready-path", required_argument, NULL, 'r' },
        { "ready-body", required_argument, NULL, 'R' },
        { "ready-ws-path", required_argument, NULL, 'x' },
        { "ready-msg", required_argument, NULL, 'X' },
        { "ready-done", required_argument, NULL, 'y' },
        { "delete-path", required_argument, NULL, 'z' },
        { "pace-ms", required_argument, NULL, 'i' },
        { "keep", no_argument, NULL, 'K' },
        { "quickack", no_argument, NULL, 'Q' },
        { NULL, 0, NULL, 0 }
    };
    int     ch;
    size_t  n;

    if (argc < 2) {
        lg_die("usage: pyrepl-load load|stream|create [options]");
    }

    o.mode = argv[1];
    o.method = "GET";
    o.status = 200;
    o.conns = 1;
    o.warmup = 0.5;
    o.duration = 2;
    o.id_key = "session_id";

    optind = 2;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'p': o.port = atoi(optarg); break;
        case 'H':
            n = strlen(optarg);
            if (o.headers_len + n + 3 > sizeof(o.headers)) {
                lg_die("too many headers");
            }
            memcpy(o.headers + o.headers_len, optarg, n);
            memcpy(o.headers + o.headers_len + n, "\r\n", 3);
            o.headers_len += n + 2;
            break;
        case 'P': lg_add_path(optarg); break;
        case 'F': lg_paths_file(optarg); break;
        case 'm': o.method = optarg; break;
        case 'b': o.body = optarg; break;
        case 'a': o.accept = optarg; break;
        case 's': o.status = atoi(optarg); break;
        case 'w': o.ws = 1; break;
        case 'M': o.msg = optarg; break;
        case 'd':
            if (o.ndone == LG_MAX_DONE) {
                lg_die("at most two --done");
            }
            o.done[o.ndone++] = optarg;
            break;
        case 'o': o.ok = optarg; break;
        case 'S': o.subprotocol = optarg; break;
        case 'c': o.conns = atoi(optarg); break;
        case 'W': o.warmup = atof(optarg); break;
        case 'D': o.duration = atof(optarg); break;
        case 'n': o.count = atol(optarg); break;
        case '1': o.once = 1; break;
        case 't': o.stamps = 1; break;
        case 'k': o.id_key = optarg; break;
        case 'r': o.ready_path = optarg; break;
        case 'R': o.ready_body = optarg; break;
        case 'x': o.ready_ws_path = optarg; break;
        case 'X': o.ready_msg = optarg; break;
        case 'y': o.ready_done = optarg; break;
        case 'z': o.delete_path = optarg; break;
        case 'i': o.pace_ms = atoi(optarg); break;
        case 'K': o.keep = 1; break;
        case 'Q': lg_quickack = 1; break;
        default: lg_die("bad option");
        }
    }

    if (o.port <= 0) {
        lg_die("--port is required");
    }

    if (o.once && o.conns > (int) o.npaths) {
        o.conns = o.npaths;
    }

    if (strcmp(o.mode, "load") == 0) {
        return lg_mode_load();
    }
    if (strcmp(o.mode, "stream") == 0) {
        return lg_mode_stream();
    }
    if (strcmp(o.mode, "create") == 0) {
        return lg_mode_create();
    }

    lg_die("mode is load, stream or create");
    return 1;
}
