/*
 * py_session.h: what the pieces of pyrepl-python share.  One process is
 * one Python session: a persistent __main__ namespace that runs one piece
 * of code at a time.  The pieces:
 *
 *   py_session.c      command line, descriptors, start-up order, the lock
 *   py_start.c        libpython's start-up and the embedded runtime
 *   py_exec.c         the main thread: the run loop, transactions' ends,
 *                     namespace ops
 *   py_replace.c      the replacements of os._exit, input and
 *                     getpass.getpass
 *   py_input.c        input() asking the client, both threads' sides
 *   py_display.c      rich output (display(), plots) handed to the I/O
 *                     thread, both threads' sides
 *   py_outcome.c      a run's outcome, out of Python objects and into
 *                     frames
 *   py_io.c           the I/O thread: runs and ops handed to the main
 *                     thread, interrupts, a run's end (the connections,
 *                     output pipes and deadlines are wk_io.h's)
 *   py_fatal.c        the last words: asking the I/O thread to send what
 *                     is in the pipes before the process dies, the fatal
 *                     signal handlers that do so, and the I/O thread's
 *                     answer
 *   py_tx.c           transactions: the copy-on-write snapshot a run can
 *                     be rolled back to, and its taking over
 *   py_zygote.c       the zygote mode and the warm-up code
 *   py_runtime.S      pyrepl_runtime.py embedded as a C string
 *
 * The two threads meet in py_session_t: the I/O thread hands code to the
 * main thread under "lock" and wakes it with "cond"; the main thread
 * stores the outcome under "lock" and wakes the I/O thread by writing to
 * the eventfd "done_fd".  A thread about to end the process (os._exit(),
 * a fatal signal) writes one byte to the "drain" pipe and waits for one
 * byte on the "ack" pipe: the I/O thread answers once the pipes behind
 * fds 1 and 2 are empty and their bytes written to the run's connection.
 * Only the main thread ever holds the GIL.
 *
 * input() (and getpass.getpass()) in a run whose run frame said
 * "interactive" is a request the other way round: the asking thread
 * stores the prompt under "lock" (input_state PY_INPUT_ASKED) and writes
 * to done_fd; the I/O thread sends an input_request frame and, when an
 * input frame answers it (or an interrupt or the end of the run makes an
 * answer impossible), stores the outcome under "lock" and wakes the asker
 * through the eventfd "input_fd".
 */

#ifndef PY_SESSION_H
#define PY_SESSION_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyrepl_proto.h"
#include "wk_io.h"


/*
 * The drain before death.  The byte a requester writes says why (the I/O
 * thread logs it): PY_DRAIN_EXIT for os._exit(), else the signal number.
 * The I/O thread sends everything, however slowly the peer reads, and
 * gives up only on a peer that takes nothing for PY_DRAIN_SEND_MS;
 * requesters wait for its answer as long as bytes go out
 * (drain_progress), and a little longer than that once none do.
 */
#define PY_DRAIN_EXIT       0
#define PY_DRAIN_SEND_MS    900
#define PY_DRAIN_EXIT_MS    2000       /* os._exit() waits this long */
#define PY_DRAIN_SIGNAL_MS  1000       /* a fatal signal handler, this */

/* py_drain() results */
#define PY_DRAIN_OK         0          /* the I/O thread has answered */
#define PY_DRAIN_NOT_HERE   1          /* a forked child or the I/O thread */
#define PY_DRAIN_NOT_OURS  -1          /* the pipes were closed or replaced */
#define PY_DRAIN_FAILED    -2          /* write/poll/read failed (errno) */
#define PY_DRAIN_TIMEOUT   -3


/*
 * input_state: one input() can wait at a time.  The asking thread moves
 * NONE -> ASKED and, once the state is one of the last three, back to
 * NONE (or straight back, when it gives up: a signal handler raised); the
 * I/O thread moves ASKED -> WAITING (input_request sent) and ASKED or
 * WAITING to an outcome.
 */
#define PY_INPUT_NONE         0
#define PY_INPUT_ASKED        1    /* input_prompt holds the question */
#define PY_INPUT_WAITING      2    /* input_request sent, no answer yet */
#define PY_INPUT_ANSWERED     3    /* input_text holds the answer */
#define PY_INPUT_EOF          4    /* nobody can answer: EOFError */
#define PY_INPUT_INTERRUPTED  5    /* the run was interrupted meanwhile */


/*
 * display_state: one display() hands over at a time.  The displaying
 * thread moves NONE -> ASKED and, once the I/O thread has moved it to
 * SENT or DROPPED (or it gives up), back to NONE (py_display.c).
 */
#define PY_DISPLAY_NONE       0
#define PY_DISPLAY_ASKED      1    /* display_bundle holds the bundle */
#define PY_DISPLAY_SENT       2    /* on the run's connection */
#define PY_DISPLAY_DROPPED    3    /* no run took it */


