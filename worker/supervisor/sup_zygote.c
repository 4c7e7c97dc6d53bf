/*
 * sup_zygote.c: the supervisor's side of its zygote (py_zygote.c): start
 * it (fork and exec, sup_spawn.c), talk to it over a SOCK_SEQPACKET
 * socketpair (wk_zygote.h), and start it again when it dies: at once if
 * it had been ready, after 100 ms, 200 ms, ... (at most 5 s) while it
 * keeps dying before it is ready.  After SUP_ZY_GIVE_UP such deaths in a
 * row creates stop waiting for it and use fork+exec, while restarts go on
 * at the longest interval.
 *
 * The zygote's death and the answers to FORKs race: an intermediate
 * process (py_zygote.c) may still send one after the zygote died.  So a
 * dead zygote's channel is shut down first (from then on no answer can be
 * sent, and an intermediate that cannot answer does not let its session
 * go), then drained, and what was asked and not answered is given up
 * (sup_pool_zygote_gone).  For the same reason the main loop reads the
 * channel before it reaps: an answer is always handled before the exit of
 * the session it names.
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sup.h"
#include "wk_log.h"
#include "wk_time.h"
#include "wk_zygote.h"


#define SUP_ZY_DOWN      0
#define SUP_ZY_STARTING  1
#define SUP_ZY_READY     2
#define SUP_ZY_STOPPED   3     /* shutting down: never again */

#define SUP_ZY_RETRY_MS  100
#define SUP_ZY_MAX_MS    5000
#define SUP_ZY_GIVE_UP   3


static void sup_zygote_closed(const sup_conf_t *conf);
static void sup_zygote_schedule(void);


static pid_t     sup_zy_pid;
static int       sup_zy_fd = -1;
static int       sup_zy_state = SUP_ZY_DOWN;
static int64_t   sup_zy_started;
static int64_t   sup_zy_restart_at;
static unsigned  sup_zy_failures;      /* deaths in a row before READY */
static unsigned  sup_zy_was_ready;     /* the current one said READY */


void
sup_zygote_start(const sup_conf_t *conf)
{
    int    sv[2];
    pid_t  pid;

    if (!conf->zygote || sup_zy_state == SUP_ZY_STOPPED || sup_zy_pid != 0) {
        return;
    }

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
        wk_log("socketpair() for the zygote failed: %s", strerror(errno));
        sup_zygote_schedule();
        return;
    }

    pid = sup_spawn_zygote(conf, sv[1]);

    (void) close(sv[1]);

    if (pid == -1) {
        (void) close(sv[0]);
        sup_zygote_schedule();
        return;
    }

    if (fcntl(sv[0], F_SETFL, O_NONBLOCK) == -1) {
        wk_log("fcntl(O_NONBLOCK) failed: %s", strerror(errno));
    }

    sup_zy_fd = sv[0];
    sup_zy_pid = pid;
    sup_zy_state = SUP_ZY_STARTING;
    sup_zy_was_ready = 0;
    sup_zy_started = wk_msec();

    wk_log("zygote started, pid %ld", (long) pid);
}


/* Start it again later: at once after a good run, else backing off. */
static void
sup_zygote_schedule(void)
{
    int64_t   delay;
    unsigned  i;

    delay = 0;

    if (sup_zy_failures > 0) {
        delay = SUP_ZY_RETRY_MS;

        for (i = 1; i < sup_zy_failures && delay < SUP_ZY_MAX_MS; i++) {
            delay *= 2;
        }

        if (delay > SUP_ZY_MAX_MS) {
            delay = SUP_ZY_MAX_MS;
        }
    }

    sup_zy_state = SUP_ZY_DOWN;
    sup_zy_restart_at = wk_msec() + delay;
}


int
sup_zygote_fd(void)
{
    return sup_zy_fd;
}


void
sup_zygote_event(const sup_conf_t *conf)
{
    int          rc, nfds, fds[WK_ZY_MAX_FDS];
    wk_zy_msg_t  m;

    while (sup_zy_fd != -1) {
        rc = wk_zy_recv(sup_zy_fd, &m, fds, &nfds);

        while (nfds > 0) {
            (void) close(fds[--nfds]);   /* the zygote sends none */
        }

        if (rc == 0) {
            sup_zygote_closed(conf);
            return;
        }

        if (rc == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return;
            }

            if (errno == EPROTO) {
                wk_log("zygote: a malformed message was dropped");
                continue;
            }

            wk_log("zygote: recvmsg() failed: %s", strerror(errno));
            sup_zygote_closed(conf);
            return;
        }

        switch (m.type) {

        case WK_ZY_READY:
            if (sup_zy_state == SUP_ZY_STARTING) {
                sup_zy_state = SUP_ZY_READY;
                sup_zy_was_ready = 1;
                sup_zy_failures = 0;

                wk_log("zygote (pid %ld) ready in %ld ms", (long) sup_zy_pid,
                       (long) (wk_msec() - sup_zy_started));

                sup_pool_fill(conf);
            }

            break;

        case WK_ZY_FORKED:
            sup_pool_forked(conf, m.seq, (pid_t) m.pid, m.err);
            break;

        default:
            wk_log("zygote: unexpected message %u", m.type);
            break;
        }
    }
}


