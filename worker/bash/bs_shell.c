/*
 * bs_shell.c: the shell of a bash session and how one run is framed.
 *
 * The shell is "bash --norc --noprofile /dev/fd/60": non-interactive,
 * reading its script from a pipe this process writes (the command pipe),
 * in a session and process group of its own, with fd 0 on /dev/null, fds 1
 * and 2 on the output pipes and fds 61-63 as in bs_session.h.  It is
 * never sent user code as script text: the code goes to a memfd and the
 * shell sources it ("\builtin . /dev/fd/62"), so no quoting or unfinished
 * construct in it can reach the commands around it, aliases defined on
 * one line apply to the next, and "return" ends the run early.  A
 * bootstrap script first sets job control on (set -m), alias expansion,
 * the SIGINT trap below and three helper functions.
 *
 * One run is two lines on the command pipe:
 *
 *   L1  \builtin set -m; __pyrepl_run=1 __pyrepl_rc=;
 *       \builtin trap -- '<trap>' INT;
 *       [__pyrepl_pre CWD K V ... &&] \builtin . /dev/fd/62 <STDIN
 *       61>&- 63<&-;
 *       { __pyrepl_off $?; } 2>/dev/null
 *   L2  { __pyrepl_s=$? __pyrepl_x=$-; \builtin set +x; } 2>/dev/null;
 *       [__pyrepl_post;] \builtin printf '%s %d %s\n' NONCE
 *       "${__pyrepl_rc:-$__pyrepl_s}" "$__pyrepl_x" >&61
 *
 * __pyrepl_off clears the flag below and keeps the code's status in
 * __pyrepl_rc; L2 takes $? instead when L1 was abandoned.  Every wrapper
 * command succeeds, so a user's set -e never ends the shell over them.
 *
 * Completion is never read from the output: L2 writes "NONCE STATUS
 * FLAGS" to the status pipe (fd 61), a pipe of its own, with a random
 * nonce per run, so output without a newline, binary output, or a command
 * that prints (or writes to fd 61) anything at all cannot end or fake a
 * run.  When the line arrives, everything the run's foreground commands
 * wrote is already in the output pipes, and bs_io.c reads them until
 * they are empty.
 *
 * Stopping a run (interrupt, timeout, closed connection) relies on how a
 * non-interactive bash with job control handles a foreground job killed
 * by SIGINT: it acts as if it had received SIGINT itself and, SIGINT being
 * trapped, abandons the whole top-level command it was executing (loops,
 * functions, sourced files and all) and reads the next one.  So bs_io.c
 * sends SIGINT to the run's processes, and to the shell, whose trap
 *
 *   { [[ -n ${__pyrepl_run-} ]] && { __pyrepl_run=;
 *     \builtin trap -- "" INT; \builtin set -m;
 *     ( \builtin trap - INT; \builtin kill -INT $BASHPID;
 *       \builtin exit 0 ); }; } 2>/dev/null
 *
 * starts such a job when the shell itself is busy (a builtin-only loop).
 * L1 is abandoned and L2, the next top-level command, reports status 130.
 * The trap acts only while __pyrepl_run is set: from L1's start to the
 * end of the code, and once per run (it clears the flag), so a SIGINT that
 * comes late, or twice, can never abandon L2 or the next run's L1, and
 * bs_io.c may repeat it freely.  Once it acts, the shell ignores SIGINT
 * until the next L1 sets the trap again: bash forgets the interrupt of a
 * job killed by SIGINT whenever it runs a pending INT trap (trap.c,
 * run_pending_traps: "interrupts don't stack"), so a SIGINT caught while
 * the trap's own job ends would run the trap again, which does nothing,
 * and L1 would go on.  The "exit 0" after the kill is needed:
 * as the subshell's last command the kill alone does not end it by the
 * signal.  The pre/post functions apply a run's cwd and env in the main
 * shell and restore the previous directory and variables in L2, after an
 * abandoned L1 too.  set -x is switched off for the wrapper's commands and
 * switched back on in the first line of the code (the status line carries
 * $-), so that a user's xtrace shows only the user's commands.
 *
 * Known limits: the INT trap is the session's (L1 sets it again): a run
 * that removes it and is then interrupted ends the shell, one that
 * ignores or replaces it may not stop (bs_io.c then kills the shell
 * after BS_STOP_GIVEUP_MS).  Being non-interactive, the shell exits where
 * bash scripts exit: "exit", set -e, set -u, ${x:?}.  set -v echoes the
 * wrapper lines.  While the code runs, fds 61 and 63 are closed (bash
 * keeps close-on-exec copies to put back), so the commands it starts see
 * fds 0-2 and 62, its own code, and nothing of this process's.
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <unistd.h>

#include "bs_session.h"
#include "wk_log.h"
#include "wk_proc.h"


#define BS_SHELL_BASH   "/bin/bash"

#define BS_SHELL_TRAP                                                        \
    "{ [[ -n ${__pyrepl_run-} ]] && { __pyrepl_run=; "                       \
    "\\builtin trap -- \"\" INT; \\builtin set -m; "                        \
    "( \\builtin trap - INT; \\builtin kill -INT $BASHPID; "                 \
    "\\builtin exit 0 ); }; } 2>/dev/null"

#define BS_SHELL_XTRACE  "\\builtin set -x; "


/*
 * The bootstrap, read by the shell before the first run.  fd 60 is closed
 * (bash reads its script from its own copy, fd 255).  It is followed by
 * "BOOTNONCE ready" to the status pipe: until that line arrives the INT
 * trap may not be set, and a SIGINT would end the shell, so a stop does
 * not signal the shell before (bs_io.c).
 */
