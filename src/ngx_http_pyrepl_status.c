/*
 * ngx_http_pyrepl_status.c: the "pyrepl_status" location, like stub_status:
 * health as JSON (is the supervisor answering, its pool and zygote,
 * sessions by state, counters) and, with ?format=prometheus, the same as
 * Prometheus text metrics.  Sessions and counters come from the shared
 * table and its atomic counters, so any worker answers for all of them;
 * the pool and zygote from a "status" request to the supervisor.
 */

#include "ngx_http_pyrepl_status.h"

#include "ngx_http_pyrepl_peer.h"
#include "ngx_http_pyrepl_reply.h"
#include "ngx_http_pyrepl_supervisor.h"
#include "ngx_http_pyrepl_table.h"


static const ngx_msec_t  ngx_http_pyrepl_buckets[] = PYREPL_RUN_BUCKETS;

static const char  *ngx_http_pyrepl_run_statuses[] = {
    "ok", "error", "interrupted", "timeout", "crashed"
};


/* what the supervisor said; up = 0 when it did not answer */
typedef struct {
    ngx_http_pyrepl_peer_t       peer;
    ngx_http_request_t          *request;
    ngx_uint_t                   up;
    ngx_uint_t                   pool;
    ngx_uint_t                   zygote_up;
    ngx_uint_t                   processes;
} ngx_http_pyrepl_sup_status_t;


static void ngx_http_pyrepl_status_answer(ngx_http_pyrepl_sup_status_t *st);
static ngx_int_t ngx_http_pyrepl_status_reply(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame);
static void ngx_http_pyrepl_status_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason);
static ngx_int_t ngx_http_pyrepl_status_json(ngx_http_request_t *r,
    ngx_http_pyrepl_main_conf_t *pmcf, ngx_uint_t *states,
    ngx_http_pyrepl_counters_t *c, ngx_http_pyrepl_sup_status_t *st);
static ngx_int_t ngx_http_pyrepl_status_prometheus(ngx_http_request_t *r,
    ngx_http_pyrepl_main_conf_t *pmcf, ngx_uint_t *states,
    ngx_http_pyrepl_counters_t *c, ngx_http_pyrepl_sup_status_t *st);


ngx_int_t
ngx_http_pyrepl_status_handler(ngx_http_request_t *r)
{
    ngx_str_t                      allow = ngx_string("GET, HEAD");
    ngx_http_pyrepl_sup_status_t  *st;

    if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
        ngx_http_discard_request_body(r);
        return ngx_http_pyrepl_send_not_allowed(r, &allow);
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    st = ngx_pcalloc(r->pool, sizeof(ngx_http_pyrepl_sup_status_t));
    if (st == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    st->request = r;
    st->peer.data = st;
    st->peer.log = r->connection->log;
    st->peer.frame_handler = ngx_http_pyrepl_status_reply;
    st->peer.fail_handler = ngx_http_pyrepl_status_failed;

    if (ngx_http_pyrepl_supervisor_status(
            ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module),
            r->pool, &st->peer)
        != NGX_OK)
    {
        /* the supervisor is down: answer now, finalizing like the rest */
        r->main->count++;
        ngx_http_pyrepl_status_answer(st);
        return NGX_DONE;
    }

    r->main->count++;

    return NGX_DONE;
}


static ngx_int_t
ngx_http_pyrepl_status_reply(ngx_http_pyrepl_peer_t *peer, pr_frame_t *frame)
{
    ngx_http_pyrepl_sup_status_t  *st;

    st = peer->data;

    ngx_http_pyrepl_peer_close(peer);

    if (frame->type == PR_T_OK) {
        st->up = 1;
        st->pool = pr_has(frame, pool) ? (ngx_uint_t) frame->pool : 0;
        st->zygote_up = pr_has(frame, zygote) && frame->zygote > 0;
        st->processes = pr_has(frame, sessions)
                        ? (ngx_uint_t) frame->sessions : 0;
    }

    ngx_http_pyrepl_status_answer(st);

    return NGX_DONE;
}


static void
ngx_http_pyrepl_status_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason)
{
    ngx_http_pyrepl_status_answer(peer->data);
}


