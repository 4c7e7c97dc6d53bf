/*
 * ngx_http_pyrepl_module.h: the types the files of the pyrepl module share:
 * its configuration, the session record kept in shared memory, the
 * non-blocking frame connection to worker processes, and the entry points
 * each file offers the others.
 *
 *   ngx_http_pyrepl_module.c   directives, configuration, request routing
 *   ngx_http_pyrepl_spawn.c    starting the supervisor from the nginx master
 *   ngx_http_pyrepl_table.c    the session table in shared memory
 *   ngx_http_pyrepl_auth.c     API keys and tenants
 *   ngx_http_pyrepl_peer.c     frame connections over nginx's event loop
 *   ngx_http_pyrepl_reply.c    JSON bodies, errors, request body reading
 *   ngx_http_pyrepl_session.c  create, list, get, delete
 *   ngx_http_pyrepl_control.c  renew, interrupt, input
 *   ngx_http_pyrepl_exec.c     one run in a session, for any sink
 *   ngx_http_pyrepl_run.c      POST .../run: the SSE and JSON answers
 *   ngx_http_pyrepl_ws.c       GET .../ws: the WebSocket API
 *   ngx_http_pyrepl_reaper.c   ending sessions past their TTL or idle time
 *   ngx_http_pyrepl_status.c   pyrepl_status: health JSON and metrics
 */

#ifndef NGX_HTTP_PYREPL_MODULE_H
#define NGX_HTTP_PYREPL_MODULE_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>

#include "pyrepl_proto.h"
#include "pyrepl_shared.h"


typedef enum {
    PYREPL_STATE_STARTING = 0,
    PYREPL_STATE_IDLE,
    PYREPL_STATE_BUSY,
    PYREPL_STATE_CRASHED,
    PYREPL_STATE_TERMINATED,        /* ended by its own code (bash exit) */
    PYREPL_STATE_REAPING            /* expired, being killed: gone (404) */
} ngx_http_pyrepl_state_e;


typedef enum {
    PYREPL_LANG_PYTHON = 0,
    PYREPL_LANG_BASH
} ngx_http_pyrepl_lang_e;


/* how runs end, as execution_complete's "status" says */
typedef enum {
    PYREPL_RUN_OK = 0,
    PYREPL_RUN_ERROR,
    PYREPL_RUN_INTERRUPTED,
    PYREPL_RUN_TIMEOUT,
    PYREPL_RUN_CRASHED,
    PYREPL_RUN_STATUS_MAX
} ngx_http_pyrepl_run_status_e;

/* upper bounds of the run duration histogram, in milliseconds; then +Inf */
#define PYREPL_RUN_BUCKETS  { 1, 5, 10, 50, 100, 500, 1000, 5000, 30000 }
#define PYREPL_RUN_NBUCKETS 10


/* counters every worker adds to, for pyrepl_status (atomics, no lock) */
typedef struct {
    ngx_atomic_t             creates;
    ngx_atomic_t             runs[PYREPL_RUN_STATUS_MAX];
    ngx_atomic_t             run_buckets[PYREPL_RUN_NBUCKETS];
    ngx_atomic_t             run_ms_sum;
    ngx_atomic_t             crashes;
    ngx_atomic_t             reaped;
} ngx_http_pyrepl_counters_t;


/*
 * One session as every nginx worker sees it.  Copies of it leave the zone
 * only by value (ngx_http_pyrepl_table_get), never as pointers.
 */
typedef struct {
    u_char                   id[PYREPL_ID_LEN];
    ngx_uint_t               lang;
    ngx_uint_t               state;
    ngx_pid_t                pid;            /* the session process */
    ngx_pid_t                runner;         /* nginx worker streaming a run */
    uint64_t                 tenant;         /* of the key that created it */
    time_t                   created;
    time_t                   expires;
    time_t                   last_activity;
    ngx_uint_t               execution_count;
    ngx_uint_t               tx_pending;     /* an explicit run's effects */
                                             /* wait for commit/rollback */
    u_char                   checkpoint[PYREPL_ID_LEN];    /* the latest */
    u_char                   restored_from[PYREPL_ID_LEN];
    unsigned                 has_checkpoint:1;
    unsigned                 restored:1;     /* restored_from is set */
    unsigned                 reviving:1;     /* being restored after a crash */
} ngx_http_pyrepl_session_t;


