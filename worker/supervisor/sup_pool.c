/*
 * sup_pool.c: session processes forked ahead of demand, and the creates
 * that wait for one.
 *
 * A pool entry is a process the zygote forked for no session yet, with
 * its own listening socket DIR/pool-N.sock and its own empty working
 * directory WORKDIR/pool-N (N counts up for the life of the supervisor).
 * It is "forking" until the zygote answers with its pid, then "ready".
 * The pool keeps pool_min_idle entries (ready or forking) plus one for
 * each waiting create, with at most SUP_POOL_INFLIGHT FORKs outstanding,
 * and is refilled after every hand-out (SUP_POOL_DEFER_MS later while
 * another entry is ready: the new session's first run goes first), death
 * and zygote (re)start.
 *
 * A create takes the oldest ready entry: its directory is renamed to
 * WORKDIR/<id> (the process's cwd follows the inode), then its socket to
 * DIR/<id>.sock, neither ever replacing an existing file; the journal
 * records the hand-out and the session table gets the pid; the reply goes
 * out at once.  An entry is handed out once and never taken back:
 * sessions are never reused, and a pool process never ran any code but
 * the zygote's.
 *
 * With no ready entry, the create waits (its reply is deferred,
 * sup_client.c) until a pool process is ready, in arrival order.  A wait
 * ends after SUP_POOL_WAIT_MS, or at once when the zygote is given up
 * (sup_zygote_usable), with a session by fork and exec instead
 * (sup_create_exec): so while the zygote restarts, creates wait for it,
 * and only a zygote that cannot come up costs them the exec.
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sup.h"
#include "wk_log.h"
#include "wk_time.h"


#define SUP_POOL_INFLIGHT  4      /* FORKs outstanding at once */
#define SUP_POOL_RETRY_MS  100    /* after a failed fork or a death, */
#define SUP_POOL_RETRY_MAX 5000   /* doubled while failures go on */
#define SUP_POOL_CALM_MS   10000  /* a failure after this long: 100 again */
#define SUP_POOL_WAIT_MS   3000   /* a create waits this long */
#define SUP_POOL_DEFER_MS  20     /* a hand-out's refill waits this long */


typedef struct {
    char          name[SUP_NAME_LEN];
    uint32_t      seq;
    pid_t         pid;            /* 0 while forking */
    uint64_t      start;
    unsigned      killed:1;       /* shutdown: waiting to be reaped */
} sup_pool_t;

typedef struct {
    sup_client_t  *client;
    char           id[PYREPL_ID_LEN + 1];
    int64_t        deadline;
} sup_waiter_t;


static int sup_pool_fork_one(const sup_conf_t *conf);
static int sup_pool_assign(const sup_conf_t *conf, size_t i, const char *id,
    pid_t *pid, sup_err_t *err);
static void sup_pool_serve(const sup_conf_t *conf);
static void sup_pool_drop(const sup_conf_t *conf, size_t i);
static void sup_pool_files(const sup_conf_t *conf, const char *name);
static int64_t sup_pool_ready_at(void);
static void sup_pool_failed(void);
static ssize_t sup_pool_ready(void);


static sup_pool_t     *sup_pool;
static size_t          sup_npool;
static size_t          sup_cpool;
static sup_waiter_t   *sup_waiters;
static size_t          sup_nwaiters;
static size_t          sup_cwaiters;
static unsigned        sup_pool_min;
static uint32_t        sup_pool_seq;
static unsigned long   sup_pool_serial;
static int64_t         sup_pool_retry_at;
static int64_t         sup_pool_failed_at;   /* the last failure */
static int64_t         sup_pool_backoff;
static unsigned        sup_pool_refill;    /* fill after the replies */
static int64_t         sup_pool_defer_at;  /* fill then (a hand-out's) */


void
sup_pool_init(const sup_conf_t *conf)
{
    sup_pool_min = conf->pool_min_idle;
}


void
sup_pool_fill(const sup_conf_t *conf)
{
    size_t  i, want, have, forking;

    if (!sup_zygote_ready()) {
        return;
    }

    if (sup_pool_retry_at != 0) {
        if (wk_msec() < sup_pool_retry_at) {
            return;
        }

        sup_pool_retry_at = 0;
    }

    sup_pool_defer_at = 0;

    want = sup_pool_min + sup_nwaiters;

    for (i = 0, have = 0, forking = 0; i < sup_npool; i++) {
        if (sup_pool[i].pid == 0) {
            forking++;
        }

        if (!sup_pool[i].killed) {
            have++;
        }
    }

    while (have < want && forking < SUP_POOL_INFLIGHT) {
        if (sup_pool_fork_one(conf) == -1) {
            sup_pool_failed();
            return;
        }

        have++;
        forking++;
    }
}


