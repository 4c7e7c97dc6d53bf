/*
 * sup_lifecycle.c: the life of a session process as the supervisor sees
 * it, tying together the table, the spawner and the file system.
 *
 *   create   WORKDIR/<id> and DIR/<id>.sock are made, the process forked,
 *            the entry added LIVE.
 *   kill     the process group gets SIGKILL, the socket and the working
 *            directory are removed; the entry stays KILLED until reaped.
 *   crash    (reaped while LIVE) the rest of its process group gets
 *            SIGKILL, the socket is unlinked so nginx's next connect fails
 *            and reports the session crashed; the entry stays DEAD, with
 *            its working directory, until a kill.
 *   kill-all (shutdown) a kill of every entry.
 *
 * A process group is only signalled while its leader is unreaped (running
 * or a zombie): that keeps the group id from being reused under us.
 */

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "supervisor.h"
#include "wk_log.h"


#define SUP_ERR(e, c, ...)                                                   \
    do { (e)->code = (c);                                                    \
         (void) snprintf((e)->message, sizeof((e)->message), __VA_ARGS__);   \
    } while (0)


static int sup_paths(const sup_conf_t *conf, const char *id, char *sock,
    char *dir);
static void sup_kill_group(sup_session_t *s);
static void sup_remove_files(const sup_conf_t *conf, const char *id);
static void sup_log_exit(const sup_session_t *s, int status);


static int
sup_paths(const sup_conf_t *conf, const char *id, char *sock, char *dir)
{
    if (sup_fs_path(sock, PATH_MAX, conf->socket_dir, id, ".sock") == -1
        || sup_fs_path(dir, PATH_MAX, conf->workdir, id, "") == -1)
    {
        return -1;
    }

    return 0;
}


int
sup_create(const sup_conf_t *conf, const char *id, pid_t *pid,
    sup_err_t *err)
{
    int    fd, rc;
    pid_t  p;
    char   sock[PATH_MAX], dir[PATH_MAX];

    if (sup_session_find(id) != NULL) {
        SUP_ERR(err, "conflict", "session %s exists", id);
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

    rc = sup_fs_mkdir(dir, 0700, conf->owner_uid, conf->owner_gid);

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

    fd = sup_listen_unix(sock, 0, 0, conf->owner_uid, conf->owner_gid);
    if (fd == -1) {
        if (errno == EADDRINUSE) {
            wk_log("session %s: socket \"%s\" exists", id, sock);
            SUP_ERR(err, "conflict", "socket of %s exists", id);

        } else {
            SUP_ERR(err, "unavailable", "cannot create the socket: %s",
                    strerror(errno));
        }

        goto fail;
    }

    p = sup_spawn(conf, id, fd, dir);
    if (p == -1) {
        SUP_ERR(err, "unavailable", "cannot start a session process: %s",
                strerror(errno));
        goto fail;
    }

    if (close(fd) == -1) {
        wk_log("session %s: close(listen fd) failed: %s", id,
               strerror(errno));
    }

    (void) sup_session_add(id, p);   /* room was reserved above */

    *pid = p;

    return 0;

fail:

    if (fd != -1) {
        (void) close(fd);
        (void) sup_fs_unlink(sock);
    }

    (void) sup_fs_rmtree(dir);

    return -1;
}


static void
sup_kill_group(sup_session_t *s)
{
    if (kill(-s->pid, SIGKILL) == -1 && errno != ESRCH) {
        wk_log("session %s: kill(-%ld, SIGKILL) failed: %s", s->id,
               (long) s->pid, strerror(errno));
    }
}


static void
sup_remove_files(const sup_conf_t *conf, const char *id)
{
    char  sock[PATH_MAX], dir[PATH_MAX];

    if (sup_paths(conf, id, sock, dir) == -1) {
        return;
    }

    (void) sup_fs_unlink(sock);
    (void) sup_fs_rmtree(dir);
}


void
sup_kill(const sup_conf_t *conf, const char *id)
{
    int             status;
    pid_t           rc;
    sup_session_t  *s;

    s = sup_session_find(id);

    if (s != NULL && s->state == SUP_S_LIVE) {
        sup_kill_group(s);
        s->state = SUP_S_KILLED;

        /* take it now if it is already gone; else on SIGCHLD */
        do {
            rc = waitpid(s->pid, &status, WNOHANG);
        } while (rc == -1 && errno == EINTR);

        if (rc == -1) {
            wk_log("session %s: waitpid(%ld) failed: %s", id, (long) s->pid,
                   strerror(errno));
        }

        if (rc != 0) {
            sup_session_remove(s);
        }

    } else if (s != NULL) {
        sup_session_remove(s);   /* DEAD: already reaped */
    }

    sup_remove_files(conf, id);
}


static void
sup_log_exit(const sup_session_t *s, int status)
{
    if (WIFSIGNALED(status)) {
        wk_log("session %s (pid %ld) crashed: killed by signal %d (%s)%s",
               s->id, (long) s->pid, WTERMSIG(status),
               strsignal(WTERMSIG(status)),
               WCOREDUMP(status) ? ", core dumped" : "");

    } else {
        wk_log("session %s (pid %ld) exited with status %d", s->id,
               (long) s->pid, WEXITSTATUS(status));
    }
}


void
sup_reap(const sup_conf_t *conf)
{
    int             status;
    pid_t           pid, rc;
    siginfo_t       si;
    sup_session_t  *s, *twin;
    char            sock[PATH_MAX], dir[PATH_MAX];

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
            wk_log("reaped unknown child %ld", (long) pid);
            continue;
        }

        if (s->state == SUP_S_LIVE) {
            sup_log_exit(s, status);

            if (sup_paths(conf, s->id, sock, dir) == 0) {
                (void) sup_fs_unlink(sock);
            }

            s->state = SUP_S_DEAD;
            continue;
        }

        /*
         * KILLED: the files went at kill time; remove the directory again
         * in case the dying process wrote to it meanwhile, unless the id
         * has been created anew.
         */
        twin = sup_session_find(s->id);

        if (twin == NULL && sup_paths(conf, s->id, sock, dir) == 0) {
            (void) sup_fs_rmtree(dir);
        }

        sup_session_remove(s);
    }
}


void
sup_kill_all(const sup_conf_t *conf)
{
    size_t          i, n;
    sup_session_t  *s;
    char            id[SUP_ID_LEN + 1];

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


size_t
sup_unreaped(void)
{
    size_t  i, n, k;

    n = sup_session_count();
    k = 0;

    for (i = 0; i < n; i++) {
        if (sup_session_at(i)->state != SUP_S_DEAD) {
            k++;
        }
    }

    return k;
}
