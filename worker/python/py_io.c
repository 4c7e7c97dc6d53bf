/*
 * py_io.c: the I/O thread of a session process.  It owns every socket and
 * never takes the GIL: one poll(2) loop over the eventfd the main thread
 * writes when a run has finished, the drain pipe, and what every session
 * process polls (wk_io.h): the listening socket, nginx's alive pipe, the
 * read ends of the pipes behind fds 1 and 2 and the open connections.
 *
 * Per connection it answers "run" (hand the code to the main thread, or
 * "fail session_busy"), "interrupt" (SIGINT to the main thread), "input"
 * (see below) and fails anything else.  The code's output goes to the
 * run's connection as wk_io.h says.  If the run's connection goes away,
 * the run is interrupted and its output dropped.  A run's deadline
 * (timeout_ms, wk_io_deadline()) interrupts it the same way and turns the
 * "interrupted" status into "timeout".
 *
 * input() in a run whose run frame said "interactive" (py_exec.c) asks
 * through done_fd.  The thread sends what the pipes hold, then
 * "input_request {id, prompt, password}" on the run's connection; the id
 * is new for every request.  An "input {text, id?}" frame on any
 * connection (a short one of its own, or the run's) answers it: "ok" when
 * an input() waited and the id, if given, is the request's, else "fail
 * no_pending_input".  An interrupt while input() waits (frame, lost
 * connection, deadline) sends SIGINT first and then wakes the asker,
 * which so finds the signal pending.  Without "interactive", without a
 * run or without its connection, input() gets EOF at once.
 *
 * A byte on the drain pipe means another thread is about to end the
 * process (py_fatal.c): the thread empties both output pipes into the
 * run's connection and writes it out, waiting for a slow peer up to
 * PY_DRAIN_SEND_MS (this is the one place it blocks on a single
 * connection), then answers with one byte per request on the ack pipe.
 *
 * The thread runs in its own descriptor table (see py_io_start), so user
 * code can neither see nor close these descriptors, and forked children
 * do not hold the connections open.  Its signals are all blocked.  A
 * failure of the listening socket or of poll(2) ends the process with a
 * non-zero status.
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "py_session.h"
#include "wk_io.h"
#include "wk_log.h"
#include "wk_time.h"


#define PY_IO_INPUT_ID_LEN  24                     /* "i" and a counter */

/* the thread's own slots in the poll set (wk_io_poll_set) */
#define PY_IO_POLL_DONE     (WK_IO_POLL_OWN + 0)
#define PY_IO_POLL_DRAIN    (WK_IO_POLL_OWN + 1)
#define PY_IO_POLL_NOWN     2


typedef struct {
    wk_io_t          io;           /* connections, pipes, the run */
    py_session_t    *s;

    int              drain_fd;     /* -1 once the user closed its end */

    unsigned         interactive:1; /* the run may ask input() */
    unsigned         tx_pending:1; /* an explicit run waits for its fate */

    uint64_t         input_seq;    /* input_request ids so far */
    char             input_id[PY_IO_INPUT_ID_LEN];  /* the last one sent */
} py_io_t;


static void *py_io_thread(void *arg);
static int py_io_setup(py_session_t *s);
static int py_io_loop(void);
static int py_io_poll_set(struct pollfd *pfds, int *map, int *timeout);
static void py_io_frame(wk_io_t *io, int i, const pr_frame_t *f);
static void py_io_lost(wk_io_t *io, const char *why);
static void py_io_run(int i, const pr_frame_t *f);
static void py_io_op(int i, int op, char *arg, size_t len,
    int64_t max_size);
static void py_io_hand(int i, int op, char *code, size_t len, int tx_policy,
    int64_t max_size, unsigned interactive, int64_t timeout_ms);
static char *py_io_copy(int i, const pr_str_t *str, const char *what);
static void py_io_file_op(int i, const pr_frame_t *f);
static int py_io_tx_policy(const pr_frame_t *f);
static void py_io_release(py_outcome_t *o);
static void py_io_interrupt(const char *why);
static int py_io_done(void);
static void py_io_outcome(const py_outcome_t *o);
static int py_io_ask(void);
static void py_io_input(int i, const pr_frame_t *f);
static void py_io_input_end(int from, int to);
static void py_io_wake_asker(void);
static int py_io_last_words(void);
static int py_io_send_all(void);


