/*
 * sb_jail.c: the jail's namespaces and its init process; see sb_jail.h.
 * The root it shows is sb_jail_root.c's, its control group sb_cgroup.c's.
 *
 * The init (pid 1 of the session's pid namespace) is a fork of whatever
 * made the jail (the zygote, the supervisor), and never runs anything of
 * theirs again: once it has forked the session process it closes every
 * descriptor but its own two, drops to an identity no session has, and
 * waits.  It takes three kinds of events, from a signalfd and an eventfd:
 *
 *   SIGCHLD       reap every child that exited: user code's orphans (the
 *                 kernel makes them the init's), and the process that
 *                 serves the session, whose end is the session's end: the
 *                 init exits with its status, and the kernel kills what
 *                 is left of the namespace;
 *   the move      SIGRTMIN from outside the namespace (root: the
 *                 supervisor), carrying the pid of the process that
 *                 serves from now on (a transaction's snapshot); the one
 *                 that did is killed;
 *   out of memory (cgroup v1) the eventfd of the group's memory.oom_control:
 *                 SB_JAIL_OOM_GRACE_MS later (the kernel's own kill,
 *                 which the group counts, comes first), every process
 *                 of the namespace is killed, so the session ends
 *                 whichever process the kernel chose to kill (cgroup v2
 *                 does so itself, memory.oom.group).
 *
 * A pid namespace's init only gets the signals it handles or blocks: the
 * two it takes are blocked (signalfd), every other one is ignored, from
 * inside the namespace or out, except SIGKILL from outside, which ends
 * the session.
 */

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sb_jail.h"
#include "wk_time.h"


#define SB_JAIL_INIT_SIGFD  3
#define SB_JAIL_INIT_OOMFD  4

/* from the out-of-memory event to the end of the session (cgroup v1) */
#define SB_JAIL_OOM_GRACE_MS  100


/* sb_jail_root.c */
int sb_jail_root(const sb_jail_t *j, const sb_jail_id_t *id, int workdir_fd,
    char *err, size_t errlen);

static int sb_jail_keep_kill(void);
static int sb_jail_loopback(void);
static void sb_jail_serve(pid_t serving, int sigfd, int oomfd)
    __attribute__((noreturn));
static void sb_jail_exit(int status) __attribute__((noreturn));


void
sb_jail_init(sb_jail_t *j)
{
    memset(j, 0, sizeof(sb_jail_t));

    j->tmp_size = SB_JAIL_TMP_SIZE;
    j->limits.weight = SB_CGROUP_WEIGHT;
}


int
sb_jail_probe(char *err, size_t errlen)
{
    int    status;
    pid_t  pid;

    if (geteuid() != 0) {
        (void) snprintf(err, errlen, "it needs root");
        return -1;
    }

    pid = (pid_t) syscall(SYS_clone, CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC
                          | CLONE_NEWUTS | CLONE_NEWNET | SIGCHLD,
                          NULL, NULL, NULL, 0);

    if (pid == 0) {
        /* pid 1 of a new namespace, which can have a /proc of its own */
        _exit(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0
              && mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV
                       | MS_NOEXEC, NULL) == 0
              && getpid() == 1 ? 0 : 1);
    }

    if (pid == -1) {
        (void) snprintf(err, errlen, "clone() with new namespaces failed: %s",
                        strerror(errno));
        return -1;
    }

    while (waitpid(pid, &status, 0) == -1) {
        if (errno != EINTR) {
            (void) snprintf(err, errlen, "waitpid() failed: %s",
                            strerror(errno));
            return -1;
        }
    }

    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        (void) snprintf(err, errlen, "a new namespace cannot mount its /proc");
        return -1;
    }

    return 0;
}


pid_t
sb_jail_clone(const sb_jail_t *j)
{
    unsigned long  flags;

    flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS
            | SIGCHLD;

    if (j->netns) {
        flags |= CLONE_NEWNET;
    }

    return (pid_t) syscall(SYS_clone, flags, NULL, NULL, NULL, 0);
}


pid_t
sb_jail_host_pid(void)
{
    char     buf[32];
    ssize_t  n;

    /* the host's /proc, until the jail's root replaces it */
    n = readlink("/proc/self", buf, sizeof(buf) - 1);
    if (n <= 0) {
        return 0;
    }

    buf[n] = '\0';

    return (pid_t) strtol(buf, NULL, 10);
}


