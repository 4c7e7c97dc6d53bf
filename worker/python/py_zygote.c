/*
 * py_zygote.c: the zygote, one pre-initialised Python per supervisor that
 * forks session processes, so a new session costs a fork instead of
 * Python's start-up and the operator's warm-up imports, and shares their
 * read-only memory with its siblings.
 *
 * A FORK request (wk_zygote.h) carries the session's listening socket and
 * working directory.  The zygote forks twice so that the session is not
 * its child: the intermediate process forks the session, answers FORKED
 * with the session's pid on the control socket itself, writes one "go"
 * byte to a pipe and exits; the zygote reaps it.  Orphaned, the session is
 * reparented to the nearest child subreaper, the supervisor, which so
 * reaps its sessions whoever forked them.  The session waits for the "go"
 * byte before it does anything a client could see: if the answer never
 * reached the supervisor (the zygote or the intermediate died, the
 * supervisor closed the channel), the pipe reaches EOF and the session
 * exits instead of living on unknown.
 *
 * The session then: re-initialises Python's fork state in this process
 * (PyOS_AfterFork_Child, which also runs os.register_at_fork hooks such
 * as random's reseeding), becomes a session and process group leader,
 * moves into its working directory, takes PY_ZYGOTE_COMM as its name and
 * "pyrepl-python --session" as its command line (so that neither ps nor
 * the supervisor mistakes it for the zygote), and returns to main(),
 * which creates its pipes and starts its I/O thread.  Threads do not
 * survive fork(), so the zygote never starts one of its own.
 *
 * The zygote keeps __main__ as libpython made it: the warm-up code runs in
 * a namespace of its own, so what it imports is in sys.modules of every
 * session while every session's namespace starts empty.  Sessions are
 * never reused; each is a fresh fork.  Before the first fork the zygote
 * moves every object it has into the collector's permanent generation
 * (gc.freeze()), so that a session's collections do not write to, and so
 * copy, the pages it shares with the zygote.
 */

#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "py_zygote.h"
#include "wk_log.h"
#include "wk_proc.h"
#include "wk_zygote.h"


static int py_zygote_fork(py_session_t *s, py_zygote_conf_t *zc,
    const wk_zy_msg_t *req, int lfd, int dfd);
static void py_zygote_middle(py_zygote_conf_t *zc, const wk_zy_msg_t *req,
    int dfd, int *go);
static int py_zygote_child(py_session_t *s, py_zygote_conf_t *zc,
    const wk_zy_msg_t *req, int lfd, int dfd, int *go);
static int py_zygote_relay(py_session_t *s);
static void py_zygote_answer(py_zygote_conf_t *zc, const wk_zy_msg_t *req,
    int err);
static void py_zygote_title(py_zygote_conf_t *zc);
static void py_zygote_freeze(void);
static void py_zygote_report(const char *what);


/* the log name of a forked session: s->id points here */
static char  py_zygote_name[WK_ZY_NAME_LEN];


int
py_zygote_serve(py_session_t *s, py_zygote_conf_t *zc)
{
    int          rc, nfds, fds[WK_ZY_MAX_FDS];
    wk_zy_msg_t  m;

    if (chdir(zc->workdir) == -1) {
        wk_log("zygote: chdir(\"%s\") failed: %s", zc->workdir,
               strerror(errno));
        return -1;
    }

    if (zc->warmup != NULL) {
        (void) py_zygote_warmup(s, zc->warmup);
        free(zc->warmup);
        zc->warmup = NULL;
    }

    py_zygote_freeze();
    py_exec_flush();

    memset(&m, 0, sizeof(wk_zy_msg_t));
    m.type = WK_ZY_READY;

    if (wk_zy_send(zc->control_fd, &m, NULL, 0) == -1) {
        wk_log("zygote: cannot tell the supervisor it is ready: %s",
               strerror(errno));
        return -1;
    }

    for ( ;; ) {

        Py_BEGIN_ALLOW_THREADS
        rc = wk_zy_recv(zc->control_fd, &m, fds, &nfds);
        Py_END_ALLOW_THREADS

        if (rc == 0) {
            wk_log("zygote: the supervisor closed the channel, exiting");
            return 1;
        }

        if (rc == -1) {
            if (errno == EPROTO) {
                wk_log("zygote: a malformed request was dropped");
                continue;
            }

            wk_log("zygote: recvmsg() failed: %s", strerror(errno));
            return -1;
        }

        if (m.type != WK_ZY_FORK || nfds != 2) {
            wk_log("zygote: unexpected message %u with %d descriptors",
                   m.type, nfds);

            while (nfds > 0) {
                (void) close(fds[--nfds]);
            }

            continue;
        }

        m.name[WK_ZY_NAME_LEN - 1] = '\0';

        if (py_zygote_fork(s, zc, &m, fds[0], fds[1]) == 0) {
            return 0;   /* a session process */
        }

        (void) close(fds[0]);
        (void) close(fds[1]);
    }
}