static py_io_t  py_io;


int
py_io_start(py_session_t *s)
{
    int        rc, err;
    sigset_t   set, old;
    pthread_t  tid;

    /*
     * The thread inherits the mask in force at pthread_create(): block
     * everything, so that every process-directed signal lands on a thread
     * that can run Python's handler or drain the pipes before dying.  A
     * fault of the thread's own still kills the process (the kernel
     * forces a blocked SIGSEGV and friends through at SIG_DFL), and
     * abort() unblocks SIGABRT itself.
     */
    if (sigfillset(&set) == -1) {
        wk_log("sigset: %s", strerror(errno));
        return -1;
    }

    rc = pthread_sigmask(SIG_BLOCK, &set, &old);
    if (rc != 0) {
        wk_log("pthread_sigmask() failed: %s", strerror(rc));
        return -1;
    }

    /* a snapshot taking over starts from a clean slate (py_io_setup) */
    py_io.s = s;
    py_io.interactive = 0;
    py_io.tx_pending = 0;
    py_io.input_seq = 0;
    py_io.input_id[0] = '\0';

    /* before the tables part, so that both hold it */
    s->input_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->input_fd == -1) {
        wk_log("eventfd() failed: %s", strerror(errno));
        (void) pthread_sigmask(SIG_SETMASK, &old, NULL);
        return -1;
    }

    err = pthread_create(&tid, NULL, py_io_thread, s);

    rc = pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        wk_log("pthread_sigmask() failed: %s", strerror(rc));
        return -1;
    }

    if (err != 0) {
        wk_log("pthread_create(I/O thread) failed: %s", strerror(err));
        return -1;
    }

    rc = pthread_detach(tid);
    if (rc != 0) {
        wk_log("pthread_detach() failed: %s", strerror(rc));
        return -1;
    }

    py_session_lock(py_io.s);

    while (!s->io_ready && !s->io_failed) {
        rc = pthread_cond_wait(&s->cond, &s->lock);
        if (rc != 0) {
            wk_log("pthread_cond_wait() failed: %s", strerror(rc));
            _exit(EXIT_FAILURE);
        }
    }

    err = s->io_failed;
    py_session_unlock(py_io.s);

    return err ? -1 : 0;
}


static void *
py_io_thread(void *arg)
{
    int            rc;
    py_session_t  *s;

    s = arg;

    rc = py_io_setup(s);

    py_session_lock(py_io.s);

    if (rc == 0) {
        s->io_ready = 1;
    } else {
        s->io_failed = 1;
    }

    (void) pthread_cond_broadcast(&s->cond);
    py_session_unlock(py_io.s);

    if (rc != 0) {
        return NULL;
    }

    (void) py_io_loop();

    /* the loop returns only on a fatal error, already logged */
    _exit(EXIT_FAILURE);
}


/*
 * Move into a private descriptor table.  Of the inherited fds 0-2 only 2
 * (the error log, where a sanitizer reports) is kept; 0 and 1 go to
 * /dev/null so that this table does not keep the spawner's descriptors
 * open.  The copies of the output pipes' write ends go too (the main
 * thread's fds 1 and 2 keep them), and so do the requesters' ends of the
 * drain and ack pipes.
 */
static int
py_io_setup(py_session_t *s)
{
    int  nul;

    if (unshare(CLONE_FILES) == -1) {
        wk_log("session %s: unshare(CLONE_FILES) failed: %s", s->id,
               strerror(errno));
        return -1;
    }

    nul = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nul == -1) {
        wk_log("session %s: open(\"/dev/null\") failed: %s", s->id,
               strerror(errno));
        return -1;
    }

    if (dup2(nul, STDIN_FILENO) == -1 || dup2(nul, STDOUT_FILENO) == -1) {
        wk_log("session %s: dup2(/dev/null) failed: %s", s->id,
               strerror(errno));
        (void) close(nul);
        return -1;
    }

    if (close(nul) == -1 || close(s->out_wfd) == -1
        || close(s->err_wfd) == -1 || close(s->drain_wfd) == -1
        || close(s->ack_fd) == -1)
    {
        wk_log("session %s: close() failed: %s", s->id, strerror(errno));
        return -1;
    }

    py_io.io.frame = py_io_frame;
    py_io.io.lost = py_io_lost;
    py_io.io.data = &py_io;

    if (wk_io_init(&py_io.io, s->id, s->listen_fd, s->alive_fd,
                   s->max_frame)
        != 0)
    {
        return -1;
    }

    py_io.io.pipes[0].fd = s->out_fd;
    py_io.io.pipes[1].fd = s->err_fd;
    py_io.drain_fd = s->drain_fd;

    /* published to py_drain() by the io_ready handshake */
    s->io_tid = gettid();

    return 0;
}


