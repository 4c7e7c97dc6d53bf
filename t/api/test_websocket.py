"""The WebSocket API: runs and events over one connection, the msgpack
subprotocol, interrupt and disconnect, and RFC 6455 enforcement checked
with raw sockets (unmasked, bad opcode, oversized, truncated, bad UTF-8)."""

import asyncio
import base64
import json
import os
import socket
import select
import struct

import msgpack
import pytest
import websockets

from helpers import PRELOAD, Nginx, wait_for, ws_url


async def collect_run(ws, run_id, code, binary=False, **extra):
    msg = {"type": "run", "id": run_id, "code": code, **extra}
    await ws.send(msgpack.packb(msg) if binary else json.dumps(msg))
    events = []
    while True:
        raw = await asyncio.wait_for(ws.recv(), 30)
        ev = msgpack.unpackb(raw) if binary else json.loads(raw)
        events.append(ev)
        if ev["type"] == "execution_complete":
            return events


def run(coro):
    return asyncio.run(coro)


async def recv(ws):
    """The next JSON message, within 10 s."""
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


def test_runs_and_events_over_one_connection(nginx, session):
    async def go():
        async with websockets.connect(ws_url(nginx, session)) as ws:
            first = await collect_run(ws, "a", "x = 21\nprint('hi')")
            second = await collect_run(ws, "b", "x * 2")
            return first, second

    first, second = run(go())
    # print() writes "hi" and "\n" apart: they may come as one event or two
    types = [e["type"] for e in first]
    assert types[0] == "init" and types[-1] == "execution_complete"
    assert set(types[1:-1]) == {"stdout"}
    assert all(e["id"] == "a" for e in first)
    assert "".join(e["text"] for e in first[1:-1]) == "hi\n"
    assert first[0]["session_id"] == session
    assert [e["type"] for e in second] == ["init", "result",
                                           "execution_complete"]
    assert second[1]["data"]["text/plain"] == "42"
    assert second[2]["status"] == "ok" and second[2]["id"] == "b"


def test_msgpack_subprotocol_uses_binary_frames(nginx, session):
    async def go():
        async with websockets.connect(ws_url(nginx, session),
                                      subprotocols=["pyrepl.msgpack"]) as ws:
            assert ws.subprotocol == "pyrepl.msgpack"
            await ws.send(msgpack.packb({"type": "run", "id": 7,
                                         "code": "'é' * 3"}))
            raw = await ws.recv()
            assert isinstance(raw, bytes)
            events = [msgpack.unpackb(raw)]
            while events[-1]["type"] != "execution_complete":
                events.append(msgpack.unpackb(await ws.recv()))
            return events

    events = run(go())
    result = [e for e in events if e["type"] == "result"][0]
    assert result["data"]["text/plain"] == "'ééé'"
    assert result["id"] == 7


def test_errors_and_bad_messages_are_answered_not_fatal(nginx, session):
    async def go():
        async with websockets.connect(ws_url(nginx, session)) as ws:
            await ws.send("not json")
            bad = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "dance"}))
            unknown = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "run", "id": 1, "code": 5}))
            badcode = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "input", "value": "x"}))
            noinput = json.loads(await ws.recv())
            ev = await collect_run(ws, 2, "1/0")
            return bad, unknown, badcode, noinput, ev

    bad, unknown, badcode, noinput, ev = run(go())
    assert bad["type"] == "error" and bad["error"]["code"] == "bad_request"
    assert unknown["error"]["code"] == "bad_request"
    assert badcode["error"]["code"] == "bad_request" and badcode["id"] == 1
    assert noinput["error"]["code"] == "no_pending_input"
    assert [e for e in ev if e["type"] == "error"][0]["ename"] == \
        "ZeroDivisionError"
    assert ev[-1]["status"] == "error"


def test_a_second_run_while_one_goes_is_refused(nginx, session):
    async def go():
        async with websockets.connect(ws_url(nginx, session)) as ws:
            await ws.send(json.dumps({"type": "run", "id": 1, "code":
                                      "import time; time.sleep(0.5)"}))
            assert json.loads(await ws.recv())["type"] == "init"
            await ws.send(json.dumps({"type": "run", "id": 2, "code": "1"}))
            refused = json.loads(await ws.recv())
            done = json.loads(await ws.recv())
            return refused, done

    refused, done = run(go())
    assert refused == {"type": "error", "id": 2, "error": {
        "code": "session_busy", "message": "a run is going on"}}
    assert done["type"] == "execution_complete" and done["id"] == 1


