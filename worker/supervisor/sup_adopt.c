/*
 * sup_adopt.c: a supervisor that replaces a dead one takes over its
 * sessions.  The processes of the old supervisor are not our children:
 * orphaned, they were reparented to the keeper (a child subreaper), which
 * reaps them.  So an adopted session is watched through a pidfd, opened
 * only while the pid still names the process the journal recorded (same
 * start time); the pidfd becomes readable when the process exits, and
 * signalling through it (or its process group, while it is known to run)
 * cannot hit a stranger that reused the pid.
 *
 * At start-up (sup_adopt), from DIR/sessions (sup_journal.c):
 *   - a session whose process runs is adopted LIVE: the table knows its
 *     pid again, a kill request or a shutdown kills it, its exit is
 *     noticed;
 *   - a session whose process is gone is DEAD: its socket is unlinked, so
 *     nginx reports it crashed; its working directory stays until nginx
 *     deletes the session, as for any crash;
 *   - a pool process is killed, its socket and directory removed: the new
 *     supervisor forks its own pool.
 * Then what the journal may have missed (the old supervisor died between
 * a fork or a rename and its journal line) is cleaned up: processes named
 * SUP_SESSION_COMM that are the keeper's children, work in our directory
 * and were not adopted are killed; pool-* sockets and directories, and
 * session sockets of sessions not adopted, are removed.  Last, the
 * journal is rewritten from the table.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/pidfd.h>
#include <unistd.h>

#include "sup.h"
#include "wk_log.h"


#define SUP_ADOPT_EVENTS  64


static void sup_adopt_session(const sup_conf_t *conf, const sup_jrec_t *r);
static void sup_adopt_pool(const sup_conf_t *conf, const sup_jrec_t *r);
static int sup_adopt_watch(int pidfd);
static void sup_adopt_sweep_procs(const sup_conf_t *conf);
static void sup_adopt_sweep_dirs(const sup_conf_t *conf);
static int sup_adopt_is_id(const char *name, size_t len);


static int  sup_adopt_epfd = -1;


void
sup_adopt(const sup_conf_t *conf)
{
    size_t       i, n;
    sup_jrec_t  *recs;

    if (sup_journal_load(conf, &recs, &n) == -1) {
        recs = NULL;
        n = 0;
    }

    for (i = 0; i < n; i++) {
        if (recs[i].kind == SUP_J_SESSION) {
            sup_adopt_session(conf, &recs[i]);

        } else {
            sup_adopt_pool(conf, &recs[i]);
        }
    }

    free(recs);

    sup_adopt_sweep_procs(conf);
    sup_adopt_sweep_dirs(conf);

    (void) sup_journal_rewrite(conf);
}


static void
sup_adopt_session(const sup_conf_t *conf, const sup_jrec_t *r)
{
    int             fd;
    sup_proc_t      p;
    sup_session_t  *s;
    char            sock[PATH_MAX], dir[PATH_MAX];

    if (sup_session_find(r->name) != NULL) {
        return;
    }

    fd = sup_proc_pidfd(r->pid, r->start);

    if (fd != -1 && sup_adopt_watch(fd) == -1) {
        (void) close(fd);
        fd = -1;
    }

    s = sup_session_add(r->name, r->pid);
    if (s == NULL) {
        if (fd != -1) {
            (void) close(fd);
        }

        return;
    }

    if (fd != -1) {
        s->start = r->start;
        s->pidfd = fd;
        s->adopted = 1;

        /* moved by a rollback: not the group leader any more */
        if (sup_proc_stat(r->pid, &p) == 0) {
            s->pgid = p.pgrp;
        }

        wk_log("session %s (pid %ld) adopted", s->id, (long) s->pid);
        return;
    }

    wk_log("session %s (pid %ld) died while no supervisor ran: crashed",
           s->id, (long) r->pid);

    s->pid = 0;
    s->state = SUP_S_DEAD;

    if (sup_paths(conf, s->id, sock, dir) == 0) {
        (void) sup_fs_unlink(sock);
    }
}


