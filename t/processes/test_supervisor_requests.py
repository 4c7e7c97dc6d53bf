"""
pyrepl-supervisor's control protocol, spoken like an nginx worker
(helpers.Conn) to a supervisor with the fake session binary: create (what
a session process is given: arguments, descriptors, directory, socket)
and its conflicts and failures, kill and the leftovers it removes, bad
requests and bad frames (only that connection suffers), and how it takes
its connections (a byte at a time, pipelined, half closed, many at once).
"""

import os
import signal
import socket
import stat
import struct
import time

import msgpack
import pytest

from binaries import Supervisor, sid
from helpers import Conn as Client, frame, gone, running, wait_for


MAX_REQUEST = 64 * 1024
DEFAULT_MAX_FRAME = 16 * 1024 * 1024
# the confinement a session binary is told about when the supervisor got
# none (sb_sandbox_init's defaults), passed on as options (sb_confine.h)
CONFINE_DEFAULTS = ["--memory", str(1 << 30), "--cpu", "0", "--nproc", "1600",
                    "--nofile", "1024", "--fsize", "0", "--seccomp", "on",
                    "--network", "off"]


# create -------------------------------------------------------------------

def test_create_starts_a_session(sup):
    base_fds = sup.quiet_fds()
    id_ = sid(3)
    pid = sup.create(id_)
    rep = sup.report(id_)

    assert rep["pid"] == pid
    assert rep["argv"] == ["--listen-fd", "3",
                           "--max-frame", str(DEFAULT_MAX_FRAME),
                           "--alive-fd", "5", *CONFINE_DEFAULTS]
    assert rep["cwd"] == os.path.join(sup.work, id_)
    assert rep["fds"] == [0, 1, 2, 3, 5]       # 5: nginx's alive pipe
    assert rep["stdin"] == "/dev/null"
    assert rep["stderr"] == sup.logpath
    assert rep["pgid"] == pid
    assert rep["sigblk"] == 0 and rep["sigign"] == 0
    assert rep["listening"] == 1 and rep["blocking"] is True
    assert os.getpgid(rep["grandchild"]) == pid

    st = os.lstat(os.path.join(sup.work, id_))
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
    st = os.lstat(sup.session_sock(id_))
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600

    # the socket nginx will connect to is the one the session listens on
    c = Client(sup.session_sock(id_))
    assert c.sock.recv(100) == b"hello " + id_.encode()
    c.close()

    # nothing leaks into the supervisor from the create
    wait_for(lambda: sup.fds() == base_fds, what="supervisor fds back to "
             "%s (now %s)" % (base_fds, sup.fds()))
    assert "session %s started, pid %d" % (id_, pid) in sup.log()


def test_max_frame_is_passed_on(tmp):
    s = Supervisor(tmp, extra=["--max-frame", "100000"]).start()
    try:
        s.create(sid(4))
        assert s.report(sid(4))["argv"][2:4] == ["--max-frame", "100000"]
    finally:
        s.stop()


def test_duplicate_create_conflicts(sup):
    id_ = sid(5)
    pid = sup.create(id_)
    r = sup.request({"t": "create", "id": id_, "lang": "python"})
    assert r["t"] == "fail" and r["errcode"] == "conflict", r
    assert running(pid)
    # after a kill the id can be used again, once its files are gone
    assert sup.request({"t": "kill", "id": id_}) == {"t": "ok", "id": id_}
    wait_for(lambda: not os.path.exists(os.path.join(sup.work, id_)),
             what="the working directory to go")
    pid2 = sup.create(id_)
    assert pid2 != pid
    assert sup.report(id_)["pid"] == pid2


def test_create_failure_is_unavailable_and_cleans_up(sup):
    # WORKDIR replaced by a file: the session directory cannot be made
    id_ = sid(6)
    moved = sup.work + ".moved"
    os.rename(sup.work, moved)
    open(sup.work, "w").close()
    try:
        r = sup.request({"t": "create", "id": id_, "lang": "python"})
    finally:
        os.unlink(sup.work)
        os.rename(moved, sup.work)
    assert r["t"] == "fail" and r["errcode"] == "unavailable", r
    assert "working directory" in r["message"]
    assert not os.path.exists(sup.session_sock(id_))
    # and it serves the next one
    assert sup.create(id_) > 0