static const char  bs_shell_bootstrap[] =
    "exec 60<&-\n"
    "\\builtin set -m\n"
    "\\builtin shopt -s expand_aliases\n"
    "\\builtin trap -- '" BS_SHELL_TRAP "' INT\n"
    "__pyrepl_envs=() __pyrepl_cwd= __pyrepl_rc=\n"
    "__pyrepl_off() { __pyrepl_run= __pyrepl_rc=$1; }\n"
    "__pyrepl_pre() {\n"
    "    __pyrepl_envs=() __pyrepl_cwd=\n"
    "    if [[ -n $1 ]]; then\n"
    "        __pyrepl_cwd=${PWD-} __pyrepl_oldpwd=${OLDPWD-}\n"
    "        CDPATH= \\builtin cd -- \"$1\" || return\n"
    "    fi\n"
    "    \\builtin shift\n"
    "    while (( $# >= 2 )); do\n"
    "        if [[ -v $1 ]]; then\n"
    "            __pyrepl_e=(\"$1\" 1 \"${!1}\" \"${!1@a}\")\n"
    "        else\n"
    "            __pyrepl_e=(\"$1\" 0 \"\" \"\")\n"
    "        fi\n"
    "        \\builtin export -- \"$1=$2\" || return\n"
    "        __pyrepl_envs+=(\"${__pyrepl_e[@]}\")\n"
    "        \\builtin shift 2\n"
    "    done\n"
    "}\n"
    "__pyrepl_post() {\n"
    "    \\builtin set -- \"${__pyrepl_envs[@]}\"\n"
    "    while (( $# >= 4 )); do\n"
    "        if [[ $2 == 1 ]]; then\n"
    "            \\builtin printf -v \"$1\" %s \"$3\" || :\n"
    "            [[ $4 == *x* ]] || \\builtin export -n -- \"$1\" || :\n"
    "        else\n"
    "            \\builtin unset -v -- \"$1\" || :\n"
    "        fi\n"
    "        \\builtin shift 4\n"
    "    done\n"
    "    if [[ -n $__pyrepl_cwd ]]; then\n"
    "        CDPATH= \\builtin cd -- \"$__pyrepl_cwd\" || :\n"
    "        if [[ -n $__pyrepl_oldpwd ]]; then\n"
    "            OLDPWD=$__pyrepl_oldpwd\n"
    "        else\n"
    "            \\builtin unset -v OLDPWD\n"
    "        fi\n"
    "    fi\n"
    "    __pyrepl_envs=() __pyrepl_cwd=\n"
    "}\n";


