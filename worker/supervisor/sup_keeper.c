/*
 * sup_keeper.c: the keeper, "pyrepl-supervisor --keeper ...", the process
 * the nginx master starts.  It makes sure a supervisor runs for as long
 * as nginx does, and that nothing of PyREPL outlives nginx:
 *
 *   - it execs the supervisor (this binary, the same arguments without
 *     --keeper) and starts it again when it exits for any reason but a
 *     shutdown: at once, then after 100 ms, 200 ms, ... (at most 5 s) while
 *     each one dies within a second;
 *   - it is a child subreaper, so the processes of a dead supervisor (its
 *     sessions, pool processes, zygote, and what user code started) become
 *     its children; it reaps them, and when one that leads a process
 *     group dies, it kills that group first (the zombie still holds the
 *     group id), as the supervisor does for a crashed session.  Live
 *     sessions are the new supervisor's business (sup_adopt.c): the
 *     keeper never signals a running process, except at shutdown;
 *   - it owns the log relay (sup_relay.c): the stdout and stderr of the
 *     zygote and of every session are a datagram socket whose other end
 *     it reads, passed to each supervisor as its --log-fd (and the end it
 *     reads as --log-rx-fd, for a successor), and it writes what comes in
 *     to nginx's error log, attributed and made harmless;
 *   - its supervisor watches it in turn: told of the keeper's death by a
 *     parent-death signal (--keeper-pid names the keeper it expects), the
 *     supervisor execs itself as the keeper with the same descriptors
 *     (sup_keeper_succeed); that new keeper starts a new supervisor, which
 *     adopts the live sessions, so killing the keeper, then the
 *     supervisor, leaves no session unwatched;
 *   - at EOF on the nginx pipe, or SIGTERM, SIGINT or SIGQUIT, it sends
 *     SIGTERM to the supervisor, waits for it to shut down, then kills
 *     whatever children it still has (each one's process group too),
 *     reaps them and exits 0.
 *
 * DIR/keeper.pid holds its pid under an exclusive flock(2): a second
 * keeper for the same directory (an nginx reload that found no
 * supervisor answering while this one restarted it) exits 1 at once, and
 * the nginx master tests the lock to know a keeper runs.
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>

#include "sup.h"
#include "wk_log.h"
#include "wk_proc.h"
#include "wk_time.h"


#define SUP_KEEPER_FAST_MS    1000   /* a supervisor that lived less failed */
#define SUP_KEEPER_RETRY_MS   100
#define SUP_KEEPER_MAX_MS     5000
#define SUP_KEEPER_STOP_MS    (SUP_REAP_WAIT_MS + 2000)
#define SUP_KEEPER_LOG_FD     5      /* the relay, in the supervisor */
#define SUP_KEEPER_LOG_RX_FD  6


typedef struct {
    const sup_conf_t  *conf;
    char               self[PATH_MAX];
    char             **argv;         /* the supervisor's */
    char               lock_path[PATH_MAX];
    int                lock_fd;
    int                sigfd;
    int                relay_rx;     /* the log relay's ends */
    int                relay_tx;
    char               log_fd[16];   /* "--log-fd"'s value */
    char               log_rx_fd[16];
    char               self_pid[16];  /* "--keeper-pid"'s */
    pid_t              pid;          /* the supervisor, 0 while none */
    int64_t            started;
    int64_t            restart_at;   /* 0: not scheduled */
    unsigned           failures;     /* quick deaths in a row */
    unsigned           stopping:1;
} sup_keeper_t;


static int sup_keeper_lock(sup_keeper_t *k);
static int sup_keeper_args(sup_keeper_t *k);
static int sup_keeper_relay(sup_keeper_t *k);
static void sup_keeper_spawn(sup_keeper_t *k);
static void sup_keeper_reap(sup_keeper_t *k);
static int sup_keeper_group_serves(sup_keeper_t *k, pid_t pgid);
static int sup_keeper_signals(sup_keeper_t *k);
static size_t sup_keeper_kill_children(void);
static void sup_keeper_stop(sup_keeper_t *k);


