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
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sb_confine.h"
#include "wk_log.h"
#include "wk_opt.h"


static void sb_confine_network(const sb_confine_t *c, sb_sandbox_t *sb);
static int sb_confine_bind(sb_confine_t *c, const char *arg);
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
    sb_jail_init(&c->jail);
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

    case SB_CONFINE_OPT_JAIL:
        v = sb_confine_flag("--jail", arg);
        if (v == -1) {
            return -1;
        }
        c->jail.on = (unsigned) v;
        return 1;

    case SB_CONFINE_OPT_TMP_SIZE:
        if (wk_opt_num("--tmp-size", arg, 1U << 20, 1ULL << 44, &n) != 0) {
            return -1;
        }
        c->jail.tmp_size = n;
        return 1;

    case SB_CONFINE_OPT_WEIGHT:
        if (wk_opt_num("--cpu-weight", arg, 1, 10000, &n) != 0) {
            return -1;
        }
        c->jail.limits.weight = (unsigned) n;
        return 1;

    case SB_CONFINE_OPT_BIND:
        return sb_confine_bind(c, arg);

    case SB_CONFINE_OPT_CGROUP:
        if (sb_cgroup_add_dir(&c->jail.cgroup, arg) != 0) {
            wk_log("--cgroup \"%s\": not a control group directory of the "
                   "same version as the others (at most %d)", arg,
                   SB_CGROUP_DIRS);
            return -1;
        }
        return 1;

    case SB_CONFINE_OPT_JAIL_PID:
        if (wk_opt_num("--jail-pid", arg, 1, INT_MAX, &n) != 0) {
            return -1;
        }
        c->jail_pid = (pid_t) n;
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
sb_confine_check(sb_confine_t *c)
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

    /*
     * The jail's part of the limits: network off is a network namespace
     * of its own; the group holds all of the session's memory (each
     * process still has RLIMIT_DATA, so that one that grows past it gets
     * ENOMEM, MemoryError in Python, rather than the session's end), and
     * its tasks, one more for its init.
     */
    c->jail.netns = !c->sb.network;
    c->jail.limits.memory = (uint64_t) c->sb.memory;
    c->jail.limits.pids = (c->sb.nproc != 0) ? (uint64_t) c->sb.nproc + 1 : 0;

    return 0;
}


int
sb_confine_argv(sb_confine_t *c, char **argv)
{
    int                 i, k;
    unsigned            j;
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

    argv[i++] = "--seccomp";
    argv[i++] = (char *) modes[sb->seccomp];
    argv[i++] = "--network";
    argv[i++] = sb->network ? "on" : "off";

    if (c->jail.on) {
        argv[i++] = "--jail";
        argv[i++] = "on";

        SB_CONFINE_ARG("--tmp-size", "%llu",
                       (unsigned long long) c->jail.tmp_size);
        SB_CONFINE_ARG("--cpu-weight", "%u", c->jail.limits.weight);

        for (j = 0; j < c->jail.nbinds; j++) {
            argv[i++] = "--bind";
            argv[i++] = c->binds[j];
        }

        /* a jailed session's groups are its init's business */
        for (j = 0; c->jail_pid == 0 && j < c->jail.cgroup.ndirs; j++) {
            argv[i++] = "--cgroup";
            argv[i++] = c->jail.cgroup.dir[j];
        }

        if (c->jail_pid != 0) {
            SB_CONFINE_ARG("--jail-pid", "%ld", (long) c->jail_pid);
        }
    }

#undef SB_CONFINE_ARG

    return i;
}


