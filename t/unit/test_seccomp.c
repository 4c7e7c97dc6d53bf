/*
 * test_seccomp.c: unit tests of the seccomp filter (worker/sandbox/
 * sb_seccomp.c, applied by sb_sandbox_apply()).  Denied syscalls are tried
 * with harmless arguments, once under the filter (EPERM expected) and once
 * without it as root (anything but EPERM, so that the EPERM is the
 * filter's).  Also: what stays allowed (clone, threads, subprocesses, a
 * real interpreter), socket families with network off and on, 32-bit
 * syscalls, "log" mode, TSYNC, and the cost of sb_sandbox_apply() and of
 * the filter per syscall.  The rest of the sandbox is test_sandbox.c's.
 * Each case runs in a child (sandbox_child.h).  Must run as root; prints
 * "N passed, N failed".
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sched.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sandbox_child.h"
#include "sb_sandbox.h"
#include "unit.h"


#define BENCH_FORKS   200
#define X32_BIT       0x40000000L


/* one denied syscall and harmless arguments for it */
typedef struct {
    const char  *name;
    long         nr;
    long         a[6];
    int          on_errno;    /* under the filter: EPERM, or ENOSYS */
} sc_t;

extern char **environ;


/* ---- denied syscalls -------------------------------------------------- */


static void
sc_call_on(void *arg)
{
    long          ret;
    int           status;
    const sc_t   *sc;

    sc = arg;

    errno = 0;
    ret = syscall(sc->nr, sc->a[0], sc->a[1], sc->a[2], sc->a[3], sc->a[4],
                  sc->a[5]);

    if (ret == 0 && sc->nr == SYS_clone) {
        _exit(0);
    }

    if (ret > 0 && sc->nr == SYS_clone) {
        (void) waitpid((pid_t) ret, &status, 0);
    }

    if (!(ret == -1 && errno == sc->on_errno)) {
        fprintf(stderr, "%s under the filter: %ld, %s\n", sc->name, ret,
                strerror(errno));
    }

    CHECK(ret == -1 && errno == sc->on_errno);
}


static void
sc_call_off(void *arg)
{
    long          ret;
    int           status;
    const sc_t   *sc;

    sc = arg;

    errno = 0;
    ret = syscall(sc->nr, sc->a[0], sc->a[1], sc->a[2], sc->a[3], sc->a[4],
                  sc->a[5]);

    if (ret == 0 && sc->nr == SYS_clone) {
        _exit(0);
    }

    if (ret > 0 && sc->nr == SYS_clone) {
        (void) waitpid((pid_t) ret, &status, 0);
    }

    if (ret == -1 && errno == EPERM) {
        fprintf(stderr, "%s without the filter: EPERM too\n", sc->name);
    }

    CHECK(!(ret == -1 && errno == EPERM));
}


