/*
 * sb_confine.c: the confinement policy of session processes, from the
 * command line to sb_sandbox_apply() (see sb_confine.h).  It owns the
 * options' names and their parsing, the uid a session gets, and making
 * the session's working directory its own before the drop.
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sb_confine.h"
#include "wk_log.h"
#include "wk_opt.h"


static int sb_confine_flag(const char *name, const char *arg);


#if defined(__SANITIZE_ADDRESS__)
#define SB_CONFINE_ASAN  1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SB_CONFINE_ASAN  1
#endif
#endif

#ifdef SB_CONFINE_ASAN

static int  sb_confine_confined;

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
    return sb_confine_confined;
}

#endif


void
sb_confine_init(sb_confine_t *c)
{
    memset(c, 0, sizeof(sb_confine_t));

    sb_sandbox_init(&c->sb);
    c->uid_base = SB_SANDBOX_NO_ID;
    c->uid = SB_SANDBOX_NO_ID;
    c->gid = (gid_t) SB_SANDBOX_NO_ID;
}


int
sb_confine_option(sb_confine_t *c, int opt, const char *arg)
{
    int                 v;
    unsigned long long  n;

    switch (opt) {

    case SB_CONFINE_OPT_UID_BASE:
        /* the base plus any pid (at most 2^22) stays below uid -1 */
        if (wk_opt_num("--uid-base", arg, 0, UINT_MAX - (1U << 22) - 1,
                       &n) != 0)
        {
            return -1;
        }
        c->uid_base = (uid_t) n;
        return 1;

    case SB_CONFINE_OPT_UID:
        if (wk_opt_num("--uid", arg, 0, UINT_MAX - 1, &n) != 0) {
            return -1;
        }
        c->uid = (uid_t) n;
        return 1;

    case SB_CONFINE_OPT_GID:
        if (wk_opt_num("--gid", arg, 0, UINT_MAX - 1, &n) != 0) {
            return -1;
        }
        c->gid = (gid_t) n;
        return 1;

    case SB_CONFINE_OPT_MEMORY:
        if (wk_opt_num("--memory", arg, 0, RLIM_INFINITY - 1, &n) != 0) {
            return -1;
        }
        c->sb.memory = (rlim_t) n;
        return 1;

    case SB_CONFINE_OPT_CPU:
        if (wk_opt_num("--cpu", arg, 0, RLIM_INFINITY - 2, &n) != 0) {
            return -1;
        }
        c->sb.cpu = (rlim_t) n;
        return 1;

    case SB_CONFINE_OPT_NPROC:
        if (wk_opt_num("--nproc", arg, 0, RLIM_INFINITY - 1, &n) != 0) {
            return -1;
        }
        c->sb.nproc = (rlim_t) n;
        return 1;

    case SB_CONFINE_OPT_NOFILE:
        /* the session's own descriptors need a few dozen */
        if (wk_opt_num("--nofile", arg, 0, 1U << 20, &n) != 0) {
            return -1;
        }
        if (n != 0 && n < 32) {
            wk_log("--nofile %llu: 32 at least", n);
            return -1;
        }
        c->sb.nofile = (rlim_t) n;
        return 1;

    case SB_CONFINE_OPT_FSIZE:
        if (wk_opt_num("--fsize", arg, 0, RLIM_INFINITY - 1, &n) != 0) {
            return -1;
        }
        c->sb.fsize = (rlim_t) n;
        return 1;

    case SB_CONFINE_OPT_SECCOMP:
        v = sb_sandbox_mode(arg);
        if (v == -1) {
            wk_log("--seccomp \"%s\": on, off or log", arg);
            return -1;
        }
        c->sb.seccomp = v;
        return 1;

    case SB_CONFINE_OPT_NETWORK:
        v = sb_confine_flag("--network", arg);
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
sb_confine_check(const sb_confine_t *c)
{
    if (c->uid_base != SB_SANDBOX_NO_ID
        && (c->uid != SB_SANDBOX_NO_ID || c->gid != (gid_t) SB_SANDBOX_NO_ID))
    {
        wk_log("--uid-base excludes --uid and --gid");
        return -1;
    }

    if ((c->uid != SB_SANDBOX_NO_ID) != (c->gid != (gid_t) SB_SANDBOX_NO_ID))
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
sb_confine_argv(sb_confine_t *c, char **argv)
{
    int                 i, k;
    const sb_sandbox_t  *sb;

    static const char  *modes[] = { "off", "on", "log" };

    i = 0;
    k = 0;
    sb = &c->sb;

#define SB_CONFINE_ARG(name, fmt, value)                                     \
    argv[i++] = name;                                                        \
    (void) snprintf(c->args[k], sizeof(c->args[k]), fmt, value);             \
    argv[i++] = c->args[k++]

    if (c->uid_base != SB_SANDBOX_NO_ID) {
        SB_CONFINE_ARG("--uid-base", "%lu", (unsigned long) c->uid_base);
    }

    if (c->uid != SB_SANDBOX_NO_ID) {
        SB_CONFINE_ARG("--uid", "%lu", (unsigned long) c->uid);
    }

    if (c->gid != (gid_t) SB_SANDBOX_NO_ID) {
        SB_CONFINE_ARG("--gid", "%lu", (unsigned long) c->gid);
    }

    SB_CONFINE_ARG("--memory", "%llu", (unsigned long long) sb->memory);
    SB_CONFINE_ARG("--cpu", "%llu", (unsigned long long) sb->cpu);
    SB_CONFINE_ARG("--nproc", "%llu", (unsigned long long) sb->nproc);
    SB_CONFINE_ARG("--nofile", "%llu", (unsigned long long) sb->nofile);
    SB_CONFINE_ARG("--fsize", "%llu", (unsigned long long) sb->fsize);

#undef SB_CONFINE_ARG

    argv[i++] = "--seccomp";
    argv[i++] = (char *) modes[sb->seccomp];
    argv[i++] = "--network";
    argv[i++] = sb->network ? "on" : "off";

    return i;
}


int
sb_confine_prepare(const sb_confine_t *c)
{
    char          err[256];
    sb_sandbox_t  sb;

    sb = c->sb;
    sb.netns = !sb.network && geteuid() == 0;

    if (sb_sandbox_prepare(&sb, err, sizeof(err)) != 0) {
        wk_log("cannot compile the seccomp filter: %s", err);
        return -1;
    }

    return 0;
}


int
sb_confine_session(sb_confine_t *c, const char *id, int dirfd,
    const int *keep_fds, size_t nkeep_fds)
{
    int           fd;
    char          err[256];
    uid_t         uid;
    gid_t         gid;
    sb_sandbox_t  sb;

    sb = c->sb;
    sb.keep_fds = keep_fds;
    sb.nkeep_fds = nkeep_fds;

    uid = SB_SANDBOX_NO_ID;
    gid = (gid_t) SB_SANDBOX_NO_ID;

    if (geteuid() == 0) {
        if (c->uid_base != SB_SANDBOX_NO_ID) {
            uid = c->uid_base + (uid_t) getpid();
            gid = (gid_t) uid;

        } else if (c->uid != SB_SANDBOX_NO_ID) {
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
    if ((uid != SB_SANDBOX_NO_ID && fchown(fd, uid, gid) == -1)
        || fchmod(fd, 0700) == -1)
    {
        wk_log("session %s: making its working directory its own failed: "
               "%s", id, strerror(errno));
        goto failed;
    }

    if (uid != SB_SANDBOX_NO_ID) {
        sb.uid = uid;
        sb.gid = gid;
    }

    sb.workdir = ".";
    sb.workdir_fd = fd;

    (void) umask(077);

#ifdef SB_CONFINE_ASAN
    sb_confine_confined = (sb.seccomp != SB_SANDBOX_SECCOMP_OFF);
#endif

    /* network off: a namespace of its own, where root can make one */
    sb.netns = !sb.network && geteuid() == 0;

    if (sb_sandbox_apply(&sb, err, sizeof(err)) != 0) {
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
sb_confine_flag(const char *name, const char *arg)
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