/* Serve until a fatal error (logged); returns -1 then. */
static int
py_io_loop(void)
{
    int            n, nfds, timeout;
    py_session_t  *s;
    int            map[WK_IO_MAX_CONNS];
    struct pollfd  pfds[WK_IO_POLL_OWN + PY_IO_POLL_NOWN + WK_IO_MAX_CONNS];

    s = py_io.s;

    for ( ;; ) {
        nfds = py_io_poll_set(pfds, map, &timeout);

        n = poll(pfds, (nfds_t) nfds, timeout);

        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }

            wk_log("session %s: poll() failed: %s", s->id, strerror(errno));
            return -1;
        }

        /* the run's end first: its output and frames precede new runs */
        if (pfds[PY_IO_POLL_DONE].revents != 0 && py_io_done() != 0) {
            return -1;
        }

        if (pfds[PY_IO_POLL_DRAIN].revents != 0 && py_io_last_words() != 0)
        {
            return -1;
        }

        n = wk_io_events(&py_io.io, pfds, nfds, PY_IO_POLL_NOWN, map);

        if (n == WK_IO_GONE) {
            /* with what the code started in its process group */
            (void) kill(0, SIGKILL);
            _exit(EXIT_SUCCESS);
        }

        if (n != 0) {
            return -1;
        }

        if (wk_io_deadline(&py_io.io)) {
            py_io_interrupt("the deadline passed");
        }
    }
}


/*
 * Fill the poll set: what wk_io_poll_set() puts there, the eventfd and
 * the drain pipe.  *timeout is the time to the deadline or listening
 * resumption, -1 if none.  Returns the number of entries.
 */
static int
py_io_poll_set(struct pollfd *pfds, int *map, int *timeout)
{
    int      n;
    int64_t  wake;

    n = wk_io_poll_set(&py_io.io, pfds, PY_IO_POLL_NOWN, map, &wake);

    pfds[PY_IO_POLL_DONE].fd = py_io.s->done_fd;
    pfds[PY_IO_POLL_DONE].events = POLLIN;

    pfds[PY_IO_POLL_DRAIN].fd = py_io.drain_fd;
    pfds[PY_IO_POLL_DRAIN].events = POLLIN;

    *timeout = wk_io_poll_timeout(wk_msec(), wake);

    return n;
}


/* A frame on slot i (wk_io_frame_pt). */
static void
py_io_frame(wk_io_t *io, int i, const pr_frame_t *f)
{
    switch (f->type) {

    case PR_T_RUN:
        py_io_run(i, f);
        break;

    case PR_T_NAMESPACE:
        py_io_op(i, PY_OP_NAMESPACE, NULL, 0, 0);
        break;

    case PR_T_COMMIT:
        py_io_op(i, PY_OP_COMMIT, NULL, 0, 0);
        break;

    case PR_T_CHECKPOINT:
    case PR_T_RESTORE:
        py_io_file_op(i, f);
        break;

    case PR_T_ROLLBACK:
        py_io_op(i, PY_OP_ROLLBACK, NULL, 0, 0);
        break;

    case PR_T_INTERRUPT:
        py_io_interrupt("an interrupt frame");
        break;

    case PR_T_INPUT:
        py_io_input(i, f);
        break;

    default:
        wk_io_fail(io, i, "bad_request",
                   "a session process does not take this frame type");
        break;
    }
}


/* The run's connection went away (wk_io_lost_pt): interrupt the run. */
static void
py_io_lost(wk_io_t *io, const char *why)
{
    wk_log("session %s: the run's connection %s, interrupting the run",
           io->id, why);
    py_io_interrupt("its connection went away");
}


