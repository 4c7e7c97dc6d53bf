"""API keys and tenancy: 401 without a valid key, sessions visible only to
the key that created them, keys from a file, keys never in the logs."""

import os

import pytest
import requests

from helpers import Nginx
from test_websocket import handshake

KEY_A = "alpha-key-0123456789abcdef"
KEY_B = "bravo-key-0123456789abcdef"
KEY_C = "charlie-key-0123456789abcd"


@pytest.fixture(scope="module")
def nginx():
    # info level: nginx's own debug log prints request headers verbatim
    n = Nginx(workers=2, log_level="info")
    keyfile = os.path.join(n.prefix, "conf", "keys")
    with open(keyfile, "w") as f:
        f.write(f"# tenants\n{KEY_B}\n\n  {KEY_C}  \n")
    n.write_conf(http_extra=f"pyrepl_api_key {KEY_A}; "
                            f"pyrepl_api_key_file {keyfile};")
    n.start()
    yield n
    n.check_and_clean()


def as_(key, header="bearer"):
    s = requests.Session()
    s.headers["Authorization" if header == "bearer" else "X-API-Key"] = \
        ("Bearer " + key) if header == "bearer" else key
    return s


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong-key-0123456789abcdef"},
    {"Authorization": "Basic " + KEY_A}, {"X-API-Key": KEY_A[:-1]},
    {"X-API-Key": KEY_A + "x"}, {"Authorization": "Bearer"},
])
def test_requests_without_a_valid_key_get_401(nginx, headers):
    for method, path in (("POST", "/session"), ("GET", "/session"),
                         ("GET", "/session/" + "a" * 32)):
        r = requests.request(method, nginx.url + path, headers=headers)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "unauthorized"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("key,header", [(KEY_A, "bearer"), (KEY_B, "x-api"),
                                         (KEY_C, "bearer")])
def test_each_key_works_in_either_header(nginx, key, header):
    s = as_(key, header)
    r = s.post(nginx.url + "/session")
    assert r.status_code == 201
    sid = r.json()["session_id"]
    r = s.post(f"{nginx.url}/session/{sid}/run", json={"code": "6 * 7"},
               headers={"Accept": "application/json"})
    assert r.json()["result"] == {"text/plain": "42"}
    assert s.delete(f"{nginx.url}/session/{sid}").status_code == 204


def test_a_session_is_invisible_to_other_tenants(nginx):
    a, b = as_(KEY_A), as_(KEY_B, "x-api")
    sid = a.post(nginx.url + "/session").json()["session_id"]
    a.post(f"{nginx.url}/session/{sid}/run", json={"code": "secret = 1"},
           headers={"Accept": "application/json"})
    base = f"{nginx.url}/session/{sid}"
    unknown = "0123456789abcdef" * 2
    for method, path, body in (("GET", "", None), ("DELETE", "", None),
                               ("POST", "/run", {"code": "secret"}),
                               ("POST", "/renew", {"ttl_seconds": 60}),
                               ("POST", "/interrupt", None),
                               ("POST", "/input", {"value": "x"}),
                               ("GET", "/namespace", None),
                               ("POST", "/checkpoint", None),
                               ("GET", "/ws", None)):
        r = b.request(method, base + path, json=body)
        assert r.status_code == 404, (method, path)
        # word for word what an id that does not exist gets
        u = b.request(method, f"{nginx.url}/session/{unknown}{path}",
                      json=body)
        assert u.status_code == 404, (method, path)
        assert r.json() == {"error": {"code": "not_found",
                                      "message": f"no session {sid}"}}
        assert u.json() == {"error": {"code": "not_found",
                                      "message": f"no session {unknown}"}}
        assert r.headers["Content-Length"] == u.headers["Content-Length"]
    assert sid not in [s["session_id"] for s in
                       b.get(nginx.url + "/session").json()["sessions"]]
    assert sid in [s["session_id"] for s in
                   a.get(nginx.url + "/session").json()["sessions"]]
    # still alive and untouched for its owner
    r = a.post(base + "/run", json={"code": "secret"},
               headers={"Accept": "application/json"})
    assert r.json()["result"] == {"text/plain": "1"}
    assert a.delete(base).status_code == 204


