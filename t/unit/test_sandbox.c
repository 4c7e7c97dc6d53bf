/*
 * test_sandbox.c: unit tests of the confinement that sb_sandbox_apply()
 * (worker/sandbox/sb_sandbox.c) puts around the seccomp filter: the
 * network namespace of a session with network off, the uid drop,
 * no_new_privs and the working directory, dumpable against a peer of the
 * same uid, rlimits and that they bite, and the argument errors of
 * sb_sandbox_apply().  The filter itself is test_seccomp.c's.  Each case
 * runs in a child (sandbox_child.h).  Must run as root; prints "N passed,
 * N failed".
 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox_child.h"
#include "sb_sandbox.h"
#include "unit.h"


/* under AddressSanitizer the data limit is not set: see limits() */
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


/* ---- the network namespace -------------------------------------------- */


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


int
main(void)
{
    int  rc;

    rc = sb_test_begin("test_sandbox");
    if (rc != 0) {
        return rc == 1 ? 0 : 1;
    }

    test_netns();
    test_identity();
    test_dumpable_peer();
    test_limits();
    test_errors();

    return sb_test_end();
}
