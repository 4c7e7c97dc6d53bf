/*
 * sup_listen.c: Unix listening sockets, for the supervisor's own control
 * socket and for each session process's socket.  The file is created with
 * mode 0600 by bind(2) itself (under a temporary umask, so there is no
 * window with a wider mode) and then given to nginx's worker user with
 * lchown, which cannot be redirected through a symlink.
 */

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "sup.h"
#include "wk_log.h"


static int sup_listen_addr(const char *path, struct sockaddr_un *sa);
static int sup_listen_is_live(const struct sockaddr_un *sa);


static int
sup_listen_addr(const char *path, struct sockaddr_un *sa)
{
    size_t  len;

    len = strlen(path);
    if (len >= sizeof(sa->sun_path)) {
        wk_log("socket path \"%s\" is longer than %zu bytes", path,
               sizeof(sa->sun_path) - 1);
        errno = ENAMETOOLONG;
        return -1;
    }

    memset(sa, 0, sizeof(struct sockaddr_un));
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, path, len + 1);

    return 0;
}


/*
 * Whether something accepts connections at sa: 1 yes (or its backlog is
 * full), 0 no (a stale file, or nothing there).
 */
static int
sup_listen_is_live(const struct sockaddr_un *sa)
{
    int  fd, rc, err;

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        wk_log("socket() failed: %s", strerror(errno));
        return 1;   /* cannot tell: do not remove it */
    }

    rc = connect(fd, (const struct sockaddr *) sa, sizeof(*sa));
    err = errno;

    (void) close(fd);

    if (rc == 0 || err == EAGAIN || err == EINPROGRESS) {
        return 1;
    }

    return 0;
}


int
sup_listen_unix(const char *path, int nonblock, int replace, uid_t uid,
    gid_t gid)
{
    int                 fd, err, bound;
    mode_t              old;
    struct stat         st;
    struct sockaddr_un  sa;

    bound = 0;

    if (sup_listen_addr(path, &sa) == -1) {
        return -1;
    }

    if (replace && lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            wk_log("\"%s\" exists and is not a socket", path);
            errno = EADDRINUSE;
            return -1;
        }

        if (sup_listen_is_live(&sa)) {
            wk_log("\"%s\" is in use by a live process", path);
            errno = EADDRINUSE;
            return -1;
        }

        if (sup_fs_unlink(path) == -1) {
            return -1;
        }
    }

    fd = socket(AF_UNIX,
                SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0),
                0);
    if (fd == -1) {
        wk_log("socket() for \"%s\" failed: %s", path, strerror(errno));
        goto fail;
    }

    old = umask(0177);
    if (bind(fd, (const struct sockaddr *) &sa, sizeof(sa)) == -1) {
        err = errno;
        (void) umask(old);
        errno = err;

        if (errno != EADDRINUSE) {
            wk_log("bind(\"%s\") failed: %s", path, strerror(errno));
        }

        goto fail;
    }
    (void) umask(old);

    bound = 1;

    if ((uid != (uid_t) -1 || gid != (gid_t) -1)
        && lchown(path, uid, gid) == -1)
    {
        wk_log("lchown(\"%s\", %ld, %ld) failed: %s", path, (long) uid,
               (long) gid, strerror(errno));
        goto fail;
    }

    if (listen(fd, SUP_BACKLOG) == -1) {
        wk_log("listen(\"%s\") failed: %s", path, strerror(errno));
        goto fail;
    }

    return fd;

fail:

    err = errno;

    if (fd != -1) {
        (void) close(fd);
    }

    if (bound) {
        (void) unlink(path);
    }

    errno = err;

    return -1;
}
