/*
 * sup.h: what the pieces of pyrepl-supervisor share.  The
 * supervisor is a single-threaded poll(2) loop, started by a keeper
 * process that the nginx master spawns, that hands out session processes
 * on request (from a pool of processes its zygote forked, or by fork and
 * exec), kills them on request, reaps them, adopts the live ones a
 * previous supervisor left, and takes every one of them along when nginx
 * goes away.  The design is described at the top of sup_main.c.  The
 * pieces:
 *
 *   sup_main.c       command line, start-up, signals, the poll loop and
 *                    shutdown
 *   sup_keeper.c     the keeper: restarts the supervisor, reaps orphans
 *   sup_relay.c      the keeper's relay of what sessions log
 *   sup_jail.c       the jails' set-up, control groups and exit statuses
 *   sup_client.c     control connections from nginx workers: accept, read
 *                    requests, queue and flush replies, deferred replies
 *   sup_request.c    validate a request frame and build its reply
 *   sup_lifecycle.c  create, kill, reap and kill-all of session processes,
 *                    the sweep of what dead sessions leave
 *   sup_purge.c      the purge of what a killed or crashed session runs,
 *                    then of its files
 *   sup_pool.c       the pool of forked, unassigned sessions; waiters
 *   sup_zygote.c     starting and watching the zygote, its channel
 *   sup_adopt.c      adopting a previous supervisor's sessions (pidfds)
 *   sup_journal.c    the state file DIR/sessions
 *   sup_proc.c       /proc/<pid>/stat, pidfds
 *   sup_spawn.c      fork and exec of one session process or the zygote
 *   sup_sessions.c   the id -> pid table
 *   sup_listen.c     Unix listening sockets
 *   sup_fs.c         directories, the descriptor-relative recursive
 *                    removal, the pid file
 *   sup_checkpoint.c checkpoint files in and out of session directories
 */

#ifndef SUP_H
#define SUP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyrepl_proto.h"
#include "pyrepl_shared.h"
#include "sb_confine.h"


#define SUP_NAME_LEN      24          /* a pool entry's name, with NUL */
#define SUP_BACKLOG       128
#define SUP_JOURNAL_NAME  "sessions"
#define SUP_RELAY_NAME    "relay.sock"
#define SUP_POOL_PREFIX   "pool-"
#define SUP_SESSION_COMM  "pyrepl-session"   /* comm of session processes */

#define SUP_LANG_PYTHON   0
#define SUP_LANG_BASH     1
#define SUP_MAX_REQUEST   (64 * 1024) /* cap on a control frame */
#define SUP_REAP_WAIT_MS  5000        /* for killed processes at shutdown */


typedef struct {
    const char  *socket_dir;
    const char  *workdir;
    const char  *python;       /* path of the session binary */
    const char  *bash;         /* --bash: pyrepl-bash's path, or NULL */
    const char  *checkpoint_dir;  /* --checkpoint-dir, or NULL */
    int          warmup_fd;    /* --warmup-fd: the warm-up code, or -1 */
    int          log_fd;       /* --log-fd: the keeper's relay, or -1 */
    int          log_rx_fd;    /* --log-rx-fd: its other end, or -1 */
    pid_t        keeper_pid;   /* --keeper-pid: our keeper, or 0 */
    int          parent_fd;    /* -1 when not given */
    uid_t        owner_uid;    /* (uid_t) -1 when not given */
    gid_t        owner_gid;    /* (gid_t) -1 when not given */
    size_t       max_frame;    /* passed to session processes */
    unsigned     pool_min_idle;
    sb_confine_t confine;      /* passed on to session processes */
    unsigned     keeper:1;     /* --keeper: be the keeper */
    unsigned     zygote:1;     /* --zygote: fork sessions from a zygote */
    int          argc;         /* main()'s, for the keeper */
    char       **argv;
} sup_conf_t;


