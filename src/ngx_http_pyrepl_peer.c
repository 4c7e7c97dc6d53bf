/*
 * ngx_http_pyrepl_peer.c: a frame connection from an nginx worker to the
 * supervisor or a session process, over a Unix socket registered with
 * nginx's event loop.  Reads consume what is ready and stop on NGX_AGAIN;
 * writes queue a chain and resume on the write event; nothing blocks.
 *
 * Ownership: the peer lives in a pool (the request's) and a pool cleanup
 * closes it.  Its owner gets each whole frame through frame_handler and,
 * once, a failure through fail_handler.  A frame handler that returns
 * anything but NGX_OK may have freed the peer (by finalizing the request),
 * so the reader returns at once without touching it again; the same holds
 * after fail_handler and the optional sent_handler.
 *
 * A connection outlives its peer when the owner hands it to the cache of
 * idle connections (ngx_http_pyrepl_peer_detach, ngx_http_pyrepl_keepalive.c)
 * and a later peer takes it from there (ngx_http_pyrepl_peer_attach).
 */

#include "ngx_http_pyrepl_peer.h"


#define PYREPL_PEER_INITIAL_BUF  16384


static void ngx_http_pyrepl_peer_read_handler(ngx_event_t *rev);
static void ngx_http_pyrepl_peer_write_handler(ngx_event_t *wev);
static void ngx_http_pyrepl_peer_fail(ngx_http_pyrepl_peer_t *peer,
    const char *reason);
static ngx_int_t ngx_http_pyrepl_peer_dispatch(ngx_http_pyrepl_peer_t *peer);
static ngx_int_t ngx_http_pyrepl_peer_reserve(ngx_http_pyrepl_peer_t *peer);
static ngx_int_t ngx_http_pyrepl_peer_prepare(ngx_http_pyrepl_peer_t *peer,
    ngx_pool_t *pool);
static void ngx_http_pyrepl_peer_own(ngx_http_pyrepl_peer_t *peer,
    ngx_pool_t *pool);
static void ngx_http_pyrepl_peer_cleanup(void *data);


/*
 * Connect to the Unix socket at path.  Returns NGX_OK (connected or in
 * progress), NGX_DECLINED if nobody listens there (the caller decides what
 * that means), or NGX_ERROR.
 */
ngx_int_t
ngx_http_pyrepl_peer_connect(ngx_http_pyrepl_peer_t *peer, ngx_str_t *path,
    ngx_pool_t *pool)
{
    ngx_int_t            rc;
    struct sockaddr_un  *sun;

    if (path->len >= sizeof(sun->sun_path)) {
        return NGX_ERROR;
    }

    sun = ngx_pcalloc(pool, sizeof(struct sockaddr_un));
    if (sun == NULL) {
        return NGX_ERROR;
    }

    sun->sun_family = AF_UNIX;
    ngx_memcpy(sun->sun_path, path->data, path->len);

    if (ngx_http_pyrepl_peer_prepare(peer, pool) != NGX_OK) {
        return NGX_ERROR;
    }

    peer->pc.sockaddr = (struct sockaddr *) sun;
    peer->pc.socklen = sizeof(struct sockaddr_un);
    peer->pc.name = path;
    peer->pc.get = ngx_event_get_peer;
    peer->pc.log = peer->log;
    peer->pc.log_error = NGX_ERROR_ERR;

    rc = ngx_event_connect_peer(&peer->pc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        peer->pc.connection = NULL;
        peer->closed = 1;
        return rc == NGX_ERROR ? NGX_ERROR : NGX_DECLINED;
    }

    ngx_http_pyrepl_peer_own(peer, pool);

    return NGX_OK;
}


/*
 * Take c, an open connection to the socket at path that no one owns (an
 * idle one from the cache), as if just connected.  Returns NGX_OK, or
 * NGX_ERROR with c closed.
 */
ngx_int_t
ngx_http_pyrepl_peer_attach(ngx_http_pyrepl_peer_t *peer,
    ngx_connection_t *c, ngx_str_t *path, ngx_pool_t *pool)
{
    if (ngx_http_pyrepl_peer_prepare(peer, pool) != NGX_OK) {
        ngx_close_connection(c);
        peer->closed = 1;
        return NGX_ERROR;
    }

    peer->pc.name = path;
    peer->pc.log = peer->log;
    peer->pc.connection = c;

    ngx_http_pyrepl_peer_own(peer, pool);

    return NGX_OK;
}


/* The receive buffer and the pool cleanup that closes the peer. */
static ngx_int_t
ngx_http_pyrepl_peer_prepare(ngx_http_pyrepl_peer_t *peer, ngx_pool_t *pool)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    peer->in = ngx_alloc(PYREPL_PEER_INITIAL_BUF, peer->log);
    if (peer->in == NULL) {
        return NGX_ERROR;
    }

    peer->in_cap = PYREPL_PEER_INITIAL_BUF;
    peer->in_len = 0;

    cln->handler = ngx_http_pyrepl_peer_cleanup;
    cln->data = peer;

    return NGX_OK;
}


