/*
 * py_exec.c: the main thread of a session process.  It owns libpython:
 * the isolated start-up configuration, the embedded runtime (a private
 * module compiled from pyrepl_runtime_source whose run_cell() gives REPL
 * semantics and formats tracebacks), the __main__ namespace every run
 * shares, and the execution count.
 *
 * Code runs on this thread so that signals reach it: the I/O thread turns
 * an interrupt into pthread_kill(SIGINT), Python's handler trips, and the
 * running code sees KeyboardInterrupt (sleeps and blocking reads return
 * early with EINTR).  Between runs the thread waits on the session's
 * condition variable with the GIL released, so threads the user started
 * keep running.  The outcome of a run is copied out of Python objects
 * into plain malloc'd UTF-8 (py_outcome_t) for the I/O thread, which never
 * takes the GIL.
 *
 * It also owns the replacement of os._exit (and posix._exit, the same
 * object), which the runtime installs before any user code runs: in the
 * session process it flushes sys.stdout, sys.stderr and C stdio and has
 * the I/O thread send what the pipes hold (py_drain()) before calling
 * the real _exit with the same arguments.  In a child that user code
 * forked it only calls the real one, as such a child expects.
 *
 * Likewise builtins.input and getpass.getpass: in a run whose run frame
 * said "interactive" they do not print the prompt and read stdin, they
 * ask the I/O thread to send an input_request and wait, GIL released,
 * until it stores the answer (returned without a trailing newline), an
 * EOF (EOFError) or an interrupt (whose SIGINT is then pending, so Python
 * raises KeyboardInterrupt).  The wait is ppoll(2) on input_fd with the
 * thread's own signal mask, other signals blocked in between, so that any
 * signal whose handler raises ends it at once, as it would end a read from
 * a terminal.  Otherwise (no interactive run, code that replaced
 * sys.stdin, a forked child) the original input() runs and meets the EOF
 * of /dev/null (or reads the code's sys.stdin); getpass() raises EOFError
 * rather than open /dev/tty, except in a forked child.  sys.stdin itself
 * stays /dev/null.
 */

#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "py_session.h"
#include "wk_log.h"
#include "wk_time.h"


#define PY_EXEC_RUNTIME_FILE  "<pyrepl_runtime>"  /* _FILE in the runtime */
#define PY_EXEC_FILENAME_LEN  32                  /* "<cell N>" */
#define PY_EXEC_ENAME_MAX     1024
#define PY_EXEC_TB_ENTRY_MAX  ((size_t) 16 * 1024) /* a traceback entry */
#define PY_EXEC_TB_OMITTED    "    ... (traceback entries omitted)\n"
#define PY_EXEC_NAMES_MAX     10000     /* names in a change report */
#define PY_EXEC_NAME_MAX      1024      /* bytes of one name */

#define PY_EXEC_STR(x)        #x
#define PY_EXEC_XSTR(x)       PY_EXEC_STR(x)

/*
 * sys.executable: the interpreter matching the libpython we link, so that
 * subprocess.run([sys.executable, ...]) and multiprocessing work.  The
 * prefix (and so the standard library and dist-packages) is found from it.
 */
#ifndef PY_EXEC_EXECUTABLE
#define PY_EXEC_EXECUTABLE                                                   \
    "/usr/bin/python" PY_EXEC_XSTR(PY_MAJOR_VERSION) "."                     \
    PY_EXEC_XSTR(PY_MINOR_VERSION)
#endif


/*
 * A function of the standard library that the runtime replaces: the
 * runtime finds the replacement under "name"; the original, the module's
 * attribute def->ml_name, is kept in *real.
 */
typedef struct {
    const char    *name;
    const char    *module;
    PyMethodDef   *def;
    PyObject     **real;
} py_exec_replacement_t;


static int py_exec_load_runtime(void);
static PyObject *py_exec_function(const py_exec_replacement_t *r);
static PyObject *py_exec_exit(PyObject *self, PyObject *args,
    PyObject *kwargs);
static PyObject *py_exec_input(PyObject *self, PyObject *args);
static PyObject *py_exec_getpass(PyObject *self, PyObject *args,
    PyObject *kwargs);
static int py_exec_asking(void);
static PyObject *py_exec_ask(PyObject *prompt, const char *dflt,
    int password);
static int py_exec_ask_once(PyObject *prompt, const char *dflt,
    int password, PyObject **ret);
static int py_exec_ask_wait(py_session_t *s, const sigset_t *mask,
    pr_str_t *answer);
static void py_exec_ask_end(py_session_t *s, pr_str_t *answer);
static int py_exec_wait(py_session_t *s, char **code, size_t *len,
    int *interactive, int *op, int *tx_policy);