/* A failed request: the errcode and message of the "fail" reply. */
typedef struct {
    const char  *code;
    char         message[256];
} sup_err_t;

/* Fill a sup_err_t: its code and a printf-formatted message. */
#define SUP_ERR(e, c, ...)                                                   \
    do { (e)->code = (c);                                                    \
         (void) snprintf((e)->message, sizeof((e)->message), __VA_ARGS__);   \
    } while (0)


/* sup_fs.c */

/*
 * Create directory path with mode if it is missing (then chown it to
 * uid/gid unless both are -1); an existing directory is left as it is.
 * Returns 1 if created, 0 if it existed, -1 with errno set (logged).
 */
int sup_fs_mkdir(const char *path, mode_t mode, uid_t uid, gid_t gid);

/*
 * Remove name in the directory dirfd and everything below it (AT_FDCWD:
 * name is a path whose components but the last are the supervisor's own
 * directories).  Descriptor-relative and never following a symlink: a
 * symlink, the top included, is removed itself; no directory but the top's
 * subdirectories on its file system is entered (sup_fs.c).  A missing name
 * is success.  Returns 0, or -1 (logged) if something is left.
 */
int sup_fs_rmtree(int dirfd, const char *name);

/* unlink(2) that treats a missing file as success; -1 is logged. */
int sup_fs_unlink(const char *path);

/* Write "pid\n" to path atomically (temp file + rename); 0 or -1. */
int sup_fs_write_pid(const char *path);

/*
 * rename(2) that never replaces: -1 with errno EEXIST if to exists (other
 * errors are logged).  Uses renameat2(RENAME_NOREPLACE), or a check and a
 * rename where the file system lacks it.
 */
int sup_fs_rename(const char *from, const char *to);

/* "dir/name" into buf; -1 (logged) if it does not fit. */
int sup_fs_path(char *buf, size_t size, const char *dir, const char *name,
    const char *suffix);


/* sup_listen.c */

/*
 * A listening Unix stream socket bound at path: CLOEXEC, non-blocking if
 * nonblock, mode 0600, chowned to uid/gid unless both are -1.  An existing
 * file at path is an error (EADDRINUSE) unless replace is set, in which
 * case a stale socket is unlinked first but a live one (something accepts
 * connections on it) still fails with EADDRINUSE.  Returns the fd or -1
 * with errno set (logged).
 */
int sup_listen_unix(const char *path, int nonblock, int replace, uid_t uid,
    gid_t gid);


/* sup_checkpoint.c */

/*
 * Move session id's checkpoint file (a plain name in its directory) to
 * the checkpoint directory as name ("<16 hex>/<32 hex>"), refusing one
 * over max_size bytes, or one that would take the tenant's checkpoints
 * past quota bytes ("quota_exceeded"; 0: any); a refused file is removed.
 * stored gets the new checkpoint's entry as sup_checkpoint_list() makes
 * them.  Returns 0, or -1 with err filled.
 */
int sup_checkpoint_store(const sup_conf_t *conf, const char *id,
    const char *file, const char *name, int64_t max_size, int64_t quota,
    pr_strs_t *stored, sup_err_t *err);

/*
 * The checkpoints of tenant (16 hex), newest first, as many as fit a
 * frame of max_bytes: "<id> <size> <mtime>" each in out, whose items the
 * caller frees (one block).  Returns 0, or -1 with err filled.
 */
int sup_checkpoint_list(const sup_conf_t *conf, const char *tenant,
    size_t max_bytes, pr_strs_t *out, sup_err_t *err);

/* Delete checkpoint name; 0, or -1 with err filled ("not_found"). */
int sup_checkpoint_remove(const sup_conf_t *conf, const char *name,
    sup_err_t *err);

/* Copy checkpoint name into session id's directory as file; 0 or -1. */
int sup_checkpoint_load(const sup_conf_t *conf, const char *id,
    const char *file, const char *name, sup_err_t *err);

