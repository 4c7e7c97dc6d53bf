"""
pyrepl-python as a process: malformed and oversized frames close only
their connection, frames it does not take are refused, user code sees no
connection of it, bad command lines and descriptors are refused, the
listening socket failing ends it, output written just before it ends
(os._exit, a fatal signal) is never lost, os._exit behaves as the
original, and what the main thread reports goes to its log.

Each test talks frames (helpers.Conn) to a pyrepl-python of its own,
without nginx or the supervisor: the session fixture of conftest.py.
"""

import resource
import signal
import socket
import subprocess

import pytest

from binaries import PYTHON, SESSION_ID, SessionProcess


# Protocol errors and the process ----------------------------------------

def test_a_malformed_frame_closes_only_that_connection(session):
    bad = session.connect()
    bad.send_raw(b"\x00\x00\x00\x03abc")
    f = bad.recv()
    assert f["t"] == "fail" and f["errcode"] == "bad_request"
    assert bad.recv() is None

    unknown = session.connect()
    unknown.send(t="no-such-type")
    assert unknown.recv()["errcode"] == "bad_request"
    assert unknown.recv() is None

    assert session.run("'still here'").result["text"] == "'still here'"


def test_an_oversized_frame_closes_the_connection():
    s = SessionProcess("--max-frame", "8192")
    try:
        c = s.connect()
        c.send(t="run", code="x" * 10000)
        f = c.recv()
        assert f["t"] == "fail" and f["errcode"] == "bad_request"
        assert c.recv() is None
        assert s.run("1").result["text"] == "1"
    finally:
        s.stop()


def test_frames_a_session_does_not_take_are_refused(session):
    c = session.connect()
    c.send(t="stdout", text="x")
    f = c.recv()
    assert f["t"] == "fail" and f["errcode"] == "bad_request"
    c.send(t="input", text="x")
    assert c.recv()["errcode"] == "no_pending_input"
    c.send(t="run")
    assert c.recv()["errcode"] == "bad_request"
    # the connection is still good
    c.send(t="run", code="5")
    assert c.until_complete().result["text"] == "5"


def test_user_code_sees_no_connection_and_no_output_pipe_read_end(session):
    r = session.run("import os\n"
                    "fds = {}\n"
                    "for n in os.listdir('/proc/self/fd'):\n"
                    "    try:\n"
                    "        fds[int(n)] = os.readlink('/proc/self/fd/' + n)\n"
                    "    except FileNotFoundError:\n"
                    "        pass  # the directory listing itself\n"
                    "fds")
    fds = eval(r.result["text"])
    assert fds[0] == "/dev/null"
    assert fds[1].startswith("pipe:") and fds[2].startswith("pipe:")
    # one socket: the session's own listening socket, kept for the
    # snapshot of a transaction (py_tx.c); no connection
    sockets = [k for k, v in fds.items() if v.startswith("socket:")]
    assert len(sockets) == 1, fds
    r = session.run(f"import socket\n"
                    f"s = socket.socket(fileno=__import__('os').dup("
                    f"{sockets[0]}))\n"
                    f"s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)")
    assert r.result["text"] == "1"
    # 0-2, the "run finished", "input answered" and "display taken"
    # eventfds, the drain and ack pipes' requesting ends, the log's copy
    # (for the main thread's diagnostics), that socket and the working
    # directory (checkpoints)
    assert len(fds) <= 11, fds
    rest = sorted(v.split(":")[0] for k, v in fds.items() if k > 2)
    assert rest == sorted(["anon_inode", "anon_inode", "anon_inode", "pipe",
                           "pipe",
                           "socket", session.log_path, session.dir]), fds


def test_the_process_exits_when_the_listening_socket_fails(session):
    session.listener.shutdown(socket.SHUT_RDWR)
    assert session.proc.wait(timeout=10) != 0
    assert "listening socket failed" in session.log()


@pytest.mark.parametrize("args", [
    [],
    ["--listen-fd", "0"],
    ["--listen-fd", "3", "--id", SESSION_ID],      # never on a command line
    ["--listen-fd", "3", "--max-frame", "10"],
    ["--listen-fd", "3", "extra"],
])
def test_bad_command_lines_are_refused(args):
    p = subprocess.run([PYTHON, *args], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=10)
    assert p.returncode != 0
    assert b"pyrepl-python[" in p.stderr


def test_a_descriptor_that_is_not_listening_is_refused(tmp_path):
    a, b = socket.socketpair()
    try:
        p = subprocess.run([PYTHON, "--listen-fd", str(a.fileno())],
                           pass_fds=(a.fileno(),),
                           stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=10)
    finally:
        a.close()
        b.close()
    assert p.returncode != 0
    assert b"not a listening socket" in p.stderr


# The end of the process ------------------------------------------------------

# Written just before the process ends: to both streams, the last line
# right before the end, so that it is still in the pipe when it comes.
LAST_WORDS = ("import sys\n"
              "sys.stderr.write('last err\\n')\n"
              "print('bye', flush=True)\n")