/* Variables the shell would act on at start-up; not passed to it. */
static const char  *bs_shell_env_drop[] = {
    "BASH_ENV=", "ENV=", "SHELLOPTS=", "BASHOPTS=", NULL
};


static char **bs_shell_env(void);
static void bs_shell_child(pid_t parent, const int *from, char **envp)
    __attribute__((noreturn));
static int bs_shell_nonblock(int fd);
static int bs_shell_queue(bs_session_t *s, const char *p, size_t n);
static int bs_shell_quote(bs_session_t *s, const char *p, size_t n);
static int bs_shell_fill(int fd, const char *prefix, size_t plen,
    const char *p, size_t n);
static int bs_shell_nonce(bs_session_t *s);
static int bs_shell_boot_line(bs_session_t *s, const char *p, size_t n);
static void bs_shell_append(bs_session_t *s, const char *p, size_t n);
static int bs_shell_line(bs_session_t *s, const char *p, size_t n,
    int *rc);


int
bs_shell_start(bs_session_t *s)
{
    int     script[2], status[2], out[2], err[2], from[7];
    int     nul, code, in, i;
    pid_t   pid;
    char  **envp;

    script[0] = script[1] = status[0] = status[1] = -1;
    out[0] = out[1] = err[0] = err[1] = -1;
    nul = code = in = -1;
    envp = NULL;

    if (pipe2(script, O_CLOEXEC) == -1 || pipe2(status, O_CLOEXEC) == -1
        || pipe2(out, O_CLOEXEC) == -1 || pipe2(err, O_CLOEXEC) == -1)
    {
        wk_log("session %s: pipe2() failed: %s", s->id, strerror(errno));
        goto fail;
    }

    if (bs_shell_nonblock(script[1]) != 0
        || bs_shell_nonblock(status[0]) != 0
        || bs_shell_nonblock(out[0]) != 0
        || bs_shell_nonblock(err[0]) != 0)
    {
        wk_log("session %s: fcntl(O_NONBLOCK) failed: %s", s->id,
               strerror(errno));
        goto fail;
    }

    code = memfd_create("pyrepl-code", MFD_CLOEXEC);
    in = memfd_create("pyrepl-stdin", MFD_CLOEXEC);

    if (code == -1 || in == -1) {
        wk_log("session %s: memfd_create() failed: %s", s->id,
               strerror(errno));
        goto fail;
    }

    nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (nul == -1) {
        wk_log("session %s: open(\"/dev/null\") failed: %s", s->id,
               strerror(errno));
        goto fail;
    }

    envp = bs_shell_env();
    if (envp == NULL) {
        wk_log("session %s: cannot copy the environment", s->id);
        goto fail;
    }

    /* in the order of the shell's fds 0, 1, 2, 60, 61, 62, 63 */
    from[0] = nul;
    from[1] = out[1];
    from[2] = err[1];
    from[3] = script[0];
    from[4] = status[1];
    from[5] = code;
    from[6] = in;

    pid = fork();

    if (pid == -1) {
        wk_log("session %s: fork() failed: %s", s->id, strerror(errno));
        goto fail;
    }

    if (pid == 0) {
        bs_shell_child(s->pid, from, envp);
    }

    free(envp);
    envp = NULL;

    s->shell_pid = pid;
    s->cmd_fd = script[1];
    s->status_fd = status[0];
    s->code_fd = code;
    s->stdin_fd = in;
    s->io.pipes[0].fd = out[0];
    s->io.pipes[1].fd = err[0];

    if (close(script[0]) == -1 || close(status[1]) == -1
        || close(out[1]) == -1 || close(err[1]) == -1 || close(nul) == -1)
    {
        wk_log("session %s: close() failed: %s", s->id, strerror(errno));
        return -1;
    }

    /* the bootstrap, then "BOOTNONCE ready" on the status pipe once done */
    if (bs_shell_nonce(s) != 0) {
        return -1;
    }

    memcpy(s->boot_nonce, s->nonce, sizeof(s->boot_nonce));

    if (bs_shell_queue(s, bs_shell_bootstrap,
                       sizeof(bs_shell_bootstrap) - 1) != 0
        || bs_shell_queue(s, "\\builtin printf '%s ready\\n' ",
                          sizeof("\\builtin printf '%s ready\\n' ") - 1)
           != 0
        || bs_shell_queue(s, s->boot_nonce, BS_NONCE_LEN) != 0
        || bs_shell_queue(s, " >&61\n", sizeof(" >&61\n") - 1) != 0)
    {
        return -1;
    }

    return bs_shell_flush(s);

fail:

    free(envp);

    for (i = 0; i < 2; i++) {
        if (script[i] != -1) {
            (void) close(script[i]);
        }
        if (status[i] != -1) {
            (void) close(status[i]);
        }
        if (out[i] != -1) {
            (void) close(out[i]);
        }
        if (err[i] != -1) {
            (void) close(err[i]);
        }
    }

    if (nul != -1) {
        (void) close(nul);
    }

    if (code != -1) {
        (void) close(code);
    }

    if (in != -1) {
        (void) close(in);
    }

    return -1;
}