/*
 * An op between runs (namespace, commit, rollback, checkpoint, restore)
 * from slot i, for the main thread, with arg (malloc'd, taken) as its
 * "code"; the answer is an ok or fail frame (py_io_outcome).
 */
static void
py_io_op(int i, int op, char *arg, size_t len, int64_t max_size)
{
    if (py_io.io.run_active) {
        free(arg);
        wk_io_fail(&py_io.io, i, "session_busy", "a run is in progress");
        return;
    }

    py_io_hand(i, op, arg, len, PY_TX_COMMIT_ALWAYS, max_size, 0, 0);
}


/*
 * Hand the main thread its next job (op with code, taken), which the
 * connection in slot i waits for; the run is active from here on, with a
 * deadline when timeout_ms > 0.
 */
static void
py_io_hand(int i, int op, char *code, size_t len, int tx_policy,
    int64_t max_size, unsigned interactive, int64_t timeout_ms)
{
    int            rc;
    py_session_t  *s;

    s = py_io.s;

    py_session_lock(py_io.s);

    s->code = code;
    s->code_len = len;
    s->op = op;
    s->tx_policy = tx_policy;
    s->max_size = max_size;
    s->requested = 1;
    s->interrupt = 0;
    s->interactive = interactive;
    py_io.interactive = interactive;

    rc = pthread_cond_signal(&s->cond);

    py_session_unlock(py_io.s);

    if (rc != 0) {
        wk_log("pthread_cond_signal() failed: %s", strerror(rc));
        _exit(EXIT_FAILURE);
    }

    wk_io_run_begin(&py_io.io, i, timeout_ms);
}


/* A "run" frame on slot i: hand its code to the main thread. */
static void
py_io_run(int i, const pr_frame_t *f)
{
    int    tx;
    char  *code;

    if (py_io.io.run_active) {
        wk_io_fail(&py_io.io, i, "session_busy", "another run is in progress");
        return;
    }

    if (!pr_has(f, code)) {
        wk_io_fail(&py_io.io, i, "bad_request", "a run frame needs \"code\"");
        return;
    }

    if (py_io.tx_pending) {
        wk_io_fail(&py_io.io, i, "transaction_pending",
                   "the last run waits for a commit or a rollback");
        return;
    }

    tx = py_io_tx_policy(f);
    if (tx == -1) {
        wk_io_fail(&py_io.io, i, "bad_request", "unknown tx_policy");
        return;
    }

    code = py_io_copy(i, &f->code, "code");
    if (code == NULL) {
        return;
    }

    /* what background children wrote since the last run is not this run's */
    if (wk_io_discard(&py_io.io) != 0) {
        free(code);
        _exit(EXIT_FAILURE);
    }

    py_io_hand(i, PY_OP_RUN, code, f->code.len, tx, 0,
               pr_has(f, interactive) && f->interactive != 0,
               pr_has(f, timeout_ms) ? f->timeout_ms : 0);
}


/*
 * A checkpoint or restore frame: its file name (a plain name in the
 * working directory) goes to the main thread as the op's "code".
 */
static void
py_io_file_op(int i, const pr_frame_t *f)
{
    char  *file;

    if (!pr_has(f, file) || f->file.len == 0 || f->file.len > 255
        || memchr(f->file.data, '/', f->file.len) != NULL
        || memchr(f->file.data, '\0', f->file.len) != NULL
        || (f->file.data[0] == '.' && f->file.len <= 2
            && (f->file.len == 1 || f->file.data[1] == '.')))
    {
        wk_io_fail(&py_io.io, i, "bad_request", "a plain file name is needed");
        return;
    }

    file = py_io_copy(i, &f->file, "file name");
    if (file == NULL) {
        return;
    }

    py_io_op(i, f->type == PR_T_CHECKPOINT ? PY_OP_CHECKPOINT
                                           : PY_OP_RESTORE,
             file, f->file.len, pr_has(f, max_size) ? f->max_size : 0);
}


/*
 * A malloc'd, NUL-terminated copy of a frame's string (what names it in
 * the log); NULL when out of memory, after failing slot i's request.
 */
