/*
 * py_replace.c: the functions of the standard library that a session
 * replaces, with builtins bound to the module like the originals (so
 * that their repr, __module__, __self__ and signature look like theirs),
 * which the runtime installs before any user code runs.
 *
 * os._exit (and posix._exit, the same object): in the session process
 * it flushes sys.stdout, sys.stderr and C stdio and has the I/O thread
 * send what the pipes hold (py_drain()) before calling the real _exit
 * with the same arguments.  In a child that user code forked it only
 * calls the real one, as such a child expects.
 *
 * builtins.input and getpass.getpass: in a run whose run frame said
 * "interactive" they ask the client (py_input.c).  Otherwise (no
 * interactive run, code that replaced sys.stdin, a forked child) the
 * original input() runs and meets the EOF of /dev/null (or reads the
 * code's sys.stdin); getpass() raises EOFError rather than open /dev/tty,
 * except in a forked child.  sys.stdin itself stays /dev/null.
 */

#include <Python.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "py_exec.h"
#include "wk_log.h"


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
} py_replace_t;


static PyObject *py_replace_function(const py_replace_t *r);
static PyObject *py_replace_exit(PyObject *self, PyObject *args,
    PyObject *kwargs);
static PyObject *py_replace_input(PyObject *self, PyObject *args);
static PyObject *py_replace_getpass(PyObject *self, PyObject *args,
    PyObject *kwargs);
static int py_replace_asking(void);


static py_session_t  *py_replace_session;
static PyObject      *py_replace_real_exit;     /* posix._exit as it was */
static PyObject      *py_replace_real_input;    /* builtins.input, same */
static PyObject      *py_replace_real_getpass;  /* getpass.getpass, same */
static int            py_replace_interactive_run;  /* input() may ask */

/* os._exit's replacement: the name, signature and text of the original */
static PyMethodDef  py_replace_exit_def = {
    "_exit",
    (PyCFunction) (void (*)(void)) py_replace_exit,
    METH_VARARGS | METH_KEYWORDS,
    "_exit($module, /, status)\n--\n\n"
    "Exit to the system with specified status, without normal exit "
    "processing."
};

static PyMethodDef  py_replace_input_def = {
    "input",
    (PyCFunction) (void (*)(void)) py_replace_input,
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

static PyMethodDef  py_replace_getpass_def = {
    "getpass",
    (PyCFunction) (void (*)(void)) py_replace_getpass,
    METH_VARARGS | METH_KEYWORDS,
    "getpass($module, /, prompt='Password: ', stream=None)\n--\n\n"
    "Prompt for a password, with echo turned off.\n\n"
    "In a PyREPL run that can be answered, the client is asked instead."
};

static py_replace_t  py_replace_table[] = {
    { "_exit_draining", "posix", &py_replace_exit_def, &py_replace_real_exit },
    { "_input_asking", "builtins", &py_replace_input_def,
      &py_replace_real_input },
    { "_getpass_asking", "getpass", &py_replace_getpass_def,
      &py_replace_real_getpass },
};


int
py_replace_install(py_session_t *s, PyObject *dict)
{
    size_t     i;
    PyObject  *fn;

    py_replace_session = s;

    for (i = 0; i < sizeof(py_replace_table) / sizeof(py_replace_t); i++) {
        fn = py_replace_function(&py_replace_table[i]);
        if (fn == NULL) {
            return -1;
        }

        if (PyDict_SetItemString(dict, py_replace_table[i].name, fn) != 0) {
            py_start_log_error("cannot give the runtime a replacement");
            Py_DECREF(fn);
            return -1;
        }

        Py_DECREF(fn);
    }

    return 0;
}


void
py_replace_interactive(int interactive)
{
    py_replace_interactive_run = interactive;
}


/*
 * Keep the original of r and make its replacement: a builtin bound to the
 * module like posix._exit and input are, so that its repr, __module__,
 * __self__ and signature look like theirs.  Returns a new reference, or
 * NULL (logged).
 */
static PyObject *
py_replace_function(const py_replace_t *r)
{
    PyObject  *module, *name, *fn;

    module = PyImport_ImportModule(r->module);
    if (module == NULL) {
        py_start_log_error("cannot import a module the runtime patches");
        return NULL;
    }

    *r->real = PyObject_GetAttrString(module, r->def->ml_name);
    if (*r->real == NULL) {
        py_start_log_error("cannot get a function the runtime replaces");
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
        py_start_log_error("cannot make a replacement function");
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
py_replace_exit(PyObject *self, PyObject *args, PyObject *kwargs)
{
    int            rc;
    py_session_t  *s;

    s = py_replace_session;

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

    return PyObject_Call(py_replace_real_exit, args, kwargs);
}


/* input([prompt]): ask the client, or the original when it cannot. */
static PyObject *
py_replace_input(PyObject *self, PyObject *args)
{
    PyObject  *prompt;

    prompt = NULL;

    if (!PyArg_ParseTuple(args, "|O:input", &prompt)) {
        return NULL;
    }

    /* code that replaced sys.stdin reads from its own */
    if (!py_replace_asking()
        || PySys_GetObject("stdin") != PySys_GetObject("__stdin__"))
    {
        return PyObject_Call(py_replace_real_input, args, NULL);
    }

    return py_input_ask(py_replace_session, prompt, "", 0);
}


/* getpass.getpass(prompt='Password: ', stream=None), the same way. */
static PyObject *
py_replace_getpass(PyObject *self, PyObject *args, PyObject *kwargs)
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

    if (getpid() != py_replace_session->pid) {
        return PyObject_Call(py_replace_real_getpass, args, kwargs);
    }

    /* the original would open /dev/tty: an operator's terminal, maybe */
    if (!py_replace_asking()) {
        PyErr_SetString(PyExc_EOFError, "EOF when reading a line");
        return NULL;
    }

    return py_input_ask(py_replace_session, prompt, "Password: ", 1);
}


/* Whether input() may ask the client: an interactive run, this process. */
static int
py_replace_asking(void)
{
    return py_replace_interactive_run && getpid() == py_replace_session->pid;
}
