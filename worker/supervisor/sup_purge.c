/*
 * sup_purge.c: the purge, what goes of a killed or crashed session once
 * its process group has had SIGKILL (sup_lifecycle.c): every other
 * process of it, then a killed session's files.
 *
 * A killed session's files go only once nothing of it runs, so that
 * nothing renames under the removal (which never follows a link anyway,
 * sup_fs.c); a crashed session's processes go at once, its files at its
 * kill.  Its processes are found in /proc: with a uid per session (uid
 * base + its first pid, sb_confine.h), by any of the four
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
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sup.h"
#include "wk_log.h"
#include "wk_proc.h"
#include "wk_time.h"


#define SUP_PURGE_FIRST_MS  2     /* the first scan again after a kill's */
#define SUP_PURGE_MAX_MS    200   /* scans back off to this */
#define SUP_PURGE_WAIT_MS   5000  /* a create of the id waits this long */


/* a killed or crashed session waiting for its last process to go */
typedef struct {
    char         id[PYREPL_ID_LEN + 1];
    pid_t        pgid;     /* its first pid (uid, group, session id) */
    unsigned     alive;    /* its live processes the last scan found */
    unsigned     files:1;  /* killed: its files go after its processes */
} sup_purge_t;


/* a child removing a session's files */
typedef struct {
    pid_t        pid;
    char         id[PYREPL_ID_LEN + 1];
} sup_remover_t;


/* a create of an id whose purge is under way, waiting for its end */
typedef struct {
    sup_client_t  *client;
    int            lang;
    int64_t        deadline;
    char           id[PYREPL_ID_LEN + 1];
} sup_purge_waiter_t;


static int sup_purge_add(const char *id, pid_t pgid, int files);
static sup_purge_t *sup_purge_find(const char *id);
static void sup_purge_scan(const sup_conf_t *conf);
static void sup_purge_proc(const sup_conf_t *conf, pid_t pid);
static void sup_purge_files(const sup_conf_t *conf, const char *id);
static void sup_purge_kill_uid(const sup_conf_t *conf, uid_t uid);
static int sup_purge_by_uid(const sup_conf_t *conf);
static void sup_purge_uid_leftovers(uid_t uid);
static void sup_purge_serve(const sup_conf_t *conf);
static void sup_purge_expire(const sup_conf_t *conf, int64_t now);


static sup_purge_t    *sup_purges;
static size_t          sup_npurges;
static size_t          sup_cpurges;
static int64_t         sup_purge_at;     /* 0: no scan due */
static int64_t         sup_purge_delay;
static sup_remover_t  *sup_removers;
static size_t          sup_nremovers;
static size_t          sup_cremovers;
static sup_purge_waiter_t  *sup_purge_waiters;
static size_t               sup_npurge_waiters;
static size_t               sup_cpurge_waiters;
static int                  sup_purge_ended;  /* serve the waiters */


void
sup_purge(const sup_conf_t *conf, const char *id, pid_t pgid, int files)
{
    sup_purge_t  *g;

    g = sup_purge_find(id);

    if (g != NULL) {
        g->files |= files;
        return;
    }

    if (pgid == 0) {
        /* nothing of it can run any more */
        if (files) {
            sup_purge_files(conf, id);
        }

        return;
    }

    if (sup_purge_add(id, pgid, files) == -1) {
        wk_log("session %s: out of memory, its %s", id,
               files ? "files are left" : "processes are not purged");
    }
}


int
sup_purge_pending(const char *id)
{
    size_t  i;

    if (sup_purge_find(id) != NULL) {
        return 1;
    }

    for (i = 0; i < sup_nremovers; i++) {
        if (memcmp(sup_removers[i].id, id, PYREPL_ID_LEN) == 0) {
            return 1;
        }
    }

    return 0;
}