static void
sup_adopt_pool(const sup_conf_t *conf, const sup_jrec_t *r)
{
    int   fd;
    char  sock[PATH_MAX], dir[PATH_MAX];

    fd = sup_proc_pidfd(r->pid, r->start);

    if (fd != -1) {
        sup_proc_kill(r->pid, "old pool process");

        if (pidfd_send_signal(fd, SIGKILL, NULL, 0) == -1
            && errno != ESRCH)
        {
            wk_log("pidfd_send_signal(%ld) failed: %s", (long) r->pid,
                   strerror(errno));
        }

        (void) close(fd);
    }

    if (sup_paths(conf, r->name, sock, dir) == 0) {
        (void) sup_fs_unlink(sock);
        (void) sup_fs_rmtree(AT_FDCWD, dir);
    }
}


static int
sup_adopt_watch(int pidfd)
{
    struct epoll_event  ev;

    if (sup_adopt_epfd == -1) {
        sup_adopt_epfd = epoll_create1(EPOLL_CLOEXEC);
        if (sup_adopt_epfd == -1) {
            wk_log("epoll_create1() failed: %s", strerror(errno));
            return -1;
        }
    }

    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.fd = pidfd;

    if (epoll_ctl(sup_adopt_epfd, EPOLL_CTL_ADD, pidfd, &ev) == -1) {
        wk_log("epoll_ctl(ADD) failed: %s", strerror(errno));
        return -1;
    }

    return 0;
}


/*
 * Kill session processes the journal does not name: the keeper's
 * children (orphans, like every process of a dead supervisor) that carry
 * the session name and work in our directory, and are not adopted.
 */
static void
sup_adopt_sweep_procs(const sup_conf_t *conf)
{
    int             fd;
    pid_t           pid, keeper;
    size_t          i, n, wlen;
    ssize_t         len;
    DIR            *d;
    sup_proc_t      p;
    struct dirent  *de;
    sup_session_t  *s;
    char            path[64], cwd[PATH_MAX];

    keeper = getppid();
    if (keeper <= 1) {
        return;
    }

    d = opendir("/proc");
    if (d == NULL) {
        wk_log("opendir(\"/proc\") failed: %s", strerror(errno));
        return;
    }

    wlen = strlen(conf->workdir);

    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] < '1' || de->d_name[0] > '9') {
            continue;
        }

        pid = (pid_t) strtol(de->d_name, NULL, 10);

        if (pid == getpid() || sup_proc_stat(pid, &p) == -1
            || p.ppid != keeper || p.state == 'Z'
            || strcmp(p.comm, SUP_SESSION_COMM) != 0)
        {
            continue;
        }

        (void) snprintf(path, sizeof(path), "/proc/%ld/cwd", (long) pid);

        len = readlink(path, cwd, sizeof(cwd) - 1);
        if (len == -1) {
            continue;
        }

        cwd[len] = '\0';

        if ((size_t) len <= wlen || strncmp(cwd, conf->workdir, wlen) != 0
            || cwd[wlen] != '/')
        {
            continue;
        }

        n = sup_session_count();

        for (i = 0; i < n; i++) {
            s = sup_session_at(i);
            if (s->adopted && s->pid == pid) {
                break;
            }
        }

        if (i < n) {
            continue;
        }

        fd = sup_proc_pidfd(pid, p.start);
        if (fd == -1) {
            continue;
        }

        /* (its cwd is not logged: a session chose its name) */
        wk_log("killing session process %ld that no session owns",
               (long) pid);

        sup_proc_kill(pid, "unowned session process");
        (void) close(fd);
    }

    (void) closedir(d);
}


/* Remove pool sockets and directories, and sockets of no live session. */
static void
sup_adopt_sweep_dirs(const sup_conf_t *conf)
{
    size_t           len, plen;
    DIR             *d;
    struct dirent   *de;
    sup_session_t   *s;
    char             path[PATH_MAX], id[PYREPL_ID_LEN + 1];

    plen = sizeof(SUP_POOL_PREFIX) - 1;

    d = opendir(conf->socket_dir);
    if (d != NULL) {
        while ((de = readdir(d)) != NULL) {
            len = strlen(de->d_name);

            if (len <= sizeof(PYREPL_SESSION_SUFFIX) - 1
                || strcmp(de->d_name + len
                          - (sizeof(PYREPL_SESSION_SUFFIX) - 1),
                          PYREPL_SESSION_SUFFIX) != 0)
            {
                continue;
            }

            if (strncmp(de->d_name, SUP_POOL_PREFIX, plen) != 0) {
                if (!sup_adopt_is_id(de->d_name, len - 5)) {
                    continue;
                }

                memcpy(id, de->d_name, PYREPL_ID_LEN);
                id[PYREPL_ID_LEN] = '\0';

                s = sup_session_find(id);
                if (s != NULL && s->state == SUP_S_LIVE) {
                    continue;
                }
            }

            if (sup_fs_path(path, sizeof(path), conf->socket_dir,
                            de->d_name, "") == 0)
            {
                wk_log("removing the stale socket \"%s\"", path);
                (void) sup_fs_unlink(path);
            }
        }

        (void) closedir(d);
    }

    d = opendir(conf->workdir);
    if (d != NULL) {
        while ((de = readdir(d)) != NULL) {
            if (strncmp(de->d_name, SUP_POOL_PREFIX, plen) == 0) {
                (void) sup_fs_rmtree(dirfd(d), de->d_name);
            }
        }

        (void) closedir(d);
    }
}


