/*
 * py_session.c: main() of pyrepl-python, one session process = one
 * persistent Python namespace.  The supervisor execs it as
 *
 *     pyrepl-python --listen-fd 3 [--max-frame BYTES] [--warmup-fd 4]
 *
 * with fd 3 an already-listening Unix stream socket, the session's working
 * directory as cwd (its name, the session id, names the session in log
 * lines: no id is on a command line), stdin on /dev/null and stderr on
 * the keeper's log relay (sup_relay.c).
 * This file owns the start-up order; py_start.c owns libpython, py_exec.c
 * the main thread, py_io.c the I/O thread (see py_session.h).
 *
 * Order matters:
 *   1. signal dispositions and mask back to defaults (SIG_IGN and blocked
 *      signals survive exec; SIGINT must reach Python's handler), fds 0-2
 *      open, a copy of fd 2 (the log relay) made wk_log()'s, so that log
 *      lines never go into the user's stderr pipe, the warm-up code read
 *      and its descriptor closed, the listening socket checked;
 *   2. the stdout and stderr pipes, the "run finished" eventfd and the
 *      drain and ack pipes (py_fatal.c), then the confinement
 *      (sb_confine.h: uid, rlimits, working directory, seccomp), so that
 *      nothing after it, libpython included, runs with the supervisor's
 *      privileges;
 *   3. libpython, while fd 2 is still the error log, so that what Python
 *      itself prints about a failed start-up reaches an operator too;
 *   4. the I/O thread, which moves into its own descriptor table;
 *   5. fds 1 and 2 of the main thread's table become the pipes (Python's
 *      sys.stdout and sys.stderr write to fds 1 and 2 by number, so they
 *      follow), and the descriptors that are the I/O thread's business are
 *      closed here, so user code and its children never hold them;
 *   6. the handlers that drain the pipes before a signal ends the process;
 *   7. the main thread serves runs until the supervisor kills the process.
 *
 * User code still sees, besides fds 0-2, the "run finished" eventfd, the
 * "input answered" eventfd (py_io_start), the drain pipe's write end, the
 * ack pipe's read end, the spare listening socket, the working directory
 * and the log relay, all close-on-exec and all its own session's: no
 * descriptor of nginx, of the supervisor or of another session.
 */

