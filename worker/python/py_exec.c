/*
 * py_exec.c: the main thread of a session process, once libpython is up
 * (py_start.c): the loop that serves runs and ops in the __main__
 * namespace every run shares, their transactions, and the execution
 * count.
 *
 * Code runs on this thread so that signals reach it: the I/O thread turns
 * an interrupt into pthread_kill(SIGINT), Python's handler trips, and the
 * running code sees KeyboardInterrupt (sleeps and blocking reads return
 * early with EINTR).  Between runs the thread waits on the session's
 * condition variable with the GIL released, so threads the user started
 * keep running.  The outcome of a run is copied out of Python objects
 * (py_outcome.c) for the I/O thread, which never takes the GIL.
 */

#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "py_exec.h"
#include "wk_log.h"
#include "wk_time.h"


#define PY_EXEC_FILENAME_LEN  32                  /* "<cell N>" */
#define PY_EXEC_WARM_FILE     "<pyrepl warm>"     /* py_exec_warm()'s cell */


static int py_exec_wait(py_session_t *s, char **code, size_t *len,
    int *interactive, int *op, int *tx_policy);
static int py_exec_transact(py_session_t *s, int tx_policy, char *code,
    size_t len, py_outcome_t *o);
static void py_exec_decide(py_session_t *s, int op, py_outcome_t *o);
static int py_exec_post(py_session_t *s, py_outcome_t *o);
static void py_exec_hand_over(py_session_t *s, py_outcome_t *o)
    __attribute__((noreturn));
static void py_exec_state_call(py_session_t *s, int op, const char *name,
    py_outcome_t *o);
static void py_exec_state(py_session_t *s, int op, const char *name,
    py_outcome_t *o);
static void py_exec_run(py_session_t *s, const char *code, size_t len,
    py_outcome_t *o);
static void py_exec_cell(py_session_t *s, const char *code, size_t len,
    const char *name, PyObject *ns, py_outcome_t *o);
static void py_exec_warm(py_session_t *s);
static int py_exec_interrupted(py_session_t *s);
static PyObject *py_exec_place_kwargs(void);
static PyObject *py_exec_settle(void);


static int64_t  py_exec_count;          /* execution_count of the last run */
static char    *py_exec_place;          /* the run's own cwd and env */
static size_t   py_exec_place_len;      /* (py_session_t.place) */


void
py_exec_loop(py_session_t *s)
{
    int            rc, interactive, op, tx_policy, home;
    char          *code;
    size_t         len;
    py_outcome_t   o;

    interactive = 0;
    home = 0;

    py_exec_warm(s);

    for ( ;; ) {

        Py_BEGIN_ALLOW_THREADS
        rc = py_exec_wait(s, &code, &len, &interactive, &op, &tx_policy);
        Py_END_ALLOW_THREADS

        if (rc != 0) {
            return;
        }

        if (!home) {
            py_start_home();
            home = 1;
        }

        memset(&o, 0, sizeof(py_outcome_t));
        o.op = op;

        switch (op) {

        case PY_OP_NAMESPACE:
        case PY_OP_INTROSPECT:
        case PY_OP_CHECKPOINT:
        case PY_OP_RESTORE:
        case PY_OP_PLACE:
            py_exec_state(s, op, code, &o);
            break;

        case PY_OP_COMMIT:
        case PY_OP_ROLLBACK:
            py_exec_decide(s, op, &o);
            break;

        default:
            /* read by input() of any thread, under the GIL */
            py_replace_interactive(interactive);

            rc = py_exec_transact(s, tx_policy, code, len, &o);

            py_replace_interactive(0);

            if (rc == 1) {
                /* a snapshot that has just taken over its session */
                free(code);
                continue;
            }
        }

        free(code);

        if (o.tx == PY_TX_ROLLED_BACK) {
            py_exec_hand_over(s, &o);
        }

        if (py_exec_post(s, &o) != 0) {
            return;
        }
    }
}


/*
 * Run code under tx_policy: with a snapshot taken first unless the
 * policy is commit_always, and the snapshot let go, kept (explicit) or
 * handed the session afterwards.  Returns 0, or 1 in a snapshot that has
 * taken over (o untouched).
 */
