/*
 * sup_lifecycle.c: the life of a session process as the supervisor sees
 * it, tying together the table, the pool, the spawner and the file
 * system.
 *
 *   create   with a zygote: a pool process is handed over (sup_pool.c),
 *            or the create waits for one; without one (or while it is
 *            given up): WORKDIR/<id> and DIR/<id>.sock are made, the
 *            process forked and exec'd.  Either way the entry is added
 *            LIVE and journaled.
 *   kill     the socket is unlinked (nginx sees the session gone at
 *            once), the process group gets SIGKILL, and the session is
 *            purged (sup_purge.c); the entry stays KILLED until reaped
 *            (or, adopted, until its pidfd says it exited).
 *   crash    (reaped while LIVE) the rest of its process group gets
 *            SIGKILL, the socket is unlinked so nginx's next connect fails
 *            and reports the session crashed, and its processes are purged
 *            (sup_purge.c) but not its files: the entry stays DEAD, with
 *            its working directory, until a kill.
 *   kill-all (shutdown) a kill of every entry.
 *
 * Every process the supervisor reaps is its child (fork+exec), or its
 * grandchild or great-grandchild reparented to it (it is a child
 * subreaper): the zygote, pool processes, sessions, and orphans of user
 * code.  A process group is only signalled while its leader is unreaped
 * (running or a zombie): that keeps the group id from being reused under
 * us.
 *
 * The sweep: what a session starts outside its process group (a bash
 * job, a daemon) is orphaned when the session dies and reparented to us.
 * Each session process is a session leader (setsid), so its descendants
 * carry its pid as their session id until they start a session of their
 * own.  SUP_SWEEP_MS after a session or an unknown child is reaped (and
 * at most once per SUP_SWEEP_EVERY_MS), the children of ours that are no
 * zygote, pool process or session, and whose session id is not a live
 * session's, are killed with their group; what they leave is swept in
 * turn when they are reaped.  A live session's orphans (its session id)
 * are left alone.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sup.h"
#include "wk_log.h"
#include "wk_time.h"


#define SUP_SWEEP_MS        20    /* after a reap, before the sweep */
#define SUP_SWEEP_EVERY_MS  250   /* at most one sweep (a /proc scan of */
                                  /* ~10 us per process) this often */


static int sup_id_busy(const char *id, sup_err_t *err);
static void sup_kill_group(sup_session_t *s);
static void sup_sweep_later(void);
static void sup_sweep(const sup_conf_t *conf);
static int sup_sweep_spares(const sup_conf_t *conf, pid_t pid,
    const sup_proc_t *p);


static int64_t        sup_sweep_at;     /* 0: no sweep due */
static int64_t        sup_sweep_last;
static unsigned long  sup_exec_seq;     /* a socket's name till renamed */


int
sup_paths(const sup_conf_t *conf, const char *name, char *sock, char *dir)
{
    if (sup_fs_path(sock, PATH_MAX, conf->socket_dir, name,
                    PYREPL_SESSION_SUFFIX) == -1
        || sup_fs_path(dir, PATH_MAX, conf->workdir, name, "") == -1)
    {
        return -1;
    }

    return 0;
}


int
sup_id_taken(const sup_conf_t *conf, const char *id, sup_err_t *err)
{
    struct stat  st;
    char         sock[PATH_MAX], dir[PATH_MAX];

    if (sup_id_busy(id, err)) {
        return 1;
    }

    if (sup_paths(conf, id, sock, dir) == -1) {
        SUP_ERR(err, "unavailable", "session paths are too long");
        return 1;
    }

    if (lstat(dir, &st) == 0) {
        /* left by a session not killed yet: never hand it to another */
        SUP_ERR(err, "conflict", "working directory of %s exists", id);
        return 1;
    }

    if (lstat(sock, &st) == 0) {
        wk_log("session %s: socket \"%s\" exists", id, sock);
        SUP_ERR(err, "conflict", "socket of %s exists", id);
        return 1;
    }

    return 0;
}


/* Whether id is in the table, waits for a pool process, or is purged. */
static int
sup_id_busy(const char *id, sup_err_t *err)
{
    if (sup_session_find(id) != NULL || sup_pool_waiting(id)) {
        SUP_ERR(err, "conflict", "session %s exists", id);
        return 1;
    }

    if (sup_purge_pending(id)) {
        SUP_ERR(err, "conflict", "session %s is still being removed", id);
        return 1;
    }

    return 0;
}


