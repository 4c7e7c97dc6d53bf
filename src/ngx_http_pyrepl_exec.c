/*
 * ngx_http_pyrepl_exec.c: one run of code in a session, whoever asked for
 * it.  An exec reserves the session in the shared table, connects to the
 * session process (on the idle connection this worker keeps to it, if any:
 * ngx_http_pyrepl_keepalive.c), sends the "run" frame and turns the frames
 * that come back into API events ("init", "stdout", "stderr", "result",
 * "error"), handing each to its sink; at the end it releases the session,
 * gives a connection whose run completed cleanly back to be kept, counts
 * the outcome and calls the sink's done handler once.  The sinks are the HTTP
 * answers (SSE and JSON, ngx_http_pyrepl_run.c) and the WebSocket; what a
 * run request may ask is read by ngx_http_pyrepl_exec_parse.c, and a run
 * that does not start becomes the API's error here, for all of them
 * (ngx_http_pyrepl_exec_refusal).
 *
 * Lifetime: the exec lives in a pool its sink owns; a cleanup on that pool
 * undoes whatever is still open (peer, timer, the session's busy mark), so
 * a sink may simply destroy the pool (or finalize its request) at any time.
 * A sink's event handler that returns NGX_ERROR, and its done handler, may
 * do exactly that, so the exec touches nothing after calling them.
 *
 * Deadlines: every run has one (timeout_ms, at most and by default
 * pyrepl_run_timeout_max), which goes to the session process in the run
 * frame: the session process owns it, interrupts the run there and
 * completes it as "timeout".  What is left here is a watchdog: a run
 * still going pyrepl_timeout_grace after its deadline (the code swallowed
 * the KeyboardInterrupt, or never returns to Python) has the supervisor
 * kill the session process; the run ends "crashed" and so does the
 * session.
 *
 * A session process that goes away during a run (its connection closes)
 * ends the run "crashed", once the supervisor has said why: a session
 * whose control group ran out of memory was ended by the kernel, and the
 * run's error says so.
 *
 * Output: past pyrepl_max_output bytes in one run (stdout, stderr and
 * display data), the rest is dropped, a notice goes to stderr and the run
 * is interrupted.
 */

#include "ngx_http_pyrepl_exec.h"

#include "ngx_http_pyrepl_control.h"
#include "ngx_http_pyrepl_exec_parse.h"
#include "ngx_http_pyrepl_keepalive.h"
#include "ngx_http_pyrepl_peer.h"
#include "ngx_http_pyrepl_reply.h"
#include "ngx_http_pyrepl_status.h"
#include "ngx_http_pyrepl_supervisor.h"
#include "ngx_http_pyrepl_table.h"

#include <sys/random.h>


static ngx_int_t ngx_http_pyrepl_exec_frame(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame);
static void ngx_http_pyrepl_exec_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason);
static ngx_int_t ngx_http_pyrepl_exec_lost(ngx_http_pyrepl_exec_t *ex);
static ngx_int_t ngx_http_pyrepl_exec_why(ngx_http_pyrepl_peer_t *peer,
    pr_frame_t *frame);
static void ngx_http_pyrepl_exec_why_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason);
static json_t *ngx_http_pyrepl_exec_bundle(pr_frame_t *frame);
static ngx_int_t ngx_http_pyrepl_exec_truncate(ngx_http_pyrepl_exec_t *ex,
    pr_frame_t *frame);
static ngx_int_t ngx_http_pyrepl_exec_crashed(ngx_http_pyrepl_exec_t *ex,
    const char *why);
static ngx_int_t ngx_http_pyrepl_exec_finish(ngx_http_pyrepl_exec_t *ex,
    const char *status, ngx_uint_t count, ngx_msec_t ms);
static void ngx_http_pyrepl_exec_watchdog(ngx_event_t *ev);
static void ngx_http_pyrepl_exec_count(ngx_http_pyrepl_exec_t *ex,
    const char *status, ngx_msec_t ms);
static void ngx_http_pyrepl_exec_cleanup(void *data);
static json_t *ngx_http_pyrepl_exec_changes(pr_frame_t *frame);
static void ngx_http_pyrepl_exec_tx_done(ngx_http_pyrepl_exec_t *ex,
    pr_frame_t *frame);
