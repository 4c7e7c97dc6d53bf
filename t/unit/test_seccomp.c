/*
 * test_sandbox.c: unit tests of worker/sb_sandbox.c.  Every case forks a
 * child that applies a sandbox and then tries something; the child's
 * CHECK counts travel back over a pipe.  Denied syscalls are tried with
 * harmless arguments, once under the filter (EPERM expected) and once
 * without it as root (anything but EPERM, so that the EPERM is the
 * filter's).  Also: socket families, rlimits that bite, the uid drop,
 * no_new_privs, dumpable, 32-bit syscalls, "log" mode, TSYNC, threads and
 * subprocesses under the filter, argument errors, and the cost of
 * sb_sandbox_apply().  Must run as root; prints "N passed, N failed".
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sched.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sb_sandbox.h"
#include "unit.h"


#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN  1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN  1
#endif
#endif
#ifndef TEST_ASAN
#define TEST_ASAN  0
#endif


#define NONEXISTENT   "/nonexistent/pyrepl-sandbox-test"
#define BENCH_FORKS   200
#define X32_BIT       0x40000000L


/* one denied syscall and harmless arguments for it */
typedef struct {
    const char  *name;
    long         nr;
    long         a[6];
    int          on_errno;    /* under the filter: EPERM, or ENOSYS */
} sc_t;

typedef void (*child_fn)(void *arg);

static uid_t  nobody_uid;
static gid_t  nobody_gid;
static char   workdir[64];
extern char **environ;


/* ---- harness ---------------------------------------------------------- */


/*
 * Fork; the child applies sb (when not NULL), runs fn and reports its
 * CHECK counts.  Returns the child's wait status.  A child that dies
 * before reporting adds nothing: the caller looks at the status.
 */
static int
child(const sb_sandbox_t *sb, child_fn fn, void *arg)
{
    int    p[2], status, counts[2];
    char   err[256];
    pid_t  pid;

    if (pipe(p) == -1) {
        perror("pipe");
        exit(2);
    }

    fflush(stdout);
    fflush(stderr);

    pid = fork();
    if (pid == -1) {
        perror("fork");
        exit(2);
    }

    if (pid == 0) {
        (void) close(p[0]);
        (void) setsid();
        passed = 0;
        failed = 0;

        if (sb != NULL && sb_sandbox_apply(sb, err, sizeof(err)) != 0) {
            fprintf(stderr, "sb_sandbox_apply: %s\n", err);
            failed++;

        } else {
            fn(arg);
        }

        counts[0] = passed;
        counts[1] = failed;
        (void) write(p[1], counts, sizeof(counts));
        _exit(0);
    }

    (void) close(p[1]);

    if (read(p[0], counts, sizeof(counts)) == sizeof(counts)) {
        passed += counts[0];
        failed += counts[1];
    }

    (void) close(p[0]);

    while (waitpid(pid, &status, 0) == -1) {
        if (errno != EINTR) {
            perror("waitpid");
            exit(2);
        }
    }

    return status;
}


/* Run fn in a child; it must report and exit 0. */
static void
child_ok(const sb_sandbox_t *sb, child_fn fn, void *arg)
{
    int  status;

    status = child(sb, fn, arg);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}


static void
sb_root(sb_sandbox_t *sb, int mode, int network)
{
    sb_sandbox_init(sb);
    sb->seccomp = mode;
    sb->network = network;
}


static void
sb_nobody(sb_sandbox_t *sb, int mode, int network)
{
    sb_root(sb, mode, network);
    sb->uid = nobody_uid;
    sb->gid = nobody_gid;
    sb->workdir = workdir;
}


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


/*
 * Network off in a namespace of its own: inet sockets open, reach the
 * loopback and nothing else; raw ones stay denied.
 */
static void
netns_try(void *arg)
{
    int                 l, c, a;
    socklen_t           len;
    struct sockaddr_in  sin;

    l = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(l != -1);

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(sin);

    CHECK(bind(l, (struct sockaddr *) &sin, sizeof(sin)) == 0
          && listen(l, 1) == 0
          && getsockname(l, (struct sockaddr *) &sin, &len) == 0);

    c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(c != -1 && connect(c, (struct sockaddr *) &sin, sizeof(sin)) == 0);

    a = accept(l, NULL, NULL);
    CHECK(a != -1);

    /* TEST-NET-1: no route out of the namespace */
    sin.sin_addr.s_addr = htonl(0xc0000201);
    sin.sin_port = htons(80);
    close(c);
    c = socket(AF_INET, SOCK_STREAM, 0);
    errno = 0;
    CHECK(connect(c, (struct sockaddr *) &sin, sizeof(sin)) == -1
          && errno == ENETUNREACH);

    errno = 0;
    CHECK(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP) == -1 && errno == EPERM);

    (void) close(a);
    (void) close(c);
    (void) close(l);
}


