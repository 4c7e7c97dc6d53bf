/*
 * bs_bg.c: a background command (execd's POST /command {background: true}
 * on PyREPL's bash sessions).  It is a run frame with detach set, taken
 * like any run (bs_io.c) but answered ok at once: no connection waits for
 * it.  Its code runs in a subshell, "( eval -- 'command' )", so that exit
 * ends the command and leaves the session to report it.  While it runs,
 * its output goes to a tail (wk_tail.h) rather than to frames; interrupt
 * frames and its deadline stop it as any run.  Its end (status, exit
 * code, time) stays, with the tail, until another one starts in the session:
 * "status" and "tail" frames read them.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bs_session.h"
#include "wk_log.h"


#define BS_BG_TAIL_READ     ((size_t) 1024 * 1024)  /* bytes per tail */


static int64_t bs_bg_now(void);


int
bs_bg_wrap(bs_session_t *s, const pr_frame_t *f, pr_frame_t *run,
    char **buf)
{
    char    *p;
    size_t   n;

    n = pr_has(f, code) ? f->code.len : 0;

    *buf = malloc(4 * n + 64);
    if (*buf == NULL) {
        wk_log("session %s: no memory for a %zu-byte command", s->id, n);
        return -1;
    }

    p = *buf;
    p += sprintf(p, "( \\builtin eval -- ");
    p += bs_io_quoted(p, pr_has(f, code) ? f->code.data : "", n);
    p += sprintf(p, " )\n");

    *run = *f;
    pr_set_str(run, code, *buf, (size_t) (p - *buf));

    return 0;
}


void
bs_bg_started(bs_session_t *s, int i, const pr_frame_t *f)
{
    char        *code;
    pr_frame_t   ok;

    code = malloc(f->code.len + 1);

    free(s->bg.code);
    s->bg.code = code;
    s->bg.code_len = 0;

    if (code != NULL) {
        memcpy(code, f->code.data, f->code.len);
        s->bg.code_len = f->code.len;
    }

    s->bg.had = 1;
    s->bg.active = 1;
    s->bg.started = bs_bg_now();
    s->bg.finished = 0;
    s->bg.exit_code = 0;
    s->bg.status = "running";
    wk_tail_reset(&s->bg.tail);

    s->io.tail = &s->bg.tail;
    s->io.run_conn = -1;

    memset(&ok, 0, sizeof(pr_frame_t));
    ok.type = PR_T_OK;
    pr_set_int(&ok, started, s->bg.started);
    wk_io_send(&s->io, i, &ok);
    wk_io_flush(&s->io, i);
}


void
bs_bg_ended(bs_session_t *s, const char *status, int rc)
{
    s->bg.active = 0;
    s->bg.finished = bs_bg_now();
    s->bg.exit_code = rc;
    s->bg.status = status;

    wk_log("session %s: background command %s, exit status %d", s->id,
           status, rc);
}


void
bs_bg_status(bs_session_t *s, int i)
{
    pr_frame_t  f;

    if (!s->bg.had) {
        wk_io_fail(&s->io, i, "not_found", "no background command");
        return;
    }

    memset(&f, 0, sizeof(pr_frame_t));
    f.type = PR_T_OK;
    pr_set_cstr(&f, status, s->bg.status);
    pr_set_str(&f, code, s->bg.code ? s->bg.code : "", s->bg.code_len);
    pr_set_int(&f, started, s->bg.started);
    pr_set_int(&f, finished, s->bg.finished);
    pr_set_int(&f, cursor, (int64_t) wk_tail_end(&s->bg.tail));

    if (!s->bg.active) {
        pr_set_int(&f, exit_code, s->bg.exit_code);
    }

    wk_io_send(&s->io, i, &f);
}


void
bs_bg_tail(bs_session_t *s, int i, const pr_frame_t *f)
{
    size_t          n, max;
    uint64_t        cursor;
    pr_frame_t      ok;
    const uint8_t  *p;

    if (!s->bg.had) {
        wk_io_fail(&s->io, i, "not_found", "no background command");
        return;
    }

    cursor = (pr_has(f, cursor) && f->cursor > 0) ? (uint64_t) f->cursor : 0;

    /* the answer's text and fields within the frame cap */
    max = s->io.max_frame / 2;
    if (max > BS_BG_TAIL_READ) {
        max = BS_BG_TAIL_READ;
    }

    n = wk_tail_read(&s->bg.tail, &cursor, max, &p);

    memset(&ok, 0, sizeof(pr_frame_t));
    ok.type = PR_T_OK;
    pr_set_str(&ok, text, p, n);
    pr_set_int(&ok, cursor, (int64_t) (cursor + n));
    wk_io_send(&s->io, i, &ok);
}


/* The wall clock, Unix ms. */
static int64_t
bs_bg_now(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_REALTIME, &ts);

    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
