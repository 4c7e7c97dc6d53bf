/*
 * sup_relay.c: the log relay, which the keeper owns.  Processes that run
 * user code (sessions, and the zygote they are forked from) never hold
 * nginx's error log: code could forge lines in it or truncate it.  Their
 * stdout and stderr, and so their wk_log() lines, are instead datagram
 * sockets connected to one the keeper alone reads, bound in the socket
 * directory (SUP_RELAY_NAME), where only root and nginx's workers reach
 * it.  Each session process connects a socket of its own before it is
 * confined (wk_log_relay_own), so what its code does with it (connect it
 * elsewhere, shut it down) is its own business.  Each datagram is one
 * line; the kernel stamps it with its sender's pid and uid (SO_PASSCRED),
 * and the keeper writes it to the error log as
 *
 *     pyrepl-keeper[K]: pid P, uid U: <text>
 *
 * with the text made harmless by wk_log(): control characters become '?'
 * (a datagram is one line, whatever it holds) and square brackets become
 * parentheses (no "[alert]" that a log scanner could take for nginx's
 * own).  Each uid
 * (a session, where sessions have their own) may log SUP_RELAY_RATE
 * lines a second, in bursts of SUP_RELAY_BURST; what is over is dropped
 * and counted, so that a session can neither flood the log nor silence
 * another one's lines.  One call reads at most SUP_RELAY_BATCH datagrams,
 * so that a flood cannot keep the keeper from its other work.
 *
 * The keeper outlives supervisors, so sessions that a new supervisor
 * adopts keep their relay; a supervisor that becomes the keeper inherits
 * the bound socket itself (--log-rx-fd).
 */

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/uio.h>
#include <unistd.h>

#include "sup.h"
#include "wk_log.h"
#include "wk_time.h"


#define SUP_RELAY_LINE    1024      /* longer datagrams are cut */
#define SUP_RELAY_RATE    20        /* lines a second, on average */
#define SUP_RELAY_BURST   100
#define SUP_RELAY_UIDS    1024      /* uids with a budget of their own */
#define SUP_RELAY_BATCH   256       /* datagrams a call reads at most */
#define SUP_RELAY_BUF     (256 * 1024)  /* the socket's receive buffer */


/* one uid's budget */
typedef struct {
    uid_t          uid;
    int64_t        tokens;
    int64_t        refilled;        /* ms of the last refill, 0: unused */
    unsigned long  dropped;
} sup_relay_budget_t;


static void sup_relay_clean(char *text, size_t len);
static int sup_relay_admit(uid_t uid);


static sup_relay_budget_t  sup_relay_budgets[SUP_RELAY_UIDS];


int
sup_relay_open(const char *dir, int *rx, int *tx)
{
    int                 fd, on, size;
    mode_t              mask;
    struct sockaddr_un  sa;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;

    if ((size_t) snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", dir,
                          SUP_RELAY_NAME)
        >= sizeof(sa.sun_path))
    {
        wk_log("the log relay's path in \"%s\" is too long", dir);
        return -1;
    }

    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        wk_log("socket() for the log relay failed: %s", strerror(errno));
        return -1;
    }

    on = 1;
    size = SUP_RELAY_BUF;

    /* one left by a keeper that was killed: nobody reads it any more */
    if (unlink(sa.sun_path) == -1 && errno != ENOENT) {
        wk_log("unlink(\"%s\") failed: %s", sa.sun_path, strerror(errno));
        goto failed;
    }

    mask = umask(077);

    if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == -1) {
        (void) umask(mask);
        wk_log("bind(\"%s\") failed: %s", sa.sun_path, strerror(errno));
        goto failed;
    }

    (void) umask(mask);

    if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) == -1
        || setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)) == -1)
    {
        wk_log("setting up the log relay failed: %s", strerror(errno));
        goto failed;
    }

    *rx = fd;

    *tx = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    if (*tx == -1
        || connect(*tx, (struct sockaddr *) &sa, sizeof(sa)) == -1)
    {
        wk_log("connecting to the log relay failed: %s", strerror(errno));

        if (*tx != -1) {
            (void) close(*tx);
        }

        goto failed;
    }

    return 0;

