/*
 * lg_mode.h: what pyrepl-load's measuring modes share.
 *
 * lg_main.c reads the command line into o, the options every mode reads
 * (set once, before the mode runs), builds the requests they describe and
 * runs one mode: load (lg_load.c: many connections in one epoll loop), or
 * stream or create (lg_single.c: blocking, one connection at a time).
 * lg_stats.c keeps the samples a mode measures and prints their
 * statistics.  The connections and protocols underneath are lg.h's.
 */

#ifndef LG_MODE_H
#define LG_MODE_H

#include "lg.h"


#define LG_MAX_DONE     2


typedef struct {
    const char   *mode;
    int           port;
    char          headers[4096];        /* extra lines, each CRLF-ended */
    size_t        headers_len;
    const char   *method;
    const char  **paths;
    size_t        npaths;
    size_t        paths_cap;
    const char   *body;
    const char   *accept;
    int           status;
    int           ws;
    const char   *msg;
    const char   *done[LG_MAX_DONE];
    int           ndone;
    const char   *ok;
    const char   *subprotocol;
    int           conns;
    double        warmup;
    double        duration;
    long          count;
    int           once;
    int           stamps;
    const char   *id_key;
    const char   *ready_path;
    const char   *ready_body;
    const char   *ready_ws_path;
    const char   *ready_msg;
    const char   *ready_done;
    const char   *delete_path;
    int           pace_ms;
    int           keep;
} lg_opts_t;

extern lg_opts_t  o;


/* print "pyrepl-load: <what>" on stderr and exit with status 1 */
void lg_die(const char *what);

/* append tmpl to out with every key replaced by val */
void lg_subst(lg_buf_t *out, const char *tmpl, const char *key,
    const char *val);

/*
 * Append a request for path to out: the request line, Host, Accept (when
 * accept is not NULL), the JSON body's headers (with a body, POST or PUT),
 * the --header lines, then the body.
 */
void lg_request(lg_buf_t *out, const char *method, const char *path,
    const char *body, const char *accept);

/* an lg_sink_pt keeping a body in the lg_buf_t arg, for --ok */
void lg_keep_body(void *arg, const char *p, size_t n);


/* measured times in ns */
typedef struct {
    uint64_t  *v;
    size_t     n;
    size_t     cap;
} lg_samples_t;

/* append one sample; dies when out of memory */
void lg_push(lg_samples_t *s, uint64_t v);

/*
 * Print "name": {"n", "min", "p50", "p90", "p99", "p999", "max", "mean"}
 * (microseconds, no newline) on stdout; sorts the samples.
 */
void lg_print_stats(const char *name, lg_samples_t *s);


/* the modes: each prints one JSON object; 0 ok, 2 errors, 1 failed */
int lg_mode_load(void);
int lg_mode_stream(void);
int lg_mode_create(void);

#endif /* LG_MODE_H */