static char *
py_io_copy(int i, const pr_str_t *str, const char *what)
{
    char  *p;

    p = malloc(str->len + 1);
    if (p == NULL) {
        wk_log("session %s: cannot allocate %zu bytes of %s", py_io.s->id,
               str->len + 1, what);
        wk_io_fail(&py_io.io, i, "unavailable", "out of memory");
        return NULL;
    }

    memcpy(p, str->data, str->len);
    p[str->len] = '\0';

    return p;
}


/* A run frame's tx (absent: commit_always), or -1. */
static int
py_io_tx_policy(const pr_frame_t *f)
{
    size_t  i;

    static const struct {
        const char  *name;
        int          policy;
    } policies[] = {
        { "commit_always", PY_TX_COMMIT_ALWAYS },
        { "commit_on_success", PY_TX_COMMIT_ON_SUCCESS },
        { "rollback_on_failure", PY_TX_ROLLBACK_ON_FAILURE },
        { "explicit", PY_TX_EXPLICIT },
    };

    if (!pr_has(f, tx)) {
        return PY_TX_COMMIT_ALWAYS;
    }

    for (i = 0; i < sizeof(policies) / sizeof(policies[0]); i++) {
        if (f->tx.len == strlen(policies[i].name)
            && memcmp(f->tx.data, policies[i].name, f->tx.len) == 0)
        {
            return policies[i].policy;
        }
    }

    return -1;
}


/*
 * A rollback: stop accepting and drop every connection but the run's, let
 * the main thread hand the session to the snapshot, and learn its pid.
 * From here on the snapshot's I/O thread serves the session.
 */
static void
py_io_release(py_outcome_t *o)
{
    int            i, rc;
    py_session_t  *s;

    s = py_io.s;

    (void) close(s->listen_fd);

    for (i = 0; i < WK_IO_MAX_CONNS; i++) {
        if (py_io.io.conns[i].used && i != py_io.io.run_conn) {
            wk_io_close(&py_io.io, i, "released");
        }
    }

    py_session_lock(py_io.s);

    s->released = 1;
    rc = pthread_cond_broadcast(&s->cond);

    while (rc == 0 && !s->handed) {
        rc = pthread_cond_wait(&s->cond, &s->lock);
    }

    o->new_pid = s->outcome.new_pid;

    py_session_unlock(py_io.s);

    if (rc != 0) {
        wk_log("session %s: the hand-over failed: %s", s->id, strerror(rc));
        _exit(EXIT_FAILURE);
    }
}


/*
 * Interrupt the active run: record it for the main thread (which checks
 * the flag when it starts the code, in case the signal came before) and
 * send SIGINT, which Python turns into KeyboardInterrupt.  An input() that
 * waits is woken after the signal is sent, so that it finds the signal
 * pending.  Nothing when no run is active.
 */
static void
py_io_interrupt(const char *why)
{
    int            rc;
    py_session_t  *s;

    if (!py_io.io.run_active) {
        return;
    }

    s = py_io.s;

    py_session_lock(py_io.s);
    s->interrupt = 1;
    py_session_unlock(py_io.s);

    rc = pthread_kill(s->main_thread, SIGINT);
    if (rc != 0) {
        wk_log("session %s: pthread_kill(SIGINT) for %s failed: %s", s->id,
               why, strerror(rc));
    }

    py_io_input_end(PY_INPUT_ASKED, PY_INPUT_INTERRUPTED);
    py_io_input_end(PY_INPUT_WAITING, PY_INPUT_INTERRUPTED);
}


/*
 * done_fd was written: the main thread finished a run, or input() asks,
 * or both.  For a finished run: drain its output, then send result, error
 * and complete to the run's connection, if it is still there; an input()
 * of another thread that still waits then gets EOF.  Returns 0, or -1 on
 * a fatal error (logged).
 */