static int py_exec_transact(py_session_t *s, int tx_policy, char *code,
    size_t len, py_outcome_t *o);
static void py_exec_decide(py_session_t *s, int op, py_outcome_t *o);
static int py_exec_post(py_session_t *s, py_outcome_t *o);
static int py_exec_wake(py_session_t *s);
static void py_exec_hand_over(py_session_t *s, py_outcome_t *o)
    __attribute__((noreturn));
static void py_exec_state_call(py_session_t *s, int op, const char *name,
    py_outcome_t *o);
static void py_exec_state(py_session_t *s, int op, const char *name,
    py_outcome_t *o);
static int py_exec_names(PyObject *list, pr_strs_t *names);
static void py_exec_strs_free(pr_strs_t *strs);
static void py_exec_run(py_session_t *s, const char *code, size_t len,
    py_outcome_t *o);
static int py_exec_outcome(py_session_t *s, PyObject *ret, py_outcome_t *o);
static void py_exec_escaped(py_session_t *s, py_outcome_t *o);
static int py_exec_text(PyObject *obj, size_t limit, pr_str_t *t);
static int py_exec_traceback(PyObject *list, size_t budget, pr_strs_t *tb);
static int py_exec_interrupted(py_session_t *s);
static PyObject *py_exec_fetch(void);
static void py_exec_log_error(const char *what);
static void py_exec_home(void);
static void py_exec_log_status(const char *what, PyStatus status);


static py_session_t  *py_exec_session;
static PyObject      *py_exec_runtime;     /* the private runtime module */
static PyObject      *py_exec_run_cell;    /* its run_cell() */
static PyObject      *py_exec_namespace_fn;  /* its namespace() */
static PyObject      *py_exec_checkpoint_fn; /* its checkpoint() */
static PyObject      *py_exec_restore_fn;    /* its restore() */
static PyObject      *py_exec_main_dict;   /* __main__.__dict__ (borrowed) */
static PyObject      *py_exec_real_exit;   /* posix._exit as it was */
static PyObject      *py_exec_real_input;  /* builtins.input as it was */
static PyObject      *py_exec_real_getpass;  /* getpass.getpass, same */
static int64_t        py_exec_count;       /* execution_count of the last
                                              run */
static int            py_exec_interactive; /* the run may ask input() */

/* os._exit's replacement: the name, signature and text of the original */
static PyMethodDef  py_exec_exit_def = {
    "_exit",
    (PyCFunction) (void (*)(void)) py_exec_exit,
    METH_VARARGS | METH_KEYWORDS,
    "_exit($module, /, status)\n--\n\n"
    "Exit to the system with specified status, without normal exit "
    "processing."
};

static PyMethodDef  py_exec_input_def = {
    "input",
    (PyCFunction) (void (*)(void)) py_exec_input,
    METH_VARARGS,
    "input($module, prompt='', /)\n--\n\n"
    "Read a string from standard input.  The trailing newline is stripped."
    "\n\n"
    "The prompt string, if given, is printed to standard output without a"
    "\ntrailing newline before reading input.\n\n"
    "If the user hits EOF (*nix: Ctrl-D, Windows: Ctrl-Z+Return), raise "
    "EOFError.\nIn a PyREPL run that can be answered, the client is asked "
    "instead."
};

static PyMethodDef  py_exec_getpass_def = {
    "getpass",
    (PyCFunction) (void (*)(void)) py_exec_getpass,
    METH_VARARGS | METH_KEYWORDS,
    "getpass($module, /, prompt='Password: ', stream=None)\n--\n\n"
    "Prompt for a password, with echo turned off.\n\n"
    "In a PyREPL run that can be answered, the client is asked instead."
};

static py_exec_replacement_t  py_exec_replacements[] = {
    { "_exit_draining", "posix", &py_exec_exit_def, &py_exec_real_exit },
    { "_input_asking", "builtins", &py_exec_input_def,
      &py_exec_real_input },
    { "_getpass_asking", "getpass", &py_exec_getpass_def,
      &py_exec_real_getpass },
};


