/*
 * bs_session.h: what the pieces of pyrepl-bash share.  One process is
 * one bash session: a long-lived /bin/bash, its child, runs one piece of
 * code at a time in its main shell (not a subshell), so the working
 * directory, variables, functions, aliases and options persist between
 * runs.  The pieces:
 *
 *   bs_session.c  command line, descriptors, start-up order
 *   bs_shell.c    the shell: spawning it, the bootstrap script, the
 *                 commands that run one piece of code, the status lines
 *   bs_proc.c     processes: /proc scans, which processes belong to a
 *                 run, signalling them, the sentinel, reaping
 *   bs_io.c       the poll loop: runs, interrupts, stopping a run, the
 *                 end (the connections, output pipes and deadlines are
 *                 wk_io.h's)
 *   bs_bg.c       background commands: a run no connection waits for,
 *                 its kept output and its end
 *
 * The process is single-threaded.  It is the shell's parent and a child
 * subreaper, so every process the shell starts stays its descendant even
 * when orphaned; SIGCHLD arrives on a signalfd.  How a run is framed and
 * stopped is described at the top of bs_shell.c.
 */

#ifndef BS_SESSION_H
#define BS_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyrepl_proto.h"
#include "wk_io.h"
#include "wk_tail.h"


#define BS_NONCE_LEN        16             /* hex digits of a run's nonce */
#define BS_STATUS_LINE_MAX  128            /* longer lines are not ours */

/* the shell's descriptors besides 0-2 (high, so user redirections of
 * fds 3-9 and bash's own (10 and up, lowest free) do not meet them) */
#define BS_FD_SCRIPT        60             /* the command pipe, read end */
#define BS_FD_STATUS        61             /* the status pipe, write end */
#define BS_FD_CODE          62             /* memfd: the run's code */
#define BS_FD_STDIN         63             /* memfd: the run's stdin */

/* why a run is being stopped (0: it is not) */
#define BS_STOP_INTERRUPT   1              /* an interrupt frame */
#define BS_STOP_TIMEOUT     2              /* its timeout_ms passed */
#define BS_STOP_CLOSED      3              /* its connection went away */

/* the stop of a run, in ms since it began (see bs_io.c) */
#define BS_STOP_TICK_MS     50             /* SIGINT again, this often */
#define BS_STOP_KILL_MS     1000           /* then SIGKILL its processes */
#define BS_STOP_GIVEUP_MS   3000           /* then SIGKILL the shell */


/* A background command (bs_bg.c): the detached run and what it left. */
typedef struct {
    unsigned         had:1;        /* the session has started one */
    unsigned         active:1;     /* the active run is it */
    char            *code;         /* the command as it came */
    size_t           code_len;
    int64_t          started;      /* Unix ms */
    int64_t          finished;     /* Unix ms, 0 while it runs */
    int              exit_code;    /* once finished */
    const char      *status;       /* "running", or how it ended */
    wk_tail_t        tail;         /* its output */
} bs_bg_t;


/* One process found in /proc. */
typedef struct {
    pid_t            pid;
    pid_t            ppid;
    pid_t            pgid;
    pid_t            sid;
    char             state;        /* 'Z' for a zombie */
} bs_proc_t;


typedef struct {
    /*
     * the connections, the shell's fds 1 and 2 as output pipes, and the
     * run: its connection, start and deadline (wk_io.h)
     */
    wk_io_t          io;

    /* set at start-up, read-only afterwards */
    const char      *id;
    int              sig_fd;       /* signalfd: SIGCHLD */
    pid_t            pid;          /* this process */

    /* the shell */
    pid_t            shell_pid;    /* also its session and process group */
    int              shell_status; /* wait status, once shell_exited */
    unsigned         shell_exited:1;
    unsigned         shell_killed:1;  /* we gave up and killed it */
    unsigned         shell_ready:1;   /* it has run the bootstrap (and */
                                      /* set its INT trap): SIGINT is safe */
    char             boot_nonce[BS_NONCE_LEN + 1];
    int              cmd_fd;       /* command pipe, write end, O_NONBLOCK */
    int              status_fd;    /* status pipe, read end, O_NONBLOCK */
    int              code_fd;      /* memfd behind the shell's fd 62 */
    int              stdin_fd;     /* memfd behind the shell's fd 63 */
    unsigned         xtrace:1;     /* set -x was on when the last run ended */

    char            *cmd;          /* commands not yet written to cmd_fd */
    size_t           cmd_len;
    size_t           cmd_pos;
    size_t           cmd_cap;

    char             status[BS_STATUS_LINE_MAX];  /* a partial status line */
    size_t           status_len;
    unsigned         status_skip:1;  /* in a line too long to be ours */

    /* the sentinel: a fork that cleans up after this process dies */
    pid_t            sentinel_pid;
    int              sentinel_fd;  /* the pipe it waits on, write end */

    unsigned         fatal:1;      /* a failure that ends the process */

    /* the run (io.run_active) */
    char             nonce[BS_NONCE_LEN + 1];
    int64_t          count;        /* runs so far */
    unsigned         placing:1;    /* the active "run" is a create's */
                                   /* cwd and env (bs_io_place) */
    bs_bg_t          bg;           /* the background command, if any */

    /* stopping it */
    int              stop;         /* BS_STOP_*, 0 if not stopping */
    int64_t          stop_started;
    int64_t          stop_next;    /* next tick */
    unsigned         stop_killed:1;  /* its processes got SIGKILL */

    /* process groups that existed when the run began: not the run's */
    pid_t           *old_pgids;
    size_t           nold;
    size_t           old_cap;

    /* processes sent SIGINT during this stop (each gets one) */
    pid_t           *hit;
    size_t           nhit;
    size_t           hit_cap;

    /* the last /proc scan */
    bs_proc_t       *procs;
    size_t           nprocs;
    size_t           procs_cap;
} bs_session_t;