/* Whether file is a plain name: no slash, not empty, "." or "..". */
int sup_checkpoint_file_ok(const char *file);


/* sup_sessions.c */

#define SUP_S_LIVE    1    /* process running, socket present */
#define SUP_S_KILLED  2    /* killed on request, not reaped yet */
#define SUP_S_DEAD    3    /* exited on its own; workdir kept until kill */

typedef struct {
    char         id[PYREPL_ID_LEN + 1];
    pid_t        pid;      /* 0 if unknown */
    pid_t        pgid;     /* process group and session id: the first */
                           /* pid (a rollback hands the session to
                              another process of the group, "move") */
    int          state;
    uint64_t     start;    /* start time (/proc stat field 22), or 0 */
    int          pidfd;    /* adopted: a pidfd of the process, else -1 */
    unsigned     adopted:1; /* not our child: a previous supervisor's */
    unsigned     oom:1;    /* DEAD: its group ran out of memory */
} sup_session_t;

/*
 * The table is one array; pointers into it are valid until the next
 * sup_session_add or sup_session_remove.
 */
int sup_session_reserve(void);
sup_session_t *sup_session_add(const char *id, pid_t pid);
void sup_session_remove(sup_session_t *s);
sup_session_t *sup_session_find(const char *id);    /* LIVE or DEAD */
sup_session_t *sup_session_find_pid(pid_t pid);     /* our children, */
                                                    /* LIVE or KILLED */
sup_session_t *sup_session_find_pidfd(int pidfd);   /* adopted */
size_t sup_session_count(void);
size_t sup_session_live(void);
sup_session_t *sup_session_at(size_t i);
void sup_session_free_all(void);


/* sup_proc.c */

typedef struct {
    char         state;    /* R S D Z T ... */
    pid_t        ppid;
    pid_t        pgrp;
    pid_t        sid;      /* session id */
    uint64_t     start;    /* clock ticks after boot */
    char         comm[16];
} sup_proc_t;

/* Parse /proc/<pid>/stat; 0, or -1 (errno ENOENT: no such process). */
int sup_proc_stat(pid_t pid, sup_proc_t *p);

/*
 * From /proc/<pid>/status, pid's state letter and its real, effective,
 * saved and file-system uids (the owner of /proc/<pid> is root for a
 * process that is not dumpable, as sessions are, whatever its uids).
 * Returns 0, or -1 (errno ENOENT: no such process).
 */
int sup_proc_status(pid_t pid, char *state, uid_t uid[4]);

/*
 * Whether pid, a zombie, still has threads that run: its first thread
 * called exit(2), not exit_group(2) (/proc/<pid>/task lists more).  A
 * kill of pid takes them all.
 */
int sup_proc_zombie_runs(pid_t pid);

/*
 * A child of ours that has exited, looked at without reaping it (a zombie
 * still holds its pid and process group id): its pid, 0 when none has, or
 * -1 when waitid() failed (logged unless there is no child at all).
 */
pid_t sup_proc_exited(void);

/* Reap child pid, which has exited: 0 with *status set, or -1 (logged). */
int sup_proc_reap(pid_t pid, int *status);

/*
 * A pidfd for pid if it is alive and started at start (0: any start
 * time), else -1 (ESRCH).  Close-on-exec.
 */
int sup_proc_pidfd(pid_t pid, uint64_t start);

/* SIGKILL pid's process group and pid itself; errors other than ESRCH
 * are logged. */
void sup_proc_kill(pid_t pid, const char *what);


/* sup_journal.c */

#define SUP_J_SESSION  'S'   /* an assigned session: id pid start */
#define SUP_J_POOL     'P'   /* a pool process: name pid start */

typedef struct {
    char         kind;     /* SUP_J_* */
    char         name[PYREPL_ID_LEN + 1];   /* id, or a pool name */
    pid_t        pid;
    uint64_t     start;
} sup_jrec_t;

