/*
 * pyrepl_proto.h: the wire protocol between nginx workers, the supervisor
 * and session processes.  This header is the single definition of every
 * frame type and every field; the codec (pyrepl_proto.c) derives its tables
 * from the X-macros below, so the type list cannot drift from the decoder.
 *
 * A frame is a 4-byte big-endian payload length followed by one msgpack map
 * whose keys are the field names below and whose "t" key names the type.
 * A frame longer than the receiver's cap is a protocol error that closes
 * that connection only.  Unknown keys are ignored (forward compatibility);
 * a known key with a value of the wrong msgpack type is an error.
 *
 * The codec is plain C (msgpack-c only) so that the nginx module, the
 * worker binaries, the unit tests and the fuzz target all share it.
 */

#ifndef PYREPL_PROTO_H
#define PYREPL_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>


#define PR_HEADER_LEN        4
#define PR_DEFAULT_MAX_FRAME (16 * 1024 * 1024)


/*
 * Frame types: X(enum suffix, wire name, direction and meaning).
 *
 * Data plane, nginx worker <-> session process (one connection per run):
 *   run            worker->session  code, timeout_ms, interactive: execute
 *                                   code; without interactive, input()
 *                                   raises EOFError
 *                                   (bash: cwd, env, stdin too; no
 *                                   input frames)
 *   stdout/stderr  session->worker  text: output as produced
 *   result         session->worker  text (repr), count: final expression;
 *                                   python: bundle, its MIME bundle, when
 *                                   it has more than text/plain
 *   display        session->worker  bundle: rich output the code showed
 *                                   (display(), a plot), in order with
 *                                   stdout and stderr
 *   error          session->worker  ename, evalue, traceback: exception
 *   input_request  session->worker  id, prompt, password: code called
 *                                   input() (or getpass) and waits
 *   input          worker->session  text, id (optional): the answer; sent
 *                                   on a connection of its own, answered
 *                                   ok, or fail errcode "no_pending_input"
 *   interrupt      worker->session  raise KeyboardInterrupt in the run
 *   complete       session->worker  status, count, ms: the run ended;
 *                                   python: added, modified, removed (the
 *                                   names the run changed); bash:
 *                                   exit_code, and ended when the shell
 *                                   exited (the session is over)
 *   watch          worker->session  (no fields): this connection gets a
 *                                   copy of every python run from now
 *                                   on: its run frame (code, tag, count:
 *                                   the count it will have) as it begins,
 *                                   then its stdout, stderr, display,
 *                                   result, error and complete frames;
 *                                   answered ok.  A watcher that does not
 *                                   read is closed
 *   introspect     worker->session  text, a JSON request (op complete,
 *                                   inspect, is_complete or history, as
 *                                   Jupyter's): answered ok with text, the
 *                                   reply's content as JSON, or fail
 *                                   session_busy
 *   namespace      worker->session  (no fields): answered ok with text, a
 *                                   JSON document of the variables and
 *                                   definitions, or fail session_busy
 *   checkpoint     worker->session  file, max_size: save the namespace to
 *                                   file (in its working directory);
 *                                   answered ok with text, a JSON document
 *                                   (size_bytes, unsaved; or error)
 *   restore        worker->session  file: load it into the namespace (and
 *                                   remove it); ok with text (restored,
 *                                   failed; or error)
 *   place          worker->session  cwd, env: from now on the session's
 *                                   working directory (made if missing)
 *                                   and added variables (a create's);
 *                                   answered ok, or fail bad_request
 *   status         worker->session  (no fields): a background command's
 *                                   state: ok with status ("running", or
 *                                   how it ended), code (the command),
 *                                   started, finished (Unix ms, 0 while
 *                                   running), exit_code once ended, cursor
 *                                   (the bytes it has written); fail
 *                                   not_found if the session never had one
 *   tail           worker->session  cursor: a background command's output
 *                                   from that byte on: ok with text (at
 *                                   most a chunk, whole characters) and
 *                                   cursor (the byte after it); fail
 *                                   not_found as for status
 *   commit         worker->session  a pending (explicit) transaction's
 *   rollback                        effects stay / are undone: answered
 *                                   ok with tx (and pid, rolled back), or
 *                                   fail no_transaction
 *
 * A bash run frame with detach set is a background command (execd's
 * POST /command {background: true}): the session answers ok at once, on
 * that connection, and runs the code in a subshell with no connection
 * waiting; its output is kept (the last WK_TAIL_MAX bytes) for tail
 * frames, and its end for status frames.  Interrupt frames and its
 * timeout_ms stop it as any run.
 *
 * Transactions: a python run frame's tx names its policy (commit_always,
 * commit_on_success, rollback_on_failure, explicit); its complete frame
 * says in tx what became of the effects (committed, rolled_back,
 * pending) and, when rolled back, in pid the process that serves the
 * session from then on, which nginx passes to the supervisor in a move.
 *
 * Control plane, nginx worker <-> supervisor (one connection per request):
 *   create         worker->super    id, lang: start a session process
 *   kill           worker->super    id: kill a session and remove its files
 *   store          worker->super    id, file, text, max_size, quota: move
 *                                   the session's checkpoint file to the
 *                                   checkpoint directory as text (a
 *                                   "<tenant>/<checkpoint id>" name);
 *                                   fail errcode "quota_exceeded" when
 *                                   the tenant would keep more than quota
 *                                   bytes
 *   load           worker->super    id, file, text: copy checkpoint text
 *                                   into the session's directory as file
 *   list           worker->super    text (a 16 hex tenant): answered ok
 *                                   with checkpoints, that tenant's
 *   remove         worker->super    text ("<tenant>/<checkpoint id>"):
 *                                   delete that checkpoint; ok, or fail
 *                                   errcode "not_found"
 *   move           worker->super    id, pid: the session's process is now
 *                                   pid (a rollback); the old one is killed
 *   status         worker->super    (no fields): answered ok with pool,
 *                                   zygote and sessions
 *   ended          worker->super    id: answered, once the session's
 *                                   processes are gone (or a second on),
 *                                   ok with reason: out_of_memory, exited,
 *                                   or none (still live, or unknown)
 *   ok             super->worker    id, pid: the request succeeded; for
 *                                   status: pool, zygote, sessions
 *   fail           either way       code, message: the request failed
 */
