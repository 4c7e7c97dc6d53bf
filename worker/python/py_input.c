/*
 * py_input.c: input() and getpass.getpass() in a run whose run frame said
 * "interactive" (py_replace.c decides): they do not print the prompt and
 * read stdin, they ask the I/O thread to send an input_request and wait,
 * GIL released, until it stores the answer (returned without a trailing
 * newline), an EOF (EOFError) or an interrupt (whose SIGINT is then
 * pending, so Python raises KeyboardInterrupt).  The wait is ppoll(2) on
 * input_fd with the thread's own signal mask, other signals blocked in
 * between, so that any signal whose handler raises ends it at once, as it
 * would end a read from a terminal.  How the two threads hand the request
 * over is described in py_session.h.
 *
 * The I/O thread's side (py_input_request, py_input_frame, py_input_end):
 * it sends what the pipes hold, then "input_request {id, prompt,
 * password}" on the run's connection; the id is new for every request.
 * An "input {text, id?}" frame on any connection (a short one of its own,
 * or the run's) answers it: "ok" when an input() waited and the id, if
 * given, is the request's, else "fail no_pending_input".  An interrupt
 * while input() waits (frame, lost connection, deadline) sends SIGINT
 * first and then wakes the asker, which so finds the signal pending.
 * Without "interactive", without a run or without its connection,
 * input() gets EOF at once.
 */

#include <Python.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "py_exec.h"
#include "wk_log.h"


static int py_input_ask_once(py_session_t *s, PyObject *prompt,
    const char *dflt, int password, PyObject **ret);
static int py_input_ask_wait(py_session_t *s, const sigset_t *mask,
    pr_str_t *answer);
static void py_input_ask_end(py_session_t *s, pr_str_t *answer);
static void py_input_wake(py_io_t *pio);


PyObject *
py_input_ask(py_session_t *s, PyObject *prompt, const char *dflt,
    int password)
{
    PyObject  *ret;

    for ( ;; ) {
        if (py_input_ask_once(s, prompt, dflt, password, &ret)
            != PY_INPUT_INTERRUPTED)
        {
            return ret;
        }

        /* the SIGINT is delivered by now: Python's handler raises */
        if (PyErr_CheckSignals() != 0) {
            return NULL;
        }

        if (!pthread_equal(pthread_self(), s->main_thread)) {
            PyErr_SetNone(PyExc_KeyboardInterrupt);
            return NULL;
        }
    }
}


/*
 * One request: publish the prompt (str(prompt), or dflt when prompt is
 * NULL), wake the I/O thread and wait for the outcome.  Returns the final
 * PY_INPUT_* state with *ret the answer (ANSWERED), or NULL and an
 * exception set (EOF, INTERRUPTED, or -1 for an error or an exception a
 * signal handler raised).
 */
