/*
 * sup_jail.c: the supervisor's side of the jails (sb_jail.h).  At start:
 * whether this host can build them at all (namespaces, a /proc of a new
 * pid namespace) and the control groups' instance directories, named
 * after the socket directory, so that every nginx instance on a host has
 * its own; a jail that cannot be built is turned off with a warning,
 * never silently.  During a jailed session's life the tracked pid is its
 * init's: its exit status is the session process's as a shell passes one
 * on (128 + the signal), read back here; its group's out-of-memory count
 * says why it ended; its group goes once nothing of it runs.
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sup.h"
#include "wk_log.h"


static int  sup_jail_bins[2] = { -1, -1 };    /* python, bash */


int
sup_jail_setup(sup_conf_t *conf)
{
    char          err[256], warn[512], name[16];
    uint32_t      h;
    const char   *p;
    sb_jail_t    *j;

    j = &conf->confine.jail;

    if (!j->on) {
        return 0;
    }

    if (sb_jail_probe(err, sizeof(err)) != 0) {
        wk_log("warning: sessions are not jailed (%s): they see the host's "
               "files, processes and network as their uid may", err);
        j->on = 0;
        return 0;
    }

    /* FNV-1a of the socket directory: one set of groups per instance */
    h = 2166136261u;

    for (p = conf->socket_dir; *p != '\0'; p++) {
        h = (h ^ (unsigned char) *p) * 16777619u;
    }

    (void) snprintf(name, sizeof(name), "%08x", (unsigned) h);

    if (j->cgroup.ndirs == 0) {
        if (sb_cgroup_setup(&j->cgroup, name, warn, sizeof(warn), err,
                            sizeof(err)) != 0)
        {
            wk_log("control groups: %s", err);
            return -1;
        }

        if (warn[0] != '\0') {
            wk_log("warning: %s", warn);
        }
    }

    sup_jail_bins[0] = open(conf->python, O_PATH | O_CLOEXEC);
    sup_jail_bins[1] = (conf->bash != NULL)
                       ? open(conf->bash, O_PATH | O_CLOEXEC) : -1;

    if (sup_jail_bins[0] == -1
        || (conf->bash != NULL && sup_jail_bins[1] == -1))
    {
        wk_log("opening the session binaries failed: %s", strerror(errno));
        return -1;
    }

    return 0;
}


int
sup_jail_status(const sup_conf_t *conf, int status)
{
    int  code;

    if (!conf->confine.jail.on || !WIFEXITED(status)) {
        return status;
    }

    code = WEXITSTATUS(status);

    /* a wait status of "killed by signal code - 128" */
    if (code > 128 && code - 128 < NSIG) {
        return code - 128;
    }

    return status;
}


void
sup_jail_gone(const sup_conf_t *conf, sup_session_t *s)
{
    unsigned long  n;

    if (!conf->confine.jail.on) {
        return;
    }

    n = sb_cgroup_oom_kills(&conf->confine.jail.cgroup, s->pgid);

    if (n > 0) {
        s->oom = 1;
        wk_log("session %s ran out of memory (its limit is %llu bytes)",
               s->id, (unsigned long long) conf->confine.sb.memory);
    }
}


void
sup_jail_purged(const sup_conf_t *conf, pid_t pid)
{
    if (conf->confine.jail.on && pid > 0
        && sb_cgroup_remove(&conf->confine.jail.cgroup, pid) == -1)
    {
        wk_log("the control group of session pid %ld is left: %s",
               (long) pid, strerror(errno));
    }
}


int
sup_jail_bin_fd(int lang)
{
    return sup_jail_bins[lang == SUP_LANG_BASH ? 1 : 0];
}


static void
sup_jail_sweep_one(pid_t pid, void *data)
{
    size_t          i, n;
    sup_session_t  *s;

    n = sup_session_count();

    for (i = 0; i < n; i++) {
        s = sup_session_at(i);

        if (s->pgid == pid) {
            return;         /* adopted: its group stays with it */
        }
    }

    /* a group some process is still in stays (the sweep kills those) */
    (void) sb_cgroup_remove(&((const sup_conf_t *) data)->confine.jail.cgroup,
                            pid);
}


void
sup_jail_sweep(const sup_conf_t *conf)
{
    if (conf->confine.jail.on) {
        sb_cgroup_each(&conf->confine.jail.cgroup, sup_jail_sweep_one,
                       (void *) conf);
    }
}


void
sup_jail_teardown(const sup_conf_t *conf)
{
    if (!conf->confine.jail.on) {
        return;
    }

    sup_jail_sweep(conf);

    if (sb_cgroup_teardown(&conf->confine.jail.cgroup) == -1) {
        wk_log("a control group directory of this instance is left: %s",
               strerror(errno));
    }
}