int
sb_jail_enter(const sb_jail_t *j, const sb_jail_id_t *id, int workdir_fd,
    char *err, size_t errlen)
{
    int               sigfd, oomfd, sig;
    pid_t             pid;
    sigset_t          take, old;
    struct sigaction  sa;

    oomfd = -1;

    if (j->cgroup.ndirs > 0
        && sb_cgroup_enter(&j->cgroup, id->pid, &j->limits, &oomfd, err,
                           errlen) != 0)
    {
        return -1;
    }

    if (sb_jail_root(j, id, workdir_fd, err, errlen) != 0) {
        return -1;
    }

    if (sethostname(SB_JAIL_HOSTNAME, sizeof(SB_JAIL_HOSTNAME) - 1) == -1) {
        (void) snprintf(err, errlen, "sethostname() failed: %s",
                        strerror(errno));
        return -1;
    }

    if (j->netns && sb_jail_loopback() != 0) {
        (void) snprintf(err, errlen, "bringing up the loopback failed: %s",
                        strerror(errno));
        return -1;
    }

    /* the init's events, taken before the fork so none is missed */
    (void) sigemptyset(&take);
    (void) sigaddset(&take, SIGCHLD);
    (void) sigaddset(&take, SB_JAIL_MOVE_SIGNAL);

    if (sigprocmask(SIG_BLOCK, &take, &old) == -1) {
        (void) snprintf(err, errlen, "sigprocmask() failed: %s",
                        strerror(errno));
        return -1;
    }

    pid = fork();

    if (pid == 0) {
        /* the session process: as it was, but in the jail */
        (void) sigprocmask(SIG_SETMASK, &old, NULL);

        if (oomfd != -1) {
            (void) close(oomfd);
        }

        return 0;
    }

    if (pid == -1) {
        (void) snprintf(err, errlen, "fork() of the session failed: %s",
                        strerror(errno));
        return -1;
    }

    sigfd = signalfd(-1, &take, SFD_CLOEXEC | SFD_NONBLOCK);

    if (sigfd == -1) {
        (void) kill(pid, SIGKILL);
        sb_jail_exit(EXIT_FAILURE);
    }

    /* nothing of the parent's: its two descriptors, low and alone */
    if (dup2(sigfd, SB_JAIL_INIT_SIGFD) == -1
        || (oomfd != -1 && dup2(oomfd, SB_JAIL_INIT_OOMFD) == -1))
    {
        (void) kill(pid, SIGKILL);
        sb_jail_exit(EXIT_FAILURE);
    }

    (void) syscall(SYS_close_range, oomfd != -1 ? SB_JAIL_INIT_OOMFD + 1
                                                : SB_JAIL_INIT_SIGFD + 1,
                   ~0U, 0);
    (void) syscall(SYS_close_range, 0, 2, 0);

    /*
     * Every signal ignored but those taken (SIGCHLD at its default, or
     * children would be reaped unseen): SIGKILL from outside ends it.
     */
    memset(&sa, 0, sizeof(sa));

    for (sig = 1; sig < NSIG; sig++) {
        sa.sa_handler = sigismember(&take, sig) ? SIG_DFL : SIG_IGN;
        (void) sigaction(sig, &sa, NULL);
    }

    /* nothing of its creator's command line (host paths) shows */
    (void) prctl(PR_SET_NAME, "pyrepl-init", 0, 0, 0);

    if (id->title != NULL && id->title_len >= sizeof("pyrepl-init")) {
        memset(id->title, 0, id->title_len);
        memcpy(id->title, "pyrepl-init", sizeof("pyrepl-init"));
    }

    if (setgroups(0, NULL) == -1
        || setresgid(id->init_gid, id->init_gid, id->init_gid) == -1
        || prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) == -1
        || setresuid(id->init_uid, id->init_uid, id->init_uid) == -1
        || sb_jail_keep_kill() == -1
        || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1
        || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1)
    {
        (void) kill(pid, SIGKILL);
        sb_jail_exit(EXIT_FAILURE);
    }

    sb_jail_serve(pid, SB_JAIL_INIT_SIGFD,
                  oomfd != -1 ? SB_JAIL_INIT_OOMFD : -1);
}


