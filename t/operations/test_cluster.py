"""PyREPL past one host (issue 20): util/cluster's hosts, each with its
pyrepl_node, behind conf/cluster/front.conf, a stock nginx.  Sessions
spread over the hosts and every request about one reaches its host; a
killed host loses its own sessions only (the front answers 503 JSON for
them) while creates go on elsewhere; a checkpoint made on one host restores
on another from the storage they share, for its own key only.

The hosts are separate nginx instances, each with its own supervisor,
sessions and table, on loopback ports of this machine (what separates them
is everything but the kernel); util/cluster itself starts them.
"""

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile

import pytest
import requests
import websockets

from helpers import (BAD_LOG, BUILD, PRELOAD, ROOT, Nginx, bad_lines,
                     children, cmdline, kill_all, leftovers, nginx_t_refusal,
                     parse_sse, processes_under, running, san_env,
                     san_reports, stdout_of, wait_for)


HOSTS = ("h1", "h2", "h3")
KEY_A, KEY_B = "cluster-key-a-0123456789", "cluster-key-b-0123456789"


def free_ports(n):
    """A base port with the n ports after it free too."""
    for _ in range(50):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        base = s.getsockname()[1]
        s.close()
        if base + n > 65535:
            continue
        try:
            for p in range(base, base + n + 1):
                t = socket.socket()
                t.bind(("127.0.0.1", p))
                t.close()
        except OSError:
            continue
        return base
    raise AssertionError("no run of free ports")


