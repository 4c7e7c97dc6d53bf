/*
 * pyrepl_ws.h: the server side of the WebSocket protocol (RFC 6455) as pure
 * C with no nginx dependency: the opening handshake's key check and accept
 * value, an incremental parser of client frames that reassembles
 * fragmented messages, and a writer of server frame headers and close
 * payloads.  The nginx module owns the sockets and the buffers it reads
 * into; this file only turns bytes into messages and back, so it can be
 * unit-tested (t/unit/test_ws_parse.c, test_ws.c) and fuzzed
 * (util/fuzz/ws_fuzz.c) alone.
 *
 * No extension is negotiated (no permessage-deflate), so any RSV bit is a
 * protocol error.  The parser's only allocation is the message buffer
 * (malloc/realloc/free), which grows as payload bytes actually arrive,
 * never ahead of them on a declared length alone.
 */

#ifndef PYREPL_WS_H
#define PYREPL_WS_H

#include <stddef.h>
#include <stdint.h>


#define PR_WS_GUID            "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define PR_WS_KEY_LEN         24     /* base64 of 16 bytes */
#define PR_WS_ACCEPT_LEN      28     /* base64 of a 20-byte SHA-1 */

#define PR_WS_MAX_HEADER      14     /* 2 + 8 extended length + 4 mask */
#define PR_WS_MAX_SERVER_HDR  10     /* server frames carry no mask */
#define PR_WS_MAX_CONTROL     125    /* payload cap of control frames */
#define PR_WS_MAX_REASON      123    /* close reason after the 2-byte code */
#define PR_WS_CLOSE_FRAME_MAX (2 + PR_WS_MAX_CONTROL)

#define PR_WS_DEFAULT_MAX_FRAME    (1024 * 1024)
#define PR_WS_DEFAULT_MAX_MESSAGE  (1024 * 1024)


/* Opcodes (RFC 6455 section 5.2); 0x3-0x7 and 0xb-0xf are reserved. */
typedef enum {
    PR_WS_OP_CONT   = 0x0,
    PR_WS_OP_TEXT   = 0x1,
    PR_WS_OP_BINARY = 0x2,
    PR_WS_OP_CLOSE  = 0x8,
    PR_WS_OP_PING   = 0x9,
    PR_WS_OP_PONG   = 0xa
} pr_ws_opcode_t;

#define pr_ws_is_control(op)  (((op) & 0x8) != 0)


/*
 * Close status codes (RFC 6455 section 7.4.1 and the IANA registry).
 * NO_STATUS (1005) and ABNORMAL (1006) are reported locally and never sent
 * in a close frame; the parser rejects them on the wire.
 */
typedef enum {
    PR_WS_CLOSE_NORMAL         = 1000,
    PR_WS_CLOSE_GOING_AWAY     = 1001,
    PR_WS_CLOSE_PROTOCOL_ERROR = 1002,
    PR_WS_CLOSE_UNSUPPORTED    = 1003,
    PR_WS_CLOSE_NO_STATUS      = 1005,
    PR_WS_CLOSE_ABNORMAL       = 1006,
    PR_WS_CLOSE_INVALID_DATA   = 1007,
    PR_WS_CLOSE_POLICY         = 1008,
    PR_WS_CLOSE_TOO_BIG        = 1009,
    PR_WS_CLOSE_MANDATORY_EXT  = 1010,
    PR_WS_CLOSE_INTERNAL_ERROR = 1011
} pr_ws_close_code_t;


/*
 * Return codes of pr_ws_parse.  An error is the negated close status the
 * server should send before closing, so pr_ws_close_status(rc) gives it.
 */
#define PR_WS_FRAME            0    /* *out holds a frame or a message */
#define PR_WS_AGAIN            1    /* all input taken, need more */
#define PR_WS_PROTOCOL_ERROR  (-PR_WS_CLOSE_PROTOCOL_ERROR)    /* -1002 */
#define PR_WS_BAD_DATA        (-PR_WS_CLOSE_INVALID_DATA)      /* -1007 */
#define PR_WS_TOO_BIG         (-PR_WS_CLOSE_TOO_BIG)           /* -1009 */
#define PR_WS_NOMEM           (-PR_WS_CLOSE_INTERNAL_ERROR)    /* -1011 */

