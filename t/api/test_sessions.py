"""Session routes: create, get, list, delete, and their JSON errors."""

import json
import re
import time

import pytest

from helpers import pid_of, running, wait_for


def error_of(r):
    body = r.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    return body["error"]["code"]


def test_create_answers_201_with_a_fresh_session(nginx):
    r = nginx.http.post(nginx.url + "/session")
    assert r.status_code == 201
    assert r.headers["Content-Type"] == "application/json"
    s = r.json()
    assert re.fullmatch(r"[0-9a-f]{32}", s["session_id"])
    assert s["language"] == "python"
    assert s["state"] == "idle"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", s["created_at"])
    created = time.strptime(s["created_at"], "%Y-%m-%dT%H:%M:%SZ")
    expires = time.strptime(s["expires_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert time.mktime(expires) - time.mktime(created) == 900


def test_ids_are_unique(nginx):
    ids = {nginx.create() for _ in range(20)}
    assert len(ids) == 20
    for sid in ids:
        assert nginx.http.delete(f"{nginx.url}/session/{sid}").status_code \
            == 204


def test_create_accepts_ttl_and_language(nginx):
    r = nginx.http.post(nginx.url + "/session",
                        json={"language": "python", "ttl_seconds": 60})
    assert r.status_code == 201
    s = r.json()
    created = time.strptime(s["created_at"], "%Y-%m-%dT%H:%M:%SZ")
    expires = time.strptime(s["expires_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert time.mktime(expires) - time.mktime(created) == 60


@pytest.mark.parametrize("body", [
    b"{", b"[1, 2]", b"\"x\"", b"{\"ttl_seconds\": \"10\"}",
    b"{\"ttl_seconds\": 0}", b"{\"ttl_seconds\": 86401}",
    b"{\"language\": \"cobol\"}", b"{\"language\": 3}",
    b"{\"a\": 1, \"a\": 2}", b"{\"x\": \"\xff\"}",
])
def test_create_rejects_bad_bodies_with_400(nginx, body):
    r = nginx.http.post(nginx.url + "/session", data=body)
    assert r.status_code == 400
    assert error_of(r) == "bad_request"


@pytest.mark.parametrize("language, where", [
    ("python", "import os; print(os.getcwd(), os.environ['STAGE'], "
               "os.environ['QUOTED'])"),
    ("bash", "echo $PWD $STAGE $QUOTED"),
])
def test_create_takes_the_session_s_cwd_and_env(nginx, language, where):
    r = nginx.http.post(nginx.url + "/session", json={
        "language": language, "cwd": "proj/src",
        "env": {"STAGE": "dev", "QUOTED": "it's"}})
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    for _ in range(2):          # its own, run after run
        out = nginx.run_json(sid, where)
        assert out["stdout"].split()[1:] == ["dev", "it's"]
        assert out["stdout"].split()[0].endswith("/proj/src")
    assert out["execution_count"] == 2
    nginx.http.delete(f"{nginx.url}/session/{sid}")


@pytest.mark.parametrize("language", ["python", "bash"])
def test_a_cwd_the_session_cannot_make_is_400_and_no_session(nginx,
                                                            language):
    before = len(nginx.http.get(nginx.url + "/session").json()["sessions"])
    # (1,200 levels are too deep for Python's os.makedirs, not for mkdir -p)
    for cwd in ["/proc/not-here"] + ["y/" * 1200] * (language == "python"):
        r = nginx.http.post(nginx.url + "/session", json={
            "language": language, "cwd": cwd})
        assert r.status_code == 400, (cwd[:10], r.text)
        assert error_of(r) == "bad_request"
    assert len(nginx.http.get(nginx.url + "/session").json()[
        "sessions"]) == before


@pytest.mark.parametrize("body", [
    {"cwd": ""}, {"cwd": 5}, {"env": ["A=B"]}, {"env": {"A=B": "c"}},
    {"env": {"A": 1}}, {"cwd": "x", "from_checkpoint": "a" * 32},
])
def test_bad_cwd_and_env_on_create_are_400(nginx, body):
    r = nginx.http.post(nginx.url + "/session", json=body)
    assert r.status_code == 400
    assert error_of(r) == "bad_request"


def test_get_shows_the_session(nginx, session):
    r = nginx.http.get(f"{nginx.url}/session/{session}")
    assert r.status_code == 200
    s = r.json()
    assert s["session_id"] == session
    assert s["state"] == "idle"
    assert s["execution_count"] == 0
    nginx.run(session, "blob = bytearray(64 * 1024 * 1024)")
    s = nginx.http.get(f"{nginx.url}/session/{session}").json()
    assert s["execution_count"] == 1
    assert s["memory_bytes"] > 64 * 1024 * 1024
    assert set(s) >= {"session_id", "language", "state", "created_at",
                      "expires_at", "last_activity", "execution_count",
                      "memory_bytes"}


def test_list_shows_created_sessions(nginx, session):
    r = nginx.http.get(nginx.url + "/session")
    assert r.status_code == 200
    ids = [s["session_id"] for s in r.json()["sessions"]]
    assert session in ids


def test_delete_kills_the_process_and_forgets_the_session(nginx):
    sid = nginx.create()
    pid = pid_of(nginx, sid)
    assert nginx.http.delete(f"{nginx.url}/session/{sid}").status_code == 204
    wait_for(lambda: not running(pid), what="the session process to exit")
    r = nginx.http.get(f"{nginx.url}/session/{sid}")
    assert r.status_code == 404
    assert error_of(r) == "not_found"
    assert nginx.http.delete(f"{nginx.url}/session/{sid}").status_code == 404


@pytest.mark.parametrize("path", [
    "/session/nope",
    "/session/" + "0" * 32,
    "/session/" + "A" * 32,
    "/session/" + "0" * 31,
    "/session/" + "0" * 33,
    "/session/" + "0" * 32 + "/nothing",
    "/session/" + "0" * 32 + "/run/x",
])
def test_unknown_paths_and_ids_answer_404(nginx, path):
    r = nginx.http.get(nginx.url + path)
    assert r.status_code == 404
    assert error_of(r) == "not_found"


@pytest.mark.parametrize("path", [
    "/session/..%2f..%2fetc%2fpasswd",
    "/session/" + "0" * 30 + "%00a",
])
def test_paths_nginx_itself_refuses_harm_nothing(nginx, session, path):
    # nginx's URI parser answers these 400 before any module sees them
    assert nginx.http.get(nginx.url + path).status_code == 400
    assert nginx.run_json(session, "1")["result"] == {"text/plain": "1"}


@pytest.mark.parametrize("method,path,allow", [
    ("PUT", "/session", "GET, HEAD, POST"),
    ("DELETE", "/session", "GET, HEAD, POST"),
    ("PATCH", "/session", "GET, HEAD, POST"),
    ("POST", "/session/{id}", "GET, HEAD, DELETE"),
    ("PUT", "/session/{id}", "GET, HEAD, DELETE"),
    ("GET", "/session/{id}/run", "POST"),
    ("POST", "/session/{id}/namespace", "GET, HEAD"),
    ("HEAD", "/session/{id}/ws", "GET"),
    ("POST", "/session/checkpoints", "GET, HEAD"),
    ("GET", "/session/checkpoints/" + "a" * 32, "DELETE"),
])
def test_wrong_methods_answer_405_with_allow(nginx, session, method, path,
                                            allow):
    r = nginx.http.request(method, nginx.url + path.format(id=session))
    assert r.status_code == 405
    assert r.headers["Allow"] == allow
    if method != "HEAD":
        assert error_of(r) == "method_not_allowed"
        assert allow in r.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/session", "/session/{id}",
                                  "/session/{id}/namespace",
                                  "/session/checkpoints"])
def test_head_answers_wherever_get_does(nginx, session, path):
    url = nginx.url + path.format(id=session)
    got = nginx.http.get(url)
    head = nginx.http.head(url)
    assert head.status_code == got.status_code == 200
    assert head.headers["Content-Type"] == got.headers["Content-Type"]
    assert head.content == b""
    assert nginx.run_json(session, "1")["result"] == {"text/plain": "1"}


def test_body_over_client_max_body_size_answers_json_413(nginx, session):
    r = nginx.http.post(f"{nginx.url}/session/{session}/run",
                        json={"code": "x = '" + "a" * (2 * 1024 * 1024) + "'"})
    assert r.status_code == 413
    assert error_of(r) == "too_large"
    # the session is untouched
    assert nginx.run_json(session, "1 + 1")["result"]["text/plain"] == "2"


def test_chunked_body_over_the_limit_answers_json_413(nginx, session):
    def chunks():
        yield b'{"code": "'
        for _ in range(40):
            yield b"a" * 65536
        yield b'"}'

    r = nginx.http.post(f"{nginx.url}/session/{session}/run", data=chunks())
    assert r.status_code == 413
    assert error_of(r) == "too_large"


@pytest.mark.parametrize("body", [
    b"[" * 100000 + b"]" * 100000,                     # deeply nested
    b'{"language": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"ttl_seconds": 1e999}',
    b'{"ttl_seconds": 99999999999999999999999}',
    b"\xef\xbb\xbf{}",                                  # a BOM
    b"{}\x00",
])
def test_hostile_json_gets_400_and_harms_nothing(nginx, session, body):
    r = nginx.http.post(nginx.url + "/session", data=body)
    assert r.status_code in (400, 413)
    assert error_of(r) in ("bad_request", "too_large")
    assert nginx.run_json(session, "1 + 1")["result"] == {"text/plain": "2"}


def test_a_body_in_many_tiny_writes_is_read_whole(nginx):
    import socket
    body = b'{"ttl_seconds": 120}'
    s = socket.create_connection(("127.0.0.1", nginx.port))
    req = (b"POST /session HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
           b"Content-Type: application/json\r\nContent-Length: " +
           str(len(body)).encode() + b"\r\n\r\n" + body)
    for i in range(len(req)):
        s.sendall(req[i:i + 1])
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    assert data.startswith(b"HTTP/1.1 201")
    sid = json.loads(data.split(b"\r\n\r\n", 1)[1])["session_id"]
    assert nginx.http.delete(f"{nginx.url}/session/{sid}").status_code == 204
