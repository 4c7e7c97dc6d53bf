/*
 * bs_proc.c: the processes of a bash session.
 *
 * This process is a child subreaper, so everything the shell starts stays
 * among its descendants, orphans and daemons included; they are found by
 * scanning /proc (pid, parent, process group, session of each process).
 * With job control on (set -m), each job the shell starts gets a process
 * group of its own, background jobs too, and the children of a job stay
 * in its group.  So the processes of a run are the descendants whose
 * process group did not exist when the run began (bs_proc_snapshot), plus
 * those in the shell's own group (command substitutions and the like):
 * a background job started by an earlier run survives a later run's
 * interrupt, one started by the interrupted run does not.
 *
 * The sentinel covers the death of this process, SIGKILL included: a fork
 * that waits on a pipe only this process holds and, at EOF, SIGKILLs every
 * process in the shell's session (its id is the shell's pid) until none is
 * left.  The shell itself also has a parent-death SIGKILL.  A process that
 * left the shell's session (setsid) escapes the sentinel, but not
 * bs_proc_kill_all() at a normal end.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bs_session.h"
#include "wk_log.h"
#include "wk_proc.h"


#define BS_PROC_DEPTH         256     /* longest parent chain followed */
#define BS_PROC_SENTINEL_MAX  200     /* kill rounds, 10 ms apart */


static int bs_proc_scan(bs_session_t *s);
static int bs_proc_stat(pid_t pid, bs_proc_t *p);
static int bs_proc_cmp(const void *a, const void *b);
static const bs_proc_t *bs_proc_find(const bs_session_t *s, pid_t pid);
static int bs_proc_mine(const bs_session_t *s, const bs_proc_t *p);
static int bs_proc_of_run(const bs_session_t *s, const bs_proc_t *p);
static int bs_proc_quiet(const bs_session_t *s);
static int bs_proc_children(pid_t pid, pid_t *out, int max);
static int bs_proc_push(pid_t **a, size_t *n, size_t *cap, pid_t v);
static int bs_proc_has(const pid_t *a, size_t n, pid_t v);
static void bs_proc_sentinel_main(bs_session_t *s, int fd)
    __attribute__((noreturn));


int
bs_proc_snapshot(bs_session_t *s)
{
    size_t            i;
    const bs_proc_t  *p;

    s->nold = 0;

    if (bs_proc_quiet(s)) {
        return 0;
    }

    if (bs_proc_scan(s) != 0) {
        return -1;
    }

    for (i = 0; i < s->nprocs; i++) {
        p = &s->procs[i];

        if (!bs_proc_mine(s, p) || p->pgid == s->shell_pid
            || bs_proc_has(s->old_pgids, s->nold, p->pgid))
        {
            continue;
        }

        if (bs_proc_push(&s->old_pgids, &s->nold, &s->old_cap, p->pgid)
            != 0)
        {
            wk_log("session %s: out of memory", s->id);
            return -1;
        }
    }

    return 0;
}


int
bs_proc_signal_run(bs_session_t *s, int sig, int once)
{
    int               n;
    size_t            i, ngroups;
    pid_t             groups[64];
    const bs_proc_t  *p;

    if (bs_proc_scan(s) != 0) {
        return -1;
    }

    n = 0;
    ngroups = 0;

    for (i = 0; i < s->nprocs; i++) {
        p = &s->procs[i];

        if (p->state == 'Z' || !bs_proc_of_run(s, p)) {
            continue;
        }

        if (once) {
            if (bs_proc_has(s->hit, s->nhit, p->pid)) {
                continue;
            }

            if (bs_proc_push(&s->hit, &s->nhit, &s->hit_cap, p->pid) != 0) {
                wk_log("session %s: out of memory", s->id);
                return -1;
            }
        }

        if (kill(p->pid, sig) == -1 && errno != ESRCH) {
            wk_log("session %s: kill(%d, %d) failed: %s", s->id,
                   (int) p->pid, sig, strerror(errno));
            continue;
        }

        n++;

        /* the whole group too: children forked since the scan */
        if (once || p->pgid == s->shell_pid
            || bs_proc_has(groups, ngroups, p->pgid))
        {
            continue;
        }

        if (ngroups < sizeof(groups) / sizeof(pid_t)) {
            groups[ngroups++] = p->pgid;
        }

        if (kill(-p->pgid, sig) == -1 && errno != ESRCH) {
            wk_log("session %s: kill(-%d, %d) failed: %s", s->id,
                   (int) p->pgid, sig, strerror(errno));
        }
    }

    return n;
}