static int
py_input_ask_once(py_session_t *s, PyObject *prompt, const char *dflt,
    int password, PyObject **ret)
{
    int       rc, state;
    size_t    len;
    pr_str_t  text, answer;
    sigset_t  block, mask;

    static const int  faults[] = {
        SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGSYS, SIGTRAP
    };

    *ret = NULL;

    memset(&text, 0, sizeof(pr_str_t));
    memset(&answer, 0, sizeof(pr_str_t));

    if (prompt != NULL) {
        if (py_outcome_text(prompt, s->max_frame - 1024, &text) != 0) {
            return -1;
        }

    } else {
        text.data = strdup(dflt);
        if (text.data == NULL) {
            PyErr_NoMemory();
            return -1;
        }

        text.len = strlen(dflt);
    }

    /* what the code wrote before asking goes first, as on a terminal */
    py_exec_flush();

    /*
     * Every signal but the faults stays blocked outside ppoll(), which
     * takes the thread's own mask: one that comes while the handlers run
     * or the state is looked at still ends the wait.
     */
    (void) sigfillset(&block);

    for (rc = 0; rc < (int) (sizeof(faults) / sizeof(int)); rc++) {
        (void) sigdelset(&block, faults[rc]);
    }

    rc = pthread_sigmask(SIG_BLOCK, &block, &mask);
    if (rc != 0) {
        free((char *) text.data);
        errno = rc;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }

    /*
     * A signal that came before the mask (an interrupt sent before the
     * request was published, which so wakes nobody) has only tripped
     * Python's handler: run it now; later ones interrupt ppoll().
     */
    if (PyErr_CheckSignals() != 0) {
        (void) pthread_sigmask(SIG_SETMASK, &mask, NULL);
        free((char *) text.data);
        return -1;
    }

    py_session_lock(s);

    state = s->input_state;

    if (state == PY_INPUT_NONE) {
        s->input_state = PY_INPUT_ASKED;
        s->input_prompt = text;
        s->input_password = password ? 1 : 0;
        text.data = NULL;
    }

    py_session_unlock(s);

    if (state != PY_INPUT_NONE) {
        (void) pthread_sigmask(SIG_SETMASK, &mask, NULL);
        free((char *) text.data);
        PyErr_SetString(PyExc_RuntimeError,
                        "input() is already waiting in another thread");
        return -1;
    }

    if (py_exec_wake(s) != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        state = -1;

    } else {
        state = py_input_ask_wait(s, &mask, &answer);
    }

    /* the I/O thread may not have taken the prompt: take it all back */
    py_input_ask_end(s, state == PY_INPUT_ANSWERED ? NULL : &answer);

    /* a pending SIGINT (PY_INPUT_INTERRUPTED) is delivered here */
    (void) pthread_sigmask(SIG_SETMASK, &mask, NULL);

    switch (state) {

    case PY_INPUT_ANSWERED:
        len = answer.len;

        /* a client that sends a line gets what input() gives of a line */
        if (len > 0 && answer.data[len - 1] == '\n') {
            len--;

            if (len > 0 && answer.data[len - 1] == '\r') {
                len--;
            }
        }

        *ret = PyUnicode_DecodeUTF8(answer.data, (Py_ssize_t) len,
                                    "replace");
        free((char *) answer.data);

        return (*ret != NULL) ? state : -1;

    case PY_INPUT_EOF:
        PyErr_SetString(PyExc_EOFError, "EOF when reading a line");
        return state;

    default:
        return state;
    }
}


/*
 * Wait, GIL released, until the I/O thread has stored an outcome; take
 * the answer.  mask is the thread's own signal mask, the one ppoll()
 * waits with.  Returns the outcome's PY_INPUT_* state, or -1 with an
 * exception set (a signal handler raised, or the eventfd failed).
 */
static int
py_input_ask_wait(py_session_t *s, const sigset_t *mask, pr_str_t *answer)
{
    int            rc, err, state;
    ssize_t        n;
    uint64_t       v;
    struct pollfd  pfd;

    for ( ;; ) {
        py_session_lock(s);

        state = s->input_state;

        if (state >= PY_INPUT_ANSWERED) {
            *answer = s->input_text;
            s->input_text.data = NULL;
            s->input_text.len = 0;
            s->input_state = PY_INPUT_NONE;
        }

        py_session_unlock(s);

        if (state >= PY_INPUT_ANSWERED) {
            return state;
        }

        pfd.fd = s->input_fd;
        pfd.events = POLLIN;
        pfd.revents = 0;

        Py_BEGIN_ALLOW_THREADS
        rc = ppoll(&pfd, 1, NULL, mask);
        err = errno;
        Py_END_ALLOW_THREADS

        if (rc == -1) {
            if (err != EINTR) {
                errno = err;
                PyErr_SetFromErrno(PyExc_OSError);
                return -1;
            }

            /* a handler that raises ends input(), as on a terminal */
            if (PyErr_CheckSignals() != 0) {
                return -1;
            }

            continue;
        }

        if (pfd.revents & (POLLNVAL | POLLERR)) {
            PyErr_SetString(PyExc_RuntimeError,
                            "pyrepl: input()'s descriptor was closed");
            return -1;
        }

        do {
            n = read(s->input_fd, &v, sizeof(uint64_t));
        } while (n == -1 && errno == EINTR);
    }
}


/*
 * Leave input_state NONE whatever it was, freeing the prompt the I/O
 * thread did not take and an answer nobody will read (into answer, when
 * not NULL, which is then freed too).
 */
static void
py_input_ask_end(py_session_t *s, pr_str_t *answer)
{
    pr_str_t  prompt, text;

    py_session_lock(s);

    prompt = s->input_prompt;
    text = s->input_text;
    memset(&s->input_prompt, 0, sizeof(pr_str_t));
    memset(&s->input_text, 0, sizeof(pr_str_t));
    s->input_state = PY_INPUT_NONE;

    py_session_unlock(s);

    free((char *) prompt.data);
    free((char *) text.data);

    if (answer != NULL) {
        free((char *) answer->data);
        answer->data = NULL;
        answer->len = 0;
    }
}


