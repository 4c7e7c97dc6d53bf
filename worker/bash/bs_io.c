/*
 * bs_io.c: the poll loop of a bash session.  One thread, one poll(2)
 * over the listening socket, the signalfd (SIGCHLD), the status pipe, the
 * shell's stdout and stderr pipes, the command pipe while commands wait
 * to be written, and the open connections (a small fixed array).
 *
 * Per connection it answers "run" (bs_shell.c frames it, or "fail
 * session_busy"), "interrupt" (stop the run) and "input" (fail
 * no_pending_input: stdin comes whole with the run, never from input
 * frames), and fails anything else.  While a run is active, pipe output
 * goes to the run's connection as stdout/stderr frames, whole UTF-8
 * characters only (an incomplete tail waits for the next read) and invalid
 * bytes replaced; between runs it is read and dropped.  When the run's
 * connection holds more than BS_IO_HIGH_WATER unsent bytes the pipes are
 * not read, so the command blocks in write() instead of this process
 * growing.
 *
 * A run ends when its status line arrives (bs_shell.c): the pipes are
 * read until empty, then error (on a non-zero status) and complete go out.
 * It is stopped by an interrupt frame, its deadline or its connection
 * going away; the stop ticks every BS_STOP_TICK_MS until the status line
 * comes: SIGINT to the shell (its trap abandons the run, see bs_shell.c)
 * and, once each, SIGINT to the run's processes (bs_proc.c); from
 * BS_STOP_KILL_MS on, SIGKILL to them instead; at BS_STOP_GIVEUP_MS, a
 * shell that still has not answered is killed.  Whatever of the run is
 * left when its status arrives (background jobs it started, a process that
 * ignored SIGINT) gets SIGKILL.
 *
 * When the shell exits, during a run (exit, an error that ends a
 * non-interactive shell, or the kill above) the run completes with its
 * exit status; then the remaining descendants are killed and the process
 * exits (0 if the shell ended by itself during a run, else 1).
 */

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bs_session.h"
#include "wk_log.h"
#include "wk_time.h"


#define BS_IO_HIGH_WATER    ((size_t) 1024 * 1024) /* unsent: stop pipes */
#define BS_IO_DRAIN_MAX     ((size_t) 1024 * 1024) /* per pipe and drain */
#define BS_IO_ACCEPT_PAUSE  100                    /* ms, on EMFILE */
#define BS_IO_SEND_MS       1000                   /* last frames, at most */

/* fixed slots at the start of the poll set; connections follow */
#define BS_IO_POLL_LISTEN   0
#define BS_IO_POLL_SIGNAL   1
#define BS_IO_POLL_STATUS   2
#define BS_IO_POLL_CMD      3
#define BS_IO_POLL_PIPES    4               /* stdout, stderr */
#define BS_IO_POLL_ALIVE    6               /* nginx's alive pipe */
#define BS_IO_POLL_CONNS    7


static int bs_io_poll_set(bs_session_t *s, struct pollfd *pfds, int *map,
    int *timeout);
static int bs_io_accept(bs_session_t *s);
static void bs_io_conn_event(bs_session_t *s, int i, int fd,
    short revents);
static void bs_io_conn_frames(bs_session_t *s, int i);
static void bs_io_conn_close(bs_session_t *s, int i, const char *why);
static void bs_io_conn_flush(bs_session_t *s, int i);
static void bs_io_send(bs_session_t *s, int i, const pr_frame_t *f);
static void bs_io_fail(bs_session_t *s, int i, const char *code,
    const char *message);
static void bs_io_run(bs_session_t *s, int i, const pr_frame_t *f);
static void bs_io_stop(bs_session_t *s, int why);
static int bs_io_stop_tick(bs_session_t *s);
static int bs_io_complete(bs_session_t *s, int rc);
static void bs_io_outcome(bs_session_t *s, int rc, const char *ename,
    const char *evalue);
static int bs_io_end(bs_session_t *s);
static ssize_t bs_io_pipe_read(bs_session_t *s, bs_pipe_t *p);
static int bs_io_drain(bs_session_t *s);
static void bs_io_flush_carry(bs_session_t *s);
static void bs_io_forward(bs_session_t *s, bs_pipe_t *p,
    const uint8_t *buf, size_t len);