def test_an_input_nothing_waits_for_is_refused_during_a_run(nginx, session):
    # as POST .../input answers 409 no_pending_input: a run that has not
    # asked yet, then a request_id that is not the pending input()'s
    async def go():
        async with websockets.connect(ws_url(nginx, session)) as ws:
            await ws.send(json.dumps({"type": "run", "id": 1, "code":
                                      "print('asleep', flush=True)\n"
                                      "import time; time.sleep(0.3)\n"
                                      "print(input('name? '))"}))
            seen = [await recv(ws)]
            while seen[-1]["type"] != "stdout":     # asleep: nothing asked
                seen.append(await recv(ws))
            await ws.send(json.dumps({"type": "input", "id": "early",
                                      "value": "x"}))
            while seen[-1]["type"] != "error":
                seen.append(await recv(ws))
            early = seen.pop()
            while seen[-1]["type"] != "input_request":
                seen.append(await recv(ws))
            await ws.send(json.dumps({"type": "input", "id": "wrong",
                                      "value": "x", "request_id": "other"}))
            wrong = await recv(ws)
            await ws.send(json.dumps({"type": "input", "value": "Ada",
                                      "request_id":
                                      seen[-1]["request_id"]}))
            while seen[-1]["type"] != "execution_complete":
                seen.append(await recv(ws))
            return early, wrong, seen

    early, wrong, seen = run(go())
    for refused, mid in ((early, "early"), (wrong, "wrong")):
        assert refused["type"] == "error" and refused["id"] == mid
        assert refused["error"]["code"] == "no_pending_input"
    assert "".join(e["text"] for e in seen if e["type"] == "stdout") == \
        "asleep\nAda\n"
    assert seen[-1]["status"] == "ok"


def test_interrupt_message_stops_the_run(nginx, session):
    async def go():
        async with websockets.connect(ws_url(nginx, session)) as ws:
            await ws.send(json.dumps({"type": "run", "id": 1, "code":
                                      "print('go', flush=True)\n"
                                      "while True: pass"}))
            assert json.loads(await ws.recv())["type"] == "init"
            assert json.loads(await ws.recv())["type"] == "stdout"
            await ws.send(json.dumps({"type": "interrupt"}))
            events = []
            while not events or events[-1]["type"] != "execution_complete":
                events.append(json.loads(await ws.recv()))
            after = await collect_run(ws, 2, "'alive'")
            return events, after

    events, after = run(go())
    assert events[-1]["status"] == "interrupted"
    assert [e for e in after if e["type"] == "result"][0]["data"] == \
        {"text/plain": "'alive'"}


def test_closing_the_socket_interrupts_the_run(nginx, session):
    async def go():
        ws = await websockets.connect(ws_url(nginx, session))
        await ws.send(json.dumps({"type": "run", "id": 1, "code":
                                  "import time\nstopped = False\n"
                                  "try:\n    print('go', flush=True)\n"
                                  "    time.sleep(60)\n"
                                  "except KeyboardInterrupt:\n"
                                  "    stopped = True"}))
        assert json.loads(await ws.recv())["type"] == "init"
        assert json.loads(await ws.recv())["type"] == "stdout"
        ws.transport.abort()

    run(go())

    def stopped():
        r = nginx.http.post(f"{nginx.url}/session/{session}/run",
                            json={"code": "stopped"},
                            headers={"Accept": "application/json"})
        return r.status_code == 200 and r.json()["status"] == "ok" and r.json()

    assert wait_for(stopped, what="the run to stop")["result"] == \
        {"text/plain": "True"}


def test_output_is_streamed_and_complete_with_a_slow_reader(nginx, session):
    async def go():
        async with websockets.connect(ws_url(nginx, session),
                                      max_size=None) as ws:
            await ws.send(json.dumps({"type": "run", "id": 1, "code":
                                      "for i in range(200000): print(i)"}))
            out = []
            while True:
                ev = json.loads(await ws.recv())
                if ev["type"] == "stdout":
                    out.append(ev["text"])
                    await asyncio.sleep(0)
                if ev["type"] == "execution_complete":
                    return "".join(out), ev

    out, done = run(go())
    assert done["status"] == "ok"
    assert out.splitlines() == [str(i) for i in range(200000)]


# raw RFC 6455 ----------------------------------------------------------

def handshake(nginx, sid, extra=b"", key=None, path=None):
    s = socket.create_connection(("127.0.0.1", nginx.port), timeout=10)
    key = key if key is not None else base64.b64encode(os.urandom(16))
    path = path or f"/session/{sid}/ws"
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\n"
              b"Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: " + key + b"\r\n"
              b"Sec-WebSocket-Version: 13\r\n" + extra + b"\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            break
        head += chunk
    return s, head