static json_t *ngx_http_pyrepl_json_strs(pr_strs_t *strs);
static json_t *ngx_http_pyrepl_json_str(pr_str_t *s);


static const ngx_msec_t  ngx_http_pyrepl_exec_buckets[] = PYREPL_RUN_BUCKETS;


/*
 * Reserve the session for this run.  Returns NGX_OK, NGX_DECLINED when
 * the run is refused (ex->refusal: no such session, it runs something
 * else, an explicit transaction waits for a commit or rollback), or
 * NGX_ERROR on allocation failure.  After NGX_OK the sink gets ready for
 * events and calls ngx_http_pyrepl_exec_start.
 */
ngx_int_t
ngx_http_pyrepl_exec_reserve(ngx_http_pyrepl_exec_t *ex)
{
    u_char                      raw[PYREPL_ID_LEN / 2];
    ngx_int_t                   rc;
    ngx_pool_cleanup_t         *cln;
    ngx_http_pyrepl_session_t   s;

    /* once: a refused reserve may be tried again */

    if (!ex->cleanup) {
        cln = ngx_pool_cleanup_add(ex->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }

        cln->handler = ngx_http_pyrepl_exec_cleanup;
        cln->data = ex;
        ex->cleanup = 1;
    }

    ex->ended = 1;

    if (getrandom(raw, sizeof(raw), 0) != (ssize_t) sizeof(raw)) {
        return NGX_ERROR;
    }

    ngx_hex_dump(ex->exec_id, raw, sizeof(raw));

    rc = ngx_http_pyrepl_table_start_run(ex->pmcf->shm_zone, ex->id, &s,
                                         ex->e2b ? &ex->turn : NULL);

    if (rc == NGX_DECLINED) {
        ex->refusal = PYREPL_REFUSED_NOT_FOUND;
        return NGX_DECLINED;
    }

    if (rc == NGX_BUSY || (rc == NGX_ABORT
                           && s.state == PYREPL_STATE_STARTING))
    {
        ex->refusal = PYREPL_REFUSED_BUSY;
        return NGX_DECLINED;
    }

    if (rc == NGX_AGAIN) {
        ex->refusal = PYREPL_REFUSED_TX_PENDING;
        return NGX_DECLINED;
    }

    ex->ended = (rc != NGX_OK);
    ex->crashed = (rc == NGX_ABORT && s.state != PYREPL_STATE_TERMINATED);
    ex->terminated = (rc == NGX_ABORT && s.state == PYREPL_STATE_TERMINATED);
    ex->execution_count = s.execution_count;

    return NGX_OK;
}


/*
 * A run that did not start (ex->refusal), as the API answers it whatever
 * the sink: returns the HTTP status (400, 404, 409 or 413) and sets *code
 * and *message (which may live in ex).
 */
ngx_uint_t
ngx_http_pyrepl_exec_refusal(ngx_http_pyrepl_exec_t *ex, const char **code,
    const char **message)
{
    switch (ex->refusal) {

    case PYREPL_REFUSED_TOO_LARGE:
        *code = "too_large";
        *message = ex->why;
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;

    case PYREPL_REFUSED_NOT_FOUND:
        *code = "not_found";
        *message = (char *) ngx_http_pyrepl_no_session(ex->text, ex->id);
        return NGX_HTTP_NOT_FOUND;

    case PYREPL_REFUSED_BUSY:
        *code = "session_busy";
        *message = "the session is running code";
        return NGX_HTTP_CONFLICT;

    case PYREPL_REFUSED_RUNNING:
        *code = "session_busy";
        *message = "a run is going on";
        return NGX_HTTP_CONFLICT;

    case PYREPL_REFUSED_UNFINISHED:
        *code = "session_busy";
        *message = "the session is still finishing an earlier run";
        return NGX_HTTP_CONFLICT;

    case PYREPL_REFUSED_TX_PENDING:
        *code = "transaction_pending";
        *message = "the last run waits for a commit or a rollback";
        return NGX_HTTP_CONFLICT;

    default: /* PYREPL_REFUSED_BAD_REQUEST */
        *code = "bad_request";
        *message = ex->why;
        return NGX_HTTP_BAD_REQUEST;
    }
}


