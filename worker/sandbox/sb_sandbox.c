/*
 * sb_sandbox.c: sb_sandbox_apply(), the confinement of a session process
 * (see sb_sandbox.h for the caller's contract).  It owns the order of the
 * steps; the seccomp filter, the last of them, is sb_seccomp.c's.  Every
 * step is checked and a failure ends in one message for the caller to log
 * before it exits.
 *
 * Order:
 *   1. rlimits, while still root: a configured limit may then exceed the
 *      inherited hard limit if the process has CAP_SYS_RESOURCE (without
 *      it, a limit above the hard one is lowered to it: never looser than
 *      asked).  Soft and hard are set alike, so user code cannot raise
 *      them back; RLIMIT_CPU gets hard = soft + 1, so the process first
 *      gets SIGXCPU (a clear reason in the log) and SIGKILL a second
 *      later.  RLIMIT_CORE is always 0: a core would hold user data, and
 *      a non-dumpable process writes none anyway.
 *   2. identity, only when euid is 0 and uid/gid are given: setgroups to
 *      just gid, setresgid, setresuid (in that order: gid and groups need
 *      the privilege the uid change gives up), all three ids read back,
 *      and setuid(0) and setgid(0) must fail.  Not running as root, the
 *      uid/gid are ignored: sessions run as the server's own user.
 *   3. chdir to workdir (or fchdir to workdir_fd), after the drop so that
 *      it is done with the session's own permissions; then the directory
 *      is checked to be owned by the euid with no group/other bits (the
 *      caller creates it 0700 and chowns it to uid).
 *   4. PR_SET_NO_NEW_PRIVS: no setuid binary or file capability can give
 *      anything back, and a filter may be loaded without CAP_SYS_ADMIN.
 *   5. PR_SET_DUMPABLE 0, after the uid change (which resets it): other
 *      processes of the same uid cannot ptrace the session, open its
 *      /proc/<pid>/mem, environ, fd/ or cwd.  This matters because
 *      sessions share a uid.  execve() makes a process dumpable again, so
 *      what a session execs (subprocess) is exposed to same-uid processes
 *      except for ptrace and process_vm_*, which the filter denies
 *      everywhere; Yama ptrace_scope >= 1 or one uid per session closes
 *      that too.
 *   6. the seccomp filter, with TSYNC: threads that already exist get it
 *      (and no_new_privs), and the load fails if one cannot.
 * Not here: closing descriptors and the parent-death signal (the uid
 * change clears it, so the caller sets it afterwards).
 *
 * Sessions sharing one uid: they can signal each other (kill(-1, SIGKILL)
 * as that uid kills every session), enter each other's working
 * directories (0700 separates uids, not sessions), and RLIMIT_NPROC counts
 * the tasks of all of them together, so one session forking up to the
 * limit stops the others (and new sessions) from creating threads or
 * processes until it is killed.  The default (SB_SANDBOX_NPROC) assumes
 * the default 100 sessions with 16 tasks each; one uid per session, from
 * a range, is the real fix for all three.  When the server does not run
 * as root the sessions share its uid and RLIMIT_NPROC counts its own
 * processes too.
 *
 * RLIMIT_FSIZE (default: inherited) limits each regular file written (the
 * session logs to a socket, the keeper's relay, so no log file is among
 * them).  It is no disk quota (user code can write many files); a
 * size-limited file system for the working directories is.  The memory limit
 * is RLIMIT_DATA, the private writable memory a process maps (heap, anonymous
 * and private file mappings, thread stacks), not RLIMIT_AS: address space
 * that is only reserved (glibc's 64 MiB arena per thread, PROT_NONE guard
 * regions) and read-only file mappings do not count, so thread pools and
 * OpenBLAS start their threads as under a plain python3.  Neither counts
 * shared memory (memfd, /dev/shm) nor resident pages as such: a session's
 * control group does (the jail).
 */

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sb_sandbox.h"
#include "sb_seccomp.h"


#if defined(__SANITIZE_ADDRESS__)
#define SB_SANDBOX_ASAN  1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SB_SANDBOX_ASAN  1
#endif
#endif
#ifndef SB_SANDBOX_ASAN
#define SB_SANDBOX_ASAN  0
#endif


static int sb_sandbox_limits(const sb_sandbox_t *sb, char *err,
    size_t errlen);
