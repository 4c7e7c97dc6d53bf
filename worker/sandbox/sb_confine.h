/*
 * sb_confine.h: the confinement policy of session processes as the
 * supervisor hands it down, and its application in a session process.
 *
 * nginx starts the supervisor with the policy as command-line options
 * (the pyrepl_* directives); the supervisor passes the same options on to
 * the zygote and to every session binary it execs; those parse them with
 * sb_confine_option() and call sb_confine_session() in each new session
 * process, which applies sb_sandbox.h's confinement with the identity
 * this policy gives the process:
 *
 *   --uid-base B    (the default when nginx runs as root) the session
 *                   runs as uid and gid B + its pid: one identity per live
 *                   session, so sessions cannot signal each other, enter
 *                   each other's directories or use up each other's
 *                   process limit;
 *   --uid U --gid G every session runs as U:G (pyrepl_session_uids off);
 *   neither         no identity change (nginx does not run as root).
 *
 * and the limits --memory, --cpu, --nproc, --nofile, --fsize (0: keep the
 * inherited one), --seccomp on|off|log, --network on|off.
 *
 * The jail (sb_jail.h): --jail on|off, --tmp-size BYTES, --cpu-weight N,
 * --bind ro|rw:SRC:DST (repeated), --cgroup DIR (repeated: the instance
 * directories the supervisor made), and --jail-pid P for a session binary
 * exec'd in a jail (its init's pid, which names its uid).  In a jail the
 * memory limit is also the control group's, for the session as a whole.
 */

#ifndef SB_CONFINE_H
#define SB_CONFINE_H

#include <getopt.h>
#include <sys/types.h>

#include "sb_jail.h"
#include "sb_sandbox.h"


/*
 * With --uid-base B, sessions are B + their first pid (2 or more: pid 1
 * never starts a session); B + 0 and B + 1 are no session's, kept for
 * the machinery that must be out of every session's reach: jails' inits,
 * and the supervisor's child that kills a deleted session's uid.
 */
#define SB_CONFINE_UID_INIT      0
#define SB_CONFINE_UID_KILLER    1

/* getopt_long() values of the options, above any single character */
#define SB_CONFINE_OPT_UID_BASE  0x4c00
#define SB_CONFINE_OPT_UID       0x4c01
#define SB_CONFINE_OPT_GID       0x4c02
#define SB_CONFINE_OPT_MEMORY    0x4c03
#define SB_CONFINE_OPT_CPU       0x4c04
#define SB_CONFINE_OPT_NPROC     0x4c05
#define SB_CONFINE_OPT_NOFILE    0x4c06
#define SB_CONFINE_OPT_FSIZE     0x4c07
#define SB_CONFINE_OPT_SECCOMP   0x4c08
#define SB_CONFINE_OPT_NETWORK   0x4c09
#define SB_CONFINE_OPT_JAIL      0x4c0a
#define SB_CONFINE_OPT_TMP_SIZE  0x4c0b
#define SB_CONFINE_OPT_WEIGHT    0x4c0c
#define SB_CONFINE_OPT_BIND      0x4c0d
#define SB_CONFINE_OPT_CGROUP    0x4c0e
#define SB_CONFINE_OPT_JAIL_PID  0x4c0f

/* the entries of a struct option array, for each binary's own table */
#define SB_CONFINE_OPTIONS                                                   \
    { "uid-base", required_argument, NULL, SB_CONFINE_OPT_UID_BASE },       \
    { "uid",      required_argument, NULL, SB_CONFINE_OPT_UID },            \
    { "gid",      required_argument, NULL, SB_CONFINE_OPT_GID },            \
    { "memory",   required_argument, NULL, SB_CONFINE_OPT_MEMORY },         \
    { "cpu",      required_argument, NULL, SB_CONFINE_OPT_CPU },            \
    { "nproc",    required_argument, NULL, SB_CONFINE_OPT_NPROC },          \
    { "nofile",   required_argument, NULL, SB_CONFINE_OPT_NOFILE },         \
    { "fsize",    required_argument, NULL, SB_CONFINE_OPT_FSIZE },          \
    { "seccomp",  required_argument, NULL, SB_CONFINE_OPT_SECCOMP },        \
    { "network",  required_argument, NULL, SB_CONFINE_OPT_NETWORK },       \
    { "jail",     required_argument, NULL, SB_CONFINE_OPT_JAIL },          \
    { "tmp-size", required_argument, NULL, SB_CONFINE_OPT_TMP_SIZE },      \
    { "cpu-weight", required_argument, NULL, SB_CONFINE_OPT_WEIGHT },      \
    { "bind",     required_argument, NULL, SB_CONFINE_OPT_BIND },          \
    { "cgroup",   required_argument, NULL, SB_CONFINE_OPT_CGROUP },        \
    { "jail-pid", required_argument, NULL, SB_CONFINE_OPT_JAIL_PID }