/* a crashed session to bring back (ngx_http_pyrepl_revive.c) */
typedef struct {
    u_char                   id[PYREPL_ID_LEN];
    u_char                   checkpoint[PYREPL_ID_LEN];
    uint64_t                 tenant;
    ngx_uint_t               crashed;        /* else idle: is it alive? */
} ngx_http_pyrepl_revivable_t;


typedef struct {
    ngx_rbtree_t             rbtree;
    ngx_rbtree_node_t        sentinel;
    ngx_queue_t              queue;          /* all sessions, newest first */
    ngx_uint_t               count;
    ngx_http_pyrepl_counters_t  counters;
} ngx_http_pyrepl_shctx_t;


typedef struct {
    ngx_http_pyrepl_shctx_t *sh;
    ngx_slab_pool_t         *shpool;
} ngx_http_pyrepl_zone_ctx_t;


typedef struct {
    ngx_str_t                key;
    uint64_t                 tenant;
} ngx_http_pyrepl_key_t;


/* the confinement of session processes (ngx_http_pyrepl_sandbox.c) */
typedef struct {
    ngx_str_t                user;           /* pyrepl_user */
    ngx_str_t                group;
    ngx_uid_t                uid;            /* resolved from them */
    ngx_gid_t                gid;
    ngx_int_t                uid_base;       /* 0: off */
    off_t                    memory;         /* 0: off */
    time_t                   cpu;            /* 0: off */
    ngx_uint_t               max_processes;
    off_t                    file_size;      /* 0: off */
    ngx_uint_t               open_files;
    ngx_uint_t               seccomp;        /* 0 off, 1 on, 2 log */
    ngx_flag_t               network;
    ngx_array_t             *env;            /* pyrepl_env: ngx_str_t */
} ngx_http_pyrepl_sandbox_conf_t;

#define NGX_HTTP_PYREPL_SANDBOX_ARGS  20     /* argv entries, at most */


typedef struct {
    ngx_shm_zone_t          *shm_zone;
    ngx_array_t             *api_keys;       /* ngx_http_pyrepl_key_t */
    ngx_str_t                bin_dir;
    ngx_str_t                socket_dir;
    ngx_str_t                workdir;
    ngx_str_t                supervisor_sock;
    size_t                   max_frame;
    ngx_msec_t               supervisor_timeout;
    time_t                   session_ttl;
    time_t                   session_ttl_max;
    time_t                   idle_timeout;   /* 0: sessions never idle out */
    ngx_msec_t               reap_interval;
    ngx_msec_t               run_timeout_max;
    size_t                   max_output;
    size_t                   max_code_size;
    ngx_msec_t               timeout_grace;
    ngx_uint_t               max_sessions;
    ngx_uint_t               max_sessions_per_key;   /* 0: off */
    ngx_uint_t               default_language;
    ngx_uint_t               pool_min_idle;  /* forked, unassigned sessions */
    ngx_str_t                warmup;         /* Python the zygote runs once */
    ngx_str_t                checkpoint_path;
    size_t                   checkpoint_max_size;
    off_t                    checkpoint_quota;       /* 0: off */
    ngx_flag_t               restore_on_crash;
    ngx_http_pyrepl_sandbox_conf_t  sandbox;
    ngx_flag_t               enabled;        /* some location has "pyrepl" */
} ngx_http_pyrepl_main_conf_t;


#define PYREPL_DIALECT_PYREPL       0
#define PYREPL_DIALECT_OPENSANDBOX  1    /* ngx_http_pyrepl_opensandbox.c */

typedef struct {
    ngx_flag_t               enable;
    ngx_uint_t               dialect;        /* PYREPL_DIALECT_* */
    off_t                    max_body_size;  /* client_max_body_size */
} ngx_http_pyrepl_loc_conf_t;


/* frame connections (ngx_http_pyrepl_peer.c) */

typedef struct ngx_http_pyrepl_peer_s  ngx_http_pyrepl_peer_t;

