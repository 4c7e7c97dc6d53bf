"""
binaries.py: the worker binaries as the tests in processes/ start them
themselves, without nginx, from $PYREPL_BIN_DIR (default
$PYREPL_BUILD/bin, else <repo>/build/bin).

- SessionProcess (pyrepl-python) and BashProcess (pyrepl-bash): one session
  process on a listening Unix socket, started as the supervisor would, that
  the tests talk frames to (helpers.Conn);
- Supervisor (pyrepl-supervisor) with a fake session binary written per
  test (FAKE_WRAPPER, FAKE_SESSION), and Zygote, a supervisor with the real
  pyrepl-python as its zygote, a pool and maybe a keeper; the tests speak
  the control protocol to it like an nginx worker.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

from helpers import (BIN_DIR, SANITIZER, Conn, Run, bad_lines, children,
                     kill_all, pool_processes, proc_stat, read_pid, request,
                     running, wait_for)

PYTHON = os.path.join(BIN_DIR, "pyrepl-python")
BASH = os.path.join(BIN_DIR, "pyrepl-bash")
SUPERVISOR = os.path.join(BIN_DIR, "pyrepl-supervisor")
DEADLINE = 10.0
SESSION_ID = "0123456789abcdef0123456789abcdef"


# session processes -------------------------------------------------------

class SessionBinary:
    """One session binary on a listening Unix socket in a temp directory,
    started as the supervisor would: the socket as an inherited fd, cwd
    the session's working directory (work), stdin /dev/null, stderr a log
    file.  stop() kills and reaps it, then fails on what is left of it or
    on a line of its log that BAD_LOG matches."""

    BINARY = None
    BAD_LOG = SANITIZER

    def __init__(self, extra_args, preexec_fn, dir_prefix, work):
        assert os.access(self.BINARY, os.X_OK), f"{self.BINARY} is not built"
        self.dir = tempfile.mkdtemp(prefix=dir_prefix)
        self.path = os.path.join(self.dir, "s.sock")
        self.log_path = os.path.join(self.dir, "session.log")
        self.work = os.path.join(self.dir, work) if work else self.dir
        os.makedirs(self.work, exist_ok=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(64)
        fd = self.listener.fileno()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [self.BINARY, "--listen-fd", str(fd), *extra_args],
                pass_fds=(fd,), cwd=self.work, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=log, preexec_fn=preexec_fn)
        self.conns = []

    def connect(self):
        c = Conn(self.path)
        self.conns.append(c)
        return c

    def run(self, code, timeout=10.0, **extra):
        c = self.connect()
        c.send(t="run", code=code, **extra)
        r = c.until_complete(timeout)
        c.close()
        return r

    def run_to_eof(self, code, timeout=10.0):
        """Frames of a run that ends the process: up to the connection's
        EOF."""
        c = self.connect()
        c.send(t="run", code=code)
        frames = []
        deadline = time.monotonic() + timeout
        while True:
            f = c.recv(max(deadline - time.monotonic(), 0.001))
            if f is None:
                return Run(frames)
            frames.append(f)

    def run_when_idle(self, code, timeout=10.0):
        """Run code as soon as the session stops answering session_busy."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.run(code)
            if r.types != ["fail"] or r.frames[0]["errcode"] != "session_busy":
                return r
            assert time.monotonic() < deadline, "the session stayed busy"
            time.sleep(0.01)

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def left_behind(self):
        """What of the session is still running once its process is gone."""
        return []

    def stop(self):
        for c in self.conns:
            c.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.listener.close()
        left = self.left_behind()
        bad = bad_lines(self.log(), self.BAD_LOG)
        shutil.rmtree(self.dir, ignore_errors=True)
        assert not left, f"processes left behind: {left}"
        assert not bad, "session log:\n" + "\n".join(bad)


class SessionProcess(SessionBinary):
    """One pyrepl-python, working in its temp directory."""

    BINARY = PYTHON
    BAD_LOG = re.compile(SANITIZER.pattern + "|Fatal Python error")

    def __init__(self, *extra_args, preexec_fn=None):
        super().__init__(extra_args, preexec_fn, "pyrepl-", None)