static int sb_sandbox_limit(int resource, const char *name, rlim_t soft,
    rlim_t hard, char *err, size_t errlen);
static int sb_sandbox_identity(const sb_sandbox_t *sb, char *err,
    size_t errlen);
static int sb_sandbox_workdir(const sb_sandbox_t *sb, char *err,
    size_t errlen);
static int sb_sandbox_prctl(char *err, size_t errlen);
static int sb_sandbox_netns(void);


void
sb_sandbox_init(sb_sandbox_t *sb)
{
    memset(sb, 0, sizeof(sb_sandbox_t));

    sb->uid = SB_SANDBOX_NO_ID;
    sb->gid = (gid_t) SB_SANDBOX_NO_ID;
    sb->workdir_fd = -1;
    sb->memory = SB_SANDBOX_MEMORY;
    sb->cpu = SB_SANDBOX_CPU;
    sb->nproc = SB_SANDBOX_NPROC;
    sb->nofile = SB_SANDBOX_NOFILE;
    sb->fsize = SB_SANDBOX_FSIZE;
    sb->seccomp = SB_SANDBOX_SECCOMP_ON;
}


int
sb_sandbox_mode(const char *name)
{
    if (strcmp(name, "off") == 0) {
        return SB_SANDBOX_SECCOMP_OFF;
    }

    if (strcmp(name, "on") == 0) {
        return SB_SANDBOX_SECCOMP_ON;
    }

    if (strcmp(name, "log") == 0) {
        return SB_SANDBOX_SECCOMP_LOG;
    }

    return -1;
}


int
sb_sandbox_prepare(const sb_sandbox_t *sb, char *err, size_t errlen)
{
    if (errlen > 0) {
        err[0] = '\0';
    }

    if (sb_sandbox_check(sb, err, errlen) != 0) {
        return -1;
    }

    return sb_seccomp_prepare(sb, err, errlen);
}


int
sb_sandbox_apply(const sb_sandbox_t *sb, char *err, size_t errlen)
{
    if (errlen > 0) {
        err[0] = '\0';
    }

    int           netns_err;
    sb_sandbox_t  eff;

    if (sb_sandbox_check(sb, err, errlen) != 0) {
        return -1;
    }

    /* in a namespace of its own, inet sockets reach only its loopback */
    eff = *sb;
    netns_err = 0;

    if (sb->netns && !sb->network) {
        if (sb_sandbox_netns() == 0) {
            eff.network = 1;

        } else {
            netns_err = errno;
        }
    }

    if (sb_sandbox_limits(sb, err, errlen) != 0
        || sb_sandbox_identity(sb, err, errlen) != 0
        || sb_sandbox_workdir(sb, err, errlen) != 0
        || sb_sandbox_prctl(err, errlen) != 0
        || sb_seccomp_load(&eff, err, errlen) != 0)
    {
        return -1;
    }

    if (netns_err != 0 && errlen > 0) {
        /* not fatal: the filter denies inet sockets instead */
        (void) snprintf(err, errlen, "no network namespace (%s): inet "
                        "sockets are denied instead", strerror(netns_err));
    }

    return 0;
}


/*
 * A network namespace with only its loopback, up.  Returns 0, or -1 with
 * errno set (no privilege, or a kernel without network namespaces).
 */
static int
sb_sandbox_netns(void)
{
    int           fd, err;
    struct ifreq  ifr;

    if (unshare(CLONE_NEWNET) == -1) {
        return -1;
    }

    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        return -1;
    }

    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, "lo", sizeof("lo"));

    if (ioctl(fd, SIOCGIFFLAGS, &ifr) == -1) {
        goto failed;
    }

    ifr.ifr_flags |= IFF_UP;

    if (ioctl(fd, SIOCSIFFLAGS, &ifr) == -1) {
        goto failed;
    }

    (void) close(fd);

    return 0;

failed:

    err = errno;
    (void) close(fd);
    errno = err;

    return -1;
}


