/*
 * sb_jail.h: the jail, a view of the system of a session's own, built
 * around every session process when nginx runs as root (pyrepl_jail):
 *
 *   - pid namespace: the session sees its own processes only; its first
 *     process is a small init (pid 1) that reaps orphans, so user code's
 *     own waits keep their children's exit statuses, and ends with the
 *     session process, taking every other process of the namespace
 *     along (the kernel kills them when pid 1 exits);
 *   - mount namespace with a minimal root (sb_jail_root.c): /usr and an
 *     allow-list of /etc read-only, the working directory read-write at
 *     SB_JAIL_HOME, private /tmp and /dev/shm (tmpfs, tmp_size each), a
 *     minimal /dev with a private devpts, /proc of the session's own pid
 *     namespace, the operator's binds (pyrepl_bind), nothing else;
 *   - IPC namespace: System V objects and POSIX message queues are the
 *     session's own and go with it;
 *   - network namespace when network is off: loopback only, up, and the
 *     abstract socket names are the session's own;
 *   - UTS namespace: its own host name, SB_JAIL_HOSTNAME;
 *   - control groups (sb_cgroup.h): memory, tasks and CPU weight.
 *
 * A jail is made by sb_jail_clone() (the namespaces, in a child that is
 * their init) and sb_jail_enter() in that child (the rest; it forks the
 * session process).  The creator, root (the zygote's intermediate
 * process, the supervisor for an exec'd session), learns the init's pid
 * from the clone: that pid names the session's uid and group, and
 * killing it ends everything of the session at once.
 *
 * The init keeps one more piece of state: which process serves the
 * session.  A transaction's rollback hands the session to a snapshot
 * (py_tx.c); the supervisor then says so to the init with SIGRTMIN
 * carrying the new process's pid (in the session's namespace), and the
 * init kills the old one (sb_jail_move).
 */

#ifndef SB_JAIL_H
#define SB_JAIL_H

#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

#include "sb_cgroup.h"


#define SB_JAIL_HOME        "/home/pyrepl"
#define SB_JAIL_HOSTNAME    "pyrepl"
#define SB_JAIL_MAX_BINDS   16
#define SB_JAIL_MAX_PTYS    16
#define SB_JAIL_TMP_SIZE    ((uint64_t) 64 << 20)
#define SB_JAIL_MOVE_SIGNAL (SIGRTMIN)


/* pyrepl_bind SRC DST ro|rw */
typedef struct {
    const char  *src;
    const char  *dst;
    unsigned     rw:1;
} sb_jail_bind_t;


typedef struct {
    unsigned            on:1;
    unsigned            netns:1;       /* network off: loopback only */
    uint64_t            tmp_size;      /* bytes, /tmp and /dev/shm each */
    sb_cgroup_t         cgroup;
    sb_cgroup_limits_t  limits;
    sb_jail_bind_t      binds[SB_JAIL_MAX_BINDS];
    unsigned            nbinds;
} sb_jail_t;


/* What sb_jail_enter() gives the session process it returns in. */
typedef struct {
    pid_t        pid;          /* the init's, as the host sees it */
    uid_t        uid;          /* the session's identity in the jail */
    gid_t        gid;
    const char  *user;         /* its name in /etc/passwd */
    uid_t        init_uid;     /* the init's own, none of a session's */
    gid_t        init_gid;
    char        *title;        /* the command-line area the init inherits */
    size_t       title_len;    /* from its creator, which it clears */
} sb_jail_id_t;


void sb_jail_init(sb_jail_t *j);

/*
 * Whether this host can build jails: namespaces, a new /proc.  0, or -1
 * with a reason in err (the jail is then off, and the supervisor says
 * so).
 */
int sb_jail_probe(char *err, size_t errlen);

/*
 * fork(2) into new pid, mount, IPC and UTS namespaces (and network, with
 * netns): returns the child's pid in the caller, 0 in the child (pid 1
 * of its namespace), -1 with errno set.  A raw clone(2): no atfork
 * handlers run, so only single-threaded callers.
 */
pid_t sb_jail_clone(const sb_jail_t *j);

/* The calling process's pid as the host's /proc sees it (0: unknown). */
pid_t sb_jail_host_pid(void);

/*
 * In the child of sb_jail_clone(), as root: the control group, the root
 * (workdir_fd is bound at SB_JAIL_HOME), the host name, the loopback;
 * then fork the session process.  Returns 0 in the session process, in
 * SB_JAIL_HOME, with the signal mask and dispositions it had; the init
 * drops id->init_uid and serves until the session process exits, then
 * exits with its status (128 + the signal if it was killed), never
 * returning.  Returns -1 with err filled if the jail could not be built
 * (the caller exits: nothing of it runs).
 */
int sb_jail_enter(const sb_jail_t *j, const sb_jail_id_t *id, int workdir_fd,
    char *err, size_t errlen);

/*
 * Tell the init of session pid (as the host sees it) that the process
 * nspid (as the session sees it) serves the session from now on; the
 * init kills the one that did.  0, or -1 with errno set.
 */
int sb_jail_move(pid_t init, pid_t nspid);

#endif /* SB_JAIL_H */
