/*
 * py_fatal.c: the last words of a session process.  What the code wrote
 * just before the process died may still sit in the pipes behind fds 1
 * and 2, and the I/O thread that forwards it dies with the process.  So
 * whatever ends the process and can be intercepted first asks the I/O
 * thread to send it (py_drain()) and waits, bounded, for the answer:
 *
 *   os._exit()         py_replace.c's replacement, which the runtime puts in
 *                      place of os._exit and posix._exit;
 *   fatal signals      SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGSYS,
 *                      SIGTRAP;
 *   terminating ones   SIGTERM, SIGHUP, SIGQUIT, SIGALRM, SIGUSR1, ...:
 *                      the other classic signals whose default action
 *                      ends the process (not the real-time ones).
 *
 * Only signals still at SIG_DFL once Python is up get the handler (Python
 * ignores SIGPIPE and SIGXFSZ and handles SIGINT); user code that sets a
 * handler of its own through the signal module replaces ours, and
 * signal.getsignal() reports SIG_DFL for ours, as before.
 *
 * The handler runs on an alternate stack on the main thread (so a stack
 * overflow still drains; other threads have none), with every signal
 * blocked.  It uses only async-signal-safe calls: a byte written to the
 * drain pipe, poll(2) and read(2) on the ack pipe, then sigaction(SIG_DFL)
 * and raise().  The raised signal stays pending until the handler
 * returns, and is delivered then, so the process dies of it exactly as
 * it would have without the handler (status, core dump).
 *
 * A request is a byte on a pipe and the answer a byte on another, both
 * pipes created before the threads' descriptor tables parted, so the I/O
 * thread needs no lock and no GIL to answer.  Requests are not made from
 * a forked child (no I/O thread there) nor from the I/O thread itself
 * (it would wait for itself); nor when user code has closed or replaced
 * the requesting ends (they are in its descriptor table), which their
 * device and inode numbers, taken at start-up, tell.  If a requester gave
 * up waiting, its answer may later satisfy another requester early; both
 * are ending the process anyway.
 *
 * The I/O thread's side is here too (py_fatal_last_words): it empties
 * both output pipes into the run's connection and writes it out, waiting
 * for a slow peer (py_fatal_send_all), then answers every request.
 *
 * Not covered: SIGKILL; C stdio buffers when a signal hits (fflush is not
 * async-signal-safe; os._exit() does flush them).
 */

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "py_session.h"
#include "wk_log.h"
#include "wk_time.h"


#define PY_FATAL_ALTSTACK  ((size_t) 64 * 1024)


typedef struct {
    dev_t  dev;
    ino_t  ino;
} py_fatal_file_t;


static int py_fatal_identify(int fd, py_fatal_file_t *id);
static int py_fatal_same(int fd, const py_fatal_file_t *id);
static void py_fatal_handler(int sig);


/* the signals whose default action ends the process, SIGKILL aside */
static const int  py_fatal_signals[] = {
    SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGSYS, SIGTRAP,
    SIGTERM, SIGHUP, SIGQUIT, SIGALRM, SIGUSR1, SIGUSR2, SIGXCPU,
    SIGVTALRM, SIGPROF, SIGIO,
#ifdef SIGPWR
    SIGPWR,
#endif
#ifdef SIGSTKFLT
    SIGSTKFLT,
#endif
};

static py_session_t     *py_fatal_session;
static void             *py_fatal_stack;         /* the main thread's, for
                                                    life */
static py_fatal_file_t   py_fatal_drain_file;    /* of s->drain_wfd */
static py_fatal_file_t   py_fatal_ack_file;      /* of s->ack_fd */
static struct sigaction  py_fatal_dfl;           /* SIG_DFL, nothing masked */


