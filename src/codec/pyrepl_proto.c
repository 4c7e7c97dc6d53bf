/*
 * pyrepl_proto.c: the frame codec declared in pyrepl_proto.h.  Pure C over
 * msgpack-c, no I/O and no global state, so it is shared by the nginx
 * module and the worker binaries and can be unit-tested and fuzzed alone.
 */

#include <string.h>

#include "pyrepl_proto.h"


enum { PR_KIND_STR, PR_KIND_INT, PR_KIND_STRS };

typedef struct {
    const char  *key;
    size_t       key_len;
    int          kind;
    size_t       offset;
} pr_field_desc_t;


static const char *pr_type_names[PR_T_MAX] = {
    NULL,
#define PR_TYPE_NAME(name, wire)  wire,
    PR_TYPES(PR_TYPE_NAME)
#undef PR_TYPE_NAME
};

static const pr_field_desc_t pr_fields[PR_F_MAX] = {
#define PR_FIELD_DESC(name, kind, doc)                                       \
    { #name, sizeof(#name) - 1, PR_KIND_##kind, offsetof(pr_frame_t, name) },
    PR_FIELDS(PR_FIELD_DESC)
#undef PR_FIELD_DESC
};


const char *
pr_type_name(pr_type_t type)
{
    if (type <= PR_T_NONE || type >= PR_T_MAX) {
        return "unknown";
    }

    return pr_type_names[type];
}


pr_type_t
pr_type_from_name(const char *name, size_t len)
{
    int  t;

    for (t = PR_T_NONE + 1; t < PR_T_MAX; t++) {
        if (strlen(pr_type_names[t]) == len
            && memcmp(pr_type_names[t], name, len) == 0)
        {
            return (pr_type_t) t;
        }
    }

    return PR_T_NONE;
}


int
pr_frame_peek(const uint8_t *buf, size_t len, size_t max, size_t *frame_len)
{
    size_t  n;

    if (len < PR_HEADER_LEN) {
        return PR_AGAIN;
    }

    n = ((size_t) buf[0] << 24) | ((size_t) buf[1] << 16)
        | ((size_t) buf[2] << 8) | (size_t) buf[3];

    if (n > max) {
        return PR_TOO_LARGE;
    }

    if (len - PR_HEADER_LEN < n) {
        return PR_AGAIN;
    }

    *frame_len = PR_HEADER_LEN + n;

    return PR_OK;
}


static int
pr_object_str(const msgpack_object *o, pr_str_t *s)
{
    if (o->type == MSGPACK_OBJECT_STR) {
        s->data = o->via.str.ptr;
        s->len = o->via.str.size;
        return PR_OK;
    }

    if (o->type == MSGPACK_OBJECT_BIN) {
        s->data = o->via.bin.ptr;
        s->len = o->via.bin.size;
        return PR_OK;
    }

    return PR_INVALID;
}


static int
pr_decode_field(const pr_field_desc_t *d, const msgpack_object *v,
    msgpack_zone *zone, pr_frame_t *f)
{
    uint32_t    i;
    pr_strs_t  *strs;
    char       *member;

    member = (char *) f + d->offset;

    switch (d->kind) {

    case PR_KIND_STR:
        return pr_object_str(v, (pr_str_t *) member);

    case PR_KIND_INT:
        if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            if (v->via.u64 > INT64_MAX) {
                return PR_INVALID;
            }
            *(int64_t *) member = (int64_t) v->via.u64;
            return PR_OK;
        }

        if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
            *(int64_t *) member = v->via.i64;
            return PR_OK;
        }

        if (v->type == MSGPACK_OBJECT_BOOLEAN) {
            *(int64_t *) member = v->via.boolean;
            return PR_OK;
        }

        return PR_INVALID;

    default: /* PR_KIND_STRS */
        if (v->type != MSGPACK_OBJECT_ARRAY) {
            return PR_INVALID;
        }

        strs = (pr_strs_t *) member;
        strs->n = v->via.array.size;
        strs->items = NULL;

        if (strs->n == 0) {
            return PR_OK;
        }

        strs->items = msgpack_zone_malloc(zone, strs->n * sizeof(pr_str_t));
        if (strs->items == NULL) {
            return PR_INVALID;
        }

        for (i = 0; i < strs->n; i++) {
            if (pr_object_str(&v->via.array.ptr[i], &strs->items[i])
                != PR_OK)
            {
                return PR_INVALID;
            }
        }

        return PR_OK;
    }
}


