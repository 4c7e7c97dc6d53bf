/*
 * mpjson_fuzz.c: libFuzzer target for what nginx does with a client's
 * message before any session sees it: JSON parsed by jansson with the
 * module's flags, msgpack converted by src/codec/pyrepl_mpjson.c, and the checks
 * the module makes on a run (or input) message.
 *
 * Input layout: byte 0 bit 0 picks the path, the rest is the message.
 *
 *   0, a WebSocket text frame or an HTTP body: json_loadb with
 *      JSON_REJECT_DUPLICATES (ngx_http_pyrepl_reply.c, _ws.c);
 *   1, a WebSocket binary frame ("pyrepl.msgpack"): msgpack_unpack_next
 *      and pr_msgpack_to_json (ngx_http_pyrepl_ws.c), which must accept
 *      exactly what JSON can hold (checked against an independent
 *      statement of that rule: no bin or ext, string keys under 256 bytes
 *      without NUL, valid UTF-8, finite floats, integers that fit int64,
 *      nesting up to PR_MPJSON_MAX_DEPTH).
 *
 * Whatever value results then goes through the run and input field checks
 * (restated from ngx_http_pyrepl_exec_parse and ngx_http_pyrepl_ws_message)
 * and round trips: pr_json_to_msgpack must pack it exactly when it nests no
 * deeper than PR_MPJSON_MAX_DEPTH; the packed bytes must unpack whole (if
 * msgpack-c's own depth limit allows, see MSGPACK_C_MAX_NESTING) and convert
 * back to an equal value (unless an object key is 256 bytes or
 * longer, which only the msgpack side refuses), which packs to the same
 * bytes; and json_dumps output must parse back to an equal value.
 *
 * Any broken rule aborts, which libFuzzer reports as a crash.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined -I src/codec \
 *            util/fuzz/mpjson_fuzz.c src/codec/pyrepl_mpjson.c \
 *            -ljansson -lmsgpackc
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyrepl_mpjson.h"


#define REQUIRE(cond)                                                        \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "mpjson_fuzz: %s:%d: %s\n", __FILE__, __LINE__,  \
                    #cond);                                                  \
            abort();                                                         \
        }                                                                    \
    } while (0)


/* the module's largest run timeout (pyrepl_run_timeout_max), any value */
#define RUN_TIMEOUT_MAX  3600000

/*
 * msgpack-c's unpacker refuses (MSGPACK_UNPACK_NOMEM_ERROR) more than 32
 * nested containers (its fixed parse stack), below PR_MPJSON_MAX_DEPTH.
 * Containers, not levels below the top (json_depth): "[[]]" is two.
 */
#define MSGPACK_C_MAX_NESTING  32


static char *
dup_exact(const void *p, size_t len)
{
    char  *copy;

    copy = malloc(len ? len : 1);
    REQUIRE(copy != NULL);
    if (len) {
        memcpy(copy, p, len);
    }

    return copy;
}


/*
 * The checks the module makes on a client message; returns NULL for a run
 * or input message it would accept, else why not.
 */
static const char *
check_message(json_t *msg)
{
    size_t       len;
    json_t      *code, *v, *rid;
    const char  *type, *s;

    type = json_string_value(json_object_get(msg, "type"));

    if (type != NULL && strcmp(type, "input") == 0) {
        v = json_object_get(msg, "value");
        rid = json_object_get(msg, "request_id");
        if (!json_is_string(v) || (rid && !json_is_string(rid))) {
            return "\"value\" must be a string";
        }
        return NULL;
    }

    code = json_object_get(msg, "code");
    if (code == NULL) {
        code = json_object_get(msg, "command");
    }

    if (code == NULL || !json_is_string(code)) {
        return "\"code\" must be a string";
    }

    /* the module copies the code by length: all of it must be there */
    len = json_string_length(code);
    s = json_string_value(code);
    REQUIRE(s != NULL && s[len] == '\0');

    v = json_object_get(msg, "timeout_ms");
    if (v != NULL && !json_is_null(v)
        && (!json_is_integer(v) || json_integer_value(v) < 1
            || json_integer_value(v) > RUN_TIMEOUT_MAX))
    {
        return "\"timeout_ms\" out of range";
    }

    v = json_object_get(msg, "tx_policy");
    if (v != NULL
        && !(json_is_string(v)
             && strcmp(json_string_value(v), "commit_always") == 0))
    {
        return "\"tx_policy\"";
    }

    if (json_object_get(msg, "cwd") || json_object_get(msg, "env")) {
        return "not supported";
    }

    return NULL;
}


/* The deepest nesting in j (0 for a scalar or an empty container). */
static int
json_depth(json_t *j)
{
    int          d, m;
    size_t       i;
    json_t      *v;
    const char  *key;

    m = 0;

    if (json_is_object(j)) {
        json_object_foreach(j, key, v) {
            d = 1 + json_depth(v);
            m = d > m ? d : m;
        }

    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v) {
            d = 1 + json_depth(v);
            m = d > m ? d : m;
        }
    }

    return m;
}


/* Containers nested in j, j included: 0 for a scalar, 2 for [[]]. */
static int
json_nesting(json_t *j)
{
    int          d, m;
    size_t       i;
    json_t      *v;
    const char  *key;

    m = 0;

    if (json_is_object(j)) {
        json_object_foreach(j, key, v) {
            d = json_nesting(v);
            m = d > m ? d : m;
        }

    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v) {
            d = json_nesting(v);
            m = d > m ? d : m;
        }

    } else {
        return 0;
    }

    return 1 + m;
}