/*
 * Fork for one request.  Returns 0 in the new session process, 1 in the
 * zygote once the request is answered (by the intermediate process, or
 * here if that one failed before it could).
 */
static int
py_zygote_fork(py_session_t *s, py_zygote_conf_t *zc, const wk_zy_msg_t *req,
    int lfd, int dfd)
{
    int    go[2], status, err;
    pid_t  pid, rc;

    if (pipe2(go, O_CLOEXEC) == -1) {
        err = errno;
        wk_log("zygote: pipe2() failed: %s", strerror(err));
        py_zygote_answer(zc, req, err);
        return 1;
    }

    py_exec_flush();

    PyOS_BeforeFork();

    pid = fork();

    if (pid == 0) {
        /* before a jail, where the relay's name is not */
        if (py_zygote_relay(s) != 0) {
            _exit(EXIT_FAILURE);
        }

        py_zygote_middle(zc, req, dfd, go);   /* returns in the session */
        return py_zygote_child(s, zc, req, lfd, dfd, go);
    }

    err = errno;

    PyOS_AfterFork_Parent();

    (void) close(go[0]);
    (void) close(go[1]);

    if (pid == -1) {
        wk_log("zygote: fork() failed: %s", strerror(err));
        py_zygote_answer(zc, req, err);
        return 1;
    }

    do {
        rc = waitpid(pid, &status, 0);
    } while (rc == -1 && errno == EINTR);

    if (rc == -1) {
        wk_log("zygote: waitpid(%ld) failed: %s", (long) pid,
               strerror(errno));
        return 1;
    }

    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        wk_log("zygote: the intermediate process for \"%s\" failed "
               "(status 0x%x)", req->name, (unsigned) status);
        py_zygote_answer(zc, req, ECHILD);
    }

    return 1;
}


/*
 * The intermediate process: fork the session, answer, let the session go
 * (go[1]) and exit 0 (if it answered) or 1.  Its fork() returns 0 in the
 * session, so it returns there, and only there.  In a jail the child is
 * the jail's init, which builds it and forks the session process, where
 * this returns; the pid answered is the init's.
 */
static void
py_zygote_middle(py_zygote_conf_t *zc, const wk_zy_msg_t *req, int dfd,
    int *go)
{
    pid_t        pid;
    ssize_t      n;
    wk_zy_msg_t  m;

    pid = zc->confine.jail.on ? sb_jail_clone(&zc->confine.jail) : fork();

    if (pid == 0) {
        if (zc->confine.jail.on
            && sb_confine_jail(&zc->confine, req->name, dfd) != 0)
        {
            _exit(EXIT_FAILURE);
        }

        return;
    }

    (void) close(go[0]);

    memset(&m, 0, sizeof(wk_zy_msg_t));
    m.type = WK_ZY_FORKED;
    m.seq = req->seq;
    m.pid = (pid > 0) ? pid : 0;
    m.err = (pid > 0) ? 0 : errno;

    if (wk_zy_send(zc->control_fd, &m, NULL, 0) == -1) {
        /* no "go": the session sees EOF on the pipe and exits */
        _exit(1);
    }

    if (pid > 0) {
        do {
            n = write(go[1], "g", 1);
        } while (n == -1 && errno == EINTR);
    }

    _exit(0);
}


/*
 * The session process, just forked: its Python, its session, its
 * directory, its name; then the "go" byte (go[0]).  Returns 0, or _exits.
 */
