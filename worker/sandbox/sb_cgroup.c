/*
 * sb_cgroup.c: a control group per jailed session; see sb_cgroup.h.
 *
 * The hierarchies are found as the kernel describes them to this process:
 * /proc/self/mountinfo says where each is mounted (and which group the
 * mount shows as its root, under a cgroup namespace), /proc/self/cgroup
 * which group the process is in.  Everything is written with openat(2)
 * relative to the instance directory's descriptor; the files of a
 * controller that is not there are simply absent, so each limit is
 * written where its file exists.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sb_cgroup.h"


/* a hierarchy as mountinfo and /proc/self/cgroup describe it */
typedef struct {
    char  mnt[SB_CGROUP_PATH];        /* where it is mounted, "" if not */
    char  root[SB_CGROUP_PATH];       /* the group the mount shows as / */
    char  path[SB_CGROUP_PATH];       /* our group in it */
} sb_cgroup_hier_t;


static int sb_cgroup_find(const char *ctrl, sb_cgroup_hier_t *h);
static int sb_cgroup_own(const char *ctrl, sb_cgroup_hier_t *h);
static int sb_cgroup_token(const char *list, const char *word);
static int sb_cgroup_dir(const sb_cgroup_hier_t *h, int parent, char *buf,
    size_t size);
static int sb_cgroup_mkdir(const char *base, const char *name, char *dir,
    size_t size);
static int sb_cgroup_write(int dirfd, const char *file, const char *value);
static int sb_cgroup_delegates(int dirfd, const char *ctrl);
static int sb_cgroup_has(int dirfd, const char *file);
static unsigned long sb_cgroup_counter(int dirfd, const char *file,
    const char *key);


static const char  *sb_cgroup_v1[SB_CGROUP_DIRS] = { "memory", "pids",
                                                     "cpu" };


int
sb_cgroup_setup(sb_cgroup_t *cg, const char *name, char *warn,
    size_t warnlen, char *err, size_t errlen)
{
    int               own_is_root, fd;
    char              base[SB_CGROUP_PATH], inst[64];
    size_t            i;
    sb_cgroup_hier_t  h;

    memset(cg, 0, sizeof(sb_cgroup_t));
    warn[0] = '\0';
    (void) snprintf(inst, sizeof(inst), "pyrepl-%s", name);

    /* the unified hierarchy, if it has the memory controller */
    if (sb_cgroup_find(NULL, &h) == 0 && sb_cgroup_own(NULL, &h) == 0) {

        own_is_root = (strcmp(h.path, h.root) == 0);

        /* a group with processes cannot delegate: beside it, then */
        if (sb_cgroup_dir(&h, !own_is_root, base, sizeof(base)) == 0) {
            fd = -1;

            if (sb_cgroup_mkdir(base, inst, cg->dir[0], SB_CGROUP_PATH)
                == 0)
            {
                fd = open(cg->dir[0], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            }

            if (fd != -1) {
                (void) sb_cgroup_write(fd, "cgroup.subtree_control",
                                       "+memory");
                (void) sb_cgroup_write(fd, "cgroup.subtree_control", "+pids");
                (void) sb_cgroup_write(fd, "cgroup.subtree_control", "+cpu");

                if (sb_cgroup_delegates(fd, "memory")) {
                    cg->version = 2;
                    cg->ndirs = 1;
                    cg->memory = 1;

                    if (!sb_cgroup_delegates(fd, "pids")
                        || !sb_cgroup_delegates(fd, "cpu"))
                    {
                        (void) snprintf(warn, warnlen, "cgroup v2 at \"%s\""
                                        " lacks the%s%s controller: that "
                                        "limit is not enforced", cg->dir[0],
                                        sb_cgroup_delegates(fd, "pids")
                                        ? "" : " pids",
                                        sb_cgroup_delegates(fd, "cpu")
                                        ? "" : " cpu");
                    }

                    (void) close(fd);
                    return 0;
                }

                (void) close(fd);
            }

            if (cg->dir[0][0] != '\0') {
                (void) rmdir(cg->dir[0]);
                cg->dir[0][0] = '\0';
            }
        }
    }

    /* v1: each controller where it is mounted */
    for (i = 0; i < SB_CGROUP_DIRS; i++) {
        if (sb_cgroup_find(sb_cgroup_v1[i], &h) != 0
            || sb_cgroup_own(sb_cgroup_v1[i], &h) != 0
            || sb_cgroup_dir(&h, 0, base, sizeof(base)) != 0)
        {
            (void) snprintf(warn + strlen(warn), warnlen - strlen(warn),
                            "%sno %s control group", warn[0] ? ", " : "",
                            sb_cgroup_v1[i]);
            continue;
        }

        if (sb_cgroup_mkdir(base, inst, cg->dir[cg->ndirs], SB_CGROUP_PATH)
            != 0)
        {
            (void) snprintf(err, errlen, "mkdir(\"%s/%s\") failed: %s",
                            base, inst, strerror(errno));
            return -1;
        }

        cg->memory |= (i == 0);
        cg->ndirs++;
    }

    cg->version = (cg->ndirs > 0) ? 1 : 0;

    if (warn[0] != '\0') {
        (void) snprintf(warn + strlen(warn), warnlen - strlen(warn),
                        ": %s", cg->ndirs > 0
                        ? "those limits are not enforced"
                        : "memory, tasks and CPU are limited per process "
                          "only");
    }

    return 0;
}


int
sb_cgroup_add_dir(sb_cgroup_t *cg, const char *dir)
{
    int  fd, v2;

    if (cg->ndirs == SB_CGROUP_DIRS || dir[0] != '/'
        || strlen(dir) >= SB_CGROUP_PATH)
    {
        return -1;
    }

    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd == -1) {
        return -1;
    }

    v2 = sb_cgroup_has(fd, "cgroup.subtree_control");

    /* v2: delegated to the sessions' groups; v1: the controller's own */
    if (v2 ? sb_cgroup_delegates(fd, "memory")
           : sb_cgroup_has(fd, "memory.limit_in_bytes"))
    {
        cg->memory = 1;
    }

    (void) close(fd);

    if (cg->ndirs > 0 && cg->version != (v2 ? 2 : 1)) {
        return -1;
    }

    cg->version = v2 ? 2 : 1;
    memcpy(cg->dir[cg->ndirs++], dir, strlen(dir) + 1);

    return 0;
}


