"""
test_session_process.py: pyrepl-python on its own, without nginx or the
supervisor.  Each test starts one session process on a fresh listening
Unix socket (binaries.SessionProcess, the session fixture of
conftest.py), talks the wire protocol to it (helpers.Conn) and asserts
what a client would see.  Teardown kills and reaps the process and fails
on sanitizer output in its log.
"""

import os
import re
import resource
import signal
import socket
import subprocess
import time

import pytest

from binaries import PYTHON, SESSION_ID, SessionProcess
from helpers import frame, wait_for


# REPL semantics ---------------------------------------------------------

def test_final_expression_is_the_result_and_count_increments(session):
    r = session.run("x = 21")
    assert r.types == ["complete"]
    assert r.complete["status"] == "ok"
    assert r.complete["count"] == 1

    r = session.run("x * 2")
    assert r.types == ["result", "complete"]
    assert r.result["text"] == "42"
    assert r.result["count"] == 2
    assert r.complete == {"t": "complete", "status": "ok", "count": 2,
                          "ms": r.complete["ms"], "added": [],
                          "modified": [], "removed": []}
    assert 0 <= r.complete["ms"] < 5000


def test_none_and_statements_give_no_result(session):
    assert session.run("None").types == ["complete"]
    assert session.run("y = [1, 2]\ny.append(3)").types == ["complete"]
    r = session.run("y")
    assert r.result["text"] == "[1, 2, 3]"


def test_the_namespace_is_main_with_builtins_and_no_runtime(session):
    r = session.run("__name__")
    assert r.result["text"] == "'__main__'"

    r = session.run("'__builtins__' in globals(), len(abs.__name__)")
    assert r.result["text"] == "(True, 3)"

    r = session.run("sorted(k for k in globals() if not k.startswith('__'))")
    assert r.result["text"] == "[]"

    r = session.run("import sys; sys.argv")
    assert r.result["text"] == "['']"


def test_working_directory_modules_import_and_dist_packages_are_there(
        session):
    with open(os.path.join(session.dir, "mymod.py"), "w") as f:
        f.write("VALUE = 'from cwd'\n")
    r = session.run("import mymod; mymod.VALUE")
    assert r.result["text"] == "'from cwd'"

    r = session.run("import msgpack, sys; "
                    "msgpack.__file__.startswith('/usr/lib/python3/'), "
                    "sys.executable")
    assert r.result["text"].startswith("(True, '/usr/bin/python3")


# Output -------------------------------------------------------------------

def test_print_streams_while_the_code_runs(session):
    c = session.connect()
    c.send(t="run",
           code='print("a"); import time; time.sleep(1); print("b")')
    arrivals = []
    while True:
        f = c.recv()
        arrivals.append((time.monotonic(), f))
        if f["t"] == "complete":
            break
    texts = [(t, f["text"]) for t, f in arrivals if f["t"] == "stdout"]
    assert "".join(x for _, x in texts) == "a\nb\n"
    # print() writes "a" and "\n" apart: one frame or two, both before b
    assert texts[0][1].startswith("a")
    t_a = texts[0][0]
    t_b = [t for t, x in texts if "b" in x][0]
    assert t_b - t_a >= 0.8, "a was not sent before the sleep"
    assert arrivals[-1][1]["status"] == "ok"


@pytest.mark.parametrize("code, expected", [
    ('import os; os.write(1, b"raw\\n"); None', "raw\n"),
    ('import subprocess; subprocess.run(["echo", "child"]); None',
     "child\n"),
    ('import ctypes; ctypes.CDLL(None).printf(b"c-level\\n"); None',
     "c-level\n"),
    ('import sys; sys.stdout.write("no newline"); None', "no newline"),
])
def test_fd_level_and_child_output_is_stdout(session, code, expected):
    r = session.run(code)
    assert r.stdout == expected
    assert r.types[-1] == "complete" and r.complete["status"] == "ok"