static void bs_io_send_all(bs_session_t *s);


int
bs_io_loop(bs_session_t *s)
{
    int            i, n, nfds, timeout, rc;
    short          ev;
    int            map[BS_MAX_CONNS];
    struct pollfd  pfds[BS_IO_POLL_CONNS + BS_MAX_CONNS];

    for ( ;; ) {
        nfds = bs_io_poll_set(s, pfds, map, &timeout);

        n = poll(pfds, (nfds_t) nfds, timeout);

        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }

            wk_log("session %s: poll() failed: %s", s->id, strerror(errno));
            bs_proc_kill_all(s);
            return EXIT_FAILURE;
        }

        if (pfds[BS_IO_POLL_SIGNAL].revents != 0 && bs_proc_reap(s) != 0) {
            bs_proc_kill_all(s);
            return EXIT_FAILURE;
        }

        /* the run's end first: its output and frames precede new runs */
        if (pfds[BS_IO_POLL_STATUS].revents != 0 && s->status_fd != -1) {
            rc = 0;
            n = bs_shell_status(s, &rc);

            if (n < 0 || (n == 1 && bs_io_complete(s, rc) != 0)) {
                bs_proc_kill_all(s);
                return EXIT_FAILURE;
            }
        }

        if (s->shell_exited) {
            return bs_io_end(s);
        }

        for (i = 0; i < 2; i++) {
            if (pfds[BS_IO_POLL_PIPES + i].revents != 0
                && s->pipes[i].fd != -1
                && bs_io_pipe_read(s, &s->pipes[i]) < 0)
            {
                bs_proc_kill_all(s);
                return EXIT_FAILURE;
            }
        }

        if (pfds[BS_IO_POLL_CMD].revents != 0 && bs_shell_flush(s) != 0) {
            bs_proc_kill_all(s);
            return EXIT_FAILURE;
        }

        for (i = BS_IO_POLL_CONNS; i < nfds; i++) {
            if (pfds[i].revents != 0) {
                bs_io_conn_event(s, map[i - BS_IO_POLL_CONNS], pfds[i].fd,
                                 pfds[i].revents);
            }
        }

        if (pfds[BS_IO_POLL_ALIVE].revents != 0) {
            /* EOF: every nginx process is gone (see python's py_io.c) */
            wk_log("session %s: nginx is gone, ending", s->id);
            bs_proc_kill_all(s);
            return EXIT_SUCCESS;
        }

        ev = pfds[BS_IO_POLL_LISTEN].revents;

        if (ev & (POLLERR | POLLHUP | POLLNVAL)) {
            wk_log("session %s: the listening socket failed (revents %#x)",
                   s->id, (unsigned) ev);
            bs_proc_kill_all(s);
            return EXIT_FAILURE;
        }

        if ((ev & POLLIN) && bs_io_accept(s) != 0) {
            bs_proc_kill_all(s);
            return EXIT_FAILURE;
        }

        if (s->fatal) {
            bs_proc_kill_all(s);
            return EXIT_FAILURE;
        }

        if (s->run_active && s->deadline != 0 && s->stop == 0
            && wk_msec() >= s->deadline)
        {
            bs_io_stop(s, BS_STOP_TIMEOUT);
        }

        if (s->run_active && s->stop != 0 && s->stop_next != 0
            && wk_msec() >= s->stop_next && bs_io_stop_tick(s) != 0)
        {
            bs_proc_kill_all(s);
            return EXIT_FAILURE;
        }
    }
}


/*
 * Fill the poll set: listening socket (unless paused), signalfd, status
 * pipe, command pipe (while commands wait), output pipes (unless the
 * run's connection is backed up), then every connection, with map[k] the
 * slot of pfds[BS_IO_POLL_CONNS + k].  *timeout is the time to the next
 * deadline, stop tick or listening resumption, -1 if none.  Returns the
 * number of entries.
 */
