/*
 * lg.h: pyrepl-load, the benchmark's load generator.
 *
 * lg_conn.c owns one TCP connection to 127.0.0.1 with its read and write
 * buffers, the incremental HTTP/1.1 response parser (Content-Length and
 * chunked bodies, fed whatever bytes have arrived) and the minimal
 * WebSocket client (RFC 6455 upgrade, masked client frames, server frames
 * reassembled into messages, ping answered).  lg_mode.h declares what sits
 * on top: the command line (lg_main.c), the measuring modes (lg_load.c: an
 * epoll loop for many connections; lg_single.c: blocking loops for one)
 * and the statistics (lg_stats.c).  Nothing here allocates per request in
 * the steady state.
 */

#ifndef LG_H
#define LG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>


#define LG_RBUF_MIN   (64 * 1024)       /* initial read buffer */
#define LG_HEAD_MAX   (64 * 1024)       /* largest response head accepted */


/* CLOCK_MONOTONIC in ns: the clock Python's time.monotonic_ns() reads */
static inline uint64_t
lg_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}


/* a growable byte buffer; data is buf[pos..len) */
typedef struct {
    char    *buf;
    size_t   pos;
    size_t   len;
    size_t   cap;
} lg_buf_t;

int lg_buf_reserve(lg_buf_t *b, size_t more);
int lg_buf_append(lg_buf_t *b, const void *p, size_t n);
void lg_buf_compact(lg_buf_t *b);
void lg_buf_free(lg_buf_t *b);


/* receives decoded body bytes (HTTP) or one whole message (WebSocket) */
typedef void (*lg_sink_pt)(void *arg, const char *p, size_t n);


/* incremental HTTP/1.1 response parser */
enum {
    LG_H_HEAD = 0,
    LG_H_LEN,              /* Content-Length body */
    LG_H_CHUNK_SIZE,
    LG_H_CHUNK_DATA,
    LG_H_CHUNK_CRLF,
    LG_H_TRAILER,
    LG_H_DONE
};

typedef struct {
    int          state;
    int          status;
    int          chunked;
    int          close;            /* "Connection: close" seen */
    uint64_t     remain;           /* of the body or the current chunk */
    uint64_t     body_bytes;
    lg_sink_pt   sink;             /* may be NULL */
    void        *arg;
} lg_http_t;

void lg_http_reset(lg_http_t *h);

/*
 * Consume as much of p[0..n) as forms the response; *used says how much.
 * Returns 1 when the response is complete, 0 when more bytes are needed,
 * -1 on a malformed response.
 */
int lg_http_feed(lg_http_t *h, const char *p, size_t n, size_t *used);


/* WebSocket receive state: server frames reassembled into messages */
enum {
    LG_WS_CONT = 0x0,
    LG_WS_TEXT = 0x1,
    LG_WS_BIN = 0x2,
    LG_WS_CLOSE = 0x8,
    LG_WS_PING = 0x9,
    LG_WS_PONG = 0xa
};

typedef struct {
    lg_buf_t     msg;              /* data message being assembled */
    int          msg_op;           /* its opcode, 0 when none */
    int          frame_op;         /* opcode of the frame being read */
    int          fin;
    uint64_t     remain;           /* payload bytes left in the frame */
    int          in_frame;
    char         ctl[125];         /* a control frame's payload */
    size_t       ctl_len;
} lg_ws_t;

/*
 * Consume frames from p[0..n).  Returns 1 with *op and *msg / *len set
 * when a message (or a control frame) is complete, 0 when more bytes are
 * needed, -1 on a protocol error.  A returned message stays valid until
 * the next call.
 */
int lg_ws_feed(lg_ws_t *w, const char *p, size_t n, size_t *used, int *op,
    const char **msg, size_t *len);
void lg_ws_free(lg_ws_t *w);

/* append one masked client frame to out */
int lg_ws_frame(lg_buf_t *out, int op, const char *p, size_t n);


/* one connection */
typedef struct {
    int          fd;
    lg_buf_t     in;
    lg_buf_t     out;
    uint64_t     t_read;           /* lg_now() after the last read */
} lg_conn_t;

/*
 * Set by --quickack: re-arm TCP_QUICKACK after every read, so the client
 * acknowledges at once instead of delaying ACKs (a diagnostic: it shows
 * how much of a latency is the server's Nagle waiting on a delayed ACK).
 */
extern int lg_quickack;

int lg_connect(lg_conn_t *c, int port);
void lg_close(lg_conn_t *c);
int lg_nonblock(lg_conn_t *c);

/* write out's pending bytes: 1 all written, 0 would block, -1 error */
int lg_flush(lg_conn_t *c);

/*
 * Read what is there into in and stamp t_read: bytes read, 0 EOF, -1 error
 * or EAGAIN.
 */
ssize_t lg_fill(lg_conn_t *c);

/* blocking: send out, then read until the response is complete */
int lg_http_roundtrip(lg_conn_t *c, lg_http_t *h);

/*
 * Blocking upgrade to WebSocket on path (with extra header lines, each
 * ending in CRLF, and an optional subprotocol).  Returns 0 or -1.
 */
int lg_ws_upgrade(lg_conn_t *c, int port, const char *path,
    const char *headers, const char *subprotocol);

/*
 * Blocking: read messages until one is complete; pings are answered.
 * Returns 1 with *msg / *len, 0 on close or EOF, -1 on error.
 */
int lg_ws_recv(lg_conn_t *c, lg_ws_t *w, const char **msg, size_t *len,
    uint64_t *arrived);

/* memmem for the markers */
int lg_has(const char *p, size_t n, const char *s);

#endif /* LG_H */