int
sup_purge_wait(sup_client_t *client, const char *id, int lang,
    sup_err_t *err)
{
    sup_purge_waiter_t  *w;

    if (sup_npurge_waiters == sup_cpurge_waiters) {
        w = sup_grow(sup_purge_waiters, &sup_cpurge_waiters,
                     sizeof(sup_purge_waiter_t), 8, "the waiting creates");
        if (w == NULL) {
            SUP_ERR(err, "unavailable", "out of memory");
            return -1;
        }

        sup_purge_waiters = w;
    }

    w = &sup_purge_waiters[sup_npurge_waiters++];
    w->client = client;
    w->lang = lang;
    w->deadline = wk_msec() + SUP_PURGE_WAIT_MS;
    memcpy(w->id, id, PYREPL_ID_LEN);
    w->id[PYREPL_ID_LEN] = '\0';

    return 0;
}


void
sup_purge_cancel(sup_client_t *client)
{
    size_t  i, j;

    for (i = 0, j = 0; i < sup_npurge_waiters; i++) {
        if (sup_purge_waiters[i].client != client) {
            sup_purge_waiters[j++] = sup_purge_waiters[i];
        }
    }

    sup_npurge_waiters = j;
}


/*
 * Creates whose id is free again are made now (or wait on, for a pool
 * process), and answered.  Run from the timer, never from inside a scan
 * or a reap: a reply may dispatch the client's next request (a kill, so
 * a purge).
 */
static void
sup_purge_serve(const sup_conf_t *conf)
{
    int                  rc;
    pid_t                pid;
    size_t               i;
    sup_err_t            err;
    sup_purge_waiter_t   w;

    for (i = 0; i < sup_npurge_waiters; /* void */ ) {
        if (sup_purge_pending(sup_purge_waiters[i].id)) {
            i++;
            continue;
        }

        w = sup_purge_waiters[i];
        sup_purge_waiters[i] = sup_purge_waiters[--sup_npurge_waiters];

        pid = 0;
        rc = sup_create(conf, w.client, w.id, w.lang, &pid, &err);

        if (rc == 1) {
            continue;       /* the client waits on, for a pool process */
        }

        if (rc == 0) {
            wk_log("session %s started, pid %ld", w.id, (long) pid);
        } else {
            wk_log("create %s failed: %s: %s", w.id, err.code, err.message);
        }

        /* as sup_pool_serve() does: nothing is kept across the reply */
        if (sup_client_reply(conf, w.client, w.id, rc == 0 ? pid : 0, &err)
            == -1 && rc == 0)
        {
            wk_log("session %s: its client is gone, killing it", w.id);
            sup_kill(conf, w.id);
        }

        i = 0;
    }
}


