"""Running code: REPL semantics, streaming, errors, JSON mode, busy, crash."""

import json
import os
import socket
import time

import pytest

from helpers import (Nginx, events_of, node, npm_install, parse_sse, pid_of,
                     start_stream, stdout_of, wait_for)


def test_a_final_expression_is_the_result_and_state_persists(nginx, session):
    ev = nginx.run(session, "x = 21")
    assert [e for e, _ in ev] == ["init", "execution_complete"]
    assert events_of(ev, "execution_complete")[0]["status"] == "ok"

    ev = nginx.run(session, "x * 2")
    assert [e for e, _ in ev] == ["init", "result", "execution_complete"]
    result = events_of(ev, "result")[0]
    assert result["data"]["text/plain"] == "42"
    assert result["execution_count"] == 2
    done = events_of(ev, "execution_complete")[0]
    assert done["execution_count"] == 2
    assert isinstance(done["duration_ms"], int)


def test_init_names_session_and_execution(nginx, session):
    ev = nginx.run(session, "pass")
    init = events_of(ev, "init")[0]
    assert init["session_id"] == session
    assert len(init["execution_id"]) == 32


def test_sse_headers_let_proxies_stream(nginx, session):
    r = nginx.http.post(f"{nginx.url}/session/{session}/run",
                        json={"code": "1"}, stream=True)
    assert r.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert r.headers["Cache-Control"] == "no-cache"
    assert r.headers["X-Accel-Buffering"] == "no"
    list(parse_sse(r))


def test_the_namespace_is_main(nginx, session):
    ev = nginx.run(session, "__name__")
    assert events_of(ev, "result")[0]["data"]["text/plain"] == "'__main__'"


def test_none_gives_no_result(nginx, session):
    ev = nginx.run(session, "None")
    assert events_of(ev, "result") == []


def test_every_kind_of_output_is_streamed(nginx, session):
    code = "\n".join([
        "import os, sys, subprocess, ctypes",
        "print('print')",
        "sys.stdout.write('write\\n')",
        "os.write(1, b'fd1\\n')",
        "subprocess.run(['echo', 'child'])",
        "ctypes.CDLL(None).printf(b'c-level\\n')",
        "print('err', file=sys.stderr)",
    ])
    ev = nginx.run(session, code)
    out = stdout_of(ev)
    for line in ("print", "write", "fd1", "child", "c-level"):
        assert line + "\n" in out
    assert "".join(d["text"] for d in events_of(ev, "stderr")) == "err\n"
    assert events_of(ev, "execution_complete")[0]["status"] == "ok"


def test_output_arrives_before_the_run_ends(nginx, session):
    r = nginx.http.post(f"{nginx.url}/session/{session}/run",
                        json={"code": "import time\nprint('first')\n"
                                      "time.sleep(1)\nprint('second')"},
                        stream=True)
    seen = {}
    for event, data in parse_sse(r):
        if event == "stdout" and "first" in data["text"]:
            seen["first"] = time.monotonic()
        if event == "execution_complete":
            seen["end"] = time.monotonic()
    assert seen["end"] - seen["first"] > 0.8


def test_exceptions_become_error_events(nginx, session):
    nginx.run(session, "def f():\n    return 1 / 0")
    ev = nginx.run(session, "f()")
    err = events_of(ev, "error")[0]
    assert err["ename"] == "ZeroDivisionError"
    assert err["evalue"] == "division by zero"
    tb = "".join(err["traceback"])
    assert "<cell" in tb and "return 1 / 0" in tb
    assert "pyrepl_runtime" not in tb and "run_cell" not in tb
    assert events_of(ev, "execution_complete")[0]["status"] == "error"
    # the session goes on
    assert events_of(nginx.run(session, "2 + 2"),
                     "result")[0]["data"]["text/plain"] == "4"


def test_syntax_errors_are_reported(nginx, session):
    ev = nginx.run(session, "def (:")
    err = events_of(ev, "error")[0]
    assert err["ename"] == "SyntaxError"
    assert events_of(ev, "execution_complete")[0]["status"] == "error"