int
sb_jail_move(pid_t init, pid_t nspid)
{
    siginfo_t  si;

    memset(&si, 0, sizeof(si));
    si.si_signo = SB_JAIL_MOVE_SIGNAL;
    si.si_code = SI_QUEUE;
    si.si_pid = getpid();
    si.si_uid = getuid();
    si.si_value.sival_int = (int) nspid;

    return (int) syscall(SYS_rt_sigqueueinfo, init, SB_JAIL_MOVE_SIGNAL, &si);
}


/* The init's loop; see the top of the file. */
static void
sb_jail_serve(pid_t serving, int sigfd, int oomfd)
{
    int                      n, status, timeout;
    pid_t                    pid, old;
    int64_t                  oom_at;
    uint64_t                 v;
    struct pollfd            pfd[2];
    struct signalfd_siginfo  si;

    oom_at = 0;

    for ( ;; ) {
        pfd[0].fd = sigfd;
        pfd[0].events = POLLIN;
        pfd[1].fd = oomfd;
        pfd[1].events = POLLIN;

        timeout = -1;

        if (oom_at != 0) {
            timeout = (int) (oom_at - wk_msec());
            timeout = (timeout < 0) ? 0 : timeout;
        }

        n = poll(pfd, (oomfd != -1) ? 2 : 1, timeout);

        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }

            (void) kill(-1, SIGKILL);
            sb_jail_exit(EXIT_FAILURE);
        }

        if (oom_at != 0 && wk_msec() >= oom_at) {
            /* out of memory: the session ends, whoever was chosen */
            (void) kill(-1, SIGKILL);
            oom_at = 0;
        }

        if (oomfd != -1 && (pfd[1].revents & POLLIN)) {
            (void) read(oomfd, &v, sizeof(v));

            /*
             * The kernel notifies before its OOM killer runs, in the task
             * that ran out: killing everything at once would free the
             * memory first, the kill the group's counter tells the
             * supervisor about would not happen.  A moment later.
             */
            if (oom_at == 0) {
                oom_at = wk_msec() + SB_JAIL_OOM_GRACE_MS;
            }
        }

        while (read(sigfd, &si, sizeof(si)) == sizeof(si)) {
            if (si.ssi_signo != (uint32_t) SB_JAIL_MOVE_SIGNAL
                || si.ssi_code != SI_QUEUE || si.ssi_uid != 0)
            {
                continue;
            }

            old = serving;
            serving = (pid_t) si.ssi_int;

            if (old != serving) {
                (void) kill(old, SIGKILL);
            }
        }

        for ( ;; ) {
            pid = waitpid(-1, &status, WNOHANG);

            if (pid == serving) {
                sb_jail_exit(status);
            }

            if (pid == 0) {
                break;
            }

            if (pid == -1) {
                if (errno == EINTR) {
                    continue;
                }

                /* no child left: the process that served is gone too */
                sb_jail_exit(0);
            }
        }
    }
}


/*
 * Of root's capabilities the init keeps CAP_KILL alone: the processes it
 * kills (the one a move replaces, all of them at an out of memory) run
 * as the session's uid, not its own.
 */
static int
sb_jail_keep_kill(void)
{
    struct __user_cap_header_struct  hdr;
    struct __user_cap_data_struct    data[2];

    memset(&hdr, 0, sizeof(hdr));
    memset(data, 0, sizeof(data));

    hdr.version = _LINUX_CAPABILITY_VERSION_3;
    data[0].effective = 1U << CAP_KILL;
    data[0].permitted = 1U << CAP_KILL;

    if (syscall(SYS_capset, &hdr, data) == -1) {
        return -1;
    }

    return prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
}


/* Exit with the wait status of the serving process, as a shell would. */
static void
sb_jail_exit(int status)
{
    if (WIFSIGNALED(status)) {
        _exit(128 + WTERMSIG(status));
    }

    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : EXIT_FAILURE);
}


/* "lo" up, in this process's network namespace. */
static int
sb_jail_loopback(void)
{
    int           fd, rc, err;
    struct ifreq  ifr;

    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        return -1;
    }

    memset(&ifr, 0, sizeof(ifr));
    (void) strcpy(ifr.ifr_name, "lo");

    rc = ioctl(fd, SIOCGIFFLAGS, &ifr);

    if (rc == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
    }

    err = errno;
    (void) close(fd);
    errno = err;

    return rc;
}
