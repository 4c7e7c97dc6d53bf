/*
 * test_proto.c: unit tests of the frame codec (src/codec/pyrepl_proto.c):
 * round trips of every type and field kind, the length prefix and its cap,
 * each way a payload can be malformed, and the UTF-8 helpers that keep output
 * frames valid.  Prints "N passed, N failed" and exits non-zero on failure.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyrepl_proto.h"
#include "unit.h"


static int
str_eq(pr_str_t s, const char *c)
{
    return s.len == strlen(c) && memcmp(s.data, c, s.len) == 0;
}


/* Decode the single whole frame in sb; returns the codec's code. */
static int
decode_frame(msgpack_sbuffer *sb, msgpack_unpacked *up, pr_frame_t *f)
{
    int          rc;
    size_t       len;
    const char  *err;

    rc = pr_frame_peek((uint8_t *) sb->data, sb->size, PR_DEFAULT_MAX_FRAME,
                       &len);
    if (rc != PR_OK || len != sb->size) {
        return PR_INVALID;
    }

    return pr_frame_decode((uint8_t *) sb->data + PR_HEADER_LEN,
                           len - PR_HEADER_LEN, up, f, &err);
}


static void
test_round_trip_every_type(void)
{
    int               t;
    pr_frame_t        in, out;
    msgpack_sbuffer   sb;
    msgpack_unpacked  up;

    for (t = PR_T_NONE + 1; t < PR_T_MAX; t++) {
        memset(&in, 0, sizeof(in));
        in.type = (pr_type_t) t;

        msgpack_sbuffer_init(&sb);
        msgpack_unpacked_init(&up);

        CHECK(pr_frame_encode(&in, &sb) == PR_OK);
        CHECK(decode_frame(&sb, &up, &out) == PR_OK);
        CHECK((int) out.type == t);
        CHECK(out.has == 0);
        CHECK(pr_type_from_name(pr_type_name(t), strlen(pr_type_name(t)))
              == (pr_type_t) t);

        msgpack_unpacked_destroy(&up);
        msgpack_sbuffer_destroy(&sb);
    }

    CHECK(pr_type_from_name("nope", 4) == PR_T_NONE);
    CHECK(strcmp(pr_type_name(PR_T_MAX), "unknown") == 0);
}


static void
test_round_trip_fields(void)
{
    pr_str_t          tb[3] = { { "a\n", 2 }, { "", 0 }, { "\0x", 2 } };
    pr_frame_t        in, out;
    msgpack_sbuffer   sb;
    msgpack_unpacked  up;

    memset(&in, 0, sizeof(in));
    in.type = PR_T_ERROR;
    pr_set_cstr(&in, ename, "ZeroDivisionError");
    pr_set_str(&in, evalue, "bin\0ary", 7);
    pr_set_int(&in, count, 42);
    pr_set_int(&in, ms, -7);
    pr_set_int(&in, pid, INT64_MAX);
    in.traceback.items = tb;
    in.traceback.n = 3;
    in.has |= PR_BIT(traceback);

    /* the last fields are past bit 31 of "has" */
    pr_set_int(&in, quota, 5);
    in.checkpoints.items = tb;
    in.checkpoints.n = 1;
    in.has |= PR_BIT(checkpoints);

    msgpack_sbuffer_init(&sb);
    msgpack_unpacked_init(&up);

    CHECK(pr_frame_encode(&in, &sb) == PR_OK);
    CHECK(decode_frame(&sb, &up, &out) == PR_OK);
    CHECK(out.type == PR_T_ERROR);
    CHECK(out.has == in.has);
    CHECK(str_eq(out.ename, "ZeroDivisionError"));
    CHECK(out.evalue.len == 7 && memcmp(out.evalue.data, "bin\0ary", 7) == 0);
    CHECK(out.count == 42);
    CHECK(out.ms == -7);
    CHECK(out.pid == INT64_MAX);
    CHECK(out.traceback.n == 3);
    CHECK(out.traceback.n == 3 && str_eq(out.traceback.items[0], "a\n"));
    CHECK(out.traceback.n == 3 && out.traceback.items[1].len == 0);
    CHECK(out.traceback.n == 3 && out.traceback.items[2].len == 2);
    CHECK(out.quota == 5);
    CHECK(pr_has(&out, checkpoints) && out.checkpoints.n == 1
          && str_eq(out.checkpoints.items[0], "a\n"));
    CHECK(!pr_has(&out, code));
    CHECK(pr_has(&out, ename));

    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&sb);
}


