/*
 * sb_cgroup.h: a control group per jailed session (sb_jail.h), for the
 * limits that rlimits cannot give: the memory of every process of the
 * session together (page cache, tmpfs, memfd, shared memory and socket
 * buffers included), its number of tasks, and an equal share of the CPU
 * whatever the number of its processes.
 *
 * Both layouts are served.  cgroup v2 (the unified hierarchy, Debian 12's
 * default): one directory per session with memory.max, memory.swap.max 0,
 * memory.oom.group 1, pids.max and cpu.weight.  cgroup v1 (the memory,
 * pids and cpu controllers mounted one by one, as on hybrid hosts): one
 * directory per session under each, with memory.limit_in_bytes (and
 * memory.memsw.limit_in_bytes where swap is accounted, and the same for
 * TCP buffers, memory.kmem.tcp.limit_in_bytes, which v1 charges apart),
 * pids.max and cpu.shares.  What is missing (a controller not mounted, or not
 * delegated) is reported once by the supervisor and left unenforced.
 *
 * Where: the supervisor, at start, finds its own group in each hierarchy
 * (/proc/self/cgroup, /proc/self/mountinfo) and makes an instance
 * directory in it, named after the instance (sb_cgroup_setup); for v2,
 * whose groups with processes cannot delegate controllers, beside its
 * own group instead, in the parent.  A session's init process, still
 * root in the supervisor's mount namespace, makes "s<pid>" in each
 * (its own pid, as the host sees it), writes the limits and moves itself
 * in before it forks the session (sb_cgroup_enter).  The supervisor
 * reads what happened (sb_cgroup_oom_kills) and removes the directories
 * once the session is gone (sb_cgroup_remove).
 */

#ifndef SB_CGROUP_H
#define SB_CGROUP_H

#include <stdint.h>
#include <sys/types.h>


#define SB_CGROUP_DIRS     3          /* v1: memory, pids, cpu */
#define SB_CGROUP_PATH     512

#define SB_CGROUP_WEIGHT   100        /* cpu.weight; v1: 1024 shares */


typedef struct {
    int       version;                /* 0: none, 1 or 2 */
    char      dir[SB_CGROUP_DIRS][SB_CGROUP_PATH];  /* instance dirs */
    unsigned  ndirs;
    unsigned  memory:1;               /* a memory controller among them */
} sb_cgroup_t;


/* What a session's group gets; 0: no limit of that kind. */
typedef struct {
    uint64_t  memory;                 /* bytes */
    uint64_t  pids;                   /* tasks */
    unsigned  weight;                 /* 1-10000, as cpu.weight */
} sb_cgroup_limits_t;


/*
 * Find the hierarchies and make the instance directories, "pyrepl-NAME".
 * Returns 0 with cg filled (version 0 when there are none at all), and
 * a note in warn (empty when every controller is there) on what is not
 * enforced; or -1 with err filled.
 */
int sb_cgroup_setup(sb_cgroup_t *cg, const char *name, char *warn,
    size_t warnlen, char *err, size_t errlen);

/*
 * Take the instance directories from the command line (--cgroup DIR,
 * repeated), as the supervisor passes them on.  0, or -1 (bad value).
 */
int sb_cgroup_add_dir(sb_cgroup_t *cg, const char *dir);

/*
 * In a session's init process, as root: make s<pid> in each instance
 * directory, write lim there and move the calling process in.  With
 * *oomfd not NULL and cgroup v1, also an eventfd that becomes readable
 * when the group runs out of memory (v2 kills the whole group itself:
 * memory.oom.group), or -1.  Returns 0, or -1 with err filled.
 */
int sb_cgroup_enter(const sb_cgroup_t *cg, pid_t pid,
    const sb_cgroup_limits_t *lim, int *oomfd, char *err, size_t errlen);

/* How many processes of session pid's group the kernel killed for
 * memory: 0 when none, or when that is not known. */
unsigned long sb_cgroup_oom_kills(const sb_cgroup_t *cg, pid_t pid);

/*
 * Remove session pid's directories, which no process may be in any more.
 * Returns 0 (or nothing to remove), -1 with errno set if one is left.
 */
int sb_cgroup_remove(const sb_cgroup_t *cg, pid_t pid);

/*
 * Remove the instance directories, once no session's is left in them
 * (supervisor shutdown).  0, or -1 with errno set if one is left.
 */
int sb_cgroup_teardown(const sb_cgroup_t *cg);

/*
 * The names of the instance directories' entries that are sessions'
 * groups ("s<pid>"), for a sweep: calls fn for each pid found in the
 * first directory.
 */
void sb_cgroup_each(const sb_cgroup_t *cg, void (*fn)(pid_t pid, void *data),
    void *data);

#endif /* SB_CGROUP_H */
