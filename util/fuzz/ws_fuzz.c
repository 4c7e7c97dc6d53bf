/*
 * ws_fuzz.c: libFuzzer target for the WebSocket core (src/codec/pyrepl_ws.c).
 *
 * Input layout: byte 0 picks the parser limits and the largest piece size,
 * byte 1 seeds the split points, the rest is a client byte stream.  The
 * stream is parsed twice, whole and in pieces (each piece a fresh heap
 * copy, so ASan sees reads past it), and both runs must yield the same
 * frames and end the same way.  Every delivered frame is checked against
 * the contract in pyrepl_ws.h.  The same bytes also go through the writer
 * (a close payload built from them must parse back) and the handshake
 * helpers.  Any broken rule aborts, which libFuzzer reports as a crash.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined -I src/codec \
 *            util/fuzz/ws_fuzz.c src/codec/pyrepl_ws.c -o ws_fuzz
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyrepl_ws.h"


#define REQUIRE(cond)                                                        \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "ws_fuzz: %s:%d: %s\n", __FILE__, __LINE__,      \
                    #cond);                                                  \
            abort();                                                         \
        }                                                                    \
    } while (0)


typedef struct {
    uint64_t  hash;       /* FNV-1a over every delivered frame */
    size_t    frames;
    int       rc;         /* the final code: AGAIN or an error */
} outcome_t;


static const size_t  limits[8][2] = {
    { 0, 0 },
    { 125, 125 },
    { 1000, 2500 },
    { 4096, 65536 },
    { 65536, 65536 },
    { 1 << 20, 1 << 20 },
    { 200, 100 },
    { 16, 1 << 20 }
};


static uint64_t
fnv(uint64_t h, const void *data, size_t len)
{
    size_t          i;
    const uint8_t  *p;

    p = data;
    for (i = 0; i < len; i++) {
        h = (h ^ p[i]) * 0x100000001b3ULL;
    }

    return h;
}


static void
check_frame(const pr_ws_frame_t *f, const uint8_t *in, size_t in_len,
    outcome_t *o)
{
    uint64_t  n;

    REQUIRE(f->fin == 1);
    REQUIRE(f->len == 0 || f->payload != NULL);
    REQUIRE(f->payload == NULL || f->payload + f->len <= in
            || f->payload >= in + in_len);

    switch (f->opcode) {

    case PR_WS_OP_TEXT:
        REQUIRE(pr_utf8_valid(f->payload, f->len));
        /* fall through */

    case PR_WS_OP_BINARY:
        REQUIRE(f->close_code == 0 && f->reason == NULL);
        break;

    case PR_WS_OP_PING:
    case PR_WS_OP_PONG:
        REQUIRE(f->len <= PR_WS_MAX_CONTROL);
        REQUIRE(f->close_code == 0 && f->reason == NULL);
        break;

    case PR_WS_OP_CLOSE:
        REQUIRE(f->len <= PR_WS_MAX_CONTROL && f->len != 1);
        if (f->len == 0) {
            REQUIRE(f->close_code == PR_WS_CLOSE_NO_STATUS);
        } else {
            REQUIRE(pr_ws_close_code_valid(f->close_code));
            REQUIRE(f->reason == f->payload + 2);
            REQUIRE(f->reason_len == f->len - 2);
            REQUIRE(pr_utf8_valid(f->reason, f->reason_len));
        }
        break;

    default:
        REQUIRE(!"unexpected opcode");
    }

    n = f->len;
    o->hash = fnv(o->hash, &f->opcode, sizeof(f->opcode));
    o->hash = fnv(o->hash, &f->close_code, sizeof(f->close_code));
    o->hash = fnv(o->hash, &n, sizeof(n));
    if (f->len) {
        o->hash = fnv(o->hash, f->payload, f->len);
    }
    o->frames++;
}


/* Parse data in pieces of 1..max_piece bytes (all of it if 0). */
static void
run(const uint8_t *data, size_t size, size_t max_frame, size_t max_msg,
    size_t max_piece, unsigned seed, outcome_t *o)
{
    int             rc;
    size_t          pos, piece, off, used;
    uint8_t        *copy, dummy;
    pr_ws_frame_t   f;
    pr_ws_parser_t  p;

    memset(o, 0, sizeof(outcome_t));
    o->hash = 0xcbf29ce484222325ULL;

    pr_ws_parser_init(&p, max_frame, max_msg);

    rc = PR_WS_AGAIN;
    pos = 0;

    while (pos < size && rc >= 0) {
        if (max_piece == 0) {
            piece = size;

        } else {
            seed = seed * 1103515245 + 12345;
            piece = 1 + (seed >> 8) % max_piece;
            if (piece > size - pos) {
                piece = size - pos;
            }
        }

        copy = malloc(piece);
        REQUIRE(copy != NULL);
        memcpy(copy, data + pos, piece);

        off = 0;

        while (off < piece) {
            rc = pr_ws_parse(&p, copy + off, piece - off, &used, &f);
            REQUIRE(used <= piece - off);

            if (rc == PR_WS_FRAME) {
                REQUIRE(used > 0);
                check_frame(&f, copy, piece, o);
                off += used;
                continue;
            }

            REQUIRE(rc == PR_WS_AGAIN || rc == PR_WS_PROTOCOL_ERROR
                    || rc == PR_WS_BAD_DATA || rc == PR_WS_TOO_BIG
                    || rc == PR_WS_NOMEM);

            if (rc == PR_WS_AGAIN) {
                REQUIRE(used == piece - off);
            }

            off += used;
            break;
        }

        free(copy);
        pos += piece;
    }

    rc = pr_ws_parse(&p, &dummy, 0, &used, &f);
    REQUIRE(used == 0 && rc != PR_WS_FRAME);

    if (rc < 0) {
        REQUIRE(pr_ws_parser_error(&p) != NULL);
        REQUIRE(pr_ws_parse(&p, data, size, &used, &f) == rc && used == 0);

    } else {
        REQUIRE(pr_ws_parser_error(&p) == NULL);
    }

    REQUIRE(p.msg_len <= max_msg && p.msg_cap <= max_msg);

    o->rc = rc;

    pr_ws_parser_free(&p);
}