static int
py_io_done(void)
{
    int            finished;
    ssize_t        n;
    uint64_t       v;
    py_session_t  *s;
    py_outcome_t   o;

    s = py_io.s;

    do {
        n = read(s->done_fd, &v, sizeof(uint64_t));
    } while (n == -1 && errno == EINTR);

    if (n == -1) {
        if (errno == EAGAIN) {
            return 0;
        }

        wk_log("session %s: read(eventfd) failed: %s", s->id,
               strerror(errno));
        return -1;
    }

    py_session_lock(py_io.s);

    o = s->outcome;
    finished = s->finished;
    memset(&s->outcome, 0, sizeof(py_outcome_t));
    s->finished = 0;

    py_session_unlock(py_io.s);

    if (!finished) {
        return py_io_ask();
    }

    if (!py_io.io.run_active) {
        wk_log("session %s: a run finished that was never started", s->id);
        py_outcome_free(&o);
        return py_io_ask();
    }

    /* everything the run wrote is in the pipes by now */
    if (wk_io_output_end(&py_io.io) != 0) {
        py_outcome_free(&o);
        return -1;
    }

    if (o.tx == PY_TX_ROLLED_BACK) {
        py_io_release(&o);
        py_io_outcome(&o);
        py_outcome_free(&o);

        /* the answer out, this process waits for the supervisor's kill */
        (void) py_io_send_all();

        for ( ;; ) {
            (void) pause();
        }
    }

    if (o.tx == PY_TX_PENDING) {
        py_io.tx_pending = 1;

    } else if (o.tx == PY_TX_COMMITTED) {
        py_io.tx_pending = 0;
    }

    py_io_outcome(&o);

    py_outcome_free(&o);

    wk_io_run_end(&py_io.io);
    py_io.interactive = 0;

    py_io_input_end(PY_INPUT_WAITING, PY_INPUT_EOF);

    return py_io_ask();
}


static const char  *py_io_tx_names[] = {
    NULL, "committed", "rolled_back", "pending"
};


/*
 * Send result, error and complete for outcome o to the run's connection;
 * for an op, its ok or fail frame.
 */
static void
py_io_outcome(const py_outcome_t *o)
{
    int         i;
    pr_frame_t  f;

    i = py_io.io.run_conn;

    if (o->op == PY_OP_COMMIT || o->op == PY_OP_ROLLBACK) {
        memset(&f, 0, sizeof(pr_frame_t));

        if (o->errcode != NULL) {
            wk_io_fail(&py_io.io, i, o->errcode,
                       "no run waits for a commit or a rollback");

        } else {
            f.type = PR_T_OK;
            pr_set_cstr(&f, tx, py_io_tx_names[o->tx]);

            if (o->new_pid > 0) {
                pr_set_int(&f, pid, o->new_pid);
            }

            wk_io_send(&py_io.io, i, &f);
        }

        wk_io_flush(&py_io.io, i);

        return;
    }

    if (o->op == PY_OP_NAMESPACE || o->op == PY_OP_CHECKPOINT
        || o->op == PY_OP_RESTORE)
    {
        memset(&f, 0, sizeof(pr_frame_t));

        if (o->status == WK_IO_RUN_OK && o->result.data != NULL) {
            f.type = PR_T_OK;
            pr_set_str(&f, text, o->result.data, o->result.len);
            wk_io_send(&py_io.io, i, &f);

        } else {
            wk_io_fail(&py_io.io, i, "unavailable",
                       "the namespace cannot be read or written "
                       "(interrupted, or out of memory)");
        }

        wk_io_flush(&py_io.io, i);

        return;
    }

    if (o->result.data != NULL) {
        memset(&f, 0, sizeof(pr_frame_t));
        f.type = PR_T_RESULT;
        pr_set_str(&f, text, o->result.data, o->result.len);
        pr_set_int(&f, count, o->count);
        wk_io_send(&py_io.io, i, &f);
    }

    if (o->ename.data != NULL) {
        memset(&f, 0, sizeof(pr_frame_t));
        f.type = PR_T_ERROR;
        pr_set_str(&f, ename, o->ename.data, o->ename.len);
        pr_set_str(&f, evalue, o->evalue.data, o->evalue.len);
        f.traceback = o->traceback;
        f.has |= 1u << PR_F_traceback;
        wk_io_send(&py_io.io, i, &f);
    }

    memset(&f, 0, sizeof(pr_frame_t));
    f.type = PR_T_COMPLETE;
    pr_set_cstr(&f, status, wk_io_status(&py_io.io, o->status));
    pr_set_int(&f, count, o->count);
    pr_set_int(&f, ms, o->ms);
    f.added = o->added;
    f.modified = o->modified;
    f.removed = o->removed;
    f.has |= (1u << PR_F_added) | (1u << PR_F_modified)
             | (1u << PR_F_removed);

    if (o->tx != PY_TX_NONE) {
        pr_set_cstr(&f, tx, py_io_tx_names[o->tx]);
    }

    if (o->new_pid > 0) {
        pr_set_int(&f, pid, o->new_pid);
    }

    wk_io_send(&py_io.io, i, &f);

    wk_io_flush(&py_io.io, i);
}


