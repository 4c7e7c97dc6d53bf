"""
pyrepl-supervisor with the real pyrepl-python as its zygote
(binaries.Zygote): the status request, the pool the zygote forks, creates
that hand out a pool process and refill it, the warm-up code run once in
the zygote, a killed zygote or pool process replaced, what a session
leaves swept with it, creates without a pool, and fork and exec when no
zygote can start.
"""

import os
import signal
import socket
import stat

from binaries import (PYTHON, Supervisor, Zygote, pool_pids, run_code, sid,
                      status, wait_pool)
from helpers import (PLAIN_GLOBALS, cmdline, gone, proc_stat as stat_of,
                     running, wait_for)


# zygote and pool ----------------------------------------------------------
#
# These use the real session binary: the zygote is "pyrepl-python --zygote".

def test_status_without_a_zygote(sup):
    assert status(sup) == {"t": "ok", "pool": 0, "zygote": 0, "sessions": 0}
    sup.create(sid(50))
    assert status(sup)["sessions"] == 1


def test_the_zygote_forks_the_pool_for_the_supervisor(zsup):
    sup_pid = zsup.supervisor_pid()
    z = status(zsup)["zygote"]
    assert stat_of(z)[1] == sup_pid
    assert cmdline(z)[1:3] == ["--zygote", "--control-fd"]
    pool = pool_pids(zsup)
    assert len(pool) == 2
    for p in pool:
        st = stat_of(p)
        # reparented to the supervisor (a child subreaper); own session
        assert st[1] == sup_pid and st[2] == p and st[3] == p
        assert cmdline(p)[:2] == ["pyrepl-python", "--session"]
        name = os.path.basename(os.readlink("/proc/%d/cwd" % p))
        assert os.path.exists(os.path.join(zsup.run, name + ".sock"))
        assert os.listdir(os.path.join(zsup.work, name)) == []
    with open(os.path.join(zsup.run, "sessions")) as f:
        assert sorted(int(l.split()[2]) for l in f
                      if l.startswith("P ")) == sorted(pool)


def test_create_hands_out_a_pool_process_and_refills(zsup):
    before = pool_pids(zsup)
    id_ = sid(51)
    pid = zsup.create(id_)
    assert pid in before
    sock = zsup.session_sock(id_)
    assert stat.S_ISSOCK(os.lstat(sock).st_mode)
    wd = os.path.join(zsup.work, id_)
    assert os.readlink("/proc/%d/cwd" % pid) == wd
    assert os.listdir(wd) == []
    assert run_code(sock, "import os; os.getpid(), os.getcwd()") == \
        repr((pid, wd))
    # the pool is back to two, none of them the one handed out
    wait_pool(zsup, 2)
    assert pid not in pool_pids(zsup)
    assert len([n for n in os.listdir(zsup.run)
                if n.startswith("pool-")]) == 2
    with open(os.path.join(zsup.run, "sessions")) as f:
        assert "S %s %d " % (id_, pid) in f.read()
    assert status(zsup)["sessions"] == 1


def test_a_conflict_leaves_the_pool_and_the_leftovers_alone(zsup):
    pool = sorted(pool_pids(zsup))
    names = sorted(n for n in os.listdir(zsup.run) if n.startswith("pool-"))
    a, b = sid(91), sid(92)
    os.mkdir(os.path.join(zsup.work, a))
    open(os.path.join(zsup.work, a, "mine"), "w").close()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(zsup.session_sock(b))
    stale.close()
    for id_ in (a, b):
        r = zsup.request({"t": "create", "id": id_, "lang": "python"})
        assert r["t"] == "fail" and r["errcode"] == "conflict", r
    assert os.listdir(os.path.join(zsup.work, a)) == ["mine"]
    assert not os.path.exists(zsup.session_sock(a))
    assert not os.path.exists(os.path.join(zsup.work, b))
    assert stat.S_ISSOCK(os.lstat(zsup.session_sock(b)).st_mode)
    # the pool lost nothing: same processes, same files
    assert sorted(pool_pids(zsup)) == pool
    assert sorted(n for n in os.listdir(zsup.run)
                  if n.startswith("pool-")) == names
    assert status(zsup)["pool"] == 2
    for id_ in (a, b):
        assert zsup.request({"t": "kill", "id": id_})["t"] == "ok"
    assert zsup.create(a) in pool


