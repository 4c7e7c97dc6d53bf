/*
 * wk_io.c: the connections, output pipeline and run deadline that both
 * kinds of session process share (see wk_io.h).  Nothing here blocks but
 * wk_io_flush_wait(), at the very end of a process.
 */

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wk_io.h"
#include "wk_log.h"
#include "wk_time.h"


#define WK_IO_FRAME_SLACK   64      /* a frame's bytes besides its text */
#define WK_IO_MAX_WAIT      60000   /* ms, the longest poll() */


static int wk_io_accept(wk_io_t *io);
static void wk_io_conn_event(wk_io_t *io, int i, int fd, short revents);
static void wk_io_conn_frames(wk_io_t *io, int i);
static void wk_io_release(wk_io_t *io);
static ssize_t wk_io_pipe_read(wk_io_t *io, wk_io_pipe_t *p);
static void wk_io_forward(wk_io_t *io, wk_io_pipe_t *p, const uint8_t *buf,
    size_t len);


int
wk_io_init(wk_io_t *io, const char *id, int listen_fd, int alive_fd,
    size_t max_frame)
{
    int  i;

    io->id = id;
    io->listen_fd = listen_fd;
    io->alive_fd = alive_fd;
    io->max_frame = max_frame;

    for (i = 0; i < WK_IO_MAX_CONNS; i++) {
        memset(&io->conns[i], 0, sizeof(wk_io_conn_t));
        io->conns[i].conn.fd = -1;
    }

    io->accept_resume = 0;

    for (i = 0; i < 2; i++) {
        io->pipes[i].fd = -1;
        io->pipes[i].type = (i == 0) ? PR_T_STDOUT : PR_T_STDERR;
        io->pipes[i].ncarry = 0;
    }

    io->writers_gone = 0;

    wk_io_run_end(io);

    if (io->rbuf != NULL) {
        return 0;
    }

    /* sanitising may triple a chunk: every frame stays under max_frame */
    io->chunk = WK_IO_CHUNK;

    if (io->chunk > (max_frame - WK_IO_FRAME_SLACK) / 3) {
        io->chunk = (max_frame - WK_IO_FRAME_SLACK) / 3;
    }

    io->rbuf = malloc(io->chunk + 4);
    io->tbuf = malloc(3 * (io->chunk + 4));

    if (io->rbuf == NULL || io->tbuf == NULL) {
        wk_log("session %s: cannot allocate the output buffers", id);
        free(io->rbuf);
        free(io->tbuf);
        io->rbuf = NULL;
        io->tbuf = NULL;
        return -1;
    }

    return 0;
}


int
wk_io_poll_set(wk_io_t *io, struct pollfd *pfds, int nown, int *map,
    int64_t *wake)
{
    int         i, n, blocked;
    int64_t     now;
    wk_conn_t  *c;

    now = wk_msec();
    *wake = 0;

    if (io->accept_resume != 0 && now >= io->accept_resume) {
        io->accept_resume = 0;
    }

    pfds[WK_IO_POLL_LISTEN].fd = io->accept_resume ? -1 : io->listen_fd;
    pfds[WK_IO_POLL_LISTEN].events = POLLIN;

    pfds[WK_IO_POLL_ALIVE].fd = io->alive_fd;
    pfds[WK_IO_POLL_ALIVE].events = POLLIN;

    blocked = wk_io_backed_up(io);

    for (i = 0; i < 2; i++) {
        pfds[WK_IO_POLL_PIPES + i].fd = blocked ? -1 : io->pipes[i].fd;
        pfds[WK_IO_POLL_PIPES + i].events = POLLIN;
    }

    n = WK_IO_POLL_OWN + nown;

    for (i = 0; i < WK_IO_MAX_CONNS; i++) {
        if (!io->conns[i].used) {
            continue;
        }

        c = &io->conns[i].conn;

        /* a held one is not read (POLLHUP still says it went away) */
        pfds[n].fd = c->fd;
        pfds[n].events = (io->conns[i].held ? 0 : POLLIN)
                         | (wk_conn_pending(c) ? POLLOUT : 0);
        map[n - WK_IO_POLL_OWN - nown] = i;
        n++;
    }

    for (i = 0; i < n; i++) {
        pfds[i].revents = 0;
    }

    if (io->accept_resume != 0) {
        *wake = io->accept_resume;
    }

    if (io->run_active && io->deadline != 0 && !io->timed_out
        && (*wake == 0 || io->deadline < *wake))
    {
        *wake = io->deadline;
    }

    for (i = 0; i < WK_IO_MAX_CONNS && !io->run_active; i++) {
        if (io->conns[i].used && io->conns[i].held) {
            *wake = now;                /* released by wk_io_events() */
        }
    }

    return n;
}