static int
bs_io_poll_set(bs_session_t *s, struct pollfd *pfds, int *map, int *timeout)
{
    int         i, n, blocked;
    int64_t     now, wake;
    wk_conn_t  *c;

    now = wk_msec();
    wake = 0;

    if (s->accept_resume != 0 && now >= s->accept_resume) {
        s->accept_resume = 0;
    }

    pfds[BS_IO_POLL_LISTEN].fd = s->accept_resume ? -1 : s->listen_fd;
    pfds[BS_IO_POLL_LISTEN].events = POLLIN;

    pfds[BS_IO_POLL_SIGNAL].fd = s->sig_fd;
    pfds[BS_IO_POLL_SIGNAL].events = POLLIN;

    pfds[BS_IO_POLL_ALIVE].fd = s->alive_fd;
    pfds[BS_IO_POLL_ALIVE].events = POLLIN;

    pfds[BS_IO_POLL_STATUS].fd = s->status_fd;
    pfds[BS_IO_POLL_STATUS].events = POLLIN;

    pfds[BS_IO_POLL_CMD].fd = bs_shell_pending(s) ? s->cmd_fd : -1;
    pfds[BS_IO_POLL_CMD].events = POLLOUT;

    blocked = s->run_active && s->run_conn >= 0
              && wk_conn_pending(&s->conns[s->run_conn].conn)
                 > BS_IO_HIGH_WATER;

    for (i = 0; i < 2; i++) {
        pfds[BS_IO_POLL_PIPES + i].fd = blocked ? -1 : s->pipes[i].fd;
        pfds[BS_IO_POLL_PIPES + i].events = POLLIN;
    }

    n = BS_IO_POLL_CONNS;

    for (i = 0; i < BS_MAX_CONNS; i++) {
        if (!s->conns[i].used) {
            continue;
        }

        c = &s->conns[i].conn;

        pfds[n].fd = c->fd;
        pfds[n].events = POLLIN | (wk_conn_pending(c) ? POLLOUT : 0);
        map[n - BS_IO_POLL_CONNS] = i;
        n++;
    }

    for (i = 0; i < n; i++) {
        pfds[i].revents = 0;
    }

    if (s->accept_resume != 0) {
        wake = s->accept_resume;
    }

    if (s->run_active && s->deadline != 0 && s->stop == 0
        && (wake == 0 || s->deadline < wake))
    {
        wake = s->deadline;
    }

    if (s->run_active && s->stop != 0 && s->stop_next != 0
        && (wake == 0 || s->stop_next < wake))
    {
        wake = s->stop_next;
    }

    if (wake == 0) {
        *timeout = -1;

    } else if (wake <= now) {
        *timeout = 0;

    } else {
        *timeout = (wake - now > 60000) ? 60000 : (int) (wake - now);
    }

    return n;
}


/*
 * Accept every pending connection.  A full table closes the newcomer;
 * running out of descriptors or memory pauses listening briefly.  Returns
 * 0, or -1 if the listening socket is unusable (logged).
 */
static int
bs_io_accept(bs_session_t *s)
{
    int  i, fd;

    for ( ;; ) {
        fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

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
                wk_log("session %s: accept() failed: %s; pausing", s->id,
                       strerror(errno));
                s->accept_resume = wk_msec() + BS_IO_ACCEPT_PAUSE;
                return 0;

            default:
                wk_log("session %s: accept() failed: %s", s->id,
                       strerror(errno));
                return -1;
            }
        }

        for (i = 0; i < BS_MAX_CONNS; i++) {
            if (!s->conns[i].used) {
                break;
            }
        }

        if (i == BS_MAX_CONNS) {
            wk_log("session %s: %d connections open, refusing another",
                   s->id, BS_MAX_CONNS);

            if (close(fd) == -1) {
                wk_log("close(%d) failed: %s", fd, strerror(errno));
            }

            continue;
        }

        if (wk_conn_init(&s->conns[i].conn, fd, s->max_frame) != WK_OK) {
            wk_conn_close(&s->conns[i].conn);
            continue;
        }

        s->conns[i].used = 1;
    }
}


/*
 * Handle poll events of slot i, whose descriptor was fd when the poll set
 * was built (the slot may have been closed or reused since; stale events
 * then only cause a harmless EAGAIN).
 */
