/*
 * proto_fuzz.c: libFuzzer target for the frame codec (src/codec/pyrepl_proto.c),
 * which reads what session processes and the supervisor send to nginx and
 * what nginx sends to them.
 *
 * Input layout: byte 0 picks the length cap (& 7, see caps[]) and, with
 * byte 1, a split point for the UTF-8 checks; the rest is a receive buffer.
 * Three things are done with it:
 *
 *   - the buffer is cut into frames with pr_frame_peek, as the connection
 *     code does, and every frame's payload (a fresh heap copy of exactly
 *     its length, so ASan sees any read past it) goes to pr_frame_decode;
 *     a frame that decodes must encode again, and that encoding must peek
 *     as one whole frame, decode to the same frame and encode to the same
 *     bytes;
 *   - a frame is built from the same bytes (type, fields, every field kind
 *     with arbitrary contents) and must survive encode, peek and decode;
 *   - the bytes go through pr_utf8_sanitize, whose output must be valid
 *     UTF-8 (by an independent validator, RFC 3629), equal to the input if
 *     that was valid, and a fixed point; and pr_utf8_boundary must cut
 *     anywhere without changing what sanitizing gives: sanitize(head) +
 *     sanitize(tail) == sanitize(whole), which is what the output
 *     forwarders rely on.
 *
 * Any broken rule aborts, which libFuzzer reports as a crash.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined -I src/codec \
 *            util/fuzz/proto_fuzz.c src/codec/pyrepl_proto.c -lmsgpackc
 */

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyrepl_proto.h"


#define REQUIRE(cond)                                                        \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "proto_fuzz: %s:%d: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                  \
            abort();                                                         \
        }                                                                    \
    } while (0)


enum { K_STR, K_INT, K_STRS };

/* the kind and place of every field, from the header's own X-macro */
static const struct {
    int     kind;
    size_t  offset;
} fields[PR_F_MAX] = {
#define FIELD(name, kind, doc)  { K_##kind, offsetof(pr_frame_t, name) },
    PR_FIELDS(FIELD)
#undef FIELD
};


static const size_t  caps[8] = {
    0, 1, 16, 64, 255, 4096, 65536, PR_DEFAULT_MAX_FRAME
};


/* A heap copy of exactly len bytes (ASan catches any read past it). */
static uint8_t *
dup_exact(const void *p, size_t len)
{
    uint8_t  *copy;

    copy = malloc(len ? len : 1);
    REQUIRE(copy != NULL);
    if (len) {
        memcpy(copy, p, len);
    }

    return copy;
}


static int
str_eq(const pr_str_t *a, const pr_str_t *b)
{
    return a->len == b->len
           && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}


static int
frames_equal(const pr_frame_t *a, const pr_frame_t *b)
{
    int               k;
    uint32_t          i;
    const char       *ma, *mb;
    const pr_strs_t  *sa, *sb;

    if (a->type != b->type || a->has != b->has) {
        return 0;
    }

    for (k = 0; k < PR_F_MAX; k++) {
        if (!(a->has & ((uint64_t) 1 << k))) {
            continue;
        }

        ma = (const char *) a + fields[k].offset;
        mb = (const char *) b + fields[k].offset;

        switch (fields[k].kind) {

        case K_STR:
            if (!str_eq((const pr_str_t *) ma, (const pr_str_t *) mb)) {
                return 0;
            }
            break;

        case K_INT:
            if (*(const int64_t *) ma != *(const int64_t *) mb) {
                return 0;
            }
            break;

        default:
            sa = (const pr_strs_t *) ma;
            sb = (const pr_strs_t *) mb;
            if (sa->n != sb->n) {
                return 0;
            }
            for (i = 0; i < sa->n; i++) {
                if (!str_eq(&sa->items[i], &sb->items[i])) {
                    return 0;
                }
            }
            break;
        }
    }

    return 1;
}


/*
 * Encode f, check that the encoding is one whole frame that decodes to f
 * and encodes again to the same bytes.
 */
static void
round_trip(const pr_frame_t *f)
{
    int               rc;
    size_t            flen;
    uint8_t          *copy;
    const char       *err;
    pr_frame_t        back;
    msgpack_sbuffer   sb, sb2;
    msgpack_unpacked  up;

    msgpack_sbuffer_init(&sb);
    msgpack_sbuffer_init(&sb2);

    REQUIRE(pr_frame_encode(f, &sb) == PR_OK);
    REQUIRE(sb.size > PR_HEADER_LEN);
    REQUIRE(pr_frame_peek((uint8_t *) sb.data, sb.size, sb.size, &flen)
            == PR_OK);
    REQUIRE(flen == sb.size);
    REQUIRE(pr_frame_peek((uint8_t *) sb.data, sb.size - 1, sb.size, &flen)
            == PR_AGAIN);
    REQUIRE(pr_frame_peek((uint8_t *) sb.data, sb.size,
                          sb.size - PR_HEADER_LEN - 1, &flen)
            == PR_TOO_LARGE);

    copy = dup_exact(sb.data + PR_HEADER_LEN, sb.size - PR_HEADER_LEN);
    msgpack_unpacked_init(&up);
    err = NULL;

    rc = pr_frame_decode(copy, sb.size - PR_HEADER_LEN, &up, &back, &err);
    if (rc != PR_OK) {
        fprintf(stderr, "proto_fuzz: re-decoding failed: %s\n", err);
    }
    REQUIRE(rc == PR_OK);
    REQUIRE(frames_equal(f, &back));

    REQUIRE(pr_frame_encode(&back, &sb2) == PR_OK);
    REQUIRE(sb2.size == sb.size && memcmp(sb.data, sb2.data, sb.size) == 0);

    msgpack_unpacked_destroy(&up);
    free(copy);
    msgpack_sbuffer_destroy(&sb2);
    msgpack_sbuffer_destroy(&sb);
}


