"""
Tests of pyrepl-supervisor on its own, without nginx (binaries.Supervisor):
with the fake session binary of binaries.py, or with the real
pyrepl-python as its zygote (binaries.Zygote).  The tests speak the
control protocol like an nginx worker (helpers.Conn).
"""

import os
import signal
import socket
import stat
import struct
import subprocess
import time

import msgpack
import pytest

from binaries import (BIN_DIR, DEADLINE, PYTHON, Supervisor, Zygote, pool_pids,
                      run_code, sid, status, wait_pool)
from helpers import (PLAIN_GLOBALS, Conn as Client, cmdline, frame, gone,
                     processes_under as procs_under, proc_stat as stat_of,
                     running, wait_for)

MAX_REQUEST = 64 * 1024
DEFAULT_MAX_FRAME = 16 * 1024 * 1024
# the confinement a session binary is told about when the supervisor got
# none (wk_sandbox_init's defaults), passed on as options (wk_confine.h)
CONFINE_DEFAULTS = ["--memory", str(1 << 30), "--cpu", "0", "--nproc", "1600",
                    "--nofile", "1024", "--fsize", "0", "--seccomp", "on",
                    "--network", "off"]


# start-up -----------------------------------------------------------------

def test_start_layout(sup):
    run = os.lstat(sup.run)
    assert stat.S_IMODE(run.st_mode) == 0o700
    work = os.lstat(sup.work)
    assert stat.S_IMODE(work.st_mode) == 0o711
    st = os.lstat(sup.sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    with open(os.path.join(sup.run, "supervisor.pid")) as f:
        assert f.read() == "%d\n" % sup.proc.pid
    assert 'listening on "%s"' % sup.sock in sup.log()


def test_stale_socket_is_replaced(tmp):
    run = os.path.join(tmp, "run")
    os.mkdir(run, 0o700)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(os.path.join(run, "supervisor.sock"))
    stale.close()
    s = Supervisor(tmp).start()
    try:
        pid = s.create(sid(1))
        assert running(pid)
    finally:
        s.stop()


def test_second_supervisor_refuses_a_live_socket(sup):
    other = Supervisor(sup.root, parent=False)
    other.logpath = os.path.join(sup.root, "other.log")
    p = other.spawn()
    try:
        assert p.wait(DEADLINE) == 1
    finally:
        other.stop()
    assert "is in use by a live process" in other.log()
    # the first one is untouched and still serves
    assert sup.create(sid(2)) > 0


def test_confinement_options_reach_the_session_binary(tmp):
    s = Supervisor(tmp, extra=["--uid-base", "1700000000", "--memory",
                               "536870912", "--nproc", "40", "--seccomp",
                               "log", "--network", "on"]).start()
    try:
        id_ = sid(1)
        s.create(id_)
        assert s.report(id_)["argv"][6:] == [
            "--uid-base", "1700000000", "--memory", "536870912", "--cpu", "0",
            "--nproc", "40", "--nofile", "1024", "--fsize", "0",
            "--seccomp", "log", "--network", "on"]
    finally:
        assert s.stop() == 0, s.log()


@pytest.mark.parametrize("case", [
    "long_socket_dir", "python_not_executable", "socket_dir_is_file",
    "missing_python", "bad_number", "stray_argument", "bad_seccomp",
    "uid_base_and_uid"])
def test_startup_failures_exit_1(tmp, case):
    s = Supervisor(tmp, parent=False)
    args = s.args()
    expect = None
    if case == "long_socket_dir":
        longdir = os.path.join(tmp, "d" * 80)
        args[args.index("--socket-dir") + 1] = longdir
        expect = "is too long for Unix socket paths"
    elif case == "python_not_executable":
        path = os.path.join(tmp, "not-exec")
        open(path, "w").close()
        args[args.index("--python") + 1] = path
        expect = "is not executable"
    elif case == "socket_dir_is_file":
        open(s.run, "w").close()
        expect = "exists and is not a directory"
    elif case == "missing_python":
        i = args.index("--python")
        del args[i:i + 2]
        expect = "--socket-dir, --workdir and --python are required"
    elif case == "bad_number":
        args += ["--max-frame", "12x"]
        expect = 'invalid --max-frame "12x"'
    elif case == "stray_argument":
        args += ["extra"]
        expect = 'unexpected argument "extra"'
    elif case == "bad_seccomp":
        args += ["--seccomp", "maybe"]
        expect = '--seccomp "maybe": on, off or log'
    elif case == "uid_base_and_uid":
        args += ["--uid-base", "1700000000", "--uid", "1000", "--gid", "1000"]
        expect = "--uid-base excludes --uid and --gid"
    p = s.spawn(args)
    assert p.wait(DEADLINE) == 1
    assert expect in s.log()
    assert not os.path.exists(s.sock)


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
    assert sup.request({"t": "kill", "id": id_}) == {"t": "ok", "id": id_}
    assert not os.path.exists(os.path.join(sup.work, id_))
    assert sup.create(id_) > 0


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


# ownership ----------------------------------------------------------------

NOBODY = 65534


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_owner_can_connect(tmp):
    os.chmod(tmp, 0o711)   # let the owner reach the socket directory
    s = Supervisor(tmp, extra=["--owner-uid", str(NOBODY),
                               "--owner-gid", str(NOBODY)]).start()
    try:
        for path in (s.run, s.sock):
            st = os.lstat(path)
            assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY), path
        assert os.lstat(s.work).st_uid == 0

        # an unprivileged process (nginx's worker user) can create
        code = ("import socket, struct, msgpack, sys\n"
                "s = socket.socket(socket.AF_UNIX)\n"
                "s.connect(sys.argv[1])\n"
                "b = msgpack.packb({'t': 'create', 'id': sys.argv[2],"
                " 'lang': 'python'})\n"
                "s.sendall(struct.pack('>I', len(b)) + b)\n"
                "n = struct.unpack('>I', s.recv(4))[0]\n"
                "print(msgpack.unpackb(s.recv(n))['t'])\n")
        out = subprocess.run(["/usr/bin/python3", "-c", code, s.sock,
                              sid(40)], user=NOBODY, group=NOBODY,
                             extra_groups=[], capture_output=True,
                             timeout=DEADLINE, check=True)
        assert out.stdout == b"ok\n", out

        st = os.lstat(s.session_sock(sid(40)))
        assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)
        assert stat.S_IMODE(st.st_mode) == 0o600
        # the session process makes its directory its own (wk_confine.c)
        st = os.lstat(os.path.join(s.work, sid(40)))
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o700)

        # and nobody else can
        other = subprocess.run(["/usr/bin/python3", "-c", code, s.sock,
                                sid(41)], user=NOBODY + 1, group=NOBODY + 1,
                               extra_groups=[], capture_output=True,
                               timeout=DEADLINE)
        assert other.returncode != 0
        assert b"PermissionError" in other.stderr
    finally:
        s.stop()


# zygote, pool, keeper and adoption -----------------------------------------
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
        assert not os.path.exists(os.path.join(b.work, dead))
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
    bash = os.path.join(BIN_DIR, "pyrepl-bash")
    a = Zygote(tmp, pool=1, extra=["--bash", bash]).start()
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
