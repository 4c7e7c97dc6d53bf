/*
 * ngx_http_pyrepl_reaper.h: ending expired and idle sessions
 * (ngx_http_pyrepl_reaper.c).
 */

#ifndef NGX_HTTP_PYREPL_REAPER_H
#define NGX_HTTP_PYREPL_REAPER_H


#include "ngx_http_pyrepl_module.h"


void ngx_http_pyrepl_reaper_start(ngx_cycle_t *cycle,
    ngx_http_pyrepl_main_conf_t *pmcf);

#endif /* NGX_HTTP_PYREPL_REAPER_H */