/*
 * If input() asks: send what the code wrote before, then input_request on
 * the run's connection, or make it EOF when the run cannot be answered.
 * Returns 0, or -1 on a fatal error (logged).
 */
static int
py_io_ask(void)
{
    int            asked, i;
    pr_frame_t     f;
    pr_str_t       prompt;
    py_session_t  *s;
    unsigned       password;

    s = py_io.s;

    py_session_lock(py_io.s);
    asked = (s->input_state == PY_INPUT_ASKED);
    py_session_unlock(py_io.s);

    if (!asked) {
        return 0;
    }

    if (!py_io.io.run_active || !py_io.interactive || py_io.io.run_conn < 0) {
        py_io_input_end(PY_INPUT_ASKED, PY_INPUT_EOF);
        return 0;
    }

    /* the output before input() precedes the request */
    if (wk_io_drain(&py_io.io) < 0) {
        return -1;
    }

    i = py_io.io.run_conn;

    if (i < 0) {
        /* the drain lost the connection; that interrupted the run */
        py_io_input_end(PY_INPUT_ASKED, PY_INPUT_EOF);
        return 0;
    }

    py_session_lock(py_io.s);

    if (s->input_state != PY_INPUT_ASKED) {
        /* the asker gave up, or an interrupt came first */
        py_session_unlock(py_io.s);
        return 0;
    }

    prompt = s->input_prompt;
    password = s->input_password;
    s->input_prompt.data = NULL;
    s->input_prompt.len = 0;
    s->input_state = PY_INPUT_WAITING;

    py_session_unlock(py_io.s);

    (void) snprintf(py_io.input_id, PY_IO_INPUT_ID_LEN, "i%" PRIu64,
                    ++py_io.input_seq);

    memset(&f, 0, sizeof(pr_frame_t));
    f.type = PR_T_INPUT_REQUEST;
    pr_set_cstr(&f, id, py_io.input_id);
    pr_set_str(&f, prompt, prompt.data != NULL ? prompt.data : "",
               prompt.len);
    pr_set_int(&f, password, password ? 1 : 0);

    /* a connection that cannot take it is closed: that interrupts */
    wk_io_send(&py_io.io, i, &f);
    wk_io_flush(&py_io.io, i);

    free((char *) prompt.data);

    return 0;
}


/*
 * An "input" frame on slot i: the answer to the input() that waits, if
 * any does and the frame's id, when given, is its request's.  Answers
 * "ok" or "fail no_pending_input" on the same connection.
 */
static void
py_io_input(int i, const pr_frame_t *f)
{
    int            delivered;
    char          *text;
    pr_frame_t     ok;
    py_session_t  *s;

    s = py_io.s;

    if (!pr_has(f, text)) {
        wk_io_fail(&py_io.io, i, "bad_request",
                   "an input frame needs \"text\"");
        return;
    }

    text = py_io_copy(i, &f->text, "input");
    if (text == NULL) {
        return;
    }

    py_session_lock(py_io.s);

    delivered = (s->input_state == PY_INPUT_WAITING
                 && (!pr_has(f, id)
                     || (f->id.len == strlen(py_io.input_id)
                         && memcmp(f->id.data, py_io.input_id, f->id.len)
                            == 0)));

    if (delivered) {
        s->input_text.data = text;
        s->input_text.len = f->text.len;
        s->input_state = PY_INPUT_ANSWERED;
    }

    py_session_unlock(py_io.s);

    if (!delivered) {
        free(text);
        wk_io_fail(&py_io.io, i, "no_pending_input", pr_has(f, id)
                   ? "no input() is waiting for this request id"
                   : "no input() is waiting");
        return;
    }

    py_io_wake_asker();

    memset(&ok, 0, sizeof(pr_frame_t));
    ok.type = PR_T_OK;
    wk_io_send(&py_io.io, i, &ok);
}


