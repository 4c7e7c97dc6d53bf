/*
 * bs_io.c: the poll loop of a bash session.  One thread, one poll(2)
 * over the signalfd (SIGCHLD), the status pipe, the command pipe while
 * commands wait to be written, and what every session process polls
 * (wk_io.h): the listening socket, nginx's alive pipe, the shell's stdout
 * and stderr pipes and the open connections.
 *
 * Per connection it answers "run" (bs_shell.c frames it, or "fail
 * session_busy"; one sent while a run whose connection went away is being
 * stopped waits for it, WK_IO_HOLD; a detached one is a background
 * command, bs_bg.c),
 * "interrupt" (stop the run), "input" (fail no_pending_input: stdin comes
 * whole with the run, never from input frames), "status" and "tail" (the
 * background command's, bs_bg.c), and fails anything else.  The shell's
 * output goes to the run's connection as wk_io.h says.
 *
 * A run ends when its status line arrives (bs_shell.c): the pipes are
 * read until empty, then error (on a non-zero status) and complete go out.
 * It is stopped by an interrupt frame, its deadline (wk_io_deadline()) or
 * its connection going away; the stop ticks every BS_STOP_TICK_MS until
 * the status line comes: SIGINT to the shell (its trap abandons the run,
 * see bs_shell.c) and, once each, SIGINT to the run's processes
 * (bs_proc.c); from BS_STOP_KILL_MS on, SIGKILL to them instead; at
 * BS_STOP_GIVEUP_MS, a shell that still has not answered is killed.
 * Whatever of the run is left when its status arrives (background jobs it
 * started, a process that ignored SIGINT) gets SIGKILL.
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
#include <sys/wait.h>

#include "bs_session.h"
#include "wk_log.h"
#include "wk_time.h"


#define BS_IO_SEND_MS       1000            /* last frames, at most */

/* the loop's own slots in the poll set (wk_io_poll_set) */
#define BS_IO_POLL_SIGNAL   (WK_IO_POLL_OWN + 0)
#define BS_IO_POLL_STATUS   (WK_IO_POLL_OWN + 1)
#define BS_IO_POLL_CMD      (WK_IO_POLL_OWN + 2)
#define BS_IO_POLL_NOWN     3


static int bs_io_poll_set(bs_session_t *s, struct pollfd *pfds, int *map,
    int *timeout);
static int bs_io_frame(wk_io_t *io, int i, const pr_frame_t *f);
static void bs_io_lost(wk_io_t *io, const char *why);
static void bs_io_run(bs_session_t *s, int i, const pr_frame_t *f);
static void bs_io_place(bs_session_t *s, int i, const pr_frame_t *f);
static void bs_io_stop(bs_session_t *s, int why);
static int bs_io_stop_tick(bs_session_t *s);
static int bs_io_complete(bs_session_t *s, int rc);
static void bs_io_outcome(bs_session_t *s, int rc, const char *ename,
    const char *evalue);
static int bs_io_end(bs_session_t *s);


int
bs_io_init(bs_session_t *s, int listen_fd, int alive_fd, size_t max_frame)
{
    s->io.frame = bs_io_frame;
    s->io.lost = bs_io_lost;
    s->io.data = s;

    return wk_io_init(&s->io, s->id, listen_fd, alive_fd, max_frame);
}


int
bs_io_loop(bs_session_t *s)
{
    int            n, nfds, timeout, rc;
    int            map[WK_IO_MAX_CONNS];
    struct pollfd  pfds[WK_IO_POLL_OWN + BS_IO_POLL_NOWN + WK_IO_MAX_CONNS];

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

        if (pfds[BS_IO_POLL_CMD].revents != 0 && bs_shell_flush(s) != 0) {
            bs_proc_kill_all(s);
            return EXIT_FAILURE;
        }

        rc = wk_io_events(&s->io, pfds, nfds, BS_IO_POLL_NOWN, map);

        if (rc != 0 || s->fatal) {
            /* WK_IO_GONE: every nginx process is gone */
            bs_proc_kill_all(s);
            return (rc == WK_IO_GONE) ? EXIT_SUCCESS : EXIT_FAILURE;
        }

        if (wk_io_deadline(&s->io)) {
            bs_io_stop(s, BS_STOP_TIMEOUT);
        }

        if (s->io.run_active && s->stop != 0 && s->stop_next != 0
            && wk_msec() >= s->stop_next && bs_io_stop_tick(s) != 0)
        {
            bs_proc_kill_all(s);
            return EXIT_FAILURE;
        }
    }
}


/*
 * Fill the poll set: what wk_io_poll_set() puts there, and the signalfd,
 * the status pipe and the command pipe (while commands wait).  *timeout
 * is the time to the next deadline, stop tick or listening resumption, -1
 * if none.  Returns the number of entries.
 */