/*
 * Emit "init" and send the code.  Returns NGX_OK while the run goes on,
 * NGX_DONE once the sink has been told it is over (or failed), NGX_ERROR
 * when the sink should give up (nothing was sent to it).
 */
ngx_int_t
ngx_http_pyrepl_exec_start(ngx_http_pyrepl_exec_t *ex)
{
    ngx_int_t    rc;
    ngx_str_t    sock;
    pr_frame_t   frame;

    rc = ex->event(ex, "init", json_pack("{s:s%,s:s%}",
                                         "session_id", ex->id,
                                         (size_t) PYREPL_ID_LEN,
                                         "execution_id", ex->exec_id,
                                         (size_t) PYREPL_ID_LEN));
    if (rc == NGX_ERROR) {
        return NGX_DONE;
    }

    if (ex->crashed) {
        return ngx_http_pyrepl_exec_lost(ex);
    }

    if (ex->terminated) {
        if (ex->event(ex, "error",
                      json_pack("{s:s,s:s,s:[]}", "ename", "SessionTerminated",
                                "evalue", "the session has ended (its shell "
                                "exited); create a new one", "traceback"))
            == NGX_ERROR)
        {
            return NGX_DONE;
        }

        return ngx_http_pyrepl_exec_finish(ex, "error", ex->execution_count,
                                           0);
    }

    ex->peer.data = ex;
    ex->peer.log = ex->log;
    ex->peer.max_frame = ex->pmcf->max_frame;
    ex->peer.frame_handler = ngx_http_pyrepl_exec_frame;
    ex->peer.fail_handler = ngx_http_pyrepl_exec_failed;

    if (ngx_http_pyrepl_socket_path(ex->pmcf, ex->pool, ex->id, &sock)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_pyrepl_keepalive_connect(&ex->peer, ex->id, &sock,
                                           ex->pool);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_pyrepl_exec_lost(ex);
    }

    ngx_memzero(&frame, sizeof(pr_frame_t));
    frame.type = PR_T_RUN;
    pr_set_str(&frame, code, ex->code.data, ex->code.len);
    pr_set_int(&frame, timeout_ms, (int64_t) ex->timeout);
    pr_set_int(&frame, interactive, ex->interactive);

    if (ex->tag.len) {
        pr_set_str(&frame, tag, ex->tag.data, ex->tag.len);
    }

    if (ex->tx_policy != NULL) {
        pr_set_cstr(&frame, tx, ex->tx_policy);
    }

    if (ex->has_cwd) {
        pr_set_str(&frame, cwd, ex->cwd.data, ex->cwd.len);
    }

    if (ex->has_stdin) {
        pr_set_str(&frame, stdin, ex->stdin_text.data, ex->stdin_text.len);
    }

    if (ngx_http_pyrepl_env_frame(ex->pool, ex->env, &frame) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_pyrepl_peer_send(&ex->peer, ex->pool, &frame) != NGX_OK) {
        return NGX_ERROR;
    }

    ex->watchdog.handler = ngx_http_pyrepl_exec_watchdog;
    ex->watchdog.data = ex;
    ex->watchdog.log = ex->log;
    ngx_add_timer(&ex->watchdog, ex->timeout + ex->pmcf->timeout_grace);

    return NGX_OK;
}


/* The sink cannot take more for now: stop reading the session. */
void
ngx_http_pyrepl_exec_pause(ngx_http_pyrepl_exec_t *ex)
{
    if (!ex->peer.closed) {
        ngx_http_pyrepl_peer_pause(&ex->peer);
    }
}


void
ngx_http_pyrepl_exec_resume(ngx_http_pyrepl_exec_t *ex)
{
    ngx_http_pyrepl_peer_resume(&ex->peer);
}


/* Ask the session to raise KeyboardInterrupt in this run. */
ngx_int_t
ngx_http_pyrepl_exec_interrupt(ngx_http_pyrepl_exec_t *ex)
{
    pr_frame_t  frame;

    ngx_memzero(&frame, sizeof(pr_frame_t));
    frame.type = PR_T_INTERRUPT;

    return ngx_http_pyrepl_peer_send(&ex->peer, ex->pool, &frame);
}


