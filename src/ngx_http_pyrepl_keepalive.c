/*
 * ngx_http_pyrepl_keepalive.c: the idle connections an nginx worker keeps
 * to session processes, so that a session's next run skips the socket,
 * connect and accept of a new one.  A run that ended cleanly gives its
 * connection back (ngx_http_pyrepl_keepalive_release); the next run in
 * that session from this worker takes it (ngx_http_pyrepl_keepalive_connect)
 * and otherwise connects as before.  A session process takes any number of
 * runs on one connection, one after the other.
 *
 * Bounds, per worker (pyrepl_connection_cache n timeout): one idle
 * connection per session, n in all (past it, the one idle longest is
 * closed), each closed once idle for timeout.  Only workers 0 to
 * PYREPL_KEEPALIVE_WORKERS - 1 keep any: a session process serves 16
 * connections at once (WK_IO_MAX_CONNS), and idle ones from nginx take
 * half of them at most, whatever worker_processes says.
 *
 * An idle connection is watched: anything on it (EOF from a session
 * process that was deleted, restarted, rolled back to a snapshot or
 * crashed; a byte nothing asked for) closes it at once, and so do its
 * timeout and nginx closing idle connections (a worker that exits, or
 * runs short of worker_connections).  Taking one checks once more that
 * nothing came, as the event may still wait in this loop iteration, and
 * connects anew if something did.  A session process that goes away
 * during a run still ends it "crashed", as on a new connection.
 *
 * The connection closing during a run interrupts it (that is how a client
 * that leaves stops its code), so only a connection whose run completed
 * with nothing else pending comes back here (ngx_http_pyrepl_peer_detach);
 * every other end closes it.
 */

#include "ngx_http_pyrepl_keepalive.h"


#define PYREPL_KEEPALIVE_WORKERS  8


typedef struct {
    ngx_str_node_t                 node;       /* str: the session id */
    ngx_queue_t                    queue;      /* cached (newest first) */
                                               /* or free */
    ngx_connection_t              *connection;
    u_char                         id[PYREPL_ID_LEN];
} ngx_http_pyrepl_keepalive_item_t;


typedef struct {
    ngx_rbtree_t                   rbtree;     /* cached, by session id */
    ngx_rbtree_node_t              sentinel;
    ngx_queue_t                    cache;
    ngx_queue_t                    free;
    ngx_msec_t                     timeout;
} ngx_http_pyrepl_keepalive_t;


static ngx_connection_t *ngx_http_pyrepl_keepalive_take(u_char *id);
static ngx_http_pyrepl_keepalive_item_t *ngx_http_pyrepl_keepalive_find(
    u_char *id, uint32_t hash);
static ngx_uint_t ngx_http_pyrepl_keepalive_quiet(ngx_connection_t *c);
static void ngx_http_pyrepl_keepalive_close_handler(ngx_event_t *ev);
static void ngx_http_pyrepl_keepalive_free(
    ngx_http_pyrepl_keepalive_item_t *item);


/* this worker's cache; NULL: it keeps none */
static ngx_http_pyrepl_keepalive_t  *ngx_http_pyrepl_keepalive;


/* In each worker at start: the cache, empty, if this worker keeps one. */
ngx_int_t
ngx_http_pyrepl_keepalive_init(ngx_cycle_t *cycle,
    ngx_http_pyrepl_main_conf_t *pmcf)
{
    ngx_uint_t                         i;
    ngx_http_pyrepl_keepalive_t       *ka;
    ngx_http_pyrepl_keepalive_item_t  *items;

    if (pmcf->conn_cache == 0 || ngx_worker >= PYREPL_KEEPALIVE_WORKERS) {
        return NGX_OK;
    }

    ka = ngx_pcalloc(cycle->pool, sizeof(ngx_http_pyrepl_keepalive_t));
    items = ngx_pcalloc(cycle->pool,
                        pmcf->conn_cache
                        * sizeof(ngx_http_pyrepl_keepalive_item_t));

    if (ka == NULL || items == NULL) {
        return NGX_ERROR;
    }

    ngx_rbtree_init(&ka->rbtree, &ka->sentinel, ngx_str_rbtree_insert_value);
    ngx_queue_init(&ka->cache);
    ngx_queue_init(&ka->free);

    for (i = 0; i < pmcf->conn_cache; i++) {
        ngx_queue_insert_tail(&ka->free, &items[i].queue);
    }

    ka->timeout = pmcf->conn_cache_timeout;

    ngx_http_pyrepl_keepalive = ka;

    return NGX_OK;
}


/*
 * Connect peer to session id's process, whose socket is at path: on the
 * idle connection this worker keeps to it, if there is one and it is
 * still open, else on a new one.  Returns what
 * ngx_http_pyrepl_peer_connect() does.
 */
ngx_int_t
ngx_http_pyrepl_keepalive_connect(ngx_http_pyrepl_peer_t *peer, u_char *id,
    ngx_str_t *path, ngx_pool_t *pool)
{
    ngx_connection_t  *c;

    c = ngx_http_pyrepl_keepalive_take(id);

    if (c != NULL) {
        return ngx_http_pyrepl_peer_attach(peer, c, path, pool);
    }

    return ngx_http_pyrepl_peer_connect(peer, path, pool);
}