static void
test_denied_syscalls(void)
{
    size_t        i;
    sb_sandbox_t  on, off;
    char          sk[] = "x";

    /* run as root with no drop: only the filter can say EPERM */
    sc_t  calls[] = {
        { "ptrace", SYS_ptrace, { PTRACE_PEEKDATA, INT_MAX, 0, 0, 0 }, EPERM },
        { "process_vm_readv", SYS_process_vm_readv, { 0 }, EPERM },
        { "process_vm_writev", SYS_process_vm_writev, { 0 }, EPERM },
        { "pidfd_getfd", SYS_pidfd_getfd, { -1, -1, 0 }, EPERM },
        { "process_madvise", SYS_process_madvise, { -1, 0, 0, 0, 0, 0 },
          EPERM },
        { "kcmp", SYS_kcmp, { 0, 0, 0, -1, -1 }, EPERM },
        { "mount", SYS_mount, { (long) "none", (long) NONEXISTENT,
          (long) "tmpfs", 0, 0 }, EPERM },
        { "umount2", SYS_umount2, { (long) NONEXISTENT, 0 }, EPERM },
        { "pivot_root", SYS_pivot_root, { (long) NONEXISTENT,
          (long) NONEXISTENT }, EPERM },
        { "chroot", SYS_chroot, { (long) NONEXISTENT }, EPERM },
        { "open_tree", SYS_open_tree, { -1, (long) "", 0 }, EPERM },
        { "move_mount", SYS_move_mount, { -1, (long) "", -1, (long) "", 0 },
          EPERM },
        { "fsopen", SYS_fsopen, { (long) "pyrepl-no-such-fs", 0 }, EPERM },
        { "fsconfig", SYS_fsconfig, { -1, 0, 0, 0, 0 }, EPERM },
        { "fsmount", SYS_fsmount, { -1, 0, 0 }, EPERM },
        { "fspick", SYS_fspick, { -1, (long) "", 0 }, EPERM },
        { "mount_setattr", SYS_mount_setattr, { -1, (long) "", 0, 0, 0 },
          EPERM },
        { "unshare(CLONE_NEWUTS)", SYS_unshare, { CLONE_NEWUTS }, EPERM },
        { "unshare(CLONE_NEWUSER)", SYS_unshare, { CLONE_NEWUSER }, EPERM },
        { "unshare(CLONE_NEWNET|FILES)", SYS_unshare,
          { CLONE_NEWNET | CLONE_FILES }, EPERM },
        { "unshare(CLONE_NEWTIME)", SYS_unshare, { CLONE_NEWTIME }, EPERM },
        { "setns", SYS_setns, { -1, 0 }, EPERM },
        { "clone(CLONE_NEWUTS)", SYS_clone, { CLONE_NEWUTS | SIGCHLD },
          EPERM },
        { "clone(CLONE_NEWPID)", SYS_clone, { CLONE_NEWPID | SIGCHLD },
          EPERM },
        { "clone(CLONE_NEWCGROUP)", SYS_clone,
          { CLONE_NEWCGROUP | SIGCHLD }, EPERM },
        { "clone3", SYS_clone3, { 0, 0 }, ENOSYS },
        { "kexec_load", SYS_kexec_load, { 0, 0, 0, 0x7fff0000 }, EPERM },
        { "kexec_file_load", SYS_kexec_file_load, { -1, -1, 0, 0,
          0x7fff0000 }, EPERM },
        { "init_module", SYS_init_module, { 0, 0, (long) "" }, EPERM },
        { "finit_module", SYS_finit_module, { -1, (long) "", 0 }, EPERM },
        { "delete_module", SYS_delete_module, { (long) "pyrepl_no_such",
          O_NONBLOCK }, EPERM },
        { "bpf", SYS_bpf, { -1, 0, 0 }, EPERM },
        { "perf_event_open", SYS_perf_event_open, { 0, 0, -1, -1, 0 },
          EPERM },
        { "keyctl", SYS_keyctl, { -1 }, EPERM },
        { "add_key", SYS_add_key, { 0, 0, 0, 0, 0 }, EPERM },
        { "request_key", SYS_request_key, { 0, 0, 0, 0 }, EPERM },
        { "userfaultfd", SYS_userfaultfd, { -1 }, EPERM },
        { "io_uring_setup", SYS_io_uring_setup, { 0, 0 }, EPERM },
        { "io_uring_enter", SYS_io_uring_enter, { -1, 0, 0, 0, 0, 0 },
          EPERM },
        { "io_uring_register", SYS_io_uring_register, { -1, 0, 0, 0 },
          EPERM },
        { "io_setup", SYS_io_setup, { 1, 0 }, EPERM },
        { "uselib", SYS_uselib, { (long) NONEXISTENT }, EPERM },
        { "lookup_dcookie", SYS_lookup_dcookie, { 0, 0, 0 }, EPERM },
        { "quotactl", SYS_quotactl, { 0, 0, 0, 0 }, EPERM },
        { "open_by_handle_at", SYS_open_by_handle_at, { -1, 0, 0 }, EPERM },
        { "name_to_handle_at", SYS_name_to_handle_at, { -100,
          (long) NONEXISTENT, 0, 0, 0 }, EPERM },
        { "reboot", SYS_reboot, { 0, 0, 0, 0 }, EPERM },
        { "swapon", SYS_swapon, { (long) NONEXISTENT, 0 }, EPERM },
        { "swapoff", SYS_swapoff, { (long) NONEXISTENT }, EPERM },
        { "settimeofday", SYS_settimeofday, { 0, 0 }, EPERM },
        { "clock_settime", SYS_clock_settime, { -1, 0 }, EPERM },
        { "clock_adjtime", SYS_clock_adjtime, { -1, 0 }, EPERM },
        { "adjtimex", SYS_adjtimex, { 0 }, EPERM },
        { "acct", SYS_acct, { (long) NONEXISTENT }, EPERM },
        { "iopl", SYS_iopl, { 4 }, EPERM },
        { "ioperm", SYS_ioperm, { 65536, 1, 1 }, EPERM },
        { "vhangup", SYS_vhangup, { 0 }, EPERM },
        { "syslog", SYS_syslog, { 10, 0, 0 }, EPERM },
        { "personality(ADDR_NO_RANDOMIZE)", SYS_personality,
          { ADDR_NO_RANDOMIZE }, EPERM },
        { "personality(PER_LINUX32)", SYS_personality, { PER_LINUX32 },
          EPERM },
        { "personality(0x80000000)", SYS_personality, { 0x80000000L },
          EPERM },
        { "personality(0x7fffffff)", SYS_personality, { 0x7fffffffL },
          EPERM },
        { "ioctl(TIOCSTI)", SYS_ioctl, { -1, TIOCSTI, (long) sk }, EPERM },
        { "ioctl(TIOCSTI, high bits)", SYS_ioctl,
          { -1, (long) (0x100000000UL | TIOCSTI), (long) sk }, EPERM },
        { "ioctl(TIOCLINUX)", SYS_ioctl, { -1, TIOCLINUX, (long) sk },
          EPERM },
    };

    /* the pid argument of process_vm_*: ourselves, no iovecs */
    calls[1].a[0] = getpid();
    calls[2].a[0] = getpid();
    calls[5].a[0] = getpid();
    calls[5].a[1] = getpid();

    sb_root(&on, SB_SANDBOX_SECCOMP_ON, 0);
    sb_root(&off, SB_SANDBOX_SECCOMP_OFF, 0);

    for (i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
        child_ok(&on, sc_call_on, &calls[i]);
        child_ok(&off, sc_call_off, &calls[i]);
    }
}