int
py_fatal_init(py_session_t *s)
{
    long              min;
    size_t            i, size;
    stack_t           ss;
    struct sigaction  sa, old;

    if (py_fatal_identify(s->drain_wfd, &py_fatal_drain_file) != 0
        || py_fatal_identify(s->ack_fd, &py_fatal_ack_file) != 0)
    {
        wk_log("session %s: fstat(drain pipes) failed: %s", s->id,
               strerror(errno));
        return -1;
    }

    if (py_fatal_stack != NULL) {
        /* a snapshot taking over (py_tx.c): stack and handlers are set */
        return 0;
    }

    min = sysconf(_SC_SIGSTKSZ);
    size = PY_FATAL_ALTSTACK;

    if (min > 0 && (size_t) min > size) {
        size = (size_t) min;
    }

    py_fatal_stack = malloc(size);
    if (py_fatal_stack == NULL) {
        wk_log("session %s: cannot allocate a %zu byte signal stack",
               s->id, size);
        return -1;
    }

    ss.ss_sp = py_fatal_stack;
    ss.ss_size = size;
    ss.ss_flags = 0;

    if (sigaltstack(&ss, NULL) == -1) {
        wk_log("session %s: sigaltstack() failed: %s", s->id,
               strerror(errno));
        return -1;
    }

    memset(&py_fatal_dfl, 0, sizeof(struct sigaction));
    py_fatal_dfl.sa_handler = SIG_DFL;

    memset(&sa, 0, sizeof(struct sigaction));
    sa.sa_handler = py_fatal_handler;
    sa.sa_flags = SA_ONSTACK;

    if (sigemptyset(&py_fatal_dfl.sa_mask) == -1
        || sigfillset(&sa.sa_mask) == -1)
    {
        wk_log("session %s: sigset: %s", s->id, strerror(errno));
        return -1;
    }

    py_fatal_session = s;

    for (i = 0; i < sizeof(py_fatal_signals) / sizeof(int); i++) {

        if (sigaction(py_fatal_signals[i], NULL, &old) == -1) {
            wk_log("session %s: sigaction(%d) failed: %s", s->id,
                   py_fatal_signals[i], strerror(errno));
            return -1;
        }

        /* a handler or SIG_IGN someone chose (Python, a sanitizer) stays */
        if ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL) {
            continue;
        }

        if (sigaction(py_fatal_signals[i], &sa, NULL) == -1) {
            wk_log("session %s: sigaction(%d) failed: %s", s->id,
                   py_fatal_signals[i], strerror(errno));
            return -1;
        }
    }

    return 0;
}


int
py_drain(py_session_t *s, int why, int timeout_ms)
{
    int            n;
    ssize_t        r;
    int64_t        left, deadline;
    uint64_t       progress, now_progress;
    unsigned char  c;
    struct pollfd  pfd;

    if (getpid() != s->pid || s->io_tid == 0 || gettid() == s->io_tid) {
        return PY_DRAIN_NOT_HERE;
    }

    if (!py_fatal_same(s->drain_wfd, &py_fatal_drain_file)
        || !py_fatal_same(s->ack_fd, &py_fatal_ack_file))
    {
        return PY_DRAIN_NOT_OURS;
    }

    c = (unsigned char) why;

    do {
        r = write(s->drain_wfd, &c, 1);
    } while (r == -1 && errno == EINTR);

    if (r != 1) {
        return PY_DRAIN_FAILED;
    }

    deadline = wk_msec() + timeout_ms;
    progress = __atomic_load_n(&s->drain_progress, __ATOMIC_RELAXED);

    for ( ;; ) {
        left = deadline - wk_msec();

        if (left <= 0) {
            /* the I/O thread is still sending: wait on */
            now_progress = __atomic_load_n(&s->drain_progress,
                                           __ATOMIC_RELAXED);
            if (now_progress == progress) {
                return PY_DRAIN_TIMEOUT;
            }

            progress = now_progress;
            deadline = wk_msec() + timeout_ms;
            continue;
        }

        pfd.fd = s->ack_fd;
        pfd.events = POLLIN;
        pfd.revents = 0;

        n = poll(&pfd, 1, (int) left);

        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }

            return PY_DRAIN_FAILED;
        }

        if (n == 0) {
            continue;
        }

        do {
            r = read(s->ack_fd, &c, 1);
        } while (r == -1 && errno == EINTR);

        if (r == 1) {
            return PY_DRAIN_OK;
        }

        if (r == 0) {
            /* the I/O thread's end is gone: no answer will come */
            errno = EPIPE;
            return PY_DRAIN_FAILED;
        }

        if (errno != EAGAIN) {
            return PY_DRAIN_FAILED;
        }

        /* a concurrent requester took the byte; ours is on its way */
    }
}


/*
 * The handler of every signal in py_fatal_signals: drain, then let the
 * signal do what it would have done.
 */
static void
py_fatal_handler(int sig)
{
    int  saved;

    saved = errno;

    if (py_fatal_session != NULL) {
        (void) py_drain(py_fatal_session, sig, PY_DRAIN_SIGNAL_MS);
    }

    (void) sigaction(sig, &py_fatal_dfl, NULL);
    (void) raise(sig);

    errno = saved;
}


static int
py_fatal_identify(int fd, py_fatal_file_t *id)
{
    struct stat  st;

    if (fstat(fd, &st) == -1) {
        return -1;
    }

    id->dev = st.st_dev;
    id->ino = st.st_ino;

    return 0;
}


