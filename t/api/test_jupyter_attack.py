"""pyrepl_dialect jupyter attacked: the channels WebSocket fed hostile
messages (v1 binary frames with lying offsets, messages that are none,
odd msg_types, floods of execute requests), kernels asked for under other
keys and other forms of their id; after each, nginx, the kernel and
another kernel still work and no worker crashed."""

import asyncio
import json
import struct

import pytest
import requests
import websockets

import helpers
from helpers import wait_for
from test_jupyter import KEY, OTHER, auth, message
from test_jupyter import jup  # noqa: F401  (its nginx, a fixture)

V1 = "v1.kernel.websocket.jupyter.org"


def new_kernel(jup, key=KEY):
    r = requests.post(jup.url + "/api/kernels", headers=auth(key), json={})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def channels(jup, kid, key=KEY):
    return (f"ws://127.0.0.1:{jup.port}/api/kernels/{kid}/channels"
            f"?token={key}")


def execute(code, **content):
    return message("execute_request", content={"code": code, **content})


async def until(ws, pred, timeout=30):
    """Messages (decoded) up to and including the first pred accepts."""
    got = []
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        got.append(m)
        if pred(m):
            return got


def reply_to(request):
    mid = request["header"]["msg_id"]
    return lambda m: (m["channel"] == "shell"
                      and m["parent_header"].get("msg_id") == mid)


def idle_after(request):
    mid = request["header"]["msg_id"]
    return lambda m: (m["msg_type"] == "status"
                      and m["content"]["execution_state"] == "idle"
                      and m["parent_header"].get("msg_id") == mid)


def takes_a_run(jup, kid):
    """Whether the kernel takes a run now (not 409: the session still
    finishes a run its closed socket interrupted)."""
    r = requests.post(f"{jup.url}/session/{kid.replace('-', '')}/run",
                      json={"code": "x = 'after'"},
                      headers={"Authorization": "Bearer " + KEY,
                               "Accept": "application/json"})
    assert r.status_code in (200, 409), r.text
    return r.status_code == 200


def still_works(jup, kid):
    """The kernel runs code over a new socket once it takes runs again,
    and so does a new kernel (the supervisor and the pool work)."""
    wait_for(lambda: takes_a_run(jup, kid), what="the kernel to take a run")

    async def go(k):
        async with websockets.connect(channels(jup, k)) as ws:
            request = execute("6 * 7")
            await ws.send(json.dumps(request))
            got = await until(ws, idle_after(request))
            return [m["content"]["data"]["text/plain"] for m in got
                    if m["msg_type"] == "execute_result"]

    for k in (kid, new_kernel(jup)):
        assert asyncio.run(go(k)) == ["42"]
    assert "exited on signal" not in jup.error_log()


async def closed_by_a_flood(ws, requests_):
    """Send requests_ behind a run waiting on input(): the close code and
    reason the socket ends with, or None if it is still open."""
    first = execute("input('wait? ')", allow_stdin=True)
    await ws.send(json.dumps(first))
    await until(ws, lambda m: m["msg_type"] == "input_request")
    try:
        for request in requests_:
            await ws.send(json.dumps(request))
        info = message("kernel_info_request")
        await ws.send(json.dumps(info))
        await until(ws, reply_to(info), 10)
    except websockets.exceptions.ConnectionClosed as e:
        return e.rcvd.code, e.rcvd.reason
    return None


def test_a_flood_of_execute_requests_behind_a_run_closes_the_socket(jup):
    """While a run waits on input(), 1001 more execute requests: at most
    1000 wait, and the socket is closed with 1008."""
    kid = new_kernel(jup)

    async def go():
        async with websockets.connect(channels(jup, kid)) as ws:
            return await closed_by_a_flood(
                ws, [execute("pass") for _ in range(1001)])

    assert asyncio.run(go()) == (1008, "too many requests waiting")
    still_works(jup, kid)