def test_keys_never_reach_the_log(nginx):
    requests.get(nginx.url + "/session",
                 headers={"Authorization": "Bearer wrong-key-0123456789ab"})
    as_(KEY_A).get(nginx.url + "/session")
    log = nginx.error_log()
    assert "[notice]" in log         # the log is there and was written
    for key in (KEY_A, KEY_B, KEY_C):
        assert key not in log


def test_a_token_is_taken_on_websocket_upgrades_alone_and_never_logged():
    # the browser's way is in test_browser.py; here what else a client may
    # send: a token beside a header key, a token on a plain request
    secret = "token-that-must-not-be-logged-0123"
    n = Nginx(http_extra=f"pyrepl_api_key {KEY_A};",
              server_extra="access_log logs/access.log;").start()
    try:
        sid = as_(KEY_A).post(n.url + "/session").json()["session_id"]
        r = requests.get(f"{n.url}/session/{sid}?token={KEY_A}")
        assert r.status_code == 401                 # not an upgrade
        s, head = handshake(n, sid, b"Authorization: Bearer " +
                            KEY_A.encode() + b"\r\n",
                            path=f"/session/{sid}/ws?token={secret}")
        assert head.startswith(b"HTTP/1.1 101")
        s.close()
        s, head = handshake(n, sid, path=f"/session/{sid}/ws?token=" +
                            KEY_A.replace("-", "%2D"))
        assert head.startswith(b"HTTP/1.1 101")     # percent-decoded
        s.close()
        # only a WebSocket upgrade takes it; every token is blanked anyway,
        # a second one, and one refused for its Origin, too
        r = requests.get(f"{n.url}/session/{sid}?token={KEY_A}",
                         headers={"Upgrade": "x", "Connection": "upgrade"})
        assert r.status_code == 401
        r = requests.get(f"{n.url}/session?token=x&token={secret}")
        assert r.status_code == 401
        s, head = handshake(n, sid, b"Origin: http://evil.example\r\n",
                            path=f"/session/{sid}/ws?token={KEY_A}")
        assert head.startswith(b"HTTP/1.1 403")
        s.close()
        n.stop()
        logs = os.path.join(n.prefix, "logs")
        with open(os.path.join(logs, "access.log")) as f:
            access = f.read()
        assert "ws?token=****" in access
        for name in os.listdir(logs):
            with open(os.path.join(logs, name), errors="replace") as f:
                text = f.read()
            assert secret not in text and KEY_A not in text, name
    finally:
        n.check_and_clean()


@pytest.mark.parametrize("line,message", [
    ("pyrepl_api_key short;", "must be 16 to 256 characters"),
    ("pyrepl_api_key \"with space 0123456789\";", "printable ASCII"),
    ("pyrepl_api_key_file /nonexistent/keys;", "cannot open"),
])
def test_nginx_t_rejects_bad_keys(line, message):
    n = Nginx(http_extra=line)
    try:
        r = n.test_config()
        assert r.returncode != 0
        assert message in r.stderr
        assert "short" not in r.stderr.split("must be")[0][-20:]
    finally:
        n.check_and_clean()


@pytest.mark.parametrize("where", ["conf", "key_file"])
def test_nginx_t_warns_when_others_can_read_the_keys(where):
    n = Nginx()
    try:
        if where == "conf":
            n.write_conf(http_extra=f"pyrepl_api_key {KEY_A};")
            path = n.conf_path
        else:
            path = os.path.join(n.prefix, "conf", "keys")
            with open(path, "w") as f:
                f.write(KEY_A + "\n")
            n.write_conf(http_extra=f"pyrepl_api_key_file {path};")
        os.chmod(path, 0o644)
        r = n.test_config()
        assert r.returncode == 0, r.stderr
        assert "[warn]" in r.stderr and path in r.stderr, r.stderr
        assert "mode 0644" in r.stderr and "0600" in r.stderr, r.stderr
        assert KEY_A not in r.stderr
        os.chmod(path, 0o600)
        r = n.test_config()
        assert r.returncode == 0 and "[warn]" not in r.stderr, r.stderr
    finally:
        n.check_and_clean()
