/*
 * py_display.c: rich output, both threads' sides.  The runtime's display()
 * (pyrepl_runtime.py: display(), plots, IPython's objects) turns what it
 * shows into a MIME bundle, JSON {"data": {mime: value}, "metadata": {}},
 * and hands it to _display_sending(), below, on the thread that runs the
 * code: it pushes out what Python and C stdio hold, stores the bundle
 * under "lock" (display_state PY_DISPLAY_ASKED), wakes the I/O thread
 * through done_fd and waits, GIL released, until the I/O thread has taken
 * it.  The I/O thread (py_display_request) reads the output pipes until
 * they are empty and sends them, then a "display {bundle}" frame on the
 * run's connection: so display data sits between the output written
 * before it and after it, as it would in a notebook.  Without a run, or
 * its connection, the bundle is dropped, as output between runs is.
 * While the run's connection holds more than WK_IO_HIGH_WATER unsent
 * bytes the bundle waits (display_waiting), as the pipes do: a client
 * that does not read makes display() block, never this process grow.
 *
 * Returns True when the bundle went to the run, False when it could not
 * (no run; a forked child, which has no I/O thread: the runtime then
 * prints its text/plain).  A signal whose handler raises (an interrupt)
 * ends the wait with that exception, as it ends input()'s.
 */

#include <Python.h>

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "py_exec.h"
#include "wk_log.h"


static PyObject *py_display_sending(PyObject *self, PyObject *arg);
static int py_display_wait(py_session_t *s);
static void py_display_take_back(py_session_t *s);


static py_session_t  *py_display_session;

static PyMethodDef  py_display_def = {
    "_display_sending",
    (PyCFunction) (void (*)(void)) py_display_sending,
    METH_O,
    "_display_sending(bundle, /)\n--\n\n"
    "Send a MIME bundle (JSON) to the run, after the output before it."
};


int
py_display_install(py_session_t *s, PyObject *dict)
{
    PyObject  *fn;

    py_display_session = s;

    fn = PyCFunction_New(&py_display_def, NULL);
    if (fn == NULL) {
        py_start_log_error("cannot make _display_sending");
        return -1;
    }

    if (PyDict_SetItemString(dict, "_display_sending", fn) != 0) {
        py_start_log_error("cannot give the runtime _display_sending");
        Py_DECREF(fn);
        return -1;
    }

    Py_DECREF(fn);

    return 0;
}


static PyObject *
py_display_sending(PyObject *self, PyObject *arg)
{
    int            state;
    char          *copy;
    const char    *utf8;
    Py_ssize_t     len;
    py_session_t  *s;

    s = py_display_session;

    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "a bundle is a str of JSON");
        return NULL;
    }

    if (getpid() != s->pid) {
        Py_RETURN_FALSE;                 /* a forked child: no I/O thread */
    }

    utf8 = PyUnicode_AsUTF8AndSize(arg, &len);
    if (utf8 == NULL) {
        return NULL;
    }

    if ((size_t) len > s->max_frame - 1024) {
        PyErr_Format(PyExc_ValueError, "display data of %zd bytes is over "
                     "the %zu a frame holds", len, s->max_frame - 1024);
        return NULL;
    }

    copy = malloc((size_t) len);
    if (copy == NULL) {
        return PyErr_NoMemory();
    }

    memcpy(copy, utf8, (size_t) len);

    /* what the code wrote before goes first */
    py_exec_flush();

    py_session_lock(s);

    state = s->display_state;

    if (state == PY_DISPLAY_NONE) {
        s->display_state = PY_DISPLAY_ASKED;
        s->display_bundle.data = copy;
        s->display_bundle.len = (size_t) len;
        copy = NULL;
    }

    py_session_unlock(s);

    if (state != PY_DISPLAY_NONE) {
        free(copy);
        PyErr_SetString(PyExc_RuntimeError,
                        "display() is already sending in another thread");
        return NULL;
    }

    if (py_exec_wake(s) != 0) {
        py_display_take_back(s);
        return PyErr_SetFromErrno(PyExc_OSError);
    }

    state = py_display_wait(s);

    py_display_take_back(s);

    if (state < 0) {
        return NULL;
    }

    if (state == PY_DISPLAY_SENT) {
        Py_RETURN_TRUE;
    }

    Py_RETURN_FALSE;
}


