"""
pyrepl-python's input() and getpass: the request a run sends, answers on
any connection and their request ids, interrupts and deadlines while
input() waits, signal handlers, EOF where no client can answer, stdin the
code put in place, other threads.

Each test talks frames (helpers.Conn) to a pyrepl-python of its own,
without nginx or the supervisor: the session fixture of conftest.py.
"""

import time

import pytest


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
