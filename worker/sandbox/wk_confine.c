/*
 * wk_confine.c: the confinement policy of session processes, from the
 * command line to wk_sandbox_apply() (see wk_confine.h).  It owns the
 * options' names and their parsing, the uid a session gets, and making
 * the session's working directory its own before the drop.
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wk_confine.h"
#include "wk_log.h"


static int wk_confine_number(const char *name, const char *arg,
    unsigned long long max, unsigned long long *v);
static int wk_confine_flag(const char *name, const char *arg);


#if defined(__SANITIZE_ADDRESS__)
#define WK_CONFINE_ASAN  1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WK_CONFINE_ASAN  1
#endif
#endif

#ifdef WK_CONFINE_ASAN

static int  wk_confine_confined;

/*
 * LeakSanitizer's check at exit stops the process's threads with ptrace,
 * which the seccomp filter denies: it would fail with a fatal error in
 * every confined process.  It is skipped there (the sanitizer calls this
 * hook); unconfined processes (the supervisor) are still checked.
 */
int __lsan_is_turned_off(void);

int
__lsan_is_turned_off(void)
{
    return wk_confine_confined;
}

#endif


void
wk_confine_init(wk_confine_t *c)
{
    memset(c, 0, sizeof(wk_confine_t));

    wk_sandbox_init(&c->sb);
    c->uid_base = WK_SANDBOX_NO_ID;
    c->uid = WK_SANDBOX_NO_ID;
    c->gid = (gid_t) WK_SANDBOX_NO_ID;
}


int
wk_confine_option(wk_confine_t *c, int opt, const char *arg)
{
    int                 v;
    unsigned long long  n;

    switch (opt) {

    case WK_CONFINE_OPT_UID_BASE:
        /* the base plus any pid (at most 2^22) stays below uid -1 */
        if (wk_confine_number("--uid-base", arg, UINT_MAX - (1U << 22) - 1,
                              &n) != 0)
        {
            return -1;
        }
        c->uid_base = (uid_t) n;
        return 1;

    case WK_CONFINE_OPT_UID:
        if (wk_confine_number("--uid", arg, UINT_MAX - 1, &n) != 0) {
            return -1;
        }
        c->uid = (uid_t) n;
        return 1;

    case WK_CONFINE_OPT_GID:
        if (wk_confine_number("--gid", arg, UINT_MAX - 1, &n) != 0) {
            return -1;
        }
        c->gid = (gid_t) n;
        return 1;

    case WK_CONFINE_OPT_MEMORY:
        if (wk_confine_number("--memory", arg, RLIM_INFINITY - 1, &n) != 0) {
            return -1;
        }
        c->sb.memory = (rlim_t) n;
        return 1;

    case WK_CONFINE_OPT_CPU:
        if (wk_confine_number("--cpu", arg, RLIM_INFINITY - 2, &n) != 0) {
            return -1;
        }
        c->sb.cpu = (rlim_t) n;
        return 1;

    case WK_CONFINE_OPT_NPROC:
        if (wk_confine_number("--nproc", arg, RLIM_INFINITY - 1, &n) != 0) {
            return -1;
        }
        c->sb.nproc = (rlim_t) n;
        return 1;

    case WK_CONFINE_OPT_NOFILE:
        /* the session's own descriptors need a few dozen */
        if (wk_confine_number("--nofile", arg, 1U << 20, &n) != 0) {
            return -1;
        }
        if (n != 0 && n < 32) {
            wk_log("--nofile %llu: 32 at least", n);
            return -1;
        }
        c->sb.nofile = (rlim_t) n;
        return 1;

    case WK_CONFINE_OPT_FSIZE:
        if (wk_confine_number("--fsize", arg, RLIM_INFINITY - 1, &n) != 0) {
            return -1;
        }
        c->sb.fsize = (rlim_t) n;
        return 1;

    case WK_CONFINE_OPT_SECCOMP:
        v = wk_sandbox_mode(arg);
        if (v == -1) {
            wk_log("--seccomp \"%s\": on, off or log", arg);
            return -1;
        }
        c->sb.seccomp = v;
        return 1;

    case WK_CONFINE_OPT_NETWORK:
        v = wk_confine_flag("--network", arg);
        if (v == -1) {
            return -1;
        }
        c->sb.network = (unsigned) v;
        return 1;

    default:
        return 0;
    }
}


int
wk_confine_check(const wk_confine_t *c)
{
    if (c->uid_base != WK_SANDBOX_NO_ID
        && (c->uid != WK_SANDBOX_NO_ID || c->gid != (gid_t) WK_SANDBOX_NO_ID))
    {
        wk_log("--uid-base excludes --uid and --gid");
        return -1;
    }

    if ((c->uid != WK_SANDBOX_NO_ID) != (c->gid != (gid_t) WK_SANDBOX_NO_ID))
    {
        wk_log("--uid and --gid go together");
        return -1;
    }

    if (c->uid == 0 || c->gid == 0 || c->uid_base == 0) {
        wk_log("sessions never run as root (uid or gid 0)");
        return -1;
    }

    return 0;
}