void
bs_proc_stop_reset(bs_session_t *s)
{
    s->nhit = 0;
}


void
bs_proc_kill_all(bs_session_t *s)
{
    size_t            i;
    const bs_proc_t  *p;

    if (s->shell_pid > 0 && !s->shell_exited) {
        (void) kill(s->shell_pid, SIGKILL);
    }

    if (bs_proc_scan(s) != 0) {
        return;
    }

    for (i = 0; i < s->nprocs; i++) {
        p = &s->procs[i];

        if (p->pid != s->sentinel_pid && p->state != 'Z'
            && bs_proc_mine(s, p))
        {
            (void) kill(p->pid, SIGKILL);
        }
    }
}


/*
 * Whether the shell can have left anything running: this process has no
 * children but the shell and the sentinel, and the shell has none.  Two
 * small reads instead of a scan of /proc, so that a run costs no scan
 * unless background processes exist.  Any doubt answers 0.
 */
static int
bs_proc_quiet(const bs_session_t *s)
{
    int    i, n;
    pid_t  kids[4];

    n = bs_proc_children(s->pid, kids, 4);
    if (n < 0 || n > 2) {
        return 0;
    }

    for (i = 0; i < n; i++) {
        if (kids[i] != s->shell_pid && kids[i] != s->sentinel_pid) {
            return 0;
        }
    }

    return bs_proc_children(s->shell_pid, kids, 4) == 0;
}


/*
 * The children of pid's main thread (/proc/PID/task/PID/children): up to
 * max of them in out; returns how many there are (possibly more than max),
 * or -1.  Our processes are single-threaded, bash included.
 */
static int
bs_proc_children(pid_t pid, pid_t *out, int max)
{
    int      fd, n;
    char     path[64], buf[512], *p, *end;
    long     v;
    ssize_t  r;

    (void) snprintf(path, sizeof(path), "/proc/%d/task/%d/children",
                    (int) pid, (int) pid);

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        return -1;
    }

    do {
        r = read(fd, buf, sizeof(buf) - 1);
    } while (r == -1 && errno == EINTR);

    (void) close(fd);

    if (r < 0 || (size_t) r == sizeof(buf) - 1) {
        return -1;
    }

    buf[r] = '\0';
    n = 0;

    for (p = buf; *p != '\0'; p = end) {
        v = strtol(p, &end, 10);

        if (end == p) {
            break;
        }

        if (n < max) {
            out[n] = (pid_t) v;
        }

        n++;
    }

    return n;
}


/*
 * Read every process of /proc into s->procs, sorted by pid.  Processes
 * that vanish meanwhile are skipped.  Returns 0 or -1 (logged).
 */
static int
bs_proc_scan(bs_session_t *s)
{
    DIR            *dir;
    long            v;
    char           *end;
    size_t          cap;
    bs_proc_t      *procs;
    struct dirent  *de;

    dir = opendir("/proc");
    if (dir == NULL) {
        wk_log("session %s: opendir(\"/proc\") failed: %s", s->id,
               strerror(errno));
        return -1;
    }

    s->nprocs = 0;

    for ( ;; ) {
        errno = 0;
        de = readdir(dir);

        if (de == NULL) {
            break;
        }

        if (de->d_name[0] < '1' || de->d_name[0] > '9') {
            continue;
        }

        v = strtol(de->d_name, &end, 10);
        if (*end != '\0' || v <= 0) {
            continue;
        }

        if (s->nprocs == s->procs_cap) {
            cap = s->procs_cap ? 2 * s->procs_cap : 256;
            procs = realloc(s->procs, cap * sizeof(bs_proc_t));

            if (procs == NULL) {
                wk_log("session %s: out of memory scanning /proc", s->id);
                (void) closedir(dir);
                return -1;
            }

            s->procs = procs;
            s->procs_cap = cap;
        }

        if (bs_proc_stat((pid_t) v, &s->procs[s->nprocs]) == 0) {
            s->nprocs++;
        }
    }

    if (errno != 0) {
        wk_log("session %s: readdir(\"/proc\") failed: %s", s->id,
               strerror(errno));
        (void) closedir(dir);
        return -1;
    }

    (void) closedir(dir);

    qsort(s->procs, s->nprocs, sizeof(bs_proc_t), bs_proc_cmp);

    return 0;
}


