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
 *            purged (below); the entry stays KILLED until reaped (or,
 *            adopted, until its pidfd says it exited).
 *   crash    (reaped while LIVE) the rest of its process group gets
 *            SIGKILL, the socket is unlinked so nginx's next connect fails
 *            and reports the session crashed, and its processes are purged
 *            (below) but not its files: the entry stays DEAD, with its
 *            working directory, until a kill.
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
 *
 * The purge: a killed session's files go only once nothing of it runs, so
 * that nothing renames under the removal (which never follows a link
 * anyway, sup_fs.c); a crashed session's processes go at once, its files
 * at its kill.  Its processes are found in /proc: with a uid per
 * session (uid base + its first pid, sb_confine.h), by any of the four
 * uids in /proc/<pid>/status (not by the owner of /proc/<pid>, which is
 * root for processes that are not dumpable), which finds those that left
 * its process group and session (setsid) too; with one uid for all
 * sessions, by process group and session id only.  A scan is due on the
 * loop's next turn after a kill; each process it finds gets SIGKILL, and
 * the scan is repeated (a process may have forked between a scan and its
 * kill) on a timer, SUP_PURGE_FIRST_MS later and backing off to
 * SUP_PURGE_MAX_MS, never blocking the loop, until one finds none alive:
 * then the working directory is removed and, with a uid per session, what
 * its uid owns at the top of /tmp, /var/tmp, /dev/shm and /run/lock, so
 * that a later session that gets the same pid, and so the same uid, finds
 * nothing.  (System V IPC objects are not looked for.)
 * Meanwhile the id stays taken, and while a session is dead or purged, a
 * process that got its first pid back (after a full round of pids), and
 * with it its uid, does not serve a session (sup_pid_in_use).  Scans by
 * process group and session id are safe from pid reuse: a process with
 * either id equal to the session's first pid keeps that pid allocated, and
 * a crashed session's are all gone before its kill, whose purge then only
 * removes files.
 */

#include <dirent.h>
#include <errno.h>
#include <grp.h>
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


#define SUP_SWEEP_MS        20    /* after a reap, before the sweep */
#define SUP_SWEEP_EVERY_MS  250   /* at most one sweep (a /proc scan of */
                                  /* ~10 us per process) this often */
#define SUP_PURGE_FIRST_MS  2     /* the first scan again after a kill's */
#define SUP_PURGE_MAX_MS    200   /* scans back off to this */


#define SUP_ERR(e, c, ...)                                                   \
    do { (e)->code = (c);                                                    \
         (void) snprintf((e)->message, sizeof((e)->message), __VA_ARGS__);   \
    } while (0)


/* a killed or crashed session waiting for its last process to go */
typedef struct {
    char         id[PYREPL_ID_LEN + 1];
    pid_t        pgid;     /* its first pid (uid, group, session id) */
    unsigned     alive;    /* its live processes the last scan found */
    unsigned     files:1;  /* killed: its files go after its processes */
} sup_purge_t;


static int sup_id_busy(const char *id, sup_err_t *err);
static void sup_kill_group(sup_session_t *s);
static int sup_purge_add(const char *id, pid_t pgid, int files);
static sup_purge_t *sup_purge_find(const char *id);
static void sup_purge_scan(const sup_conf_t *conf);
static void sup_purge_proc(const sup_conf_t *conf, pid_t pid);
static void sup_purge_files(const sup_conf_t *conf, const char *id);
static void sup_purge_kill_uid(uid_t uid);
static int sup_remover_reaped(pid_t pid, int status);
static int sup_purge_by_uid(const sup_conf_t *conf);
static void sup_uid_leftovers(uid_t uid);
static void sup_sweep_later(void);
static void sup_sweep(const sup_conf_t *conf);
static int sup_sweep_spares(const sup_conf_t *conf, pid_t pid,
    const sup_proc_t *p);


static long           sup_sweep_at;     /* 0: no sweep due */
static long           sup_sweep_last;
static sup_purge_t   *sup_purges;
static size_t         sup_npurges;
static size_t         sup_cpurges;
static long           sup_purge_at;     /* 0: no scan due */
static long           sup_purge_delay;
static unsigned long  sup_exec_seq;     /* a socket's name till renamed */
static pid_t         *sup_removers;     /* children removing files */
static size_t         sup_nremovers;
static size_t         sup_cremovers;


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

    if (sup_purge_find(id) != NULL) {
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
    sup_purge_t    *g;
    sup_session_t  *s;
    char            sock[PATH_MAX], dir[PATH_MAX];

    s = sup_session_find(id);
    g = sup_purge_find(id);

    if (s == NULL && g != NULL) {
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
            sup_session_remove(s);
            sup_sweep_later();

        } else if (rc == -1) {
            sup_session_remove(s);
        }

    } else if (s != NULL) {
        sup_adopt_forget(s);
        sup_session_remove(s);   /* DEAD: already reaped */
    }

    if (g != NULL) {
        g->files = 1;

    } else if (pgid == 0) {
        /* nothing of it can run any more */
        sup_purge_files(conf, id);

    } else if (sup_purge_add(id, pgid, 1) == -1) {
        wk_log("session %s: out of memory, its files are left", id);
    }
}


