/*
 * wk_log.h: the stderr logger of the worker binaries.  Their stderr is
 * nginx's error log, shared with every nginx process, so each message is
 * one line written with a single write(2) and tagged with the binary's
 * role and pid: "pyrepl-<role>[<pid>]: <message>".
 */

#ifndef WK_LOG_H
#define WK_LOG_H


/* Set the role shown in every line ("supervisor", "python"); call once. */
void wk_log_init(const char *role);

/* Log one line; a trailing newline is added, long lines are truncated. */
void wk_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* WK_LOG_H */
