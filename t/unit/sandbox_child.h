/*
 * sandbox_child.h: the harness the sandbox's unit tests share
 * (test_seccomp.c, test_sandbox.c).  Every case forks a child that
 * applies a sandbox and then tries something; the child's CHECK counts
 * travel back over a pipe.  The cases start from one of two sandboxes:
 * sb_root(), root with no drop, or sb_nobody(), the drop to "nobody" in a
 * working directory of its own, which sb_test_begin() makes and
 * sb_test_end() removes.  Static functions, as in unit.h: one test
 * program is one translation unit.
 */

#ifndef SANDBOX_CHILD_H
#define SANDBOX_CHILD_H

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sb_sandbox.h"
#include "unit.h"


#define NONEXISTENT  "/nonexistent/pyrepl-sandbox-test"


typedef void (*child_fn)(void *arg);

static uid_t  nobody_uid;
static gid_t  nobody_gid;
static char   workdir[64];


/*
 * Fork; the child applies sb (when not NULL), runs fn and reports its
 * CHECK counts.  Returns the child's wait status.  A child that dies
 * before reporting adds nothing: the caller looks at the status.
 */
static int
child(const sb_sandbox_t *sb, child_fn fn, void *arg)
{
    int    p[2], status, counts[2];
    char   err[256];
    pid_t  pid;

    if (pipe(p) == -1) {
        perror("pipe");
        exit(2);
    }

    fflush(stdout);
    fflush(stderr);

    pid = fork();
    if (pid == -1) {
        perror("fork");
        exit(2);
    }

    if (pid == 0) {
        (void) close(p[0]);
        (void) setsid();
        passed = 0;
        failed = 0;

        if (sb != NULL && sb_sandbox_apply(sb, err, sizeof(err)) != 0) {
            fprintf(stderr, "sb_sandbox_apply: %s\n", err);
            failed++;

        } else {
            fn(arg);
        }

        counts[0] = passed;
        counts[1] = failed;
        (void) write(p[1], counts, sizeof(counts));
        _exit(0);
    }

    (void) close(p[1]);

    if (read(p[0], counts, sizeof(counts)) == sizeof(counts)) {
        passed += counts[0];
        failed += counts[1];
    }

    (void) close(p[0]);

    while (waitpid(pid, &status, 0) == -1) {
        if (errno != EINTR) {
            perror("waitpid");
            exit(2);
        }
    }

    return status;
}


/* Run fn in a child; it must report and exit 0. */
static void
child_ok(const sb_sandbox_t *sb, child_fn fn, void *arg)
{
    int  status;

    status = child(sb, fn, arg);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}


static void
sb_root(sb_sandbox_t *sb, int mode, int network)
{
    sb_sandbox_init(sb);
    sb->seccomp = mode;
    sb->network = network;
}


static void
sb_nobody(sb_sandbox_t *sb, int mode, int network)
{
    sb_root(sb, mode, network);
    sb->uid = nobody_uid;
    sb->gid = nobody_gid;
    sb->workdir = workdir;
}


/* The Seccomp: line of /proc/self/status (0 none, 2 a filter), or -1. */
static int
seccomp_status(void)
{
    int    mode;
    FILE  *f;
    char   line[256];

    mode = -1;
    f = fopen("/proc/self/status", "r");

    if (f == NULL) {
        return -1;
    }

    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "Seccomp: %d", &mode) == 1) {
            break;
        }
    }

    (void) fclose(f);

    return mode;
}


/*
 * What main() does first: as root, look up "nobody" and make the working
 * directory of the sb_nobody() cases.  Returns 0 to run the cases, 1 to
 * skip them (not root), -1 on an error, said on stderr.
 */
static int
sb_test_begin(const char *prog)
{
    struct passwd  *pw;

    if (geteuid() != 0) {
        printf("%s: must run as root, skipped\n", prog);
        return 1;
    }

    pw = getpwnam("nobody");
    if (pw == NULL) {
        fprintf(stderr, "%s: no user \"nobody\"\n", prog);
        return -1;
    }

    nobody_uid = pw->pw_uid;
    nobody_gid = pw->pw_gid;

    (void) strcpy(workdir, "/tmp/pyrepl-sandbox-XXXXXX");
    if (mkdtemp(workdir) == NULL
        || chown(workdir, nobody_uid, nobody_gid) == -1
        || chmod(workdir, 0700) == -1)
    {
        perror("workdir");
        return -1;
    }

    return 0;
}


/*
 * What main() does last: remove the working directory, print "N passed,
 * N failed" and return the exit status.
 */
static int
sb_test_end(void)
{
    (void) rmdir(workdir);

    printf("%d passed, %d failed\n", passed, failed);

    return failed ? 1 : 0;
}

#endif /* SANDBOX_CHILD_H */
