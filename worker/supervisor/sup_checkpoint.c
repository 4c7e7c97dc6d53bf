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
 *
 * The files in a tenant's directory are the one record of what that
 * tenant keeps: "list" reads them (id, size, time of writing), "remove"
 * deletes one, and "store" adds their sizes up to refuse a checkpoint
 * that would take the tenant past its quota.  The supervisor handles one
 * request at a time, so nothing is stored between that sum and the copy.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sup.h"
#include "wk_log.h"


#define SUP_CKPT_SUFFIX     ".ckpt"
#define SUP_CKPT_FILE_LEN   (PYREPL_ID_LEN + sizeof(SUP_CKPT_SUFFIX) - 1)
#define SUP_TENANT_LEN      16              /* hex digits */
#define SUP_CKPT_NAME_LEN   (SUP_TENANT_LEN + 1 + PYREPL_ID_LEN)

/* a list entry: "<32 hex> <size> <mtime>", two int64 in decimal */
#define SUP_CKPT_ENTRY_LEN  (PYREPL_ID_LEN + 2 * 21)


/* one checkpoint of a tenant, as its directory has it */
typedef struct {
    char     id[PYREPL_ID_LEN];
    int64_t  size;
    int64_t  mtime;
} sup_ckpt_t;


static int sup_checkpoint_hex(const char *p, size_t n);
static int sup_checkpoint_name_ok(const char *name);
static int sup_checkpoint_paths(const sup_conf_t *conf, const char *id,
    const char *name, char *tenant_dir, char *path, sup_err_t *err);
static int sup_checkpoint_scan(const sup_conf_t *conf, const char *tenant,
    sup_ckpt_t **list, size_t *n, int64_t *total, sup_err_t *err);
static int sup_checkpoint_newer(const void *a, const void *b);
static int sup_checkpoint_entries(const sup_ckpt_t *a, size_t n,
    pr_strs_t *out, sup_err_t *err);
static int sup_checkpoint_copy(int in, int out, off_t size);


