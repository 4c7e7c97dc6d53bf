/*
 * ngx_http_pyrepl_spawn.c: starting the supervisor from the nginx master.
 *
 * What the master starts is the supervisor's keeper ("pyrepl-supervisor
 * --keeper ...", worker/supervisor/sup_keeper.c), which runs the supervisor
 * and restarts it within milliseconds if it dies.  The keeper is started
 * detached (double fork), so the master never reaps it and a reload, which
 * signals only the master's own children, leaves it, the supervisor and its
 * sessions alone.  They learn that nginx has stopped from a pipe: the master
 * keeps the write end (and its workers inherit it), the keeper and the
 * supervisor poll the read end, and EOF there means every nginx process is
 * gone, so they kill the sessions and exit.  The master keeps the read end
 * too: a keeper it starts again (on a reload that found none) gets the same
 * pipe, so that whatever still holds it (a supervisor, its sessions) never
 * takes that start for nginx's end.  On a reload a supervisor that answers on
 * its socket, or a keeper that holds its lock (it may be restarting the
 * supervisor right now), is kept; otherwise one is started again.  At nginx's
 * start one that a previous nginx left, on its way out, is waited for
 * first.  Pool size, warm-up code, the confinement of sessions and their
 * environment are given to the supervisor when it starts (a reload that keeps
 * it does not change them): nothing private on its command line, which every
 * process can read.  The warm-up code is a sealed memfd, its fd 4
 * (--warmup-fd); the environment is the sessions'
 * (ngx_http_pyrepl_sandbox_envp), none of nginx's own.  The socket directory
 * is nginx's workers' alone (mode 0700): no session can list the sockets,
 * whose names are session ids.
 */

#include "ngx_http_pyrepl_spawn.h"

#include "ngx_http_pyrepl_sandbox.h"
#include "ngx_http_pyrepl_supervisor.h"

#include <sys/file.h>
#include <sys/mman.h>
#include <sys/wait.h>


#define PYREPL_SPAWN_WAIT_MS  5000
#define PYREPL_WARMUP_FD      4


static ngx_int_t ngx_http_pyrepl_keeper_up(ngx_http_pyrepl_main_conf_t *pmcf);
static ngx_int_t ngx_http_pyrepl_socket_dir(ngx_cycle_t *cycle,
    ngx_http_pyrepl_main_conf_t *pmcf);
static int ngx_http_pyrepl_warmup_fd(ngx_http_pyrepl_main_conf_t *pmcf);
static void ngx_http_pyrepl_exec_supervisor(ngx_cycle_t *cycle,
    ngx_http_pyrepl_main_conf_t *pmcf, int parent_fd);


/* the "nginx is alive" pipe: the write end, and the read end for keepers */
static ngx_fd_t  ngx_http_pyrepl_alive_fd = -1;
static ngx_fd_t  ngx_http_pyrepl_alive_rfd = -1;


