/*
 * ngx_http_pyrepl_peer.h: a frame connection from an nginx worker to the
 * supervisor or a session process, over nginx's event loop
 * (ngx_http_pyrepl_peer.c).
 */

#ifndef NGX_HTTP_PYREPL_PEER_H
#define NGX_HTTP_PYREPL_PEER_H


#include "ngx_http_pyrepl_module.h"
#include "pyrepl_proto.h"


typedef struct ngx_http_pyrepl_peer_s  ngx_http_pyrepl_peer_t;

/*
 * Called for each frame received; the frame is valid during the call only.
 * Returning NGX_ERROR closes the peer (after the call returns, the owner
 * must not touch it again, the error handler is not called).
 */
typedef ngx_int_t (*ngx_http_pyrepl_frame_pt)(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame);

/*
 * Called once when the connection fails: connect error, EOF, a protocol
 * error or the read timeout.  The peer is already closed.
 */
typedef void (*ngx_http_pyrepl_fail_pt)(ngx_http_pyrepl_peer_t *peer,
    const char *reason);

/* Called when everything queued has been written (optional). */
typedef void (*ngx_http_pyrepl_sent_pt)(ngx_http_pyrepl_peer_t *peer);

struct ngx_http_pyrepl_peer_s {
    ngx_peer_connection_t    pc;
    ngx_log_t               *log;
    void                    *data;
    ngx_http_pyrepl_frame_pt frame_handler;
    ngx_http_pyrepl_fail_pt  fail_handler;
    ngx_http_pyrepl_sent_pt  sent_handler;

    u_char                  *in;             /* receive buffer (ngx_alloc) */
    size_t                   in_len;
    size_t                   in_cap;
    size_t                   in_next;        /* where the frame being */
                                             /* handled ends in in */
    size_t                   max_frame;

    ngx_chain_t             *out;            /* bytes not yet sent, */
                                             /* each in ngx_alloc'd memory */
    ngx_chain_t             *free;           /* links and bufs to reuse */
    ngx_msec_t               read_timeout;   /* 0: no timeout */

    unsigned                 paused:1;       /* owner cannot take frames */
    unsigned                 closed:1;
};

ngx_int_t ngx_http_pyrepl_peer_connect(ngx_http_pyrepl_peer_t *peer,
    ngx_str_t *path, ngx_pool_t *pool);
ngx_int_t ngx_http_pyrepl_peer_attach(ngx_http_pyrepl_peer_t *peer,
    ngx_connection_t *c, ngx_str_t *path, ngx_pool_t *pool);
ngx_connection_t *ngx_http_pyrepl_peer_detach(ngx_http_pyrepl_peer_t *peer);
ngx_int_t ngx_http_pyrepl_peer_send(ngx_http_pyrepl_peer_t *peer,
    ngx_pool_t *pool, const pr_frame_t *frame);
void ngx_http_pyrepl_peer_pause(ngx_http_pyrepl_peer_t *peer);
void ngx_http_pyrepl_peer_resume(ngx_http_pyrepl_peer_t *peer);
void ngx_http_pyrepl_peer_close(ngx_http_pyrepl_peer_t *peer);

#endif /* NGX_HTTP_PYREPL_PEER_H */
