/*
 * pyrepl_ws.c: the WebSocket protocol core declared in pyrepl_ws.h: SHA-1
 * and base64 for the handshake, the client frame parser and message
 * assembler, the server frame writer and a strict UTF-8 check.  No I/O, no
 * global state, libc only, so the nginx module, the unit tests and the
 * fuzz target share one implementation.
 *
 * The parser is a two-state machine (header, payload) driven one input
 * byte range at a time.  Header bytes are kept in the parser until the
 * header is complete and every field is checked as soon as its byte is
 * there, so a byte-at-a-time feed fails at the same byte as a whole one.
 * Payload bytes are unmasked while they are copied: control payloads into
 * a fixed 125-byte array, data payloads onto the end of the message buffer,
 * so a ping between two fragments never disturbs the message being built.
 */

#include <stdlib.h>
#include <string.h>

#include "pyrepl_ws.h"


#define PR_WS_ST_HEADER    0
#define PR_WS_ST_PAYLOAD   1
#define PR_WS_ST_CLOSED    2    /* a close was delivered: discard input */

#define PR_WS_MIN_ALLOC    4096
#define PR_WS_KEEP_BUFFER  (64 * 1024)   /* larger buffers are freed */

#define pr_ws_rol(x, n)    (((x) << (n)) | ((x) >> (32 - (n))))


static int pr_ws_header_byte(pr_ws_parser_t *p);
static int pr_ws_length(pr_ws_parser_t *p);
static int pr_ws_payload(pr_ws_parser_t *p, const uint8_t *src, size_t n);
static int pr_ws_frame_end(pr_ws_parser_t *p, pr_ws_frame_t *out);
static void pr_ws_message_reset(pr_ws_parser_t *p);
static int pr_ws_fail(pr_ws_parser_t *p, int rc, const char *why);
static void pr_ws_sha1_block(uint32_t h[5], const uint8_t *blk);
static void pr_ws_base64_digest(const uint8_t src[20],
    char dst[PR_WS_ACCEPT_LEN]);


static const char  pr_ws_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";


void
pr_ws_parser_init(pr_ws_parser_t *p, size_t max_frame, size_t max_message)
{
    memset(p, 0, sizeof(pr_ws_parser_t));

    p->max_frame = max_frame;
    p->max_message = max_message;
    p->state = PR_WS_ST_HEADER;
    p->hdr_need = 2;
}


void
pr_ws_parser_free(pr_ws_parser_t *p)
{
    free(p->msg);

    p->msg = NULL;
    p->msg_len = 0;
    p->msg_cap = 0;
}


const char *
pr_ws_parser_error(const pr_ws_parser_t *p)
{
    return p->error ? p->why : NULL;
}


int
pr_ws_parse(pr_ws_parser_t *p, const uint8_t *buf, size_t len,
    size_t *consumed, pr_ws_frame_t *out)
{
    int     rc;
    size_t  pos, n;

    *consumed = 0;

    if (p->error) {
        return p->error;
    }

    if (p->state == PR_WS_ST_CLOSED) {
        *consumed = len;
        return PR_WS_AGAIN;
    }

    if (p->msg_done) {
        /* the caller is done with the message delivered last time */
        pr_ws_message_reset(p);
    }

    pos = 0;

    for ( ;; ) {

        if (p->state == PR_WS_ST_HEADER) {

            while (p->hdr_len < p->hdr_need) {
                if (pos == len) {
                    *consumed = pos;
                    return PR_WS_AGAIN;
                }

                p->hdr[p->hdr_len++] = buf[pos++];

                rc = pr_ws_header_byte(p);
                if (rc != PR_WS_AGAIN) {
                    goto failed;
                }
            }

            p->state = PR_WS_ST_PAYLOAD;
        }

        if (p->frame_pos < p->frame_len) {
            if (pos == len) {
                *consumed = pos;
                return PR_WS_AGAIN;
            }

            n = len - pos;
            if (n > p->frame_len - p->frame_pos) {
                n = (size_t) (p->frame_len - p->frame_pos);
            }

            rc = pr_ws_payload(p, buf + pos, n);
            if (rc != PR_WS_AGAIN) {
                goto failed;
            }

            pos += n;

            if (p->frame_pos < p->frame_len) {
                *consumed = pos;
                return PR_WS_AGAIN;
            }
        }

        /* the frame is complete: the next byte starts a new header */

        p->state = PR_WS_ST_HEADER;
        p->hdr_len = 0;
        p->hdr_need = 2;

        rc = pr_ws_frame_end(p, out);

        if (rc == PR_WS_FRAME) {
            *consumed = pos;
            return PR_WS_FRAME;
        }

        if (rc != PR_WS_AGAIN) {
            goto failed;
        }

        /* a non-final fragment: go on with the next frame */
    }

failed:

    *consumed = pos;

    return rc;
}