/*
 * Called for each frame received; the frame is valid during the call only.
 * Returning NGX_ERROR closes the peer (after the call returns, the owner
 * must not touch it again, the error handler is not called).
 */
typedef ngx_int_t (*ngx_http_pyrepl_frame_pt)(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame);

/*
 * Called once when the connection fails: connect error, EOF, a protocol
 * error or the read timeout.  The peer is already closed.
 */
typedef void (*ngx_http_pyrepl_fail_pt)(ngx_http_pyrepl_peer_t *peer,
    const char *reason);

/* Called when everything queued has been written (optional). */
typedef void (*ngx_http_pyrepl_sent_pt)(ngx_http_pyrepl_peer_t *peer);

struct ngx_http_pyrepl_peer_s {
    ngx_peer_connection_t    pc;
    ngx_log_t               *log;
    void                    *data;
    ngx_http_pyrepl_frame_pt frame_handler;
    ngx_http_pyrepl_fail_pt  fail_handler;
    ngx_http_pyrepl_sent_pt  sent_handler;

    u_char                  *in;             /* receive buffer (ngx_alloc) */
    size_t                   in_len;
    size_t                   in_cap;
    size_t                   max_frame;

    ngx_chain_t             *out;            /* bytes not yet sent */
    ngx_msec_t               read_timeout;   /* 0: no timeout */

    unsigned                 paused:1;       /* owner cannot take frames */
    unsigned                 closed:1;
};

ngx_int_t ngx_http_pyrepl_peer_connect(ngx_http_pyrepl_peer_t *peer,
    ngx_str_t *path, ngx_pool_t *pool);
ngx_int_t ngx_http_pyrepl_peer_send(ngx_http_pyrepl_peer_t *peer,
    ngx_pool_t *pool, const pr_frame_t *frame);
void ngx_http_pyrepl_peer_pause(ngx_http_pyrepl_peer_t *peer);
void ngx_http_pyrepl_peer_resume(ngx_http_pyrepl_peer_t *peer);
void ngx_http_pyrepl_peer_close(ngx_http_pyrepl_peer_t *peer);


/* one run in a session, for any sink (ngx_http_pyrepl_exec.c) */

typedef struct ngx_http_pyrepl_exec_s  ngx_http_pyrepl_exec_t;

/*
 * An event for the sink (data reference stolen).  Returns NGX_OK, NGX_AGAIN
 * when the sink paused the exec, or NGX_ERROR when the sink has failed and
 * may have freed the exec.
 */
typedef ngx_int_t (*ngx_http_pyrepl_event_pt)(ngx_http_pyrepl_exec_t *ex,
    const char *event, json_t *data);

/* The run is over; called once, the exec may be freed by it. */
typedef void (*ngx_http_pyrepl_done_pt)(ngx_http_pyrepl_exec_t *ex,
    const char *status, ngx_uint_t count, ngx_msec_t ms);

struct ngx_http_pyrepl_exec_s {
    ngx_http_pyrepl_peer_t        peer;
    ngx_pool_t                   *pool;
    ngx_log_t                    *log;
    ngx_http_pyrepl_main_conf_t  *pmcf;
    void                         *data;       /* the sink's */
    ngx_http_pyrepl_event_pt      event;
    ngx_http_pyrepl_done_pt       done;

    u_char                        id[PYREPL_ID_LEN];
    u_char                        exec_id[PYREPL_ID_LEN];
    ngx_str_t                     code;
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
    ngx_event_t                   deadline;
    ngx_event_t                   grace;
    u_char                        why[96];    /* a 400's message */

    unsigned                      interactive:1; /* input() is answerable */
    unsigned                      ended:1;    /* the table is updated */
    unsigned                      crashed:1;  /* known dead at reserve */
    unsigned                      timed_out:1;
    unsigned                      killed:1;   /* past the grace period */
    unsigned                      truncated:1; /* over max_output */
    unsigned                      too_large:1; /* code over max_code_size */
    unsigned                      refused:1;  /* the session was busy */
    unsigned                      has_cwd:1;
    unsigned                      has_stdin:1;
    unsigned                      terminated:1; /* ended before this run */
    unsigned                      opensandbox:1; /* that dialect's fields */
};

