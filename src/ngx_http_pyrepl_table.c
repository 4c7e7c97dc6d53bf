/*
 * ngx_http_pyrepl_table.c: the session table in shared memory, so every
 * nginx worker sees every session.  One slab pool holds an rbtree keyed by
 * a hash of the session id (ids compared in full on collision) and a queue
 * of all sessions for listing.  Every access holds the slab pool's mutex,
 * which the nginx master force-unlocks if a worker dies holding it; records
 * leave the zone only as copies.
 *
 * The "runner" field makes "one run at a time" hold across workers: it is
 * the pid of the worker streaming a run, and a runner that no longer exists
 * (a crashed worker) does not keep the session busy.  A session being
 * created (or revived) names the worker doing it the same way: if that
 * worker dies, the reaper undoes the create (or leaves the session
 * crashed, to be revived again).
 *
 * A session past its expiry, or being reaped, is gone for
 * clients at once: lookups answer "no such session" even before the
 * reaper has had the supervisor kill its processes.
 */

#include "ngx_http_pyrepl_table.h"


/* how long the run whose turn it is has to come (see start_run) */
#define PYREPL_TURN_LOST  100


typedef struct {
    ngx_rbtree_node_t            node;     /* must be first */
    ngx_queue_t                  queue;
    ngx_http_pyrepl_session_t    s;
    ngx_http_pyrepl_record_t    *nb;       /* a dialect's record of it */
} ngx_http_pyrepl_node_t;


static void ngx_http_pyrepl_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_pyrepl_node_t *ngx_http_pyrepl_lookup(
    ngx_http_pyrepl_zone_ctx_t *ctx, u_char *id);
static ngx_uint_t ngx_http_pyrepl_runner_alive(ngx_pid_t pid);
static ngx_array_t *ngx_http_pyrepl_table_copies(ngx_shm_zone_t *zone,
    ngx_pool_t *pool, uint64_t tenant, ngx_uint_t kind);
static ngx_http_pyrepl_node_t *ngx_http_pyrepl_find_default(
    ngx_http_pyrepl_zone_ctx_t *ctx, uint64_t tenant, ngx_uint_t lang);
static ngx_uint_t ngx_http_pyrepl_gone(ngx_http_pyrepl_session_t *s,
    time_t now);
static ngx_uint_t ngx_http_pyrepl_my_turn(ngx_http_pyrepl_session_t *s,
    ngx_http_pyrepl_turn_t *turn);
static ngx_http_pyrepl_node_t *ngx_http_pyrepl_find_live(
    ngx_http_pyrepl_zone_ctx_t *ctx, u_char *id);
static void ngx_http_pyrepl_set(ngx_http_pyrepl_zone_ctx_t *ctx,
    ngx_http_pyrepl_node_t *n, ngx_uint_t state);
static void ngx_http_pyrepl_unbusy(ngx_http_pyrepl_node_t *n);


