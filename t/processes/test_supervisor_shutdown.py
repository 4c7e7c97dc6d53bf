"""
pyrepl-supervisor when sessions end without being asked (crashed,
exited, an exec that failed: the socket goes, the working directory
stays until a kill) and when it ends itself: on its parent pipe's EOF (as
when nginx goes), on SIGTERM, SIGINT or SIGQUIT, taking every session and
its processes with it and leaving no file behind.
"""

import os
import signal
import subprocess

import pytest

from binaries import Supervisor, sid
from helpers import Conn as Client, gone, running, wait_for


# crashes ------------------------------------------------------------------

def test_crashed_session_loses_its_socket_keeps_its_workdir(sup):
    id_ = sid(24)
    pid = sup.create(id_)
    rep = sup.report(id_)
    os.kill(pid, signal.SIGKILL)

    wait_for(lambda: not os.path.exists(sup.session_sock(id_)),
             what="the crashed session's socket to be unlinked")
    wait_for(lambda: gone(pid), what="the crashed session to be reaped")
    wait_for(lambda: not running(rep["grandchild"]),
             what="the crashed session's child to be killed")
    assert os.path.isdir(os.path.join(sup.work, id_))
    wait_for(lambda: "session %s (pid %d) crashed: killed by signal 9"
             % (id_, pid) in sup.log(), what="the crash in the log")
    with pytest.raises(FileNotFoundError):
        Client(sup.session_sock(id_))

    # the id stays taken until nginx deletes the session
    r = sup.request({"t": "create", "id": id_, "lang": "python"})
    assert r["t"] == "fail" and r["errcode"] == "conflict", r
    # enough files that their removal is still going when the create comes
    left = os.path.join(sup.work, id_, "left")
    os.mkdir(left)
    for i in range(20000):
        open(os.path.join(left, str(i)), "w").close()
    assert sup.request({"t": "kill", "id": id_}) == {"t": "ok", "id": id_}
    # its files go in a child of the supervisor's; a create of the same
    # id (a revive) waits for them and gets a fresh directory
    assert sup.create(id_) > 0
    assert not os.path.exists(left)


def test_session_exit_status_is_logged(tmp):
    s = Supervisor(tmp, env={"FAKE_MODE": "exit3"}).start()
    try:
        id_ = sid(25)
        pid = s.create(id_)
        wait_for(lambda: "session %s (pid %d) exited with status 3"
                 % (id_, pid) in s.log(), what="the exit in the log")
        assert not os.path.exists(s.session_sock(id_))
        assert gone(pid)
    finally:
        s.stop()


def test_exec_failure_is_a_crashed_session(tmp):
    path = os.path.join(tmp, "broken")
    with open(path, "w") as f:
        f.write("#!/nonexistent/interpreter\n")
    os.chmod(path, 0o755)
    s = Supervisor(tmp, python=path).start()
    try:
        id_ = sid(26)
        pid = s.create(id_)
        wait_for(lambda: "exited with status 127" in s.log(),
                 what="the failed exec in the log")
        assert 'execv("%s") failed' % path in s.log()
        assert not os.path.exists(s.session_sock(id_))
        assert gone(pid)
        assert running(s.proc.pid)
    finally:
        s.stop()


# shutdown -----------------------------------------------------------------

def shutdown_check(s, how):
    pids, kids = [], []
    for i in range(3):
        pids.append(s.create(sid(30 + i)))
        kids.append(s.report(sid(30 + i))["grandchild"])
    # one already crashed, one killed: both must be cleaned up too
    os.kill(pids[0], signal.SIGKILL)
    wait_for(lambda: not os.path.exists(s.session_sock(sid(30))),
             what="the crash to be noticed")
    c = s.client()   # an idle client must not hold the supervisor up

    how(s)

    assert s.wait_exit() == 0, s.log()
    for p in pids + kids:
        wait_for(lambda: not running(p), what="process %d to die" % p)
    assert os.listdir(s.run) == []
    assert os.listdir(s.work) == []
    assert c.at_eof()
    assert s.log().rstrip().endswith("exiting")


def test_parent_pipe_eof_shuts_everything_down(tmp):
    s = Supervisor(tmp).start()
    try:
        shutdown_check(s, lambda s: s.close_parent())
        assert "nginx is gone" in s.log()
    finally:
        s.stop()


def test_parent_death_shuts_everything_down(tmp):
    # the write end held by a process that then dies, like nginx
    s = Supervisor(tmp).start()
    holder = subprocess.Popen(["sleep", "1000"], pass_fds=(s.wfd,))
    os.close(s.wfd)
    s.wfd = None
    try:
        shutdown_check(s, lambda s: holder.kill())
    finally:
        holder.kill()
        holder.wait()
        s.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT,
                                 signal.SIGQUIT])
def test_signal_shuts_everything_down(tmp, sig):
    s = Supervisor(tmp).start()
    try:
        shutdown_check(s, lambda s: os.kill(s.proc.pid, sig))
        assert "%s received, shutting down" % sig.name[3:] in s.log()
    finally:
        s.stop()


def test_without_parent_fd(tmp):
    s = Supervisor(tmp, parent=False).start()
    try:
        shutdown_check(s, lambda s: os.kill(s.proc.pid, signal.SIGTERM))
    finally:
        s.stop()