static void
bs_io_conn_event(bs_session_t *s, int i, int fd, short revents)
{
    int         rc;
    bs_conn_t  *c;

    c = &s->conns[i];

    if (!c->used || c->conn.fd != fd) {
        return;
    }

    if (revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) {
        rc = wk_conn_read(&c->conn);

        /* frames that arrived before EOF still count ("interrupt", close) */
        bs_io_conn_frames(s, i);

        if (!c->used) {
            return;
        }

        if (rc == WK_EOF) {
            bs_io_conn_close(s, i, "was closed");
            return;
        }

        if (rc == WK_ERROR) {
            bs_io_conn_close(s, i, "failed");
            return;
        }
    }

    if (revents & POLLOUT) {
        bs_io_conn_flush(s, i);
    }
}


/* Act on every whole frame buffered on slot i. */
static void
bs_io_conn_frames(bs_session_t *s, int i)
{
    int               rc;
    bs_conn_t        *c;
    pr_frame_t        f;
    msgpack_unpacked  up;

    c = &s->conns[i];

    msgpack_unpacked_init(&up);

    while (c->used) {
        rc = wk_conn_next(&c->conn, &up, &f);

        if (rc == 0) {
            break;
        }

        if (rc < 0) {
            bs_io_fail(s, i, "bad_request", "malformed or oversized frame");

            if (c->used) {
                /* best effort: the fail frame, then close */
                (void) wk_conn_flush(&c->conn);
                bs_io_conn_close(s, i, "sent a bad frame");
            }

            break;
        }

        switch (f.type) {

        case PR_T_RUN:
            bs_io_run(s, i, &f);
            break;

        case PR_T_INTERRUPT:
            bs_io_stop(s, BS_STOP_INTERRUPT);
            break;

        case PR_T_INPUT:
            bs_io_fail(s, i, "no_pending_input",
                       "a bash run takes its stdin with the run frame");
            break;

        default:
            bs_io_fail(s, i, "bad_request",
                       "a session process does not take this frame type");
            break;
        }
    }

    msgpack_unpacked_destroy(&up);

    if (c->used) {
        bs_io_conn_flush(s, i);
    }
}


/*
 * Close slot i.  The run's connection going away stops the run; its
 * remaining output is dropped.
 */
static void
bs_io_conn_close(bs_session_t *s, int i, const char *why)
{
    wk_conn_close(&s->conns[i].conn);
    s->conns[i].used = 0;

    if (i != s->run_conn) {
        return;
    }

    s->run_conn = -1;

    if (s->run_active) {
        wk_log("session %s: the run's connection %s, stopping the run",
               s->id, why);
        bs_io_stop(s, BS_STOP_CLOSED);
    }
}


static void
bs_io_conn_flush(bs_session_t *s, int i)
{
    if (s->conns[i].used
        && wk_conn_flush(&s->conns[i].conn) == WK_ERROR)
    {
        bs_io_conn_close(s, i, "failed to take output");
    }
}


/* Queue f on slot i; a connection that cannot take it is closed. */
static void
bs_io_send(bs_session_t *s, int i, const pr_frame_t *f)
{
    if (i < 0 || !s->conns[i].used) {
        return;
    }

    if (wk_conn_send(&s->conns[i].conn, f) != WK_OK) {
        bs_io_conn_close(s, i, "failed to queue a frame");
    }
}


static void
bs_io_fail(bs_session_t *s, int i, const char *code, const char *message)
{
    pr_frame_t  f;

    memset(&f, 0, sizeof(pr_frame_t));
    f.type = PR_T_FAIL;
    pr_set_cstr(&f, errcode, code);
    pr_set_cstr(&f, message, message);

    bs_io_send(s, i, &f);
}


/*
 * A "run" frame on slot i: drop what background processes wrote since the
 * last run, record the process groups that exist, and hand the run to the
 * shell, or refuse it with a fail frame.  A failure of the pipes sets
 * s->fatal (logged).
 */