int
pr_frame_decode(const uint8_t *payload, size_t len, msgpack_unpacked *up,
    pr_frame_t *f, const char **err)
{
    size_t                  off;
    uint32_t                i;
    int                     k;
    pr_str_t                key;
    msgpack_unpack_return   rc;
    const msgpack_object   *map;
    const msgpack_object_kv *kv;

    memset(f, 0, sizeof(pr_frame_t));

    off = 0;
    rc = msgpack_unpack_next(up, (const char *) payload, len, &off);

    if (rc != MSGPACK_UNPACK_SUCCESS) {
        *err = "payload is not one msgpack object";
        return PR_INVALID;
    }

    if (off != len) {
        *err = "trailing bytes after the msgpack map";
        return PR_INVALID;
    }

    map = &up->data;

    if (map->type != MSGPACK_OBJECT_MAP) {
        *err = "payload is not a msgpack map";
        return PR_INVALID;
    }

    for (i = 0; i < map->via.map.size; i++) {
        kv = &map->via.map.ptr[i];

        if (pr_object_str(&kv->key, &key) != PR_OK) {
            *err = "map key is not a string";
            return PR_INVALID;
        }

        if (key.len == 1 && key.data[0] == 't') {
            pr_str_t  name;

            if (pr_object_str(&kv->val, &name) != PR_OK) {
                *err = "\"t\" is not a string";
                return PR_INVALID;
            }

            f->type = pr_type_from_name(name.data, name.len);
            continue;
        }

        for (k = 0; k < PR_F_MAX; k++) {
            if (pr_fields[k].key_len == key.len
                && memcmp(pr_fields[k].key, key.data, key.len) == 0)
            {
                break;
            }
        }

        if (k == PR_F_MAX) {
            continue;
        }

        if (pr_decode_field(&pr_fields[k], &kv->val, up->zone, f) != PR_OK) {
            *err = "field has the wrong msgpack type";
            return PR_INVALID;
        }

        f->has |= (uint64_t) 1 << k;
    }

    if (f->type == PR_T_NONE) {
        *err = "missing or unknown frame type \"t\"";
        return PR_INVALID;
    }

    return PR_OK;
}


static int
pr_pack_str(msgpack_packer *pk, const char *p, size_t n)
{
    if (n > UINT32_MAX) {
        return -1;
    }

    return msgpack_pack_str(pk, n) | msgpack_pack_str_body(pk, p, n);
}


