/*
 * ngx_http_pyrepl_jupyter_ws.c: a kernel's channels WebSocket,
 * GET .../kernels/{id}/channels (ngx_http_pyrepl_jupyter.c routes it), on
 * the connection of ngx_http_pyrepl_ws.c.  Messages come and go in both
 * of Jupyter's framings: JSON text frames, {"channel", "header",
 * "parent_header", "metadata", "content", "buffers"}, or, when the client
 * offers the "v1.kernel.websocket.jupyter.org" subprotocol, binary frames:
 * a little-endian u64 count of offsets, the offsets, then the channel
 * name and the header, parent header, metadata and content as JSON.
 *
 * Every shell request is framed by iopub "status" busy and idle with the
 * request as parent:
 *
 *   kernel_info_request    kernel_info_reply
 *   execute_request        execute_input, then the run's output as
 *                          stream, display_data, execute_result or error,
 *                          then execute_reply; input() asks on stdin
 *                          (input_request), whose input_reply answers it
 *                          (others are dropped, as they would have to wait
 *                          in the run's memory for the session)
 *   complete_request       complete_reply: names in scope, attributes,
 *                          modules after import
 *   inspect_request        inspect_reply: type, signature, docstring
 *   is_complete_request    is_complete_reply: complete, incomplete (and
 *                          its indent), invalid
 *   history_request        history_reply: the cells the session keeps
 *   comm_info_request      comm_info_reply {comms: {}}
 *   other shell requests   their reply with status "error"
 *
 * Every socket of a kernel also sees the other sockets' runs (and those
 * of PyREPL's own API) on iopub, as a kernel publishes them to all: a
 * connection to the session asks to "watch", the session copies every
 * run's frames to it (the run frame carries the request's header as its
 * tag, which becomes the parent of the copies), and the copies of this
 * socket's own runs are known by their msg_id and skipped.  A socket that
 * does not read its output gets no copies meanwhile.
 *
 * The run is an exec (ngx_http_pyrepl_exec.c) on the kernel's session;
 * the four introspection requests are an "introspect" frame to it, which
 * its runtime answers (pyrepl_runtime.py, introspect()).  One of these at
 * a time: those that come meanwhile wait, in order, as a kernel's shell
 * queue does.  Replies and output go to this socket.  Every
 * message of the kernel carries the kernel's id as header.session.
 */

#include "ngx_http_pyrepl_jupyter.h"

#include "ngx_http_pyrepl_control.h"
#include "ngx_http_pyrepl_exec_parse.h"
#include "ngx_http_pyrepl_peer.h"
#include "ngx_http_pyrepl_reply.h"
#include "ngx_http_pyrepl_ws.h"

#include <endian.h>
#include <patchlevel.h>                  /* PY_VERSION: the sessions' */


#define PYREPL_JUPYTER_SUBPROTOCOL  "v1.kernel.websocket.jupyter.org"
#define PYREPL_JUPYTER_VERSION      "5.3"
#define PYREPL_UUID_LEN             36
#define PYREPL_JUPYTER_QUEUE        1000   /* shell requests waiting */
#define PYREPL_JUPYTER_QUEUE_SIZE   (8 * 1024 * 1024)  /* their frames */
#define PYREPL_JUPYTER_OWN          8      /* own runs' msg_ids kept */
#define PYREPL_JUPYTER_HIGH         (1024 * 1024)   /* no copies past it */


typedef struct {
    u_char                   uuid[PYREPL_UUID_LEN];  /* header.session */
    uint64_t                 seq;          /* messages sent */
    json_t                  *queue;        /* requests waiting, each */
                                           /* [message, frame size] */
    size_t                   queued;       /* the sizes in queue */
    json_t                  *parent;       /* the running one's header */
    json_t                  *error;        /* its error content, if any */
    ngx_uint_t               count;        /* its execution_count */
    unsigned                 prompted:1;   /* its input_request is not */
                                           /* answered yet */

    /* the watch connection: copies of every run of the session */
    ngx_pool_t              *watching;
    ngx_http_pyrepl_peer_t  *watch;
    json_t                  *watched;      /* the parent of the copies of */
                                           /* the run going on, or NULL */
    unsigned                 skip:1;       /* they are of our own run */
    json_t                  *own[PYREPL_JUPYTER_OWN];  /* our msg_ids */
    ngx_uint_t               nown;

    /* the introspection request waiting for the session, if any */
    ngx_pool_t              *asking;       /* its peer's */
    ngx_http_pyrepl_peer_t  *peer;
    ngx_http_pyrepl_ws_t    *ws;
    char                     reply[32];    /* its reply's msg_type */
} ngx_http_pyrepl_jws_t;


static ngx_int_t ngx_http_pyrepl_jws_message(ngx_http_pyrepl_ws_t *ws,
    pr_ws_frame_t *f);
static json_t *ngx_http_pyrepl_jws_decode(ngx_http_pyrepl_ws_t *ws,
    pr_ws_frame_t *f);
static ngx_int_t ngx_http_pyrepl_jws_request(ngx_http_pyrepl_ws_t *ws,
    json_t *msg, size_t size);
static ngx_int_t ngx_http_pyrepl_jws_execute(ngx_http_pyrepl_ws_t *ws,
    json_t *msg);
static ngx_int_t ngx_http_pyrepl_jws_next(ngx_http_pyrepl_ws_t *ws);
static const char *ngx_http_pyrepl_jws_asks(const char *type);
static ngx_int_t ngx_http_pyrepl_jws_ask(ngx_http_pyrepl_ws_t *ws,
    json_t *msg, const char *op);
