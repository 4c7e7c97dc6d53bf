/*
 * sb_sandbox.h: confinement of one session process, applied after the
 * fork that makes it and before any user code runs: resource limits, an
 * unprivileged uid/gid, its working directory, no_new_privs, not
 * dumpable, and a libseccomp deny-list.  Why each step and limit is as
 * it is: the comment at the top of sb_sandbox.c; what the filter denies
 * and why: the one at the top of sb_seccomp.c.
 *
 * The caller's side of the contract:
 *   - call it while the process is single-threaded if possible (right
 *     after fork); threads that already exist get the seccomp filter and
 *     no_new_privs through TSYNC, but with seccomp "off" they keep
 *     no_new_privs unset;
 *   - the working directory exists, mode 0700, owned by uid (or by the
 *     process's own euid when no drop takes place); it is checked;
 *   - memory (RLIMIT_DATA) counts the private writable memory the process
 *     already maps: after a fork from a warmed-up zygote, all of the
 *     zygote's;
 *   - descriptors are the caller's business: nothing is closed here, the
 *     keep_fds are only checked to be open and below the nofile limit;
 *   - the parent-death signal too: changing the uid clears it, so set
 *     PR_SET_PDEATHSIG after sb_sandbox_apply() and then compare getppid()
 *     with the expected parent;
 *   - call it after the last execve(): rlimits, ids, no_new_privs and the
 *     filter survive exec, but exec makes the process dumpable again;
 *   - on failure the process is half-confined: log err and _exit().
 * The filter lets unshare() without CLONE_NEW* flags through, so the I/O
 * thread may start before or after (py_io.c's unshare(CLONE_FILES)).
 */

#ifndef SB_SANDBOX_H
#define SB_SANDBOX_H

#include <stddef.h>
#include <sys/resource.h>
#include <sys/types.h>


#define SB_SANDBOX_SECCOMP_OFF   0    /* no filter */
#define SB_SANDBOX_SECCOMP_ON    1    /* denied calls fail with EPERM */
#define SB_SANDBOX_SECCOMP_LOG   2    /* denied calls pass, kernel logs */

#define SB_SANDBOX_NO_ID         ((uid_t) -1)

/* defaults set by sb_sandbox_init(); 0 keeps the inherited limit */
#define SB_SANDBOX_MEMORY        ((rlim_t) 1 << 30)   /* RLIMIT_DATA, 1 GiB */
#define SB_SANDBOX_CPU           0                    /* runs have deadlines */
#define SB_SANDBOX_NPROC_PER_SESSION  16
#define SB_SANDBOX_NPROC         (100 * SB_SANDBOX_NPROC_PER_SESSION)
#define SB_SANDBOX_NOFILE        1024
#define SB_SANDBOX_FSIZE         0                    /* see sb_sandbox.c */


typedef struct {
    uid_t        uid;          /* SB_SANDBOX_NO_ID: keep; else both set, */
    gid_t        gid;          /* used only when running as root */
    const char  *workdir;      /* chdir'ed to; NULL: stay */
    int          workdir_fd;   /* fchdir'ed to instead when >= 0 (workdir,
                                  if set, only names it in messages) */

    rlim_t       memory;       /* RLIMIT_DATA, bytes */
    rlim_t       cpu;          /* RLIMIT_CPU, seconds (SIGXCPU, then
                                  SIGKILL one second later) */
    rlim_t       nproc;        /* RLIMIT_NPROC, tasks of the whole uid */
    rlim_t       nofile;       /* RLIMIT_NOFILE */
    rlim_t       fsize;        /* RLIMIT_FSIZE, bytes per file */
                               /* RLIMIT_CORE is always 0 */

    int          seccomp;      /* SB_SANDBOX_SECCOMP_* */
    unsigned     network:1;    /* AF_INET, AF_INET6 sockets allowed */
    unsigned     netns:1;      /* network off: a network namespace of its
                                  own, loopback only, in which AF_INET and
                                  AF_INET6 sockets are allowed (root) */

    const int   *keep_fds;     /* descriptors the process goes on using */
    size_t       nkeep_fds;
} sb_sandbox_t;


/*
 * Fill sb with the defaults above: no uid change, no workdir (workdir_fd
 * -1), seccomp on, network off, no keep_fds.  nproc counts every task
 * (thread or process) of a uid system-wide, so with sessions sharing a
 * uid it must cover all of them: size it as max sessions *
 * SB_SANDBOX_NPROC_PER_SESSION.
 */
void sb_sandbox_init(sb_sandbox_t *sb);

/* "off", "on", "log" to SB_SANDBOX_SECCOMP_*; -1 for anything else. */
int sb_sandbox_mode(const char *name);

/*
 * Compile the seccomp filter for sb's mode and network setting and keep
 * it in this process, so that the children forked afterwards only load
 * it: sb_sandbox_apply() in them then costs about 0.1 ms instead of
 * 0.7 ms or more.  Optional (apply compiles what is missing, in the
 * child); call it in the parent (zygote, supervisor) before forking, from
 * one thread.  The program (a few KB) stays allocated for the life of the
 * process.  Returns 0, or -1 with a message in err.
 */
int sb_sandbox_prepare(const sb_sandbox_t *sb, char *err, size_t errlen);

/*
 * Confine the calling process, in this order: rlimits, groups/gid/uid
 * (verified: setuid(0) must fail afterwards), chdir to workdir (owner
 * and mode checked), PR_SET_NO_NEW_PRIVS, PR_SET_DUMPABLE 0, then the
 * seccomp filter (TSYNC).  Returns 0, or -1 with a message in err (always
 * NUL-terminated when errlen > 0); errno is not meaningful.  Without
 * sb_sandbox_prepare() in an ancestor, compiles the filter first and
 * keeps it allocated.
 */
int sb_sandbox_apply(const sb_sandbox_t *sb, char *err, size_t errlen);

#endif /* SB_SANDBOX_H */