static void
test_netns(void)
{
    int           status;
    pid_t         pid;
    sb_sandbox_t  sb;

    /* does this kernel let root make one at all? */
    pid = fork();
    if (pid == 0) {
        _exit(unshare(CLONE_NEWNET) == 0 ? 0 : 1);
    }

    if (pid == -1 || waitpid(pid, &status, 0) != pid
        || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    {
        printf("test_sandbox: no network namespaces here, netns skipped\n");
        return;
    }

    sb_nobody(&sb, SB_SANDBOX_SECCOMP_ON, 0);
    sb.netns = 1;
    child_ok(&sb, netns_try, NULL);
}


/* ---- identity, prctl, workdir ----------------------------------------- */


static int
seccomp_status(void)
{
    int    mode;
    FILE  *f;
    char   line[256];

    mode = -1;
    f = fopen("/proc/self/status", "r");

    if (f == NULL) {
        return -1;
    }

    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "Seccomp: %d", &mode) == 1) {
            break;
        }
    }

    (void) fclose(f);

    return mode;
}


static void
identity(void *arg)
{
    int    n;
    uid_t  r, e, s;
    gid_t  rg, eg, sg, groups[4];
    char   cwd[PATH_MAX];

    CHECK(getresuid(&r, &e, &s) == 0 && r == nobody_uid && e == nobody_uid
          && s == nobody_uid);
    CHECK(getresgid(&rg, &eg, &sg) == 0 && rg == nobody_gid
          && eg == nobody_gid && sg == nobody_gid);

    n = getgroups(4, groups);
    CHECK(n == 1 && groups[0] == nobody_gid);

    CHECK(setuid(0) == -1 && errno == EPERM);
    CHECK(setresuid(-1, 0, -1) == -1 && errno == EPERM);
    CHECK(setgid(0) == -1 && errno == EPERM);
    CHECK(geteuid() == nobody_uid);

    CHECK(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1);
    CHECK(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0);
    CHECK(getcwd(cwd, sizeof(cwd)) != NULL && strcmp(cwd, workdir) == 0);
    CHECK(seccomp_status() == *(int *) arg);

    /* the uid change cleared the parent-death signal set before */
    CHECK(prctl(PR_GET_PDEATHSIG, &n, 0, 0, 0) == 0 && n == 0);
}


static void
root_kept(void *arg)
{
    CHECK(geteuid() == 0);
    CHECK(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1);
    CHECK(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0);
    CHECK(seccomp_status() == 0);
}


/* Not root (nginx as a user): uid/gid are ignored, the rest applies. */
static void
not_root(void *arg)
{
    char          err[256];
    sb_sandbox_t  sb;

    CHECK(setresgid(nobody_gid, nobody_gid, nobody_gid) == 0
          && setresuid(nobody_uid, nobody_uid, nobody_uid) == 0);

    sb_nobody(&sb, SB_SANDBOX_SECCOMP_ON, 0);
    sb.uid = nobody_uid - 1;
    sb.gid = nobody_gid - 1;
    sb.memory = 512 * 1024 * 1024;

    if (sb_sandbox_apply(&sb, err, sizeof(err)) != 0) {
        fprintf(stderr, "sb_sandbox_apply as nobody: %s\n", err);
        failed++;
        return;
    }

    CHECK(geteuid() == nobody_uid && getuid() == nobody_uid);
    CHECK(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1);
    CHECK(seccomp_status() == 2);
    CHECK(syscall(SYS_unshare, CLONE_NEWUSER) == -1 && errno == EPERM);
}


static void
test_identity(void)
{
    int           mode_on, mode_off, fd;
    sb_sandbox_t  sb;

    mode_on = 2;    /* SECCOMP_MODE_FILTER */
    mode_off = 0;

    /* set before apply: identity() checks the uid change cleared it */
    (void) prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);

    sb_nobody(&sb, SB_SANDBOX_SECCOMP_ON, 0);
    child_ok(&sb, identity, &mode_on);

    sb_nobody(&sb, SB_SANDBOX_SECCOMP_OFF, 0);
    child_ok(&sb, identity, &mode_off);

    (void) prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);

    /* the working directory by descriptor, as the zygote gets it */
    fd = open(workdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(fd >= 0);
    sb_nobody(&sb, SB_SANDBOX_SECCOMP_ON, 0);
    sb.workdir = NULL;
    sb.workdir_fd = fd;
    child_ok(&sb, identity, &mode_on);
    (void) close(fd);

    sb_root(&sb, SB_SANDBOX_SECCOMP_OFF, 0);
    child_ok(&sb, root_kept, NULL);

    child_ok(NULL, not_root, NULL);
}


