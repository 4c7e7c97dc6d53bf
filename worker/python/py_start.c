/*
 * py_start.c: libpython in a session process (and in the zygote, which
 * forks sessions with it already up): its start-up, as a plain python3
 * starts but for argv, the signal handlers and unbuffered stdio, and the
 * embedded runtime, a private module compiled from pyrepl_runtime_source
 * whose run_cell() gives REPL semantics and formats tracebacks, and which
 * installs py_replace.c's replacements before any user code runs.
 */

#include <Python.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "py_exec.h"
#include "wk_log.h"


#define PY_START_RUNTIME_FILE  "<pyrepl_runtime>"  /* _FILE in the runtime */

#define PY_START_STR(x)        #x
#define PY_START_XSTR(x)       PY_START_STR(x)

/*
 * sys.executable: the interpreter matching the libpython we link, so that
 * subprocess.run([sys.executable, ...]) and multiprocessing work.  The
 * prefix (and so the standard library and dist-packages) is found from it.
 */
#ifndef PY_START_EXECUTABLE
#define PY_START_EXECUTABLE                                                  \
    "/usr/bin/python" PY_START_XSTR(PY_MAJOR_VERSION) "."                    \
    PY_START_XSTR(PY_MINOR_VERSION)
#endif


static int py_start_runtime(py_session_t *s);
static void py_start_log_status(const char *what, PyStatus status);


py_runtime_t  py_runtime;


int
py_start(py_session_t *s)
{
    wchar_t      *orig[1];
    PyStatus      status;
    PyConfig      config;
    PyPreConfig   preconfig;
    PyObject     *main;

    static char  *argv[] = { "", NULL };

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
        py_start_log_status("Py_PreInitialize()", status);
        return -1;
    }

    PyConfig_InitPythonConfig(&config);

    config.parse_argv = 0;
    config.install_signal_handlers = 1;    /* SIGINT -> KeyboardInterrupt */
    config.buffered_stdio = 0;             /* print() reaches the pipe now */

    status = PyConfig_SetBytesArgv(&config, 1, argv);
    if (PyStatus_Exception(status)) {
        py_start_log_status("PyConfig_SetBytesArgv()", status);
        goto fail;
    }

    /* without it libpython still finds its compiled-in prefix */
    if (access(PY_START_EXECUTABLE, X_OK) == 0) {
        status = PyConfig_SetBytesString(&config, &config.executable,
                                         PY_START_EXECUTABLE);
        if (PyStatus_Exception(status)) {
            py_start_log_status("PyConfig_SetBytesString(executable)",
                                status);
            goto fail;
        }

        /* sys.orig_argv, as "python3" alone would have it */
        orig[0] = config.executable;
        status = PyConfig_SetWideStringList(&config, &config.orig_argv, 1,
                                            orig);
        if (PyStatus_Exception(status)) {
            py_start_log_status("PyConfig_SetWideStringList(orig_argv)",
                                status);
            goto fail;
        }
    }

    status = Py_InitializeFromConfig(&config);
    if (PyStatus_Exception(status)) {
        py_start_log_status("Py_InitializeFromConfig()", status);
        goto fail;
    }

    PyConfig_Clear(&config);

    main = PyImport_AddModule("__main__");
    if (main == NULL) {
        py_start_log_error("cannot get the __main__ module");
        return -1;
    }

    py_runtime.main_dict = PyModule_GetDict(main);

    if (PyDict_GetItemString(py_runtime.main_dict, "__builtins__") == NULL) {
        wk_log("session %s: __main__ has no __builtins__", s->id);
        return -1;
    }

    return py_start_runtime(s);

fail:

    PyConfig_Clear(&config);

    return -1;
}


/*
 * Execute the embedded runtime once into a fresh module that is not in
 * sys.modules (the user cannot reach it by import) and keep its
 * run_cell().  The runtime finds the replacements of os._exit, input and
 * getpass.getpass in its globals (py_replace_install).  Returns 0 or -1
 * (logged).
 */