static int
sup_adopt_is_id(const char *name, size_t len)
{
    return pyrepl_id_valid((const unsigned char *) name, len);
}


int
sup_adopt_fd(void)
{
    return sup_adopt_epfd;
}


void
sup_adopt_event(const sup_conf_t *conf)
{
    int                 i, n;
    sup_session_t      *s;
    struct epoll_event  evs[SUP_ADOPT_EVENTS];

    if (sup_adopt_epfd == -1) {
        return;
    }

    do {
        n = epoll_wait(sup_adopt_epfd, evs, SUP_ADOPT_EVENTS, 0);

        if (n == -1) {
            if (errno != EINTR) {
                wk_log("epoll_wait() failed: %s", strerror(errno));
            }

            return;
        }

        for (i = 0; i < n; i++) {
            s = sup_session_find_pidfd(evs[i].data.fd);

            if (s == NULL) {
                (void) epoll_ctl(sup_adopt_epfd, EPOLL_CTL_DEL,
                                 evs[i].data.fd, NULL);
                (void) close(evs[i].data.fd);
                continue;
            }

            sup_adopt_forget(s);

            if (s->state == SUP_S_LIVE) {
                /* its exit status went to the keeper, which logs it */
                wk_log("session %s (pid %ld) crashed: the adopted process "
                       "exited", s->id, (long) s->pid);

                sup_jail_gone(conf, s);
                sup_jail_purged(conf, s->pgid);
                sup_dead(conf, s);
                s->adopted = 0;
                s->pid = 0;
                continue;
            }

            /* KILLED: its files go with the purge (sup_lifecycle.c) */
            sup_jail_purged(conf, s->pgid);
            sup_session_remove(s);
        }

    } while (n == SUP_ADOPT_EVENTS);
}


void
sup_adopt_kill(sup_session_t *s)
{
    struct pollfd  pfd;

    if (s->pidfd == -1) {
        return;
    }

    pfd.fd = s->pidfd;
    pfd.events = POLLIN;
    pfd.revents = 0;

    /* still running: its process group id cannot have been reused */
    if (poll(&pfd, 1, 0) == 0 && kill(-s->pgid, SIGKILL) == -1
        && errno != ESRCH)
    {
        wk_log("session %s: kill(-%ld, SIGKILL) failed: %s", s->id,
               (long) s->pgid, strerror(errno));
    }

    if (pidfd_send_signal(s->pidfd, SIGKILL, NULL, 0) == -1
        && errno != ESRCH)
    {
        wk_log("session %s: pidfd_send_signal() failed: %s", s->id,
               strerror(errno));
    }
}


int
sup_adopt_repid(sup_session_t *s, pid_t pid, uint64_t start)
{
    int  fd;

    fd = sup_proc_pidfd(pid, start);

    if (fd == -1 || sup_adopt_watch(fd) == -1) {
        if (fd != -1) {
            (void) close(fd);
        }

        return -1;
    }

    sup_adopt_forget(s);
    s->pidfd = fd;

    return 0;
}


void
sup_adopt_forget(sup_session_t *s)
{
    if (s->pidfd == -1) {
        return;
    }

    if (sup_adopt_epfd != -1) {
        (void) epoll_ctl(sup_adopt_epfd, EPOLL_CTL_DEL, s->pidfd, NULL);
    }

    (void) close(s->pidfd);
    s->pidfd = -1;
}
