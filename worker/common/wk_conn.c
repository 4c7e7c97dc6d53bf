/*
 * wk_conn.c: the buffered frame connection declared in wk_conn.h.
 *
 * Receive side: wk_conn_read() appends what the socket has to rbuf, which
 * grows geometrically up to max_frame + PR_HEADER_LEN (one whole frame at
 * the start of the buffer always fits).  wk_conn_next() decodes frames in
 * place and only advances rconsumed, so a frame it returned stays valid
 * until the next call (its strings may live in the msgpack zone, which the
 * next decode replaces); the consumed bytes are dropped with one memmove
 * at the start of the next wk_conn_read().
 *
 * Send side: wk_conn_send() encodes into wbuf; wk_conn_flush() writes from
 * wpos with send(MSG_NOSIGNAL) until the socket would block.
 *
 * Buffers larger than WK_CONN_KEEP are freed once empty, so one large frame
 * does not pin its memory for the life of the connection.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wk_conn.h"
#include "wk_log.h"


#define WK_CONN_MIN    4096          /* first allocation of either buffer */
#define WK_CONN_KEEP   (64 * 1024)   /* largest empty buffer kept */


static void wk_conn_compact(wk_conn_t *c);
static int wk_conn_grow(uint8_t **buf, size_t *cap, size_t need,
    size_t max);


int
wk_conn_init(wk_conn_t *c, int fd, size_t max_frame)
{
    int  flags;

    memset(c, 0, sizeof(wk_conn_t));
    c->fd = fd;
    c->max_frame = max_frame;

    flags = fcntl(fd, F_GETFL);
    if (flags == -1) {
        wk_log("fcntl(%d, F_GETFL) failed: %s", fd, strerror(errno));
        return WK_ERROR;
    }

    if (!(flags & O_NONBLOCK)
        && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1)
    {
        wk_log("fcntl(%d, O_NONBLOCK) failed: %s", fd, strerror(errno));
        return WK_ERROR;
    }

    return WK_OK;
}


void
wk_conn_close(wk_conn_t *c)
{
    if (c->fd != -1 && close(c->fd) == -1) {
        wk_log("close(%d) failed: %s", c->fd, strerror(errno));
    }

    free(c->rbuf);
    free(c->wbuf);

    memset(c, 0, sizeof(wk_conn_t));
    c->fd = -1;
}


/*
 * Drop the bytes wk_conn_next() has consumed; frees a large receive buffer
 * that became empty.
 */
static void
wk_conn_compact(wk_conn_t *c)
{
    if (c->rconsumed > 0) {
        c->rlen -= c->rconsumed;

        if (c->rlen > 0) {
            memmove(c->rbuf, c->rbuf + c->rconsumed, c->rlen);
        }

        c->rconsumed = 0;
    }

    if (c->rlen == 0 && c->rcap > WK_CONN_KEEP) {
        free(c->rbuf);
        c->rbuf = NULL;
        c->rcap = 0;
    }
}


/*
 * Make *cap at least need (doubling from WK_CONN_MIN, never above max).
 * Returns WK_OK or WK_ERROR (out of memory).
 */
static int
wk_conn_grow(uint8_t **buf, size_t *cap, size_t need, size_t max)
{
    size_t    n;
    uint8_t  *p;

    if (need <= *cap) {
        return WK_OK;
    }

    n = *cap ? *cap : WK_CONN_MIN;
    while (n < need) {
        if (n > SIZE_MAX / 2) {
            n = need;
            break;
        }
        n *= 2;
    }

    if (n > max) {
        n = max;
    }

    p = realloc(*buf, n);
    if (p == NULL) {
        wk_log("cannot grow a connection buffer to %zu bytes", n);
        return WK_ERROR;
    }

    *buf = p;
    *cap = n;

    return WK_OK;
}


