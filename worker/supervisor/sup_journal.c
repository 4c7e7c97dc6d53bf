/*
 * sup_journal.c: the state file DIR/sessions, from which a supervisor that
 * replaces a dead one learns which processes serve which sessions.  It is
 * an append-only journal of text lines, one write(2) per change:
 *
 *   S <id> <pid> <start>     session id is served by pid
 *   P <name> <pid> <start>   pool process pid listens on DIR/<name>.sock
 *   - <name>                 the session or pool process is gone
 *
 * <start> is the process's start time (/proc/<pid>/stat field 22), so a
 * reused pid is never taken for the process it replaced.  A pool process
 * handed to a session is "- pool-N" and "S <id> ..." in one write.  A line
 * cut short by a dying writer lacks its newline and is ignored.  The file
 * is rewritten from the live table (temp file and rename) at start-up and
 * whenever the journal holds far more lines than the table, and removed at
 * a clean shutdown.  Nothing is fsync'd: the file must survive the death
 * of the supervisor, not of the machine (after a reboot no process of it
 * is left to adopt anyway).
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sup.h"
#include "wk_log.h"


#define SUP_J_GONE          '-'
#define SUP_J_COMPACT_MIN   1024     /* lines before a rewrite is considered */
#define SUP_J_LINE          128


static int sup_journal_parse(char *line, sup_jrec_t *r);
static int sup_journal_name_ok(char kind, const char *name);
static void sup_journal_write(const char *buf, size_t len);
static int sup_journal_do_rewrite(void);


static int     sup_jfd = -1;
static size_t  sup_jlines;               /* appended since the rewrite */
static char    sup_jpath[PATH_MAX];


int
sup_journal_load(const sup_conf_t *conf, sup_jrec_t **recs, size_t *n)
{
    int           fd;
    char         *buf, *line, *nl;
    size_t        len, cap, i, k;
    ssize_t       r;
    sup_jrec_t    rec, *out, *p;
    struct stat   st;

    *recs = NULL;
    *n = 0;

    if (sup_fs_path(sup_jpath, sizeof(sup_jpath), conf->socket_dir,
                    SUP_JOURNAL_NAME, "") == -1)
    {
        return -1;
    }

    fd = open(sup_jpath, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd == -1) {
        if (errno == ENOENT) {
            return 0;
        }

        wk_log("open(\"%s\") failed: %s", sup_jpath, strerror(errno));
        return -1;
    }

    if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
        wk_log("\"%s\" is not a regular file", sup_jpath);
        (void) close(fd);
        return -1;
    }

    cap = (size_t) st.st_size + 1;
    buf = malloc(cap);
    if (buf == NULL) {
        wk_log("cannot read \"%s\": out of memory", sup_jpath);
        (void) close(fd);
        return -1;
    }

    len = 0;

    while (len < cap - 1) {
        r = read(fd, buf + len, cap - 1 - len);

        if (r == -1 && errno == EINTR) {
            continue;
        }

        if (r <= 0) {
            break;
        }

        len += (size_t) r;
    }

    (void) close(fd);
    buf[len] = '\0';

    out = NULL;
    k = 0;
    cap = 0;

    for (line = buf; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        *nl = '\0';

        if (sup_journal_parse(line, &rec) == -1) {
            wk_log("\"%s\": ignoring the line \"%.64s\"", sup_jpath, line);
            continue;
        }

        for (i = 0; i < k; i++) {
            if (strcmp(out[i].name, rec.name) == 0) {
                break;
            }
        }

        if (rec.kind == SUP_J_GONE) {
            if (i < k) {
                out[i] = out[--k];
            }

            continue;
        }

        if (i == k) {
            if (k == cap) {
                p = sup_grow(out, &cap, sizeof(sup_jrec_t), 64,
                             "the journal's records");
                if (p == NULL) {
                    free(out);
                    free(buf);
                    return -1;
                }

                out = p;
            }

            k++;
        }

        out[i] = rec;
    }

    free(buf);

    *recs = out;
    *n = k;

    return 0;
}


/* One line into r; 0, or -1 if it is not a well-formed record. */
static int
sup_journal_parse(char *line, sup_jrec_t *r)
{
    int        n;
    long long  pid;
    char       kind, name[PYREPL_ID_LEN + 2];
    uint64_t   start;

    memset(r, 0, sizeof(sup_jrec_t));

    if (line[0] == SUP_J_GONE) {
        if (sscanf(line, "- %33s%n", name, &n) != 1 || line[n] != '\0') {
            return -1;
        }

        kind = SUP_J_GONE;
        pid = 0;
        start = 0;

    } else {
        if (sscanf(line, "%c %33s %lld %" SCNu64 "%n", &kind, name, &pid,
                   &start, &n) != 4
            || line[n] != '\0' || pid <= 0 || pid > INT_MAX)
        {
            return -1;
        }
    }

    if (!sup_journal_name_ok(kind, name)) {
        return -1;
    }

    r->kind = kind;
    memcpy(r->name, name, strlen(name) + 1);
    r->pid = (pid_t) pid;
    r->start = start;

    return 0;
}