def test_execution_count_counts_every_run(nginx):
    sid = nginx.create()
    for i in range(1, 4):
        done = events_of(nginx.run(sid, "1/0" if i == 2 else "1"),
                         "execution_complete")[0]
        assert done["execution_count"] == i
    s = nginx.http.get(f"{nginx.url}/session/{sid}").json()
    assert s["execution_count"] == 3


def test_json_mode_answers_one_document(nginx, session):
    doc = nginx.run_json(session, "print('a')\nimport sys\n"
                                  "sys.stderr.write('b')\n6 * 7")
    assert doc["status"] == "ok"
    assert doc["stdout"] == "a\n"
    assert doc["stderr"] == "b"
    assert doc["result"] == {"text/plain": "42"}
    assert doc["error"] is None
    assert doc["execution_count"] >= 1
    doc = nginx.run_json(session, "raise ValueError('no')")
    assert doc["status"] == "error"
    assert doc["error"]["ename"] == "ValueError"


def test_json_mode_input_raises_eof(nginx, session):
    doc = nginx.run_json(session, "input('? ')")
    assert doc["error"]["ename"] == "EOFError"


def test_command_is_an_alias_of_code(nginx, session):
    r = nginx.http.post(f"{nginx.url}/session/{session}/run",
                        json={"command": "3"},
                        headers={"Accept": "application/json"})
    assert r.json()["result"]["text/plain"] == "3"


def test_unicode_and_invalid_bytes_survive(nginx, session):
    doc = nginx.run_json(session, "import os\nprint('héllo ✓ 🐍')\n"
                                  "os.write(1, b'\\xff\\xfe\\n')")
    assert "héllo ✓ 🐍\n" in doc["stdout"]
    assert "\ufffd" in doc["stdout"]


def test_large_output_is_complete(nginx, session):
    doc = nginx.run_json(session, "for i in range(100000): print(i)")
    lines = doc["stdout"].splitlines()
    assert lines == [str(i) for i in range(100000)]


def test_bad_run_bodies_answer_400(nginx, session):
    url = f"{nginx.url}/session/{session}/run"
    for body in ({}, {"code": 1}, {"code": "1", "timeout_ms": "x"},
                 {"code": "1", "timeout_ms": -1},
                 {"code": "1", "tx_policy": "sometimes"}):
        r = nginx.http.post(url, json=body)
        assert r.status_code == 400, body
        assert r.json()["error"]["code"] == "bad_request"
    assert nginx.http.post(url, data="nope").status_code == 400


def test_run_on_unknown_session_is_404(nginx):
    r = nginx.http.post(f"{nginx.url}/session/{'f' * 32}/run",
                        json={"code": "1"})
    assert r.status_code == 404


def test_a_second_run_while_busy_gets_409(nginx, session):
    s, r, events = start_stream(nginx, session,
                                "print('started', flush=True)\n"
                                "import time\ntime.sleep(30)")
    assert next(events)[0] == "init"
    assert next(events)[0] == "stdout"
    assert nginx.http.get(f"{nginx.url}/session/{session}").json()["state"] \
        == "busy"
    other = nginx.http.post(f"{nginx.url}/session/{session}/run",
                            json={"code": "1"})
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "session_busy"
    r.close()
    s.close()


def test_closing_the_connection_interrupts_the_run(nginx, session):
    # the print is inside the try: the interrupt may come right after it
    s, r, events = start_stream(nginx, session,
                                "import time\ninterrupted = False\n"
                                "try:\n    print('go', flush=True)\n"
                                "    time.sleep(60)\n"
                                "except KeyboardInterrupt:\n"
                                "    interrupted = True\n")
    assert next(events)[0] == "init"
    assert next(events)[0] == "stdout"
    r.close()
    s.close()

    def idle():
        return nginx.http.get(f"{nginx.url}/session/{session}").json()[
            "state"] == "idle"

    wait_for(idle, what="the session to be idle again")

    def ran():
        # 409 while the session still unwinds the interrupted run
        r = nginx.http.post(f"{nginx.url}/session/{session}/run",
                            json={"code": "interrupted"},
                            headers={"Accept": "application/json"})
        assert r.status_code in (200, 409), r.text
        return r.status_code == 200 and r.json()

    doc = wait_for(ran, what="the session to take a run")
    assert doc["result"] == {"text/plain": "True"}


