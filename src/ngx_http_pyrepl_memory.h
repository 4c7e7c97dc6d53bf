/*
 * ngx_http_pyrepl_memory.h: how much memory a session holds, for its
 * memory_bytes (ngx_http_pyrepl_memory.c).
 */

#ifndef NGX_HTTP_PYREPL_MEMORY_H
#define NGX_HTTP_PYREPL_MEMORY_H


#include "ngx_http_pyrepl_module.h"


/*
 * The bytes session process pid holds: in a jail, what its control group
 * is charged (every process of the session; page cache, tmpfs, memfd and
 * shared memory included); else the process's resident set.  0 when
 * unknown.  Reads two or three small files of /proc and /sys/fs/cgroup.
 */
uint64_t ngx_http_pyrepl_memory(ngx_pid_t pid);

#endif /* NGX_HTTP_PYREPL_MEMORY_H */
