/*
 * sb_sandbox.c: sb_sandbox_apply(), the confinement of a session process
 * (see sb_sandbox.h for the caller's contract).  It owns the order of the
 * steps and the seccomp policy; every step is checked and a failure ends
 * in one message for the caller to log before it exits.
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
 *
 * The seccomp filter is a deny-list (default ALLOW): the interpreter and
 * what it spawns must keep working, and the uid drop already takes away
 * everything that needs a capability.  The filter is for what an
 * unprivileged process can still reach, and it costs nothing on paths that
 * need no privilege.  Denied, with EPERM ("on") so that Python raises
 * PermissionError, or only logged by the kernel ("log"):
 *   - other processes: ptrace, process_vm_readv/writev, pidfd_getfd,
 *     process_madvise, kcmp (ptrace-class access to same-uid processes,
 *     e.g. another session's exec'd children);
 *   - namespaces: unshare and clone with any CLONE_NEW* flag, setns.
 *     User namespaces in particular would hand out "root" over kernel
 *     code an unprivileged process otherwise never reaches.  unshare and
 *     clone without those flags stay allowed (the I/O thread calls
 *     unshare(CLONE_FILES); fork is clone).  clone3 passes its flags in
 *     memory seccomp cannot read, so it fails with ENOSYS instead, which
 *     makes glibc (pthread_create, posix_spawn) fall back to clone;
 *   - mounts and roots: mount, umount2, pivot_root, chroot, and the new
 *     mount API (open_tree, move_mount, fsopen, fsconfig, fsmount,
 *     fspick, mount_setattr);
 *   - the kernel itself: kexec_load, kexec_file_load, init_module,
 *     finit_module, delete_module, bpf, perf_event_open, keyctl, add_key,
 *     request_key, userfaultfd, io_uring_setup/enter/register, uselib,
 *     lookup_dcookie, quotactl, open_by_handle_at, name_to_handle_at:
 *     rarely needed, often the entry point of kernel exploits;
 *   - the machine: reboot, swapon, swapoff, settimeofday, clock_settime,
 *     clock_adjtime, adjtimex, acct, iopl, ioperm, vhangup, syslog;
 *   - personality other than the default persona (0) and the query
 *     (0xffffffff): ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC and such only
 *     weaken what a session execs;
 *   - ioctl TIOCSTI and TIOCLINUX: faking input on a terminal the process
 *     may still have (nginx in the foreground);
 *   - socket: AF_UNIX only, or with network on (or off in a network
 *     namespace of the session's own, netns) AF_UNIX, AF_INET and
 *     AF_INET6 but no SOCK_RAW or SOCK_PACKET type (compared as type &
 *     0xf, the kernel's SOCK_TYPE_MASK, so SOCK_NONBLOCK and
 *     SOCK_CLOEXEC cannot hide it).  AF_NETLINK, AF_PACKET and the rest
 *     are denied in both cases.  socketpair: AF_UNIX only.
 * Arguments are compared as the 64-bit registers seccomp sees; the rules
 * are written so that garbage in the upper half of an int argument (which
 * the kernel ignores) makes a call denied, never allowed.
 *
 * Deliberately allowed: fork, threads, exec (the filter and no_new_privs
 * are inherited; setuid binaries give nothing), signals to same-uid
 * processes, memfd, mprotect/PROT_EXEC (the interpreter and ctypes need
 * them), prctl and seccomp (a process may confine itself further), and
 * everything a capability guards, which the drop already takes away.
 *
 * Other architectures: the filter is built for the native one only, and
 * every syscall made through another ABI (int 0x80 on x86_64, x32) kills
 * the process (SCMP_FLTATR_ACT_BADARCH, SIGSYS; logged only in "log"
 * mode): a 32-bit syscall could otherwise bypass every rule, and no
 * session needs one.  Argument positions assume the clone flags in
 * argument 0, true everywhere but s390.
 *
 * "log" mode makes every rule (and other ABIs) SCMP_ACT_LOG: the call goes
 * through and the kernel writes an audit record (type=1326, syscall=N) to
 * the kernel log, to find out what a workload would hit before turning
 * the filter on.
 *
 * Cost: libseccomp compiles the rules (about 330 BPF instructions, most
 * of them for personality) in about 0.7 ms; loading the result takes the
 * kernel about 0.1 ms, most of which any filter costs.  The compiled
 * program is kept per mode and network setting, so sb_sandbox_prepare()
 * in a parent that forks sessions (the zygote) leaves each session only
 * the load.  Syscalls without rules are in the kernel's constant-action
 * cache and cost nothing more; those with rules (socket, ioctl, clone...)
 * run a binary tree of the syscall numbers (SCMP_FLTATR_CTL_OPTIMIZE 2),
 * a few tens of nanoseconds.
 */

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sb_sandbox.h"