static int
py_exec_transact(py_session_t *s, int tx_policy, char *code, size_t len,
    py_outcome_t *o)
{
    int      rc, undo;
    int64_t  count;

    if (tx_policy != PY_TX_COMMIT_ALWAYS) {
        rc = py_tx_begin(s, &count);

        if (rc == 1) {
            py_exec_count = count;
            return 1;
        }

        if (rc != 0) {
            o->count = py_exec_count;
            PyErr_SetString(PyExc_OSError, "no snapshot could be taken for "
                            "the transaction: the code did not run");
            py_outcome_escaped(s, o);
            return 0;
        }
    }

    py_exec_run(s, code, len, o);

    switch (tx_policy) {

    case PY_TX_COMMIT_ON_SUCCESS:
        undo = (o->status != WK_IO_RUN_OK);
        break;

    case PY_TX_ROLLBACK_ON_FAILURE:
        undo = (o->status == WK_IO_RUN_ERROR);
        break;

    case PY_TX_EXPLICIT:
        o->tx = PY_TX_PENDING;
        return 0;

    default:
        return 0;
    }

    if (undo) {
        o->tx = PY_TX_ROLLED_BACK;

    } else {
        py_tx_commit(s);
        o->tx = PY_TX_COMMITTED;
    }

    return 0;
}


/* An explicit transaction's commit or rollback. */
static void
py_exec_decide(py_session_t *s, int op, py_outcome_t *o)
{
    o->count = py_exec_count;

    if (s->tx_child == 0) {
        o->status = WK_IO_RUN_ERROR;
        o->errcode = "no_transaction";
        return;
    }

    if (op == PY_OP_COMMIT) {
        py_tx_commit(s);
        o->tx = PY_TX_COMMITTED;

    } else {
        o->tx = PY_TX_ROLLED_BACK;
    }
}


/* Store the outcome for the I/O thread and wake it; 0, or -1 (logged). */
static int
py_exec_post(py_session_t *s, py_outcome_t *o)
{
    int  rc;

    rc = pthread_mutex_lock(&s->lock);
    if (rc != 0) {
        wk_log("pthread_mutex_lock() failed: %s", strerror(rc));
        py_outcome_free(o);
        return -1;
    }

    s->outcome = *o;
    s->finished = 1;

    rc = pthread_mutex_unlock(&s->lock);
    if (rc != 0) {
        wk_log("pthread_mutex_unlock() failed: %s", strerror(rc));
        return -1;
    }

    if (py_exec_wake(s) != 0) {
        wk_log("write(eventfd) failed: %s", strerror(errno));
        return -1;
    }

    return 0;
}


int
py_exec_wake(py_session_t *s)
{
    ssize_t   n;
    uint64_t  one;

    one = 1;

    do {
        n = write(s->done_fd, &one, sizeof(uint64_t));
    } while (n == -1 && errno == EINTR);

    if (n != (ssize_t) sizeof(uint64_t)) {
        if (n >= 0) {
            errno = EIO;
        }

        return -1;
    }

    return 0;
}


/*
 * Undo a run: once the I/O thread has stopped accepting, the snapshot
 * takes over the session, then the I/O thread answers with its pid.  This
 * process, with the undone effects, then waits for the supervisor to kill
 * it (nginx tells it the new pid); it must not exit first, or the
 * supervisor would take the session for crashed.
 */
static void
py_exec_hand_over(py_session_t *s, py_outcome_t *o)
{
    int      rc;
    int64_t  count;
    pid_t    pid;

    count = o->count;
    o->new_pid = 0;

    Py_BEGIN_ALLOW_THREADS

    if (py_exec_post(s, o) != 0) {
        _exit(EXIT_FAILURE);
    }

    rc = pthread_mutex_lock(&s->lock);

    while (rc == 0 && !s->released) {
        rc = pthread_cond_wait(&s->cond, &s->lock);
    }

    if (rc != 0) {
        wk_log("session %s: waiting for the I/O thread failed: %s", s->id,
               strerror(rc));
        _exit(EXIT_FAILURE);
    }

    pid = py_tx_handover(s, count);

    s->outcome.new_pid = pid;
    s->handed = 1;

    (void) pthread_cond_broadcast(&s->cond);
    (void) pthread_mutex_unlock(&s->lock);

    if (pid == 0) {
        /* the snapshot is gone: so is the session */
        _exit(EXIT_FAILURE);
    }

    for ( ;; ) {
        (void) pause();
    }

    Py_END_ALLOW_THREADS
}


