"""OpenSandbox's own JS SDK (npm @alibaba-group/opensandbox 0.1.11, run
by node) against pyrepl_dialect opensandbox, as its users point it at an
execd: ConnectionConfig and DefaultAdapterFactory().createExecdStack with
X-EXECD-ACCESS-TOKEN (t/clients/opensandbox_sdk.mjs)."""

import json
import time

import pytest

from helpers import Nginx, node, npm_install

KEY = "opensandbox-sdk-key-0123456789"


@pytest.fixture(scope="module")
def nginx():
    n = Nginx(http_extra=f"pyrepl_default_language bash; "
                         f"pyrepl_api_key {KEY};",
              server_extra="pyrepl_dialect opensandbox; "
                           "location = /ping { pyrepl; } "
                           "location /command { pyrepl; }").start()
    yield n
    n.check_and_clean()


def test_the_opensandbox_sdk_runs_unchanged(nginx):
    npm_install()
    seen = node("opensandbox_sdk.mjs", nginx.url, KEY, timeout=120)
    assert seen["ping"] is True
    assert seen["pwd"]["stdout"].endswith("/work/dir\n")   # made for it
    assert seen["pwd"]["exitCode"] == 0
    assert seen["false"] == 1
    assert seen["timeout"] not in (0, None)        # read as a failure
    assert seen["interrupted"]["stdout"] == "go\n"
    assert seen["interrupted"]["exitCode"] not in (0, None)
    assert seen["after"] == "still here\n"
    assert seen["deleted"] == "refused"
    assert seen["oneShot"]["stdout"].startswith("x\n")
    assert seen["oneShot"]["stdout"].endswith("/w\n")
    assert seen["oneShot"]["exitCode"] == 0
    assert seen["oneShotExit"] == 4
    # one-shot commands leave no session behind
    r = nginx.http.get(nginx.url + "/session",
                       headers={"X-EXECD-ACCESS-TOKEN": KEY})
    assert r.json()["sessions"] == []


def test_background_commands_through_the_sdk(nginx):
    npm_install()
    seen = node("opensandbox_background.mjs", nginx.url, KEY, timeout=120)
    # the run answers at once, with the id the command goes by
    assert seen["launch"]["complete"] and seen["launch"]["exitCode"] is None
    assert seen["done"] == {"id": seen["launch"]["id"],
                            "content": "echo $B; pwd; echo err >&2; exit 3",
                            "exitCode": 3, "error": "exit status 3",
                            "started": True, "finished": True}
    assert seen["logs"] == {"content": "y\n/home/pyrepl/bg\nerr\n",
                            "cursor": 22}
    assert seen["again"] == {"content": "", "cursor": 22}
    assert seen["running"]["running"] is True
    assert seen["running"]["exitCode"] is None
    assert seen["running"]["finishedAt"] is None
    assert seen["interrupted"] == {"exitCode": 130, "rest": ""}
    assert seen["timedOut"] == 130
    assert seen["unknown"] == "refused"
    # the sessions stay, for their status and logs, until deleted
    listed = {s["session_id"] for s in nginx.http.get(
        nginx.url + "/session",
        headers={"X-EXECD-ACCESS-TOKEN": KEY}).json()["sessions"]}
    assert set(seen["ids"]) <= listed
    for sid in seen["ids"]:
        assert nginx.http.delete(nginx.url + "/session/" + sid,
                                 headers={"X-EXECD-ACCESS-TOKEN": KEY}
                                 ).status_code == 204
        r = nginx.http.get(nginx.url + "/command/status/" + sid,
                           headers={"X-EXECD-ACCESS-TOKEN": KEY})
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"


def launch(nginx, command, key=KEY):
    """A background command started as the SDK does: its id."""
    r = nginx.http.post(nginx.url + "/command",
                        json={"command": command, "background": True},
                        headers={"X-EXECD-ACCESS-TOKEN": key})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/event-stream")
    events = [json.loads(line[len("data: "):])
              for line in r.text.splitlines() if line.startswith("data: ")]
    assert [e["type"] for e in events] == ["init", "execution_complete"]
    return events[0]["text"]


def status(nginx, sid, key=KEY):
    return nginx.http.get(nginx.url + "/command/status/" + sid,
                          headers={"X-EXECD-ACCESS-TOKEN": key})