/*
 * The outcome of one run, built by the main thread, sent and freed by the
 * I/O thread.  Every string is malloc'd valid UTF-8 (data NULL when
 * absent); traceback.items and each item's data are malloc'd too.
 */
/* what the main thread is asked to do */
#define PY_OP_RUN        0          /* run code */
#define PY_OP_NAMESPACE  1          /* describe the namespace (as JSON) */
#define PY_OP_COMMIT     2          /* keep a pending run's effects */
#define PY_OP_ROLLBACK   3          /* undo them */
#define PY_OP_CHECKPOINT 4          /* save the namespace to a file */
#define PY_OP_RESTORE    5          /* load one into it */
#define PY_OP_PLACE      6          /* a create's cwd and env, for good */
#define PY_OP_INTROSPECT 7          /* complete, inspect, ... (JSON) */

/* a run's tx_policy */
#define PY_TX_COMMIT_ALWAYS        0
#define PY_TX_COMMIT_ON_SUCCESS    1   /* kept only when the run is ok */
#define PY_TX_ROLLBACK_ON_FAILURE  2   /* undone when the code raised */
#define PY_TX_EXPLICIT             3   /* kept pending until an op says */

/* what became of a run's effects (py_outcome_t.tx) */
#define PY_TX_NONE         0          /* no transaction */
#define PY_TX_COMMITTED    1
#define PY_TX_ROLLED_BACK  2          /* the snapshot took over */
#define PY_TX_PENDING      3          /* explicit: waiting for an op */


typedef struct {
    int          op;               /* PY_OP_* */
    int          status;           /* WK_IO_RUN_*: ERROR when an */
                                   /* exception escaped, INTERRUPTED
                                      when KeyboardInterrupt did */
    int64_t      count;            /* execution_count of the run */
    int64_t      ms;               /* wall-clock duration */
    pr_str_t     result;           /* repr() of a final value, or absent */
    pr_str_t     bundle;           /* its MIME bundle (JSON) when it has */
                                   /* more than text/plain, or absent */
    pr_str_t     ename;            /* absent unless an exception escaped */
    pr_str_t     evalue;
    pr_strs_t    traceback;
    pr_strs_t    added;            /* names the run changed */
    pr_strs_t    modified;
    pr_strs_t    removed;
    int          tx;               /* PY_TX_NONE ... PY_TX_PENDING */
    pid_t        new_pid;          /* rolled back: the process that took */
                                   /* over the session */
    const char  *errcode;          /* a refused op's fail code (static) */
} py_outcome_t;


typedef struct {
    /* set at start-up, read-only afterwards */
    const char      *id;
    size_t           max_frame;    /* cap on a frame either way */
    int              listen_fd;    /* the I/O thread's */
    int              spare_listen_fd;  /* a copy in the main table, for */
                                   /* a snapshot that takes over */
    int              out_fd;       /* read ends of the fd 1 and 2 pipes, */
    int              err_fd;       /* the I/O thread's, non-blocking */
    int              out_wfd;      /* their write ends, dup2'd onto fds 1 */
    int              err_wfd;      /* and 2 once the I/O thread runs */
    int              done_fd;      /* eventfd, main -> I/O: run finished */
                                   /* or input() asks */
    int              input_fd;     /* eventfd, I/O -> asker: input_state */
                                   /* changed (made by py_io_start) */
    int              display_fd;   /* eventfd, I/O -> displaying thread: */
                                   /* display_state changed (likewise) */
    int              drain_fd;     /* "drain" pipe: read end, the I/O */
    int              drain_wfd;    /* thread's; write end, the main table's */
    int              ack_fd;       /* "ack" pipe: read end, the main */
    int              ack_wfd;      /* table's; write end, the I/O thread's */
    uint64_t         drain_progress;   /* bytes the drain sent (atomic) */
    int              log_fd;       /* copy of fd 2 (the log relay), in */
                                   /* both tables: where wk_log() writes */
    int              alive_fd;     /* --alive-fd: nginx's "alive" pipe, */
                                   /* the I/O thread's alone, or -1 */
    pid_t            pid;          /* this process (not a forked child) */
    char             workdir[32];  /* "/proc/self/fd/N": its working */
                                   /* directory, held open (the code may
                                      chdir; a pool process's directory is
                                      renamed): for checkpoint files */
    pid_t            io_tid;       /* the I/O thread, once io_ready */
    pthread_t        main_thread;

    pthread_mutex_t  lock;
    pthread_cond_t   cond;

    /* under lock: the code handed to the main thread (malloc'd), or */
    /* another op (code NULL) */
    char            *code;
    size_t           code_len;
    char            *place;        /* a run's own cwd and env (malloc'd): */
    size_t           place_len;    /* "CWD\0NAME=VALUE\0...", CWD empty */
                                   /* for none; NULL when neither */
    int              op;           /* PY_OP_* */
    int              tx_policy;    /* PY_TX_COMMIT_ALWAYS ... */
    int64_t          max_size;     /* PY_OP_CHECKPOINT's (code: the file) */
    unsigned         requested:1;

    /* under lock: an interrupt was asked for since the code was handed */
    unsigned         interrupt:1;

    /* under lock: the run frame of that code said "interactive" */
    unsigned         interactive:1;

    /*
     * under lock: the input() that waits.  input_prompt (malloc'd UTF-8)
     * is the asker's until the I/O thread takes it; input_text (malloc'd,
     * not necessarily valid UTF-8) the I/O thread's until the asker does.
     */
    int              input_state;  /* PY_INPUT_* */
    unsigned         input_password:1;
    pr_str_t         input_prompt;
    pr_str_t         input_text;

    /* under lock: the display() that hands over (malloc'd JSON) */
    int              display_state;  /* PY_DISPLAY_* */
    pr_str_t         display_bundle;

    /* under lock: the I/O thread has set up its descriptors */
    unsigned         io_ready:1;
    unsigned         io_failed:1;

    /* under lock: the outcome of the run that just finished */
    py_outcome_t     outcome;
    unsigned         finished:1;

    /*
     * under lock: a rollback's hand-over.  The I/O thread has stopped
     * accepting (released), then the snapshot has been told to take over
     * (handed), then the I/O thread answers with the new pid.
     */
    unsigned         released:1;
    unsigned         handed:1;

    /* main thread only: the snapshot of a run in a transaction */
    pid_t            tx_child;     /* 0: none */
    int              tx_fd;        /* write end of its decision pipe */
} py_session_t;