int
sup_keeper_main(const sup_conf_t *conf)
{
    int            rc, timeout;
    int64_t        now, deadline;
    ssize_t        n;
    sup_keeper_t   k;
    struct pollfd  pfd[3];
    char           path[PATH_MAX];

    memset(&k, 0, sizeof(sup_keeper_t));
    k.conf = conf;
    k.lock_fd = -1;
    k.relay_rx = -1;
    k.relay_tx = -1;
    deadline = 0;

    if (wk_proc_std_fds() == -1) {
        return 1;
    }

    (void) umask(077);

    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == -1) {
        wk_log("prctl(PR_SET_CHILD_SUBREAPER) failed: %s", strerror(errno));
        return 1;
    }

    n = readlink("/proc/self/exe", k.self, sizeof(k.self) - 1);
    if (n == -1 || (size_t) n >= sizeof(k.self) - 1) {
        wk_log("readlink(\"/proc/self/exe\") failed: %s", strerror(errno));
        return 1;
    }

    k.self[n] = '\0';

    if (sup_keeper_args(&k) == -1) {
        return 1;
    }

    k.sigfd = sup_signals();

    if (k.sigfd == -1
        || sup_fs_mkdir(conf->socket_dir, 0700, conf->owner_uid,
                        conf->owner_gid) == -1
        || sup_keeper_lock(&k) == -1
        || sup_keeper_relay(&k) == -1)
    {
        free(k.argv);
        return 1;
    }

    wk_log("keeping a supervisor on \"%s\"", conf->socket_dir);

    sup_keeper_spawn(&k);

    for ( ;; ) {
        now = wk_msec();

        if (k.stopping) {
            if (k.pid == 0 && sup_keeper_kill_children() == 0) {
                break;
            }

            if (now >= deadline) {
                /* a supervisor that does not finish its shutdown */
                if (k.pid != 0) {
                    wk_log("the supervisor did not exit, killing it");
                    (void) kill(k.pid, SIGKILL);
                }

                (void) sup_keeper_kill_children();

                if (now >= deadline + 1000) {
                    wk_log("giving up on processes that do not exit");
                    break;
                }
            }

            timeout = 50;              /* kill late arrivals again */

        } else if (k.pid == 0 && k.restart_at != 0) {
            if (now >= k.restart_at) {
                k.restart_at = 0;
                sup_keeper_spawn(&k);
                continue;
            }

            timeout = (int) (k.restart_at - now);

        } else {
            timeout = -1;
        }

        pfd[0].fd = k.sigfd;
        pfd[0].events = POLLIN;
        pfd[0].revents = 0;
        pfd[1].fd = k.stopping ? -1 : conf->parent_fd;
        pfd[1].events = POLLIN;
        pfd[1].revents = 0;
        pfd[2].fd = k.relay_rx;
        pfd[2].events = POLLIN;
        pfd[2].revents = 0;

        rc = poll(pfd, 3, timeout);

        if (rc == -1) {
            if (errno == EINTR) {
                continue;
            }

            wk_log("poll() failed: %s", strerror(errno));
            break;
        }

        if (pfd[2].revents) {
            sup_relay_read(k.relay_rx);
        }

        if (pfd[0].revents && sup_keeper_signals(&k) && !k.stopping) {
            sup_keeper_stop(&k);
            deadline = wk_msec() + SUP_KEEPER_STOP_MS;
        }

        if (pfd[1].revents && !k.stopping
            && sup_parent_gone(conf->parent_fd, pfd[1].revents))
        {
            sup_keeper_stop(&k);
            deadline = wk_msec() + SUP_KEEPER_STOP_MS;
        }
    }

    sup_keeper_reap(&k);

    /* the last words of what was killed */
    sup_relay_read(k.relay_rx);

    if (k.lock_fd != -1) {
        (void) sup_fs_unlink(k.lock_path);
        (void) close(k.lock_fd);

        if (sup_fs_path(path, sizeof(path), conf->socket_dir,
                        SUP_RELAY_NAME, "") == 0)
        {
            (void) sup_fs_unlink(path);
        }

        /* nginx is gone: its directories go too, if nothing is left in */
        if (rmdir(conf->workdir) == -1 && errno != ENOENT
            && errno != ENOTEMPTY && errno != EEXIST)
        {
            wk_log("rmdir(\"%s\") failed: %s", conf->workdir,
                   strerror(errno));
        }

        if (rmdir(conf->socket_dir) == -1 && errno != ENOENT
            && errno != ENOTEMPTY && errno != EEXIST)
        {
            wk_log("rmdir(\"%s\") failed: %s", conf->socket_dir,
                   strerror(errno));
        }
    }

    free(k.argv);

    wk_log("exiting");

    return 0;
}