/* The arguments, before anything changes. */
int
sb_sandbox_check(const sb_sandbox_t *sb, char *err, size_t errlen)
{
    size_t  i;
    int     fd;

    if (sb->seccomp != SB_SANDBOX_SECCOMP_OFF
        && sb->seccomp != SB_SANDBOX_SECCOMP_ON
        && sb->seccomp != SB_SANDBOX_SECCOMP_LOG)
    {
        sb_sandbox_error(err, errlen, 0, "unknown seccomp mode %d",
                         sb->seccomp);
        return -1;
    }

    if ((sb->uid == SB_SANDBOX_NO_ID)
        != (sb->gid == (gid_t) SB_SANDBOX_NO_ID))
    {
        sb_sandbox_error(err, errlen, 0, "uid and gid must be given together");
        return -1;
    }

    if (sb->uid == 0 || sb->gid == 0) {
        sb_sandbox_error(err, errlen, 0,
                         "uid %lu, gid %lu: root is no unprivileged user",
                         (unsigned long) sb->uid, (unsigned long) sb->gid);
        return -1;
    }

    for (i = 0; i < sb->nkeep_fds; i++) {
        fd = sb->keep_fds[i];

        if (fd < 0 || fcntl(fd, F_GETFD) == -1) {
            sb_sandbox_error(err, errlen, fd < 0 ? EBADF : errno,
                             "descriptor %d to keep is not open", fd);
            return -1;
        }

        if (sb->nofile != 0 && (rlim_t) fd >= sb->nofile) {
            sb_sandbox_error(err, errlen, 0,
                             "descriptor %d to keep is not below nofile %lu",
                             fd, (unsigned long) sb->nofile);
            return -1;
        }
    }

    return 0;
}


static int
sb_sandbox_limits(const sb_sandbox_t *sb, char *err, size_t errlen)
{
    if (sb_sandbox_limit(RLIMIT_CORE, "RLIMIT_CORE", 0, 0, err, errlen)
        != 0)
    {
        return -1;
    }

    /*
     * AddressSanitizer maps terabytes of writable shadow memory at start:
     * any RLIMIT_DATA a session could live with would be no limit at all,
     * and one set here makes its next allocation fail.  ASan builds are
     * for tests (util/test --sanitize), so they run without it.
     */
    if (sb->memory != 0 && !SB_SANDBOX_ASAN
        && sb_sandbox_limit(RLIMIT_DATA, "RLIMIT_DATA", sb->memory,
                            sb->memory, err, errlen) != 0)
    {
        return -1;
    }

    if (sb->cpu != 0
        && sb_sandbox_limit(RLIMIT_CPU, "RLIMIT_CPU", sb->cpu, sb->cpu + 1,
                            err, errlen) != 0)
    {
        return -1;
    }

    if (sb->nproc != 0
        && sb_sandbox_limit(RLIMIT_NPROC, "RLIMIT_NPROC", sb->nproc,
                            sb->nproc, err, errlen) != 0)
    {
        return -1;
    }

    if (sb->nofile != 0
        && sb_sandbox_limit(RLIMIT_NOFILE, "RLIMIT_NOFILE", sb->nofile,
                            sb->nofile, err, errlen) != 0)
    {
        return -1;
    }

    if (sb->fsize != 0
        && sb_sandbox_limit(RLIMIT_FSIZE, "RLIMIT_FSIZE", sb->fsize,
                            sb->fsize, err, errlen) != 0)
    {
        return -1;
    }

    return 0;
}


/*
 * Set one limit.  Without CAP_SYS_RESOURCE the hard limit cannot go up:
 * then both are lowered to the inherited hard limit, tighter than asked.
 */
static int
sb_sandbox_limit(int resource, const char *name, rlim_t soft, rlim_t hard,
    char *err, size_t errlen)
{
    struct rlimit  rl, old;

    rl.rlim_cur = soft;
    rl.rlim_max = hard;

    if (setrlimit(resource, &rl) == 0) {
        return 0;
    }

    if (errno == EPERM && getrlimit(resource, &old) == 0
        && old.rlim_max != RLIM_INFINITY && old.rlim_max < hard)
    {
        rl.rlim_max = old.rlim_max;
        rl.rlim_cur = soft < old.rlim_max ? soft : old.rlim_max;

        if (setrlimit(resource, &rl) == 0) {
            return 0;
        }
    }

    sb_sandbox_error(err, errlen, errno, "setrlimit(%s, %lu, %lu) failed",
                     name, (unsigned long) soft, (unsigned long) hard);
    return -1;
}