int
wk_io_poll_timeout(int64_t now, int64_t wake)
{
    if (wake == 0) {
        return -1;
    }

    if (wake <= now) {
        return 0;
    }

    return (wake - now > WK_IO_MAX_WAIT) ? WK_IO_MAX_WAIT
                                         : (int) (wake - now);
}


int
wk_io_events(wk_io_t *io, const struct pollfd *pfds, int nfds, int nown,
    const int *map)
{
    int    i, first;
    short  ev;

    wk_io_release(io);

    for (i = 0; i < 2; i++) {
        if (pfds[WK_IO_POLL_PIPES + i].revents != 0
            && io->pipes[i].fd != -1
            && wk_io_pipe_read(io, &io->pipes[i]) < 0)
        {
            return -1;
        }
    }

    first = WK_IO_POLL_OWN + nown;

    for (i = first; i < nfds; i++) {
        if (pfds[i].revents != 0) {
            wk_io_conn_event(io, map[i - first], pfds[i].fd,
                             pfds[i].revents);
        }
    }

    if (pfds[WK_IO_POLL_ALIVE].revents != 0) {
        /*
         * nginx never writes there: this is EOF, every nginx process is
         * gone, and so, maybe, is what would have ended this one (a
         * keeper and supervisor killed together).
         */
        wk_log("session %s: nginx is gone, ending", io->id);
        return WK_IO_GONE;
    }

    ev = pfds[WK_IO_POLL_LISTEN].revents;

    if (ev & (POLLERR | POLLHUP | POLLNVAL)) {
        wk_log("session %s: the listening socket failed (revents %#x)",
               io->id, (unsigned) ev);
        return -1;
    }

    if ((ev & POLLIN) && wk_io_accept(io) != 0) {
        return -1;
    }

    return 0;
}


int
wk_io_deadline(wk_io_t *io)
{
    if (!io->run_active || io->deadline == 0 || io->timed_out
        || wk_msec() < io->deadline)
    {
        return 0;
    }

    io->timed_out = 1;

    return 1;
}


void
wk_io_run_begin(wk_io_t *io, int i, int64_t timeout_ms)
{
    io->run_active = 1;
    io->run_conn = i;
    io->timed_out = 0;
    io->started = wk_msec();
    io->deadline = (timeout_ms > 0) ? io->started + timeout_ms : 0;
}


void
wk_io_run_end(wk_io_t *io)
{
    io->run_active = 0;
    io->run_conn = -1;
    io->timed_out = 0;
    io->deadline = 0;
    io->tail = NULL;
}


int
wk_io_may_hold(const wk_io_t *io, int op)
{
    int  i;

    if (!io->run_active
        || (!op && (io->run_conn >= 0 || io->tail != NULL)))
    {
        return 0;
    }

    for (i = 0; i < WK_IO_MAX_CONNS; i++) {
        if (io->conns[i].used && io->conns[i].held) {
            return 0;
        }
    }

    return 1;
}


