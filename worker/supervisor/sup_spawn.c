/*
 * sup_spawn.c: starting one session process, or the zygote, by fork and
 * exec.  A session's child starts a session of its own (setsid: its own
 * process group, so a kill takes along whatever it spawns, and a session
 * id that marks what it leaves behind, see sup_sweep() in
 * sup_lifecycle.c); the zygote gets its own process group.  Either gets a
 * clean signal state, one descriptor as fd 3, the warm-up code as fd 4
 * (Python, when there is warm-up code), /dev/null as stdin, the keeper's
 * log relay as stdout and stderr (--log-fd; without it the supervisor's
 * own), a working directory, and no other descriptor; then it execs the
 * session binary with the supervisor's environment, which is the
 * sessions' (nginx made it: PATH, LANG, TMPDIR and pyrepl_env):
 *
 *   pyrepl-python --listen-fd 3 --max-frame N [--warmup-fd 4]
 *       [--alive-fd 5]
 *   pyrepl-bash --listen-fd 3 --max-frame N [--alive-fd 5]
 *   pyrepl-python --zygote --control-fd 3 --workdir WORKDIR --max-frame N
 *       [--warmup-fd 4] [--alive-fd 5]
 *
 * --alive-fd is the read end of nginx's "alive" pipe (the supervisor's
 * --parent-fd): a session process ends by itself when every nginx process
 * is gone, so that none outlives nginx even when its keeper and its
 * supervisor were killed together.
 *
 * Nothing private is on a command line, which every process can read:
 * no session id (a session's logs name it by its directory), no warm-up
 * code.
 *
 * A session's fd 3 is a blocking listening socket; the session process
 * makes it non-blocking itself if it wants.  The zygote's is its end of
 * the channel to the supervisor (wk_zygote.h), and it gets a parent-death
 * signal: a zygote never outlives its supervisor.  The parent does not
 * wait for the exec: a binary that fails to start exits with status 127
 * and is reaped and logged like any crashed session (or zygote).
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sup.h"
#include "wk_log.h"
#include "wk_proc.h"


#define SUP_LISTEN_FD  3
#define SUP_WARMUP_FD  4
#define SUP_ALIVE_FD   5
#define SUP_EXEC_FD    6      /* in a jail: the binary, close-on-exec */


extern char  **environ;


/* a child's command line and what its entries point to */
typedef struct {
    char         *argv[12 + SB_CONFINE_MAX_ARGS];
    char          max_frame[32];
    sb_confine_t  confine;
} sup_spawn_argv_t;


static void sup_spawn_child(const sup_conf_t *conf, const char *id,
    int lang, int listen_fd, const char *dir, int dfd)
    __attribute__((noreturn));
static void sup_spawn_zygote_child(const sup_conf_t *conf, int control_fd,
    pid_t parent) __attribute__((noreturn));
static void sup_spawn_exec(const sup_conf_t *conf, sup_spawn_argv_t *a,
    int n, int python, const char *bin, int jailed);
static int sup_spawn_relay(const sup_conf_t *conf, const char *what);
static int sup_spawn_prepare(const sup_conf_t *conf, const char *what,
    int session, int fd, int relay, int python, const char *dir,
    int exec_fd);


pid_t
sup_spawn(const sup_conf_t *conf, const char *id, int lang, int listen_fd,
    const char *dir)
{
    int    dfd;
    pid_t  pid;

    dfd = -1;

    if (conf->confine.jail.on) {
        /* ours, made just now: the jail binds it at its home */
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

        if (dfd == -1) {
            wk_log("session %s: open(\"%s\") failed: %s", id, dir,
                   strerror(errno));
            return -1;
        }

        pid = sb_jail_clone(&conf->confine.jail);

    } else {
        pid = fork();
    }

    if (pid == -1) {
        wk_log("fork() for session %s failed: %s", id, strerror(errno));

        if (dfd != -1) {
            (void) close(dfd);
        }

        return -1;
    }

    if (pid == 0) {
        sup_spawn_child(conf, id, lang, listen_fd, dir, dfd);
    }

    if (dfd != -1) {
        (void) close(dfd);
    }

    /*
     * No setpgid() from this side: the child's setsid() would fail on a
     * group leader.  A kill before the child's setsid() still reaches it:
     * sup_kill signals the pid as well as the group.
     */

    return pid;
}


pid_t
sup_spawn_zygote(const sup_conf_t *conf, int control_fd)
{
    pid_t  pid, parent;

    parent = getpid();

    pid = fork();

    if (pid == -1) {
        wk_log("fork() for the zygote failed: %s", strerror(errno));
        return -1;
    }

    if (pid == 0) {
        sup_spawn_zygote_child(conf, control_fd, parent);
    }

    if (setpgid(pid, pid) == -1 && errno != EACCES && errno != ESRCH) {
        wk_log("setpgid(%ld) for the zygote failed: %s", (long) pid,
               strerror(errno));
    }

    return pid;
}