static int
sb_sandbox_identity(const sb_sandbox_t *sb, char *err, size_t errlen)
{
    int    n;
    uid_t  ruid, euid, suid;
    gid_t  rgid, egid, sgid, groups[2];

    if (sb->uid == SB_SANDBOX_NO_ID || geteuid() != 0) {
        return 0;
    }

    if (setgroups(1, &sb->gid) == -1) {
        sb_sandbox_error(err, errlen, errno, "setgroups(%lu) failed",
                         (unsigned long) sb->gid);
        return -1;
    }

    if (setresgid(sb->gid, sb->gid, sb->gid) == -1) {
        sb_sandbox_error(err, errlen, errno, "setresgid(%lu) failed",
                         (unsigned long) sb->gid);
        return -1;
    }

    if (setresuid(sb->uid, sb->uid, sb->uid) == -1) {
        sb_sandbox_error(err, errlen, errno, "setresuid(%lu) failed",
                         (unsigned long) sb->uid);
        return -1;
    }

    if (getresuid(&ruid, &euid, &suid) == -1
        || getresgid(&rgid, &egid, &sgid) == -1)
    {
        sb_sandbox_error(err, errlen, errno, "getresuid/getresgid failed");
        return -1;
    }

    n = getgroups(2, groups);

    if (ruid != sb->uid || euid != sb->uid || suid != sb->uid
        || rgid != sb->gid || egid != sb->gid || sgid != sb->gid
        || n != 1 || groups[0] != sb->gid)
    {
        sb_sandbox_error(err, errlen, 0,
                         "ids after the drop to %lu:%lu are uid %lu/%lu/%lu "
                         "gid %lu/%lu/%lu, %d groups",
                         (unsigned long) sb->uid, (unsigned long) sb->gid,
                         (unsigned long) ruid, (unsigned long) euid,
                         (unsigned long) suid, (unsigned long) rgid,
                         (unsigned long) egid, (unsigned long) sgid, n);
        return -1;
    }

    if (setuid(0) != -1 || setgid(0) != -1) {
        sb_sandbox_error(err, errlen, 0,
                         "setuid(0) or setgid(0) succeeded after the drop");
        return -1;
    }

    return 0;
}


static int
sb_sandbox_workdir(const sb_sandbox_t *sb, char *err, size_t errlen)
{
    const char   *name;
    struct stat   st;

    name = (sb->workdir != NULL) ? sb->workdir : "(descriptor)";

    if (sb->workdir_fd >= 0) {
        if (fchdir(sb->workdir_fd) == -1) {
            sb_sandbox_error(err, errlen, errno,
                             "fchdir(%d) to \"%s\" failed", sb->workdir_fd,
                             name);
            return -1;
        }

    } else if (sb->workdir == NULL) {
        return 0;

    } else if (chdir(sb->workdir) == -1) {
        sb_sandbox_error(err, errlen, errno, "chdir(\"%s\") failed", name);
        return -1;
    }

    if (stat(".", &st) == -1) {
        sb_sandbox_error(err, errlen, errno, "stat(\"%s\") failed", name);
        return -1;
    }

    if (st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
        sb_sandbox_error(err, errlen, 0,
                         "working directory \"%s\" has owner %lu, mode %04o; "
                         "owner %lu, mode 0700 expected", name,
                         (unsigned long) st.st_uid,
                         (unsigned) (st.st_mode & 07777),
                         (unsigned long) geteuid());
        return -1;
    }

    return 0;
}


static int
sb_sandbox_prctl(char *err, size_t errlen)
{
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1) {
        sb_sandbox_error(err, errlen, errno,
                         "prctl(PR_SET_NO_NEW_PRIVS) failed");
        return -1;
    }

    if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) {
        sb_sandbox_error(err, errlen, 0, "no_new_privs did not stick");
        return -1;
    }

    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1) {
        sb_sandbox_error(err, errlen, errno,
                         "prctl(PR_SET_DUMPABLE, 0) failed");
        return -1;
    }

    if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) {
        sb_sandbox_error(err, errlen, 0, "dumpable 0 did not stick");
        return -1;
    }

    return 0;
}


void
sb_sandbox_error(char *err, size_t errlen, int errnum, const char *fmt, ...)
{
    int      n;
    va_list  args;

    if (errlen == 0) {
        return;
    }

    va_start(args, fmt);
    n = vsnprintf(err, errlen, fmt, args);
    va_end(args);

    if (n < 0) {
        err[0] = '\0';
        return;
    }

    if (errnum != 0 && (size_t) n < errlen) {
        (void) snprintf(err + n, errlen - n, ": %s", strerror(errnum));
    }
}
