/*
 * wk_conn.h: a buffered, non-blocking frame connection for the poll(2)
 * loops of the worker binaries (supervisor, session processes).  It owns
 * one socket descriptor, a receive buffer that yields whole frames and a
 * send buffer that drains when the peer can take more.  Nothing here
 * blocks; callers poll for POLLIN, and for POLLOUT while wk_conn_pending()
 * is non-zero.
 */

#ifndef WK_CONN_H
#define WK_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "pyrepl_proto.h"


#define WK_OK      0
#define WK_AGAIN   1
#define WK_EOF     2
#define WK_ERROR  -1


typedef struct {
    int        fd;
    size_t     max_frame;

    uint8_t   *rbuf;
    size_t     rlen;
    size_t     rcap;
    size_t     rconsumed;     /* bytes of rbuf taken by wk_conn_next */

    uint8_t   *wbuf;
    size_t     wlen;
    size_t     wpos;
    size_t     wcap;
    uint64_t   sent;          /* bytes written so far, for progress */
} wk_conn_t;


/* Take ownership of fd (made non-blocking); returns WK_OK or WK_ERROR. */
int wk_conn_init(wk_conn_t *c, int fd, size_t max_frame);

/* Close the descriptor and free both buffers. */
void wk_conn_close(wk_conn_t *c);

/*
 * Read whatever the socket has.  WK_OK: bytes were read or none were
 * ready (EAGAIN); WK_EOF: the peer closed; WK_ERROR: a socket error.
 */
int wk_conn_read(wk_conn_t *c);

/*
 * Take the next whole frame from the receive buffer.  Returns 1 with *f
 * filled (valid until the next wk_conn_next or wk_conn_read call), 0 when
 * no whole frame is buffered, WK_ERROR on an oversized or malformed frame.
 * *up must have been initialised with msgpack_unpacked_init.
 */
int wk_conn_next(wk_conn_t *c, msgpack_unpacked *up, pr_frame_t *f);

/* Queue f for sending; returns WK_OK or WK_ERROR (encode/alloc failure). */
int wk_conn_send(wk_conn_t *c, const pr_frame_t *f);

/* Write queued bytes: WK_OK when all are sent, WK_AGAIN, or WK_ERROR. */
int wk_conn_flush(wk_conn_t *c);

/* Bytes queued and not yet written. */
size_t wk_conn_pending(const wk_conn_t *c);

#endif /* WK_CONN_H */
