/*
 * py_zygote.h: the zygote mode of pyrepl-python (py_zygote.c) and the
 * operator's warm-up code, which both modes can run.
 *
 *     pyrepl-python --zygote --control-fd 3 --workdir DIR
 *         [--max-frame BYTES] [--warmup-fd N] [confinement options]
 *
 * The zygote initialises libpython once, runs the warm-up code, and then
 * forks one session process per FORK message from the supervisor
 * (wk_zygote.h), each confined (sb_confine.h) as soon as it exists: a
 * pool process never runs a line of user code, but it is ready to.
 * py_zygote_serve() returns in each of those session processes, which
 * then start like an exec'd one from the descriptors on.
 */

#ifndef PY_ZYGOTE_H
#define PY_ZYGOTE_H

#include "py_session.h"
#include "sb_confine.h"


#define PY_ZYGOTE_COMM  "pyrepl-session"   /* comm of a forked session */
#define PY_ZYGOTE_MAX_WARMUP  (1024 * 1024)    /* bytes of warm-up code */


typedef struct {
    unsigned      enabled:1;        /* --zygote */
    int           control_fd;       /* --control-fd, -1 if not given */
    const char   *workdir;          /* --workdir */
    int           warmup_fd;        /* --warmup-fd, -1 if not given */
    char         *warmup;           /* read from it, or NULL */
    sb_confine_t  confine;          /* applied to each session process */
    int           argc;             /* main()'s, for the process title */
    char        **argv;
} py_zygote_conf_t;


/*
 * Be the zygote: chdir to the workdir, run the warm-up code, tell the
 * supervisor READY and fork sessions until the control socket reaches
 * EOF.  libpython must be initialised (py_start) and the GIL held.
 * Returns 0 in a forked session process, with s->id, s->pid and
 * s->listen_fd set and its working directory as cwd; in the zygote 1 at
 * EOF (the supervisor is gone) or -1 on a fatal error (logged).
 */
int py_zygote_serve(py_session_t *s, py_zygote_conf_t *zc);

/*
 * Run code in a namespace of its own (not __main__, which is put back as
 * it was), with the GIL held, before fds 1 and 2 are redirected so that
 * what it prints reaches the error log.  An exception is logged with its
 * traceback; SystemExit is ignored.  Returns 0, or -1 if the code failed.
 */
int py_zygote_warmup(py_session_t *s, const char *code);

/*
 * The warm-up code from descriptor fd (a memfd nginx filled; read from
 * offset 0, whatever its position), which is closed: nothing of it stays
 * open for user code.  Returns a malloc'd NUL-terminated copy, or NULL
 * (logged) if it cannot be read or holds a NUL.
 */
char *py_zygote_read_warmup(int fd);

#endif /* PY_ZYGOTE_H */