/*
 * The child; in a jail (dfd, the working directory, is not -1) first the
 * jail's init, which builds it and forks the session process, in which
 * sb_confine_jail() returns: it execs the binary from the descriptor the
 * supervisor opened (its path is not in the jail), in the jail's home,
 * told its init's pid (--jail-pid), which names its uid.
 */
static void
sup_spawn_child(const sup_conf_t *conf, const char *id, int lang,
    int listen_fd, const char *dir, int dfd)
{
    int                python, exec_fd, relay;
    char               what[64];
    const char        *bin;
    sup_spawn_argv_t   a;

    python = (lang != SUP_LANG_BASH);
    bin = python ? conf->python : conf->bash;
    exec_fd = -1;

    a.confine = conf->confine;

    (void) snprintf(what, sizeof(what), "session %s", id);

    /* before a jail, where the relay's name is not */
    relay = sup_spawn_relay(conf, what);

    if (relay == -2) {
        goto fail;
    }

    if (dfd != -1) {
        if (sb_confine_jail(&a.confine, id, dfd) != 0) {
            goto fail;
        }

        (void) close(dfd);
        dir = SB_JAIL_HOME;
        exec_fd = sup_jail_bin_fd(lang);
    }

    if (sup_spawn_prepare(conf, what, 1, listen_fd, relay, python, dir,
                          exec_fd)
        == -1)
    {
        goto fail;
    }

    a.argv[0] = python ? PYREPL_PYTHON_BIN : PYREPL_BASH_BIN;
    a.argv[1] = "--listen-fd";
    a.argv[2] = "3";

    sup_spawn_exec(conf, &a, 3, python, bin, exec_fd != -1);

    wk_log("session %s: execv(\"%s\") failed: %s", id, bin,
           strerror(errno));

fail:

    _exit(127);
}


static void
sup_spawn_zygote_child(const sup_conf_t *conf, int control_fd, pid_t parent)
{
    int               relay;
    sup_spawn_argv_t  a;

    /* die with the supervisor, even if it dies before this line */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) == -1) {
        wk_log("zygote: prctl(PR_SET_PDEATHSIG) failed: %s",
               strerror(errno));
        goto fail;
    }

    if (getppid() != parent) {
        goto fail;
    }

    relay = sup_spawn_relay(conf, "zygote");

    if (relay == -2
        || sup_spawn_prepare(conf, "zygote", 0, control_fd, relay, 1,
                             conf->workdir, -1)
           == -1)
    {
        goto fail;
    }

    a.argv[0] = PYREPL_PYTHON_BIN;
    a.argv[1] = "--zygote";
    a.argv[2] = "--control-fd";
    a.argv[3] = "3";
    a.argv[4] = "--workdir";
    a.argv[5] = (char *) conf->workdir;

    a.confine = conf->confine;
    sup_spawn_exec(conf, &a, 6, 1, conf->python, 0);

    wk_log("zygote: execv(\"%s\") failed: %s", conf->python,
           strerror(errno));

fail:

    _exit(127);
}


/*
 * Exec bin (in a jail: from SUP_EXEC_FD) with a->argv[0 .. n) and what
 * every session binary and the zygote are told besides: --max-frame, the
 * warm-up code's descriptor (python only), nginx's alive pipe and the
 * confinement, a->confine (sb_confine.h).  Returns only when the exec
 * failed, errno set.
 */
static void
sup_spawn_exec(const sup_conf_t *conf, sup_spawn_argv_t *a, int n,
    int python, const char *bin, int jailed)
{
    (void) snprintf(a->max_frame, sizeof(a->max_frame), "%zu",
                    conf->max_frame);

    a->argv[n++] = "--max-frame";
    a->argv[n++] = a->max_frame;

    if (python && conf->warmup_fd != -1) {
        a->argv[n++] = "--warmup-fd";
        a->argv[n++] = "4";
    }

    if (conf->parent_fd != -1) {
        a->argv[n++] = "--alive-fd";
        a->argv[n++] = "5";
    }

    n += sb_confine_argv(&a->confine, &a->argv[n]);

    a->argv[n] = NULL;

    if (jailed) {
        (void) syscall(SYS_execveat, SUP_EXEC_FD, "", a->argv, environ,
                       AT_EMPTY_PATH);
        return;
    }

    execv(bin, a->argv);
}


/*
 * In a forked child: its own session (or only process group), default
 * signal state, fd as fd 3, for Python the warm-up code as fd 4 and
 * nginx's alive pipe as fd 5 (inheritable), stdin on /dev/null, the log
 * relay as stdout and stderr, dir as cwd, nothing else open above them.
 * Returns 0 or -1 (logged).
 */