/* What the interpreter and its children need keeps working. */
static void
allowed_calls(void *arg)
{
    int    p[2], status;
    long   ret;
    pid_t  pid;

    /* the I/O thread's unshare, fork through clone, personality query */
    CHECK(syscall(SYS_unshare, CLONE_FILES) == 0);
    CHECK(syscall(SYS_unshare, CLONE_FS | CLONE_SYSVSEM) == 0);
    CHECK(syscall(SYS_personality, 0xffffffffUL) != -1);
    CHECK(syscall(SYS_personality, 0) != -1);

    ret = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (ret == 0) {
        _exit(7);
    }
    CHECK(ret > 0 && waitpid((pid_t) ret, &status, 0) == ret
          && WIFEXITED(status) && WEXITSTATUS(status) == 7);

    pid = fork();
    if (pid == 0) {
        _exit(8);
    }
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid
          && WIFEXITED(status) && WEXITSTATUS(status) == 8);

    CHECK(pipe(p) == 0 && ioctl(p[0], FIONREAD, &status) == 0
          && status == 0);
    (void) close(p[0]);
    (void) close(p[1]);
}


static void *
thread_main(void *arg)
{
    *(int *) arg = 42;
    return NULL;
}


static void
threads_and_spawn(void *arg)
{
    int        v, status;
    pid_t      pid;
    pthread_t  t;
    char      *argv[] = { "true", NULL };

    v = 0;
    CHECK(pthread_create(&t, NULL, thread_main, &v) == 0
          && pthread_join(t, NULL) == 0 && v == 42);

    /* glibc tries clone3 first, then falls back to clone */
    CHECK(posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ) == 0
          && waitpid(pid, &status, 0) == pid && WIFEXITED(status)
          && WEXITSTATUS(status) == 0);
}