/* Answer and finalize, with whatever the supervisor said. */
static void
ngx_http_pyrepl_status_answer(ngx_http_pyrepl_sup_status_t *st)
{
    ngx_int_t                     rc;
    ngx_str_t                     format;
    ngx_uint_t                    states[PYREPL_STATE_REAPING + 1];
    ngx_http_request_t           *r;
    ngx_http_pyrepl_main_conf_t  *pmcf;

    r = st->request;
    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pyrepl_module);

    ngx_http_pyrepl_table_states(pmcf->shm_zone, states);

    if (ngx_http_arg(r, (u_char *) "format", sizeof("format") - 1, &format)
        == NGX_OK
        && format.len == sizeof("prometheus") - 1
        && ngx_strncmp(format.data, "prometheus", format.len) == 0)
    {
        rc = ngx_http_pyrepl_status_prometheus(r, pmcf, states,
                 ngx_http_pyrepl_table_counters(pmcf->shm_zone), st);

    } else {
        rc = ngx_http_pyrepl_status_json(r, pmcf, states,
                 ngx_http_pyrepl_table_counters(pmcf->shm_zone), st);
    }

    ngx_http_finalize_request(r, rc);
}


static ngx_int_t
ngx_http_pyrepl_status_json(ngx_http_request_t *r,
    ngx_http_pyrepl_main_conf_t *pmcf, ngx_uint_t *states,
    ngx_http_pyrepl_counters_t *c, ngx_http_pyrepl_sup_status_t *st)
{
    json_t      *o, *runs;
    ngx_uint_t   i, up, total;

    up = st->up;

    runs = json_object();
    if (runs == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; i < PYREPL_RUN_STATUS_MAX; i++) {
        json_object_set_new(runs, ngx_http_pyrepl_run_statuses[i],
                            json_integer(c->runs[i]));
    }

    total = 0;
    for (i = PYREPL_STATE_STARTING; i <= PYREPL_STATE_TERMINATED; i++) {
        total += states[i];
    }

    o = json_pack("{s:s,s:{s:b},s:{s:b},s:{s:I,s:I},"
                  "s:{s:I,s:I,s:I,s:I,s:I,s:I},s:I,"
                  "s:{s:I,s:o,s:I,s:I}}",
                  "status", up && st->zygote_up ? "ok" : "degraded",
                  "supervisor", "up", up,
                  "zygote", "up", (int) st->zygote_up,
                  "pool", "idle", (json_int_t) st->pool,
                  "min_idle", (json_int_t) pmcf->pool_min_idle,
                  "sessions",
                  "total", (json_int_t) total,
                  "starting", (json_int_t) states[PYREPL_STATE_STARTING],
                  "idle", (json_int_t) states[PYREPL_STATE_IDLE],
                  "busy", (json_int_t) states[PYREPL_STATE_BUSY],
                  "crashed", (json_int_t) states[PYREPL_STATE_CRASHED],
                  "terminated", (json_int_t) states[PYREPL_STATE_TERMINATED],
                  "max_sessions", (json_int_t) pmcf->max_sessions,
                  "counters",
                  "created", (json_int_t) c->creates,
                  "runs", runs,
                  "crashes", (json_int_t) c->crashes,
                  "reaped", (json_int_t) c->reaped);

    if (o == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_pyrepl_send_json(r, up ? NGX_HTTP_OK
                                           : NGX_HTTP_SERVICE_UNAVAILABLE, o);
}


static ngx_int_t
ngx_http_pyrepl_status_prometheus(ngx_http_request_t *r,
    ngx_http_pyrepl_main_conf_t *pmcf, ngx_uint_t *states,
    ngx_http_pyrepl_counters_t *c, ngx_http_pyrepl_sup_status_t *st)
{
    size_t        size;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_uint_t    i, cumulative, count;
    ngx_chain_t   out;

    size = 4096 + PYREPL_RUN_NBUCKETS * 64;

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_sprintf(b->last,
        "# HELP pyrepl_up Whether the pyrepl supervisor answers.\n"
        "# TYPE pyrepl_up gauge\n"
        "pyrepl_up %ui\n"
        "# HELP pyrepl_zygote_up Whether the zygote is ready to fork.\n"
        "# TYPE pyrepl_zygote_up gauge\n"
        "pyrepl_zygote_up %ui\n"
        "# HELP pyrepl_pool_idle Forked sessions waiting to be handed out.\n"
        "# TYPE pyrepl_pool_idle gauge\n"
        "pyrepl_pool_idle %ui\n"
        "# HELP pyrepl_sessions Sessions by state.\n"
        "# TYPE pyrepl_sessions gauge\n"
        "pyrepl_sessions{state=\"starting\"} %ui\n"
        "pyrepl_sessions{state=\"idle\"} %ui\n"
        "pyrepl_sessions{state=\"busy\"} %ui\n"
        "pyrepl_sessions{state=\"crashed\"} %ui\n"
        "pyrepl_sessions{state=\"terminated\"} %ui\n"
        "# HELP pyrepl_sessions_max pyrepl_max_sessions.\n"
        "# TYPE pyrepl_sessions_max gauge\n"
        "pyrepl_sessions_max %ui\n"
        "# HELP pyrepl_sessions_created_total Sessions created.\n"
        "# TYPE pyrepl_sessions_created_total counter\n"
        "pyrepl_sessions_created_total %uA\n"
        "# HELP pyrepl_session_crashes_total Session processes that died.\n"
        "# TYPE pyrepl_session_crashes_total counter\n"
        "pyrepl_session_crashes_total %uA\n"
        "# HELP pyrepl_sessions_reaped_total Sessions ended by TTL or idle "
        "time.\n"
        "# TYPE pyrepl_sessions_reaped_total counter\n"
        "pyrepl_sessions_reaped_total %uA\n"
        "# HELP pyrepl_runs_total Runs by how they ended.\n"
        "# TYPE pyrepl_runs_total counter\n",
        st->up, st->zygote_up, st->pool,
        states[PYREPL_STATE_STARTING], states[PYREPL_STATE_IDLE],
        states[PYREPL_STATE_BUSY], states[PYREPL_STATE_CRASHED],
        states[PYREPL_STATE_TERMINATED], pmcf->max_sessions, c->creates,
        c->crashes, c->reaped);

    count = 0;
    for (i = 0; i < PYREPL_RUN_STATUS_MAX; i++) {
        b->last = ngx_sprintf(b->last,
                              "pyrepl_runs_total{status=\"%s\"} %uA\n",
                              ngx_http_pyrepl_run_statuses[i], c->runs[i]);
        count += c->runs[i];
    }

    b->last = ngx_sprintf(b->last,
        "# HELP pyrepl_run_duration_seconds Wall time of runs.\n"
        "# TYPE pyrepl_run_duration_seconds histogram\n");

    cumulative = 0;
    for (i = 0; i < PYREPL_RUN_NBUCKETS - 1; i++) {
        cumulative += c->run_buckets[i];
        b->last = ngx_sprintf(b->last,
                              "pyrepl_run_duration_seconds_bucket"
                              "{le=\"%ui.%03ui\"} %ui\n",
                              ngx_http_pyrepl_buckets[i] / 1000,
                              ngx_http_pyrepl_buckets[i] % 1000, cumulative);
    }

    b->last = ngx_sprintf(b->last,
        "pyrepl_run_duration_seconds_bucket{le=\"+Inf\"} %ui\n"
        "pyrepl_run_duration_seconds_sum %uA.%03uA\n"
        "pyrepl_run_duration_seconds_count %ui\n",
        count, c->run_ms_sum / 1000, c->run_ms_sum % 1000, count);

    b->last_buf = (r == r->main);
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    ngx_str_set(&r->headers_out.content_type, "text/plain; version=0.0.4");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_length_n = b->last - b->pos;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


ngx_uint_t
ngx_http_pyrepl_run_status(const char *status)
{
    ngx_uint_t  i;

    for (i = 0; i < PYREPL_RUN_STATUS_MAX; i++) {
        if (ngx_strcmp(status, ngx_http_pyrepl_run_statuses[i]) == 0) {
            return i;
        }
    }

    return PYREPL_RUN_ERROR;
}