int
sup_create(const sup_conf_t *conf, sup_client_t *client, const char *id,
    int lang, pid_t *pid, sup_err_t *err)
{
    int  rc;

    if (client != NULL && sup_purge_pending(id)
        && sup_session_find(id) == NULL && !sup_pool_waiting(id))
    {
        /* a revive's kill and create: the create waits for the purge */
        return (sup_purge_wait(client, id, lang, err) == 0) ? 1 : -1;
    }

    if (sup_id_busy(id, err)) {
        return -1;
    }

    if (lang == SUP_LANG_PYTHON && conf->zygote && sup_zygote_usable()) {
        /* the fast path: its renames refuse to replace a leftover */
        rc = sup_pool_take(conf, id, pid, err);

        if (rc != 1) {
            return rc;
        }

        /* a conflict is answered now, not after the wait */
        if (sup_id_taken(conf, id, err)) {
            return -1;
        }

        if (client != NULL && sup_pool_wait(conf, client, id, err) == 0) {
            return 1;
        }
    }

    if (sup_id_taken(conf, id, err)) {
        return -1;
    }

    return sup_create_exec(conf, id, lang, pid, err);
}


int
sup_create_exec(const sup_conf_t *conf, const char *id, int lang,
    pid_t *pid, sup_err_t *err)
{
    int              fd, rc;
    pid_t            p;
    sup_proc_t       st;
    sup_session_t   *s;
    char             sock[PATH_MAX], dir[PATH_MAX], tmp[PATH_MAX];
    char             name[32];

    if (sup_id_busy(id, err)) {
        return -1;
    }

    if (sup_paths(conf, id, sock, dir) == -1) {
        SUP_ERR(err, "unavailable", "session paths are too long");
        return -1;
    }

    if (sup_session_reserve() == -1) {
        SUP_ERR(err, "unavailable", "out of memory");
        return -1;
    }

    rc = sup_fs_mkdir(dir, 0700, (uid_t) -1, (gid_t) -1);

    if (rc == 0) {
        /* left by a session not killed yet: never hand it to another */
        SUP_ERR(err, "conflict", "working directory of %s exists", id);
        return -1;
    }

    if (rc == -1) {
        SUP_ERR(err, "unavailable", "cannot create the working directory: %s",
                strerror(errno));
        return -1;
    }

    /*
     * Bound under a name of no meaning, then renamed: the kernel lists a
     * socket by the name it was bound to (/proc/net/unix), and an id is
     * a key to a session where no API keys are set.
     */
    (void) snprintf(name, sizeof(name), "new-%lu", ++sup_exec_seq);

    fd = -1;

    if (sup_fs_path(tmp, PATH_MAX, conf->socket_dir, name,
                    PYREPL_SESSION_SUFFIX) == 0)
    {
        fd = sup_listen_unix(tmp, 0, 1, conf->owner_uid, conf->owner_gid);
    }

    if (fd == -1 || sup_fs_rename(tmp, sock) == -1) {
        if (fd != -1 && errno == EEXIST) {
            wk_log("session %s: socket \"%s\" exists", id, sock);
            SUP_ERR(err, "conflict", "socket of %s exists", id);

        } else {
            SUP_ERR(err, "unavailable", "cannot create the socket: %s",
                    strerror(errno));
        }

        if (fd != -1) {
            (void) close(fd);
            (void) sup_fs_unlink(tmp);
            fd = -1;
        }

        goto fail;
    }

    p = sup_spawn(conf, id, lang, fd, dir);
    if (p == -1) {
        SUP_ERR(err, "unavailable", "cannot start a session process: %s",
                strerror(errno));
        goto fail;
    }

    if (sup_pid_in_use(p)) {
        sup_proc_kill(p, "session process");
        SUP_ERR(err, "unavailable", "pid %ld still belongs to a session, try "
                "again", (long) p);
        goto fail;
    }

    if (close(fd) == -1) {
        wk_log("session %s: close(listen fd) failed: %s", id,
               strerror(errno));
    }

    s = sup_session_add(id, p);      /* room was reserved above */

    if (sup_proc_stat(p, &st) == 0) {
        s->start = st.start;
    }

    sup_journal_add(SUP_J_SESSION, id, p, s->start);

    *pid = p;

    return 0;

fail:

    if (fd != -1) {
        (void) close(fd);
        (void) sup_fs_unlink(sock);
    }

    (void) sup_fs_rmtree(AT_FDCWD, dir);

    return -1;
}


