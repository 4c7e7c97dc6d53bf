/*
 * sb_jail_root.c: the session's root, built in its new mount namespace by
 * its init, as root, before anything of the session runs (sb_jail.h).
 *
 * Everything the root shows of the host is opened first (O_PATH, each
 * name resolved on the host) and then bound from its descriptor
 * (/proc/self/fd/N, still the host's /proc), so that the tmpfs the new
 * root is built on may be mounted anywhere, even over a source; it is
 * mounted over /tmp, which every host has.  The tree:
 *
 *   /usr                    the host's, read-only, but for /usr/local/etc
 *                           and /usr/local/nginx, hidden (and /bin, /lib*,
 *                           /sbin: links into it where the host merged
 *                           them, read-only binds where it did not)
 *   /etc                    generated passwd, group and hostname, and the
 *                           allow-list below bound read-only, each file
 *                           or directory the host has (a link is followed,
 *                           except localtime, copied as the link it is)
 *   /home/pyrepl            the session's working directory, read-write
 *   /tmp, /dev/shm          tmpfs of their own, tmp_size each, 1777
 *   /dev                    null, zero, full, random, urandom, tty bound
 *                           from the host, a devpts of its own (pts,
 *                           ptmx; SB_JAIL_MAX_PTYS terminals at most),
 *                           fd, stdin, stdout, stderr links
 *   /proc                   of the session's pid namespace
 *   the operator's binds    pyrepl_bind, read-only unless rw
 *
 * Then pivot_root(2) into it, the old root detached, and the root tmpfs
 * and /dev made read-only.  Mounts are nosuid and nodev everywhere but
 * the device binds of /dev.
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sb_jail.h"


#define SB_ROOT_STAGE    "/tmp"
#define SB_ROOT_OLD      ".old-root"
#define SB_ROOT_MAX_SRC  (64 + SB_JAIL_MAX_BINDS)

/* sb_root_open()'s need */
#define SB_ROOT_OPTIONAL  0
#define SB_ROOT_REQUIRED  1
#define SB_ROOT_NO_LINKS  2


/* a host file, directory or device, opened to be bound */
typedef struct {
    int          fd;
    const char  *dst;          /* relative to the new root (or /etc) */
    unsigned     dir:1;
    unsigned     rw:1;
    unsigned     dev:1;        /* a device: no nodev */
    unsigned     etc:1;        /* dst is a name in etc/ */
} sb_root_src_t;


typedef struct {
    sb_root_src_t  src[SB_ROOT_MAX_SRC];
    unsigned       n;
    char          *err;
    size_t         errlen;
} sb_root_t;


static int sb_root_home(sb_root_t *r, int workdir_fd);
static int sb_root_open(sb_root_t *r, const char *host, const char *dst,
    int rw, int dev, int need);
static int sb_root_bind(sb_root_t *r, const sb_root_src_t *s);
static int sb_root_mkdirs(sb_root_t *r, const char *path, int dir);
static int sb_root_write(sb_root_t *r, const char *path, const char *text);
static int sb_root_mount(sb_root_t *r, const char *what, const char *where,
    const char *type, unsigned long flags, const char *data);
static int sb_root_links(sb_root_t *r);
static int sb_root_etc(sb_root_t *r, const sb_jail_id_t *id);
static int sb_root_dev(sb_root_t *r, const sb_jail_t *j);
static int sb_root_fail(sb_root_t *r, const char *what, const char *name);
static void sb_root_close(sb_root_t *r);


/* what of /etc a session sees, when the host has it */
static const char  *sb_root_etc_names[] = {
    "hosts", "resolv.conf", "nsswitch.conf", "host.conf", "gai.conf",
    "networks", "protocols", "services", "ld.so.cache", "ld.so.conf",
    "ld.so.conf.d", "timezone", "ssl", "ca-certificates",
    "ca-certificates.conf", "alternatives", "python3", "python3.11",
    "mime.types", "magic", "magic.mime", "inputrc", "bash.bashrc",
    "profile", "os-release", "debian_version", "lsb-release", "fonts",
    "matplotlibrc", "locale.alias", "terminfo", "gitconfig", NULL
};

/* the devices bound into /dev */
static const char  *sb_root_devices[] = {
    "null", "zero", "full", "random", "urandom", "tty", NULL
};

/*
 * Folders of /usr that hold the host's configuration rather than what
 * programs run with (a source-built nginx's conf, with its API keys; the
 * local tools' settings, such as an npmrc with its tokens): an empty
 * tmpfs hides each.
 */