/*
 * Another process of the same uid against a sandboxed one: dumpable 0
 * keeps it from /proc/<pid>/mem and ptrace; the control case (dumpable
 * set back to 1) shows that the uid alone would not.
 */
static int
spy(pid_t target, int dumpable)
{
    int   fd;
    char  path[64];

    if (setresgid(nobody_gid, nobody_gid, nobody_gid) == -1
        || setresuid(nobody_uid, nobody_uid, nobody_uid) == -1)
    {
        return 10;
    }

    (void) snprintf(path, sizeof(path), "/proc/%d/mem", (int) target);
    fd = open(path, O_RDONLY);

    if (dumpable) {
        return fd >= 0 ? 0 : 11;
    }

    if (fd >= 0 || errno != EACCES) {
        return 12;
    }

    if (ptrace(PTRACE_ATTACH, target, 0, 0) != -1 || errno != EPERM) {
        return 13;
    }

    return 0;
}


static void
test_dumpable_peer(void)
{
    int           dumpable, in[2], out[2], status;
    char          c, err[256];
    pid_t         target, pid;
    sb_sandbox_t  sb;

    for (dumpable = 0; dumpable < 2; dumpable++) {
        CHECK(pipe(in) == 0 && pipe(out) == 0);
        fflush(stdout);

        target = fork();

        if (target == 0) {
            sb_nobody(&sb, SB_SANDBOX_SECCOMP_OFF, 0);
            if (sb_sandbox_apply(&sb, err, sizeof(err)) != 0) {
                _exit(1);
            }

            if (dumpable) {
                (void) prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
            }

            (void) close(in[1]);
            c = 'r';
            (void) write(out[1], &c, 1);
            (void) read(in[0], &c, 1);
            _exit(0);
        }

        (void) close(in[0]);
        (void) close(out[1]);
        CHECK(read(out[0], &c, 1) == 1 && c == 'r');

        pid = fork();
        if (pid == 0) {
            _exit(spy(target, dumpable));
        }

        status = -1;
        (void) waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "spy on a dumpable=%d session: status %#x\n",
                    dumpable, status);
        }
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

        (void) close(in[1]);
        (void) close(out[0]);
        CHECK(waitpid(target, &status, 0) == target && WIFEXITED(status)
              && WEXITSTATUS(status) == 0);
    }
}


/* ---- rlimits ---------------------------------------------------------- */


#define MIB  ((rlim_t) 1024 * 1024)


static int
limit_is(int resource, rlim_t soft, rlim_t hard)
{
    struct rlimit  rl;

    return getrlimit(resource, &rl) == 0 && rl.rlim_cur == soft
           && rl.rlim_max == hard;
}


#if !TEST_ASAN
static volatile size_t  big_size = 512 * MIB;
#endif