def test_leftover_workdir_conflicts(sup):
    id_ = sid(7)
    os.mkdir(os.path.join(sup.work, id_))
    r = sup.request({"t": "create", "id": id_, "lang": "python"})
    assert r["t"] == "fail" and r["errcode"] == "conflict", r
    assert not os.path.exists(sup.session_sock(id_))
    # it is not the supervisor's: only a kill removes it
    assert os.path.isdir(os.path.join(sup.work, id_))
    assert sup.request({"t": "kill", "id": id_})["t"] == "ok"
    wait_for(lambda: not os.path.exists(os.path.join(sup.work, id_)),
             what="the directory to go")


def test_leftover_socket_conflicts_and_is_not_removed(sup):
    id_ = sid(8)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sup.session_sock(id_))
    r = sup.request({"t": "create", "id": id_, "lang": "python"})
    stale.close()
    assert r["t"] == "fail" and r["errcode"] == "conflict", r
    assert os.path.exists(sup.session_sock(id_))
    assert not os.path.exists(os.path.join(sup.work, id_))


# kill ---------------------------------------------------------------------

def test_kill_removes_the_session(sup):
    id_ = sid(9)
    pid = sup.create(id_)
    rep = sup.report(id_)
    with open(os.path.join(sup.work, id_, "data.txt"), "w") as f:
        f.write("x")

    assert sup.request({"t": "kill", "id": id_}) == {"t": "ok", "id": id_}

    # the socket goes at once, the directory once nothing of it runs
    assert not os.path.exists(sup.session_sock(id_))
    wait_for(lambda: not os.path.exists(os.path.join(sup.work, id_)),
             what="the working directory to go")
    assert not running(pid) and not running(rep["grandchild"])
    wait_for(lambda: gone(pid), what="the session process to be reaped")
    with pytest.raises(FileNotFoundError):
        Client(sup.session_sock(id_))

    # idempotent
    assert sup.request({"t": "kill", "id": id_}) == {"t": "ok", "id": id_}


def test_kill_unknown_id_removes_leftovers(sup, tmp):
    id_ = sid(10)
    wd = os.path.join(sup.work, id_)
    os.makedirs(os.path.join(wd, "a", "b"))
    with open(os.path.join(wd, "a", "b", "f"), "w") as f:
        f.write("x")
    outside = os.path.join(tmp, "outside")
    os.mkdir(outside)
    with open(os.path.join(outside, "keep"), "w") as f:
        f.write("keep")
    os.symlink(outside, os.path.join(wd, "link"))
    os.symlink(os.path.join(outside, "keep"), os.path.join(wd, "a", "flink"))
    open(sup.session_sock(id_), "w").close()

    assert sup.request({"t": "kill", "id": id_}) == {"t": "ok", "id": id_}

    # removed by a child of the supervisor's, right after the answer
    wait_for(lambda: not os.path.lexists(wd), what="the leftovers to go")
    assert not os.path.lexists(sup.session_sock(id_))
    # symlinks were removed, never followed
    with open(os.path.join(outside, "keep")) as f:
        assert f.read() == "keep"


# bad requests -------------------------------------------------------------

@pytest.mark.parametrize("msg", [
    {"t": "create", "id": "ABC0000000000000000000000000000A",
     "lang": "python"},
    {"t": "create", "id": "abc", "lang": "python"},
    {"t": "create", "id": "../../../../../../../../../../tmp/",
     "lang": "python"},
    {"t": "create", "id": "0" * 33, "lang": "python"},
    {"t": "create", "lang": "python"},
    {"t": "create", "id": "0" * 32},
    {"t": "create", "id": "0" * 32, "lang": "bash"},
    {"t": "kill", "id": "zz" * 16},
    {"t": "kill"},
    {"t": "run", "code": "1"},
    {"t": "ok"},
    {"t": "list"},
    {"t": "list", "text": "../../../../etc"},
    {"t": "list", "text": "0" * 15},
    {"t": "list", "text": "0" * 16 + "/"},
    {"t": "remove"},
    {"t": "remove", "text": "0" * 16},
    {"t": "remove", "text": "0" * 16 + "/../../" + "0" * 26},
    {"t": "remove", "text": "0" * 16 + "/" + "0" * 31 + "\0"},
    {"t": "remove", "text": "0" * 16 + "/" + "A" * 32},
])
def test_bad_request_fails_and_keeps_the_connection(sup, msg):
    c = sup.client()
    r = c.request(msg)
    assert r["t"] == "fail" and r["errcode"] == "bad_request", r
    assert r["message"]
    # the same connection still serves
    assert c.request({"t": "kill", "id": sid(11)}) == \
        {"t": "ok", "id": sid(11)}
    assert os.listdir(sup.work) == []


