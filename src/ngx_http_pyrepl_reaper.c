/*
 * ngx_http_pyrepl_reaper.c: ending sessions whose TTL ran out or that sat
 * idle past pyrepl_idle_timeout.  Worker 0 runs it on a timer, right after
 * it starts (so sessions that expired while nginx reloaded go at once) and
 * then every pyrepl_reap_interval.  The table marks them terminated (they
 * answer 404 from then on); the supervisor gets a "kill" for each, all on
 * one connection (ngx_http_pyrepl_supervisor_reap), and each confirmed
 * kill removes the entry.  Kills that fail stay terminated and are sent
 * again on a later round; a round starts only once the last is over.
 * With pyrepl_restore_on_crash, every tick also revives crashed sessions
 * (ngx_http_pyrepl_revive.c).
 */

#include "ngx_http_pyrepl_reaper.h"

#include "ngx_http_pyrepl_revive.h"
#include "ngx_http_pyrepl_supervisor.h"
#include "ngx_http_pyrepl_table.h"


static void ngx_http_pyrepl_reap(ngx_event_t *ev);
static void ngx_http_pyrepl_reap_done(void);


static ngx_event_t                   ngx_http_pyrepl_reap_event;
static ngx_connection_t              ngx_http_pyrepl_reap_dummy;
static ngx_http_pyrepl_main_conf_t  *ngx_http_pyrepl_reap_conf;
static ngx_uint_t                    ngx_http_pyrepl_reaping;


void
ngx_http_pyrepl_reaper_start(ngx_cycle_t *cycle,
    ngx_http_pyrepl_main_conf_t *pmcf)
{
    ngx_http_pyrepl_reap_conf = pmcf;

    ngx_http_pyrepl_reap_dummy.fd = (ngx_socket_t) -1;

    ngx_http_pyrepl_reap_event.handler = ngx_http_pyrepl_reap;
    ngx_http_pyrepl_reap_event.data = &ngx_http_pyrepl_reap_dummy;
    ngx_http_pyrepl_reap_event.log = cycle->log;
    ngx_http_pyrepl_reap_event.cancelable = 1;

    ngx_add_timer(&ngx_http_pyrepl_reap_event, 1);
}


static void
ngx_http_pyrepl_reap(ngx_event_t *ev)
{
    ngx_uint_t                    n;
    ngx_pool_t                   *pool;
    ngx_array_t                  *ids;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    pmcf = ngx_http_pyrepl_reap_conf;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ngx_add_timer(ev, pmcf->reap_interval);

    if (pmcf->restore_on_crash) {
        ngx_http_pyrepl_revive(pmcf, ev->log);
    }

    if (ngx_http_pyrepl_reaping) {
        return;                       /* the last round is still going */
    }

    pool = ngx_create_pool(4096, ev->log);
    if (pool == NULL) {
        return;
    }

    ids = ngx_http_pyrepl_table_reap(pmcf->shm_zone, ngx_time(),
                                     pmcf->idle_timeout, pool);

    n = (ids == NULL || ids->nelts == 0)
        ? 0
        : ngx_http_pyrepl_supervisor_reap(pmcf, ids,
                                          ngx_http_pyrepl_reap_done,
                                          ev->log);

    ngx_destroy_pool(pool);

    if (n == 0) {
        return;
    }

    ngx_log_error(NGX_LOG_INFO, ev->log, 0,
                  "pyrepl: reaping %ui expired session(s)", n);

    ngx_http_pyrepl_reaping = 1;
}


/* The round is over: the next tick may start another. */
static void
ngx_http_pyrepl_reap_done(void)
{
    ngx_http_pyrepl_reaping = 0;
}