/* Make one pool entry's files and ask the zygote for its process. */
static int
sup_pool_fork_one(const sup_conf_t *conf)
{
    int          rc, lfd, dfd;
    uint32_t     seq;
    sup_pool_t  *p;
    char         name[SUP_NAME_LEN], sock[PATH_MAX], dir[PATH_MAX];

    if (sup_npool == sup_cpool) {
        p = sup_grow(sup_pool, &sup_cpool, sizeof(sup_pool_t), 16,
                     "the pool");
        if (p == NULL) {
            return -1;
        }

        sup_pool = p;
    }

    (void) snprintf(name, sizeof(name), SUP_POOL_PREFIX "%lu",
                    ++sup_pool_serial);

    if (sup_paths(conf, name, sock, dir) == -1) {
        return -1;
    }

    dfd = -1;

    rc = sup_fs_mkdir(dir, 0700, (uid_t) -1, (gid_t) -1);

    if (rc != 1) {
        if (rc == 0) {
            wk_log("pool directory \"%s\" exists; not used", dir);
        }

        return -1;
    }

    lfd = sup_listen_unix(sock, 0, 1, conf->owner_uid, conf->owner_gid);
    if (lfd == -1) {
        goto fail;
    }

    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd == -1) {
        wk_log("open(\"%s\") failed: %s", dir, strerror(errno));
        goto fail;
    }

    seq = ++sup_pool_seq;

    if (sup_zygote_fork(seq, name, lfd, dfd) == -1) {
        goto fail;
    }

    (void) close(lfd);
    (void) close(dfd);

    p = &sup_pool[sup_npool++];
    memset(p, 0, sizeof(sup_pool_t));
    memcpy(p->name, name, sizeof(name));
    p->seq = seq;

    return 0;

fail:

    if (lfd != -1) {
        (void) close(lfd);
    }

    if (dfd != -1) {
        (void) close(dfd);
    }

    sup_pool_files(conf, name);

    return -1;
}


void
sup_pool_forked(const sup_conf_t *conf, uint32_t seq, pid_t pid, int err)
{
    size_t       i;
    sup_proc_t   st;
    sup_pool_t  *p;

    for (i = 0; i < sup_npool; i++) {
        if (sup_pool[i].pid == 0 && sup_pool[i].seq == seq) {
            break;
        }
    }

    if (i == sup_npool) {
        if (pid > 0) {
            /* asked for by a request given up: our child, reaped later */
            sup_proc_kill(pid, "unwanted pool process");
        }

        return;
    }

    p = &sup_pool[i];

    if (pid <= 0) {
        wk_log("the zygote could not fork %s: %s", p->name,
               strerror(err > 0 ? err : EIO));
        sup_pool_drop(conf, i);
        sup_pool_failed();
        return;
    }

    p->pid = pid;

    if (sup_proc_stat(pid, &st) == 0) {
        p->start = st.start;
    }

    sup_journal_add(SUP_J_POOL, p->name, p->pid, p->start);

    if (sup_pid_in_use(pid)) {
        /* it has the uid of a session whose files are not removed yet */
        wk_log("pool process %s (pid %ld) has the first pid of a session "
               "not removed yet: killed", p->name, (long) pid);
        sup_proc_kill(pid, p->name);
        p->killed = 1;
    }

    sup_pool_serve(conf);
    sup_pool_fill(conf);
}


/*
 * The oldest ready entry whose process has not exited (one that has is
 * left to sup_reap(), which may not have run yet), or -1.  ECHILD: the
 * intermediate process that forked it has not exited yet, so it is not
 * our child yet, and cannot have been reaped.
 */
static ssize_t
sup_pool_ready(void)
{
    int        rc;
    size_t     i;
    siginfo_t  si;

    for (i = 0; i < sup_npool; i++) {
        if (sup_pool[i].pid <= 0 || sup_pool[i].killed) {
            continue;
        }

        memset(&si, 0, sizeof(si));

        rc = waitid(P_PID, (id_t) sup_pool[i].pid, &si,
                    WEXITED | WNOHANG | WNOWAIT);

        if ((rc == 0 && si.si_pid == 0) || (rc == -1 && errno == ECHILD)) {
            return (ssize_t) i;
        }
    }

    return -1;
}