/*
 * A relay socket of the child's own (wk_log_relay_own), not the one
 * every child shares: -1 without a relay, -2 on failure (logged).
 */
static int
sup_spawn_relay(const sup_conf_t *conf, const char *what)
{
    int  fd;

    if (conf->log_fd == -1) {
        return -1;
    }

    fd = wk_log_relay_own(conf->log_fd);

    if (fd == -1) {
        wk_log("%s: a socket to the log relay failed: %s", what,
               strerror(errno));
        return -2;
    }

    return fd;
}


static int
sup_spawn_prepare(const sup_conf_t *conf, const char *what, int session,
    int listen_fd, int relay, int python, const char *dir, int exec_fd)
{
    int               sig, fd, n, from[5], to[5];
    sigset_t          set;
    struct sigaction  sa;

    if (session ? setsid() == -1 : setpgid(0, 0) == -1) {
        wk_log("%s: %s failed: %s", what, session ? "setsid()" : "setpgid()",
               strerror(errno));
        return -1;
    }

    /* dispositions: ignored ones (SIGPIPE, SIGHUP) would survive exec */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);

    for (sig = 1; sig < NSIG; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP) {
            (void) sigaction(sig, &sa, NULL);   /* EINVAL for glibc's own */
        }
    }

    sigemptyset(&set);
    if (sigprocmask(SIG_SETMASK, &set, NULL) == -1) {
        wk_log("%s: sigprocmask() failed: %s", what, strerror(errno));
        return -1;
    }

    /* out of the way of the moves below, to its own slot after them */
    if (exec_fd != -1) {
        exec_fd = fcntl(exec_fd, F_DUPFD_CLOEXEC, SUP_EXEC_FD + 64);

        if (exec_fd == -1) {
            wk_log("%s: fcntl(F_DUPFD_CLOEXEC) failed: %s", what,
                   strerror(errno));
            return -1;
        }
    }

    n = 0;
    from[n] = listen_fd;
    to[n++] = SUP_LISTEN_FD;

    if (python && conf->warmup_fd != -1) {
        from[n] = conf->warmup_fd;
        to[n++] = SUP_WARMUP_FD;
    }

    if (conf->parent_fd != -1) {
        from[n] = conf->parent_fd;
        to[n++] = SUP_ALIVE_FD;
    }

    if (relay != -1) {
        from[n] = relay;
        to[n++] = STDOUT_FILENO;
        from[n] = relay;
        to[n++] = STDERR_FILENO;
    }

    if (sup_spawn_fds(from, to, (size_t) n) == -1) {
        return -1;
    }

    /* 0-3 are taken, so this descriptor is above them */
    fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        wk_log("%s: open(\"/dev/null\") failed: %s", what, strerror(errno));
        return -1;
    }

    if (dup2(fd, STDIN_FILENO) == -1) {
        wk_log("%s: dup2(/dev/null, 0) failed: %s", what, strerror(errno));
        return -1;
    }

    if (chdir(dir) == -1) {
        wk_log("%s: chdir(\"%s\") failed: %s", what, dir, strerror(errno));
        return -1;
    }

    /* the slots not filled stay empty */
    if (!python || conf->warmup_fd == -1) {
        (void) close(SUP_WARMUP_FD);
    }

    if (conf->parent_fd == -1) {
        (void) close(SUP_ALIVE_FD);
    }

    if (exec_fd != -1 && dup3(exec_fd, SUP_EXEC_FD, O_CLOEXEC) == -1) {
        wk_log("%s: dup3() of the binary failed: %s", what, strerror(errno));
        return -1;
    }

    wk_proc_close_range(exec_fd != -1 ? SUP_EXEC_FD + 1 : SUP_ALIVE_FD + 1,
                        ~0U);

    return 0;
}


int
sup_spawn_fds(const int *from, const int *to, size_t n)
{
    int     fd[8], top;
    size_t  i;

    top = 0;

    for (i = 0; i < n; i++) {
        top = (to[i] > top) ? to[i] : top;
    }

    /* first out of the way of every target, so no dup2 hits a source */
    for (i = 0; i < n; i++) {
        fd[i] = fcntl(from[i], F_DUPFD_CLOEXEC, top + 1);

        if (fd[i] == -1) {
            wk_log("fcntl(%d, F_DUPFD_CLOEXEC) failed: %s", from[i],
                   strerror(errno));
            return -1;
        }
    }

    for (i = 0; i < n; i++) {
        if (dup2(fd[i], to[i]) == -1) {
            wk_log("dup2(%d, %d) failed: %s", fd[i], to[i], strerror(errno));
            return -1;
        }
    }

    for (i = 0; i < n; i++) {
        (void) close(fd[i]);
    }

    return 0;
}