/*
 * test_tail.c: worker/common/wk_tail.c, a background command's kept
 * output: cursors count every byte ever written, the oldest bytes go past
 * WK_TAIL_MAX, and neither dropping nor reading splits a character.
 */

#include <stdlib.h>
#include <string.h>

#include "unit.h"
#include "wk_tail.h"


static void
test_reads_from_a_cursor(void)
{
    size_t          n;
    uint64_t        cursor;
    wk_tail_t       t;
    const uint8_t  *p;

    memset(&t, 0, sizeof(t));

    CHECK(wk_tail_append(&t, (const uint8_t *) "hello ", 6) == 0);
    CHECK(wk_tail_append(&t, (const uint8_t *) "world", 5) == 0);
    CHECK(wk_tail_end(&t) == 11);

    cursor = 0;
    n = wk_tail_read(&t, &cursor, 100, &p);
    CHECK(cursor == 0 && n == 11 && memcmp(p, "hello world", 11) == 0);

    cursor = 6;
    n = wk_tail_read(&t, &cursor, 3, &p);
    CHECK(cursor == 6 && n == 3 && memcmp(p, "wor", 3) == 0);

    /* past the end: nothing, from the end */
    cursor = 500;
    n = wk_tail_read(&t, &cursor, 100, &p);
    CHECK(cursor == 11 && n == 0);

    wk_tail_reset(&t);
    CHECK(wk_tail_end(&t) == 0);

    wk_tail_free(&t);
}


static void
test_a_tail_with_no_output_yet_reads_nothing(void)
{
    size_t          n;
    uint64_t        cursor;
    wk_tail_t       t;
    const uint8_t  *p;

    memset(&t, 0, sizeof(t));

    /* no buffer yet: the sanitizers' build fails on t->buf + 0 */
    cursor = 5;
    n = wk_tail_read(&t, &cursor, 100, &p);
    CHECK(cursor == 0 && n == 0 && p != NULL);

    wk_tail_free(&t);
}


static void
test_a_read_does_not_split_a_character(void)
{
    size_t          n;
    uint64_t        cursor;
    wk_tail_t       t;
    const uint8_t  *p;

    memset(&t, 0, sizeof(t));

    /* "aé€": 1 + 2 + 3 bytes */
    CHECK(wk_tail_append(&t, (const uint8_t *) "a\xc3\xa9\xe2\x82\xac", 6)
          == 0);

    cursor = 0;
    n = wk_tail_read(&t, &cursor, 2, &p);
    CHECK(n == 1);                      /* "a", not half of the é */

    cursor = 1;
    n = wk_tail_read(&t, &cursor, 4, &p);
    CHECK(n == 2);                      /* "é", not half of the € */

    /* a cursor inside a character starts at the next one */
    cursor = 2;
    n = wk_tail_read(&t, &cursor, 100, &p);
    CHECK(cursor == 3 && n == 3 && memcmp(p, "\xe2\x82\xac", 3) == 0);

    cursor = 4;
    n = wk_tail_read(&t, &cursor, 100, &p);
    CHECK(cursor == 6 && n == 0);

    wk_tail_free(&t);
}


static void
test_the_oldest_bytes_go(void)
{
    size_t          n, i, chunk;
    uint8_t        *buf;
    uint64_t        cursor, total;
    wk_tail_t       t;
    const uint8_t  *p;

    memset(&t, 0, sizeof(t));

    /* three-byte characters, so that any cut could split one */
    chunk = 3 * 100000;
    buf = malloc(chunk);
    CHECK(buf != NULL);
    if (buf == NULL) {
        return;
    }

    for (i = 0; i < chunk; i += 3) {
        memcpy(buf + i, "\xe2\x82\xac", 3);
    }

    total = 0;

    for (i = 0; i < 50; i++) {
        CHECK(wk_tail_append(&t, buf, chunk) == 0);
        total += chunk;
    }

    CHECK(wk_tail_end(&t) == total);
    CHECK(t.len <= WK_TAIL_MAX && t.len >= WK_TAIL_MAX / 2);
    CHECK(t.base == total - t.len);
    CHECK(t.base % 3 == 0);             /* dropped at a character's start */

    /* a cursor among the dropped bytes reads from the oldest kept */
    cursor = 0;
    n = wk_tail_read(&t, &cursor, 10, &p);
    CHECK(cursor == t.base && n == 9 && memcmp(p, "\xe2\x82\xac", 3) == 0);

    /* one append larger than the whole tail keeps its own end */
    free(buf);
    chunk = WK_TAIL_MAX + 3 * 1000;
    buf = malloc(chunk);
    CHECK(buf != NULL);
    if (buf == NULL) {
        return;
    }

    memset(buf, 'x', chunk);
    buf[chunk - 1] = 'y';
    CHECK(wk_tail_append(&t, buf, chunk) == 0);
    total += chunk;

    CHECK(wk_tail_end(&t) == total);
    CHECK(t.len <= WK_TAIL_MAX && t.buf[t.len - 1] == 'y');

    free(buf);
    wk_tail_free(&t);
}


int
main(void)
{
    test_reads_from_a_cursor();
    test_a_tail_with_no_output_yet_reads_nothing();
    test_a_read_does_not_split_a_character();
    test_the_oldest_bytes_go();

    printf("%d passed, %d failed\n", passed, failed);

    return failed ? 1 : 0;
}