void
sup_dead(const sup_conf_t *conf, sup_session_t *s)
{
    char  sock[PATH_MAX], dir[PATH_MAX];

    if (sup_paths(conf, s->id, sock, dir) == 0) {
        (void) sup_fs_unlink(sock);
    }

    s->state = SUP_S_DEAD;

    if (sup_purge_add(s->id, s->pgid, 0) == -1) {
        wk_log("session %s: out of memory, its processes are not purged",
               s->id);
    }
}


/* Queue a purge, its scan due now; 0, or -1 (out of memory). */
static int
sup_purge_add(const char *id, pid_t pgid, int files)
{
    sup_purge_t  *p;

    if (sup_npurges == sup_cpurges) {
        p = sup_grow(sup_purges, &sup_cpurges, sizeof(sup_purge_t), 16,
                     "the purges");
        if (p == NULL) {
            return -1;
        }

        sup_purges = p;
    }

    p = &sup_purges[sup_npurges++];

    memcpy(p->id, id, PYREPL_ID_LEN);
    p->id[PYREPL_ID_LEN] = '\0';
    p->pgid = pgid;
    p->alive = 0;
    p->files = files;

    sup_purge_at = sup_now_ms();
    sup_purge_delay = SUP_PURGE_FIRST_MS;

    return 0;
}


static sup_purge_t *
sup_purge_find(const char *id)
{
    size_t  i;

    for (i = 0; i < sup_npurges; i++) {
        if (memcmp(sup_purges[i].id, id, PYREPL_ID_LEN) == 0) {
            return &sup_purges[i];
        }
    }

    return NULL;
}


int
sup_pid_in_use(pid_t pid)
{
    size_t          i, n;
    sup_session_t  *s;

    for (i = 0; i < sup_npurges; i++) {
        if (sup_purges[i].pgid == pid) {
            return 1;
        }
    }

    n = sup_session_count();

    for (i = 0; i < n; i++) {
        s = sup_session_at(i);

        if (s->state == SUP_S_DEAD && s->pgid == pid) {
            return 1;
        }
    }

    return 0;
}


/*
 * One scan of /proc for the processes of every pending purge: each one
 * found gets SIGKILL; a purge whose processes are all gone removes its
 * files (a kill's) and ends.  Another scan is due while purges are left.
 */
static void
sup_purge_scan(const sup_conf_t *conf)
{
    int             failed;
    pid_t           pid, self;
    DIR            *d;
    size_t          i;
    struct dirent  *de;

    sup_purge_at = 0;

    if (sup_npurges == 0) {
        return;
    }

    for (i = 0; i < sup_npurges; i++) {
        sup_purges[i].alive = 0;

        if (sup_purge_by_uid(conf)) {
            sup_purge_kill_uid(conf->confine.uid_base
                               + (uid_t) sup_purges[i].pgid);
        }
    }

    failed = 0;
    self = getpid();

    d = opendir("/proc");
    if (d == NULL) {
        wk_log("opendir(\"/proc\") failed: %s", strerror(errno));
        failed = 1;
    }

    while (d != NULL) {
        errno = 0;
        de = readdir(d);

        if (de == NULL) {
            if (errno != 0) {
                wk_log("readdir(\"/proc\") failed: %s", strerror(errno));
                failed = 1;
            }

            (void) closedir(d);
            break;
        }

        if (de->d_name[0] >= '1' && de->d_name[0] <= '9') {
            pid = (pid_t) strtol(de->d_name, NULL, 10);

            if (pid != self) {
                sup_purge_proc(conf, pid);
            }
        }
    }

    /* a scan that did not see every process proves nothing gone */
    for (i = 0; i < sup_npurges; /* void */ ) {
        if (sup_purges[i].alive > 0 || failed) {
            i++;
            continue;
        }

        if (sup_purges[i].files) {
            sup_purge_files(conf, sup_purges[i].id);
        }

        sup_purges[i] = sup_purges[--sup_npurges];
    }

    if (sup_npurges == 0) {
        return;
    }

    sup_purge_at = sup_now_ms() + sup_purge_delay;

    sup_purge_delay = (sup_purge_delay * 2 < SUP_PURGE_MAX_MS)
                      ? sup_purge_delay * 2 : SUP_PURGE_MAX_MS;
}


