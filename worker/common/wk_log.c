/*
 * wk_log.c: the logger declared in wk_log.h.  Formats into a stack buffer
 * and writes the whole line at once, so lines from concurrent processes
 * sharing nginx's error log do not interleave, and defuses the message
 * (wk_log_defuse), which may quote what user code chose.  Safe to call in
 * a forked child (the pid is looked up on every call).  The descriptor is
 * fd 2 unless wk_log_set_fd() changed it.
 *
 * Below the keeper that descriptor is a socket connected to the keeper's
 * log relay (sup_relay.c), a session's own (wk_log_relay_own): a line is
 * sent without blocking (whatever O_NONBLOCK or SO_SNDTIMEO user code set
 * on the socket), and while the relay is full (a session floods it) the
 * line waits for room, in poll(2), WK_LOG_WAIT_MS at most: a flood delays
 * another session's line a little, and neither silences it nor blocks it
 * for long.
 */

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "wk_log.h"


#define WK_LOG_LINE     2048
#define WK_LOG_WAIT_MS  200     /* for room on a full relay, at most */
#define WK_LOG_POLL_MS  10


static void wk_log_defuse(char *text, size_t len);


static const char  *wk_log_role = "worker";
static int          wk_log_fd = STDERR_FILENO;
static int          wk_log_stamp;


void
wk_log_init(const char *role, int stamp)
{
    wk_log_role = role;
    wk_log_stamp = stamp;
}


void
wk_log_set_fd(int fd)
{
    wk_log_fd = fd;
}


const char *
wk_log_cwd_name(void)
{
    char         *base;
    static char   cwd[PATH_MAX];

    if (getcwd(cwd, sizeof(cwd)) == NULL) {
        return "?";
    }

    base = strrchr(cwd, '/');

    return (base != NULL && base[1] != '\0') ? base + 1 : cwd;
}


void
wk_log(const char *fmt, ...)
{
    int            n, m, saved, wait;
    size_t         len;
    time_t         now;
    ssize_t        w;
    va_list        args;
    struct tm      tm;
    struct pollfd  pfd;
    char           line[WK_LOG_LINE];

    saved = errno;
    n = 0;

    if (wk_log_stamp) {
        now = time(NULL);

        if (localtime_r(&now, &tm) != NULL) {
            n = (int) strftime(line, sizeof(line), "%Y/%m/%d %H:%M:%S ", &tm);
        }
    }

    m = snprintf(line + n, sizeof(line) - n, "pyrepl-%s[%ld]: ", wk_log_role,
                 (long) getpid());
    if (m < 0 || (size_t) (n + m) >= sizeof(line)) {
        goto done;
    }

    n += m;

    va_start(args, fmt);
    m = vsnprintf(line + n, sizeof(line) - n, fmt, args);
    va_end(args);

    if (m < 0) {
        goto done;
    }

    /* keep room for the newline; a truncated message ends in "..." */
    len = (size_t) n + (size_t) m;
    if (len > sizeof(line) - 1) {
        len = sizeof(line) - 1;
        memcpy(line + len - 3, "...", 3);
    }

    wk_log_defuse(line + n, len - (size_t) n);

    line[len++] = '\n';

    /* nowhere is left to report a failed log write */
    for (wait = 0; ; wait += WK_LOG_POLL_MS) {
        w = send(wk_log_fd, line, len, MSG_DONTWAIT | MSG_NOSIGNAL);

        if (w == -1 && errno == ENOTSOCK) {
            w = write(wk_log_fd, line, len);
            break;
        }

        if (w != -1 || errno != EAGAIN || wait >= WK_LOG_WAIT_MS) {
            break;
        }

        /* the relay is full: wait for room */
        pfd.fd = wk_log_fd;
        pfd.events = POLLOUT;
        (void) poll(&pfd, 1, WK_LOG_POLL_MS);
    }

    (void) w;

done:

    errno = saved;
}


int
wk_log_relay_own(int fd)
{
    int                 s, err;
    socklen_t           len;
    struct sockaddr_un  sa;

    len = sizeof(sa);
    memset(&sa, 0, sizeof(sa));

    if (getpeername(fd, (struct sockaddr *) &sa, &len) == -1) {
        return -1;
    }

    if (sa.sun_family != AF_UNIX || len <= sizeof(sa_family_t)
        || sa.sun_path[0] == '\0')
    {
        errno = ENOTSOCK;
        return -1;
    }

    s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s == -1) {
        return -1;
    }

    if (connect(s, (struct sockaddr *) &sa, len) == -1) {
        err = errno;
        (void) close(s);
        errno = err;
        return -1;
    }

    return s;
}


/*
 * A message may quote what user code chose (a file name it left, a line
 * its process wrote to the relay): control characters become '?', so the
 * message stays one line, and square brackets become parentheses, so no
 * "[alert]" in it reads as nginx's own.
 */
static void
wk_log_defuse(char *text, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if ((unsigned char) text[i] < 0x20 || text[i] == 0x7f) {
            text[i] = '?';

        } else if (text[i] == '[') {
            text[i] = '(';

        } else if (text[i] == ']') {
            text[i] = ')';
        }
    }
}
