/*
 * ngx_http_pyrepl_supervisor.h: every message to the supervisor
 * (ngx_http_pyrepl_supervisor.c).
 */

#ifndef NGX_HTTP_PYREPL_SUPERVISOR_H
#define NGX_HTTP_PYREPL_SUPERVISOR_H


#include "ngx_http_pyrepl_module.h"
#include "ngx_http_pyrepl_peer.h"


/* the end of the reaper's round (ngx_http_pyrepl_supervisor_reap) */
typedef void (*ngx_http_pyrepl_reaped_pt)(void);

ngx_int_t ngx_http_pyrepl_supervisor_create(
    ngx_http_pyrepl_main_conf_t *pmcf, ngx_pool_t *pool,
    ngx_http_pyrepl_peer_t *peer, u_char *id, ngx_uint_t lang);
ngx_int_t ngx_http_pyrepl_supervisor_kill(ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_pool_t *pool, ngx_http_pyrepl_peer_t *peer, u_char *id);
ngx_int_t ngx_http_pyrepl_supervisor_checkpoint(
    ngx_http_pyrepl_main_conf_t *pmcf, ngx_pool_t *pool,
    ngx_http_pyrepl_peer_t *peer, pr_type_t type, u_char *id,
    const char *file, uint64_t tenant, u_char *cid);
ngx_int_t ngx_http_pyrepl_supervisor_checkpoints(
    ngx_http_pyrepl_main_conf_t *pmcf, ngx_pool_t *pool,
    ngx_http_pyrepl_peer_t *peer, uint64_t tenant, u_char *cid);
ngx_int_t ngx_http_pyrepl_supervisor_ended(ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_pool_t *pool, ngx_http_pyrepl_peer_t *peer, u_char *id);
ngx_int_t ngx_http_pyrepl_supervisor_status(
    ngx_http_pyrepl_main_conf_t *pmcf, ngx_pool_t *pool,
    ngx_http_pyrepl_peer_t *peer);
ngx_int_t ngx_http_pyrepl_supervisor_wait(ngx_http_request_t *r,
    ngx_int_t rc);
void ngx_http_pyrepl_supervisor_kill_now(ngx_http_pyrepl_main_conf_t *pmcf,
    u_char *id, ngx_log_t *log);
void ngx_http_pyrepl_supervisor_move(ngx_http_pyrepl_main_conf_t *pmcf,
    u_char *id, ngx_pid_t pid, ngx_log_t *log);
ngx_uint_t ngx_http_pyrepl_supervisor_reap(ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_array_t *ids, ngx_http_pyrepl_reaped_pt reaped, ngx_log_t *log);
ngx_int_t ngx_http_pyrepl_supervisor_up(ngx_http_pyrepl_main_conf_t *pmcf);

#endif /* NGX_HTTP_PYREPL_SUPERVISOR_H */
