/*
 * ngx_http_pyrepl_module.c: the module's face to nginx.  It declares the
 * pyrepl_* directives, validates and merges them (so "nginx -t" catches
 * mistakes), starts the supervisor from the master process, each
 * worker's cache of idle connections to sessions, and the reaper in
 * worker 0.  A "pyrepl" location hands its requests to the router
 * (ngx_http_pyrepl_router.c), "pyrepl_status" to ngx_http_pyrepl_status.c.
 */

#include "ngx_http_pyrepl_module.h"

#include "ngx_http_pyrepl_auth.h"
#include "ngx_http_pyrepl_keepalive.h"
#include "ngx_http_pyrepl_opensandbox.h"
#include "ngx_http_pyrepl_origin.h"
#include "ngx_http_pyrepl_reaper.h"
#include "ngx_http_pyrepl_router.h"
#include "ngx_http_pyrepl_sandbox.h"
#include "ngx_http_pyrepl_spawn.h"
#include "ngx_http_pyrepl_status.h"
#include "ngx_http_pyrepl_table.h"
#include "pyrepl_proto.h"


#ifndef PYREPL_BIN_DIR
#define PYREPL_BIN_DIR  "/usr/lib/pyrepl"
#endif

#define PYREPL_DEFAULT_TTL      900
#define PYREPL_DEFAULT_TTL_MAX  86400