/*
 * Read DIR/sessions: the records still in force, in *recs (malloc'd, the
 * caller frees), their number in *n.  A missing file is no records.
 * Returns 0 or -1 (logged).
 */
int sup_journal_load(const sup_conf_t *conf, sup_jrec_t **recs, size_t *n);

/*
 * Rewrite DIR/sessions from the session table and the pool (temp file
 * and rename) and keep it open for appending.  Returns 0 or -1 (logged:
 * the supervisor runs on, but a successor may not adopt everything).
 */
int sup_journal_rewrite(const sup_conf_t *conf);

/* Append one record; "gone" is a kind of its own.  Errors are logged. */
void sup_journal_add(char kind, const char *name, pid_t pid,
    uint64_t start);
void sup_journal_gone(const char *name);

/* A pool process became session id: both records in one write. */
void sup_journal_assign(const char *pool, const char *id, pid_t pid,
    uint64_t start);

/* At a clean shutdown: close and remove DIR/sessions. */
void sup_journal_remove(const sup_conf_t *conf);


/* sup_adopt.c */

/*
 * At start-up, before serving: take over what a previous supervisor left
 * (sessions alive, pool processes to kill, stale sockets and pool
 * directories) from the journal and the directories.  Never fails: what
 * cannot be adopted is cleaned up or logged.
 */
void sup_adopt(const sup_conf_t *conf);

/* The epoll descriptor of adopted sessions' pidfds, or -1. */
int sup_adopt_fd(void);

/* Handle adopted sessions whose process has exited. */
void sup_adopt_event(const sup_conf_t *conf);

/* Kill an adopted session's process group (if it is still running). */
void sup_adopt_kill(sup_session_t *s);

/* Forget an adopted entry's pidfd before the entry is removed. */
void sup_adopt_forget(sup_session_t *s);

/* Watch an adopted entry's new process instead (sup_move); 0 or -1. */
int sup_adopt_repid(sup_session_t *s, pid_t pid, uint64_t start);


/* sup_spawn.c */

/*
 * Fork a session process in its own process group with listen_fd as its
 * fd 3 and dir as its working directory, and exec conf->python (or, for
 * SUP_LANG_BASH, conf->bash).  Returns the pid or -1 (logged).  The
 * caller still owns listen_fd.
 */
pid_t sup_spawn(const sup_conf_t *conf, const char *id, int lang,
    int listen_fd, const char *dir);

/*
 * Fork the zygote with control_fd as its fd 3, the workdir as its cwd,
 * a parent-death signal (SIGKILL) and exec "conf->python --zygote".
 * Returns the pid or -1 (logged).  The caller still owns control_fd.
 */
pid_t sup_spawn_zygote(const sup_conf_t *conf, int control_fd);

/*
 * In a child about to exec: descriptor from[i] becomes to[i], without
 * close-on-exec, for n (at most 8) pairs, whatever the numbers (a source
 * may be another's target).  0, or -1 (logged).
 */
int sup_spawn_fds(const int *from, const int *to, size_t n);


/* sup_relay.c */

/*
 * The log relay: *rx, bound at DIR/SUP_RELAY_NAME (the socket directory,
 * nginx's workers' alone), for the keeper, with credentials passed with
 * each datagram; *tx, connected to it, which processes that run user code
 * inherit and replace with a socket of their own (wk_log_relay_own).
 * 0 or -1 (logged).
 */
int sup_relay_open(const char *dir, int *rx, int *tx);

/* Log every datagram waiting on rx as one line; never blocks. */
void sup_relay_read(int rx);


/* sup_lifecycle.c */

/* a client waiting for a deferred reply (sup_client.c) */
typedef struct sup_client_s  sup_client_t;

/*
 * Create session id in language lang (SUP_LANG_*).  Returns 0 with *pid
 * set, 1 when the reply is deferred (the session is handed to client by
 * sup_client_reply() once a pool process is ready, or once the purge of
 * an earlier session with the same id is over), or -1 with err filled.
 * Only Python sessions come from the pool.
 */