/* Answer the run's input() ({"value"} and the optional request id). */
ngx_int_t
ngx_http_pyrepl_exec_input(ngx_http_pyrepl_exec_t *ex, json_t *value,
    json_t *request_id)
{
    pr_frame_t  frame;

    if (ex->peer.closed || ex->peer.pc.connection == NULL) {
        return NGX_DECLINED;
    }

    ngx_memzero(&frame, sizeof(pr_frame_t));
    frame.type = PR_T_INPUT;
    pr_set_str(&frame, text, json_string_value(value),
               json_string_length(value));

    if (request_id) {
        pr_set_str(&frame, id, json_string_value(request_id),
                   json_string_length(request_id));
    }

    if (ngx_http_pyrepl_peer_send(&ex->peer, ex->pool, &frame) != NGX_OK) {
        return NGX_ERROR;
    }

    ex->inputs++;

    return NGX_OK;
}


/*
 * One frame from the session process.  Returns NGX_OK to go on reading, or
 * NGX_DONE once the sink is done with the exec (it may be freed).
 */
static ngx_int_t
ngx_http_pyrepl_exec_frame(ngx_http_pyrepl_peer_t *peer, pr_frame_t *frame)
{
    u_char                   status[32];
    json_t                  *data;
    ngx_uint_t               ended;
    const char              *event, *code, *message;
    ngx_http_pyrepl_exec_t  *ex;

    ex = peer->data;

    switch (frame->type) {

    case PR_T_STDOUT:
    case PR_T_STDERR:
        if (ex->truncated) {
            return NGX_OK;
        }

        if (ex->output + frame->text.len > ex->pmcf->max_output) {
            return ngx_http_pyrepl_exec_truncate(ex, frame);
        }

        ex->output += frame->text.len;

        data = ngx_http_pyrepl_exec_output(frame, &event);
        break;

    case PR_T_RESULT:
    case PR_T_ERROR:
        data = ngx_http_pyrepl_exec_output(frame, &event);
        break;

    case PR_T_DISPLAY:
        if (ex->truncated) {
            return NGX_OK;
        }

        if (ex->output + frame->bundle.len > ex->pmcf->max_output) {
            return ngx_http_pyrepl_exec_truncate(ex, frame);
        }

        ex->output += frame->bundle.len;

        data = ngx_http_pyrepl_exec_output(frame, &event);
        break;

    case PR_T_INPUT_REQUEST:
        event = "input_request";
        data = json_pack("{s:o,s:o,s:b}",
                         "request_id", ngx_http_pyrepl_json_str(&frame->id),
                         "prompt", ngx_http_pyrepl_json_str(&frame->prompt),
                         "password", (int) frame->password);
        break;

    case PR_T_COMPLETE:
        /* frame strings live in the peer's buffer: copy before closing */

        if (frame->status.len == 0) {
            ngx_cpystrn(status, (u_char *) "ok", sizeof(status));

        } else {
            ngx_cpystrn(status, (u_char *) frame->status.data,
                        ngx_min(frame->status.len + 1, sizeof(status)));
        }

        if (pr_has(frame, exit_code)) {
            ex->exit_code = (ngx_int_t) frame->exit_code;
        }

        if (pr_has(frame, added)) {
            ex->changes = ngx_http_pyrepl_exec_changes(frame);
        }

        if (pr_has(frame, tx)) {
            ngx_http_pyrepl_exec_tx_done(ex, frame);
        }

        ended = pr_has(frame, ended) && frame->ended;

        /*
         * The connection serves the session's next run, unless the
         * process goes (the shell exited, a rollback handed the session
         * to its snapshot: a pid) or an input's answer is still to come.
         */
        if (ended || pr_has(frame, pid) || ex->inputs != 0) {
            ngx_http_pyrepl_peer_close(peer);

        } else {
            ngx_http_pyrepl_keepalive_release(peer, ex->id);
        }

        if (ended) {
            /* the shell exited: the session is over, and not crashed */
            ngx_http_pyrepl_table_end_run(ex->pmcf->shm_zone, ex->id,
                                          PYREPL_STATE_TERMINATED,
                                          (ngx_uint_t) frame->count);
            ex->ended = 1;
        }

        return ngx_http_pyrepl_exec_finish(ex, (char *) status,
                                           (ngx_uint_t) frame->count,
                                           (ngx_msec_t) frame->ms);

    case PR_T_OK:                   /* an input was taken */
        ex->inputs--;

        if (ex->input_done != NULL && ex->input_done(ex, 1) == NGX_ERROR) {
            return NGX_DONE;
        }

        return NGX_OK;

    case PR_T_FAIL:
        if (frame->errcode.len == sizeof("no_pending_input") - 1
            && ngx_strncmp(frame->errcode.data, "no_pending_input",
                           frame->errcode.len) == 0)
        {
            ngx_log_error(NGX_LOG_INFO, peer->log, 0,
                          "pyrepl: session %*s had no input() waiting",
                          (size_t) PYREPL_ID_LEN, ex->id);

            ex->inputs--;

            if (ex->input_done != NULL
                && ex->input_done(ex, 0) == NGX_ERROR)
            {
                return NGX_DONE;
            }

            return NGX_OK;
        }

        /* the session process refused the run: another one is unwinding */
        ngx_http_pyrepl_peer_close(peer);
        ex->refusal = PYREPL_REFUSED_UNFINISHED;
        (void) ngx_http_pyrepl_exec_refusal(ex, &code, &message);

        data = json_pack("{s:s,s:s,s:[]}", "ename", "SessionBusy",
                         "evalue", message, "traceback");

        if (ex->event(ex, "error", data) == NGX_ERROR) {
            return NGX_DONE;
        }

        return ngx_http_pyrepl_exec_finish(ex, "error", ex->execution_count,
                                           0);

    default:
        ngx_log_error(NGX_LOG_ERR, peer->log, 0,
                      "pyrepl: unexpected \"%s\" frame from session %*s",
                      pr_type_name(frame->type), (size_t) PYREPL_ID_LEN,
                      ex->id);
        return NGX_OK;
    }

    return ex->event(ex, event, data) == NGX_ERROR ? NGX_DONE : NGX_OK;
}