ngx_int_t
ngx_http_pyrepl_spawn_supervisor(ngx_cycle_t *cycle,
    ngx_http_pyrepl_main_conf_t *pmcf)
{
    int          fds[2], status;
    u_char       path[NGX_MAX_PATH];
    ngx_pid_t    pid;
    ngx_uint_t   waited;

    /*
     * At nginx's start (not a reload) a supervisor still there is a
     * previous nginx's, on its way out since that nginx went: wait for it
     * to go (or, still there after the wait, keep it) rather than keep
     * one that is about to exit.
     */
    for (waited = 0;
         ngx_is_init_cycle(cycle->old_cycle)
         && waited < PYREPL_SPAWN_WAIT_MS
         && (ngx_http_pyrepl_supervisor_up(pmcf) == NGX_OK
             || ngx_http_pyrepl_keeper_up(pmcf) == NGX_OK);
         waited += 10)
    {
        ngx_msleep(10);
    }

    if (ngx_http_pyrepl_supervisor_up(pmcf) == NGX_OK
        || ngx_http_pyrepl_keeper_up(pmcf) == NGX_OK)
    {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "pyrepl: supervisor on \"%V\" is running, kept",
                      &pmcf->supervisor_sock);
        return NGX_OK;
    }

    if (ngx_http_pyrepl_socket_dir(cycle, pmcf) != NGX_OK) {
        goto failed;
    }

    /* sessions may pass through it to their own directory, not list it */
    ngx_sprintf(path, "%V/%Z", &pmcf->workdir);
    if (ngx_create_full_path(path, 0711) != 0) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      "pyrepl: cannot create \"%s\"", path);
        goto failed;
    }

    /* the supervisor's alone */
    ngx_sprintf(path, "%V/%Z", &pmcf->checkpoint_path);
    if (ngx_create_full_path(path, 0700) != 0) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      "pyrepl: cannot create \"%s\"", path);
        goto failed;
    }

    if (ngx_http_pyrepl_alive_fd == -1) {
        if (pipe2(fds, O_CLOEXEC) == -1) {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                          "pyrepl: pipe2() failed");
            goto failed;
        }

        ngx_http_pyrepl_alive_rfd = fds[0];
        ngx_http_pyrepl_alive_fd = fds[1];
    }

    pid = fork();

    if (pid == -1) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      "pyrepl: fork() failed");
        goto failed;
    }

    if (pid == 0) {
        /* the intermediate child: start the supervisor and leave at once */

        close(ngx_http_pyrepl_alive_fd);

        if (setsid() == -1 || fork() != 0) {
            _exit(0);
        }

        ngx_http_pyrepl_exec_supervisor(cycle, pmcf,
                                        ngx_http_pyrepl_alive_rfd);
        _exit(127);
    }

    while (waitpid(pid, &status, 0) == -1 && ngx_errno == NGX_EINTR) {
        /* void */
    }

    /* the first workers should find the supervisor ready to serve */

    for (waited = 0; waited < PYREPL_SPAWN_WAIT_MS; waited += 5) {
        if (ngx_http_pyrepl_supervisor_up(pmcf) == NGX_OK) {
            ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                          "pyrepl: supervisor started on \"%V\"",
                          &pmcf->supervisor_sock);
            return NGX_OK;
        }

        ngx_msleep(5);
    }

    ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                  "pyrepl: supervisor did not come up on \"%V\" "
                  "within %ui ms, see the lines above",
                  &pmcf->supervisor_sock, (ngx_uint_t) PYREPL_SPAWN_WAIT_MS);

failed:

    /* a reload must not take the running master down */
    return ngx_process == NGX_PROCESS_MASTER ? NGX_OK : NGX_ERROR;
}


/*
 * The socket directory, mode 0700 and owned by nginx's worker user (as
 * root), made so even when it exists (an older PyREPL left it 0755):
 * through a descriptor opened without following a symlink.
 */
