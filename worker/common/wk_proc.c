/*
 * wk_proc.c: the process set-up the supervisor and the session processes
 * share (wk_proc.h).
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wk_log.h"
#include "wk_proc.h"


int
wk_proc_signals(void)
{
    int               sig;
    sigset_t          none;
    struct sigaction  sa;

    memset(&sa, 0, sizeof(struct sigaction));
    sa.sa_handler = SIG_DFL;

    if (sigemptyset(&sa.sa_mask) == -1 || sigemptyset(&none) == -1) {
        wk_log("sigemptyset() failed: %s", strerror(errno));
        return -1;
    }

    for (sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) {
            continue;
        }

        /* EINVAL: a signal the C library reserves for itself */
        if (sigaction(sig, &sa, NULL) == -1 && errno != EINVAL) {
            wk_log("sigaction(%d) failed: %s", sig, strerror(errno));
            return -1;
        }
    }

    if (sigprocmask(SIG_SETMASK, &none, NULL) == -1) {
        wk_log("sigprocmask() failed: %s", strerror(errno));
        return -1;
    }

    return 0;
}


int
wk_proc_std_fds(void)
{
    int  fd, nul;

    for (fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) != -1) {
            continue;
        }

        if (errno != EBADF) {
            wk_log("fcntl(%d, F_GETFD) failed: %s", fd, strerror(errno));
            return -1;
        }

        nul = open("/dev/null", O_RDWR);

        if (nul == -1) {
            wk_log("open(\"/dev/null\") failed: %s", strerror(errno));
            return -1;
        }

        if (nul != fd) {
            wk_log("open(\"/dev/null\") gave fd %d for fd %d", nul, fd);
            return -1;
        }
    }

    return 0;
}


int
wk_proc_listen_fd(int fd)
{
    int        flags, on;
    socklen_t  len;

    on = 0;
    len = sizeof(int);

    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == -1) {
        wk_log("--listen-fd %d: getsockopt(SO_ACCEPTCONN) failed: %s", fd,
               strerror(errno));
        return -1;
    }

    if (!on) {
        wk_log("--listen-fd %d: not a listening socket", fd);
        return -1;
    }

    flags = fcntl(fd, F_GETFL);
    if (flags == -1 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1) {
        wk_log("--listen-fd %d: fcntl(O_NONBLOCK) failed: %s", fd,
               strerror(errno));
        return -1;
    }

    if (fcntl(fd, F_SETFD, FD_CLOEXEC) == -1) {
        wk_log("--listen-fd %d: fcntl(FD_CLOEXEC) failed: %s", fd,
               strerror(errno));
        return -1;
    }

    return 0;
}


void
wk_proc_close_range(unsigned lo, unsigned hi)
{
    unsigned       fd;
    struct rlimit  rl;

    if (lo > hi || close_range(lo, hi, 0) == 0) {
        return;
    }

    /* kernels before 5.9; EBADF for the descriptors not open */
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == RLIM_INFINITY
        || rl.rlim_cur > ~0U)
    {
        rl.rlim_cur = 65536;
    }

    if (hi >= rl.rlim_cur) {
        hi = (unsigned) rl.rlim_cur - 1;
    }

    for (fd = lo; fd <= hi && fd >= lo; fd++) {
        (void) close((int) fd);
    }
}


void
wk_proc_title_area(int argc, char **argv, char **start, size_t *len)
{
    int    i;
    char  *end;

    *start = NULL;
    *len = 0;

    if (argc < 1 || argv == NULL || argv[0] == NULL) {
        return;
    }

    end = argv[0];

    for (i = 0; i < argc; i++) {
        if (argv[i] != end) {
            break;          /* not one contiguous area: stop here */
        }

        end = argv[i] + strlen(argv[i]) + 1;
    }

    *start = argv[0];
    *len = (size_t) (end - argv[0]);
}


int
wk_proc_set_title(char *start, size_t len, const char *title, size_t n)
{
    if (start == NULL || n > len) {
        return -1;
    }

    memset(start, 0, len);
    memcpy(start, title, n);

    return 0;
}