#if defined(__s390__) || defined(__s390x__)
#error "sb_sandbox.c: clone takes its flags in argument 1 on s390"
#endif

#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP     0x02000000
#endif

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME       0x00000080
#endif

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

#define SB_SANDBOX_SOCK_TYPE_MASK  0xf         /* the kernel's */
#define SB_SANDBOX_LOW32           0xffffffffULL

/*
 * clone()'s namespace flags; CLONE_NEWTIME (unshare, clone3 only) is a bit
 * of clone()'s CSIGNAL byte there
 */
#define SB_SANDBOX_CLONE_NS                                                  \
    (CLONE_NEWNS | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET              \
     | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP)


/* a compiled filter, kept for the life of the process */
typedef struct {
    struct sock_filter  *insns;
    unsigned short       len;
} sb_sandbox_prog_t;


static int sb_sandbox_check(const sb_sandbox_t *sb, char *err,
    size_t errlen);
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
static int sb_sandbox_seccomp(const sb_sandbox_t *sb, char *err,
    size_t errlen);
static int sb_sandbox_compile(const sb_sandbox_t *sb,
    sb_sandbox_prog_t *prog, char *err, size_t errlen);
static int sb_sandbox_rules(scmp_filter_ctx ctx, const sb_sandbox_t *sb,
    uint32_t deny, char *err, size_t errlen);
static int sb_sandbox_rule(scmp_filter_ctx ctx, uint32_t action,
    const char *name, unsigned n, struct scmp_arg_cmp a,
    struct scmp_arg_cmp b, char *err, size_t errlen);
static void sb_sandbox_error(char *err, size_t errlen, int errnum,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));


/* denied whatever their arguments; names absent on an arch are skipped */
static const char  *sb_sandbox_denied[] = {
    /* other processes */
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd",
    "process_madvise", "kcmp",
    /* namespaces (unshare, clone: by flags, below) */
    "setns",
    /* mounts and roots */
    "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    /* the kernel */
    "kexec_load", "kexec_file_load", "init_module", "finit_module",
    "delete_module", "bpf", "perf_event_open", "keyctl", "add_key",
    "request_key", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "uselib", "lookup_dcookie", "quotactl",
    "open_by_handle_at", "name_to_handle_at",
    /* the machine */
    "reboot", "swapon", "swapoff", "settimeofday", "clock_settime",
    "clock_adjtime", "adjtimex", "acct", "iopl", "ioperm", "vhangup",
    "syslog",
    NULL
};

static const uint64_t  sb_sandbox_ns_flags[] = {
    CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWIPC,
    CLONE_NEWUTS, CLONE_NEWCGROUP, CLONE_NEWTIME
};

#define SB_SANDBOX_NNS                                                       \
    (sizeof(sb_sandbox_ns_flags) / sizeof(sb_sandbox_ns_flags[0]))

/* by [seccomp mode - 1][network]: what sb_sandbox_prepare() compiled */
static sb_sandbox_prog_t  sb_sandbox_progs[2][2];