/* Take DIR/keeper.pid's lock and write our pid there; 0 or -1. */
static int
sup_keeper_lock(sup_keeper_t *k)
{
    int          fd, n;
    char         buf[32];
    ssize_t      r;
    struct stat  a, b;

    if (sup_fs_path(k->lock_path, sizeof(k->lock_path),
                    k->conf->socket_dir, PYREPL_KEEPER_PID, "") == -1)
    {
        return -1;
    }

    for ( ;; ) {
        fd = open(k->lock_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
                  0644);
        if (fd == -1) {
            wk_log("open(\"%s\") failed: %s", k->lock_path, strerror(errno));
            return -1;
        }

        if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
            if (errno == EWOULDBLOCK) {
                r = read(fd, buf, sizeof(buf) - 1);
                buf[r > 0 ? r : 0] = '\0';
                buf[strcspn(buf, "\n")] = '\0';
                wk_log("another keeper (pid %s) serves \"%s\", exiting",
                       buf[0] ? buf : "?", k->conf->socket_dir);

            } else {
                wk_log("flock(\"%s\") failed: %s", k->lock_path,
                       strerror(errno));
            }

            (void) close(fd);
            return -1;
        }

        /* the file we locked must still be the one at the path */
        if (fstat(fd, &a) == 0 && stat(k->lock_path, &b) == 0
            && a.st_ino == b.st_ino && a.st_dev == b.st_dev)
        {
            break;
        }

        (void) close(fd);
    }

    (void) fchmod(fd, 0644);

    n = snprintf(buf, sizeof(buf), "%ld\n", (long) getpid());

    if (ftruncate(fd, 0) == -1 || pwrite(fd, buf, (size_t) n, 0) != n) {
        wk_log("writing \"%s\" failed: %s", k->lock_path, strerror(errno));
    }

    k->lock_fd = fd;

    return 0;
}


/*
 * Our argv without --keeper and the relay's options, with the relay's
 * descriptors and our pid: the supervisor's.
 */
static int
sup_keeper_args(sup_keeper_t *k)
{
    int  i, j;

    k->argv = calloc((size_t) k->conf->argc + 7, sizeof(char *));
    if (k->argv == NULL) {
        wk_log("out of memory");
        return -1;
    }

    for (i = 0, j = 0; i < k->conf->argc; i++) {
        if (strcmp(k->conf->argv[i], "--keeper") == 0) {
            continue;
        }

        if ((strcmp(k->conf->argv[i], "--log-fd") == 0
             || strcmp(k->conf->argv[i], "--log-rx-fd") == 0)
            && i + 1 < k->conf->argc)
        {
            i++;
            continue;
        }

        k->argv[j++] = k->conf->argv[i];
    }

    (void) snprintf(k->log_fd, sizeof(k->log_fd), "%d", SUP_KEEPER_LOG_FD);
    (void) snprintf(k->log_rx_fd, sizeof(k->log_rx_fd), "%d",
                    SUP_KEEPER_LOG_RX_FD);
    (void) snprintf(k->self_pid, sizeof(k->self_pid), "%ld",
                    (long) getpid());

    k->argv[j++] = "--log-fd";
    k->argv[j++] = k->log_fd;
    k->argv[j++] = "--log-rx-fd";
    k->argv[j++] = k->log_rx_fd;
    k->argv[j++] = "--keeper-pid";
    k->argv[j++] = k->self_pid;
    k->argv[j] = NULL;

    return 0;
}


/*
 * The log relay: the one a supervisor that became the keeper passed on
 * (so the sessions it leaves keep logging), else a new one.  0 or -1.
 */
static int
sup_keeper_relay(sup_keeper_t *k)
{
    int  flags;

    if (k->conf->log_fd == -1 || k->conf->log_rx_fd == -1) {
        return sup_relay_open(k->conf->socket_dir, &k->relay_rx,
                              &k->relay_tx);
    }

    k->relay_tx = k->conf->log_fd;
    k->relay_rx = k->conf->log_rx_fd;

    flags = fcntl(k->relay_rx, F_GETFD);

    if (flags == -1
        || fcntl(k->relay_rx, F_SETFD, flags | FD_CLOEXEC) == -1
        || fcntl(k->relay_tx, F_SETFD, flags | FD_CLOEXEC) == -1)
    {
        wk_log("--log-fd %d, --log-rx-fd %d: %s", k->relay_tx, k->relay_rx,
               strerror(errno));
        return -1;
    }

    return 0;
}


