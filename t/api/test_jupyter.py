"""pyrepl_dialect jupyter: Jupyter's kernel REST API and channels
WebSocket, driven by JupyterLab's own client library (npm
@jupyterlab/services 7.6.6, t/clients/jupyter_services.mjs) and, for the
legacy JSON framing and the edges, over the wire."""

import asyncio
import importlib.util
import json
import uuid

import pytest
import requests
import websockets

from helpers import Nginx, node, npm_install

KEY = "jupyter-key-0123456789"
OTHER = "another-key-0123456789"


@pytest.fixture(scope="module")
def jup():
    n = Nginx(http_extra=f"pyrepl_api_key {KEY}; pyrepl_api_key {OTHER};",
              server_extra="location /api { pyrepl; "
                           "pyrepl_dialect jupyter; }").start()
    yield n
    n.check_and_clean()


def auth(key=KEY):
    return {"Authorization": "token " + key}


def test_jupyterlab_services_drives_a_kernel(jup):
    npm_install()
    seen = node("jupyter_services.mjs", jup.url + "/", KEY, timeout=120)
    assert seen["spec"] == {"default": "python3", "language": "python"}
    assert str(uuid.UUID(seen["id"])) == seen["id"]
    assert seen["info"] == {"protocol": "5.3", "language": "python"}

    first = seen["first"]
    assert [m["type"] for m in first["iopub"]
            if m["type"] != "stream"] == [
        "status", "execute_input", "execute_result", "status"]
    assert all(m["parent"] for m in first["iopub"])
    assert "".join(m["text"] for m in first["iopub"]
                   if m["type"] == "stream") == "hi\n"
    result, = [m for m in first["iopub"] if m["type"] == "execute_result"]
    assert result["data"] == {"text/plain": "42"} and result["count"] == 1
    assert first["reply"] == {"status": "ok", "count": 1}

    assert seen["complete"]["status"] == "ok"
    assert seen["complete"]["matches"] == ["alpha_value"]
    assert (seen["complete"]["cursor_start"],
            seen["complete"]["cursor_end"]) == (0, 7)
    # "x = os.pat": "os.path" from 4 on, or with jedi "path" from 7 on
    attrs = seen["attributes"]
    code = "x = os.pat"
    assert "x = os.path" in [code[:attrs["cursor_start"]] + m
                             for m in attrs["matches"]]
    assert attrs["cursor_end"] == 10
    if importlib.util.find_spec("jedi") is not None:
        # jedi completes what names alone cannot: a literal's methods
        assert seen["literal"]["matches"] == ["upper"]
        assert seen["literal"]["cursor_start"] == 6
    assert seen["inspect"]["found"] is True
    assert "len(obj, /)" in seen["inspect"]["data"]["text/plain"]
    assert [c["status"] for c in seen["isComplete"]] == [
        "incomplete", "complete", "invalid"]
    assert seen["isComplete"][0]["indent"] == "    "
    assert [h[2] for h in seen["history"]["history"]] == [
        'print("hi")\n6 * 7\n', "import os\nalpha_value = 1\n"]

    shown, = [m for m in seen["display"]["iopub"]
              if m["type"] == "display_data"]
    assert shown["data"]["text/html"] == "<b>b</b>"
    assert seen["error"]["reply"] == {"status": "error", "count": 4,
                                      "ename": "ZeroDivisionError"}
    assert [m["ename"] for m in seen["error"]["iopub"]
            if m["type"] == "error"] == ["ZeroDivisionError"]

    assert seen["prompt"] == "name? "
    assert "".join(m["text"] for m in seen["input"]["iopub"]
                   if m["type"] == "stream") == "hello bob\n"
    assert seen["queued"] == [6, 7]            # in the order they were sent
    assert seen["interrupted"] == {"status": "error",
                                   "ename": "KeyboardInterrupt"}
    assert seen["after"] == [{"text/plain": "'bob'"}]   # the kernel lives on
    assert seen["restarted"] == {
        "reply": {"status": "error", "count": 1, "ename": "NameError"},
        "errors": ["NameError"]}
    # shut down: gone
    r = requests.get(f"{jup.url}/api/kernels/{seen['id']}", headers=auth())
    assert r.status_code == 404

    # a notebook's session (SessionManager), and its kernel with it
    assert seen["session"] == {"path": "work/a.ipynb", "name": "a.ipynb",
                               "type": "notebook", "kernel": "python3"}
    assert seen["sessionRun"] == "42"
    assert seen["found"] is True and seen["gone"] is True
    assert seen["afterShutdown"]["session"] is True
    r = requests.get(f"{jup.url}/api/kernels/"
                     f"{seen['afterShutdown']['kernel']}", headers=auth())
    assert r.status_code == 404