static void
bs_io_run(bs_session_t *s, int i, const pr_frame_t *f)
{
    const char  *code, *message;

    if (s->run_active) {
        bs_io_fail(s, i, "session_busy", "another run is in progress");
        return;
    }

    if (bs_io_drain(s) < 0) {
        bs_io_fail(s, i, "unavailable", "the session is failing");
        s->fatal = 1;
        return;
    }

    s->pipes[0].ncarry = 0;
    s->pipes[1].ncarry = 0;

    if (bs_proc_snapshot(s) != 0) {
        bs_io_fail(s, i, "unavailable", "the session cannot list processes");
        return;
    }

    if (bs_shell_run(s, f, &code, &message) != 0) {
        bs_io_fail(s, i, code, message);
        return;
    }

    s->run_active = 1;
    s->run_conn = i;
    s->count++;
    s->started = wk_msec();
    s->deadline = 0;
    s->stop = 0;
    s->stop_next = 0;
    s->stop_killed = 0;
    bs_proc_stop_reset(s);

    if (pr_has(f, timeout_ms) && f->timeout_ms > 0) {
        s->deadline = s->started + f->timeout_ms;
    }

    if (bs_shell_flush(s) != 0) {
        s->fatal = 1;
    }
}


/*
 * Begin stopping the active run for reason why; the first reason stays.
 * The first tick comes at once.
 */
static void
bs_io_stop(bs_session_t *s, int why)
{
    if (!s->run_active || s->stop != 0) {
        return;
    }

    s->stop = why;
    s->stop_started = wk_msec();
    s->stop_next = s->stop_started;
    s->stop_killed = 0;
    bs_proc_stop_reset(s);
}


/*
 * One tick of a stop (see the top of the file).  The order within a tick
 * matters: while SIGINT is used, the shell gets it before the processes
 * it waits for, so that its trap is pending when they die and no further
 * command of the run starts; once SIGKILL is used, the processes get it
 * first, so that the short-lived job the trap starts is not killed.
 * Returns 0 or -1 (logged).
 */
static int
bs_io_stop_tick(bs_session_t *s)
{
    int64_t  now, elapsed;

    now = wk_msec();
    elapsed = now - s->stop_started;

    if (elapsed >= BS_STOP_GIVEUP_MS) {
        if (!s->shell_killed) {
            wk_log("session %s: the shell did not end the run within %d ms "
                   "of being asked to; killing it", s->id,
                   BS_STOP_GIVEUP_MS);

            if (kill(s->shell_pid, SIGKILL) == -1 && errno != ESRCH) {
                wk_log("session %s: kill(%d, SIGKILL) failed: %s", s->id,
                       (int) s->shell_pid, strerror(errno));
                return -1;
            }

            s->shell_killed = 1;
        }

        /* its exit comes through SIGCHLD */
        s->stop_next = 0;
        return 0;
    }

    if (elapsed >= BS_STOP_KILL_MS) {
        if (!s->stop_killed) {
            wk_log("session %s: the run did not stop within %d ms of "
                   "SIGINT; sending SIGKILL", s->id, BS_STOP_KILL_MS);
            s->stop_killed = 1;
        }

        if (bs_proc_signal_run(s, SIGKILL, 0) < 0) {
            return -1;
        }
    }

    /* before its bootstrap has set the trap, SIGINT would end the shell */
    if (s->shell_ready && kill(s->shell_pid, SIGINT) == -1
        && errno != ESRCH)
    {
        wk_log("session %s: kill(%d, SIGINT) failed: %s", s->id,
               (int) s->shell_pid, strerror(errno));
        return -1;
    }

    if (elapsed < BS_STOP_KILL_MS && bs_proc_signal_run(s, SIGINT, 1) < 0) {
        return -1;
    }

    s->stop_next = now + BS_STOP_TICK_MS;

    return 0;
}


/*
 * The run's status line came with status rc: read its remaining output,
 * kill what is left of a stopped run, send error and complete.  Returns 0
 * or -1 on a fatal error (logged).
 */