/*
 * The event a session's output frame (stdout, stderr, display, result,
 * error) is for its sink: *event its name, and its data (a new reference;
 * NULL: no memory, or not such a frame, *event then NULL).  Copies of a
 * run's frames to watchers read the same way
 * (ngx_http_pyrepl_jupyter_ws.c).
 */
json_t *
ngx_http_pyrepl_exec_output(pr_frame_t *frame, const char **event)
{
    json_t      *data, *tb;
    ngx_uint_t   i;

    switch (frame->type) {

    case PR_T_STDOUT:
    case PR_T_STDERR:
        *event = (frame->type == PR_T_STDOUT) ? "stdout" : "stderr";
        return json_pack("{s:o}", "text",
                         ngx_http_pyrepl_json_str(&frame->text));

    case PR_T_DISPLAY:
        *event = "display_data";
        return ngx_http_pyrepl_exec_bundle(frame);

    case PR_T_RESULT:
        *event = "result";
        data = ngx_http_pyrepl_exec_bundle(frame);

        if (data != NULL
            && json_object_set_new(data, "execution_count",
                                   json_integer((json_int_t) frame->count))
               != 0)
        {
            json_decref(data);
            data = NULL;
        }

        return data;

    case PR_T_ERROR:
        *event = "error";
        tb = json_array();
        for (i = 0; tb && i < frame->traceback.n; i++) {
            json_array_append_new(tb, ngx_http_pyrepl_json_str(
                                           &frame->traceback.items[i]));
        }

        return json_pack("{s:o,s:o,s:o}",
                         "ename", ngx_http_pyrepl_json_str(&frame->ename),
                         "evalue", ngx_http_pyrepl_json_str(&frame->evalue),
                         "traceback", tb);

    default:
        *event = NULL;
        return NULL;
    }
}


/*
 * {"data": {mime: value}, "metadata": {}} of a result or display frame:
 * its bundle, or for a result without one its text as text/plain (also
 * when a bundle is not the JSON object it should be).  NULL: no memory.
 */
static json_t *
ngx_http_pyrepl_exec_bundle(pr_frame_t *frame)
{
    json_t  *doc, *data, *metadata;

    doc = NULL;

    if (pr_has(frame, bundle)) {
        doc = json_loadb(frame->bundle.data, frame->bundle.len, 0, NULL);
        data = json_object_get(doc, "data");
        metadata = json_object_get(doc, "metadata");

        if (json_is_object(data) && json_is_object(metadata)
            && json_is_string(json_object_get(data, "text/plain"))
            && json_object_size(doc) == 2)
        {
            return doc;
        }

        json_decref(doc);
    }

    return json_pack("{s:{s:o},s:{}}", "data", "text/plain",
                     ngx_http_pyrepl_json_str(&frame->text), "metadata");
}