/* Creates that waited SUP_PURGE_WAIT_MS for a purge are refused. */
static void
sup_purge_expire(const sup_conf_t *conf, int64_t now)
{
    size_t               i;
    sup_err_t            err;
    sup_purge_waiter_t   w;

    for (i = 0; i < sup_npurge_waiters; /* void */ ) {
        if (sup_purge_waiters[i].deadline > now) {
            i++;
            continue;
        }

        w = sup_purge_waiters[i];
        sup_purge_waiters[i] = sup_purge_waiters[--sup_npurge_waiters];

        SUP_ERR(&err, "conflict", "session %s is still being removed", w.id);
        wk_log("create %s failed: %s: %s", w.id, err.code, err.message);

        (void) sup_client_reply(conf, w.client, w.id, 0, &err);

        i = 0;
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

    sup_purge_at = wk_msec();
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
            sup_purge_kill_uid(conf, conf->confine.uid_base
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
        sup_purge_ended = 1;
    }

    if (sup_npurges == 0) {
        return;
    }

    sup_purge_at = wk_msec() + sup_purge_delay;

    sup_purge_delay = (sup_purge_delay * 2 < SUP_PURGE_MAX_MS)
                      ? sup_purge_delay * 2 : SUP_PURGE_MAX_MS;
}


/*
 * Every process of uid at once: kill(-1) in a child that has taken uid as
 * its effective uid signals all of uid's processes while no process can
 * fork (the kernel holds the task list for it), so a session whose
 * processes fork and exit faster than a scan of /proc goes in one stroke;
 * the scan then finds the ones still dying.  The child's real and saved
 * uid are SB_CONFINE_UID_KILLER's, which nothing else has: a process may
 * signal another whose real or saved uid is its own, so the session's
 * processes cannot signal (stop) the child, and kill(-1) reaches no
 * process but uid's.
 */
static void
sup_purge_kill_uid(const sup_conf_t *conf, uid_t uid)
{
    uid_t  base;

    int    status;
    pid_t  pid;

    base = conf->confine.uid_base + SB_CONFINE_UID_KILLER;

    pid = fork();

    if (pid == -1) {
        wk_log("fork() to kill uid %lu failed: %s", (unsigned long) uid,
               strerror(errno));
        return;
    }

    if (pid == 0) {
        if (setgroups(0, NULL) == -1
            || setresgid((gid_t) base, (gid_t) uid, (gid_t) base) == -1
            || setresuid(base, uid, base) == -1)
        {
            _exit(EXIT_FAILURE);
        }

        (void) kill(-1, SIGKILL);
        _exit(EXIT_SUCCESS);
    }

    /* and should it be stopped all the same, it never holds us here */
    for ( ;; ) {
        if (waitpid(pid, &status, WUNTRACED) == -1) {
            if (errno == EINTR) {
                continue;
            }

            wk_log("waitpid(%ld) failed: %s", (long) pid, strerror(errno));
            return;
        }

        if (!WIFSTOPPED(status)) {
            return;
        }

        (void) kill(pid, SIGKILL);
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
    pid_t           pid;
    uid_t           uid;
    sup_remover_t  *r;
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
            r = sup_grow(sup_removers, &sup_cremovers,
                         sizeof(sup_remover_t), 8, "the removers");
            if (r == NULL) {
                return;         /* reaped all the same, not waited for */
            }

            sup_removers = r;
        }

        r = &sup_removers[sup_nremovers++];
        r->pid = pid;
        memcpy(r->id, id, PYREPL_ID_LEN);
        r->id[PYREPL_ID_LEN] = '\0';
        return;

    } else {
        wk_proc_close_range(3, ~0U);
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
        sup_purge_uid_leftovers(uid);
    }

    if (pid == 0) {
        _exit(EXIT_SUCCESS);
    }
}


int
sup_purge_reaped(pid_t pid, int status)
{
    size_t  i;

    for (i = 0; i < sup_nremovers; i++) {
        if (sup_removers[i].pid == pid) {
            sup_removers[i] = sup_removers[--sup_nremovers];

            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                sup_log_exit("file remover", NULL, pid, status);
            }

            sup_purge_ended = 1;
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
sup_purge_uid_leftovers(uid_t uid)
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


int64_t
sup_purge_timeout(int64_t now)
{
    size_t   i;
    int64_t  at;

    at = sup_purge_at;

    if (sup_purge_ended && sup_npurge_waiters > 0) {
        return 0;
    }

    for (i = 0; i < sup_npurge_waiters; i++) {
        if (at == 0 || sup_purge_waiters[i].deadline < at) {
            at = sup_purge_waiters[i].deadline;
        }
    }

    if (at == 0) {
        return -1;
    }

    return (at > now) ? at - now : 0;
}


void
sup_purge_timer(const sup_conf_t *conf, int64_t now)
{
    if (sup_purge_at != 0 && now >= sup_purge_at) {
        sup_purge_scan(conf);
    }

    if (sup_purge_ended) {
        sup_purge_ended = 0;
        sup_purge_serve(conf);
    }

    sup_purge_expire(conf, now);
}


size_t
sup_purge_unfinished(void)
{
    return sup_npurges + sup_nremovers;
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