def no_core_dumps():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def ends_with_last_words(code, status, rounds=30):
    """Run code (which ends the process) on fresh session processes: every
    time, the last output arrives and then EOF, without complete, and the
    process exits with status (a Popen returncode)."""
    for i in range(rounds):
        s = SessionProcess(preexec_fn=no_core_dumps)
        try:
            r = s.run_to_eof(code)
            assert r.stdout == "bye\n", f"round {i}: {r.frames}"
            assert r.stderr == "last err\n", f"round {i}: {r.frames}"
            assert set(r.types) <= {"stdout", "stderr"}, r.frames
            assert s.proc.wait(timeout=10) == status, f"round {i}"
        finally:
            s.stop()


@pytest.mark.parametrize("code", [
    "import os\n" + LAST_WORDS + "os._exit(3)",
    "import posix\n" + LAST_WORDS + "posix._exit(status=3)",
    # still in C stdio's buffer (made fully buffered): os._exit() flushes
    # it, the real _exit would not
    "import ctypes, os\n"
    "libc = ctypes.CDLL(None)\n"
    "out = ctypes.c_void_p.in_dll(libc, 'stdout')\n"
    "libc.setvbuf(out, None, 0, 4096)\n"   # 0: _IOFBF
    + LAST_WORDS.replace("print('bye', flush=True)", "libc.printf(b'bye\\n')")
    + "os._exit(3)",
], ids=["os._exit", "posix._exit", "c-stdio"])
def test_output_before_os_exit_is_never_lost(code):
    ends_with_last_words(code, 3)


FATAL = [
    ("segv", "import ctypes\n" + LAST_WORDS + "ctypes.string_at(0)",
     signal.SIGSEGV),
    ("abort", "import os\n" + LAST_WORDS + "os.abort()", signal.SIGABRT),
    # a low stack limit makes the overflow come at once after the print
    ("stack-overflow", "import resource, sys\nsys.setrecursionlimit(10 ** 8)\n"
     "def f(n):\n    return list(map(f, [n + 1]))\n" + LAST_WORDS +
     "resource.setrlimit(resource.RLIMIT_STACK, (512 * 1024, "
     "resource.getrlimit(resource.RLIMIT_STACK)[1]))\nf(0)",
     signal.SIGSEGV),
    ("segv-in-a-thread", "import ctypes, threading\n"
     "def last():\n" + "".join("    " + x + "\n"
                               for x in LAST_WORDS.splitlines()) +
     "    ctypes.string_at(0)\n"
     "t = threading.Thread(target=last)\nt.start(); t.join()",
     signal.SIGSEGV),
    ("sigterm", "import os, signal, time\n" + LAST_WORDS +
     "os.kill(os.getpid(), signal.SIGTERM)\ntime.sleep(10)",
     signal.SIGTERM),
    ("alarm", "import signal, time\n" + LAST_WORDS +
     "signal.setitimer(signal.ITIMER_REAL, 1e-6)\ntime.sleep(10)",
     signal.SIGALRM),
]


@pytest.mark.parametrize("code, sig", [x[1:] for x in FATAL],
                         ids=[x[0] for x in FATAL])
def test_output_before_a_fatal_signal_is_never_lost(code, sig):
    ends_with_last_words(code, -sig)


def test_os_exit_looks_and_behaves_like_the_original(session):
    probe = ("import os, posix, inspect\n"
             "(os._exit is posix._exit, os._exit.__name__,"
             " os._exit.__qualname__, os._exit.__module__,"
             " os._exit.__self__ is posix, str(inspect.signature(os._exit)),"
             " os._exit.__doc__, repr(os._exit))")
    expected = {}
    exec(probe.replace("\n(", "\nresult = ("), expected)
    assert session.run(probe).result["text"] == repr(expected["result"])

    # bad arguments raise what the original raises; the session goes on
    r = session.run("os._exit('x')")
    assert r.error["ename"] == "TypeError"
    assert r.error["evalue"] == \
        "'str' object cannot be interpreted as an integer"
    r = session.run("os._exit(stat=1)")
    assert r.error["ename"] == "TypeError"

    # a forked child exits at once, with its status
    r = session.run("pid = os.fork()\n"
                    "if pid == 0:\n"
                    "    os._exit(7)\n"
                    "os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])")
    assert r.result["text"] == "7"
    assert r.complete["ms"] < 1000

    # the signal module still reports the default dispositions
    r = session.run("import signal\n"
                    "[signal.getsignal(s) is signal.SIG_DFL for s in "
                    "(signal.SIGSEGV, signal.SIGABRT, signal.SIGTERM)]")
    assert r.result["text"] == "[True, True, True]"
    assert session.proc.poll() is None


def test_diagnostics_of_the_main_thread_go_to_the_log(session):
    # closing the drain pipe makes os._exit() log on the main thread,
    # whose fd 2 is the user's stderr pipe
    r = session.run_to_eof("\n".join([
        "import os",
        "for n in os.listdir('/proc/self/fd'):",
        "    fd = int(n)",
        "    try:",
        "        link = os.readlink('/proc/self/fd/' + n)",
        "        flags = int(open('/proc/self/fdinfo/' + n).read()"
        ".split('flags:')[1].split()[0], 8)",
        "    except (FileNotFoundError, OSError):",
        "        continue",
        "    if fd > 2 and link.startswith('pipe:') and flags & 3 == 1:",
        "        os.close(fd)",
        "os._exit(5)",
    ]))
    assert session.proc.wait(timeout=10) == 5
    assert "drain pipes were closed or replaced" in session.log()
    assert "pyrepl-python[" not in r.stderr
