/*
 * sb_seccomp.h: what sb_sandbox.c and sb_seccomp.c share: the filter
 * (sb_seccomp.c) and the argument check and error message of every step
 * (sb_sandbox.c).
 */

#ifndef SB_SECCOMP_H
#define SB_SECCOMP_H

#include <stddef.h>

#include "sb_sandbox.h"


/* sb_sandbox.c */

/* sb's fields, checked before anything changes; 0, or -1 with err set. */
int sb_sandbox_check(const sb_sandbox_t *sb, char *err, size_t errlen);

/*
 * Write "message: strerror(errnum)", or just the message when errnum is
 * 0, into err (nothing when errlen is 0).
 */
void sb_sandbox_error(char *err, size_t errlen, int errnum, const char *fmt,
    ...) __attribute__((format(printf, 4, 5)));


/* sb_seccomp.c */

/*
 * Compile the filter a session with sb's mode and network setting loads
 * (a session in a network namespace of its own has the network's), unless
 * this process has it already (sb_sandbox_prepare()'s work).  Returns 0,
 * or -1 with err set.
 */
int sb_seccomp_prepare(const sb_sandbox_t *sb, char *err, size_t errlen);

/*
 * Load the filter for sb's mode and network setting with TSYNC,
 * compiling it first unless this process (or the one it was forked from)
 * already has.  Nothing for seccomp "off".  Returns 0, or -1 with err set.
 */
int sb_seccomp_load(const sb_sandbox_t *sb, char *err, size_t errlen);

#endif /* SB_SECCOMP_H */
