/*
 * ngx_http_pyrepl_table.h: the session table in shared memory
 * (ngx_http_pyrepl_table.c).
 */

#ifndef NGX_HTTP_PYREPL_TABLE_H
#define NGX_HTTP_PYREPL_TABLE_H


#include "ngx_http_pyrepl_module.h"


/* a crashed session to bring back (ngx_http_pyrepl_revive.c) */
typedef struct {
    u_char                   id[PYREPL_ID_LEN];
    u_char                   checkpoint[PYREPL_ID_LEN];
    uint64_t                 tenant;
    ngx_uint_t               crashed;        /* else idle: is it alive? */
} ngx_http_pyrepl_revivable_t;


ngx_int_t ngx_http_pyrepl_table_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
ngx_int_t ngx_http_pyrepl_table_insert(ngx_shm_zone_t *zone,
    ngx_http_pyrepl_session_t *s, ngx_http_pyrepl_record_t *rec,
    ngx_uint_t max, ngx_uint_t max_per_key);
ngx_int_t ngx_http_pyrepl_table_default(ngx_shm_zone_t *zone,
    uint64_t tenant, ngx_uint_t lang, ngx_http_pyrepl_session_t *s);
ngx_int_t ngx_http_pyrepl_table_renew(ngx_shm_zone_t *zone, u_char *id,
    time_t expires);
void ngx_http_pyrepl_table_touch(ngx_shm_zone_t *zone, u_char *id);
ngx_int_t ngx_http_pyrepl_table_restart(ngx_shm_zone_t *zone, u_char *id);
ngx_int_t ngx_http_pyrepl_table_record(ngx_shm_zone_t *zone, u_char *id,
    uint64_t tenant, ngx_http_pyrepl_record_t *nb);
ngx_array_t *ngx_http_pyrepl_table_records(ngx_shm_zone_t *zone,
    ngx_pool_t *pool, uint64_t tenant, ngx_uint_t kind);
ngx_array_t *ngx_http_pyrepl_table_reap(ngx_shm_zone_t *zone, time_t now,
    time_t idle_timeout, ngx_pool_t *pool);
/* counts[PYREPL_STATE_REAPING + 1] */
void ngx_http_pyrepl_table_states(ngx_shm_zone_t *zone, ngx_uint_t *counts);
ngx_http_pyrepl_counters_t *ngx_http_pyrepl_table_counters(
    ngx_shm_zone_t *zone);
ngx_int_t ngx_http_pyrepl_table_get(ngx_shm_zone_t *zone, u_char *id,
    ngx_http_pyrepl_session_t *s);
ngx_int_t ngx_http_pyrepl_table_get_own(ngx_shm_zone_t *zone, u_char *id,
    uint64_t tenant, ngx_http_pyrepl_session_t *s);
ngx_int_t ngx_http_pyrepl_table_set_ready(ngx_shm_zone_t *zone, u_char *id,
    ngx_pid_t pid);
ngx_int_t ngx_http_pyrepl_table_set_state(ngx_shm_zone_t *zone, u_char *id,
    ngx_uint_t state);
ngx_int_t ngx_http_pyrepl_table_start_run(ngx_shm_zone_t *zone, u_char *id,
    ngx_http_pyrepl_session_t *s, ngx_http_pyrepl_turn_t *turn);
void ngx_http_pyrepl_table_leave_turn(ngx_shm_zone_t *zone, u_char *id,
    ngx_http_pyrepl_turn_t *turn);
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

#endif /* NGX_HTTP_PYREPL_TABLE_H */
