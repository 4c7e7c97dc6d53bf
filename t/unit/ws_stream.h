/*
 * ws_stream.h: how the WebSocket unit tests (test_ws_parse.c, test_ws.c)
 * check the frame parser of src/codec/pyrepl_ws.c.  An input stream is fed
 * three ways: whole, one byte per call, and in random pieces (several
 * seeds); the frames it yields and its final return code must be the same
 * each time, and equal to the events expected (ev_put(), ex_end()).  Each
 * piece is a fresh heap copy, so ASan catches a read past it and a payload
 * pointing into it is reported.  Every frame is also checked against the
 * parser's contract (INVARIANT).  Static functions, as in unit.h: one test
 * program is one translation unit.
 */

#ifndef WS_STREAM_H
#define WS_STREAM_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyrepl_ws.h"
#include "unit.h"


#define SPLIT_SEEDS  16                        /* random splits per input */
#define M            PR_WS_DEFAULT_MAX_FRAME   /* the usual limits */

enum { MODE_WHOLE, MODE_BYTES, MODE_RANDOM };

typedef struct {
    uint8_t  *data;
    size_t    len;
    size_t    cap;
} buf_t;


/* an invariant checked on every call: counts only when it breaks */
#define INVARIANT(cond)                                                      \
    do {                                                                     \
        if (!(cond)) {                                                       \
            failed++;                                                        \
            fprintf(stderr, "%s:%d: INVARIANT(%s) broken\n", __FILE__,       \
                    __LINE__, #cond);                                        \
        }                                                                    \
    } while (0)


static void
put(buf_t *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->data = realloc(b->data, b->cap);
        if (b->data == NULL) {
            perror("realloc");
            exit(2);
        }
    }

    if (n && p != NULL) {
        memcpy(b->data + b->len, p, n);
    }

    b->len += n;
}


static void
put_byte(buf_t *b, uint8_t c)
{
    put(b, &c, 1);
}


static void
buf_free(buf_t *b)
{
    free(b->data);
    memset(b, 0, sizeof(buf_t));
}


/* Expected and observed events share one encoding. */
static void
ev_put(buf_t *e, int op, unsigned code, const void *payload, size_t len)
{
    uint64_t  n;

    n = len;
    put_byte(e, (uint8_t) op);
    put_byte(e, (uint8_t) (code >> 8));
    put_byte(e, (uint8_t) code);
    put(e, &n, sizeof(n));
    put(e, payload, len);
}


static void
ex_end(buf_t *e, int rc)
{
    put_byte(e, 'R');
    put(e, &rc, sizeof(rc));
}


static void
record(buf_t *e, const pr_ws_frame_t *f, const uint8_t *in, size_t in_len)
{
    INVARIANT(f->fin == 1);
    INVARIANT(f->opcode != PR_WS_OP_CONT);
    INVARIANT(f->len == 0 || f->payload != NULL);
    INVARIANT(f->payload == NULL || f->payload + f->len <= in
              || f->payload >= in + in_len);

    if (f->opcode == PR_WS_OP_CLOSE) {
        INVARIANT(f->len != 0 || f->close_code == PR_WS_CLOSE_NO_STATUS);
        INVARIANT(f->len == 0 || (f->reason == f->payload + 2
                                  && f->reason_len == f->len - 2));
        INVARIANT(f->len == 0 || f->close_code
                  == ((f->payload[0] << 8) | f->payload[1]));

    } else {
        INVARIANT(f->close_code == 0 && f->reason == NULL);
    }

    if (pr_ws_is_control(f->opcode)) {
        INVARIANT(f->len <= PR_WS_MAX_CONTROL);
    }

    if (f->opcode == PR_WS_OP_TEXT) {
        INVARIANT(pr_utf8_valid(f->payload, f->len));
    }

    ev_put(e, f->opcode, f->close_code, f->payload, f->len);
}


