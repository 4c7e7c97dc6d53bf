"""pyrepl_keepalive: quiet streams through a proxy.  nginx as a reverse
proxy in front (proxy_read_timeout 2s, as the default 60s but shorter)
cuts a connection it hears nothing on; PyREPL sends SSE ": ping" comments
and WebSocket pings every pyrepl_keepalive (1s here), and closes a
WebSocket whose client stopped answering."""

import asyncio
import json
import socket

import pytest
import requests
import websockets

from helpers import Nginx, parse_sse, stdout_of, ws_url
from test_websocket import handshake, read_close

QUIET = "import time\ntime.sleep(4)\nprint('still here')"


def proxy(port, upstream):
    """A server block on port: nginx proxying to upstream, as an operator
    puts one in front, with a short proxy_read_timeout."""
    return (f"server {{ listen 127.0.0.1:{port}; location / {{ "
            f"proxy_pass http://127.0.0.1:{upstream}; "
            "proxy_http_version 1.1; proxy_buffering off; "
            "proxy_set_header Upgrade $http_upgrade; "
            "proxy_set_header Connection upgrade; "
            "proxy_read_timeout 2s; } }")


@pytest.fixture(scope="module")
def fronted():
    from helpers import free_port
    n = Nginx()
    front = free_port()
    n.write_conf(http_extra="pyrepl_keepalive 1s; " + proxy(front, n.port))
    n.start()
    yield n, f"http://127.0.0.1:{front}"
    n.check_and_clean()


def test_a_quiet_sse_run_lives_through_a_proxy(fronted):
    n, front = fronted
    sid = n.create()
    r = requests.post(f"{front}/session/{sid}/run", json={"code": QUIET},
                      stream=True, timeout=30)
    events = list(parse_sse(r))
    assert stdout_of(events) == "still here\n"
    assert events[-1][1]["status"] == "ok"


def test_a_quiet_websocket_run_lives_through_a_proxy(fronted):
    n, front = fronted
    sid = n.create()

    async def go():
        async with websockets.connect(front.replace("http", "ws") +
                                      f"/session/{sid}/ws") as ws:
            await ws.send(json.dumps({"type": "run", "id": 1,
                                      "code": QUIET}))
            events = []
            while not events or events[-1]["type"] != "execution_complete":
                events.append(json.loads(await asyncio.wait_for(
                    ws.recv(), 30)))
            return events

    events = asyncio.run(go())
    assert "".join(e["text"] for e in events if e["type"] == "stdout") == \
        "still here\n"
    assert events[-1]["status"] == "ok"


def test_a_websocket_client_that_stops_answering_is_closed(fronted):
    n, _ = fronted
    sid = n.create()
    s, head = handshake(n, sid)      # a client that reads, but never pongs
    assert head.startswith(b"HTTP/1.1 101")
    s.settimeout(10)
    assert read_close(s) == 1001
    s.close()
    assert n.run_json(sid, "1")["result"] == {"text/plain": "1"}


def test_nginx_t_takes_pyrepl_keepalive_as_a_time():
    n = Nginx(http_extra="pyrepl_keepalive soon;")
    try:
        r = n.test_config()
        assert r.returncode != 0 and "invalid value" in r.stderr, r.stderr
    finally:
        n.check_and_clean()