int sup_create(const sup_conf_t *conf, sup_client_t *client, const char *id,
    int lang, pid_t *pid, sup_err_t *err);

/* The fork+exec way of sup_create (bash; no zygote, or it is down). */
int sup_create_exec(const sup_conf_t *conf, const char *id, int lang,
    pid_t *pid, sup_err_t *err);

/* Whether id is taken: in the table, a waiter, its directory or socket. */
int sup_id_taken(const sup_conf_t *conf, const char *id, sup_err_t *err);

int sup_paths(const sup_conf_t *conf, const char *name, char *sock,
    char *dir);

/*
 * Kill session id: its socket is unlinked at once, its process group gets
 * SIGKILL, and sup_purge_timer() kills every other process of it and then
 * removes its files (the purge, sup_purge.c); those of a crashed session,
 * whose processes are gone, and an unknown id's leftovers go at once.
 */
void sup_kill(const sup_conf_t *conf, const char *id);

/*
 * Session s's process died (it was LIVE): its socket is unlinked, the
 * entry becomes DEAD and the rest of its processes are purged (its files
 * stay until a kill).
 */
void sup_dead(const sup_conf_t *conf, sup_session_t *s);

/*
 * Session id is served by pid from now on (a rollback's snapshot, in the
 * session's process group): the old process is killed, the journal
 * rewritten.  Returns 0, or -1 with err filled.
 */
int sup_move(const sup_conf_t *conf, const char *id, pid_t pid,
    sup_err_t *err);
void sup_reap(const sup_conf_t *conf);
void sup_kill_all(const sup_conf_t *conf);

/* Processes not reaped yet, and purges not done yet (at shutdown). */
size_t sup_unreaped(void);

/* The sweep for what dead sessions left behind (see sup_lifecycle.c). */
int64_t sup_sweep_timeout(int64_t now);
void sup_sweep_timer(const sup_conf_t *conf, int64_t now);
void sup_log_exit(const char *what, const char *name, pid_t pid,
    int status);


/* sup_jail.c */

/*
 * With --jail on: check that this host can build jails (else the jail is
 * turned off, and the reason logged as a warning), make the control
 * groups' instance directories (what is missing is logged once), and
 * open the session binaries for exec in a jail, where their paths do not
 * resolve.  Returns 0, or -1 (logged).
 */
int sup_jail_setup(sup_conf_t *conf);

/*
 * A jailed session's wait status as its init passed it on (128 + the
 * signal for a killed session process), as that process's own.
 */
int sup_jail_status(const sup_conf_t *conf, int status);

/* Session s (jailed) is gone: whether its group ran out of memory. */
void sup_jail_gone(const sup_conf_t *conf, sup_session_t *s);

/*
 * The jailed session whose init was pid is reaped (with it every process
 * of its namespace is gone): its group goes.
 */
void sup_jail_purged(const sup_conf_t *conf, pid_t pid);

/* The descriptor to execveat() lang's session binary from in a jail. */
int sup_jail_bin_fd(int lang);

/* Remove the groups of jailed sessions that are no more (at start). */
void sup_jail_sweep(const sup_conf_t *conf);

/* At shutdown, every session reaped: the instance directories go too. */
void sup_jail_teardown(const sup_conf_t *conf);


/* sup_purge.c */

/*
 * Purge session id: every process of it (those of process group pgid, or
 * with its uid; none when pgid is 0, as nothing of it can run), then, with
 * files, its working directory and its uid's leftovers, in a child of
 * ours.  A purge of id under way takes the files along when asked to.
 */
void sup_purge(const sup_conf_t *conf, const char *id, pid_t pgid,
    int files);

/* Whether the purge of session id, or the removal of its files, runs. */
int sup_purge_pending(const char *id);