/*
 * The frame that crosses pyrepl_max_output: send what fits (on a character
 * boundary, of output; display data whole or not at all), the notice, and
 * interrupt the run.  NGX_OK or NGX_DONE.
 */
static ngx_int_t
ngx_http_pyrepl_exec_truncate(ngx_http_pyrepl_exec_t *ex, pr_frame_t *frame)
{
    u_char       notice[128];
    size_t       fits;
    json_t      *data;
    pr_str_t     part;
    const char  *event;

    ex->truncated = 1;
    event = (frame->type == PR_T_STDOUT) ? "stdout" : "stderr";

    fits = ex->pmcf->max_output - ex->output;
    part.data = frame->text.data;
    part.len = (frame->type == PR_T_DISPLAY)
               ? 0
               : pr_utf8_boundary((const uint8_t *) frame->text.data, fits);

    if (part.len) {
        data = json_pack("{s:o}", "text", ngx_http_pyrepl_json_str(&part));
        if (ex->event(ex, event, data) == NGX_ERROR) {
            return NGX_DONE;
        }
    }

    ngx_snprintf(notice, sizeof(notice) - 1,
                 "\n[pyrepl: output over pyrepl_max_output (%uz bytes); "
                 "the rest is dropped and the run interrupted]\n%Z",
                 ex->pmcf->max_output);

    if (ex->event(ex, "stderr", json_pack("{s:s}", "text", notice))
        == NGX_ERROR)
    {
        return NGX_DONE;
    }

    (void) ngx_http_pyrepl_exec_interrupt(ex);

    return NGX_OK;
}


static void
ngx_http_pyrepl_exec_failed(ngx_http_pyrepl_peer_t *peer, const char *reason)
{
    ngx_http_pyrepl_exec_t  *ex;

    ex = peer->data;

    ngx_log_error(NGX_LOG_WARN, peer->log, 0,
                  "pyrepl: session %*s lost during a run: %s",
                  (size_t) PYREPL_ID_LEN, ex->id, reason);

    (void) ngx_http_pyrepl_exec_lost(ex);
}


/*
 * The session process is gone (its connection closed, or there is none):
 * the run ends crashed once the supervisor has said why.  Returns NGX_OK
 * while it is asked, else what ngx_http_pyrepl_exec_crashed() does.
 */
static ngx_int_t
ngx_http_pyrepl_exec_lost(ngx_http_pyrepl_exec_t *ex)
{
    if (ex->watchdog.timer_set) {
        ngx_del_timer(&ex->watchdog);
    }

    ex->sup.log = ex->log;
    ex->sup.data = ex;
    ex->sup.frame_handler = ngx_http_pyrepl_exec_why;
    ex->sup.fail_handler = ngx_http_pyrepl_exec_why_failed;

    if (ngx_http_pyrepl_supervisor_ended(ex->pmcf, ex->pool, &ex->sup, ex->id)
        != NGX_OK)
    {
        return ngx_http_pyrepl_exec_crashed(ex, "the session process is "
                                                "gone");
    }

    return NGX_OK;
}


/* The supervisor's answer: why the session process went away. */
static ngx_int_t
ngx_http_pyrepl_exec_why(ngx_http_pyrepl_peer_t *peer, pr_frame_t *frame)
{
    ngx_uint_t               oom;
    ngx_http_pyrepl_exec_t  *ex;

    ex = peer->data;

    oom = (frame->type == PR_T_OK && pr_has(frame, reason)
           && frame->reason.len == sizeof("out_of_memory") - 1
           && ngx_strncmp(frame->reason.data, "out_of_memory",
                          frame->reason.len) == 0);

    ngx_http_pyrepl_peer_close(peer);

    if (oom) {
        ngx_log_error(NGX_LOG_WARN, ex->log, 0,
                      "pyrepl: session %*s ran out of memory",
                      (size_t) PYREPL_ID_LEN, ex->id);

        return ngx_http_pyrepl_exec_crashed(ex, "the session ran out of "
                                                "memory (its limit is "
                                                "pyrepl_memory_limit) and "
                                                "was ended");
    }

    return ngx_http_pyrepl_exec_crashed(ex, "the session process is gone");
}