/*
 * Parse /proc/PID/stat: "pid (comm) state ppid pgrp session ...", where
 * comm may hold spaces and parentheses (hence the last ')').  Returns 0,
 * or -1 if the process is gone or the line is not understood.
 */
static int
bs_proc_stat(pid_t pid, bs_proc_t *p)
{
    int      fd, ppid, pgid, sid;
    char     path[48], buf[1024], state, *q;
    ssize_t  r;

    (void) snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        return -1;
    }

    do {
        r = read(fd, buf, sizeof(buf) - 1);
    } while (r == -1 && errno == EINTR);

    (void) close(fd);

    if (r <= 0) {
        return -1;
    }

    buf[r] = '\0';

    q = strrchr(buf, ')');
    if (q == NULL
        || sscanf(q + 1, " %c %d %d %d", &state, &ppid, &pgid, &sid) != 4)
    {
        return -1;
    }

    p->pid = pid;
    p->ppid = (pid_t) ppid;
    p->pgid = (pid_t) pgid;
    p->sid = (pid_t) sid;
    p->state = state;

    return 0;
}


static int
bs_proc_cmp(const void *a, const void *b)
{
    pid_t  x, y;

    x = ((const bs_proc_t *) a)->pid;
    y = ((const bs_proc_t *) b)->pid;

    return (x > y) - (x < y);
}


static const bs_proc_t *
bs_proc_find(const bs_session_t *s, pid_t pid)
{
    bs_proc_t  key;

    key.pid = pid;

    return bsearch(&key, s->procs, s->nprocs, sizeof(bs_proc_t),
                   bs_proc_cmp);
}


/* Whether p descends from this process. */
static int
bs_proc_mine(const bs_session_t *s, const bs_proc_t *p)
{
    int               depth;
    pid_t             ppid;
    const bs_proc_t  *q;

    ppid = p->ppid;

    for (depth = 0; depth < BS_PROC_DEPTH; depth++) {
        if (ppid == s->pid) {
            return 1;
        }

        if (ppid <= 1) {
            return 0;
        }

        q = bs_proc_find(s, ppid);
        if (q == NULL) {
            return 0;
        }

        ppid = q->ppid;
    }

    return 0;
}


/* Whether p is one of the current run's processes (see the top). */
static int
bs_proc_of_run(const bs_session_t *s, const bs_proc_t *p)
{
    if (p->pid == s->shell_pid || p->pid == s->sentinel_pid
        || !bs_proc_mine(s, p))
    {
        return 0;
    }

    return p->pgid == s->shell_pid
           || !bs_proc_has(s->old_pgids, s->nold, p->pgid);
}


static int
bs_proc_push(pid_t **a, size_t *n, size_t *cap, pid_t v)
{
    size_t   c;
    pid_t   *p;

    if (*n == *cap) {
        c = *cap ? 2 * *cap : 16;
        p = realloc(*a, c * sizeof(pid_t));

        if (p == NULL) {
            return -1;
        }

        *a = p;
        *cap = c;
    }

    (*a)[(*n)++] = v;

    return 0;
}


static int
bs_proc_has(const pid_t *a, size_t n, pid_t v)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (a[i] == v) {
            return 1;
        }
    }

    return 0;
}