ngx_int_t
ngx_http_pyrepl_table_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_pyrepl_zone_ctx_t  *octx = data;

    size_t                       len;
    ngx_http_pyrepl_zone_ctx_t  *ctx;

    ctx = shm_zone->data;

    if (octx != NULL) {
        /* a reload: keep the table and every session in it */
        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;
        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        return NGX_OK;
    }

    ctx->sh = ngx_slab_alloc(ctx->shpool, sizeof(ngx_http_pyrepl_shctx_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ctx->shpool->data = ctx->sh;

    ngx_rbtree_init(&ctx->sh->rbtree, &ctx->sh->sentinel,
                    ngx_http_pyrepl_rbtree_insert);
    ngx_queue_init(&ctx->sh->queue);
    ctx->sh->count = 0;

    len = sizeof(" in pyrepl_zone \"\"") + shm_zone->shm.name.len;

    ctx->shpool->log_ctx = ngx_slab_alloc(ctx->shpool, len);
    if (ctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->shpool->log_ctx, " in pyrepl_zone \"%V\"%Z",
                &shm_zone->shm.name);

    ctx->shpool->log_nomem = 0;

    return NGX_OK;
}


static void
ngx_http_pyrepl_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t       **p;
    ngx_http_pyrepl_node_t   *n, *t;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else { /* node->key == temp->key */
            n = (ngx_http_pyrepl_node_t *) node;
            t = (ngx_http_pyrepl_node_t *) temp;

            p = (ngx_memcmp(n->s.id, t->s.id, PYREPL_ID_LEN) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/* called with the mutex held */
static ngx_http_pyrepl_node_t *
ngx_http_pyrepl_lookup(ngx_http_pyrepl_zone_ctx_t *ctx, u_char *id)
{
    ngx_int_t                rc;
    uint32_t                 hash;
    ngx_rbtree_node_t       *node, *sentinel;
    ngx_http_pyrepl_node_t  *n;

    hash = ngx_crc32_short(id, PYREPL_ID_LEN);

    node = ctx->sh->rbtree.root;
    sentinel = ctx->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        n = (ngx_http_pyrepl_node_t *) node;
        rc = ngx_memcmp(id, n->s.id, PYREPL_ID_LEN);

        if (rc == 0) {
            return n;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/*
 * Insert s with a copy of rec (a dialect's record of it, or NULL).
 * Returns NGX_OK, NGX_BUSY if the id exists already, NGX_DECLINED if max
 * sessions exist, NGX_ERROR if the zone has no room for one more, or
 * NGX_ABORT if max_per_key (0: no such cap) of them are s->tenant's.  Both
 * caps count every record, as the table holds them: a session being reaped
 * counts until it is gone.  For a default context (rec->is_default), one
 * of the tenant's for the language that exists already wins: NGX_DONE,
 * with a copy of it in *s.
 */
ngx_int_t
ngx_http_pyrepl_table_insert(ngx_shm_zone_t *zone,
    ngx_http_pyrepl_session_t *s, ngx_http_pyrepl_record_t *rec,
    ngx_uint_t max, ngx_uint_t max_per_key)
{
    ngx_uint_t                   own;
    ngx_queue_t                 *q;
    ngx_http_pyrepl_node_t      *n;
    ngx_http_pyrepl_record_t    *copy;
    ngx_http_pyrepl_zone_ctx_t  *ctx;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (rec != NULL && rec->is_default) {
        n = ngx_http_pyrepl_find_default(ctx, s->tenant, s->lang);

        if (n != NULL) {
            *s = n->s;
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            return NGX_DONE;
        }
    }

    if (ctx->sh->count >= max) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_DECLINED;
    }

    if (max_per_key) {
        own = 0;

        for (q = ngx_queue_head(&ctx->sh->queue);
             q != ngx_queue_sentinel(&ctx->sh->queue);
             q = ngx_queue_next(q))
        {
            n = ngx_queue_data(q, ngx_http_pyrepl_node_t, queue);
            own += (n->s.tenant == s->tenant);
        }

        if (own >= max_per_key) {
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            return NGX_ABORT;
        }
    }

    if (ngx_http_pyrepl_lookup(ctx, s->id) != NULL) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_BUSY;
    }

    n = ngx_slab_alloc_locked(ctx->shpool, sizeof(ngx_http_pyrepl_node_t));
    copy = NULL;

    if (n != NULL && rec != NULL) {
        copy = ngx_slab_alloc_locked(ctx->shpool,
                                     sizeof(ngx_http_pyrepl_record_t));
        if (copy == NULL) {
            ngx_slab_free_locked(ctx->shpool, n);
            n = NULL;
        }
    }

    if (n == NULL) {
        /* the zone is full (the slab logged it, naming the zone) */
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_ERROR;
    }

    if (copy != NULL) {
        *copy = *rec;
    }

    n->s = *s;
    n->nb = copy;
    n->node.key = ngx_crc32_short(s->id, PYREPL_ID_LEN);

    ngx_rbtree_insert(&ctx->sh->rbtree, &n->node);
    ngx_queue_insert_head(&ctx->sh->queue, &n->queue);
    ctx->sh->count++;
    ngx_atomic_fetch_add(&ctx->sh->counters.creates, 1);

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return NGX_OK;
}


/*
 * As ngx_http_pyrepl_table_get(), for tenant: another tenant's session
 * does not exist, as far as this one is concerned (NGX_DECLINED).
 */
ngx_int_t
ngx_http_pyrepl_table_get_own(ngx_shm_zone_t *zone, u_char *id,
    uint64_t tenant, ngx_http_pyrepl_session_t *s)
{
    if (ngx_http_pyrepl_table_get(zone, id, s) != NGX_OK
        || s->tenant != tenant)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * A copy of the tenant's default context for lang into *s: NGX_OK, or
 * NGX_DECLINED when it has none.
 */
ngx_int_t
ngx_http_pyrepl_table_default(ngx_shm_zone_t *zone, uint64_t tenant,
    ngx_uint_t lang, ngx_http_pyrepl_session_t *s)
{
    ngx_http_pyrepl_node_t      *n;
    ngx_http_pyrepl_zone_ctx_t  *ctx;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    n = ngx_http_pyrepl_find_default(ctx, tenant, lang);

    if (n != NULL) {
        *s = n->s;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return n != NULL ? NGX_OK : NGX_DECLINED;
}


/*
 * The tenant's default context for lang, or NULL; under the lock.  One
 * whose process has ended (its shell exited, it crashed) is the default
 * no more: the next run without a context makes a new one.
 */
static ngx_http_pyrepl_node_t *
ngx_http_pyrepl_find_default(ngx_http_pyrepl_zone_ctx_t *ctx,
    uint64_t tenant, ngx_uint_t lang)
{
    time_t                   now;
    ngx_queue_t             *q;
    ngx_http_pyrepl_node_t  *n;

    now = ngx_time();

    for (q = ngx_queue_head(&ctx->sh->queue);
         q != ngx_queue_sentinel(&ctx->sh->queue);
         q = ngx_queue_next(q))
    {
        n = ngx_queue_data(q, ngx_http_pyrepl_node_t, queue);

        if (n->nb != NULL && n->nb->kind == PYREPL_RECORD_CONTEXT
            && n->nb->is_default && n->s.tenant == tenant
            && n->s.lang == lang && !ngx_http_pyrepl_gone(&n->s, now)
            && n->s.state != PYREPL_STATE_TERMINATED
            && n->s.state != PYREPL_STATE_CRASHED)
        {
            return n;
        }
    }

    return NULL;
}


/* Copies the session out; NGX_DECLINED if there is none. */
ngx_int_t
ngx_http_pyrepl_table_get(ngx_shm_zone_t *zone, u_char *id,
    ngx_http_pyrepl_session_t *s)
{
    ngx_http_pyrepl_node_t      *n;
    ngx_http_pyrepl_zone_ctx_t  *ctx;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    n = ngx_http_pyrepl_find_live(ctx, id);

    if (n == NULL) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_DECLINED;
    }

    *s = n->s;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return NGX_OK;
}


ngx_int_t
ngx_http_pyrepl_table_set_ready(ngx_shm_zone_t *zone, u_char *id,
    ngx_pid_t pid)
{
    ngx_http_pyrepl_node_t      *n;
    ngx_http_pyrepl_zone_ctx_t  *ctx;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    n = ngx_http_pyrepl_lookup(ctx, id);

    if (n != NULL) {
        n->s.pid = pid;
        n->s.state = PYREPL_STATE_IDLE;
        n->s.runner = 0;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return n ? NGX_OK : NGX_DECLINED;
}


ngx_int_t
ngx_http_pyrepl_table_set_state(ngx_shm_zone_t *zone, u_char *id,
    ngx_uint_t state)
{
    ngx_http_pyrepl_node_t      *n;
    ngx_http_pyrepl_zone_ctx_t  *ctx;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    n = ngx_http_pyrepl_lookup(ctx, id);

    if (n != NULL && n->s.state != PYREPL_STATE_REAPING) {
        ngx_http_pyrepl_set(ctx, n, state);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return n ? NGX_OK : NGX_DECLINED;
}


ngx_int_t
ngx_http_pyrepl_table_renew(ngx_shm_zone_t *zone, u_char *id, time_t expires)
{
    ngx_int_t                    rc;
    ngx_http_pyrepl_node_t      *n;
    ngx_http_pyrepl_zone_ctx_t  *ctx;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    n = ngx_http_pyrepl_lookup(ctx, id);

    if (n == NULL || ngx_http_pyrepl_gone(&n->s, ngx_time())) {
        rc = NGX_DECLINED;

    } else {
        n->s.expires = expires;
        rc = NGX_OK;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


/*
 * A restart of session id (Jupyter's kernel restart) begins: one that is
 * not running code becomes STARTING for this worker, its execution count
 * 0.  Returns NGX_OK, NGX_DECLINED if there is no such session, NGX_BUSY
 * if it runs code or is starting already.
 */
ngx_int_t
ngx_http_pyrepl_table_restart(ngx_shm_zone_t *zone, u_char *id)
{
    ngx_int_t                    rc;
    ngx_http_pyrepl_node_t      *n;
    ngx_http_pyrepl_zone_ctx_t  *ctx;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    n = ngx_http_pyrepl_find_live(ctx, id);

    if (n == NULL) {
        rc = NGX_DECLINED;

    } else if (n->s.state == PYREPL_STATE_BUSY
               || n->s.state == PYREPL_STATE_STARTING || n->s.reviving)
    {
        rc = NGX_BUSY;

    } else {
        ngx_http_pyrepl_set(ctx, n, PYREPL_STATE_STARTING);
        n->s.runner = ngx_pid;
        n->s.execution_count = 0;
        n->s.tx_pending = 0;
        n->s.last_activity = ngx_time();
        rc = NGX_OK;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


/* A request about session id counts as its activity (pyrepl_idle_timeout). */
void
ngx_http_pyrepl_table_touch(ngx_shm_zone_t *zone, u_char *id)
{
    ngx_http_pyrepl_node_t      *n;
    ngx_http_pyrepl_zone_ctx_t  *ctx;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    n = ngx_http_pyrepl_lookup(ctx, id);

    if (n != NULL) {
        n->s.last_activity = ngx_time();
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/*
 * Mark every session past its expiry, or idle longer than idle_timeout
 * (0: never), or a key's default E2B context whose shell exited (no client
 * names it: the next run without a context has made, or makes, another),
 * as reaping and return their ids (u_char[32] each) for the reaper to have
 * killed; reaping sessions whose kill has not been confirmed yet are
 * returned again.  NULL on allocation failure.
 */
ngx_array_t *
ngx_http_pyrepl_table_reap(ngx_shm_zone_t *zone, time_t now,
    time_t idle_timeout, ngx_pool_t *pool)
{
    u_char                      *id;
    ngx_queue_t                 *q;
    ngx_array_t                 *ids;
    ngx_http_pyrepl_node_t      *n;
    ngx_http_pyrepl_zone_ctx_t  *ctx;

    ctx = zone->data;

    ids = ngx_array_create(pool, 16, PYREPL_ID_LEN);
    if (ids == NULL) {
        return NULL;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    for (q = ngx_queue_head(&ctx->sh->queue);
         q != ngx_queue_sentinel(&ctx->sh->queue);
         q = ngx_queue_next(q))
    {
        n = ngx_queue_data(q, ngx_http_pyrepl_node_t, queue);

        /* a create or revival whose worker died half way */
        if (n->s.state == PYREPL_STATE_STARTING
            && !ngx_http_pyrepl_runner_alive(n->s.runner))
        {
            n->s.runner = 0;

            if (n->s.reviving) {
                n->s.reviving = 0;
                n->s.state = PYREPL_STATE_CRASHED;
                continue;
            }

            n->s.state = PYREPL_STATE_REAPING;
        }

        if (n->s.state != PYREPL_STATE_REAPING) {

            if (n->s.expires > now
                && !(idle_timeout
                     && n->s.state != PYREPL_STATE_BUSY
                     && n->s.state != PYREPL_STATE_STARTING
                     && n->s.last_activity + idle_timeout <= now)
                && !(n->s.state == PYREPL_STATE_TERMINATED && n->nb != NULL
                     && n->nb->kind == PYREPL_RECORD_CONTEXT
                     && n->nb->is_default))
            {
                continue;
            }

            n->s.state = PYREPL_STATE_REAPING;
        }

        id = ngx_array_push(ids);
        if (id == NULL) {
            break;
        }

        ngx_memcpy(id, n->s.id, PYREPL_ID_LEN);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return ids;
}


/* Sessions by state: counts[PYREPL_STATE_REAPING + 1]. */
void
ngx_http_pyrepl_table_states(ngx_shm_zone_t *zone, ngx_uint_t *counts)
{
    ngx_queue_t                 *q;
    ngx_http_pyrepl_node_t      *n;
    ngx_http_pyrepl_zone_ctx_t  *ctx;

    ctx = zone->data;

    ngx_memzero(counts, (PYREPL_STATE_REAPING + 1) * sizeof(ngx_uint_t));

    ngx_shmtx_lock(&ctx->shpool->mutex);

    for (q = ngx_queue_head(&ctx->sh->queue);
         q != ngx_queue_sentinel(&ctx->sh->queue);
         q = ngx_queue_next(q))
    {
        n = ngx_queue_data(q, ngx_http_pyrepl_node_t, queue);

        ngx_http_pyrepl_unbusy(n);

        if (n->s.state <= PYREPL_STATE_REAPING) {
            counts[n->s.state]++;
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


ngx_http_pyrepl_counters_t *
ngx_http_pyrepl_table_counters(ngx_shm_zone_t *zone)
{
    ngx_http_pyrepl_zone_ctx_t  *ctx;

    ctx = zone->data;

    return &ctx->sh->counters;
}


/*
 * Marks the session busy for this worker.  Returns NGX_OK with a copy in
 * *s, NGX_DECLINED if there is no such session, NGX_BUSY if another run
 * holds it, NGX_ABORT if it is not ready to run (crashed, starting); *s is
 * filled in every case but the first.
 *
 * With turn (E2B's runs), runs that find the session busy, or others
 * waiting, take a ticket and wait in line: each one's turn comes in the
 * order they took them (the next on the session's release, turn_now).
 * A run whose turn it is and that does not come for PYREPL_TURN_LOST
 * (its client left, its worker died) is passed over; if it does come
 * after all, it runs as soon as the session is free.
 */
ngx_int_t
ngx_http_pyrepl_table_start_run(ngx_shm_zone_t *zone, u_char *id,
    ngx_http_pyrepl_session_t *s, ngx_http_pyrepl_turn_t *turn)
{
    ngx_int_t                    rc;
    ngx_http_pyrepl_node_t      *n;
    ngx_http_pyrepl_zone_ctx_t  *ctx;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    n = ngx_http_pyrepl_find_live(ctx, id);

    if (n == NULL) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_DECLINED;
    }

    if (turn != NULL && !ngx_http_pyrepl_my_turn(&n->s, turn)) {
        *s = n->s;
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_BUSY;
    }

    switch (n->s.state) {

    case PYREPL_STATE_IDLE:
        if (n->s.tx_pending) {
            rc = NGX_AGAIN;
            break;
        }

        n->s.state = PYREPL_STATE_BUSY;
        n->s.runner = ngx_pid;
        n->s.last_activity = ngx_time();

        if (turn != NULL && turn->held) {
            if (turn->ticket == n->s.turn_now) {
                n->s.turn_now++;
                n->s.turn_since = ngx_current_msec;
            }

            turn->held = 0;
        }

        rc = NGX_OK;
        break;

    case PYREPL_STATE_BUSY:
        rc = NGX_BUSY;
        break;

    default:
        rc = NGX_ABORT;
        break;
    }

    *s = n->s;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


/*
 * Whether a run with turn may have a go at session s now (under the
 * lock): it has no ticket, none waits and no run holds the session, or
 * its ticket's turn has come (or passed: it was passed over).  A run
 * that finds the session busy, or others waiting, takes its ticket here.
 */
static ngx_uint_t
ngx_http_pyrepl_my_turn(ngx_http_pyrepl_session_t *s,
    ngx_http_pyrepl_turn_t *turn)
{
    if (!turn->held) {
        if (s->turn_next == s->turn_now && s->state != PYREPL_STATE_BUSY) {
            return 1;
        }

        turn->ticket = s->turn_next++;
        turn->held = 1;
    }

    /* the run whose turn it is does not come: its turn passes */

    if (turn->ticket != s->turn_now
        && s->state == PYREPL_STATE_IDLE
        && ngx_current_msec - s->turn_since >= PYREPL_TURN_LOST)
    {
        s->turn_now++;
        s->turn_since = ngx_current_msec;
    }

    return (int32_t) (turn->ticket - s->turn_now) <= 0;
}


/* A run that waited in line goes without its turn: the next one's comes. */
void
ngx_http_pyrepl_table_leave_turn(ngx_shm_zone_t *zone, u_char *id,
    ngx_http_pyrepl_turn_t *turn)
{
    ngx_http_pyrepl_node_t      *n;
    ngx_http_pyrepl_zone_ctx_t  *ctx;

    if (!turn->held) {
        return;
    }

    turn->held = 0;
    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    n = ngx_http_pyrepl_lookup(ctx, id);

    if (n != NULL && n->s.turn_now == turn->ticket) {
        n->s.turn_now++;
        n->s.turn_since = ngx_current_msec;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/* A checkpoint of session id was stored: the one to restore on a crash. */
void
ngx_http_pyrepl_table_set_checkpoint(ngx_shm_zone_t *zone, u_char *id,
    u_char *cid)
{
    ngx_http_pyrepl_node_t      *n;
    ngx_http_pyrepl_zone_ctx_t  *ctx;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    n = ngx_http_pyrepl_lookup(ctx, id);

    if (n != NULL) {
        ngx_memcpy(n->s.checkpoint, cid, PYREPL_ID_LEN);
        n->s.has_checkpoint = 1;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/*
 * Sessions to bring back from their latest checkpoint: crashed ones, or
 * with idle set the idle ones too (ngx_http_pyrepl_revive.c checks
 * whether their process lives).  Crashed ones are marked reviving and
 * starting (runs get 409 meanwhile); NULL on allocation failure.
 */
ngx_array_t *
ngx_http_pyrepl_table_revivable(ngx_shm_zone_t *zone, ngx_pool_t *pool,
    ngx_uint_t idle)
{
    ngx_queue_t                  *q;
    ngx_array_t                  *a;
    ngx_http_pyrepl_node_t       *n;
    ngx_http_pyrepl_zone_ctx_t   *ctx;
    ngx_http_pyrepl_revivable_t  *rv;

    ctx = zone->data;

    a = ngx_array_create(pool, 4, sizeof(ngx_http_pyrepl_revivable_t));
    if (a == NULL) {
        return NULL;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    for (q = ngx_queue_head(&ctx->sh->queue);
         q != ngx_queue_sentinel(&ctx->sh->queue);
         q = ngx_queue_next(q))
    {
        n = ngx_queue_data(q, ngx_http_pyrepl_node_t, queue);

        if (!n->s.has_checkpoint || n->s.reviving
            || !(n->s.state == PYREPL_STATE_CRASHED
                 || (idle && n->s.state == PYREPL_STATE_IDLE)))
        {
            continue;
        }

        rv = ngx_array_push(a);
        if (rv == NULL) {
            break;
        }

        ngx_memcpy(rv->id, n->s.id, PYREPL_ID_LEN);
        ngx_memcpy(rv->checkpoint, n->s.checkpoint, PYREPL_ID_LEN);
        rv->tenant = n->s.tenant;
        rv->crashed = (n->s.state == PYREPL_STATE_CRASHED);

        if (n->s.state == PYREPL_STATE_CRASHED) {
            n->s.reviving = 1;
            n->s.state = PYREPL_STATE_STARTING;
            n->s.runner = ngx_pid;
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return a;
}


/*
 * The end of a revival: pid > 0 serves the session restored from its
 * checkpoint; 0: it failed, the session reads crashed and is not tried
 * again (until a new checkpoint).
 */
void
ngx_http_pyrepl_table_revived(ngx_shm_zone_t *zone, u_char *id, ngx_pid_t pid)
{
    ngx_http_pyrepl_node_t      *n;
    ngx_http_pyrepl_zone_ctx_t  *ctx;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    n = ngx_http_pyrepl_lookup(ctx, id);

    if (n != NULL && n->s.reviving) {
        n->s.reviving = 0;

        n->s.runner = 0;

        if (pid > 0) {
            n->s.pid = pid;
            n->s.state = PYREPL_STATE_IDLE;
            n->s.restored = 1;
            ngx_memcpy(n->s.restored_from, n->s.checkpoint, PYREPL_ID_LEN);

        } else {
            n->s.state = PYREPL_STATE_CRASHED;
            n->s.has_checkpoint = 0;
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/*
 * Record a transaction: pending (explicit, until commit or rollback), and
 * the session's new process after a rollback (pid 0: unchanged).
 */
ngx_int_t
ngx_http_pyrepl_table_set_tx(ngx_shm_zone_t *zone, u_char *id,
    ngx_uint_t pending, ngx_pid_t pid)
{
    ngx_http_pyrepl_node_t      *n;
    ngx_http_pyrepl_zone_ctx_t  *ctx;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    n = ngx_http_pyrepl_lookup(ctx, id);

    if (n != NULL) {
        n->s.tx_pending = pending;

        if (pid > 0) {
            n->s.pid = pid;
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return n ? NGX_OK : NGX_DECLINED;
}


void
ngx_http_pyrepl_table_end_run(ngx_shm_zone_t *zone, u_char *id,
    ngx_uint_t state, ngx_uint_t execution_count)
{
    ngx_http_pyrepl_node_t      *n;
    ngx_http_pyrepl_zone_ctx_t  *ctx;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    n = ngx_http_pyrepl_lookup(ctx, id);

    if (n != NULL && n->s.runner == ngx_pid) {
        n->s.runner = 0;
        n->s.last_activity = ngx_time();

        if (n->s.state == PYREPL_STATE_BUSY) {
            ngx_http_pyrepl_set(ctx, n, state);
        }

        /* the run whose turn is next has from now on to come */
        n->s.turn_since = ngx_current_msec;

        if (execution_count > n->s.execution_count) {
            n->s.execution_count = execution_count;
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


void
ngx_http_pyrepl_table_remove(ngx_shm_zone_t *zone, u_char *id)
{
    ngx_http_pyrepl_node_t      *n;
    ngx_http_pyrepl_zone_ctx_t  *ctx;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    n = ngx_http_pyrepl_lookup(ctx, id);

    if (n != NULL) {
        ngx_rbtree_delete(&ctx->sh->rbtree, &n->node);
        ngx_queue_remove(&n->queue);
        ctx->sh->count--;

        if (n->nb != NULL) {
            ngx_slab_free_locked(ctx->shpool, n->nb);
        }

        ngx_slab_free_locked(ctx->shpool, n);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/*
 * Give session id, of tenant, a dialect's record nb (a copy), or take it
 * away (nb NULL).  Returns NGX_OK, NGX_DECLINED if the tenant has
 * no such live session, NGX_ERROR when the zone is full.
 */
ngx_int_t
ngx_http_pyrepl_table_record(ngx_shm_zone_t *zone, u_char *id,
    uint64_t tenant, ngx_http_pyrepl_record_t *nb)
{
    ngx_int_t                    rc;
    ngx_http_pyrepl_node_t      *n;
    ngx_http_pyrepl_zone_ctx_t  *ctx;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    n = ngx_http_pyrepl_find_live(ctx, id);
    rc = NGX_OK;

    if (n == NULL || n->s.tenant != tenant) {
        rc = NGX_DECLINED;

    } else if (nb == NULL) {
        if (n->nb != NULL) {
            ngx_slab_free_locked(ctx->shpool, n->nb);
            n->nb = NULL;
        }

    } else {
        if (n->nb == NULL) {
            n->nb = ngx_slab_alloc_locked(ctx->shpool,
                                          sizeof(ngx_http_pyrepl_record_t));
        }

        if (n->nb == NULL) {
            rc = NGX_ERROR;

        } else {
            *n->nb = *nb;
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


/*
 * Copies of the tenant's sessions that have a record of this kind
 * (PYREPL_RECORD_*), each an ngx_http_pyrepl_record_t with its session in
 * .session; NULL on allocation failure.
 */
ngx_array_t *
ngx_http_pyrepl_table_records(ngx_shm_zone_t *zone, ngx_pool_t *pool,
    uint64_t tenant, ngx_uint_t kind)
{
    return ngx_http_pyrepl_table_copies(zone, pool, tenant, kind);
}


/* Copies of the tenant's sessions, or NULL on allocation failure. */
ngx_array_t *
ngx_http_pyrepl_table_list(ngx_shm_zone_t *zone, ngx_pool_t *pool,
    uint64_t tenant)
{
    return ngx_http_pyrepl_table_copies(zone, pool, tenant, 0);
}


/*
 * Copies of the tenant's live sessions (ngx_http_pyrepl_session_t), or
 * with kind set (PYREPL_RECORD_*) of those that have such a record
 * (ngx_http_pyrepl_record_t, its session in .session); NULL on
 * allocation failure.
 */
static ngx_array_t *
ngx_http_pyrepl_table_copies(ngx_shm_zone_t *zone, ngx_pool_t *pool,
    uint64_t tenant, ngx_uint_t kind)
{
    time_t                       now;
    ngx_queue_t                 *q;
    ngx_array_t                 *list;
    ngx_http_pyrepl_node_t      *n;
    ngx_http_pyrepl_record_t  *nb;
    ngx_http_pyrepl_session_t   *s;
    ngx_http_pyrepl_zone_ctx_t  *ctx;

    ctx = zone->data;
    now = ngx_time();

    ngx_shmtx_lock(&ctx->shpool->mutex);

    list = ngx_array_create(pool, ctx->sh->count ? ctx->sh->count : 1,
                            kind ? sizeof(ngx_http_pyrepl_record_t)
                                      : sizeof(ngx_http_pyrepl_session_t));
    if (list == NULL) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NULL;
    }

    for (q = ngx_queue_head(&ctx->sh->queue);
         q != ngx_queue_sentinel(&ctx->sh->queue);
         q = ngx_queue_next(q))
    {
        n = ngx_queue_data(q, ngx_http_pyrepl_node_t, queue);

        if (ngx_http_pyrepl_gone(&n->s, now) || n->s.tenant != tenant
            || (kind && (n->nb == NULL || n->nb->kind != kind)))
        {
            continue;
        }

        ngx_http_pyrepl_unbusy(n);

        /* preallocated: cannot fail */
        if (kind) {
            nb = ngx_array_push(list);
            *nb = *n->nb;
            nb->session = n->s;

        } else {
            s = ngx_array_push(list);
            *s = n->s;
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return list;
}


/*
 * A worker that died mid-run leaves its pid as runner; kill(pid, 0) tells
 * whether it still exists (nginx workers share a uid, so EPERM means a
 * recycled pid of someone else's process, which is not our runner either).
 */
static ngx_uint_t
ngx_http_pyrepl_runner_alive(ngx_pid_t pid)
{
    if (pid == 0) {
        return 0;
    }

    if (pid == ngx_pid) {
        return 1;
    }

    return kill(pid, 0) == 0;
}


/*
 * A session's new state; the one place that counts a session that
 * crashed (the status page's crashes).  Called with the mutex held.
 */
static void
ngx_http_pyrepl_set(ngx_http_pyrepl_zone_ctx_t *ctx,
    ngx_http_pyrepl_node_t *n, ngx_uint_t state)
{
    if (state == PYREPL_STATE_CRASHED && n->s.state != PYREPL_STATE_CRASHED) {
        ngx_atomic_fetch_add(&ctx->sh->counters.crashes, 1);
    }

    n->s.state = state;
}


static ngx_uint_t
ngx_http_pyrepl_gone(ngx_http_pyrepl_session_t *s, time_t now)
{
    return s->state == PYREPL_STATE_REAPING || s->expires <= now;
}


/*
 * The session clients can see (not expired, not being reaped), with the
 * busy mark of a runner that died dropped; NULL if none.  Called with the
 * mutex held.
 */
static ngx_http_pyrepl_node_t *
ngx_http_pyrepl_find_live(ngx_http_pyrepl_zone_ctx_t *ctx, u_char *id)
{
    ngx_http_pyrepl_node_t  *n;

    n = ngx_http_pyrepl_lookup(ctx, id);

    if (n == NULL || ngx_http_pyrepl_gone(&n->s, ngx_time())) {
        return NULL;
    }

    ngx_http_pyrepl_unbusy(n);

    return n;
}


/* Drop the busy mark of a runner that died.  Called with the mutex held. */
static void
ngx_http_pyrepl_unbusy(ngx_http_pyrepl_node_t *n)
{
    if (n->s.state == PYREPL_STATE_BUSY
        && !ngx_http_pyrepl_runner_alive(n->s.runner))
    {
        n->s.state = PYREPL_STATE_IDLE;
        n->s.runner = 0;
    }
}
