"""
pyrepl-python interrupted: an interrupt frame, from the run's connection
or another, SIGINT, a closed connection and a deadline end the run and the
session goes on; a second run while one is busy is refused.

Each test talks frames (helpers.Conn) to a pyrepl-python of its own,
without nginx or the supervisor: the session fixture of conftest.py.
"""

import os
import signal
import time

import pytest

from binaries import SessionProcess
from helpers import frame, wait_for


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


def test_a_run_sent_while_an_abandoned_run_unwinds_waits_for_it(session):
    """A client that gives up on a run and asks for the next one at once
    gets it run once the first has unwound, not refused as busy."""
    c = session.connect()
    c.send(t="run", code="\n".join([
        "import time",
        "try:",
        "    print('started', flush=True)",
        "    time.sleep(100)",
        "except KeyboardInterrupt:",
        "    time.sleep(0.5)",
        "    print('unwound')",
    ]))
    c.wait_stdout("started")
    c.close()
    wait_for(lambda: "interrupting the run" in session.log(),
             what="the session to see the connection go")
    nxt = session.connect()
    nxt.send(t="run", code="'next'")
    third = session.connect()
    third.send(t="run", code="'third'")
    # one run waits; another is refused as before
    f = third.recv()
    assert f["t"] == "fail" and f["errcode"] == "session_busy"
    r = nxt.until_complete()
    assert r.complete["status"] == "ok"
    assert r.result["text"] == "'next'"
    assert "unwound" not in r.stdout


def test_a_waiting_run_whose_client_leaves_is_dropped(session):
    c = session.connect()
    c.send(t="run", code="\n".join([
        "import time",
        "try:",
        "    print('started', flush=True)",
        "    time.sleep(100)",
        "except KeyboardInterrupt:",
        "    time.sleep(0.3)",
    ]))
    c.wait_stdout("started")
    c.close()
    wait_for(lambda: "interrupting the run" in session.log(),
             what="the session to see the connection go")
    gone = session.connect()
    gone.send(t="run", code="open('ran', 'w').close()")
    gone.close()
    assert session.run_when_idle("'after'").result["text"] == "'after'"
    assert not os.path.exists(os.path.join(session.dir, "ran"))


def test_a_run_sent_during_an_op_between_runs_waits_for_it(session):
    """A client that lists the namespace while another sends code (a web
    IDE refreshing its variables panel as the next cell starts): the run
    waits for the listing instead of being refused as busy."""
    r = session.run("for i in range(30000):\n"
                    "    globals()[f'v{i}'] = [i] * 20")
    assert r.complete["status"] == "ok"
    ns = session.connect()
    ns.send(t="namespace")
    run = session.connect()
    run.send(t="run", code="'ran'")
    r = run.until_complete()
    assert r.complete["status"] == "ok" and r.result["text"] == "'ran'"
    f = ns.recv()
    assert f["t"] == "ok"


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
