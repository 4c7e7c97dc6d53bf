/*
 * pyrepl_shared.h: the names and sizes the nginx module and the worker
 * binaries must agree on, each defined once: a session id, the files in
 * the socket directory, the binaries and how a session socket is named.
 * (The wire protocol between them is pyrepl_proto.h.)
 */

#ifndef PYREPL_SHARED_H
#define PYREPL_SHARED_H


#include <stddef.h>


/*
 * A session id: PYREPL_ID_LEN lowercase hex digits from a CSPRNG; on a
 * host with pyrepl_node NAME, "NAME_" and then as many digits, so that a
 * front nginx routes on it.  A NAME is 1 to PYREPL_NODE_MAX of [0-9a-z]:
 * it fits in the first group of the id's UUID form (Jupyter's kernel ids).
 * Ids name files: never "/", "." or NUL.
 */
#define PYREPL_ID_LEN           32
#define PYREPL_NODE_MAX         7

/* in the socket directory (pyrepl_socket_dir) */
#define PYREPL_SUPERVISOR_SOCK  "supervisor.sock"
#define PYREPL_SUPERVISOR_PID   "supervisor.pid"
#define PYREPL_KEEPER_PID       "keeper.pid"
#define PYREPL_SESSION_SUFFIX   ".sock"   /* <id>.sock: a session's */

/* in the binaries' directory (pyrepl_bin_dir) */
#define PYREPL_SUPERVISOR_BIN   "pyrepl-supervisor"
#define PYREPL_PYTHON_BIN       "pyrepl-python"
#define PYREPL_BASH_BIN         "pyrepl-bash"



/* The length of the node name id starts with (0: none); id is an id. */
static inline size_t
pyrepl_id_node_len(const unsigned char *id)
{
    size_t  i;

    for (i = 1; i <= PYREPL_NODE_MAX; i++) {
        if (id[i] == '_') {
            return i;
        }
    }

    return 0;
}


/* Whether p, len bytes, is a session id (see PYREPL_ID_LEN). */
static inline int
pyrepl_id_valid(const unsigned char *p, size_t len)
{
    size_t         i, node;
    unsigned char  c;

    if (len != PYREPL_ID_LEN) {
        return 0;
    }

    node = pyrepl_id_node_len(p);

    for (i = 0; i < len; i++) {
        c = p[i];

        if (i == node && node != 0) {
            continue;                           /* the '_' */
        }

        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
            || (i < node && c >= 'g' && c <= 'z'))
        {
            continue;
        }

        return 0;
    }

    return 1;
}


#endif /* PYREPL_SHARED_H */