def test_large_execute_requests_behind_a_run_are_bounded_in_bytes(jup):
    """Fewer requests but large ones: they all waited (twelve of 900 kB
    behind a run: 11 MB in the worker, a thousand of 1 MB as many GB).
    8 MB of frames may wait besides the first; past that the socket is
    closed with 1008."""
    kid = new_kernel(jup)
    big = "#" + "x" * 900000 + "\nprint('big')"

    async def go():
        async with websockets.connect(channels(jup, kid)) as ws:
            return await closed_by_a_flood(
                ws, [execute(big) for _ in range(12)])

    assert asyncio.run(go()) == (1008, "too many requests waiting")
    still_works(jup, kid)


@pytest.mark.parametrize("name", [
    "x" * 200,                          # past the reply's old 64 bytes
    "a" * 62 + "\u00e9",                # cut there, inside a character
])
def test_a_long_request_type_is_answered_by_its_whole_reply(jup, name):
    """A request the kernel does not serve is answered by its reply,
    failed: the reply's name was cut to 63 bytes, so a long one got a
    reply that is none (no "_reply"), and one cut inside a UTF-8
    character closed the socket ("out of memory")."""
    kid = new_kernel(jup)

    async def go():
        async with websockets.connect(channels(jup, kid),
                                      subprotocols=[V1]) as ws:
            request = message(name + "_request")
            header = json.dumps(request["header"]).encode()
            await ws.send(v1_frame([b"shell", header, b"{}", b"{}", b"{}"]))
            got = []
            while True:
                got.append(v1_parts(await asyncio.wait_for(ws.recv(), 10)))
                if got[-1][0] == "shell":
                    return got

    *_, (channel, header, parent, content) = asyncio.run(go())
    assert header["msg_type"] == name + "_reply"
    assert content["status"] == "error"
    still_works(jup, kid)


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(l for l in f if l.startswith("VmRSS")).split()[1])


@pytest.mark.skipif(helpers.PRELOAD is not None,
                    reason="a sanitizer keeps freed memory in quarantine")
def test_input_replies_nothing_asked_for_are_dropped(jup):
    """input_reply messages sent while no input() waits used to be sent
    on to the session, each kept in the run's memory until the run ended:
    200 of 900 kB made the nginx worker hold 180 MB.  They are dropped;
    each input() that asks still gets its answer."""
    kid = new_kernel(jup)
    worker, = jup.worker_pids()

    async def go():
        async with websockets.connect(channels(jup, kid),
                                      max_size=None) as ws:
            request = execute("import time\ntry:\n"
                              "    while True: time.sleep(0.05)\n"
                              "except KeyboardInterrupt:\n"
                              "    print('got', len(input()))",
                              allow_stdin=True)
            await ws.send(json.dumps(request))
            await until(ws, lambda m: m["msg_type"] == "execute_input")
            before = rss_kb(worker)
            flood = json.dumps(message("input_reply", "stdin",
                                       {"value": "v" * 900000}))
            for _ in range(200):
                await ws.send(flood)
            # a kernel_info round trip: every flood frame was read
            info = message("kernel_info_request")
            await ws.send(json.dumps(info))
            await until(ws, reply_to(info))
            grown = rss_kb(worker) - before
            assert requests.post(f"{jup.url}/api/kernels/{kid}/interrupt",
                                 headers=auth()).status_code == 204
            await until(ws, lambda m: m["msg_type"] == "input_request")
            await ws.send(json.dumps(message("input_reply", "stdin",
                                             {"value": "abc"})))
            got = await until(ws, idle_after(request))
            return grown, got

    grown, got = asyncio.run(go())
    assert grown < 50 * 1024, f"the worker grew by {grown} kB"
    assert "".join(m["content"]["text"] for m in got
                   if m["msg_type"] == "stream") == "got 3\n"
    still_works(jup, kid)