int
sup_pool_take(const sup_conf_t *conf, const char *id, pid_t *pid,
    sup_err_t *err)
{
    ssize_t  i;

    i = sup_pool_ready();

    if (i == -1) {
        return 1;
    }

    if (sup_pool_assign(conf, (size_t) i, id, pid, err) == -1) {
        return -1;
    }

    /*
     * Not now: the refill (a directory, a socket, a FORK, then the zygote
     * forking and the new process building its jail and warming up, some
     * milliseconds of CPU) would delay this reply, and the session's first
     * run, which its client sends at once.  While another process is
     * ready for the next create, the refill waits SUP_POOL_DEFER_MS
     * (sup_pool_timer); else the main loop calls sup_pool_idle_work() once
     * the replies are out.
     */
    if (sup_pool_ready() != -1) {
        if (sup_pool_defer_at == 0) {
            sup_pool_defer_at = wk_msec() + SUP_POOL_DEFER_MS;
        }

    } else {
        sup_pool_refill = 1;
    }

    return 0;
}


void
sup_pool_idle_work(const sup_conf_t *conf)
{
    if (sup_pool_refill) {
        sup_pool_refill = 0;
        sup_pool_fill(conf);
    }
}


/*
 * Hand pool entry i to session id (see the top of the file).  Returns 0
 * with *pid set, or -1 with err filled; a conflict leaves the entry in
 * the pool, any other failure kills it.
 */
static int
sup_pool_assign(const sup_conf_t *conf, size_t i, const char *id,
    pid_t *pid, sup_err_t *err)
{
    sup_pool_t      *p;
    sup_session_t   *s;
    char             psock[PATH_MAX], pdir[PATH_MAX];
    char             sock[PATH_MAX], dir[PATH_MAX];

    p = &sup_pool[i];

    if (sup_paths(conf, p->name, psock, pdir) == -1
        || sup_paths(conf, id, sock, dir) == -1)
    {
        SUP_ERR(err, "unavailable", "session paths are too long");
        return -1;
    }

    if (sup_session_reserve() == -1) {
        SUP_ERR(err, "unavailable", "out of memory");
        return -1;
    }

    if (sup_fs_rename(pdir, dir) == -1) {
        if (errno == EEXIST) {
            SUP_ERR(err, "conflict", "working directory of %s exists", id);
            return -1;
        }

        SUP_ERR(err, "unavailable", "cannot move the working directory: %s",
                strerror(errno));
        goto fail;
    }

    if (sup_fs_rename(psock, sock) == -1) {
        if (errno == EEXIST) {
            wk_log("session %s: socket \"%s\" exists", id, sock);
            SUP_ERR(err, "conflict", "socket of %s exists", id);

            if (sup_fs_rename(dir, pdir) == 0) {
                return -1;
            }

            goto fail;
        }

        SUP_ERR(err, "unavailable", "cannot move the socket: %s",
                strerror(errno));
        (void) sup_fs_rename(dir, pdir);
        goto fail;
    }

    sup_journal_assign(p->name, id, p->pid, p->start);

    s = sup_session_add(id, p->pid);    /* room was reserved above */
    s->start = p->start;

    *pid = p->pid;

    memmove(&sup_pool[i], &sup_pool[i + 1],
            (sup_npool - i - 1) * sizeof(sup_pool_t));
    sup_npool--;

    return 0;

fail:

    sup_proc_kill(p->pid, p->name);
    p->killed = 1;
    sup_pool_files(conf, p->name);

    return -1;
}


int
sup_pool_wait(const sup_conf_t *conf, sup_client_t *client, const char *id,
    sup_err_t *err)
{
    sup_waiter_t  *w;

    if (sup_nwaiters == sup_cwaiters) {
        w = sup_grow(sup_waiters, &sup_cwaiters, sizeof(sup_waiter_t), 16,
                     "the waiting creates");
        if (w == NULL) {
            SUP_ERR(err, "unavailable", "out of memory");
            return -1;
        }

        sup_waiters = w;
    }

    w = &sup_waiters[sup_nwaiters++];
    w->client = client;
    memcpy(w->id, id, PYREPL_ID_LEN);
    w->id[PYREPL_ID_LEN] = '\0';
    w->deadline = wk_msec() + SUP_POOL_WAIT_MS;

    sup_pool_fill(conf);

    return 0;
}


