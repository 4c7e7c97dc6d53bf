/*
 * lg_conn.c: connections, buffers, the HTTP/1.1 response parser and the
 * WebSocket client of pyrepl-load (see lg.h for the contracts).
 *
 * The parsers are incremental and never block: they consume what is in
 * the buffer and say whether the response or message is complete, so the
 * epoll loop and the blocking helpers share them.
 */

#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "lg.h"


int  lg_quickack;

static uint64_t lg_rand_state = 0x9e3779b97f4a7c15ull;


static uint32_t
lg_rand(void)
{
    /* xorshift64*: masking keys need not be secret for a load generator */
    lg_rand_state ^= lg_rand_state >> 12;
    lg_rand_state ^= lg_rand_state << 25;
    lg_rand_state ^= lg_rand_state >> 27;
    return (uint32_t) ((lg_rand_state * 0x2545f4914f6cdd1dull) >> 32);
}


int
lg_buf_reserve(lg_buf_t *b, size_t more)
{
    size_t   cap;
    char    *p;

    if (b->cap - b->len >= more) {
        return 0;
    }

    if (b->pos > 0) {
        lg_buf_compact(b);
        if (b->cap - b->len >= more) {
            return 0;
        }
    }

    cap = b->cap ? b->cap : LG_RBUF_MIN;
    while (cap - b->len < more) {
        cap *= 2;
    }

    p = realloc(b->buf, cap);
    if (p == NULL) {
        return -1;
    }

    b->buf = p;
    b->cap = cap;
    return 0;
}


int
lg_buf_append(lg_buf_t *b, const void *p, size_t n)
{
    if (lg_buf_reserve(b, n) != 0) {
        return -1;
    }

    memcpy(b->buf + b->len, p, n);
    b->len += n;
    return 0;
}


void
lg_buf_compact(lg_buf_t *b)
{
    if (b->pos == 0) {
        return;
    }

    memmove(b->buf, b->buf + b->pos, b->len - b->pos);
    b->len -= b->pos;
    b->pos = 0;
}


void
lg_buf_free(lg_buf_t *b)
{
    free(b->buf);
    memset(b, 0, sizeof(*b));
}


int
lg_has(const char *p, size_t n, const char *s)
{
    return memmem(p, n, s, strlen(s)) != NULL;
}


/* HTTP ---------------------------------------------------------------- */


void
lg_http_reset(lg_http_t *h)
{
    lg_sink_pt   sink = h->sink;
    void        *arg = h->arg;

    memset(h, 0, sizeof(*h));
    h->sink = sink;
    h->arg = arg;
}


/* value of header line "name: value" if the name matches, else NULL */
static const char *
lg_header(const char *line, const char *end, const char *name)
{
    size_t  n = strlen(name);

    if ((size_t) (end - line) <= n || strncasecmp(line, name, n) != 0
        || line[n] != ':')
    {
        return NULL;
    }

    line += n + 1;
    while (line < end && (*line == ' ' || *line == '\t')) {
        line++;
    }
    return line;
}


static int
lg_http_head(lg_http_t *h, const char *p, const char *end)
{
    const char  *line, *eol, *v;
    int          have_len = 0;

    if (end - p < 12 || memcmp(p, "HTTP/1.", 7) != 0) {
        return -1;
    }

    h->status = atoi(p + 9);

    for (line = memmem(p, end - p, "\r\n", 2) + 2; line < end;
         line = eol + 2)
    {
        eol = memmem(line, end - line, "\r\n", 2);
        if (eol == NULL || eol == line) {
            break;
        }

        if ((v = lg_header(line, eol, "Content-Length")) != NULL) {
            h->remain = strtoull(v, NULL, 10);
            have_len = 1;

        } else if ((v = lg_header(line, eol, "Transfer-Encoding")) != NULL) {
            h->chunked = memmem(v, eol - v, "chunked", 7) != NULL;

        } else if ((v = lg_header(line, eol, "Connection")) != NULL) {
            h->close = strncasecmp(v, "close", 5) == 0;
        }
    }

    if (h->status == 101 || h->status == 204 || h->status == 304) {
        h->state = LG_H_DONE;

    } else if (h->chunked) {
        h->state = LG_H_CHUNK_SIZE;

    } else if (have_len) {
        h->state = h->remain ? LG_H_LEN : LG_H_DONE;

    } else {
        return -1;                      /* read-until-close: not served */
    }

    return 0;
}