static ngx_int_t ngx_http_pyrepl_jws_answered(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame);
static void ngx_http_pyrepl_jws_ask_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason);
static ngx_int_t ngx_http_pyrepl_jws_ask_end(ngx_http_pyrepl_ws_t *ws,
    json_t *content);
static void ngx_http_pyrepl_jws_ask_free(ngx_http_pyrepl_jws_t *jws);
static void ngx_http_pyrepl_jws_watch(ngx_http_pyrepl_ws_t *ws);
static ngx_int_t ngx_http_pyrepl_jws_watched(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame);
static void ngx_http_pyrepl_jws_watch_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason);
static void ngx_http_pyrepl_jws_watch_free(ngx_http_pyrepl_jws_t *jws);
static json_t *ngx_http_pyrepl_jws_content(const char *event, json_t *data,
    ngx_uint_t count, const char **channel, const char **type);
static ngx_int_t ngx_http_pyrepl_jws_event(ngx_http_pyrepl_exec_t *ex,
    const char *event, json_t *data);
static void ngx_http_pyrepl_jws_done(ngx_http_pyrepl_exec_t *ex,
    const char *status, ngx_uint_t count, ngx_msec_t ms);
static ngx_int_t ngx_http_pyrepl_jws_reply(ngx_http_pyrepl_ws_t *ws,
    json_t *parent, const char *type, json_t *content);
static ngx_int_t ngx_http_pyrepl_jws_status(ngx_http_pyrepl_ws_t *ws,
    json_t *parent, const char *state);
static ngx_int_t ngx_http_pyrepl_jws_send(ngx_http_pyrepl_ws_t *ws,
    const char *channel, const char *type, json_t *parent, json_t *content);
static json_t *ngx_http_pyrepl_jws_kernel_info(void);
static void ngx_http_pyrepl_jws_cleanup(ngx_http_pyrepl_ws_t *ws);


static const ngx_http_pyrepl_ws_proto_t  ngx_http_pyrepl_jws_proto = {
    PYREPL_JUPYTER_SUBPROTOCOL,
    ngx_http_pyrepl_jws_message,
    ngx_http_pyrepl_jws_cleanup
};