/* A session id (pyrepl_id_valid) or "pool-<digits>", per kind. */
static int
sup_journal_name_ok(char kind, const char *name)
{
    size_t  i, len, plen;

    len = strlen(name);
    plen = sizeof(SUP_POOL_PREFIX) - 1;

    if (len == PYREPL_ID_LEN && kind != SUP_J_POOL) {
        return pyrepl_id_valid((const unsigned char *) name, len);
    }

    if (kind == SUP_J_SESSION || len <= plen || len >= SUP_NAME_LEN
        || strncmp(name, SUP_POOL_PREFIX, plen) != 0)
    {
        return 0;
    }

    for (i = plen; i < len; i++) {
        if (name[i] < '0' || name[i] > '9') {
            return 0;
        }
    }

    return 1;
}


int
sup_journal_rewrite(const sup_conf_t *conf)
{
    if (sup_fs_path(sup_jpath, sizeof(sup_jpath), conf->socket_dir,
                    SUP_JOURNAL_NAME, "") == -1)
    {
        return -1;
    }

    return sup_journal_do_rewrite();
}


static int
sup_journal_do_rewrite(void)
{
    int             fd, n;
    FILE           *f;
    size_t          i, count;
    pid_t           pid;
    uint64_t        start;
    const char     *name;
    sup_session_t  *s;
    char            tmp[PATH_MAX + 8];

    n = snprintf(tmp, sizeof(tmp), "%s.tmp", sup_jpath);
    if (n < 0 || (size_t) n >= sizeof(tmp)) {
        return -1;
    }

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
              0600);
    if (fd == -1) {
        wk_log("open(\"%s\") failed: %s", tmp, strerror(errno));
        return -1;
    }

    f = fdopen(fd, "w");
    if (f == NULL) {
        wk_log("fdopen(\"%s\") failed: %s", tmp, strerror(errno));
        (void) close(fd);
        (void) unlink(tmp);
        return -1;
    }

    count = sup_session_count();

    for (i = 0; i < count; i++) {
        s = sup_session_at(i);

        if (s->state == SUP_S_LIVE && s->pid > 0) {
            (void) fprintf(f, "%c %s %ld %" PRIu64 "\n", SUP_J_SESSION,
                           s->id, (long) s->pid, s->start);
        }
    }

    count = sup_pool_count();

    for (i = 0; i < count; i++) {
        sup_pool_at(i, &name, &pid, &start);

        if (pid > 0) {
            (void) fprintf(f, "%c %s %ld %" PRIu64 "\n", SUP_J_POOL, name,
                           (long) pid, start);
        }
    }

    if (fflush(f) == EOF || ferror(f)) {
        wk_log("writing \"%s\" failed: %s", tmp, strerror(errno));
        (void) fclose(f);
        (void) unlink(tmp);
        return -1;
    }

    if (fclose(f) == EOF) {
        wk_log("close(\"%s\") failed: %s", tmp, strerror(errno));
        (void) unlink(tmp);
        return -1;
    }

    if (rename(tmp, sup_jpath) == -1) {
        wk_log("rename(\"%s\", \"%s\") failed: %s", tmp, sup_jpath,
               strerror(errno));
        (void) unlink(tmp);
        return -1;
    }

    if (sup_jfd != -1) {
        (void) close(sup_jfd);
    }

    sup_jfd = open(sup_jpath, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
    if (sup_jfd == -1) {
        wk_log("open(\"%s\") failed: %s", sup_jpath, strerror(errno));
        return -1;
    }

    sup_jlines = 0;

    return 0;
}


static void
sup_journal_write(const char *buf, size_t len)
{
    ssize_t  n;

    if (sup_jfd == -1) {
        return;
    }

    do {
        n = write(sup_jfd, buf, len);
    } while (n == -1 && errno == EINTR);

    if (n != (ssize_t) len) {
        wk_log("write(\"%s\") failed: %s", sup_jpath,
               n == -1 ? strerror(errno) : "short write");
    }

    sup_jlines++;

    if (sup_jlines > SUP_J_COMPACT_MIN
        && sup_jlines > 4 * (sup_session_count() + sup_pool_count()))
    {
        (void) sup_journal_do_rewrite();
    }
}


void
sup_journal_add(char kind, const char *name, pid_t pid, uint64_t start)
{
    int   n;
    char  buf[SUP_J_LINE];

    n = snprintf(buf, sizeof(buf), "%c %s %ld %" PRIu64 "\n", kind, name,
                 (long) pid, start);

    if (n > 0 && (size_t) n < sizeof(buf)) {
        sup_journal_write(buf, (size_t) n);
    }
}


void
sup_journal_gone(const char *name)
{
    int   n;
    char  buf[SUP_J_LINE];

    n = snprintf(buf, sizeof(buf), "%c %s\n", SUP_J_GONE, name);

    if (n > 0 && (size_t) n < sizeof(buf)) {
        sup_journal_write(buf, (size_t) n);
    }
}


void
sup_journal_assign(const char *pool, const char *id, pid_t pid,
    uint64_t start)
{
    int   n;
    char  buf[2 * SUP_J_LINE];

    n = snprintf(buf, sizeof(buf), "%c %s\n%c %s %ld %" PRIu64 "\n",
                 SUP_J_GONE, pool, SUP_J_SESSION, id, (long) pid, start);

    if (n > 0 && (size_t) n < sizeof(buf)) {
        sup_journal_write(buf, (size_t) n);
    }
}


void
sup_journal_remove(const sup_conf_t *conf)
{
    if (sup_jfd != -1) {
        (void) close(sup_jfd);
        sup_jfd = -1;
    }

    if (sup_jpath[0] != '\0') {
        (void) sup_fs_unlink(sup_jpath);
    }
}