int
sup_keeper_watch(const sup_conf_t *conf)
{
    if (prctl(PR_SET_PDEATHSIG, SIGUSR1, 0, 0, 0) == -1) {
        wk_log("prctl(PR_SET_PDEATHSIG) failed: %s", strerror(errno));
        return -1;
    }

    /* gone already: the signal was never sent */
    if (getppid() != conf->keeper_pid) {
        (void) raise(SIGUSR1);
    }

    return 0;
}


int
sup_keeper_gone(const sup_conf_t *conf)
{
    return conf->keeper_pid != 0 && getppid() != conf->keeper_pid;
}


void
sup_keeper_succeed(const sup_conf_t *conf)
{
    int     i, j, k, fds[4];
    char  **argv;

    wk_log("the keeper (pid %ld) is gone: this supervisor becomes the "
           "keeper, and a new supervisor adopts its sessions",
           (long) conf->keeper_pid);

    argv = calloc((size_t) conf->argc + 2, sizeof(char *));
    if (argv == NULL) {
        wk_log("out of memory");
        return;
    }

    argv[0] = conf->argv[0];
    argv[1] = "--keeper";

    for (i = 1, j = 2; i < conf->argc; i++) {
        if (strcmp(conf->argv[i], "--keeper-pid") == 0
            && i + 1 < conf->argc)
        {
            i++;
            continue;
        }

        argv[j++] = conf->argv[i];
    }

    argv[j] = NULL;

    /* what the keeper inherits, where the options say */
    fds[0] = conf->parent_fd;
    fds[1] = conf->warmup_fd;
    fds[2] = conf->log_fd;
    fds[3] = conf->log_rx_fd;

    for (k = 0; k < 4; k++) {
        if (fds[k] != -1) {
            (void) fcntl(fds[k], F_SETFD, 0);
        }
    }

    (void) prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);

    execv("/proc/self/exe", argv);

    wk_log("execv(\"/proc/self/exe\") failed: %s; serving on without a "
           "keeper", strerror(errno));

    for (k = 0; k < 4; k++) {
        if (fds[k] != -1) {
            (void) fcntl(fds[k], F_SETFD, FD_CLOEXEC);
        }
    }

    free(argv);
}


static void
sup_keeper_spawn(sup_keeper_t *k)
{
    int       from[2], to[2];
    pid_t     pid;
    sigset_t  none;

    pid = fork();

    if (pid == -1) {
        wk_log("fork() failed: %s", strerror(errno));
        k->restart_at = wk_msec() + SUP_KEEPER_MAX_MS;
        return;
    }

    if (pid == 0) {
        /* the supervisor sets up its own signals; the pipe stays open */
        sigemptyset(&none);
        (void) sigprocmask(SIG_SETMASK, &none, NULL);

        from[0] = k->relay_tx;
        to[0] = SUP_KEEPER_LOG_FD;
        from[1] = k->relay_rx;
        to[1] = SUP_KEEPER_LOG_RX_FD;

        if (sup_spawn_fds(from, to, 2) == -1) {
            _exit(1);
        }

        execv(k->self, k->argv);

        wk_log("execv(\"%s\") failed: %s", k->self, strerror(errno));
        _exit(1);
    }

    k->pid = pid;
    k->started = wk_msec();

    wk_log("supervisor started, pid %ld", (long) pid);
}


/* Drain the signalfd; 1 if a shutdown signal came.  Reaps on SIGCHLD. */
static int
sup_keeper_signals(sup_keeper_t *k)
{
    int                      stop;
    ssize_t                  n;
    struct signalfd_siginfo  si;

    stop = 0;

    for ( ;; ) {
        n = read(k->sigfd, &si, sizeof(si));

        if (n == -1 && errno == EINTR) {
            continue;
        }

        if (n != sizeof(si)) {
            break;
        }

        /* SIGUSR1: a supervisor's word for "my keeper died" */
        if (si.ssi_signo != SIGCHLD && si.ssi_signo != SIGUSR1) {
            wk_log("%s received, shutting down",
                   sigabbrev_np((int) si.ssi_signo));
            stop = 1;
        }
    }

    sup_keeper_reap(k);

    return stop;
}


