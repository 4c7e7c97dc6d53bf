/*
 * sup_main.c: pyrepl-supervisor's entry point: the command line,
 * start-up, signal handling, the poll(2) loop and shutdown.
 *
 *   pyrepl-supervisor --socket-dir DIR --workdir DIR --python PATH
 *       [--parent-fd N] [--owner-uid UID] [--owner-gid GID]
 *       [--max-frame BYTES] [--zygote] [--pool-min-idle N]
 *       [--warmup-fd N] [--log-fd N] [--bash PATH] [--keeper]
 *
 * It listens on DIR/supervisor.sock for create, kill and status requests
 * from nginx workers (sup_request.c), writes its pid to
 * DIR/supervisor.pid, and stays until nginx goes away: EOF or POLLHUP on
 * --parent-fd (a pipe whose write end only nginx processes hold), or
 * SIGTERM, SIGINT or SIGQUIT.  It then kills the zygote, the pool and
 * every session's processes, reaps them (or sees them exit), removes
 * their sockets and working directories once nothing of them runs, the
 * journal, its own socket and pid file, and exits 0.  Anything that
 * stops it from serving at start-up is logged and exits 1.
 *
 * The design (what nginx starts with all options):
 *
 *   nginx master --double fork--> keeper     pyrepl-supervisor --keeper
 *     keeper --fork+exec--> supervisor       pyrepl-supervisor
 *       supervisor --fork+exec--> zygote     pyrepl-python --zygote
 *         zygote --fork, fork--> session     (reparented to the supervisor)
 *
 * The keeper (sup_keeper.c) is tiny and does no I/O with nginx: it holds
 * the "nginx alive" pipe, is a child subreaper, restarts the supervisor
 * within milliseconds when it dies, and reaps the processes a dead
 * supervisor leaves (they are reparented to it), killing a dead session's
 * process group.  It never signals a live session but at shutdown.
 *
 * The supervisor is a child subreaper too, so the sessions its zygote
 * double-forks become its children: SIGCHLD and waitpid work for them as
 * for fork+exec'd ones, and a session never depends on the zygote staying
 * alive.  The zygote (py_zygote.c, sup_zygote.c) has libpython
 * initialised and the operator's warm-up code (read from --warmup-fd, a
 * descriptor nginx filled, never a command line that every process can
 * read) run once; it dies with the
 * supervisor (parent-death signal) and is restarted when it dies alone.
 * The pool (sup_pool.c) keeps --pool-min-idle forked, unassigned
 * processes; a create renames one's socket and directory to the session's
 * and answers at once, or waits for the next one; without --zygote, or
 * while the zygote cannot come up, a create forks and execs (sup_spawn.c),
 * as it always does for bash sessions (--bash).  Every session process is
 * a session leader, and what it leaves when it dies (jobs and daemons
 * outside its process group, reparented to us) is swept away
 * (sup_lifecycle.c).
 *
 * Sessions do not die with their supervisor.  Every hand-out and kill is
 * appended to the journal DIR/sessions (sup_journal.c), a hand-out with the
 * pid and its start time.  A new supervisor (sup_adopt.c) adopts the sessions
 * whose processes still run (pidfds, checked against the start time, so a
 * reused pid is never adopted), unlinks the sockets of those that died
 * meanwhile (nginx then reports them crashed), kills the old pool and
 * whatever session process the journal does not name, and serves: the keeper
 * restarts it at once, it binds the stale socket again, and creates wait for
 * its new zygote (tens of milliseconds plus the warm-up).
 *
 * Signals are taken synchronously through a signalfd; SIGHUP and SIGPIPE
 * are ignored.
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "sup.h"
#include "wk_log.h"
#include "wk_opt.h"
#include "wk_proc.h"
#include "wk_time.h"


#define SUP_ACCEPT_PAUSE_MS   100     /* after running out of descriptors */
#define SUP_FIXED_FDS         5       /* signalfd, parent pipe, listener, */
                                      /* zygote channel, adopted pidfds */
#define SUP_MIN_FRAME         1024
#define SUP_MAX_POOL          1000
#define SUP_SUN_PATH          sizeof(((struct sockaddr_un *) 0)->sun_path)


