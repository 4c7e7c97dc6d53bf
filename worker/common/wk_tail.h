/*
 * wk_tail.h: the kept output of a background command (a bash run that no
 * connection waits for): the last WK_TAIL_MAX bytes of what it wrote to
 * stdout and stderr together, as valid UTF-8, addressed by byte offsets
 * counted from its first byte, so that a reader's cursor stays valid as
 * the oldest bytes are dropped.
 */

#ifndef WK_TAIL_H
#define WK_TAIL_H

#include <stddef.h>
#include <stdint.h>


#define WK_TAIL_MAX         ((size_t) 4 * 1024 * 1024)


typedef struct {
    uint8_t         *buf;          /* grown as needed, up to WK_TAIL_MAX */
    size_t           len;
    size_t           cap;
    uint64_t         base;         /* the offset of buf[0] */
} wk_tail_t;


/* Forget what t holds: empty, offsets from 0 again (the buffer stays). */
void wk_tail_reset(wk_tail_t *t);

/*
 * Append n bytes of valid UTF-8; past WK_TAIL_MAX the oldest whole
 * characters go.  Returns 0, or -1 when no memory is left (the bytes are
 * counted but not kept).
 */
int wk_tail_append(wk_tail_t *t, const uint8_t *p, size_t n);

/*
 * What t holds from *cursor on, at most max bytes and whole characters:
 * *cursor is clamped to what is kept (bytes dropped already are skipped,
 * past the end reads nothing) and moved on to a character's first byte;
 * *p points at the bytes.  Returns their
 * number; *cursor + that is the next cursor.
 */
size_t wk_tail_read(const wk_tail_t *t, uint64_t *cursor, size_t max,
    const uint8_t **p);

/* The offset after the last byte written. */
uint64_t wk_tail_end(const wk_tail_t *t);

void wk_tail_free(wk_tail_t *t);

#endif /* WK_TAIL_H */