int
sb_confine_prepare(const sb_confine_t *c)
{
    char          err[256];
    sb_sandbox_t  sb;

    sb = c->sb;
    sb_confine_network(c, &sb);

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

    sb_confine_identity(c, c->jail_pid ? c->jail_pid : getpid(), &uid,
                        &gid);

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

    if (c->jail_pid != 0) {
        /* the same directory, as the jail shows it; never the host's */
        sb.workdir = SB_JAIL_HOME;
        sb.workdir_fd = -1;

    } else {
        sb.workdir = ".";
        sb.workdir_fd = fd;
    }

    (void) umask(077);

#ifdef SB_CONFINE_ASAN
    sb_confine_confined = (sb.seccomp != SB_SANDBOX_SECCOMP_OFF);
#endif

    sb_confine_network(c, &sb);

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


void
sb_confine_identity(const sb_confine_t *c, pid_t pid, uid_t *uid,
    gid_t *gid)
{
    *uid = SB_SANDBOX_NO_ID;
    *gid = (gid_t) SB_SANDBOX_NO_ID;

    if (geteuid() != 0) {
        return;
    }

    if (c->uid_base != SB_SANDBOX_NO_ID) {
        *uid = c->uid_base + (uid_t) pid;
        *gid = (gid_t) *uid;

    } else if (c->uid != SB_SANDBOX_NO_ID) {
        *uid = c->uid;
        *gid = c->gid;
    }
}


int
sb_confine_jail(sb_confine_t *c, const char *id, int workdir_fd)
{
    char          err[256];
    const char   *user;
    sb_jail_id_t  ji;

    ji.pid = sb_jail_host_pid();

    if (ji.pid == 0) {
        wk_log("session %s: cannot tell its pid as the host sees it", id);
        return -1;
    }

    sb_confine_identity(c, ji.pid, &ji.uid, &ji.gid);

    if (ji.uid == SB_SANDBOX_NO_ID) {
        wk_log("session %s: a jail needs root and an identity to drop to",
               id);
        return -1;
    }

    /* the init's: no session's (SB_CONFINE_UID_INIT), or the one all
     * share */
    ji.init_uid = (c->uid_base != SB_SANDBOX_NO_ID)
                  ? c->uid_base + SB_CONFINE_UID_INIT : ji.uid;
    ji.init_gid = (gid_t) ji.init_uid;

    if (c->uid_base == SB_SANDBOX_NO_ID) {
        ji.init_gid = ji.gid;
    }

    user = getenv("USER");
    ji.user = (user != NULL && user[0] != '\0' && strchr(user, ':') == NULL
               && strchr(user, '\n') == NULL) ? user : "pyrepl";

    ji.title = c->title;
    ji.title_len = c->title_len;

    if (sb_jail_enter(&c->jail, &ji, workdir_fd, err, sizeof(err)) != 0) {
        wk_log("session %s: cannot build its jail: %s", id, err);
        return -1;
    }

    c->jail_pid = ji.pid;

    return 0;
}


/*
 * The network a session process's filter allows: in a jail, or in a
 * network namespace of its own (network off, as root), AF_INET and
 * AF_INET6 are as safe as loopback; a jail made that namespace already.
 */
static void
sb_confine_network(const sb_confine_t *c, sb_sandbox_t *sb)
{
    if (c->jail.on) {
        sb->netns = 0;
        sb->network = 1;
        return;
    }

    sb->netns = !sb->network && geteuid() == 0;
}


/* --bind ro|rw:SRC:DST, DST absolute */
static int
sb_confine_bind(sb_confine_t *c, const char *arg)
{
    char            *copy, *src, *dst;
    sb_jail_bind_t  *b;

    if (c->jail.nbinds == SB_JAIL_MAX_BINDS) {
        wk_log("--bind \"%s\": at most %d", arg, SB_JAIL_MAX_BINDS);
        return -1;
    }

    copy = strdup(arg);
    if (copy == NULL) {
        wk_log("--bind: out of memory");
        return -1;
    }

    src = strchr(copy, ':');
    dst = src ? strchr(src + 1, ':') : NULL;

    if (dst == NULL || src[1] != '/' || dst[1] != '/' || dst[2] == '\0'
        || (strncmp(copy, "ro:", 3) != 0 && strncmp(copy, "rw:", 3) != 0))
    {
        wk_log("--bind \"%s\": ro|rw:/SRC:/DST expected", arg);
        free(copy);
        return -1;
    }

    c->binds[c->jail.nbinds] = strdup(arg);
    if (c->binds[c->jail.nbinds] == NULL) {
        wk_log("--bind: out of memory");
        free(copy);
        return -1;
    }

    *src++ = '\0';
    *dst++ = '\0';

    b = &c->jail.binds[c->jail.nbinds++];
    b->src = src;
    b->dst = dst;
    b->rw = (copy[1] == 'w');

    return 1;
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