/* Once no run is active, a held connection's frames come in again. */
static void
wk_io_release(wk_io_t *io)
{
    int  i;

    for (i = 0; i < WK_IO_MAX_CONNS && !io->run_active; i++) {
        if (io->conns[i].used && io->conns[i].held) {
            io->conns[i].held = 0;
            wk_io_conn_frames(io, i);
        }
    }
}


const char *
wk_io_status(const wk_io_t *io, int how)
{
    if (io->timed_out) {
        /* however the code took the interrupt, it ran past its time */
        return "timeout";
    }

    switch (how) {

    case WK_IO_RUN_OK:
        return "ok";

    case WK_IO_RUN_INTERRUPTED:
        return "interrupted";

    default:
        return "error";
    }
}


int
wk_io_discard(wk_io_t *io)
{
    if (wk_io_drain(io) < 0) {
        return -1;
    }

    io->pipes[0].ncarry = 0;
    io->pipes[1].ncarry = 0;

    return 0;
}


int
wk_io_drain(wk_io_t *io)
{
    int      i, rc;
    size_t   total;
    ssize_t  n;

    rc = 0;

    for (i = 0; i < 2; i++) {
        total = 0;

        while (io->pipes[i].fd != -1) {
            if (total >= WK_IO_DRAIN_MAX) {
                rc = 1;
                break;
            }

            n = wk_io_pipe_read(io, &io->pipes[i]);

            if (n < 0) {
                return -1;
            }

            if (n == 0) {
                break;
            }

            total += (size_t) n;
        }
    }

    return rc;
}


void
wk_io_flush_carry(wk_io_t *io)
{
    int  i;

    for (i = 0; i < 2; i++) {
        if (io->pipes[i].ncarry != 0) {
            wk_io_forward(io, &io->pipes[i], io->pipes[i].carry,
                          io->pipes[i].ncarry);
            io->pipes[i].ncarry = 0;
        }
    }
}


int
wk_io_output_end(wk_io_t *io)
{
    if (wk_io_drain(io) < 0) {
        return -1;
    }

    wk_io_flush_carry(io);

    return 0;
}


int
wk_io_backed_up(const wk_io_t *io)
{
    return io->run_active && io->run_conn >= 0
           && wk_conn_pending(&io->conns[io->run_conn].conn)
              > WK_IO_HIGH_WATER;
}


void
wk_io_send(wk_io_t *io, int i, const pr_frame_t *f)
{
    if (i < 0 || !io->conns[i].used) {
        return;
    }

    if (wk_conn_send(&io->conns[i].conn, f) != WK_OK) {
        wk_io_close(io, i, "failed to queue a frame");
    }
}


void
wk_io_send_watchers(wk_io_t *io, const pr_frame_t *f)
{
    int  i;

    for (i = 0; i < WK_IO_MAX_CONNS; i++) {
        if (!io->conns[i].used || !io->conns[i].watch || i == io->run_conn) {
            continue;
        }

        if (wk_conn_pending(&io->conns[i].conn) > WK_IO_HIGH_WATER) {
            wk_io_close(io, i, "a watcher does not read");
            continue;
        }

        wk_io_send(io, i, f);
        wk_io_flush(io, i);
    }
}


void
wk_io_fail(wk_io_t *io, int i, const char *code, const char *message)
{
    pr_frame_t  f;

    memset(&f, 0, sizeof(pr_frame_t));
    f.type = PR_T_FAIL;
    pr_set_cstr(&f, errcode, code);
    pr_set_cstr(&f, message, message);

    wk_io_send(io, i, &f);
}


void
wk_io_flush(wk_io_t *io, int i)
{
    if (i >= 0 && io->conns[i].used
        && wk_conn_flush(&io->conns[i].conn) == WK_ERROR)
    {
        wk_io_close(io, i, "failed to take output");
    }
}