/*
 * Every process of uid at once: kill(-1) in a child that has become uid
 * signals all of uid's processes while no process can fork (the kernel
 * holds the task list for it), so a session whose processes fork and exit
 * faster than a scan of /proc goes in one stroke; the scan then finds the
 * ones still dying.
 */
static void
sup_purge_kill_uid(uid_t uid)
{
    int    status;
    pid_t  pid;

    pid = fork();

    if (pid == -1) {
        wk_log("fork() to kill uid %lu failed: %s", (unsigned long) uid,
               strerror(errno));
        return;
    }

    if (pid == 0) {
        if (setgroups(0, NULL) == -1
            || setresgid((gid_t) uid, (gid_t) uid, (gid_t) uid) == -1
            || setresuid(uid, uid, uid) == -1)
        {
            _exit(EXIT_FAILURE);
        }

        (void) kill(-1, SIGKILL);
        _exit(EXIT_SUCCESS);
    }

    while (waitpid(pid, &status, 0) == -1 && errno == EINTR) {
        /* void */
    }
}


/* SIGKILL pid if it is a process of a pending purge, and count it. */
static void
sup_purge_proc(const sup_conf_t *conf, pid_t pid)
{
    int           by_uid, match, live;
    char          state;
    uid_t         uid[4], want;
    size_t        i, j;
    sup_proc_t    p;
    sup_purge_t  *g;

    by_uid = sup_purge_by_uid(conf);

    if (by_uid) {
        if (sup_proc_status(pid, &state, uid) == -1) {
            return;
        }

    } else {
        if (sup_proc_stat(pid, &p) == -1) {
            return;
        }

        state = p.state;
    }

    if (state == 'X') {
        return;
    }

    live = -1;    /* not known yet */

    for (i = 0; i < sup_npurges; i++) {
        g = &sup_purges[i];

        if (by_uid) {
            want = conf->confine.uid_base + (uid_t) g->pgid;

            for (j = 0, match = 0; j < 4; j++) {
                match |= (uid[j] == want);
            }

        } else {
            match = (p.pgrp == g->pgid || p.sid == g->pgid);
        }

        if (!match) {
            continue;
        }

        /*
         * A zombie runs no more, unless it is the first thread of a
         * process whose other threads do (it called exit(2), not
         * exit_group(2)): the kill takes them all.
         */
        if (live == -1) {
            live = (state != 'Z' || sup_proc_zombie_runs(pid));
        }

        if (live && kill(pid, SIGKILL) == -1 && errno != ESRCH) {
            wk_log("session %s: kill(%ld, SIGKILL) failed: %s", g->id,
                   (long) pid, strerror(errno));
        }

        /*
         * A zombie counts too, until it is reaped.  A scan is no
         * snapshot: a process it passed alive may have forked a child
         * under a pid the scan had passed already, and exited, before
         * the scan reached it.  Only a scan that meets no process of
         * the session, not even a zombie, proves none is left: a process
         * forked meanwhile has a parent the scan would meet (the chain
         * ends at the session's first process, which only we reap).
         */
        g->alive++;
    }
}


/*
 * Remove session id's working directory and, with a uid per session, what
 * its uid left in the shared temporary directories: the uid is the
 * directory's owner (the session's process made it its own, and cannot
 * give it away), whatever the table says.  In a child of ours, so that a
 * session that left millions of files does not hold up every other one;
 * the id stays taken until its directory is gone (sup_id_taken).
 */
static void
sup_purge_files(const sup_conf_t *conf, const char *id)
{
    pid_t       *r, pid;
    uid_t        uid;
    struct stat  st;
    char         sock[PATH_MAX], dir[PATH_MAX];

    if (sup_paths(conf, id, sock, dir) == -1) {
        return;
    }

    pid = fork();

    if (pid == -1) {
        wk_log("session %s: fork() to remove its files failed: %s; removing "
               "them here", id, strerror(errno));

    } else if (pid > 0) {
        if (sup_nremovers == sup_cremovers) {
            r = sup_grow(sup_removers, &sup_cremovers, sizeof(pid_t), 8,
                         "the removers");
            if (r == NULL) {
                return;         /* reaped all the same, not waited for */
            }

            sup_removers = r;
        }

        sup_removers[sup_nremovers++] = pid;
        return;

    } else {
        (void) sup_spawn_close_from(3);
    }

    uid = 0;

    if (sup_purge_by_uid(conf)
        && fstatat(AT_FDCWD, dir, &st, AT_SYMLINK_NOFOLLOW) == 0
        && S_ISDIR(st.st_mode) && st.st_uid > conf->confine.uid_base)
    {
        uid = st.st_uid;
    }

    (void) sup_fs_rmtree(AT_FDCWD, dir);

    if (uid != 0) {
        sup_uid_leftovers(uid);
    }

    if (pid == 0) {
        _exit(EXIT_SUCCESS);
    }
}