def v1_frame(parts, offsets=None):
    """A v1 binary message: its count of offsets, the offsets (by default
    those of parts), the parts."""
    if offsets is None:
        offsets = [8 * (len(parts) + 2)]
        for p in parts:
            offsets.append(offsets[-1] + len(p))
    return (struct.pack("<Q", len(offsets))
            + b"".join(struct.pack("<Q", o) for o in offsets)
            + b"".join(parts))


def v1_parts(data):
    """(channel, header, parent_header, content) of a v1 message."""
    n, = struct.unpack_from("<Q", data)
    offsets = struct.unpack_from(f"<{n}Q", data, 8) + (len(data),)
    parts = [data[offsets[i]:offsets[i + 1]] for i in range(n)]
    return (parts[0].decode(), json.loads(parts[1]), json.loads(parts[2]),
            json.loads(parts[4]))


def test_hostile_v1_frames_close_the_socket_alone(jup):
    """v1 binary messages whose offsets lie (a count past the frame, six
    of them in fewer bytes, past the end, decreasing), whose channel is
    not UTF-8, whose parts are not JSON or nested past any depth, and
    text frames that are no message: each closes its own socket with
    1002, nothing else; a NUL inside the channel name is only a name."""
    kid = new_kernel(jup)
    header = json.dumps(message("kernel_info_request")["header"]).encode()
    good = [b"shell", header, b"{}", b"{}", b"{}"]
    hostile = [
        struct.pack("<Q", 2 ** 64 - 1) + bytes(64),
        struct.pack("<Q", 6) + bytes(16),
        struct.pack("<Q", 7),
        b"",
        v1_frame(good, [56, 61, 10 ** 12, 10 ** 12, 10 ** 12, 10 ** 12]),
        v1_frame(good, [56, 61, 2 ** 64 - 8, 70, 80, 90]),
        v1_frame(good, [56, 61, 60, 70, 80, 90]),
        v1_frame(good[:4]),
        v1_frame([b"\xff\xfe"] + good[1:]),
        v1_frame([b"shell", b"{{", b"{}", b"{}", b"{}"]),
        v1_frame([b"shell", header, b"[" * 100000, b"{}", b"{}"]),
        v1_frame([b"shell", header, b"{}", b"{}",
                  b'{"a":' * 5000 + b"1" + b"}" * 5000]),
        v1_frame([b"shell", b"[]", b"{}", b"{}", b"{}"]),
        "[]", "5", '{"channel": "shell", "header": {}}',
        '{"channel": "shell", "header": {"msg_type": 5}}',
        '{"channel": 1, "header": {"msg_type": "kernel_info_request"}}',
    ]

    async def close_code(data):
        async with websockets.connect(channels(jup, kid),
                                      subprotocols=[V1]) as ws:
            await ws.send(data)
            try:
                await asyncio.wait_for(ws.recv(), 10)
            except websockets.exceptions.ConnectionClosed as e:
                return e.rcvd.code if e.rcvd else None
            return "answered"

    async def answered(data):
        async with websockets.connect(channels(jup, kid),
                                      subprotocols=[V1]) as ws:
            await ws.send(data)
            while True:
                parts = v1_parts(await asyncio.wait_for(ws.recv(), 10))
                if parts[0] == "shell":
                    return parts[1]["msg_type"]

    for data in hostile:
        assert asyncio.run(close_code(data)) == 1002, data[:80]
    assert asyncio.run(answered(v1_frame([b"shell\0x"] + good[1:]))) == \
        "kernel_info_reply"
    still_works(jup, kid)