/* GET .../kernels/{id}/channels, the kernel (session id) the caller's. */
ngx_int_t
ngx_http_pyrepl_jupyter_channels(ngx_http_request_t *r, u_char *id)
{
    ngx_int_t               rc;
    ngx_http_pyrepl_jws_t  *jws;

    jws = ngx_pcalloc(r->pool, sizeof(ngx_http_pyrepl_jws_t));
    if (jws == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_pyrepl_jupyter_uuid(id, jws->uuid);

    jws->queue = json_array();
    if (jws->queue == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_pyrepl_ws_open(r, id, &ngx_http_pyrepl_jws_proto, jws);

    if (rc != NGX_DONE) {
        /* not upgraded: the cleanup never runs */
        json_decref(jws->queue);
        jws->queue = NULL;
        return rc;
    }

    jws->ws = ngx_http_get_module_ctx(r, ngx_http_pyrepl_module);

    if (jws->ws != NULL && !jws->ws->finished) {
        ngx_http_pyrepl_jws_watch(jws->ws);
    }

    return rc;
}


static ngx_int_t
ngx_http_pyrepl_jws_message(ngx_http_pyrepl_ws_t *ws, pr_ws_frame_t *f)
{
    json_t      *msg;
    ngx_int_t    rc;

    msg = ngx_http_pyrepl_jws_decode(ws, f);

    if (msg == NULL) {
        ngx_log_error(NGX_LOG_INFO, ws->request->connection->log, 0,
                      "pyrepl: a Jupyter message that is none");
        ngx_http_pyrepl_ws_close(ws, PR_WS_CLOSE_PROTOCOL_ERROR,
                                 "not a Jupyter message");
        return NGX_DONE;
    }

    rc = ngx_http_pyrepl_jws_request(ws, msg, f->len);
    json_decref(msg);

    return rc;
}


/*
 * The message in f as {"channel", "header", "parent_header", "metadata",
 * "content"} (header and content objects, channel a string); NULL when
 * it is not one.
 */
static json_t *
ngx_http_pyrepl_jws_decode(ngx_http_pyrepl_ws_t *ws, pr_ws_frame_t *f)
{
    json_t       *msg, *part;
    uint64_t      n, i, from, to, off[6];
    const u_char *p;

    static const char  *names[] = {
        "channel", "header", "parent_header", "metadata", "content"
    };

    if (f->opcode == PR_WS_OP_TEXT) {
        msg = json_loadb((char *) f->payload, f->len, 0, NULL);

    } else {
        /* v1: u64 n, n u64 offsets, the channel, then JSON parts */
        p = f->payload;

        if (f->len < 8) {
            return NULL;
        }

        ngx_memcpy(&n, p, 8);
        n = le64toh(n);

        if (n < 6 || n > (f->len - 8) / 8) {
            return NULL;
        }

        for (i = 0; i < 6; i++) {
            ngx_memcpy(&off[i], p + 8 * (i + 1), 8);
            off[i] = le64toh(off[i]);

            if (off[i] > f->len || (i > 0 && off[i] < off[i - 1])) {
                return NULL;
            }
        }

        msg = json_object();

        for (i = 0; msg != NULL && i < 5; i++) {
            from = off[i];
            to = off[i + 1];

            part = (i == 0)
                   ? json_stringn((char *) p + from, to - from)
                   : json_loadb((char *) p + from, to - from, 0, NULL);

            if (part == NULL || json_object_set_new(msg, names[i], part)) {
                json_decref(msg);
                msg = NULL;
            }
        }
    }

    if (msg != NULL
        && (!json_is_string(json_object_get(msg, "channel"))
            || !json_is_object(json_object_get(msg, "header"))
            || !json_is_string(json_object_get(json_object_get(msg,
                                                                "header"),
                                               "msg_type"))))
    {
        json_decref(msg);
        msg = NULL;
    }

    return msg;
}


/* One client message, size the bytes of its frame. */
static ngx_int_t
ngx_http_pyrepl_jws_request(ngx_http_pyrepl_ws_t *ws, json_t *msg,
    size_t size)
{
    size_t                  len;
    u_char                 *reply;
    json_t                 *header, *content, *value, *entry;
    ngx_int_t               rc;
    const char             *type, *channel;
    ngx_http_pyrepl_jws_t  *jws;

    jws = ws->data;

    channel = json_string_value(json_object_get(msg, "channel"));
    header = json_object_get(msg, "header");
    content = json_object_get(msg, "content");
    type = json_string_value(json_object_get(header, "msg_type"));
    len = ngx_strlen(type);

    if (ngx_strcmp(channel, "stdin") == 0) {
        if (ngx_strcmp(type, "input_reply") != 0) {
            return NGX_OK;
        }

        value = json_object_get(content, "value");

        if (ws->exec != NULL && jws->prompted && json_is_string(value)) {
            jws->prompted = 0;
            (void) ngx_http_pyrepl_exec_input(ws->exec, value, NULL);
        }

        return NGX_OK;
    }

    if (ngx_strcmp(channel, "shell") != 0
        && ngx_strcmp(channel, "control") != 0)
    {
        return NGX_OK;                   /* iopub: nothing comes that way */
    }

    if (ngx_strcmp(type, "execute_request") == 0
        || ngx_http_pyrepl_jws_asks(type) != NULL)
    {
        if (ws->exec != NULL || jws->asking != NULL
            || json_array_size(jws->queue) != 0)
        {
            /* one may wait however large; more, up to the bounds */
            if (json_array_size(jws->queue) >= PYREPL_JUPYTER_QUEUE
                || (json_array_size(jws->queue) != 0
                    && size > PYREPL_JUPYTER_QUEUE_SIZE
                              - ngx_min(jws->queued,
                                        PYREPL_JUPYTER_QUEUE_SIZE)))
            {
                ngx_http_pyrepl_ws_close(ws, PR_WS_CLOSE_POLICY,
                                         "too many requests waiting");
                return NGX_DONE;
            }

            entry = json_pack("[O,I]", msg, (json_int_t) size);

            if (entry == NULL
                || json_array_append_new(jws->queue, entry) != 0)
            {
                return NGX_ERROR;
            }

            jws->queued += size;

            return NGX_OK;
        }

        return (ngx_strcmp(type, "execute_request") == 0)
               ? ngx_http_pyrepl_jws_execute(ws, msg)
               : ngx_http_pyrepl_jws_ask(ws, msg,
                                         ngx_http_pyrepl_jws_asks(type));
    }

    rc = ngx_http_pyrepl_jws_status(ws, header, "busy");

    if (rc == NGX_OK) {
        if (ngx_strcmp(type, "kernel_info_request") == 0) {
            rc = ngx_http_pyrepl_jws_reply(ws, header, "kernel_info_reply",
                                         ngx_http_pyrepl_jws_kernel_info());

        } else if (ngx_strcmp(type, "comm_info_request") == 0) {
            rc = ngx_http_pyrepl_jws_reply(ws, header, "comm_info_reply",
                                           json_pack("{s:s,s:{}}", "status",
                                                     "ok", "comms"));

        } else if (len > sizeof("_request") - 1
                   && ngx_strcmp(type + len - (sizeof("_request") - 1),
                                 "_request") == 0)
        {
            /*
             * a request this kernel does not serve: its reply, failed,
             * named whatever the length (a cut name is no reply, or not
             * UTF-8)
             */
            len -= sizeof("_request") - 1;

            reply = ngx_alloc(len + sizeof("_reply"),
                              ws->request->connection->log);
            if (reply == NULL) {
                ngx_http_pyrepl_ws_close(ws, PR_WS_CLOSE_INTERNAL_ERROR,
                                         "out of memory");
                return NGX_DONE;
            }

            ngx_sprintf(reply, "%*s_reply%Z", len, type);

            rc = ngx_http_pyrepl_jws_reply(ws, header, (char *) reply,
                     json_pack("{s:s,s:s,s:s,s:[]}", "status", "error",
                               "ename", "NotImplementedError",
                               "evalue", "this kernel does not serve it",
                               "traceback"));
            ngx_free(reply);
        }
    }

    if (rc == NGX_OK) {
        rc = ngx_http_pyrepl_jws_status(ws, header, "idle");
    }

    return rc;
}


/* An execute_request: busy, execute_input, and the run in an exec. */
static ngx_int_t
ngx_http_pyrepl_jws_execute(ngx_http_pyrepl_ws_t *ws, json_t *msg)
{
    char                    *text;
    json_t                  *header, *content, *code, *body;
    ngx_int_t                rc;
    ngx_pool_t              *pool;
    const char              *ecode, *message;
    ngx_http_pyrepl_exec_t  *ex;
    ngx_http_pyrepl_jws_t   *jws;

    jws = ws->data;

    header = json_object_get(msg, "header");
    content = json_object_get(msg, "content");
    code = json_object_get(content, "code");

    jws->parent = json_incref(header);
    jws->prompted = 0;
    json_decref(jws->error);
    jws->error = NULL;

    rc = ngx_http_pyrepl_jws_status(ws, header, "busy");
    if (rc != NGX_OK) {
        return rc;
    }

    pool = ngx_create_pool(4096, ws->request->connection->log);
    ex = pool ? ngx_pcalloc(pool, sizeof(ngx_http_pyrepl_exec_t)) : NULL;
    body = json_pack("{s:s%}", "code",
                     json_is_string(code) ? json_string_value(code) : "",
                     json_is_string(code) ? json_string_length(code) : 0);

    if (ex == NULL || body == NULL) {
        json_decref(body);
        if (pool) {
            ngx_destroy_pool(pool);
        }

        ngx_http_pyrepl_ws_close(ws, PR_WS_CLOSE_INTERNAL_ERROR,
                                 "out of memory");
        return NGX_DONE;
    }

    ex->pool = pool;
    ex->log = ws->request->connection->log;
    ex->pmcf = ws->pmcf;
    ex->data = ws;
    ex->event = ngx_http_pyrepl_jws_event;
    ex->done = ngx_http_pyrepl_jws_done;
    ex->interactive = json_is_true(json_object_get(content, "allow_stdin"));
    ngx_memcpy(ex->id, ws->id, PYREPL_ID_LEN);

    rc = ngx_http_pyrepl_exec_parse(ex, body);
    json_decref(body);

    if (rc == NGX_OK) {
        rc = ngx_http_pyrepl_exec_reserve(ex);
    }

    if (rc != NGX_OK) {
        /* refused: too large, another client's run, a crashed session */
        (void) ngx_http_pyrepl_exec_refusal(ex, &ecode, &message);
        jws->error = json_pack("{s:s,s:s,s:[s]}", "ename", "SessionBusy",
                               "evalue", message, "traceback", message);
        ngx_destroy_pool(pool);

        rc = ngx_http_pyrepl_jws_send(ws, "iopub", "error", header,
                                      json_incref(jws->error));
        if (rc == NGX_OK) {
            rc = ngx_http_pyrepl_jws_reply(ws, header, "execute_reply",
                     json_pack("{s:s,s:I,s:O,s:O,s:O}", "status", "error",
                               "execution_count", (json_int_t) 0,
                               "ename", json_object_get(jws->error, "ename"),
                               "evalue", json_object_get(jws->error, "evalue"),
                               "traceback", json_object_get(jws->error,
                                                            "traceback")));
        }

        if (rc == NGX_OK) {
            rc = ngx_http_pyrepl_jws_status(ws, header, "idle");
        }

        json_decref(jws->parent);
        jws->parent = NULL;

        return rc == NGX_OK ? ngx_http_pyrepl_jws_next(ws) : rc;
    }

    jws->count = ex->execution_count + 1;

    /* the session's copies of this run to watchers carry this header */
    text = json_dumps(header, JSON_COMPACT);
    if (text != NULL) {
        ex->tag.len = ngx_strlen(text);
        ex->tag.data = ngx_pnalloc(pool, ex->tag.len);
        if (ex->tag.data != NULL) {
            ngx_memcpy(ex->tag.data, text, ex->tag.len);
        } else {
            ex->tag.len = 0;
        }

        free(text);
    }

    json_decref(jws->own[jws->nown % PYREPL_JUPYTER_OWN]);
    jws->own[jws->nown++ % PYREPL_JUPYTER_OWN] =
        json_incref(json_object_get(header, "msg_id"));

    rc = ngx_http_pyrepl_jws_send(ws, "iopub", "execute_input", header,
                                  json_pack("{s:s%,s:I}", "code",
                                            json_is_string(code)
                                            ? json_string_value(code) : "",
                                            json_is_string(code)
                                            ? json_string_length(code) : 0,
                                            "execution_count",
                                            (json_int_t) jws->count));
    if (rc != NGX_OK) {
        ngx_destroy_pool(pool);
        return rc;
    }

    ngx_http_pyrepl_ws_busy(ws, ex);

    if (ngx_http_pyrepl_exec_start(ex) == NGX_ERROR) {
        ngx_http_pyrepl_ws_end_exec(ws);
        ngx_http_pyrepl_ws_close(ws, PR_WS_CLOSE_INTERNAL_ERROR,
                                 "the run could not start");
        return NGX_DONE;
    }

    return ws->finished ? NGX_DONE : NGX_OK;
}


/* The next execute request that waited, if any. */
static ngx_int_t
ngx_http_pyrepl_jws_next(ngx_http_pyrepl_ws_t *ws)
{
    json_t                 *entry, *msg;
    ngx_int_t               rc;
    const char             *op;
    ngx_http_pyrepl_jws_t  *jws;

    jws = ws->data;

    if (ws->exec != NULL || jws->asking != NULL || ws->finished || ws->closing
        || json_array_size(jws->queue) == 0)
    {
        return ws->finished ? NGX_DONE : NGX_OK;
    }

    entry = json_incref(json_array_get(jws->queue, 0));
    (void) json_array_remove(jws->queue, 0);

    jws->queued -= json_integer_value(json_array_get(entry, 1));
    msg = json_incref(json_array_get(entry, 0));
    json_decref(entry);

    op = ngx_http_pyrepl_jws_asks(json_string_value(json_object_get(
             json_object_get(msg, "header"), "msg_type")));

    rc = op ? ngx_http_pyrepl_jws_ask(ws, msg, op)
            : ngx_http_pyrepl_jws_execute(ws, msg);
    json_decref(msg);

    return rc;
}


/* The runtime's op for an introspection request type, or NULL. */
static const char *
ngx_http_pyrepl_jws_asks(const char *type)
{
    ngx_uint_t  i;

    static const char  *ops[] = {
        "complete", "inspect", "is_complete", "history"
    };

    for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        if (ngx_strncmp(type, ops[i], ngx_strlen(ops[i])) == 0
            && ngx_strcmp(type + ngx_strlen(ops[i]), "_request") == 0)
        {
            return ops[i];
        }
    }

    return NULL;
}


/*
 * An introspection request: status busy, then an "introspect" frame to
 * the session on a connection of its own; the reply comes when it answers
 * (ngx_http_pyrepl_jws_answered).
 */
static ngx_int_t
ngx_http_pyrepl_jws_ask(ngx_http_pyrepl_ws_t *ws, json_t *msg,
    const char *op)
{
    char                   *text;
    json_t                 *header, *request;
    ngx_int_t               rc;
    ngx_str_t               sock;
    pr_frame_t              frame;
    ngx_http_pyrepl_jws_t  *jws;

    jws = ws->data;
    header = json_object_get(msg, "header");

    rc = ngx_http_pyrepl_jws_status(ws, header, "busy");
    if (rc != NGX_OK) {
        return rc;
    }

    jws->parent = json_incref(header);
    ngx_snprintf((u_char *) jws->reply, sizeof(jws->reply), "%s_reply%Z",
                 op);

    request = json_deep_copy(json_object_get(msg, "content"));
    if (!json_is_object(request)) {
        json_decref(request);
        request = json_object();
    }

    text = NULL;

    if (request != NULL
        && json_object_set_new(request, "op", json_string(op)) == 0)
    {
        text = json_dumps(request, JSON_COMPACT);
    }

    json_decref(request);

    jws->asking = ngx_create_pool(1024, ws->request->connection->log);
    jws->peer = jws->asking ? ngx_pcalloc(jws->asking,
                                          sizeof(ngx_http_pyrepl_peer_t))
                            : NULL;

    if (text == NULL || jws->peer == NULL
        || ngx_http_pyrepl_socket_path(ws->pmcf, jws->asking, ws->id, &sock)
           != NGX_OK)
    {
        free(text);
        return ngx_http_pyrepl_jws_ask_end(ws, NULL);
    }

    jws->peer->data = jws;
    jws->peer->log = ws->request->connection->log;
    jws->peer->max_frame = ws->pmcf->max_frame;
    jws->peer->read_timeout = ws->pmcf->supervisor_timeout;
    jws->peer->frame_handler = ngx_http_pyrepl_jws_answered;
    jws->peer->fail_handler = ngx_http_pyrepl_jws_ask_failed;

    ngx_memzero(&frame, sizeof(pr_frame_t));
    frame.type = PR_T_INTROSPECT;
    pr_set_str(&frame, text, text, ngx_strlen(text));

    rc = ngx_http_pyrepl_peer_connect(jws->peer, &sock, jws->asking);

    if (rc == NGX_OK) {
        rc = ngx_http_pyrepl_peer_send(jws->peer, jws->asking, &frame);
    }

    free(text);

    if (rc != NGX_OK) {
        return ngx_http_pyrepl_jws_ask_end(ws, NULL);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_pyrepl_jws_answered(ngx_http_pyrepl_peer_t *peer, pr_frame_t *frame)
{
    json_t                 *content;
    ngx_http_pyrepl_jws_t  *jws;

    jws = peer->data;

    content = (frame->type == PR_T_OK && pr_has(frame, text))
              ? json_loadb(frame->text.data, frame->text.len, 0, NULL)
              : NULL;

    ngx_http_pyrepl_peer_close(peer);

    (void) ngx_http_pyrepl_jws_ask_end(jws->ws, content);

    return NGX_DONE;
}


static void
ngx_http_pyrepl_jws_ask_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason)
{
    ngx_http_pyrepl_jws_t  *jws;

    jws = peer->data;

    ngx_log_error(NGX_LOG_INFO, peer->log, 0,
                  "pyrepl: a kernel's session did not answer: %s", reason);

    (void) ngx_http_pyrepl_jws_ask_end(jws->ws, NULL);
}


/*
 * The introspection is over: its reply (content stolen; NULL: the session
 * could not answer, busy with another client's run or gone), status idle,
 * and the next request.
 */
static ngx_int_t
ngx_http_pyrepl_jws_ask_end(ngx_http_pyrepl_ws_t *ws, json_t *content)
{
    json_t                 *parent;
    ngx_int_t               rc;
    ngx_http_pyrepl_jws_t  *jws;

    jws = ws->data;

    ngx_http_pyrepl_jws_ask_free(jws);

    if (!json_is_object(content)) {
        json_decref(content);
        content = json_pack("{s:s,s:s,s:s,s:[]}", "status", "error",
                            "ename", "SessionBusy",
                            "evalue", "the session could not answer (it is "
                            "running another client's code)",
                            "traceback");
    }

    parent = jws->parent;
    jws->parent = NULL;

    rc = ngx_http_pyrepl_jws_reply(ws, parent, jws->reply, content);

    if (rc == NGX_OK) {
        rc = ngx_http_pyrepl_jws_status(ws, parent, "idle");
    }

    json_decref(parent);

    return rc == NGX_OK ? ngx_http_pyrepl_jws_next(ws) : rc;
}


static void
ngx_http_pyrepl_jws_ask_free(ngx_http_pyrepl_jws_t *jws)
{
    if (jws->asking == NULL) {
        return;
    }

    ngx_http_pyrepl_peer_close(jws->peer);
    ngx_destroy_pool(jws->asking);
    jws->asking = NULL;
    jws->peer = NULL;
}


/* A run's event, as Jupyter's message. */
static ngx_int_t
ngx_http_pyrepl_jws_event(ngx_http_pyrepl_exec_t *ex, const char *event,
    json_t *data)
{
    json_t                 *content;
    ngx_int_t               rc;
    const char             *channel, *type;
    ngx_http_pyrepl_ws_t   *ws;
    ngx_http_pyrepl_jws_t  *jws;

    ws = ex->data;
    jws = ws->data;

    if (data == NULL) {
        ngx_http_pyrepl_ws_close(ws, PR_WS_CLOSE_INTERNAL_ERROR,
                                 "out of memory");
        return NGX_ERROR;
    }

    if (ngx_strcmp(event, "error") == 0) {
        json_decref(jws->error);
        jws->error = json_incref(data);

    } else if (ngx_strcmp(event, "input_request") == 0) {
        jws->prompted = 1;
    }

    content = ngx_http_pyrepl_jws_content(event, data, jws->count, &channel,
                                          &type);
    json_decref(data);

    if (type == NULL) {
        return NGX_OK;                                  /* init */
    }

    rc = ngx_http_pyrepl_jws_send(ws, channel, type, jws->parent, content);
    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_pyrepl_ws_backpressure(ws, ex);
}


/*
 * The content of the Jupyter message a run's event (its data) is, on
 * *channel as *type; NULL with *type NULL for an event that is none
 * (init), or NULL for no memory.  count: the run's execution_count.
 */
static json_t *
ngx_http_pyrepl_jws_content(const char *event, json_t *data,
    ngx_uint_t count, const char **channel, const char **type)
{
    *channel = "iopub";
    *type = NULL;

    if (ngx_strcmp(event, "stdout") == 0 || ngx_strcmp(event, "stderr") == 0)
    {
        *type = "stream";
        return json_pack("{s:s,s:O}", "name", event, "text",
                         json_object_get(data, "text"));
    }

    if (ngx_strcmp(event, "display_data") == 0) {
        *type = "display_data";
        return json_pack("{s:O,s:O,s:{}}",
                         "data", json_object_get(data, "data"),
                         "metadata", json_object_get(data, "metadata"),
                         "transient");
    }

    if (ngx_strcmp(event, "result") == 0) {
        *type = "execute_result";
        return json_pack("{s:I,s:O,s:O}",
                         "execution_count", (json_int_t) count,
                         "data", json_object_get(data, "data"),
                         "metadata", json_object_get(data, "metadata"));
    }

    if (ngx_strcmp(event, "error") == 0) {
        *type = "error";
        return json_incref(data);
    }

    if (ngx_strcmp(event, "input_request") == 0) {
        *channel = "stdin";
        *type = "input_request";
        return json_pack("{s:O,s:O}", "prompt",
                         json_object_get(data, "prompt"), "password",
                         json_object_get(data, "password"));
    }

    return NULL;
}


/* The run ended: execute_reply, status idle, and the next request. */
static void
ngx_http_pyrepl_jws_done(ngx_http_pyrepl_exec_t *ex, const char *status,
    ngx_uint_t count, ngx_msec_t ms)
{
    json_t                 *content, *parent;
    ngx_int_t               rc;
    ngx_http_pyrepl_ws_t   *ws;
    ngx_http_pyrepl_jws_t  *jws;

    ws = ex->data;
    jws = ws->data;

    ngx_http_pyrepl_ws_end_exec(ws);

    parent = jws->parent;
    jws->parent = NULL;

    if (ngx_strcmp(status, "ok") == 0) {
        content = json_pack("{s:s,s:I,s:{},s:[]}", "status", "ok",
                            "execution_count", (json_int_t) count,
                            "user_expressions", "payload");

    } else {
        /* an error, an interrupt, a timeout, a crash */
        if (jws->error == NULL) {
            jws->error = json_pack("{s:s,s:s,s:[]}", "ename",
                                   "KeyboardInterrupt", "evalue", status,
                                   "traceback");
        }

        content = json_pack("{s:s,s:I,s:O,s:O,s:O}", "status", "error",
                            "execution_count", (json_int_t) count,
                            "ename", json_object_get(jws->error, "ename"),
                            "evalue", json_object_get(jws->error, "evalue"),
                            "traceback", json_object_get(jws->error,
                                                         "traceback"));
    }

    rc = ngx_http_pyrepl_jws_reply(ws, parent, "execute_reply", content);

    if (rc == NGX_OK) {
        rc = ngx_http_pyrepl_jws_status(ws, parent, "idle");
    }

    json_decref(parent);

    if (rc == NGX_OK && ngx_http_pyrepl_jws_next(ws) == NGX_OK
        && ws->exec == NULL)
    {
        ngx_http_pyrepl_ws_idle(ws);
    }
}


static ngx_int_t
ngx_http_pyrepl_jws_reply(ngx_http_pyrepl_ws_t *ws, json_t *parent,
    const char *type, json_t *content)
{
    return ngx_http_pyrepl_jws_send(ws, "shell", type, parent, content);
}


static ngx_int_t
ngx_http_pyrepl_jws_status(ngx_http_pyrepl_ws_t *ws, json_t *parent,
    const char *state)
{
    return ngx_http_pyrepl_jws_send(ws, "iopub", "status", parent,
                                    json_pack("{s:s}", "execution_state",
                                              state));
}


/*
 * Send one message (content stolen) on channel, in the socket's framing.
 * Returns NGX_OK, or NGX_DONE when the connection is closing or gone.
 */
static ngx_int_t
ngx_http_pyrepl_jws_send(ngx_http_pyrepl_ws_t *ws, const char *channel,
    const char *type, json_t *parent, json_t *content)
{
    u_char                  id[PYREPL_UUID_LEN + 2 * NGX_INT64_LEN + 2];
    u_char                  date[sizeof("2026-01-01T00:00:00.000000Z")];
    char                   *part[4];
    size_t                  len[4], total, n;
    u_char                 *buf, *p;
    json_t                 *header, *msg, *parts[4];
    uint64_t                off, v;
    ngx_tm_t                tm;
    ngx_int_t               rc;
    ngx_uint_t              i;
    ngx_time_t             *tp;
    ngx_http_pyrepl_jws_t  *jws;

    jws = ws->data;

    if (content == NULL) {
        ngx_http_pyrepl_ws_close(ws, PR_WS_CLOSE_INTERNAL_ERROR,
                                 "out of memory");
        return NGX_DONE;
    }

    tp = ngx_timeofday();
    ngx_gmtime(tp->sec, &tm);

    ngx_sprintf(date, "%4d-%02d-%02dT%02d:%02d:%02d.%03M000Z%Z",
                tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec, tp->msec);

    ngx_sprintf(id, "%*s_%uA_%uL%Z", (size_t) PYREPL_UUID_LEN, jws->uuid,
                ws->request->connection->number, ++jws->seq);

    header = json_pack("{s:s,s:s,s:s%,s:s,s:s,s:s}",
                       "msg_id", (char *) id,
                       "msg_type", type,
                       "session", (char *) jws->uuid,
                       (size_t) PYREPL_UUID_LEN,
                       "username", "kernel",
                       "date", (char *) date,
                       "version", PYREPL_JUPYTER_VERSION);

    if (header == NULL) {
        json_decref(content);
        ngx_http_pyrepl_ws_close(ws, PR_WS_CLOSE_INTERNAL_ERROR,
                                 "out of memory");
        return NGX_DONE;
    }

    if (!ws->subproto) {
        msg = json_pack("{s:s,s:s,s:s,s:o,s:o,s:{},s:o,s:[]}",
                        "channel", channel,
                        "msg_id", (char *) id,
                        "msg_type", type,
                        "header", header,
                        "parent_header", parent ? json_incref(parent)
                                                : json_object(),
                        "metadata",
                        "content", content,
                        "buffers");

        part[0] = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
        json_decref(msg);

        rc = part[0] ? ngx_http_pyrepl_ws_send_frame(ws, PR_WS_OP_TEXT,
                                                     (u_char *) part[0],
                                                     ngx_strlen(part[0]))
                     : NGX_ERROR;
        free(part[0]);

        goto sent;
    }

    /* v1: 6 offsets (56 bytes of them and their count), then the parts */
    parts[0] = header;
    parts[1] = parent ? json_incref(parent) : json_object();
    parts[2] = json_object();
    parts[3] = content;

    total = 7 * 8 + ngx_strlen(channel);
    rc = NGX_OK;

    for (i = 0; i < 4; i++) {
        part[i] = parts[i] ? json_dumps(parts[i], JSON_COMPACT) : NULL;
        len[i] = part[i] ? ngx_strlen(part[i]) : 0;
        total += len[i];

        if (part[i] == NULL) {
            rc = NGX_ERROR;
        }
    }

    buf = (rc == NGX_OK) ? ngx_alloc(total, ws->request->connection->log)
                         : NULL;

    if (buf != NULL) {
        p = buf;
        v = htole64(6);
        p = ngx_cpymem(p, &v, 8);

        off = 7 * 8;
        v = htole64(off);
        p = ngx_cpymem(p, &v, 8);

        off += ngx_strlen(channel);
        v = htole64(off);
        p = ngx_cpymem(p, &v, 8);

        for (i = 0; i < 4; i++) {
            off += len[i];
            v = htole64(off);
            p = ngx_cpymem(p, &v, 8);
        }

        n = ngx_strlen(channel);
        p = ngx_cpymem(p, channel, n);

        for (i = 0; i < 4; i++) {
            p = ngx_cpymem(p, part[i], len[i]);
        }

        rc = ngx_http_pyrepl_ws_send_frame(ws, PR_WS_OP_BINARY, buf, total);
        ngx_free(buf);

    } else {
        rc = NGX_ERROR;
    }

    for (i = 0; i < 4; i++) {
        free(part[i]);
        json_decref(parts[i]);
    }

    return (rc == NGX_ERROR) ? NGX_DONE : rc;

sent:

    return (rc == NGX_ERROR) ? NGX_DONE : rc;
}


/* Ask the session for copies of every run (the "watch" connection). */
static void
ngx_http_pyrepl_jws_watch(ngx_http_pyrepl_ws_t *ws)
{
    ngx_str_t               sock;
    pr_frame_t              frame;
    ngx_http_pyrepl_jws_t  *jws;

    jws = ws->data;

    jws->watching = ngx_create_pool(1024, ws->request->connection->log);
    jws->watch = jws->watching
                 ? ngx_pcalloc(jws->watching, sizeof(ngx_http_pyrepl_peer_t))
                 : NULL;

    if (jws->watch == NULL
        || ngx_http_pyrepl_socket_path(ws->pmcf, jws->watching, ws->id,
                                       &sock)
           != NGX_OK)
    {
        ngx_http_pyrepl_jws_watch_free(jws);
        return;
    }

    jws->watch->data = jws;
    jws->watch->log = ws->request->connection->log;
    jws->watch->max_frame = ws->pmcf->max_frame;
    jws->watch->frame_handler = ngx_http_pyrepl_jws_watched;
    jws->watch->fail_handler = ngx_http_pyrepl_jws_watch_failed;

    ngx_memzero(&frame, sizeof(pr_frame_t));
    frame.type = PR_T_WATCH;

    if (ngx_http_pyrepl_peer_connect(jws->watch, &sock, jws->watching)
           != NGX_OK
        || ngx_http_pyrepl_peer_send(jws->watch, jws->watching, &frame)
           != NGX_OK)
    {
        /* no copies: the socket still serves its own requests */
        ngx_http_pyrepl_jws_watch_free(jws);
    }
}


/* A copy of a run's frame: the run's iopub messages on this socket. */
static ngx_int_t
ngx_http_pyrepl_jws_watched(ngx_http_pyrepl_peer_t *peer, pr_frame_t *frame)
{
    json_t                 *content, *tag, *data;
    ngx_uint_t              i;
    const char             *type, *channel, *event;
    ngx_http_pyrepl_ws_t   *ws;
    ngx_http_pyrepl_jws_t  *jws;

    jws = peer->data;
    ws = jws->ws;

    switch (frame->type) {

    case PR_T_OK:
        return NGX_OK;                              /* watching */

    case PR_T_RUN:
        json_decref(jws->watched);
        jws->watched = NULL;

        tag = pr_has(frame, tag)
              ? json_loadb(frame->tag.data, frame->tag.len, 0, NULL) : NULL;

        jws->skip = 0;

        for (i = 0; tag != NULL && i < PYREPL_JUPYTER_OWN; i++) {
            if (jws->own[i] != NULL
                && json_equal(jws->own[i], json_object_get(tag, "msg_id")))
            {
                jws->skip = 1;
            }
        }

        if (jws->skip) {
            json_decref(tag);
            return NGX_OK;
        }

        /* a run of PyREPL's own API has no header: its parent is empty */
        jws->watched = json_is_object(tag) ? tag : json_object();
        if (tag != jws->watched) {
            json_decref(tag);
        }

        if (jws->watched == NULL || ws->out_size > PYREPL_JUPYTER_HIGH) {
            return NGX_OK;
        }

        if (ngx_http_pyrepl_jws_status(ws, jws->watched, "busy") != NGX_OK
            || ngx_http_pyrepl_jws_send(ws, "iopub", "execute_input",
                   jws->watched,
                   json_pack("{s:s%,s:I}", "code",
                             frame->code.data ? frame->code.data : "",
                             frame->code.len,
                             "execution_count", (json_int_t) frame->count))
               != NGX_OK)
        {
            return NGX_DONE;
        }

        return NGX_OK;

    default:
        break;
    }

    if (jws->skip || jws->watched == NULL) {
        return NGX_OK;
    }

    if (frame->type == PR_T_COMPLETE) {
        tag = jws->watched;
        jws->watched = NULL;

        if (ngx_http_pyrepl_jws_status(ws, tag, "idle") != NGX_OK) {
            json_decref(tag);
            return NGX_DONE;
        }

        json_decref(tag);
        return NGX_OK;
    }

    if (ws->out_size > PYREPL_JUPYTER_HIGH) {
        return NGX_OK;                  /* a socket that does not read */
    }

    /* read as the socket's own runs are, the copy's count its own */
    data = ngx_http_pyrepl_exec_output(frame, &event);
    if (event == NULL) {
        return NGX_OK;
    }

    type = NULL;
    content = data ? ngx_http_pyrepl_jws_content(event, data,
                                                 (ngx_uint_t) frame->count,
                                                 &channel, &type)
                   : NULL;
    json_decref(data);

    if (content == NULL || type == NULL || ngx_strcmp(channel, "iopub") != 0)
    {
        json_decref(content);
        return NGX_OK;
    }

    return ngx_http_pyrepl_jws_send(ws, channel, type, jws->watched,
                                    content) == NGX_OK ? NGX_OK : NGX_DONE;
}


/* The session went (a restart, a delete): no more copies. */
static void
ngx_http_pyrepl_jws_watch_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason)
{
    ngx_http_pyrepl_jws_t  *jws;

    jws = peer->data;

    ngx_log_error(NGX_LOG_INFO, peer->log, 0,
                  "pyrepl: a kernel's copies of its runs ended: %s", reason);

    ngx_http_pyrepl_jws_watch_free(jws);
}


static void
ngx_http_pyrepl_jws_watch_free(ngx_http_pyrepl_jws_t *jws)
{
    json_decref(jws->watched);
    jws->watched = NULL;

    if (jws->watching == NULL) {
        return;
    }

    if (jws->watch != NULL) {
        ngx_http_pyrepl_peer_close(jws->watch);
    }

    ngx_destroy_pool(jws->watching);
    jws->watching = NULL;
    jws->watch = NULL;
}


/* kernel_info_reply's content. */
static json_t *
ngx_http_pyrepl_jws_kernel_info(void)
{
    return json_pack("{s:s,s:s,s:s,s:s,"
                     "s:{s:s,s:s,s:s,s:s,s:s,s:{s:s,s:i},s:s},"
                     "s:s,s:[],s:b}",
                     "status", "ok",
                     "protocol_version", PYREPL_JUPYTER_VERSION,
                     "implementation", "pyrepl",
                     "implementation_version", "1",
                     "language_info",
                     "name", "python",
                     "version", PY_VERSION,
                     "mimetype", "text/x-python",
                     "file_extension", ".py",
                     "pygments_lexer", "ipython3",
                     "codemirror_mode", "name", "ipython", "version", 3,
                     "nbconvert_exporter", "python",
                     "banner", "PyREPL: Python in nginx",
                     "help_links",
                     "debugger", 0);
}


static void
ngx_http_pyrepl_jws_cleanup(ngx_http_pyrepl_ws_t *ws)
{
    ngx_uint_t              i;
    ngx_http_pyrepl_jws_t  *jws;

    jws = ws->data;

    ngx_http_pyrepl_jws_ask_free(jws);
    ngx_http_pyrepl_jws_watch_free(jws);

    for (i = 0; i < PYREPL_JUPYTER_OWN; i++) {
        json_decref(jws->own[i]);
        jws->own[i] = NULL;
    }

    json_decref(jws->queue);
    json_decref(jws->parent);
    json_decref(jws->error);
    jws->queue = NULL;
    jws->parent = NULL;
    jws->error = NULL;
}