def test_pooled_sessions_start_empty_and_the_warmup_runs_once(tmp):
    s = Zygote(tmp, pool=1, warmup=(
        "import json\njson.warm = 1\nleft = 1\n"
        "import __main__\n__main__.also = 2\n")).start()
    try:
        a, b = sid(52), sid(53)
        s.create(a)
        s.create(b)
        sa, sb = s.session_sock(a), s.session_sock(b)
        # json is imported already, yet the namespace is empty
        assert run_code(sa, "'json' in __import__('sys').modules, "
                            "sorted(globals())") == \
            repr((True, PLAIN_GLOBALS))
        assert run_code(sa, "import json; json.warm") == "1"
        # nothing one session does reaches another
        run_code(sa, "x = 1\nopen('f', 'w').write('x')\nimport json\n"
                     "json.warm = 99")
        assert run_code(sb, "import os, json; sorted(globals()), "
                            "os.listdir('.'), json.warm") == \
            repr((PLAIN_GLOBALS + ["json", "os"], [], 1))
        assert s.log().count("zygote: warm-up code done") == 1
    finally:
        s.stop()


def test_a_failing_warmup_is_logged_and_sessions_still_start(tmp):
    s = Zygote(tmp, pool=1, warmup="import nonexistent_mod")
    s.start()
    try:
        assert "warm-up code failed" in s.log()
        assert "ModuleNotFoundError" in s.log()
        s.create(sid(54))
        assert run_code(s.session_sock(sid(54)), "1 + 1") == "2"
    finally:
        s.stop()


def test_a_killed_zygote_is_restarted_and_creates_wait_for_it(zsup):
    z = status(zsup)["zygote"]
    os.kill(z, signal.SIGKILL)
    # empty the pool too: the next create must wait for the new zygote
    pool = pool_pids(zsup)
    for p in pool:
        os.kill(p, signal.SIGKILL)
    # reaped: a killed process shows "Z" while its threads still exit
    for p in pool + [z]:
        wait_for(lambda: gone(p), what="process %d to be reaped" % p)
    pid = zsup.create(sid(55))
    wait_for(lambda: cmdline(pid)[:2] == ["pyrepl-python", "--session"],
             what="a session forked by the zygote (%s)" % cmdline(pid))
    assert run_code(zsup.session_sock(sid(55)), "6 * 7") == "42"
    wait_for(lambda: status(zsup)["zygote"] not in (0, z), what="a new zygote")
    wait_pool(zsup, 2)
    assert "zygote (pid %d) died: killed by signal 9" % z in zsup.log()


def test_what_a_session_leaves_is_swept_with_it(zsup):
    gone_id, live_id = sid(93), sid(94)
    zsup.create(gone_id)
    zsup.create(live_id)
    # outside the session's process group and session id: without a uid
    # per session, neither the kill of the group nor the purge finds it
    job = int(run_code(zsup.session_sock(gone_id), "import subprocess; "
                       "subprocess.Popen(['sleep', '1000'], "
                       "start_new_session=True).pid"))
    # a live session's orphan (its parent exits): reparented, kept
    orphan = int(run_code(zsup.session_sock(live_id), "import subprocess; "
                          "int(subprocess.run(['sh', '-c', 'sleep 1000 "
                          ">/dev/null 2>&1 & echo $!'], capture_output=True, "
                          "text=True).stdout)"))
    wait_for(lambda: stat_of(orphan)[1] == zsup.supervisor_pid(),
             what="the orphan to be reparented to the supervisor")
    assert os.getpgid(job) == stat_of(job)[3] == job
    assert zsup.request({"t": "kill", "id": gone_id})["t"] == "ok"
    wait_for(lambda: gone(job), what="the job the session left to be killed")
    # one line a sweep, with nothing of what the processes chose
    assert "killed 1 processes that ended sessions left" in zsup.log()
    assert "(sleep)" not in zsup.log()
    assert running(orphan)
    # once its session is gone too, the orphan goes
    assert zsup.request({"t": "kill", "id": live_id})["t"] == "ok"
    wait_for(lambda: gone(orphan), what="the orphan to be killed")


