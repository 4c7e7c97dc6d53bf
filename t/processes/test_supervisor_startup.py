"""
pyrepl-supervisor starting, on its own (binaries.Supervisor with the fake
session binary): the socket directory, working directory and socket it
makes and their modes, a stale socket replaced and a live one refused,
the confinement options it passes on to sessions, the command lines it
refuses (exit 1), and an owner other than root (nginx's worker user) that
can connect while nobody else can.
"""

import os
import socket
import stat
import subprocess

import pytest

from binaries import DEADLINE, Supervisor, sid
from helpers import running


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
        # the session process makes its directory its own (sb_confine.c)
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