static int
py_zygote_child(py_session_t *s, py_zygote_conf_t *zc, const wk_zy_msg_t *req,
    int lfd, int dfd, int *go)
{
    char      b;
    ssize_t   n;
    sigset_t  none;

    /* first of all, so that nothing mistakes it for the zygote */
    (void) prctl(PR_SET_NAME, PY_ZYGOTE_COMM, 0, 0, 0);
    py_zygote_title(zc);

    PyOS_AfterFork_Child();

    (void) close(go[1]);
    (void) close(zc->control_fd);
    zc->control_fd = -1;

    s->pid = getpid();
    (void) snprintf(py_zygote_name, sizeof(py_zygote_name), "%s",
                    req->name);
    s->id = py_zygote_name;

    if (setsid() == -1) {
        wk_log("session %s: setsid() failed: %s", s->id, strerror(errno));
        _exit(EXIT_FAILURE);
    }

    if (sigemptyset(&none) == -1
        || sigprocmask(SIG_SETMASK, &none, NULL) == -1)
    {
        wk_log("session %s: sigprocmask() failed: %s", s->id,
               strerror(errno));
        _exit(EXIT_FAILURE);
    }

    if (sb_confine_session(&zc->confine, s->id, dfd, &lfd, 1) != 0) {
        _exit(EXIT_FAILURE);
    }

    (void) close(dfd);

    do {
        n = read(go[0], &b, 1);
    } while (n == -1 && errno == EINTR);

    if (n != 1) {
        /* the supervisor never learned of this process */
        _exit(EXIT_FAILURE);
    }

    (void) close(go[0]);

    s->listen_fd = lfd;

    return 0;
}


/*
 * The zygote's relay socket, which every session forked from it shares,
 * is replaced on fds 1 and 2 and the log's copy by one of this session's
 * own (wk_log_relay_own), in the intermediate process, whose children
 * inherit it.  0, or -1 (logged).  Without a relay (the error log
 * itself, outside the keeper) nothing changes.
 */
static int
py_zygote_relay(py_session_t *s)
{
    int  fd;

    fd = wk_log_relay_own(s->log_fd);

    if (fd == -1) {
        if (errno == ENOTSOCK || errno == ENOTCONN) {
            return 0;
        }

        wk_log("session %s: a socket to the log relay failed: %s", s->id,
               strerror(errno));
        return -1;
    }

    if (dup2(fd, STDOUT_FILENO) == -1
        || dup2(fd, STDERR_FILENO) == -1
        || dup3(fd, s->log_fd, O_CLOEXEC) == -1)
    {
        wk_log("session %s: dup2() of its log relay failed: %s", s->id,
               strerror(errno));
        (void) close(fd);
        return -1;
    }

    (void) close(fd);

    return 0;
}


static void
py_zygote_answer(py_zygote_conf_t *zc, const wk_zy_msg_t *req, int err)
{
    wk_zy_msg_t  m;

    memset(&m, 0, sizeof(wk_zy_msg_t));
    m.type = WK_ZY_FORKED;
    m.seq = req->seq;
    m.err = err ? err : EIO;

    if (wk_zy_send(zc->control_fd, &m, NULL, 0) == -1) {
        wk_log("zygote: cannot answer the supervisor: %s", strerror(errno));
    }
}


/*
 * "pyrepl-python --session --workdir DIR" over the zygote's own command
 * line (the area argv[0] .. the end of the last argument), as far as it
 * fits; the rest of the area is cleared.
 */
static void
py_zygote_title(py_zygote_conf_t *zc)
{
    char    *start;
    size_t   len, n, w;
    char     title[4096];

    static const char  head[] = "pyrepl-python\0--session\0--workdir";

    wk_proc_title_area(zc->argc, zc->argv, &start, &len);

    memcpy(title, head, sizeof(head));
    n = sizeof(head);

    /* a jail shows nothing of the host: no host path */
    w = (zc->workdir != NULL && !zc->confine.jail.on)
        ? strlen(zc->workdir) + 1 : 0;

    if (w > 0 && n + w <= sizeof(title)) {
        memcpy(title + n, zc->workdir, w);
        n += w;

    } else {
        n = sizeof("pyrepl-python\0--session");
    }

    if (wk_proc_set_title(start, len, title, n) != 0) {
        (void) wk_proc_set_title(start, len, title,
                                 sizeof("pyrepl-python\0--session"));
    }

    zc->workdir = NULL;    /* pointed into the old title */
}


