"""
pyrepl-supervisor's sessions outliving it: a new supervisor adopts the
live sessions of the last one (and never a process that only reuses a
recorded pid), the keeper (--keeper) that restarts a killed supervisor at
once, and sessions that end when nginx goes, with or without a
supervisor.
"""

import os
import signal
import socket
import subprocess
import time

from binaries import (BASH, DEADLINE, PYTHON, Supervisor, Zygote, pool_pids,
                      run_code, sid, status, wait_pool)
from helpers import (gone, processes_under as procs_under,
                     proc_stat as stat_of, running, wait_for)


def kill_and_reap(proc):
    proc.kill()
    proc.wait(DEADLINE)


def test_a_new_supervisor_adopts_live_sessions(tmp):
    a = Zygote(tmp, pool=1).start()
    live, dead = sid(81), sid(82)
    p_live = a.create(live)
    p_dead = a.create(dead)
    assert run_code(a.session_sock(live), "x = 42") is None
    old_zygote = status(a)["zygote"]
    wait_pool(a, 1)
    old_pool = pool_pids(a)
    # (nginx, which holds a.wfd, lives on: sessions end when it goes)
    kill_and_reap(a.proc)
    # sessions outlive their supervisor; its zygote does not
    wait_for(lambda: not running(old_zygote), what="the old zygote to die")
    assert running(p_live) and running(p_dead)
    os.kill(p_dead, signal.SIGKILL)
    wait_for(lambda: not running(p_dead), what="the session to die")

    b = Zygote(tmp, pool=1).start()
    try:
        assert "session %s (pid %d) adopted" % (live, p_live) in b.log()
        assert "session %s (pid %d) died while no supervisor ran" \
            % (dead, p_dead) in b.log()
        assert status(b)["sessions"] == 1
        assert run_code(b.session_sock(live), "x") == "42"
        # the dead one reads crashed: no socket; its directory stays
        assert not os.path.exists(b.session_sock(dead))
        assert os.path.isdir(os.path.join(b.work, dead))
        r = b.request({"t": "create", "id": dead, "lang": "python"})
        assert r["t"] == "fail" and r["errcode"] == "conflict", r
        # the old pool was killed and its files removed
        for p in old_pool:
            wait_for(lambda: not running(p), what="old pool process %d" % p)
        assert len([n for n in os.listdir(b.work)
                    if n.startswith("pool-")]) == 1
        # an adopted session is killed on request, and its files go
        assert b.request({"t": "kill", "id": live}) == {"t": "ok",
                                                        "id": live}
        wait_for(lambda: not os.path.exists(os.path.join(b.work, live)),
                 what="the adopted session's directory to go")
        assert not running(p_live)
        assert b.request({"t": "kill", "id": dead})["t"] == "ok"
        wait_for(lambda: not os.path.exists(os.path.join(b.work, dead)),
                 what="the dead session's directory to go")
        wait_for(lambda: status(b)["sessions"] == 0, what="no sessions left")
    finally:
        assert b.stop() == 0, b.log()
        a.close_parent()
    assert os.listdir(b.run) == [] and os.listdir(b.work) == []


def test_an_adopted_session_that_dies_is_crashed(tmp):
    a = Zygote(tmp, pool=1).start()
    id_ = sid(83)
    pid = a.create(id_)
    kill_and_reap(a.proc)
    b = Zygote(tmp, pool=1).start()
    try:
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not os.path.exists(b.session_sock(id_)),
                 what="the adopted session's socket to go")
        wait_for(lambda: "session %s (pid %d) crashed" % (id_, pid)
                 in b.log(), what="the crash in the log")
        assert status(b)["sessions"] == 0
    finally:
        b.stop()
        if a.wfd is not None:
            os.close(a.wfd)
            a.wfd = None


def test_a_reused_pid_is_never_adopted(tmp):
    run = os.path.join(tmp, "run")
    work = os.path.join(tmp, "work")
    os.makedirs(run, 0o700)
    os.makedirs(work, 0o711)
    # processes that now hold pids the journal names, started later than
    # the ones it recorded (its start times are 1 and 2)
    strangers = [subprocess.Popen(["sleep", "1000"]) for _ in range(2)]
    id_ = sid(84)
    with open(os.path.join(run, "sessions"), "w") as f:
        f.write("S %s %d 1\nP pool-7 %d 2\nS %s 1234" % (
            id_, strangers[0].pid, strangers[1].pid, sid(85)))
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(os.path.join(run, id_ + ".sock"))
    stale.close()
    open(os.path.join(run, "pool-7.sock"), "w").close()
    os.mkdir(os.path.join(work, "pool-7"))
    os.mkdir(os.path.join(work, id_))
    s = Zygote(tmp, pool=1).start()
    try:
        for p in strangers:
            assert p.poll() is None, "a stranger was killed"
        assert status(s)["sessions"] == 0
        assert not os.path.exists(os.path.join(run, id_ + ".sock"))
        assert not os.path.exists(os.path.join(work, "pool-7"))
        assert not os.path.exists(os.path.join(run, "pool-7.sock"))
        assert "died while no supervisor ran" in s.log()
        # the cut-off last line was ignored, not adopted
        assert sid(85) not in s.log()
    finally:
        s.stop()
        for p in strangers:
            kill_and_reap(p)