static void
ngx_http_pyrepl_exec_why_failed(ngx_http_pyrepl_peer_t *peer,
    const char *reason)
{
    (void) ngx_http_pyrepl_exec_crashed(peer->data,
                                        "the session process is gone");
}


/*
 * End the run as crashed: an error event and a "crashed" completion, and
 * the session marked crashed for good.  Returns NGX_DONE.
 */
static ngx_int_t
ngx_http_pyrepl_exec_crashed(ngx_http_pyrepl_exec_t *ex, const char *why)
{
    json_t  *data;

    ngx_http_pyrepl_table_end_run(ex->pmcf->shm_zone, ex->id,
                                  PYREPL_STATE_CRASHED, 0);
    ngx_http_pyrepl_table_set_state(ex->pmcf->shm_zone, ex->id,
                                    PYREPL_STATE_CRASHED);
    ex->ended = 1;

    data = json_pack("{s:s,s:s,s:[]}", "ename", "SessionCrashed",
                     "evalue", why, "traceback");

    if (ex->event(ex, "error", data) == NGX_ERROR) {
        return NGX_DONE;
    }

    return ngx_http_pyrepl_exec_finish(ex, "crashed", ex->execution_count, 0);
}


/* Release the session, count the outcome, tell the sink.  NGX_DONE. */
static ngx_int_t
ngx_http_pyrepl_exec_finish(ngx_http_pyrepl_exec_t *ex, const char *status,
    ngx_uint_t count, ngx_msec_t ms)
{
    if (!ex->ended) {
        ngx_http_pyrepl_table_end_run(ex->pmcf->shm_zone, ex->id,
                                      PYREPL_STATE_IDLE, count);
        ex->ended = 1;
    }

    if (ex->watchdog.timer_set) {
        ngx_del_timer(&ex->watchdog);
    }

    ngx_http_pyrepl_exec_count(ex, status, ms);

    ex->done(ex, status, count, ms);

    return NGX_DONE;
}


/*
 * pyrepl_timeout_grace past the run's deadline, the session process has
 * not completed it: the run outlived its interrupt.  The process goes
 * and the run ends here and now, without waiting for the connection to
 * close: a sink that cannot take more has stopped reading it.
 */
static void
ngx_http_pyrepl_exec_watchdog(ngx_event_t *ev)
{
    ngx_http_pyrepl_exec_t  *ex;

    ex = ev->data;

    ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                  "pyrepl: session %*s ignored the interrupt at its "
                  "deadline for %M ms: killing it", (size_t) PYREPL_ID_LEN,
                  ex->id, ex->pmcf->timeout_grace);

    ngx_http_pyrepl_supervisor_kill_now(ex->pmcf, ex->id, ev->log);
    ngx_http_pyrepl_peer_close(&ex->peer);

    (void) ngx_http_pyrepl_exec_crashed(ex, "the run ignored the interrupt "
                                            "at its timeout; the session "
                                            "process was killed");
}


/* The run's outcome in the counters pyrepl_status reports. */
static void
ngx_http_pyrepl_exec_count(ngx_http_pyrepl_exec_t *ex, const char *status,
    ngx_msec_t ms)
{
    ngx_uint_t                   i;
    ngx_http_pyrepl_counters_t  *c;

    c = ngx_http_pyrepl_table_counters(ex->pmcf->shm_zone);

    ngx_atomic_fetch_add(&c->runs[ngx_http_pyrepl_run_status(status)], 1);
    ngx_atomic_fetch_add(&c->run_ms_sum, ms);

    for (i = 0;
         i < PYREPL_RUN_NBUCKETS - 1 && ms > ngx_http_pyrepl_exec_buckets[i];
         i++)
    {
        /* void */
    }

    ngx_atomic_fetch_add(&c->run_buckets[i], 1);
}