/* The group, and the pid itself: it may not have called setsid() yet. */
static void
sup_kill_group(sup_session_t *s)
{
    if (kill(-s->pgid, SIGKILL) == -1 && errno != ESRCH) {
        wk_log("session %s: kill(-%ld, SIGKILL) failed: %s", s->id,
               (long) s->pgid, strerror(errno));
    }

    if (kill(s->pid, SIGKILL) == -1 && errno != ESRCH) {
        wk_log("session %s: kill(%ld, SIGKILL) failed: %s", s->id,
               (long) s->pid, strerror(errno));
    }
}


int
sup_move(const sup_conf_t *conf, const char *id, pid_t pid, sup_err_t *err)
{
    int             oldfd;
    pid_t           old;
    sup_proc_t      p;
    sup_session_t  *s;

    s = sup_session_find(id);

    if (s == NULL || s->state != SUP_S_LIVE) {
        SUP_ERR(err, "not_found", "no live session %s", id);
        return -1;
    }

    if (conf->confine.jail.on) {
        /* pid is the session's own view: its init takes it from here */
        if (pid <= 1 || sb_jail_move(s->pid, pid) == -1) {
            SUP_ERR(err, "bad_request", "pid %ld cannot serve session %s",
                    (long) pid, id);
            return -1;
        }

        wk_log("session %s moved to pid %ld of its jail (a rollback)", id,
               (long) pid);
        return 0;
    }

    if (pid == s->pid) {
        return 0;
    }

    /* only a process of the session's own group and session qualifies */
    if (pid <= 0 || sup_proc_stat(pid, &p) == -1
        || p.pgrp != s->pgid || p.sid != s->pgid)
    {
        SUP_ERR(err, "bad_request", "pid %ld is no process of session %s",
                (long) pid, id);
        return -1;
    }

    /*
     * The process that ran the undone code goes: ours is an unreaped
     * child (its pid cannot have been reused), an adopted one is
     * signalled through its pidfd.
     */
    oldfd = -1;

    if (s->adopted) {
        oldfd = dup(s->pidfd);

        if (oldfd == -1 || sup_adopt_repid(s, pid, p.start) == -1) {
            if (oldfd != -1) {
                (void) close(oldfd);
            }

            SUP_ERR(err, "bad_request", "pid %ld cannot be watched",
                    (long) pid);
            return -1;
        }
    }

    old = s->pid;
    s->pid = pid;
    s->start = p.start;

    (void) sup_journal_rewrite(conf);

    if (oldfd != -1) {
        if (pidfd_send_signal(oldfd, SIGKILL, NULL, 0) == -1
            && errno != ESRCH)
        {
            wk_log("session %s: pidfd_send_signal(%ld) failed: %s", id,
                   (long) old, strerror(errno));
        }

        (void) close(oldfd);

    } else if (kill(old, SIGKILL) == -1 && errno != ESRCH) {
        wk_log("session %s: kill(%ld, SIGKILL) failed: %s", id, (long) old,
               strerror(errno));
    }

    wk_log("session %s moved from pid %ld to %ld (a rollback)", id,
           (long) old, (long) pid);

    return 0;
}


void
sup_kill(const sup_conf_t *conf, const char *id)
{
    int             status;
    pid_t           rc, pgid;
    sup_session_t  *s;
    char            sock[PATH_MAX], dir[PATH_MAX];

    s = sup_session_find(id);

    if (s == NULL && sup_purge_pending(id)) {
        return;     /* killed already: its purge is under way */
    }

    if (sup_paths(conf, id, sock, dir) == 0) {
        (void) sup_fs_unlink(sock);
    }

    /* DEAD: its processes were purged at its crash (or are being) */
    pgid = 0;

    if (s != NULL) {
        pgid = (s->state == SUP_S_LIVE) ? s->pgid : 0;
        sup_journal_gone(id);
    }

    if (s != NULL && s->state == SUP_S_LIVE && s->adopted) {
        /* not our child: its pidfd tells when it is gone (sup_adopt.c) */
        sup_adopt_kill(s);
        s->state = SUP_S_KILLED;

    } else if (s != NULL && s->state == SUP_S_LIVE) {
        sup_kill_group(s);
        s->state = SUP_S_KILLED;

        /*
         * Take it now if it is already gone; else on SIGCHLD.  ECHILD: a
         * rollback's snapshot ("move") is its session's child, not ours.
         */
        do {
            rc = waitpid(s->pid, &status, WNOHANG);
        } while (rc == -1 && errno == EINTR);

        if (rc == -1 && errno != ECHILD) {
            wk_log("session %s: waitpid(%ld) failed: %s", id, (long) s->pid,
                   strerror(errno));
        }

        if (rc > 0) {
            /* reaped here, not by sup_reap(): what it left is swept too */
            sup_jail_purged(conf, s->pgid);
            sup_session_remove(s);
            sup_sweep_later();

        } else if (rc == -1) {
            sup_session_remove(s);
        }

    } else if (s != NULL) {
        sup_adopt_forget(s);
        sup_session_remove(s);   /* DEAD: already reaped */
    }

    sup_purge(conf, id, pgid, 1);
}


