/*
 * sup_fs.c: the supervisor's file-system chores: creating the socket and
 * working directories (owned by nginx's worker user where asked), removing
 * a session's working directory recursively without ever following a
 * symlink out of it, writing the pid file, and the renames that hand a
 * pool process's socket and directory to a session without ever replacing
 * what is there.
 */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "supervisor.h"
#include "wk_log.h"


#define SUP_FS_NOPENFD  16    /* descriptors nftw may hold at once */


static int sup_fs_rm_entry(const char *path, const struct stat *st,
    int type, struct FTW *ftw);


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


static int
sup_fs_rm_entry(const char *path, const struct stat *st, int type,
    struct FTW *ftw)
{
    int  rc;

    if (type == FTW_DP || type == FTW_DNR || type == FTW_D) {
        rc = rmdir(path);

    } else if (type == FTW_NS) {
        /* could not stat it: try both ways */
        rc = unlink(path);
        if (rc == -1 && errno == EISDIR) {
            rc = rmdir(path);
        }

    } else {
        rc = unlink(path);
    }

    if (rc == -1 && errno != ENOENT) {
        wk_log("removing \"%s\" failed: %s", path, strerror(errno));
        /* carry on: remove as much as possible, report at the end */
    }

    return 0;
}


int
sup_fs_rmtree(const char *path)
{
    struct stat  st;

    if (lstat(path, &st) == -1) {
        if (errno == ENOENT) {
            return 0;
        }

        wk_log("lstat(\"%s\") failed: %s", path, strerror(errno));
        return -1;
    }

    if (!S_ISDIR(st.st_mode)) {
        return sup_fs_unlink(path);
    }

    if (nftw(path, sup_fs_rm_entry, SUP_FS_NOPENFD, FTW_DEPTH | FTW_PHYS)
        == -1)
    {
        wk_log("nftw(\"%s\") failed: %s", path, strerror(errno));
        return -1;
    }

    if (lstat(path, &st) == 0) {
        wk_log("\"%s\" could not be removed completely", path);
        return -1;
    }

    return 0;
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
