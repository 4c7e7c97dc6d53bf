"""A real browser (headless Chromium through chromium-driver): what a web
IDE on the same origin does over the WebSocket API, and what a foreign web
page may not.  The pages are t/clients/*.html, served by the test nginx."""

import os
import urllib.parse

import pytest

from helpers import BROWSER_SERVER, Nginx, chromium, title_is, wait_for

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