/*
 * The owner of peer, a connection to session id's process, is done with
 * it (from its frame handler, see ngx_http_pyrepl_peer_detach): keep the
 * connection if it is fit for the next run, else close it.  The peer is
 * closed either way.
 */
void
ngx_http_pyrepl_keepalive_release(ngx_http_pyrepl_peer_t *peer, u_char *id)
{
    uint32_t                           hash;
    ngx_queue_t                       *q;
    ngx_connection_t                  *c;
    ngx_http_pyrepl_keepalive_t       *ka;
    ngx_http_pyrepl_keepalive_item_t  *item;

    c = ngx_http_pyrepl_peer_detach(peer);

    if (c == NULL) {
        return;
    }

    ka = ngx_http_pyrepl_keepalive;
    hash = ngx_crc32_short(id, PYREPL_ID_LEN);

    if (ka == NULL || ngx_exiting || ngx_terminate
        || ngx_http_pyrepl_keepalive_find(id, hash) != NULL)
    {
        ngx_close_connection(c);
        return;
    }

    if (ngx_queue_empty(&ka->free)) {
        q = ngx_queue_last(&ka->cache);
        item = ngx_queue_data(q, ngx_http_pyrepl_keepalive_item_t, queue);

        ngx_close_connection(item->connection);
        ngx_http_pyrepl_keepalive_free(item);
    }

    q = ngx_queue_head(&ka->free);
    ngx_queue_remove(q);
    ngx_queue_insert_head(&ka->cache, q);

    item = ngx_queue_data(q, ngx_http_pyrepl_keepalive_item_t, queue);
    item->connection = c;
    ngx_memcpy(item->id, id, PYREPL_ID_LEN);
    item->node.str.len = PYREPL_ID_LEN;
    item->node.str.data = item->id;
    item->node.node.key = hash;
    ngx_rbtree_insert(&ka->rbtree, &item->node.node);

    c->data = item;
    c->idle = 1;
    c->log = ngx_cycle->log;
    c->read->log = ngx_cycle->log;
    c->write->log = ngx_cycle->log;
    c->read->handler = ngx_http_pyrepl_keepalive_close_handler;
    c->write->handler = ngx_http_empty_handler;

    ngx_reusable_connection(c, 1);
    ngx_add_timer(c->read, ka->timeout);

    if (c->read->ready) {
        ngx_http_pyrepl_keepalive_close_handler(c->read);
    }
}


/*
 * The idle connection to session id's process, out of the cache and no
 * longer idle; NULL if there is none or it is no longer quiet (closed).
 */
static ngx_connection_t *
ngx_http_pyrepl_keepalive_take(u_char *id)
{
    ngx_connection_t                  *c;
    ngx_http_pyrepl_keepalive_item_t  *item;

    if (ngx_http_pyrepl_keepalive == NULL) {
        return NULL;
    }

    item = ngx_http_pyrepl_keepalive_find(id,
                                          ngx_crc32_short(id, PYREPL_ID_LEN));
    if (item == NULL) {
        return NULL;
    }

    c = item->connection;
    ngx_http_pyrepl_keepalive_free(item);

    if (!ngx_http_pyrepl_keepalive_quiet(c)) {
        ngx_close_connection(c);
        return NULL;
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    ngx_reusable_connection(c, 0);
    c->idle = 0;
    c->data = NULL;

    return c;
}


static ngx_http_pyrepl_keepalive_item_t *
ngx_http_pyrepl_keepalive_find(u_char *id, uint32_t hash)
{
    ngx_str_t        key;
    ngx_str_node_t  *node;

    key.len = PYREPL_ID_LEN;
    key.data = id;

    node = ngx_str_rbtree_lookup(&ngx_http_pyrepl_keepalive->rbtree, &key,
                                 hash);
    if (node == NULL) {
        return NULL;
    }

    return (ngx_http_pyrepl_keepalive_item_t *)
               ((u_char *) node
                - offsetof(ngx_http_pyrepl_keepalive_item_t, node));
}


/*
 * Whether nothing has come on an idle connection: no EOF, no error, no
 * byte (a peek, which takes nothing).
 */
static ngx_uint_t
ngx_http_pyrepl_keepalive_quiet(ngx_connection_t *c)
{
    u_char   byte;
    ssize_t  n;

    n = recv(c->fd, &byte, 1, MSG_PEEK);

    return n == -1 && ngx_socket_errno == NGX_EAGAIN;
}


/*
 * An idle connection's read event: something came (closed, unless it is
 * a spurious wake-up), its timeout passed, or nginx closes idle
 * connections (c->close).
 */
static void
ngx_http_pyrepl_keepalive_close_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c;

    c = ev->data;

    if (!c->close && !ev->timedout && ngx_http_pyrepl_keepalive_quiet(c)) {
        ev->ready = 0;

        if (ngx_handle_read_event(ev, 0) == NGX_OK) {
            return;
        }
    }

    ngx_http_pyrepl_keepalive_free(c->data);
    ngx_close_connection(c);
}


/* The item goes back to the free list, its connection forgotten. */
static void
ngx_http_pyrepl_keepalive_free(ngx_http_pyrepl_keepalive_item_t *item)
{
    ngx_rbtree_delete(&ngx_http_pyrepl_keepalive->rbtree, &item->node.node);

    ngx_queue_remove(&item->queue);
    ngx_queue_insert_head(&ngx_http_pyrepl_keepalive->free, &item->queue);

    item->connection = NULL;
}