/*
 * The shell's environment: this process's (the sessions' own, as nginx
 * made it) without bs_shell_env_drop, and HOME, the working directory,
 * unless the operator's pyrepl_env set one.  NULL when out of memory.
 */
static char **
bs_shell_env(void)
{
    size_t        n, i, k;
    char        **envp;
    static char   home[sizeof("HOME=") + PATH_MAX];

    extern char  **environ;

    for (n = 0; environ[n] != NULL; n++) {
        /* count */
    }

    envp = malloc((n + 2) * sizeof(char *));
    if (envp == NULL) {
        return NULL;
    }

    n = 0;

    for (i = 0; environ[i] != NULL; i++) {
        for (k = 0; bs_shell_env_drop[k] != NULL; k++) {
            if (strncmp(environ[i], bs_shell_env_drop[k],
                        strlen(bs_shell_env_drop[k])) == 0)
            {
                break;
            }
        }

        if (bs_shell_env_drop[k] == NULL) {
            envp[n++] = environ[i];
        }
    }

    if (getenv("HOME") == NULL) {
        memcpy(home, "HOME=", sizeof("HOME=") - 1);

        if (getcwd(home + sizeof("HOME=") - 1, PATH_MAX) != NULL) {
            envp[n++] = home;
        }
    }

    envp[n] = NULL;

    return envp;
}


/*
 * In the forked child: a new session (so the shell leads its own process
 * group), SIGKILL when this process dies, default signals, the
 * descriptors in place (moved above 63 first, so that no dup2 overwrites
 * a source still needed), everything else closed, exec.
 */