typedef struct {
    int          sigfd;
    int          listen_fd;
    ino_t        listen_ino;          /* to unlink only our own socket */
    dev_t        listen_dev;
    char         sock_path[PATH_MAX];
    char         pid_path[PATH_MAX];
} sup_state_t;


static int sup_parse(int argc, char **argv, sup_conf_t *conf);
static int sup_option(void *data, int opt, const char *arg);
static int sup_signal_read(const sup_conf_t *conf, int sigfd);
static int sup_start(const sup_conf_t *conf, sup_state_t *st);
static void sup_raise_nofile(void);
static int sup_loop(const sup_conf_t *conf, sup_state_t *st);
static int sup_timeout(int64_t now, int64_t resume);
static void sup_shutdown(const sup_conf_t *conf, sup_state_t *st);


static const char  sup_usage[] =
    "usage: pyrepl-supervisor --socket-dir DIR --workdir DIR --python PATH\n"
    "           [--parent-fd N] [--owner-uid UID] [--owner-gid GID]\n"
    "           [--max-frame BYTES] [--zygote] [--pool-min-idle N]\n"
    "           [--warmup-fd N] [--log-fd N] [--bash PATH]\n"
    "           [--checkpoint-dir DIR] [--keeper]\n"
    "           " SB_CONFINE_USAGE "\n";


int
main(int argc, char **argv)
{
    int          rc;
    sup_conf_t   conf;
    sup_state_t  st;

    wk_log_init("supervisor", 1);

    if (sup_parse(argc, argv, &conf) == -1) {
        (void) fputs(sup_usage, stderr);
        return 1;
    }

    if (conf.keeper) {
        wk_log_init("keeper", 1);
        return sup_keeper_main(&conf);
    }

    st.listen_fd = -1;

    wk_proc_title_area(argc, argv, &conf.confine.title,
                       &conf.confine.title_len);

    if (sup_jail_setup(&conf) == -1 || sup_start(&conf, &st) == -1) {
        if (st.listen_fd != -1) {
            (void) sup_fs_unlink(st.sock_path);
        }

        wk_log("cannot start, exiting");
        return 1;
    }

    wk_log("listening on \"%s\"", st.sock_path);

    while ((rc = sup_loop(&conf, &st)) == 2) {
        sup_keeper_succeed(&conf);
    }

    sup_shutdown(&conf, &st);

    wk_log("exiting");

    return rc;
}


static int
sup_parse(int argc, char **argv, sup_conf_t *conf)
{
    size_t  len;

    static const struct option  opts[] = {
        { "socket-dir", required_argument, NULL, 's' },
        { "workdir",    required_argument, NULL, 'w' },
        { "python",     required_argument, NULL, 'p' },
        { "parent-fd",  required_argument, NULL, 'f' },
        { "owner-uid",  required_argument, NULL, 'u' },
        { "owner-gid",  required_argument, NULL, 'g' },
        { "max-frame",  required_argument, NULL, 'm' },
        { "zygote",     no_argument,       NULL, 'z' },
        { "pool-min-idle", required_argument, NULL, 'n' },
        { "warmup-fd",  required_argument, NULL, 'W' },
        { "log-fd",     required_argument, NULL, 'L' },
        { "log-rx-fd",  required_argument, NULL, 'R' },
        { "keeper-pid", required_argument, NULL, 'K' },
        { "keeper",     no_argument,       NULL, 'k' },
        { "bash",       required_argument, NULL, 'b' },
        { "checkpoint-dir", required_argument, NULL, 'C' },
        SB_CONFINE_OPTIONS,
        { NULL, 0, NULL, 0 }
    };

    memset(conf, 0, sizeof(sup_conf_t));
    conf->parent_fd = -1;
    conf->warmup_fd = -1;
    conf->log_fd = -1;
    conf->log_rx_fd = -1;
    conf->owner_uid = (uid_t) -1;
    conf->owner_gid = (gid_t) -1;
    conf->max_frame = PR_DEFAULT_MAX_FRAME;
    conf->argc = argc;
    conf->argv = argv;

    if (wk_opt_parse(argc, argv, opts, &conf->confine, NULL, sup_option,
                     conf)
        == -1)
    {
        return -1;
    }

    if (conf->socket_dir == NULL || conf->workdir == NULL
        || conf->python == NULL)
    {
        wk_log("--socket-dir, --workdir and --python are required");
        return -1;
    }

    /* DIR/<id>.sock must fit in sun_path, with its NUL */
    len = strlen(conf->socket_dir) + 1 + PYREPL_ID_LEN
          + sizeof(PYREPL_SESSION_SUFFIX);
    if (len > SUP_SUN_PATH) {
        wk_log("--socket-dir \"%s\" is too long for Unix socket paths "
               "(at most %zu bytes)", conf->socket_dir,
               SUP_SUN_PATH - 1 - PYREPL_ID_LEN
               - sizeof(PYREPL_SESSION_SUFFIX));
        return -1;
    }

    return 0;
}