int
py_zygote_warmup(py_session_t *s, const char *code)
{
    int        rc;
    PyObject  *main, *main_dict, *saved, *globals, *name, *co, *ret;

    rc = -1;
    saved = NULL;
    globals = NULL;
    co = NULL;
    ret = NULL;

    main = PyImport_AddModule("__main__");          /* borrowed */
    if (main == NULL) {
        py_zygote_report("warm-up: cannot get __main__");
        return -1;
    }

    main_dict = PyModule_GetDict(main);

    saved = PyDict_Copy(main_dict);
    globals = PyDict_New();

    if (saved == NULL || globals == NULL
        || PyDict_SetItemString(globals, "__builtins__",
                                PyEval_GetBuiltins()) != 0)
    {
        py_zygote_report("warm-up: cannot make its namespace");
        goto done;
    }

    name = PyUnicode_FromString("__pyrepl_warmup__");
    if (name == NULL || PyDict_SetItemString(globals, "__name__", name) != 0) {
        PyErr_Clear();
    }

    Py_XDECREF(name);

    co = Py_CompileString(code, "<pyrepl_warmup>", Py_file_input);
    if (co != NULL) {
        ret = PyEval_EvalCode(co, globals, globals);
    }

    if (ret == NULL) {
        py_zygote_report("warm-up code failed; sessions start without what "
                         "it did not finish");
        goto done;
    }

    if (s->listen_fd == -1) {          /* the zygote */
        wk_log("zygote: warm-up code done");

    } else {
        wk_log("session %s: warm-up code done", s->id);
    }

    rc = 0;

done:

    /* __main__ as it was, whatever the code did to it */
    if (saved != NULL) {
        PyDict_Clear(main_dict);
        if (PyDict_Update(main_dict, saved) != 0) {
            py_zygote_report("warm-up: cannot restore __main__");
        }
    }

    Py_XDECREF(ret);
    Py_XDECREF(co);
    Py_XDECREF(globals);
    Py_XDECREF(saved);

    py_exec_flush();

    return rc;
}


char *
py_zygote_read_warmup(int fd)
{
    char         *code;
    size_t        len;
    ssize_t       n;
    struct stat   st;

    code = NULL;

    if (fstat(fd, &st) == -1) {
        wk_log("--warmup-fd %d: fstat() failed: %s", fd, strerror(errno));
        goto done;
    }

    if (st.st_size < 0 || st.st_size > PY_ZYGOTE_MAX_WARMUP) {
        wk_log("--warmup-fd %d: %lld bytes, at most %d expected", fd,
               (long long) st.st_size, PY_ZYGOTE_MAX_WARMUP);
        goto done;
    }

    code = malloc((size_t) st.st_size + 1);
    if (code == NULL) {
        wk_log("--warmup-fd %d: out of memory", fd);
        goto done;
    }

    for (len = 0; len < (size_t) st.st_size; len += (size_t) n) {
        n = pread(fd, code + len, (size_t) st.st_size - len, (off_t) len);

        if (n == -1 && errno == EINTR) {
            n = 0;
            continue;
        }

        if (n <= 0) {
            wk_log("--warmup-fd %d: read failed: %s", fd,
                   n == 0 ? "short file" : strerror(errno));
            free(code);
            code = NULL;
            goto done;
        }
    }

    code[len] = '\0';

    if (strlen(code) != len) {
        wk_log("--warmup-fd %d: the warm-up code holds a NUL", fd);
        free(code);
        code = NULL;
    }

done:

    (void) close(fd);

    return code;
}


/* gc.collect(); gc.freeze(): see the top of this file. */
static void
py_zygote_freeze(void)
{
    PyObject  *gc, *ret;

    gc = PyImport_ImportModule("gc");
    if (gc == NULL) {
        py_zygote_report("zygote: cannot import gc");
        return;
    }

    ret = PyObject_CallMethod(gc, "collect", NULL);
    Py_XDECREF(ret);

    if (ret != NULL) {
        ret = PyObject_CallMethod(gc, "freeze", NULL);
        Py_XDECREF(ret);
    }

    if (ret == NULL) {
        py_zygote_report("zygote: gc.freeze() failed");
    }

    Py_DECREF(gc);
}


/*
 * Log what and the pending exception's traceback (to sys.stderr, still
 * the error log here), and clear it.  SystemExit is only logged: printing
 * it would exit.
 */
static void
py_zygote_report(const char *what)
{
    if (!PyErr_Occurred()) {
        wk_log("%s", what);
        return;
    }

    if (PyErr_ExceptionMatches(PyExc_SystemExit)) {
        wk_log("%s: SystemExit, ignored", what);
        PyErr_Clear();
        return;
    }

    wk_log("%s; the traceback follows", what);

    PyErr_PrintEx(0);
    PyErr_Clear();

    py_exec_flush();
}