def frame(opcode, payload, fin=True, mask=True, rsv=0):
    b0 = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    if n < 126:
        hdr = bytes([b0, (0x80 if mask else 0) | n])
    elif n < 65536:
        hdr = bytes([b0, (0x80 if mask else 0) | 126]) + struct.pack(">H", n)
    else:
        hdr = bytes([b0, (0x80 if mask else 0) | 127]) + struct.pack(">Q", n)
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    return hdr + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_close(s):
    """Read server frames until a close; return its status code."""
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError("connection closed without a close frame")
        data += chunk
        while len(data) >= 2:
            op, n = data[0] & 0x0F, data[1] & 0x7F
            off = 2
            if n == 126:
                n, off = struct.unpack(">H", data[2:4])[0], 4
            elif n == 127:
                n, off = struct.unpack(">Q", data[2:10])[0], 10
            if len(data) < off + n:
                break
            payload, data = data[off:off + n], data[off + n:]
            if op == 8:
                return struct.unpack(">H", payload[:2])[0]


def test_handshake_answers_101_with_the_accept_key(nginx, session):
    s, head = handshake(nginx, session, key=b"dGhlIHNhbXBsZSBub25jZQ==")
    assert head.startswith(b"HTTP/1.1 101")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    s.sendall(frame(8, struct.pack(">H", 1000)))
    assert read_close(s) == 1000
    s.close()


@pytest.mark.parametrize("name,data,code", [
    ("unmasked", frame(1, b'{"type":"interrupt"}', mask=False), 1002),
    ("bad opcode", frame(3, b"x"), 1002),
    ("rsv bit", frame(1, b"{}", rsv=0x40), 1002),
    ("fragmented ping", frame(9, b"x", fin=False), 1002),
    ("oversized", frame(2, b"\0" * (2 * 1024 * 1024)), 1009),
    ("bad utf-8", frame(1, b"\xff\xfe"), 1007),
    ("continuation first", frame(0, b"x"), 1002),
])
def test_protocol_violations_close_with_the_right_code(nginx, session, name,
                                                       data, code):
    s, head = handshake(nginx, session)
    assert head.startswith(b"HTTP/1.1 101")
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert read_close(s) == code
    s.close()
    # the session and the worker are fine
    assert nginx.run_json(session, "1 + 1")["result"] == {"text/plain": "2"}


def test_a_truncated_frame_then_hangup_harms_nothing(nginx, session):
    s, head = handshake(nginx, session)
    s.sendall(frame(1, b'{"type": "run", "code": "1"}')[:9])
    s.close()
    assert nginx.run_json(session, "1 + 1")["result"] == {"text/plain": "2"}


def test_fragmented_message_with_a_ping_between(nginx, session):
    s, head = handshake(nginx, session)
    msg = json.dumps({"type": "run", "id": "f", "code": "40 + 2"}).encode()
    s.sendall(frame(1, msg[:10], fin=False) + frame(9, b"hey") +
              frame(0, msg[10:20], fin=False) + frame(0, msg[20:]))
    data = b""
    while b"execution_complete" not in data:
        data += s.recv(65536)
    assert b'"text/plain":"42"' in data
    assert b"\x8a\x03hey" in data          # the pong, echoing the ping
    s.close()


@pytest.mark.parametrize("extra,key,status", [
    (b"", b"short", b"400"),
    (b"Sec-WebSocket-Version: 8\r\n", None, b"400"),
])
def test_bad_handshakes_answer_400(nginx, session, extra, key, status):
    if extra:
        s = socket.create_connection(("127.0.0.1", nginx.port), timeout=10)
        s.sendall(b"GET /session/" + session.encode() + b"/ws HTTP/1.1\r\n"
                  b"Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" + extra +
                  b"\r\n")
        head = s.recv(4096)
    else:
        s, head = handshake(nginx, session, key=key)
    assert head.split(b" ")[1] == status
    s.close()


def test_plain_get_of_the_ws_route_is_400(nginx, session):
    r = nginx.http.get(f"{nginx.url}/session/{session}/ws")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "bad_request"


def test_ws_of_an_unknown_session_is_404(nginx):
    s, head = handshake(nginx, "c" * 32)
    assert head.split(b" ")[1] == b"404"
    s.close()