/*
 * Zygote mode (py_zygote.c), "--zygote --control-fd N --workdir DIR":
 * steps 1 and 3 run once in the zygote, then the warm-up code; each
 * session forked from it is confined at once (py_zygote.c), returns out
 * of py_zygote_serve() and continues with the listening socket check,
 * step 2 and step 4 on.  --warmup-fd N
 * in the ordinary mode runs the same warm-up code after step 3 (the
 * supervisor's fork+exec fallback while its zygote is down).
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "py_session.h"
#include "py_zygote.h"
#include "wk_log.h"
#include "wk_opt.h"
#include "wk_proc.h"


static int py_session_args(int argc, char **argv, py_session_t *s,
    py_zygote_conf_t *zc);
static int py_session_option(void *data, int opt, const char *arg);
static int py_session_log_fd(py_session_t *s);
static int py_session_listen_fd(py_session_t *s);
static int py_session_workdir(py_session_t *s);
static int py_session_pipes(py_session_t *s);
static int py_session_redirect(py_session_t *s);
static void py_session_usage(void);


static py_session_t  py_session = {
    .listen_fd = -1,
    .spare_listen_fd = -1,
    .tx_fd = -1,
    .out_fd = -1,
    .err_fd = -1,
    .out_wfd = -1,
    .err_wfd = -1,
    .done_fd = -1,
    .drain_fd = -1,
    .drain_wfd = -1,
    .ack_fd = -1,
    .ack_wfd = -1,
    .log_fd = -1,
    .alive_fd = -1,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .cond = PTHREAD_COND_INITIALIZER,
};


static py_zygote_conf_t  py_zygote = {
    .control_fd = -1,
    .warmup_fd = -1,
};


int
main(int argc, char **argv)
{
    int            rc;
    py_session_t  *s;

    s = &py_session;

    wk_log_init("python", 0);

    if (py_session_args(argc, argv, s, &py_zygote) != 0) {
        py_session_usage();
        return 2;
    }

    s->pid = getpid();

    if (py_zygote.warmup_fd != -1) {
        py_zygote.warmup = py_zygote_read_warmup(py_zygote.warmup_fd);
        py_zygote.warmup_fd = -1;

        if (py_zygote.warmup == NULL) {
            return EXIT_FAILURE;
        }
    }

    if (py_zygote.enabled) {
        s->id = "zygote";
        py_zygote.argc = argc;
        py_zygote.argv = argv;
        wk_proc_title_area(argc, argv, &py_zygote.confine.title,
                           &py_zygote.confine.title_len);

        if (wk_proc_signals() != 0
            || wk_proc_std_fds() != 0
            || py_session_log_fd(s) != 0)
        {
            return EXIT_FAILURE;
        }

        if (py_start(s) != 0) {
            wk_log("zygote: cannot start Python");
            return EXIT_FAILURE;
        }

        if (sb_confine_prepare(&py_zygote.confine) != 0) {
            return EXIT_FAILURE;
        }

        rc = py_zygote_serve(s, &py_zygote);
        if (rc != 0) {
            /* like a session, the zygote never finalizes Python */
            (void) fflush(NULL);
            _exit((rc == 1) ? EXIT_SUCCESS : EXIT_FAILURE);
        }

        /* a session process forked by the zygote from here on */

        if (py_session_listen_fd(s) != 0
            || py_session_pipes(s) != 0
            || py_session_workdir(s) != 0)
        {
            _exit(EXIT_FAILURE);
        }

        s->main_thread = pthread_self();

    } else {
        s->id = wk_log_cwd_name();

        if (wk_proc_signals() != 0
            || wk_proc_std_fds() != 0
            || py_session_log_fd(s) != 0
            || py_session_listen_fd(s) != 0
            || py_session_pipes(s) != 0
            || sb_confine_session(&py_zygote.confine, s->id, -1,
                                  &s->listen_fd, 1) != 0
            || py_session_workdir(s) != 0)
        {
            return EXIT_FAILURE;
        }

        (void) prctl(PR_SET_NAME, PY_ZYGOTE_COMM, 0, 0, 0);

        s->main_thread = pthread_self();

        if (py_start(s) != 0) {
            wk_log("session %s: cannot start Python", s->id);
            return EXIT_FAILURE;
        }

        if (py_zygote.warmup != NULL) {
            (void) py_zygote_warmup(s, py_zygote.warmup);
            free(py_zygote.warmup);
            py_zygote.warmup = NULL;
        }
    }

    if (py_io_start(s) != 0) {
        return EXIT_FAILURE;
    }

    if (py_session_redirect(s) != 0 || py_fatal_init(s) != 0) {
        return EXIT_FAILURE;
    }

    py_exec_loop(s);

    /* only a fatal error ends the loop; it is logged */
    _exit(EXIT_FAILURE);
}


/*
 * The command line: the session options into s, the zygote's into zc.
 * Returns 0, or -1 (logged).
 */
static int
py_session_args(int argc, char **argv, py_session_t *s,
    py_zygote_conf_t *zc)
{
    wk_opt_session_t  so;

    static const struct option  options[] = {
        WK_OPT_SESSION_OPTIONS,
        { "zygote",     no_argument,       NULL, 'z' },
        { "control-fd", required_argument, NULL, 'c' },
        { "workdir",    required_argument, NULL, 'w' },
        { "warmup-fd",  required_argument, NULL, 'W' },
        SB_CONFINE_OPTIONS,
        { NULL, 0, NULL, 0 }
    };

    if (wk_opt_parse(argc, argv, options, &zc->confine, &so,
                     py_session_option, zc)
        != 0)
    {
        return -1;
    }

    s->listen_fd = so.listen_fd;
    s->alive_fd = so.alive_fd;
    s->max_frame = so.max_frame;

    if (zc->enabled) {
        if (zc->control_fd == -1 || zc->workdir == NULL
            || s->listen_fd != -1)
        {
            wk_log("--zygote takes --control-fd and --workdir, and not "
                   "--listen-fd");
            return -1;
        }

        return 0;
    }

    if (s->listen_fd == -1) {
        wk_log("--listen-fd is required");
        return -1;
    }

    return 0;
}