#define PR_TYPES(X)                                                          \
    X(RUN,           "run")                                                  \
    X(STDOUT,        "stdout")                                               \
    X(STDERR,        "stderr")                                               \
    X(RESULT,        "result")                                               \
    X(DISPLAY,       "display")                                              \
    X(ERROR,         "error")                                                \
    X(INPUT_REQUEST, "input_request")                                        \
    X(INPUT,         "input")                                                \
    X(INTERRUPT,     "interrupt")                                            \
    X(COMPLETE,      "complete")                                             \
    X(NAMESPACE,     "namespace")                                            \
    X(INTROSPECT,    "introspect")                                           \
    X(WATCH,         "watch")                                                \
    X(COMMIT,        "commit")                                               \
    X(ROLLBACK,      "rollback")                                             \
    X(MOVE,          "move")                                                 \
    X(CHECKPOINT,    "checkpoint")                                           \
    X(PLACE,         "place")                                                \
    X(RESTORE,       "restore")                                              \
    X(STORE,         "store")                                                \
    X(LOAD,          "load")                                                 \
    X(LIST,          "list")                                                 \
    X(REMOVE,        "remove")                                               \
    X(CREATE,        "create")                                               \
    X(KILL,          "kill")                                                 \
    X(STATUS,        "status")                                               \
    X(ENDED,         "ended")                                                \
    X(TAIL,          "tail")                                                 \
    X(OK,            "ok")                                                   \
    X(FAIL,          "fail")

typedef enum {
    PR_T_NONE = 0,
#define PR_TYPE_ENUM(name, wire)  PR_T_##name,
    PR_TYPES(PR_TYPE_ENUM)
#undef PR_TYPE_ENUM
    PR_T_MAX
} pr_type_t;


/*
 * Fields: X(member and wire key, kind, meaning).  A kind is STR (msgpack
 * str or bin), INT (msgpack int) or STRS (array of str).
 */
#define PR_FIELDS(X)                                                         \
    X(id,          STR,  "session id")                                       \
    X(lang,        STR,  "session language: python or bash")                \
    X(code,        STR,  "source to run")                                    \
    X(text,        STR,  "output text, a result's repr, an input answer")    \
    X(prompt,      STR,  "the prompt input() printed")                       \
    X(status,      STR,  "run status: ok error interrupted timeout crashed") \
    X(ename,       STR,  "exception class name")                             \
    X(evalue,      STR,  "str() of the exception")                           \
    X(errcode,     STR,  "machine-readable failure code (fail frames)")      \
    X(message,     STR,  "human-readable failure message (fail frames)")     \
    X(count,       INT,  "execution_count after the run")                    \
    X(ms,          INT,  "duration of the run in milliseconds")              \
    X(timeout_ms,  INT,  "run deadline in milliseconds, 0 for none")         \
    X(pid,         INT,  "process id of a session process")                  \
    X(password,    INT,  "1 when input should not be echoed")                \
    X(interactive, INT,  "1 when the client can answer input()")             \
    X(pool,        INT,  "status: forked, unassigned sessions ready")        \
    X(zygote,      INT,  "status: pid of the zygote, 0 while it is down")    \
    X(sessions,    INT,  "status: live session processes")                  \
    X(traceback,   STRS, "formatted traceback, one entry per frame")         \
    X(cwd,         STR,  "bash run: working directory for this run only")    \
    X(env,         STRS, "bash run: NAME=VALUE entries for this run only")   \
    X(stdin,       STR,  "bash run: the command's stdin (else EOF)")         \
    X(exit_code,   INT,  "bash complete: the exit status of the code")    \
    X(ended,       INT,  "complete: 1 when the session ends with this run") \
    X(added,       STRS, "complete: names the run bound")                    \
    X(modified,    STRS, "complete: names the run rebound or changed")       \
    X(removed,     STRS, "complete: names the run deleted")                  \
    X(tx,          STR,  "run: tx_policy; complete, ok: what became of it") \
    X(file,        STR,  "checkpoint file name in a session's directory")   \
    X(max_size,    INT,  "checkpoint: the largest file, bytes (0: any)")    \
    X(quota,       INT,  "store: the bytes a tenant may keep (0: any)")     \
    X(checkpoints, STRS, "list: \"<id> <size_bytes> <Unix mtime>\" each")  \
    X(reason,      STR,  "ended: why the session's processes ended")       \
    X(detach,      INT,  "bash run: 1 for a background command")            \
    X(cursor,      INT,  "tail, status: a byte offset in a background "     \
                         "command's output")                                \
    X(started,     INT,  "status: when the command began, Unix ms")         \
    X(finished,    INT,  "status: when it ended, Unix ms; 0 while running") \
    X(bundle,      STR,  "result, display: JSON {\"data\": {mime: value}, "  \
                         "\"metadata\": {}}")                              \
    X(tag,         STR,  "python run: the client's own words about it, "   \
                         "copied to watchers")