static int
bs_io_poll_set(bs_session_t *s, struct pollfd *pfds, int *map, int *timeout)
{
    int      n;
    int64_t  wake;

    n = wk_io_poll_set(&s->io, pfds, BS_IO_POLL_NOWN, map, &wake);

    pfds[BS_IO_POLL_SIGNAL].fd = s->sig_fd;
    pfds[BS_IO_POLL_SIGNAL].events = POLLIN;

    pfds[BS_IO_POLL_STATUS].fd = s->status_fd;
    pfds[BS_IO_POLL_STATUS].events = POLLIN;

    pfds[BS_IO_POLL_CMD].fd = bs_shell_pending(s) ? s->cmd_fd : -1;
    pfds[BS_IO_POLL_CMD].events = POLLOUT;

    if (s->io.run_active && s->stop != 0 && s->stop_next != 0
        && (wake == 0 || s->stop_next < wake))
    {
        wake = s->stop_next;
    }

    *timeout = wk_io_poll_timeout(wk_msec(), wake);

    return n;
}


/* A frame on slot i (wk_io_frame_pt). */
static int
bs_io_frame(wk_io_t *io, int i, const pr_frame_t *f)
{
    bs_session_t  *s;

    s = io->data;

    switch (f->type) {

    case PR_T_RUN:
        if (s->io.run_active && wk_io_may_hold(&s->io, 0)) {
            return WK_IO_HOLD;      /* once the run being stopped ends */
        }

        bs_io_run(s, i, f);
        return 0;

    case PR_T_INTERRUPT:
        bs_io_stop(s, BS_STOP_INTERRUPT);
        return 0;

    case PR_T_INPUT:
        wk_io_fail(io, i, "no_pending_input",
                   "a bash run takes its stdin with the run frame");
        return 0;

    case PR_T_PLACE:
        bs_io_place(s, i, f);
        return 0;

    case PR_T_STATUS:
        bs_bg_status(s, i);
        return 0;

    case PR_T_TAIL:
        bs_bg_tail(s, i, f);
        return 0;

    default:
        return WK_IO_UNKNOWN;
    }
}


/* The run's connection went away (wk_io_lost_pt): stop the run. */
static void
bs_io_lost(wk_io_t *io, const char *why)
{
    bs_session_t  *s;

    s = io->data;

    wk_log("session %s: the run's connection %s, stopping the run", s->id,
           why);
    bs_io_stop(s, BS_STOP_CLOSED);
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
    char        *buf;
    pr_frame_t   run;
    const char  *code, *message;

    if (s->io.run_active) {
        wk_io_fail(&s->io, i, "session_busy", "another run is in progress");
        return;
    }

    buf = NULL;

    if (pr_has(f, detach) && f->detach
        && bs_bg_wrap(s, f, &run, &buf) != 0)
    {
        wk_io_fail(&s->io, i, "unavailable", "out of memory");
        return;
    }

    if (wk_io_discard(&s->io) != 0) {
        wk_io_fail(&s->io, i, "unavailable", "the session is failing");
        s->fatal = 1;
        free(buf);
        return;
    }

    if (bs_proc_snapshot(s) != 0) {
        wk_io_fail(&s->io, i, "unavailable",
                   "the session cannot list processes");
        free(buf);
        return;
    }

    if (bs_shell_run(s, buf ? &run : f, &code, &message) != 0) {
        wk_io_fail(&s->io, i, code, message);
        free(buf);
        return;
    }

    free(buf);

    wk_io_run_begin(&s->io, i, pr_has(f, timeout_ms) ? f->timeout_ms : 0);

    if (pr_has(f, detach) && f->detach) {
        bs_bg_started(s, i, f);
    }

    s->count += !s->placing;
    s->stop = 0;
    s->stop_next = 0;
    s->stop_killed = 0;
    bs_proc_stop_reset(s);

    if (bs_shell_flush(s) != 0) {
        s->fatal = 1;
    }
}


/*
 * A "place" frame: a create's cwd (made if missing) and env become the
 * shell's own, by a run of its own that counts for nothing: answered ok,
 * or fail bad_request (bs_io_outcome).
 */