def test_kernels_of_other_keys_and_other_forms_of_ids_are_none(jup):
    """Another key's kernel, over REST and the channels (key as header or
    ?token=), a bash session's id, and ids not written as Jupyter writes
    them (uppercase, no dashes, dashes elsewhere, extra path) are 404."""
    kid = new_kernel(jup)
    sid = kid.replace("-", "")
    bash = requests.post(jup.url + "/session", json={"language": "bash"},
                         headers={"Authorization": "Bearer " + KEY})
    assert bash.status_code == 201, bash.text
    b = bash.json()["session_id"]
    bash_kid = f"{b[:8]}-{b[8:12]}-{b[12:16]}-{b[16:20]}-{b[20:]}"

    base = jup.url + "/api/kernels/"
    for key, path in ((OTHER, kid), (OTHER, kid + "/interrupt"),
                      (KEY, bash_kid), (KEY, bash_kid + "/interrupt"),
                      (KEY, kid.upper()), (KEY, sid),
                      (KEY, sid[:7] + "-" + sid[7:11] + "-" + sid[11:15]
                       + "-" + sid[15:19] + "-" + sid[19:]),
                      (KEY, kid + "/channels/extra"), (KEY, kid + "x")):
        for method in ("GET", "DELETE", "POST"):
            r = requests.request(method, base + path, headers=auth(key))
            assert r.status_code == 404, (method, path, r.text)
    assert requests.get(base + kid, headers=auth()).status_code == 200

    async def refused(url, headers):
        try:
            async with websockets.connect(url, extra_headers=headers):
                return "opened"
        except websockets.exceptions.InvalidStatusCode as e:
            return e.status_code

    ws_base = f"ws://127.0.0.1:{jup.port}/api/kernels/"
    for url, headers in ((f"{ws_base}{kid}/channels?token={OTHER}", {}),
                         (f"{ws_base}{kid}/channels", auth(OTHER)),
                         (f"{ws_base}{kid}/channels?token={KEY}",
                          auth(OTHER)),
                         (f"{ws_base}{bash_kid}/channels?token={KEY}", {}),
                         (f"{ws_base}{kid.upper()}/channels?token={KEY}",
                          {}),
                         (f"{ws_base}{sid}/channels", auth())):
        assert asyncio.run(refused(url, headers)) == 404, url
    # and the key as ?token= never reaches a log
    assert KEY not in jup.error_log() and OTHER not in jup.error_log()
    still_works(jup, kid)


def test_a_kernel_deleted_or_its_socket_closed_during_a_run(jup):
    """A socket closed while its run loops and requests wait: the run is
    interrupted (the kernel takes a run again; the waiting requests never
    run).  A kernel deleted while its socket runs code with 1000 requests
    waiting: the run ends in an error and every waiting request is
    refused on the spot, all in one go in the worker, which lives on."""
    kid = new_kernel(jup)
    loop = "while True: pass"

    async def close_mid_run():
        async with websockets.connect(channels(jup, kid)) as ws:
            await ws.send(json.dumps(execute(loop)))
            await until(ws, lambda m: m["msg_type"] == "execute_input")
            for _ in range(10):
                await ws.send(json.dumps(execute("x = 'queued'")))

    asyncio.run(close_mid_run())
    wait_for(lambda: takes_a_run(jup, kid),
             what="the kernel to take a run after its socket closed")

    async def delete_mid_run():
        async with websockets.connect(channels(jup, kid)) as ws:
            request = execute("x")
            await ws.send(json.dumps(request))
            got = await until(ws, idle_after(request))
            x = [m["content"]["data"]["text/plain"] for m in got
                 if m["msg_type"] == "execute_result"]

            await ws.send(json.dumps(execute(loop)))
            await until(ws, lambda m: m["msg_type"] == "execute_input")
            queued = [execute("1") for _ in range(1000)]
            for q in queued:
                await ws.send(json.dumps(q))
            assert requests.delete(f"{jup.url}/api/kernels/{kid}",
                                   headers=auth()).status_code == 204
            got = await until(ws, idle_after(queued[-1]))
            return x, [m["content"]["status"] for m in got
                       if m["msg_type"] == "execute_reply"]

    x, replies = asyncio.run(delete_mid_run())
    assert x == ["'after'"]
    assert replies == ["error"] * 1001
    assert requests.get(f"{jup.url}/api/kernels/{kid}",
                        headers=auth()).status_code == 404
    still_works(jup, new_kernel(jup))