int
py_input_request(py_io_t *pio)
{
    int            asked, i;
    pr_frame_t     f;
    pr_str_t       prompt;
    py_session_t  *s;
    unsigned       password;

    s = pio->s;

    py_session_lock(s);
    asked = (s->input_state == PY_INPUT_ASKED);
    py_session_unlock(s);

    if (!asked) {
        return 0;
    }

    if (!pio->io.run_active || !pio->interactive || pio->io.run_conn < 0) {
        py_input_end(pio, PY_INPUT_ASKED, PY_INPUT_EOF);
        return 0;
    }

    /* the output before input() precedes the request */
    if (wk_io_drain(&pio->io) < 0) {
        return -1;
    }

    i = pio->io.run_conn;

    if (i < 0) {
        /* the drain lost the connection; that interrupted the run */
        py_input_end(pio, PY_INPUT_ASKED, PY_INPUT_EOF);
        return 0;
    }

    py_session_lock(s);

    if (s->input_state != PY_INPUT_ASKED) {
        /* the asker gave up, or an interrupt came first */
        py_session_unlock(s);
        return 0;
    }

    prompt = s->input_prompt;
    password = s->input_password;
    s->input_prompt.data = NULL;
    s->input_prompt.len = 0;
    s->input_state = PY_INPUT_WAITING;

    py_session_unlock(s);

    (void) snprintf(pio->input_id, PY_INPUT_ID_LEN, "i%" PRIu64,
                    ++pio->input_seq);

    memset(&f, 0, sizeof(pr_frame_t));
    f.type = PR_T_INPUT_REQUEST;
    pr_set_cstr(&f, id, pio->input_id);
    pr_set_str(&f, prompt, prompt.data != NULL ? prompt.data : "",
               prompt.len);
    pr_set_int(&f, password, password ? 1 : 0);

    /* a connection that cannot take it is closed: that interrupts */
    wk_io_send(&pio->io, i, &f);
    wk_io_flush(&pio->io, i);

    free((char *) prompt.data);

    return 0;
}


void
py_input_frame(py_io_t *pio, int i, const pr_frame_t *f)
{
    int            delivered;
    char          *text;
    pr_frame_t     ok;
    py_session_t  *s;

    s = pio->s;

    if (!pr_has(f, text)) {
        wk_io_fail(&pio->io, i, "bad_request",
                   "an input frame needs \"text\"");
        return;
    }

    text = py_io_copy(pio, i, &f->text, "input");
    if (text == NULL) {
        return;
    }

    py_session_lock(s);

    delivered = (s->input_state == PY_INPUT_WAITING
                 && (!pr_has(f, id)
                     || (f->id.len == strlen(pio->input_id)
                         && memcmp(f->id.data, pio->input_id, f->id.len)
                            == 0)));

    if (delivered) {
        s->input_text.data = text;
        s->input_text.len = f->text.len;
        s->input_state = PY_INPUT_ANSWERED;
    }

    py_session_unlock(s);

    if (!delivered) {
        free(text);
        wk_io_fail(&pio->io, i, "no_pending_input", pr_has(f, id)
                   ? "no input() is waiting for this request id"
                   : "no input() is waiting");
        return;
    }

    py_input_wake(pio);

    memset(&ok, 0, sizeof(pr_frame_t));
    ok.type = PR_T_OK;
    wk_io_send(&pio->io, i, &ok);
}


void
py_input_end(py_io_t *pio, int from, int to)
{
    int            changed;
    py_session_t  *s;

    s = pio->s;

    py_session_lock(s);

    changed = (s->input_state == from);
    if (changed) {
        s->input_state = to;
    }

    py_session_unlock(s);

    if (changed) {
        py_input_wake(pio);
    }
}


/* Wake the thread waiting in input(): input_state changed. */
static void
py_input_wake(py_io_t *pio)
{
    ssize_t   n;
    uint64_t  one;

    one = 1;

    do {
        n = write(pio->s->input_fd, &one, sizeof(uint64_t));
    } while (n == -1 && errno == EINTR);

    /* EAGAIN: the counter is full, so the asker has a wake-up anyway */
    if (n == -1 && errno != EAGAIN) {
        wk_log("session %s: write(input eventfd) failed: %s", pio->s->id,
               strerror(errno));
    }
}
