/*
 * py_exec.h: what the files that run Python on the main thread share
 * (py_start.c, py_exec.c, py_replace.c, py_input.c, py_outcome.c): the
 * embedded runtime's objects and the helpers that need the GIL.  It
 * includes Python.h, so it comes first in those files.
 */

#ifndef PY_EXEC_H
#define PY_EXEC_H

#include <Python.h>

#include "py_session.h"


/* The embedded runtime, loaded once by py_start(). */
typedef struct {
    PyObject  *module;          /* the private runtime module */
    PyObject  *run_cell;        /* its run_cell() */
    PyObject  *namespace_fn;    /* its namespace() */
    PyObject  *checkpoint_fn;   /* its checkpoint() */
    PyObject  *restore_fn;      /* its restore() */
    PyObject  *settle_fn;       /* its settle() */
    PyObject  *introspect_fn;   /* its introspect() */
    PyObject  *main_dict;       /* __main__.__dict__ (borrowed) */
} py_runtime_t;

extern py_runtime_t  py_runtime;


/* py_start.c */

/*
 * The runtime's start(), once, before the first request is served: HOME
 * and what depends on it follow the session's working directory, which a
 * pool process gets its name in only when it is handed out.
 */
void py_start_home(void);

/* Log "what: Name: value" for the pending exception and clear it. */
void py_start_log_error(const char *what);


/* py_replace.c */

/*
 * Make the replacements of os._exit, input and getpass.getpass for
 * session s and give them to the runtime (its globals, dict), keeping
 * the originals.  Returns 0, or -1 (logged).
 */
int py_replace_install(py_session_t *s, PyObject *dict);

/* Whether the run about to start, or none (0), may ask input(). */
void py_replace_interactive(int interactive);


/* py_display.c */

/*
 * Give the runtime (its globals, dict) _display_sending(), which hands a
 * MIME bundle to the I/O thread.  Returns 0, or -1 (logged).
 */
int py_display_install(py_session_t *s, PyObject *dict);


/* py_input.c */

/*
 * Ask the client until it answers: the prompt str(prompt), or dflt when
 * prompt is NULL.  An interrupt that a handler of the code's swallowed
 * asks again (with a new request id); on a thread other than the main
 * one, which SIGINT does not reach, it is a KeyboardInterrupt.  Returns
 * the answer (a new reference), or NULL with an exception set (EOFError
 * when nobody can answer).
 */
PyObject *py_input_ask(py_session_t *s, PyObject *prompt, const char *dflt,
    int password);


/* py_outcome.c */

/*
 * Copy run_cell()'s (status, result, ename, evalue, traceback, changes)
 * into o.  Returns 0, or -1 with a Python exception set.
 */
int py_outcome_copy(py_session_t *s, PyObject *ret, py_outcome_t *o);

/*
 * Describe the exception that is set (and clear it): ename and evalue
 * from the exception, a one-line traceback, status WK_IO_RUN_INTERRUPTED
 * for a KeyboardInterrupt, else WK_IO_RUN_ERROR.  Replaces whatever o
 * held but its count.
 */
void py_outcome_escaped(py_session_t *s, py_outcome_t *o);

/*
 * Copy str(obj) into t as malloc'd UTF-8 (unencodable surrogates become
 * backslash escapes).  Text longer than limit bytes is cut on a character
 * boundary and ends in "...".  Returns 0, or -1 with a Python exception
 * set (t untouched).
 */
int py_outcome_text(PyObject *obj, size_t limit, pr_str_t *t);

/* Take the pending exception (normalised, with its traceback) or NULL. */
PyObject *py_outcome_fetch(void);


/* py_exec.c */

/* Wake the I/O thread (done_fd); 0, or -1 with errno set. */
int py_exec_wake(py_session_t *s);

#endif /* PY_EXEC_H */