int
lg_http_feed(lg_http_t *h, const char *p, size_t n, size_t *used)
{
    const char  *start = p, *end = p + n, *eol;
    size_t       take;

    while (h->state != LG_H_DONE) {

        switch (h->state) {

        case LG_H_HEAD:
            eol = memmem(p, end - p, "\r\n\r\n", 4);
            if (eol == NULL) {
                *used = p - start;
                return (end - p >= LG_HEAD_MAX) ? -1 : 0;
            }
            if (lg_http_head(h, p, eol + 2) != 0) {
                return -1;
            }
            p = eol + 4;
            break;

        case LG_H_LEN:
        case LG_H_CHUNK_DATA:
            if (p == end) {
                goto more;
            }
            take = (size_t) (end - p) < h->remain ? (size_t) (end - p)
                                                  : h->remain;
            if (h->sink) {
                h->sink(h->arg, p, take);
            }
            h->body_bytes += take;
            h->remain -= take;
            p += take;
            if (h->remain == 0) {
                h->state = (h->state == LG_H_LEN) ? LG_H_DONE
                                                  : LG_H_CHUNK_CRLF;
            }
            break;

        case LG_H_CHUNK_SIZE:
            eol = memmem(p, end - p, "\r\n", 2);
            if (eol == NULL) {
                goto more;
            }
            h->remain = strtoull(p, NULL, 16);
            p = eol + 2;
            h->state = h->remain ? LG_H_CHUNK_DATA : LG_H_TRAILER;
            break;

        case LG_H_CHUNK_CRLF:
            if (end - p < 2) {
                goto more;
            }
            if (p[0] != '\r' || p[1] != '\n') {
                return -1;
            }
            p += 2;
            h->state = LG_H_CHUNK_SIZE;
            break;

        case LG_H_TRAILER:
            eol = memmem(p, end - p, "\r\n", 2);
            if (eol == NULL) {
                goto more;
            }
            if (eol == p) {
                h->state = LG_H_DONE;
            }
            p = eol + 2;
            break;
        }
    }

    *used = p - start;
    return 1;

more:

    *used = p - start;
    return 0;
}


/* WebSocket ----------------------------------------------------------- */


int
lg_ws_feed(lg_ws_t *w, const char *p, size_t n, size_t *used, int *op,
    const char **msg, size_t *len)
{
    const unsigned char  *u;
    const char           *start = p, *end = p + n;
    size_t                hlen, take;
    uint64_t              plen;
    int                   i;

    for ( ;; ) {

        if (!w->in_frame) {
            u = (const unsigned char *) p;
            if (end - p < 2) {
                goto more;
            }
            if ((u[0] & 0x70) || (u[1] & 0x80)) {
                return -1;          /* RSV bits, or a masked server frame */
            }
            plen = u[1] & 0x7f;
            hlen = (plen == 126) ? 4 : (plen == 127) ? 10 : 2;
            if ((size_t) (end - p) < hlen) {
                goto more;
            }
            if (plen == 126) {
                plen = ((uint64_t) u[2] << 8) | u[3];
            } else if (plen == 127) {
                plen = 0;
                for (i = 2; i < 10; i++) {
                    plen = (plen << 8) | u[i];
                }
            }

            w->fin = (u[0] & 0x80) != 0;
            w->frame_op = u[0] & 0x0f;
            w->remain = plen;
            w->in_frame = 1;
            p += hlen;

            if (w->frame_op >= LG_WS_CLOSE) {
                if (plen > sizeof(w->ctl) || !w->fin) {
                    return -1;
                }
                w->ctl_len = 0;

            } else if (w->frame_op == LG_WS_CONT) {
                if (w->msg_op == 0) {
                    return -1;
                }

            } else if (w->frame_op == LG_WS_TEXT
                       || w->frame_op == LG_WS_BIN)
            {
                if (w->msg_op != 0) {
                    return -1;
                }
                w->msg_op = w->frame_op;
                w->msg.pos = 0;
                w->msg.len = 0;

            } else {
                return -1;
            }
        }

        take = (size_t) (end - p) < w->remain ? (size_t) (end - p)
                                              : w->remain;

        if (w->frame_op >= LG_WS_CLOSE) {
            memcpy(w->ctl + w->ctl_len, p, take);
            w->ctl_len += take;

        } else if (take && lg_buf_append(&w->msg, p, take) != 0) {
            return -1;
        }

        p += take;
        w->remain -= take;

        if (w->remain > 0) {
            goto more;
        }

        w->in_frame = 0;

        if (w->frame_op >= LG_WS_CLOSE) {
            *op = w->frame_op;
            *msg = w->ctl;
            *len = w->ctl_len;
            *used = p - start;
            return 1;
        }

        if (w->fin) {
            *op = w->msg_op;
            *msg = w->msg.buf ? w->msg.buf : "";
            *len = w->msg.len;
            w->msg_op = 0;
            *used = p - start;
            return 1;
        }
    }

more:

    *used = p - start;
    return 0;
}


