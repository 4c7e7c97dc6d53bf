/*
 * test_fs.c: unit tests of the supervisor's recursive removal,
 * sup_fs_rmtree() in worker/sup_fs.c: a missing name, a file and a symlink
 * as the top (the link goes, never what it points to), a tree of every
 * kind of file with links out of it, and a chain of directories far
 * deeper than PATH_MAX and than the walk's descriptor stack, with names
 * in the way of the directories it moves up.  Nothing outside the tree
 * may change and no descriptor may leak.  And the logger it uses, which
 * may quote such names: one line, no brackets.  Prints "N passed, N
 * failed" and exits non-zero on failure.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sup.h"
#include "unit.h"
#include "wk_log.h"


#define DEEP  3000    /* levels of 9 bytes: a path of 27000 bytes */


static int   base;               /* the test's directory */
static char  outside[64];        /* a directory no removal may touch */


static int
exists(int dirfd, const char *name)
{
    struct stat  st;

    return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}


static int
touch(int dirfd, const char *name)
{
    int  fd;

    fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd == -1) {
        return -1;
    }

    return close(fd);
}


static int
open_fds(void)
{
    int             n;
    DIR            *d;
    struct dirent  *de;

    d = opendir("/proc/self/fd");
    if (d == NULL) {
        return -1;
    }

    n = 0;

    while ((de = readdir(d)) != NULL) {
        n += (de->d_name[0] != '.');
    }

    (void) closedir(d);

    return n;
}


/* The outside directory still holds its file, untouched. */
static int
outside_intact(void)
{
    char         path[128];
    struct stat  st;

    (void) snprintf(path, sizeof(path), "%s/keep", outside);

    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 4;
}


static void
test_missing_file_and_link(void)
{
    char  keep[128];

    CHECK(sup_fs_rmtree(base, "missing") == 0);

    CHECK(touch(base, "file") == 0);
    CHECK(sup_fs_rmtree(base, "file") == 0);
    CHECK(!exists(base, "file"));

    /* a link as the top: the link goes, not the directory it names */
    CHECK(symlinkat(outside, base, "dirlink") == 0);
    CHECK(sup_fs_rmtree(base, "dirlink") == 0);
    CHECK(!exists(base, "dirlink"));

    (void) snprintf(keep, sizeof(keep), "%s/keep", outside);
    CHECK(symlinkat(keep, base, "filelink") == 0);
    CHECK(sup_fs_rmtree(base, "filelink") == 0);
    CHECK(!exists(base, "filelink"));

    CHECK(outside_intact());
}


