"""A PyREPL client in Python, with requests and websockets (Debian's
python3-requests and python3-websockets): it creates a session, streams a
run's output over Server-Sent Events, answers the code's input() and
interrupts a long run over the WebSocket, saves a checkpoint and brings its
state back in a new session, then deletes what it made.

Run the server (util/run) in another terminal, then:

    /usr/bin/python3 examples/clients/pyrepl_client.py [BASE_URL]

BASE_URL (or $PYREPL_URL) defaults to http://127.0.0.1:8080; $PYREPL_KEY, if
set, is sent as "Authorization: Bearer" (and as ?token= on the WebSocket).
"""

import asyncio
import json
import os
import sys
import urllib.parse

import requests
import websockets

BASE = (sys.argv[1] if len(sys.argv) > 1
        else os.environ.get("PYREPL_URL", "http://127.0.0.1:8080")).rstrip("/")
KEY = os.environ.get("PYREPL_KEY")

# what the runs do: print as they go, ask, loop until interrupted, read state
COUNT = """import time
for i in range(3):
    print(f'tick {i}')
    time.sleep(0.3)
total = 6
total"""
ASK = "name = input('Your name? ')\nprint(f'Hello, {name}!')"
LONG = "import time\nprint('working...')\nwhile True: time.sleep(0.1)"
STATE = "print(f'{name = }, {total = }')"

http = requests.Session()
if KEY:
    http.headers["Authorization"] = "Bearer " + KEY


def api(method, path, **kw):
    """One request to the API; its JSON answer, or an error saying why."""
    r = http.request(method, BASE + path, **kw)
    if not r.ok:
        raise RuntimeError(f"{method} {path}: {r.status_code} {r.text.strip()}")
    if kw.get("stream"):
        return r
    return r.json() if r.content else None


def show(event, data):
    """Print a run's event as it arrives: output as it is, the rest briefly;
    the run's status once it ended."""
    if event in ("stdout", "stderr"):
        print(data["text"], end="", flush=True)
    elif event == "result":
        print("  result:", data["data"]["text/plain"])
    elif event == "error":
        evalue = data["evalue"] and ": " + data["evalue"]
        print(f"  error: {data['ename']}{evalue}")
    elif event == "execution_complete":
        print("  run ended:", data["status"])
        return data["status"]


def expect(status, wanted="ok"):
    if status != wanted:
        raise RuntimeError(f"a run ended {status}, not {wanted}")


def sse_run(sid, code):
    """Run code over SSE, printing each event as it comes; its status."""
    r = api("POST", f"/session/{sid}/run", json={"code": code}, stream=True)
    event = None
    for line in r.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            status = show(event, json.loads(line[6:]))
            if status:
                return status
    raise RuntimeError("the run's event stream ended before the run")


async def ws_run(ws, code):
    """Start a run on the WebSocket; yield its events up to the last one."""
    await ws.send(json.dumps({"type": "run", "id": "r", "code": code}))
    while True:
        msg = json.loads(await ws.recv())
        if msg["type"] == "error" and "error" in msg:        # a refusal
            raise RuntimeError(f"WebSocket: {msg['error']['message']}")
        yield msg
        if msg["type"] == "execution_complete":
            return


async def over_websocket(sid):
    url = BASE.replace("http", "ws", 1) + f"/session/{sid}/ws"
    if KEY:
        url += "?token=" + urllib.parse.quote(KEY, safe="")
    async with websockets.connect(url) as ws:
        print("input() answered over the WebSocket:")
        async for msg in ws_run(ws, ASK):
            if msg["type"] == "input_request":
                print(f"  asked {msg['prompt']!r}, answering 'Ada'")
                await ws.send(json.dumps({"type": "input", "value": "Ada"}))
            status = show(msg["type"], msg)
        expect(status)

        print("a long run, interrupted once it printed:")
        interrupted = False
        async for msg in ws_run(ws, LONG):
            if msg["type"] == "stdout" and not interrupted:
                await ws.send(json.dumps({"type": "interrupt"}))
                interrupted = True
            status = show(msg["type"], msg)
        expect(status, "interrupted")


def main():
    sessions, checkpoint = [], None
    try:
        sid = api("POST", "/session")["session_id"]
        sessions.append(sid)
        print(f"session {sid} created at {BASE}")

        print("a run streamed over SSE:")
        expect(sse_run(sid, COUNT))

        asyncio.run(over_websocket(sid))

        checkpoint = api("POST", f"/session/{sid}/checkpoint")["checkpoint_id"]
        print(f"checkpoint {checkpoint} saved")
        new = api("POST", "/session", json={"from_checkpoint": checkpoint})
        sessions.append(new["session_id"])
        print(f"session {new['session_id']} made from it; there:")
        expect(sse_run(new["session_id"], STATE))
    finally:
        for sid in sessions:
            api("DELETE", f"/session/{sid}")
            print(f"session {sid} deleted")
        if checkpoint:
            api("DELETE", f"/session/checkpoints/{checkpoint}")
            print(f"checkpoint {checkpoint} deleted")


if __name__ == "__main__":
    try:
        main()
    except requests.ConnectionError:
        sys.exit(f"pyrepl_client.py: cannot reach {BASE} (is util/run running?)")
    except Exception as e:
        sys.exit(f"pyrepl_client.py: {e}")
