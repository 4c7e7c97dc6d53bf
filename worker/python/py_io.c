/*
 * py_io.c: the I/O thread of a session process.  It owns every socket and
 * never takes the GIL: one poll(2) loop over the eventfd the main thread
 * writes when a run has finished, the drain pipe, and what every session
 * process polls (wk_io.h): the listening socket, nginx's alive pipe, the
 * read ends of the pipes behind fds 1 and 2 and the open connections.
 *
 * Per connection it answers "run" (hand the code to the main thread, or
 * "fail session_busy"; one sent while a run whose connection went away is
 * being interrupted, or while an op between runs goes on (namespace,
 * checkpoint, ...), waits for it, WK_IO_HOLD), "interrupt" (SIGINT to the main thread), "input"
 * (see below) and fails anything else.  The code's output goes to the
 * run's connection as wk_io.h says.  If the run's connection goes away,
 * the run is interrupted and its output dropped.  A run's deadline
 * (timeout_ms, wk_io_deadline()) interrupts it the same way and turns the
 * "interrupted" status into "timeout".
 *
 * input() in a run whose run frame said "interactive" asks through
 * done_fd; the thread sends an input_request and passes the answer back
 * (py_input.c).
 *
 * A byte on the drain pipe means another thread is about to end the
 * process: the thread empties both output pipes into the run's connection
 * and writes it out, waiting for a slow peer up to PY_DRAIN_SEND_MS (this
 * is the one place it blocks on a single connection), then answers with
 * one byte per request on the ack pipe (py_fatal.c).
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
#include <sys/eventfd.h>
#include <unistd.h>

#include "py_session.h"
#include "wk_io.h"
#include "wk_log.h"
#include "wk_time.h"


/* the thread's own slots in the poll set (wk_io_poll_set) */
#define PY_IO_POLL_DONE     (WK_IO_POLL_OWN + 0)
#define PY_IO_POLL_DRAIN    (WK_IO_POLL_OWN + 1)
#define PY_IO_POLL_NOWN     2


static void *py_io_thread(void *arg);
static int py_io_asked(void);
static void py_io_introspect(int i, const pr_frame_t *f);
static void py_io_watch(int i);
static int py_io_setup(py_session_t *s);
static int py_io_loop(void);
static int py_io_poll_set(struct pollfd *pfds, int *map, int *timeout);
static int py_io_frame(wk_io_t *io, int i, const pr_frame_t *f);
static void py_io_lost(wk_io_t *io, const char *why);
static int py_io_run(int i, const pr_frame_t *f);
static void py_io_op(int i, int op, char *arg, size_t len,
    int64_t max_size);
static void py_io_hand(int i, int op, char *code, size_t len, int tx_policy,
    int64_t max_size, unsigned interactive, int64_t timeout_ms);
static int py_io_place(int i, const pr_frame_t *f, char **place,
    size_t *len);
static void py_io_file_op(int i, const pr_frame_t *f);
static int py_io_tx_policy(const pr_frame_t *f);
static void py_io_release(py_outcome_t *o);
static void py_io_interrupt(const char *why);
static int py_io_done(void);


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
    py_io.count = 0;
    py_io.input_id[0] = '\0';

    py_io.display_waiting = 0;

    /* before the tables part, so that both hold them */
    s->input_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    s->display_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->input_fd == -1 || s->display_fd == -1) {
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

    py_session_lock(s);

    while (!s->io_ready && !s->io_failed) {
        rc = pthread_cond_wait(&s->cond, &s->lock);
        if (rc != 0) {
            wk_log("pthread_cond_wait() failed: %s", strerror(rc));
            _exit(EXIT_FAILURE);
        }
    }

    err = s->io_failed;
    py_session_unlock(s);

    return err ? -1 : 0;
}