/* A reaped pid: 1 if it was a remover (sup_purge_files), else 0. */
static int
sup_remover_reaped(pid_t pid, int status)
{
    size_t  i;

    for (i = 0; i < sup_nremovers; i++) {
        if (sup_removers[i] == pid) {
            sup_removers[i] = sup_removers[--sup_nremovers];

            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                sup_log_exit("file remover", NULL, pid, status);
            }

            return 1;
        }
    }

    return 0;
}


/* Whether every session has a uid of its own (else: group and sid). */
static int
sup_purge_by_uid(const sup_conf_t *conf)
{
    return conf->confine.uid_base != SB_SANDBOX_NO_ID && geteuid() == 0;
}


/*
 * What uid owns at the top of the shared temporary directories goes, each
 * entry removed relative to the directory's descriptor (sessions write
 * there: a name may be a link).
 */
static void
sup_uid_leftovers(uid_t uid)
{
    int             fd;
    DIR            *d;
    size_t          i;
    struct stat     st;
    struct dirent  *de;

    static const char  *shared[] = { "/tmp", "/var/tmp", "/dev/shm",
                                     "/run/lock" };

    for (i = 0; i < sizeof(shared) / sizeof(shared[0]); i++) {
        fd = open(shared[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd == -1) {
            continue;
        }

        d = fdopendir(fd);
        if (d == NULL) {
            (void) close(fd);
            continue;
        }

        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0
                || fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1
                || st.st_uid != uid)
            {
                continue;
            }

            if (sup_fs_rmtree(fd, de->d_name) == -1) {
                wk_log("\"%s/%s\", left by uid %lu, could not be removed",
                       shared[i], de->d_name, (unsigned long) uid);
            }
        }

        (void) closedir(d);
    }
}


long
sup_purge_timeout(long now)
{
    if (sup_purge_at == 0) {
        return -1;
    }

    return (sup_purge_at > now) ? sup_purge_at - now : 0;
}


void
sup_purge_timer(const sup_conf_t *conf, long now)
{
    if (sup_purge_at != 0 && now >= sup_purge_at) {
        sup_purge_scan(conf);
    }
}


void
sup_purge_give_up(void)
{
    size_t  i;

    for (i = 0; i < sup_npurges; i++) {
        wk_log("session %s: %u processes still run, its files are left",
               sup_purges[i].id, sup_purges[i].alive);
    }

    free(sup_purges);

    sup_purges = NULL;
    sup_npurges = 0;
    sup_cpurges = 0;
    sup_purge_at = 0;
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
    pid_t           pid, rc;
    siginfo_t       si;
    sup_session_t  *s;

    for ( ;; ) {
        memset(&si, 0, sizeof(si));

        /* look without reaping: a zombie still holds its group id */
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == -1) {
            if (errno == EINTR) {
                continue;
            }

            if (errno != ECHILD) {
                wk_log("waitid() failed: %s", strerror(errno));
            }

            return;
        }

        pid = si.si_pid;
        if (pid == 0) {
            return;
        }

        s = sup_session_find_pid(pid);

        if (s != NULL && s->state == SUP_S_LIVE) {
            /* its own children must not outlive it */
            sup_kill_group(s);
        }

        do {
            rc = waitpid(pid, &status, 0);
        } while (rc == -1 && errno == EINTR);

        if (rc == -1) {
            wk_log("waitpid(%ld) failed: %s", (long) pid, strerror(errno));
            return;
        }

        if (s == NULL) {
            if (!sup_zygote_reaped(conf, pid, status)
                && !sup_pool_reaped(conf, pid, status)
                && !sup_remover_reaped(pid, status))
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
            sup_log_exit("session", s->id, s->pid, status);
            sup_dead(conf, s);
            continue;
        }

        /* KILLED: its files go with its purge */
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
    long  at;

    if (sup_sweep_at != 0) {
        return;
    }

    at = sup_now_ms() + SUP_SWEEP_MS;

    if (sup_sweep_last != 0 && at < sup_sweep_last + SUP_SWEEP_EVERY_MS) {
        at = sup_sweep_last + SUP_SWEEP_EVERY_MS;
    }

    sup_sweep_at = at;
}


long
sup_sweep_timeout(long now)
{
    if (sup_sweep_at == 0) {
        return -1;
    }

    return (sup_sweep_at > now) ? sup_sweep_at - now : 0;
}


void
sup_sweep_timer(const sup_conf_t *conf, long now)
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
    k = sup_pool_unreaped() + sup_zygote_unreaped() + sup_npurges
        + sup_nremovers;

    for (i = 0; i < n; i++) {
        if (sup_session_at(i)->state != SUP_S_DEAD) {
            k++;
        }
    }

    return k;
}
