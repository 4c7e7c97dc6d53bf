/*
 * sb_seccomp.c: the seccomp filter, the last step of sb_sandbox_apply()
 * (sb_sandbox.c): the policy, its compilation with libseccomp, once per
 * mode and network setting, and its loading.
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
 *   - what every process of the host shares: io_setup (Linux AIO
 *     contexts count against one host-wide fs.aio-max-nr: a session
 *     could take them all; glibc's POSIX AIO does not use them);
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
 * a few tens of nanoseconds. */

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sb_sandbox.h"
#include "sb_seccomp.h"


#if defined(__s390__) || defined(__s390x__)
#error "sb_seccomp.c: clone takes its flags in argument 1 on s390"
#endif

#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP     0x02000000
#endif

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME       0x00000080
#endif

#define SB_SECCOMP_SOCK_TYPE_MASK  0xf         /* the kernel's */
#define SB_SECCOMP_LOW32           0xffffffffULL

/*
 * clone()'s namespace flags; CLONE_NEWTIME (unshare, clone3 only) is a bit
 * of clone()'s CSIGNAL byte there
 */
#define SB_SECCOMP_CLONE_NS                                                  \
    (CLONE_NEWNS | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET              \
     | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP)


/* a compiled filter, kept for the life of the process */
typedef struct {
    struct sock_filter  *insns;
    unsigned short       len;
} sb_seccomp_prog_t;


static int sb_seccomp_compile(const sb_sandbox_t *sb,
    sb_seccomp_prog_t *prog, char *err, size_t errlen);
static int sb_seccomp_rules(scmp_filter_ctx ctx, const sb_sandbox_t *sb,
    uint32_t deny, char *err, size_t errlen);
static int sb_seccomp_rule(scmp_filter_ctx ctx, uint32_t action,
    const char *name, unsigned n, struct scmp_arg_cmp a,
    struct scmp_arg_cmp b, char *err, size_t errlen);


/* denied whatever their arguments; names absent on an arch are skipped */
static const char  *sb_seccomp_denied[] = {
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
    /* what every process of the host shares */
    "io_setup",
    /* the machine */
    "reboot", "swapon", "swapoff", "settimeofday", "clock_settime",
    "clock_adjtime", "adjtimex", "acct", "iopl", "ioperm", "vhangup",
    "syslog",
    NULL
};

static const uint64_t  sb_seccomp_ns_flags[] = {
    CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWIPC,
    CLONE_NEWUTS, CLONE_NEWCGROUP, CLONE_NEWTIME
};

#define SB_SECCOMP_NNS                                                       \
    (sizeof(sb_seccomp_ns_flags) / sizeof(sb_seccomp_ns_flags[0]))

/* by [seccomp mode - 1][network]: what sb_seccomp_prepare() compiled */
static sb_seccomp_prog_t  sb_seccomp_progs[2][2];

/* an unused comparison, for one-argument rules */
static const struct scmp_arg_cmp  sb_seccomp_none;


int
sb_seccomp_prepare(const sb_sandbox_t *sb, char *err, size_t errlen)
{
    sb_sandbox_t        eff;
    sb_seccomp_prog_t  *prog;

    if (sb->seccomp == SB_SANDBOX_SECCOMP_OFF) {
        return 0;
    }

    /* the one a session in a network namespace of its own loads */
    eff = *sb;
    eff.network = sb->network || sb->netns;

    prog = &sb_seccomp_progs[eff.seccomp - 1][eff.network];

    if (prog->insns != NULL) {
        return 0;
    }

    return sb_seccomp_compile(&eff, prog, err, errlen);
}


/*
 * Load the filter for sb's mode and network setting with TSYNC, compiling
 * it first unless this process (or the one it was forked from, through
 * sb_seccomp_prepare) already has.
 */