int
wk_conn_read(wk_conn_t *c)
{
    size_t   max;
    ssize_t  n;

    wk_conn_compact(c);

    max = c->max_frame + PR_HEADER_LEN;

    for ( ;; ) {

        if (c->rlen == c->rcap) {
            if (c->rcap >= max) {
                /*
                 * Full: a whole frame (or an oversized header) is buffered;
                 * the caller takes it with wk_conn_next() and polls again.
                 */
                return WK_OK;
            }

            if (wk_conn_grow(&c->rbuf, &c->rcap, c->rlen + 1, max)
                != WK_OK)
            {
                return WK_ERROR;
            }
        }

        n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);

        if (n > 0) {
            c->rlen += (size_t) n;
            continue;
        }

        if (n == 0) {
            return WK_EOF;
        }

        if (errno == EINTR) {
            continue;
        }

        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return WK_OK;
        }

        if (errno != ECONNRESET) {
            wk_log("recv(%d) failed: %s", c->fd, strerror(errno));
        }

        return WK_ERROR;
    }
}


int
wk_conn_next(wk_conn_t *c, msgpack_unpacked *up, pr_frame_t *f)
{
    int             rc;
    size_t          len, avail;
    const char     *err;
    const uint8_t  *p;

    /*
     * Frames are decoded in place one after another; the bytes of those
     * already returned are dropped by the next wk_conn_read(), so taking
     * many small frames from one read costs no copying.
     */
    if (c->rconsumed == c->rlen) {
        c->rconsumed = 0;
        c->rlen = 0;
        return 0;
    }

    p = c->rbuf + c->rconsumed;
    avail = c->rlen - c->rconsumed;

    rc = pr_frame_peek(p, avail, c->max_frame, &len);

    if (rc == PR_AGAIN) {
        return 0;
    }

    if (rc == PR_TOO_LARGE) {
        wk_log("fd %d: frame of %lu bytes exceeds the %zu byte limit", c->fd,
               ((unsigned long) p[0] << 24) | ((unsigned long) p[1] << 16)
               | ((unsigned long) p[2] << 8) | (unsigned long) p[3],
               c->max_frame);
        return WK_ERROR;
    }

    err = "unknown error";

    if (pr_frame_decode(p + PR_HEADER_LEN, len - PR_HEADER_LEN, up, f, &err)
        != PR_OK)
    {
        wk_log("fd %d: malformed frame of %zu bytes: %s", c->fd,
               len - PR_HEADER_LEN, err);
        return WK_ERROR;
    }

    c->rconsumed += len;

    return 1;
}


int
wk_conn_send(wk_conn_t *c, const pr_frame_t *f)
{
    msgpack_sbuffer  sb;

    msgpack_sbuffer_init(&sb);

    if (pr_frame_encode(f, &sb) != PR_OK || sb.data == NULL) {
        wk_log("fd %d: cannot encode a \"%s\" frame", c->fd,
               pr_type_name(f->type));
        goto fail;
    }

    /* drop what was already written before appending */
    if (c->wpos > 0) {
        c->wlen -= c->wpos;
        memmove(c->wbuf, c->wbuf + c->wpos, c->wlen);
        c->wpos = 0;
    }

    if (sb.size > SIZE_MAX - c->wlen
        || wk_conn_grow(&c->wbuf, &c->wcap, c->wlen + sb.size, SIZE_MAX)
           != WK_OK)
    {
        goto fail;
    }

    memcpy(c->wbuf + c->wlen, sb.data, sb.size);
    c->wlen += sb.size;

    msgpack_sbuffer_destroy(&sb);

    return WK_OK;

fail:

    msgpack_sbuffer_destroy(&sb);

    return WK_ERROR;
}


int
wk_conn_flush(wk_conn_t *c)
{
    ssize_t  n;

    while (c->wpos < c->wlen) {
        n = send(c->fd, c->wbuf + c->wpos, c->wlen - c->wpos, MSG_NOSIGNAL);

        if (n >= 0) {
            c->wpos += (size_t) n;
            c->sent += (uint64_t) n;
            continue;
        }

        if (errno == EINTR) {
            continue;
        }

        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return WK_AGAIN;
        }

        if (errno != EPIPE && errno != ECONNRESET) {
            wk_log("send(%d) failed: %s", c->fd, strerror(errno));
        }

        return WK_ERROR;
    }

    c->wpos = 0;
    c->wlen = 0;

    if (c->wcap > WK_CONN_KEEP) {
        free(c->wbuf);
        c->wbuf = NULL;
        c->wcap = 0;
    }

    return WK_OK;
}


size_t
wk_conn_pending(const wk_conn_t *c)
{
    return c->wlen - c->wpos;
}
