/*
 * lg_load.c: pyrepl-load's load mode.  --conns connections in one epoll
 * loop, each a closed loop of one request at a time: an HTTP keep-alive
 * request (the same one, or with --once every path once, spread over the
 * connections), or one WebSocket message whose answer is complete when
 * messages carrying its request id have contained every --done marker.
 * Latencies count from the end of the warm-up to the end (--duration,
 * --count, or the last answer of --once); requests still in flight then
 * get LG_DRAIN_NS.  A connection the server closes is reopened; one that
 * fails is dead and its request an error.  Prints one JSON object.
 */

#define _GNU_SOURCE

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "lg_mode.h"


#define LG_DRAIN_NS     10000000000ull  /* in-flight requests at the end */


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


int
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
