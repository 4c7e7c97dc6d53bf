"""input() and getpass through nginx: the input_request event of an SSE or
WebSocket run, answers by POST /session/{id}/input (from any connection,
so from either nginx worker) or by a WebSocket input message, 409 when
nothing waits, EOFError in JSON mode, interrupts and deadlines while
input() waits.  Every wait is on an event; every read has a timeout, so a
missing event fails the test instead of hanging it."""

import asyncio
import json
import time

import requests
import websockets

from helpers import events_of, start_stream, stdout_of, wait_for, ws_url


def until(events, name):
    """The events up to and including the next one called name."""
    seen = []
    for event, data in events:
        seen.append((event, data))
        if event == name:
            return seen
    raise AssertionError(f"the stream ended before {name}: {seen}")


def post_input(nginx, sid, value, request_id=None):
    """POST an answer on a new connection (it may land on either worker)."""
    body = {"value": value}
    if request_id is not None:
        body["request_id"] = request_id
    with requests.Session() as s:
        return s.post(f"{nginx.url}/session/{sid}/input", json=body,
                      timeout=30)


def assert_no_pending_input(r):
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "no_pending_input"
    assert r.json()["error"]["message"]


def test_an_sse_run_asks_and_gets_the_answer(nginx, session):
    s, r, events = start_stream(nginx, session,
                                "print('before')\n"
                                "name = input('name? ')\n"
                                "print('hello', name)\n"
                                "name")
    seen = until(events, "input_request")
    assert seen[0][0] == "init"
    assert stdout_of(seen) == "before\n"
    req = seen[-1][1]
    assert set(req) == {"request_id", "prompt", "password"}
    assert req["prompt"] == "name? " and req["password"] is False
    assert isinstance(req["request_id"], str) and req["request_id"]
    assert nginx.http.get(f"{nginx.url}/session/{session}").json()[
        "state"] == "busy"

    a = post_input(nginx, session, "Ada", req["request_id"])
    assert a.status_code == 204 and a.content == b""

    rest = list(events)
    assert stdout_of(rest) == "hello Ada\n"       # the prompt is not output
    assert events_of(rest, "result")[0]["data"]["text/plain"] == "'Ada'"
    assert events_of(rest, "execution_complete")[0]["status"] == "ok"
    r.close()
    s.close()


def test_answers_from_fresh_connections_reach_the_run(nginx, session):
    # each answer comes on a new connection, so some are taken by the other
    # nginx worker than the one streaming the run
    s, r, events = start_stream(nginx, session,
                                "import getpass\n"
                                "got = [input(f'{i}? ') for i in range(4)]\n"
                                "got.append(getpass.getpass())\n"
                                "got")
    ids = set()
    for i in range(4):
        req = until(events, "input_request")[-1][1]
        assert req["prompt"] == f"{i}? " and req["password"] is False
        ids.add(req["request_id"])
        assert post_input(nginx, session, f"a{i}",
                          req["request_id"]).status_code == 204
    req = until(events, "input_request")[-1][1]
    assert req["prompt"] == "Password: " and req["password"] is True
    ids.add(req["request_id"])
    # request_id is optional
    assert post_input(nginx, session, "pw").status_code == 204

    rest = list(events)
    assert len(ids) == 5
    assert events_of(rest, "result")[0]["data"]["text/plain"] == \
        "['a0', 'a1', 'a2', 'a3', 'pw']"
    assert events_of(rest, "execution_complete")[0]["status"] == "ok"
    r.close()
    s.close()


def test_input_when_nothing_waits_is_409(nginx, session):
    assert_no_pending_input(post_input(nginx, session, "x"))

    s, r, events = start_stream(nginx, session,
                                "print('started', flush=True)\n"
                                "import time; time.sleep(30)")
    until(events, "stdout")
    # busy, but not in input()
    assert_no_pending_input(post_input(nginx, session, "x"))
    assert nginx.http.post(
        f"{nginx.url}/session/{session}/interrupt").status_code == 204
    assert events_of(list(events), "execution_complete")[0]["status"] == \
        "interrupted"
    r.close()
    s.close()


def test_a_wrong_request_id_is_409_and_the_right_one_204(nginx, session):
    s, r, events = start_stream(nginx, session, "input('? ')")
    rid = until(events, "input_request")[-1][1]["request_id"]
    assert_no_pending_input(post_input(nginx, session, "x", rid + "-old"))
    assert post_input(nginx, session, "right", rid).status_code == 204
    assert_no_pending_input(post_input(nginx, session, "twice", rid))
    rest = list(events)
    assert events_of(rest, "result")[0]["data"]["text/plain"] == "'right'"
    r.close()
    s.close()