static void
bs_shell_child(pid_t parent, const int *from, char **envp)
{
    int               i, fd[7];
    sigset_t          none;
    struct sigaction  sa;

    static const int  to[7] = {
        STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO,
        BS_FD_SCRIPT, BS_FD_STATUS, BS_FD_CODE, BS_FD_STDIN
    };

    static char  *argv[] = {
        (char *) "bash", (char *) "--norc", (char *) "--noprofile",
        (char *) "/dev/fd/60", NULL
    };

    if (setsid() == -1) {
        wk_log("shell: setsid() failed: %s", strerror(errno));
        _exit(127);
    }

    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) == -1) {
        wk_log("shell: prctl(PR_SET_PDEATHSIG) failed: %s", strerror(errno));
        _exit(127);
    }

    if (getppid() != parent) {
        _exit(127);
    }

    memset(&sa, 0, sizeof(struct sigaction));
    sa.sa_handler = SIG_DFL;

    if (sigemptyset(&sa.sa_mask) == -1 || sigemptyset(&none) == -1
        || sigaction(SIGPIPE, &sa, NULL) == -1
        || sigaction(SIGCHLD, &sa, NULL) == -1
        || sigprocmask(SIG_SETMASK, &none, NULL) == -1)
    {
        wk_log("shell: cannot reset signals: %s", strerror(errno));
        _exit(127);
    }

    for (i = 0; i < 7; i++) {
        fd[i] = fcntl(from[i], F_DUPFD_CLOEXEC, BS_FD_STDIN + 1);

        if (fd[i] == -1) {
            wk_log("shell: fcntl(F_DUPFD) failed: %s", strerror(errno));
            _exit(127);
        }
    }

    for (i = 0; i < 7; i++) {
        if (dup2(fd[i], to[i]) == -1) {
            wk_log("shell: dup2(%d, %d) failed: %s", fd[i], to[i],
                   strerror(errno));
            _exit(127);
        }
    }

    wk_proc_close_range(3, BS_FD_SCRIPT - 1);
    wk_proc_close_range(BS_FD_STDIN + 1, ~0U);

    execve(BS_SHELL_BASH, argv, envp);

    wk_log("shell: execve(\"%s\") failed: %s", BS_SHELL_BASH,
           strerror(errno));
    _exit(127);
}


static int
bs_shell_nonblock(int fd)
{
    int  flags;

    flags = fcntl(fd, F_GETFL);
    if (flags == -1) {
        return -1;
    }

    return fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1 ? -1 : 0;
}