static size_t
pick_chunk(int mode, unsigned *seed, size_t left)
{
    size_t  n, cap;

    if (mode == MODE_WHOLE) {
        return left;
    }

    if (mode == MODE_BYTES) {
        return 1;
    }

    *seed = *seed * 1103515245 + 12345;
    cap = 1 + (*seed >> 16) % 4 * 7;       /* pieces of 1..22 bytes */
    if ((*seed >> 8) % 8 == 0) {
        cap = 4096;                       /* now and then a big one */
    }

    n = 1 + (*seed >> 4) % cap;

    return n < left ? n : left;
}


/* Feed in to a fresh parser; the events and the final code go to ev. */
static void
run(const buf_t *in, size_t max_frame, size_t max_msg, int mode,
    unsigned seed, buf_t *ev)
{
    int             rc;
    size_t          pos, chunk, off, used;
    uint8_t        *copy, dummy;
    pr_ws_frame_t   f;
    pr_ws_parser_t  p;

    pr_ws_parser_init(&p, max_frame, max_msg);

    rc = PR_WS_AGAIN;
    pos = 0;

    while (pos < in->len && rc >= 0) {
        chunk = pick_chunk(mode, &seed, in->len - pos);

        copy = malloc(chunk);
        if (copy == NULL) {
            exit(2);
        }
        memcpy(copy, in->data + pos, chunk);

        off = 0;

        while (off < chunk) {
            rc = pr_ws_parse(&p, copy + off, chunk - off, &used, &f);
            INVARIANT(used <= chunk - off);

            if (rc == PR_WS_FRAME) {
                record(ev, &f, copy, chunk);
                off += used;
                continue;
            }

            if (rc == PR_WS_AGAIN) {
                INVARIANT(used == chunk - off);
            }

            off += used;
            break;
        }

        free(copy);
        pos += chunk;
    }

    /* an empty call yields nothing new: AGAIN, or the sticky error */
    rc = pr_ws_parse(&p, &dummy, 0, &used, &f);
    INVARIANT(used == 0 && rc != PR_WS_FRAME);

    if (rc < 0) {
        INVARIANT(pr_ws_parser_error(&p) != NULL);
        INVARIANT(pr_ws_parse(&p, in->data, in->len, &used, &f) == rc);
        INVARIANT(used == 0);

    } else {
        INVARIANT(pr_ws_parser_error(&p) == NULL);
    }

    ex_end(ev, rc);

    pr_ws_parser_free(&p);
    pr_ws_parser_free(&p);
}


static void
dump(const char *what, const buf_t *b)
{
    size_t  i;

    fprintf(stderr, "  %s (%zu bytes):", what, b->len);
    for (i = 0; i < b->len && i < 48; i++) {
        fprintf(stderr, " %02x", b->data[i]);
    }
    fprintf(stderr, "%s\n", b->len > 48 ? " ..." : "");
}


/*
 * The core check: in, fed whole, bytewise and in random pieces, yields
 * exactly the events and final code in expect.  Frees in and expect.
 */
static void
expect_stream(const char *name, buf_t *in, size_t max_frame,
    size_t max_msg, buf_t *expect)
{
    int       mode, ok;
    unsigned  s, seeds;
    buf_t     ev;

    for (mode = MODE_WHOLE; mode <= MODE_RANDOM; mode++) {
        seeds = (mode == MODE_RANDOM) ? SPLIT_SEEDS : 1;

        for (s = 0; s < seeds; s++) {
            memset(&ev, 0, sizeof(buf_t));
            run(in, max_frame, max_msg, mode, s * 2654435761u + 7, &ev);

            ok = ev.len == expect->len
                 && memcmp(ev.data, expect->data, ev.len) == 0;
            CHECK(ok);

            if (!ok) {
                fprintf(stderr, "  case \"%s\", mode %d, seed %u\n",
                        name, mode, s);
                dump("input", in);
                dump("expected", expect);
                dump("got", &ev);
            }

            buf_free(&ev);
        }
    }

    buf_free(in);
    buf_free(expect);
}

#endif /* WS_STREAM_H */