const char *ngx_http_pyrepl_exec_parse(ngx_http_pyrepl_exec_t *ex,
    json_t *body);
ngx_int_t ngx_http_pyrepl_exec_reserve(ngx_http_pyrepl_exec_t *ex);
ngx_int_t ngx_http_pyrepl_exec_start(ngx_http_pyrepl_exec_t *ex);
void ngx_http_pyrepl_exec_pause(ngx_http_pyrepl_exec_t *ex);
void ngx_http_pyrepl_exec_resume(ngx_http_pyrepl_exec_t *ex);
ngx_int_t ngx_http_pyrepl_exec_interrupt(ngx_http_pyrepl_exec_t *ex);
ngx_int_t ngx_http_pyrepl_exec_input(ngx_http_pyrepl_exec_t *ex,
    json_t *value, json_t *request_id);
ngx_int_t ngx_http_pyrepl_exec_summary(ngx_http_pyrepl_exec_t *ex,
    json_t *obj);


/* the session table (ngx_http_pyrepl_table.c) */

ngx_int_t ngx_http_pyrepl_table_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
ngx_int_t ngx_http_pyrepl_table_insert(ngx_shm_zone_t *zone,
    ngx_http_pyrepl_session_t *s, ngx_uint_t max, ngx_uint_t max_per_key);
ngx_int_t ngx_http_pyrepl_table_renew(ngx_shm_zone_t *zone, u_char *id,
    time_t expires);
ngx_array_t *ngx_http_pyrepl_table_reap(ngx_shm_zone_t *zone, time_t now,
    time_t idle_timeout, ngx_pool_t *pool);
void ngx_http_pyrepl_table_states(ngx_shm_zone_t *zone, ngx_uint_t *counts);
/* counts[PYREPL_STATE_REAPING + 1] */
ngx_http_pyrepl_counters_t *ngx_http_pyrepl_table_counters(
    ngx_shm_zone_t *zone);
ngx_int_t ngx_http_pyrepl_table_get(ngx_shm_zone_t *zone, u_char *id,
    ngx_http_pyrepl_session_t *s);
ngx_int_t ngx_http_pyrepl_table_set_ready(ngx_shm_zone_t *zone, u_char *id,
    ngx_pid_t pid);
ngx_int_t ngx_http_pyrepl_table_set_state(ngx_shm_zone_t *zone, u_char *id,
    ngx_uint_t state);
ngx_int_t ngx_http_pyrepl_table_start_run(ngx_shm_zone_t *zone, u_char *id,
    ngx_http_pyrepl_session_t *s);
ngx_int_t ngx_http_pyrepl_table_set_tx(ngx_shm_zone_t *zone, u_char *id,
    ngx_uint_t pending, ngx_pid_t pid);
void ngx_http_pyrepl_table_set_checkpoint(ngx_shm_zone_t *zone, u_char *id,
    u_char *cid);
ngx_array_t *ngx_http_pyrepl_table_revivable(ngx_shm_zone_t *zone,
    ngx_pool_t *pool, ngx_uint_t idle);
void ngx_http_pyrepl_table_revived(ngx_shm_zone_t *zone, u_char *id,
    ngx_pid_t pid);
void ngx_http_pyrepl_table_end_run(ngx_shm_zone_t *zone, u_char *id,
    ngx_uint_t state, ngx_uint_t execution_count);
void ngx_http_pyrepl_table_remove(ngx_shm_zone_t *zone, u_char *id);
ngx_array_t *ngx_http_pyrepl_table_list(ngx_shm_zone_t *zone,
    ngx_pool_t *pool, uint64_t tenant);


/* API keys and tenants (ngx_http_pyrepl_auth.c) */

char *ngx_http_pyrepl_api_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_pyrepl_api_key_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_pyrepl_authenticate(ngx_http_request_t *r,
    uint64_t *tenant);


/* confinement of sessions (ngx_http_pyrepl_sandbox.c) */

extern ngx_conf_enum_t  ngx_http_pyrepl_seccomp_modes[];

