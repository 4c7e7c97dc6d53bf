"""
pyrepl-python running code: the REPL's semantics (the final expression's
result, the namespace, imports), output (streamed, ordered, UTF-8 kept
whole, bounded frames, a reader that stops reading) and errors
(tracebacks, syntax errors, SystemExit, the frame limit).

Each test talks frames (helpers.Conn) to a pyrepl-python of its own,
without nginx or the supervisor: the session fixture of conftest.py.
"""

import os
import re
import socket
import time

import pytest

from binaries import SessionProcess
from helpers import wait_for


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


def test_the_warm_up_cell_leaves_no_trace(session):
    """Before its first request a session runs a throwaway cell (its
    pages copied from the zygote ahead of the client's first run): no
    name, no cell source, no execution count of it is to be seen."""
    r = session.run("import linecache\n"
                    "[k for k in linecache.cache if k.startswith('<')]")
    assert r.result["text"] == "['<cell 1>']"
    assert r.complete["count"] == 1
    r = session.run("sorted(k for k in globals() if not k.startswith('__'))")
    assert r.result["text"] == "['linecache']"


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
