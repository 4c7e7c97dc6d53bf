"""A real browser (headless Chromium through chromium-driver): what a web
IDE on the same origin does over the WebSocket API, and what a foreign web
page may not.  The pages are t/clients/*.html, served by the test nginx."""

import os
import urllib.parse

import pytest
import requests

from helpers import (BROWSER_SERVER, CLIENTS, Nginx, chromium, free_port,
                     title_is, wait_for)

KEY = "browser-key-0123456789abcdef"


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def keyed():
    n = Nginx(http_extra=f"pyrepl_api_key {KEY};",
              server_extra=BROWSER_SERVER +
              " access_log logs/access.log;").start()
    n.http.headers["Authorization"] = f"Bearer {KEY}"
    yield n
    n.check_and_clean()


def page(nginx, name, key="", **params):
    return f"{nginx.url}/t/{name}?{urllib.parse.urlencode(params)}#{key}"


def test_a_browser_passes_its_key_to_a_websocket_as_token(browser, keyed):
    sid = keyed.create()
    browser.get(page(keyed, "ws_page.html", sid=sid, code="print(6 * 7)"))
    assert title_is(browser, "closed") == "closed 1006"     # no key: 401
    browser.get("about:blank")
    browser.get(page(keyed, "ws_page.html", key=KEY, sid=sid,
                     code="print(6 * 7)"))
    assert title_is(browser, "done") == "done ok"
    assert browser.find_element("id", "out").text == "42"
    logs = os.path.join(keyed.prefix, "logs")

    def logged():
        with open(os.path.join(logs, "access.log")) as f:
            return f"/session/{sid}/ws?token=" in f.read()
    wait_for(logged, what="the WebSocket's access log line")
    # the key is in no log line, though the request line carried it
    for name in os.listdir(logs):
        with open(os.path.join(logs, name), errors="replace") as f:
            assert KEY not in f.read(), name
    keyed.http.delete(f"{keyed.url}/session/{sid}")


def sessions(nginx):
    return {s["session_id"] for s in
            nginx.http.get(nginx.url + "/session").json()["sessions"]}


def another_site(port):
    """A server block on port that serves t/clients/, as another site."""
    return (f"server {{ listen 127.0.0.1:{port}; "
            f"location /t/ {{ alias {CLIENTS}/; }} "
            "location = /favicon.ico { return 204; } "
            "client_header_timeout 2s; keepalive_timeout 2s; }")


def test_a_page_of_another_site_can_neither_create_nor_hijack(browser):
    site = free_port()
    n = Nginx(http_extra=another_site(site),
              server_extra=BROWSER_SERVER).start()
    try:
        sid = n.create()
        before = sessions(n)
        browser.get(f"http://127.0.0.1:{site}/t/cross_page.html?" +
                    urllib.parse.urlencode({"api": n.url, "sid": sid}))
        title_is(browser, "finished")
        assert browser.find_element("id", "out").text.splitlines() == [
            "simple blocked", "json blocked", "ws closed 1006"]
        assert sessions(n) == before              # nothing was created
        r = n.run_json(sid, "'hijacked' in globals()")
        assert r["result"] == {"text/plain": "False"}
    finally:
        browser.get("about:blank")
        n.check_and_clean()


def test_an_origin_pyrepl_cors_origin_allows_gets_cors(browser):
    site = free_port()
    origin = f"http://127.0.0.1:{site}"
    n = Nginx(http_extra=another_site(site),
              server_extra=BROWSER_SERVER +
              f" pyrepl_cors_origin {origin};").start()
    try:
        sid = n.create()
        browser.get(f"{origin}/t/cross_page.html?" +
                    urllib.parse.urlencode({"api": n.url, "sid": sid}))
        title_is(browser, "finished")
        assert browser.find_element("id", "out").text.splitlines() == [
            "simple 201", "json 201", "ws done ok"]
        r = n.run_json(sid, "hijacked")
        assert r["result"] == {"text/plain": "True"}
    finally:
        browser.get("about:blank")
        n.check_and_clean()


def test_preflights_and_foreign_origins_over_http(nginx_cors):
    n, origin = nginx_cors
    url = n.url + "/session"
    r = requests.options(url, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == origin
    assert r.headers["Access-Control-Allow-Methods"] == "GET, HEAD, POST"
    assert "Content-Type" in r.headers["Access-Control-Allow-Headers"]
    r = requests.options(url, headers={
        "Origin": "http://evil.example",
        "Access-Control-Request-Method": "POST"})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"
    r = requests.post(url, json={}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    # the server's own origin, and clients that send none, go on
    r = requests.post(url, json={}, headers={"Origin": n.url})
    assert r.status_code == 201 and "Access-Control-Allow-Origin" not in \
        r.headers
    assert requests.post(url, json={}).status_code == 201


def test_a_rebound_name_is_not_the_server_s_own_origin(nginx_cors):
    # DNS rebinding: a page of evil.example whose name now points at this
    # server sends Origin = Host = evil.example:PORT; only a server_name,
    # an IP address or localhost makes a Host the server's own
    n, _ = nginx_cors
    for host, status in ((f"evil.example:{n.port}", 403),
                         (f"localhost:{n.port}", 201),
                         (f"127.0.0.1:{n.port}", 201)):
        r = requests.post(n.url + "/session", json={},
                          headers={"Host": host, "Origin": f"http://{host}"})
        assert r.status_code == status, (host, r.text)
    named = Nginx(server_extra="server_name ide.test;").start()
    try:
        host = f"ide.test:{named.port}"
        r = requests.post(named.url + "/session", json={},
                          headers={"Host": host, "Origin": f"http://{host}"})
        assert r.status_code == 201, r.text
    finally:
        named.check_and_clean()


@pytest.fixture
def nginx_cors():
    origin = "https://ide.example.com"
    n = Nginx(http_extra=f"pyrepl_cors_origin {origin};").start()
    yield n, origin
    n.check_and_clean()


@pytest.mark.parametrize("value", ["ide.example.com", "https://x/path",
                                   "https://"])
def test_nginx_t_checks_pyrepl_cors_origin(value):
    n = Nginx(http_extra=f"pyrepl_cors_origin {value};")
    try:
        r = n.test_config()
        assert r.returncode != 0
        assert "an origin is scheme://host[:port]" in r.stderr, r.stderr
    finally:
        n.check_and_clean()