/* One of sup_parse()'s options (wk_opt_handler_pt); data is the conf. */
static int
sup_option(void *data, int opt, const char *arg)
{
    sup_conf_t          *conf;
    unsigned long long   v;

    conf = data;

    switch (opt) {

    case 's':
        conf->socket_dir = arg;
        return 0;

    case 'w':
        conf->workdir = arg;
        return 0;

    case 'p':
        conf->python = arg;
        return 0;

    case 'z':
        conf->zygote = 1;
        return 0;

    case 'k':
        conf->keeper = 1;
        return 0;

    case 'b':
        conf->bash = arg;
        return 0;

    case 'C':
        conf->checkpoint_dir = arg;
        return 0;

    case 'f':
        if (wk_opt_num("--parent-fd", arg, 0, INT_MAX, &v) != 0) {
            return -1;
        }

        conf->parent_fd = (int) v;
        return 0;

    case 'u':
        if (wk_opt_num("--owner-uid", arg, 0, UINT_MAX - 1, &v) != 0) {
            return -1;
        }

        conf->owner_uid = (uid_t) v;
        return 0;

    case 'g':
        if (wk_opt_num("--owner-gid", arg, 0, UINT_MAX - 1, &v) != 0) {
            return -1;
        }

        conf->owner_gid = (gid_t) v;
        return 0;

    case 'm':
        if (wk_opt_num("--max-frame", arg, SUP_MIN_FRAME, UINT32_MAX, &v)
            != 0)
        {
            return -1;
        }

        conf->max_frame = (size_t) v;
        return 0;

    case 'n':
        if (wk_opt_num("--pool-min-idle", arg, 0, SUP_MAX_POOL, &v) != 0) {
            return -1;
        }

        conf->pool_min_idle = (unsigned) v;
        return 0;

    case 'W':
        if (wk_opt_num("--warmup-fd", arg, 0, INT_MAX, &v) != 0) {
            return -1;
        }

        conf->warmup_fd = (int) v;
        return 0;

    case 'L':
        if (wk_opt_num("--log-fd", arg, 0, INT_MAX, &v) != 0) {
            return -1;
        }

        conf->log_fd = (int) v;
        return 0;

    case 'R':
        if (wk_opt_num("--log-rx-fd", arg, 0, INT_MAX, &v) != 0) {
            return -1;
        }

        conf->log_rx_fd = (int) v;
        return 0;

    case 'K':
        if (wk_opt_num("--keeper-pid", arg, 2, INT_MAX, &v) != 0) {
            return -1;
        }

        conf->keeper_pid = (pid_t) v;
        return 0;

    default:
        return WK_OPT_UNKNOWN;
    }
}


/* Ignore SIGHUP and SIGPIPE; return a signalfd for the others. */
int
sup_signals(void)
{
    int               fd;
    sigset_t          set;
    struct sigaction  sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);

    if (sigaction(SIGHUP, &sa, NULL) == -1
        || sigaction(SIGPIPE, &sa, NULL) == -1)
    {
        wk_log("sigaction() failed: %s", strerror(errno));
        return -1;
    }

    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGUSR1);

    if (sigprocmask(SIG_SETMASK, &set, NULL) == -1) {
        wk_log("sigprocmask() failed: %s", strerror(errno));
        return -1;
    }

    fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd == -1) {
        wk_log("signalfd() failed: %s", strerror(errno));
        return -1;
    }

    return fd;
}


/*
 * Drain the signalfd; returns 1 if a shutdown signal came, 2 if the
 * keeper died (SIGUSR1, see sup_keeper_watch), else 0.
 */
