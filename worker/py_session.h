/*
 * py_session.h: what the pieces of pyrepl-python share.  One process is
 * one Python session: a persistent __main__ namespace that runs one piece
 * of code at a time.  The pieces:
 *
 *   python_session.c  command line, descriptors, start-up order
 *   py_exec.c         the main thread: libpython, the embedded runtime,
 *                     running code and describing its outcome
 *   py_io.c           the I/O thread: the listening socket, connections,
 *                     the stdout/stderr pipes, interrupts and deadlines
 *   py_runtime.S      pyrepl_runtime.py embedded as a C string
 *
 * The two threads meet in py_session_t: the I/O thread hands code to the
 * main thread under "lock" and wakes it with "cond"; the main thread
 * stores the outcome under "lock" and wakes the I/O thread by writing to
 * the eventfd "done_fd".  Only the main thread ever holds the GIL.
 */

#ifndef PY_SESSION_H
#define PY_SESSION_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "pyrepl_proto.h"


#define PY_SESSION_ID_LEN   32


/* How a run ended (the "status" of a complete frame). */
#define PY_RUN_OK           0
#define PY_RUN_ERROR        1      /* an exception escaped */
#define PY_RUN_INTERRUPTED  2      /* KeyboardInterrupt escaped */


/*
 * The outcome of one run, built by the main thread, sent and freed by the
 * I/O thread.  Every string is malloc'd valid UTF-8 (data NULL when
 * absent); traceback.items and each item's data are malloc'd too.
 */
typedef struct {
    int          status;           /* PY_RUN_* */
    int64_t      count;            /* execution_count of the run */
    int64_t      ms;               /* wall-clock duration */
    pr_str_t     result;           /* repr() of a final value, or absent */
    pr_str_t     ename;            /* absent unless an exception escaped */
    pr_str_t     evalue;
    pr_strs_t    traceback;
} py_outcome_t;


typedef struct {
    /* set at start-up, read-only afterwards */
    const char      *id;
    size_t           max_frame;    /* cap on a frame either way */
    int              listen_fd;    /* the I/O thread's */
    int              out_fd;       /* read ends of the fd 1 and 2 pipes, */
    int              err_fd;       /* the I/O thread's, non-blocking */
    int              out_wfd;      /* their write ends, dup2'd onto fds 1 */
    int              err_wfd;      /* and 2 once the I/O thread runs */
    int              done_fd;      /* eventfd, main -> I/O: run finished */
    pthread_t        main_thread;

    pthread_mutex_t  lock;
    pthread_cond_t   cond;

    /* under lock: the code handed to the main thread (malloc'd) */
    char            *code;
    size_t           code_len;
    unsigned         requested:1;

    /* under lock: an interrupt was asked for since the code was handed */
    unsigned         interrupt:1;

    /* under lock: the I/O thread has set up its descriptors */
    unsigned         io_ready:1;
    unsigned         io_failed:1;

    /* under lock: the outcome of the run that just finished */
    py_outcome_t     outcome;
    unsigned         finished:1;
} py_session_t;


/* The embedded runtime source (py_runtime.S), NUL-terminated. */
extern const char  pyrepl_runtime_source[];


/* python_session.c */

/* CLOCK_MONOTONIC in milliseconds. */
int64_t py_msec(void);


/* py_exec.c */

/*
 * Initialise libpython (isolated configuration, signal handlers on,
 * unbuffered stdio) and load the embedded runtime.  Called on the main
 * thread before the stdio descriptors are redirected, so failures reach
 * nginx's error log.  Returns 0, or -1 (logged).  On success the calling
 * thread holds the GIL.
 */
int py_exec_init(py_session_t *s);

/*
 * Serve runs forever: wait (GIL released) for code from the I/O thread,
 * run it in __main__, store the outcome and signal done_fd.  Returns only
 * on a fatal error (logged).
 */
void py_exec_loop(py_session_t *s);

/* Free every string of an outcome and zero it. */
void py_outcome_free(py_outcome_t *o);


/* py_io.c */

/*
 * Start the I/O thread with every asynchronous signal blocked (so SIGINT
 * and friends go to the main thread) and wait until it has moved into a
 * private descriptor table (unshare(CLONE_FILES)).  From then on the two
 * threads see different descriptor tables: the I/O thread keeps the
 * sockets, the pipes' read ends and the original fd 2 (nginx's error log,
 * where wk_log() writes); the main thread, and everything user code forks,
 * sees none of those and gets the pipes as fds 1 and 2.  Returns 0 or -1
 * (logged).
 */
int py_io_start(py_session_t *s);

#endif /* PY_SESSION_H */