int
bs_shell_run(bs_session_t *s, const pr_frame_t *f, const char **errcode,
    const char **message)
{
    int          pre;
    size_t       i, k, plen, pending;
    const char  *p, *eq, *prefix;

    static const char  bad_name[] =
        "an \"env\" entry must be NAME=VALUE with NAME a shell identifier";

    *errcode = "bad_request";

    if (!pr_has(f, code)) {
        *message = "a run frame needs \"code\"";
        return -1;
    }

    pre = pr_has(f, cwd) || (pr_has(f, env) && f->env.n > 0);

    if (pr_has(f, cwd) && memchr(f->cwd.data, '\0', f->cwd.len) != NULL) {
        *message = "\"cwd\" contains a NUL byte";
        return -1;
    }

    for (i = 0; pr_has(f, env) && i < f->env.n; i++) {
        p = f->env.items[i].data;
        eq = memchr(p, '=', f->env.items[i].len);

        if (eq == NULL || eq == p
            || memchr(p, '\0', f->env.items[i].len) != NULL)
        {
            *message = bad_name;
            return -1;
        }

        for (k = 0; p + k < eq; k++) {
            if (!((p[k] >= 'a' && p[k] <= 'z') || (p[k] >= 'A' && p[k] <= 'Z')
                  || p[k] == '_' || (k > 0 && p[k] >= '0' && p[k] <= '9')))
            {
                *message = bad_name;
                return -1;
            }
        }
    }

    *errcode = "unavailable";
    *message = "the session cannot take code now";

    prefix = s->xtrace ? BS_SHELL_XTRACE : "";
    plen = strlen(prefix);

    if (bs_shell_fill(s->code_fd, prefix, plen, f->code.data, f->code.len)
        != 0)
    {
        wk_log("session %s: cannot write %zu bytes of code: %s", s->id,
               f->code.len, strerror(errno));
        return -1;
    }

    if (pr_has(f, stdin)
        && bs_shell_fill(s->stdin_fd, "", 0, f->stdin.data, f->stdin.len)
           != 0)
    {
        wk_log("session %s: cannot write %zu bytes of stdin: %s", s->id,
               f->stdin.len, strerror(errno));
        return -1;
    }

    if (bs_shell_nonce(s) != 0) {
        return -1;
    }

    /* a partly queued run is taken back (see fail) */
    pending = bs_shell_pending(s);

#define BS_Q(lit)  bs_shell_queue(s, lit, sizeof(lit) - 1)

    /* L1 */
    if (BS_Q("\\builtin set -m; __pyrepl_run=1 __pyrepl_rc=; "
             "\\builtin trap -- '"
             BS_SHELL_TRAP "' INT; ") != 0)
    {
        goto fail;
    }

    if (pre) {
        if (BS_Q("__pyrepl_pre ") != 0
            || bs_shell_quote(s, pr_has(f, cwd) ? f->cwd.data : "",
                              pr_has(f, cwd) ? f->cwd.len : 0) != 0)
        {
            goto fail;
        }

        for (i = 0; pr_has(f, env) && i < f->env.n; i++) {
            p = f->env.items[i].data;
            eq = memchr(p, '=', f->env.items[i].len);

            if (BS_Q(" ") != 0
                || bs_shell_quote(s, p, (size_t) (eq - p)) != 0
                || BS_Q(" ") != 0
                || bs_shell_quote(s, eq + 1,
                                  f->env.items[i].len - (eq + 1 - p)) != 0)
            {
                goto fail;
            }
        }

        if (BS_Q(" && ") != 0) {
            goto fail;
        }
    }

    if (BS_Q("\\builtin . /dev/fd/62 ") != 0
        || (pr_has(f, stdin) ? BS_Q("</dev/fd/63") : BS_Q("</dev/null"))
           != 0
        || BS_Q(" 61>&- 63<&-; { __pyrepl_off $?; } 2>/dev/null\n") != 0)
    {
        goto fail;
    }

    /* L2 */
    if (BS_Q("{ __pyrepl_s=$? __pyrepl_x=$-; \\builtin set +x; } "
             "2>/dev/null; ") != 0
        || (pre && BS_Q("__pyrepl_post; ") != 0)
        || BS_Q("\\builtin printf '%s %d %s\\n' ") != 0
        || bs_shell_queue(s, s->nonce, BS_NONCE_LEN) != 0
        || BS_Q(" \"${__pyrepl_rc:-$__pyrepl_s}\" \"$__pyrepl_x\" "
                ">&61\n") != 0)
    {
        goto fail;
    }

#undef BS_Q

    return 0;

fail:

    s->cmd_len = s->cmd_pos + pending;

    return -1;
}


/* Append n bytes to the command queue; -1 when out of memory (logged). */
static int
bs_shell_queue(bs_session_t *s, const char *p, size_t n)
{
    size_t   cap;
    char    *cmd;

    if (s->cmd_pos > 0 && s->cmd_pos == s->cmd_len) {
        s->cmd_pos = 0;
        s->cmd_len = 0;
    }

    if (n > s->cmd_cap - s->cmd_len) {
        cap = s->cmd_cap ? s->cmd_cap : 4096;

        while (cap - s->cmd_len < n) {
            if (cap > SIZE_MAX / 2) {
                wk_log("session %s: the command queue is too long", s->id);
                return -1;
            }
            cap *= 2;
        }

        cmd = realloc(s->cmd, cap);
        if (cmd == NULL) {
            wk_log("session %s: cannot grow the command queue to %zu bytes",
                   s->id, cap);
            return -1;
        }

        s->cmd = cmd;
        s->cmd_cap = cap;
    }

    memcpy(s->cmd + s->cmd_len, p, n);
    s->cmd_len += n;

    return 0;
}