void
wk_io_flush_wait(wk_io_t *io, int ms)
{
    int            i;
    int64_t        now, deadline;
    struct pollfd  pfd;

    i = io->run_conn;
    deadline = wk_msec() + ms;

    while (i >= 0 && io->conns[i].used
           && wk_conn_pending(&io->conns[i].conn) != 0)
    {
        if (wk_conn_flush(&io->conns[i].conn) != WK_AGAIN) {
            return;
        }

        now = wk_msec();
        if (now >= deadline) {
            wk_log("session %s: the run's connection took no output for "
                   "%d ms; %zu bytes lost", io->id, ms,
                   wk_conn_pending(&io->conns[i].conn));
            return;
        }

        pfd.fd = io->conns[i].conn.fd;
        pfd.events = POLLOUT;
        pfd.revents = 0;

        if (poll(&pfd, 1, (int) (deadline - now)) == -1 && errno != EINTR) {
            return;
        }
    }
}


void
wk_io_close(wk_io_t *io, int i, const char *why)
{
    wk_conn_close(&io->conns[i].conn);
    io->conns[i].used = 0;
    io->conns[i].watch = 0;
    io->conns[i].held = 0;

    if (i != io->run_conn) {
        return;
    }

    io->run_conn = -1;

    if (io->run_active) {
        io->lost(io, why);
    }
}


/*
 * Accept every pending connection.  A full table closes the newcomer;
 * running out of descriptors or memory pauses listening briefly.  Returns
 * 0, or -1 if the listening socket is unusable (logged).
 */
static int
wk_io_accept(wk_io_t *io)
{
    int  i, fd;

    for ( ;; ) {
        fd = accept4(io->listen_fd, NULL, NULL,
                     SOCK_CLOEXEC | SOCK_NONBLOCK);

        if (fd == -1) {
            switch (errno) {

            case EINTR:
            case ECONNABORTED:
            case EPROTO:
                continue;

            case EAGAIN:
                return 0;

            case EMFILE:
            case ENFILE:
            case ENOBUFS:
            case ENOMEM:
                wk_log("session %s: accept() failed: %s; pausing", io->id,
                       strerror(errno));
                io->accept_resume = wk_msec() + WK_IO_ACCEPT_PAUSE;
                return 0;

            default:
                wk_log("session %s: accept() failed: %s", io->id,
                       strerror(errno));
                return -1;
            }
        }

        for (i = 0; i < WK_IO_MAX_CONNS; i++) {
            if (!io->conns[i].used) {
                break;
            }
        }

        if (i == WK_IO_MAX_CONNS) {
            wk_log("session %s: %d connections open, refusing another",
                   io->id, WK_IO_MAX_CONNS);

            if (close(fd) == -1) {
                wk_log("close(%d) failed: %s", fd, strerror(errno));
            }

            continue;
        }

        if (wk_conn_init(&io->conns[i].conn, fd, io->max_frame) != WK_OK) {
            wk_conn_close(&io->conns[i].conn);
            continue;
        }

        io->conns[i].used = 1;
        io->conns[i].watch = 0;
    }
}


/*
 * Handle poll events of slot i, whose descriptor was fd when the poll set
 * was built (the slot may have been closed or reused since; stale events
 * then only cause a harmless EAGAIN).
 */
static void
wk_io_conn_event(wk_io_t *io, int i, int fd, short revents)
{
    int            rc;
    wk_io_conn_t  *c;

    c = &io->conns[i];

    if (!c->used || c->conn.fd != fd) {
        return;
    }

    if (revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) {
        rc = wk_conn_read(&c->conn);

        /* frames that arrived before EOF still count ("interrupt", close) */
        wk_io_conn_frames(io, i);

        if (!c->used) {
            return;
        }

        if (rc == WK_EOF || rc == WK_ERROR) {
            wk_io_close(io, i, rc == WK_EOF ? "closed by the peer"
                                            : "failed");
            return;
        }
    }

    if (revents & POLLOUT) {
        wk_io_flush(io, i);
    }
}