/* A real interpreter under the full sandbox: threads, subprocess, fork. */
static void
python_smoke(void *arg)
{
    int    status;
    pid_t  pid;
    char  *argv[] = { "python3", "-I", "-c", (char *) arg, NULL };

    CHECK(posix_spawn(&pid, "/usr/bin/python3", NULL, NULL, argv, environ)
          == 0
          && waitpid(pid, &status, 0) == pid && WIFEXITED(status)
          && WEXITSTATUS(status) == 0);
}


static void
test_allowed(void)
{
    sb_sandbox_t  sb;

    static char  script[] =
        "import errno, os, socket, subprocess, threading\n"
        "assert subprocess.run(['true']).returncode == 0\n"
        "out = subprocess.run(['sh', '-c', 'echo hi'], capture_output=True)\n"
        "assert out.stdout == b'hi\\n'\n"
        "r = []\n"
        "ts = [threading.Thread(target=r.append, args=(i,))\n"
        "      for i in range(8)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "assert sorted(r) == list(range(8))\n"
        "pid = os.fork()\n"
        "if pid == 0: os._exit(5)\n"
        "assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 5\n"
        "socket.socketpair()[0].close()\n"
        "for fam in (socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK):\n"
        "    try:\n"
        "        socket.socket(fam); raise SystemExit('socket allowed')\n"
        "    except PermissionError: pass\n"
        "open('f', 'w').write('x'); assert open('f').read() == 'x'\n"
        "os.unlink('f')\n";

    sb_root(&sb, SB_SANDBOX_SECCOMP_ON, 0);
    child_ok(&sb, allowed_calls, NULL);
    child_ok(&sb, threads_and_spawn, NULL);

    sb_nobody(&sb, SB_SANDBOX_SECCOMP_ON, 0);
    child_ok(&sb, allowed_calls, NULL);
    child_ok(&sb, threads_and_spawn, NULL);

    if (access("/usr/bin/python3", X_OK) == 0) {
        child_ok(&sb, python_smoke, script);

    } else {
        printf("skipped: no /usr/bin/python3\n");
    }
}


/* ---- sockets ---------------------------------------------------------- */


typedef struct {
    long  domain;
    long  type;
    int   allowed;
    int   pair;       /* socketpair instead of socket */
    int   protocol;
} sock_t;


static void
sock_try(void *arg)
{
    int            sv[2];
    long           fd;
    const sock_t  *s;

    s = arg;

    errno = 0;

    if (s->pair) {
        fd = syscall(SYS_socketpair, s->domain, s->type, 0, sv);

    } else {
        fd = syscall(SYS_socket, s->domain, s->type, s->protocol);
    }

    if (s->allowed) {
        if (fd == -1) {
            fprintf(stderr, "socket%s(%ld, %#lx): %s\n",
                    s->pair ? "pair" : "", s->domain, s->type,
                    strerror(errno));
        }

        CHECK(fd != -1);

    } else {
        if (!(fd == -1 && errno == EPERM)) {
            fprintf(stderr, "socket%s(%ld, %#lx) not denied: %ld %s\n",
                    s->pair ? "pair" : "", s->domain, s->type, fd,
                    strerror(errno));
        }

        CHECK(fd == -1 && errno == EPERM);
    }
}