static void
limits(void *arg)
{
    int      fd, n;
    char    *big, *p;
    ssize_t  w;
    size_t   total;

#if TEST_ASAN
    /* sb_sandbox.c leaves RLIMIT_DATA alone under AddressSanitizer */
    CHECK(limit_is(RLIMIT_DATA, RLIM_INFINITY, RLIM_INFINITY));
#else
    CHECK(limit_is(RLIMIT_DATA, 256 * MIB, 256 * MIB));
#endif
    CHECK(limit_is(RLIMIT_CPU, 30, 31));
    CHECK(limit_is(RLIMIT_NOFILE, 64, 64));
    CHECK(limit_is(RLIMIT_FSIZE, MIB, MIB));
    CHECK(limit_is(RLIMIT_CORE, 0, 0));
    CHECK(limit_is(RLIMIT_NPROC, 1000, 1000));

#if !TEST_ASAN
    /* private writable memory: a 512 MiB allocation cannot succeed */
    p = malloc(big_size);
    CHECK(p == NULL);
    if (p != NULL) {
        memset(p, 1, big_size);
        free(p);
    }

    p = mmap(NULL, 512 * MIB, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p == MAP_FAILED && errno == ENOMEM);

    /* address space only reserved is no memory: it is allowed */
    p = mmap(NULL, 512 * MIB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    if (p != MAP_FAILED) {
        munmap(p, 512 * MIB);
    }
#else
    (void) p;
#endif

    /* file size: 2 MiB stop at 1 MiB, then EFBIG (SIGXFSZ ignored) */
    (void) signal(SIGXFSZ, SIG_IGN);
    big = calloc(1, 2 * MIB);
    fd = open("big", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(big != NULL && fd >= 0);

    total = 0;
    w = 0;

    while (big != NULL && fd >= 0 && total < 2 * MIB) {
        w = write(fd, big + total, 2 * MIB - total);
        if (w <= 0) {
            break;
        }
        total += w;
    }

    CHECK(total == MIB && w == -1 && errno == EFBIG);
    (void) close(fd);
    (void) unlink("big");
    free(big);

    /* descriptors: EMFILE below 64 */
    for (n = 0; n < 100; n++) {
        if (open("/dev/null", O_RDONLY) == -1) {
            break;
        }
    }

    CHECK(n < 64 && errno == EMFILE);
}


/* nproc 4 for a uid of its own: this process and 3 children, no more */
static void
nproc(void *arg)
{
    int    p[2], i, forked;
    char   c;
    pid_t  pid;

    CHECK(pipe(p) == 0);
    forked = 0;

    for (i = 0; i < 6; i++) {
        pid = fork();

        if (pid == 0) {
            (void) close(p[1]);
            (void) read(p[0], &c, 1);
            _exit(0);
        }

        if (pid == -1) {
            CHECK(errno == EAGAIN);
            break;
        }

        forked++;
    }

    CHECK(forked == 3);

    (void) close(p[1]);

    while (wait(NULL) > 0) {
        /* void */
    }
}


static void
spin(void *arg)
{
    volatile unsigned long  n;

    for (n = 0; ; n++) {
        /* void */
    }
}


static void
test_limits(void)
{
    int           status;
    uid_t         uid;
    sb_sandbox_t  sb;

    sb_nobody(&sb, SB_SANDBOX_SECCOMP_ON, 0);
    sb.memory = 256 * MIB;
    sb.cpu = 30;
    sb.nofile = 64;
    sb.fsize = MIB;
    sb.nproc = 1000;
    child_ok(&sb, limits, NULL);

    /* a uid nothing else runs as, so the count starts at this process */
    uid = 60000 + getpid() % 4000;
    sb_root(&sb, SB_SANDBOX_SECCOMP_ON, 0);
    sb.uid = uid;
    sb.gid = uid;
    sb.nproc = 4;
    child_ok(&sb, nproc, NULL);

    /* CPU: SIGXCPU at the soft limit */
    sb_nobody(&sb, SB_SANDBOX_SECCOMP_ON, 0);
    sb.cpu = 1;
    status = child(&sb, spin, NULL);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGXCPU);
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

    sb_root(&sb, SB_SANDBOX_SECCOMP_OFF, 0);
    child_ok(&sb, int80_getpid, NULL);

    sb_root(&sb, SB_SANDBOX_SECCOMP_LOG, 0);
    child_ok(&sb, int80_getpid, NULL);

    sb_nobody(&sb, SB_SANDBOX_SECCOMP_ON, 0);
    status = child(&sb, int80_getpid, NULL);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS);

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


/* ---- argument errors and API ------------------------------------------ */


static void
apply_fails(const sb_sandbox_t *sb, const char *expect)
{
    int    p[2], status, rc;
    char   err[256], buf[256];
    pid_t  pid;

    memset(buf, 0, sizeof(buf));
    CHECK(pipe(p) == 0);
    fflush(stdout);

    pid = fork();

    if (pid == 0) {
        rc = sb_sandbox_apply(sb, err, sizeof(err));
        if (rc == 0) {
            (void) strcpy(err, "(succeeded)");
        }
        (void) write(p[1], err, strlen(err));
        _exit(rc == -1 ? 0 : 1);
    }

    (void) close(p[1]);
    (void) read(p[0], buf, sizeof(buf) - 1);
    (void) close(p[0]);

    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status)
          && WEXITSTATUS(status) == 0);

    if (strstr(buf, expect) == NULL) {
        fprintf(stderr, "error \"%s\" lacks \"%s\"\n", buf, expect);
    }

    CHECK(strstr(buf, expect) != NULL);
}


static void
nothing(void *arg)
{
    CHECK(fcntl(*(int *) arg, F_GETFD) != -1);
}


