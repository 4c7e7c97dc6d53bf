/*
 * sup_ended.c: why a session's processes ended, for nginx: a run whose
 * session process went away asks ("ended"), and the answer says whether
 * its control group ran out of memory (sup_jail_gone) or it just exited.
 *
 * nginx sees the session's connection close before this process has
 * reaped it, so a question about a session still LIVE waits, in a list
 * like the pool's waiters, until its reap makes it DEAD (or removes it),
 * or SUP_ENDED_WAIT_MS have passed.  Answers go from the timer, never
 * from inside a reap: an answer may dispatch the client's next request.
 */

#include <string.h>

#include "sup.h"
#include "wk_time.h"


typedef struct {
    sup_client_t  *client;
    int64_t        deadline;
    char           id[PYREPL_ID_LEN + 1];
} sup_ended_waiter_t;


static void sup_ended_reason(const char *id, pr_frame_t *reply);


static sup_ended_waiter_t  *sup_ended_waiters;
static size_t               sup_nended_waiters;
static size_t               sup_cended_waiters;


int
sup_ended(sup_client_t *client, const char *id, pr_frame_t *reply,
    sup_err_t *err)
{
    sup_session_t       *s;
    sup_ended_waiter_t  *w;

    s = sup_session_find(id);

    if (s == NULL || s->state != SUP_S_LIVE) {
        sup_ended_reason(id, reply);
        return 0;
    }

    if (sup_nended_waiters == sup_cended_waiters) {
        w = sup_grow(sup_ended_waiters, &sup_cended_waiters,
                     sizeof(sup_ended_waiter_t), 8, "the questions on ends");
        if (w == NULL) {
            SUP_ERR(err, "unavailable", "out of memory");
            return -1;
        }

        sup_ended_waiters = w;
    }

    w = &sup_ended_waiters[sup_nended_waiters++];
    w->client = client;
    w->deadline = wk_msec() + SUP_ENDED_WAIT_MS;
    memcpy(w->id, id, PYREPL_ID_LEN);
    w->id[PYREPL_ID_LEN] = '\0';

    return 1;
}


void
sup_ended_cancel(sup_client_t *client)
{
    size_t  i, j;

    for (i = 0, j = 0; i < sup_nended_waiters; i++) {
        if (sup_ended_waiters[i].client != client) {
            sup_ended_waiters[j++] = sup_ended_waiters[i];
        }
    }

    sup_nended_waiters = j;
}


int64_t
sup_ended_timeout(int64_t now)
{
    size_t   i;
    int64_t  t, min;

    min = -1;

    for (i = 0; i < sup_nended_waiters; i++) {
        t = sup_ended_waiters[i].deadline - now;
        t = (t < 0) ? 0 : t;

        if (min < 0 || t < min) {
            min = t;
        }
    }

    return min;
}


/* Answer the questions whose session is no longer LIVE, or that waited. */
void
sup_ended_timer(const sup_conf_t *conf, int64_t now)
{
    size_t               i;
    pr_frame_t           reply;
    sup_session_t       *s;
    sup_ended_waiter_t   w;

    for (i = 0; i < sup_nended_waiters; /* void */ ) {
        s = sup_session_find(sup_ended_waiters[i].id);

        if (s != NULL && s->state == SUP_S_LIVE
            && sup_ended_waiters[i].deadline > now)
        {
            i++;
            continue;
        }

        w = sup_ended_waiters[i];
        sup_ended_waiters[i] = sup_ended_waiters[--sup_nended_waiters];

        sup_ended_reason(w.id, &reply);

        /* the answer may run the client's next request: start over */
        (void) sup_client_answer(conf, w.client, &reply);
        i = 0;
    }
}


/*
 * ok {reason}: "out_of_memory", "exited", "killed" (on request), or
 * "none" (live still, or unknown).
 */
static void
sup_ended_reason(const char *id, pr_frame_t *reply)
{
    sup_session_t  *s;

    s = sup_session_find(id);

    memset(reply, 0, sizeof(pr_frame_t));
    reply->type = PR_T_OK;

    if (s == NULL || s->state == SUP_S_LIVE) {
        pr_set_cstr(reply, reason, "none");

    } else if (s->state == SUP_S_KILLED) {
        pr_set_cstr(reply, reason, "killed");

    } else {
        pr_set_cstr(reply, reason, s->oom ? "out_of_memory" : "exited");
    }
}