def test_a_client_that_stops_reading_is_dropped_at_send_timeout():
    n = Nginx(server_extra="send_timeout 1s;").start()
    try:
        sid = n.create()
        s, head = handshake(n, sid)
        assert head.startswith(b"HTTP/1.1 101")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        code = ("import time\nstopped = False\ntry:\n"
                "    while True: print('x' * 1000)\n"
                "except KeyboardInterrupt:\n    stopped = True\n")
        s.sendall(frame(1, json.dumps({"type": "run", "id": 1,
                                       "code": code}).encode()))
        # the client never reads: the server gives up on it, and the
        # connection's end interrupts the run

        def stopped():
            r = n.http.post(f"{n.url}/session/{sid}/run",
                            json={"code": "stopped"},
                            headers={"Accept": "application/json"})
            return r.status_code == 200 and r.json()

        assert wait_for(stopped, timeout=30, what="the run to stop")[
            "result"] == {"text/plain": "True"}
        assert "WebSocket client timed out" in n.error_log()
        s.close()
    finally:
        n.check_and_clean()


@pytest.mark.skipif(bool(PRELOAD), reason="AddressSanitizer's quarantine keeps "
                    "what is freed: the worker's RSS says nothing there")
def test_a_ping_flood_that_reads_no_pong_costs_the_worker_little():
    # each ping is answered with a 2-byte pong; what a queued frame costs
    # besides its bytes counts too, so nginx stops reading soon
    flood_without_reading(frame(9, b"") * 65536)


def flood_without_reading(chunk):
    """Send chunk after chunk of client frames to a session's WebSocket and
    read nothing: nginx must stop reading, its worker grow little, and the
    session work on."""
    n = Nginx(workers=1).start()
    try:
        sid = n.create()
        s, head = handshake(n, sid)
        assert head.startswith(b"HTTP/1.1 101")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        before = worker_rss_kb(n)
        s.setblocking(False)
        sent, pending = 0, b""
        while sent < 64 << 20:
            pending = pending or chunk
            try:
                k = s.send(pending)
                sent += k
                pending = pending[k:]
            except BlockingIOError:
                # nginx stops reading once its answers pile up
                r, w, _ = select.select([], [s], [], 2)
                if not w:
                    break
        grown = worker_rss_kb(n) - before
        assert sent < 64 << 20, "nginx kept reading"
        assert grown < 32 * 1024, f"the worker grew by {grown} kB"
        s.close()
        assert n.run_json(sid, "1 + 1")["result"] == {"text/plain": "2"}
    finally:
        n.check_and_clean()


def worker_rss_kb(n):
    with open(f"/proc/{n.worker_pids()[0]}/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0])


@pytest.mark.skipif(bool(PRELOAD), reason="AddressSanitizer's quarantine keeps "
                    "what is freed: the worker's RSS says nothing there")
def test_a_client_that_never_reads_its_answers_costs_the_worker_little():
    # every bad message is answered; a client that sends them without
    # end and reads nothing must not make the worker keep the answers
    flood_without_reading(frame(1, b"{}") * 4096)


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(l for l in f if l.startswith("VmRSS")).split()[1])


@pytest.mark.skipif(PRELOAD is not None,
                    reason="a sanitizer keeps freed memory in quarantine")
def test_input_frames_of_a_long_run_cost_the_worker_nothing_after():
    """Every frame to a session used to stay in the run's memory until the
    run ended: 200 input messages of 900 kB during one run made the nginx
    worker hold 180 MB.  Their bytes go once written."""
    n = Nginx(workers=1).start()
    try:
        sid = n.create()
        worker, = n.worker_pids()

        async def go():
            async with websockets.connect(ws_url(n, sid),
                                          max_size=None) as ws:
                await ws.send(json.dumps({"type": "run", "id": "r", "code":
                                          "import time\n"
                                          "while True: time.sleep(0.05)"}))
                assert json.loads(await ws.recv())["type"] == "init"
                before = rss_kb(worker)
                flood = json.dumps({"type": "input", "id": "i",
                                    "value": "v" * 900000})
                for _ in range(200):
                    await ws.send(flood)
                refused = 0
                while refused < 200:           # each answered: all sent
                    m = json.loads(await asyncio.wait_for(ws.recv(), 30))
                    refused += m["type"] == "error"
                grown = rss_kb(worker) - before
                await ws.send(json.dumps({"type": "interrupt"}))
                while json.loads(await asyncio.wait_for(
                        ws.recv(), 10))["type"] != "execution_complete":
                    pass
                return grown

        grown = asyncio.run(go())
        assert grown < 50 * 1024, f"the worker grew by {grown} kB"
        assert n.run_json(sid, "1 + 1")["result"] == {"text/plain": "2"}
    finally:
        n.check_and_clean()