void
lg_ws_free(lg_ws_t *w)
{
    lg_buf_free(&w->msg);
}


int
lg_ws_frame(lg_buf_t *out, int op, const char *p, size_t n)
{
    unsigned char   hdr[14], *m, *d;
    uint32_t        key;
    size_t          hlen, i;

    hdr[0] = 0x80 | (op & 0x0f);

    if (n < 126) {
        hdr[1] = 0x80 | n;
        hlen = 2;

    } else if (n < 65536) {
        hdr[1] = 0x80 | 126;
        hdr[2] = n >> 8;
        hdr[3] = n & 0xff;
        hlen = 4;

    } else {
        hdr[1] = 0x80 | 127;
        for (i = 0; i < 8; i++) {
            hdr[2 + i] = (uint64_t) n >> (56 - 8 * i);
        }
        hlen = 10;
    }

    key = lg_rand();
    m = hdr + hlen;
    memcpy(m, &key, 4);
    hlen += 4;

    if (lg_buf_reserve(out, hlen + n) != 0) {
        return -1;
    }

    memcpy(out->buf + out->len, hdr, hlen);
    d = (unsigned char *) out->buf + out->len + hlen;
    for (i = 0; i < n; i++) {
        d[i] = ((const unsigned char *) p)[i] ^ m[i & 3];
    }
    out->len += hlen + n;
    return 0;
}


/* connections --------------------------------------------------------- */


int
lg_connect(lg_conn_t *c, int port)
{
    struct sockaddr_in  sin;
    int                 one = 1;

    memset(c, 0, sizeof(*c));

    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd == -1) {
        perror("pyrepl-load: socket");
        return -1;
    }

    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    if (connect(c->fd, (struct sockaddr *) &sin, sizeof(sin)) != 0) {
        perror("pyrepl-load: connect");
        close(c->fd);
        c->fd = -1;
        return -1;
    }

    return 0;
}


void
lg_close(lg_conn_t *c)
{
    if (c->fd != -1) {
        close(c->fd);
        c->fd = -1;
    }
    lg_buf_free(&c->in);
    lg_buf_free(&c->out);
}


int
lg_nonblock(lg_conn_t *c)
{
    int  fl = fcntl(c->fd, F_GETFL);

    return (fl == -1) ? -1 : fcntl(c->fd, F_SETFL, fl | O_NONBLOCK);
}


int
lg_flush(lg_conn_t *c)
{
    ssize_t  n;

    while (c->out.pos < c->out.len) {
        n = write(c->fd, c->out.buf + c->out.pos, c->out.len - c->out.pos);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return (errno == EAGAIN) ? 0 : -1;
        }
        c->out.pos += n;
    }

    c->out.pos = 0;
    c->out.len = 0;
    return 1;
}