def test_timeout_interrupts_and_the_session_survives(nginx, session):
    nginx.run(session, "keep = 'me'")
    ev = nginx.run(session, "while True: pass", timeout_ms=300)
    done = events_of(ev, "execution_complete")[0]
    assert done["status"] == "timeout"
    assert events_of(ev, "error")[0]["ename"] == "KeyboardInterrupt"
    doc = nginx.run_json(session, "keep")
    assert doc["result"] == {"text/plain": "'me'"}


@pytest.mark.parametrize("code, outcome", [
    ("import time\ntry:\n    time.sleep(30)\nexcept KeyboardInterrupt:\n"
     "    print('caught')", "caught\n"),
    ("import signal, time\nsignal.signal(signal.SIGINT, lambda *a: None)\n"
     "end = time.monotonic() + 1\nwhile time.monotonic() < end: pass\n"
     "print('ignored')", "ignored\n"),
])
def test_a_run_that_handles_the_deadline_s_interrupt_still_timed_out(
        nginx, session, code, outcome):
    # the deadline passed: however the code took the interrupt, the run
    # did not finish within its time, and says so
    ev = nginx.run(session, code, timeout_ms=300)
    assert stdout_of(ev) == outcome
    assert events_of(ev, "execution_complete")[0]["status"] == "timeout"
    assert nginx.run_json(session, "1")["status"] == "ok"


def test_a_dying_session_ends_the_stream_as_crashed(nginx):
    sid = nginx.create()
    other = nginx.create()
    nginx.run(other, "y = 5")
    ev = nginx.run(sid, "print('bye', flush=True)\nimport os\nos._exit(3)")
    assert stdout_of(ev) == "bye\n"
    assert events_of(ev, "error")[0]["ename"] == "SessionCrashed"
    assert events_of(ev, "execution_complete")[0]["status"] == "crashed"
    assert nginx.http.get(f"{nginx.url}/session/{sid}").json()["state"] \
        == "crashed"
    # a crashed session stays crashed, never silently replaced
    ev = nginx.run(sid, "1")
    assert events_of(ev, "execution_complete")[0]["status"] == "crashed"
    # the other session is untouched
    assert nginx.run_json(other, "y")["result"] == {"text/plain": "5"}
    nginx.http.delete(f"{nginx.url}/session/{sid}")
    nginx.http.delete(f"{nginx.url}/session/{other}")


def test_a_session_killed_while_idle_reads_crashed(nginx):
    sid = nginx.create()
    pid = pid_of(nginx, sid)
    os.kill(pid, 9)

    def crashed():
        return nginx.http.get(f"{nginx.url}/session/{sid}").json()[
            "state"] == "crashed"

    wait_for(crashed, what="the session to read crashed")
    nginx.http.delete(f"{nginx.url}/session/{sid}")


def test_a_stream_after_a_big_answer_on_one_connection(nginx, session):
    # the big answer leaves the client's write event armed; the next
    # stream's write handler must cope (this crashed a worker once)
    doc = nginx.run_json(session, "import sys; sys.stdout.write('y' * 5000000)")
    assert len(doc["stdout"]) == 5000000
    ev = nginx.run(session, "print('after')")
    assert stdout_of(ev) == "after\n"
    assert events_of(ev, "execution_complete")[0]["status"] == "ok"


def test_a_slow_sse_reader_gets_every_byte(nginx, session):
    r = nginx.http.post(f"{nginx.url}/session/{session}/run",
                        json={"code": "for i in range(300000): print(i)"},
                        stream=True)
    out = []
    for i, (event, data) in enumerate(parse_sse(r)):
        if event == "stdout":
            out.append(data["text"])
        if i % 200 == 0:
            time.sleep(0.002)       # a slow client, so the stream backs up
    assert "".join(out).splitlines() == [str(i) for i in range(300000)]


