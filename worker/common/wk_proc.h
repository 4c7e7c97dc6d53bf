/*
 * wk_proc.h: what the worker binaries do to their own process before
 * they serve: signals back to their defaults, fds 0-2 open, the listening
 * socket they inherit checked, and, in a child about to exec or serve
 * alone, the descriptors it must not hold closed.  Each function logs its
 * own failure.
 */

#ifndef WK_PROC_H
#define WK_PROC_H

#include <stddef.h>


/*
 * Every signal back to SIG_DFL and none blocked: what the spawner ignored
 * or blocked survives exec, and an ignored SIGINT would keep Python (or a
 * shell's trap) from ever seeing one.  Returns 0 or -1.
 */
int wk_proc_signals(void);

/*
 * Fds 0, 1 and 2 open, on /dev/null where the spawner left one closed, so
 * that no descriptor opened later lands on them (and a library's writes
 * to stdout or stderr land nowhere harmful).  Returns 0 or -1.
 */
int wk_proc_std_fds(void);

/*
 * The inherited socket fd must be listening; it becomes non-blocking (the
 * accept loops run to EAGAIN) and close-on-exec.  Returns 0 or -1.
 */
int wk_proc_listen_fd(int fd);

/*
 * Close every descriptor from lo to hi (inclusive): close_range(2), or,
 * where that is missing or denied, one by one up to the descriptor limit.
 * For a freshly forked child: it never fails and logs nothing.
 */
void wk_proc_close_range(unsigned lo, unsigned hi);

/*
 * The area ps(1) and /proc/PID/cmdline show: argv's strings, from argv[0]
 * to the end of the last one that follows on contiguously.  *len 0 when
 * there is none.
 */
void wk_proc_title_area(int argc, char **argv, char **start, size_t *len);

/*
 * Show title (n bytes, NUL-separated words) as the command line in the
 * area from wk_proc_title_area(), cleared first, as far as it fits; a
 * forked process hides its parent's arguments this way.  0, or -1 if the
 * title does not fit (nothing changed).
 */
int wk_proc_set_title(char *start, size_t len, const char *title, size_t n);

#endif /* WK_PROC_H */