typedef enum {
#define PR_FIELD_ENUM(name, kind, doc)  PR_F_##name,
    PR_FIELDS(PR_FIELD_ENUM)
#undef PR_FIELD_ENUM
    PR_F_MAX
} pr_field_t;


typedef struct {
    const char      *data;
    size_t           len;
} pr_str_t;

typedef struct {
    pr_str_t        *items;
    uint32_t         n;
} pr_strs_t;

#define PR_KIND_STR_T   pr_str_t
#define PR_KIND_INT_T   int64_t
#define PR_KIND_STRS_T  pr_strs_t

/*
 * A decoded or to-be-encoded frame.  "has" holds one bit per field
 * (PR_BIT(x)) telling which members are present.  Decoded strings point
 * into the input buffer or the decoder's zone: they live as long as both.
 */
_Static_assert(PR_F_MAX <= 64, "a frame's \"has\" holds 64 fields");

typedef struct {
    pr_type_t        type;
    uint64_t         has;
#define PR_FIELD_MEMBER(name, kind, doc)  PR_KIND_##kind##_T name;
    PR_FIELDS(PR_FIELD_MEMBER)
#undef PR_FIELD_MEMBER
} pr_frame_t;


#define PR_BIT(name)           ((uint64_t) 1 << PR_F_##name)
#define PR_FIELDS_MASK         (~(uint64_t) 0 >> (64 - PR_F_MAX))

#define pr_has(f, name)        (((f)->has & PR_BIT(name)) != 0)

#define pr_set_str(f, name, p, n)                                            \
    do { (f)->name.data = (const char *) (p); (f)->name.len = (n);           \
         (f)->has |= PR_BIT(name); } while (0)

#define pr_set_cstr(f, name, s)  pr_set_str(f, name, s, strlen(s))

#define pr_set_int(f, name, v)                                               \
    do { (f)->name = (v); (f)->has |= PR_BIT(name); } while (0)


/* Return codes of the codec. */
#define PR_OK          0
#define PR_AGAIN       1    /* not enough bytes yet */
#define PR_TOO_LARGE  -1    /* length prefix above the cap */
#define PR_INVALID    -2    /* not a msgpack map of known shape */


/*
 * pr_frame_peek: look at the start of a receive buffer.  Returns PR_AGAIN
 * until a whole frame is there, PR_TOO_LARGE if the length prefix exceeds
 * max, else PR_OK with *frame_len set to header plus payload.
 */
int pr_frame_peek(const uint8_t *buf, size_t len, size_t max,
    size_t *frame_len);

/*
 * pr_frame_decode: decode one payload (without the 4-byte header) into f.
 * The caller owns "up" (msgpack_unpacked_init before, msgpack_unpacked_destroy
 * after using f).  Returns PR_OK or PR_INVALID with *err describing why.
 */
int pr_frame_decode(const uint8_t *payload, size_t len, msgpack_unpacked *up,
    pr_frame_t *f, const char **err);

/*
 * pr_frame_encode: append one whole frame (header and payload) for f to sb.
 * Returns PR_OK, or PR_INVALID if f->type is not a known type or the
 * payload would not fit a 32-bit length.
 */
int pr_frame_encode(const pr_frame_t *f, msgpack_sbuffer *sb);

const char *pr_type_name(pr_type_t type);
pr_type_t pr_type_from_name(const char *name, size_t len);

/*
 * pr_utf8_boundary: the length of the longest prefix of p[0..len) that
 * ends on a UTF-8 character boundary, given that p may end in the middle
 * of a character that the next read completes.  Used by output forwarders
 * that must not split a character across two frames.
 */
size_t pr_utf8_boundary(const uint8_t *p, size_t len);

/*
 * pr_utf8_sanitize: copy src to dst replacing every invalid UTF-8 sequence
 * with U+FFFD.  dst must hold 3 * len bytes; returns the bytes written.
 */
size_t pr_utf8_sanitize(const uint8_t *src, size_t len, uint8_t *dst);

#endif /* PYREPL_PROTO_H */
