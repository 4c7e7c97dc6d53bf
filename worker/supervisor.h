/*
 * supervisor.h: what the pieces of pyrepl-supervisor share.  The
 * supervisor is a single-threaded poll(2) loop, spawned by the nginx
 * master, that starts one session process per session on request, kills
 * them on request, reaps them, and takes every one of them along when
 * nginx goes away.  The pieces:
 *
 *   supervisor.c     command line, start-up, signals, the poll loop and
 *                    shutdown
 *   sup_client.c     control connections from nginx workers: accept, read
 *                    requests, queue and flush replies
 *   sup_request.c    validate a request frame and build its reply
 *   sup_lifecycle.c  create, kill, reap and kill-all of session processes
 *   sup_spawn.c      fork and exec of one session process
 *   sup_sessions.c   the id -> pid table
 *   sup_listen.c     Unix listening sockets
 *   sup_fs.c         directories, the recursive removal, the pid file
 */

#ifndef SUPERVISOR_H
#define SUPERVISOR_H

#include <stddef.h>
#include <sys/types.h>

#include "pyrepl_proto.h"


#define SUP_ID_LEN        32          /* lowercase hex characters */
#define SUP_BACKLOG       128
#define SUP_SOCK_NAME     "supervisor.sock"
#define SUP_PID_NAME      "supervisor.pid"
#define SUP_MAX_REQUEST   (64 * 1024) /* cap on a control frame */


typedef struct {
    const char  *socket_dir;
    const char  *workdir;
    const char  *python;       /* path of the session binary */
    int          parent_fd;    /* -1 when not given */
    uid_t        owner_uid;    /* (uid_t) -1 when not given */
    gid_t        owner_gid;    /* (gid_t) -1 when not given */
    size_t       max_frame;    /* passed to session processes */
} sup_conf_t;


/* A failed request: the errcode and message of the "fail" reply. */
typedef struct {
    const char  *code;
    char         message[256];
} sup_err_t;


/* sup_fs.c */

/*
 * Create directory path with mode if it is missing (then chown it to
 * uid/gid unless both are -1); an existing directory is left as it is.
 * Returns 1 if created, 0 if it existed, -1 with errno set (logged).
 */
int sup_fs_mkdir(const char *path, mode_t mode, uid_t uid, gid_t gid);

/*
 * Remove path and everything below it without following symlinks.
 * A missing path is success.  Returns 0 or -1 (logged).
 */
int sup_fs_rmtree(const char *path);

/* unlink(2) that treats a missing file as success; -1 is logged. */
int sup_fs_unlink(const char *path);

/* Write "pid\n" to path atomically (temp file + rename); 0 or -1. */
int sup_fs_write_pid(const char *path);

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


/* sup_sessions.c */

#define SUP_S_LIVE    1    /* process running, socket present */
#define SUP_S_KILLED  2    /* killed on request, not reaped yet */
#define SUP_S_DEAD    3    /* exited on its own; workdir kept until kill */

typedef struct {
    char         id[SUP_ID_LEN + 1];
    pid_t        pid;      /* also the process group id */
    int          state;
} sup_session_t;

/*
 * The table is one array; pointers into it are valid until the next
 * sup_session_add or sup_session_remove.
 */
int sup_session_reserve(void);
sup_session_t *sup_session_add(const char *id, pid_t pid);
void sup_session_remove(sup_session_t *s);
sup_session_t *sup_session_find(const char *id);    /* LIVE or DEAD */
sup_session_t *sup_session_find_pid(pid_t pid);     /* LIVE or KILLED */
size_t sup_session_count(void);
sup_session_t *sup_session_at(size_t i);
void sup_session_free_all(void);


/* sup_spawn.c */

/*
 * Fork a session process in its own process group with listen_fd as its
 * fd 3 and dir as its working directory, and exec conf->python.  Returns
 * the pid or -1 (logged).  The caller still owns listen_fd.
 */
pid_t sup_spawn(const sup_conf_t *conf, const char *id, int listen_fd,
    const char *dir);


/* sup_lifecycle.c */

int sup_create(const sup_conf_t *conf, const char *id, pid_t *pid,
    sup_err_t *err);
void sup_kill(const sup_conf_t *conf, const char *id);
void sup_reap(const sup_conf_t *conf);
void sup_kill_all(const sup_conf_t *conf);
size_t sup_unreaped(void);


/* sup_request.c */

/*
 * Handle one request frame; fills reply (whose strings point into req,
 * into msg, or to constants) with "ok" or "fail".
 */
void sup_request(const sup_conf_t *conf, const pr_frame_t *req,
    pr_frame_t *reply, sup_err_t *err);


/* sup_client.c */

struct pollfd;

int sup_client_accept(int listen_fd);
size_t sup_client_count(void);
void sup_client_pollfd(size_t i, struct pollfd *pfd);
void sup_client_event(const sup_conf_t *conf, size_t i, short revents);
void sup_client_sweep(void);
void sup_client_close_all(void);

#endif /* SUPERVISOR_H */