/* Decode one payload as the connection code would. */
static void
decode(const uint8_t *payload, size_t len)
{
    int               k, rc;
    uint32_t          i;
    uint64_t          sum;
    uint8_t          *copy;
    const char       *err, *member;
    pr_frame_t        f;
    const pr_str_t   *s;
    const pr_strs_t  *strs;
    msgpack_unpacked  up;

    copy = dup_exact(payload, len);
    msgpack_unpacked_init(&up);
    err = NULL;

    rc = pr_frame_decode(copy, len, &up, &f, &err);

    if (rc != PR_OK) {
        REQUIRE(rc == PR_INVALID);
        REQUIRE(err != NULL && err[0] != '\0');
        goto done;
    }

    REQUIRE(f.type > PR_T_NONE && f.type < PR_T_MAX);
    REQUIRE((f.has & ~PR_FIELDS_MASK) == 0);

    /* every decoded string is readable (ASan checks where it points) */
    sum = 0;
    for (k = 0; k < PR_F_MAX; k++) {
        if (!(f.has & ((uint64_t) 1 << k)) || fields[k].kind == K_INT) {
            continue;
        }

        member = (const char *) &f + fields[k].offset;

        if (fields[k].kind == K_STR) {
            s = (const pr_str_t *) member;
            REQUIRE(s->len == 0 || s->data != NULL);
            REQUIRE(s->len <= len);
            for (i = 0; i < s->len; i++) {
                sum += (uint8_t) s->data[i];
            }
            continue;
        }

        strs = (const pr_strs_t *) member;
        REQUIRE(strs->n == 0 || strs->items != NULL);
        REQUIRE(strs->n <= len);
        for (i = 0; i < strs->n; i++) {
            REQUIRE(strs->items[i].len <= len);
            if (strs->items[i].len) {
                sum += (uint8_t) strs->items[i].data[0]
                       + (uint8_t) strs->items[i].data[strs->items[i].len - 1];
            }
        }
    }
    (void) sum;

    round_trip(&f);

done:

    msgpack_unpacked_destroy(&up);
    free(copy);
}


/* Cut buf into frames the way the connection code does. */
static void
frames(const uint8_t *buf, size_t len, size_t max)
{
    int     rc;
    size_t  flen, declared;

    for ( ;; ) {
        rc = pr_frame_peek(buf, len, max, &flen);

        if (len < PR_HEADER_LEN) {
            REQUIRE(rc == PR_AGAIN);
            return;
        }

        declared = ((size_t) buf[0] << 24) | ((size_t) buf[1] << 16)
                   | ((size_t) buf[2] << 8) | buf[3];

        if (declared > max) {
            REQUIRE(rc == PR_TOO_LARGE);
            return;
        }

        if (len - PR_HEADER_LEN < declared) {
            REQUIRE(rc == PR_AGAIN);
            return;
        }

        REQUIRE(rc == PR_OK && flen == PR_HEADER_LEN + declared);

        decode(buf + PR_HEADER_LEN, declared);

        buf += flen;
        len -= flen;
    }
}


/* A reader over the input that yields zeros when it runs out. */
typedef struct {
    const uint8_t  *p;
    size_t          left;
} cursor_t;


static unsigned
take_byte(cursor_t *c)
{
    if (c->left == 0) {
        return 0;
    }

    c->left--;
    return *c->p++;
}


static pr_str_t
take_str(cursor_t *c)
{
    size_t    n;
    pr_str_t  s;

    n = take_byte(c);
    if (n > c->left) {
        n = c->left;
    }

    s.data = (const char *) c->p;
    s.len = n;
    c->p += n;
    c->left -= n;

    return s;
}


