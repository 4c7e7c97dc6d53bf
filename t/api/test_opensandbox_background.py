"""execd's background commands (POST /command {background: true}, GET
/command/status/{id}, GET /command/{id}/logs) attacked: cursors inside a
character, commands past the code and frame limits, more readers at once
than a session takes connections.  The everyday behaviour is
test_opensandbox_sdk.py's."""

import concurrent.futures
import json

import pytest

from helpers import Nginx, wait_for

KEY = "opensandbox-background-key-0123"
H = {"X-EXECD-ACCESS-TOKEN": KEY}


def start(http_extra=""):
    return Nginx(http_extra=f"pyrepl_default_language bash; "
                            f"pyrepl_api_key {KEY}; " + http_extra,
                 server_extra="pyrepl_dialect opensandbox; "
                              "location /command { pyrepl; }").start()


@pytest.fixture(scope="module")
def nginx():
    n = start()
    yield n
    n.check_and_clean()


@pytest.fixture(scope="module")
def small():
    """Frames of 4 KiB at most."""
    n = start("pyrepl_max_frame 4k;")
    yield n
    n.check_and_clean()


def launch(n, command):
    r = n.http.post(n.url + "/command",
                    json={"command": command, "background": True}, headers=H)
    assert r.status_code == 200, r.text
    events = [json.loads(line[len("data: "):])
              for line in r.text.splitlines() if line.startswith("data: ")]
    return events[0]["text"]


def status(n, sid):
    return n.http.get(n.url + "/command/status/" + sid, headers=H)


def logs(n, sid, cursor):
    return n.http.get(f"{n.url}/command/{sid}/logs?cursor={cursor}",
                      headers=H)


def ended(n, sid):
    wait_for(lambda: not status(n, sid).json()["running"],
             what="the command to end")


def sessions(n):
    return n.http.get(n.url + "/session", headers=H).json()["sessions"]


def still_works(n):
    sid = launch(n, "echo fine")
    ended(n, sid)
    assert logs(n, sid, 0).text == "fine\n"
    assert n.http.delete(n.url + "/session/" + sid,
                         headers=H).status_code == 204


def test_a_cursor_inside_a_character_reads_from_the_next_one(nginx):
    sid = launch(nginx, r"printf 'a\303\251\342\202\254z'")  # aé€z
    ended(nginx, sid)
    for cursor, text, after in ((2, "\u20acz", 7), (4, "z", 7), (5, "z", 7),
                                (3, "\u20acz", 7)):
        r = logs(nginx, sid, cursor)
        assert r.status_code == 200
        assert r.content.decode("utf-8") == text        # never half of one
        assert int(r.headers["EXECD-COMMANDS-TAIL-CURSOR"]) == after
    still_works(nginx)


def test_a_background_command_keeps_to_pyrepl_max_code_size():
    n = start("pyrepl_max_code_size 1k; client_max_body_size 4m;")
    try:
        for background in (False, True):
            r = n.http.post(n.url + "/command",
                            json={"command": "true " + "x" * 3000,
                                  "background": background}, headers=H)
            assert r.status_code == 413, r.text
            assert r.json()["error"]["code"] == "too_large"
        assert sessions(n) == []                  # none made for it
        still_works(n)
    finally:
        n.check_and_clean()


def test_a_command_is_refused_if_its_status_would_not_fit_a_frame(small):
    # its status frame carries the command back: one that barely fits a
    # run frame would make its status unreadable
    for size in (4000, 5000):
        r = small.http.post(small.url + "/command",
                            json={"command": "echo " + "a" * size,
                                  "background": True}, headers=H)
        assert r.status_code == 413, r.text
        assert r.json()["error"]["code"] == "too_large"
    assert sessions(small) == []
    command = "echo " + "a" * 3000
    sid = launch(small, command)
    ended(small, sid)
    st = status(small, sid).json()
    assert st["content"] == command and st["exit_code"] == 0
    assert small.http.delete(small.url + "/session/" + sid,
                             headers=H).status_code == 204
    still_works(small)


def test_readers_past_a_session_s_connections_are_not_told_it_is_gone(nginx):
    """A session takes 16 connections at once; readers past them are
    answered 503 (try again), never 404 (the command is gone)."""
    sid = launch(nginx, "head -c 3000000 /dev/zero | tr '\\0' a")
    ended(nginx, sid)

    def read(i):
        r = logs(nginx, sid, i * 1000)
        return r.status_code, r.json()["error"]["code"] \
            if r.status_code != 200 else len(r.content)

    with concurrent.futures.ThreadPoolExecutor(48) as pool:
        got = list(pool.map(read, range(480)))
    assert {s for s, _ in got} <= {200, 503}, \
        [g for g in got if g[0] != 200][:3]
    assert all(what == "unavailable" for s, what in got if s == 503)
    assert status(nginx, sid).json()["exit_code"] == 0
    assert nginx.http.delete(nginx.url + "/session/" + sid,
                             headers=H).status_code == 204
    still_works(nginx)


def test_logs_before_any_output_are_empty(nginx):
    """Read before the command wrote a byte (the session has no buffer
    yet); with the sanitizers' build this killed the session."""
    sid = launch(nginx, "sleep 60")
    r = logs(nginx, sid, 0)
    assert r.status_code == 200, r.text
    assert r.content == b"" and r.headers["EXECD-COMMANDS-TAIL-CURSOR"] == "0"
    assert status(nginx, sid).json()["running"] is True
    assert nginx.http.delete(nginx.url + "/session/" + sid,
                             headers=H).status_code == 204
    still_works(nginx)