/*
 * Block (GIL released) until the I/O thread hands over code; take it and
 * whether its run is interactive.  Returns 0, or -1 if a pthread call
 * failed (logged).
 */
static int
py_exec_wait(py_session_t *s, char **code, size_t *len, int *interactive,
    int *op, int *tx_policy)
{
    int  rc;

    rc = pthread_mutex_lock(&s->lock);
    if (rc != 0) {
        wk_log("pthread_mutex_lock() failed: %s", strerror(rc));
        return -1;
    }

    while (!s->requested) {
        rc = pthread_cond_wait(&s->cond, &s->lock);
        if (rc != 0) {
            wk_log("pthread_cond_wait() failed: %s", strerror(rc));
            (void) pthread_mutex_unlock(&s->lock);
            return -1;
        }
    }

    *code = s->code;
    *len = s->code_len;
    *op = s->op;
    *tx_policy = s->tx_policy;
    free(py_exec_place);
    py_exec_place = s->place;
    py_exec_place_len = s->place_len;
    s->code = NULL;
    s->code_len = 0;
    s->place = NULL;
    s->place_len = 0;
    s->op = PY_OP_RUN;
    s->requested = 0;
    *interactive = s->interactive;

    rc = pthread_mutex_unlock(&s->lock);
    if (rc != 0) {
        wk_log("pthread_mutex_unlock() failed: %s", strerror(rc));
        free(*code);
        return -1;
    }

    return 0;
}


/*
 * Run one cell: call run_cell(code, "<cell N>", __main__.__dict__), flush
 * what the code wrote, and fill o.  Never fails: whatever goes wrong is
 * described in o.
 */
static void
py_exec_run(py_session_t *s, const char *code, size_t len, py_outcome_t *o)
{
    int64_t  start;
    char     name[PY_EXEC_FILENAME_LEN];

    o->count = ++py_exec_count;
    start = wk_msec();

    /*
     * A SIGINT that arrived between runs (an interrupt racing the end of
     * the previous run) has only tripped Python's handler; run it now and
     * drop its KeyboardInterrupt so this run does not fail at once.
     */
    if (PyErr_CheckSignals() != 0) {
        PyErr_Clear();
    }

    /*
     * But an interrupt meant for this run may have come before the code
     * did (its signal is the one just dropped): raise it again.
     */
    if (py_exec_interrupted(s)) {
        PyErr_SetInterrupt();
    }

    (void) snprintf(name, sizeof(name), "<cell %lld>",
                    (long long) o->count);

    py_exec_cell(s, code, len, name, py_runtime.main_dict, o);

    o->ms = wk_msec() - start;
}


/*
 * The calls of a run: run_cell(code, name, ns, **the place) and the flush
 * of what the code wrote, o filled from what run_cell() returned.  Never
 * fails: whatever goes wrong is described in o.
 */
static void
py_exec_cell(py_session_t *s, const char *code, size_t len,
    const char *name, PyObject *ns, py_outcome_t *o)
{
    PyObject  *source, *filename, *args, *kwargs, *ret;

    args = NULL;
    kwargs = NULL;
    ret = NULL;
    filename = NULL;

    /* invalid UTF-8 in code becomes U+FFFD, which the parser reports */
    source = PyUnicode_DecodeUTF8(code, (Py_ssize_t) len, "replace");
    if (source == NULL) {
        goto escaped;
    }

    filename = PyUnicode_FromString(name);
    if (filename == NULL) {
        goto escaped;
    }

    args = PyTuple_Pack(3, source, filename, ns);
    if (args == NULL) {
        goto escaped;
    }

    kwargs = py_exec_place_kwargs();
    if (kwargs == NULL && PyErr_Occurred()) {
        goto escaped;
    }

    ret = PyObject_Call(py_runtime.run_cell, args, kwargs);
    if (ret == NULL) {
        goto escaped;
    }

    if (py_outcome_copy(s, ret, o) != 0) {
        goto escaped;
    }

    goto done;

escaped:

    /*
     * An exception escaped the runtime itself: a second interrupt while
     * it formatted the first, or running out of memory.
     */
    py_outcome_escaped(s, o);

done:

    Py_XDECREF(ret);
    Py_XDECREF(kwargs);
    Py_XDECREF(args);
    Py_XDECREF(filename);
    Py_XDECREF(source);

    py_exec_flush();
}