int
py_exec_init(py_session_t *s)
{
    wchar_t      *orig[1];
    PyStatus      status;
    PyConfig      config;
    PyPreConfig   preconfig;
    PyObject     *main;

    static char  *argv[] = { "", NULL };

    py_exec_session = s;

    /*
     * As a plain python3 starts: the environment (the session's own,
     * which nginx made: PYTHON* variables there are the operator's), the
     * user site directory under HOME, the locale from LANG (C.UTF-8 by
     * default; a "C" locale is coerced to UTF-8 as python3 does).  Only
     * argv, the signal handlers and unbuffered stdio are an interactive
     * session's.
     */
    PyPreConfig_InitPythonConfig(&preconfig);
    preconfig.parse_argv = 0;

    status = Py_PreInitialize(&preconfig);
    if (PyStatus_Exception(status)) {
        py_exec_log_status("Py_PreInitialize()", status);
        return -1;
    }

    PyConfig_InitPythonConfig(&config);

    config.parse_argv = 0;
    config.install_signal_handlers = 1;    /* SIGINT -> KeyboardInterrupt */
    config.buffered_stdio = 0;             /* print() reaches the pipe now */

    status = PyConfig_SetBytesArgv(&config, 1, argv);
    if (PyStatus_Exception(status)) {
        py_exec_log_status("PyConfig_SetBytesArgv()", status);
        goto fail;
    }

    /* without it libpython still finds its compiled-in prefix */
    if (access(PY_EXEC_EXECUTABLE, X_OK) == 0) {
        status = PyConfig_SetBytesString(&config, &config.executable,
                                         PY_EXEC_EXECUTABLE);
        if (PyStatus_Exception(status)) {
            py_exec_log_status("PyConfig_SetBytesString(executable)",
                               status);
            goto fail;
        }

        /* sys.orig_argv, as "python3" alone would have it */
        orig[0] = config.executable;
        status = PyConfig_SetWideStringList(&config, &config.orig_argv, 1,
                                            orig);
        if (PyStatus_Exception(status)) {
            py_exec_log_status("PyConfig_SetWideStringList(orig_argv)",
                               status);
            goto fail;
        }
    }

    status = Py_InitializeFromConfig(&config);
    if (PyStatus_Exception(status)) {
        py_exec_log_status("Py_InitializeFromConfig()", status);
        goto fail;
    }

    PyConfig_Clear(&config);

    main = PyImport_AddModule("__main__");
    if (main == NULL) {
        py_exec_log_error("cannot get the __main__ module");
        return -1;
    }

    py_exec_main_dict = PyModule_GetDict(main);

    if (PyDict_GetItemString(py_exec_main_dict, "__builtins__") == NULL) {
        wk_log("session %s: __main__ has no __builtins__", s->id);
        return -1;
    }

    return py_exec_load_runtime();

fail:

    PyConfig_Clear(&config);

    return -1;
}


/*
 * Execute the embedded runtime once into a fresh module that is not in
 * sys.modules (the user cannot reach it by import) and keep its
 * run_cell().  The runtime finds the replacements of os._exit, input and
 * getpass.getpass under the names in py_exec_replacements.  Returns 0 or
 * -1 (logged).
 */
static int
py_exec_load_runtime(void)
{
    size_t     i;
    PyObject  *code, *dict, *ret, *fn;

    code = NULL;
    ret = NULL;

    py_exec_runtime = PyModule_New("_pyrepl_runtime");
    if (py_exec_runtime == NULL) {
        py_exec_log_error("cannot create the runtime module");
        goto fail;
    }

    dict = PyModule_GetDict(py_exec_runtime);

    if (PyDict_SetItemString(dict, "__builtins__", PyEval_GetBuiltins())
        != 0)
    {
        py_exec_log_error("cannot set the runtime's __builtins__");
        goto fail;
    }

    for (i = 0; i < sizeof(py_exec_replacements)
                    / sizeof(py_exec_replacement_t); i++)
    {
        fn = py_exec_function(&py_exec_replacements[i]);
        if (fn == NULL) {
            goto fail;
        }

        if (PyDict_SetItemString(dict, py_exec_replacements[i].name, fn)
            != 0)
        {
            py_exec_log_error("cannot give the runtime a replacement");
            Py_DECREF(fn);
            goto fail;
        }

        Py_DECREF(fn);
    }

    code = Py_CompileString(pyrepl_runtime_source, PY_EXEC_RUNTIME_FILE,
                            Py_file_input);
    if (code == NULL) {
        py_exec_log_error("cannot compile the runtime");
        goto fail;
    }

    ret = PyEval_EvalCode(code, dict, dict);
    if (ret == NULL) {
        py_exec_log_error("cannot execute the runtime");
        goto fail;
    }

    py_exec_run_cell = PyDict_GetItemString(dict, "run_cell");
    if (py_exec_run_cell == NULL || !PyCallable_Check(py_exec_run_cell)) {
        wk_log("the runtime has no callable run_cell()");
        py_exec_run_cell = NULL;
        goto fail;
    }

    py_exec_namespace_fn = PyDict_GetItemString(dict, "namespace");
    if (py_exec_namespace_fn == NULL
        || !PyCallable_Check(py_exec_namespace_fn))
    {
        wk_log("the runtime has no callable namespace()");
        py_exec_namespace_fn = NULL;
        py_exec_run_cell = NULL;
        goto fail;
    }

    py_exec_checkpoint_fn = PyDict_GetItemString(dict, "checkpoint");
    py_exec_restore_fn = PyDict_GetItemString(dict, "restore");
    if (py_exec_checkpoint_fn == NULL || py_exec_restore_fn == NULL) {
        wk_log("the runtime has no checkpoint() or restore()");
        py_exec_checkpoint_fn = NULL;
        py_exec_restore_fn = NULL;
        py_exec_namespace_fn = NULL;
        py_exec_run_cell = NULL;
        goto fail;
    }

    Py_INCREF(py_exec_run_cell);
    Py_INCREF(py_exec_namespace_fn);
    Py_INCREF(py_exec_checkpoint_fn);
    Py_INCREF(py_exec_restore_fn);
    Py_DECREF(ret);
    Py_DECREF(code);

    return 0;

fail:

    Py_XDECREF(ret);
    Py_XDECREF(code);
    Py_CLEAR(py_exec_runtime);

    return -1;
}