/*
 * client's create of id waits (its reply deferred) until the purge of id
 * is over, then is made as sup_create() makes it, or after
 * SUP_PURGE_WAIT_MS is refused with "conflict".  0, or -1 with err filled.
 */
int sup_purge_wait(sup_client_t *client, const char *id, int lang,
    sup_err_t *err);

/* The client is gone: its create waits no more. */
void sup_purge_cancel(sup_client_t *client);

/*
 * Whether pid is the first pid of a session that is dead or being purged:
 * a new process with that pid has its uid (or session id) and must not
 * serve a session.
 */
int sup_pid_in_use(pid_t pid);

/* A reaped child: 1 if it was one removing a session's files, else 0. */
int sup_purge_reaped(pid_t pid, int status);

/* Purges and file removals not done yet (at shutdown). */
size_t sup_purge_unfinished(void);

/*
 * The purges' next scan, or a waiting create's turn or deadline:
 * milliseconds until it is due, or -1.
 */
int64_t sup_purge_timeout(int64_t now);
void sup_purge_timer(const sup_conf_t *conf, int64_t now);

/* Shutdown: log the purges not done (files left) and forget them. */
void sup_purge_give_up(void);


/* sup_pool.c */

void sup_pool_init(const sup_conf_t *conf);

/* Fork more pool processes if fewer than wanted are ready or on the way. */
void sup_pool_fill(const sup_conf_t *conf);

/* The refill a hand-out asked for, once the loop's replies are out. */
void sup_pool_idle_work(const sup_conf_t *conf);

/*
 * Hand a ready pool process to session id.  Returns 0 with *pid set, 1 if
 * none is ready, -1 with err filled.
 */
int sup_pool_take(const sup_conf_t *conf, const char *id, pid_t *pid,
    sup_err_t *err);

/* Queue client's create of id until a pool process is ready; 0 or -1. */
int sup_pool_wait(const sup_conf_t *conf, sup_client_t *client,
    const char *id, sup_err_t *err);

int sup_pool_waiting(const char *id);
void sup_pool_cancel(sup_client_t *client);

/* The zygote answered FORK seq: pid, or err when pid is 0. */
void sup_pool_forked(const sup_conf_t *conf, uint32_t seq, pid_t pid,
    int err);

/* The zygote is gone: FORKs not answered yet will not be. */
void sup_pool_zygote_gone(const sup_conf_t *conf);

/* A reaped pid: 1 if it was a pool process (handled), else 0. */
int sup_pool_reaped(const sup_conf_t *conf, pid_t pid, int status);

/* Milliseconds until sup_pool_timer() has work, or -1. */
int64_t sup_pool_timeout(int64_t now);
void sup_pool_timer(const sup_conf_t *conf, int64_t now);

void sup_pool_kill_all(const sup_conf_t *conf);
void sup_pool_free_all(void);
size_t sup_pool_idle(void);
size_t sup_pool_unreaped(void);
size_t sup_pool_count(void);
int sup_pool_has(pid_t pid);
void sup_pool_at(size_t i, const char **name, pid_t *pid, uint64_t *start);


/* sup_zygote.c */

void sup_zygote_start(const sup_conf_t *conf);

/* The channel's descriptor (to poll for POLLIN), or -1. */
int sup_zygote_fd(void);

/* Read and handle whatever the zygote sent. */
void sup_zygote_event(const sup_conf_t *conf);

/* Ask for a fork; 0, or -1 (errno; EAGAIN: not now). */
int sup_zygote_fork(uint32_t seq, const char *name, int lfd, int dfd);

/* 1 while the zygote is ready for FORKs. */
int sup_zygote_ready(void);

/* 1 while creates should wait for the zygote rather than fork+exec. */
int sup_zygote_usable(void);

/* Its pid when ready, else 0. */
pid_t sup_zygote_pid(void);

/* Whether pid is the zygote (ready or not). */
int sup_zygote_is(pid_t pid);

