/*
 * ngx_http_pyrepl_ws.h: WebSocket connections (ngx_http_pyrepl_ws.c): the
 * upgrade, frames each way under flow control, pings, the close; and the
 * messages they carry, PyREPL's own (GET .../ws) or, through a protocol
 * of its own, Jupyter's channels (ngx_http_pyrepl_jupyter_ws.c).
 */

#ifndef NGX_HTTP_PYREPL_WS_H
#define NGX_HTTP_PYREPL_WS_H


#include "ngx_http_pyrepl_module.h"
#include "ngx_http_pyrepl_exec.h"
#include "pyrepl_ws.h"

#include <jansson.h>


typedef struct ngx_http_pyrepl_ws_s  ngx_http_pyrepl_ws_t;

/*
 * The messages of a kind of WebSocket: the subprotocol it may choose, what
 * a text or binary frame from the client does (NGX_OK to read on,
 * NGX_DONE once the connection is closing or gone), and what is left to
 * free when the connection ends (called once, may be NULL).
 */
typedef struct {
    const char                   *subprotocol;
    ngx_int_t                   (*message)(ngx_http_pyrepl_ws_t *ws,
                                           pr_ws_frame_t *f);
    void                        (*cleanup)(ngx_http_pyrepl_ws_t *ws);
} ngx_http_pyrepl_ws_proto_t;


struct ngx_http_pyrepl_ws_s {
    ngx_http_request_t           *request;
    ngx_http_pyrepl_main_conf_t  *pmcf;
    u_char                        id[PYREPL_ID_LEN];

    pr_ws_parser_t                parser;

    ngx_chain_t                  *out;        /* frames not yet sent */
    ngx_chain_t                 **last_out;
    ngx_chain_t                  *free;
    size_t                        out_size;

    ngx_http_pyrepl_exec_t       *exec;       /* the run going on */
    json_t                       *run_id;     /* the client's id for it */
    json_t                       *inputs;     /* ids of the input messages */
                                              /* not answered yet, oldest */
                                              /* first */

    ngx_event_t                   finish;     /* posted: end the request */
    ngx_event_t                   keepalive;  /* every pyrepl_keepalive */
    ngx_msec_t                    sent_at;    /* the last frame queued */
    ngx_msec_t                    pinged_at;  /* the ping not answered */

    const ngx_http_pyrepl_ws_proto_t  *proto;  /* PyREPL's messages or */
    void                         *data;       /* Jupyter's; its state */

    unsigned                      subproto:1; /* the client took the */
                                              /* proto's subprotocol */
    unsigned                      paused:1;
    unsigned                      deaf:1;     /* not reading the client */
    unsigned                      closing:1;  /* our close frame is queued */
    unsigned                      finished:1;
    unsigned                      pinged:1;   /* no frame from the client */
                                              /* since our last ping */
};


ngx_int_t ngx_http_pyrepl_ws_handler(ngx_http_request_t *r, u_char *id);

/* Upgrade r to a WebSocket of session id speaking proto. */
ngx_int_t ngx_http_pyrepl_ws_open(ngx_http_request_t *r, u_char *id,
    const ngx_http_pyrepl_ws_proto_t *proto, void *data);

ngx_int_t ngx_http_pyrepl_ws_send_frame(ngx_http_pyrepl_ws_t *ws,
    int opcode, const u_char *payload, size_t len);
void ngx_http_pyrepl_ws_close(ngx_http_pyrepl_ws_t *ws, uint16_t code,
    const char *reason);

/*
 * After queueing the exec's output: NGX_AGAIN (the exec paused) when the
 * client has PYREPL_WS_HIGH bytes to read, else NGX_OK.
 */
ngx_int_t ngx_http_pyrepl_ws_backpressure(ngx_http_pyrepl_ws_t *ws,
    ngx_http_pyrepl_exec_t *ex);

/* A run begins on ws (a graceful shutdown waits for it). */
void ngx_http_pyrepl_ws_busy(ngx_http_pyrepl_ws_t *ws,
    ngx_http_pyrepl_exec_t *ex);
void ngx_http_pyrepl_ws_end_exec(ngx_http_pyrepl_ws_t *ws);
void ngx_http_pyrepl_ws_idle(ngx_http_pyrepl_ws_t *ws);

#endif /* NGX_HTTP_PYREPL_WS_H */