static int
bs_io_complete(bs_session_t *s, int rc)
{
    if (bs_io_drain(s) < 0) {
        return -1;
    }

    bs_io_flush_carry(s);

    if (s->stop != 0 && bs_proc_signal_run(s, SIGKILL, 0) < 0) {
        return -1;
    }

    bs_io_outcome(s, rc, NULL, NULL);

    s->run_active = 0;
    s->run_conn = -1;
    s->deadline = 0;
    s->stop = 0;
    s->stop_next = 0;

    return 0;
}


/*
 * Send the run's last frames to its connection: an error frame when the
 * run failed (ename and evalue if given, else CommandError and the exit
 * status), then complete.  A stopped run whose status is not 0 is
 * "interrupted" or "timeout", without an error frame unless ename is set.
 */
static void
bs_io_outcome(bs_session_t *s, int rc, const char *ename,
    const char *evalue)
{
    int          i;
    char         buf[64];
    pr_frame_t   f;
    const char  *status;

    i = s->run_conn;

    if (rc == 0 && ename == NULL) {
        status = "ok";

    } else if (s->stop == BS_STOP_TIMEOUT) {
        status = "timeout";

    } else if (s->stop != 0) {
        status = "interrupted";

    } else {
        status = "error";
    }

    if (ename == NULL && strcmp(status, "error") == 0) {
        (void) snprintf(buf, sizeof(buf), "exit status %d", rc);
        ename = "CommandError";
        evalue = buf;
    }

    if (ename != NULL) {
        memset(&f, 0, sizeof(pr_frame_t));
        f.type = PR_T_ERROR;
        pr_set_cstr(&f, ename, ename);
        pr_set_cstr(&f, evalue, evalue);
        f.has |= 1u << PR_F_traceback;
        bs_io_send(s, i, &f);
    }

    memset(&f, 0, sizeof(pr_frame_t));
    f.type = PR_T_COMPLETE;
    pr_set_cstr(&f, status, status);
    pr_set_int(&f, count, s->count);
    pr_set_int(&f, ms, wk_msec() - s->started);
    pr_set_int(&f, exit_code, rc);

    if (s->shell_exited) {
        pr_set_int(&f, ended, 1);       /* the session ends with this run */
    }

    bs_io_send(s, i, &f);

    if (i >= 0) {
        bs_io_conn_flush(s, i);
    }
}


/*
 * The shell exited.  During a run, the run completes with the shell's exit
 * status (128 + N for signal N) and the session has ended by the user's
 * doing: exit status 0, or 1 if it was killed because it did not stop.
 * Between runs it is unexpected: 1.  Everything else goes with it.
 */
static int
bs_io_end(bs_session_t *s)
{
    int          rc, code, st;
    char         buf[128];
    const char  *ename;

    st = s->shell_status;
    rc = WIFEXITED(st) ? WEXITSTATUS(st)
         : (WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 255);

    (void) bs_io_drain(s);
    bs_io_flush_carry(s);

    code = EXIT_FAILURE;
    buf[0] = '\0';

    if (s->run_active) {
        ename = NULL;

        if (s->shell_killed) {
            (void) snprintf(buf, sizeof(buf), "the shell did not stop "
                            "within %d ms and was killed; the session has "
                            "ended", BS_STOP_GIVEUP_MS);
            ename = "ShellKilled";

        } else {
            code = EXIT_SUCCESS;
        }

        wk_log("session %s: the shell exited during a run with status %d%s",
               s->id, rc, s->shell_killed ? " (killed)" : "");

        bs_io_outcome(s, rc, ename, buf);
        bs_io_send_all(s);

    } else {
        wk_log("session %s: the shell exited between runs (wait status "
               "%#x)", s->id, (unsigned) st);
    }

    bs_proc_kill_all(s);

    return code;
}


/*
 * Read once from pipe p (up to s->chunk bytes after its carried bytes)
 * and forward what ends on a character boundary, or drop it all when no
 * connection wants it.  Returns the bytes read, 0 if none were ready, or
 * -1 on a fatal error (logged).
 */