static int
sup_signal_read(const sup_conf_t *conf, int sigfd)
{
    int                      stop, chld;
    ssize_t                  n;
    struct signalfd_siginfo  si;

    stop = 0;
    chld = 0;

    for ( ;; ) {
        n = read(sigfd, &si, sizeof(si));

        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }

            if (errno != EAGAIN) {
                wk_log("read(signalfd) failed: %s", strerror(errno));
            }

            break;
        }

        if (n != sizeof(si)) {
            wk_log("short read(signalfd): %zd bytes", n);
            break;
        }

        if (si.ssi_signo == SIGCHLD) {
            chld = 1;

        } else if (si.ssi_signo == SIGUSR1) {
            /* the keeper's death (sup_keeper_watch), if it is gone */
            if (sup_keeper_gone(conf) && stop == 0) {
                stop = 2;
            }

        } else {
            wk_log("%s received, shutting down",
                   sigabbrev_np((int) si.ssi_signo));
            stop = 1;
        }
    }

    if (chld) {
        sup_reap(conf);
    }

    return stop;
}


/* Whether the parent pipe says nginx is gone (EOF, hang-up, error). */
int
sup_parent_gone(int fd, short revents)
{
    ssize_t  n;
    char     buf[64];

    if (revents & POLLNVAL) {
        wk_log("--parent-fd %d was closed", fd);
        return 1;
    }

    if (revents & POLLIN) {
        n = read(fd, buf, sizeof(buf));

        if (n == 0) {
            wk_log("nginx is gone (EOF on the parent pipe), shutting down");
            return 1;
        }

        if (n == -1 && errno != EINTR && errno != EAGAIN) {
            wk_log("read(parent fd %d) failed: %s, shutting down", fd,
                   strerror(errno));
            return 1;
        }

        return 0;   /* stray bytes: nginx writes nothing here, ignore */
    }

    if (revents & (POLLHUP | POLLERR)) {
        wk_log("nginx is gone (hang-up on the parent pipe), shutting down");
        return 1;
    }

    return 0;
}


static int
sup_start(const sup_conf_t *conf, sup_state_t *st)
{
    int          i, flags, fds[4];
    struct stat  sb;

    static const char  *opts[4] = { "--parent-fd", "--warmup-fd", "--log-fd",
                                    "--log-rx-fd" };

    memset(st, 0, sizeof(sup_state_t));
    st->sigfd = -1;
    st->listen_fd = -1;

    if (wk_proc_std_fds() == -1) {
        return -1;
    }

    /* everything the supervisor creates is private unless widened */
    (void) umask(077);

    if (access(conf->python, X_OK) == -1) {
        wk_log("--python \"%s\" is not executable: %s", conf->python,
               strerror(errno));
        return -1;
    }

    if (conf->bash != NULL && access(conf->bash, X_OK) == -1) {
        wk_log("--bash \"%s\" is not executable: %s", conf->bash,
               strerror(errno));
        return -1;
    }

    /* inherited descriptors: given on to children only on purpose */
    fds[0] = conf->parent_fd;
    fds[1] = conf->warmup_fd;
    fds[2] = conf->log_fd;
    fds[3] = conf->log_rx_fd;

    for (i = 0; i < 4; i++) {
        if (fds[i] == -1) {
            continue;
        }

        flags = fcntl(fds[i], F_GETFD);
        if (flags == -1
            || fcntl(fds[i], F_SETFD, flags | FD_CLOEXEC) == -1)
        {
            wk_log("%s %d: %s", opts[i], fds[i], strerror(errno));
            return -1;
        }
    }

    /* sessions the zygote double-forks become our children */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == -1) {
        wk_log("prctl(PR_SET_CHILD_SUBREAPER) failed: %s", strerror(errno));
        return -1;
    }

    sup_raise_nofile();

    st->sigfd = sup_signals();
    if (st->sigfd == -1
        || (conf->keeper_pid != 0 && sup_keeper_watch(conf) == -1))
    {
        return -1;
    }

    if (sup_fs_mkdir(conf->socket_dir, 0700, conf->owner_uid,
                     conf->owner_gid) == -1
        || sup_fs_mkdir(conf->workdir, 0711, (uid_t) -1, (gid_t) -1) == -1
        || (conf->checkpoint_dir != NULL
            && sup_fs_mkdir(conf->checkpoint_dir, 0700, (uid_t) -1,
                            (gid_t) -1) == -1))
    {
        return -1;
    }

    if (sup_fs_path(st->sock_path, sizeof(st->sock_path), conf->socket_dir,
                    PYREPL_SUPERVISOR_SOCK, "") == -1
        || sup_fs_path(st->pid_path, sizeof(st->pid_path), conf->socket_dir,
                       PYREPL_SUPERVISOR_PID, "") == -1)
    {
        return -1;
    }

    st->listen_fd = sup_listen_unix(st->sock_path, 1, 1, conf->owner_uid,
                                    conf->owner_gid);
    if (st->listen_fd == -1) {
        return -1;
    }

    if (lstat(st->sock_path, &sb) == -1) {
        wk_log("lstat(\"%s\") failed: %s", st->sock_path, strerror(errno));
        return -1;
    }

    st->listen_ino = sb.st_ino;
    st->listen_dev = sb.st_dev;

    /*
     * Ours now (a live supervisor would have kept us from binding): take
     * over what a dead one left before the first request.
     */
    sup_adopt(conf);
    sup_jail_sweep(conf);

    if (sup_fs_write_pid(st->pid_path) == -1) {
        return -1;
    }

    sup_pool_init(conf);
    sup_zygote_start(conf);

    return 0;
}