static void
test_sockets(void)
{
    size_t        i;
    sb_sandbox_t  sb;

    static const sock_t  off_net[] = {
        { AF_UNIX, SOCK_STREAM, 1, 0, 0 },
        { AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 1, 0, 0 },
        { AF_UNIX, SOCK_STREAM, 1, 1, 0 },
        { AF_INET, SOCK_STREAM, 0, 0, 0 },
        { AF_INET, SOCK_DGRAM, 0, 0, 0 },
        { AF_INET6, SOCK_STREAM, 0, 0, 0 },
        { AF_NETLINK, SOCK_RAW, 0, 0, 0 },
        { AF_PACKET, SOCK_RAW, 0, 0, 0 },
        { AF_INET, SOCK_STREAM, 0, 1, 0 },
        { 0x100000000L | AF_UNIX, SOCK_STREAM, 0, 0, 0 },
    };

    static const sock_t  on_net[] = {
        { AF_UNIX, SOCK_STREAM, 1, 0, 0 },
        { AF_UNIX, SOCK_STREAM, 1, 1, 0 },
        { AF_INET, SOCK_STREAM, 1, 0, 0 },
        { AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 1, 0, 0 },
        { AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 1, 0, 0 },
        { AF_INET, SOCK_RAW, 0, 0, IPPROTO_ICMP },
        { AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, 0,
          IPPROTO_ICMP },
        { AF_INET6, SOCK_RAW, 0, 0, IPPROTO_ICMPV6 },
        { AF_INET6, SOCK_RAW | SOCK_CLOEXEC, 0, 0, IPPROTO_ICMPV6 },
        { AF_INET, SOCK_PACKET, 0, 0, 0 },
        { AF_INET, 0x100000000L | SOCK_RAW, 0, 0, 0 },
        { AF_NETLINK, SOCK_RAW, 0, 0, 0 },
        { AF_NETLINK, SOCK_DGRAM, 0, 0, 0 },
        { AF_PACKET, SOCK_RAW, 0, 0, 0 },
        { AF_PACKET, SOCK_DGRAM, 0, 0, 0 },
        { AF_UNSPEC, SOCK_STREAM, 0, 0, 0 },
        { 3, SOCK_STREAM, 0, 0, 0 },
        { 9, SOCK_STREAM, 0, 0, 0 },
        { 40, SOCK_STREAM, 0, 0, 0 },         /* AF_VSOCK */
        { 0x100000000L | AF_INET, SOCK_STREAM, 0, 0, 0 },
        { AF_INET, SOCK_STREAM, 0, 1, 0 },
    };

    /* without the filter root may open raw, netlink and packet sockets */
    static const sock_t  unfiltered[] = {
        { AF_INET, SOCK_RAW | SOCK_CLOEXEC, 1, 0, IPPROTO_ICMP },
        { AF_INET6, SOCK_RAW, 1, 0, IPPROTO_ICMPV6 },
        { AF_NETLINK, SOCK_RAW, 1, 0, 0 },
        { AF_PACKET, SOCK_RAW, 1, 0, 0 },
        { AF_INET, SOCK_STREAM, 1, 0, 0 },
    };

    sb_root(&sb, SB_SANDBOX_SECCOMP_ON, 0);
    for (i = 0; i < sizeof(off_net) / sizeof(off_net[0]); i++) {
        child_ok(&sb, sock_try, (void *) &off_net[i]);
    }

    sb_root(&sb, SB_SANDBOX_SECCOMP_ON, 1);
    for (i = 0; i < sizeof(on_net) / sizeof(on_net[0]); i++) {
        child_ok(&sb, sock_try, (void *) &on_net[i]);
    }

    sb_root(&sb, SB_SANDBOX_SECCOMP_OFF, 0);
    for (i = 0; i < sizeof(unfiltered) / sizeof(unfiltered[0]); i++) {
        child_ok(&sb, sock_try, (void *) &unfiltered[i]);
    }

    /* the same with the drop to nobody */
    sb_nobody(&sb, SB_SANDBOX_SECCOMP_ON, 1);
    child_ok(&sb, sock_try, (void *) &on_net[2]);
    child_ok(&sb, sock_try, (void *) &on_net[11]);

    sb_nobody(&sb, SB_SANDBOX_SECCOMP_ON, 0);
    child_ok(&sb, sock_try, (void *) &off_net[0]);
    child_ok(&sb, sock_try, (void *) &off_net[3]);
}


/* ---- 32-bit syscalls, log mode, TSYNC --------------------------------- */


#if defined(__x86_64__)

static void
int80_getpid(void *arg)
{
    long  ret;

    /* __NR_getpid is 20 in the i386 table */
    __asm__ volatile ("int $0x80" : "=a" (ret) : "a" (20L) : "memory");

    CHECK(ret == getpid());
}