static ngx_int_t
ngx_http_pyrepl_socket_dir(ngx_cycle_t *cycle,
    ngx_http_pyrepl_main_conf_t *pmcf)
{
    int               fd;
    u_char            path[NGX_MAX_PATH];
    ngx_err_t         err;
    ngx_core_conf_t  *ccf;

    ngx_sprintf(path, "%V/%Z", &pmcf->socket_dir);

    if (ngx_create_full_path(path, 0755) != 0) {
        err = ngx_errno;
        goto failed;
    }

    ngx_sprintf(path, "%V%Z", &pmcf->socket_dir);

    if (mkdir((char *) path, 0700) == -1 && ngx_errno != NGX_EEXIST) {
        err = ngx_errno;
        goto failed;
    }

    fd = open((char *) path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd == -1) {
        err = ngx_errno;
        goto failed;
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    if ((geteuid() == 0 && ccf->user != (ngx_uid_t) NGX_CONF_UNSET_UINT
         && fchown(fd, ccf->user, ccf->group) == -1)
        || fchmod(fd, 0700) == -1)
    {
        err = ngx_errno;
        close(fd);
        goto failed;
    }

    close(fd);

    return NGX_OK;

failed:

    ngx_log_error(NGX_LOG_EMERG, cycle->log, err,
                  "pyrepl: cannot make \"%s\" a private directory", path);

    return NGX_ERROR;
}


/*
 * Whether a keeper holds the lock on <socket_dir>/keeper.pid (it may be
 * between two supervisors).  NGX_OK if so.
 */
static ngx_int_t
ngx_http_pyrepl_keeper_up(ngx_http_pyrepl_main_conf_t *pmcf)
{
    int        fd;
    ngx_int_t  rc;
    u_char     path[NGX_MAX_PATH];

    if (pmcf->socket_dir.len + sizeof("/" PYREPL_KEEPER_PID) > NGX_MAX_PATH) {
        return NGX_DECLINED;
    }

    ngx_sprintf(path, "%V/" PYREPL_KEEPER_PID "%Z", &pmcf->socket_dir);

    fd = open((char *) path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd == -1) {
        return NGX_DECLINED;
    }

    rc = (flock(fd, LOCK_SH | LOCK_NB) == -1 && ngx_errno == EWOULDBLOCK)
         ? NGX_OK : NGX_DECLINED;

    close(fd);

    return rc;
}


static void
ngx_http_pyrepl_exec_supervisor(ngx_cycle_t *cycle,
    ngx_http_pyrepl_main_conf_t *pmcf, int parent_fd)
{
    int               i, fd, warmup;
    char             *argv[32 + NGX_HTTP_PYREPL_SANDBOX_ARGS], **envp;
    u_char            bin[NGX_MAX_PATH], python[NGX_MAX_PATH];
    u_char            bash[NGX_MAX_PATH];
    u_char            sockdir[NGX_MAX_PATH], workdir[NGX_MAX_PATH];
    u_char            ckptdir[NGX_MAX_PATH];
    u_char            uid[NGX_INT_T_LEN + 1], gid[NGX_INT_T_LEN + 1];
    u_char            max_frame[NGX_SIZE_T_LEN + 1];
    u_char            pool[NGX_INT_T_LEN + 1];
    u_char            sandbox[NGX_HTTP_PYREPL_SANDBOX_ARGS / 2]
                             [NGX_INT64_LEN + 1];
    sigset_t          set;
    ngx_log_t        *log;
    ngx_core_conf_t  *ccf;

    sigemptyset(&set);
    sigprocmask(SIG_SETMASK, &set, NULL);

    /*
     * fds 1 and 2 become the error log: at the first start nginx has not
     * yet made its own stderr the log (it is still whatever started
     * nginx), so take the log file itself.
     */

    log = ngx_log_get_file_log(cycle->log);

    if (log != NULL && log->file != NULL
        && log->file->fd != NGX_INVALID_FILE && log->file->fd != ngx_stderr
        && log->file->fd != parent_fd)
    {
        (void) dup2(log->file->fd, STDERR_FILENO);
        (void) dup2(log->file->fd, STDOUT_FILENO);
    }

    /* the pipe becomes fd 3, and nothing else of nginx's stays open */

    if (parent_fd != 3) {
        if (dup2(parent_fd, 3) == -1) {
            return;
        }
    } else if (fcntl(3, F_SETFD, 0) == -1) {
        return;
    }

    warmup = ngx_http_pyrepl_warmup_fd(pmcf);
    if (warmup == -1) {
        return;
    }

    fd = warmup ? PYREPL_WARMUP_FD + 1 : PYREPL_WARMUP_FD;

    if (close_range(fd, ~0U, 0) == -1) {
        for ( /* void */ ; fd < 65536; fd++) {
            (void) close(fd);
        }
    }

    fd = open("/dev/null", O_RDONLY);
    if (fd != -1 && fd != STDIN_FILENO) {
        dup2(fd, STDIN_FILENO);
        close(fd);
    }

    ngx_sprintf(bin, "%V/" PYREPL_SUPERVISOR_BIN "%Z", &pmcf->bin_dir);
    ngx_sprintf(python, "%V/" PYREPL_PYTHON_BIN "%Z", &pmcf->bin_dir);
    ngx_sprintf(bash, "%V/" PYREPL_BASH_BIN "%Z", &pmcf->bin_dir);
    ngx_sprintf(sockdir, "%V%Z", &pmcf->socket_dir);
    ngx_sprintf(workdir, "%V%Z", &pmcf->workdir);
    ngx_sprintf(ckptdir, "%V%Z", &pmcf->checkpoint_path);
    ngx_sprintf(max_frame, "%uz%Z", pmcf->max_frame);
    ngx_sprintf(pool, "%ui%Z", pmcf->pool_min_idle);

    i = 0;
    argv[i++] = PYREPL_SUPERVISOR_BIN;
    argv[i++] = "--keeper";
    argv[i++] = "--zygote";
    argv[i++] = "--pool-min-idle";
    argv[i++] = (char *) pool;
    argv[i++] = "--socket-dir";
    argv[i++] = (char *) sockdir;
    argv[i++] = "--workdir";
    argv[i++] = (char *) workdir;
    argv[i++] = "--checkpoint-dir";
    argv[i++] = (char *) ckptdir;
    argv[i++] = "--python";
    argv[i++] = (char *) python;
    argv[i++] = "--parent-fd";
    argv[i++] = "3";
    argv[i++] = "--max-frame";
    argv[i++] = (char *) max_frame;

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    if (geteuid() == 0 && ccf->user != (ngx_uid_t) NGX_CONF_UNSET_UINT) {
        ngx_sprintf(uid, "%ui%Z", (ngx_uint_t) ccf->user);
        ngx_sprintf(gid, "%ui%Z", (ngx_uint_t) ccf->group);
        argv[i++] = "--owner-uid";
        argv[i++] = (char *) uid;
        argv[i++] = "--owner-gid";
        argv[i++] = (char *) gid;
    }

    if (access((char *) bash, X_OK) == 0) {
        argv[i++] = "--bash";
        argv[i++] = (char *) bash;
    }

    if (warmup) {
        argv[i++] = "--warmup-fd";
        argv[i++] = "4";
    }

    i += ngx_http_pyrepl_sandbox_argv(pmcf, &argv[i], sandbox);

    argv[i] = NULL;

    envp = ngx_http_pyrepl_sandbox_envp(pmcf);
    if (envp == NULL) {
        return;
    }

    execve((char *) bin, argv, envp);

    ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                  "pyrepl: execve(\"%s\") failed", bin);
}


