/*
 * sup_fs.c: the supervisor's file-system chores: creating the socket and
 * working directories (owned by nginx's worker user where asked), removing
 * a tree a session could write, writing the pid file, and the renames that
 * hand a pool process's socket and directory to a session without ever
 * replacing what is there.
 *
 * The removal runs as root over directories that sessions own, so it works
 * on descriptors, never on paths below the top: each directory is entered
 * with openat(O_NOFOLLOW | O_DIRECTORY) from its parent's descriptor and
 * its entries go with unlinkat(), so a symlink is removed itself, never
 * followed, and a name swapped for a link meanwhile (renameat2 with
 * RENAME_EXCHANGE) cannot lead the walk out of the tree.  The walk keeps an
 * explicit stack of at most SUP_FS_DEPTH open directories, whatever the
 * depth of the tree: a directory found at the deepest level is renamed up
 * to the top, still inside the tree, and removed by the next pass over it.
 * Its callers make sure nothing of the session runs meanwhile anyway
 * (sup_lifecycle.c).
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sup.h"
#include "wk_log.h"


#define SUP_FS_DEPTH   32      /* directories a removal holds open at once */
#define SUP_FS_PASSES  4096    /* over the top: a tree up to ~127000 deep */
#define SUP_FS_LIFTS   64      /* names tried for a directory moved up */


typedef struct {
    DIR         *dir;
    char         name[NAME_MAX + 1];    /* its name one level up */
} sup_fs_level_t;


static int sup_fs_empty(DIR *top, dev_t dev, const char *name);
static DIR *sup_fs_opendir(int dirfd, const char *name, struct stat *st);
static int sup_fs_lift(int dirfd, const char *name, int topfd,
    unsigned *serial, const char *top);


int
sup_fs_path(char *buf, size_t size, const char *dir, const char *name,
    const char *suffix)
{
    int  n;

    n = snprintf(buf, size, "%s/%s%s", dir, name, suffix);
    if (n < 0 || (size_t) n >= size) {
        wk_log("path \"%s/%s%s\" is too long", dir, name, suffix);
        errno = ENAMETOOLONG;
        return -1;
    }

    return 0;
}


int
sup_fs_mkdir(const char *path, mode_t mode, uid_t uid, gid_t gid)
{
    int          fd, err;
    struct stat  st;

    if (mkdir(path, mode) == -1) {
        if (errno != EEXIST) {
            wk_log("mkdir(\"%s\") failed: %s", path, strerror(errno));
            return -1;
        }

        if (lstat(path, &st) == -1) {
            wk_log("lstat(\"%s\") failed: %s", path, strerror(errno));
            return -1;
        }

        if (!S_ISDIR(st.st_mode)) {
            wk_log("\"%s\" exists and is not a directory", path);
            errno = ENOTDIR;
            return -1;
        }

        return 0;
    }

    /*
     * Set mode and owner through a descriptor opened without following
     * symlinks, so a path swapped under us cannot redirect the chown.
     */
    fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd == -1) {
        wk_log("open(\"%s\") failed: %s", path, strerror(errno));
        goto fail;
    }

    if (fchmod(fd, mode) == -1) {
        wk_log("fchmod(\"%s\", %04o) failed: %s", path, (unsigned) mode,
               strerror(errno));
        goto fail;
    }

    if ((uid != (uid_t) -1 || gid != (gid_t) -1)
        && fchown(fd, uid, gid) == -1)
    {
        wk_log("fchown(\"%s\", %ld, %ld) failed: %s", path, (long) uid,
               (long) gid, strerror(errno));
        goto fail;
    }

    if (close(fd) == -1) {
        wk_log("close(\"%s\") failed: %s", path, strerror(errno));
    }

    return 1;

fail:

    err = errno;

    if (fd != -1) {
        (void) close(fd);
    }

    (void) rmdir(path);
    errno = err;

    return -1;
}