/* A reaped pid: 1 if it was the zygote (handled), else 0. */
int sup_zygote_reaped(const sup_conf_t *conf, pid_t pid, int status);

int64_t sup_zygote_timeout(int64_t now);
void sup_zygote_timer(const sup_conf_t *conf, int64_t now);

/* Shutdown: no restarts, SIGKILL it; 1 while it is still unreaped. */
void sup_zygote_stop(void);
size_t sup_zygote_unreaped(void);


/* sup_request.c */

/*
 * Handle one request frame from client; fills reply (whose strings point
 * into req, into err, to constants, or for "list" into a block of its
 * own) with "ok" or "fail" and returns 0, or returns 1 when the reply is
 * deferred (sup_client_reply()).  Once sent, a reply is released with
 * sup_request_release().
 */
int sup_request(const sup_conf_t *conf, sup_client_t *client,
    const pr_frame_t *req, pr_frame_t *reply, sup_err_t *err);
void sup_request_release(pr_frame_t *reply);


/* sup_client.c */

struct pollfd;

int sup_client_accept(int listen_fd);
size_t sup_client_count(void);
void sup_client_pollfd(size_t i, struct pollfd *pfd);
void sup_client_event(const sup_conf_t *conf, size_t i, short revents);
void sup_client_sweep(void);
void sup_client_close_all(void);

/*
 * Send the deferred reply of client's create of id: "ok {id, pid}" when
 * pid > 0, else "fail" from err.  Returns 0, or -1 if the client is gone
 * (the caller then kills the session it made for it).
 */
int sup_client_reply(const sup_conf_t *conf, sup_client_t *client,
    const char *id, pid_t pid, const sup_err_t *err);

/* Send client's deferred reply; 0, or -1 if the client is gone. */
int sup_client_answer(const sup_conf_t *conf, sup_client_t *client,
    const pr_frame_t *reply);


/* sup_ended.c */

/*
 * Why session id's processes ended, in reply's reason: answered now (0)
 * when it is known, else deferred (1) until they are gone, for at most
 * SUP_ENDED_WAIT_MS, or -1 with err filled.
 */
#define SUP_ENDED_WAIT_MS  1000

int sup_ended(sup_client_t *client, const char *id, pr_frame_t *reply,
    sup_err_t *err);
void sup_ended_cancel(sup_client_t *client);
int64_t sup_ended_timeout(int64_t now);
void sup_ended_timer(const sup_conf_t *conf, int64_t now);


/* sup_main.c */

/*
 * The array of *cap elements of size bytes, grown by realloc() to twice
 * as many (first, when it has none); *cap is updated.  NULL when out of
 * memory (logged, naming what), the array left as it was.
 */
void *sup_grow(void *array, size_t *cap, size_t size, size_t first,
    const char *what);

/* Ignore SIGHUP and SIGPIPE, block the others; a signalfd for them. */
int sup_signals(void);

/* Whether the parent pipe's revents say nginx is gone. */
int sup_parent_gone(int fd, short revents);


/* sup_keeper.c */

/* Be the keeper (--keeper); returns the exit status. */
int sup_keeper_main(const sup_conf_t *conf);

/*
 * In a supervisor with --keeper-pid: SIGUSR1 (its signalfd's) when the
 * keeper dies, raised at once if it is gone already.  0 or -1 (logged).
 */
int sup_keeper_watch(const sup_conf_t *conf);

/* Whether the keeper this supervisor was started by is gone. */
int sup_keeper_gone(const sup_conf_t *conf);

/*
 * The keeper is gone: exec this binary as the keeper, with the same
 * options and descriptors (parent pipe, warm-up code, log relay).  The
 * live sessions stay this process's children and in the journal; the
 * new keeper's supervisor adopts them.  Returns only if the exec failed
 * (logged): the supervisor then serves on without a keeper.
 */
void sup_keeper_succeed(const sup_conf_t *conf);

#endif /* SUP_H */
