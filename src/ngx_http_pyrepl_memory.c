/*
 * ngx_http_pyrepl_memory.c: a session's memory, as GET /session/{id}
 * reports it.  A jailed session's init (the pid nginx knows) sits in the
 * session's control group (worker/sandbox/sb_cgroup.h), whose counter is
 * the one pyrepl_memory_limit holds; /proc/PID/cgroup names the group,
 * relative to the hierarchy's root, which is mounted at the usual place
 * (/sys/fs/cgroup/memory for v1, /sys/fs/cgroup or its "unified" folder
 * for v2).  A host whose mount shows only part of the hierarchy (in a
 * container) has the group under a shorter path: the leading components
 * are dropped one by one until the file is there.
 */

#include "ngx_http_pyrepl_memory.h"


#define PYREPL_MEMORY_READ  4096


static ssize_t ngx_http_pyrepl_memory_read(const char *path, char *buf,
    size_t size);
static uint64_t ngx_http_pyrepl_memory_group(char *cgroups);
static uint64_t ngx_http_pyrepl_memory_rss(ngx_pid_t pid);


uint64_t
ngx_http_pyrepl_memory(ngx_pid_t pid)
{
    char      path[64], buf[PYREPL_MEMORY_READ];
    uint64_t  bytes;

    ngx_sprintf((u_char *) path, "/proc/%P/cgroup%Z", pid);

    if (ngx_http_pyrepl_memory_read(path, buf, sizeof(buf)) > 0) {
        bytes = ngx_http_pyrepl_memory_group(buf);

        if (bytes > 0) {
            return bytes;
        }
    }

    return ngx_http_pyrepl_memory_rss(pid);
}


/* The charge of the "pyrepl-" group among cgroups' lines, or 0. */
static uint64_t
ngx_http_pyrepl_memory_group(char *cgroups)
{
    char         *line, *next, *ctl, *group, *p, path[PATH_MAX], num[32];
    ngx_uint_t    i;
    const char  **mnt, *file;

    static const char  *v1[] = { "/sys/fs/cgroup/memory", NULL };
    static const char  *v2[] = { "/sys/fs/cgroup/unified", "/sys/fs/cgroup",
                                 NULL };

    for (line = cgroups; line != NULL && *line != '\0'; line = next) {
        next = strchr(line, '\n');
        if (next != NULL) {
            *next++ = '\0';
        }

        /* "ID:CONTROLLERS:PATH"; v2's has no controllers */
        ctl = strchr(line, ':');
        group = (ctl != NULL) ? strchr(ctl + 1, ':') : NULL;

        if (group == NULL || strstr(group, "/pyrepl-") == NULL) {
            continue;
        }

        *group++ = '\0';
        ctl++;

        if (*ctl == '\0') {
            mnt = v2;
            file = "memory.current";

        } else if (strstr(ctl, "memory") != NULL) {
            mnt = v1;
            file = "memory.usage_in_bytes";

        } else {
            continue;
        }

        for (p = group; p != NULL; p = strchr(p + 1, '/')) {
            for (i = 0; mnt[i] != NULL; i++) {
                if (ngx_snprintf((u_char *) path, sizeof(path), "%s%s/%s%Z",
                                 mnt[i], p, file)
                    == (u_char *) path + sizeof(path))
                {
                    continue;       /* too long to be there */
                }

                if (ngx_http_pyrepl_memory_read(path, num, sizeof(num)) > 0) {
                    return strtoull(num, NULL, 10);
                }
            }
        }
    }

    return 0;
}


/* The resident set of pid, from /proc/PID/statm, or 0. */
static uint64_t
ngx_http_pyrepl_memory_rss(ngx_pid_t pid)
{
    char           path[64], buf[128];
    unsigned long  size, resident;

    ngx_sprintf((u_char *) path, "/proc/%P/statm%Z", pid);

    if (ngx_http_pyrepl_memory_read(path, buf, sizeof(buf)) <= 0
        || sscanf(buf, "%lu %lu", &size, &resident) != 2)
    {
        return 0;
    }

    return (uint64_t) resident * ngx_pagesize;
}


/* Read a small file into buf, NUL-terminated; its length, or -1. */
static ssize_t
ngx_http_pyrepl_memory_read(const char *path, char *buf, size_t size)
{
    int      fd;
    ssize_t  n;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        return -1;
    }

    n = read(fd, buf, size - 1);
    (void) close(fd);

    if (n < 0) {
        return -1;
    }

    buf[n] = '\0';

    return n;
}