def test_output_of_several_kinds_keeps_its_order(session):
    r = session.run("\n".join([
        "import os, sys, subprocess, ctypes",
        "print('1 print')",
        "os.write(1, b'2 fd\\n')",
        "subprocess.run(['echo', '3 child'])",
        "ctypes.CDLL(None).printf(b'4 c\\n')",
        "sys.stdout.write('5 write\\n')",
        "None",
    ]))
    assert r.stdout == "1 print\n2 fd\n3 child\n4 c\n5 write\n"


def test_stderr_is_its_own_stream(session):
    r = session.run('import sys, os; sys.stderr.write("e\\n"); '
                    'os.write(2, b"fd2\\n"); print("o"); None')
    assert r.stderr == "e\nfd2\n"
    assert r.stdout == "o\n"


def test_utf8_characters_are_never_split_and_bad_bytes_are_replaced(
        session):
    # one byte per write, with pauses so that they are read separately
    code = "\n".join([
        "import os, time",
        "data = 'é€😀'.encode() + b'\\xff!\\n'",
        "for i in range(len(data)):",
        "    os.write(1, data[i:i + 1])",
        "    time.sleep(0.01)",
    ])
    r = session.run(code)
    frames = [f["text"] for f in r.frames if f["t"] == "stdout"]
    assert "".join(frames) == "é€😀\ufffd!\n"
    assert len(frames) > 1, "the writes were not read separately"
    assert sum(x.count("\ufffd") for x in frames) == 1


def test_an_unfinished_character_at_the_end_of_a_run_is_replaced(session):
    r = session.run("import os; os.write(1, b'ok \\xe2\\x82'); None")
    assert r.stdout.startswith("ok ")
    assert set(r.stdout[3:]) == {"\ufffd"}
    # and it does not leak into the next run
    assert session.run("print('next')").stdout == "next\n"


def test_large_output_arrives_whole_in_bounded_frames(session):
    r = session.run("import sys; sys.stdout.write('0123456789' * 50000); "
                    "None")
    chunks = [f["text"] for f in r.frames if f["t"] == "stdout"]
    assert "".join(chunks) == "0123456789" * 50000
    assert max(len(x) for x in chunks) <= 64 * 1024


def test_output_between_runs_is_dropped(session):
    r = session.run("\n".join([
        "import subprocess",
        "bg = subprocess.Popen(['sh', '-c', 'while [ ! -e go ]; do "
        "sleep 0.01; done; echo late; touch done'])",
    ]))
    assert r.complete["status"] == "ok"
    open(os.path.join(session.dir, "go"), "w").close()
    wait_for(lambda: os.path.exists(os.path.join(session.dir, "done")),
             what="the background child to write")
    r = session.run("bg.wait(); print('next')")
    assert r.stdout == "next\n"