@pytest.mark.parametrize("raw", [
    struct.pack(">I", 3) + b"\xc1\xc1\xc1",              # not msgpack
    struct.pack(">I", 1) + b"\x90",                      # not a map
    frame({"id": sid(12)}),                              # no "t"
    frame({"t": "teleport"}),                            # unknown type
    frame({"t": "kill", "id": 12}),                      # wrong field type
    struct.pack(">I", MAX_REQUEST + 1),                  # oversized
    struct.pack(">I", 0xffffffff) + b"x" * 100,          # huge
])
def test_bad_frame_closes_only_that_connection(sup, raw):
    bystander = sup.client()
    bad = sup.client()
    bad.sock.sendall(raw)
    assert bad.at_eof()
    assert bystander.request({"t": "kill", "id": sid(13)}) == \
        {"t": "ok", "id": sid(13)}
    assert running(sup.proc.pid)
    assert "closing control connection" in sup.log()


def test_largest_allowed_frame_is_accepted(sup):
    c = sup.client()
    msg = {"t": "kill", "id": sid(14), "code": ""}
    pad = MAX_REQUEST - len(msgpack.packb(msg)) - 2   # str16 header grows
    msg["code"] = "x" * pad
    assert len(msgpack.packb(msg)) == MAX_REQUEST
    assert c.request(msg) == {"t": "ok", "id": sid(14)}


# connection handling ------------------------------------------------------

def test_byte_at_a_time(sup):
    c = sup.client()
    data = frame({"t": "create", "id": sid(15), "lang": "python"})
    for i in range(len(data)):
        c.sock.send(data[i:i + 1])
        time.sleep(0.001)   # let the supervisor see each byte on its own
    r = c.recv()
    assert r["t"] == "ok" and r["id"] == sid(15)


def test_pipelined_requests_answer_in_order(sup):
    c = sup.client()
    ids = [sid(16 + i) for i in range(5)]
    data = b"".join(frame({"t": "create", "id": i, "lang": "python"})
                    for i in ids)
    data += b"".join(frame({"t": "kill", "id": i}) for i in ids)
    c.sock.sendall(data)
    replies = [c.recv() for _ in range(10)]
    assert [r["id"] for r in replies] == ids + ids
    assert all(r["t"] == "ok" for r in replies)
    pids = [r["pid"] for r in replies[:5]]
    for pid in pids:
        wait_for(lambda: gone(pid), what="killed session %d reaped" % pid)
    wait_for(lambda: os.listdir(sup.work) == [],
             what="their directories to go")


def test_half_closed_client_gets_its_reply(sup):
    c = sup.client()
    c.send({"t": "create", "id": sid(21), "lang": "python"})
    c.sock.shutdown(socket.SHUT_WR)
    r = c.recv()
    assert r["t"] == "ok" and r["id"] == sid(21)
    assert c.at_eof()


def test_many_clients_at_once(sup):
    base_fds = sup.quiet_fds()
    clients = [sup.client() for _ in range(20)]
    for i, c in enumerate(clients):
        c.send({"t": "create", "id": sid(100 + i), "lang": "python"})
    replies = [c.recv() for c in clients]
    assert [r["id"] for r in replies] == [sid(100 + i) for i in range(20)]
    pids = {r["pid"] for r in replies}
    assert len(pids) == 20 and all(running(p) for p in pids)
    for i, c in enumerate(clients):
        c.send({"t": "kill", "id": sid(100 + i)})
    assert all(c.recv()["t"] == "ok" for c in clients)
    for c in clients:
        c.close()
    for p in pids:
        wait_for(lambda: gone(p), what="session %d reaped" % p)
    wait_for(lambda: sup.fds() == base_fds, what="supervisor fds back to "
             "%s (now %s)" % (base_fds, sup.fds()))


def test_sighup_and_sigpipe_are_ignored(sup):
    os.kill(sup.proc.pid, signal.SIGHUP)
    os.kill(sup.proc.pid, signal.SIGPIPE)
    # a client that goes away before its reply must not kill it either
    c = Client(sup.sock)
    c.send({"t": "create", "id": sid(22), "lang": "python"})
    c.close()
    assert sup.create(sid(23)) > 0
    assert sup.proc.poll() is None