/* The zygote's options (wk_opt_handler_pt); data is the zygote's conf. */
static int
py_session_option(void *data, int opt, const char *arg)
{
    py_zygote_conf_t    *zc;
    unsigned long long   v;

    zc = data;

    switch (opt) {

    case 'z':
        zc->enabled = 1;
        return 0;

    case 'c':
        if (wk_opt_num("--control-fd", arg, 3, WK_OPT_FD_MAX, &v) != 0) {
            return -1;
        }

        zc->control_fd = (int) v;
        return 0;

    case 'w':
        zc->workdir = arg;
        return 0;

    case 'W':
        if (wk_opt_num("--warmup-fd", arg, 3, WK_OPT_FD_MAX, &v) != 0) {
            return -1;
        }

        zc->warmup_fd = (int) v;
        return 0;

    default:
        return WK_OPT_UNKNOWN;
    }
}


static void
py_session_usage(void)
{
    wk_log("usage: pyrepl-python --listen-fd FD "
           "[--max-frame BYTES] [--warmup-fd FD] [--alive-fd FD]");
    wk_log("   or: pyrepl-python --zygote --control-fd FD --workdir DIR "
           "[--max-frame BYTES] [--warmup-fd FD] [--alive-fd FD]");
    wk_log("   either with " SB_CONFINE_USAGE);
}


/*
 * wk_log() writes to a close-on-exec copy of fd 2 from here on: in the
 * main thread's table fd 2 becomes the user's stderr pipe, and the I/O
 * thread's table inherits the copy.
 */
static int
py_session_log_fd(py_session_t *s)
{
    s->log_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);

    if (s->log_fd == -1) {
        wk_log("fcntl(2, F_DUPFD_CLOEXEC) failed: %s", strerror(errno));
        return -1;
    }

    wk_log_set_fd(s->log_fd);

    return 0;
}


/*
 * The inherited socket, checked (wk_proc_listen_fd), gets a spare copy
 * that stays in the main thread's table for a snapshot (py_tx.c).
 */
static int
py_session_listen_fd(py_session_t *s)
{
    int  fd;

    fd = s->listen_fd;

    if (wk_proc_listen_fd(fd) != 0) {
        return -1;
    }

    s->spare_listen_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (s->spare_listen_fd == -1) {
        wk_log("--listen-fd %d: fcntl(F_DUPFD_CLOEXEC) failed: %s", fd,
               strerror(errno));
        return -1;
    }

    return 0;
}


/*
 * The working directory the session starts in (after confinement), held
 * open close-on-exec: the code may chdir away, and a pool process's
 * directory is renamed to the session's id after this.
 */
static int
py_session_workdir(py_session_t *s)
{
    int  fd;

    fd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd == -1) {
        wk_log("session %s: open(\".\") failed: %s", s->id, strerror(errno));
        return -1;
    }

    (void) snprintf(s->workdir, sizeof(s->workdir), "/proc/self/fd/%d", fd);

    return 0;
}


int
py_session_restart(py_session_t *s)
{
    int  rc;

    /* the old process's ends: its I/O thread is not ours */
    (void) close(s->done_fd);
    (void) close(s->input_fd);
    (void) close(s->display_fd);
    (void) close(s->drain_wfd);
    (void) close(s->ack_fd);

    /* held, maybe, by a thread that does not exist here */
    rc = pthread_mutex_init(&s->lock, NULL);
    if (rc == 0) {
        rc = pthread_cond_init(&s->cond, NULL);
    }

    if (rc != 0) {
        wk_log("session %s: pthread init failed: %s", s->id, strerror(rc));
        return -1;
    }

    s->code = NULL;             /* the old process's to free */
    s->code_len = 0;
    s->op = PY_OP_RUN;
    s->requested = 0;
    s->interrupt = 0;
    s->interactive = 0;
    s->input_state = PY_INPUT_NONE;
    memset(&s->input_prompt, 0, sizeof(pr_str_t));
    memset(&s->input_text, 0, sizeof(pr_str_t));
    s->io_ready = 0;
    s->io_failed = 0;
    s->io_tid = 0;
    memset(&s->outcome, 0, sizeof(py_outcome_t));
    s->finished = 0;
    s->released = 0;
    s->handed = 0;
    s->tx_child = 0;
    s->tx_fd = -1;

    s->listen_fd = fcntl(s->spare_listen_fd, F_DUPFD_CLOEXEC, 3);
    if (s->listen_fd == -1) {
        wk_log("session %s: fcntl(F_DUPFD_CLOEXEC) failed: %s", s->id,
               strerror(errno));
        return -1;
    }

    if (py_session_pipes(s) != 0
        || py_io_start(s) != 0
        || py_session_redirect(s) != 0
        || py_fatal_init(s) != 0)
    {
        return -1;
    }

    return 0;
}