/*
 * Keep the original of r and make its replacement: a builtin bound to the
 * module like posix._exit and input are, so that its repr, __module__,
 * __self__ and signature look like theirs.  Returns a new reference, or
 * NULL (logged).
 */
static PyObject *
py_exec_function(const py_exec_replacement_t *r)
{
    PyObject  *module, *name, *fn;

    module = PyImport_ImportModule(r->module);
    if (module == NULL) {
        py_exec_log_error("cannot import a module the runtime patches");
        return NULL;
    }

    *r->real = PyObject_GetAttrString(module, r->def->ml_name);
    if (*r->real == NULL) {
        py_exec_log_error("cannot get a function the runtime replaces");
        Py_DECREF(module);
        return NULL;
    }

    fn = NULL;

    name = PyModule_GetNameObject(module);
    if (name != NULL) {
        fn = PyCFunction_NewEx(r->def, module, name);
        Py_DECREF(name);
    }

    Py_DECREF(module);

    if (fn == NULL) {
        py_exec_log_error("cannot make a replacement function");
        Py_CLEAR(*r->real);
    }

    return fn;
}


/*
 * os._exit(status): send the session's pending output, then the real
 * _exit, which parses the arguments (and, if they are bad, raises what it
 * would have raised: the output went out early, nothing else happened).
 * The GIL stays held, so no other Python thread writes in between.
 */
static PyObject *
py_exec_exit(PyObject *self, PyObject *args, PyObject *kwargs)
{
    int            rc;
    py_session_t  *s;

    s = py_exec_session;

    if (getpid() == s->pid) {
        py_exec_flush();

        rc = py_drain(s, PY_DRAIN_EXIT, PY_DRAIN_EXIT_MS);

        switch (rc) {

        case PY_DRAIN_OK:
        case PY_DRAIN_NOT_HERE:
            break;

        case PY_DRAIN_NOT_OURS:
            wk_log("session %s: os._exit(): the drain pipes were closed or "
                   "replaced by the code; its last output may be lost",
                   s->id);
            break;

        case PY_DRAIN_TIMEOUT:
            wk_log("session %s: os._exit(): no answer from the I/O thread "
                   "in %d ms; the last output may be lost", s->id,
                   PY_DRAIN_EXIT_MS);
            break;

        default:
            wk_log("session %s: os._exit(): cannot ask the I/O thread to "
                   "send the last output: %s", s->id, strerror(errno));
            break;
        }
    }

    return PyObject_Call(py_exec_real_exit, args, kwargs);
}


/* input([prompt]): ask the client, or the original when it cannot. */
static PyObject *
py_exec_input(PyObject *self, PyObject *args)
{
    PyObject  *prompt;

    prompt = NULL;

    if (!PyArg_ParseTuple(args, "|O:input", &prompt)) {
        return NULL;
    }

    /* code that replaced sys.stdin reads from its own */
    if (!py_exec_asking()
        || PySys_GetObject("stdin") != PySys_GetObject("__stdin__"))
    {
        return PyObject_Call(py_exec_real_input, args, NULL);
    }

    return py_exec_ask(prompt, "", 0);
}


/* getpass.getpass(prompt='Password: ', stream=None), the same way. */
static PyObject *
py_exec_getpass(PyObject *self, PyObject *args, PyObject *kwargs)
{
    PyObject  *prompt, *stream;

    static char  *names[] = { "prompt", "stream", NULL };

    prompt = NULL;
    stream = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|OO:getpass", names,
                                     &prompt, &stream))
    {
        return NULL;
    }

    if (getpid() != py_exec_session->pid) {
        return PyObject_Call(py_exec_real_getpass, args, kwargs);
    }

    /* the original would open /dev/tty: an operator's terminal, maybe */
    if (!py_exec_asking()) {
        PyErr_SetString(PyExc_EOFError, "EOF when reading a line");
        return NULL;
    }

    return py_exec_ask(prompt, "Password: ", 1);
}