/*
 * Check the header byte just stored at hdr[hdr_len - 1].  Returns
 * PR_WS_AGAIN to go on, or an error.
 */
static int
pr_ws_header_byte(pr_ws_parser_t *p)
{
    uint8_t  b, op, len7;

    b = p->hdr[p->hdr_len - 1];

    if (p->hdr_len == 1) {
        op = b & 0x0f;

        if (b & 0x70) {
            return pr_ws_fail(p, PR_WS_PROTOCOL_ERROR, "reserved bits set");
        }

        switch (op) {

        case PR_WS_OP_CONT:
            if (p->msg_op == 0) {
                return pr_ws_fail(p, PR_WS_PROTOCOL_ERROR,
                                  "continuation without a message");
            }
            break;

        case PR_WS_OP_TEXT:
        case PR_WS_OP_BINARY:
            if (p->msg_op != 0) {
                return pr_ws_fail(p, PR_WS_PROTOCOL_ERROR,
                                  "new message inside a fragmented one");
            }
            break;

        case PR_WS_OP_CLOSE:
        case PR_WS_OP_PING:
        case PR_WS_OP_PONG:
            if (!(b & 0x80)) {
                return pr_ws_fail(p, PR_WS_PROTOCOL_ERROR,
                                  "fragmented control frame");
            }
            break;

        default:
            return pr_ws_fail(p, PR_WS_PROTOCOL_ERROR, "reserved opcode");
        }

        p->fin = (b & 0x80) ? 1 : 0;
        p->opcode = op;

        return PR_WS_AGAIN;
    }

    if (p->hdr_len == 2) {
        len7 = b & 0x7f;

        if (!(b & 0x80)) {
            return pr_ws_fail(p, PR_WS_PROTOCOL_ERROR,
                              "unmasked client frame");
        }

        if (pr_ws_is_control(p->opcode) && len7 > PR_WS_MAX_CONTROL) {
            return pr_ws_fail(p, PR_WS_PROTOCOL_ERROR,
                              "control frame over 125 bytes");
        }

        p->hdr_need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
    }

    if (p->hdr_len == p->hdr_need - 4) {
        /* the length is complete; the 4 mask bytes follow */
        return pr_ws_length(p);
    }

    return PR_WS_AGAIN;
}


/* Decode and check the payload length of a complete length field. */
static int
pr_ws_length(pr_ws_parser_t *p)
{
    int       i;
    uint64_t  n;

    n = p->hdr[1] & 0x7f;

    if (n == 126) {
        n = ((uint64_t) p->hdr[2] << 8) | p->hdr[3];

        if (n < 126) {
            return pr_ws_fail(p, PR_WS_PROTOCOL_ERROR,
                              "length not in minimal form");
        }

    } else if (n == 127) {
        n = 0;
        for (i = 2; i < 10; i++) {
            n = (n << 8) | p->hdr[i];
        }

        if (n >> 63) {
            return pr_ws_fail(p, PR_WS_PROTOCOL_ERROR,
                              "64-bit length with the top bit set");
        }

        if (n <= 0xffff) {
            return pr_ws_fail(p, PR_WS_PROTOCOL_ERROR,
                              "length not in minimal form");
        }
    }

    if (!pr_ws_is_control(p->opcode)) {
        if (n > p->max_frame) {
            return pr_ws_fail(p, PR_WS_TOO_BIG, "frame too big");
        }

        /* msg_len <= max_message always holds */
        if (n > p->max_message - p->msg_len) {
            return pr_ws_fail(p, PR_WS_TOO_BIG, "message too big");
        }
    }

    p->frame_len = n;
    p->frame_pos = 0;

    return PR_WS_AGAIN;
}


/*
 * Unmask and store n payload bytes of the current frame, n no more than
 * the frame still lacks.  The message buffer grows geometrically with the
 * bytes received, capped at max_message, which pr_ws_length has checked.
 */