def test_a_reader_that_stops_reading_blocks_the_code_not_memory(session):
    pid = session.proc.pid

    def rss_kb():
        with open(f"/proc/{pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    assert session.run("import os, sys").complete["status"] == "ok"
    base = rss_kb()

    c = session.connect()
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.send(t="run", code="\n".join([
        "import os, sys",
        "progress = os.open('progress', os.O_RDWR | os.O_CREAT)",
        "for i in range(400):",
        "    sys.stdout.write(str(i % 10) * 100000)",
        "    os.pwrite(progress, b'%08d' % (i + 1), 0)",
        "'done'",
    ]))
    path = os.path.join(session.dir, "progress")

    def progress():
        try:
            with open(path, "rb") as f:
                return int(f.read(8))
        except (OSError, ValueError):
            return None

    def blocked():
        with open(f"/proc/{pid}/wchan") as f:
            return "pipe_write" in f.read()

    # settled: all written (no back-pressure) or blocked on a full pipe
    # with no progress for a while
    last = [None, time.monotonic()]

    def settled():
        n = progress()
        if n == 400:
            return n
        if n is None or n != last[0] or not blocked():
            last[:] = [n, time.monotonic()]
            return None
        return n if time.monotonic() - last[1] > 0.3 else None

    n = wait_for(settled, what="the code to finish or block")
    assert n < 60, f"{n} x 100 kB went out although nobody read them"
    assert rss_kb() - base < 16 * 1024, "output piled up in the process"

    r = c.until_complete(timeout=60)
    out = r.stdout
    assert len(out) == 400 * 100000
    assert out == "".join(str(i % 10) * 100000 for i in range(400))
    assert r.result["text"] == "'done'"


# Errors -----------------------------------------------------------------

def test_an_exception_gives_error_with_the_cells_traceback(session):
    session.run("pass")
    r = session.run("1/0")
    assert r.types == ["error", "complete"]
    e = r.error
    assert e["ename"] == "ZeroDivisionError"
    assert e["evalue"] == "division by zero"
    tb = e["traceback"]
    assert tb[0] == "Traceback (most recent call last):\n"
    assert tb[1].startswith('  File "<cell 2>", line 1, in <module>\n    1/0')
    assert tb[-1] == "ZeroDivisionError: division by zero\n"
    assert not any("pyrepl_runtime" in x or "run_cell" in x for x in tb)
    assert r.complete["status"] == "error"
    assert r.complete["count"] == 2


def test_tracebacks_show_lines_of_earlier_cells(session):
    session.run("def f():\n    raise ValueError('boom')")
    r = session.run("f()")
    text = "".join(r.error["traceback"])
    assert 'File "<cell 1>", line 2, in f\n    raise ValueError(\'boom\')' \
        in text
    assert 'File "<cell 2>", line 1, in <module>\n    f()' in text
    r = session.run("import inspect; print(inspect.getsource(f))")
    assert r.stdout == "def f():\n    raise ValueError('boom')\n\n"


def test_a_syntax_error_shows_the_line_and_caret(session):
    r = session.run("x = 1\n1 +")
    e = r.error
    assert e["ename"] == "SyntaxError"
    assert e["traceback"] == ['  File "<cell 1>", line 2\n', "    1 +\n",
                              "       ^\n", "SyntaxError: invalid syntax\n"]
    assert r.complete["status"] == "error"
    # nothing of the cell ran
    assert session.run("'x' in globals()").result["text"] == "False"


def test_an_error_in_repr_is_an_error(session):
    r = session.run("class R:\n    def __repr__(self):\n        1/0\nR()")
    assert r.error["ename"] == "ZeroDivisionError"
    assert "<cell 1>" in "".join(r.error["traceback"])
    assert "result" not in r.types


def test_system_exit_does_not_end_the_session(session):
    r = session.run("raise SystemExit(3)")
    assert r.error["ename"] == "SystemExit"
    assert r.error["evalue"] == "3"
    assert r.complete["status"] == "error"
    r = session.run("exit()")
    assert r.error["ename"] == "SystemExit"
    assert session.run("'alive'").result["text"] == "'alive'"
    assert session.proc.poll() is None


def test_big_results_and_tracebacks_fit_the_frame_limit():
    s = SessionProcess("--max-frame", "8192")
    try:
        r = s.run("'y' * 100000")
        text = r.result["text"]
        assert text.startswith("'yyy") and text.endswith("...")
        assert len(text.encode()) <= 8192
        r = s.run("def f(n): return g(n + 1)\n"
                  "def g(n): return f(n + 1)\n"
                  "f(0)")
        e = r.error
        assert e["ename"] == "RecursionError"
        assert e["traceback"][-1].startswith("RecursionError: maximum")
        assert '"<cell 2>"' in e["traceback"][1]
        assert sum(len(x.encode()) for x in e["traceback"]) <= 8192
        assert s.run("1 + 1").result["text"] == "2"
    finally:
        s.stop()


# Interrupts, cancellation, deadlines --------------------------------------

@pytest.mark.parametrize("code", [
    "print('started', flush=True)\nwhile True: pass",
    "import time; print('started', flush=True); time.sleep(100)",
])
def test_interrupt_ends_the_run_and_the_session_goes_on(session, code):
    c = session.connect()
    c.send(t="run", code=code)
    c.wait_stdout("started")
    started = time.monotonic()
    c.send(t="interrupt")
    r = c.until_complete()
    assert time.monotonic() - started < 5
    assert r.error["ename"] == "KeyboardInterrupt"
    assert r.error["traceback"][-1] == "KeyboardInterrupt\n"
    assert '"<cell 1>"' in r.error["traceback"][1]
    assert r.complete["status"] == "interrupted"
    assert r.complete["count"] == 1

    r = session.run("'next'")
    assert r.result["text"] == "'next'"
    assert r.complete["count"] == 2


def test_interrupt_works_when_the_spawner_ignored_and_blocked_sigint():
    def ignore_sigint():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

    s = SessionProcess(preexec_fn=ignore_sigint)
    try:
        c = s.connect()
        c.send(t="run", code="import time; print('started', flush=True); "
                             "time.sleep(100)")
        c.wait_stdout("started")
        c.send(t="interrupt")
        assert c.until_complete().complete["status"] == "interrupted"
    finally:
        s.stop()


def test_interrupt_from_another_connection(session):
    c = session.connect()
    c.send(t="run", code="import time; print('started', flush=True); "
                         "time.sleep(100)")
    c.wait_stdout("started")
    session.connect().send(t="interrupt")
    assert c.until_complete().complete["status"] == "interrupted"


def test_interrupt_sent_with_the_run_is_not_lost(session):
    c = session.connect()
    c.send_raw(frame({"t": "run", "code": "import time; "
                                                "time.sleep(100)"})
               + frame({"t": "interrupt"}))
    r = c.until_complete()
    assert r.complete["status"] == "interrupted"
    assert r.error["ename"] == "KeyboardInterrupt"


def test_sigint_or_interrupt_between_runs_does_not_fail_the_next(session):
    assert session.run("1").result["text"] == "1"
    c = session.connect()
    c.send(t="interrupt")
    os.kill(session.proc.pid, signal.SIGINT)
    r = session.run("import time; time.sleep(0.2); 'ok'")
    assert r.result["text"] == "'ok'"
    assert r.complete["status"] == "ok"
    assert session.proc.poll() is None


def test_a_second_run_while_busy_is_refused(session):
    c = session.connect()
    c.send(t="run", code="import time; print('started', flush=True); "
                         "time.sleep(100)")
    c.wait_stdout("started")
    other = session.connect()
    other.send(t="run", code="1")
    f = other.recv()
    assert f["t"] == "fail" and f["errcode"] == "session_busy"
    assert f["message"]
    # the refused connection stays usable for an interrupt
    other.send(t="interrupt")
    assert c.until_complete().complete["status"] == "interrupted"


def test_closing_the_connection_cancels_the_run(session):
    c = session.connect()
    c.send(t="run", code="\n".join([
        "import time",
        "try:",
        "    print('started', flush=True)",
        "    time.sleep(100)",
        "except KeyboardInterrupt:",
        "    print('after cancel', flush=True)",
        "    open('cancelled', 'w').close()",
        "    raise",
    ]))
    c.wait_stdout("started")
    c.close()
    wait_for(lambda: os.path.exists(os.path.join(session.dir, "cancelled")),
             what="the run to be interrupted")
    r = session.run_when_idle("print('next'); 7")
    assert r.stdout == "next\n"
    assert r.result["text"] == "7"
    assert r.complete["count"] == 2
    assert "interrupting the run" in session.log()


def test_timeout_interrupts_at_the_deadline(session):
    r = session.run("import time; time.sleep(30)", timeout_ms=300)
    assert r.complete["status"] == "timeout"
    assert 250 <= r.complete["ms"] < 5000
    assert r.error["ename"] == "KeyboardInterrupt"
    r = session.run("import time; time.sleep(0.1); 'in time'",
                    timeout_ms=5000)
    assert r.complete["status"] == "ok"
    assert r.result["text"] == "'in time'"


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
    # 0-2, the "run finished" and "input answered" eventfds, the drain and
    # ack pipes' requesting ends, the log's copy (for the main thread's
    # diagnostics), that socket and the working directory (checkpoints)
    assert len(fds) <= 10, fds
    rest = sorted(v.split(":")[0] for k, v in fds.items() if k > 2)
    assert rest == sorted(["anon_inode", "anon_inode", "pipe", "pipe",
                           "socket", session.log_path, session.dir]), fds


# input() and getpass ------------------------------------------------------

def ask(session, code, **extra):
    """Start an interactive run of code; return its connection and the
    frames up to and including the first input_request."""
    c = session.connect()
    c.send(t="run", code=code, interactive=1, **extra)
    frames = []
    while not frames or frames[-1]["t"] != "input_request":
        f = c.recv()
        assert f is not None and f["t"] in ("stdout", "stderr",
                                            "input_request"), (frames, f)
        frames.append(f)
    return c, frames


def next_request(c):
    """Read c up to the next input_request; return it and the stdout
    before it."""
    out = ""
    while True:
        f = c.recv()
        assert f is not None and f["t"] in ("stdout", "input_request"), f
        if f["t"] == "input_request":
            return f, out
        out += f["text"]


def answer(session, text, **extra):
    """Send an input frame on a connection of its own; return the reply,
    after which the session closes nothing: the client does."""
    c = session.connect()
    c.send(t="input", text=text, **extra)
    reply = c.recv()
    c.close()
    return reply


def test_input_asks_the_client_and_returns_its_answer(session):
    c, frames = ask(session, "print('before')\n"
                             "name = input('name? ')\n"
                             "print('hello', name)\n"
                             "name")
    req = frames[-1]
    assert "".join(f["text"] for f in frames[:-1]) == "before\n"
    assert set(req) == {"t", "id", "prompt", "password"}
    assert req["prompt"] == "name? " and req["password"] == 0
    assert isinstance(req["id"], str) and 0 < len(req["id"]) <= 32

    # from a connection of its own, as another nginx worker would send it
    assert answer(session, "Ada", id=req["id"]) == {"t": "ok"}

    r = c.until_complete()
    assert r.stdout == "hello Ada\n"          # the prompt is not output
    assert r.result["text"] == "'Ada'"
    assert r.complete["status"] == "ok"
    assert "input_request" not in r.types


def test_all_output_before_input_precedes_the_request(session):
    # more than a pipe holds: the last of it is still in the pipe when
    # input() asks
    for _ in range(3):
        c, frames = ask(session, "import sys\n"
                                 "sys.stdout.write('x' * 300000)\n"
                                 "sys.stderr.write('e' * 300000)\n"
                                 "input()")
        out = "".join(f["text"] for f in frames if f["t"] == "stdout")
        err = "".join(f["text"] for f in frames if f["t"] == "stderr")
        assert (len(out), len(err)) == (300000, 300000)
        c.send(t="interrupt")
        assert c.until_complete().complete["status"] == "interrupted"


def test_an_answer_on_the_runs_own_connection(session):
    c, frames = ask(session, "input('? ') * 2")
    # no id: whatever input() waits takes it; the trailing newline of a
    # line goes, as input() strips it
    c.send(t="input", text="ab\n")
    r = c.until_complete()
    assert r.types == ["ok", "result", "complete"]
    assert r.result["text"] == "'abab'"


def test_a_wrong_request_id_is_refused_and_the_right_one_taken(session):
    c, frames = ask(session, "input()")
    rid = frames[-1]["id"]
    f = answer(session, "no", id=rid + "x")
    assert f["t"] == "fail" and f["errcode"] == "no_pending_input"
    assert f["message"]
    f = answer(session, "no", id="")
    assert f["t"] == "fail" and f["errcode"] == "no_pending_input"
    assert answer(session, "yes", id=rid) == {"t": "ok"}
    assert c.until_complete().result["text"] == "'yes'"
    # answered: a second answer finds nothing waiting
    f = answer(session, "again", id=rid)
    assert f["t"] == "fail" and f["errcode"] == "no_pending_input"


def test_input_with_nothing_waiting_is_refused(session):
    assert answer(session, "x")["errcode"] == "no_pending_input"
    c = session.connect()
    c.send(t="run", code="print('started', flush=True)\n"
                         "import time; time.sleep(100)", interactive=1)
    c.wait_stdout("started\n")
    f = answer(session, "x")
    assert f["t"] == "fail" and f["errcode"] == "no_pending_input"
    c.send(t="input", text="x")
    assert c.recv()["errcode"] == "no_pending_input"
    c.send(t="interrupt")
    assert c.until_complete().complete["status"] == "interrupted"


def test_several_inputs_in_one_run(session):
    c, frames = ask(session, "a = input('first: ')\n"
                             "print('got', a, flush=True)\n"
                             "b = input('second: ')\n"
                             "c = input()\n"
                             "(a, b, c)")
    first = frames[-1]
    assert first["prompt"] == "first: "
    assert answer(session, "1", id=first["id"]) == {"t": "ok"}

    second, out = next_request(c)
    assert out == "got 1\n"
    assert second["prompt"] == "second: "
    assert second["id"] != first["id"]
    # the first request's id is spent
    assert answer(session, "2", id=first["id"])["errcode"] == \
        "no_pending_input"
    assert answer(session, "2", id=second["id"]) == {"t": "ok"}

    third, out = next_request(c)
    assert out == "" and third["prompt"] == ""
    assert len({first["id"], second["id"], third["id"]}) == 3
    assert answer(session, "", id=third["id"]) == {"t": "ok"}

    r = c.until_complete()
    assert r.result["text"] == "('1', '2', '')"


@pytest.mark.parametrize("code,prompt", [
    ("import getpass; getpass.getpass()", "Password: "),
    ("from getpass import getpass; getpass('PIN: ')", "PIN: "),
    ("import getpass, sys; getpass.getpass(prompt='k: ', stream=sys.stderr)",
     "k: "),
])
def test_getpass_asks_with_the_password_flag(session, code, prompt):
    c, frames = ask(session, code)
    req = frames[-1]
    assert req["prompt"] == prompt and req["password"] == 1
    assert answer(session, "s3cret", id=req["id"]) == {"t": "ok"}
    r = c.until_complete()
    assert r.result["text"] == "'s3cret'"
    assert r.stdout == "" and r.stderr == ""


def test_input_prompts_are_str_of_anything_and_stay_utf8(session):
    c, frames = ask(session, "input(42)")
    assert frames[-1]["prompt"] == "42"
    # invalid UTF-8 in an answer becomes U+FFFD
    assert answer(session, "é".encode() + b"\xff") == {"t": "ok"}
    assert c.until_complete().result["text"] == "'é\ufffd'"
    c, frames = ask(session, "input('caf\\xe9 \\udc80? ')")
    assert frames[-1]["prompt"] == "café \\udc80? "
    c.send(t="interrupt")
    assert c.until_complete().complete["status"] == "interrupted"


def interrupt_by_frame(session, c):
    c.send(t="interrupt")


def interrupt_from_elsewhere(session, c):
    session.connect().send(t="interrupt")


def interrupt_by_hanging_up(session, c):
    c.close()


@pytest.mark.parametrize("how", [interrupt_by_frame, interrupt_from_elsewhere,
                                 interrupt_by_hanging_up])
def test_an_interrupt_ends_a_waiting_input_at_once(session, how):
    c, frames = ask(session, "import time\n"
                             "try:\n"
                             "    input('? ')\n"
                             "except KeyboardInterrupt:\n"
                             "    t = time.monotonic()\n"
                             "    raise\n")
    rid = frames[-1]["id"]
    started = time.monotonic()
    how(session, c)
    if how is interrupt_by_hanging_up:
        r = session.run_when_idle("t")
    else:
        r = c.until_complete()
        assert r.error["ename"] == "KeyboardInterrupt"
        assert "input('? ')" in r.error["traceback"][1]
        assert r.complete["status"] == "interrupted"
        r = session.run("t")
    assert float(r.result["text"]) - started < 0.1
    # nothing waits any more; the session goes on, input() included
    assert answer(session, "late", id=rid)["errcode"] == "no_pending_input"
    c, frames = ask(session, "input()")
    assert frames[-1]["id"] != rid
    assert answer(session, "again", id=frames[-1]["id"]) == {"t": "ok"}
    assert c.until_complete().result["text"] == "'again'"


def test_the_deadline_ends_a_waiting_input(session):
    c, frames = ask(session, "input()", timeout_ms=300)
    r = c.until_complete()
    assert r.complete["status"] == "timeout"
    assert r.error["ename"] == "KeyboardInterrupt"
    assert 250 <= r.complete["ms"] < 5000


def test_a_signal_handler_that_raises_ends_input(session):
    c, frames = ask(session, "import signal\n"
                             "def alarm(*a): raise TimeoutError('late')\n"
                             "signal.signal(signal.SIGALRM, alarm)\n"
                             "signal.setitimer(signal.ITIMER_REAL, 0.2)\n"
                             "input('quick? ')")
    r = c.until_complete()
    assert r.error["ename"] == "TimeoutError"
    assert r.complete["status"] == "error"
    assert answer(session, "x", id=frames[-1]["id"])["errcode"] == \
        "no_pending_input"
    c, frames = ask(session, "input()")
    assert answer(session, "fine") == {"t": "ok"}
    assert c.until_complete().result["text"] == "'fine'"


def test_a_handler_that_swallows_the_interrupt_gets_asked_again(session):
    c, frames = ask(session, "import signal\n"
                             "signal.signal(signal.SIGINT, lambda *a: None)\n"
                             "try:\n"
                             "    x = input('again? ')\n"
                             "finally:\n"
                             "    signal.signal(signal.SIGINT, "
                             "signal.default_int_handler)\n"
                             "x")
    first = frames[-1]
    c.send(t="interrupt")
    second, out = next_request(c)
    assert out == ""
    assert second["prompt"] == "again? " and second["id"] != first["id"]
    c.send(t="input", text="kept", id=second["id"])
    r = c.until_complete()
    assert r.result["text"] == "'kept'"


@pytest.mark.parametrize("extra", [{}, {"interactive": 0}])
@pytest.mark.parametrize("code", [
    "input('prompt? ')",
    "import getpass; getpass.getpass()",
])
def test_input_is_eof_in_a_run_that_cannot_be_answered(session, code, extra):
    c = session.connect()
    c.send(t="run", code=code, **extra)
    r = c.until_complete()
    assert "input_request" not in r.types
    assert r.error["ename"] == "EOFError"
    assert r.complete["ms"] < 1000
    # as before: input() shows its prompt on stdout when it cannot ask
    assert r.stdout == ("prompt? " if "input(" in code else "")


def test_input_reads_a_stdin_the_code_put_in_place(session):
    r = session.run("import io, sys\n"
                    "sys.stdin = io.StringIO('from the code\\n')\n"
                    "try:\n"
                    "    x = input('> ')\n"
                    "finally:\n"
                    "    sys.stdin = sys.__stdin__\n"
                    "x", interactive=1)
    assert "input_request" not in r.types
    assert r.result["text"] == "'from the code'"


def test_input_of_another_thread_is_asked_and_eof_once_the_run_ends(
        session):
    c, frames = ask(session, "import threading\n"
                             "got = []\n"
                             "def ask():\n"
                             "    try:\n"
                             "        got.append(input('thread? '))\n"
                             "    except EOFError:\n"
                             "        got.append('eof')\n"
                             "t = threading.Thread(target=ask)\n"
                             "t.start(); t.join()\n"
                             "t = threading.Thread(target=ask)\n"
                             "t.start()\n")
    assert frames[-1]["prompt"] == "thread? "
    assert answer(session, "one") == {"t": "ok"}
    # the second thread asks while (or after) the run ends: EOF, no hang
    r = c.until_complete()
    assert r.complete["status"] == "ok"
    r = session.run("t.join(10); got")
    assert r.result["text"] == "['one', 'eof']"


def test_sys_stdin_stays_at_eof_in_interactive_runs(session):
    r = session.run("import sys; (sys.stdin.readline(), sys.stdin.read())",
                    interactive=1)
    assert r.result["text"] == "('', '')"
    assert "input_request" not in r.types


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