int
pr_frame_encode(const pr_frame_t *f, msgpack_sbuffer *sb)
{
    int              k, rc;
    size_t           start, n;
    uint32_t         i, nfields;
    const char      *member;
    const char      *tname;
    msgpack_packer   pk;
    const pr_strs_t *strs;
    uint8_t          hdr[PR_HEADER_LEN] = { 0, 0, 0, 0 };

    if (f->type <= PR_T_NONE || f->type >= PR_T_MAX) {
        return PR_INVALID;
    }

    nfields = 1;
    for (k = 0; k < PR_F_MAX; k++) {
        if (f->has & ((uint64_t) 1 << k)) {
            nfields++;
        }
    }

    start = sb->size;

    /* msgpack-c reports allocation failures as non-zero returns */

    rc = msgpack_sbuffer_write(sb, (const char *) hdr, PR_HEADER_LEN);

    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    rc |= msgpack_pack_map(&pk, nfields);

    tname = pr_type_names[f->type];
    rc |= pr_pack_str(&pk, "t", 1);
    rc |= pr_pack_str(&pk, tname, strlen(tname));

    for (k = 0; k < PR_F_MAX && rc == 0; k++) {
        if (!(f->has & ((uint64_t) 1 << k))) {
            continue;
        }

        rc |= pr_pack_str(&pk, pr_fields[k].key, pr_fields[k].key_len);
        member = (const char *) f + pr_fields[k].offset;

        switch (pr_fields[k].kind) {

        case PR_KIND_STR:
            rc |= pr_pack_str(&pk, ((const pr_str_t *) member)->data,
                              ((const pr_str_t *) member)->len);
            break;

        case PR_KIND_INT:
            rc |= msgpack_pack_int64(&pk, *(const int64_t *) member);
            break;

        default: /* PR_KIND_STRS */
            strs = (const pr_strs_t *) member;
            rc |= msgpack_pack_array(&pk, strs->n);
            for (i = 0; i < strs->n; i++) {
                rc |= pr_pack_str(&pk, strs->items[i].data,
                                  strs->items[i].len);
            }
            break;
        }
    }

    if (rc != 0 || sb->size < start + PR_HEADER_LEN
        || sb->size - start - PR_HEADER_LEN > UINT32_MAX)
    {
        sb->size = (sb->size < start) ? sb->size : start;
        return PR_INVALID;
    }

    n = sb->size - start - PR_HEADER_LEN;

    sb->data[start] = (char) (n >> 24);
    sb->data[start + 1] = (char) (n >> 16);
    sb->data[start + 2] = (char) (n >> 8);
    sb->data[start + 3] = (char) n;

    return PR_OK;
}


/*
 * The length of the UTF-8 sequence that starts with byte c and the minimum
 * code point it may encode, or 0 for a byte that cannot start one.
 */
static size_t
pr_utf8_seq_len(uint8_t c, uint32_t *min)
{
    if (c < 0x80) { *min = 0; return 1; }
    if (c >= 0xc2 && c <= 0xdf) { *min = 0x80; return 2; }
    if (c >= 0xe0 && c <= 0xef) { *min = 0x800; return 3; }
    if (c >= 0xf0 && c <= 0xf4) { *min = 0x10000; return 4; }
    return 0;
}


/*
 * Decode one character at p; returns its length, or 0 if the bytes there
 * are not a valid complete character (overlong, surrogate, out of range
 * or truncated by end).
 */
static size_t
pr_utf8_char(const uint8_t *p, const uint8_t *end)
{
    size_t    n, i;
    uint32_t  cp, min;

    n = pr_utf8_seq_len(p[0], &min);
    if (n == 0 || (size_t) (end - p) < n) {
        return 0;
    }

    if (n == 1) {
        return 1;
    }

    cp = p[0] & (0xff >> (n + 1));
    for (i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (p[i] & 0x3f);
    }

    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }

    return n;
}


size_t
pr_utf8_boundary(const uint8_t *p, size_t len)
{
    size_t    i, back, n;
    uint32_t  min;

    /* look at most 3 bytes back for the lead byte of a partial character */
    for (back = 1; back <= 3 && back <= len; back++) {
        i = len - back;

        if ((p[i] & 0xc0) == 0x80) {
            continue;
        }

        n = pr_utf8_seq_len(p[i], &min);
        if (n > back) {
            return i;
        }

        break;
    }

    return len;
}


size_t
pr_utf8_sanitize(const uint8_t *src, size_t len, uint8_t *dst)
{
    size_t          n, out;
    const uint8_t  *p, *end;

    p = src;
    end = src + len;
    out = 0;

    while (p < end) {
        n = pr_utf8_char(p, end);

        if (n == 0) {
            dst[out++] = 0xef;
            dst[out++] = 0xbf;
            dst[out++] = 0xbd;
            p++;
            continue;
        }

        memcpy(dst + out, p, n);
        out += n;
        p += n;
    }

    return out;
}
