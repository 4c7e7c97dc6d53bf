/*
 * wk_opt.h: the command lines of the worker binaries.  Each binary has a
 * table of long options of its own; they share the walk through it
 * (wk_opt_parse: getopt_long(), the confinement options of sb_confine.h,
 * the refusal of anything unknown), the reading of numbers (wk_opt_num)
 * and the options that every session binary takes (wk_opt_session_t).
 * Nothing is ever an id or a secret: a command line is readable by every
 * process.
 */

#ifndef WK_OPT_H
#define WK_OPT_H

#include <getopt.h>
#include <stddef.h>

#include "sb_confine.h"


/* a handler's answer for an option that is not its own */
#define WK_OPT_UNKNOWN          1

/* getopt_long() values of the session options, above any one character */
#define WK_OPT_LISTEN_FD        0x4b00
#define WK_OPT_MAX_FRAME        0x4b01
#define WK_OPT_ALIVE_FD         0x4b02

/* the entries of a struct option array, for a session binary's table */
#define WK_OPT_SESSION_OPTIONS                                               \
    { "listen-fd", required_argument, NULL, WK_OPT_LISTEN_FD },             \
    { "max-frame", required_argument, NULL, WK_OPT_MAX_FRAME },             \
    { "alive-fd",  required_argument, NULL, WK_OPT_ALIVE_FD }

#define WK_OPT_SESSION_MIN_FRAME  4096
#define WK_OPT_FD_MAX             65535   /* a descriptor a spawner passes */


/* What a session binary (pyrepl-python, pyrepl-bash) is told. */
typedef struct {
    int          listen_fd;    /* --listen-fd, -1 if not given */
    int          alive_fd;     /* --alive-fd: nginx's alive pipe, or -1 */
    size_t       max_frame;    /* --max-frame, a cap on a frame either way */
} wk_opt_session_t;


/*
 * A binary's own options: take option opt (getopt_long()'s value) with
 * its argument arg (NULL for one without).  Returns 0, -1 for a bad value
 * (logged), or WK_OPT_UNKNOWN.
 */
typedef int (*wk_opt_handler_pt)(void *data, int opt, const char *arg);


/*
 * Walk argv with getopt_long() over options: the confinement options go
 * to confine, the session options to session (when not NULL), every other
 * one to handler with data (none when handler is NULL).  confine and
 * session start from their defaults (no descriptors,
 * PR_DEFAULT_MAX_FRAME).  An unknown or incomplete option, a bad value or
 * an argument that is no option ends the walk; so does sb_confine_check()
 * failing after it.  Returns 0, or -1 (logged).
 */
int wk_opt_parse(int argc, char **argv, const struct option *options,
    sb_confine_t *confine, wk_opt_session_t *session,
    wk_opt_handler_pt handler, void *data);

/*
 * Read arg, the value of option name, as a decimal number from min to
 * max: digits only, nothing around them.  Returns 0 with *v set, or -1
 * (logged: 'invalid name "arg": a number from min to max expected').
 */
int wk_opt_num(const char *name, const char *arg, unsigned long long min,
    unsigned long long max, unsigned long long *v);

#endif /* WK_OPT_H */