/* Give ready entries to the waiting creates, oldest first. */
static void
sup_pool_serve(const sup_conf_t *conf)
{
    int           rc;
    pid_t         pid;
    ssize_t       i;
    sup_err_t     err;
    sup_waiter_t  w;

    while (sup_nwaiters > 0) {
        i = sup_pool_ready();

        if (i == -1) {
            return;
        }

        w = sup_waiters[0];
        memmove(&sup_waiters[0], &sup_waiters[1],
                (--sup_nwaiters) * sizeof(sup_waiter_t));

        pid = 0;
        rc = sup_pool_assign(conf, (size_t) i, w.id, &pid, &err);

        if (rc == 0) {
            wk_log("session %s started, pid %ld", w.id, (long) pid);
        } else {
            wk_log("create %s failed: %s: %s", w.id, err.code, err.message);
        }

        /* the reply may dispatch the client's next request: no pointers
         * into the pool or the waiters are kept across it */
        if (sup_client_reply(conf, w.client, w.id, rc == 0 ? pid : 0, &err)
            == -1 && rc == 0)
        {
            wk_log("session %s: its client is gone, killing it", w.id);
            sup_kill(conf, w.id);
        }
    }
}


int
sup_pool_waiting(const char *id)
{
    size_t  i;

    for (i = 0; i < sup_nwaiters; i++) {
        if (memcmp(sup_waiters[i].id, id, PYREPL_ID_LEN) == 0) {
            return 1;
        }
    }

    return 0;
}


void
sup_pool_cancel(sup_client_t *client)
{
    size_t  i, j;

    for (i = 0, j = 0; i < sup_nwaiters; i++) {
        if (sup_waiters[i].client != client) {
            sup_waiters[j++] = sup_waiters[i];
        }
    }

    sup_nwaiters = j;
}


void
sup_pool_zygote_gone(const sup_conf_t *conf)
{
    size_t  i;

    for (i = 0; i < sup_npool; /* void */ ) {
        if (sup_pool[i].pid == 0) {
            sup_pool_drop(conf, i);
            continue;
        }

        i++;
    }
}


int
sup_pool_reaped(const sup_conf_t *conf, pid_t pid, int status)
{
    size_t  i;

    for (i = 0; i < sup_npool; i++) {
        if (sup_pool[i].pid == pid) {
            break;
        }
    }

    if (i == sup_npool || pid <= 0) {
        return 0;
    }

    if (!sup_pool[i].killed) {
        sup_log_exit("pool process", sup_pool[i].name, pid, status);
        sup_pool_failed();
    }

    sup_journal_gone(sup_pool[i].name);
    sup_jail_purged(conf, pid);         /* its jail's group, if it had one */
    sup_pool_drop(conf, i);

    return 1;
}


/* Remove entry i and its files (its process, if any, is dead). */
static void
sup_pool_drop(const sup_conf_t *conf, size_t i)
{
    sup_pool_files(conf, sup_pool[i].name);

    memmove(&sup_pool[i], &sup_pool[i + 1],
            (sup_npool - i - 1) * sizeof(sup_pool_t));
    sup_npool--;
}


static void
sup_pool_files(const sup_conf_t *conf, const char *name)
{
    char  sock[PATH_MAX], dir[PATH_MAX];

    if (sup_paths(conf, name, sock, dir) == 0) {
        (void) sup_fs_unlink(sock);
        (void) sup_fs_rmtree(AT_FDCWD, dir);
    }
}


/* The earliest of the retry, the deferred refill and a waiter's end; 0. */
static int64_t
sup_pool_ready_at(void)
{
    int64_t  at;

    at = sup_pool_retry_at;

    if (sup_pool_defer_at != 0 && (at == 0 || sup_pool_defer_at < at)) {
        at = sup_pool_defer_at;
    }

    if (sup_nwaiters > 0 && (at == 0 || sup_waiters[0].deadline < at)) {
        at = sup_waiters[0].deadline;
    }

    return at;
}


int64_t
sup_pool_timeout(int64_t now)
{
    int64_t  at;

    if (sup_nwaiters > 0 && !sup_zygote_usable()) {
        return 0;
    }

    at = sup_pool_ready_at();

    if (at == 0) {
        return -1;
    }

    return (at > now) ? at - now : 0;
}