def logs(nginx, sid, cursor=None, key=KEY):
    q = "" if cursor is None else f"?cursor={cursor}"
    return nginx.http.get(f"{nginx.url}/command/{sid}/logs{q}",
                          headers={"X-EXECD-ACCESS-TOKEN": key})


def finished(nginx, sid):
    """Its status once it has ended (the API has no event to wait on)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        st = status(nginx, sid).json()
        if not st["running"]:
            return st
        time.sleep(0.05)
    raise AssertionError("the command did not end")


@pytest.fixture(scope="module")
def keyed():
    n = Nginx(http_extra=f"pyrepl_default_language bash; "
                         f"pyrepl_api_key {KEY}; pyrepl_api_key {KEY}x;",
              server_extra="pyrepl_dialect opensandbox; "
                           "location /command { pyrepl; }").start()
    yield n
    n.check_and_clean()


def test_a_background_command_is_its_key_s_alone(keyed):
    sid = launch(keyed, "echo secret; sleep 60")
    assert logs(keyed, sid).text in ("", "secret\n")
    for r in (status(keyed, sid, key=KEY + "x"),
              logs(keyed, sid, key=KEY + "x"),
              keyed.http.delete(keyed.url + "/command?id=" + sid,
                                headers={"X-EXECD-ACCESS-TOKEN": KEY + "x"})):
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"
    assert status(keyed, sid).json()["running"] is True    # untouched
    assert keyed.http.delete(keyed.url + "/command?id=" + sid,
                             headers={"X-EXECD-ACCESS-TOKEN": KEY}
                             ).status_code == 204
    assert finished(keyed, sid)["exit_code"] == 130


def test_a_session_without_a_background_command_has_no_status(keyed):
    for lang in ("bash", "python"):
        sid = keyed.http.post(keyed.url + "/session", json={"language": lang},
                              headers={"X-EXECD-ACCESS-TOKEN": KEY}
                              ).json()["session_id"]
        for r in (status(keyed, sid), logs(keyed, sid)):
            assert r.status_code == 404
            assert "has no background command" in r.json()["error"]["message"]
    r = keyed.http.get(keyed.url + "/command/status/nonsense",
                       headers={"X-EXECD-ACCESS-TOKEN": KEY})
    assert r.status_code == 404
    r = keyed.http.post(keyed.url + "/command/status/" + sid,
                        headers={"X-EXECD-ACCESS-TOKEN": KEY})
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD"
    r = keyed.http.post(keyed.url + "/command",
                        json={"command": "", "background": True},
                        headers={"X-EXECD-ACCESS-TOKEN": KEY})
    assert r.status_code == 400 and "command" in r.json()["error"]["message"]


def test_a_background_command_s_output_is_read_by_cursor(keyed):
    """6 MB of output: the session keeps its last 4 MiB at most; cursors
    count every byte, and reading on from one never repeats or skips what
    is kept."""
    total = 6_000_000
    sid = launch(keyed, f"head -c {total} /dev/zero | tr '\\0' a; echo")
    assert finished(keyed, sid)["exit_code"] == 0
    r = logs(keyed, sid)
    first = int(r.headers["EXECD-COMMANDS-TAIL-CURSOR"])
    assert 0 < len(r.content) <= 1024 * 1024
    assert first - len(r.content) >= total - 4 * 1024 * 1024  # old bytes go
    cursor, got = first, len(r.content)
    while True:
        r = logs(keyed, sid, cursor)
        assert r.status_code == 200
        nxt = int(r.headers["EXECD-COMMANDS-TAIL-CURSOR"])
        assert nxt == cursor + len(r.content)
        if not r.content:
            break
        cursor, got = nxt, got + len(r.content)
    assert cursor == total + 1
    assert r.text == "" and logs(keyed, sid, cursor - 1).text == "\n"
    r = logs(keyed, sid, "x")
    assert r.status_code == 400


def test_a_background_command_s_session_runs_again_once_it_ended(keyed):
    sid = launch(keyed, "x=1; exit 7")
    assert finished(keyed, sid)["exit_code"] == 7
    r = keyed.http.post(keyed.url + f"/session/{sid}/run",
                        json={"command": "echo ${x:-unset}"},
                        headers={"X-EXECD-ACCESS-TOKEN": KEY,
                                 "Accept": "application/json"})
    assert r.status_code == 200
    assert r.json()["stdout"] == "unset\n"      # it ran in a subshell