def test_kernel_rest_api(jup):
    r = requests.get(jup.url + "/api/kernelspecs", headers=auth())
    assert r.status_code == 200
    spec = r.json()["kernelspecs"]["python3"]
    assert isinstance(spec["spec"]["argv"], list)
    assert isinstance(spec["resources"], dict)
    assert requests.get(jup.url + "/api/kernelspecs/python3",
                        headers=auth()).json()["name"] == "python3"
    assert requests.get(jup.url + "/api/kernelspecs/other",
                        headers=auth()).status_code == 404

    # a gateway sends its whole environment: only KERNEL_* names are taken
    r = requests.post(jup.url + "/api/kernels", headers=auth(),
                      json={"name": "python3",
                            "env": {"KERNEL_USERNAME": "ann",
                                    "PATH": "/nowhere", "LD_PRELOAD": "x"}})
    assert r.status_code == 201
    kernel = r.json()
    assert set(kernel) == {"id", "name", "last_activity", "execution_state",
                           "connections"}
    assert kernel["execution_state"] == "idle"
    assert kernel["last_activity"].endswith(".000000Z")
    kid = kernel["id"]
    sid = kid.replace("-", "")
    # the kernel is a session of the key's: the session API sees it too
    run = requests.post(f"{jup.url}/session/{sid}/run", headers={
                            "Authorization": "Bearer " + KEY,
                            "Accept": "application/json"},
                        json={"code": "import os; (os.environ.get("
                                      "'KERNEL_USERNAME'), os.environ['PATH']"
                                      " == '/nowhere', 'LD_PRELOAD' in "
                                      "os.environ)"})
    assert run.json()["result"]["text/plain"] == "('ann', False, False)"
    listed = requests.get(jup.url + "/api/kernels", headers=auth()).json()
    assert kid in [k["id"] for k in listed]
    assert requests.get(jup.url + "/api/kernels/" + kid,
                        headers=auth()).json()["id"] == kid

    # another key sees no such kernel, and cannot touch it
    assert requests.get(jup.url + "/api/kernels",
                        headers=auth(OTHER)).json() == []
    for method, path in (("GET", ""), ("DELETE", ""),
                         ("POST", "/interrupt"), ("POST", "/restart")):
        r = requests.request(method, f"{jup.url}/api/kernels/{kid}{path}",
                             headers=auth(OTHER))
        assert r.status_code == 404, (method, path)
    assert requests.get(jup.url + "/api/kernels").status_code == 401

    assert requests.post(f"{jup.url}/api/kernels/{kid}/interrupt",
                         headers=auth()).status_code == 204
    assert requests.post(jup.url + "/api/kernels", headers=auth(),
                         json={"name": "julia"}).status_code == 400
    r = requests.put(f"{jup.url}/api/kernels/{kid}", headers=auth())
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD, DELETE"
    assert requests.get(f"{jup.url}/api/kernels/not-a-kernel",
                        headers=auth()).status_code == 404
    assert requests.delete(f"{jup.url}/api/kernels/{kid}",
                           headers=auth()).status_code == 204
    assert requests.get(jup.url + "/api/kernels/" + kid,
                        headers=auth()).status_code == 404


def message(msg_type, channel="shell", content=None):
    return {"channel": channel,
            "header": {"msg_id": uuid.uuid4().hex, "msg_type": msg_type,
                       "session": "client", "username": "u",
                       "date": "2026-12-07T00:00:00.000000Z",
                       "version": "5.3"},
            "parent_header": {}, "metadata": {}, "content": content or {},
            "buffers": []}