/* Queue p as one single-quoted shell word ('\'' for each quote). */
static int
bs_shell_quote(bs_session_t *s, const char *p, size_t n)
{
    const char  *q, *end;

    end = p + n;

    if (bs_shell_queue(s, "'", 1) != 0) {
        return -1;
    }

    while (p < end) {
        q = memchr(p, '\'', (size_t) (end - p));

        if (q == NULL) {
            return bs_shell_queue(s, p, (size_t) (end - p))
                   | bs_shell_queue(s, "'", 1);
        }

        if (bs_shell_queue(s, p, (size_t) (q - p)) != 0
            || bs_shell_queue(s, "'\\''", 4) != 0)
        {
            return -1;
        }

        p = q + 1;
    }

    return bs_shell_queue(s, "'", 1);
}


/*
 * Make the memfd fd hold prefix then p, and nothing else.  The shell
 * opens it again by /dev/fd/N, a new description at offset 0.  Returns 0
 * or -1 (errno set).
 */
static int
bs_shell_fill(int fd, const char *prefix, size_t plen, const char *p,
    size_t n)
{
    off_t    off;
    size_t   done;
    ssize_t  w;

    off = 0;

    for (done = 0; done < plen; done += (size_t) w, off += w) {
        w = pwrite(fd, prefix + done, plen - done, off);
        if (w == -1) {
            if (errno == EINTR) {
                w = 0;
                continue;
            }
            return -1;
        }
    }

    for (done = 0; done < n; done += (size_t) w, off += w) {
        w = pwrite(fd, p + done, n - done, off);
        if (w == -1) {
            if (errno == EINTR) {
                w = 0;
                continue;
            }
            return -1;
        }
    }

    return ftruncate(fd, off);
}


/* A fresh random nonce for the run. */
static int
bs_shell_nonce(bs_session_t *s)
{
    int            i;
    ssize_t        n;
    unsigned char  raw[BS_NONCE_LEN / 2];

    static const char  hex[] = "0123456789abcdef";

    do {
        n = getrandom(raw, sizeof(raw), 0);
    } while (n == -1 && errno == EINTR);

    if (n != (ssize_t) sizeof(raw)) {
        wk_log("session %s: getrandom() failed: %s", s->id,
               n == -1 ? strerror(errno) : "short read");
        return -1;
    }

    for (i = 0; i < BS_NONCE_LEN / 2; i++) {
        s->nonce[2 * i] = hex[raw[i] >> 4];
        s->nonce[2 * i + 1] = hex[raw[i] & 0xf];
    }

    s->nonce[BS_NONCE_LEN] = '\0';

    return 0;
}


int
bs_shell_flush(bs_session_t *s)
{
    ssize_t  n;

    while (s->cmd_pos < s->cmd_len) {
        n = write(s->cmd_fd, s->cmd + s->cmd_pos, s->cmd_len - s->cmd_pos);

        if (n >= 0) {
            s->cmd_pos += (size_t) n;
            continue;
        }

        if (errno == EINTR) {
            continue;
        }

        if (errno == EAGAIN) {
            return 0;
        }

        if (errno == EPIPE) {
            /* the shell is gone; its exit is reaped from SIGCHLD */
            s->cmd_pos = 0;
            s->cmd_len = 0;
            return 0;
        }

        wk_log("session %s: write(command pipe) failed: %s", s->id,
               strerror(errno));
        return -1;
    }

    s->cmd_pos = 0;
    s->cmd_len = 0;

    if (s->cmd_cap > 64 * 1024) {
        free(s->cmd);
        s->cmd = NULL;
        s->cmd_cap = 0;
    }

    return 0;
}


size_t
bs_shell_pending(const bs_session_t *s)
{
    return s->cmd_len - s->cmd_pos;
}