/* If input_state is "from", make it the outcome "to" and wake the asker. */
static void
py_io_input_end(int from, int to)
{
    int            changed;
    py_session_t  *s;

    s = py_io.s;

    py_session_lock(py_io.s);

    changed = (s->input_state == from);
    if (changed) {
        s->input_state = to;
    }

    py_session_unlock(py_io.s);

    if (changed) {
        py_io_wake_asker();
    }
}


static void
py_io_wake_asker(void)
{
    ssize_t   n;
    uint64_t  one;

    one = 1;

    do {
        n = write(py_io.s->input_fd, &one, sizeof(uint64_t));
    } while (n == -1 && errno == EINTR);

    /* EAGAIN: the counter is full, so the asker has a wake-up anyway */
    if (n == -1 && errno != EAGAIN) {
        wk_log("session %s: write(input eventfd) failed: %s", py_io.s->id,
               strerror(errno));
    }
}


/*
 * Bytes on the drain pipe: one per thread that is about to end the
 * process (its value PY_DRAIN_EXIT or a signal number).  Send everything
 * the output pipes hold, then answer each request with a byte on the ack
 * pipe.  Returns 0, or -1 on a fatal error (logged).
 */
static int
py_io_last_words(void)
{
    ssize_t        i, n;
    py_session_t  *s;
    unsigned char  why[64];

    s = py_io.s;

    if (py_io.drain_fd == -1) {
        return 0;
    }

    do {
        n = read(py_io.drain_fd, why, sizeof(why));
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

        if (close(py_io.drain_fd) == -1) {
            wk_log("close(%d) failed: %s", py_io.drain_fd, strerror(errno));
        }

        py_io.drain_fd = -1;
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

    if (py_io_send_all() != 0) {
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


/*
 * Empty the output pipes into the run's connection and write all of it,
 * waiting for the peer when its socket is full, until nothing is left or
 * the peer has taken nothing for PY_DRAIN_SEND_MS (a slow reader gets
 * every byte; each byte sent is published in s->drain_progress, which
 * keeps the requesters waiting).  Past WK_IO_HIGH_WATER unsent bytes the
 * pipes are left alone until the peer takes some.  Without an active run
 * the pipes are only emptied.  Returns 0, or -1 on a fatal error (logged).
 */
static int
py_io_send_all(void)
{
    int             i, k, n, rc, nfds, backed_up;
    int64_t         now, deadline;
    uint64_t        sent;
    wk_conn_t      *c;
    struct pollfd   pfds[3];

    deadline = wk_msec() + PY_DRAIN_SEND_MS;
    sent = 0;

    for ( ;; ) {
        i = py_io.io.run_conn;
        c = (py_io.io.run_active && i >= 0) ? &py_io.io.conns[i].conn : NULL;

        backed_up = wk_io_backed_up(&py_io.io);
        rc = 1;

        if (!backed_up) {
            rc = wk_io_drain(&py_io.io);
            if (rc < 0) {
                return -1;
            }
        }

        if (rc == 0) {
            /* nothing more comes from a process about to end */
            wk_io_flush_carry(&py_io.io);
        }

        if (c == NULL) {
            return 0;
        }

        wk_io_flush(&py_io.io, i);

        if (!py_io.io.conns[i].used) {
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
            __atomic_add_fetch(&py_io.s->drain_progress, 1,
                               __ATOMIC_RELAXED);
        }

        if (now >= deadline) {
            wk_log("session %s: the run's connection took no output for "
                   "%d ms; %zu bytes lost", py_io.s->id, PY_DRAIN_SEND_MS,
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
            if (py_io.io.pipes[k].fd != -1) {
                pfds[nfds].fd = py_io.io.pipes[k].fd;
                pfds[nfds].events = POLLIN;
                pfds[nfds].revents = 0;
                nfds++;
            }
        }

        n = poll(pfds, (nfds_t) nfds, (int) (deadline - now));

        if (n == -1 && errno != EINTR) {
            wk_log("session %s: poll() failed: %s", py_io.s->id,
                   strerror(errno));
            return -1;
        }
    }
}