static int
pr_ws_payload(pr_ws_parser_t *p, const uint8_t *src, size_t n)
{
    size_t          i, need, cap, off;
    uint8_t        *dst;
    const uint8_t  *mask;

    mask = p->hdr + p->hdr_need - 4;
    off = (size_t) (p->frame_pos & 3);

    if (pr_ws_is_control(p->opcode)) {
        dst = p->ctl + p->frame_pos;

    } else {
        need = p->msg_len + n;

        if (need > p->msg_cap) {
            cap = p->msg_cap * 2;

            if (cap < PR_WS_MIN_ALLOC) {
                cap = PR_WS_MIN_ALLOC;
            }

            if (cap < need) {
                cap = need;
            }

            if (cap > p->max_message) {
                cap = p->max_message;
            }

            dst = realloc(p->msg, cap);
            if (dst == NULL) {
                return pr_ws_fail(p, PR_WS_NOMEM, "out of memory");
            }

            p->msg = dst;
            p->msg_cap = cap;
        }

        dst = p->msg + p->msg_len;
        p->msg_len += n;
    }

    for (i = 0; i < n; i++) {
        dst[i] = src[i] ^ mask[(off + i) & 3];
    }

    p->frame_pos += n;

    return PR_WS_AGAIN;
}


/*
 * A frame is complete.  Returns PR_WS_FRAME with *out filled for a control
 * frame or the last fragment of a message, PR_WS_AGAIN for an earlier
 * fragment, or an error.
 */
static int
pr_ws_frame_end(pr_ws_parser_t *p, pr_ws_frame_t *out)
{
    size_t  len;

    memset(out, 0, sizeof(pr_ws_frame_t));
    out->fin = 1;

    if (pr_ws_is_control(p->opcode)) {
        len = (size_t) p->frame_len;

        out->opcode = p->opcode;
        out->payload = p->ctl;
        out->len = len;

        if (p->opcode != PR_WS_OP_CLOSE) {
            return PR_WS_FRAME;
        }

        if (len == 1) {
            return pr_ws_fail(p, PR_WS_PROTOCOL_ERROR,
                              "close payload of 1 byte");
        }

        if (len == 0) {
            out->close_code = PR_WS_CLOSE_NO_STATUS;

        } else {
            out->close_code = (uint16_t) ((p->ctl[0] << 8) | p->ctl[1]);

            if (!pr_ws_close_code_valid(out->close_code)) {
                return pr_ws_fail(p, PR_WS_PROTOCOL_ERROR,
                                  "invalid close code");
            }

            if (!pr_utf8_valid(p->ctl + 2, len - 2)) {
                return pr_ws_fail(p, PR_WS_BAD_DATA,
                                  "close reason not UTF-8");
            }

            out->reason = p->ctl + 2;
            out->reason_len = len - 2;
        }

        p->state = PR_WS_ST_CLOSED;

        return PR_WS_FRAME;
    }

    if (p->opcode != PR_WS_OP_CONT) {
        p->msg_op = p->opcode;
    }

    if (!p->fin) {
        return PR_WS_AGAIN;
    }

    if (p->msg_op == PR_WS_OP_TEXT && !pr_utf8_valid(p->msg, p->msg_len)) {
        return pr_ws_fail(p, PR_WS_BAD_DATA, "text message not UTF-8");
    }

    out->opcode = p->msg_op;
    out->payload = p->msg;
    out->len = p->msg_len;

    p->msg_done = 1;

    return PR_WS_FRAME;
}


static void
pr_ws_message_reset(pr_ws_parser_t *p)
{
    p->msg_len = 0;
    p->msg_op = 0;
    p->msg_done = 0;

    if (p->msg_cap > PR_WS_KEEP_BUFFER) {
        /* do not hold on to the memory of one large message */
        pr_ws_parser_free(p);
    }
}


static int
pr_ws_fail(pr_ws_parser_t *p, int rc, const char *why)
{
    p->error = rc;
    p->why = why;

    return rc;
}


int
pr_ws_close_code_valid(unsigned code)
{
    return (code >= 1000 && code <= 1003)
           || (code >= 1007 && code <= 1014)
           || (code >= 3000 && code <= 4999);
}


