/*
 * ngx_http_pyrepl_module.h: what every file of the pyrepl module shares:
 * the module itself, its configuration (main and location), the session
 * record kept in shared memory, the table's zone and the counters in it.
 * Nothing else: each ngx_http_pyrepl_X.c declares what it offers the
 * others in ngx_http_pyrepl_X.h, and a file includes the headers of the
 * files it uses.
 */

#ifndef NGX_HTTP_PYREPL_MODULE_H
#define NGX_HTTP_PYREPL_MODULE_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

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
    uint32_t                 turn_next;      /* the ticket the next run */
                                             /* that waits takes */
    uint32_t                 turn_now;       /* the ticket whose turn it */
                                             /* is (all served: turn_next) */
    ngx_msec_t               turn_since;     /* turn_now's since */
    unsigned                 has_checkpoint:1;
    unsigned                 restored:1;     /* restored_from is set */
    unsigned                 reviving:1;     /* being restored after a crash */
} ngx_http_pyrepl_session_t;


/*
 * A run's place in the line of runs waiting for a session (E2B's, which
 * take turns in the order they came): its ticket, once it has one.
 */
typedef struct {
    uint32_t                 ticket;
    unsigned                 held:1;
} ngx_http_pyrepl_turn_t;


/*
 * What a client dialect keeps with a session in the table, given out by
 * value: Jupyter's session of a kernel (a notebook's path, name and type,
 * under an id of its own), or an E2B context (its cwd in path, empty for
 * the session's home, and whether it is its key's default context for its
 * language).
 */
#define PYREPL_NB_PATH       1024
#define PYREPL_NB_NAME       256
#define PYREPL_NB_TYPE       32

#define PYREPL_RECORD_NOTEBOOK  1
#define PYREPL_RECORD_CONTEXT   2

typedef struct {
    ngx_uint_t                 kind;         /* PYREPL_RECORD_* */
    unsigned                   is_default:1; /* a context: its key's for */
                                             /* its language */
    u_char                     id[PYREPL_ID_LEN];
    size_t                     path_len;
    size_t                     name_len;
    size_t                     type_len;
    u_char                     path[PYREPL_NB_PATH];
    u_char                     name[PYREPL_NB_NAME];
    u_char                     type[PYREPL_NB_TYPE];
    ngx_http_pyrepl_session_t  session;      /* copies only: its kernel's */
} ngx_http_pyrepl_record_t;


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
    ngx_flag_t               jail;           /* default: on as root */
    size_t                   tmp_size;       /* /tmp and /dev/shm, each */
    ngx_uint_t               cpu_weight;
    ngx_array_t             *binds;          /* "ro|rw:SRC:DST" */
} ngx_http_pyrepl_sandbox_conf_t;

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
    ngx_str_t                node;           /* pyrepl_node: in its ids */
    size_t                   checkpoint_max_size;
    off_t                    checkpoint_quota;       /* 0: off */
    ngx_flag_t               restore_on_crash;
    ngx_msec_t               keepalive;      /* SSE ": ping", WS pings */
    ngx_uint_t               conn_cache;     /* idle connections to */
                                             /* sessions a worker keeps */
    ngx_msec_t               conn_cache_timeout;
    ngx_http_pyrepl_sandbox_conf_t  sandbox;
    ngx_flag_t               enabled;        /* some location has "pyrepl" */
} ngx_http_pyrepl_main_conf_t;


#define PYREPL_DIALECT_PYREPL       0
#define PYREPL_DIALECT_OPENSANDBOX  1    /* ngx_http_pyrepl_opensandbox.c */
#define PYREPL_DIALECT_JUPYTER      2    /* ngx_http_pyrepl_jupyter.c */
#define PYREPL_DIALECT_E2B          3    /* ngx_http_pyrepl_e2b.c */

typedef struct {
    ngx_flag_t               enable;
    ngx_uint_t               dialect;        /* PYREPL_DIALECT_* */
    off_t                    max_body_size;  /* client_max_body_size */
    ngx_array_t             *cors_origins;   /* pyrepl_cors_origin */
    ngx_array_t             *server_names;   /* the server's, ngx_str_t: */
                                             /* its own origins' hosts */
} ngx_http_pyrepl_loc_conf_t;


extern ngx_module_t  ngx_http_pyrepl_module;

#endif /* NGX_HTTP_PYREPL_MODULE_H */
