/*
 * pyrepl_mpjson.c: jansson <-> msgpack, see pyrepl_mpjson.h.  Recursion
 * is bounded by PR_MPJSON_MAX_DEPTH in both directions, so hostile input
 * cannot exhaust the stack.
 */

#include <stdint.h>
#include <string.h>

#include "pyrepl_mpjson.h"


static int pr_json_pack(json_t *j, msgpack_packer *pk, int depth);
static json_t *pr_msgpack_unpack(const msgpack_object *o, int depth);


int
pr_json_to_msgpack(json_t *j, msgpack_packer *pk)
{
    return pr_json_pack(j, pk, 0);
}


static int
pr_json_pack(json_t *j, msgpack_packer *pk, int depth)
{
    int          rc;
    size_t       i, n;
    json_t      *v;
    const char  *key;

    if (depth > PR_MPJSON_MAX_DEPTH) {
        return -1;
    }

    switch (json_typeof(j)) {

    case JSON_OBJECT:
        rc = msgpack_pack_map(pk, json_object_size(j));
        json_object_foreach(j, key, v) {
            n = strlen(key);
            rc |= msgpack_pack_str(pk, n) | msgpack_pack_str_body(pk, key, n);
            rc |= pr_json_pack(v, pk, depth + 1);
        }
        return rc ? -1 : 0;

    case JSON_ARRAY:
        rc = msgpack_pack_array(pk, json_array_size(j));
        json_array_foreach(j, i, v) {
            rc |= pr_json_pack(v, pk, depth + 1);
        }
        return rc ? -1 : 0;

    case JSON_STRING:
        n = json_string_length(j);
        return (msgpack_pack_str(pk, n)
                | msgpack_pack_str_body(pk, json_string_value(j), n))
               ? -1 : 0;

    case JSON_INTEGER:
        return msgpack_pack_int64(pk, json_integer_value(j)) ? -1 : 0;

    case JSON_REAL:
        return msgpack_pack_double(pk, json_real_value(j)) ? -1 : 0;

    case JSON_TRUE:
        return msgpack_pack_true(pk) ? -1 : 0;

    case JSON_FALSE:
        return msgpack_pack_false(pk) ? -1 : 0;

    default: /* JSON_NULL */
        return msgpack_pack_nil(pk) ? -1 : 0;
    }
}


json_t *
pr_msgpack_to_json(const msgpack_object *o)
{
    return pr_msgpack_unpack(o, 0);
}


static json_t *
pr_msgpack_unpack(const msgpack_object *o, int depth)
{
    json_t                    *j, *v;
    uint32_t                   i;
    const msgpack_object_kv   *kv;
    char                       key[256];

    if (depth > PR_MPJSON_MAX_DEPTH) {
        return NULL;
    }

    switch (o->type) {

    case MSGPACK_OBJECT_NIL:
        return json_null();

    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);

    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > (uint64_t) INT64_MAX) {
            return NULL;
        }
        return json_integer((json_int_t) o->via.u64);

    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer((json_int_t) o->via.i64);

    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return json_real(o->via.f64);

    case MSGPACK_OBJECT_STR:
        /* msgpack-c gives some empty strings a NULL pointer */
        return json_stringn(o->via.str.size ? o->via.str.ptr : "",
                            o->via.str.size);

    case MSGPACK_OBJECT_ARRAY:
        j = json_array();
        for (i = 0; j && i < o->via.array.size; i++) {
            v = pr_msgpack_unpack(&o->via.array.ptr[i], depth + 1);
            if (v == NULL || json_array_append_new(j, v) != 0) {
                json_decref(j);
                return NULL;
            }
        }
        return j;

    case MSGPACK_OBJECT_MAP:
        j = json_object();
        for (i = 0; j && i < o->via.map.size; i++) {
            kv = &o->via.map.ptr[i];

            if (kv->key.type != MSGPACK_OBJECT_STR
                || kv->key.via.str.size >= sizeof(key)
                || (kv->key.via.str.size
                    && memchr(kv->key.via.str.ptr, '\0',
                              kv->key.via.str.size)))
            {
                json_decref(j);
                return NULL;
            }

            if (kv->key.via.str.size) {
                memcpy(key, kv->key.via.str.ptr, kv->key.via.str.size);
            }
            key[kv->key.via.str.size] = '\0';

            v = pr_msgpack_unpack(&kv->val, depth + 1);
            if (v == NULL || json_object_set_new(j, key, v) != 0) {
                json_decref(j);
                return NULL;
            }
        }
        return j;

    default:
        return NULL;
    }
}
