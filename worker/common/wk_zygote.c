/*
 * wk_zygote.c: sending and receiving the supervisor <-> zygote messages of
 * wk_zygote.h, with their descriptors, over a SOCK_SEQPACKET socket.
 */

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wk_zygote.h"


int
wk_zy_send(int fd, const wk_zy_msg_t *m, const int *fds, int nfds)
{
    ssize_t          n;
    struct iovec     iov;
    struct msghdr    mh;
    struct cmsghdr  *cm;
    union {
        char            buf[CMSG_SPACE(sizeof(int) * WK_ZY_MAX_FDS)];
        struct cmsghdr  align;
    } u;

    if (nfds < 0 || nfds > WK_ZY_MAX_FDS) {
        errno = EINVAL;
        return -1;
    }

    memset(&mh, 0, sizeof(mh));
    iov.iov_base = (void *) m;
    iov.iov_len = sizeof(wk_zy_msg_t);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;

    if (nfds > 0) {
        memset(&u, 0, sizeof(u));
        mh.msg_control = u.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);

        cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
    }

    do {
        n = sendmsg(fd, &mh, MSG_NOSIGNAL);
    } while (n == -1 && errno == EINTR);

    if (n == -1) {
        return -1;
    }

    if (n != (ssize_t) sizeof(wk_zy_msg_t)) {
        errno = EPROTO;
        return -1;
    }

    return 0;
}


int
wk_zy_recv(int fd, wk_zy_msg_t *m, int *fds, int *nfds)
{
    int              i, k, extra;
    ssize_t          n;
    struct iovec     iov;
    struct msghdr    mh;
    struct cmsghdr  *cm;
    union {
        char            buf[CMSG_SPACE(sizeof(int) * WK_ZY_MAX_FDS)];
        struct cmsghdr  align;
    } u;

    *nfds = 0;

    memset(&mh, 0, sizeof(mh));
    memset(m, 0, sizeof(wk_zy_msg_t));
    iov.iov_base = m;
    iov.iov_len = sizeof(wk_zy_msg_t);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = u.buf;
    mh.msg_controllen = sizeof(u.buf);

    do {
        n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
    } while (n == -1 && errno == EINTR);

    if (n <= 0) {
        return (int) n;
    }

    for (cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
            continue;
        }

        k = (int) ((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));

        for (i = 0; i < k; i++) {
            if (*nfds < WK_ZY_MAX_FDS) {
                memcpy(&fds[(*nfds)++], CMSG_DATA(cm) + i * sizeof(int),
                       sizeof(int));

            } else {
                memcpy(&extra, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
                (void) close(extra);
            }
        }
    }

    if (n != (ssize_t) sizeof(wk_zy_msg_t) || (mh.msg_flags & MSG_CTRUNC)) {
        for (i = 0; i < *nfds; i++) {
            (void) close(fds[i]);
        }

        *nfds = 0;
        errno = EPROTO;
        return -1;
    }

    m->name[WK_ZY_NAME_LEN - 1] = '\0';

    return 1;
}