/*
 * Whether this kernel takes int 0x80 at all: without IA-32 emulation
 * (CONFIG_IA32_EMULATION off, or ia32_emulation=0 at boot) the call
 * faults (SIGSEGV) before any filter sees it.
 */
static int
int80_available(void)
{
    int    status;
    long   ret;
    pid_t  pid;

    fflush(stdout);
    fflush(stderr);

    pid = fork();
    if (pid == -1) {
        perror("fork");
        exit(2);
    }

    if (pid == 0) {
        __asm__ volatile ("int $0x80" : "=a" (ret) : "a" (20L) : "memory");
        _exit(ret == getpid() ? 0 : 1);
    }

    if (waitpid(pid, &status, 0) != pid) {
        perror("waitpid");
        exit(2);
    }

    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}


static void
x32_getpid(void *arg)
{
    long  ret;

    ret = syscall(X32_BIT | SYS_getpid);
    *(long *) arg = ret;
    CHECK(ret == -1 && errno == ENOSYS);
}

#endif


static void
test_other_abis(void)
{
#if defined(__x86_64__)
    int           status;
    long          ret;
    sb_sandbox_t  sb;

    if (int80_available()) {
        sb_root(&sb, SB_SANDBOX_SECCOMP_OFF, 0);
        child_ok(&sb, int80_getpid, NULL);

        sb_root(&sb, SB_SANDBOX_SECCOMP_LOG, 0);
        child_ok(&sb, int80_getpid, NULL);

        sb_nobody(&sb, SB_SANDBOX_SECCOMP_ON, 0);
        status = child(&sb, int80_getpid, NULL);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS);

    } else {
        printf("skipped: int 0x80 tests: this kernel has no IA-32 "
               "emulation (the call faults with no filter at all)\n");
    }

    /* x32: ENOSYS without x32 support in the kernel, else killed */
    sb_root(&sb, SB_SANDBOX_SECCOMP_ON, 0);
    status = child(&sb, x32_getpid, &ret);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS);
#else
    printf("skipped: 32-bit syscall tests are x86_64 only\n");
#endif
}


static void
log_mode(void *arg)
{
    int   fd;
    long  ret;

    CHECK(syscall(SYS_unshare, CLONE_NEWUTS) == 0);

    fd = socket(AF_NETLINK, SOCK_RAW, 0);
    CHECK(fd >= 0);
    (void) close(fd);

    fd = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    CHECK(fd >= 0);
    (void) close(fd);

    /* clone3 reaches the kernel: EINVAL for a zero size, not ENOSYS */
    ret = syscall(SYS_clone3, 0, 0);
    CHECK(ret == -1 && errno == EINVAL);

    CHECK(syscall(SYS_personality, ADDR_NO_RANDOMIZE) != -1);
    CHECK(seccomp_status() == 2);
}


static pthread_barrier_t  tsync_barrier;


static void *
tsync_thread(void *arg)
{
    int  *res;

    res = arg;

    (void) pthread_barrier_wait(&tsync_barrier);   /* before apply */
    (void) pthread_barrier_wait(&tsync_barrier);   /* after apply */

    errno = 0;
    res[0] = syscall(SYS_unshare, CLONE_NEWUTS) == -1 && errno == EPERM;
    res[1] = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
    res[2] = seccomp_status();

    return NULL;
}


/* A thread that exists before the apply gets the filter too. */
static void
tsync(void *arg)
{
    int           res[3];
    char          err[256];
    pthread_t     t;
    sb_sandbox_t  sb;

    CHECK(pthread_barrier_init(&tsync_barrier, NULL, 2) == 0);
    CHECK(pthread_create(&t, NULL, tsync_thread, res) == 0);
    (void) pthread_barrier_wait(&tsync_barrier);

    sb_nobody(&sb, SB_SANDBOX_SECCOMP_ON, 0);
    CHECK(sb_sandbox_apply(&sb, err, sizeof(err)) == 0);

    (void) pthread_barrier_wait(&tsync_barrier);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(res[0] == 1 && res[1] == 1 && res[2] == 2);
}