class Cluster:
    """util/cluster 3 in a temp dir, with an API key file on every host."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pyrepl-cluster-")
        os.chmod(self.dir, 0o755)
        self.port = free_ports(len(HOSTS))
        self.url = f"http://127.0.0.1:{self.port}"
        keys = os.path.join(self.dir, "keys")
        with open(keys, "w") as f:
            f.write(f"{KEY_A}\n{KEY_B}\n")
        self.extra = os.path.join(self.dir, "keys.conf")
        with open(self.extra, "w") as f:
            f.write(f"pyrepl_api_key_file {keys};\n")
        env = dict(os.environ, PYREPL_BUILD=BUILD)
        if PRELOAD:
            self.logs = os.path.join(self.dir, "san")
            os.mkdir(self.logs)
            os.chmod(self.logs, 0o1777)
            env.update(san_env(self.logs))    # util/cluster preloads
            env["ASAN_OPTIONS"] += ":detect_leaks=0"
        self.proc = subprocess.Popen(
            [os.path.join(ROOT, "util", "cluster"), "--no-build", "--port",
             str(self.port), "--dir", self.dir, "--host-conf", self.extra,
             str(len(HOSTS))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env, start_new_session=True)
        self.http = requests.Session()
        self.http.headers["X-API-Key"] = KEY_A

        def up():
            assert self.proc.poll() is None, self.proc.stderr.read()
            try:
                return all(requests.get(f"{self.url}/node/{h}/status",
                                        timeout=2).status_code == 200
                           for h in HOSTS)
            except requests.RequestException:
                return False

        wait_for(up, timeout=30, what="the cluster to answer")
        # nginx's workers: neither their command line nor their working
        # directory names the cluster's folder (processes_under)
        self.workers = set()
        for name in HOSTS + ("front",):
            with open(os.path.join(self.dir, name, "logs", "nginx.pid")) as f:
                self.workers.update(children(int(f.read())))

    def create(self, node=None, key=KEY_A, **body):
        where = f"/node/{node}" if node else ""
        r = self.http.post(f"{self.url}{where}/session", json=body,
                           headers={"X-API-Key": key})
        assert r.status_code == 201, r.text
        return r.json()

    def run_json(self, sid, code, key=KEY_A):
        r = self.http.post(f"{self.url}/session/{sid}/run",
                           json={"code": code},
                           headers={"Accept": "application/json",
                                    "X-API-Key": key})
        assert r.status_code == 200, r.text
        return r.json()

    def kill_host(self, name):
        """The host and everything of it gone at once, as a machine that
        fails: its nginx, its supervisor, its sessions."""
        prefix = os.path.join(self.dir, name) + "/"
        tree = processes_under(prefix)
        assert tree
        with open(os.path.join(prefix, "logs", "nginx.pid")) as f:
            todo = [int(f.read())]
        while todo:                     # nginx's workers, the supervisor
            pid = todo.pop()
            tree.append(pid)
            todo += children(pid)
        kill_all(tree)
        wait_for(lambda: not any(os.path.exists(f"/proc/{p}") and running(p)
                                 for p in tree),
                 what=f"{name} to be gone")

    def stop(self):
        """Ctrl-C, as util/cluster's user stops it; then nothing of it is
        left, and no host logged an alert or a sanitizer report."""
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        left = leftovers(self.dir + "/", timeout=20)
        left += [p for p in self.workers if running(p)
                 and "nginx" in " ".join(cmdline(p))]
        kill_all(left)
        problems = []
        if left:
            problems.append(f"processes left behind: {left}")
        for name in HOSTS + ("front",):
            try:
                with open(os.path.join(self.dir, name, "logs",
                                       "error.log")) as f:
                    bad = bad_lines(f.read(), BAD_LOG)
            except FileNotFoundError:
                continue
            if bad:
                problems.append(f"{name}'s error.log:\n" + "\n".join(bad))
        if PRELOAD:
            problems += san_reports(self.logs)
        assert not problems, "; ".join(problems) + f" ({self.dir} kept)"
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    c = Cluster()
    yield c
    c.stop()


def test_sessions_spread_over_the_hosts_and_stay_put(cluster):
    made = [cluster.create() for _ in range(9)]
    nodes = [s["node"] for s in made]
    assert set(nodes) == set(HOSTS), nodes
    for s in made:
        assert s["session_id"].startswith(s["node"] + "_")
        assert len(s["session_id"]) == 32
    # every request about a session reaches the host that has its state
    for s in made:
        cluster.run_json(s["session_id"], "x = 20")
    for s in made:
        sid = s["session_id"]
        assert cluster.run_json(sid, "x * 2 + 2")["result"] == {
            "text/plain": "42"}
        got = cluster.http.get(f"{cluster.url}/session/{sid}").json()
        assert got["node"] == s["node"] and got["execution_count"] == 2
    # each host lists its own sessions, reached by name through the front
    for h in HOSTS:
        listed = cluster.http.get(f"{cluster.url}/node/{h}/session").json()
        ids = {x["session_id"] for x in listed["sessions"]}
        assert ids == {s["session_id"] for s in made if s["node"] == h}
    for s in made:
        r = cluster.http.delete(f"{cluster.url}/session/{s['session_id']}")
        assert r.status_code == 204


def test_streams_and_websockets_go_through_the_front(cluster):
    sid = cluster.create()["session_id"]
    code = "import time\nfor i in range(3):\n    print(i, flush=True)\n" \
           "    time.sleep(0.2)"
    r = cluster.http.post(f"{cluster.url}/session/{sid}/run",
                          json={"code": code}, stream=True, timeout=30)
    assert r.status_code == 200
    first = None
    events = []
    for event, data in parse_sse(r):
        events.append((event, data))
        if event == "stdout" and first is None:
            first = data["text"]
            # it came before the run ended: the front did not buffer it
            assert not any(e == "execution_complete" for e, _ in events)
        if event == "execution_complete":
            break
    assert first.startswith("0") and stdout_of(events) == "0\n1\n2\n"

    async def over_ws():
        url = f"ws://127.0.0.1:{cluster.port}/session/{sid}/ws?token={KEY_A}"
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"type": "run", "id": "r1",
                                      "code": "print('ws'); 6 * 7"}))
            seen = []
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
                seen.append(msg)
                if msg["type"] in ("execution_complete", "error"):
                    return seen

    seen = asyncio.run(over_ws())
    assert "".join(m["text"] for m in seen if m["type"] == "stdout") == "ws\n"
    assert [m["data"] for m in seen if m["type"] == "result"] == [
        {"text/plain": "42"}]
    cluster.http.delete(f"{cluster.url}/session/{sid}")


def test_the_fronts_logs_show_no_key(cluster):
    # a browser's WebSocket sends its key in the URI; the hosts blank it out
    # of their logs, and so must the front (whose logs a Kubernetes
    # deployment prints)
    sid = cluster.create()["session_id"]

    async def over_ws():
        url = f"ws://127.0.0.1:{cluster.port}/session/{sid}/ws" \
              f"?a=1&TOKEN={KEY_B}&token={KEY_A}"
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"type": "run", "id": "r1",
                                      "code": "1"}))
            while json.loads(await asyncio.wait_for(ws.recv(), 30))[
                    "type"] not in ("execution_complete", "error"):
                pass

    asyncio.run(over_ws())
    logs = os.path.join(cluster.dir, "front", "logs")

    def logged():
        with open(os.path.join(logs, "access.log")) as f:
            return f"/session/{sid}/ws?a=1&TOKEN=****" in f.read()

    wait_for(logged, what="the WebSocket in the front's access log")
    for name in os.listdir(logs):
        with open(os.path.join(logs, name)) as f:
            text = f.read()
        assert KEY_A not in text and KEY_B not in text, name
    cluster.http.delete(f"{cluster.url}/session/{sid}")


def test_a_route_no_host_serves_is_a_json_404(cluster):
    for path in ("/node/h1/nothing", "/elsewhere", "/node/h3/api/x"):
        r = cluster.http.get(cluster.url + path)
        assert r.status_code == 404, path
        assert r.json()["error"]["code"] == "not_found"


def test_a_node_the_front_does_not_know_is_a_json_404(cluster):
    for path in ("/session/zz_" + "0" * 29, "/node/zz/session"):
        r = cluster.http.get(cluster.url + path)
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"


def test_a_checkpoint_restores_on_another_host_for_its_key_only(cluster):
    src = cluster.create(node="h1")["session_id"]
    cluster.run_json(src, "def f(n):\n    return n + 1\nx = f(40)")
    r = cluster.http.post(f"{cluster.url}/session/{src}/checkpoint")
    assert r.status_code == 201, r.text
    cid = r.json()["checkpoint_id"]
    # on each other host by name, and through the front to any host
    for node in ("h2", "h3", None):
        made = cluster.create(node=node, from_checkpoint=cid)
        assert made["restored_from"] == cid
        if node:
            assert made["node"] == node
        assert cluster.run_json(made["session_id"], "f(x)")["result"] == {
            "text/plain": "42"}
        cluster.http.delete(f"{cluster.url}/session/{made['session_id']}")
    # another key's: not found on any host
    for node in HOSTS:
        r = cluster.http.post(f"{cluster.url}/node/{node}/session",
                              json={"from_checkpoint": cid},
                              headers={"X-API-Key": KEY_B})
        assert r.status_code == 404, r.text
    # every host lists it for its key
    for node in HOSTS:
        listed = cluster.http.get(
            f"{cluster.url}/node/{node}/session/checkpoints").json()
        assert cid in {c["checkpoint_id"] for c in listed["checkpoints"]}
    cluster.http.delete(f"{cluster.url}/session/{src}")
    r = cluster.http.delete(f"{cluster.url}/session/checkpoints/{cid}")
    assert r.status_code == 204


def test_a_lost_host_loses_only_its_own_sessions():
    c = Cluster()
    try:
        by_node = {h: c.create(node=h)["session_id"] for h in HOSTS}
        for sid in by_node.values():
            c.run_json(sid, "x = 1")
        c.kill_host("h2")
        r = c.http.post(f"{c.url}/session/{by_node['h2']}/run",
                        json={"code": "x"})
        assert r.status_code == 503
        assert r.headers["Content-Type"].startswith("application/json")
        assert r.json()["error"]["code"] == "unavailable"
        # the others keep their sessions
        for h in ("h1", "h3"):
            assert c.run_json(by_node[h], "x + 1")["result"] == {
                "text/plain": "2"}
        # and creates go on, on the hosts that are left
        nodes = [c.create()["node"] for _ in range(6)]
        assert set(nodes) == {"h1", "h3"}, nodes
    finally:
        c.stop()


def test_a_closed_terminal_leaves_nothing():
    # a hangup reaches the terminal's whole process group: nginx takes it
    # for a reload, so util/cluster must stop everything itself
    c = Cluster()
    c.create()
    os.killpg(c.proc.pid, signal.SIGHUP)
    c.proc.wait(timeout=60)
    c.stop()


# one host's side -------------------------------------------------------------

@pytest.mark.parametrize("name", ["H1", "node_1", "abcdefgh", '""'])
def test_nginx_t_refuses_a_node_name_ids_cannot_carry(name):
    assert "pyrepl_node must be 1 to 7 lowercase letters and digits" in \
        nginx_t_refusal(f"pyrepl_node {name};")


def test_a_named_hosts_ids_carry_its_name_in_every_dialect():
    n = Nginx(http_extra="pyrepl_node n7;",
              server_extra="location /api { pyrepl; pyrepl_dialect jupyter; }")
    n.start()
    try:
        sid = n.create()
        assert sid.startswith("n7_") and len(sid) == 32
        assert n.http.get(f"{n.url}/session/{sid}").json()["node"] == "n7"
        assert n.run_json(sid, "1 + 1")["result"] == {"text/plain": "2"}
        # Jupyter's kernel id is the session id in a UUID's form: the name
        # and "_" in its first group, where the front's map finds it
        r = n.http.post(f"{n.url}/api/kernels", json={"name": "python3"})
        assert r.status_code == 201, r.text
        kid = r.json()["id"]
        assert kid.startswith("n7_") and kid.count("-") == 4
        assert n.http.get(f"{n.url}/api/kernels/{kid}").json()["id"] == kid
        assert n.http.delete(f"{n.url}/api/kernels/{kid}").status_code == 204
        # another node's id is no session here
        other = n.http.get(f"{n.url}/session/n8_" + "0" * 29)
        assert other.status_code == 404
    finally:
        n.check_and_clean()


def test_a_named_hosts_sessions_outlive_its_supervisor():
    # the journal holds named ids: a new supervisor adopts their sessions
    n = Nginx(http_extra="pyrepl_node n7;")
    n.start()
    try:
        sid = n.create()
        n.run_json(sid, "kept = 41")
        old = n.supervisor_pid()
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: n.supervisor_pid() not in (None, old),
                 what="a new supervisor")
        assert n.run_json(sid, "kept + 1")["result"] == {"text/plain": "42"}
        assert f"session {sid} (pid " in n.error_log()
        assert "ignoring the line" not in n.error_log()
        assert n.http.delete(f"{n.url}/session/{sid}").status_code == 204
    finally:
        n.check_and_clean()