/* Whether input() may ask the client: an interactive run, this process. */
static int
py_exec_asking(void)
{
    return py_exec_interactive && getpid() == py_exec_session->pid;
}


/*
 * Ask the client until it answers.  An interrupt that a handler of the
 * code's swallowed asks again (with a new request id); on a thread other
 * than the main one, which SIGINT does not reach, it is a
 * KeyboardInterrupt.  Returns the answer (a new reference), or NULL with
 * an exception set.
 */
static PyObject *
py_exec_ask(PyObject *prompt, const char *dflt, int password)
{
    PyObject  *ret;

    for ( ;; ) {
        if (py_exec_ask_once(prompt, dflt, password, &ret)
            != PY_INPUT_INTERRUPTED)
        {
            return ret;
        }

        /* the SIGINT is delivered by now: Python's handler raises */
        if (PyErr_CheckSignals() != 0) {
            return NULL;
        }

        if (!pthread_equal(pthread_self(), py_exec_session->main_thread)) {
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
py_exec_ask_once(PyObject *prompt, const char *dflt, int password,
    PyObject **ret)
{
    int            rc, state;
    size_t         len;
    pr_str_t       text, answer;
    sigset_t       block, mask;
    py_session_t  *s;

    static const int  faults[] = {
        SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGSYS, SIGTRAP
    };

    s = py_exec_session;
    *ret = NULL;

    memset(&text, 0, sizeof(pr_str_t));
    memset(&answer, 0, sizeof(pr_str_t));

    if (prompt != NULL) {
        if (py_exec_text(prompt, s->max_frame - 1024, &text) != 0) {
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
        state = py_exec_ask_wait(s, &mask, &answer);
    }

    /* the I/O thread may not have taken the prompt: take it all back */
    py_exec_ask_end(s, state == PY_INPUT_ANSWERED ? NULL : &answer);

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
py_exec_ask_wait(py_session_t *s, const sigset_t *mask, pr_str_t *answer)
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
py_exec_ask_end(py_session_t *s, pr_str_t *answer)
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


void
py_exec_loop(py_session_t *s)
{
    int            rc, interactive, op, tx_policy, home;
    char          *code;
    size_t         len;
    py_outcome_t   o;

    interactive = 0;
    home = 0;

    for ( ;; ) {

        Py_BEGIN_ALLOW_THREADS
        rc = py_exec_wait(s, &code, &len, &interactive, &op, &tx_policy);
        Py_END_ALLOW_THREADS

        if (rc != 0) {
            return;
        }

        if (!home) {
            py_exec_home();
            home = 1;
        }

        memset(&o, 0, sizeof(py_outcome_t));
        o.op = op;

        switch (op) {

        case PY_OP_NAMESPACE:
        case PY_OP_CHECKPOINT:
        case PY_OP_RESTORE:
            py_exec_state(s, op, code, &o);
            break;

        case PY_OP_COMMIT:
        case PY_OP_ROLLBACK:
            py_exec_decide(s, op, &o);
            break;

        default:
            /* read by input() of any thread, under the GIL */
            py_exec_interactive = interactive;

            rc = py_exec_transact(s, tx_policy, code, len, &o);

            py_exec_interactive = 0;

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
 * The runtime's start(), once, before the first request is served: HOME
 * and what depends on it follow the session's working directory, which a
 * pool process gets its name in only when it is handed out.
 */
static void
py_exec_home(void)
{
    PyObject  *ret;

    ret = PyObject_CallMethod(py_exec_runtime, "start", NULL);
    if (ret == NULL) {
        py_exec_log_error("the runtime's start() failed");
    }

    Py_XDECREF(ret);
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
            py_exec_escaped(s, o);
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


/* Wake the I/O thread (done_fd); 0, or -1 with errno set. */
static int
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
    s->code = NULL;
    s->code_len = 0;
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
    int64_t    start;
    PyObject  *source, *filename, *args, *ret;
    char       name[PY_EXEC_FILENAME_LEN];

    args = NULL;
    ret = NULL;
    source = NULL;
    filename = NULL;

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

    /* invalid UTF-8 in code becomes U+FFFD, which the parser reports */
    source = PyUnicode_DecodeUTF8(code, (Py_ssize_t) len, "replace");
    if (source == NULL) {
        goto escaped;
    }

    filename = PyUnicode_FromString(name);
    if (filename == NULL) {
        goto escaped;
    }

    args = PyTuple_Pack(3, source, filename, py_exec_main_dict);
    if (args == NULL) {
        goto escaped;
    }

    ret = PyObject_Call(py_exec_run_cell, args, NULL);
    if (ret == NULL) {
        goto escaped;
    }

    if (py_exec_outcome(s, ret, o) != 0) {
        goto escaped;
    }

    goto done;

escaped:

    /*
     * An exception escaped the runtime itself: a second interrupt while
     * it formatted the first, or running out of memory.
     */
    py_exec_escaped(s, o);

done:

    Py_XDECREF(ret);
    Py_XDECREF(args);
    Py_XDECREF(filename);
    Py_XDECREF(source);

    py_exec_flush();

    o->ms = wk_msec() - start;
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
    if (name != NULL
        && snprintf(file, sizeof(file), "%s/%s", s->workdir, name)
           >= (int) sizeof(file))
    {
        PyErr_SetString(PyExc_OSError, "checkpoint path too long");
        py_exec_escaped(s, o);
        return;
    }

    switch (op) {

    case PY_OP_CHECKPOINT:
        ret = PyObject_CallFunction(py_exec_checkpoint_fn, "OsLL",
                                    py_exec_main_dict, file,
                                    (long long) s->max_size,
                                    (long long) py_exec_count);
        break;

    case PY_OP_RESTORE:
        ret = PyObject_CallFunction(py_exec_restore_fn, "Os",
                                    py_exec_main_dict, file);
        break;

    default:
        ret = PyObject_CallOneArg(py_exec_namespace_fn, py_exec_main_dict);
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

    if (ret == NULL || py_exec_text(ret, s->max_frame - 1024, &o->result)
                       != 0)
    {
        py_exec_escaped(s, o);
    }

    Py_XDECREF(ret);
}


/*
 * Copy run_cell()'s (status, result, ename, evalue, traceback, changes)
 * into o.  Returns 0, or -1 with a Python exception set.
 */
static int
py_exec_outcome(py_session_t *s, PyObject *ret, py_outcome_t *o)
{
    PyObject  *status, *result, *ename, *evalue, *tb, *changes;

    if (!PyTuple_Check(ret) || PyTuple_GET_SIZE(ret) != 6
        || !PyTuple_Check(PyTuple_GET_ITEM(ret, 5))
        || PyTuple_GET_SIZE(PyTuple_GET_ITEM(ret, 5)) != 3)
    {
        PyErr_SetString(PyExc_SystemError,
                        "pyrepl runtime: run_cell() returned a bad value");
        return -1;
    }

    status = PyTuple_GET_ITEM(ret, 0);
    result = PyTuple_GET_ITEM(ret, 1);
    ename = PyTuple_GET_ITEM(ret, 2);
    evalue = PyTuple_GET_ITEM(ret, 3);
    tb = PyTuple_GET_ITEM(ret, 4);
    changes = PyTuple_GET_ITEM(ret, 5);

    if (py_exec_names(PyTuple_GET_ITEM(changes, 0), &o->added) != 0
        || py_exec_names(PyTuple_GET_ITEM(changes, 1), &o->modified) != 0
        || py_exec_names(PyTuple_GET_ITEM(changes, 2), &o->removed) != 0)
    {
        return -1;
    }

    if (PyUnicode_Check(status)
        && PyUnicode_CompareWithASCIIString(status, "ok") == 0)
    {
        o->status = WK_IO_RUN_OK;

    } else if (PyUnicode_Check(status)
               && PyUnicode_CompareWithASCIIString(status, "interrupted")
                  == 0)
    {
        o->status = WK_IO_RUN_INTERRUPTED;

    } else {
        o->status = WK_IO_RUN_ERROR;
    }

    if (result != Py_None
        && py_exec_text(result, s->max_frame - 1024, &o->result) != 0)
    {
        return -1;
    }

    if (ename == Py_None) {
        return 0;
    }

    if (py_exec_text(ename, PY_EXEC_ENAME_MAX, &o->ename) != 0
        || py_exec_text(evalue, s->max_frame / 4, &o->evalue) != 0)
    {
        return -1;
    }

    if (tb != Py_None && PyList_Check(tb)) {
        return py_exec_traceback(tb, s->max_frame / 2, &o->traceback);
    }

    return 0;
}


/*
 * Describe the exception that is set (and clear it): ename and evalue
 * from the exception, a one-line traceback, status "interrupted" for a
 * KeyboardInterrupt, else "error".  Replaces whatever o held.
 */
static void
py_exec_escaped(py_session_t *s, py_outcome_t *o)
{
    int64_t      count;
    size_t       n;
    char        *line;
    PyObject    *exc, *name;
    const char  *fallback;

    count = o->count;
    py_outcome_free(o);
    o->count = count;

    exc = py_exec_fetch();

    o->status = (exc != NULL
                 && PyErr_GivenExceptionMatches(exc, PyExc_KeyboardInterrupt))
                ? WK_IO_RUN_INTERRUPTED : WK_IO_RUN_ERROR;

    fallback = (o->status == WK_IO_RUN_INTERRUPTED) ? "KeyboardInterrupt"
                                                 : "SystemError";

    if (exc != NULL) {
        name = PyType_GetName(Py_TYPE(exc));

        if (name == NULL
            || py_exec_text(name, PY_EXEC_ENAME_MAX, &o->ename) != 0)
        {
            PyErr_Clear();
        }

        Py_XDECREF(name);

        if (py_exec_text(exc, s->max_frame / 4, &o->evalue) != 0) {
            PyErr_Clear();
        }

        Py_DECREF(exc);
    }

    if (o->ename.data == NULL) {
        o->ename.data = strdup(fallback);
        o->ename.len = (o->ename.data != NULL) ? strlen(fallback) : 0;
    }

    if (o->evalue.data == NULL) {
        o->evalue.data = strdup("");
        o->evalue.len = 0;
    }

    if (o->ename.data == NULL || o->evalue.data == NULL) {
        wk_log("session %s: out of memory describing an error", s->id);
        py_outcome_free(o);
        o->status = WK_IO_RUN_ERROR;
        o->count = count;
        return;
    }

    /* "Name: value\n" (or "Name\n"), as the interpreter's last line */
    n = o->ename.len + (o->evalue.len ? 2 + o->evalue.len : 0) + 1;

    o->traceback.items = malloc(sizeof(pr_str_t));
    line = malloc(n + 1);

    if (o->traceback.items == NULL || line == NULL) {
        free(o->traceback.items);
        free(line);
        o->traceback.items = NULL;
        return;
    }

    (void) snprintf(line, n + 1, "%s%s%s\n", o->ename.data,
                    o->evalue.len ? ": " : "", o->evalue.data);

    o->traceback.items[0].data = line;
    o->traceback.items[0].len = n;
    o->traceback.n = 1;
}


/*
 * Copy str(obj) into t as malloc'd UTF-8 (unencodable surrogates become
 * backslash escapes).  Text longer than limit bytes is cut on a character
 * boundary and ends in "...".  Returns 0, or -1 with a Python exception
 * set (t untouched).
 */
static int
py_exec_text(PyObject *obj, size_t limit, pr_str_t *t)
{
    int          cut;
    char        *data;
    PyObject    *str, *bytes;
    Py_ssize_t   size;
    const char  *p;
    size_t       n;

    bytes = NULL;

    str = PyObject_Str(obj);
    if (str == NULL) {
        return -1;
    }

    bytes = PyUnicode_AsEncodedString(str, "utf-8", "backslashreplace");
    Py_DECREF(str);

    if (bytes == NULL) {
        return -1;
    }

    p = PyBytes_AS_STRING(bytes);
    size = PyBytes_GET_SIZE(bytes);
    n = (size_t) size;
    cut = 0;

    if (limit < 4) {
        limit = 4;
    }

    if (n > limit) {
        n = pr_utf8_boundary((const uint8_t *) p, limit - 3);
        cut = 1;
    }

    data = malloc(n + 4);
    if (data == NULL) {
        Py_DECREF(bytes);
        PyErr_NoMemory();
        return -1;
    }

    memcpy(data, p, n);

    if (cut) {
        memcpy(data + n, "...", 3);
        n += 3;
    }

    data[n] = '\0';

    Py_DECREF(bytes);

    t->data = data;
    t->len = n;

    return 0;
}


/*
 * Copy a list of traceback strings into tb, each entry at most
 * PY_EXEC_TB_ENTRY_MAX bytes.  If the whole is over budget, the middle
 * entries give way to one "omitted" line; the first entries (where the
 * user's cell is) and the last one (the exception) stay.  Returns 0, or
 * -1 with a Python exception set (tb empty).
 */
static int
py_exec_traceback(PyObject *list, size_t budget, pr_strs_t *tb)
{
    size_t       i, k, n, total, marker;
    pr_str_t    *items;

    n = (size_t) PyList_GET_SIZE(list);
    if (n == 0) {
        return 0;
    }

    items = calloc(n + 1, sizeof(pr_str_t));
    if (items == NULL) {
        PyErr_NoMemory();
        return -1;
    }

    total = 0;

    for (i = 0; i < n; i++) {
        if (py_exec_text(PyList_GET_ITEM(list, i), PY_EXEC_TB_ENTRY_MAX,
                         &items[i])
            != 0)
        {
            goto fail;
        }

        total += items[i].len;
    }

    if (total > budget && n > 2) {
        marker = sizeof(PY_EXEC_TB_OMITTED) - 1;
        total = items[n - 1].len + marker;

        for (k = 0; k < n - 1 && total + items[k].len <= budget; k++) {
            total += items[k].len;
        }

        /* items[k .. n-2] go, items[k] becomes the marker */
        for (i = k; i < n - 1; i++) {
            free((char *) items[i].data);
        }

        items[k].data = strdup(PY_EXEC_TB_OMITTED);
        items[k].len = marker;
        items[k + 1] = items[n - 1];
        n = k + 2;

        if (items[k].data == NULL) {
            items[k].len = 0;
            free((char *) items[k + 1].data);
            n = k;
            PyErr_NoMemory();
            goto fail;
        }
    }

    tb->items = items;
    tb->n = (uint32_t) n;

    return 0;

fail:

    for (k = 0; k < n; k++) {
        free((char *) items[k].data);
    }

    free(items);

    return -1;
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


void
py_outcome_free(py_outcome_t *o)
{
    uint32_t  i;

    free((char *) o->result.data);
    free((char *) o->ename.data);
    free((char *) o->evalue.data);

    for (i = 0; i < o->traceback.n; i++) {
        free((char *) o->traceback.items[i].data);
    }

    free(o->traceback.items);

    py_exec_strs_free(&o->added);
    py_exec_strs_free(&o->modified);
    py_exec_strs_free(&o->removed);

    memset(o, 0, sizeof(py_outcome_t));
}


/*
 * A list of names into names (malloc'd), at most PY_EXEC_NAMES_MAX of
 * them: a run that binds more reports the first ones.  Returns 0, or -1
 * with a Python exception set.
 */
static int
py_exec_names(PyObject *list, pr_strs_t *names)
{
    size_t  i, n;

    if (!PyList_Check(list)) {
        PyErr_SetString(PyExc_SystemError,
                        "pyrepl runtime: names are not a list");
        return -1;
    }

    n = (size_t) PyList_GET_SIZE(list);
    if (n > PY_EXEC_NAMES_MAX) {
        n = PY_EXEC_NAMES_MAX;
    }

    if (n == 0) {
        return 0;
    }

    names->items = calloc(n, sizeof(pr_str_t));
    if (names->items == NULL) {
        PyErr_NoMemory();
        return -1;
    }

    for (i = 0; i < n; i++) {
        if (py_exec_text(PyList_GET_ITEM(list, i), PY_EXEC_NAME_MAX,
                         &names->items[i])
            != 0)
        {
            names->n = (uint32_t) i;
            py_exec_strs_free(names);
            return -1;
        }
    }

    names->n = (uint32_t) n;

    return 0;
}


static void
py_exec_strs_free(pr_strs_t *strs)
{
    uint32_t  i;

    for (i = 0; i < strs->n; i++) {
        free((char *) strs->items[i].data);
    }

    free(strs->items);

    strs->items = NULL;
    strs->n = 0;
}


/* Take the pending exception (normalised, with its traceback) or NULL. */
static PyObject *
py_exec_fetch(void)
{
#if PY_VERSION_HEX >= 0x030c0000
    return PyErr_GetRaisedException();
#else
    PyObject  *type, *value, *tb;

    PyErr_Fetch(&type, &value, &tb);

    if (type == NULL) {
        return NULL;
    }

    PyErr_NormalizeException(&type, &value, &tb);

    if (value != NULL && tb != NULL) {
        (void) PyException_SetTraceback(value, tb);
    }

    Py_XDECREF(type);
    Py_XDECREF(tb);

    return value;
#endif
}


/* Log "what: Name: value" for the pending exception and clear it. */
static void
py_exec_log_error(const char *what)
{
    PyObject    *exc, *name, *str;
    const char  *n, *v;

    exc = py_exec_fetch();

    if (exc == NULL) {
        wk_log("%s", what);
        return;
    }

    name = PyType_GetName(Py_TYPE(exc));
    str = PyObject_Str(exc);

    n = (name != NULL) ? PyUnicode_AsUTF8(name) : NULL;
    v = (str != NULL) ? PyUnicode_AsUTF8(str) : NULL;

    wk_log("%s: %s: %s", what, n ? n : "?", v ? v : "?");

    PyErr_Clear();

    Py_XDECREF(str);
    Py_XDECREF(name);
    Py_DECREF(exc);
}


static void
py_exec_log_status(const char *what, PyStatus status)
{
    wk_log("%s failed: %s%s%s", what,
           status.func ? status.func : "",
           status.func ? ": " : "",
           status.err_msg ? status.err_msg : "unknown error");
}
