/*
 * py_tx.c: the snapshot behind a run's transaction.  Before a run whose
 * tx_policy may undo it, the main thread forks: the child is a
 * copy-on-write image of the whole session as it was (every object, in
 * place mutations included, imported modules' state, the execution
 * count) and waits on a pipe for the verdict:
 *
 *   EOF or 'c'      commit: the run's effects stay, the snapshot _exits;
 *   't' + count     take over: the session process that ran the code
 *                   (and now holds its effects) has stopped accepting,
 *                   the snapshot starts descriptors and an I/O thread of
 *                   its own (py_session_restart) on the same listening
 *                   socket and serves the session from here on.
 *
 * After a take-over the old process answers the run with the new pid and
 * idles until the supervisor, told of the new pid by nginx ("move"),
 * kills it.  The snapshot keeps the session's uid, process group and
 * session id (the old pid, which the kernel cannot hand out again while
 * they are in use), so nothing outside notices but the pid.
 *
 * What a snapshot cannot bring back: threads (fork keeps only the calling
 * one) and the parenthood of child processes started before the run.
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <Python.h>

#include "py_session.h"
#include "wk_log.h"


#define PY_TX_TAKE_OVER  't'
#define PY_TX_COMMIT     'c'


static int py_tx_wait(py_session_t *s, int fd, int64_t *count);


static pid_t  py_tx_exiting;      /* a committed snapshot not reaped yet */


int
py_tx_begin(py_session_t *s, int64_t *count)
{
    int        fds[2], rc, on;
    pid_t      pid;
    socklen_t  len;

    /* user code may have closed or replaced it: then no snapshot */
    on = 0;
    len = sizeof(int);

    if (getsockopt(s->spare_listen_fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len)
        == -1 || !on)
    {
        wk_log("session %s: the spare listening socket is gone, so no "
               "snapshot can take over", s->id);
        return -1;
    }

    if (pipe2(fds, O_CLOEXEC) == -1) {
        wk_log("session %s: pipe2() for a snapshot failed: %s", s->id,
               strerror(errno));
        return -1;
    }

    PyOS_BeforeFork();

    pid = fork();

    if (pid == -1) {
        PyOS_AfterFork_Parent();
        wk_log("session %s: fork() for a snapshot failed: %s", s->id,
               strerror(errno));
        (void) close(fds[0]);
        (void) close(fds[1]);
        return -1;
    }

    if (pid == 0) {
        PyOS_AfterFork_Child();

        py_tx_exiting = 0;              /* the old process's child */
        (void) close(fds[1]);

        rc = py_tx_wait(s, fds[0], count);

        (void) close(fds[0]);

        if (rc != 0) {
            _exit(EXIT_SUCCESS);        /* committed: not needed */
        }

        s->pid = getpid();

        if (py_session_restart(s) != 0) {
            _exit(EXIT_FAILURE);
        }

        return 1;
    }

    PyOS_AfterFork_Parent();

    (void) close(fds[0]);

    s->tx_child = pid;
    s->tx_fd = fds[1];

    return 0;
}


/* In the snapshot: 0 to take over (with *count), else 1. */
static int
py_tx_wait(py_session_t *s, int fd, int64_t *count)
{
    size_t   got;
    ssize_t  n;
    uint8_t  msg[1 + sizeof(int64_t)];

    got = 0;

    while (got < sizeof(msg)) {
        n = read(fd, msg + got, sizeof(msg) - got);

        if (n == -1 && errno == EINTR) {
            continue;
        }

        if (n <= 0 || (got == 0 && msg[0] != PY_TX_TAKE_OVER)) {
            return 1;
        }

        got += (size_t) n;
    }

    memcpy(count, msg + 1, sizeof(int64_t));

    return 0;
}


/*
 * The snapshot exits on its own; tearing down its address space takes
 * as long as the fork took, so it is reaped without waiting, here or at
 * the next commit (one may be on its way out at a time).
 */
void
py_tx_commit(py_session_t *s)
{
    char   c;
    pid_t  pid;

    if (s->tx_child == 0) {
        return;
    }

    c = PY_TX_COMMIT;
    (void) write(s->tx_fd, &c, 1);
    (void) close(s->tx_fd);

    if (py_tx_exiting != 0) {
        do {
            pid = waitpid(py_tx_exiting, NULL, 0);
        } while (pid == -1 && errno == EINTR);
    }

    do {
        pid = waitpid(s->tx_child, NULL, WNOHANG);
    } while (pid == -1 && errno == EINTR);

    py_tx_exiting = (pid == 0) ? s->tx_child : 0;

    s->tx_child = 0;
    s->tx_fd = -1;
}


pid_t
py_tx_handover(py_session_t *s, int64_t count)
{
    pid_t    pid;
    ssize_t  n;
    uint8_t  msg[1 + sizeof(int64_t)];

    if (s->tx_child == 0) {
        return 0;
    }

    msg[0] = PY_TX_TAKE_OVER;
    memcpy(msg + 1, &count, sizeof(int64_t));

    do {
        n = write(s->tx_fd, msg, sizeof(msg));
    } while (n == -1 && errno == EINTR);

    (void) close(s->tx_fd);

    pid = s->tx_child;
    s->tx_child = 0;
    s->tx_fd = -1;

    if (n != (ssize_t) sizeof(msg)) {
        wk_log("session %s: cannot wake the snapshot: %s", s->id,
               strerror(errno));
        return 0;
    }

    return pid;
}