static char *ngx_http_pyrepl(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_pyrepl_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_pyrepl_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_pyrepl_node(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_pyrepl_connection_cache(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static void *ngx_http_pyrepl_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_pyrepl_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_pyrepl_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_pyrepl_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_pyrepl_check_binary(ngx_conf_t *cf, ngx_str_t *dir,
    const char *name);
static ngx_int_t ngx_http_pyrepl_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_pyrepl_init_process(ngx_cycle_t *cycle);


static ngx_conf_enum_t  ngx_http_pyrepl_languages[] = {
    { ngx_string("python"), PYREPL_LANG_PYTHON },
    { ngx_string("bash"), PYREPL_LANG_BASH },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_pyrepl_commands[] = {

    { ngx_string("pyrepl"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_pyrepl,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pyrepl_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_pyrepl_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pyrepl_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_pyrepl_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pyrepl_api_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_pyrepl_api_key,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pyrepl_api_key_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_pyrepl_api_key_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pyrepl_bin_dir"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, bin_dir),
      NULL },

    { ngx_string("pyrepl_socket_dir"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, socket_dir),
      NULL },

    { ngx_string("pyrepl_node"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_pyrepl_node,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pyrepl_workdir"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, workdir),
      NULL },

    { ngx_string("pyrepl_max_frame"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, max_frame),
      NULL },

    { ngx_string("pyrepl_supervisor_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, supervisor_timeout),
      NULL },

    { ngx_string("pyrepl_session_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, session_ttl),
      NULL },

    { ngx_string("pyrepl_session_ttl_max"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, session_ttl_max),
      NULL },

    { ngx_string("pyrepl_idle_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, idle_timeout),
      NULL },

    { ngx_string("pyrepl_reap_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, reap_interval),
      NULL },

    { ngx_string("pyrepl_run_timeout_max"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, run_timeout_max),
      NULL },

    { ngx_string("pyrepl_timeout_grace"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, timeout_grace),
      NULL },

    { ngx_string("pyrepl_max_output"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, max_output),
      NULL },

    { ngx_string("pyrepl_max_code_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, max_code_size),
      NULL },

    { ngx_string("pyrepl_default_language"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, default_language),
      &ngx_http_pyrepl_languages },

    { ngx_string("pyrepl_max_sessions"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, max_sessions),
      NULL },

    { ngx_string("pyrepl_max_sessions_per_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, max_sessions_per_key),
      NULL },

    { ngx_string("pyrepl_pool_min_idle"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, pool_min_idle),
      NULL },

    { ngx_string("pyrepl_warmup"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, warmup),
      NULL },

    { ngx_string("pyrepl_checkpoint_path"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, checkpoint_path),
      NULL },

    { ngx_string("pyrepl_checkpoint_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, checkpoint_max_size),
      NULL },

    { ngx_string("pyrepl_checkpoint_quota"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_pyrepl_limit_size,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, checkpoint_quota),
      NULL },

    { ngx_string("pyrepl_restore_on_crash"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, restore_on_crash),
      NULL },

    { ngx_string("pyrepl_keepalive"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, keepalive),
      NULL },

    { ngx_string("pyrepl_connection_cache"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_pyrepl_connection_cache,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pyrepl_cors_origin"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_pyrepl_cors_origin,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pyrepl_dialect"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_loc_conf_t, dialect),
      &ngx_http_pyrepl_dialects },

    { ngx_string("pyrepl_user"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_pyrepl_user,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pyrepl_session_uids"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_pyrepl_session_uids,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pyrepl_memory_limit"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_pyrepl_limit_size,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, sandbox.memory),
      NULL },

    { ngx_string("pyrepl_cpu_limit"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_pyrepl_limit_time,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, sandbox.cpu),
      NULL },

    { ngx_string("pyrepl_max_processes"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, sandbox.max_processes),
      NULL },

    { ngx_string("pyrepl_file_size_limit"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_pyrepl_limit_size,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, sandbox.file_size),
      NULL },

    { ngx_string("pyrepl_open_files"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, sandbox.open_files),
      NULL },

    { ngx_string("pyrepl_seccomp"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, sandbox.seccomp),
      &ngx_http_pyrepl_seccomp_modes },

    { ngx_string("pyrepl_network"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, sandbox.network),
      NULL },

    { ngx_string("pyrepl_env"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_pyrepl_env,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pyrepl_jail"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, sandbox.jail),
      NULL },

    { ngx_string("pyrepl_tmp_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, sandbox.tmp_size),
      NULL },

    { ngx_string("pyrepl_cpu_weight"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pyrepl_main_conf_t, sandbox.cpu_weight),
      NULL },

    { ngx_string("pyrepl_bind"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE123,
      ngx_http_pyrepl_bind,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_pyrepl_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_pyrepl_create_main_conf,      /* create main configuration */
    ngx_http_pyrepl_init_main_conf,        /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_pyrepl_create_loc_conf,       /* create location configuration */
    ngx_http_pyrepl_merge_loc_conf         /* merge location configuration */
};


ngx_module_t  ngx_http_pyrepl_module = {
    NGX_MODULE_V1,
    &ngx_http_pyrepl_module_ctx,           /* module context */
    ngx_http_pyrepl_commands,              /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_pyrepl_init_module,           /* init module */
    ngx_http_pyrepl_init_process,          /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static char *
ngx_http_pyrepl(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_pyrepl_loc_conf_t  *plcf = conf;

    ngx_http_core_loc_conf_t     *clcf;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    if (plcf->enable != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    plcf->enable = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_pyrepl_router_handler;

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_pyrepl_module);
    pmcf->enabled = 1;

    return NGX_CONF_OK;
}


static char *
ngx_http_pyrepl_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t     *clcf;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_pyrepl_status_handler;

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_pyrepl_module);
    pmcf->enabled = 1;

    return NGX_CONF_OK;
}


static char *
ngx_http_pyrepl_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_pyrepl_main_conf_t *pmcf = conf;

    ssize_t                      size;
    ngx_str_t                   *value;
    ngx_http_pyrepl_zone_ctx_t  *ctx;

    if (pmcf->shm_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    size = ngx_parse_size(&value[2]);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid pyrepl_zone size \"%V\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pyrepl_zone \"%V\" is too small: %V, "
                           "at least %uzk", &value[1], &value[2],
                           8 * ngx_pagesize / 1024);
        return NGX_CONF_ERROR;
    }

    pmcf->shm_zone = ngx_shared_memory_add(cf, &value[1], size,
                                           &ngx_http_pyrepl_module);
    if (pmcf->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (pmcf->shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pyrepl_zone \"%V\" is already used",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_pyrepl_zone_ctx_t));
    if (ctx == NULL) {
        return NGX_CONF_ERROR;
    }

    pmcf->shm_zone->init = ngx_http_pyrepl_table_init_zone;
    pmcf->shm_zone->data = ctx;

    return NGX_CONF_OK;
}


/* pyrepl_connection_cache number|off [timeout] */
static char *
ngx_http_pyrepl_connection_cache(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_pyrepl_main_conf_t *pmcf = conf;

    ngx_int_t    n;
    ngx_str_t   *value;
    ngx_msec_t   timeout;

    if (pmcf->conn_cache != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        n = 0;

    } else {
        n = ngx_atoi(value[1].data, value[1].len);

        if (n == NGX_ERROR || n > 65536) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "pyrepl_connection_cache must be \"off\" or "
                               "a number of connections from 0 to 65536, "
                               "not \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    pmcf->conn_cache = (ngx_uint_t) n;

    if (cf->args->nelts == 3) {
        timeout = ngx_parse_time(&value[2], 0);

        if (timeout == (ngx_msec_t) NGX_ERROR || timeout == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "pyrepl_connection_cache's timeout must be "
                               "a positive time, not \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }

        pmcf->conn_cache_timeout = timeout;
    }

    return NGX_CONF_OK;
}


/*
 * pyrepl_node NAME: this host's name in a cluster, which every session id
 * made here starts with (pyrepl_shared.h), for a front nginx to route on.
 */
static char *
ngx_http_pyrepl_node(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_pyrepl_main_conf_t *pmcf = conf;

    u_char      c;
    ngx_str_t  *value;
    ngx_uint_t  i;

    if (pmcf->node.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 0; i < value[1].len; i++) {
        c = value[1].data[i];

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z'))) {
            break;
        }
    }

    if (value[1].len == 0 || value[1].len > PYREPL_NODE_MAX
        || i != value[1].len)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pyrepl_node must be 1 to %d lowercase letters "
                           "and digits, not \"%V\"", PYREPL_NODE_MAX,
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    pmcf->node = value[1];

    return NGX_CONF_OK;
}


static void *
ngx_http_pyrepl_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_pyrepl_main_conf_t  *pmcf;

    pmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_pyrepl_main_conf_t));
    if (pmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     pmcf->shm_zone = NULL;
     *     pmcf->bin_dir = { 0, NULL };
     *     pmcf->node = { 0, NULL };
     *     pmcf->socket_dir = { 0, NULL };
     *     pmcf->workdir = { 0, NULL };
     *     pmcf->supervisor_sock = { 0, NULL };
     *     pmcf->warmup = { 0, NULL };
     *     pmcf->enabled = 0;
     */

    pmcf->max_frame = NGX_CONF_UNSET_SIZE;
    pmcf->supervisor_timeout = NGX_CONF_UNSET_MSEC;
    pmcf->session_ttl = NGX_CONF_UNSET;
    pmcf->session_ttl_max = NGX_CONF_UNSET;
    pmcf->idle_timeout = NGX_CONF_UNSET;
    pmcf->reap_interval = NGX_CONF_UNSET_MSEC;
    pmcf->run_timeout_max = NGX_CONF_UNSET_MSEC;
    pmcf->timeout_grace = NGX_CONF_UNSET_MSEC;
    pmcf->max_output = NGX_CONF_UNSET_SIZE;
    pmcf->max_code_size = NGX_CONF_UNSET_SIZE;
    pmcf->max_sessions = NGX_CONF_UNSET_UINT;
    pmcf->max_sessions_per_key = NGX_CONF_UNSET_UINT;
    pmcf->default_language = NGX_CONF_UNSET_UINT;
    pmcf->pool_min_idle = NGX_CONF_UNSET_UINT;
    pmcf->checkpoint_max_size = NGX_CONF_UNSET_SIZE;
    pmcf->checkpoint_quota = NGX_CONF_UNSET;
    pmcf->restore_on_crash = NGX_CONF_UNSET;
    pmcf->keepalive = NGX_CONF_UNSET_MSEC;
    pmcf->conn_cache = NGX_CONF_UNSET_UINT;
    pmcf->conn_cache_timeout = NGX_CONF_UNSET_MSEC;

    ngx_http_pyrepl_sandbox_create(&pmcf->sandbox);

    return pmcf;
}


/*
 * Paths that are not set default to places the nginx master can create:
 * as root, /run/pyrepl/<hash of the configuration file> for sockets (every
 * nginx instance gets its own, short enough for sun_path) and
 * /var/lib/pyrepl/<hash> for working directories; otherwise both live
 * under the nginx prefix.
 */
static char *
ngx_http_pyrepl_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_pyrepl_main_conf_t *pmcf = conf;

    u_char                  *p;
    uint32_t                 hash;
    ngx_str_t                own[3];
    ngx_uint_t               root;
    struct sockaddr_un       sun;

    ngx_conf_init_size_value(pmcf->max_frame, PR_DEFAULT_MAX_FRAME);
    ngx_conf_init_msec_value(pmcf->supervisor_timeout, 5000);
    ngx_conf_init_value(pmcf->session_ttl, PYREPL_DEFAULT_TTL);
    ngx_conf_init_value(pmcf->session_ttl_max, PYREPL_DEFAULT_TTL_MAX);
    ngx_conf_init_value(pmcf->idle_timeout, 0);
    ngx_conf_init_msec_value(pmcf->reap_interval, 1000);
    ngx_conf_init_msec_value(pmcf->run_timeout_max, 300000);
    ngx_conf_init_msec_value(pmcf->timeout_grace, 3000);
    ngx_conf_init_size_value(pmcf->max_output, 64 * 1024 * 1024);
    ngx_conf_init_size_value(pmcf->max_code_size, 1024 * 1024);
    ngx_conf_init_size_value(pmcf->checkpoint_max_size, 512 * 1024 * 1024);
    ngx_conf_init_value(pmcf->checkpoint_quota, 0);
    ngx_conf_init_value(pmcf->restore_on_crash, 0);
    ngx_conf_init_msec_value(pmcf->keepalive, 15000);
    ngx_conf_init_uint_value(pmcf->conn_cache, 256);
    ngx_conf_init_msec_value(pmcf->conn_cache_timeout, 60000);

    if (pmcf->checkpoint_max_size < 4096) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pyrepl_checkpoint_max_size must be at least 4k");
        return NGX_CONF_ERROR;
    }

    if (pmcf->max_output < 1024 || pmcf->max_code_size < 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pyrepl_max_output must be at least 1k and "
                           "pyrepl_max_code_size positive");
        return NGX_CONF_ERROR;
    }

    if (pmcf->run_timeout_max < 1 || pmcf->timeout_grace < 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pyrepl_run_timeout_max and pyrepl_timeout_grace "
                           "must be positive");
        return NGX_CONF_ERROR;
    }
    ngx_conf_init_uint_value(pmcf->max_sessions, 100);
    ngx_conf_init_uint_value(pmcf->default_language, PYREPL_LANG_PYTHON);

    if (pmcf->reap_interval < 10) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pyrepl_reap_interval must be at least 10ms");
        return NGX_CONF_ERROR;
    }

    if (pmcf->max_sessions < 1 || pmcf->max_sessions > 1000000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pyrepl_max_sessions must be between 1 and "
                           "1000000");
        return NGX_CONF_ERROR;
    }

    ngx_conf_init_uint_value(pmcf->max_sessions_per_key, 0);

    if (pmcf->max_sessions_per_key > pmcf->max_sessions) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pyrepl_max_sessions_per_key %ui is more than "
                           "pyrepl_max_sessions %ui",
                           pmcf->max_sessions_per_key, pmcf->max_sessions);
        return NGX_CONF_ERROR;
    }

    ngx_conf_init_uint_value(pmcf->pool_min_idle, 2);

    if (pmcf->pool_min_idle > 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pyrepl_pool_min_idle must be between 0 and "
                           "1000");
        return NGX_CONF_ERROR;
    }

    /* Python source, passed whole to the supervisor: no NUL, 64k at most */
    if (pmcf->warmup.len > 65536
        || (pmcf->warmup.len > 0
            && ngx_strlchr(pmcf->warmup.data,
                           pmcf->warmup.data + pmcf->warmup.len, '\0')
               != NULL))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pyrepl_warmup must be at most 64k of Python "
                           "source without NUL characters");
        return NGX_CONF_ERROR;
    }

    if (pmcf->max_frame < 4096 || pmcf->max_frame > 1024 * 1024 * 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pyrepl_max_frame must be between 4k and 1g");
        return NGX_CONF_ERROR;
    }

    if (pmcf->session_ttl < 1 || pmcf->session_ttl_max < 1
        || pmcf->session_ttl > pmcf->session_ttl_max)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pyrepl_session_ttl %T must be between 1s and "
                           "pyrepl_session_ttl_max %T", pmcf->session_ttl,
                           pmcf->session_ttl_max);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_pyrepl_sandbox_init(cf, &pmcf->sandbox) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (!pmcf->enabled) {
        return NGX_CONF_OK;
    }

    if (pmcf->shm_zone == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"pyrepl\" and \"pyrepl_status\" require a "
                           "\"pyrepl_zone\" in the http block, e.g. "
                           "\"pyrepl_zone pyrepl 16m;\"");
        return NGX_CONF_ERROR;
    }

    root = (geteuid() == 0);
    hash = ngx_crc32_short(cf->cycle->conf_file.data,
                           cf->cycle->conf_file.len);

    if (pmcf->bin_dir.data == NULL) {
        ngx_str_set(&pmcf->bin_dir, PYREPL_BIN_DIR);
    }

    if (pmcf->socket_dir.data == NULL) {
        p = ngx_pnalloc(cf->pool, cf->cycle->prefix.len + 64);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        pmcf->socket_dir.data = p;
        pmcf->socket_dir.len = root
            ? (size_t) (ngx_sprintf(p, "/run/pyrepl/%08xD", hash) - p)
            : (size_t) (ngx_sprintf(p, "%Vpyrepl/run", &cf->cycle->prefix)
                        - p);
    }

    if (pmcf->workdir.data == NULL) {
        p = ngx_pnalloc(cf->pool, cf->cycle->prefix.len + 64);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        pmcf->workdir.data = p;
        pmcf->workdir.len = root
            ? (size_t) (ngx_sprintf(p, "/var/lib/pyrepl/%08xD", hash) - p)
            : (size_t) (ngx_sprintf(p, "%Vpyrepl/work", &cf->cycle->prefix)
                        - p);
    }

    if (pmcf->checkpoint_path.data == NULL) {
        p = ngx_pnalloc(cf->pool, cf->cycle->prefix.len + 64);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        pmcf->checkpoint_path.data = p;
        pmcf->checkpoint_path.len = root
            ? (size_t) (ngx_sprintf(p, "/var/lib/pyrepl/%08xD-checkpoints",
                                    hash) - p)
            : (size_t) (ngx_sprintf(p, "%Vpyrepl/checkpoints",
                                    &cf->cycle->prefix) - p);
    }

    if (ngx_conf_full_name(cf->cycle, &pmcf->checkpoint_path, 0) != NGX_OK
        || ngx_conf_full_name(cf->cycle, &pmcf->bin_dir, 0) != NGX_OK
        || ngx_conf_full_name(cf->cycle, &pmcf->socket_dir, 0) != NGX_OK
        || ngx_conf_full_name(cf->cycle, &pmcf->workdir, 0) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    own[0] = pmcf->workdir;
    own[1] = pmcf->checkpoint_path;
    own[2] = pmcf->socket_dir;

    if (ngx_http_pyrepl_binds_check(cf, pmcf->sandbox.binds, own, 3)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* "<dir>/<id>.sock" must fit a Unix socket address */

    if (pmcf->socket_dir.len + 1 + PYREPL_ID_LEN
        + sizeof(PYREPL_SESSION_SUFFIX)
        > sizeof(sun.sun_path))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pyrepl_socket_dir \"%V\" is too long for Unix "
                           "socket paths: at most %uz characters",
                           &pmcf->socket_dir,
                           sizeof(sun.sun_path) - 1 - PYREPL_ID_LEN
                           - sizeof(PYREPL_SESSION_SUFFIX));
        return NGX_CONF_ERROR;
    }

    pmcf->supervisor_sock.len = pmcf->socket_dir.len
                                + sizeof("/" PYREPL_SUPERVISOR_SOCK) - 1;
    pmcf->supervisor_sock.data = ngx_pnalloc(cf->pool,
                                             pmcf->supervisor_sock.len + 1);
    if (pmcf->supervisor_sock.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(pmcf->supervisor_sock.data, "%V/" PYREPL_SUPERVISOR_SOCK "%Z",
                &pmcf->socket_dir);

    if (ngx_http_pyrepl_check_binary(cf, &pmcf->bin_dir,
                                     PYREPL_SUPERVISOR_BIN)
        != NGX_CONF_OK
        || ngx_http_pyrepl_check_binary(cf, &pmcf->bin_dir,
                                        PYREPL_PYTHON_BIN)
           != NGX_CONF_OK
        || ngx_http_pyrepl_check_binary(cf, &pmcf->bin_dir,
                                        PYREPL_BASH_BIN)
           != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_pyrepl_check_binary(ngx_conf_t *cf, ngx_str_t *dir,
    const char *name)
{
    u_char  *path;

    path = ngx_pnalloc(cf->pool, dir->len + ngx_strlen(name) + 2);
    if (path == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(path, "%V/%s%Z", dir, name);

    if (access((char *) path, X_OK) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "pyrepl worker binary \"%s\" is not executable; "
                           "set \"pyrepl_bin_dir\" to the directory that "
                           "holds %s", path, name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_pyrepl_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_pyrepl_loc_conf_t  *plcf;

    plcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_pyrepl_loc_conf_t));
    if (plcf == NULL) {
        return NULL;
    }

    plcf->enable = NGX_CONF_UNSET;
    plcf->dialect = NGX_CONF_UNSET_UINT;
    plcf->cors_origins = NGX_CONF_UNSET_PTR;

    return plcf;
}


static char *
ngx_http_pyrepl_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_pyrepl_loc_conf_t *prev = parent;
    ngx_http_pyrepl_loc_conf_t *conf = child;

    ngx_str_t                 *name;
    ngx_uint_t                 i;
    ngx_http_server_name_t    *sn;
    ngx_http_core_loc_conf_t  *clcf;
    ngx_http_core_srv_conf_t  *cscf;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_uint_value(conf->dialect, prev->dialect,
                              PYREPL_DIALECT_PYREPL);
    ngx_conf_merge_ptr_value(conf->cors_origins, prev->cors_origins, NULL);

    /*
     * Bodies over client_max_body_size must get the JSON 413 of API.md, not
     * nginx's HTML page, so a pyrepl location checks the limit itself.
     */

    if (conf->enable) {
        clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
        conf->max_body_size = clcf->client_max_body_size;
        clcf->client_max_body_size = 0;

        /* the server's names outlive the configuration's temporary pool */
        cscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_core_module);
        sn = cscf->server_names.elts;

        conf->server_names = ngx_array_create(cf->pool,
                                              cscf->server_names.nelts + 1,
                                              sizeof(ngx_str_t));
        if (conf->server_names == NULL) {
            return NGX_CONF_ERROR;
        }

        for (i = 0; i < cscf->server_names.nelts; i++) {
            name = ngx_array_push(conf->server_names);
            if (name == NULL) {
                return NGX_CONF_ERROR;
            }

            name->len = sn[i].name.len;
            name->data = ngx_pstrdup(cf->pool, &sn[i].name);
            if (name->len && name->data == NULL) {
                return NGX_CONF_ERROR;
            }
        }
    }

    return NGX_CONF_OK;
}


/*
 * Runs in the master process at start and on every reload (and in the
 * process of "nginx -t", where nothing is started).  A supervisor that is
 * already running keeps running, with its sessions, across a reload.
 */
static ngx_int_t
ngx_http_pyrepl_init_module(ngx_cycle_t *cycle)
{
    ngx_http_pyrepl_main_conf_t  *pmcf;

    if (ngx_process == NGX_PROCESS_SIGNALLER) {
        return NGX_OK;
    }

    pmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_pyrepl_module);

    if (pmcf == NULL || !pmcf->enabled) {
        return NGX_OK;
    }

    if (ngx_http_pyrepl_sandbox_check(cycle, pmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_test_config) {
        return NGX_OK;
    }

    return ngx_http_pyrepl_spawn_supervisor(cycle, pmcf);
}


/*
 * Every worker gets its cache of idle connections to sessions; worker 0
 * reaps expired sessions for all of them.
 */
static ngx_int_t
ngx_http_pyrepl_init_process(ngx_cycle_t *cycle)
{
    ngx_http_pyrepl_main_conf_t  *pmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    pmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_pyrepl_module);

    if (pmcf == NULL || !pmcf->enabled) {
        return NGX_OK;
    }

    if (ngx_http_pyrepl_keepalive_init(cycle, pmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_worker == 0) {
        ngx_http_pyrepl_reaper_start(cycle, pmcf);
    }

    return NGX_OK;
}