#define PY_INPUT_ID_LEN     24         /* "i" and a counter */

/*
 * The I/O thread's state (py_io.c keeps the process's one), passed to its
 * pieces in other files: input requests (py_input.c), the last words
 * (py_fatal.c), an outcome's frames (py_outcome.c).
 */
typedef struct {
    wk_io_t          io;           /* connections, pipes, the run */
    py_session_t    *s;

    int              drain_fd;     /* -1 once the user closed its end */

    unsigned         interactive:1; /* the run may ask input() */
    unsigned         tx_pending:1; /* an explicit run waits for its fate */
    unsigned         display_waiting:1;  /* a display() waits for the */
                                         /* run's connection to drain */
    unsigned         op:1;         /* the main thread's job is an op */
                                   /* between runs, not a run */
    int64_t          count;        /* the last run's execution count */

    char            *place;        /* the run frame's cwd and env, on */
    size_t           place_len;    /* their way to py_io_hand() */

    uint64_t         input_seq;    /* input_request ids so far */
    char             input_id[PY_INPUT_ID_LEN];  /* the last one sent */
} py_io_t;


/* The embedded runtime source (py_runtime.S), NUL-terminated. */
extern const char  pyrepl_runtime_source[];


/* py_start.c */

/*
 * Initialise libpython (configured as a plain python3 starts, with signal
 * handlers and unbuffered stdio) and load the embedded runtime.  Called
 * on the main thread before the stdio descriptors are redirected, so
 * failures reach nginx's error log.  Returns 0, or -1 (logged).  On
 * success the calling thread holds the GIL.
 */
int py_start(py_session_t *s);


/* py_exec.c */

/*
 * Serve runs forever: wait (GIL released) for code from the I/O thread,
 * run it in __main__, store the outcome and signal done_fd.  Returns only
 * on a fatal error (logged).
 */
void py_exec_loop(py_session_t *s);

/*
 * Push out what Python and C stdio hold: sys.stdout and sys.stderr
 * (whatever the code replaced them with) and C stdio, with the GIL held.
 * Errors here are the code's own business (it may have closed them);
 * they are dropped.
 */
void py_exec_flush(void);


/* py_outcome.c */

/* Free every string of an outcome and zero it. */
void py_outcome_free(py_outcome_t *o);

/*
 * On the I/O thread: send result, error and complete for outcome o to
 * the run's connection of io; for an op, its ok or fail frame.
 */
void py_outcome_send(wk_io_t *io, const py_outcome_t *o);


/* py_input.c (the I/O thread's side) */

/*
 * done_fd was written and input() may be asking: send what the code
 * wrote before, then input_request on the run's connection, or make it
 * EOF when the run cannot be answered.  Returns 0, or -1 on a fatal error
 * (logged).
 */
int py_input_request(py_io_t *pio);

/*
 * An "input" frame on slot i: the answer to the input() that waits, if
 * any does and the frame's id, when given, is its request's.  Answers
 * "ok" or "fail no_pending_input" on the same connection.
 */