def test_a_slow_reader_gets_everything_printed_before_a_crash(nginx):
    # 8 MB written, then the process ends at once: far more than the
    # kernel's buffers on the way hold, so most of it is still in the
    # session when it ends, and reaches a reader that takes 16 KB every
    # 10 ms all the same
    sid = nginx.create()
    n = 1 << 20
    code = ("import os, sys\n"
            f"sys.stdout.write(''.join(f'{{i:07d}}\\n' for i in range({n})))\n"
            "sys.stdout.flush()\n"
            "os._exit(3)")
    body = json.dumps({"code": code}).encode()
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    c.connect(("127.0.0.1", nginx.port))
    c.sendall(b"POST /session/%s/run HTTP/1.0\r\nContent-Length: %d\r\n"
              b"\r\n" % (sid.encode(), len(body)) + body)
    raw = b""
    while True:
        chunk = c.recv(16384)
        if not chunk:
            break
        raw += chunk
        time.sleep(0.01)            # the slow reader itself
    c.close()
    events = []
    for block in raw.split(b"\r\n\r\n", 1)[1].decode().split("\n\n"):
        fields = dict(l.split(": ", 1) for l in block.splitlines()
                      if not l.startswith(":"))
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    out = stdout_of(events)
    assert len(out) == n * 8
    assert out == "".join(f"{i:07d}\n" for i in range(n))
    assert events_of(events, "error")[0]["ename"] == "SessionCrashed"
    assert events_of(events, "execution_complete")[0]["status"] == "crashed"
    nginx.http.delete(f"{nginx.url}/session/{sid}")


def test_an_eventsource_reconnecting_after_a_run_runs_nothing(nginx, session):
    # the npm "eventsource" package, POSTing as a browser's EventSource
    # would through its fetch option: when the stream ends it reconnects
    # with Last-Event-ID, which must get 204 (it then stops), not a rerun
    npm_install()
    code = "n = globals().get('n', 0) + 1\nprint(n)"
    seen = node("sse_reconnect.mjs", f"{nginx.url}/session/{session}/run",
                code)
    assert "".join(seen["stdout"]) == "1\n"
    assert (seen["opens"], seen["closed"]) == (1, True)
    assert nginx.run_json(session, "n")["result"] == {"text/plain": "1"}


def test_a_python_run_s_cwd_and_env_are_that_run_s_alone(nginx, session):
    where = ("import os; (os.getcwd() == os.path.expanduser('~'), "
             "os.path.basename(os.getcwd()), os.environ.get('STAGE'), "
             "os.environ['LANG'])")
    nginx.run_json(session, "import os; os.makedirs('data/raw')")
    r = nginx.run_json(session, where, cwd="data/raw",
                       env={"STAGE": "test", "LANG": "C"})
    assert r["result"] == {"text/plain": "(False, 'raw', 'test', 'C')"}
    back = nginx.run_json(session, where)["result"]["text/plain"]
    assert back.startswith("(True,")            # the session's own, back
    assert back.endswith(", None, 'C.UTF-8')")
    # a failed run gives them back too, and a cwd that is not there fails
    r = nginx.run_json(session, "1/0", cwd="data", env={"STAGE": "x"})
    assert r["status"] == "error"
    r = nginx.run_json(session, "1", cwd="nowhere")
    assert r["status"] == "error"
    assert r["error"]["ename"] == "FileNotFoundError"
    assert nginx.run_json(session, where)["result"]["text/plain"] == back


def test_a_run_over_what_a_frame_holds_is_refused_413():
    """pyrepl_max_frame below pyrepl_max_code_size: a run whose frame
    would not fit is refused, not cut off (its connection was closed with
    no answer, a one-shot command hung)."""
    n = Nginx(http_extra="pyrepl_max_frame 8k;").start()
    try:
        py = n.create()
        sh = n.create(language="bash")
        for sid, body in ((py, {"code": "x = '" + "a" * 9000 + "'"}),
                          (sh, {"code": "cat", "stdin": "b" * 9000}),
                          (sh, {"code": "true", "env": {"A": "c" * 9000}})):
            for accept in ("application/json", "text/event-stream"):
                r = n.http.post(f"{n.url}/session/{sid}/run", json=body,
                                headers={"Accept": accept})
                assert r.status_code == 413, (body.keys(), r.text)
                assert r.json()["error"]["code"] == "too_large"
                assert "pyrepl_max_frame" in r.json()["error"]["message"]
        assert n.run_json(py, "1 + 1")["result"] == {"text/plain": "2"}
        assert n.run_json(sh, "echo ok")["stdout"] == "ok\n"
    finally:
        n.check_and_clean()
