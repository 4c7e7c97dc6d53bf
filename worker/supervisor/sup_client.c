/*
 * sup_client.c: the supervisor's control connections.  Each is an nginx
 * worker doing one request at a time: it sends a request frame and waits
 * for the reply, then may send another or close.  Requests are handled as
 * soon as they are whole, in order, and replies are flushed at once; the
 * rest waits for POLLOUT.  A client that half-closes still gets its
 * replies.  A malformed or oversized frame closes that connection only.
 *
 * A create may have to wait for a pool process (sup_pool.c): its reply is
 * deferred, and the connection takes no further request (nor reads) until
 * sup_client_reply() sends it, so replies stay in request order.  A
 * client that hangs up meanwhile is closed and its wait cancelled.
 *
 * Connections are closed in place (marked) while the poll results are
 * being walked, and swept out of the array afterwards, so the indices the
 * main loop uses stay valid for one round.
 */

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sup.h"
#include "wk_conn.h"
#include "wk_log.h"


/* stop reading a client that leaves this much of its replies unread */
#define SUP_CLIENT_MAX_PENDING  (256 * 1024)


struct sup_client_s {
    wk_conn_t   conn;
    unsigned    eof:1;       /* peer shut its side: close when flushed */
    unsigned    closed:1;    /* descriptor closed, sweep the entry */
    unsigned    waiting:1;   /* a reply is deferred */
};


static sup_client_t  **sup_clients;
static size_t          sup_nclients;
static size_t          sup_cclients;


static void sup_client_close(sup_client_t *c);
static int sup_client_dispatch(const sup_conf_t *conf, sup_client_t *c);


/*
 * Accept every pending connection.  Returns 0, or -1 when out of
 * descriptors or memory (logged): the caller stops polling the listening
 * socket for a moment instead of spinning on it.
 */
int
sup_client_accept(int listen_fd)
{
    int              fd;
    sup_client_t    *c, **p;

    for ( ;; ) {
        fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd == -1) {
            switch (errno) {
            case EINTR:
            case ECONNABORTED:
                continue;
            case EAGAIN:
#if EWOULDBLOCK != EAGAIN
            case EWOULDBLOCK:
#endif
                return 0;
            default:
                wk_log("accept4() failed: %s", strerror(errno));
                return -1;
            }
        }

        if (sup_nclients == sup_cclients) {
            p = sup_grow(sup_clients, &sup_cclients, sizeof(sup_client_t *),
                         16, "the client table");
            if (p == NULL) {
                goto fail;
            }

            sup_clients = p;
        }

        c = calloc(1, sizeof(sup_client_t));
        if (c == NULL) {
            wk_log("cannot allocate a client");
            goto fail;
        }

        if (wk_conn_init(&c->conn, fd, SUP_MAX_REQUEST) != WK_OK) {
            wk_conn_close(&c->conn);
            free(c);
            continue;
        }

        sup_clients[sup_nclients++] = c;
    }

fail:

    if (close(fd) == -1) {
        wk_log("close(%d) failed: %s", fd, strerror(errno));
    }

    return -1;
}


size_t
sup_client_count(void)
{
    return sup_nclients;
}


void
sup_client_pollfd(size_t i, struct pollfd *pfd)
{
    sup_client_t  *c;

    c = sup_clients[i];

    pfd->fd = c->closed ? -1 : c->conn.fd;
    pfd->events = 0;
    pfd->revents = 0;

    if (!c->eof && !c->waiting
        && wk_conn_pending(&c->conn) < SUP_CLIENT_MAX_PENDING)
    {
        pfd->events |= POLLIN;
    }

    if (wk_conn_pending(&c->conn) > 0) {
        pfd->events |= POLLOUT;
    }
}


static void
sup_client_close(sup_client_t *c)
{
    if (c->waiting) {
        sup_pool_cancel(c);
        sup_purge_cancel(c);
        sup_ended_cancel(c);
        c->waiting = 0;
    }

    wk_conn_close(&c->conn);
    c->closed = 1;
}