def test_the_keeper_restarts_a_killed_supervisor_at_once(tmp):
    k = Zygote(tmp, pool=1, keeper=True).start()
    try:
        with open(os.path.join(k.run, "keeper.pid")) as f:
            assert int(f.read()) == k.proc.pid
        first = k.supervisor_pid()
        assert stat_of(first)[1] == k.proc.pid
        live = sid(86)
        p_live = k.create(live)
        run_code(k.session_sock(live), "kept = 'yes'")

        t0 = time.monotonic()
        os.kill(first, signal.SIGKILL)

        def created():
            try:
                r = k.request({"t": "create", "id": sid(87),
                               "lang": "python"})
            except OSError:
                return None
            return r if r.get("t") == "ok" else None

        r = wait_for(created, what="a create to work again")
        assert time.monotonic() - t0 < 1.0
        second = k.supervisor_pid()
        assert second != first and stat_of(second)[1] == k.proc.pid
        # the live session kept its state; it is the keeper's child now
        assert run_code(k.session_sock(live), "kept") == "'yes'"
        assert stat_of(p_live)[1] == k.proc.pid
        assert status(k)["sessions"] == 2
        # sessions the keeper inherited die with their group, are reaped
        assert run_code(k.session_sock(live), "import subprocess; "
                        "subprocess.Popen(['sleep', '1000']).pid") \
            is not None
        assert k.request({"t": "kill", "id": live})["t"] == "ok"
        wait_for(lambda: gone(p_live), what="the keeper to reap the session")
        assert r["pid"] != p_live
    finally:
        assert k.stop() == 0, k.log()
    # the keeper leaves nothing, its directories included
    assert not os.path.exists(k.run) and not os.path.exists(k.work)


def test_a_session_killed_while_no_supervisor_runs_is_crashed(tmp):
    k = Zygote(tmp, pool=1, keeper=True).start()
    try:
        ids = sid(88), sid(89)
        pids = [k.create(i) for i in ids]
        run_code(k.session_sock(ids[0]), "y = 5")
        first = k.supervisor_pid()
        os.kill(k.proc.pid, signal.SIGSTOP)     # nothing restarts it yet
        try:
            os.kill(first, signal.SIGKILL)
            wait_for(lambda: stat_of(first) is None
                     or stat_of(first)[0] == "Z", what="the supervisor to die")
            os.kill(pids[1], signal.SIGKILL)
            wait_for(lambda: not running(pids[1]), what="the session to die")
        finally:
            os.kill(k.proc.pid, signal.SIGCONT)
        wait_for(k.serving, what="a new supervisor")
        assert not os.path.exists(k.session_sock(ids[1]))
        assert os.path.exists(k.session_sock(ids[0]))
        assert run_code(k.session_sock(ids[0]), "y") == "5"
        assert status(k)["sessions"] == 1
        wait_for(lambda: gone(pids[1]), what="the keeper to reap it")
    finally:
        assert k.stop() == 0, k.log()


def test_nginx_going_away_ends_the_keeper_and_everything(tmp):
    k = Zygote(tmp, pool=2, keeper=True).start()
    id_ = sid(90)
    pid = k.create(id_)
    child = int(run_code(k.session_sock(id_), "import subprocess; "
                         "subprocess.Popen(['sleep', '1000']).pid"))
    # one more supervisor generation, so that the session is adopted
    os.kill(k.supervisor_pid(), signal.SIGKILL)
    wait_for(lambda: k.serving() and status(k)["sessions"] == 1,
             what="the session to be adopted")
    k.close_parent()
    assert k.wait_exit() == 0, k.log()
    for p in (pid, child):
        wait_for(lambda: not running(p), what="process %d to die" % p)
    assert procs_under(tmp) == []
    # the keeper leaves nothing, its directories included
    assert not os.path.exists(k.run) and not os.path.exists(k.work)
    assert k.log().rstrip().endswith("exiting")


def test_a_second_keeper_exits_at_once(tmp):
    k = Zygote(tmp, pool=1, keeper=True).start()
    try:
        other = Supervisor(tmp, python=PYTHON, parent=False,
                           extra=["--zygote", "--keeper"])
        other.logpath = os.path.join(tmp, "other.log")
        assert other.spawn().wait(DEADLINE) == 1
        assert "another keeper (pid %d)" % k.proc.pid in other.log()
        assert k.serving()
    finally:
        k.stop()


def test_sessions_end_when_nginx_goes_even_without_a_supervisor(tmp):
    a = Zygote(tmp, pool=1, extra=["--bash", BASH]).start()
    py, sh = sid(84), sid(85)
    p_py = a.create(py)
    r = a.request({"t": "create", "id": sh, "lang": "bash"})
    assert r["t"] == "ok", r
    p_sh = r["pid"]
    # a supervisor killed with its keeper leaves sessions that nothing
    # watches but nginx's alive pipe
    kill_and_reap(a.proc)
    assert running(p_py) and running(p_sh)
    a.close_parent()            # nginx goes
    for p in (p_py, p_sh):
        wait_for(lambda: not running(p), what=f"session {p} to end by itself")