int
wk_confine_argv(wk_confine_t *c, char **argv)
{
    int                 i, k;
    const wk_sandbox_t  *sb;

    static const char  *modes[] = { "off", "on", "log" };

    i = 0;
    k = 0;
    sb = &c->sb;

#define WK_CONFINE_ARG(name, fmt, value)                                     \
    argv[i++] = name;                                                        \
    (void) snprintf(c->args[k], sizeof(c->args[k]), fmt, value);             \
    argv[i++] = c->args[k++]

    if (c->uid_base != WK_SANDBOX_NO_ID) {
        WK_CONFINE_ARG("--uid-base", "%lu", (unsigned long) c->uid_base);
    }

    if (c->uid != WK_SANDBOX_NO_ID) {
        WK_CONFINE_ARG("--uid", "%lu", (unsigned long) c->uid);
    }

    if (c->gid != (gid_t) WK_SANDBOX_NO_ID) {
        WK_CONFINE_ARG("--gid", "%lu", (unsigned long) c->gid);
    }

    WK_CONFINE_ARG("--memory", "%llu", (unsigned long long) sb->memory);
    WK_CONFINE_ARG("--cpu", "%llu", (unsigned long long) sb->cpu);
    WK_CONFINE_ARG("--nproc", "%llu", (unsigned long long) sb->nproc);
    WK_CONFINE_ARG("--nofile", "%llu", (unsigned long long) sb->nofile);
    WK_CONFINE_ARG("--fsize", "%llu", (unsigned long long) sb->fsize);

#undef WK_CONFINE_ARG

    argv[i++] = "--seccomp";
    argv[i++] = (char *) modes[sb->seccomp];
    argv[i++] = "--network";
    argv[i++] = sb->network ? "on" : "off";

    return i;
}


int
wk_confine_prepare(const wk_confine_t *c)
{
    char          err[256];
    wk_sandbox_t  sb;

    sb = c->sb;
    sb.netns = !sb.network && geteuid() == 0;

    if (wk_sandbox_prepare(&sb, err, sizeof(err)) != 0) {
        wk_log("cannot compile the seccomp filter: %s", err);
        return -1;
    }

    return 0;
}


int
wk_confine_session(wk_confine_t *c, const char *id, int dirfd,
    const int *keep_fds, size_t nkeep_fds)
{
    int           fd;
    char          err[256];
    uid_t         uid;
    gid_t         gid;
    wk_sandbox_t  sb;

    sb = c->sb;
    sb.keep_fds = keep_fds;
    sb.nkeep_fds = nkeep_fds;

    uid = WK_SANDBOX_NO_ID;
    gid = (gid_t) WK_SANDBOX_NO_ID;

    if (geteuid() == 0) {
        if (c->uid_base != WK_SANDBOX_NO_ID) {
            uid = c->uid_base + (uid_t) getpid();
            gid = (gid_t) uid;

        } else if (c->uid != WK_SANDBOX_NO_ID) {
            uid = c->uid;
            gid = c->gid;
        }
    }

    fd = (dirfd >= 0) ? dirfd : open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd == -1) {
        wk_log("session %s: open(\".\") failed: %s", id, strerror(errno));
        return -1;
    }

    /*
     * Before the drop, while the supervisor's user owns the directory:
     * afterwards the session could not take it over, and no other
     * session's uid may ever have it.
     */
    if ((uid != WK_SANDBOX_NO_ID && fchown(fd, uid, gid) == -1)
        || fchmod(fd, 0700) == -1)
    {
        wk_log("session %s: making its working directory its own failed: "
               "%s", id, strerror(errno));
        goto failed;
    }

    if (uid != WK_SANDBOX_NO_ID) {
        sb.uid = uid;
        sb.gid = gid;
    }

    sb.workdir = ".";
    sb.workdir_fd = fd;

    (void) umask(077);

#ifdef WK_CONFINE_ASAN
    wk_confine_confined = (sb.seccomp != WK_SANDBOX_SECCOMP_OFF);
#endif

    /* network off: a namespace of its own, where root can make one */
    sb.netns = !sb.network && geteuid() == 0;

    if (wk_sandbox_apply(&sb, err, sizeof(err)) != 0) {
        wk_log("session %s: cannot confine the process: %s", id, err);
        goto failed;
    }

    if (err[0] != '\0') {
        wk_log("session %s: %s", id, err);
    }

    if (dirfd < 0) {
        (void) close(fd);
    }

    return 0;

failed:

    if (dirfd < 0) {
        (void) close(fd);
    }

    return -1;
}


static int
wk_confine_number(const char *name, const char *arg, unsigned long long max,
    unsigned long long *v)
{
    char  *end;

    errno = 0;
    *v = strtoull(arg, &end, 10);

    if (errno != 0 || end == arg || *end != '\0' || arg[0] == '-'
        || *v > max)
    {
        wk_log("%s \"%s\": a number from 0 to %llu expected", name, arg, max);
        return -1;
    }

    return 0;
}


static int
wk_confine_flag(const char *name, const char *arg)
{
    if (strcmp(arg, "on") == 0) {
        return 1;
    }

    if (strcmp(arg, "off") == 0) {
        return 0;
    }

    wk_log("%s \"%s\": on or off", name, arg);

    return -1;
}
