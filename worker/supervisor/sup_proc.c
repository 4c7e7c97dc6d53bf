/*
 * sup_proc.c: what the supervisor and the keeper learn about processes
 * that are not (or no longer) their children: /proc/<pid>/stat (state,
 * parent, process group, start time, name), the uids in
 * /proc/<pid>/status, whether a zombie still has threads, and pidfds; and
 * which of their children has exited, before it is reaped.  A pid alone
 * can be reused; a pid with its start time names one process, and a
 * pidfd opened while that pair matched keeps naming it.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sup.h"
#include "wk_log.h"


#define SUP_PROC_BUF  1024    /* the start of a stat or status file */


static int sup_proc_read(pid_t pid, const char *file, char *buf);


/*
 * The first SUP_PROC_BUF - 1 bytes of /proc/<pid>/<file> into buf, NUL
 * terminated.  Returns 0, or -1 (errno ENOENT: no such process).
 */
static int
sup_proc_read(pid_t pid, const char *file, char *buf)
{
    int      fd;
    ssize_t  n;
    char     path[64];

    (void) snprintf(path, sizeof(path), "/proc/%ld/%s", (long) pid, file);

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        return -1;
    }

    do {
        n = read(fd, buf, SUP_PROC_BUF - 1);
    } while (n == -1 && errno == EINTR);

    (void) close(fd);

    if (n <= 0) {
        errno = ENOENT;    /* gone between open and read */
        return -1;
    }

    buf[n] = '\0';

    return 0;
}


int
sup_proc_stat(pid_t pid, sup_proc_t *p)
{
    int                 i;
    char               *s, *e, *end;
    ssize_t             n;
    unsigned long long  v;
    char                buf[SUP_PROC_BUF];

    if (sup_proc_read(pid, "stat", buf) == -1) {
        return -1;
    }

    /* "pid (comm) state ppid pgrp ..."; comm may hold spaces and ')' */
    s = strchr(buf, '(');
    e = strrchr(buf, ')');

    if (s == NULL || e == NULL || e < s || e[1] != ' ') {
        errno = EINVAL;
        return -1;
    }

    memset(p, 0, sizeof(sup_proc_t));

    n = e - s - 1;
    if (n > (ssize_t) sizeof(p->comm) - 1) {
        n = sizeof(p->comm) - 1;
    }

    memcpy(p->comm, s + 1, (size_t) n);

    s = e + 2;
    p->state = *s;

    /*
     * Fields 4 (ppid) on are numbers, some of them signed (priority,
     * nice: strtoull takes the sign and wraps, which does no harm here);
     * the start time is field 22.
     */
    s++;

    for (i = 4; i <= 22; i++) {
        v = strtoull(s, &end, 10);

        if (end == s) {
            errno = EINVAL;
            return -1;
        }

        if (i == 4) {
            p->ppid = (pid_t) v;

        } else if (i == 5) {
            p->pgrp = (pid_t) v;

        } else if (i == 6) {
            p->sid = (pid_t) v;

        } else if (i == 22) {
            p->start = v;
        }

        s = end;
    }

    return 0;
}


int
sup_proc_status(pid_t pid, char *state, uid_t uid[4])
{
    int            i;
    char          *s, *end;
    unsigned long  v;
    char           buf[SUP_PROC_BUF];

    if (sup_proc_read(pid, "status", buf) == -1) {
        return -1;
    }

    /* "State:\tS (sleeping)\n" comes before "Uid:\tR\tE\tS\tF\n" */
    s = strstr(buf, "\nState:\t");
    if (s == NULL) {
        errno = EINVAL;
        return -1;
    }

    *state = s[sizeof("\nState:\t") - 1];

    s = strstr(s, "\nUid:");
    if (s == NULL) {
        errno = EINVAL;
        return -1;
    }

    s += sizeof("\nUid:") - 1;

    for (i = 0; i < 4; i++) {
        v = strtoul(s, &end, 10);

        if (end == s) {
            errno = EINVAL;
            return -1;
        }

        uid[i] = (uid_t) v;
        s = end;
    }

    return 0;
}


int
sup_proc_zombie_runs(pid_t pid)
{
    int             n;
    DIR            *d;
    struct dirent  *de;
    char            path[64];

    (void) snprintf(path, sizeof(path), "/proc/%ld/task", (long) pid);

    d = opendir(path);
    if (d == NULL) {
        return 0;
    }

    n = 0;

    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] != '.') {
            n++;
        }
    }

    (void) closedir(d);

    return n > 1;
}


int
sup_proc_pidfd(pid_t pid, uint64_t start)
{
    int         fd;
    sup_proc_t  p;

    if (pid <= 0) {
        errno = ESRCH;
        return -1;
    }

    fd = pidfd_open(pid, 0);
    if (fd == -1) {
        if (errno != ESRCH) {
            wk_log("pidfd_open(%ld) failed: %s", (long) pid, strerror(errno));
        }

        return -1;
    }

    /* the process fd names started at start, and is not a zombie */
    if (sup_proc_stat(pid, &p) == -1 || p.state == 'Z' || p.state == 'X'
        || (start != 0 && p.start != start))
    {
        (void) close(fd);
        errno = ESRCH;
        return -1;
    }

    return fd;
}


void
sup_proc_kill(pid_t pid, const char *what)
{
    if (pid <= 0) {
        return;
    }

    if (kill(-pid, SIGKILL) == -1 && errno != ESRCH) {
        wk_log("%s: kill(-%ld, SIGKILL) failed: %s", what, (long) pid,
               strerror(errno));
    }

    if (kill(pid, SIGKILL) == -1 && errno != ESRCH) {
        wk_log("%s: kill(%ld, SIGKILL) failed: %s", what, (long) pid,
               strerror(errno));
    }
}


pid_t
sup_proc_exited(void)
{
    siginfo_t  si;

    for ( ;; ) {
        memset(&si, 0, sizeof(siginfo_t));

        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == 0) {
            return si.si_pid;
        }

        if (errno == EINTR) {
            continue;
        }

        if (errno != ECHILD) {
            wk_log("waitid() failed: %s", strerror(errno));
        }

        return -1;
    }
}


int
sup_proc_reap(pid_t pid, int *status)
{
    pid_t  rc;

    do {
        rc = waitpid(pid, status, 0);
    } while (rc == -1 && errno == EINTR);

    if (rc == -1) {
        wk_log("waitpid(%ld) failed: %s", (long) pid, strerror(errno));
        return -1;
    }

    return 0;
}
