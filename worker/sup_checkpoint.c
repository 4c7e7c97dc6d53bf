/*
 * sup_checkpoint.c: checkpoint files between a session's working
 * directory and the checkpoint directory (--checkpoint-dir), which no
 * session can reach.  A session writes its checkpoint into its own
 * directory; "store" copies it to DIR/<tenant>/<checkpoint id>.ckpt (a
 * file of the supervisor's, never the session's inode, which the session
 * could still write to) and removes it; "load" copies one back into a
 * session's directory for it to read.  Names come
 * from nginx ("<16 hex>/<32 hex>": the tenant owns its directory), files
 * from sessions, which run untrusted code: every open refuses symlinks and
 * never blocks (a FIFO in place of the file would hang the supervisor),
 * what is copied is the regular, singly linked file that was checked, and
 * a copy is always a file created anew (never written through anything
 * the session left under that name).
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "supervisor.h"
#include "wk_log.h"


#define SUP_ERR(e, c, ...)                                                   \
    do { (e)->code = (c);                                                    \
         (void) snprintf((e)->message, sizeof((e)->message), __VA_ARGS__);   \
    } while (0)


static int sup_checkpoint_paths(const sup_conf_t *conf, const char *id,
    const char *name, char *tenant_dir, char *path, sup_err_t *err);
static int sup_checkpoint_copy(int in, int out, off_t size);


int
sup_checkpoint_store(const sup_conf_t *conf, const char *id,
    const char *file, const char *name, int64_t max_size, int64_t *size,
    sup_err_t *err)
{
    int          in, out;
    struct stat  st;
    char         src[PATH_MAX], tdir[PATH_MAX], dst[PATH_MAX];

    if (sup_checkpoint_paths(conf, id, name, tdir, dst, err) == -1) {
        return -1;
    }

    if (snprintf(src, sizeof(src), "%s/%s/%s", conf->workdir, id, file)
        >= (int) sizeof(src))
    {
        SUP_ERR(err, "bad_request", "path too long");
        return -1;
    }

    in = open(src, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (in == -1) {
        SUP_ERR(err, "not_found", "the session wrote no checkpoint: %s",
                strerror(errno));
        return -1;
    }

    if (fstat(in, &st) == -1 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
        SUP_ERR(err, "bad_request", "the checkpoint is not a plain file");
        (void) close(in);
        return -1;
    }

    if (max_size > 0 && st.st_size > max_size) {
        SUP_ERR(err, "too_large", "the checkpoint has %lld bytes, more than "
                "%lld", (long long) st.st_size, (long long) max_size);
        (void) close(in);
        (void) unlink(src);
        return -1;
    }

    if (sup_fs_mkdir(tdir, 0700, 0, 0) == -1) {
        SUP_ERR(err, "unavailable", "cannot make the tenant's directory");
        (void) close(in);
        return -1;
    }

    /*
     * A copy of its st_size bytes into a file of our own, never the
     * session's inode: the session may still hold it open for writing.
     */
    out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
               0600);
    if (out == -1) {
        SUP_ERR(err, "unavailable", "cannot create the checkpoint: %s",
                strerror(errno));
        (void) close(in);
        return -1;
    }

    if (sup_checkpoint_copy(in, out, st.st_size) != 0) {
        SUP_ERR(err, "unavailable", "cannot copy the checkpoint: %s",
                strerror(errno));
        (void) close(in);
        (void) close(out);
        (void) unlink(dst);
        return -1;
    }

    (void) close(in);
    (void) close(out);
    (void) unlink(src);

    *size = (int64_t) st.st_size;

    wk_log("session %s: checkpoint %s stored, %lld bytes", id, name,
           (long long) st.st_size);

    return 0;
}


/* size bytes from in to out (both at offset 0); 0, or -1 with errno. */
static int
sup_checkpoint_copy(int in, int out, off_t size)
{
    off_t    off;
    ssize_t  n;

    off = 0;

    while (off < size) {
        n = sendfile(out, in, &off, (size_t) (size - off));

        if (n == -1 && errno == EINTR) {
            continue;
        }

        if (n <= 0) {
            if (n == 0) {
                errno = EIO;        /* the file shrank meanwhile */
            }

            return -1;
        }
    }

    return 0;
}