size_t
pr_ws_header(uint8_t out[PR_WS_MAX_SERVER_HDR], int opcode, int fin,
    uint64_t payload_len)
{
    int  i;

    switch (opcode) {

    case PR_WS_OP_CONT:
    case PR_WS_OP_TEXT:
    case PR_WS_OP_BINARY:
        break;

    case PR_WS_OP_CLOSE:
    case PR_WS_OP_PING:
    case PR_WS_OP_PONG:
        if (!fin || payload_len > PR_WS_MAX_CONTROL) {
            return 0;
        }
        break;

    default:
        return 0;
    }

    if (payload_len >> 63) {
        return 0;
    }

    out[0] = (uint8_t) ((fin ? 0x80 : 0) | opcode);

    if (payload_len < 126) {
        out[1] = (uint8_t) payload_len;
        return 2;
    }

    if (payload_len <= 0xffff) {
        out[1] = 126;
        out[2] = (uint8_t) (payload_len >> 8);
        out[3] = (uint8_t) payload_len;
        return 4;
    }

    out[1] = 127;
    for (i = 0; i < 8; i++) {
        out[2 + i] = (uint8_t) (payload_len >> (56 - 8 * i));
    }

    return 10;
}


size_t
pr_ws_close_payload(uint8_t out[PR_WS_MAX_CONTROL], uint16_t code,
    const char *reason, size_t reason_len)
{
    size_t          n;
    const uint8_t  *r;

    if (!pr_ws_close_code_valid(code)) {
        return 0;
    }

    out[0] = (uint8_t) (code >> 8);
    out[1] = (uint8_t) code;

    r = (const uint8_t *) reason;
    n = (reason == NULL) ? 0 : reason_len;

    if (n > PR_WS_MAX_REASON) {
        /* back off to the lead byte of a character cut in two */
        n = PR_WS_MAX_REASON;
        while (n > 0 && (r[n] & 0xc0) == 0x80) {
            n--;
        }
    }

    if (n == 0 || !pr_utf8_valid(r, n)) {
        return 2;
    }

    memcpy(out + 2, r, n);

    return 2 + n;
}


size_t
pr_ws_close_frame(uint8_t out[PR_WS_CLOSE_FRAME_MAX], uint16_t code,
    const char *reason, size_t reason_len)
{
    size_t  n;

    n = pr_ws_close_payload(out + 2, code, reason, reason_len);

    out[0] = 0x80 | PR_WS_OP_CLOSE;
    out[1] = (uint8_t) n;

    return 2 + n;
}


int
pr_ws_key_valid(const char *key, size_t len)
{
    size_t  i;

    if (key == NULL || len != PR_WS_KEY_LEN) {
        return 0;
    }

    for (i = 0; i < PR_WS_KEY_LEN - 2; i++) {
        if (key[i] == '\0' || strchr(pr_ws_b64, key[i]) == NULL) {
            return 0;
        }
    }

    return key[22] == '=' && key[23] == '=';
}


int
pr_ws_accept_key(const char *client_key, size_t len,
    char out[PR_WS_ACCEPT_LEN + 1])
{
    uint8_t       digest[20];
    pr_ws_sha1_t  ctx;

    if (!pr_ws_key_valid(client_key, len)) {
        return -1;
    }

    pr_ws_sha1_init(&ctx);
    pr_ws_sha1_update(&ctx, client_key, len);
    pr_ws_sha1_update(&ctx, PR_WS_GUID, sizeof(PR_WS_GUID) - 1);
    pr_ws_sha1_final(&ctx, digest);

    pr_ws_base64_digest(digest, out);
    out[PR_WS_ACCEPT_LEN] = '\0';

    return 0;
}


/*
 * base64 of a 20-byte SHA-1 digest: six 3-byte groups, then a 2-byte tail
 * that gives three characters and one "=".
 */
static void
pr_ws_base64_digest(const uint8_t src[20], char dst[PR_WS_ACCEPT_LEN])
{
    int       i;
    uint32_t  v;

    for (i = 0; i < 7; i++) {
        v = ((uint32_t) src[3 * i] << 16) | ((uint32_t) src[3 * i + 1] << 8);
        if (i < 6) {
            v |= src[3 * i + 2];
        }

        dst[4 * i] = pr_ws_b64[(v >> 18) & 0x3f];
        dst[4 * i + 1] = pr_ws_b64[(v >> 12) & 0x3f];
        dst[4 * i + 2] = pr_ws_b64[(v >> 6) & 0x3f];
        dst[4 * i + 3] = (i < 6) ? pr_ws_b64[v & 0x3f] : '=';
    }
}