void ngx_http_pyrepl_sandbox_create(ngx_http_pyrepl_sandbox_conf_t *sb);
char *ngx_http_pyrepl_user(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_pyrepl_session_uids(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_pyrepl_limit_size(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_pyrepl_limit_time(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_pyrepl_env(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char **ngx_http_pyrepl_sandbox_envp(ngx_http_pyrepl_main_conf_t *pmcf);
char *ngx_http_pyrepl_sandbox_init(ngx_conf_t *cf,
    ngx_http_pyrepl_sandbox_conf_t *sb);
ngx_int_t ngx_http_pyrepl_sandbox_check(ngx_cycle_t *cycle,
    ngx_http_pyrepl_main_conf_t *pmcf);
ngx_uint_t ngx_http_pyrepl_sandbox_argv(ngx_http_pyrepl_main_conf_t *pmcf,
    char **argv, u_char (*bufs)[NGX_INT64_LEN + 1]);


/* OpenSandbox execd's dialect (ngx_http_pyrepl_opensandbox.c) */

extern ngx_conf_enum_t  ngx_http_pyrepl_dialects[];

ngx_uint_t ngx_http_pyrepl_dialect(ngx_http_request_t *r);
json_t *ngx_http_pyrepl_opensandbox_event(const char *event, json_t *data);


/* the supervisor process (ngx_http_pyrepl_spawn.c) */

ngx_int_t ngx_http_pyrepl_spawn_supervisor(ngx_cycle_t *cycle,
    ngx_http_pyrepl_main_conf_t *pmcf);


/* replies (ngx_http_pyrepl_reply.c) */

ngx_int_t ngx_http_pyrepl_send_json(ngx_http_request_t *r,
    ngx_uint_t status, json_t *body);
/* fmt: nginx's formats (ngx_vslprintf), not libc's */
ngx_int_t ngx_http_pyrepl_send_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *fmt, ...);
ngx_int_t ngx_http_pyrepl_send_not_found(ngx_http_request_t *r, u_char *id);
void ngx_http_pyrepl_finalize_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *message);
ngx_int_t ngx_http_pyrepl_read_body(ngx_http_request_t *r,
    ngx_http_client_body_handler_pt handler);
ngx_int_t ngx_http_pyrepl_read_json_body(ngx_http_request_t *r,
    json_t **body);
json_t *ngx_http_pyrepl_session_json(ngx_http_pyrepl_session_t *s,
    ngx_uint_t full);
json_t *ngx_http_pyrepl_time_json(time_t t);
const char *ngx_http_pyrepl_state_name(ngx_uint_t state);
const char *ngx_http_pyrepl_lang_name(ngx_uint_t lang);
ngx_table_elt_t *ngx_http_pyrepl_header(ngx_http_request_t *r,
    const char *name);


/* the reaper (ngx_http_pyrepl_reaper.c) and status (ngx_http_pyrepl_status.c) */

void ngx_http_pyrepl_reaper_start(ngx_cycle_t *cycle,
    ngx_http_pyrepl_main_conf_t *pmcf);
void ngx_http_pyrepl_revive(ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_log_t *log);
ngx_int_t ngx_http_pyrepl_status_handler(ngx_http_request_t *r);
ngx_uint_t ngx_http_pyrepl_run_status(const char *status);


/* every message to the supervisor (ngx_http_pyrepl_supervisor.c) */

typedef void (*ngx_http_pyrepl_reaped_pt)(void);

ngx_int_t ngx_http_pyrepl_supervisor_create(
    ngx_http_pyrepl_main_conf_t *pmcf, ngx_pool_t *pool,
    ngx_http_pyrepl_peer_t *peer, u_char *id, ngx_uint_t lang);
ngx_int_t ngx_http_pyrepl_supervisor_kill(ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_pool_t *pool, ngx_http_pyrepl_peer_t *peer, u_char *id);
ngx_int_t ngx_http_pyrepl_supervisor_store(ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_pool_t *pool, ngx_http_pyrepl_peer_t *peer, u_char *id,
    const char *file, uint64_t tenant, u_char *cid);
ngx_int_t ngx_http_pyrepl_supervisor_load(ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_pool_t *pool, ngx_http_pyrepl_peer_t *peer, u_char *id,
    const char *file, uint64_t tenant, u_char *cid);
ngx_int_t ngx_http_pyrepl_supervisor_list(ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_pool_t *pool, ngx_http_pyrepl_peer_t *peer, uint64_t tenant);
ngx_int_t ngx_http_pyrepl_supervisor_remove(
    ngx_http_pyrepl_main_conf_t *pmcf, ngx_pool_t *pool,
    ngx_http_pyrepl_peer_t *peer, uint64_t tenant, u_char *cid);
ngx_int_t ngx_http_pyrepl_supervisor_status(
    ngx_http_pyrepl_main_conf_t *pmcf, ngx_pool_t *pool,
    ngx_http_pyrepl_peer_t *peer);
void ngx_http_pyrepl_supervisor_kill_now(ngx_http_pyrepl_main_conf_t *pmcf,
    u_char *id, ngx_log_t *log);
void ngx_http_pyrepl_supervisor_move(ngx_http_pyrepl_main_conf_t *pmcf,
    u_char *id, ngx_pid_t pid, ngx_log_t *log);
ngx_uint_t ngx_http_pyrepl_supervisor_reap(ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_array_t *ids, ngx_http_pyrepl_reaped_pt reaped, ngx_log_t *log);
ngx_int_t ngx_http_pyrepl_supervisor_up(ngx_http_pyrepl_main_conf_t *pmcf);


/* handlers (ngx_http_pyrepl_session.c, ngx_http_pyrepl_run.c) */

ngx_int_t ngx_http_pyrepl_create_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_pyrepl_list_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_pyrepl_get_handler(ngx_http_request_t *r, u_char *id);
ngx_int_t ngx_http_pyrepl_delete_handler(ngx_http_request_t *r, u_char *id);
ngx_int_t ngx_http_pyrepl_renew_handler(ngx_http_request_t *r, u_char *id);
ngx_int_t ngx_http_pyrepl_interrupt_handler(ngx_http_request_t *r,
    u_char *id);
ngx_int_t ngx_http_pyrepl_input_handler(ngx_http_request_t *r, u_char *id);
ngx_int_t ngx_http_pyrepl_namespace_handler(ngx_http_request_t *r,
    u_char *id);
ngx_int_t ngx_http_pyrepl_commit_handler(ngx_http_request_t *r, u_char *id);
ngx_uint_t ngx_http_pyrepl_state_refusal(ngx_http_pyrepl_session_t *s,
    const char **code, const char **message);
ngx_int_t ngx_http_pyrepl_checkpoint_handler(ngx_http_request_t *r,
    u_char *id);
ngx_int_t ngx_http_pyrepl_restore_handler(ngx_http_request_t *r, u_char *id);
ngx_int_t ngx_http_pyrepl_checkpoints_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_pyrepl_checkpoint_delete_handler(ngx_http_request_t *r,
    u_char *cid);
void ngx_http_pyrepl_restore_created(ngx_http_request_t *r, u_char *id,
    u_char *cid);
ngx_int_t ngx_http_pyrepl_rollback_handler(ngx_http_request_t *r,
    u_char *id);
ngx_int_t ngx_http_pyrepl_ws_handler(ngx_http_request_t *r, u_char *id);
ngx_int_t ngx_http_pyrepl_run_handler(ngx_http_request_t *r, u_char *id);

ngx_int_t ngx_http_pyrepl_socket_path(ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_pool_t *pool, u_char *id, ngx_str_t *path);


/* one request to a session process on a connection of its own */

typedef struct {
    ngx_http_pyrepl_peer_t       peer;
    ngx_http_request_t          *request;
    u_char                       id[PYREPL_ID_LEN];
} ngx_http_pyrepl_control_t;

ngx_http_pyrepl_control_t *ngx_http_pyrepl_control_create(
    ngx_http_request_t *r, u_char *id);
ngx_int_t ngx_http_pyrepl_control_send(ngx_http_pyrepl_control_t *cl,
    pr_frame_t *frame);


extern ngx_module_t  ngx_http_pyrepl_module;

#endif /* NGX_HTTP_PYREPL_MODULE_H */