/* The connection's events are the peer's from now on. */
static void
ngx_http_pyrepl_peer_own(ngx_http_pyrepl_peer_t *peer, ngx_pool_t *pool)
{
    ngx_connection_t  *c;

    c = peer->pc.connection;
    c->data = peer;
    c->log = peer->log;
    c->pool = pool;
    c->read->handler = ngx_http_pyrepl_peer_read_handler;
    c->write->handler = ngx_http_pyrepl_peer_write_handler;
    c->read->log = peer->log;
    c->write->log = peer->log;

    if (peer->read_timeout) {
        ngx_add_timer(c->read, peer->read_timeout);
    }
}


/* Queue one frame and start writing it. */
ngx_int_t
ngx_http_pyrepl_peer_send(ngx_http_pyrepl_peer_t *peer, ngx_pool_t *pool,
    const pr_frame_t *frame)
{
    ngx_buf_t        *b;
    ngx_chain_t      *cl, **ll;
    msgpack_sbuffer   sb;

    if (peer->closed) {
        return NGX_ERROR;
    }

    msgpack_sbuffer_init(&sb);

    if (pr_frame_encode(frame, &sb) != PR_OK || sb.size > peer->max_frame) {
        msgpack_sbuffer_destroy(&sb);
        return NGX_ERROR;
    }

    /*
     * The bytes are freed once written, the link and buf kept for the
     * next frame: a connection that lives long (a run that takes many
     * input frames) costs its pool nothing per frame.
     */
    cl = ngx_chain_get_free_buf(pool, &peer->free);
    if (cl == NULL) {
        msgpack_sbuffer_destroy(&sb);
        return NGX_ERROR;
    }

    b = cl->buf;
    ngx_memzero(b, sizeof(ngx_buf_t));

    b->start = ngx_alloc(sb.size, peer->log);
    if (b->start == NULL) {
        msgpack_sbuffer_destroy(&sb);
        cl->next = peer->free;
        peer->free = cl;
        return NGX_ERROR;
    }

    b->pos = b->start;
    b->last = ngx_cpymem(b->start, sb.data, sb.size);
    b->end = b->last;
    b->temporary = 1;
    msgpack_sbuffer_destroy(&sb);

    cl->next = NULL;

    for (ll = &peer->out; *ll; ll = &(*ll)->next) { /* void */ }
    *ll = cl;

    ngx_post_event(peer->pc.connection->write, &ngx_posted_events);

    return NGX_OK;
}


static void
ngx_http_pyrepl_peer_write_handler(ngx_event_t *wev)
{
    ngx_chain_t             *rest, *cl;
    ngx_connection_t        *c;
    ngx_http_pyrepl_peer_t  *peer;

    c = wev->data;
    peer = c->data;

    if (peer->out == NULL) {
        return;
    }

    rest = c->send_chain(c, peer->out, 0);

    if (rest == NGX_CHAIN_ERROR) {
        ngx_http_pyrepl_peer_fail(peer, "send failed");
        return;
    }

    /* what went out whole: its bytes freed, its link kept */
    while (peer->out != rest) {
        cl = peer->out;
        peer->out = cl->next;

        ngx_free(cl->buf->start);
        cl->buf->start = NULL;
        cl->next = peer->free;
        peer->free = cl;
    }

    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        ngx_http_pyrepl_peer_fail(peer, "cannot arm write event");
        return;
    }

    if (rest == NULL && peer->sent_handler) {
        peer->sent_handler(peer);     /* may free the peer */
    }
}


static void
ngx_http_pyrepl_peer_read_handler(ngx_event_t *rev)
{
    ssize_t                  n;
    ngx_int_t                rc;
    ngx_connection_t        *c;
    ngx_http_pyrepl_peer_t  *peer;

    c = rev->data;
    peer = c->data;

    if (rev->timedout) {
        ngx_http_pyrepl_peer_fail(peer, "timed out");
        return;
    }

    for ( ;; ) {
        rc = ngx_http_pyrepl_peer_dispatch(peer);

        if (rc == NGX_DONE) {
            return;                  /* the owner may have freed the peer */
        }

        if (rc == NGX_ERROR) {
            ngx_http_pyrepl_peer_fail(peer, "invalid frame");
            return;
        }

        if (peer->paused) {
            return;             /* resumed by ngx_http_pyrepl_peer_resume */
        }

        if (ngx_http_pyrepl_peer_reserve(peer) != NGX_OK) {
            ngx_http_pyrepl_peer_fail(peer, "frame too large");
            return;
        }

        n = c->recv(c, peer->in + peer->in_len, peer->in_cap - peer->in_len);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_http_pyrepl_peer_fail(peer, "connection closed");
            return;
        }

        peer->in_len += n;
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_pyrepl_peer_fail(peer, "cannot arm read event");
        return;
    }

    if (peer->read_timeout) {
        ngx_add_timer(rev, peer->read_timeout);
    }
}


/*
 * Hand every whole buffered frame to the owner, in order, and compact the
 * buffer.  Returns NGX_OK, NGX_DONE if the owner said stop, or NGX_ERROR.
 */
