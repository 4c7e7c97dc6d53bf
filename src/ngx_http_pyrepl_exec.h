/*
 * ngx_http_pyrepl_exec.h: one run in a session, for any sink
 * (ngx_http_pyrepl_exec.c).
 */

#ifndef NGX_HTTP_PYREPL_EXEC_H
#define NGX_HTTP_PYREPL_EXEC_H


#include "ngx_http_pyrepl_module.h"
#include "ngx_http_pyrepl_peer.h"

#include <jansson.h>


typedef struct ngx_http_pyrepl_exec_s  ngx_http_pyrepl_exec_t;

/*
 * Why a run did not start (ex->refusal).  ngx_http_pyrepl_exec_refusal()
 * is the one place each becomes the API's error, for every sink.
 */
#define PYREPL_REFUSED_BAD_REQUEST  1    /* ex->why says what is wrong */
#define PYREPL_REFUSED_TOO_LARGE    2    /* over pyrepl_max_code_size */
#define PYREPL_REFUSED_NOT_FOUND    3    /* no such session (any more) */
#define PYREPL_REFUSED_BUSY         4    /* another run has the session */
#define PYREPL_REFUSED_RUNNING      5    /* this WebSocket's own run goes on */
#define PYREPL_REFUSED_TX_PENDING   6    /* a run's effects await their fate */
#define PYREPL_REFUSED_UNFINISHED   7    /* the session process still ends */
                                         /* an earlier run */

/*
 * An event for the sink (data reference stolen).  Returns NGX_OK, NGX_AGAIN
 * when the sink paused the exec, or NGX_ERROR when the sink has failed and
 * may have freed the exec.
 */
typedef ngx_int_t (*ngx_http_pyrepl_event_pt)(ngx_http_pyrepl_exec_t *ex,
    const char *event, json_t *data);

/*
 * The session process answered an input sent on the run's connection
 * (ngx_http_pyrepl_exec_input): taken, or refused because no input() was
 * waiting (or its request id is another's).  Returns NGX_OK, or NGX_ERROR
 * when the sink has failed.
 */
typedef ngx_int_t (*ngx_http_pyrepl_input_pt)(ngx_http_pyrepl_exec_t *ex,
    ngx_uint_t taken);

/* The run is over; called once, the exec may be freed by it. */
typedef void (*ngx_http_pyrepl_done_pt)(ngx_http_pyrepl_exec_t *ex,
    const char *status, ngx_uint_t count, ngx_msec_t ms);

struct ngx_http_pyrepl_exec_s {
    ngx_http_pyrepl_peer_t        peer;
    ngx_http_pyrepl_peer_t        sup;        /* asked why the session */
                                              /* process went away */
    ngx_pool_t                   *pool;
    ngx_log_t                    *log;
    ngx_http_pyrepl_main_conf_t  *pmcf;
    void                         *data;       /* the sink's */
    ngx_http_pyrepl_event_pt      event;
    ngx_http_pyrepl_done_pt       done;
    ngx_http_pyrepl_input_pt      input_done; /* optional */

    u_char                        id[PYREPL_ID_LEN];
    u_char                        exec_id[PYREPL_ID_LEN];
    ngx_str_t                     code;
    ngx_str_t                     tag;        /* copied to watchers, or */
                                              /* empty */
    ngx_msec_t                    timeout;
    ngx_uint_t                    lang;
    ngx_str_t                     cwd;        /* bash: this run only */
    ngx_str_t                     stdin_text; /* bash: the command's stdin */
    ngx_array_t                  *env;        /* bash: ngx_str_t "K=V" */
    ngx_int_t                     exit_code;  /* bash: -1 until known */
    json_t                       *changes;    /* python: from complete */
    const char                   *tx_policy;  /* NULL: commit_always */
    u_char                        tx[16];     /* what became of it */
    ngx_uint_t                    execution_count;
    size_t                        output;     /* stdout + stderr bytes */
    ngx_uint_t                    inputs;     /* input frames sent and */
                                              /* not answered yet */
    ngx_event_t                   watchdog;   /* timeout + grace */
    ngx_http_pyrepl_turn_t        turn;       /* E2B's: waiting in line */
    ngx_uint_t                    refusal;    /* PYREPL_REFUSED_* */
    const char                   *why;        /* a bad request's words */
    u_char                        text[96];   /* room for them */

    unsigned                      interactive:1; /* input() is answerable */
    unsigned                      ended:1;    /* the table is updated */
    unsigned                      crashed:1;  /* known dead at reserve */
    unsigned                      truncated:1; /* over max_output */
    unsigned                      has_cwd:1;
    unsigned                      has_stdin:1;
    unsigned                      terminated:1; /* ended before this run */
    unsigned                      opensandbox:1; /* that dialect's fields */
    unsigned                      e2b:1;      /* E2B's: env_vars */
    unsigned                      cleanup:1;  /* the pool's is there */
    unsigned                      one_shot:1; /* execd's POST /command: */
                                              /* its cwd and env are the */
                                              /* session's, set at create */
};

ngx_int_t ngx_http_pyrepl_exec_reserve(ngx_http_pyrepl_exec_t *ex);
ngx_uint_t ngx_http_pyrepl_exec_refusal(ngx_http_pyrepl_exec_t *ex,
    const char **code, const char **message);
ngx_int_t ngx_http_pyrepl_exec_start(ngx_http_pyrepl_exec_t *ex);
void ngx_http_pyrepl_exec_pause(ngx_http_pyrepl_exec_t *ex);
void ngx_http_pyrepl_exec_resume(ngx_http_pyrepl_exec_t *ex);
ngx_int_t ngx_http_pyrepl_exec_interrupt(ngx_http_pyrepl_exec_t *ex);
ngx_int_t ngx_http_pyrepl_exec_input(ngx_http_pyrepl_exec_t *ex,
    json_t *value, json_t *request_id);
json_t *ngx_http_pyrepl_exec_output(pr_frame_t *frame, const char **event);
ngx_int_t ngx_http_pyrepl_exec_summary(ngx_http_pyrepl_exec_t *ex,
    json_t *obj);

#endif /* NGX_HTTP_PYREPL_EXEC_H */