/*
 * In the child that execs the supervisor: the warm-up code in a sealed
 * memfd at fd 4, inheritable.  Returns 1, 0 when there is no warm-up
 * code, or -1 (logged).
 */
static int
ngx_http_pyrepl_warmup_fd(ngx_http_pyrepl_main_conf_t *pmcf)
{
    int      fd;
    size_t   done;
    ssize_t  n;

    if (pmcf->warmup.len == 0) {
        return 0;
    }

    fd = memfd_create("pyrepl-warmup", MFD_ALLOW_SEALING);
    if (fd == -1) {
        goto failed;
    }

    for (done = 0; done < pmcf->warmup.len; done += n) {
        n = write(fd, pmcf->warmup.data + done, pmcf->warmup.len - done);

        if (n == -1 && ngx_errno == NGX_EINTR) {
            n = 0;
            continue;
        }

        if (n <= 0) {
            goto failed;
        }
    }

    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW
                               | F_SEAL_WRITE) == -1)
    {
        goto failed;
    }

    if (fd != PYREPL_WARMUP_FD) {
        if (dup2(fd, PYREPL_WARMUP_FD) == -1) {
            goto failed;
        }

        close(fd);
    }

    return 1;

failed:

    ngx_log_error(NGX_LOG_EMERG, ngx_cycle->log, ngx_errno,
                  "pyrepl: cannot pass the warm-up code to the supervisor");

    return -1;
}