static ngx_int_t
ngx_http_pyrepl_peer_dispatch(ngx_http_pyrepl_peer_t *peer)
{
    int                rc;
    size_t             pos, len;
    ngx_int_t          hrc;
    pr_frame_t         frame;
    const char        *err;
    msgpack_unpacked   up;

    pos = 0;
    hrc = NGX_OK;

    while (!peer->paused) {
        rc = pr_frame_peek(peer->in + pos, peer->in_len - pos,
                           peer->max_frame, &len);

        if (rc == PR_AGAIN) {
            break;
        }

        if (rc != PR_OK) {
            ngx_log_error(NGX_LOG_ERR, peer->log, 0,
                          "pyrepl: frame from \"%V\" over %uz bytes",
                          peer->pc.name, peer->max_frame);
            return NGX_ERROR;
        }

        msgpack_unpacked_init(&up);

        if (pr_frame_decode(peer->in + pos + PR_HEADER_LEN,
                            len - PR_HEADER_LEN, &up, &frame, &err)
            != PR_OK)
        {
            msgpack_unpacked_destroy(&up);
            ngx_log_error(NGX_LOG_ERR, peer->log, 0,
                          "pyrepl: bad frame from \"%V\": %s",
                          peer->pc.name, err);
            return NGX_ERROR;
        }

        pos += len;
        peer->in_next = pos;

        hrc = peer->frame_handler ? peer->frame_handler(peer, &frame)
                                  : NGX_OK;

        msgpack_unpacked_destroy(&up);

        if (hrc != NGX_OK) {
            return NGX_DONE;
        }
    }

    if (pos) {
        peer->in_len -= pos;
        ngx_memmove(peer->in, peer->in + pos, peer->in_len);
    }

    return NGX_OK;
}


/*
 * Make room to receive: the buffer grows to hold the frame being read.
 * Whole frames have been dispatched before this is called, so a buffer
 * that is full always holds the start of a frame longer than it.
 */
static ngx_int_t
ngx_http_pyrepl_peer_reserve(ngx_http_pyrepl_peer_t *peer)
{
    u_char  *p;
    size_t   need;

    if (peer->in_len < PR_HEADER_LEN) {
        return NGX_OK;
    }

    need = PR_HEADER_LEN + (((size_t) peer->in[0] << 24)
                            | ((size_t) peer->in[1] << 16)
                            | ((size_t) peer->in[2] << 8) | peer->in[3]);

    if (need - PR_HEADER_LEN > peer->max_frame) {
        return NGX_ERROR;
    }

    if (need <= peer->in_cap) {
        return NGX_OK;
    }

    p = ngx_alloc(need, peer->log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, peer->in, peer->in_len);
    ngx_free(peer->in);

    peer->in = p;
    peer->in_cap = need;

    return NGX_OK;
}


void
ngx_http_pyrepl_peer_pause(ngx_http_pyrepl_peer_t *peer)
{
    peer->paused = 1;
}


void
ngx_http_pyrepl_peer_resume(ngx_http_pyrepl_peer_t *peer)
{
    if (!peer->paused || peer->pc.connection == NULL) {
        return;
    }

    peer->paused = 0;

    /* frames may be buffered already and the edge may have passed */
    ngx_post_event(peer->pc.connection->read, &ngx_posted_events);
}


/*
 * The owner is done with the connection, from its frame handler for the
 * last frame it expected: if the connection is fit for another exchange
 * (nothing received after that frame, nothing left to send, not paused,
 * no error seen), it is taken out of the peer and returned, its events
 * neither posted nor timed, for the caller to keep; else NULL.  Either
 * way the peer is closed.
 */
ngx_connection_t *
ngx_http_pyrepl_peer_detach(ngx_http_pyrepl_peer_t *peer)
{
    ngx_connection_t  *c;

    c = peer->pc.connection;

    if (c == NULL || peer->closed || peer->paused || peer->out != NULL
        || peer->in_next != peer->in_len
        || c->read->eof || c->read->error || c->write->error)
    {
        ngx_http_pyrepl_peer_close(peer);
        return NULL;
    }

    peer->pc.connection = NULL;
    ngx_http_pyrepl_peer_close(peer);

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    c->data = NULL;
    c->pool = NULL;

    return c;
}


static void
ngx_http_pyrepl_peer_fail(ngx_http_pyrepl_peer_t *peer, const char *reason)
{
    ngx_http_pyrepl_peer_close(peer);

    peer->fail_handler(peer, reason);
}


void
ngx_http_pyrepl_peer_close(ngx_http_pyrepl_peer_t *peer)
{
    peer->closed = 1;

    if (peer->pc.connection) {
        ngx_close_connection(peer->pc.connection);
        peer->pc.connection = NULL;
    }

    if (peer->in) {
        ngx_free(peer->in);
        peer->in = NULL;
    }

    while (peer->out) {
        ngx_free(peer->out->buf->start);
        peer->out->buf->start = NULL;
        peer->out = peer->out->next;
    }
}


static void
ngx_http_pyrepl_peer_cleanup(void *data)
{
    ngx_http_pyrepl_peer_t  *peer = data;

    ngx_http_pyrepl_peer_close(peer);
}