/*
 * A pidfd per adopted session, a descriptor per client: the soft limit
 * (often 1024) goes up to the hard one, and the zygote and sessions
 * inherit it.
 */
static void
sup_raise_nofile(void)
{
    struct rlimit  rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void) setrlimit(RLIMIT_NOFILE, &rl);
    }
}


void *
sup_grow(void *array, size_t *cap, size_t size, size_t first,
    const char *what)
{
    size_t   n;
    void    *p;

    n = *cap ? *cap * 2 : first;

    p = realloc(array, n * size);
    if (p == NULL) {
        wk_log("cannot grow %s to %zu entries", what, n);
        return NULL;
    }

    *cap = n;

    return p;
}


/* The poll timeout: the nearest of the timers, or -1. */
static int
sup_timeout(int64_t now, int64_t resume)
{
    int64_t  t, min;

    min = -1;

    if (resume != 0) {
        min = (resume > now) ? resume - now : 0;
    }

    t = sup_zygote_timeout(now);
    if (t >= 0 && (min < 0 || t < min)) {
        min = t;
    }

    t = sup_pool_timeout(now);
    if (t >= 0 && (min < 0 || t < min)) {
        min = t;
    }

    t = sup_sweep_timeout(now);
    if (t >= 0 && (min < 0 || t < min)) {
        min = t;
    }

    t = sup_purge_timeout(now);
    if (t >= 0 && (min < 0 || t < min)) {
        min = t;
    }

    t = sup_ended_timeout(now);
    if (t >= 0 && (min < 0 || t < min)) {
        min = t;
    }

    return (min > INT_MAX) ? INT_MAX : (int) min;
}


/*
 * Serve until told to stop; returns the exit status, or 2 when the keeper
 * died (the caller then becomes the keeper: sup_keeper_succeed).
 */
