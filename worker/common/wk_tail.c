/*
 * wk_tail.c: the kept output of a background command (wk_tail.h).
 */

#include <stdlib.h>
#include <string.h>

#include "pyrepl_proto.h"
#include "wk_tail.h"


static size_t wk_tail_char_start(const uint8_t *p, size_t n, size_t at);


void
wk_tail_reset(wk_tail_t *t)
{
    t->len = 0;
    t->base = 0;
}


int
wk_tail_append(wk_tail_t *t, const uint8_t *p, size_t n)
{
    size_t    cap, drop;
    uint8_t  *buf;

    if (n >= WK_TAIL_MAX) {
        /* only the end of p stays */
        drop = wk_tail_char_start(p, n, n - WK_TAIL_MAX / 2);
        t->base += t->len + drop;
        t->len = 0;
        p += drop;
        n -= drop;
    }

    if (t->len + n > WK_TAIL_MAX) {
        /* keep half of WK_TAIL_MAX with p, from a character's first byte */
        drop = t->len + n - WK_TAIL_MAX / 2;
        drop = wk_tail_char_start(t->buf, t->len,
                                  drop < t->len ? drop : t->len);
        memmove(t->buf, t->buf + drop, t->len - drop);
        t->len -= drop;
        t->base += drop;
    }

    if (t->len + n > t->cap) {
        cap = t->cap ? t->cap : 4096;

        while (cap < t->len + n) {
            cap *= 2;
        }

        if (cap > WK_TAIL_MAX) {
            cap = WK_TAIL_MAX;
        }

        buf = realloc(t->buf, cap);
        if (buf == NULL) {
            t->base += t->len + n;
            t->len = 0;
            return -1;
        }

        t->buf = buf;
        t->cap = cap;
    }

    memcpy(t->buf + t->len, p, n);
    t->len += n;

    return 0;
}


size_t
wk_tail_read(const wk_tail_t *t, uint64_t *cursor, size_t max,
    const uint8_t **p)
{
    size_t  at, n;

    if (*cursor < t->base) {
        *cursor = t->base;
    }

    if (*cursor > t->base + t->len) {
        *cursor = t->base + t->len;
    }

    /* a cursor inside a character reads from the next one */
    at = wk_tail_char_start(t->buf, t->len, (size_t) (*cursor - t->base));
    *cursor = t->base + at;
    n = t->len - at;

    if (n > max) {
        n = pr_utf8_boundary(t->buf + at, max);
    }

    /* no buffer before the first output: NULL + 0 is undefined */
    *p = (n != 0) ? t->buf + at : (const uint8_t *) "";

    return n;
}


uint64_t
wk_tail_end(const wk_tail_t *t)
{
    return t->base + t->len;
}


void
wk_tail_free(wk_tail_t *t)
{
    free(t->buf);
    t->buf = NULL;
    t->len = 0;
    t->cap = 0;
}


/* The first character start in p[at..n) (n if none). */
static size_t
wk_tail_char_start(const uint8_t *p, size_t n, size_t at)
{
    while (at < n && (p[at] & 0xc0) == 0x80) {
        at++;
    }

    return at;
}