static void
test_two_frames_in_one_buffer(void)
{
    size_t            len1, len2;
    pr_frame_t        f;
    msgpack_sbuffer   sb;

    msgpack_sbuffer_init(&sb);

    memset(&f, 0, sizeof(f));
    f.type = PR_T_STDOUT;
    pr_set_cstr(&f, text, "hello");
    CHECK(pr_frame_encode(&f, &sb) == PR_OK);

    f.type = PR_T_COMPLETE;
    CHECK(pr_frame_encode(&f, &sb) == PR_OK);

    CHECK(pr_frame_peek((uint8_t *) sb.data, sb.size, 1024, &len1) == PR_OK);
    CHECK(len1 < sb.size);
    CHECK(pr_frame_peek((uint8_t *) sb.data + len1, sb.size - len1, 1024,
                        &len2) == PR_OK);
    CHECK(len1 + len2 == sb.size);

    msgpack_sbuffer_destroy(&sb);
}


static void
test_peek(void)
{
    size_t   len;
    uint8_t  buf[8] = { 0, 0, 0, 3, 0x80, 0, 0, 0 };

    CHECK(pr_frame_peek(buf, 0, 100, &len) == PR_AGAIN);
    CHECK(pr_frame_peek(buf, 3, 100, &len) == PR_AGAIN);
    CHECK(pr_frame_peek(buf, 6, 100, &len) == PR_AGAIN);
    CHECK(pr_frame_peek(buf, 7, 100, &len) == PR_OK && len == 7);
    CHECK(pr_frame_peek(buf, 8, 100, &len) == PR_OK && len == 7);
    CHECK(pr_frame_peek(buf, 4, 2, &len) == PR_TOO_LARGE);

    buf[0] = 0xff;
    CHECK(pr_frame_peek(buf, 4, PR_DEFAULT_MAX_FRAME, &len) == PR_TOO_LARGE);
}


static void
check_invalid(const char *what, const uint8_t *p, size_t n)
{
    pr_frame_t        f;
    const char       *err;
    msgpack_unpacked  up;

    err = NULL;
    msgpack_unpacked_init(&up);

    if (pr_frame_decode(p, n, &up, &f, &err) == PR_INVALID && err != NULL) {
        passed++;
    } else {
        failed++;
        fprintf(stderr, "decoding %s was not refused\n", what);
    }

    msgpack_unpacked_destroy(&up);
}


static void
test_malformed_payloads(void)
{
    /* {"t": "run"} is 0x81 0xa1 't' 0xa3 'r' 'u' 'n' */
    static const uint8_t  ok[] = { 0x81, 0xa1, 't', 0xa3, 'r', 'u', 'n' };
    static const uint8_t  trailing[] = { 0x81, 0xa1, 't', 0xa3, 'r', 'u',
                                         'n', 0xc0 };
    static const uint8_t  array[] = { 0x91, 0x01 };
    static const uint8_t  intkey[] = { 0x81, 0x01, 0x02 };
    static const uint8_t  notype[] = { 0x81, 0xa4, 'c', 'o', 'd', 'e',
                                       0xa1, 'x' };
    static const uint8_t  badtype[] = { 0x81, 0xa1, 't', 0xa3, 'x', 'y',
                                        'z' };
    static const uint8_t  inttype[] = { 0x81, 0xa1, 't', 0x05 };
    static const uint8_t  truncated[] = { 0x82, 0xa1, 't', 0xa3, 'r' };
    static const uint8_t  wrongkind[] = { 0x82, 0xa1, 't', 0xa3, 'r', 'u',
                                          'n', 0xa4, 'c', 'o', 'd', 'e',
                                          0x07 };
    static const uint8_t  wrongint[] = { 0x82, 0xa1, 't', 0xa3, 'r', 'u',
                                         'n', 0xa5, 'c', 'o', 'u', 'n', 't',
                                         0xa1, 'x' };
    static const uint8_t  hugeint[] = { 0x82, 0xa1, 't', 0xa3, 'r', 'u', 'n',
                                        0xa5, 'c', 'o', 'u', 'n', 't', 0xcf,
                                        0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                        0xff, 0xff };
    static const uint8_t  tbnotarr[] = { 0x82, 0xa1, 't', 0xa3, 'r', 'u',
                                         'n', 0xa9, 't', 'r', 'a', 'c', 'e',
                                         'b', 'a', 'c', 'k', 0x01 };
    static const uint8_t  tbint[] = { 0x82, 0xa1, 't', 0xa3, 'r', 'u', 'n',
                                      0xa9, 't', 'r', 'a', 'c', 'e', 'b',
                                      'a', 'c', 'k', 0x91, 0x01 };
    static const uint8_t  unknown_key[] = { 0x82, 0xa1, 't', 0xa3, 'r', 'u',
                                            'n', 0xa3, 'z', 'z', 'z', 0x01 };

    pr_frame_t        f;
    const char       *err;
    msgpack_unpacked  up;

    msgpack_unpacked_init(&up);
    CHECK(pr_frame_decode(ok, sizeof(ok), &up, &f, &err) == PR_OK);
    CHECK(f.type == PR_T_RUN);
    msgpack_unpacked_destroy(&up);

    msgpack_unpacked_init(&up);
    CHECK(pr_frame_decode(unknown_key, sizeof(unknown_key), &up, &f, &err)
          == PR_OK);
    CHECK(f.type == PR_T_RUN && f.has == 0);
    msgpack_unpacked_destroy(&up);

    check_invalid("an empty payload", ok, 0);
    check_invalid("trailing bytes", trailing, sizeof(trailing));
    check_invalid("an array", array, sizeof(array));
    check_invalid("an integer key", intkey, sizeof(intkey));
    check_invalid("a map without \"t\"", notype, sizeof(notype));
    check_invalid("an unknown type", badtype, sizeof(badtype));
    check_invalid("an integer type", inttype, sizeof(inttype));
    check_invalid("a truncated map", truncated, sizeof(truncated));
    check_invalid("an int where a str goes", wrongkind, sizeof(wrongkind));
    check_invalid("a str where an int goes", wrongint, sizeof(wrongint));
    check_invalid("an int over INT64_MAX", hugeint, sizeof(hugeint));
    check_invalid("a traceback that is no array", tbnotarr,
                  sizeof(tbnotarr));
    check_invalid("a traceback of ints", tbint, sizeof(tbint));
}