static ssize_t
bs_io_pipe_read(bs_session_t *s, bs_pipe_t *p)
{
    size_t    total, keep;
    ssize_t   n;
    uint8_t  *buf;

    buf = s->rbuf;

    if (p->ncarry != 0) {
        memcpy(buf, p->carry, p->ncarry);
    }

    do {
        n = read(p->fd, buf + p->ncarry, s->chunk);
    } while (n == -1 && errno == EINTR);

    if (n == -1) {
        if (errno == EAGAIN) {
            return 0;
        }

        wk_log("session %s: read(%s pipe) failed: %s", s->id,
               pr_type_name(p->type), strerror(errno));
        return -1;
    }

    if (n == 0) {
        /* every holder of the write end closed it */
        if (!s->shell_exited) {
            wk_log("session %s: the %s pipe was closed by user code",
                   s->id, pr_type_name(p->type));
        }

        if (close(p->fd) == -1) {
            wk_log("close(%d) failed: %s", p->fd, strerror(errno));
        }

        p->fd = -1;
        p->ncarry = 0;
        return 0;
    }

    if (!s->run_active || s->run_conn < 0) {
        p->ncarry = 0;
        return n;
    }

    total = p->ncarry + (size_t) n;
    keep = pr_utf8_boundary(buf, total);

    p->ncarry = total - keep;
    if (p->ncarry != 0) {
        memcpy(p->carry, buf + keep, p->ncarry);
    }

    bs_io_forward(s, p, buf, keep);

    return n;
}


/*
 * Read both pipes until they are empty (or BS_IO_DRAIN_MAX bytes each,
 * should a background writer keep them busy).  Returns 0 when both were
 * found empty (or closed), 1 when one still had bytes at the cap, -1 on a
 * fatal error (logged).
 */
static int
bs_io_drain(bs_session_t *s)
{
    int      i, rc;
    size_t   total;
    ssize_t  n;

    rc = 0;

    for (i = 0; i < 2; i++) {
        total = 0;

        while (s->pipes[i].fd != -1) {
            if (total >= BS_IO_DRAIN_MAX) {
                rc = 1;
                break;
            }

            n = bs_io_pipe_read(s, &s->pipes[i]);

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


/*
 * Forward a character the run never finished (sanitize makes it U+FFFD);
 * nothing can complete it any more.
 */
static void
bs_io_flush_carry(bs_session_t *s)
{
    int  i;

    for (i = 0; i < 2; i++) {
        if (s->pipes[i].ncarry != 0) {
            bs_io_forward(s, &s->pipes[i], s->pipes[i].carry,
                          s->pipes[i].ncarry);
            s->pipes[i].ncarry = 0;
        }
    }
}


/* Send len bytes of p's output as one frame of valid UTF-8. */
static void
bs_io_forward(bs_session_t *s, bs_pipe_t *p, const uint8_t *buf,
    size_t len)
{
    size_t      n;
    pr_frame_t  f;

    if (len == 0 || !s->run_active || s->run_conn < 0) {
        return;
    }

    n = pr_utf8_sanitize(buf, len, s->tbuf);

    memset(&f, 0, sizeof(pr_frame_t));
    f.type = p->type;
    pr_set_str(&f, text, s->tbuf, n);

    bs_io_send(s, s->run_conn, &f);
}


/*
 * Before the process exits: write what the run's connection holds,
 * waiting for a slow peer up to BS_IO_SEND_MS.
 */
static void
bs_io_send_all(bs_session_t *s)
{
    int            i;
    int64_t        now, deadline;
    struct pollfd  pfd;

    i = s->run_conn;
    deadline = wk_msec() + BS_IO_SEND_MS;

    while (i >= 0 && s->conns[i].used
           && wk_conn_pending(&s->conns[i].conn) != 0)
    {
        if (wk_conn_flush(&s->conns[i].conn) != WK_AGAIN) {
            return;
        }

        now = wk_msec();
        if (now >= deadline) {
            wk_log("session %s: the run's connection took no output for "
                   "%d ms; %zu bytes lost", s->id, BS_IO_SEND_MS,
                   wk_conn_pending(&s->conns[i].conn));
            return;
        }

        pfd.fd = s->conns[i].conn.fd;
        pfd.events = POLLOUT;
        pfd.revents = 0;

        if (poll(&pfd, 1, (int) (deadline - now)) == -1 && errno != EINTR) {
            return;
        }
    }
}