/* Hand every whole frame buffered in slot i to the frame handler. */
static void
wk_io_conn_frames(wk_io_t *io, int i)
{
    int               rc;
    size_t            consumed;
    pr_frame_t        f;
    wk_io_conn_t     *c;
    msgpack_unpacked  up;

    c = &io->conns[i];

    msgpack_unpacked_init(&up);

    while (c->used && !c->held) {
        consumed = c->conn.rconsumed;
        rc = wk_conn_next(&c->conn, &up, &f);

        if (rc == 0) {
            break;
        }

        if (rc == WK_ERROR) {
            /* logged by wk_conn_next(); say why, then hang up */
            wk_io_fail(io, i, "bad_request", "malformed or oversized frame");

            if (c->used) {
                (void) wk_conn_flush(&c->conn);
                wk_io_close(io, i, "sent a bad frame");
            }

            break;
        }

        rc = io->frame(io, i, &f);

        if (rc == WK_IO_HOLD) {
            c->conn.rconsumed = consumed;       /* taken again later */
            c->held = 1;
            break;
        }

        if (rc == WK_IO_UNKNOWN) {
            wk_io_fail(io, i, "bad_request",
                       "a session process does not take this frame type");
        }
    }

    msgpack_unpacked_destroy(&up);

    wk_io_flush(io, i);
}


/*
 * Read once from pipe p (up to io->chunk bytes after its carried bytes)
 * and forward what ends on a character boundary, or drop it all when no
 * connection wants it.  Returns the bytes read, 0 if none were ready, or
 * -1 on a fatal error (logged).
 */
static ssize_t
wk_io_pipe_read(wk_io_t *io, wk_io_pipe_t *p)
{
    size_t    total, keep;
    ssize_t   n;
    uint8_t  *buf;

    buf = io->rbuf;

    if (p->ncarry != 0) {
        memcpy(buf, p->carry, p->ncarry);
    }

    do {
        n = read(p->fd, buf + p->ncarry, io->chunk);
    } while (n == -1 && errno == EINTR);

    if (n == -1) {
        if (errno == EAGAIN) {
            return 0;
        }

        wk_log("session %s: read(%s pipe) failed: %s", io->id,
               pr_type_name(p->type), strerror(errno));
        return -1;
    }

    if (n == 0) {
        /* every holder of the write end closed it */
        if (!io->writers_gone) {
            wk_log("session %s: the %s pipe was closed by user code",
                   io->id, pr_type_name(p->type));
        }

        if (close(p->fd) == -1) {
            wk_log("close(%d) failed: %s", p->fd, strerror(errno));
        }

        p->fd = -1;
        p->ncarry = 0;
        return 0;
    }

    if (!io->run_active || (io->run_conn < 0 && io->tail == NULL)) {
        p->ncarry = 0;
        return n;
    }

    total = p->ncarry + (size_t) n;
    keep = pr_utf8_boundary(buf, total);

    p->ncarry = total - keep;
    if (p->ncarry != 0) {
        memcpy(p->carry, buf + keep, p->ncarry);
    }

    wk_io_forward(io, p, buf, keep);

    return n;
}


/* Send len bytes of p's output as one frame of valid UTF-8. */
static void
wk_io_forward(wk_io_t *io, wk_io_pipe_t *p, const uint8_t *buf, size_t len)
{
    size_t      n;
    pr_frame_t  f;

    if (len == 0 || !io->run_active) {
        return;
    }

    n = pr_utf8_sanitize(buf, len, io->tbuf);

    if (io->tail != NULL) {
        if (wk_tail_append(io->tail, io->tbuf, n) != 0) {
            wk_log("session %s: no memory to keep %zu bytes of output",
                   io->id, n);
        }

        return;
    }

    memset(&f, 0, sizeof(pr_frame_t));
    f.type = p->type;
    pr_set_str(&f, text, io->tbuf, n);

    wk_io_send_watchers(io, &f);

    if (io->run_conn >= 0) {
        wk_io_send(io, io->run_conn, &f);
    }
}
