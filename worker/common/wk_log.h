/*
 * wk_log.h: the error-log logger of the worker binaries.  Their stderr is
 * nginx's error log (or, below the keeper, its relay), shared with every
 * nginx process, so each message is one line written with a single
 * write(2) and tagged with the binary's role and pid:
 * "[time ]pyrepl-<role>[<pid>]: <message>".  Lines go to fd 2
 * unless wk_log_set_fd() names another descriptor (a session process
 * keeps a copy of the error log there, because its fd 2 becomes the
 * user's stderr pipe).
 */

#ifndef WK_LOG_H
#define WK_LOG_H


/*
 * Set the role shown in every line ("supervisor", "python"); call once.
 * stamp: begin each line with the local time as nginx's own lines do
 * ("2026/12/06 18:47:22 "), for the single-threaded processes that write
 * the error log themselves (the keeper and the supervisor); sessions log
 * through the keeper's relay, which stamps their lines.
 */
void wk_log_init(const char *role, int stamp);

/*
 * Write every later line to fd instead of fd 2 (the default); for a
 * process whose fd 2 stops being the error log.  Call before starting
 * threads.
 */
void wk_log_set_fd(int fd);

/*
 * A session's name in log lines: the last part of its working directory,
 * which the supervisor names after the session id (no id is passed on a
 * command line, which every process can read).  Static storage.
 */
const char *wk_log_cwd_name(void);

/*
 * A socket of the calling process's own, connected where the datagram
 * socket fd (the keeper's log relay, shared with the parent) is, or -1
 * with errno set (ENOTSOCK: fd is no relay, nothing to replace).  A
 * forked session replaces every copy of the shared relay with it, so
 * that what its code does to its relay (connect(2) it elsewhere, shut it
 * down) touches no other process's lines.  Close-on-exec.
 */
int wk_log_relay_own(int fd);

/* Log one line; a trailing newline is added, long lines are truncated. */
void wk_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* WK_LOG_H */
