/*
 * wk_opt.c: the walk through a worker binary's command line and the
 * session options (wk_opt.h).
 */

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pyrepl_proto.h"
#include "wk_log.h"
#include "wk_opt.h"


static int wk_opt_session(wk_opt_session_t *session, int opt,
    const char *arg);


int
wk_opt_parse(int argc, char **argv, const struct option *options,
    sb_confine_t *confine, wk_opt_session_t *session,
    wk_opt_handler_pt handler, void *data)
{
    int  c, rc;

    opterr = 0;
    sb_confine_init(confine);

    if (session != NULL) {
        session->listen_fd = -1;
        session->alive_fd = -1;
        session->max_frame = PR_DEFAULT_MAX_FRAME;
    }

    while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {

        switch (sb_confine_option(confine, c, optarg)) {
        case 1:
            continue;
        case -1:
            return -1;
        }

        rc = (session != NULL) ? wk_opt_session(session, c, optarg)
                               : WK_OPT_UNKNOWN;

        if (rc == WK_OPT_UNKNOWN && handler != NULL) {
            /* getopt_long()'s '?' too: unknown, or without its value */
            rc = handler(data, c, optarg);
        }

        if (rc == WK_OPT_UNKNOWN) {
            wk_log("unknown or incomplete option \"%s\"", argv[optind - 1]);
            return -1;
        }

        if (rc != 0) {
            return -1;
        }
    }

    if (optind != argc) {
        wk_log("unexpected argument \"%s\"", argv[optind]);
        return -1;
    }

    return sb_confine_check(confine);
}


/*
 * One of WK_OPT_SESSION_OPTIONS.  nginx's alive pipe is made
 * close-on-exec at once: nothing the session runs may hold it.  Returns 0,
 * -1 (logged) or WK_OPT_UNKNOWN.
 */
static int
wk_opt_session(wk_opt_session_t *session, int opt, const char *arg)
{
    unsigned long long  v;

    switch (opt) {

    case WK_OPT_LISTEN_FD:
        if (wk_opt_num("--listen-fd", arg, 3, WK_OPT_FD_MAX, &v) != 0) {
            return -1;
        }

        session->listen_fd = (int) v;
        return 0;

    case WK_OPT_ALIVE_FD:
        if (wk_opt_num("--alive-fd", arg, 3, WK_OPT_FD_MAX, &v) != 0) {
            return -1;
        }

        if (fcntl((int) v, F_SETFD, FD_CLOEXEC) == -1) {
            wk_log("--alive-fd %d: %s", (int) v, strerror(errno));
            return -1;
        }

        session->alive_fd = (int) v;
        return 0;

    case WK_OPT_MAX_FRAME:
        if (wk_opt_num("--max-frame", arg, WK_OPT_SESSION_MIN_FRAME,
                       UINT32_MAX, &v) != 0)
        {
            return -1;
        }

        session->max_frame = (size_t) v;
        return 0;

    default:
        return WK_OPT_UNKNOWN;
    }
}


int
wk_opt_num(const char *name, const char *arg, unsigned long long min,
    unsigned long long max, unsigned long long *v)
{
    char  *end;

    errno = 0;
    *v = strtoull(arg, &end, 10);

    if (arg[0] < '0' || arg[0] > '9' || *end != '\0' || errno != 0
        || *v < min || *v > max)
    {
        wk_log("invalid %s \"%s\": a number from %llu to %llu expected",
               name, arg, min, max);
        return -1;
    }

    return 0;
}