int
sup_fs_rmtree(int dirfd, const char *name)
{
    int          rc;
    DIR         *top;
    struct stat  st;

    top = sup_fs_opendir(dirfd, name, &st);

    if (top == NULL) {
        if (errno == ENOENT) {
            return 0;
        }

        if (errno != ENOTDIR && errno != ELOOP) {
            wk_log("open(\"%s\") failed: %s", name, strerror(errno));
            return -1;
        }

        /* a file, or a symlink (to a directory or not): only the name */
        if (unlinkat(dirfd, name, 0) == -1 && errno != ENOENT) {
            wk_log("unlink(\"%s\") failed: %s", name, strerror(errno));
            return -1;
        }

        return 0;
    }

    rc = sup_fs_empty(top, st.st_dev, name);

    (void) closedir(top);

    if (unlinkat(dirfd, name, AT_REMOVEDIR) == -1 && errno != ENOENT) {
        wk_log("rmdir(\"%s\") failed: %s", name, strerror(errno));
        return -1;
    }

    return rc;
}


/*
 * Remove everything in the directory top (on device dev; name is the
 * top's, for the log), depth first (see the top of the file).  Returns 0,
 * or -1 (logged) if something could not be removed: the caller's rmdir
 * then fails too.
 */
static int
sup_fs_empty(DIR *top, dev_t dev, const char *name)
{
    int              rc, fd, lifted;
    DIR             *d;
    size_t           depth, passes;
    unsigned         serial;
    struct stat      st;
    struct dirent   *de;
    sup_fs_level_t   lv[SUP_FS_DEPTH];

    rc = 0;
    serial = 0;
    lv[0].dir = top;

    for (passes = 1; /* void */; passes++) {
        depth = 0;
        lifted = 0;

        for ( ;; ) {
            fd = dirfd(lv[depth].dir);

            errno = 0;
            de = readdir(lv[depth].dir);

            if (de == NULL) {
                if (errno != 0) {
                    wk_log("readdir() under \"%s\" failed: %s", name,
                           strerror(errno));
                    rc = -1;
                }

                if (depth == 0) {
                    break;
                }

                (void) closedir(lv[depth].dir);
                depth--;

                if (unlinkat(dirfd(lv[depth].dir), lv[depth + 1].name,
                             AT_REMOVEDIR) == -1
                    && errno != ENOENT)
                {
                    wk_log("rmdir(\"%s\") under \"%s\" failed: %s",
                           lv[depth + 1].name, name, strerror(errno));
                    rc = -1;
                }

                continue;
            }

            if (strcmp(de->d_name, ".") == 0
                || strcmp(de->d_name, "..") == 0)
            {
                continue;
            }

            /* anything but a directory goes; a directory says EISDIR */
            if (unlinkat(fd, de->d_name, 0) == 0 || errno == ENOENT) {
                continue;
            }

            if (errno != EISDIR) {
                wk_log("unlink(\"%s\") under \"%s\" failed: %s",
                       de->d_name, name, strerror(errno));
                rc = -1;
                continue;
            }

            if (depth + 1 == SUP_FS_DEPTH) {
                if (sup_fs_lift(fd, de->d_name, dirfd(top), &serial, name)
                    == 0)
                {
                    lifted = 1;

                } else {
                    rc = -1;
                }

                continue;
            }

            d = sup_fs_opendir(fd, de->d_name, &st);

            if (d == NULL) {
                if (errno == ENOTDIR || errno == ELOOP) {
                    /* no directory any more (a link now?): the name goes */
                    if (unlinkat(fd, de->d_name, 0) == -1 && errno != ENOENT)
                    {
                        wk_log("unlink(\"%s\") under \"%s\" failed: %s",
                               de->d_name, name, strerror(errno));
                        rc = -1;
                    }

                } else if (errno != ENOENT) {
                    wk_log("open(\"%s\") under \"%s\" failed: %s",
                           de->d_name, name, strerror(errno));
                    rc = -1;
                }

                continue;
            }

            if (st.st_dev != dev) {
                wk_log("\"%s\" under \"%s\" is a mount point: left",
                       de->d_name, name);
                (void) closedir(d);
                rc = -1;
                continue;
            }

            depth++;
            lv[depth].dir = d;
            (void) snprintf(lv[depth].name, sizeof(lv[depth].name), "%s",
                            de->d_name);
        }

        if (!lifted) {
            return rc;
        }

        if (passes == SUP_FS_PASSES) {
            wk_log("\"%s\" is deeper than %d levels: left", name,
                   SUP_FS_PASSES * (SUP_FS_DEPTH - 1));
            return -1;
        }

        rewinddir(top);
    }
}


