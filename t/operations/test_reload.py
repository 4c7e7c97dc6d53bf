"""Operators reload and stop nginx while clients stream: a graceful reload
or quit lets a WebSocket run finish, as it does an SSE stream, then closes
the WebSocket with 1001 (going away); an idle WebSocket gets 1001 at once.
Real signals to a real nginx."""

import asyncio
import json
import threading

import pytest
import websockets

from helpers import Nginx, parse_sse, ws_url

# ten lines over about a second, each one flushed
COUNT = ("import time\n"
         "for i in range(10):\n"
         "    print(i, flush=True)\n"
         "    time.sleep(0.1)\n")
COUNTED = "".join(f"{i}\n" for i in range(10))


@pytest.fixture
def nginx():
    n = Nginx(workers=2).start()
    yield n
    n.check_and_clean()


async def run_through(n, sid, signal_name):
    """Start COUNT on a WebSocket, send nginx signal_name once the first
    line is out, and read to the end: (stdout, status, close code)."""
    async with websockets.connect(ws_url(n, sid)) as ws:
        await ws.send(json.dumps({"type": "run", "id": 1, "code": COUNT}))
        out, status, signalled = "", None, False
        while status is None:
            ev = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if ev["type"] == "stdout":
                out += ev["text"]
                if not signalled:
                    await asyncio.get_running_loop().run_in_executor(
                        None, n.send, signal_name)
                    signalled = True
            elif ev["type"] == "execution_complete":
                status = ev["status"]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 30)
        return out, status, closed.value.rcvd.code if closed.value.rcvd \
            else None


def test_websocket_runs_finish_across_ten_reloads(nginx):
    sid = nginx.create()
    for _ in range(10):
        out, status, code = asyncio.run(run_through(nginx, sid, "reload"))
        assert (out, status, code) == (COUNTED, "ok", 1001)
    # the session and the new workers are fine
    assert nginx.run_json(sid, "i")["result"] == {"text/plain": "9"}


def test_an_idle_websocket_gets_1001_on_reload(nginx):
    sid = nginx.create()

    async def go():
        async with websockets.connect(ws_url(nginx, sid)) as ws:
            await asyncio.get_running_loop().run_in_executor(
                None, nginx.send, "reload")
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 30)
            return closed.value.rcvd.code if closed.value.rcvd else None

    assert asyncio.run(go()) == 1001
    assert nginx.run_json(sid, "1 + 1")["result"] == {"text/plain": "2"}


def test_quit_lets_websocket_and_sse_runs_finish(nginx):
    a, b = nginx.create(), nginx.create()
    sse = {"events": []}
    started = threading.Event()

    def stream():
        r = nginx.http.post(f"{nginx.url}/session/{b}/run",
                            json={"code": COUNT}, stream=True)
        for ev in parse_sse(r):
            sse["events"].append(ev)
            started.set()

    t = threading.Thread(target=stream)
    t.start()
    assert started.wait(30)
    out, status, code = asyncio.run(run_through(nginx, a, "quit"))
    t.join(30)
    assert (out, status, code) == (COUNTED, "ok", 1001)
    events = sse["events"]
    assert "".join(d["text"] for e, d in events if e == "stdout") == COUNTED
    assert events[-1][1]["status"] == "ok"
    assert nginx.proc.wait(30) == 0