def in_session(sid):
    """Live processes whose session id is sid."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st is not None and st.state != "Z" and st.session == sid:
                found.append(int(name))
    return found


class BashProcess(SessionBinary):
    """One pyrepl-bash, in a short temp directory (socket paths are short)
    with its working directory below; shell and sentinel are the pids of
    its bash and of its sentinel, which empties the shell's session when
    the process is gone."""

    BINARY = BASH

    def __init__(self, *extra_args, preexec_fn=None):
        super().__init__(extra_args, preexec_fn, "pb-", "work")
        self.shell, self.sentinel = wait_for(self._helpers,
                                             what="the shell and sentinel")

    def _helpers(self):
        kids = {}
        for k in children(self.proc.pid):
            st = proc_stat(k)
            if st:
                kids[st.comm] = k
        if "bash" in kids and "pyrepl-sentinel" in kids:
            return kids["bash"], kids["pyrepl-sentinel"]
        return None

    def left_behind(self):
        # the sentinel empties the shell's session, then exits itself
        try:
            wait_for(lambda: not in_session(self.shell)
                     and not running(self.sentinel),
                     what="the shell's processes and the sentinel to go")
            return []
        except AssertionError:
            left = in_session(self.shell) + [self.sentinel]
            kill_all(left)
            return left


# the supervisor ------------------------------------------------------------

# The fake session binary: records what it was given (argv, cwd,
# descriptors, process group, signal state) in report.json in its working
# directory, starts a grandchild (sleep) in its process group, and answers
# every connection on its listening socket (fd 3) with "hello <id>" (the
# name of its working directory: no id is on a command line).
#
# The shell records the signal state the supervisor handed over (Python
# changes it at start-up) with builtins only, then runs the Python part
# with the same descriptors.
FAKE_WRAPPER = r'''#!/bin/sh
while read -r k v; do
    case "$k" in SigBlk:|SigIgn:) echo "$k $v" ;; esac
done < /proc/self/status > sigstate
exec /usr/bin/python3 "$0.py" "$@"
'''

FAKE_SESSION = r'''
import json, os, socket, subprocess, sys

fds = []
for fd in range(1024):
    try:
        os.fstat(fd)
    except OSError:
        continue
    fds.append(fd)

mode = os.environ.get("FAKE_MODE", "")
if mode.startswith("exit"):
    sys.exit(int(mode[4:]))

status = {}
with open("sigstate") as f:
    for line in f:
        k, _, v = line.partition(":")
        status[k] = v.strip()

blocking = os.get_blocking(3)
lsock = socket.socket(fileno=3)
child = subprocess.Popen(["sleep", "1000"], stdin=subprocess.DEVNULL)
sid = os.path.basename(os.getcwd())

report = {
    "argv": sys.argv[1:],
    "cwd": os.getcwd(),
    "fds": fds,
    "pid": os.getpid(),
    "pgid": os.getpgid(0),
    "sigblk": int(status["SigBlk"], 16),
    "sigign": int(status["SigIgn"], 16),
    "stdin": os.readlink("/proc/self/fd/0"),
    "stderr": os.readlink("/proc/self/fd/2"),
    "listening": lsock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN),
    "blocking": blocking,
    "grandchild": child.pid,
}
with open("report.json.tmp", "w") as f:
    json.dump(report, f)
os.rename("report.json.tmp", "report.json")

while True:
    c, _ = lsock.accept()
    c.sendall(b"hello " + sid.encode())
    c.close()
'''


def write_fake_session(root):
    """The fake session binary in root; its path."""
    path = os.path.join(root, "fake-session")
    with open(path, "w") as f:
        f.write(FAKE_WRAPPER)
    os.chmod(path, 0o755)
    with open(path + ".py", "w") as f:
        f.write(FAKE_SESSION)
    return path


def sid(n):
    return "%032x" % (0xabc0000000000000000000000000000 + n)


class Supervisor:
    """One pyrepl-supervisor with its socket directory root/run and its
    working directories in root/work, by default with the fake session
    binary and a parent pipe as nginx holds it (wfd)."""

    def __init__(self, root, python=None, extra=(), env=None, parent=True,
                 warmup=None):
        self.root = root
        self.run = os.path.join(root, "run")
        self.work = os.path.join(root, "work")
        self.sock = os.path.join(self.run, "supervisor.sock")
        self.logpath = os.path.join(root, "supervisor.log")
        self.python = python or os.path.join(root, "fake-session")
        self.extra = list(extra)
        self.env = env
        self.parent = parent
        self.warmup = warmup
        self.proc = None
        self.wfd = None
        self.clients = []

    def args(self):
        return [SUPERVISOR, "--socket-dir", self.run, "--workdir", self.work,
                "--python", self.python] + self.extra

    def spawn(self, args=None):
        """Start the binary; returns the Popen (does not wait for it)."""
        assert os.access(SUPERVISOR, os.X_OK), \
            "build pyrepl-supervisor into %s first" % BIN_DIR
        args = args or self.args()
        pass_fds = ()
        if self.parent:
            rfd, self.wfd = os.pipe()
            os.set_inheritable(self.wfd, False)
            args = args + ["--parent-fd", str(rfd)]
            pass_fds = (rfd,)
        warmup = None
        if self.warmup is not None:
            # as nginx passes it: a memfd, never the command line
            warmup = os.memfd_create("warmup")
            os.write(warmup, self.warmup.encode())
            args = args + ["--warmup-fd", str(warmup)]
            pass_fds += (warmup,)
        env = dict(os.environ)
        env.update(self.env or {})
        log = open(self.logpath, "ab")
        # a descriptor nginx leaked into the supervisor: sessions must not
        # inherit it
        leak = os.open("/dev/null", os.O_RDONLY)
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log,
                                     pass_fds=pass_fds + (leak,), env=env)
        os.close(leak)
        if warmup is not None:
            os.close(warmup)
        log.close()
        if self.parent:
            os.close(rfd)
        return self.proc

    def start(self):
        self.spawn()
        wait_for(self.serving, what="the supervisor to listen")
        return self

    def supervisor_pid(self):
        return read_pid(os.path.join(self.run, "supervisor.pid"))

    def listening(self):
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.sock)
            s.close()
            return True
        except OSError:
            return False

    def serving(self):
        if self.proc.poll() is not None:
            raise AssertionError("supervisor exited with %s:\n%s"
                                 % (self.proc.returncode, self.log()))
        return self.supervisor_pid() == self.proc.pid and self.listening()

    def client(self):
        c = Conn(self.sock, DEADLINE)
        self.clients.append(c)
        return c

    def request(self, msg):
        return request(self.sock, msg, DEADLINE)

    def create(self, id_):
        r = self.request({"t": "create", "id": id_, "lang": "python"})
        assert r == {"t": "ok", "id": id_, "pid": r.get("pid")}, r
        assert isinstance(r["pid"], int) and r["pid"] > 0
        return r["pid"]

    def report(self, id_):
        path = os.path.join(self.work, id_, "report.json")
        wait_for(lambda: os.path.exists(path), what="the session's report")
        with open(path) as f:
            return json.load(f)

    def session_sock(self, id_):
        return os.path.join(self.run, id_ + ".sock")

    def log(self):
        with open(self.logpath, errors="replace") as f:
            return f.read()

    def fds(self):
        return sorted(os.listdir("/proc/%d/fd" % self.proc.pid), key=int)

    def quiet_fds(self):
        """fds() once no client connection is open in the supervisor (a
        readiness probe's may still be, until it reads the probe's EOF)."""
        def quiet():
            with open("/proc/net/unix") as f:
                connected = {l.split()[6] for l in f.readlines()[1:]
                             if l.split()[5] == "03"}
            fds = self.fds()
            for fd in fds:
                try:
                    target = os.readlink(f"/proc/{self.proc.pid}/fd/{fd}")
                except OSError:
                    return None
                if target.startswith("socket:[") and \
                        target[8:-1] in connected:
                    return None
            return fds

        return wait_for(quiet, what="no client connection in the supervisor")

    def close_parent(self):
        os.close(self.wfd)
        self.wfd = None

    def wait_exit(self):
        try:
            return self.proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            raise AssertionError("supervisor did not exit:\n" + self.log())

    def stop(self):
        """Shut down as nginx would; returns the exit status."""
        for c in self.clients:
            c.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.wfd is not None:
            os.close(self.wfd)
            self.wfd = None
        return self.proc.returncode if self.proc else None


def status(s):
    r = s.request({"t": "status"})
    assert r["t"] == "ok" and set(r) == {"t", "pool", "zygote", "sessions"}, r
    return r


def pool_pids(s):
    """The supervisor's children that are pool processes."""
    return pool_processes(children(s.supervisor_pid()), s.work)