static void
test_tree(void)
{
    int   top, sub;
    char  keep[128];

    (void) snprintf(keep, sizeof(keep), "%s/keep", outside);

    CHECK(mkdirat(base, "tree", 0700) == 0);
    top = openat(base, "tree", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(top != -1);

    CHECK(touch(top, "file") == 0);
    CHECK(mkdirat(top, "empty", 0700) == 0);
    CHECK(mkfifoat(top, "fifo", 0600) == 0);
    CHECK(symlinkat(outside, top, "out") == 0);
    CHECK(symlinkat(keep, top, "keep") == 0);
    CHECK(symlinkat("/nonexistent", top, "dangling") == 0);
    CHECK(mkdirat(top, "a", 0700) == 0);
    CHECK(mkdirat(top, "a/b", 0700) == 0);
    CHECK(touch(top, "a/b/f") == 0);
    CHECK(symlinkat(outside, top, "a/b/out") == 0);

    if (geteuid() == 0) {
        /* root enters a directory whatever its mode */
        CHECK(mkdirat(top, "closed", 0700) == 0);
        CHECK(touch(top, "closed/f") == 0);
        sub = openat(top, "closed", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        CHECK(sub != -1 && fchmod(sub, 0) == 0);
        (void) close(sub);
    }

    (void) close(top);

    CHECK(sup_fs_rmtree(base, "tree") == 0);
    CHECK(!exists(base, "tree"));
    CHECK(outside_intact());
}


static void
test_deep(void)
{
    int   fd, next, i;
    char  name[32];

    CHECK(mkdirat(base, "deep", 0700) == 0);
    fd = openat(base, "deep", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(fd != -1);

    /* the names the walk moves directories up to, taken */
    CHECK(touch(fd, ".pyrepl-rm-0") == 0);
    CHECK(mkdirat(fd, ".pyrepl-rm-1", 0700) == 0);
    CHECK(touch(fd, ".pyrepl-rm-1/f") == 0);

    for (i = 0; i < DEEP && fd != -1; i++) {
        (void) snprintf(name, sizeof(name), "%s", i % 7 ? "dddddddd" : "e");

        if (mkdirat(fd, name, 0700) == -1) {
            break;
        }

        /* a sibling subtree on some levels */
        if (i % 100 == 50) {
            CHECK(mkdirat(fd, "side", 0700) == 0);
            CHECK(touch(fd, "side/f") == 0);
        }

        next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        (void) close(fd);
        fd = next;
    }

    CHECK(i == DEEP && fd != -1);
    CHECK(touch(fd, "bottom") == 0);
    CHECK(symlinkat(outside, fd, "out") == 0);
    (void) close(fd);

    CHECK(sup_fs_rmtree(base, "deep") == 0);
    CHECK(!exists(base, "deep"));
    CHECK(outside_intact());
}


/*
 * The logger's lines may quote names user code chose (a file the removal
 * could not take): one line each, and no bracket in the message, so no
 * "[alert]" of nginx's can be forged in the error log.
 */
static void
test_log_defuses(void)
{
    int      fd[2];
    char     buf[512], *msg;
    ssize_t  n;

    CHECK(pipe(fd) == 0);

    wk_log_set_fd(fd[1]);
    wk_log("\"%s\" could not be removed",
           "x\n[alert] 1#1: forged\r\x1b[2K]");
    wk_log_set_fd(STDERR_FILENO);

    n = read(fd[0], buf, sizeof(buf) - 1);
    CHECK(n > 0);
    buf[n > 0 ? n : 0] = '\0';

    /* the message follows the tag "pyrepl-<role>[<pid>]: " */
    msg = strstr(buf, "]: ");
    CHECK(msg != NULL);

    if (msg != NULL) {
        msg += 3;
        CHECK(strcmp(msg, "\"x?(alert) 1#1: forged?\?(2K)\" could not be "
                     "removed\n") == 0);
    }

    (void) close(fd[0]);
    (void) close(fd[1]);
}


int
main(void)
{
    int   fds, fd;
    char  dir[64], keep[128];

    (void) strcpy(dir, "/tmp/pyrepl-fs-XXXXXX");
    (void) strcpy(outside, "/tmp/pyrepl-fs-out-XXXXXX");

    if (mkdtemp(dir) == NULL || mkdtemp(outside) == NULL) {
        perror("mkdtemp");
        return 1;
    }

    (void) snprintf(keep, sizeof(keep), "%s/keep", outside);

    base = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    fd = open(keep, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

    if (base == -1 || fd == -1 || write(fd, "keep", 4) != 4) {
        perror(dir);
        return 1;
    }

    (void) close(fd);

    fds = open_fds();

    test_missing_file_and_link();
    test_tree();
    test_deep();
    test_log_defuses();

    CHECK(open_fds() == fds);

    /* a path from AT_FDCWD: the test's own directory */
    (void) close(base);
    CHECK(sup_fs_rmtree(AT_FDCWD, dir) == 0);
    CHECK(access(dir, F_OK) == -1 && errno == ENOENT);

    CHECK(sup_fs_rmtree(AT_FDCWD, outside) == 0);

    printf("%d passed, %d failed\n", passed, failed);

    return failed ? 1 : 0;
}