int
bs_proc_sentinel(bs_session_t *s)
{
    int    fds[2];
    pid_t  pid;

    if (pipe2(fds, O_CLOEXEC) == -1) {
        wk_log("session %s: pipe2() failed: %s", s->id, strerror(errno));
        return -1;
    }

    pid = fork();

    if (pid == -1) {
        wk_log("session %s: fork(sentinel) failed: %s", s->id,
               strerror(errno));
        (void) close(fds[0]);
        (void) close(fds[1]);
        return -1;
    }

    if (pid == 0) {
        bs_proc_sentinel_main(s, fds[0]);
    }

    if (close(fds[0]) == -1) {
        wk_log("close(%d) failed: %s", fds[0], strerror(errno));
        return -1;
    }

    s->sentinel_pid = pid;
    s->sentinel_fd = fds[1];

    return 0;
}


/*
 * The sentinel: every descriptor but fds 0-2 and its end of the pipe
 * closed, the signals a process group may get (SIGINT, SIGTERM, SIGHUP)
 * ignored, so that it outlives this process whichever way it ends; then
 * it waits for EOF and empties the shell's session.
 */
static void
bs_proc_sentinel_main(bs_session_t *s, int fd)
{
    int               round, found;
    char              c;
    size_t            i;
    ssize_t           r;
    sigset_t          none;
    struct sigaction  sa;
    struct timespec   ts;

    wk_proc_close_range(3, (unsigned) fd - 1);
    wk_proc_close_range((unsigned) fd + 1, ~0U);

    memset(&sa, 0, sizeof(struct sigaction));
    sa.sa_handler = SIG_IGN;

    if (sigemptyset(&sa.sa_mask) == -1 || sigemptyset(&none) == -1
        || sigaction(SIGINT, &sa, NULL) == -1
        || sigaction(SIGTERM, &sa, NULL) == -1
        || sigaction(SIGHUP, &sa, NULL) == -1
        || sigprocmask(SIG_SETMASK, &none, NULL) == -1)
    {
        wk_log("session %s: sentinel: cannot set signals: %s", s->id,
               strerror(errno));
        _exit(1);
    }

    (void) prctl(PR_SET_NAME, "pyrepl-sentinel", 0, 0, 0);

    do {
        r = read(fd, &c, 1);
    } while (r == -1 && errno == EINTR);

    /* this process is gone (or wrote, which it never does): clean up */

    ts.tv_sec = 0;
    ts.tv_nsec = 10 * 1000 * 1000;

    for (round = 0; round < BS_PROC_SENTINEL_MAX; round++) {
        if (bs_proc_scan(s) != 0) {
            _exit(1);
        }

        found = 0;

        for (i = 0; i < s->nprocs; i++) {
            if (s->procs[i].sid == s->shell_pid && s->procs[i].state != 'Z'
                && kill(s->procs[i].pid, SIGKILL) == 0)
            {
                found++;
            }
        }

        if (found == 0) {
            _exit(0);
        }

        (void) nanosleep(&ts, NULL);
    }

    wk_log("session %s: sentinel: processes of the shell's session are "
           "still alive after %d rounds of SIGKILL", s->id,
           BS_PROC_SENTINEL_MAX);
    _exit(1);
}


int
bs_proc_reap(bs_session_t *s)
{
    int                      st;
    pid_t                    pid;
    ssize_t                  r;
    struct signalfd_siginfo  si;

    for ( ;; ) {
        r = read(s->sig_fd, &si, sizeof(si));

        if (r == -1 && errno == EINTR) {
            continue;
        }

        if (r == -1 && errno != EAGAIN) {
            wk_log("session %s: read(signalfd) failed: %s", s->id,
                   strerror(errno));
            return -1;
        }

        if (r != (ssize_t) sizeof(si)) {
            break;
        }
    }

    for ( ;; ) {
        pid = waitpid(-1, &st, WNOHANG);

        if (pid == -1 && errno == EINTR) {
            continue;
        }

        if (pid <= 0) {
            /* 0: none has exited; ECHILD: no children left */
            return 0;
        }

        if (pid == s->shell_pid) {
            s->shell_exited = 1;
            s->shell_status = st;
            continue;
        }

        if (pid == s->sentinel_pid) {
            wk_log("session %s: the sentinel %d exited (status %#x); "
                   "processes may outlive this one if it is killed", s->id,
                   (int) pid, (unsigned) st);
            s->sentinel_pid = 0;
        }
    }
}
