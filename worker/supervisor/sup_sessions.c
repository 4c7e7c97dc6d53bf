/*
 * sup_sessions.c: the supervisor's table of session processes, id -> pid
 * and state.  One growable array searched linearly: it holds at most the
 * configured number of sessions (hundreds, a thousand), and most
 * operations on it come with a rename, a kill or a directory removal that
 * costs more than the scan.
 *
 * An id may appear twice for a moment: a KILLED entry waiting for its
 * process to be reaped and a new LIVE or DEAD entry created with the same
 * id.  Lookups by id therefore skip KILLED entries, and lookups by pid skip
 * DEAD ones (their pid has been reaped and may be reused) and adopted ones
 * (not our children: their pid may be reused by one that is, once the
 * keeper has reaped them).
 */

#include <stdlib.h>
#include <string.h>

#include "sup.h"


static sup_session_t  *sup_sessions;
static size_t          sup_nsessions;
static size_t          sup_capacity;


/* Make room for one more entry, so an add after a fork cannot fail. */
int
sup_session_reserve(void)
{
    sup_session_t  *p;

    if (sup_nsessions < sup_capacity) {
        return 0;
    }

    p = sup_grow(sup_sessions, &sup_capacity, sizeof(sup_session_t), 64,
                 "the session table");
    if (p == NULL) {
        return -1;
    }

    sup_sessions = p;

    return 0;
}


sup_session_t *
sup_session_add(const char *id, pid_t pid)
{
    sup_session_t  *s;

    if (sup_session_reserve() == -1) {
        return NULL;
    }

    s = &sup_sessions[sup_nsessions++];

    memcpy(s->id, id, PYREPL_ID_LEN);
    s->id[PYREPL_ID_LEN] = '\0';
    s->pid = pid;
    s->pgid = pid;
    s->state = SUP_S_LIVE;
    s->start = 0;
    s->pidfd = -1;
    s->adopted = 0;

    return s;
}


void
sup_session_remove(sup_session_t *s)
{
    sup_session_t  *last;

    last = &sup_sessions[--sup_nsessions];

    if (s != last) {
        *s = *last;
    }
}


sup_session_t *
sup_session_find(const char *id)
{
    size_t  i;

    for (i = 0; i < sup_nsessions; i++) {
        if (sup_sessions[i].state != SUP_S_KILLED
            && memcmp(sup_sessions[i].id, id, PYREPL_ID_LEN) == 0)
        {
            return &sup_sessions[i];
        }
    }

    return NULL;
}


sup_session_t *
sup_session_find_pid(pid_t pid)
{
    size_t  i;

    for (i = 0; i < sup_nsessions; i++) {
        if (sup_sessions[i].state != SUP_S_DEAD
            && !sup_sessions[i].adopted
            && sup_sessions[i].pid == pid)
        {
            return &sup_sessions[i];
        }
    }

    return NULL;
}


sup_session_t *
sup_session_find_pidfd(int pidfd)
{
    size_t  i;

    for (i = 0; i < sup_nsessions; i++) {
        if (sup_sessions[i].adopted && sup_sessions[i].pidfd == pidfd) {
            return &sup_sessions[i];
        }
    }

    return NULL;
}


size_t
sup_session_live(void)
{
    size_t  i, n;

    for (i = 0, n = 0; i < sup_nsessions; i++) {
        if (sup_sessions[i].state == SUP_S_LIVE) {
            n++;
        }
    }

    return n;
}


size_t
sup_session_count(void)
{
    return sup_nsessions;
}


sup_session_t *
sup_session_at(size_t i)
{
    return &sup_sessions[i];
}


void
sup_session_free_all(void)
{
    free(sup_sessions);

    sup_sessions = NULL;
    sup_nsessions = 0;
    sup_capacity = 0;
}