static const char  *sb_root_hidden[] = { "usr/local/etc", "usr/local/nginx",
                                         NULL };

/* the host's top-level names that merged /usr makes links */
static const char  *sb_root_merged[] = { "bin", "lib", "lib32", "lib64",
                                         "libx32", "sbin", NULL };


int
sb_jail_root(const sb_jail_t *j, const sb_jail_id_t *id, int workdir_fd,
    char *err, size_t errlen)
{
    int          rc, home;
    char         path[PATH_MAX], opts[64];
    mode_t       mask;
    unsigned     i, n;
    sb_root_t    r;
    struct stat  st;

    memset(&r, 0, sizeof(sb_root_t));
    r.err = err;
    r.errlen = errlen;
    rc = -1;
    home = -1;

    /* the tree is everyone's to read (the creator's umask is 077) */
    mask = umask(022);

    /* nothing of what follows may reach the host's mounts */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == -1) {
        return sb_root_fail(&r, "making the mounts private", "/");
    }

    /* first every source, while the host's names still resolve */
    home = sb_root_home(&r, workdir_fd);

    if (home == -1
        || sb_root_open(&r, "/usr", "usr", 0, 0, SB_ROOT_REQUIRED) != 0)
    {
        goto done;
    }

    for (i = 0; sb_root_merged[i] != NULL; i++) {
        (void) snprintf(path, sizeof(path), "/%s", sb_root_merged[i]);

        /* a link (merged /usr) is made as one in sb_root_links() */
        if (readlink(path, opts, sizeof(opts)) == -1
            && sb_root_open(&r, path, sb_root_merged[i], 0, 0,
                            SB_ROOT_OPTIONAL) != 0)
        {
            goto done;
        }
    }

    for (i = 0; sb_root_etc_names[i] != NULL; i++) {
        (void) snprintf(path, sizeof(path), "/etc/%s", sb_root_etc_names[i]);

        n = r.n;

        if (sb_root_open(&r, path, sb_root_etc_names[i], 0, 0,
                         SB_ROOT_OPTIONAL) != 0)
        {
            goto done;
        }

        if (r.n > n) {
            r.src[n].etc = 1;
        }
    }

    for (i = 0; sb_root_devices[i] != NULL; i++) {
        (void) snprintf(path, sizeof(path), "/dev/%s", sb_root_devices[i]);

        if (sb_root_open(&r, path, sb_root_devices[i], 1, 1,
                         SB_ROOT_REQUIRED) != 0)
        {
            goto done;
        }
    }

    for (i = 0; i < j->nbinds; i++) {
        if (sb_root_open(&r, j->binds[i].src, j->binds[i].dst + 1,
                         j->binds[i].rw, 0, SB_ROOT_NO_LINKS) != 0)
        {
            goto done;
        }
    }

    /* the new root */
    if (sb_root_mount(&r, "pyrepl", SB_ROOT_STAGE, "tmpfs",
                      MS_NOSUID | MS_NODEV, "size=1m,mode=0755") != 0
        || chdir(SB_ROOT_STAGE) == -1)
    {
        goto done;
    }

    if (sb_root_mkdirs(&r, "usr", 1) != 0
        || sb_root_mkdirs(&r, "etc", 1) != 0
        || sb_root_mkdirs(&r, "home/pyrepl", 1) != 0
        || sb_root_mkdirs(&r, "proc", 1) != 0
        || sb_root_mkdirs(&r, SB_ROOT_OLD, 1) != 0
        || sb_root_links(&r) != 0
        || sb_root_etc(&r, id) != 0)
    {
        goto done;
    }

    /* the binds, in order: /usr before what an operator puts below it */
    for (i = 0; i < r.n; i++) {
        if (!r.src[i].dev && sb_root_bind(&r, &r.src[i]) != 0) {
            goto done;
        }
    }

    /* the host's own configuration under /usr, hidden */
    for (i = 0; sb_root_hidden[i] != NULL; i++) {
        if (lstat(sb_root_hidden[i], &st) == 0 && S_ISDIR(st.st_mode)
            && sb_root_mount(&r, "tmpfs", sb_root_hidden[i], "tmpfs",
                             MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                             "size=4k,mode=0755") != 0)
        {
            goto done;
        }
    }

    (void) snprintf(opts, sizeof(opts), "size=%llu,mode=1777",
                    (unsigned long long) j->tmp_size);

    if (sb_root_mount(&r, "tmpfs", "tmp", "tmpfs", MS_NOSUID | MS_NODEV,
                      opts) != 0
        || sb_root_dev(&r, j) != 0)
    {
        goto done;
    }

    (void) snprintf(path, sizeof(path), "/proc/self/fd/%d", home);

    if (mount(path, "home/pyrepl", NULL, MS_BIND, NULL) == -1
        || mount(NULL, "home/pyrepl", NULL,
                 MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV, NULL) == -1)
    {
        (void) sb_root_fail(&r, "binding the working directory at",
                            SB_JAIL_HOME);
        goto done;
    }

    /* this process is pid 1 of the new pid namespace: its /proc */
    if (sb_root_mount(&r, "proc", "proc", "proc",
                      MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
    {
        goto done;
    }

    if (syscall(SYS_pivot_root, ".", SB_ROOT_OLD) == -1) {
        (void) sb_root_fail(&r, "pivot_root() into", SB_ROOT_STAGE);
        goto done;
    }

    if (chdir("/") == -1
        || umount2("/" SB_ROOT_OLD, MNT_DETACH) == -1
        || rmdir("/" SB_ROOT_OLD) == -1)
    {
        (void) sb_root_fail(&r, "detaching the old root", "/");
        goto done;
    }

    if (mount(NULL, "/", NULL,
              MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL)
        == -1)
    {
        (void) sb_root_fail(&r, "making read-only", "/");
        goto done;
    }

    if (chdir(SB_JAIL_HOME) == -1) {
        (void) sb_root_fail(&r, "chdir() to", SB_JAIL_HOME);
        goto done;
    }

    rc = 0;

done:

    (void) umask(mask);

    if (home != -1) {
        (void) close(home);
    }

    sb_root_close(&r);

    return rc;
}


/*
 * The working directory again, from this mount namespace: workdir_fd was
 * opened in the creator's, and a mount may only bind what is in the
 * caller's own.  Its path (under the supervisor's workdir, which no
 * session may write) is opened anew and must be the same directory.  The
 * supervisor renames a pool process's directory when it hands the process
 * out, maybe while this runs: a name gone meanwhile is read again.
 */
#define SB_ROOT_HOME_TRIES  8

static int
sb_root_home(sb_root_t *r, int workdir_fd)
{
    int          fd, try, err;
    char         link[64], path[PATH_MAX];
    ssize_t      n;
    struct stat  a, b;

    (void) snprintf(link, sizeof(link), "/proc/self/fd/%d", workdir_fd);

    if (fstat(workdir_fd, &a) == -1) {
        return sb_root_fail(r, "finding the working directory at", link);
    }

    for (try = 1; /* void */ ; try++) {
        n = readlink(link, path, sizeof(path) - 1);
        if (n <= 0) {
            return sb_root_fail(r, "finding the working directory at", link);
        }

        path[n] = '\0';

        fd = open(path, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

        if (fd != -1 && fstat(fd, &b) == 0 && a.st_dev == b.st_dev
            && a.st_ino == b.st_ino)
        {
            return fd;
        }

        err = (fd == -1) ? errno : ESTALE;

        if (fd != -1) {
            (void) close(fd);
        }

        errno = err;

        if ((err != ENOENT && err != ESTALE) || try == SB_ROOT_HOME_TRIES) {
            return sb_root_fail(r, "opening the working directory", path);
        }
    }
}


/*
 * Open host to be bound at dst.  need: SB_ROOT_OPTIONAL (a missing host
 * name is skipped), SB_ROOT_REQUIRED, or SB_ROOT_NO_LINKS for an
 * operator's pyrepl_bind: required, and resolved without following any
 * link (nginx -t made it a real path), so that no one who can write
 * somewhere on it points the next jails elsewhere.  The system's own
 * names (/usr, /etc/resolv.conf) follow links, as the host's programs
 * do.  0, or -1 with r->err filled.
 */
static int
sb_root_open(sb_root_t *r, const char *host, const char *dst, int rw,
    int dev, int need)
{
    int               fd, err;
    struct stat       st;
    struct open_how   how;
    sb_root_src_t    *s;

    if (r->n == SB_ROOT_MAX_SRC) {
        return sb_root_fail(r, "too many names to bind, at", host);
    }

    if (need == SB_ROOT_NO_LINKS) {
        memset(&how, 0, sizeof(how));
        how.flags = O_PATH | O_CLOEXEC;
        how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;

        fd = (int) syscall(SYS_openat2, AT_FDCWD, host, &how, sizeof(how));

    } else {
        fd = open(host, O_PATH | O_CLOEXEC);
    }

    if (fd == -1 || fstat(fd, &st) == -1) {
        err = errno;

        if (fd != -1) {
            (void) close(fd);
        }

        errno = err;

        if (need == SB_ROOT_OPTIONAL && (err == ENOENT || err == ENOTDIR)) {
            return 0;
        }

        return sb_root_fail(r, (need == SB_ROOT_NO_LINKS)
                               ? "opening (no link followed)" : "open()",
                            host);
    }

    s = &r->src[r->n++];
    memset(s, 0, sizeof(sb_root_src_t));
    s->fd = fd;
    s->dst = dst;
    s->dir = S_ISDIR(st.st_mode);
    s->rw = rw;
    s->dev = dev;

    return 0;
}


/* Bind s at its place in the new root (the current directory). */
static int
sb_root_bind(sb_root_t *r, const sb_root_src_t *s)
{
    char           from[64], dst[PATH_MAX];
    unsigned long  flags;

    if ((size_t) snprintf(dst, sizeof(dst), "%s%s", s->etc ? "etc/" : "",
                          s->dst)
        >= sizeof(dst))
    {
        return sb_root_fail(r, "a path too long", s->dst);
    }

    if (sb_root_mkdirs(r, dst, s->dir) != 0) {
        return -1;
    }

    (void) snprintf(from, sizeof(from), "/proc/self/fd/%d", s->fd);

    if (mount(from, dst, NULL, MS_BIND, NULL) == -1) {
        return sb_root_fail(r, "binding", dst);
    }

    flags = MS_BIND | MS_REMOUNT | MS_NOSUID;

    if (!s->dev) {
        flags |= MS_NODEV;
    }

    if (!s->rw) {
        flags |= MS_RDONLY;
    }

    if (mount(NULL, dst, NULL, flags, NULL) == -1) {
        return sb_root_fail(r, "remounting", dst);
    }

    return 0;
}


/*
 * Make path (relative: in the new root, the current directory; or
 * absolute) and its missing parents: a directory, or with dir 0 an empty
 * file to bind a file over.  Each name is made and opened from its
 * parent's descriptor, never through a link.
 */
static int
sb_root_mkdirs(sb_root_t *r, const char *path, int dir)
{
    int    fd, next, last;
    char   buf[PATH_MAX], *name, *slash;

    if ((size_t) snprintf(buf, sizeof(buf), "%s", path) >= sizeof(buf)) {
        return sb_root_fail(r, "a path too long", path);
    }

    fd = open(buf[0] == '/' ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd == -1) {
        return sb_root_fail(r, "open()", buf[0] == '/' ? "/" : ".");
    }

    for (name = buf; /* void */ ; name = slash + 1) {
        slash = strchr(name, '/');
        last = (slash == NULL);

        if (!last) {
            *slash = '\0';
        }

        if (*name == '\0') {
            if (last) {
                break;
            }

            continue;
        }

        if (last && !dir) {
            next = openat(fd, name, O_WRONLY | O_CREAT | O_NOFOLLOW
                                    | O_CLOEXEC, 0644);

        } else {
            next = (mkdirat(fd, name, 0755) == -1 && errno != EEXIST)
                   ? -1
                   : openat(fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW
                                      | O_CLOEXEC);
        }

        (void) close(fd);

        if (next == -1) {
            return sb_root_fail(r, "making (no link followed)", path);
        }

        fd = next;

        if (last) {
            break;
        }
    }

    (void) close(fd);

    return 0;
}


static int
sb_root_write(sb_root_t *r, const char *path, const char *text)
{
    int      fd;
    size_t   len;
    ssize_t  n;

    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
              0644);
    if (fd == -1) {
        return sb_root_fail(r, "creating", path);
    }

    len = strlen(text);
    n = write(fd, text, len);
    (void) close(fd);

    if (n != (ssize_t) len) {
        return sb_root_fail(r, "writing", path);
    }

    return 0;
}


static int
sb_root_mount(sb_root_t *r, const char *what, const char *where,
    const char *type, unsigned long flags, const char *data)
{
    if (sb_root_mkdirs(r, where, 1) != 0) {
        return -1;
    }

    if (mount(what, where, type, flags, data) == -1) {
        return sb_root_fail(r, "mounting a new one at", where);
    }

    return 0;
}


/* /bin, /lib, /lib64, /sbin: links into /usr where the host has them so */
static int
sb_root_links(sb_root_t *r)
{
    char      path[32], target[PATH_MAX];
    ssize_t   n;
    unsigned  i;

    for (i = 0; sb_root_merged[i] != NULL; i++) {
        (void) snprintf(path, sizeof(path), "/%s", sb_root_merged[i]);

        n = readlink(path, target, sizeof(target) - 1);
        if (n <= 0) {
            continue;       /* a directory (bound) or nothing */
        }

        target[n] = '\0';

        if (symlink(target, sb_root_merged[i]) == -1) {
            return sb_root_fail(r, "symlink()", sb_root_merged[i]);
        }
    }

    return 0;
}


/* The generated part of /etc, and localtime as the link it is. */
static int
sb_root_etc(sb_root_t *r, const sb_jail_id_t *id)
{
    char     text[1024], target[PATH_MAX];
    ssize_t  n;

    (void) snprintf(text, sizeof(text),
                    "root:x:0:0:root:/root:/usr/sbin/nologin\n"
                    "%s:x:%lu:%lu:PyREPL session:" SB_JAIL_HOME ":/bin/bash\n"
                    "nobody:x:65534:65534:nobody:/nonexistent:"
                    "/usr/sbin/nologin\n",
                    id->user, (unsigned long) id->uid,
                    (unsigned long) id->gid);

    if (sb_root_write(r, "etc/passwd", text) != 0) {
        return -1;
    }

    (void) snprintf(text, sizeof(text),
                    "root:x:0:\n%s:x:%lu:\nnogroup:x:65534:\n", id->user,
                    (unsigned long) id->gid);

    if (sb_root_write(r, "etc/group", text) != 0
        || sb_root_write(r, "etc/hostname", SB_JAIL_HOSTNAME "\n") != 0)
    {
        return -1;
    }

    n = readlink("/etc/localtime", target, sizeof(target) - 1);

    if (n > 0) {
        target[n] = '\0';

        if (symlink(target, "etc/localtime") == -1) {
            return sb_root_fail(r, "symlink()", "etc/localtime");
        }
    }

    return 0;
}


/* /dev: a small tmpfs, the devices, devpts, shm and the links. */
static int
sb_root_dev(sb_root_t *r, const sb_jail_t *j)
{
    char      path[64], opts[64];
    unsigned  i;

    static const char  *links[][2] = {
        { "pts/ptmx", "dev/ptmx" },
        { "/proc/self/fd", "dev/fd" },
        { "/proc/self/fd/0", "dev/stdin" },
        { "/proc/self/fd/1", "dev/stdout" },
        { "/proc/self/fd/2", "dev/stderr" },
    };

    if (sb_root_mount(r, "tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC,
                      "size=64k,mode=0755") != 0)
    {
        return -1;
    }

    for (i = 0; i < r->n; i++) {
        if (!r->src[i].dev) {
            continue;
        }

        (void) snprintf(path, sizeof(path), "dev/%s", r->src[i].dst);
        r->src[i].dst = path;

        if (sb_root_bind(r, &r->src[i]) != 0) {
            return -1;
        }
    }

    /* the host's kernel.pty.max is shared by every devpts: a few each */
    (void) snprintf(opts, sizeof(opts),
                    "newinstance,ptmxmode=0666,mode=0620,max=%d",
                    SB_JAIL_MAX_PTYS);

    if (sb_root_mount(r, "devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                      opts) != 0)
    {
        return -1;
    }

    (void) snprintf(opts, sizeof(opts), "size=%llu,mode=1777",
                    (unsigned long long) j->tmp_size);

    if (sb_root_mount(r, "tmpfs", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV,
                      opts) != 0)
    {
        return -1;
    }

    for (i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
        if (symlink(links[i][0], links[i][1]) == -1) {
            return sb_root_fail(r, "symlink()", links[i][1]);
        }
    }

    if (mount(NULL, "dev", NULL,
              MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL)
        == -1)
    {
        return sb_root_fail(r, "making read-only", "dev");
    }

    return 0;
}


static int
sb_root_fail(sb_root_t *r, const char *what, const char *name)
{
    (void) snprintf(r->err, r->errlen, "%s \"%s\" failed: %s", what, name,
                    strerror(errno));

    return -1;
}


static void
sb_root_close(sb_root_t *r)
{
    unsigned  i;

    for (i = 0; i < r->n; i++) {
        (void) close(r->src[i].fd);
    }

    r->n = 0;
}