static void
test_encode_refuses_unknown_types(void)
{
    pr_frame_t       f;
    msgpack_sbuffer  sb;

    msgpack_sbuffer_init(&sb);
    memset(&f, 0, sizeof(f));

    CHECK(pr_frame_encode(&f, &sb) == PR_INVALID);
    f.type = PR_T_MAX;
    CHECK(pr_frame_encode(&f, &sb) == PR_INVALID);
    CHECK(sb.size == 0);

    msgpack_sbuffer_destroy(&sb);
}


static void
test_utf8_boundary(void)
{
    const uint8_t  *s;

    s = (const uint8_t *) "abc";
    CHECK(pr_utf8_boundary(s, 3) == 3);
    CHECK(pr_utf8_boundary(s, 0) == 0);

    s = (const uint8_t *) "a\xc3\xa9";              /* a é */
    CHECK(pr_utf8_boundary(s, 3) == 3);
    CHECK(pr_utf8_boundary(s, 2) == 1);

    s = (const uint8_t *) "\xf0\x9f\x90\x8d";       /* U+1F40D */
    CHECK(pr_utf8_boundary(s, 4) == 4);
    CHECK(pr_utf8_boundary(s, 3) == 0);
    CHECK(pr_utf8_boundary(s, 2) == 0);
    CHECK(pr_utf8_boundary(s, 1) == 0);

    s = (const uint8_t *) "ab\xff";                 /* invalid, not partial */
    CHECK(pr_utf8_boundary(s, 3) == 3);
}


static void
test_utf8_sanitize(void)
{
    size_t   n;
    uint8_t  out[64];

    n = pr_utf8_sanitize((const uint8_t *) "h\xc3\xa9!", 4, out);
    CHECK(n == 4 && memcmp(out, "h\xc3\xa9!", 4) == 0);

    n = pr_utf8_sanitize((const uint8_t *) "a\xff" "b", 3, out);
    CHECK(n == 5 && memcmp(out, "a\xef\xbf\xbd" "b", 5) == 0);

    /* overlong "/" and an encoded surrogate are invalid too */
    n = pr_utf8_sanitize((const uint8_t *) "\xc0\xaf", 2, out);
    CHECK(n == 6);
    n = pr_utf8_sanitize((const uint8_t *) "\xed\xa0\x80", 3, out);
    CHECK(n == 9);

    /* a truncated character at the end */
    n = pr_utf8_sanitize((const uint8_t *) "x\xe2\x9c", 3, out);
    CHECK(n == 7 && out[0] == 'x');
}


int
main(void)
{
    test_round_trip_every_type();
    test_round_trip_fields();
    test_two_frames_in_one_buffer();
    test_peek();
    test_malformed_payloads();
    test_encode_refuses_unknown_types();
    test_utf8_boundary();
    test_utf8_sanitize();

    printf("%d passed, %d failed\n", passed, failed);

    return failed ? 1 : 0;
}