static int
py_start_runtime(py_session_t *s)
{
    PyObject  *code, *dict, *ret;

    code = NULL;
    ret = NULL;

    py_runtime.module = PyModule_New("_pyrepl_runtime");
    if (py_runtime.module == NULL) {
        py_start_log_error("cannot create the runtime module");
        goto fail;
    }

    dict = PyModule_GetDict(py_runtime.module);

    if (PyDict_SetItemString(dict, "__builtins__", PyEval_GetBuiltins())
        != 0)
    {
        py_start_log_error("cannot set the runtime's __builtins__");
        goto fail;
    }

    if (py_replace_install(s, dict) != 0
        || py_display_install(s, dict) != 0)
    {
        goto fail;
    }

    code = Py_CompileString(pyrepl_runtime_source, PY_START_RUNTIME_FILE,
                            Py_file_input);
    if (code == NULL) {
        py_start_log_error("cannot compile the runtime");
        goto fail;
    }

    ret = PyEval_EvalCode(code, dict, dict);
    if (ret == NULL) {
        py_start_log_error("cannot execute the runtime");
        goto fail;
    }

    py_runtime.run_cell = PyDict_GetItemString(dict, "run_cell");
    if (py_runtime.run_cell == NULL || !PyCallable_Check(py_runtime.run_cell)) {
        wk_log("the runtime has no callable run_cell()");
        py_runtime.run_cell = NULL;
        goto fail;
    }

    py_runtime.namespace_fn = PyDict_GetItemString(dict, "namespace");
    if (py_runtime.namespace_fn == NULL
        || !PyCallable_Check(py_runtime.namespace_fn))
    {
        wk_log("the runtime has no callable namespace()");
        py_runtime.namespace_fn = NULL;
        py_runtime.run_cell = NULL;
        goto fail;
    }

    py_runtime.checkpoint_fn = PyDict_GetItemString(dict, "checkpoint");
    py_runtime.restore_fn = PyDict_GetItemString(dict, "restore");
    py_runtime.settle_fn = PyDict_GetItemString(dict, "settle");
    py_runtime.introspect_fn = PyDict_GetItemString(dict, "introspect");
    if (py_runtime.checkpoint_fn == NULL || py_runtime.restore_fn == NULL
        || py_runtime.settle_fn == NULL || py_runtime.introspect_fn == NULL)
    {
        wk_log("the runtime has no checkpoint(), restore(), settle() or "
               "introspect()");
        py_runtime.introspect_fn = NULL;
        py_runtime.checkpoint_fn = NULL;
        py_runtime.restore_fn = NULL;
        py_runtime.settle_fn = NULL;
        py_runtime.namespace_fn = NULL;
        py_runtime.run_cell = NULL;
        goto fail;
    }

    Py_INCREF(py_runtime.run_cell);
    Py_INCREF(py_runtime.namespace_fn);
    Py_INCREF(py_runtime.checkpoint_fn);
    Py_INCREF(py_runtime.restore_fn);
    Py_INCREF(py_runtime.introspect_fn);
    Py_INCREF(py_runtime.settle_fn);
    Py_DECREF(ret);
    Py_DECREF(code);

    return 0;

fail:

    Py_XDECREF(ret);
    Py_XDECREF(code);
    Py_CLEAR(py_runtime.module);

    return -1;
}


void
py_start_home(void)
{
    PyObject  *ret;

    ret = PyObject_CallMethod(py_runtime.module, "start", NULL);
    if (ret == NULL) {
        py_start_log_error("the runtime's start() failed");
    }

    Py_XDECREF(ret);
}


void
py_start_log_error(const char *what)
{
    PyObject    *exc, *name, *str;
    const char  *n, *v;

    exc = py_outcome_fetch();

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
py_start_log_status(const char *what, PyStatus status)
{
    wk_log("%s failed: %s%s%s", what,
           status.func ? status.func : "",
           status.func ? ": " : "",
           status.err_msg ? status.err_msg : "unknown error");
}