int
sup_checkpoint_store(const sup_conf_t *conf, const char *id,
    const char *file, const char *name, int64_t max_size, int64_t quota,
    pr_strs_t *stored, sup_err_t *err)
{
    int          in, out;
    size_t       n;
    int64_t      used;
    sup_ckpt_t   ck;
    struct stat  st, copy;
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

    if (quota > 0) {
        if (sup_checkpoint_scan(conf, name, NULL, &n, &used, err) == -1) {
            (void) close(in);
            (void) unlink(src);
            return -1;
        }

        if (used + (int64_t) st.st_size > quota) {
            SUP_ERR(err, "quota_exceeded", "this checkpoint (%lld bytes) "
                    "would take this API key's checkpoints from %lld to "
                    "%lld bytes, past pyrepl_checkpoint_quota %lld; "
                    "delete some first (DELETE /session/checkpoints/{id})",
                    (long long) st.st_size, (long long) used,
                    (long long) (used + st.st_size), (long long) quota);
            (void) close(in);
            (void) unlink(src);
            return -1;
        }
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

    if (sup_checkpoint_copy(in, out, st.st_size) != 0
        || fstat(out, &copy) == -1)
    {
        SUP_ERR(err, "unavailable", "cannot copy the checkpoint: %s",
                strerror(errno));
        (void) close(in);
        (void) close(out);
        (void) unlink(dst);
        return -1;
    }

    (void) close(in);
    (void) close(out);

    memcpy(ck.id, name + SUP_TENANT_LEN + 1, PYREPL_ID_LEN);
    ck.size = (int64_t) st.st_size;
    ck.mtime = (int64_t) copy.st_mtime;

    if (sup_checkpoint_entries(&ck, 1, stored, err) == -1) {
        (void) unlink(dst);
        return -1;
    }

    (void) unlink(src);

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
    sup_session_t  *s;

    if (conf->checkpoint_dir == NULL) {
        SUP_ERR(err, "unavailable", "no checkpoint directory");
        return -1;
    }

    if (!sup_checkpoint_name_ok(name)) {
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


/*
 * The tenant's checkpoints, newest first, as "<id> <size> <mtime>" strings
 * in out (one malloc'd block: the caller frees out->items), as many as fit
 * max_bytes of a frame.  A tenant with no directory has none.  Returns 0,
 * or -1 with err filled.
 */
int
sup_checkpoint_list(const sup_conf_t *conf, const char *tenant,
    size_t max_bytes, pr_strs_t *out, sup_err_t *err)
{
    int          rc;
    size_t       n, fit;
    int64_t      total;
    sup_ckpt_t  *list;

    out->items = NULL;
    out->n = 0;

    if (strlen(tenant) != SUP_TENANT_LEN
        || !sup_checkpoint_hex(tenant, SUP_TENANT_LEN))
    {
        SUP_ERR(err, "bad_request", "a tenant is 16 lowercase hex digits");
        return -1;
    }

    if (sup_checkpoint_scan(conf, tenant, &list, &n, &total, err) == -1) {
        return -1;
    }

    if (n > 1) {
        qsort(list, n, sizeof(sup_ckpt_t), sup_checkpoint_newer);
    }

    /*
     * An entry costs its bytes and a msgpack str header of up to 2; the
     * rest of the frame (type, key, array header) stays under 64.
     */
    fit = (max_bytes > 64) ? (max_bytes - 64) / (SUP_CKPT_ENTRY_LEN + 2) : 0;

    if (n > fit) {
        wk_log("tenant %s has %zu checkpoints, the newest %zu are listed "
               "(--max-frame)", tenant, n, fit);
        n = fit;
    }

    rc = sup_checkpoint_entries(list, n, out, err);

    free(list);

    return rc;
}


/*
 * a[0..n) as "<id> <size> <mtime>" strings in out: one malloc'd block,
 * the items followed by their bytes (the caller frees out->items).
 * Returns 0, or -1 with err filled.
 */
static int
sup_checkpoint_entries(const sup_ckpt_t *a, size_t n, pr_strs_t *out,
    sup_err_t *err)
{
    char    *p;
    size_t   i;

    out->items = malloc(n * (sizeof(pr_str_t) + SUP_CKPT_ENTRY_LEN) + 1);
    if (out->items == NULL) {
        SUP_ERR(err, "unavailable", "out of memory");
        return -1;
    }

    p = (char *) (out->items + n);

    for (i = 0; i < n; i++) {
        out->items[i].data = p;
        out->items[i].len = (size_t) snprintf(p, SUP_CKPT_ENTRY_LEN + 1,
                                              "%.32s %lld %lld", a[i].id,
                                              (long long) a[i].size,
                                              (long long) a[i].mtime);
        p += out->items[i].len;
    }

    out->n = (uint32_t) n;

    return 0;
}


/* Delete checkpoint name ("<16 hex>/<32 hex>"); 0, or -1 with err. */
int
sup_checkpoint_remove(const sup_conf_t *conf, const char *name,
    sup_err_t *err)
{
    int   dir;
    char  tdir[PATH_MAX], file[SUP_CKPT_FILE_LEN + 1];

    if (!sup_checkpoint_name_ok(name)) {
        SUP_ERR(err, "bad_request", "a checkpoint name is <16 hex>/<32 hex>");
        return -1;
    }

    if (conf->checkpoint_dir == NULL) {
        SUP_ERR(err, "unavailable", "no checkpoint directory");
        return -1;
    }

    (void) snprintf(tdir, sizeof(tdir), "%s/%.16s", conf->checkpoint_dir,
                    name);
    (void) snprintf(file, sizeof(file), "%s" SUP_CKPT_SUFFIX,
                    name + SUP_TENANT_LEN + 1);

    dir = open(tdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

    if (dir == -1 || unlinkat(dir, file, 0) == -1) {
        if (errno == ENOENT) {
            SUP_ERR(err, "not_found", "no checkpoint %s", name);

        } else {
            SUP_ERR(err, "unavailable", "cannot remove checkpoint %s: %s",
                    name, strerror(errno));
        }

        if (dir != -1) {
            (void) close(dir);
        }

        return -1;
    }

    (void) close(dir);

    wk_log("checkpoint %s removed", name);

    return 0;
}


/*
 * The checkpoints in the directory of the tenant that tenant's first 16
 * characters name: their number in *n, the sum of their sizes in *total,
 * and with list set, each of them in *list (malloc'd, the caller frees;
 * NULL when there are none).  Only regular files named "<32 hex>.ckpt"
 * count.  Returns 0, or -1 with err filled.
 */
static int
sup_checkpoint_scan(const sup_conf_t *conf, const char *tenant,
    sup_ckpt_t **list, size_t *n, int64_t *total, sup_err_t *err)
{
    int             fd;
    DIR            *dir;
    size_t          cap;
    sup_ckpt_t     *a, *grown;
    struct stat     st;
    struct dirent  *de;
    char            path[PATH_MAX];

    *n = 0;
    *total = 0;
    a = NULL;
    cap = 0;

    if (list != NULL) {
        *list = NULL;
    }

    if (conf->checkpoint_dir == NULL) {
        SUP_ERR(err, "unavailable", "no checkpoint directory");
        return -1;
    }

    (void) snprintf(path, sizeof(path), "%s/%.16s", conf->checkpoint_dir,
                    tenant);

    fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd == -1) {
        if (errno == ENOENT) {
            return 0;
        }

        SUP_ERR(err, "unavailable", "cannot open the tenant's checkpoints: "
                "%s", strerror(errno));
        return -1;
    }

    dir = fdopendir(fd);
    if (dir == NULL) {
        SUP_ERR(err, "unavailable", "cannot read the tenant's checkpoints: "
                "%s", strerror(errno));
        (void) close(fd);
        return -1;
    }

    for ( ;; ) {
        errno = 0;
        de = readdir(dir);

        if (de == NULL) {
            break;
        }

        if (strlen(de->d_name) != SUP_CKPT_FILE_LEN
            || !sup_checkpoint_hex(de->d_name, PYREPL_ID_LEN)
            || strcmp(de->d_name + PYREPL_ID_LEN, SUP_CKPT_SUFFIX) != 0
            || fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1
            || !S_ISREG(st.st_mode))
        {
            continue;
        }

        *total += (int64_t) st.st_size;

        if (list != NULL) {
            if (*n == cap) {
                cap = cap ? 2 * cap : 16;
                grown = realloc(a, cap * sizeof(sup_ckpt_t));
                if (grown == NULL) {
                    errno = ENOMEM;
                    break;
                }
                a = grown;
            }

            memcpy(a[*n].id, de->d_name, PYREPL_ID_LEN);
            a[*n].size = (int64_t) st.st_size;
            a[*n].mtime = (int64_t) st.st_mtime;
        }

        (*n)++;
    }

    if (errno != 0) {
        SUP_ERR(err, "unavailable", "cannot read the tenant's checkpoints: "
                "%s", strerror(errno));
        (void) closedir(dir);
        free(a);
        return -1;
    }

    (void) closedir(dir);

    if (list != NULL) {
        *list = a;
    }

    return 0;
}


/* qsort: newest first, then by id, so a listing is stable */
static int
sup_checkpoint_newer(const void *a, const void *b)
{
    const sup_ckpt_t  *x = a, *y = b;

    if (x->mtime != y->mtime) {
        return x->mtime > y->mtime ? -1 : 1;
    }

    return memcmp(x->id, y->id, PYREPL_ID_LEN);
}


/* Whether p[0..n) are lowercase hex digits. */
static int
sup_checkpoint_hex(const char *p, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) {
            return 0;
        }
    }

    return 1;
}


/* Whether name is "<16 hex>/<32 hex>". */
static int
sup_checkpoint_name_ok(const char *name)
{
    return strlen(name) == SUP_CKPT_NAME_LEN
           && sup_checkpoint_hex(name, SUP_TENANT_LEN)
           && name[SUP_TENANT_LEN] == '/'
           && sup_checkpoint_hex(name + SUP_TENANT_LEN + 1, PYREPL_ID_LEN);
}


int
sup_checkpoint_file_ok(const char *file)
{
    return file[0] != '\0' && strchr(file, '/') == NULL
           && strcmp(file, ".") != 0 && strcmp(file, "..") != 0
           && strlen(file) < NAME_MAX;
}
