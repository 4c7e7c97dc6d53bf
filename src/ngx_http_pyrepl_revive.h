/*
 * ngx_http_pyrepl_revive.h: crashed sessions back from their checkpoints
 * (ngx_http_pyrepl_revive.c).
 */

#ifndef NGX_HTTP_PYREPL_REVIVE_H
#define NGX_HTTP_PYREPL_REVIVE_H


#include "ngx_http_pyrepl_module.h"


void ngx_http_pyrepl_revive(ngx_http_pyrepl_main_conf_t *pmcf,
    ngx_log_t *log);

#endif /* NGX_HTTP_PYREPL_REVIVE_H */