def test_legacy_json_framing_and_token_in_the_url(jup):
    kid = requests.post(jup.url + "/api/kernels", headers=auth(),
                        json={}).json()["id"]
    url = (f"ws://127.0.0.1:{jup.port}/api/kernels/{kid}/channels"
           f"?session_id=x&token={KEY}")

    async def go():
        async with websockets.connect(url) as ws:      # no subprotocol
            got = []
            for request in (message("kernel_info_request"),
                            message("comm_info_request"),
                            message("execute_request",
                                    content={"code": "print(1)",
                                             "silent": False})):
                await ws.send(json.dumps(request))
                while True:
                    m = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    got.append((request["header"]["msg_id"], m))
                    if m["msg_type"] == "status" and \
                            m["content"]["execution_state"] == "idle":
                        break
            return got

    got = asyncio.run(go())
    for asked, m in got:
        assert m["parent_header"]["msg_id"] == asked
        assert m["header"]["session"] == kid        # one per kernel
        assert m["header"]["msg_id"] == m["msg_id"]
        assert m["header"]["msg_type"] == m["msg_type"]
    kinds = []
    for _, m in got:                   # "1\n" may come as one stream or two
        kind = (m["channel"], m["msg_type"])
        if kind != ("iopub", "stream") or kinds[-1] != kind:
            kinds.append(kind)
    assert kinds == [
        ("iopub", "status"), ("shell", "kernel_info_reply"),
        ("iopub", "status"),
        ("iopub", "status"), ("shell", "comm_info_reply"),
        ("iopub", "status"),
        ("iopub", "status"), ("iopub", "execute_input"),
        ("iopub", "stream"),
        ("shell", "execute_reply"), ("iopub", "status")]
    info = got[1][1]["content"]
    assert info["language_info"]["name"] == "python"
    assert info["status"] == "ok"
    assert got[4][1]["content"] == {"status": "ok", "comms": {}}

    # without the key the upgrade is refused
    async def refused():
        try:
            async with websockets.connect(url.replace(KEY, OTHER)):
                return "opened"
        except websockets.exceptions.InvalidStatusCode as e:
            return e.status_code

    assert asyncio.run(refused()) == 404     # not that key's kernel
    requests.delete(f"{jup.url}/api/kernels/{kid}", headers=auth())


def test_introspection_while_another_socket_runs_code(jup):
    """A kernel's session runs one thing at a time: a completion asked on
    one socket while another's code runs gets its reply, failed, and the
    socket goes on."""
    kid = requests.post(jup.url + "/api/kernels", headers=auth(),
                        json={}).json()["id"]
    url = (f"ws://127.0.0.1:{jup.port}/api/kernels/{kid}/channels"
           f"?token={KEY}")

    async def until_idle(ws, request):
        got = []
        while True:
            m = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if m["parent_header"].get("msg_id") != \
                    request["header"]["msg_id"]:
                continue
            got.append(m)
            if m["msg_type"] == "status" and \
                    m["content"]["execution_state"] == "idle":
                return got

    async def go():
        async with websockets.connect(url) as runner, \
                websockets.connect(url) as asker:
            run = message("execute_request",
                          content={"code": "import time\n"
                                           "print('in', flush=True)\n"
                                           "time.sleep(60)"})
            await runner.send(json.dumps(run))
            while True:                             # the code is running
                m = json.loads(await asyncio.wait_for(runner.recv(), 10))
                if m["msg_type"] == "stream":
                    break
            ask = message("complete_request",
                          content={"code": "pri", "cursor_pos": 3})
            await asker.send(json.dumps(ask))
            busy = await until_idle(asker, ask)
            # a restart waits for the code to end: interrupt it first
            restart = requests.post(f"{jup.url}/api/kernels/{kid}/restart",
                                    headers=auth())
            assert restart.status_code == 409
            assert restart.json()["error"]["code"] == "session_busy"
            requests.post(f"{jup.url}/api/kernels/{kid}/interrupt",
                          headers=auth())
            await until_idle(runner, run)
            await asker.send(json.dumps(ask))
            done = await until_idle(asker, ask)
            return busy, done

    busy, done = asyncio.run(go())
    reply, = [m for m in busy if m["msg_type"] == "complete_reply"]
    assert reply["content"]["status"] == "error"
    reply, = [m for m in done if m["msg_type"] == "complete_reply"]
    assert reply["content"]["status"] == "ok"
    assert "print" in reply["content"]["matches"]
    requests.delete(f"{jup.url}/api/kernels/{kid}", headers=auth())