/* an unused comparison, for one-argument rules */
static const struct scmp_arg_cmp  sb_sandbox_none;


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
    sb_sandbox_t        eff;
    sb_sandbox_prog_t  *prog;

    if (errlen > 0) {
        err[0] = '\0';
    }

    if (sb_sandbox_check(sb, err, errlen) != 0) {
        return -1;
    }

    if (sb->seccomp == SB_SANDBOX_SECCOMP_OFF) {
        return 0;
    }

    /* the one a session in a network namespace of its own loads */
    eff = *sb;
    eff.network = sb->network || sb->netns;

    prog = &sb_sandbox_progs[eff.seccomp - 1][eff.network];

    if (prog->insns != NULL) {
        return 0;
    }

    return sb_sandbox_compile(&eff, prog, err, errlen);
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
        || sb_sandbox_seccomp(&eff, err, errlen) != 0)
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
static int
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


/*
 * Load the filter for sb's mode and network setting with TSYNC, compiling
 * it first unless this process (or the one it was forked from, through
 * sb_sandbox_prepare) already has.
 */
static int
sb_sandbox_seccomp(const sb_sandbox_t *sb, char *err, size_t errlen)
{
    long                 rc;
    struct sock_fprog    fprog;
    sb_sandbox_prog_t   *prog;

    if (sb->seccomp == SB_SANDBOX_SECCOMP_OFF) {
        return 0;
    }

    prog = &sb_sandbox_progs[sb->seccomp - 1][sb->network];

    if (prog->insns == NULL && sb_sandbox_compile(sb, prog, err, errlen) != 0)
    {
        return -1;
    }

    fprog.len = prog->len;
    fprog.filter = prog->insns;

    rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                 SECCOMP_FILTER_FLAG_TSYNC, &fprog);

    if (rc == -1) {
        sb_sandbox_error(err, errlen, errno,
                         "seccomp(SECCOMP_SET_MODE_FILTER) failed");
        return -1;
    }

    if (rc != 0) {
        sb_sandbox_error(err, errlen, 0,
                         "seccomp filter: thread %ld cannot be synchronised",
                         rc);
        return -1;
    }

    return 0;
}


/*
 * Build the BPF program with libseccomp and keep a copy in prog (never
 * freed: it serves every later fork).  libseccomp 2.5 exports only to a
 * descriptor, so the program goes through a memfd.
 */
static int
sb_sandbox_compile(const sb_sandbox_t *sb, sb_sandbox_prog_t *prog,
    char *err, size_t errlen)
{
    int                  rc, fd;
    ssize_t              n;
    uint32_t             deny, badarch;
    unsigned             api;
    struct stat          st;
    scmp_filter_ctx      ctx;
    struct sock_filter  *insns;

    /* level 3: SCMP_ACT_LOG and SCMP_ACT_KILL_PROCESS (Linux 4.14) */
    api = seccomp_api_get();

    if (api < 3) {
        sb_sandbox_error(err, errlen, 0,
                         "libseccomp API level %u, 3 (Linux 4.14) needed",
                         api);
        return -1;
    }

    if (sb->seccomp == SB_SANDBOX_SECCOMP_LOG) {
        deny = SCMP_ACT_LOG;
        badarch = SCMP_ACT_LOG;

    } else {
        deny = SCMP_ACT_ERRNO(EPERM);
        badarch = SCMP_ACT_KILL_PROCESS;
    }

    fd = -1;
    insns = NULL;

    ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (ctx == NULL) {
        sb_sandbox_error(err, errlen, 0, "seccomp_init() failed");
        return -1;
    }

    /* a binary tree over the syscall numbers rather than a linear chain */
    if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, badarch)) != 0
        || (rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)) != 0)
    {
        sb_sandbox_error(err, errlen, -rc, "seccomp_attr_set() failed");
        goto fail;
    }

    if (sb_sandbox_rules(ctx, sb, deny, err, errlen) != 0) {
        goto fail;
    }

    fd = memfd_create("sb_sandbox", MFD_CLOEXEC);
    if (fd == -1) {
        sb_sandbox_error(err, errlen, errno, "memfd_create() failed");
        goto fail;
    }

    rc = seccomp_export_bpf(ctx, fd);
    if (rc != 0) {
        sb_sandbox_error(err, errlen, -rc, "seccomp_export_bpf() failed");
        goto fail;
    }

    if (fstat(fd, &st) == -1) {
        sb_sandbox_error(err, errlen, errno, "fstat(memfd) failed");
        goto fail;
    }

    if (st.st_size == 0 || st.st_size % sizeof(struct sock_filter) != 0
        || st.st_size / sizeof(struct sock_filter) > BPF_MAXINSNS)
    {
        sb_sandbox_error(err, errlen, 0, "seccomp program of %ld bytes",
                         (long) st.st_size);
        goto fail;
    }

    insns = malloc(st.st_size);
    if (insns == NULL) {
        sb_sandbox_error(err, errlen, errno, "malloc(%ld) failed",
                         (long) st.st_size);
        goto fail;
    }

    n = pread(fd, insns, st.st_size, 0);
    if (n != st.st_size) {
        sb_sandbox_error(err, errlen, n == -1 ? errno : 0,
                         "pread(memfd) of the seccomp program failed");
        goto fail;
    }

    (void) close(fd);
    seccomp_release(ctx);

    prog->insns = insns;
    prog->len = st.st_size / sizeof(struct sock_filter);

    return 0;