/*
 * While the session waits for its first request (a pooled one, in the
 * pool): a cell that binds nothing, in __main__, through the calls a run
 * makes (the runtime's warm() says why), then forgotten.
 */
static void
py_exec_warm(py_session_t *s)
{
    PyObject      *ret;
    py_outcome_t   o;

    static const char  code[] = "1 + 1";

    ret = PyObject_CallMethod(py_runtime.module, "warm", NULL);
    if (ret == NULL) {
        py_start_log_error("the runtime's warm() failed");
        return;
    }

    Py_DECREF(ret);

    memset(&o, 0, sizeof(py_outcome_t));

    py_exec_cell(s, code, sizeof(code) - 1, PY_EXEC_WARM_FILE,
                 py_runtime.main_dict, &o);

    py_outcome_free(&o);

    ret = PyObject_CallMethod(py_runtime.module, "forget", "s",
                              PY_EXEC_WARM_FILE);
    if (ret == NULL) {
        py_start_log_error("the runtime's forget() failed");
    }

    Py_XDECREF(ret);
}


/*
 * Describe, save or load the namespace: the runtime's namespace(),
 * checkpoint() or restore() JSON text in o->result, status ok; or an
 * error outcome.  The execution count stays.
 */
static void
py_exec_state(py_session_t *s, int op, const char *name, py_outcome_t *o)
{
    sigset_t  intr, old;

    /*
     * Interrupts are a run's: none may land in a state request.  One the
     * I/O thread sent as the last run ended (its deadline, its client's
     * interrupt) has tripped Python's handler by now, and is dropped; a
     * later one waits, blocked, and the next run drops it.
     */
    (void) sigemptyset(&intr);
    (void) sigaddset(&intr, SIGINT);
    (void) pthread_sigmask(SIG_BLOCK, &intr, &old);

    if (PyErr_CheckSignals() != 0) {
        PyErr_Clear();
    }

    py_exec_state_call(s, op, name, o);

    (void) pthread_sigmask(SIG_SETMASK, &old, NULL);
}


/* py_exec_state()'s work, with SIGINT blocked. */
static void
py_exec_state_call(py_session_t *s, int op, const char *name,
    py_outcome_t *o)
{
    char       file[PATH_MAX];
    long long  count;
    PyObject  *ret, *item;

    o->count = py_exec_count;

    /* in the session's own directory, wherever the code chdir'ed to */
    if (name != NULL && op != PY_OP_INTROSPECT
        && snprintf(file, sizeof(file), "%s/%s", s->workdir, name)
           >= (int) sizeof(file))
    {
        PyErr_SetString(PyExc_OSError, "checkpoint path too long");
        py_outcome_escaped(s, o);
        return;
    }

    switch (op) {

    case PY_OP_CHECKPOINT:
        ret = PyObject_CallFunction(py_runtime.checkpoint_fn, "OsLL",
                                    py_runtime.main_dict, file,
                                    (long long) s->max_size,
                                    (long long) py_exec_count);
        break;

    case PY_OP_RESTORE:
        ret = PyObject_CallFunction(py_runtime.restore_fn, "Os",
                                    py_runtime.main_dict, file);
        break;

    case PY_OP_PLACE:
        ret = py_exec_settle();
        break;

    case PY_OP_INTROSPECT:
        /* name: the request, JSON */
        ret = PyObject_CallFunction(py_runtime.introspect_fn, "Os",
                                    py_runtime.main_dict, name);
        break;

    default:
        ret = PyObject_CallOneArg(py_runtime.namespace_fn,
                                  py_runtime.main_dict);
    }

    /* restore(): (answer, the checkpoint's execution count) */
    if (ret != NULL && PyTuple_Check(ret) && PyTuple_GET_SIZE(ret) == 2) {
        count = PyLong_AsLongLong(PyTuple_GET_ITEM(ret, 1));

        if (count > py_exec_count) {
            py_exec_count = count;
            o->count = count;
        }

        PyErr_Clear();
        item = PyTuple_GET_ITEM(ret, 0);
        Py_INCREF(item);
        Py_DECREF(ret);
        ret = item;
    }

    if (ret == NULL
        || py_outcome_text(ret, s->max_frame - 1024, &o->result) != 0)
    {
        py_outcome_escaped(s, o);
    }

    Py_XDECREF(ret);
}


