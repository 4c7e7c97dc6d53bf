/*
 * pyrepl_mpjson.h: converting between jansson values and msgpack, for the
 * "pyrepl.msgpack" WebSocket subprotocol, whose binary frames carry the
 * same objects as the JSON text frames.  Pure C (jansson, msgpack-c).
 */

#ifndef PYREPL_MPJSON_H
#define PYREPL_MPJSON_H

#include <jansson.h>
#include <msgpack.h>


#define PR_MPJSON_MAX_DEPTH  64

/* Pack j; returns 0, or -1 for a value msgpack cannot hold or no memory. */
int pr_json_to_msgpack(json_t *j, msgpack_packer *pk);

/*
 * A new jansson value for o (the caller owns it), or NULL when o holds
 * something JSON cannot (binary, non-string map keys, invalid UTF-8,
 * extension types, nesting deeper than PR_MPJSON_MAX_DEPTH).
 */
json_t *pr_msgpack_to_json(const msgpack_object *o);

#endif /* PYREPL_MPJSON_H */