#define SB_CONFINE_USAGE                                                     \
    "[--uid-base N | --uid N] [--gid N] [--memory BYTES] [--cpu SECONDS]\n" \
    "    [--nproc N] [--nofile N] [--fsize BYTES] [--seccomp on|off|log]\n"  \
    "    [--network on|off] [--jail on|off] [--tmp-size BYTES]\n"           \
    "    [--cpu-weight N] [--bind ro|rw:SRC:DST]... [--cgroup DIR]..."

/* at most this many argv entries come out of sb_confine_argv() */
#define SB_CONFINE_MAX_ARGS  (32 + 2 * (SB_JAIL_MAX_BINDS + SB_CGROUP_DIRS))


typedef struct {
    sb_sandbox_t  sb;          /* limits, seccomp, network */
    sb_jail_t     jail;        /* jail.on: sessions are jailed */
    uid_t         uid_base;    /* SB_SANDBOX_NO_ID: none */
    uid_t         uid;         /* SB_SANDBOX_NO_ID: none; */
    gid_t         gid;         /* both set, or neither */
    pid_t         jail_pid;    /* in a jailed session: its init's pid */
    char         *title;       /* the process's command-line area, which */
    size_t        title_len;   /* a jail's init clears (wk_proc.h) */
    char         *binds[SB_JAIL_MAX_BINDS];   /* the --bind values */
    char          args[16][24];               /* sb_confine_argv */
} sb_confine_t;


/* sb_sandbox_init()'s defaults, no identity change. */
void sb_confine_init(sb_confine_t *c);

/*
 * Take one option getopt_long() returned.  Returns 1 if it was one of
 * SB_CONFINE_OPTIONS and its value is valid, -1 if it was one with a bad
 * value (logged), 0 if it is not one of them.
 */
int sb_confine_option(sb_confine_t *c, int opt, const char *arg);

/*
 * After the last option: --uid-base excludes --uid and --gid, which go
 * together; the jail's limits follow from the others.  Returns 0, or -1
 * (logged).
 */
int sb_confine_check(sb_confine_t *c);

/*
 * The options again, to pass on to a child's command line: stored from
 * argv[0] on (c->args holds the numbers); returns how many entries.
 */
int sb_confine_argv(sb_confine_t *c, char **argv);

/*
 * Compile the seccomp filter once, in a process that forks sessions (the
 * zygote).  Returns 0, or -1 (logged).
 */
int sb_confine_prepare(const sb_confine_t *c);

/*
 * The uid and gid of a session whose first process (in a jail: its init)
 * is pid, as the policy says; SB_SANDBOX_NO_ID for no change.
 */
void sb_confine_identity(const sb_confine_t *c, pid_t pid, uid_t *uid,
    gid_t *gid);

/*
 * In the child of sb_jail_clone(&c->jail) (root): build the jail around
 * session id (its working directory is workdir_fd) and fork the session
 * process, in which it returns 0 with c->jail_pid set; the jail's init
 * never returns.  -1 (logged) if the jail could not be built: the caller
 * exits.
 */
int sb_confine_jail(sb_confine_t *c, const char *id, int workdir_fd);

/*
 * Confine the calling process, a new session process still running as
 * the supervisor's user: its uid (from the base and its pid, or its
 * jail's init's), the working directory dirfd (or the current one when
 * dirfd is -1) made its own with mode 0700, umask 077, then
 * sb_sandbox_apply() with keep_fds (in a jail: in SB_JAIL_HOME, the same
 * directory).  Single-threaded callers only.  Returns 0, or -1 (logged,
 * and the process is half-confined: the caller exits).
 */
int sb_confine_session(sb_confine_t *c, const char *id, int dirfd,
    const int *keep_fds, size_t nkeep_fds);

#endif /* SB_CONFINE_H */
