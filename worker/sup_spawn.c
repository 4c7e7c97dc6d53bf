/*
 * sup_spawn.c: starting one session process.  The child is put in its own
 * process group (so a kill takes along whatever it spawns), gets a clean
 * signal state, the session's listening socket as fd 3, /dev/null as
 * stdin, nginx's error log as stdout/stderr (inherited), the session's
 * working directory, and no other descriptor; then it execs the session
 * binary:
 *
 *   pyrepl-python --listen-fd 3 --id ID --max-frame N
 *
 * fd 3 is a blocking listening socket; the session process makes it
 * non-blocking itself if it wants.  The parent does not wait for the exec:
 * a binary that fails to start exits with status 127 and is reaped and
 * logged like any crashed session.
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "supervisor.h"
#include "wk_log.h"


#define SUP_LISTEN_FD  3


static void sup_spawn_child(const sup_conf_t *conf, const char *id,
    int listen_fd, const char *dir) __attribute__((noreturn));
static int sup_spawn_close_from(int lowfd);


pid_t
sup_spawn(const sup_conf_t *conf, const char *id, int listen_fd,
    const char *dir)
{
    pid_t  pid;

    pid = fork();

    if (pid == -1) {
        wk_log("fork() for session %s failed: %s", id, strerror(errno));
        return -1;
    }

    if (pid == 0) {
        sup_spawn_child(conf, id, listen_fd, dir);
    }

    /*
     * Set the group from this side too, so that a kill(-pid) issued before
     * the child has run finds the group.  EACCES means the child has
     * already exec'ed (after its own setpgid); ESRCH that it already died.
     */
    if (setpgid(pid, pid) == -1 && errno != EACCES && errno != ESRCH) {
        wk_log("setpgid(%ld) for session %s failed: %s", (long) pid, id,
               strerror(errno));
    }

    return pid;
}


static void
sup_spawn_child(const sup_conf_t *conf, const char *id, int listen_fd,
    const char *dir)
{
    int               sig, fd, flags;
    char              max_frame[32];
    char             *argv[8];
    sigset_t          set;
    struct sigaction  sa;

    if (setpgid(0, 0) == -1) {
        wk_log("session %s: setpgid() failed: %s", id, strerror(errno));
        goto fail;
    }

    /* dispositions: ignored ones (SIGPIPE, SIGHUP) would survive exec */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);

    for (sig = 1; sig < NSIG; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP) {
            (void) sigaction(sig, &sa, NULL);   /* EINVAL for glibc's own */
        }
    }

    sigemptyset(&set);
    if (sigprocmask(SIG_SETMASK, &set, NULL) == -1) {
        wk_log("session %s: sigprocmask() failed: %s", id, strerror(errno));
        goto fail;
    }

    if (listen_fd == SUP_LISTEN_FD) {
        flags = fcntl(listen_fd, F_GETFD);
        if (flags == -1
            || fcntl(listen_fd, F_SETFD, flags & ~FD_CLOEXEC) == -1)
        {
            wk_log("session %s: fcntl(FD_CLOEXEC) failed: %s", id,
                   strerror(errno));
            goto fail;
        }

    } else if (dup2(listen_fd, SUP_LISTEN_FD) == -1) {
        wk_log("session %s: dup2(%d, 3) failed: %s", id, listen_fd,
               strerror(errno));
        goto fail;
    }

    /* 0-3 are taken, so this descriptor is above them */
    fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        wk_log("session %s: open(\"/dev/null\") failed: %s", id,
               strerror(errno));
        goto fail;
    }

    if (dup2(fd, STDIN_FILENO) == -1) {
        wk_log("session %s: dup2(/dev/null, 0) failed: %s", id,
               strerror(errno));
        goto fail;
    }

    if (chdir(dir) == -1) {
        wk_log("session %s: chdir(\"%s\") failed: %s", id, dir,
               strerror(errno));
        goto fail;
    }

    if (sup_spawn_close_from(SUP_LISTEN_FD + 1) == -1) {
        goto fail;
    }

    (void) snprintf(max_frame, sizeof(max_frame), "%zu", conf->max_frame);

    argv[0] = "pyrepl-python";
    argv[1] = "--listen-fd";
    argv[2] = "3";
    argv[3] = "--id";
    argv[4] = (char *) id;
    argv[5] = "--max-frame";
    argv[6] = max_frame;
    argv[7] = NULL;

    execv(conf->python, argv);

    wk_log("session %s: execv(\"%s\") failed: %s", id, conf->python,
           strerror(errno));

fail:

    _exit(127);
}


/* Close every descriptor from lowfd up; 0 or -1 (logged). */
static int
sup_spawn_close_from(int lowfd)
{
    int            fd;
    struct rlimit  rl;

    if (close_range((unsigned) lowfd, ~0U, 0) == 0) {
        return 0;
    }

    if (errno != ENOSYS && errno != EINVAL) {
        wk_log("close_range(%d) failed: %s", lowfd, strerror(errno));
        return -1;
    }

    /* kernels before 5.9 */
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
        wk_log("getrlimit(RLIMIT_NOFILE) failed: %s", strerror(errno));
        return -1;
    }

    for (fd = lowfd; (rlim_t) fd < rl.rlim_cur; fd++) {
        (void) close(fd);   /* EBADF for the unused ones */
    }

    return 0;
}
