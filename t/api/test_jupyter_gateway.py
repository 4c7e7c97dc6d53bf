"""Debian's jupyter-server (1.23) in gateway mode in front of PyREPL's
Jupyter dialect, driven through the server as its front ends drive it:
its REST API (kernel specs, kernels, interrupt, shutdown) and its channels
WebSocket, which it relays to PyREPL's (legacy JSON framing)."""

import asyncio
import json
import uuid

import pytest
import requests
import websockets

from helpers import Nginx, jupyter_gateway

KEY = "gateway-key-0123456789"
TOKEN = "server-token"

@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    n = Nginx(http_extra=f"pyrepl_api_key {KEY};",
              server_extra="location /api { pyrepl; "
                           "pyrepl_dialect jupyter; }").start()
    try:
        with jupyter_gateway("jupyter-server", n.url, KEY,
                             tmp_path_factory.mktemp("jupyter"),
                             TOKEN) as url:
            yield n, url
    finally:
        n.check_and_clean()


def auth():
    return {"Authorization": "token " + TOKEN}


def message(msg_type, content=None, channel="shell"):
    return {"channel": channel,
            "header": {"msg_id": uuid.uuid4().hex, "msg_type": msg_type,
                       "session": "front-end", "username": "u",
                       "date": "2026-12-07T00:00:00.000000Z",
                       "version": "5.3"},
            "parent_header": {}, "metadata": {}, "content": content or {},
            "buffers": []}


async def until_idle(ws, request, answer=None):
    """The messages answering request, up to its status idle; answer(msg)
    replies to what asks (input_request)."""
    got = []
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), 20))
        if m["parent_header"].get("msg_id") != request["header"]["msg_id"]:
            continue
        got.append(m)
        if answer and m["msg_type"] == "input_request":
            await ws.send(json.dumps(answer(m)))
        if m["msg_type"] == "status" and \
                m["content"]["execution_state"] == "idle":
            return got


async def connect(url, kid):
    """The channels socket through the server, once the relay to PyREPL
    answers: the server relays what it gets before its own connection is
    up to nowhere, so front ends repeat kernel_info_request until it is
    answered, and so does this."""
    ws = await websockets.connect(
        url.replace("http", "ws") + f"/api/kernels/{kid}/channels"
        f"?token={TOKEN}&session_id=front-end")
    for _ in range(40):
        info = message("kernel_info_request")
        await ws.send(json.dumps(info))
        try:
            got = await asyncio.wait_for(until_idle(ws, info), 0.5)
        except asyncio.TimeoutError:
            continue
        return ws, got
    raise AssertionError("no kernel_info_reply through the gateway")


def test_a_notebook_server_in_gateway_mode_runs_pyrepl_kernels(gateway):
    n, url = gateway
    specs = requests.get(url + "/api/kernelspecs", headers=auth()).json()
    assert specs["default"] == "python3"
    assert "python3" in specs["kernelspecs"]

    r = requests.post(url + "/api/kernels", headers=auth(),
                      json={"name": "python3"})
    assert r.status_code == 201, r.text
    kid = r.json()["id"]
    # PyREPL holds the kernel: its session, of the gateway's key
    assert requests.get(f"{n.url}/api/kernels/{kid}", headers={
        "Authorization": "token " + KEY}).json()["id"] == kid
    assert kid in [k["id"] for k in requests.get(
        url + "/api/kernels", headers=auth()).json()]

    async def session():
        ws, info = await connect(url, kid)
        try:
            reply, = [m for m in info if m["msg_type"] == "kernel_info_reply"]
            run = message("execute_request",
                          {"code": "print('via the gateway')\n"
                                   "x = input('who? ')\n"
                                   "display({'text/html': '<i>' + x + "
                                   "'</i>'}, raw=True)\n"
                                   "x * 2",
                           "silent": False, "allow_stdin": True})
            await ws.send(json.dumps(run))

            def answer(m):
                r = message("input_reply", {"status": "ok", "value": "ab"},
                            channel="stdin")
                r["parent_header"] = m["header"]
                return r

            ran = await until_idle(ws, run, answer)
            fail = message("execute_request", {"code": "1 / 0"})
            await ws.send(json.dumps(fail))
            failed = await until_idle(ws, fail)
            return reply, ran, failed
        finally:
            await ws.close()

    reply, ran, failed = asyncio.run(session())
    assert reply["content"]["language_info"]["name"] == "python"
    kinds = [m["msg_type"] for m in ran]
    assert kinds[0] == "status" and kinds[-1] == "status"
    assert "execute_input" in kinds and "execute_reply" in kinds
    assert "".join(m["content"]["text"] for m in ran
                   if m["msg_type"] == "stream") == "via the gateway\n"
    asked, = [m for m in ran if m["msg_type"] == "input_request"]
    assert asked["content"]["prompt"] == "who? "
    shown, = [m for m in ran if m["msg_type"] == "display_data"]
    assert shown["content"]["data"]["text/html"] == "<i>ab</i>"
    result, = [m for m in ran if m["msg_type"] == "execute_result"]
    assert result["content"]["data"] == {"text/plain": "'abab'"}
    done, = [m for m in ran if m["msg_type"] == "execute_reply"]
    assert done["content"]["status"] == "ok"
    err, = [m for m in failed if m["msg_type"] == "execute_reply"]
    assert err["content"]["ename"] == "ZeroDivisionError"

    assert requests.post(f"{url}/api/kernels/{kid}/interrupt",
                         headers=auth()).status_code == 204
    assert requests.delete(f"{url}/api/kernels/{kid}",
                           headers=auth()).status_code == 204
    assert requests.get(f"{n.url}/api/kernels/{kid}", headers={
        "Authorization": "token " + KEY}).status_code == 404
