/*
 * ngx_http_pyrepl_spawn.h: starting the supervisor from the nginx master
 * (ngx_http_pyrepl_spawn.c).
 */

#ifndef NGX_HTTP_PYREPL_SPAWN_H
#define NGX_HTTP_PYREPL_SPAWN_H


#include "ngx_http_pyrepl_module.h"


ngx_int_t ngx_http_pyrepl_spawn_supervisor(ngx_cycle_t *cycle,
    ngx_http_pyrepl_main_conf_t *pmcf);

#endif /* NGX_HTTP_PYREPL_SPAWN_H */
