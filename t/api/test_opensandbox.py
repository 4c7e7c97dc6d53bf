"""pyrepl_dialect opensandbox: OpenSandbox execd's bash-session API.

The client below does what OpenSandbox's Python SDK does (its
command_adapter.py and execution_event_dispatcher.py, read from the
project's sources): create with POST /session and accept 200 only, run with
POST /session/{id}/run {"command", "timeout"} and Accept:
text/event-stream, skip "event:"/"id:"/":" lines, parse each data line into
an event that must have a "type" and an integer "timestamp", and infer the
exit code from an "error" event's error.evalue, else 0 once
execution_complete arrived.
"""

import json
import time

import pytest

from helpers import Nginx

KEY = "opensandbox-key-0123456789"


@pytest.fixture(scope="module")
def nginx():
    n = Nginx(http_extra=f"pyrepl_default_language bash;"
                         f" pyrepl_api_key {KEY};",
              server_extra="pyrepl_dialect opensandbox;\n"
                           "        location /plain/session {"
                           " pyrepl; pyrepl_dialect pyrepl; }")
    n.start()
    n.http.headers["X-EXECD-ACCESS-TOKEN"] = KEY
    yield n
    n.check_and_clean()


class Execution:
    def __init__(self):
        self.stdout, self.stderr, self.error, self.complete = [], [], None, None
        self.init = None

    @property
    def exit_code(self):
        if self.error is not None:
            try:
                return int(self.error["evalue"])
            except (TypeError, ValueError):
                return None
        return 0 if self.complete is not None else None


def sdk_create(nginx, body=None):
    r = nginx.http.post(nginx.url + "/session", json=body or {})
    assert r.status_code == 200, r.text        # the SDK takes 200 only
    return r.json()["session_id"]


def sdk_run(nginx, sid, command, timeout_ms=None):
    body = {"command": command}
    if timeout_ms is not None:
        body["timeout"] = timeout_ms
    ex = Execution()
    with nginx.http.post(f"{nginx.url}/session/{sid}/run", json=body,
                         headers={"Accept": "text/event-stream",
                                  "Cache-Control": "no-cache"},
                         stream=True) as r:
        assert r.status_code == 200, r.text
        r.encoding = "utf-8"
        for line in r.iter_lines(decode_unicode=True):
            if not line.strip() or line.startswith((":", "event:", "id:",
                                                    "retry:")):
                continue
            data = line[5:].strip() if line.startswith("data:") else line
            ev = json.loads(data)
            assert isinstance(ev["type"], str)
            assert isinstance(ev["timestamp"], int)
            assert abs(ev["timestamp"] / 1000 - time.time()) < 60
            if ev["type"] == "init":
                ex.init = ev["text"]
            elif ev["type"] == "stdout":
                ex.stdout.append(ev["text"])
            elif ev["type"] == "stderr":
                ex.stderr.append(ev["text"])
            elif ev["type"] == "error":
                ex.error = ev["error"]
            elif ev["type"] == "execution_complete":
                assert isinstance(ev["execution_time"], int)
                ex.complete = ev
    return ex


def test_a_session_as_the_opensandbox_sdk_drives_it(nginx):
    sid = sdk_create(nginx)
    ex = sdk_run(nginx, sid, "cd /tmp && export GREETING=hi && echo start")
    assert ex.init == sid
    assert "".join(ex.stdout) == "start\n"
    assert ex.exit_code == 0
    ex = sdk_run(nginx, sid, "echo $GREETING from $(pwd); echo oops >&2")
    assert "".join(ex.stdout) == "hi from /tmp\n"
    assert "".join(ex.stderr) == "oops\n"
    assert ex.exit_code == 0
    r = nginx.http.delete(f"{nginx.url}/session/{sid}")
    assert r.status_code == 204


def test_a_failing_command_reports_its_exit_code(nginx):
    sid = sdk_create(nginx)
    ex = sdk_run(nginx, sid, "echo some; sh -c 'exit 4'")
    assert ex.error["ename"] == "CommandExecError"
    assert ex.error["evalue"] == "4"
    assert ex.error["traceback"] == ["command exited with code 4"]
    assert ex.exit_code == 4
    # the session goes on
    assert sdk_run(nginx, sid, "true").exit_code == 0
    nginx.http.delete(f"{nginx.url}/session/{sid}")


def test_timeout_is_execds_milliseconds(nginx):
    sid = sdk_create(nginx)
    ex = sdk_run(nginx, sid, "sleep 30", timeout_ms=300)
    assert ex.complete["status"] == "timeout"
    assert sdk_run(nginx, sid, "echo alive").stdout == ["alive\n"]
    nginx.http.delete(f"{nginx.url}/session/{sid}")


def test_the_access_token_header_is_an_api_key(nginx):
    r = nginx.http.post(nginx.url + "/session", json={},
                        headers={"X-EXECD-ACCESS-TOKEN": "wrong-key-0123456789"})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"


def test_other_locations_keep_pyrepls_own_answers(nginx):
    r = nginx.http.post(nginx.url + "/plain/session", json={})
    assert r.status_code == 201
    sid = r.json()["session_id"]
    r = nginx.http.post(f"{nginx.url}/plain/session/{sid}/run",
                        json={"command": "echo x"}, stream=True)
    lines = [l for l in r.iter_lines(decode_unicode=True)
             if l.startswith("data:")]
    first = json.loads(lines[0][5:])
    assert "type" not in first and "timestamp" not in first
    nginx.http.delete(f"{nginx.url}/plain/session/{sid}")


def test_nginx_t_rejects_an_unknown_dialect():
    n = Nginx(server_extra="pyrepl_dialect execd;")
    try:
        r = n.test_config()
        assert r.returncode != 0
        assert 'invalid value "execd"' in r.stderr, r.stderr
    finally:
        import shutil
        shutil.rmtree(n.prefix)


def test_a_huge_exit_status_in_an_error_stays_in_bounds(nginx):
    r = nginx.http.post(nginx.url + "/session", json={"language": "python"})
    sid = r.json()["session_id"]
    ex = sdk_run(nginx, sid, 'raise type("CommandError", (Exception,), {})'
                             '("exit status " + "9" * 100)')
    assert ex.error["ename"] == "CommandExecError"
    assert ex.error["evalue"] == "9" * 100
    (line,) = ex.error["traceback"]
    assert line.startswith("command exited with code 999") and len(line) < 64
    nginx.http.delete(f"{nginx.url}/session/{sid}")
