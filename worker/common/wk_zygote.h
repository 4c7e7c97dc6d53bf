/*
 * wk_zygote.h: the private channel between the supervisor and its zygote
 * (pyrepl-python --zygote).  It is not part of the wire protocol of
 * pyrepl_proto.h: both ends are binaries of one build, started together,
 * so the messages are fixed-size C structs on a SOCK_SEQPACKET socketpair
 * (one message per datagram, descriptors passed with SCM_RIGHTS).
 *
 *   zygote -> supervisor  READY               once: libpython is up and
 *                                             the warm-up code has run
 *   supervisor -> zygote  FORK seq name       + 2 fds: the session's
 *                                             listening socket and an
 *                                             O_DIRECTORY fd of its
 *                                             working directory
 *   zygote -> supervisor  FORKED seq pid err  pid > 0: the session
 *                                             process (a grandchild of the
 *                                             zygote, reparented to the
 *                                             supervisor); else err is an
 *                                             errno value
 *
 * Every FORK is answered by exactly one FORKED, unless the zygote dies.
 */

#ifndef WK_ZYGOTE_H
#define WK_ZYGOTE_H

#include <stdint.h>
#include <sys/types.h>


#define WK_ZY_READY    1
#define WK_ZY_FORK     2
#define WK_ZY_FORKED   3

#define WK_ZY_NAME_LEN 24     /* the session's log name, NUL-terminated */
#define WK_ZY_MAX_FDS  2


typedef struct {
    uint32_t    type;         /* WK_ZY_* */
    uint32_t    seq;          /* FORK's, echoed by FORKED */
    int32_t     pid;          /* FORKED: the session process, or 0 */
    int32_t     err;          /* FORKED: errno when pid is 0 */
    char        name[WK_ZY_NAME_LEN];
} wk_zy_msg_t;


/*
 * Send one message with nfds descriptors (0 to WK_ZY_MAX_FDS).  Returns 0,
 * or -1 with errno set (EAGAIN on a full non-blocking socket, EPIPE when
 * the other end is gone); nothing is logged.
 */
int wk_zy_send(int fd, const wk_zy_msg_t *m, const int *fds, int nfds);

/*
 * Receive one message.  Returns 1 with *m filled and *nfds descriptors
 * (close-on-exec) stored in fds, 0 at EOF, or -1 with errno set (EAGAIN
 * when nothing is there, EPROTO for a message of the wrong size, whose
 * descriptors are closed).
 */
int wk_zy_recv(int fd, wk_zy_msg_t *m, int *fds, int *nfds);

#endif /* WK_ZYGOTE_H */