failed:

    (void) close(fd);

    return -1;
}


void
sup_relay_read(int rx)
{
    int              i;
    ssize_t          n;
    struct ucred     cred;
    struct iovec     iov;
    struct msghdr    msg;
    struct cmsghdr  *cm;
    char             text[SUP_RELAY_LINE + 1];
    char             cbuf[CMSG_SPACE(sizeof(struct ucred))];

    for (i = 0; i < SUP_RELAY_BATCH; i++) {
        iov.iov_base = text;
        iov.iov_len = SUP_RELAY_LINE;

        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf;
        msg.msg_controllen = sizeof(cbuf);

        n = recvmsg(rx, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

        if (n == -1) {
            if (errno == EINTR) {
                i--;
                continue;
            }

            if (errno != EAGAIN) {
                wk_log("recvmsg(log relay) failed: %s", strerror(errno));
            }

            return;
        }

        memset(&cred, 0, sizeof(cred));

        for (cm = CMSG_FIRSTHDR(&msg); cm != NULL;
             cm = CMSG_NXTHDR(&msg, cm))
        {
            if (cm->cmsg_level == SOL_SOCKET
                && cm->cmsg_type == SCM_CREDENTIALS
                && cm->cmsg_len == CMSG_LEN(sizeof(struct ucred)))
            {
                memcpy(&cred, CMSG_DATA(cm), sizeof(cred));
            }
        }

        if (!sup_relay_admit(cred.uid)) {
            continue;
        }

        sup_relay_clean(text, (size_t) n);

        wk_log("pid %ld, uid %ld: %s%s", (long) cred.pid, (long) cred.uid,
               text, (msg.msg_flags & MSG_TRUNC) ? "..." : "");
    }
}


/*
 * NUL-terminate text and drop its trailing newlines; wk_log() defuses
 * the rest (a NUL in it only ends the line early).
 */
static void
sup_relay_clean(char *text, size_t len)
{
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r')) {
        len--;
    }

    text[len] = '\0';
}


/*
 * The rate limit: 1 if this line of uid's may be logged.  A uid new to
 * the table takes an entry whose budget is full again (which tells
 * nothing any more), else the one heard of longest ago.
 */
static int
sup_relay_admit(uid_t uid)
{
    int64_t              now, add;
    size_t               i;
    sup_relay_budget_t  *b, *e, *spare, *oldest;

    now = wk_msec();
    b = NULL;
    spare = NULL;
    oldest = &sup_relay_budgets[0];

    for (i = 0; i < SUP_RELAY_UIDS; i++) {
        e = &sup_relay_budgets[i];

        if (e->refilled != 0 && e->uid == uid) {
            b = e;
            break;
        }

        /* unused, or refilled to the full burst by now: as good as new */
        if (spare == NULL
            && (e->refilled == 0
                || (e->dropped == 0
                    && now - e->refilled
                       >= (SUP_RELAY_BURST - e->tokens) * 1000
                          / SUP_RELAY_RATE)))
        {
            spare = e;
        }

        if (e->refilled < oldest->refilled) {
            oldest = e;
        }
    }

    if (b == NULL) {
        /*
         * Only with more than SUP_RELAY_UIDS uids logging at once does a
         * uid lose its budget to another (the one heard of longest ago).
         */
        b = (spare != NULL) ? spare : oldest;
        b->uid = uid;
        b->tokens = SUP_RELAY_BURST;
        b->refilled = now;
        b->dropped = 0;
    }

    add = (now - b->refilled) * SUP_RELAY_RATE / 1000;

    if (add > 0) {
        b->tokens = (b->tokens + add > SUP_RELAY_BURST)
                    ? SUP_RELAY_BURST : b->tokens + add;
        b->refilled = now;
    }

    if (b->tokens == 0) {
        b->dropped++;
        return 0;
    }

    b->tokens--;

    if (b->dropped > 0) {
        wk_log("%lu lines of uid %ld were dropped (more than %d a second)",
               b->dropped, (long) uid, SUP_RELAY_RATE);
        b->dropped = 0;
    }

    return 1;
}