void
sup_dead(const sup_conf_t *conf, sup_session_t *s)
{
    char  sock[PATH_MAX], dir[PATH_MAX];

    if (sup_paths(conf, s->id, sock, dir) == 0) {
        (void) sup_fs_unlink(sock);
    }

    s->state = SUP_S_DEAD;

    sup_purge(conf, s->id, s->pgid, 0);
}


void
sup_log_exit(const char *what, const char *name, pid_t pid, int status)
{
    if (WIFSIGNALED(status)) {
        wk_log("%s%s%s (pid %ld) %s: killed by signal %d (%s)%s", what,
               name ? " " : "", name ? name : "", (long) pid,
               strcmp(what, "session") == 0 ? "crashed" : "died",
               WTERMSIG(status), strsignal(WTERMSIG(status)),
               WCOREDUMP(status) ? ", core dumped" : "");

    } else {
        wk_log("%s%s%s (pid %ld) exited with status %d", what,
               name ? " " : "", name ? name : "", (long) pid,
               WEXITSTATUS(status));
    }
}


void
sup_reap(const sup_conf_t *conf)
{
    int             status;
    pid_t           pid;
    sup_session_t  *s;

    for ( ;; ) {
        /* look without reaping: a zombie still holds its group id */
        pid = sup_proc_exited();
        if (pid <= 0) {
            return;
        }

        s = sup_session_find_pid(pid);

        if (s != NULL && s->state == SUP_S_LIVE) {
            /* its own children must not outlive it */
            sup_kill_group(s);
        }

        if (sup_proc_reap(pid, &status) == -1) {
            return;
        }

        if (s == NULL) {
            if (!sup_zygote_reaped(conf, pid, status)
                && !sup_pool_reaped(conf, pid, status)
                && !sup_purge_reaped(pid, status))
            {
                /*
                 * An orphan of user code, or a committed transaction's
                 * snapshot: routine, not worth a log line each.
                 */
                sup_sweep_later();
            }

            continue;
        }

        sup_sweep_later();

        if (s->state == SUP_S_LIVE) {
            /* the socket goes before the log line says the session went */
            sup_jail_gone(conf, s);
            sup_dead(conf, s);
            sup_log_exit("session", s->id, s->pid,
                         sup_jail_status(conf, status));
            sup_jail_purged(conf, s->pgid);
            continue;
        }

        /* KILLED: its files go with its purge */
        sup_jail_purged(conf, s->pgid);
        sup_session_remove(s);
    }
}


void
sup_kill_all(const sup_conf_t *conf)
{
    size_t          i, n;
    sup_session_t  *s;
    char            id[PYREPL_ID_LEN + 1];

    /* sup_kill removes or re-states entries: rescan after each one */
    for ( ;; ) {
        n = sup_session_count();
        s = NULL;

        for (i = 0; i < n; i++) {
            if (sup_session_at(i)->state != SUP_S_KILLED) {
                s = sup_session_at(i);
                break;
            }
        }

        if (s == NULL) {
            return;
        }

        memcpy(id, s->id, sizeof(id));
        sup_kill(conf, id);
    }
}


static void
sup_sweep_later(void)
{
    int64_t  at;

    if (sup_sweep_at != 0) {
        return;
    }

    at = wk_msec() + SUP_SWEEP_MS;

    if (sup_sweep_last != 0 && at < sup_sweep_last + SUP_SWEEP_EVERY_MS) {
        at = sup_sweep_last + SUP_SWEEP_EVERY_MS;
    }

    sup_sweep_at = at;
}


int64_t
sup_sweep_timeout(int64_t now)
{
    if (sup_sweep_at == 0) {
        return -1;
    }

    return (sup_sweep_at > now) ? sup_sweep_at - now : 0;
}