fail:

    if (fd != -1) {
        (void) close(fd);
    }

    free(insns);
    seccomp_release(ctx);

    return -1;
}


static int
sb_sandbox_rules(scmp_filter_ctx ctx, const sb_sandbox_t *sb, uint32_t deny,
    char *err, size_t errlen)
{
    int                   domain;
    size_t                i;
    uint64_t              bit;
    uint32_t              enosys;
    struct scmp_arg_cmp   none;
    const char          **name;

    none = sb_sandbox_none;

    for (name = sb_sandbox_denied; *name != NULL; name++) {
        if (sb_sandbox_rule(ctx, deny, *name, 0, none, none, err, errlen)
            != 0)
        {
            return -1;
        }
    }

    /* namespaces: any one flag denies */
    for (i = 0; i < SB_SANDBOX_NNS; i++) {
        bit = sb_sandbox_ns_flags[i];

        if ((bit & SB_SANDBOX_CLONE_NS)
            && sb_sandbox_rule(ctx, deny, "clone", 1,
                               SCMP_A0(SCMP_CMP_MASKED_EQ, bit, bit), none,
                               err, errlen) != 0)
        {
            return -1;
        }

        if (sb_sandbox_rule(ctx, deny, "unshare", 1,
                            SCMP_A0(SCMP_CMP_MASKED_EQ, bit, bit), none,
                            err, errlen) != 0)
        {
            return -1;
        }
    }

    enosys = (deny == SCMP_ACT_LOG) ? SCMP_ACT_LOG : SCMP_ACT_ERRNO(ENOSYS);

    if (sb_sandbox_rule(ctx, enosys, "clone3", 0, none, none, err, errlen)
        != 0)
    {
        return -1;
    }

    /*
     * personality: the kernel reads an unsigned int, and only 0 and
     * 0xffffffff are allowed.  libseccomp takes one comparison per
     * argument and rule, so "not 0 and not all ones" is spelt as: some bit
     * below 31 differs from bit 31.
     */
    for (i = 0; i < 31; i++) {
        bit = (uint64_t) 1 << i;

        if (sb_sandbox_rule(ctx, deny, "personality", 1,
                            SCMP_A0(SCMP_CMP_MASKED_EQ, bit | 0x80000000,
                                    bit), none, err, errlen) != 0
            || sb_sandbox_rule(ctx, deny, "personality", 1,
                               SCMP_A0(SCMP_CMP_MASKED_EQ, bit | 0x80000000,
                                       0x80000000), none, err, errlen) != 0)
        {
            return -1;
        }
    }

    /* terminals: cmd is an unsigned int */
    if (sb_sandbox_rule(ctx, deny, "ioctl", 1,
                        SCMP_A1(SCMP_CMP_MASKED_EQ, SB_SANDBOX_LOW32,
                                TIOCSTI), none, err, errlen) != 0
        || sb_sandbox_rule(ctx, deny, "ioctl", 1,
                           SCMP_A1(SCMP_CMP_MASKED_EQ, SB_SANDBOX_LOW32,
                                   TIOCLINUX), none, err, errlen) != 0)
    {
        return -1;
    }

    /* socketpair: AF_UNIX only (the only family that has it, anyway) */
    if (sb_sandbox_rule(ctx, deny, "socketpair", 1,
                        SCMP_A0(SCMP_CMP_NE, AF_UNIX), none, err, errlen)
        != 0)
    {
        return -1;
    }

    if (!sb->network) {
        return sb_sandbox_rule(ctx, deny, "socket", 1,
                               SCMP_A0(SCMP_CMP_NE, AF_UNIX), none, err,
                               errlen);
    }

    /*
     * socket with network: AF_UNIX (1), AF_INET (2), AF_INET6 (10).  The
     * families between are denied one by one; above, by one comparison
     * that also catches anything in the upper 32 bits.
     */
    if (sb_sandbox_rule(ctx, deny, "socket", 1,
                        SCMP_A0(SCMP_CMP_GT, AF_INET6), none, err, errlen)
        != 0
        || sb_sandbox_rule(ctx, deny, "socket", 1,
                           SCMP_A0(SCMP_CMP_EQ, AF_UNSPEC), none, err,
                           errlen) != 0)
    {
        return -1;
    }

    for (domain = AF_INET + 1; domain < AF_INET6; domain++) {
        if (sb_sandbox_rule(ctx, deny, "socket", 1,
                            SCMP_A0(SCMP_CMP_EQ, domain), none, err, errlen)
            != 0)
        {
            return -1;
        }
    }

    for (i = 0; i < 2; i++) {
        domain = (i == 0) ? AF_INET : AF_INET6;

        if (sb_sandbox_rule(ctx, deny, "socket", 2,
                            SCMP_A0(SCMP_CMP_EQ, domain),
                            SCMP_A1(SCMP_CMP_MASKED_EQ,
                                    SB_SANDBOX_SOCK_TYPE_MASK, SOCK_RAW),
                            err, errlen) != 0
            || sb_sandbox_rule(ctx, deny, "socket", 2,
                               SCMP_A0(SCMP_CMP_EQ, domain),
                               SCMP_A1(SCMP_CMP_MASKED_EQ,
                                       SB_SANDBOX_SOCK_TYPE_MASK,
                                       SOCK_PACKET),
                               err, errlen) != 0)
        {
            return -1;
        }
    }

    return 0;
}


/*
 * Add one rule of n (0 to 2) comparisons for the syscall called name; a
 * name the native arch does not have is skipped.
 */
static int
sb_sandbox_rule(scmp_filter_ctx ctx, uint32_t action, const char *name,
    unsigned n, struct scmp_arg_cmp a, struct scmp_arg_cmp b, char *err,
    size_t errlen)
{
    int                  nr, rc;
    struct scmp_arg_cmp  cmp[2];

    nr = seccomp_syscall_resolve_name(name);
    if (nr < 0) {
        return 0;
    }

    cmp[0] = a;
    cmp[1] = b;

    rc = seccomp_rule_add_array(ctx, action, nr, n, cmp);
    if (rc != 0) {
        sb_sandbox_error(err, errlen, -rc, "seccomp rule for %s failed",
                         name);
        return -1;
    }

    return 0;
}


/* "message: strerror(errnum)", or just the message when errnum is 0. */
static void
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