static void
ngx_http_pyrepl_exec_cleanup(void *data)
{
    ngx_http_pyrepl_exec_t  *ex = data;

    ngx_http_pyrepl_table_leave_turn(ex->pmcf->shm_zone, ex->id, &ex->turn);

    if (!ex->ended) {
        ngx_http_pyrepl_table_end_run(ex->pmcf->shm_zone, ex->id,
                                      PYREPL_STATE_IDLE, 0);
        ex->ended = 1;
    }

    if (ex->watchdog.timer_set) {
        ngx_del_timer(&ex->watchdog);
    }

    ngx_http_pyrepl_peer_close(&ex->peer);
    ngx_http_pyrepl_peer_close(&ex->sup);

    if (ex->changes != NULL) {
        json_decref(ex->changes);
        ex->changes = NULL;
    }
}


/*
 * What every sink puts in execution_complete (and the JSON answer): the
 * names the run changed (empty lists when unknown: bash, a crash), a
 * bash command's exit_code, and in a transaction "tx": what became of
 * the run's effects.  Returns NGX_OK, or NGX_ERROR out of memory.
 */
ngx_int_t
ngx_http_pyrepl_exec_summary(ngx_http_pyrepl_exec_t *ex, json_t *obj)
{
    json_t  *changes;

    changes = ex->changes ? json_incref(ex->changes)
                          : json_pack("{s:[],s:[],s:[]}", "added",
                                      "modified", "removed");

    if (changes == NULL || json_object_set_new(obj, "changes", changes) != 0)
    {
        return NGX_ERROR;
    }

    if (ex->exit_code >= 0
        && json_object_set_new(obj, "exit_code",
                               json_integer(ex->exit_code)) != 0)
    {
        return NGX_ERROR;
    }

    if (ex->tx[0] != '\0'
        && json_object_set_new(obj, "tx", json_string((char *) ex->tx)) != 0)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * What became of a transaction (complete frame): kept for the answer; a
 * pending one marks the session; a rollback's new process goes to the
 * table and to the supervisor.
 */
static void
ngx_http_pyrepl_exec_tx_done(ngx_http_pyrepl_exec_t *ex, pr_frame_t *frame)
{
    ngx_pid_t  pid;

    ngx_cpystrn(ex->tx, (u_char *) frame->tx.data,
                ngx_min(frame->tx.len + 1, sizeof(ex->tx)));

    pid = pr_has(frame, pid) ? (ngx_pid_t) frame->pid : 0;

    ngx_http_pyrepl_table_set_tx(ex->pmcf->shm_zone, ex->id,
                                 ngx_strcmp(ex->tx, "pending") == 0, pid);

    if (pid > 0) {
        ngx_http_pyrepl_supervisor_move(ex->pmcf, ex->id, pid, ex->log);
    }
}


/* {"added": [...], "modified": [...], "removed": [...]} of a complete frame */
static json_t *
ngx_http_pyrepl_exec_changes(pr_frame_t *frame)
{
    json_t  *o;

    o = json_object();
    if (o == NULL) {
        return NULL;
    }

    if (json_object_set_new(o, "added", ngx_http_pyrepl_json_strs(
                                            &frame->added)) != 0
        || json_object_set_new(o, "modified", ngx_http_pyrepl_json_strs(
                                                  &frame->modified)) != 0
        || json_object_set_new(o, "removed", ngx_http_pyrepl_json_strs(
                                                 &frame->removed)) != 0)
    {
        json_decref(o);
        return NULL;
    }

    return o;
}


static json_t *
ngx_http_pyrepl_json_strs(pr_strs_t *strs)
{
    json_t    *a;
    uint32_t   i;

    a = json_array();
    if (a == NULL) {
        return NULL;
    }

    for (i = 0; i < strs->n; i++) {
        if (json_array_append_new(a, ngx_http_pyrepl_json_str(
                                         &strs->items[i])) != 0)
        {
            json_decref(a);
            return NULL;
        }
    }

    return a;
}


/* Session processes send valid UTF-8; anything else becomes U+FFFD. */
static json_t *
ngx_http_pyrepl_json_str(pr_str_t *s)
{
    json_t   *j;
    uint8_t  *clean;
    size_t    n;

    j = json_stringn(s->data ? s->data : "", s->len);

    if (j != NULL || s->len == 0) {
        return j;
    }

    clean = malloc(s->len * 3);
    if (clean == NULL) {
        return NULL;
    }

    n = pr_utf8_sanitize((const uint8_t *) s->data, s->len, clean);
    j = json_stringn((char *) clean, n);
    free(clean);

    return j;
}