/* Build a frame of any type with any fields from the input; encode it. */
static void
build(const uint8_t *data, size_t size)
{
    int              k, i;
    char            *member;
    uint32_t         j;
    uint64_t         v, mask;
    cursor_t         c;
    pr_str_t         items[PR_F_MAX][8];
    pr_frame_t       f;
    msgpack_sbuffer  sb;

    c.p = data;
    c.left = size;

    memset(&f, 0, sizeof(pr_frame_t));

    /* an unknown type is refused and leaves the buffer as it was */
    msgpack_sbuffer_init(&sb);
    f.type = PR_T_NONE;
    REQUIRE(pr_frame_encode(&f, &sb) == PR_INVALID && sb.size == 0);
    f.type = PR_T_MAX;
    REQUIRE(pr_frame_encode(&f, &sb) == PR_INVALID && sb.size == 0);
    msgpack_sbuffer_destroy(&sb);

    f.type = (pr_type_t) (1 + take_byte(&c) % (PR_T_MAX - 1));
    REQUIRE(pr_type_from_name(pr_type_name(f.type),
                              strlen(pr_type_name(f.type))) == f.type);

    mask = 0;
    for (i = 0; i < 8; i++) {
        mask = mask << 8 | take_byte(&c);
    }
    f.has = mask & PR_FIELDS_MASK;

    for (k = 0; k < PR_F_MAX; k++) {
        if (!(f.has & ((uint64_t) 1 << k))) {
            continue;
        }

        member = (char *) &f + fields[k].offset;

        switch (fields[k].kind) {

        case K_STR:
            *(pr_str_t *) member = take_str(&c);
            break;

        case K_INT:
            v = 0;
            for (i = 0; i < 8; i++) {
                v = v << 8 | take_byte(&c);
            }
            memcpy(member, &v, sizeof(int64_t));
            break;

        default:
            ((pr_strs_t *) member)->n = take_byte(&c) % 9;
            ((pr_strs_t *) member)->items = items[k];
            for (j = 0; j < ((pr_strs_t *) member)->n; j++) {
                items[k][j] = take_str(&c);
            }
            break;
        }
    }

    round_trip(&f);
}


/* RFC 3629, section 4, written out independently of pyrepl_proto.c. */
static int
utf8_valid(const uint8_t *p, size_t len)
{
    size_t   i, n, k;
    uint8_t  c, lo, hi;

    for (i = 0; i < len; i += n) {
        c = p[i];
        lo = 0x80;
        hi = 0xbf;

        if (c < 0x80) {
            n = 1;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 3;
            lo = (c == 0xe0) ? 0xa0 : 0x80;
            hi = (c == 0xed) ? 0x9f : 0xbf;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 4;
            lo = (c == 0xf0) ? 0x90 : 0x80;
            hi = (c == 0xf4) ? 0x8f : 0xbf;
        } else {
            return 0;
        }

        if (len - i < n) {
            return 0;
        }

        for (k = 1; k < n; k++) {
            if (p[i + k] < (k == 1 ? lo : 0x80)
                || p[i + k] > (k == 1 ? hi : 0xbf))
            {
                return 0;
            }
        }
    }

    return 1;
}


/* sanitize into a buffer of exactly 3 * len; returns it, *out its length */
static uint8_t *
sanitize(const uint8_t *src, size_t len, size_t *out)
{
    uint8_t  *dst;

    dst = malloc(len ? 3 * len : 1);
    REQUIRE(dst != NULL);

    *out = pr_utf8_sanitize(src, len, dst);
    REQUIRE(*out <= 3 * len);

    return dst;
}


static void
utf8(const uint8_t *data, size_t len, size_t cut)
{
    size_t    n, n2, nh, nt, b, i;
    uint8_t  *src, *clean, *again, *head, *tail;

    src = dup_exact(data, len);

    clean = sanitize(src, len, &n);
    REQUIRE(utf8_valid(clean, n));
    if (utf8_valid(src, len)) {
        REQUIRE(n == len && (len == 0 || memcmp(clean, src, len) == 0));
    }

    again = sanitize(clean, n, &n2);
    REQUIRE(n2 == n && (n == 0 || memcmp(again, clean, n) == 0));

    /* a forwarder that has read src[0..cut) sends src[0..b) now */
    b = pr_utf8_boundary(src, cut);
    REQUIRE(b <= cut && cut - b <= 3);
    if (b < cut) {
        /* what is held back is a lead byte and continuation bytes only */
        REQUIRE(src[b] >= 0xc2 && src[b] <= 0xf4);
        for (i = b + 1; i < cut; i++) {
            REQUIRE((src[i] & 0xc0) == 0x80);
        }
    }

    head = sanitize(src, b, &nh);
    tail = sanitize(src + b, len - b, &nt);
    REQUIRE(nh + nt == n);
    REQUIRE(nh == 0 || memcmp(head, clean, nh) == 0);
    REQUIRE(nt == 0 || memcmp(tail, clean + nh, nt) == 0);

    free(tail);
    free(head);
    free(again);
    free(clean);
    free(src);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t  cut;

    if (size < 2) {
        return 0;
    }

    frames(data + 2, size - 2, caps[data[0] & 7]);
    build(data + 2, size - 2);

    cut = ((size_t) (data[0] >> 3) << 8 | data[1]) % (size - 1);
    utf8(data + 2, size - 2, cut);

    return 0;
}