/*
 * Wait, GIL released, until the I/O thread has taken the bundle.  Returns
 * PY_DISPLAY_SENT or PY_DISPLAY_DROPPED, or -1 with an exception set (a
 * signal handler raised, or the eventfd failed).
 */
static int
py_display_wait(py_session_t *s)
{
    int            rc, err, state;
    ssize_t        n;
    uint64_t       v;
    struct pollfd  pfd;

    for ( ;; ) {
        py_session_lock(s);
        state = s->display_state;
        py_session_unlock(s);

        if (state == PY_DISPLAY_SENT || state == PY_DISPLAY_DROPPED) {
            return state;
        }

        pfd.fd = s->display_fd;
        pfd.events = POLLIN;
        pfd.revents = 0;

        Py_BEGIN_ALLOW_THREADS
        rc = poll(&pfd, 1, -1);
        err = errno;
        Py_END_ALLOW_THREADS

        if (rc == -1) {
            if (err != EINTR) {
                errno = err;
                PyErr_SetFromErrno(PyExc_OSError);
                return -1;
            }

            if (PyErr_CheckSignals() != 0) {
                return -1;
            }

            continue;
        }

        do {
            n = read(s->display_fd, &v, sizeof(uint64_t));
        } while (n == -1 && errno == EINTR);
    }
}


/* Leave display_state NONE, freeing a bundle the I/O thread did not take. */
static void
py_display_take_back(py_session_t *s)
{
    pr_str_t  bundle;

    py_session_lock(s);

    bundle = s->display_bundle;
    memset(&s->display_bundle, 0, sizeof(pr_str_t));
    s->display_state = PY_DISPLAY_NONE;

    py_session_unlock(s);

    free((char *) bundle.data);
}


int
py_display_request(py_io_t *pio)
{
    int            i, state;
    uint64_t       one;
    pr_str_t       bundle;
    pr_frame_t     f;
    py_session_t  *s;

    s = pio->s;

    py_session_lock(s);
    state = s->display_state;
    py_session_unlock(s);

    pio->display_waiting = 0;

    if (state != PY_DISPLAY_ASKED) {
        return 0;
    }

    if (wk_io_backed_up(&pio->io)) {
        pio->display_waiting = 1;        /* py_io.c asks again */
        return 0;
    }

    /* the output before the display precedes it */
    if (pio->io.run_active && pio->io.run_conn >= 0
        && wk_io_drain(&pio->io) < 0)
    {
        return -1;
    }

    i = pio->io.run_active ? pio->io.run_conn : -1;

    py_session_lock(s);

    if (s->display_state != PY_DISPLAY_ASKED) {
        /* the asker gave up meanwhile */
        py_session_unlock(s);
        return 0;
    }

    bundle = s->display_bundle;
    memset(&s->display_bundle, 0, sizeof(pr_str_t));
    s->display_state = (i >= 0) ? PY_DISPLAY_SENT : PY_DISPLAY_DROPPED;

    py_session_unlock(s);

    if (i >= 0) {
        memset(&f, 0, sizeof(pr_frame_t));
        f.type = PR_T_DISPLAY;
        pr_set_str(&f, bundle, bundle.data, bundle.len);

        /* a connection that cannot take it is closed: that interrupts */
        wk_io_send(&pio->io, i, &f);
        wk_io_send_watchers(&pio->io, &f);
    }

    free((char *) bundle.data);

    one = 1;

    if (write(s->display_fd, &one, sizeof(uint64_t)) == -1
        && errno != EAGAIN)
    {
        wk_log("session %s: write(display eventfd) failed: %s", s->id,
               strerror(errno));
        return -1;
    }

    return 0;
}