int
sb_cgroup_enter(const sb_cgroup_t *cg, pid_t pid,
    const sb_cgroup_limits_t *lim, int *oomfd, char *err, size_t errlen)
{
    int       fd, dfd, ofd, efd;
    char      name[32], v[64];
    unsigned  i;

    if (oomfd != NULL) {
        *oomfd = -1;
    }

    (void) snprintf(name, sizeof(name), "s%ld", (long) pid);

    for (i = 0; i < cg->ndirs; i++) {
        fd = open(cg->dir[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd == -1) {
            (void) snprintf(err, errlen, "open(\"%s\") failed: %s",
                            cg->dir[i], strerror(errno));
            return -1;
        }

        /* a group left by a session that had this pid: empty, or rmdir
         * fails and so does the mkdir below */
        (void) unlinkat(fd, name, AT_REMOVEDIR);

        if (mkdirat(fd, name, 0755) == -1) {
            (void) snprintf(err, errlen, "mkdir(\"%s/%s\") failed: %s",
                            cg->dir[i], name, strerror(errno));
            (void) close(fd);
            return -1;
        }

        dfd = openat(fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        (void) close(fd);

        if (dfd == -1) {
            (void) snprintf(err, errlen, "open(\"%s/%s\") failed: %s",
                            cg->dir[i], name, strerror(errno));
            return -1;
        }

        /* its usage readable by nginx's workers (memory_bytes), whatever
         * the umask */
        if (fchmod(dfd, 0755) == -1) {
            (void) snprintf(err, errlen, "chmod(\"%s/%s\") failed: %s",
                            cg->dir[i], name, strerror(errno));
            (void) close(dfd);
            return -1;
        }

        if (lim->memory != 0) {
            (void) snprintf(v, sizeof(v), "%llu",
                            (unsigned long long) lim->memory);

            if (sb_cgroup_has(dfd, "memory.max")) {
                if (sb_cgroup_write(dfd, "memory.max", v) == -1
                    || (sb_cgroup_has(dfd, "memory.swap.max")
                        && sb_cgroup_write(dfd, "memory.swap.max", "0")
                           == -1)
                    || sb_cgroup_write(dfd, "memory.oom.group", "1") == -1)
                {
                    goto failed;
                }

            } else if (sb_cgroup_has(dfd, "memory.limit_in_bytes")) {
                /*
                 * memsw counts memory and swap: at least the limit.  v1
                 * charges TCP buffers apart, and only once they have a
                 * limit of their own (kmem.tcp); UDP's not at all.
                 */
                if (sb_cgroup_write(dfd, "memory.limit_in_bytes", v) == -1
                    || (sb_cgroup_has(dfd, "memory.memsw.limit_in_bytes")
                        && sb_cgroup_write(dfd, "memory.memsw.limit_in_bytes",
                                           v) == -1)
                    || (sb_cgroup_has(dfd, "memory.kmem.tcp.limit_in_bytes")
                        && sb_cgroup_write(dfd,
                                           "memory.kmem.tcp.limit_in_bytes",
                                           v) == -1))
                {
                    goto failed;
                }

                if (oomfd != NULL && *oomfd == -1) {
                    efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                    ofd = openat(dfd, "memory.oom_control",
                                 O_RDONLY | O_CLOEXEC);

                    if (efd == -1 || ofd == -1) {
                        goto oom_failed;
                    }

                    (void) snprintf(v, sizeof(v), "%d %d", efd, ofd);

                    if (sb_cgroup_write(dfd, "cgroup.event_control", v)
                        == -1)
                    {
                        goto oom_failed;
                    }

                    (void) close(ofd);
                    *oomfd = efd;
                    goto memory_done;

                oom_failed:

                    (void) snprintf(err, errlen, "the out-of-memory event "
                                    "of \"%s/%s\": %s", cg->dir[i], name,
                                    strerror(errno));
                    if (efd != -1) {
                        (void) close(efd);
                    }
                    if (ofd != -1) {
                        (void) close(ofd);
                    }
                    (void) close(dfd);
                    return -1;
                }
            }
        }

    memory_done:

        if (lim->pids != 0 && sb_cgroup_has(dfd, "pids.max")) {
            (void) snprintf(v, sizeof(v), "%llu",
                            (unsigned long long) lim->pids);

            if (sb_cgroup_write(dfd, "pids.max", v) == -1) {
                goto failed;
            }
        }

        if (lim->weight != 0) {
            if (sb_cgroup_has(dfd, "cpu.weight")) {
                (void) snprintf(v, sizeof(v), "%u", lim->weight);

                if (sb_cgroup_write(dfd, "cpu.weight", v) == -1) {
                    goto failed;
                }

            } else if (sb_cgroup_has(dfd, "cpu.shares")) {
                (void) snprintf(v, sizeof(v), "%u",
                                lim->weight * 1024 / SB_CGROUP_WEIGHT);

                if (sb_cgroup_write(dfd, "cpu.shares", v) == -1) {
                    goto failed;
                }
            }
        }

        /* "0": the writer itself, whatever its pid namespace */
        if (sb_cgroup_write(dfd, "cgroup.procs", "0") == -1) {
            goto failed;
        }

        (void) close(dfd);
    }

    return 0;

failed:

    (void) snprintf(err, errlen, "setting up \"%s/%s\" failed: %s",
                    cg->dir[i], name, strerror(errno));
    (void) close(dfd);

    return -1;
}


unsigned long
sb_cgroup_oom_kills(const sb_cgroup_t *cg, pid_t pid)
{
    int            fd, dfd;
    char           name[32];
    unsigned       i;
    unsigned long  n;

    (void) snprintf(name, sizeof(name), "s%ld", (long) pid);

    for (i = 0; i < cg->ndirs; i++) {
        fd = open(cg->dir[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd == -1) {
            continue;
        }

        dfd = openat(fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        (void) close(fd);

        /* its usage readable by nginx's workers (memory_bytes), whatever
         * the umask */
        if (dfd == -1 || fchmod(dfd, 0755) == -1) {
            continue;
        }

        n = sb_cgroup_counter(dfd, "memory.events", "oom_kill");

        if (n == 0) {
            n = sb_cgroup_counter(dfd, "memory.oom_control", "oom_kill");
        }

        (void) close(dfd);

        if (n > 0) {
            return n;
        }
    }

    return 0;
}


int
sb_cgroup_remove(const sb_cgroup_t *cg, pid_t pid)
{
    int       fd, rc, err;
    char      name[32];
    unsigned  i;

    (void) snprintf(name, sizeof(name), "s%ld", (long) pid);

    rc = 0;
    err = 0;

    for (i = 0; i < cg->ndirs; i++) {
        fd = open(cg->dir[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd == -1) {
            continue;
        }

        if (unlinkat(fd, name, AT_REMOVEDIR) == -1 && errno != ENOENT) {
            err = errno;
            rc = -1;
        }

        (void) close(fd);
    }

    errno = err;

    return rc;
}


int
sb_cgroup_teardown(const sb_cgroup_t *cg)
{
    int       rc, err;
    unsigned  i;

    rc = 0;
    err = 0;

    for (i = 0; i < cg->ndirs; i++) {
        if (rmdir(cg->dir[i]) == -1 && errno != ENOENT) {
            err = errno;
            rc = -1;
        }
    }

    errno = err;

    return rc;
}


void
sb_cgroup_each(const sb_cgroup_t *cg, void (*fn)(pid_t pid, void *data),
    void *data)
{
    DIR            *d;
    char           *end;
    long            v;
    struct dirent  *de;

    if (cg->ndirs == 0) {
        return;
    }

    d = opendir(cg->dir[0]);
    if (d == NULL) {
        return;
    }

    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] != 's' || de->d_name[1] < '1'
            || de->d_name[1] > '9')
        {
            continue;
        }

        v = strtol(de->d_name + 1, &end, 10);

        if (*end == '\0' && v > 0 && v <= INT_MAX) {
            fn((pid_t) v, data);
        }
    }

    (void) closedir(d);
}


/*
 * The mount of a hierarchy: the cgroup2 one (ctrl NULL) or the v1 one
 * that has ctrl among its options.  0, or -1 if there is none.
 */
static int
sb_cgroup_find(const char *ctrl, sb_cgroup_hier_t *h)
{
    int    found;
    char  *line, *f[10], *dash, *fstype, *opts, *save;
    FILE  *fp;
    size_t  cap, i;

    fp = fopen("/proc/self/mountinfo", "re");
    if (fp == NULL) {
        return -1;
    }

    found = 0;
    line = NULL;
    cap = 0;

    while (!found && getline(&line, &cap, fp) != -1) {
        /* id parent major:minor root mountpoint opts ... - type src sopts */
        dash = strstr(line, " - ");
        if (dash == NULL) {
            continue;
        }

        *dash = '\0';
        fstype = strtok_r(dash + 3, " \n", &save);
        (void) strtok_r(NULL, " \n", &save);
        opts = strtok_r(NULL, " \n", &save);

        if (fstype == NULL) {
            continue;
        }

        if (ctrl == NULL ? strcmp(fstype, "cgroup2") != 0
            : strcmp(fstype, "cgroup") != 0 || opts == NULL
              || !sb_cgroup_token(opts, ctrl))
        {
            continue;
        }

        f[0] = strtok_r(line, " ", &save);

        for (i = 1; i < 5 && f[i - 1] != NULL; i++) {
            f[i] = strtok_r(NULL, " ", &save);
        }

        if (i < 5 || f[4] == NULL
            || strlen(f[3]) >= SB_CGROUP_PATH
            || strlen(f[4]) >= SB_CGROUP_PATH)
        {
            continue;
        }

        (void) strcpy(h->root, f[3]);
        (void) strcpy(h->mnt, f[4]);
        found = 1;
    }

    free(line);
    (void) fclose(fp);

    return found ? 0 : -1;
}


/* Our group in the hierarchy of ctrl (NULL: the unified one). */
static int
sb_cgroup_own(const char *ctrl, sb_cgroup_hier_t *h)
{
    int     found;
    char   *line, *ctrls, *path, *nl;
    FILE   *fp;
    size_t  cap;

    fp = fopen("/proc/self/cgroup", "re");
    if (fp == NULL) {
        return -1;
    }

    found = 0;
    line = NULL;
    cap = 0;

    while (!found && getline(&line, &cap, fp) != -1) {
        /* N:controllers:path */
        ctrls = strchr(line, ':');
        path = ctrls ? strchr(ctrls + 1, ':') : NULL;

        if (path == NULL) {
            continue;
        }

        *path++ = '\0';
        ctrls++;

        nl = strchr(path, '\n');
        if (nl != NULL) {
            *nl = '\0';
        }

        if ((ctrl == NULL ? ctrls[0] == '\0' : sb_cgroup_token(ctrls, ctrl))
            && strlen(path) < SB_CGROUP_PATH)
        {
            (void) strcpy(h->path, path);
            found = 1;
        }
    }

    free(line);
    (void) fclose(fp);

    return found ? 0 : -1;
}


/* Whether word is one of the comma or space separated entries of list. */
static int
sb_cgroup_token(const char *list, const char *word)
{
    size_t       n;
    const char  *p;

    n = strlen(word);

    for (p = list; (p = strstr(p, word)) != NULL; p += n) {
        if ((p == list || p[-1] == ',' || p[-1] == ' ')
            && (p[n] == '\0' || p[n] == ',' || p[n] == ' '
                || p[n] == '\n'))
        {
            return 1;
        }
    }

    return 0;
}


/*
 * The directory of our group (or of its parent) in h: the mount point
 * and our group's path below the mount's root.  0, or -1 if our group is
 * not under the mount's root (another cgroup namespace's).
 */
static int
sb_cgroup_dir(const sb_cgroup_hier_t *h, int parent, char *buf,
    size_t size)
{
    char        *slash;
    size_t       n;
    const char  *rel;

    n = strlen(h->root);

    if (strcmp(h->root, "/") == 0) {
        rel = h->path;

    } else if (strncmp(h->path, h->root, n) == 0
               && (h->path[n] == '/' || h->path[n] == '\0'))
    {
        rel = h->path + n;

    } else {
        return -1;
    }

    if ((size_t) snprintf(buf, size, "%s%s", h->mnt,
                          strcmp(rel, "/") == 0 ? "" : rel) >= size)
    {
        return -1;
    }

    if (parent) {
        slash = strrchr(buf, '/');

        if (slash == NULL || (size_t) (slash - buf) <= strlen(h->mnt)) {
            return -1;
        }

        *slash = '\0';
    }

    return 0;
}


static int
sb_cgroup_mkdir(const char *base, const char *name, char *dir, size_t size)
{
    if ((size_t) snprintf(dir, size, "%s/%s", base, name) >= size) {
        errno = ENAMETOOLONG;
        return -1;
    }

    if (mkdir(dir, 0755) == -1 && errno != EEXIST) {
        return -1;
    }

    /* whatever the umask: nginx's workers look into sessions' groups */
    return chmod(dir, 0755);
}


static int
sb_cgroup_write(int dirfd, const char *file, const char *value)
{
    int      fd, err;
    size_t   len;
    ssize_t  n;

    fd = openat(dirfd, file, O_WRONLY | O_CLOEXEC);
    if (fd == -1) {
        return -1;
    }

    len = strlen(value);
    n = write(fd, value, len);
    err = errno;

    (void) close(fd);

    if (n != (ssize_t) len) {
        errno = (n == -1) ? err : EIO;
        return -1;
    }

    return 0;
}


/* Whether a v2 group's cgroup.subtree_control lists ctrl. */
static int
sb_cgroup_delegates(int dirfd, const char *ctrl)
{
    int      fd;
    char     buf[256];
    ssize_t  n;

    fd = openat(dirfd, "cgroup.subtree_control", O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        return 0;
    }

    n = read(fd, buf, sizeof(buf) - 1);
    (void) close(fd);

    buf[n > 0 ? n : 0] = '\0';

    return sb_cgroup_token(buf, ctrl);
}


static int
sb_cgroup_has(int dirfd, const char *file)
{
    return faccessat(dirfd, file, F_OK, 0) == 0;
}


/* The number after "key " in a cgroup's flat-keyed file; 0 if none. */
static unsigned long
sb_cgroup_counter(int dirfd, const char *file, const char *key)
{
    int      fd;
    char     buf[1024], *p;
    size_t   n;
    ssize_t  r;

    fd = openat(dirfd, file, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        return 0;
    }

    r = read(fd, buf, sizeof(buf) - 1);
    (void) close(fd);

    if (r <= 0) {
        return 0;
    }

    buf[r] = '\0';
    n = strlen(key);

    for (p = buf; p != NULL && *p != '\0'; p = strchr(p, '\n')) {
        if (*p == '\n') {
            p++;
        }

        if (strncmp(p, key, n) == 0 && p[n] == ' ') {
            return strtoul(p + n + 1, NULL, 10);
        }
    }

    return 0;
}