/* The channel is over: nothing more will be answered. */
static void
sup_zygote_closed(const sup_conf_t *conf)
{
    if (sup_zy_fd != -1) {
        (void) close(sup_zy_fd);
        sup_zy_fd = -1;
    }

    if (sup_zy_state == SUP_ZY_STARTING || sup_zy_state == SUP_ZY_READY) {
        sup_zy_state = SUP_ZY_DOWN;
    }

    sup_pool_zygote_gone(conf);
}


int
sup_zygote_fork(uint32_t seq, const char *name, int lfd, int dfd)
{
    int          fds[2];
    size_t       len;
    wk_zy_msg_t  m;

    if (sup_zy_state != SUP_ZY_READY || sup_zy_fd == -1) {
        errno = EAGAIN;
        return -1;
    }

    memset(&m, 0, sizeof(wk_zy_msg_t));
    m.type = WK_ZY_FORK;
    m.seq = seq;

    len = strlen(name);
    if (len >= WK_ZY_NAME_LEN) {
        errno = ENAMETOOLONG;
        return -1;
    }

    memcpy(m.name, name, len + 1);

    fds[0] = lfd;
    fds[1] = dfd;

    if (wk_zy_send(sup_zy_fd, &m, fds, 2) == -1) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            wk_log("zygote: sendmsg() failed: %s", strerror(errno));
        }

        return -1;
    }

    return 0;
}


int
sup_zygote_ready(void)
{
    return sup_zy_state == SUP_ZY_READY && sup_zy_fd != -1;
}


int
sup_zygote_usable(void)
{
    return sup_zy_state != SUP_ZY_STOPPED && sup_zy_failures < SUP_ZY_GIVE_UP
           && (sup_zy_pid != 0 || sup_zy_restart_at != 0);
}


pid_t
sup_zygote_pid(void)
{
    return sup_zygote_ready() ? sup_zy_pid : 0;
}


int
sup_zygote_reaped(const sup_conf_t *conf, pid_t pid, int status)
{
    if (pid == 0 || pid != sup_zy_pid) {
        return 0;
    }

    sup_log_exit("zygote", NULL, pid, status);

    sup_zy_pid = 0;

    if (sup_zy_fd != -1) {
        /* no intermediate can answer from here on; take what they did */
        (void) shutdown(sup_zy_fd, SHUT_RDWR);
        sup_zygote_event(conf);
        sup_zygote_closed(conf);
    }

    if (sup_zy_state == SUP_ZY_STOPPED) {
        return 1;
    }

    if (!sup_zy_was_ready) {
        sup_zy_failures++;

        if (sup_zy_failures == SUP_ZY_GIVE_UP) {
            wk_log("the zygote keeps failing; sessions are started by "
                   "fork and exec until it comes up");
        }
    }

    sup_zygote_schedule();

    return 1;
}


int64_t
sup_zygote_timeout(int64_t now)
{
    if (sup_zy_state != SUP_ZY_DOWN || sup_zy_restart_at == 0) {
        return -1;
    }

    return (sup_zy_restart_at > now) ? sup_zy_restart_at - now : 0;
}


void
sup_zygote_timer(const sup_conf_t *conf, int64_t now)
{
    if (sup_zy_state == SUP_ZY_DOWN && sup_zy_restart_at != 0
        && now >= sup_zy_restart_at && sup_zy_pid == 0)
    {
        sup_zy_restart_at = 0;
        sup_zygote_start(conf);
    }
}


void
sup_zygote_stop(void)
{
    sup_zy_state = SUP_ZY_STOPPED;
    sup_zy_restart_at = 0;

    if (sup_zy_fd != -1) {
        (void) close(sup_zy_fd);
        sup_zy_fd = -1;
    }

    if (sup_zy_pid != 0 && kill(sup_zy_pid, SIGKILL) == -1
        && errno != ESRCH)
    {
        wk_log("kill(zygote %ld) failed: %s", (long) sup_zy_pid,
               strerror(errno));
    }
}


int
sup_zygote_is(pid_t pid)
{
    return pid != 0 && pid == sup_zy_pid;
}


size_t
sup_zygote_unreaped(void)
{
    return sup_zy_pid != 0;
}