/* A close payload built from the input must parse back as itself. */
static void
close_round_trip(const uint8_t *data, size_t size)
{
    int             rc;
    size_t          n, i, used;
    uint8_t         pl[PR_WS_MAX_CONTROL], frame[6 + PR_WS_MAX_CONTROL];
    uint16_t        code;
    pr_ws_frame_t   f;
    pr_ws_parser_t  p;

    if (size < 2) {
        return;
    }

    code = (uint16_t) ((data[0] << 8) | data[1]);
    n = pr_ws_close_payload(pl, code, (const char *) data + 2, size - 2);

    REQUIRE(n <= PR_WS_MAX_CONTROL && n != 1);
    REQUIRE((n == 0) == !pr_ws_close_code_valid(code));

    REQUIRE(pr_ws_header(frame, PR_WS_OP_CLOSE, 1, n) == 2);
    frame[1] |= 0x80;
    memcpy(frame + 2, data, 4 <= size ? 4 : size);
    if (size < 4) {
        memset(frame + 2 + size, 0x5a, 4 - size);
    }
    for (i = 0; i < n; i++) {
        frame[6 + i] = pl[i] ^ frame[2 + (i & 3)];
    }

    pr_ws_parser_init(&p, 0, 0);
    rc = pr_ws_parse(&p, frame, 6 + n, &used, &f);
    REQUIRE(rc == PR_WS_FRAME && used == 6 + n);
    REQUIRE(f.opcode == PR_WS_OP_CLOSE && f.len == n);
    REQUIRE(n == 0 || memcmp(f.payload, pl, n) == 0);
    REQUIRE(n == 0 ? f.close_code == PR_WS_CLOSE_NO_STATUS
                   : f.close_code == code);
    pr_ws_parser_free(&p);

    /* and the whole-frame helper agrees */
    REQUIRE(pr_ws_close_frame(frame, code, (const char *) data + 2, size - 2)
            == 2 + n);
    REQUIRE(frame[0] == 0x88 && frame[1] == n
            && memcmp(frame + 2, pl, n) == 0);
}


static void
writer(const uint8_t *data, size_t size)
{
    int       i;
    size_t    n;
    uint8_t   h[PR_WS_MAX_SERVER_HDR];
    uint64_t  len, back;

    if (size < 10) {
        return;
    }

    len = 0;
    for (i = 0; i < 8; i++) {
        len = (len << 8) | data[2 + i];
    }
    len >>= data[1] & 63;

    n = pr_ws_header(h, data[0] & 0x0f, data[0] & 0x80, len);

    if (n == 0) {
        return;
    }

    REQUIRE(n == (len < 126 ? 2u : len <= 0xffff ? 4u : 10u));
    REQUIRE((h[0] & 0x0f) == (data[0] & 0x0f) && (h[1] & 0x80) == 0);
    REQUIRE(((h[0] & 0x80) != 0) == ((data[0] & 0x80) != 0));

    back = h[1];
    if (n == 4) {
        back = ((uint64_t) h[2] << 8) | h[3];
    } else if (n == 10) {
        back = 0;
        for (i = 0; i < 8; i++) {
            back = (back << 8) | h[2 + i];
        }
    }

    REQUIRE(back == len);
}


static void
handshake(const uint8_t *data, size_t size)
{
    int     valid;
    char    out[PR_WS_ACCEPT_LEN + 1];
    size_t  n, i;

    n = size < 32 ? size : 32;
    valid = pr_ws_key_valid((const char *) data, n);

    if (pr_ws_accept_key((const char *) data, n, out) != 0) {
        REQUIRE(!valid);
        return;
    }

    REQUIRE(valid && n == PR_WS_KEY_LEN);
    REQUIRE(strlen(out) == PR_WS_ACCEPT_LEN && out[27] == '=');
    for (i = 0; i < PR_WS_ACCEPT_LEN - 1; i++) {
        REQUIRE(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                       "0123456789+/", out[i]) != NULL);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t     max_frame, max_msg, max_piece;
    unsigned   seed;
    outcome_t  whole, split;

    if (size < 2) {
        return 0;
    }

    max_frame = limits[data[0] & 7][0];
    max_msg = limits[data[0] & 7][1];
    max_piece = 1 + (data[0] >> 3) % 32;          /* 1..32 */
    seed = data[1];

    run(data + 2, size - 2, max_frame, max_msg, 0, 0, &whole);
    run(data + 2, size - 2, max_frame, max_msg, max_piece, seed, &split);

    REQUIRE(whole.rc == split.rc);
    REQUIRE(whole.frames == split.frames);
    REQUIRE(whole.hash == split.hash);

    close_round_trip(data + 2, size - 2);
    writer(data, size);
    handshake(data + 2, size - 2);

    return 0;
}