/*
 * The directory name in dirfd, opened without following a symlink, its
 * fstat() in *st.  NULL with errno set (ENOTDIR or ELOOP: it is no
 * directory, or a symlink); the caller logs.
 */
static DIR *
sup_fs_opendir(int dirfd, const char *name, struct stat *st)
{
    int   fd, err;
    DIR  *d;

    fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd == -1) {
        return NULL;
    }

    d = NULL;

    if (fstat(fd, st) == 0) {
        d = fdopendir(fd);
    }

    if (d == NULL) {
        err = errno;
        (void) close(fd);
        errno = err;
    }

    return d;
}


/*
 * Move the directory name in dirfd up into the top directory topfd under
 * a name of its own (".pyrepl-rm-N", N from *serial): the walk reaches it
 * from there.  A name taken by a file or a directory that is not empty is
 * skipped; an empty directory there may be replaced, which removes it as
 * the walk would.  Returns 0 or -1 (logged).
 */
static int
sup_fs_lift(int dirfd, const char *name, int topfd, unsigned *serial,
    const char *top)
{
    int   i;
    char  to[32];

    for (i = 0; i < SUP_FS_LIFTS; i++) {
        (void) snprintf(to, sizeof(to), ".pyrepl-rm-%u", (*serial)++);

        if (renameat(dirfd, name, topfd, to) == 0) {
            return 0;
        }

        if (errno != ENOTEMPTY && errno != EEXIST && errno != ENOTDIR) {
            wk_log("moving \"%s\" up to \"%s\" failed: %s", name, top,
                   strerror(errno));
            return -1;
        }
    }

    wk_log("moving \"%s\" up to \"%s\": no free name", name, top);

    return -1;
}


int
sup_fs_unlink(const char *path)
{
    if (unlink(path) == -1 && errno != ENOENT) {
        wk_log("unlink(\"%s\") failed: %s", path, strerror(errno));
        return -1;
    }

    return 0;
}


int
sup_fs_rename(const char *from, const char *to)
{
    struct stat  st;

    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0) {
        return 0;
    }

    if (errno == EEXIST) {
        return -1;
    }

    if (errno != EINVAL && errno != ENOSYS) {
        wk_log("rename(\"%s\", \"%s\") failed: %s", from, to,
               strerror(errno));
        return -1;
    }

    /*
     * The file system cannot refuse to replace: check first.  Only this
     * single-threaded supervisor creates names here, so nothing can appear
     * between the check and the rename but what a user puts there.
     */
    if (lstat(to, &st) == 0) {
        errno = EEXIST;
        return -1;
    }

    if (rename(from, to) == -1) {
        wk_log("rename(\"%s\", \"%s\") failed: %s", from, to,
               strerror(errno));
        return -1;
    }

    return 0;
}


int
sup_fs_write_pid(const char *path)
{
    int      fd, n;
    ssize_t  w;
    char     tmp[4096], buf[32];

    n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (n < 0 || (size_t) n >= sizeof(tmp)) {
        wk_log("pid file path \"%s\" is too long", path);
        return -1;
    }

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
              0644);
    if (fd == -1) {
        wk_log("open(\"%s\") failed: %s", tmp, strerror(errno));
        return -1;
    }

    /* readable by nginx's workers whatever the umask */
    if (fchmod(fd, 0644) == -1) {
        wk_log("fchmod(\"%s\") failed: %s", tmp, strerror(errno));
        goto fail;
    }

    n = snprintf(buf, sizeof(buf), "%ld\n", (long) getpid());

    w = write(fd, buf, (size_t) n);
    if (w != n) {
        wk_log("write(\"%s\") failed: %s", tmp,
               w == -1 ? strerror(errno) : "short write");
        goto fail;
    }

    if (close(fd) == -1) {
        fd = -1;
        wk_log("close(\"%s\") failed: %s", tmp, strerror(errno));
        goto fail;
    }

    fd = -1;

    if (rename(tmp, path) == -1) {
        wk_log("rename(\"%s\", \"%s\") failed: %s", tmp, path,
               strerror(errno));
        goto fail;
    }

    return 0;

fail:

    if (fd != -1) {
        (void) close(fd);
    }

    (void) unlink(tmp);

    return -1;
}