def wait_pool(s, n):
    wait_for(lambda: status(s)["pool"] == n and len(pool_pids(s)) == n,
             what="%d pool processes (status %s)" % (n, status(s)))


def run_code(path, code):
    """Run code in the session listening on path; its result (repr) or
    "<ename>: <evalue>"."""
    c = Conn(path, DEADLINE)
    try:
        c.send({"t": "run", "code": code})
        result = None
        while True:
            f = c.recv()
            if f["t"] == "result":
                result = f["text"]
            elif f["t"] == "error":
                result = "%s: %s" % (f["ename"], f["evalue"])
            elif f["t"] == "complete":
                return result
    finally:
        c.close()


class Zygote(Supervisor):
    """A supervisor with a zygote and a pool (and maybe its keeper)."""

    def __init__(self, root, pool=2, keeper=False, extra=(), warmup=None):
        extra = ["--zygote", "--pool-min-idle", str(pool)] + list(extra)
        if keeper:
            extra.append("--keeper")
        super().__init__(root, python=PYTHON, extra=extra, warmup=warmup)
        self.keeper = keeper
        self.pool = pool

    def serving(self):
        if self.proc.poll() is not None:
            raise AssertionError("exited with %s:\n%s"
                                 % (self.proc.returncode, self.log()))
        pid = self.supervisor_pid()
        if pid is None or not running(pid):
            return False
        if self.keeper != (pid != self.proc.pid):
            return False
        try:
            return self.listening() and status(self)["zygote"] > 0
        except OSError:
            return False

    def start(self):
        super().start()
        wait_pool(self, self.pool)
        return self