/* Whether the I/O thread asked to interrupt the run being started. */
static int
py_exec_interrupted(py_session_t *s)
{
    int  rc, interrupt;

    rc = pthread_mutex_lock(&s->lock);
    if (rc != 0) {
        wk_log("pthread_mutex_lock() failed: %s", strerror(rc));
        return 0;
    }

    interrupt = s->interrupt;

    rc = pthread_mutex_unlock(&s->lock);
    if (rc != 0) {
        wk_log("pthread_mutex_unlock() failed: %s", strerror(rc));
    }

    return interrupt;
}


void
py_exec_flush(void)
{
    int          i;
    PyObject    *f, *ret;

    static const char  *names[] = { "stdout", "stderr" };

    for (i = 0; i < 2; i++) {
        f = PySys_GetObject(names[i]);      /* borrowed */

        if (f == NULL || f == Py_None) {
            continue;
        }

        ret = PyObject_CallMethod(f, "flush", NULL);
        if (ret == NULL) {
            PyErr_Clear();
            continue;
        }

        Py_DECREF(ret);
    }

    if (fflush(NULL) == EOF) {
        clearerr(stdout);
        clearerr(stderr);
    }
}


/*
 * The run's own cwd and env as run_cell()'s keywords: {"cwd": str,
 * "env": {name: value}}, without the absent ones; NULL with no exception
 * set when there are neither, NULL with one on failure.  Names and values
 * are decoded as os.environ does (the file system encoding, surrogate
 * escapes).
 */
static PyObject *
py_exec_place_kwargs(void)
{
    char      *p, *end, *eq;
    PyObject  *kwargs, *env, *name, *value;

    if (py_exec_place == NULL) {
        return NULL;
    }

    kwargs = PyDict_New();
    env = PyDict_New();

    if (kwargs == NULL || env == NULL) {
        goto failed;
    }

    p = py_exec_place;
    end = py_exec_place + py_exec_place_len;

    if (*p != '\0') {
        value = PyUnicode_DecodeFSDefault(p);
        if (value == NULL || PyDict_SetItemString(kwargs, "cwd", value) != 0)
        {
            Py_XDECREF(value);
            goto failed;
        }

        Py_DECREF(value);
    }

    for (p += strlen(p) + 1; p < end; p += strlen(p) + 1) {
        eq = strchr(p, '=');
        name = PyUnicode_DecodeFSDefaultAndSize(p, eq - p);
        value = PyUnicode_DecodeFSDefault(eq + 1);

        if (name == NULL || value == NULL
            || PyDict_SetItem(env, name, value) != 0)
        {
            Py_XDECREF(name);
            Py_XDECREF(value);
            goto failed;
        }

        Py_DECREF(name);
        Py_DECREF(value);
    }

    if (PyDict_Size(env) > 0 && PyDict_SetItemString(kwargs, "env", env) != 0)
    {
        goto failed;
    }

    Py_DECREF(env);

    return kwargs;

failed:

    Py_XDECREF(env);
    Py_XDECREF(kwargs);

    return NULL;
}


/*
 * A create's cwd and env, the session's own from now on: settle()'s
 * answer, "" when they were taken, else what went wrong (a text the I/O
 * thread sends as the fail message).
 */
static PyObject *
py_exec_settle(void)
{
    PyObject  *kwargs, *args, *ret;

    kwargs = py_exec_place_kwargs();
    if (kwargs == NULL && PyErr_Occurred()) {
        return NULL;
    }

    args = PyTuple_New(0);
    if (args == NULL) {
        Py_XDECREF(kwargs);
        return NULL;
    }

    ret = PyObject_Call(py_runtime.settle_fn, args, kwargs);

    Py_DECREF(args);
    Py_XDECREF(kwargs);

    return ret;
}