static void
test_modes(void)
{
    sb_sandbox_t  sb;

    sb_root(&sb, SB_SANDBOX_SECCOMP_LOG, 0);
    child_ok(&sb, log_mode, NULL);

    child_ok(NULL, tsync, NULL);
}


/* ---- cost ------------------------------------------------------------- */


static int
cmp_long(const void *a, const void *b)
{
    long  x, y;

    x = *(const long *) a;
    y = *(const long *) b;

    return (x > y) - (x < y);
}


static long
now_ns(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}


/* Median wall time of sb_sandbox_apply() in BENCH_FORKS fresh children. */
static long
bench(const sb_sandbox_t *sb)
{
    int    i, p[2], status, bad;
    long   t0, dt, samples[BENCH_FORKS];
    char   err[256];
    pid_t  pid;

    bad = 0;

    for (i = 0; i < BENCH_FORKS; i++) {
        if (pipe(p) == -1) {
            perror("pipe");
            exit(2);
        }

        pid = fork();

        if (pid == 0) {
            t0 = now_ns();
            dt = sb_sandbox_apply(sb, err, sizeof(err)) == 0
                 ? now_ns() - t0 : -1;
            (void) write(p[1], &dt, sizeof(dt));
            _exit(0);
        }

        (void) close(p[1]);
        if (read(p[0], &samples[i], sizeof(long)) != sizeof(long)) {
            samples[i] = -1;
        }
        (void) close(p[0]);
        (void) waitpid(pid, &status, 0);
        bad += samples[i] < 0;
    }

    CHECK(bad == 0);

    qsort(samples, BENCH_FORKS, sizeof(long), cmp_long);

    return samples[BENCH_FORKS / 2];
}


/* ns per call of getppid() (no rule) and ioctl() (has rules) */
static void
syscall_cost(void *arg)
{
    int    i, fd, n, p[2];
    long   t0, *res;

    res = arg;
    if (pipe(p) == -1) {
        return;
    }
    fd = p[0];

    t0 = now_ns();
    for (i = 0; i < 200000; i++) {
        (void) syscall(SYS_getppid);
    }
    res[0] = (now_ns() - t0) / 200000;

    t0 = now_ns();
    for (i = 0; i < 200000; i++) {
        (void) ioctl(fd, FIONREAD, &n);
    }
    res[1] = (now_ns() - t0) / 200000;

    (void) close(p[0]);
    (void) close(p[1]);
}


/* Run last: sb_sandbox_prepare() changes what later children inherit. */
static void
test_cost(void)
{
    long          cold, warm, off, *shared;
    char          err[256];
    sb_sandbox_t  sb;

    sb_nobody(&sb, SB_SANDBOX_SECCOMP_ON, 0);
    cold = bench(&sb);

    CHECK(sb_sandbox_prepare(&sb, err, sizeof(err)) == 0);
    warm = bench(&sb);

    sb.seccomp = SB_SANDBOX_SECCOMP_OFF;
    off = bench(&sb);

    printf("sb_sandbox_apply, median of %d forks: %ld us with seccomp "
           "(%ld us prepared), %ld us without\n", BENCH_FORKS, cold / 1000,
           warm / 1000, off / 1000);

    /* the prepared program is the same policy */
    test_sockets();

    shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) {
        return;
    }

    child_ok(&sb, syscall_cost, shared);
    sb.seccomp = SB_SANDBOX_SECCOMP_ON;
    child_ok(&sb, syscall_cost, shared + 2);

    printf("per syscall: getppid %ld ns -> %ld ns, ioctl %ld ns -> %ld ns "
           "(without -> with the filter)\n", shared[0], shared[2], shared[1],
           shared[3]);

    (void) munmap(shared, 4096);
}


int
main(void)
{
    int  rc;

    rc = sb_test_begin("test_seccomp");
    if (rc != 0) {
        return rc == 1 ? 0 : 1;
    }

    test_denied_syscalls();
    test_allowed();
    test_sockets();
    test_other_abis();
    test_modes();
    test_cost();

    return sb_test_end();
}