ssize_t
lg_fill(lg_conn_t *c)
{
    ssize_t  n;

    if (c->in.pos == c->in.len) {
        c->in.pos = 0;
        c->in.len = 0;
    }

    if (lg_buf_reserve(&c->in, LG_RBUF_MIN / 2) != 0) {
        return -1;
    }

    do {
        n = read(c->fd, c->in.buf + c->in.len, c->in.cap - c->in.len);
    } while (n < 0 && errno == EINTR);

    c->t_read = lg_now();

    if (lg_quickack && n > 0) {
        int  one = 1;

        setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
    }

    if (n > 0) {
        c->in.len += n;
    }
    return n;
}


int
lg_http_roundtrip(lg_conn_t *c, lg_http_t *h)
{
    size_t  used;
    int     rc;

    if (lg_flush(c) != 1) {
        return -1;
    }

    for ( ;; ) {
        rc = lg_http_feed(h, c->in.buf + c->in.pos, c->in.len - c->in.pos,
                          &used);
        c->in.pos += used;
        if (rc != 0) {
            return rc == 1 ? 0 : -1;
        }
        if (lg_fill(c) <= 0) {
            return -1;
        }
    }
}


int
lg_ws_upgrade(lg_conn_t *c, int port, const char *path,
    const char *headers, const char *subprotocol)
{
    static const char  b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char      raw[18];
    char               key[25], req[4096];
    lg_http_t          h;
    int                i, n;

    for (i = 0; i < 16; i++) {
        raw[i] = lg_rand();
    }
    raw[16] = raw[17] = 0;

    for (i = 0; i < 6; i++) {           /* 16 bytes: 5 full groups + 1 */
        key[4 * i] = b64[raw[3 * i] >> 2];
        key[4 * i + 1] = b64[((raw[3 * i] & 3) << 4) | (raw[3 * i + 1] >> 4)];
        key[4 * i + 2] = b64[((raw[3 * i + 1] & 15) << 2)
                             | (raw[3 * i + 2] >> 6)];
        key[4 * i + 3] = b64[raw[3 * i + 2] & 63];
    }
    key[22] = key[23] = '=';
    key[24] = '\0';

    n = snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\n"
                 "Host: 127.0.0.1:%d\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n"
                 "%s%s%s"
                 "%s\r\n",
                 path, port, key,
                 subprotocol ? "Sec-WebSocket-Protocol: " : "",
                 subprotocol ? subprotocol : "",
                 subprotocol ? "\r\n" : "",
                 headers);
    if (n < 0 || (size_t) n >= sizeof(req)) {
        return -1;
    }

    if (lg_buf_append(&c->out, req, n) != 0) {
        return -1;
    }

    memset(&h, 0, sizeof(h));
    if (lg_http_roundtrip(c, &h) != 0 || h.status != 101) {
        fprintf(stderr, "pyrepl-load: upgrade of %s answered %d\n", path,
                h.status);
        return -1;
    }

    return 0;
}


int
lg_ws_recv(lg_conn_t *c, lg_ws_t *w, const char **msg, size_t *len,
    uint64_t *arrived)
{
    size_t  used;
    int     rc, op;

    for ( ;; ) {
        rc = lg_ws_feed(w, c->in.buf + c->in.pos, c->in.len - c->in.pos,
                        &used, &op, msg, len);
        c->in.pos += used;

        if (rc < 0) {
            return -1;
        }

        if (rc == 1) {
            if (op == LG_WS_PING) {
                if (lg_ws_frame(&c->out, LG_WS_PONG, *msg, *len) != 0
                    || lg_flush(c) != 1)
                {
                    return -1;
                }
                continue;
            }
            if (op == LG_WS_PONG) {
                continue;
            }
            if (op == LG_WS_CLOSE) {
                return 0;
            }
            if (arrived) {
                *arrived = c->t_read;
            }
            return 1;
        }

        rc = lg_fill(c);
        if (rc <= 0) {
            return rc == 0 ? 0 : -1;
        }
    }
}