/*
 * The two output pipes (read ends non-blocking, all four close-on-exec
 * until the write ends are dup2'd onto fds 1 and 2), the eventfd, and the
 * drain and ack pipes (all ends non-blocking and close-on-exec: a signal
 * handler must never block on them, nor an exec'd program hold them).
 */
static int
py_session_pipes(py_session_t *s)
{
    int  out[2], err[2], drain[2], ack[2];

    if (pipe2(out, O_CLOEXEC) == -1) {
        wk_log("pipe2() failed: %s", strerror(errno));
        return -1;
    }

    if (pipe2(err, O_CLOEXEC) == -1) {
        wk_log("pipe2() failed: %s", strerror(errno));
        return -1;
    }

    if (fcntl(out[0], F_SETFL, O_NONBLOCK) == -1
        || fcntl(err[0], F_SETFL, O_NONBLOCK) == -1)
    {
        wk_log("fcntl(pipe, O_NONBLOCK) failed: %s", strerror(errno));
        return -1;
    }

    s->out_fd = out[0];
    s->out_wfd = out[1];
    s->err_fd = err[0];
    s->err_wfd = err[1];

    s->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->done_fd == -1) {
        wk_log("eventfd() failed: %s", strerror(errno));
        return -1;
    }

    if (pipe2(drain, O_CLOEXEC | O_NONBLOCK) == -1
        || pipe2(ack, O_CLOEXEC | O_NONBLOCK) == -1)
    {
        wk_log("pipe2() failed: %s", strerror(errno));
        return -1;
    }

    s->drain_fd = drain[0];
    s->drain_wfd = drain[1];
    s->ack_fd = ack[0];
    s->ack_wfd = ack[1];

    return 0;
}


/*
 * In the main thread's descriptor table (the I/O thread has its own by
 * now): the pipes become fds 1 and 2, and the listening socket, the
 * output pipes' read ends, the I/O thread's ends of the drain and ack
 * pipes and nginx's alive pipe go (a snapshot that takes the session over
 * later has no alive pipe to watch).  C stdio's stdout, now a pipe, is
 * line-buffered like a terminal's.
 */
static int
py_session_redirect(py_session_t *s)
{
    if (dup2(s->out_wfd, STDOUT_FILENO) == -1) {
        wk_log("session %s: dup2(pipe, 1) failed: %s", s->id,
               strerror(errno));
        return -1;
    }

    if (dup2(s->err_wfd, STDERR_FILENO) == -1) {
        wk_log("session %s: dup2(pipe, 2) failed: %s", s->id,
               strerror(errno));
        return -1;
    }

    if (close(s->out_wfd) == -1 || close(s->err_wfd) == -1
        || close(s->out_fd) == -1 || close(s->err_fd) == -1
        || close(s->drain_fd) == -1 || close(s->ack_wfd) == -1
        || close(s->listen_fd) == -1
        || (s->alive_fd != -1 && close(s->alive_fd) == -1))
    {
        wk_log("session %s: close() failed: %s", s->id, strerror(errno));
        return -1;
    }

    s->alive_fd = -1;

    if (setvbuf(stdout, NULL, _IOLBF, 0) != 0) {
        wk_log("session %s: setvbuf(stdout) failed", s->id);
        return -1;
    }

    return 0;
}


void
py_session_lock(py_session_t *s)
{
    int  rc;

    rc = pthread_mutex_lock(&s->lock);
    if (rc != 0) {
        wk_log("pthread_mutex_lock() failed: %s", strerror(rc));
        _exit(EXIT_FAILURE);
    }
}


void
py_session_unlock(py_session_t *s)
{
    int  rc;

    rc = pthread_mutex_unlock(&s->lock);
    if (rc != 0) {
        wk_log("pthread_mutex_unlock() failed: %s", strerror(rc));
        _exit(EXIT_FAILURE);
    }
}