void
pr_ws_sha1_init(pr_ws_sha1_t *ctx)
{
    ctx->h[0] = 0x67452301;
    ctx->h[1] = 0xefcdab89;
    ctx->h[2] = 0x98badcfe;
    ctx->h[3] = 0x10325476;
    ctx->h[4] = 0xc3d2e1f0;
    ctx->bytes = 0;
}


void
pr_ws_sha1_update(pr_ws_sha1_t *ctx, const void *data, size_t len)
{
    size_t          used, n;
    const uint8_t  *p;

    p = data;
    used = (size_t) (ctx->bytes & 63);
    ctx->bytes += len;

    if (used) {
        n = 64 - used;
        if (n > len) {
            n = len;
        }

        memcpy(ctx->block + used, p, n);
        p += n;
        len -= n;

        if (used + n < 64) {
            return;
        }

        pr_ws_sha1_block(ctx->h, ctx->block);
    }

    while (len >= 64) {
        pr_ws_sha1_block(ctx->h, p);
        p += 64;
        len -= 64;
    }

    if (len) {
        memcpy(ctx->block, p, len);
    }
}


void
pr_ws_sha1_final(pr_ws_sha1_t *ctx, uint8_t digest[20])
{
    int       i;
    size_t    used;
    uint64_t  bits;

    bits = ctx->bytes * 8;
    used = (size_t) (ctx->bytes & 63);

    ctx->block[used++] = 0x80;

    if (used > 56) {
        memset(ctx->block + used, 0, 64 - used);
        pr_ws_sha1_block(ctx->h, ctx->block);
        used = 0;
    }

    memset(ctx->block + used, 0, 56 - used);

    for (i = 0; i < 8; i++) {
        ctx->block[56 + i] = (uint8_t) (bits >> (56 - 8 * i));
    }

    pr_ws_sha1_block(ctx->h, ctx->block);

    for (i = 0; i < 20; i++) {
        digest[i] = (uint8_t) (ctx->h[i / 4] >> (24 - 8 * (i % 4)));
    }
}


static void
pr_ws_sha1_block(uint32_t h[5], const uint8_t *blk)
{
    int       i;
    uint32_t  w[80], a, b, c, d, e, f, k, t;

    for (i = 0; i < 16; i++) {
        w[i] = ((uint32_t) blk[4 * i] << 24)
               | ((uint32_t) blk[4 * i + 1] << 16)
               | ((uint32_t) blk[4 * i + 2] << 8)
               | (uint32_t) blk[4 * i + 3];
    }

    for (i = 16; i < 80; i++) {
        t = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16];
        w[i] = pr_ws_rol(t, 1);
    }

    a = h[0];
    b = h[1];
    c = h[2];
    d = h[3];
    e = h[4];

    for (i = 0; i < 80; i++) {
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5a827999;

        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ed9eba1;

        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8f1bbcdc;

        } else {
            f = b ^ c ^ d;
            k = 0xca62c1d6;
        }

        t = pr_ws_rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = pr_ws_rol(b, 30);
        b = a;
        a = t;
    }

    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}


int
pr_utf8_valid(const uint8_t *p, size_t len)
{
    size_t    i, n, k;
    uint8_t   c, lo, hi;
    uint64_t  w;

    i = 0;

    while (i < len) {

        /* skip ASCII eight bytes at a time */
        while (len - i >= 8) {
            memcpy(&w, p + i, 8);
            if (w & 0x8080808080808080ULL) {
                break;
            }
            i += 8;
        }

        if (i == len) {
            break;
        }

        c = p[i];

        if (c < 0x80) {
            i++;
            continue;
        }

        /* the sequence length and the range of its second byte, which
         * excludes overlong forms, surrogates and code points > U+10FFFF */
        lo = 0x80;
        hi = 0xbf;

        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;

        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            if (c == 0xe0) {
                lo = 0xa0;
            } else if (c == 0xed) {
                hi = 0x9f;
            }

        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            if (c == 0xf0) {
                lo = 0x90;
            } else if (c == 0xf4) {
                hi = 0x8f;
            }

        } else {
            return 0;
        }

        if (len - i - 1 < n) {
            return 0;
        }

        if (p[i + 1] < lo || p[i + 1] > hi) {
            return 0;
        }

        for (k = 2; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80) {
                return 0;
            }
        }

        i += n + 1;
    }

    return 1;
}
