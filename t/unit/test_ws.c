/*
 * test_ws.c: unit tests of the WebSocket core (src/codec/pyrepl_ws.c)
 * around the frame parser: SHA-1 against FIPS vectors, the handshake key
 * and accept value (RFC 6455 section 1.3), the server frame writer and
 * close payloads (its frames go back through the parser, ws_stream.h),
 * and the UTF-8 check.  The parser is test_ws_parse.c's.  Prints "N
 * passed, N failed" and exits non-zero on failure.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyrepl_ws.h"
#include "unit.h"
#include "ws_stream.h"


static void
hex(const uint8_t *d, size_t n, char *out)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        sprintf(out + 2 * i, "%02x", d[i]);
    }
}


static int
sha1_is(const void *data, size_t len, const char *want)
{
    char          got[41];
    uint8_t       digest[20];
    pr_ws_sha1_t  ctx;

    pr_ws_sha1_init(&ctx);
    pr_ws_sha1_update(&ctx, data, len);
    pr_ws_sha1_final(&ctx, digest);
    hex(digest, 20, got);

    return strcmp(got, want) == 0;
}


static void
test_sha1(void)
{
    char          got[41], *a;
    size_t        i;
    uint8_t       digest[20];
    pr_ws_sha1_t  ctx;

    /* FIPS 180 examples */
    CHECK(sha1_is("abc", 3, "a9993e364706816aba3e25717850c26c9cd0d89d"));
    CHECK(sha1_is("", 0, "da39a3ee5e6b4b0d3255bfef95601890afd80709"));
    CHECK(sha1_is("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                  56, "84983e441c3bd26ebaae4aa1f95129e5e54670f1"));
    CHECK(sha1_is("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
                  "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
                  112, "a49b2446a02c645bf419f995b67091253a04a259"));

    /* padding boundaries: 55, 56, 63, 64, 65, 119, 120 bytes of 'a' */
    a = malloc(1000000);
    if (a == NULL) {
        exit(2);
    }
    memset(a, 'a', 1000000);

    CHECK(sha1_is(a, 55, "c1c8bbdc22796e28c0e15163d20899b65621d65a"));
    CHECK(sha1_is(a, 56, "c2db330f6083854c99d4b5bfb6e8f29f201be699"));
    CHECK(sha1_is(a, 63, "03f09f5b158a7a8cdad920bddc29b81c18a551f5"));
    CHECK(sha1_is(a, 64, "0098ba824b5c16427bd7a1122a5a442a25ec644d"));
    CHECK(sha1_is(a, 65, "11655326c708d70319be2610e8a57d9a5b959d3b"));
    CHECK(sha1_is(a, 119, "ee971065aaa017e0632a8ca6c77bb3bf8b1dfc56"));
    CHECK(sha1_is(a, 120, "f34c1488385346a55709ba056ddd08280dd4c6d6"));

    /* one million 'a', whole and in odd-sized updates */
    CHECK(sha1_is(a, 1000000, "34aa973cd4c4daa4f61eeb2bdbad27316534016f"));

    pr_ws_sha1_init(&ctx);
    for (i = 0; i < 1000000; i += 7) {
        pr_ws_sha1_update(&ctx, a + i, 1000000 - i < 7 ? 1000000 - i : 7);
    }
    pr_ws_sha1_final(&ctx, digest);
    hex(digest, 20, got);
    CHECK(strcmp(got, "34aa973cd4c4daa4f61eeb2bdbad27316534016f") == 0);

    free(a);
}


static void
test_handshake(void)
{
    char         out[PR_WS_ACCEPT_LEN + 1];
    const char  *k;

    /* RFC 6455 section 1.3 */
    k = "dGhlIHNhbXBsZSBub25jZQ==";
    CHECK(pr_ws_key_valid(k, strlen(k)));
    CHECK(pr_ws_accept_key(k, strlen(k), out) == 0);
    CHECK(strcmp(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);

    /* RFC 6455 section 4.2.1 and 4.1 example keys */
    k = "x3JJHMbDL1EzLkh9GBhXDw==";
    CHECK(pr_ws_accept_key(k, strlen(k), out) == 0);
    CHECK(strcmp(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=") == 0);

    k = "AQIDBAUGBwgJCgsMDQ4PEC==";                 /* every alphabet range */
    CHECK(pr_ws_key_valid(k, strlen(k)));
    k = "ab+/01234567890zZ+/xyA==";
    CHECK(pr_ws_key_valid(k, strlen(k)));

    /* not the base64 of 16 bytes */
    CHECK(!pr_ws_key_valid(NULL, 0));
    CHECK(!pr_ws_key_valid("", 0));
    k = "dGhlIHNhbXBsZSBub25jZQ=";                  /* 23 */
    CHECK(!pr_ws_key_valid(k, strlen(k)));
    k = "dGhlIHNhbXBsZSBub25jZQ===";                /* 25 */
    CHECK(!pr_ws_key_valid(k, strlen(k)));
    k = "dGhlIHNhbXBsZSBub25jZQ==";
    CHECK(!pr_ws_key_valid(k, 23));
    k = "dGhlIHNhbXBsZSBub25jZQAA";                 /* no padding */
    CHECK(!pr_ws_key_valid(k, strlen(k)));
    k = "dGhlIHNhbXBsZSBub25jZ===";                 /* 15 bytes */
    CHECK(!pr_ws_key_valid(k, strlen(k)));
    k = "dGhlIHNhbXBsZSBub25jZQ=A";
    CHECK(!pr_ws_key_valid(k, strlen(k)));
    k = "dGhlIHNhbXBsZ-Bub25jZQ==";                 /* base64url */
    CHECK(!pr_ws_key_valid(k, strlen(k)));
    k = "dGhlIHNhbXBsZ Bub25jZQ==";
    CHECK(!pr_ws_key_valid(k, strlen(k)));
    CHECK(!pr_ws_key_valid("dGhlIHNhbXBsZ\0Bub25jZQ==", 24));

    memcpy(out, "untouched", 10);
    k = " dGhlIHNhbXBsZSBub25jZQ==";
    CHECK(pr_ws_accept_key(k, strlen(k), out) == -1);
    CHECK(strcmp(out, "untouched") == 0);
}


static int
bytes_are(const uint8_t *got, size_t n, const char *want, size_t want_len)
{
    return n == want_len && memcmp(got, want, n) == 0;
}


static void
test_writer(void)
{
    int              i;
    size_t           n, k;
    uint8_t          h[PR_WS_MAX_SERVER_HDR], cf[PR_WS_CLOSE_FRAME_MAX];
    uint8_t          pl[PR_WS_MAX_CONTROL], *payload;
    buf_t            in = { NULL, 0, 0 }, ex = { NULL, 0, 0 };
    char             reason[300];
    static const uint64_t  lens[] = { 0, 1, 125, 126, 127, 65535, 65536,
                                      70001 };

    /* RFC 6455 section 5.7, unmasked as a server sends them */
    n = pr_ws_header(h, PR_WS_OP_TEXT, 1, 5);
    CHECK(bytes_are(h, n, "\x81\x05", 2));
    n = pr_ws_header(h, PR_WS_OP_TEXT, 0, 3);
    CHECK(bytes_are(h, n, "\x01\x03", 2));
    n = pr_ws_header(h, PR_WS_OP_CONT, 1, 2);
    CHECK(bytes_are(h, n, "\x80\x02", 2));
    n = pr_ws_header(h, PR_WS_OP_PING, 1, 5);
    CHECK(bytes_are(h, n, "\x89\x05", 2));
    n = pr_ws_header(h, PR_WS_OP_PONG, 1, 125);
    CHECK(bytes_are(h, n, "\x8a\x7d", 2));
    n = pr_ws_header(h, PR_WS_OP_BINARY, 1, 256);
    CHECK(bytes_are(h, n, "\x82\x7e\x01\x00", 4));
    n = pr_ws_header(h, PR_WS_OP_BINARY, 1, 65535);
    CHECK(bytes_are(h, n, "\x82\x7e\xff\xff", 4));
    n = pr_ws_header(h, PR_WS_OP_BINARY, 1, 65536);
    CHECK(bytes_are(h, n, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10));
    n = pr_ws_header(h, PR_WS_OP_BINARY, 0, 0x7fffffffffffffffULL);
    CHECK(bytes_are(h, n, "\x02\x7f\x7f\xff\xff\xff\xff\xff\xff\xff", 10));
    n = pr_ws_header(h, PR_WS_OP_CLOSE, 1, 0);
    CHECK(bytes_are(h, n, "\x88\x00", 2));

    /* no such frame */
    CHECK(pr_ws_header(h, PR_WS_OP_PING, 1, 126) == 0);
    CHECK(pr_ws_header(h, PR_WS_OP_CLOSE, 0, 2) == 0);
    CHECK(pr_ws_header(h, PR_WS_OP_TEXT, 1, 0x8000000000000000ULL) == 0);
    CHECK(pr_ws_header(h, 3, 1, 0) == 0);
    CHECK(pr_ws_header(h, 0xb, 1, 0) == 0);
    CHECK(pr_ws_header(h, 0x81, 1, 0) == 0);
    CHECK(pr_ws_header(h, -1, 1, 0) == 0);

    /* round trip: a server header, masked as a client would, parses */
    payload = malloc(70001);
    if (payload == NULL) {
        exit(2);
    }
    for (k = 0; k < 70001; k++) {
        payload[k] = (uint8_t) (k % 251);
    }

    for (i = 0; i < (int) (sizeof(lens) / sizeof(lens[0])); i++) {
        n = pr_ws_header(h, PR_WS_OP_BINARY, 1, lens[i]);
        CHECK(n == (lens[i] < 126 ? 2u : lens[i] < 65536 ? 4u : 10u));
        h[1] |= 0x80;
        put(&in, h, n);
        put(&in, "\x01\x02\x03\x04", 4);
        for (k = 0; k < lens[i]; k++) {
            put_byte(&in, payload[k] ^ (uint8_t) (1 + (k & 3)));
        }
        ev_put(&ex, PR_WS_OP_BINARY, 0, payload, lens[i]);
    }
    ex_end(&ex, PR_WS_AGAIN);
    expect_stream("writer round trip", &in, M, M, &ex);
    free(payload);

    /* close payloads */
    n = pr_ws_close_payload(pl, 1000, "bye", 3);
    CHECK(bytes_are(pl, n, "\x03\xe8" "bye", 5));
    n = pr_ws_close_payload(pl, 1009, NULL, 0);
    CHECK(bytes_are(pl, n, "\x03\xf1", 2));
    n = pr_ws_close_payload(pl, 4321, "", 0);
    CHECK(bytes_are(pl, n, "\x10\xe1", 2));
    CHECK(pr_ws_close_payload(pl, 1005, "x", 1) == 0);
    CHECK(pr_ws_close_payload(pl, 0, NULL, 0) == 0);
    CHECK(pr_ws_close_payload(pl, 1006, "x", 1) == 0);

    /* too long: cut to 123 bytes, or before a character cut in two */
    memset(reason, 'a', sizeof(reason));
    n = pr_ws_close_payload(pl, 1011, reason, 200);
    CHECK(n == 125 && pl[2] == 'a' && pl[124] == 'a');
    n = pr_ws_close_payload(pl, 1011, reason, 123);
    CHECK(n == 125);

    memcpy(reason + 121, "\xe2\x82\xac", 3);        /* bytes 121..123 */
    n = pr_ws_close_payload(pl, 1011, reason, 124);
    CHECK(n == 2 + 121 && pl[2 + 120] == 'a');
    n = pr_ws_close_payload(pl, 1011, reason, 123);   /* ends mid-char */
    CHECK(n == 2);

    memset(reason, 'a', sizeof(reason));
    memcpy(reason + 120, "\xe2\x82\xac", 3);        /* bytes 120..122 */
    n = pr_ws_close_payload(pl, 1011, reason, 124);
    CHECK(n == 2 + 123 && memcmp(pl + 122, "\xe2\x82\xac", 3) == 0);

    /* nothing but continuation bytes: no character to keep */
    memset(reason, 0x80, sizeof(reason));
    n = pr_ws_close_payload(pl, 1011, reason, 200);
    CHECK(bytes_are(pl, n, "\x03\xf3", 2));

    /* not UTF-8: no reason */
    n = pr_ws_close_payload(pl, 1002, "bad\xff", 4);
    CHECK(bytes_are(pl, n, "\x03\xea", 2));

    /* whole close frames */
    n = pr_ws_close_frame(cf, 1002, "unmasked client frame", 21);
    CHECK(bytes_are(cf, n, "\x88\x17\x03\xea" "unmasked client frame", 25));
    n = pr_ws_close_frame(cf, 1005, "x", 1);
    CHECK(bytes_are(cf, n, "\x88\x00", 2));
    memset(reason, 'a', sizeof(reason));
    n = pr_ws_close_frame(cf, 1000, reason, sizeof(reason));
    CHECK(n == PR_WS_CLOSE_FRAME_MAX && cf[1] == PR_WS_MAX_CONTROL);

    /* the error codes are the close codes */
    CHECK(pr_ws_close_status(PR_WS_PROTOCOL_ERROR) == 1002);
    CHECK(pr_ws_close_status(PR_WS_BAD_DATA) == 1007);
    CHECK(pr_ws_close_status(PR_WS_TOO_BIG) == 1009);
    CHECK(pr_ws_close_status(PR_WS_NOMEM) == 1011);
}


static void
test_utf8_valid(void)
{
    size_t  i;
    static const struct {
        const char  *s;
        size_t       len;
        int          valid;
    } t[] = {
        { "", 0, 1 },
        { "plain ASCII, long enough for the 8-byte path", 45, 1 },
        { "\x00", 1, 1 },
        { "\x7f", 1, 1 },
        { "\xc2\x80", 2, 1 },                       /* U+0080 */
        { "\xdf\xbf", 2, 1 },                       /* U+07FF */
        { "\xe0\xa0\x80", 3, 1 },                   /* U+0800 */
        { "\xed\x9f\xbf", 3, 1 },                   /* U+D7FF */
        { "\xee\x80\x80", 3, 1 },                   /* U+E000 */
        { "\xef\xbf\xbf", 3, 1 },                   /* U+FFFF */
        { "\xf0\x90\x80\x80", 4, 1 },               /* U+10000 */
        { "\xf4\x8f\xbf\xbf", 4, 1 },               /* U+10FFFF */
        { "\xf1\x80\x80\x80", 4, 1 },               /* U+40000 */
        { "\xf3\xbf\xbf\xbf", 4, 1 },               /* U+FFFFF */
        { "\xe1\x80\x80", 3, 1 },                   /* U+1000 */
        { "12345678\xc3\xa9" "12345678", 18, 1 },
        { "\x80", 1, 0 },                           /* lone continuation */
        { "\xbf", 1, 0 },
        { "\xc0\x80", 2, 0 },                       /* overlong NUL */
        { "\xc1\xbf", 2, 0 },
        { "\xe0\x9f\xbf", 3, 0 },                   /* overlong */
        { "\xf0\x8f\xbf\xbf", 4, 0 },               /* overlong */
        { "\xed\xa0\x80", 3, 0 },                   /* U+D800 */
        { "\xed\xbf\xbf", 3, 0 },                   /* U+DFFF */
        { "\xf4\x90\x80\x80", 4, 0 },               /* U+110000 */
        { "\xf5\x80\x80\x80", 4, 0 },
        { "\xf8\x88\x80\x80\x80", 5, 0 },
        { "\xfe", 1, 0 },
        { "\xff", 1, 0 },
        { "\xc3", 1, 0 },                           /* truncated */
        { "\xe2\x82", 2, 0 },
        { "\xf0\x9f\x90", 3, 0 },
        { "\xc3\x28", 2, 0 },                       /* bad continuation */
        { "\xe2\x28\xa1", 3, 0 },
        { "\xe2\x82\x28", 3, 0 },
        { "\xf0\x90\x28\xbc", 4, 0 },
        { "\xf0\x90\x8c\x28", 4, 0 },
        { "12345678\xc3", 9, 0 },
        { "1234567\x80" "12345678", 16, 0 },
    };

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        if (pr_utf8_valid((const uint8_t *) t[i].s, t[i].len)
            != t[i].valid)
        {
            failed++;
            fprintf(stderr, "%s:%d: pr_utf8_valid case %zu wrong\n",
                    __FILE__, __LINE__, i);

        } else {
            passed++;
        }
    }

    CHECK(pr_utf8_valid(NULL, 0));
}


int
main(void)
{
    test_sha1();
    test_handshake();
    test_writer();
    test_utf8_valid();

    printf("%d passed, %d failed\n", passed, failed);

    return failed ? 1 : 0;
}