static void
bs_io_place(bs_session_t *s, int i, const pr_frame_t *f)
{
    char        *code, *p;
    size_t       n;
    uint32_t     k;
    const char  *eq;
    pr_frame_t   run;

    /* each text at most 4 times its length quoted, and a few words */
    n = 256 + (pr_has(f, cwd) ? 12 * f->cwd.len : 0);

    for (k = 0; pr_has(f, env) && k < f->env.n; k++) {
        n += 4 * f->env.items[k].len + 32;
    }

    code = malloc(n);
    if (code == NULL) {
        wk_io_fail(&s->io, i, "unavailable", "out of memory");
        return;
    }

    p = code;

    /* if cd ... || { mkdir -p ... && cd ...; }; then export ...; else
     * (exit 1); fi: the code's status says whether it was taken */
    p += sprintf(p, "if ");

    if (pr_has(f, cwd)) {
        p += sprintf(p, "CDPATH= \\builtin cd -- ");
        p += bs_io_quoted(p, f->cwd.data, f->cwd.len);
        p += sprintf(p, " 2>/dev/null || { mkdir -p -- ");
        p += bs_io_quoted(p, f->cwd.data, f->cwd.len);
        p += sprintf(p, " && CDPATH= \\builtin cd -- ");
        p += bs_io_quoted(p, f->cwd.data, f->cwd.len);
        p += sprintf(p, "; }");

    } else {
        p += sprintf(p, ":");
    }

    p += sprintf(p, "; then :\n");

    for (k = 0; pr_has(f, env) && k < f->env.n; k++) {
        eq = memchr(f->env.items[k].data, '=', f->env.items[k].len);
        if (eq == NULL) {
            free(code);
            wk_io_fail(&s->io, i, "bad_request", "env entries are NAME=VALUE");
            return;
        }

        p += sprintf(p, "\\builtin export -- ");
        p += bs_io_quoted(p, f->env.items[k].data, f->env.items[k].len);
        *p++ = '\n';
    }

    p += sprintf(p, "else ( \\builtin exit 1 ); fi\n");

    memset(&run, 0, sizeof(pr_frame_t));
    run.type = PR_T_RUN;
    pr_set_str(&run, code, code, (size_t) (p - code));

    s->placing = 1;
    bs_io_run(s, i, &run);

    if (!s->io.run_active) {
        s->placing = 0;             /* refused: bs_io_run answered */
    }

    free(code);
}


size_t
bs_io_quoted(char *out, const char *p, size_t n)
{
    char    *o;
    size_t   i;

    o = out;
    *o++ = '\'';

    for (i = 0; i < n; i++) {
        if (p[i] == '\'') {
            memcpy(o, "'\\''", 4);
            o += 4;

        } else {
            *o++ = p[i];
        }
    }

    *o++ = '\'';

    return (size_t) (o - out);
}


/*
 * Begin stopping the active run for reason why; the first reason stays.
 * The first tick comes at once.
 */
static void
bs_io_stop(bs_session_t *s, int why)
{
    if (!s->io.run_active || s->stop != 0) {
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
    if (wk_io_output_end(&s->io) != 0) {
        return -1;
    }

    if (s->stop != 0 && bs_proc_signal_run(s, SIGKILL, 0) < 0) {
        return -1;
    }

    bs_io_outcome(s, rc, NULL, NULL);

    wk_io_run_end(&s->io);
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
    int          i, how;
    char         buf[64];
    pr_frame_t   f;

    i = s->io.run_conn;

    if (s->placing) {
        s->placing = 0;

        if (rc == 0 && ename == NULL && !s->shell_exited) {
            memset(&f, 0, sizeof(pr_frame_t));
            f.type = PR_T_OK;
            wk_io_send(&s->io, i, &f);

        } else {
            wk_io_fail(&s->io, i, "bad_request",
                       "the shell did not take that cwd or env (a cwd it "
                       "cannot make or enter, a name that is no shell "
                       "identifier)");
        }

        wk_io_flush(&s->io, i);
        return;
    }

    if (rc == 0 && ename == NULL) {
        how = WK_IO_RUN_OK;

    } else {
        how = (s->stop != 0) ? WK_IO_RUN_INTERRUPTED : WK_IO_RUN_ERROR;
    }

    if (s->bg.active) {
        bs_bg_ended(s, wk_io_status(&s->io, how), rc);
        return;
    }

    if (ename == NULL && how == WK_IO_RUN_ERROR) {
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
        wk_io_send(&s->io, i, &f);
    }

    memset(&f, 0, sizeof(pr_frame_t));
    f.type = PR_T_COMPLETE;
    pr_set_cstr(&f, status, wk_io_status(&s->io, how));
    pr_set_int(&f, count, s->count);
    pr_set_int(&f, ms, wk_msec() - s->io.started);
    pr_set_int(&f, exit_code, rc);

    if (s->shell_exited) {
        pr_set_int(&f, ended, 1);       /* the session ends with this run */
    }

    wk_io_send(&s->io, i, &f);
    wk_io_flush(&s->io, i);
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

    /* no more news: the writers of the pipes have ended */
    s->io.writers_gone = 1;
    (void) wk_io_output_end(&s->io);

    code = EXIT_FAILURE;
    buf[0] = '\0';

    if (s->io.run_active) {
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
        wk_io_flush_wait(&s->io, BS_IO_SEND_MS);

    } else {
        wk_log("session %s: the shell exited between runs (wait status "
               "%#x)", s->id, (unsigned) st);
    }

    bs_proc_kill_all(s);

    return code;
}
