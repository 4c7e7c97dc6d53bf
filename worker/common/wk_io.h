/*
 * wk_io.h: the I/O every session process does, whatever runs the code:
 * Python's I/O thread (py_io.c) and bash's poll loop (bs_io.c) each keep
 * one wk_io_t and pass it to every function here.
 *
 *   connections  the listening socket and what it accepts, a small fixed
 *                table of wk_conn_t: frames in (to the caller's frame
 *                handler), frames out, a connection that fails closed
 *   output       the pipeline from the pipes behind the code's fds 1 and
 *                2 to stdout and stderr frames on the run's connection
 *   the run      which connection it answers, when it began, and its
 *                deadline
 *
 * Output.  While a run is active, what the pipes hold goes to the run's
 * connection as stdout/stderr frames of at most io->chunk bytes (which
 * sanitising may triple: the chunk is sized so that every frame stays
 * under max_frame), whole UTF-8 characters only (an incomplete tail waits
 * for the next read) and invalid bytes replaced; between runs it is read
 * and dropped.  When the run's connection holds more than
 * WK_IO_HIGH_WATER unsent bytes the pipes are not read, so the code blocks
 * in write() instead of this process growing.
 *
 * The deadline.  The session process owns a run's deadline (its run
 * frame's timeout_ms; nginx only keeps a watchdog past it):
 * wk_io_deadline() says, once per run, that it has passed; the caller
 * then stops the run as for an interrupt, and the run completes with
 * status "timeout" (wk_io_status()).
 *
 * The run's connection going away while the run is active is the caller's
 * business too (its lost handler): the run is stopped, and its output
 * dropped.  A run asked for on another connection meanwhile (or during an
 * op between runs) need not be refused as busy: its frame handler may answer WK_IO_HOLD
 * (wk_io_may_hold()), and that connection's frames wait, unread, until the
 * stopped run has ended; then they come to the frame handler again.  So a
 * client that gave up on a run and asks for the next one at once gets it
 * run, not refused, whichever of the two the session heard of first.
 *
 * A background run (bash's detached runs) has no connection: with io->tail
 * set, the active run's output goes there instead, never backed up.
 */

#ifndef WK_IO_H
#define WK_IO_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyrepl_proto.h"
#include "wk_conn.h"
#include "wk_tail.h"


#define WK_IO_MAX_CONNS     16
#define WK_IO_CHUNK         ((size_t) 64 * 1024)   /* output bytes a frame */
#define WK_IO_HIGH_WATER    ((size_t) 1024 * 1024) /* unsent: stop pipes */
#define WK_IO_DRAIN_MAX     ((size_t) 1024 * 1024) /* per pipe and drain */
#define WK_IO_ACCEPT_PAUSE  100                    /* ms, on EMFILE */

/* the shared slots at the start of a poll set (wk_io_poll_set) */
#define WK_IO_POLL_LISTEN   0
#define WK_IO_POLL_ALIVE    1               /* nginx's alive pipe */
#define WK_IO_POLL_PIPES    2               /* stdout, stderr */
#define WK_IO_POLL_OWN      4               /* the caller's slots from here */

/* how a run ended, for wk_io_status() */
#define WK_IO_RUN_OK           0
#define WK_IO_RUN_ERROR        1    /* an exception escaped, a command */
                                    /* failed */
#define WK_IO_RUN_INTERRUPTED  2    /* stopped: an interrupt, the deadline, */
                                    /* the connection gone */

/* wk_io_events(): nginx is gone, the caller ends the process */
#define WK_IO_GONE          1

/* a frame handler's answers: not a frame this session takes; keep it */
#define WK_IO_UNKNOWN       1
#define WK_IO_HOLD          2


typedef struct wk_io_s  wk_io_t;

/*
 * The frame handler: act on frame f, which arrived on slot i (it may
 * answer, close the slot, start a run).  f is valid during the call only.
 * Returns 0, or WK_IO_UNKNOWN for a frame type this kind of session does
 * not take (wk_io.c refuses it).
 */
typedef int (*wk_io_frame_pt)(wk_io_t *io, int i, const pr_frame_t *f);

/*
 * The lost handler: the active run's connection went away (why: "closed
 * by the peer", "failed", ...); io->run_conn is -1 already.  The caller
 * stops the run.
 */
typedef void (*wk_io_lost_pt)(wk_io_t *io, const char *why);


typedef struct {
    int              fd;           /* read end, non-blocking; -1: closed */
    pr_type_t        type;         /* PR_T_STDOUT or PR_T_STDERR */
    uint8_t          carry[4];     /* an incomplete UTF-8 character */
    size_t           ncarry;
} wk_io_pipe_t;


typedef struct {
    wk_conn_t        conn;
    unsigned         used:1;
    unsigned         watch:1;      /* gets copies of runs' frames */
    unsigned         held:1;       /* its next frame waits for the run */
                                   /* to end (WK_IO_HOLD) */
} wk_io_conn_t;


struct wk_io_s {
    /* the caller's, set before wk_io_init() and left alone by it */
    wk_io_frame_pt   frame;
    wk_io_lost_pt    lost;
    void            *data;

    const char      *id;           /* the session's name in log lines */
    int              listen_fd;
    int              alive_fd;     /* nginx's alive pipe, or -1 */
    size_t           max_frame;

    wk_io_conn_t     conns[WK_IO_MAX_CONNS];
    int64_t          accept_resume;  /* listening paused until, or 0 */

    wk_io_pipe_t     pipes[2];     /* the code's fds 1 and 2 (the caller */
                                   /* sets the fds) */
    unsigned         writers_gone:1;  /* a pipe's EOF is no news: what */
                                      /* wrote to it has ended */