void
sup_pool_timer(const sup_conf_t *conf, int64_t now)
{
    int           rc, usable;
    pid_t         pid;
    sup_err_t     err;
    sup_waiter_t  w;

    if (sup_pool_defer_at != 0 && now >= sup_pool_defer_at) {
        sup_pool_defer_at = 0;
        sup_pool_fill(conf);
    }

    if (sup_pool_retry_at != 0 && now >= sup_pool_retry_at) {
        sup_pool_fill(conf);
    }

    usable = sup_zygote_usable();

    /* waiters are in arrival order, so deadlines are ascending */
    while (sup_nwaiters > 0
           && (!usable || sup_waiters[0].deadline <= now))
    {
        w = sup_waiters[0];
        memmove(&sup_waiters[0], &sup_waiters[1],
                (--sup_nwaiters) * sizeof(sup_waiter_t));

        wk_log("session %s: no pool process %s, starting one by exec", w.id,
               usable ? "in time" : "(the zygote is down)");

        pid = 0;
        rc = sup_create_exec(conf, w.id, SUP_LANG_PYTHON, &pid, &err);

        if (rc == 0) {
            wk_log("session %s started, pid %ld", w.id, (long) pid);
        } else {
            wk_log("create %s failed: %s: %s", w.id, err.code, err.message);
        }

        if (sup_client_reply(conf, w.client, w.id, rc == 0 ? pid : 0, &err)
            == -1 && rc == 0)
        {
            sup_kill(conf, w.id);
        }
    }
}


void
sup_pool_kill_all(const sup_conf_t *conf)
{
    size_t  i;

    for (i = 0; i < sup_npool; /* void */ ) {
        if (sup_pool[i].pid == 0) {
            sup_pool_drop(conf, i);
            continue;
        }

        if (!sup_pool[i].killed) {
            sup_proc_kill(sup_pool[i].pid, sup_pool[i].name);
            sup_pool[i].killed = 1;
            sup_pool_files(conf, sup_pool[i].name);
        }

        i++;
    }
}


void
sup_pool_free_all(void)
{
    free(sup_pool);
    free(sup_waiters);

    sup_pool = NULL;
    sup_npool = 0;
    sup_cpool = 0;
    sup_waiters = NULL;
    sup_nwaiters = 0;
    sup_cwaiters = 0;
}


size_t
sup_pool_idle(void)
{
    size_t  i, n;

    for (i = 0, n = 0; i < sup_npool; i++) {
        if (sup_pool[i].pid > 0 && !sup_pool[i].killed) {
            n++;
        }
    }

    return n;
}


size_t
sup_pool_unreaped(void)
{
    size_t  i, n;

    for (i = 0, n = 0; i < sup_npool; i++) {
        if (sup_pool[i].pid > 0) {
            n++;
        }
    }

    return n;
}


int
sup_pool_has(pid_t pid)
{
    size_t  i;

    for (i = 0; i < sup_npool; i++) {
        if (pid > 0 && sup_pool[i].pid == pid) {
            return 1;
        }
    }

    return 0;
}


size_t
sup_pool_count(void)
{
    return sup_npool;
}


void
sup_pool_at(size_t i, const char **name, pid_t *pid, uint64_t *start)
{
    *name = sup_pool[i].name;
    *pid = sup_pool[i].killed ? 0 : sup_pool[i].pid;
    *start = sup_pool[i].start;
}


/*
 * A pool process could not be made, or died before it was handed out
 * (its jail could not be built...): the next try waits, twice as long
 * each time failures go on, so a host that cannot make sessions gets a
 * log line every few seconds rather than a flood.
 */
static void
sup_pool_failed(void)
{
    int64_t  now;

    now = wk_msec();

    if (sup_pool_backoff == 0 || now - sup_pool_failed_at > SUP_POOL_CALM_MS) {
        sup_pool_backoff = SUP_POOL_RETRY_MS;

    } else if (sup_pool_backoff < SUP_POOL_RETRY_MAX) {
        sup_pool_backoff *= 2;

        if (sup_pool_backoff > SUP_POOL_RETRY_MAX) {
            sup_pool_backoff = SUP_POOL_RETRY_MAX;
        }
    }

    sup_pool_failed_at = now;
    sup_pool_retry_at = now + sup_pool_backoff;
}