static int
sup_loop(const sup_conf_t *conf, sup_state_t *st)
{
    int             rc, stop, timeout;
    int64_t         resume, now;
    size_t          i, n, cap;
    struct pollfd  *pfd, *p;

    pfd = NULL;
    cap = 0;
    resume = 0;
    stop = 0;

    while (!stop) {
        n = sup_client_count();

        if (SUP_FIXED_FDS + n > cap) {
            cap = (SUP_FIXED_FDS + n) * 2;

            p = realloc(pfd, cap * sizeof(struct pollfd));
            if (p == NULL) {
                wk_log("cannot grow the poll set to %zu entries", cap);
                free(pfd);
                return 1;
            }

            pfd = p;
        }

        now = wk_msec();

        if (resume != 0 && resume <= now) {
            resume = 0;
        }

        pfd[0].fd = st->sigfd;
        pfd[0].events = POLLIN;
        pfd[1].fd = conf->parent_fd;
        pfd[1].events = POLLIN;
        pfd[2].fd = (resume != 0) ? -1 : st->listen_fd;
        pfd[2].events = POLLIN;
        pfd[3].fd = sup_zygote_fd();
        pfd[3].events = POLLIN;
        pfd[4].fd = sup_adopt_fd();
        pfd[4].events = POLLIN;

        timeout = sup_timeout(now, resume);

        for (i = 0; i < n; i++) {
            sup_client_pollfd(i, &pfd[SUP_FIXED_FDS + i]);
        }

        for (i = 0; i < SUP_FIXED_FDS; i++) {
            pfd[i].revents = 0;
        }

        rc = poll(pfd, SUP_FIXED_FDS + n, timeout);

        if (rc == -1) {
            if (errno == EINTR) {
                continue;
            }

            wk_log("poll() failed: %s", strerror(errno));
            free(pfd);
            return 1;
        }

        /*
         * The zygote's answers first, whatever poll said: an answer naming
         * a session is then always seen before that session's exit.
         */
        sup_zygote_event(conf);

        if (pfd[0].revents) {
            stop = sup_signal_read(conf, st->sigfd);
        }

        if (pfd[1].revents && sup_parent_gone(conf->parent_fd,
                                              pfd[1].revents))
        {
            stop = 1;
        }

        if (stop) {
            break;
        }

        if (pfd[4].revents) {
            sup_adopt_event(conf);
        }

        now = wk_msec();
        sup_zygote_timer(conf, now);
        sup_pool_timer(conf, now);
        sup_sweep_timer(conf, now);
        sup_purge_timer(conf, now);
        sup_ended_timer(conf, now);

        for (i = 0; i < n; i++) {
            sup_client_event(conf, i, pfd[SUP_FIXED_FDS + i].revents);
        }

        sup_client_sweep();

        if ((pfd[2].revents & POLLIN)
            && sup_client_accept(st->listen_fd) == -1)
        {
            resume = wk_msec() + SUP_ACCEPT_PAUSE_MS;
        }

        sup_pool_idle_work(conf);
    }

    free(pfd);

    return (stop == 2) ? 2 : 0;
}


static void
sup_shutdown(const sup_conf_t *conf, sup_state_t *st)
{
    int            rc;
    int64_t        deadline, now, left, wait;
    size_t         left_n;
    struct stat    sb;
    struct pollfd  pfd[2];

    sup_client_close_all();

    if (sup_session_count() > 0) {
        wk_log("killing %zu sessions", sup_session_count());
    }

    sup_zygote_stop();
    sup_pool_kill_all(conf);
    sup_kill_all(conf);

    deadline = wk_msec() + SUP_REAP_WAIT_MS;

    for ( ;; ) {
        sup_reap(conf);
        sup_adopt_event(conf);
        sup_purge_timer(conf, wk_msec());

        left_n = sup_unreaped();
        if (left_n == 0) {
            break;
        }

        now = wk_msec();
        left = deadline - now;
        if (left <= 0) {
            wk_log("%zu processes or purges did not end after SIGKILL",
                   left_n);
            break;
        }

        /* the purges' next scan, if it comes first */
        wait = sup_purge_timeout(now);
        if (wait < 0 || wait > left) {
            wait = left;
        }

        pfd[0].fd = st->sigfd;
        pfd[0].events = POLLIN;
        pfd[0].revents = 0;
        pfd[1].fd = sup_adopt_fd();
        pfd[1].events = POLLIN;
        pfd[1].revents = 0;

        rc = poll(pfd, 2, (int) wait);
        if (rc == -1 && errno != EINTR) {
            wk_log("poll() failed: %s", strerror(errno));
            break;
        }

        if (rc > 0 && pfd[0].revents) {
            (void) sup_signal_read(conf, st->sigfd);
        }
    }

    sup_purge_give_up();
    sup_jail_teardown(conf);
    sup_session_free_all();
    sup_pool_free_all();
    sup_journal_remove(conf);

    if (st->listen_fd != -1 && close(st->listen_fd) == -1) {
        wk_log("close(listener) failed: %s", strerror(errno));
    }

    /* unlink the socket only if it is still ours */
    if (lstat(st->sock_path, &sb) == 0 && sb.st_ino == st->listen_ino
        && sb.st_dev == st->listen_dev)
    {
        (void) sup_fs_unlink(st->sock_path);
    }

    (void) sup_fs_unlink(st->pid_path);

    if (st->sigfd != -1 && close(st->sigfd) == -1) {
        wk_log("close(signalfd) failed: %s", strerror(errno));
    }
}