static void *
py_io_thread(void *arg)
{
    int            rc;
    py_session_t  *s;

    s = arg;

    rc = py_io_setup(s);

    py_session_lock(s);

    if (rc == 0) {
        s->io_ready = 1;
    } else {
        s->io_failed = 1;
    }

    (void) pthread_cond_broadcast(&s->cond);
    py_session_unlock(s);

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

        if (pfds[PY_IO_POLL_DRAIN].revents != 0
            && py_fatal_last_words(&py_io) != 0)
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

        if (py_io.display_waiting && !wk_io_backed_up(&py_io.io)
            && py_display_request(&py_io) != 0)
        {
            return -1;
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
static int
py_io_frame(wk_io_t *io, int i, const pr_frame_t *f)
{
    switch (f->type) {

    case PR_T_RUN:
        return py_io_run(i, f);

    case PR_T_NAMESPACE:
        py_io_op(i, PY_OP_NAMESPACE, NULL, 0, 0);
        return 0;

    case PR_T_INTROSPECT:
        py_io_introspect(i, f);
        return 0;

    case PR_T_WATCH:
        py_io_watch(i);
        return 0;

    case PR_T_COMMIT:
        py_io_op(i, PY_OP_COMMIT, NULL, 0, 0);
        return 0;

    case PR_T_CHECKPOINT:
    case PR_T_RESTORE:
        py_io_file_op(i, f);
        return 0;

    case PR_T_ROLLBACK:
        py_io_op(i, PY_OP_ROLLBACK, NULL, 0, 0);
        return 0;

    case PR_T_PLACE:
        if (py_io_place(i, f, &py_io.place, &py_io.place_len) == 0) {
            py_io_op(i, PY_OP_PLACE, NULL, 0, 0);
        }

        return 0;

    case PR_T_INTERRUPT:
        py_io_interrupt("an interrupt frame");
        return 0;

    case PR_T_INPUT:
        py_input_frame(&py_io, i, f);
        return 0;

    default:
        return WK_IO_UNKNOWN;
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
 * An op between runs (namespace, introspect, commit, rollback,
 * checkpoint, restore, place: with py_io.place) from slot i, for the main
 * thread, with arg (malloc'd, taken) as its "code"; the answer is an ok
 * or fail frame (py_io_outcome).
 */
static void
py_io_op(int i, int op, char *arg, size_t len, int64_t max_size)
{
    if (py_io.io.run_active) {
        free(arg);
        free(py_io.place);
        py_io.place = NULL;
        wk_io_fail(&py_io.io, i, "session_busy",
                   "the session is busy with a run or another request");
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

    py_session_lock(s);

    s->code = code;
    s->code_len = len;
    s->place = py_io.place;
    s->place_len = py_io.place_len;
    py_io.place = NULL;
    py_io.place_len = 0;
    s->op = op;
    s->tx_policy = tx_policy;
    s->max_size = max_size;
    s->requested = 1;
    s->interrupt = 0;
    s->interactive = interactive;
    py_io.interactive = interactive;
    py_io.op = (op != PY_OP_RUN);

    rc = pthread_cond_signal(&s->cond);

    py_session_unlock(s);

    if (rc != 0) {
        wk_log("pthread_cond_signal() failed: %s", strerror(rc));
        _exit(EXIT_FAILURE);
    }

    wk_io_run_begin(&py_io.io, i, timeout_ms);
}


/*
 * A "run" frame on slot i: hand its code to the main thread.  Returns 0,
 * or WK_IO_HOLD while a run whose client went away is being stopped.
 */
static int
py_io_run(int i, const pr_frame_t *f)
{
    int          tx;
    char        *code;
    pr_frame_t   copy;

    if (py_io.io.run_active) {
        if (wk_io_may_hold(&py_io.io, py_io.op)) {
            return WK_IO_HOLD;
        }

        wk_io_fail(&py_io.io, i, "session_busy", "another run is in progress");
        return 0;
    }

    if (!pr_has(f, code)) {
        wk_io_fail(&py_io.io, i, "bad_request", "a run frame needs \"code\"");
        return 0;
    }

    if (py_io.tx_pending) {
        wk_io_fail(&py_io.io, i, "transaction_pending",
                   "the last run waits for a commit or a rollback");
        return 0;
    }

    tx = py_io_tx_policy(f);
    if (tx == -1) {
        wk_io_fail(&py_io.io, i, "bad_request", "unknown tx_policy");
        return 0;
    }

    if (py_io_place(i, f, &py_io.place, &py_io.place_len) != 0) {
        return 0;
    }

    code = py_io_copy(&py_io, i, &f->code, "code");
    if (code == NULL) {
        free(py_io.place);
        py_io.place = NULL;
        return 0;
    }

    /* what background children wrote since the last run is not this run's */
    if (wk_io_discard(&py_io.io) != 0) {
        free(code);
        _exit(EXIT_FAILURE);
    }

    py_io_hand(i, PY_OP_RUN, code, f->code.len, tx, 0,
               pr_has(f, interactive) && f->interactive != 0,
               pr_has(f, timeout_ms) ? f->timeout_ms : 0);

    /* the watchers learn of it: its code, its tag, the count it will have */
    memset(&copy, 0, sizeof(pr_frame_t));
    copy.type = PR_T_RUN;
    pr_set_str(&copy, code, f->code.data, f->code.len);
    pr_set_int(&copy, count, py_io.count + 1);

    if (pr_has(f, tag)) {
        pr_set_str(&copy, tag, f->tag.data, f->tag.len);
    }

    wk_io_send_watchers(&py_io.io, &copy);

    return 0;
}


/*
 * A run frame's cwd and env, for that run only, into *place (malloc'd,
 * "CWD\0NAME=VALUE\0...", CWD empty for none; NULL when neither).  0, or
 * -1 with the frame failed.
 */
static int
py_io_place(int i, const pr_frame_t *f, char **place, size_t *len)
{
    char      *p;
    size_t     n;
    uint32_t   k;

    *place = NULL;
    *len = 0;

    if (!pr_has(f, cwd) && !pr_has(f, env)) {
        return 0;
    }

    n = (pr_has(f, cwd) ? f->cwd.len : 0) + 1;

    if (pr_has(f, cwd) && memchr(f->cwd.data, '\0', f->cwd.len) != NULL) {
        wk_io_fail(&py_io.io, i, "bad_request", "cwd holds a NUL");
        return -1;
    }

    for (k = 0; pr_has(f, env) && k < f->env.n; k++) {
        if (memchr(f->env.items[k].data, '\0', f->env.items[k].len) != NULL
            || memchr(f->env.items[k].data, '=', f->env.items[k].len)
               == NULL)
        {
            wk_io_fail(&py_io.io, i, "bad_request",
                       "env entries are NAME=VALUE, without NUL");
            return -1;
        }

        n += f->env.items[k].len + 1;
    }

    p = malloc(n);
    if (p == NULL) {
        wk_io_fail(&py_io.io, i, "unavailable", "out of memory");
        return -1;
    }

    *place = p;
    *len = n;

    if (pr_has(f, cwd)) {
        memcpy(p, f->cwd.data, f->cwd.len);
        p += f->cwd.len;
    }

    *p++ = '\0';

    for (k = 0; pr_has(f, env) && k < f->env.n; k++) {
        memcpy(p, f->env.items[k].data, f->env.items[k].len);
        p += f->env.items[k].len;
        *p++ = '\0';
    }

    return 0;
}


/* A "watch" frame on slot i: copies of every run's frames from now on. */
static void
py_io_watch(int i)
{
    pr_frame_t  ok;

    py_io.io.conns[i].watch = 1;

    memset(&ok, 0, sizeof(pr_frame_t));
    ok.type = PR_T_OK;
    wk_io_send(&py_io.io, i, &ok);
}


/* An "introspect" frame on slot i: its JSON request to the main thread. */
static void
py_io_introspect(int i, const pr_frame_t *f)
{
    char  *request;

    if (!pr_has(f, text) || memchr(f->text.data, '\0', f->text.len) != NULL)
    {
        wk_io_fail(&py_io.io, i, "bad_request",
                   "an introspect frame needs a JSON \"text\"");
        return;
    }

    request = py_io_copy(&py_io, i, &f->text, "introspect request");
    if (request == NULL) {
        return;
    }

    py_io_op(i, PY_OP_INTROSPECT, request, f->text.len, 0);
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

    file = py_io_copy(&py_io, i, &f->file, "file name");
    if (file == NULL) {
        return;
    }

    py_io_op(i, f->type == PR_T_CHECKPOINT ? PY_OP_CHECKPOINT
                                           : PY_OP_RESTORE,
             file, f->file.len, pr_has(f, max_size) ? f->max_size : 0);
}


char *
py_io_copy(py_io_t *pio, int i, const pr_str_t *str, const char *what)
{
    char  *p;

    p = malloc(str->len + 1);
    if (p == NULL) {
        wk_log("session %s: cannot allocate %zu bytes of %s", pio->s->id,
               str->len + 1, what);
        wk_io_fail(&pio->io, i, "unavailable", "out of memory");
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

    py_session_lock(s);

    s->released = 1;
    rc = pthread_cond_broadcast(&s->cond);

    while (rc == 0 && !s->handed) {
        rc = pthread_cond_wait(&s->cond, &s->lock);
    }

    o->new_pid = s->outcome.new_pid;

    py_session_unlock(s);

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

    py_session_lock(s);
    s->interrupt = 1;
    py_session_unlock(s);

    rc = pthread_kill(s->main_thread, SIGINT);
    if (rc != 0) {
        wk_log("session %s: pthread_kill(SIGINT) for %s failed: %s", s->id,
               why, strerror(rc));
    }

    py_input_end(&py_io, PY_INPUT_ASKED, PY_INPUT_INTERRUPTED);
    py_input_end(&py_io, PY_INPUT_WAITING, PY_INPUT_INTERRUPTED);
}


/*
 * done_fd was written: the main thread finished a run, or input() or
 * display() asks, or more than one of these.  For a finished run: drain
 * its output, then send result, error and complete to the run's
 * connection, if it is still there; an input() of another thread that
 * still waits then gets EOF.  Returns 0, or -1 on a fatal error (logged).
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

    py_session_lock(s);

    o = s->outcome;
    finished = s->finished;
    memset(&s->outcome, 0, sizeof(py_outcome_t));
    s->finished = 0;

    py_session_unlock(s);

    if (!finished) {
        return py_io_asked();
    }

    if (!py_io.io.run_active) {
        wk_log("session %s: a run finished that was never started", s->id);
        py_outcome_free(&o);
        return py_io_asked();
    }

    /* everything the run wrote is in the pipes by now */
    if (wk_io_output_end(&py_io.io) != 0) {
        py_outcome_free(&o);
        return -1;
    }

    if (o.tx == PY_TX_ROLLED_BACK) {
        py_io_release(&o);
        py_outcome_send(&py_io.io, &o);
        py_outcome_free(&o);

        /* the answer out, this process waits for the supervisor's kill */
        (void) py_fatal_send_all(&py_io);

        for ( ;; ) {
            (void) pause();
        }
    }

    if (o.op == PY_OP_RUN && o.count > py_io.count) {
        py_io.count = o.count;
    }

    if (o.tx == PY_TX_PENDING) {
        py_io.tx_pending = 1;

    } else if (o.tx == PY_TX_COMMITTED) {
        py_io.tx_pending = 0;
    }

    py_outcome_send(&py_io.io, &o);

    py_outcome_free(&o);

    wk_io_run_end(&py_io.io);
    py_io.interactive = 0;

    py_input_end(&py_io, PY_INPUT_WAITING, PY_INPUT_EOF);

    return py_io_asked();
}


/* What another thread may ask besides a run's end: display(), input(). */
static int
py_io_asked(void)
{
    if (py_display_request(&py_io) != 0) {
        return -1;
    }

    return py_input_request(&py_io);
}
