/*
 * pyrepl_shared.h: the names and sizes the nginx module and the worker
 * binaries must agree on, each defined once: a session id, the files in
 * the socket directory, the binaries and how a session socket is named.
 * (The wire protocol between them is pyrepl_proto.h.)
 */

#ifndef PYREPL_SHARED_H
#define PYREPL_SHARED_H


/* a session id: lowercase hex digits from a CSPRNG */
#define PYREPL_ID_LEN           32

/* in the socket directory (pyrepl_socket_dir) */
#define PYREPL_SUPERVISOR_SOCK  "supervisor.sock"
#define PYREPL_SUPERVISOR_PID   "supervisor.pid"
#define PYREPL_KEEPER_PID       "keeper.pid"
#define PYREPL_SESSION_SUFFIX   ".sock"   /* <id>.sock: a session's */

/* in the binaries' directory (pyrepl_bin_dir) */
#define PYREPL_SUPERVISOR_BIN   "pyrepl-supervisor"
#define PYREPL_PYTHON_BIN       "pyrepl-python"
#define PYREPL_BASH_BIN         "pyrepl-bash"

#endif /* PYREPL_SHARED_H */