/*
 * Whether group pgid holds a live session process of the journal (one a
 * rollback handed its session to, "move"): checked by pid and start time,
 * not by name, which any process can take.
 */
static int
sup_keeper_group_serves(sup_keeper_t *k, pid_t pgid)
{
    int          found;
    size_t       i, n;
    sup_proc_t   p;
    sup_jrec_t  *recs;

    if (sup_journal_load(k->conf, &recs, &n) == -1) {
        return 0;
    }

    found = 0;

    for (i = 0; !found && i < n; i++) {
        found = (recs[i].kind == SUP_J_SESSION && recs[i].pid != pgid
                 && sup_proc_stat(recs[i].pid, &p) == 0
                 && p.pgrp == pgid && p.state != 'Z'
                 && p.start == recs[i].start);
    }

    free(recs);

    return found;
}


static void
sup_keeper_reap(sup_keeper_t *k)
{
    int         status;
    int64_t     lived, delay;
    pid_t       pid;
    unsigned    i;
    sup_proc_t  p;

    for ( ;; ) {
        /* look first: a zombie still holds its process group id */
        pid = sup_proc_exited();
        if (pid <= 0) {
            return;
        }

        /*
         * An orphaned group leader's group goes with it, unless the
         * journal's session process lives on in it: the one a rollback
         * handed the session to ("move"), which the next supervisor adopts.
         */
        if (pid != k->pid && sup_proc_stat(pid, &p) == 0 && p.pgrp == pid
            && !sup_keeper_group_serves(k, pid)
            && kill(-pid, SIGKILL) == -1 && errno != ESRCH)
        {
            wk_log("kill(-%ld, SIGKILL) failed: %s", (long) pid,
                   strerror(errno));
        }

        if (sup_proc_reap(pid, &status) == -1) {
            return;
        }

        if (pid != k->pid) {
            sup_log_exit("orphaned process", NULL, pid, status);
            continue;
        }

        sup_log_exit("supervisor", NULL, pid, status);

        k->pid = 0;

        if (k->stopping) {
            continue;
        }

        lived = wk_msec() - k->started;
        k->failures = (lived < SUP_KEEPER_FAST_MS) ? k->failures + 1 : 0;

        delay = 0;

        if (k->failures > 1) {
            delay = SUP_KEEPER_RETRY_MS;

            for (i = 2; i < k->failures && delay < SUP_KEEPER_MAX_MS; i++) {
                delay *= 2;
            }

            if (delay > SUP_KEEPER_MAX_MS) {
                delay = SUP_KEEPER_MAX_MS;
            }
        }

        wk_log("restarting the supervisor%s", delay ? " after a pause" : "");

        k->restart_at = wk_msec() + delay;
        if (k->restart_at == 0) {
            k->restart_at = 1;
        }
    }
}


static void
sup_keeper_stop(sup_keeper_t *k)
{
    k->stopping = 1;
    k->restart_at = 0;

    if (k->pid != 0 && kill(k->pid, SIGTERM) == -1 && errno != ESRCH) {
        wk_log("kill(supervisor %ld, SIGTERM) failed: %s", (long) k->pid,
               strerror(errno));
    }
}


/*
 * SIGKILL every child of ours (and the group of each that leads one);
 * returns how many there were.  Without /proc/<pid>/task/<tid>/children
 * (not every kernel has it) that means a scan of /proc.
 */
static size_t
sup_keeper_kill_children(void)
{
    pid_t           pid, self;
    size_t          n;
    DIR            *d;
    sup_proc_t      p;
    struct dirent  *de;

    self = getpid();
    n = 0;

    d = opendir("/proc");
    if (d == NULL) {
        wk_log("opendir(\"/proc\") failed: %s", strerror(errno));
        return 0;
    }

    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] < '1' || de->d_name[0] > '9') {
            continue;
        }

        pid = (pid_t) strtol(de->d_name, NULL, 10);

        if (sup_proc_stat(pid, &p) == -1 || p.ppid != self) {
            continue;
        }

        n++;

        if (p.state == 'Z') {
            continue;       /* reaped below */
        }

        if (p.pgrp == pid) {
            (void) kill(-pid, SIGKILL);
        }

        (void) kill(pid, SIGKILL);
    }

    (void) closedir(d);

    return n;
}
