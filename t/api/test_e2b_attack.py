"""pyrepl_dialect e2b under attack: what a client (or an operator) does
that the happy path of test_e2b.py does not, as a user would see it.
Each test also checks that the instance still serves another key's run
afterwards; the fixture's teardown fails on [alert] lines, sanitizer
reports and processes left behind."""

import json
import os
import socket
import threading

import pytest
import requests

from helpers import Nginx, cmdline, wait_for

KEY = "e2b-attack-key-0123456789"
OTHER = "e2b-attack-other-0123456789"
FRESH = "e2b-attack-fresh-0123456789"       # its default context: made here


@pytest.fixture(scope="module")
def nginx():
    n = Nginx(server_extra="location /e2b/ { pyrepl; pyrepl_dialect e2b; }",
              http_extra=f"pyrepl_api_key {KEY}; pyrepl_api_key {OTHER}; "
                         f"pyrepl_api_key {FRESH}; "
                         f"pyrepl_keepalive 500ms;").start()
    yield n
    n.check_and_clean()


def execute(n, body, key=KEY, **kw):
    r = requests.post(n.url + "/e2b/execute", json=body,
                      headers={"X-Access-Token": key} if key else {}, **kw)
    lines = [json.loads(l) for l in r.text.splitlines()] if r.ok else []
    return r, lines


def of(lines, kind):
    return [l for l in lines if l["type"] == kind]


def contexts(n, key=KEY):
    r = requests.get(n.url + "/e2b/contexts",
                     headers={"E2B-Traffic-Access-Token": key})
    assert r.status_code == 200, r.text
    return r.json()


def new_context(n, key=KEY):
    r = requests.post(n.url + "/e2b/contexts", json={},
                      headers={"X-API-Key": key})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def send_execute(n, body, key=KEY):
    """POST /execute on a raw socket, the whole request at once."""
    data = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", n.port))
    s.sendall(b"POST /e2b/execute HTTP/1.1\r\nHost: t\r\n"
              b"X-Access-Token: " + key.encode() + b"\r\n"
              b"Content-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(data) + data)
    return s


def others_still_served(n):
    r, lines = execute(n, {"code": "6 * 7"}, key=OTHER)
    assert r.status_code == 200
    assert of(lines, "result")[0]["text"] == "42"


def test_a_run_whose_client_left_while_its_default_context_was_made_never_runs(
        nginx):
    # the key's first run makes its default context; the client is gone
    # before that is done, so nobody may run its code there afterwards
    assert contexts(nginx, FRESH) == []
    send_execute(nginx, {"code": "open('ran', 'w').close()"},
                 key=FRESH).close()
    wait_for(lambda: contexts(nginx, FRESH), what="the default context")
    # this run waits its turn behind the other one, if that one runs
    r, lines = execute(nginx, {"code": "import os\nos.path.exists('ran')"},
                       key=FRESH)
    assert of(lines, "result")[0]["text"] == "False"
    assert of(lines, "number_of_executions")[0]["execution_count"] == 1
    others_still_served(nginx)


def accepted_by(pids, port, client):
    """Whether one of the nginx processes pids holds the server side of
    the TCP connection from client (a socket) to port."""
    cport = client.getsockname()[1]
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in list(f)[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if (int(local.split(":")[1], 16) == port
                    and int(remote.split(":")[1], 16) == cport):
                inodes.add(fields[9])
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return True
    return False


def test_a_reload_while_a_run_waits_its_turn_answers_it(nginx):
    cid = new_context(nginx)
    go = os.path.join(nginx.prefix, "work", cid, "go")
    busy = requests.post(nginx.url + "/e2b/execute",
                         json={"code": "import os, time\n"
                                       "print('busy\\n', end='', flush=True)\n"
                                       "while not os.path.exists('go'):\n"
                                       "    time.sleep(0.02)\n"
                                       "'busy done'",
                               "context_id": cid},
                         headers={"X-Access-Token": KEY}, stream=True)
    lines = busy.iter_lines()
    assert json.loads(next(lines))["text"] == "busy\n"

    # a second run in that context waits in the worker that took it
    workers = nginx.worker_pids()
    waiter = send_execute(nginx, {"code": "'waited'", "context_id": cid})
    wait_for(lambda: accepted_by(workers, nginx.port, waiter),
             what="a worker to take the waiting run")

    # the busy run ends once its worker is quitting: the waiting one's
    # turn comes then
    nginx.send("reload")
    wait_for(lambda: all("shutting down" in " ".join(cmdline(pid))
                             for pid in workers),
             what="the old workers to quit")
    open(go, "w").close()

    rest = [json.loads(l) for l in lines]
    assert of(rest, "result")[0]["text"] == "'busy done'"

    # the old worker answered the waiting run before it went away
    waiter.settimeout(30)
    answer = b""
    while b"end_of_execution" not in answer:
        data = waiter.recv(65536)
        if not data:
            break
        answer += data
    waiter.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert b'"text":"\'waited\'"' in answer
    others_still_served(nginx)


@pytest.fixture(scope="module")
def slow_nginx():
    n = Nginx(server_extra="location /e2b/ { pyrepl; pyrepl_dialect e2b; "
                           "limit_rate 20k; }",
              http_extra="pyrepl_keepalive 500ms;").start()
    yield n
    n.check_and_clean()


def test_a_run_under_limit_rate_streams_to_its_end(slow_nginx):
    # limit_rate holds writes back with a timer of its own: a run must
    # neither replace it by send_timeout nor drop it, else the stream
    # stops (for good, once the run has ended)
    got = {}

    def run():
        r, lines = execute(slow_nginx, {"code": "print('y' * 60000)\n7"},
                           key=None)
        got["lines"] = lines

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(40)                      # about 3 s at 20k/s; stuck: never
    assert not t.is_alive(), "the run's stream stopped"
    lines = got["lines"]
    out = "".join(l["text"] for l in of(lines, "stdout"))
    assert out == "y" * 60000 + "\n"
    assert of(lines, "result")[0]["text"] == "7"
    assert lines[-1] == {"type": "end_of_execution"}