void py_input_frame(py_io_t *pio, int i, const pr_frame_t *f);

/* If input_state is "from", make it the outcome "to" and wake the asker. */
void py_input_end(py_io_t *pio, int from, int to);


/* py_display.c (the I/O thread's side) */

/*
 * done_fd was written, or the run's connection drained, and display()
 * may be handing over: send what the code wrote before, then the display
 * frame on the run's connection (or drop it without a run), and wake the
 * displaying thread; wait while the connection is backed up.  Returns 0,
 * or -1 on a fatal error (logged).
 */
int py_display_request(py_io_t *pio);


/* py_session.c */

/*
 * Take and release s->lock, from either thread.  Failing to leaves nothing
 * sane to do: the process exits (logged).
 */
void py_session_lock(py_session_t *s);
void py_session_unlock(py_session_t *s);

/*
 * In a snapshot that takes over its session: the descriptors, the lock
 * and the I/O thread of its own, as at start-up.  Returns 0 or -1
 * (logged).
 */
int py_session_restart(py_session_t *s);


/* py_tx.c */

/*
 * Take a snapshot before a run: fork (GIL held).  Returns 0 in the
 * session process (the snapshot waits), -1 if it could not (logged), and
 * 1 in the snapshot once it has taken over the session, with *count the
 * execution count to go on from.  A snapshot that is let go never
 * returns.
 */
int py_tx_begin(py_session_t *s, int64_t *count);

/* Let the snapshot go (the run's effects stay). */
void py_tx_commit(py_session_t *s);

/* Tell the snapshot to take over at count; returns its pid, or 0. */
pid_t py_tx_handover(py_session_t *s, int64_t count);


/* py_fatal.c */

/*
 * On the main thread, after fds 1 and 2 became the pipes and before any
 * user code runs: remember which files the drain and ack pipes are, give
 * the thread an alternate signal stack and install the handlers of the
 * signals that end the process (the fatal ones and the terminating ones
 * Python leaves at SIG_DFL).  Each handler drains (PY_DRAIN_SIGNAL_MS),
 * restores SIG_DFL and raises the signal again, so the process still
 * dies of it.  Returns 0 or -1 (logged).
 */
int py_fatal_init(py_session_t *s);

/*
 * Ask the I/O thread to send everything the pipes hold to the run's
 * connection and wait for its answer: as long as it sends, then up to
 * timeout_ms once nothing more goes out.  why is
 * PY_DRAIN_EXIT or a signal number.  Async-signal-safe, needs no lock
 * and no GIL; does nothing (PY_DRAIN_NOT_HERE) in a forked child or on
 * the I/O thread.  Returns a PY_DRAIN_* result; PY_DRAIN_FAILED leaves
 * errno set.
 */
int py_drain(py_session_t *s, int why, int timeout_ms);


/*
 * On the I/O thread: a byte on the drain pipe, one per thread that is
 * about to end the process (its value PY_DRAIN_EXIT or a signal number).
 * Send everything the output pipes hold, then answer each request with a
 * byte on the ack pipe.  Returns 0, or -1 on a fatal error (logged).
 */
int py_fatal_last_words(py_io_t *pio);

/*
 * On the I/O thread, before the process ends: empty the output pipes
 * into the run's connection and write all of it, waiting for the peer
 * when its socket is full, until nothing is left or the peer has taken
 * nothing for PY_DRAIN_SEND_MS (a slow reader gets every byte; each byte
 * sent is published in drain_progress, which keeps the requesters
 * waiting).  Past WK_IO_HIGH_WATER unsent bytes the pipes are left alone
 * until the peer takes some.  Without an active run the pipes are only
 * emptied.  Returns 0, or -1 on a fatal error (logged).
 */
int py_fatal_send_all(py_io_t *pio);


/* py_io.c */

/*
 * Start the I/O thread with every signal blocked (so SIGINT, and any
 * signal sent to the process, goes to a thread that runs Python or can
 * drain) and wait until it has moved into a private descriptor table
 * (unshare(CLONE_FILES)).  From then on the two threads see different
 * descriptor tables: the I/O thread keeps the sockets, the output pipes'
 * read ends, the drain pipe's read end and the ack pipe's write end; the
 * main thread, and everything user code forks, sees none of those and
 * gets the output pipes as fds 1 and 2.  Both keep log_fd and input_fd,
 * the eventfd made here before the tables part.  Returns 0 or -1
 * (logged).  The I/O thread also answers py_drain() requests and the
 * input() requests of interactive runs.
 */
int py_io_start(py_session_t *s);

/*
 * A malloc'd, NUL-terminated copy of a frame's string (what names it in
 * the log); NULL when out of memory, after failing slot i's request.
 */
char *py_io_copy(py_io_t *pio, int i, const pr_str_t *str,
    const char *what);

#endif /* PY_SESSION_H */