static void
test_errors(void)
{
    int           keep[2], p[2];
    char          dir[64], msg[128];
    sb_sandbox_t  sb;

    CHECK(sb_sandbox_mode("off") == SB_SANDBOX_SECCOMP_OFF);
    CHECK(sb_sandbox_mode("on") == SB_SANDBOX_SECCOMP_ON);
    CHECK(sb_sandbox_mode("log") == SB_SANDBOX_SECCOMP_LOG);
    CHECK(sb_sandbox_mode("yes") == -1);

    sb_sandbox_init(&sb);
    CHECK(sb.uid == SB_SANDBOX_NO_ID && sb.workdir == NULL
          && sb.workdir_fd == -1 && sb.seccomp == SB_SANDBOX_SECCOMP_ON
          && sb.network == 0
          && sb.memory == SB_SANDBOX_MEMORY && sb.nproc == SB_SANDBOX_NPROC
          && sb.nofile == SB_SANDBOX_NOFILE && sb.nkeep_fds == 0);

    sb_nobody(&sb, 7, 0);
    apply_fails(&sb, "unknown seccomp mode 7");

    sb_nobody(&sb, SB_SANDBOX_SECCOMP_ON, 0);
    sb.gid = (gid_t) SB_SANDBOX_NO_ID;
    apply_fails(&sb, "together");

    sb_nobody(&sb, SB_SANDBOX_SECCOMP_ON, 0);
    sb.uid = 0;
    apply_fails(&sb, "root is no unprivileged user");

    CHECK(pipe(p) == 0);
    keep[0] = p[0];
    keep[1] = 1000;
    sb_nobody(&sb, SB_SANDBOX_SECCOMP_ON, 0);
    sb.keep_fds = keep;
    sb.nkeep_fds = 2;
    apply_fails(&sb, "descriptor 1000 to keep is not open");

    keep[1] = p[1];
    sb.nofile = p[1];
    apply_fails(&sb, "not below nofile");

    sb.nofile = 64;
    child_ok(&sb, nothing, &p[1]);
    (void) close(p[0]);
    (void) close(p[1]);

    /* working directory: missing, someone else's, too open */
    sb_nobody(&sb, SB_SANDBOX_SECCOMP_ON, 0);
    sb.workdir = NONEXISTENT;
    apply_fails(&sb, "chdir(\"" NONEXISTENT "\") failed: No such file");

    sb.workdir = NULL;
    sb.workdir_fd = 1000;
    apply_fails(&sb, "fchdir(1000) to \"(descriptor)\" failed: Bad file");
    sb.workdir_fd = -1;

    (void) strcpy(dir, "/tmp/pyrepl-sbtest-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    sb.workdir = dir;

    CHECK(chmod(dir, 0700) == 0);
    apply_fails(&sb, "Permission denied");

    CHECK(chmod(dir, 0711) == 0);
    (void) snprintf(msg, sizeof(msg),
                    "has owner 0, mode 0711; owner %lu, mode 0700 expected",
                    (unsigned long) nobody_uid);
    apply_fails(&sb, msg);

    CHECK(chown(dir, nobody_uid, nobody_gid) == 0);
    (void) snprintf(msg, sizeof(msg),
                    "has owner %lu, mode 0711; owner %lu, mode 0700",
                    (unsigned long) nobody_uid, (unsigned long) nobody_uid);
    apply_fails(&sb, msg);

    CHECK(chmod(dir, 0700) == 0);
    keep[0] = STDIN_FILENO;
    child_ok(&sb, nothing, &keep[0]);
    (void) rmdir(dir);

    /* no drop: the workdir must be the process's own */
    sb_root(&sb, SB_SANDBOX_SECCOMP_ON, 0);
    sb.workdir = workdir;
    (void) snprintf(msg, sizeof(msg),
                    "has owner %lu, mode 0700; owner 0, mode 0700 expected",
                    (unsigned long) nobody_uid);
    apply_fails(&sb, msg);
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
    struct passwd  *pw;

    if (geteuid() != 0) {
        printf("test_sandbox: must run as root, skipped\n");
        return 0;
    }

    pw = getpwnam("nobody");
    if (pw == NULL) {
        fprintf(stderr, "test_sandbox: no user \"nobody\"\n");
        return 1;
    }

    nobody_uid = pw->pw_uid;
    nobody_gid = pw->pw_gid;

    (void) strcpy(workdir, "/tmp/pyrepl-sandbox-XXXXXX");
    if (mkdtemp(workdir) == NULL
        || chown(workdir, nobody_uid, nobody_gid) == -1
        || chmod(workdir, 0700) == -1)
    {
        perror("workdir");
        return 1;
    }

    test_denied_syscalls();
    test_allowed();
    test_sockets();
    test_netns();
    test_identity();
    test_dumpable_peer();
    test_limits();
    test_other_abis();
    test_modes();
    test_errors();
    test_cost();

    (void) rmdir(workdir);

    printf("%d passed, %d failed\n", passed, failed);

    return failed ? 1 : 0;
}