def test_bad_input_requests(nginx, session):
    url = f"{nginx.url}/session/{session}/input"
    for body in ({}, {"value": 1}, {"value": "x", "request_id": 5}):
        r = nginx.http.post(url, json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["code"] == "bad_request"
    r = nginx.http.post(f"{nginx.url}/session/{'0' * 32}/input",
                        json={"value": "x"})
    assert r.status_code == 404


def test_json_mode_input_and_getpass_are_eof_at_once(nginx, session):
    for code in ("input('? ')", "import getpass; getpass.getpass()"):
        started = time.monotonic()
        doc = nginx.run_json(session, code, timeout=30)
        assert time.monotonic() - started < 5
        assert doc["status"] == "error"
        assert doc["error"]["ename"] == "EOFError"
    # nothing was left waiting
    assert_no_pending_input(post_input(nginx, session, "x"))


def test_an_interrupt_while_input_waits(nginx, session):
    s, r, events = start_stream(nginx, session,
                                "import time\n"
                                "try:\n"
                                "    input('? ')\n"
                                "except KeyboardInterrupt:\n"
                                "    caught = time.monotonic()\n"
                                "    raise\n")
    rid = until(events, "input_request")[-1][1]["request_id"]
    sent = time.monotonic()
    assert nginx.http.post(
        f"{nginx.url}/session/{session}/interrupt").status_code == 204
    rest = list(events)
    assert events_of(rest, "error")[0]["ename"] == "KeyboardInterrupt"
    assert events_of(rest, "execution_complete")[0]["status"] == \
        "interrupted"
    r.close()
    s.close()

    doc = nginx.run_json(session, "caught", timeout=30)
    assert float(doc["result"]["text/plain"]) - sent < 0.5
    assert_no_pending_input(post_input(nginx, session, "late", rid))


def test_the_deadline_ends_a_waiting_input(nginx, session):
    started = time.monotonic()
    s, r, events = start_stream(nginx, session, "input()", timeout_ms=300)
    ev = list(events)
    r.close()
    s.close()
    assert time.monotonic() - started < 10
    assert events_of(ev, "input_request")
    assert events_of(ev, "execution_complete")[0]["status"] == "timeout"
    assert events_of(ev, "error")[0]["ename"] == "KeyboardInterrupt"


def test_closing_the_stream_interrupts_a_waiting_input(nginx, session):
    s, r, events = start_stream(nginx, session,
                                "stopped = False\n"
                                "try:\n"
                                "    input()\n"
                                "except KeyboardInterrupt:\n"
                                "    stopped = True\n")
    until(events, "input_request")
    r.close()
    s.close()

    def ran():
        r = nginx.http.post(f"{nginx.url}/session/{session}/run",
                            json={"code": "stopped"},
                            headers={"Accept": "application/json"},
                            timeout=30)
        # until the session process has unwound the run, it refuses
        return r.status_code == 200 and r.json()["status"] == "ok" and \
            r.json()

    assert wait_for(ran, what="the session to take a run")["result"] == \
        {"text/plain": "True"}


# WebSocket ---------------------------------------------------------------

async def ws_until(ws, name):
    events = []
    while not events or events[-1]["type"] != name:
        events.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
    return events


def test_a_websocket_run_asks_and_takes_an_input_message(nginx, session):
    async def go():
        async with websockets.connect(ws_url(nginx, session)) as ws:
            await ws.send(json.dumps({"type": "run", "id": "r1", "code":
                                      "a = input('ws? ')\n"
                                      "print('got', a)\n"
                                      "b = input('again? ')\n"
                                      "(a, b)"}))
            first = await ws_until(ws, "input_request")
            await ws.send(json.dumps({
                "type": "input", "value": "Ada",
                "request_id": first[-1]["request_id"]}))
            second = await ws_until(ws, "input_request")
            # no request_id: whatever waits takes it
            await ws.send(json.dumps({"type": "input", "value": "Bo"}))
            rest = await ws_until(ws, "execution_complete")
            return first, second, rest

    first, second, rest = asyncio.run(go())
    req = first[-1]
    assert req["id"] == "r1" and req["prompt"] == "ws? "
    assert req["password"] is False
    assert "".join(e["text"] for e in second if e["type"] == "stdout") == \
        "got Ada\n"
    assert second[-1]["prompt"] == "again? "
    assert second[-1]["request_id"] != req["request_id"]
    assert [e for e in rest if e["type"] == "result"][0]["data"] == \
        {"text/plain": "('Ada', 'Bo')"}
    assert rest[-1]["status"] == "ok"


def test_a_websocket_run_answered_by_post(nginx, session):
    async def go():
        async with websockets.connect(ws_url(nginx, session)) as ws:
            await ws.send(json.dumps({"type": "run", "id": 1, "code":
                                      "import getpass; getpass.getpass('k: ')"
                                      }))
            req = (await ws_until(ws, "input_request"))[-1]
            answered = await asyncio.to_thread(
                post_input, nginx, session, "key", req["request_id"])
            rest = await ws_until(ws, "execution_complete")
            return req, answered.status_code, rest

    req, status, rest = asyncio.run(go())
    assert req["prompt"] == "k: " and req["password"] is True
    assert status == 204
    assert [e for e in rest if e["type"] == "result"][0]["data"] == \
        {"text/plain": "'key'"}


def test_a_websocket_interrupt_while_input_waits(nginx, session):
    async def go():
        async with websockets.connect(ws_url(nginx, session)) as ws:
            await ws.send(json.dumps({"type": "run", "id": 1,
                                      "code": "input()"}))
            await ws_until(ws, "input_request")
            await ws.send(json.dumps({"type": "interrupt"}))
            rest = await ws_until(ws, "execution_complete")
            await ws.send(json.dumps({"type": "run", "id": 2,
                                      "code": "'alive'"}))
            after = await ws_until(ws, "execution_complete")
            return rest, after

    rest, after = asyncio.run(go())
    assert [e for e in rest if e["type"] == "error"][0]["ename"] == \
        "KeyboardInterrupt"
    assert rest[-1]["status"] == "interrupted"
    assert [e for e in after if e["type"] == "result"][0]["data"] == \
        {"text/plain": "'alive'"}