int
sup_checkpoint_load(const sup_conf_t *conf, const char *id, const char *file,
    const char *name, sup_err_t *err)
{
    int          in, dir, out, rc;
    struct stat  st, dst;
    char         src[PATH_MAX], tdir[PATH_MAX], sdir[PATH_MAX];

    if (sup_checkpoint_paths(conf, id, name, tdir, src, err) == -1) {
        return -1;
    }

    in = open(src, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (in == -1 || fstat(in, &st) == -1 || !S_ISREG(st.st_mode)) {
        SUP_ERR(err, "not_found", "no checkpoint %s", name);
        if (in != -1) {
            (void) close(in);
        }
        return -1;
    }

    (void) snprintf(sdir, sizeof(sdir), "%s/%s", conf->workdir, id);

    dir = open(sdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dir == -1 || fstat(dir, &dst) == -1) {
        SUP_ERR(err, "not_found", "no directory for session %s", id);
        if (dir != -1) {
            (void) close(dir);
        }
        (void) close(in);
        return -1;
    }

    /* whatever the session left under that name goes, link or not */
    if (unlinkat(dir, file, 0) == -1 && errno != ENOENT) {
        SUP_ERR(err, "bad_request", "cannot replace %s: %s", file,
                strerror(errno));
        (void) close(dir);
        (void) close(in);
        return -1;
    }

    /*
     * Readable by all: a session exec'd a moment ago may not have made its
     * directory (0700) its own yet, and then cannot be given the file;
     * the directory keeps everybody else out.
     */
    out = openat(dir, file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW
                            | O_CLOEXEC, 0644);
    (void) close(dir);

    if (out == -1) {
        SUP_ERR(err, "unavailable", "cannot create %s: %s", file,
                strerror(errno));
        (void) close(in);
        return -1;
    }

    rc = sup_checkpoint_copy(in, out, st.st_size);

    /* fchmod: the mode given to openat() went through the umask */
    if (rc == 0 && (fchown(out, dst.st_uid, dst.st_gid) == -1
                    || fchmod(out, 0644) == -1))
    {
        rc = -1;
    }

    (void) close(in);
    (void) close(out);

    if (rc == -1) {
        SUP_ERR(err, "unavailable", "cannot copy checkpoint %s: %s", name,
                strerror(errno));

        if (snprintf(src, sizeof(src), "%s/%s", sdir, file)
            < (int) sizeof(src))
        {
            (void) unlink(src);
        }

        return -1;
    }

    return 0;
}


/* "<16 hex>/<32 hex>" and a session that lives; the tenant's directory. */
static int
sup_checkpoint_paths(const sup_conf_t *conf, const char *id,
    const char *name, char *tenant_dir, char *path, sup_err_t *err)
{
    size_t          i;
    sup_session_t  *s;

    if (conf->checkpoint_dir == NULL) {
        SUP_ERR(err, "unavailable", "no checkpoint directory");
        return -1;
    }

    for (i = 0; i < 49; i++) {
        if (i == 16 ? name[i] != '/'
            : !((name[i] >= '0' && name[i] <= '9')
                || (name[i] >= 'a' && name[i] <= 'f')))
        {
            break;
        }
    }

    if (i != 49 || name[49] != '\0') {
        SUP_ERR(err, "bad_request", "a checkpoint name is <16 hex>/<32 hex>");
        return -1;
    }

    s = sup_session_find(id);
    if (s == NULL || s->state != SUP_S_LIVE) {
        SUP_ERR(err, "not_found", "no live session %s", id);
        return -1;
    }

    (void) snprintf(tenant_dir, PATH_MAX, "%s/%.16s", conf->checkpoint_dir,
                    name);

    if (snprintf(path, PATH_MAX, "%s/%s.ckpt", conf->checkpoint_dir, name)
        >= PATH_MAX)
    {
        SUP_ERR(err, "bad_request", "path too long");
        return -1;
    }

    return 0;
}


int
sup_checkpoint_file_ok(const char *file)
{
    return file[0] != '\0' && strchr(file, '/') == NULL
           && strcmp(file, ".") != 0 && strcmp(file, "..") != 0
           && strlen(file) < NAME_MAX;
}