def test_sessions_rest_api(jup):
    s = requests.post(jup.url + "/api/sessions", headers=auth(),
                      json={"path": "a.ipynb", "name": "a", "type":
                            "notebook", "kernel": {"name": "python3"}})
    assert s.status_code == 201
    session = s.json()
    assert (session["path"], session["name"], session["type"]) == (
        "a.ipynb", "a", "notebook")
    assert session["notebook"] == {"path": "a.ipynb", "name": "a"}
    first = session["kernel"]["id"]
    assert requests.get(jup.url + "/api/kernels/" + first,
                        headers=auth()).status_code == 200

    # a session on a kernel that exists, then moved to another one
    other = requests.post(jup.url + "/api/kernels", headers=auth(),
                          json={}).json()["id"]
    r = requests.patch(f"{jup.url}/api/sessions/{session['id']}",
                       headers=auth(),
                       json={"path": "b.ipynb", "kernel": {"id": other}})
    assert r.status_code == 200
    assert r.json()["path"] == "b.ipynb" and r.json()["name"] == "a"
    assert r.json()["kernel"]["id"] == other
    listed = requests.get(jup.url + "/api/sessions", headers=auth()).json()
    assert [(x["id"], x["kernel"]["id"]) for x in listed] == [
        (session["id"], other)]
    assert requests.get(f"{jup.url}/api/sessions/{session['id']}",
                        headers=auth()).json()["path"] == "b.ipynb"

    # another key sees none of it
    assert requests.get(jup.url + "/api/sessions",
                        headers=auth(OTHER)).json() == []
    for method in ("GET", "PATCH", "DELETE"):
        r = requests.request(method, f"{jup.url}/api/sessions/"
                                     f"{session['id']}", headers=auth(OTHER),
                             json={})
        assert r.status_code == 404, method
    r = requests.post(jup.url + "/api/sessions", headers=auth(OTHER),
                      json={"path": "x", "kernel": {"id": other}})
    assert r.status_code == 404                 # not that key's kernel
    r = requests.post(jup.url + "/api/sessions", headers=auth(),
                      json={"path": 7})
    assert r.status_code == 400
    r = requests.post(jup.url + "/api/sessions", headers=auth(),
                      json={"path": "p" * 2000})
    assert r.status_code == 400

    # deleting the session ends its kernel, as Jupyter's server does
    assert requests.delete(f"{jup.url}/api/sessions/{session['id']}",
                           headers=auth()).status_code == 204
    assert requests.get(jup.url + "/api/kernels/" + other,
                        headers=auth()).status_code == 404
    assert requests.get(jup.url + "/api/sessions",
                        headers=auth()).json() == []
    requests.delete(jup.url + "/api/kernels/" + first, headers=auth())


def test_every_socket_of_a_kernel_sees_its_runs(jup):
    """iopub goes to every socket of a kernel, as a kernel publishes it:
    a run asked on one socket shows on another, parented by the request,
    and the asking socket gets each message once."""
    kid = requests.post(jup.url + "/api/kernels", headers=auth(),
                        json={}).json()["id"]
    url = (f"ws://127.0.0.1:{jup.port}/api/kernels/{kid}/channels"
           f"?token={KEY}")

    async def go():
        async with websockets.connect(url) as a, \
                websockets.connect(url) as b:
            # both sockets are up once each answered a request
            for ws in (a, b):
                info = message("kernel_info_request")
                await ws.send(json.dumps(info))
                while True:
                    m = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if m["msg_type"] == "kernel_info_reply":
                        break
            run = message("execute_request",
                          content={"code": "print('seen')\n1 + 1"})
            await a.send(json.dumps(run))
            got = {}
            for name, ws in (("a", a), ("b", b)):
                got[name] = []
                while True:
                    m = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if m["parent_header"].get("msg_id") != \
                            run["header"]["msg_id"]:
                        continue
                    got[name].append(m)
                    if m["msg_type"] == "status" and \
                            m["content"]["execution_state"] == "idle":
                        break
            return got

    got = asyncio.run(go())

    def iopub(msgs):
        kinds = []
        for m in msgs:
            kind = m["msg_type"]
            if m["channel"] == "iopub" and (kind != "stream"
                                            or kinds[-1] != kind):
                kinds.append(kind)
        return kinds

    assert iopub(got["a"]) == iopub(got["b"]) == [
        "status", "execute_input", "stream", "execute_result", "status"]
    assert [m["msg_type"] for m in got["a"] if m["channel"] == "shell"] == [
        "execute_reply"]
    assert not [m for m in got["b"] if m["channel"] == "shell"]
    text = "".join(m["content"]["text"] for m in got["b"]
                   if m["msg_type"] == "stream")
    assert text == "seen\n"
    result, = [m for m in got["b"] if m["msg_type"] == "execute_result"]
    assert result["content"]["data"] == {"text/plain": "2"}
    requests.delete(f"{jup.url}/api/kernels/{kid}", headers=auth())