#define pr_ws_close_status(rc)  ((uint16_t) -(rc))


/*
 * What pr_ws_parse delivers: a control frame (CLOSE, PING, PONG) as soon as
 * it is complete, even between the fragments of a data message, or a whole
 * data message (TEXT, BINARY) once its final fragment has arrived.  Never
 * CONT: fragments are reassembled, so fin is always 1.
 *
 * payload points into parser-owned memory (never into the caller's input,
 * which may be released at once) and is valid until the next call of
 * pr_ws_parse or pr_ws_parser_free on the same parser.  It is unmasked.
 * It may be NULL when len is 0.  A TEXT payload is valid UTF-8.
 */
typedef struct {
    int              opcode;      /* TEXT, BINARY, CLOSE, PING or PONG */
    int              fin;         /* always 1 */
    const uint8_t   *payload;
    size_t           len;

    /* CLOSE only: the status (1005 if the payload was empty) and the
     * reason, valid UTF-8, pointing into payload */
    uint16_t         close_code;
    const uint8_t   *reason;
    size_t           reason_len;
} pr_ws_frame_t;


/*
 * Parser state, meant to be embedded in the caller's connection object.
 * Set max_frame and max_message with pr_ws_parser_init; everything else is
 * private to pyrepl_ws.c.
 */
typedef struct {
    size_t           max_frame;     /* payload cap of one data frame */
    size_t           max_message;   /* cap of a reassembled message */

    int              state;
    int              error;         /* sticky once set */
    const char      *why;           /* static text naming the error */

    uint8_t          hdr[PR_WS_MAX_HEADER];
    uint8_t          hdr_len;       /* header bytes received */
    uint8_t          hdr_need;      /* header bytes this frame needs */
    uint8_t          opcode;
    uint8_t          fin;
    uint8_t          msg_op;        /* TEXT/BINARY while one is open */
    uint8_t          msg_done;      /* msg delivered, reset on next call */

    uint64_t         frame_len;     /* payload length of current frame */
    uint64_t         frame_pos;     /* payload bytes received so far */

    uint8_t         *msg;           /* reassembly buffer (malloc) */
    size_t           msg_len;
    size_t           msg_cap;

    uint8_t          ctl[PR_WS_MAX_CONTROL];
} pr_ws_parser_t;


/*
 * pr_ws_parser_init: prepare p to read a new connection's client frames.
 * A data frame whose payload exceeds max_frame, or a message whose
 * fragments add up to more than max_message, fails with PR_WS_TOO_BIG.
 * Allocates nothing; call pr_ws_parser_free when the connection ends.
 */
void pr_ws_parser_init(pr_ws_parser_t *p, size_t max_frame,
    size_t max_message);

/* pr_ws_parser_free: release the message buffer; p may be initialised
 * again afterwards.  Safe to call twice. */
void pr_ws_parser_free(pr_ws_parser_t *p);

/*
 * pr_ws_parse: feed len bytes of client input; stops after the first frame
 * or message it completes.  The parser copies whatever it needs (partial
 * headers and payload), so buf may be reused as soon as the call returns.
 * len may be 0 (buf is then not read): that ends the lifetime of the last
 * delivered message and frees its buffer if it grew over 64 KiB, so a
 * caller whose input ran dry right after a big message can give the
 * memory back without waiting for more input.
 *
 * Returns:
 *   PR_WS_FRAME    *out is filled (see pr_ws_frame_t for its lifetime);
 *                  *consumed bytes of buf were used and the caller calls
 *                  again with the rest, which may be empty.
 *   PR_WS_AGAIN    *consumed == len: everything was taken, feed more when
 *                  it arrives.  After a CLOSE frame has been delivered the
 *                  parser discards all further input this way (RFC 6455
 *                  section 5.5.1: nothing may follow a close).
 *   PR_WS_PROTOCOL_ERROR, PR_WS_BAD_DATA, PR_WS_TOO_BIG, PR_WS_NOMEM
 *                  the connection is broken: send a close frame with
 *                  pr_ws_close_status(rc) and close.  The error is sticky:
 *                  further calls return it again with *consumed = 0.
 *                  pr_ws_parser_error(p) names the cause.
 *
 * Errors, each detected as soon as the offending byte arrives:
 *   1002  unmasked frame, RSV bit set, reserved opcode, control frame with
 *         fin = 0 or payload > 125, CONT without an open message, TEXT or
 *         BINARY while a message is open, a length not in its minimal
 *         form or with the top bit set, close payload of 1 byte or with a
 *         code that is not valid on the wire (pr_ws_close_code_valid)
 *   1007  a TEXT message (checked once reassembled) or a close reason that
 *         is not valid UTF-8
 *   1009  over max_frame or max_message
 *   1011  out of memory
 */