int
bs_shell_status(bs_session_t *s, int *rc)
{
    int      found;
    char     buf[4096], *nl, *p, *end;
    size_t   n;
    ssize_t  r;

    found = 0;

    for ( ;; ) {
        r = read(s->status_fd, buf, sizeof(buf));

        if (r == -1) {
            if (errno == EINTR) {
                continue;
            }

            if (errno == EAGAIN) {
                return found;
            }

            wk_log("session %s: read(status pipe) failed: %s", s->id,
                   strerror(errno));
            return -1;
        }

        if (r == 0) {
            /*
             * Every writer is gone: the shell exited (SIGCHLD says how)
             * or the code closed its fd 61, and no run can complete.
             */
            if (s->shell_exited == 0) {
                wk_log("session %s: the status pipe was closed by user "
                       "code; runs will not complete", s->id);
            }

            if (close(s->status_fd) == -1) {
                wk_log("close(%d) failed: %s", s->status_fd,
                       strerror(errno));
            }

            s->status_fd = -1;
            return found;
        }

        p = buf;
        end = buf + r;

        while (p < end) {
            nl = memchr(p, '\n', (size_t) (end - p));
            n = (size_t) ((nl ? nl : end) - p);

            bs_shell_append(s, p, n);

            if (nl == NULL) {
                break;
            }

            if (!s->shell_ready
                && bs_shell_boot_line(s, s->status, s->status_len))
            {
                s->shell_ready = 1;

            } else if (!found && s->io.run_active
                       && bs_shell_line(s, s->status, s->status_len, rc))
            {
                found = 1;
                s->shell_ready = 1;     /* it got past the bootstrap */
            }

            s->status_len = 0;
            p = nl + 1;
        }
    }
}


/*
 * Append n bytes to the partial status line.  Past its size only the last
 * half is kept, so that a status line written after stray bytes without a
 * newline (user code may write to fd 61) is still found whole.
 */
static void
bs_shell_append(bs_session_t *s, const char *p, size_t n)
{
    size_t  half, keep;

    half = sizeof(s->status) / 2;

    if (n >= half) {
        memcpy(s->status, p + n - half, half);
        s->status_len = half;
        return;
    }

    if (s->status_len + n > sizeof(s->status)) {
        keep = half - n;
        memmove(s->status, s->status + s->status_len - keep, keep);
        s->status_len = keep;
    }

    memcpy(s->status + s->status_len, p, n);
    s->status_len += n;
}


/* Whether a status line is the bootstrap's "BOOTNONCE ready". */
static int
bs_shell_boot_line(bs_session_t *s, const char *p, size_t n)
{
    return n >= BS_NONCE_LEN + sizeof(" ready") - 1
           && memcmp(p + n - BS_NONCE_LEN - (sizeof(" ready") - 1),
                     s->boot_nonce, BS_NONCE_LEN) == 0
           && memcmp(p + n - (sizeof(" ready") - 1), " ready",
                     sizeof(" ready") - 1) == 0;
}


/*
 * One status line (without its newline): "NONCE STATUS FLAGS", possibly
 * after stray bytes.  Returns 1 with *rc set if it is the current run's.
 */
static int
bs_shell_line(bs_session_t *s, const char *p, size_t n, int *rc)
{
    long         v;
    size_t       i;
    const char  *q, *end;

    end = p + n;

    for (i = 0; i + BS_NONCE_LEN < n; i++) {
        if (memcmp(p + i, s->nonce, BS_NONCE_LEN) == 0
            && p[i + BS_NONCE_LEN] == ' ')
        {
            break;
        }
    }

    if (i + BS_NONCE_LEN >= n) {
        return 0;
    }

    q = p + i + BS_NONCE_LEN + 1;
    v = 0;

    if (q == end || *q < '0' || *q > '9') {
        return 0;
    }

    while (q < end && *q >= '0' && *q <= '9' && v < 100000) {
        v = v * 10 + (*q++ - '0');
    }

    if (q == end || *q != ' ') {
        return 0;
    }

    s->xtrace = memchr(q, 'x', (size_t) (end - q)) != NULL;
    *rc = (int) v;

    return 1;
}