/* 1 if some object key in j is too long for pr_msgpack_to_json. */
static int
json_long_key(json_t *j)
{
    size_t       i;
    json_t      *v;
    const char  *key;

    if (json_is_object(j)) {
        json_object_foreach(j, key, v) {
            if (strlen(key) >= 256 || json_long_key(v)) {
                return 1;
            }
        }

    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v) {
            if (json_long_key(v)) {
                return 1;
            }
        }
    }

    return 0;
}


/* RFC 3629, section 4. */
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


/* 1 if o holds only what JSON can (the contract in pyrepl_mpjson.h). */
static int
msgpack_jsonable(const msgpack_object *o, int depth)
{
    uint32_t                  i;
    const msgpack_object_kv  *kv;

    if (depth > PR_MPJSON_MAX_DEPTH) {
        return 0;
    }

    switch (o->type) {

    case MSGPACK_OBJECT_NIL:
    case MSGPACK_OBJECT_BOOLEAN:
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return 1;

    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return o->via.u64 <= (uint64_t) INT64_MAX;

    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return isfinite(o->via.f64);

    case MSGPACK_OBJECT_STR:
        return utf8_valid((const uint8_t *) o->via.str.ptr, o->via.str.size);

    case MSGPACK_OBJECT_ARRAY:
        for (i = 0; i < o->via.array.size; i++) {
            if (!msgpack_jsonable(&o->via.array.ptr[i], depth + 1)) {
                return 0;
            }
        }
        return 1;

    case MSGPACK_OBJECT_MAP:
        for (i = 0; i < o->via.map.size; i++) {
            kv = &o->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR
                || kv->key.via.str.size >= 256
                || (kv->key.via.str.size
                    && memchr(kv->key.via.str.ptr, '\0',
                              kv->key.via.str.size))
                || !utf8_valid((const uint8_t *) kv->key.via.str.ptr,
                               kv->key.via.str.size)
                || !msgpack_jsonable(&kv->val, depth + 1))
            {
                return 0;
            }
        }
        return 1;

    default: /* BIN, EXT */
        return 0;
    }
}


static int
pack(json_t *j, msgpack_sbuffer *sb)
{
    msgpack_packer  pk;

    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);

    return pr_json_to_msgpack(j, &pk);
}


/* json -> msgpack -> json -> msgpack, see the top of the file. */
static void
msgpack_round_trip(json_t *j)
{
    int               rc;
    char             *copy;
    size_t            off;
    json_t           *back;
    msgpack_sbuffer   sb, sb2;
    msgpack_unpacked  up;

    rc = pack(j, &sb);
    REQUIRE((rc == 0) == (json_depth(j) <= PR_MPJSON_MAX_DEPTH));

    if (rc != 0) {
        msgpack_sbuffer_destroy(&sb);
        return;
    }

    copy = dup_exact(sb.data, sb.size);
    msgpack_unpacked_init(&up);
    off = 0;
    rc = msgpack_unpack_next(&up, copy, sb.size, &off);

    if (json_nesting(j) > MSGPACK_C_MAX_NESTING) {
        REQUIRE(rc == MSGPACK_UNPACK_NOMEM_ERROR);
        goto done;
    }

    REQUIRE(rc == MSGPACK_UNPACK_SUCCESS);
    REQUIRE(off == sb.size);

    back = pr_msgpack_to_json(&up.data);
    REQUIRE((back != NULL) == !json_long_key(j));

    if (back != NULL) {
        REQUIRE(json_equal(j, back));
        REQUIRE(pack(back, &sb2) == 0);
        REQUIRE(sb2.size == sb.size && memcmp(sb2.data, sb.data, sb.size) == 0);
        msgpack_sbuffer_destroy(&sb2);
        json_decref(back);
    }

done:

    msgpack_unpacked_destroy(&up);
    free(copy);
    msgpack_sbuffer_destroy(&sb);
}


/* What the module sends back (json_dumpb) parses back the same. */
static void
text_round_trip(json_t *j)
{
    char          *text;
    json_t        *back;
    json_error_t   err;

    text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    REQUIRE(text != NULL);

    back = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (back == NULL) {
        fprintf(stderr, "mpjson_fuzz: \"%s\" does not parse: %s\n", text,
                err.text);
    }
    REQUIRE(back != NULL && json_equal(j, back));

    json_decref(back);
    free(text);
}


static void
use(json_t *j)
{
    if (json_is_object(j)) {
        (void) check_message(j);
    }

    msgpack_round_trip(j);
    text_round_trip(j);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int               rc;
    char             *copy;
    json_t           *j;
    json_error_t      err;
    msgpack_unpacked  up;

    if (size < 1) {
        return 0;
    }

    copy = dup_exact(data + 1, size - 1);

    if ((data[0] & 1) == 0) {
        j = json_loadb(copy, size - 1, JSON_REJECT_DUPLICATES, &err);

        if (j == NULL) {
            REQUIRE(err.text[0] != '\0');

        } else {
            REQUIRE(json_is_object(j) || json_is_array(j));
            use(j);
            json_decref(j);
        }

    } else {
        msgpack_unpacked_init(&up);

        /* as the module calls it: bytes after the first object ignored */
        rc = msgpack_unpack_next(&up, copy, size - 1, NULL);

        if (rc == MSGPACK_UNPACK_SUCCESS) {
            j = pr_msgpack_to_json(&up.data);
            REQUIRE((j != NULL) == msgpack_jsonable(&up.data, 0));

            if (j != NULL) {
                use(j);
                json_decref(j);
            }
        }

        msgpack_unpacked_destroy(&up);
    }

    free(copy);

    return 0;
}