int pr_ws_parse(pr_ws_parser_t *p, const uint8_t *buf, size_t len,
    size_t *consumed, pr_ws_frame_t *out);

/* pr_ws_parser_error: a static string describing the parser's error, or
 * NULL if there is none; short enough to be a close reason. */
const char *pr_ws_parser_error(const pr_ws_parser_t *p);


/*
 * pr_ws_header: write the header of a server frame (never masked) to out.
 * Returns its length (2, 4 or 10), or 0 if the arguments describe no valid
 * frame: a reserved opcode, a control frame with fin = 0 or a payload over
 * 125 bytes, or payload_len >= 2^63.
 */
size_t pr_ws_header(uint8_t out[PR_WS_MAX_SERVER_HDR], int opcode, int fin,
    uint64_t payload_len);

/*
 * pr_ws_close_payload: write a close frame's payload: the code in network
 * order and the reason, cut to 123 bytes on a character boundary.  A
 * reason that is not valid UTF-8 is left out; a code a peer may not send
 * (not pr_ws_close_code_valid: 0, 1005, 1006, ...) gives an empty payload,
 * a close without a status.  Returns the payload length (0..125).
 */
size_t pr_ws_close_payload(uint8_t out[PR_WS_MAX_CONTROL], uint16_t code,
    const char *reason, size_t reason_len);

/* pr_ws_close_frame: a whole close frame (header and the payload above);
 * returns its length, at most PR_WS_CLOSE_FRAME_MAX. */
size_t pr_ws_close_frame(uint8_t out[PR_WS_CLOSE_FRAME_MAX], uint16_t code,
    const char *reason, size_t reason_len);

/* pr_ws_close_code_valid: 1 if a peer may send code in a close frame:
 * 1000-1003, 1007-1014 or 3000-4999. */
int pr_ws_close_code_valid(unsigned code);


/*
 * pr_ws_key_valid: 1 if key is a Sec-WebSocket-Key value, i.e. the base64
 * of 16 bytes: 22 characters of the base64 alphabet followed by "==".
 * The caller strips surrounding whitespace (nginx already does).
 */
int pr_ws_key_valid(const char *key, size_t len);

/*
 * pr_ws_accept_key: the Sec-WebSocket-Accept value for a client key,
 * base64(SHA-1(key + PR_WS_GUID)), as 28 characters and a NUL in out.
 * Returns 0, or -1 (out untouched) if the key is not pr_ws_key_valid.
 */
int pr_ws_accept_key(const char *client_key, size_t len,
    char out[PR_WS_ACCEPT_LEN + 1]);


/* SHA-1 (FIPS 180-4), here only for the accept key; not for security. */
typedef struct {
    uint32_t         h[5];
    uint64_t         bytes;
    uint8_t          block[64];
} pr_ws_sha1_t;

void pr_ws_sha1_init(pr_ws_sha1_t *ctx);
void pr_ws_sha1_update(pr_ws_sha1_t *ctx, const void *data, size_t len);
void pr_ws_sha1_final(pr_ws_sha1_t *ctx, uint8_t digest[20]);

/* pr_utf8_valid: 1 if p[0..len) is well-formed UTF-8 (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF). */
int pr_utf8_valid(const uint8_t *p, size_t len);

#endif /* PYREPL_WS_H */