void
sup_sweep_timer(const sup_conf_t *conf, int64_t now)
{
    if (sup_sweep_at != 0 && now >= sup_sweep_at) {
        sup_sweep_at = 0;
        sup_sweep_last = now;
        sup_sweep(conf);
    }
}


/* Kill our children that nothing owns any more (see the top). */
static void
sup_sweep(const sup_conf_t *conf)
{
    pid_t           pid, self;
    DIR            *d;
    size_t          killed;
    sup_proc_t      p;
    struct dirent  *de;

    /* pool processes answered for just now are known before the scan */
    sup_zygote_event(conf);

    killed = 0;

    self = getpid();

    d = opendir("/proc");
    if (d == NULL) {
        wk_log("opendir(\"/proc\") failed: %s", strerror(errno));
        return;
    }

    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] < '1' || de->d_name[0] > '9') {
            continue;
        }

        pid = (pid_t) strtol(de->d_name, NULL, 10);

        if (sup_proc_stat(pid, &p) == -1 || p.ppid != self
            || (p.state == 'Z' && !sup_proc_zombie_runs(pid))
            || sup_sweep_spares(conf, pid, &p))
        {
            continue;
        }

        if (p.pgrp == pid) {
            (void) kill(-pid, SIGKILL);
        }

        (void) kill(pid, SIGKILL);
        killed++;
    }

    (void) closedir(d);

    /*
     * One line a sweep, and nothing of what the processes chose (their
     * names): user code makes these, as many as it likes.
     */
    if (killed > 0) {
        wk_log("killed %zu processes that ended sessions left", killed);
    }
}


/* Whether our child pid has an owner: it is spared by the sweep. */
static int
sup_sweep_spares(const sup_conf_t *conf, pid_t pid, const sup_proc_t *p)
{
    char            state;
    uid_t           uid[4];
    size_t          i, n, wlen;
    ssize_t         len;
    sup_session_t  *s;
    char            path[64], cwd[PATH_MAX];

    if (sup_session_find_pid(pid) != NULL || sup_zygote_is(pid)
        || sup_pool_has(pid))
    {
        return 1;
    }

    n = sup_session_count();

    for (i = 0; i < n; i++) {
        s = sup_session_at(i);
        if (s->state == SUP_S_LIVE && s->pgid == p->sid) {
            return 1;       /* a live session's */
        }
    }

    /*
     * A pool process whose answer is still on its way, at any step of
     * its birth: still in our own session (only the zygote's forks are:
     * user code's processes are all in their sessions'), not confined
     * yet (our own uid, which no user code has where sessions get an
     * identity of their own), already its own identity (uid base + its
     * pid: an orphan of a dead session has that session's), or, where
     * sessions share one identity, already in its pool directory (a
     * name any session process could enter with a uid of its own).
     */
    if (p->sid == getsid(0)) {
        return 1;
    }

    if ((conf->confine.uid_base != SB_SANDBOX_NO_ID
         || conf->confine.uid != SB_SANDBOX_NO_ID)
        && sup_proc_status(pid, &state, uid) == 0
        && (uid[0] == geteuid()
            || (conf->confine.uid_base != SB_SANDBOX_NO_ID
                && uid[0] == conf->confine.uid_base + (uid_t) pid)))
    {
        return 1;
    }

    if (conf->confine.uid_base != SB_SANDBOX_NO_ID) {
        return 0;
    }

    (void) snprintf(path, sizeof(path), "/proc/%ld/cwd", (long) pid);

    len = readlink(path, cwd, sizeof(cwd) - 1);
    if (len > 0) {
        cwd[len] = '\0';
        wlen = strlen(conf->workdir);

        if (strncmp(cwd, conf->workdir, wlen) == 0 && cwd[wlen] == '/'
            && strncmp(cwd + wlen + 1, SUP_POOL_PREFIX,
                       sizeof(SUP_POOL_PREFIX) - 1) == 0)
        {
            return 1;
        }
    }

    return 0;
}


size_t
sup_unreaped(void)
{
    size_t  i, n, k;

    n = sup_session_count();
    k = sup_pool_unreaped() + sup_zygote_unreaped()
        + sup_purge_unfinished();

    for (i = 0; i < n; i++) {
        if (sup_session_at(i)->state != SUP_S_DEAD) {
            k++;
        }
    }

    return k;
}