    /* the run */
    unsigned         run_active:1;
    unsigned         timed_out:1;  /* its deadline has passed */
    int              run_conn;     /* slot of its connection, or -1 */
    int64_t          started;      /* wk_msec() */
    int64_t          deadline;     /* wk_msec(), 0 for none */
    wk_tail_t       *tail;         /* a background run's output, or NULL */

    /* output buffers, allocated once */
    size_t           chunk;        /* output bytes a frame, at most */
    uint8_t         *rbuf;         /* chunk + 4: raw pipe bytes */
    uint8_t         *tbuf;         /* 3 * (chunk + 4): sanitized */
};


/*
 * Reset io for a session with listening socket listen_fd: no connection,
 * no run, the pipes closed (fd -1, the caller opens them).  The output
 * buffers are sized for max_frame and allocated once: an io that has
 * them (a snapshot taking over its parent's session) keeps them.  Returns
 * 0, or -1 (logged).
 */
int wk_io_init(wk_io_t *io, const char *id, int listen_fd, int alive_fd,
    size_t max_frame);

/*
 * Fill the shared entries of a poll set: the listening socket (unless
 * paused), nginx's alive pipe, the pipes (unless the run's connection is
 * backed up) at WK_IO_POLL_*; then, after the caller's nown slots from
 * WK_IO_POLL_OWN on (which the caller fills), every connection, with
 * map[k] the slot of pfds[WK_IO_POLL_OWN + nown + k].  Every revents is
 * zeroed.  *wake becomes the earliest time (wk_msec()) a timer of io's
 * is due, or 0.  Returns the number of entries.
 */
int wk_io_poll_set(wk_io_t *io, struct pollfd *pfds, int nown, int *map,
    int64_t *wake);

/* poll()'s timeout from now to wake (0: none), at most a minute. */
int wk_io_poll_timeout(int64_t now, int64_t wake);

/*
 * Act on the shared entries' events, after the caller's own: the pipes,
 * the connections (frames to the frame handler), nginx's alive pipe, the
 * listening socket.  Returns 0, WK_IO_GONE (every nginx process is gone;
 * logged), or -1 on a fatal error (logged).
 */
int wk_io_events(wk_io_t *io, const struct pollfd *pfds, int nfds, int nown,
    const int *map);

/*
 * Whether the active run's deadline has passed: 1 once per run (it is
 * then timed out), else 0.
 */
int wk_io_deadline(wk_io_t *io);

/*
 * A run (or an op of the main thread's) answering slot i begins now;
 * timeout_ms > 0 gives it a deadline.
 */
void wk_io_run_begin(wk_io_t *io, int i, int64_t timeout_ms);

/* The run has ended: no run, no connection, no deadline, no tail. */
void wk_io_run_end(wk_io_t *io);

/*
 * Whether a run frame that finds the session busy may be held
 * (WK_IO_HOLD) rather than refused: no other run waits yet, and the active
 * job is an op between runs (op: the caller knows it is; namespace,
 * checkpoint, ..., which end by themselves) or a run being stopped
 * because its connection went away.
 */
int wk_io_may_hold(const wk_io_t *io, int op);

/*
 * The "status" of the active run's complete frame for how it ended
 * (WK_IO_RUN_*): "ok", "error" or "interrupted"; "timeout", however it
 * ended, for a run whose deadline passed (code that catches the
 * interrupt, or ignores SIGINT, still ran past its time).
 */
const char *wk_io_status(const wk_io_t *io, int how);

/*
 * What the pipes hold comes from no run (background processes of an
 * earlier one, between runs): read it all and drop it, before a run
 * begins.  Returns 0, or -1 on a fatal error (logged).
 */
int wk_io_discard(wk_io_t *io);

/*
 * Read both pipes until they are empty (or WK_IO_DRAIN_MAX bytes each,
 * should a background writer keep them busy), forwarding what the active
 * run wrote.  Returns 0 when both were found empty (or closed), 1 when
 * one still had bytes at the cap, -1 on a fatal error (logged).
 */
int wk_io_drain(wk_io_t *io);

/*
 * Forward a character the run never finished (sanitising makes it
 * U+FFFD): nothing can complete it any more.
 */
void wk_io_flush_carry(wk_io_t *io);

/*
 * The run has written all it will: wk_io_drain(), then
 * wk_io_flush_carry().  Returns 0, or -1 on a fatal error (logged).
 */
int wk_io_output_end(wk_io_t *io);

/* Whether the run's connection holds more than WK_IO_HIGH_WATER bytes. */
int wk_io_backed_up(const wk_io_t *io);

/* Queue f on slot i (nothing if i < 0 or unused); a failure closes it. */
void wk_io_send(wk_io_t *io, int i, const pr_frame_t *f);

/*
 * Queue a copy of f, a frame of the active run, on every watching
 * connection but the run's own; a watcher with more than WK_IO_HIGH_WATER
 * unsent bytes is closed instead.
 */
void wk_io_send_watchers(wk_io_t *io, const pr_frame_t *f);

/* Queue "fail {errcode: code, message}" on slot i, as wk_io_send(). */
void wk_io_fail(wk_io_t *io, int i, const char *code, const char *message);

/* Write what slot i holds, as far as it takes it; a failure closes it. */
void wk_io_flush(wk_io_t *io, int i);

/*
 * Before the process exits: write what the run's connection holds,
 * waiting for a slow peer up to ms milliseconds.
 */
void wk_io_flush_wait(wk_io_t *io, int ms);

/*
 * Close slot i, why naming the reason in the log.  The active run's
 * connection going away calls the lost handler.
 */
void wk_io_close(wk_io_t *io, int i, const char *why);

#endif /* WK_IO_H */