int
sb_seccomp_load(const sb_sandbox_t *sb, char *err, size_t errlen)
{
    long                 rc;
    struct sock_fprog    fprog;
    sb_seccomp_prog_t   *prog;

    if (sb->seccomp == SB_SANDBOX_SECCOMP_OFF) {
        return 0;
    }

    prog = &sb_seccomp_progs[sb->seccomp - 1][sb->network];

    if (prog->insns == NULL && sb_seccomp_compile(sb, prog, err, errlen) != 0)
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
sb_seccomp_compile(const sb_sandbox_t *sb, sb_seccomp_prog_t *prog,
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

    if (sb_seccomp_rules(ctx, sb, deny, err, errlen) != 0) {
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
sb_seccomp_rules(scmp_filter_ctx ctx, const sb_sandbox_t *sb, uint32_t deny,
    char *err, size_t errlen)
{
    int                   domain;
    size_t                i;
    uint64_t              bit;
    uint32_t              enosys;
    struct scmp_arg_cmp   none;
    const char          **name;

    none = sb_seccomp_none;

    for (name = sb_seccomp_denied; *name != NULL; name++) {
        if (sb_seccomp_rule(ctx, deny, *name, 0, none, none, err, errlen)
            != 0)
        {
            return -1;
        }
    }

    /* namespaces: any one flag denies */
    for (i = 0; i < SB_SECCOMP_NNS; i++) {
        bit = sb_seccomp_ns_flags[i];

        if ((bit & SB_SECCOMP_CLONE_NS)
            && sb_seccomp_rule(ctx, deny, "clone", 1,
                               SCMP_A0(SCMP_CMP_MASKED_EQ, bit, bit), none,
                               err, errlen) != 0)
        {
            return -1;
        }

        if (sb_seccomp_rule(ctx, deny, "unshare", 1,
                            SCMP_A0(SCMP_CMP_MASKED_EQ, bit, bit), none,
                            err, errlen) != 0)
        {
            return -1;
        }
    }

    enosys = (deny == SCMP_ACT_LOG) ? SCMP_ACT_LOG : SCMP_ACT_ERRNO(ENOSYS);

    if (sb_seccomp_rule(ctx, enosys, "clone3", 0, none, none, err, errlen)
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

        if (sb_seccomp_rule(ctx, deny, "personality", 1,
                            SCMP_A0(SCMP_CMP_MASKED_EQ, bit | 0x80000000,
                                    bit), none, err, errlen) != 0
            || sb_seccomp_rule(ctx, deny, "personality", 1,
                               SCMP_A0(SCMP_CMP_MASKED_EQ, bit | 0x80000000,
                                       0x80000000), none, err, errlen) != 0)
        {
            return -1;
        }
    }

    /* terminals: cmd is an unsigned int */
    if (sb_seccomp_rule(ctx, deny, "ioctl", 1,
                        SCMP_A1(SCMP_CMP_MASKED_EQ, SB_SECCOMP_LOW32,
                                TIOCSTI), none, err, errlen) != 0
        || sb_seccomp_rule(ctx, deny, "ioctl", 1,
                           SCMP_A1(SCMP_CMP_MASKED_EQ, SB_SECCOMP_LOW32,
                                   TIOCLINUX), none, err, errlen) != 0)
    {
        return -1;
    }

    /* socketpair: AF_UNIX only (the only family that has it, anyway) */
    if (sb_seccomp_rule(ctx, deny, "socketpair", 1,
                        SCMP_A0(SCMP_CMP_NE, AF_UNIX), none, err, errlen)
        != 0)
    {
        return -1;
    }

    if (!sb->network) {
        return sb_seccomp_rule(ctx, deny, "socket", 1,
                               SCMP_A0(SCMP_CMP_NE, AF_UNIX), none, err,
                               errlen);
    }

    /*
     * socket with network: AF_UNIX (1), AF_INET (2), AF_INET6 (10).  The
     * families between are denied one by one; above, by one comparison
     * that also catches anything in the upper 32 bits.
     */
    if (sb_seccomp_rule(ctx, deny, "socket", 1,
                        SCMP_A0(SCMP_CMP_GT, AF_INET6), none, err, errlen)
        != 0
        || sb_seccomp_rule(ctx, deny, "socket", 1,
                           SCMP_A0(SCMP_CMP_EQ, AF_UNSPEC), none, err,
                           errlen) != 0)
    {
        return -1;
    }

    for (domain = AF_INET + 1; domain < AF_INET6; domain++) {
        if (sb_seccomp_rule(ctx, deny, "socket", 1,
                            SCMP_A0(SCMP_CMP_EQ, domain), none, err, errlen)
            != 0)
        {
            return -1;
        }
    }

    for (i = 0; i < 2; i++) {
        domain = (i == 0) ? AF_INET : AF_INET6;

        if (sb_seccomp_rule(ctx, deny, "socket", 2,
                            SCMP_A0(SCMP_CMP_EQ, domain),
                            SCMP_A1(SCMP_CMP_MASKED_EQ,
                                    SB_SECCOMP_SOCK_TYPE_MASK, SOCK_RAW),
                            err, errlen) != 0
            || sb_seccomp_rule(ctx, deny, "socket", 2,
                               SCMP_A0(SCMP_CMP_EQ, domain),
                               SCMP_A1(SCMP_CMP_MASKED_EQ,
                                       SB_SECCOMP_SOCK_TYPE_MASK,
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
sb_seccomp_rule(scmp_filter_ctx ctx, uint32_t action, const char *name,
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