/* bs_shell.c */

/*
 * Start the shell: the pipes and memfds, fork, and in the child a new
 * session, a parent-death SIGKILL, default signals and the descriptors
 * described above, then exec bash --norc --noprofile /dev/fd/60.  Queues
 * the bootstrap script.  Returns 0 or -1 (logged).
 */
int bs_shell_start(bs_session_t *s);

/*
 * Prepare run frame f: check its fields, write its code and stdin to the
 * memfds, pick a nonce and queue the two command lines.  Returns 0, or -1
 * with *errcode and *message set for a fail frame (bad_request: a bad
 * field; unavailable: a memfd or memory failure, logged).
 */
int bs_shell_run(bs_session_t *s, const pr_frame_t *f,
    const char **errcode, const char **message);

/*
 * Write queued commands to the shell.  Returns 0 (all written or the pipe
 * is full; bs_shell_pending() tells) or -1 on an error other than EPIPE
 * (logged).  A shell that is gone discards them.
 */
int bs_shell_flush(bs_session_t *s);

/* Bytes of commands not yet written. */
size_t bs_shell_pending(const bs_session_t *s);

/*
 * Read the status pipe.  Returns 1 with *rc set when the status line of
 * the current run (its nonce) arrived, 0 if it has not, -1 on a fatal
 * error (logged).  Lines that are not the run's are dropped.
 */
int bs_shell_status(bs_session_t *s, int *rc);


/* bs_io.c */

/* p (n bytes) in single quotes for the shell, into out (4 n + 2 bytes at
 * most); its length. */
size_t bs_io_quoted(char *out, const char *p, size_t n);


/* bs_bg.c */

/*
 * The code that runs the command of detached run frame f, in a subshell
 * (so that an exit in it ends the command, not the session), into *run
 * (its code in *buf, to free after the run began).  Returns 0, or -1 with
 * no memory (logged).
 */
int bs_bg_wrap(bs_session_t *s, const pr_frame_t *f, pr_frame_t *run,
    char **buf);

/*
 * The detached run of frame f began, asked for on slot i: its output goes
 * to the tail from now on, no connection waits for it; ok to slot i.
 */
void bs_bg_started(bs_session_t *s, int i, const pr_frame_t *f);

/* The background command ended with status (wk_io_status()) and rc. */
void bs_bg_ended(bs_session_t *s, const char *status, int rc);

/* Answer a "status" frame on slot i. */
void bs_bg_status(bs_session_t *s, int i);

/* Answer a "tail" frame f on slot i. */
void bs_bg_tail(bs_session_t *s, int i, const pr_frame_t *f);


/* bs_proc.c */

/*
 * Record which process groups exist among this process's descendants
 * (other than the shell's own): they are not the run's.  Cheap when the
 * shell has no children and nothing was orphaned.  Returns 0 or -1.
 */
int bs_proc_snapshot(bs_session_t *s);

/*
 * Send sig to every process of the run: descendants of this process,
 * other than the shell and the sentinel, whose process group is not in
 * the snapshot or is the shell's.  With once set, a process already sent
 * a signal during this stop is skipped.  Whole new process groups also
 * get it through kill(-pgid), so children forked meanwhile do too.
 * Returns the number of processes signalled, or -1 (logged).
 */
int bs_proc_signal_run(bs_session_t *s, int sig, int once);

/* Forget the processes hit during a stop. */
void bs_proc_stop_reset(bs_session_t *s);

/*
 * Fork the sentinel: it waits for EOF on a pipe only this process holds,
 * and then SIGKILLs every process in the shell's session until none is
 * left, however this process ended.  Returns 0 or -1 (logged).
 */
int bs_proc_sentinel(bs_session_t *s);

/*
 * Reap every child that has exited (orphans included); records the
 * shell's status.  Returns 0 or -1 (logged).
 */
int bs_proc_reap(bs_session_t *s);

/* SIGKILL every descendant but the sentinel (the end of the process). */
void bs_proc_kill_all(bs_session_t *s);


/* bs_io.c */

/*
 * Set up s->io for the listening socket listen_fd, nginx's alive pipe
 * alive_fd (or -1) and frames of at most max_frame bytes.  Returns 0 or
 * -1 (logged).
 */
int bs_io_init(bs_session_t *s, int listen_fd, int alive_fd,
    size_t max_frame);

/* Serve until the shell exits; returns the process's exit status. */
int bs_io_loop(bs_session_t *s);

#endif /* BS_SESSION_H */
