"""Bash sessions through nginx: state that persists, per-run cwd/env/stdin,
exit codes, interrupt and timeout, background jobs, exit ending a session."""

import os

import pytest
import requests

from helpers import (Nginx, events_of, host_pid, parse_sse, running, stdout_of,
                     wait_for)


@pytest.fixture(scope="module")
def nginx():
    n = Nginx(workers=2, http_extra="pyrepl_default_language bash;").start()
    yield n
    n.check_and_clean()


@pytest.fixture
def shell(nginx):
    r = nginx.http.post(nginx.url + "/session")     # the default: bash
    assert r.status_code == 201, r.text
    assert r.json()["language"] == "bash"
    sid = r.json()["session_id"]
    yield sid
    nginx.http.delete(f"{nginx.url}/session/{sid}")


def done(ev):
    return events_of(ev, "execution_complete")[0]


def test_state_persists_between_runs(nginx, shell):
    nginx.run(shell, "cd /tmp && export GREETING=hello && plain=1\n"
                     "shout() { echo \"$1!\"; }\nalias ll='echo listed'\n"
                     "set -o noclobber")
    ev = nginx.run(shell, "pwd; echo $GREETING $plain; shout hey; ll; "
                          "set -o | grep noclobber")
    out = stdout_of(ev)
    assert out.splitlines()[:4] == ["/tmp", "hello 1", "hey!", "listed"]
    assert "noclobber" in out and "on" in out
    assert done(ev) == {**done(ev), "status": "ok", "exit_code": 0}


def test_stdout_and_stderr_stay_apart(nginx, shell):
    ev = nginx.run(shell, "echo out; echo err >&2; printf 'no newline'")
    assert stdout_of(ev) == "out\nno newline"
    assert "".join(d["text"] for d in events_of(ev, "stderr")) == "err\n"


def test_a_non_zero_exit_is_an_error_with_its_code(nginx, shell):
    ev = nginx.run(shell, "false")
    assert events_of(ev, "error")[0]["ename"] == "CommandError"
    assert done(ev)["status"] == "error" and done(ev)["exit_code"] == 1
    doc = nginx.run_json(shell, "exit_status_test() { return 3; }; "
                                "exit_status_test")
    assert doc["status"] == "error" and doc["exit_code"] == 3


def test_cwd_env_and_stdin_apply_to_one_run(nginx, shell):
    ev = nginx.run(shell, "pwd; echo \"$ONLY\"; cat", cwd="/usr",
                   env={"ONLY": "this run"}, stdin="from stdin\n")
    assert stdout_of(ev) == "/usr\nthis run\nfrom stdin\n"
    ev = nginx.run(shell, "pwd; echo \"[$ONLY]\"; cat")
    assert stdout_of(ev).splitlines()[1:] == ["[]"]
    assert stdout_of(ev).splitlines()[0] != "/usr"


def test_binary_output_and_marker_lookalikes_come_through(nginx, shell):
    ev = nginx.run(shell, "printf 'a\\xffb\\n'; echo __PYREPL_DONE__ 0")
    out = stdout_of(ev)
    assert out == "a\ufffdb\n__PYREPL_DONE__ 0\n"
    assert done(ev)["status"] == "ok"


def test_large_output_streams_whole(nginx, shell):
    doc = nginx.run_json(shell, "yes | head -c 5000000")
    assert len(doc["stdout"]) == 5000000
    assert set(doc["stdout"]) == {"y", "\n"}


def test_interrupt_kills_the_command_not_the_shell(nginx, shell):
    nginx.run(shell, "KEEP=kept")
    s = requests.Session()
    r = s.post(f"{nginx.url}/session/{shell}/run",
               json={"code": "echo go; sleep 100 & sleep 100"}, stream=True)
    events = parse_sse(r)
    assert next(events)[0] == "init"
    assert next(events)[0] == "stdout"
    assert nginx.http.post(f"{nginx.url}/session/{shell}/interrupt"
                           ).status_code == 204
    rest = list(events)
    assert done(rest)["status"] == "interrupted"
    assert stdout_of(nginx.run(shell, "echo $KEEP")) == "kept\n"
    s.close()


def test_timeout_ends_the_run_and_the_shell_goes_on(nginx, shell):
    ev = nginx.run(shell, "sleep 30", timeout_ms=300)
    assert done(ev)["status"] == "timeout"
    assert done(nginx.run(shell, "true"))["status"] == "ok"


@pytest.mark.parametrize("command", [
    "trap 'echo caught' INT; sleep 2; echo after",
    "trap '' INT; sleep 1; echo after",
])
def test_a_command_that_traps_the_deadline_s_interrupt_still_timed_out(
        nginx, shell, command):
    ev = nginx.run(shell, command, timeout_ms=300)
    assert "after" in stdout_of(ev)
    assert done(ev)["status"] == "timeout"
    assert done(nginx.run(shell, "true"))["status"] == "ok"


def test_exit_ends_the_session_as_terminated(nginx, shell):
    ev = nginx.run(shell, "echo bye; exit 0")
    assert stdout_of(ev) == "bye\n"
    assert done(ev)["exit_code"] == 0

    def terminated():
        return nginx.http.get(f"{nginx.url}/session/{shell}").json()[
            "state"] == "terminated"

    wait_for(terminated, what="the session to read terminated")
    ev = nginx.run(shell, "true")
    assert events_of(ev, "error")[0]["ename"] == "SessionTerminated"


def test_delete_kills_background_jobs(nginx):
    sid = nginx.create(language="bash")
    ev = nginx.run(sid, "sleep 1000 & echo $! $(readlink /proc/self/ns/pid)")
    job, ns = stdout_of(ev).split()
    pid = host_pid(int(job), ns)
    assert os.path.exists(f"/proc/{pid}")
    assert nginx.http.delete(f"{nginx.url}/session/{sid}").status_code == 204
    wait_for(lambda: not running(pid), what="the background job to die")


def test_python_sessions_refuse_stdin(nginx):
    sid = nginx.create(language="python")
    r = nginx.http.post(f"{nginx.url}/session/{sid}/run",
                        json={"code": "1", "stdin": "x"})
    assert r.status_code == 400
    assert "bash" in r.json()["error"]["message"]
    assert nginx.run_json(sid, "6 * 7")["result"] == {"text/plain": "42"}
    nginx.http.delete(f"{nginx.url}/session/{sid}")


@pytest.mark.parametrize("body", [{"code": "true", "cwd": ""},
                                  {"code": "true", "env": {"A=B": "c"}},
                                  {"code": "true", "env": ["A=B"]},
                                  {"code": "true", "stdin": 5}])
def test_bad_bash_fields_answer_400(nginx, shell, body):
    r = nginx.http.post(f"{nginx.url}/session/{shell}/run", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "bad_request"


def test_bash_over_websocket(nginx, shell):
    import asyncio, json, websockets

    async def go():
        async with websockets.connect(
                f"ws://127.0.0.1:{nginx.port}/session/{shell}/ws") as ws:
            await ws.send(json.dumps({"type": "run", "id": 1,
                                      "code": "echo ws; exit_code=7; "
                                              "(exit 7)"}))
            events = []
            while not events or events[-1]["type"] != "execution_complete":
                events.append(json.loads(await ws.recv()))
            return events

    events = asyncio.run(go())
    assert "".join(e["text"] for e in events if e["type"] == "stdout") \
        == "ws\n"
    assert events[-1]["exit_code"] == 7 and events[-1]["status"] == "error"