/* Handle every whole request buffered; 0, or -1 on a bad frame. */
static int
sup_client_dispatch(const sup_conf_t *conf, sup_client_t *c)
{
    int               rc;
    pr_frame_t        req, reply;
    sup_err_t         err;
    msgpack_unpacked  up;

    msgpack_unpacked_init(&up);

    while (!c->waiting) {
        rc = wk_conn_next(&c->conn, &up, &req);

        if (rc == 0) {
            break;
        }

        if (rc != 1) {
            wk_log("closing control connection %d after a bad frame",
                   c->conn.fd);
            goto fail;
        }

        if (sup_request(conf, c, &req, &reply, &err) == 1) {
            c->waiting = 1;
            break;
        }

        rc = wk_conn_send(&c->conn, &reply);
        sup_request_release(&reply);

        if (rc != WK_OK) {
            goto fail;
        }
    }

    msgpack_unpacked_destroy(&up);

    return 0;

fail:

    msgpack_unpacked_destroy(&up);

    return -1;
}


void
sup_client_event(const sup_conf_t *conf, size_t i, short revents)
{
    int            rc;
    sup_client_t  *c;

    c = sup_clients[i];

    if (c->closed || revents == 0) {
        return;
    }

    if (revents & POLLNVAL) {
        wk_log("control connection %d is not open", c->conn.fd);
        c->conn.fd = -1;
        sup_client_close(c);
        return;
    }

    if (c->waiting && (revents & (POLLHUP | POLLERR))) {
        /* gone before its reply: nothing is made for it */
        sup_client_close(c);
        return;
    }

    if (!c->eof && !c->waiting
        && (revents & (POLLIN | POLLHUP | POLLERR)))
    {
        rc = wk_conn_read(&c->conn);

        if (rc == WK_ERROR) {
            sup_client_close(c);
            return;
        }

        if (rc == WK_EOF) {
            c->eof = 1;
        }

        if (sup_client_dispatch(conf, c) == -1) {
            sup_client_close(c);
            return;
        }
    }

    if (wk_conn_pending(&c->conn) > 0
        && wk_conn_flush(&c->conn) == WK_ERROR)
    {
        sup_client_close(c);
        return;
    }

    if (c->eof && !c->waiting && wk_conn_pending(&c->conn) == 0) {
        sup_client_close(c);
    }
}


int
sup_client_reply(const sup_conf_t *conf, sup_client_t *c, const char *id,
    pid_t pid, const sup_err_t *err)
{
    pr_frame_t  reply;

    memset(&reply, 0, sizeof(pr_frame_t));

    if (pid > 0) {
        reply.type = PR_T_OK;
        pr_set_str(&reply, id, id, PYREPL_ID_LEN);
        pr_set_int(&reply, pid, pid);

    } else {
        reply.type = PR_T_FAIL;
        pr_set_cstr(&reply, errcode, err->code);
        pr_set_cstr(&reply, message, err->message);
    }

    return sup_client_answer(conf, c, &reply);
}


int
sup_client_answer(const sup_conf_t *conf, sup_client_t *c,
    const pr_frame_t *reply)
{
    if (c->closed || !c->waiting) {
        return -1;
    }

    c->waiting = 0;

    if (wk_conn_send(&c->conn, reply) != WK_OK
        || wk_conn_flush(&c->conn) == WK_ERROR)
    {
        sup_client_close(c);
        return -1;
    }

    /* requests that came in meanwhile */
    if (sup_client_dispatch(conf, c) == -1
        || wk_conn_flush(&c->conn) == WK_ERROR)
    {
        sup_client_close(c);
        return 0;
    }

    if (c->eof && !c->waiting && wk_conn_pending(&c->conn) == 0) {
        sup_client_close(c);
    }

    return 0;
}


void
sup_client_sweep(void)
{
    size_t  i, j;

    for (i = 0, j = 0; i < sup_nclients; i++) {
        if (sup_clients[i]->closed) {
            free(sup_clients[i]);
            continue;
        }

        sup_clients[j++] = sup_clients[i];
    }

    sup_nclients = j;
}


void
sup_client_close_all(void)
{
    size_t  i;

    for (i = 0; i < sup_nclients; i++) {
        if (!sup_clients[i]->closed) {
            sup_client_close(sup_clients[i]);
        }
    }

    sup_client_sweep();

    free(sup_clients);
    sup_clients = NULL;
    sup_cclients = 0;
}