def test_a_killed_sessions_files_go_after_its_last_process(zsup):
    # without a uid per session its processes are found by process group
    # and session id: a job in a group of its own, writing into the
    # working directory, is killed before the directory goes
    id_ = sid(95)
    zsup.create(id_)
    wd = os.path.join(zsup.work, id_)
    job = int(run_code(zsup.session_sock(id_), "import subprocess; "
                       "subprocess.Popen(['sh', '-c', 'while :; do "
                       "mkdir -p d; echo x > d/f; done'], "
                       "process_group=0).pid"))
    wait_for(lambda: os.path.exists(os.path.join(wd, "d", "f")),
             what="the job to write")
    assert zsup.request({"t": "kill", "id": id_})["t"] == "ok"
    wait_for(lambda: not os.path.exists(wd),
             what="the working directory to go")
    assert not running(job)


def test_a_dead_pool_process_is_replaced(zsup):
    victim = pool_pids(zsup)[0]
    name = os.path.basename(os.readlink("/proc/%d/cwd" % victim))
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(os.path.join(zsup.run,
                                                     name + ".sock")),
             what="the dead pool process's socket to go")
    wait_for(lambda: victim not in pool_pids(zsup), what="it to be reaped")
    wait_pool(zsup, 2)
    assert not os.path.exists(os.path.join(zsup.work, name))
    assert "pool process %s (pid %d) died" % (name, victim) in zsup.log()


def test_without_a_pool_a_create_waits_for_a_fork(tmp):
    s = Zygote(tmp, pool=0).start()
    try:
        for i in range(3):
            pid = s.create(sid(56 + i))
            wait_for(lambda: cmdline(pid)[:2] == ["pyrepl-python",
                                                  "--session"],
                     what="a session forked by the zygote (%s)" % cmdline(pid))
            # reparented once the intermediate process has exited
            wait_for(lambda: stat_of(pid)[1] == s.supervisor_pid(),
                     what="the session to be the supervisor's child")
            assert status(s)["pool"] == 0
        assert run_code(s.session_sock(sid(58)), "'ok'") == "'ok'"
    finally:
        s.stop()


def test_many_creates_at_once_are_all_served(tmp):
    s = Zygote(tmp, pool=1).start()
    try:
        clients = [s.client() for _ in range(12)]
        for i, c in enumerate(clients):
            c.send({"t": "create", "id": sid(60 + i), "lang": "python"})
        replies = [c.recv() for c in clients]
        assert all(r["t"] == "ok" for r in replies), replies
        assert len({r["pid"] for r in replies}) == 12
        assert status(s)["sessions"] == 12
        wait_pool(s, 1)
    finally:
        s.stop()


def test_a_zygote_that_cannot_start_means_fork_and_exec(tmp):
    wrapper = os.path.join(tmp, "no-zygote")
    with open(wrapper, "w") as f:
        f.write('#!/bin/sh\ncase " $* " in *" --zygote "*) exit 3 ;; esac\n'
                'exec %s "$@"\n' % PYTHON)
    os.chmod(wrapper, 0o755)
    s = Supervisor(tmp, python=wrapper,
                   extra=["--zygote", "--pool-min-idle", "2"]).start()
    try:
        pid = s.create(sid(80))
        wait_for(lambda: "--listen-fd" in cmdline(pid),
                 what="a session by fork and exec (%s)" % cmdline(pid))
        assert run_code(s.session_sock(sid(80)), "2 ** 10") == "1024"
        assert "zygote (pid" in s.log()
        wait_for(lambda: "the zygote keeps failing" in s.log(),
                 what="the supervisor to give up on the zygote")
        assert status(s) == {"t": "ok", "pool": 0, "zygote": 0,
                             "sessions": 1}
    finally:
        s.stop()