/* Whether fd is still the file id says; async-signal-safe. */
static int
py_fatal_same(int fd, const py_fatal_file_t *id)
{
    struct stat  st;

    return fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == id->dev
           && st.st_ino == id->ino;
}


int
py_fatal_last_words(py_io_t *pio)
{
    ssize_t        i, n;
    py_session_t  *s;
    unsigned char  why[64];

    s = pio->s;

    if (pio->drain_fd == -1) {
        return 0;
    }

    do {
        n = read(pio->drain_fd, why, sizeof(why));
    } while (n == -1 && errno == EINTR);

    if (n == -1) {
        if (errno == EAGAIN) {
            return 0;
        }

        wk_log("session %s: read(drain pipe) failed: %s", s->id,
               strerror(errno));
        return -1;
    }

    if (n == 0) {
        /* the main thread's table held the last write end */
        wk_log("session %s: the drain pipe was closed by user code; output "
               "written just before the process ends may be lost", s->id);

        if (close(pio->drain_fd) == -1) {
            wk_log("close(%d) failed: %s", pio->drain_fd, strerror(errno));
        }

        pio->drain_fd = -1;
        return 0;
    }

    /* one line a wake-up, however many requests came */
    if (why[0] == PY_DRAIN_EXIT) {
        wk_log("session %s: the code called os._exit(); sending its last "
               "output", s->id);
    } else {
        wk_log("session %s: signal %d (%s) ends the process; sending its "
               "last output", s->id, why[0], strsignal(why[0]));
    }

    if (py_fatal_send_all(pio) != 0) {
        return -1;
    }

    /* one byte per request; the requesters' end is non-blocking, like ours */
    do {
        i = write(s->ack_wfd, why, (size_t) n);
    } while (i == -1 && errno == EINTR);

    if (i != n) {
        wk_log("session %s: write(ack pipe) failed: %s", s->id,
               i == -1 ? strerror(errno) : "short write");
    }

    return 0;
}


int
py_fatal_send_all(py_io_t *pio)
{
    int             i, k, n, rc, nfds, backed_up;
    int64_t         now, deadline;
    uint64_t        sent;
    wk_conn_t      *c;
    struct pollfd   pfds[3];

    deadline = wk_msec() + PY_DRAIN_SEND_MS;
    sent = 0;

    for ( ;; ) {
        i = pio->io.run_conn;
        c = (pio->io.run_active && i >= 0) ? &pio->io.conns[i].conn : NULL;

        backed_up = wk_io_backed_up(&pio->io);
        rc = 1;

        if (!backed_up) {
            rc = wk_io_drain(&pio->io);
            if (rc < 0) {
                return -1;
            }
        }

        if (rc == 0) {
            /* nothing more comes from a process about to end */
            wk_io_flush_carry(&pio->io);
        }

        if (c == NULL) {
            return 0;
        }

        wk_io_flush(&pio->io, i);

        if (!pio->io.conns[i].used) {
            /* the peer went away; the run's output goes with it */
            return 0;
        }

        if (rc == 0 && wk_conn_pending(c) == 0) {
            return 0;
        }

        now = wk_msec();

        if (c->sent != sent) {
            /* the peer takes output: it gets all of it */
            sent = c->sent;
            deadline = now + PY_DRAIN_SEND_MS;
            __atomic_add_fetch(&pio->s->drain_progress, 1,
                               __ATOMIC_RELAXED);
        }

        if (now >= deadline) {
            wk_log("session %s: the run's connection took no output for "
                   "%d ms; %zu bytes lost", pio->s->id, PY_DRAIN_SEND_MS,
                   wk_conn_pending(c));
            return 0;
        }

        if (rc == 1 && !backed_up) {
            /* the pipes hit the drain cap: read on without waiting */
            continue;
        }

        nfds = 0;

        if (wk_conn_pending(c) != 0) {
            pfds[nfds].fd = c->fd;
            pfds[nfds].events = POLLOUT;
            pfds[nfds].revents = 0;
            nfds++;
        }

        for (k = 0; k < 2 && !backed_up; k++) {
            if (pio->io.pipes[k].fd != -1) {
                pfds[nfds].fd = pio->io.pipes[k].fd;
                pfds[nfds].events = POLLIN;
                pfds[nfds].revents = 0;
                nfds++;
            }
        }

        n = poll(pfds, (nfds_t) nfds, (int) (deadline - now));

        if (n == -1 && errno != EINTR) {
            wk_log("session %s: poll() failed: %s", pio->s->id,
                   strerror(errno));
            return -1;
        }
    }
}
