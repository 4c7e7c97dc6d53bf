/*
 * bs_session.c: main() of pyrepl-bash, one session process = one
 * long-lived bash.  The supervisor execs it as
 *
 *     pyrepl-bash --listen-fd 3 [--max-frame BYTES]
 *         [confinement options, sb_confine.h]
 *
 * with fd 3 an already-listening Unix stream socket, the session's working
 * directory as cwd (its name, the session id, names the session in log
 * lines), stdin on /dev/null and stderr on the keeper's log relay.
 * It speaks the frame protocol of pyrepl_proto.h on that socket, like
 * pyrepl-python: "run" (code, timeout_ms, and for bash cwd, env, stdin),
 * "interrupt", and answers stdout/stderr, error and complete (with the
 * command's exit_code).
 *
 * Order:
 *   1. signal dispositions and mask back to defaults (what the spawner
 *      ignored or blocked would survive exec, and the shell must start
 *      with SIGINT at its default or it could never trap it), then
 *      SIGPIPE ignored here (the command pipe) and SIGCHLD blocked and
 *      read from a signalfd;
 *   2. fds 0-2 open, the listening socket checked, then the confinement
 *      (sb_confine.h: uid, rlimits, working directory, seccomp), which
 *      the shell and everything it runs inherit;
 *   3. this process becomes a child subreaper, so that whatever the shell
 *      starts stays in its tree when orphaned (to be found and stopped);
 *   4. the shell (bs_shell.c), then the sentinel (bs_proc.c);
 *   5. the poll loop (bs_io.c) serves until the shell exits.
 *
 * Exit status: 0 when the shell ended during a run (exit, or an error
 * that ends a non-interactive shell: the session has ended cleanly), 1
 * when it died between runs, had to be killed, or this process failed.
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "bs_session.h"
#include "sb_confine.h"
#include "wk_log.h"
#include "wk_opt.h"
#include "wk_proc.h"


static int bs_session_args(int argc, char **argv, wk_opt_session_t *so);
static void bs_session_usage(void);
static int bs_session_signals(bs_session_t *s);


static bs_session_t  bs_session;
static sb_confine_t  bs_confine;


int
main(int argc, char **argv)
{
    bs_session_t      *s;
    wk_opt_session_t   so;

    s = &bs_session;

    s->sig_fd = -1;
    s->cmd_fd = -1;
    s->status_fd = -1;
    s->code_fd = -1;
    s->stdin_fd = -1;
    s->sentinel_fd = -1;

    wk_log_init("bash", 0);

    if (bs_session_args(argc, argv, &so) != 0) {
        bs_session_usage();
        return 2;
    }

    s->pid = getpid();
    s->id = wk_log_cwd_name();

    if (bs_session_signals(s) != 0
        || wk_proc_std_fds() != 0
        || wk_proc_listen_fd(so.listen_fd) != 0
        || bs_io_init(s, so.listen_fd, so.alive_fd, so.max_frame) != 0
        || sb_confine_session(&bs_confine, s->id, -1, &s->io.listen_fd, 1)
           != 0)
    {
        return EXIT_FAILURE;
    }

    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == -1) {
        wk_log("session %s: prctl(PR_SET_CHILD_SUBREAPER) failed: %s",
               s->id, strerror(errno));
        return EXIT_FAILURE;
    }

    if (bs_shell_start(s) != 0) {
        wk_log("session %s: cannot start the shell", s->id);
        return EXIT_FAILURE;
    }

    if (bs_proc_sentinel(s) != 0) {
        bs_proc_kill_all(s);
        return EXIT_FAILURE;
    }

    return bs_io_loop(s);
}


/* The command line into so and bs_confine; 0, or -1 (logged). */
static int
bs_session_args(int argc, char **argv, wk_opt_session_t *so)
{
    static const struct option  options[] = {
        WK_OPT_SESSION_OPTIONS,
        SB_CONFINE_OPTIONS,
        { NULL, 0, NULL, 0 }
    };

    if (wk_opt_parse(argc, argv, options, &bs_confine, so, NULL, NULL) != 0) {
        return -1;
    }

    if (so->listen_fd == -1) {
        wk_log("--listen-fd is required");
        return -1;
    }

    return 0;
}


static void
bs_session_usage(void)
{
    wk_log("usage: pyrepl-bash --listen-fd FD [--max-frame BYTES] "
           "[--alive-fd FD]");
    wk_log("    " SB_CONFINE_USAGE);
}


/*
 * Every signal back to SIG_DFL and nothing blocked (wk_proc_signals),
 * then SIGPIPE ignored and SIGCHLD blocked and delivered to a signalfd.
 * The shell's child undoes the last two before exec.
 */
static int
bs_session_signals(bs_session_t *s)
{
    sigset_t          set;
    struct sigaction  sa;

    if (wk_proc_signals() != 0) {
        return -1;
    }

    memset(&sa, 0, sizeof(struct sigaction));
    sa.sa_handler = SIG_IGN;

    if (sigemptyset(&sa.sa_mask) == -1 || sigemptyset(&set) == -1) {
        wk_log("sigemptyset() failed: %s", strerror(errno));
        return -1;
    }

    if (sigaction(SIGPIPE, &sa, NULL) == -1) {
        wk_log("sigaction(SIGPIPE) failed: %s", strerror(errno));
        return -1;
    }

    if (sigaddset(&set, SIGCHLD) == -1
        || sigprocmask(SIG_SETMASK, &set, NULL) == -1)
    {
        wk_log("sigprocmask() failed: %s", strerror(errno));
        return -1;
    }

    s->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (s->sig_fd == -1) {
        wk_log("signalfd() failed: %s", strerror(errno));
        return -1;
    }

    return 0;
}
