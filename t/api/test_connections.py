"""Connections from nginx workers to session processes
(pyrepl_connection_cache): a worker keeps its connection to a session once
a run there has ended cleanly, and the session's next run from that worker
goes over it instead of a new socket, connect and accept.  Idle ones close
after their timeout, when their session process goes (a restart or a
rollback puts another under the same id), and when the worker exits; a
client that leaves mid-run still interrupts its run.

What a user can see is the session process's side: the connections it
holds, as the host's /proc lists its descriptors (conns())."""

import ast
import asyncio
import json
import os
import re

import pytest
import requests
import websockets

from helpers import (PID_CODE, Nginx, host_pid, nginx_t_refusal, parse_sse,
                     pid_of, wait_for, ws_url)

E2B = "location /e2b/ { pyrepl; pyrepl_dialect e2b; }"


def conns(pid):
    """Inodes of the connections session process pid accepted (a Python
    session's are its I/O thread's): nginx's connections to it.  The
    kernel names an accepted Unix socket by its listening socket's path, in
    pyrepl_socket_dir."""
    accepted = set()
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            field = line.split()
            # Flags 0x10000: listening; Type 1: SOCK_STREAM
            if (len(field) == 8 and field[7].endswith(".sock")
                    and "/pyrepl-t-" in field[7]
                    and not int(field[3], 16) & 0x10000
                    and int(field[4], 16) == 1):
                accepted.add(field[6])
    found = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        fd_dir = f"/proc/{pid}/task/{tid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except FileNotFoundError:
            continue
        except PermissionError:
            pytest.skip("a session's descriptors are root's to read")
        for fd in fds:
            try:
                link = os.readlink(f"{fd_dir}/{fd}")
            except FileNotFoundError:
                continue
            m = re.fullmatch(r"socket:\[(\d+)\]", link)
            if m and m.group(1) in accepted:
                found.add(m.group(1))
    return found


@pytest.fixture(scope="module")
def nginx():
    n = Nginx(workers=2, server_extra=E2B).start()
    yield n
    n.check_and_clean()


def answer(nginx, sid, code, **extra):
    r = nginx.run_json(sid, code, **extra)
    assert r["status"] == "ok", r
    return r


@pytest.mark.parametrize("how", ["json", "sse"])
def test_runs_in_a_session_share_one_connection(nginx, how):
    sid = nginx.create()
    pid = pid_of(nginx, sid)
    seen = []
    for i in range(5):
        if how == "json":
            assert answer(nginx, sid, f"{i} + 1")["result"] == \
                {"text/plain": str(i + 1)}
        else:
            assert nginx.run(sid, f"{i} + 1")[-1][1]["status"] == "ok"
        seen.append(conns(pid))
    assert len(seen[0]) == 1 and all(s == seen[0] for s in seen), seen


def test_a_bash_session_keeps_its_connection_too(nginx):
    sid = nginx.create(language="bash")
    # the shell is a child of the session process
    r = answer(nginx, sid, "echo $PPID $(readlink /proc/$$/ns/pid)")
    pid = host_pid(int(r["stdout"].split()[0]), r["stdout"].split()[1])
    seen = []
    for _ in range(3):
        assert answer(nginx, sid, "true")["exit_code"] == 0
        seen.append(conns(pid))
    assert len(seen[0]) == 1 and all(s == seen[0] for s in seen), seen


def test_runs_over_a_websocket_share_one_connection(nginx):
    sid = nginx.create()

    async def go():
        seen = []
        async with websockets.connect(ws_url(nginx, sid)) as ws:
            for i in range(5):
                await ws.send(json.dumps({"type": "run", "id": i,
                                          "code": PID_CODE}))
                while True:
                    ev = json.loads(await asyncio.wait_for(ws.recv(), 30))
                    if ev["type"] == "result":
                        pid = host_pid(*ast.literal_eval(
                            ev["data"]["text/plain"]))
                    if ev["type"] == "execution_complete":
                        assert ev["status"] == "ok"
                        break
                seen.append(conns(pid))
        return seen

    seen = asyncio.run(go())
    assert len(seen[0]) == 1 and all(s == seen[0] for s in seen), seen


def test_a_client_that_leaves_interrupts_its_run_on_a_kept_connection(nginx):
    sid = nginx.create()
    pid = pid_of(nginx, sid)
    kept = conns(pid)
    assert len(kept) == 1
    # the same client connection, so the same worker, which kept one
    r = nginx.http.post(f"{nginx.url}/session/{sid}/run",
                        json={"code": "import time\nstopped = False\n"
                                      "try:\n    print('go', flush=True)\n"
                                      "    time.sleep(60)\n"
                                      "except KeyboardInterrupt:\n"
                                      "    stopped = True"},
                        stream=True)
    events = parse_sse(r)
    assert next(events)[0] == "init"
    assert next(events)[0] == "stdout"
    assert conns(pid) == kept
    r.close()
    wait_for(lambda: not kept & conns(pid),
             what="the run's connection to close")
    assert answer(nginx, sid, "stopped")["result"] == {"text/plain": "True"}


def test_a_rollback_and_an_explicit_rollback_answer_at_once(nginx):
    sid = nginx.create()
    answer(nginx, sid, "x = 1")
    first = pid_of(nginx, sid)
    r = nginx.run_json(sid, "x = 2\n1/0", tx_policy="commit_on_success")
    assert r["tx"] == "rolled_back"
    # the next run goes to the snapshot now serving the session, at once
    second = pid_of(nginx, sid)
    assert second != first
    assert answer(nginx, sid, "x")["result"] == {"text/plain": "1"}
    assert len(conns(second)) == 1

    r = nginx.run_json(sid, "x = 3", tx_policy="explicit")
    assert r["tx"] == "pending"
    assert nginx.http.post(f"{nginx.url}/session/{sid}/rollback") \
        .status_code == 204
    assert answer(nginx, sid, "x")["result"] == {"text/plain": "1"}
    assert pid_of(nginx, sid) not in (first, second)


def test_a_restarted_e2b_context_answers_at_once(nginx):
    ctx = nginx.http.post(nginx.url + "/e2b/contexts",
                          json={"language": "python"}).json()

    def execute(code):
        r = nginx.http.post(nginx.url + "/e2b/execute",
                            json={"code": code, "context_id": ctx["id"]})
        assert r.status_code == 200, r.text
        return [json.loads(l) for l in r.text.splitlines()]

    def pid():
        lines = execute(PID_CODE)
        return host_pid(*ast.literal_eval(
            [l["text"] for l in lines if l["type"] == "result"][0]))

    for i in range(3):
        lines = execute(f"n = {i}\nn")
        assert [l["text"] for l in lines if l["type"] == "result"] == \
            [str(i)], lines
        before = pid()
        assert len(conns(before)) == 1
        r = nginx.http.post(f"{nginx.url}/e2b/contexts/{ctx['id']}/restart")
        assert r.status_code == 204
        lines = execute("'n' in dir()")
        assert [l["text"] for l in lines if l["type"] == "result"] == \
            ["False"], lines
        assert pid() != before


def test_an_idle_connection_closes_after_its_timeout():
    n = Nginx(http_extra="pyrepl_connection_cache 8 2s;").start()
    try:
        sid = n.create()
        pid = pid_of(n, sid)
        kept = conns(pid)
        assert len(kept) == 1
        wait_for(lambda: not conns(pid), what="the idle connection to close")
        assert answer(n, sid, "1 + 1")["result"] == {"text/plain": "2"}
    finally:
        n.check_and_clean()


def test_past_the_cap_the_longest_idle_connection_closes():
    n = Nginx(http_extra="pyrepl_connection_cache 2;").start()
    try:
        sids = [n.create() for _ in range(3)]
        pids = [pid_of(n, sid) for sid in sids]
        # the first session's connection went when the third was kept
        wait_for(lambda: not conns(pids[0]),
                 what="the longest idle connection to close")
        assert [len(conns(pid)) for pid in pids[1:]] == [1, 1]
        assert answer(n, sids[0], "1 + 1")["result"] == {"text/plain": "2"}
        wait_for(lambda: not conns(pids[1]),
                 what="the next longest idle connection to close")
    finally:
        n.check_and_clean()


def test_with_the_cache_off_every_run_connects():
    n = Nginx(http_extra="pyrepl_connection_cache off;").start()
    try:
        sid = n.create()
        pid = pid_of(n, sid)
        for _ in range(3):
            assert answer(n, sid, "1 + 1")["result"] == {"text/plain": "2"}
            wait_for(lambda: not conns(pid),
                     what="the run's connection to close")
    finally:
        n.check_and_clean()


def test_bad_values_are_refused():
    for bad in ("pyrepl_connection_cache many;",
                "pyrepl_connection_cache 70000;"):
        assert "must be \"off\" or a number of connections" in \
            nginx_t_refusal(bad)
    for bad in ("pyrepl_connection_cache 8 0s;",
                "pyrepl_connection_cache 8 soon;"):
        assert "timeout must be a positive time" in nginx_t_refusal(bad)


def test_a_reload_closes_idle_connections():
    n = Nginx(workers=2).start()
    try:
        sids = [n.create() for _ in range(4)]
        pids = []
        for sid in sids:
            # a client connection of its own: either worker may serve it
            with requests.Session() as s:
                r = s.post(f"{n.url}/session/{sid}/run",
                           json={"code": "1"}, stream=True)
                assert list(parse_sse(r))[-1][1]["status"] == "ok"
            pids.append(pid_of(n, sid))
        assert all(conns(pid) for pid in pids)
        old = n.worker_pids()
        n.send("reload")
        wait_for(lambda: not set(old) & set(n.worker_pids()),
                 what="the old workers to exit")
        wait_for(lambda: not any(conns(pid) for pid in pids),
                 what="their idle connections to close")
        for sid in sids:
            assert answer(n, sid, "2")["result"] == {"text/plain": "2"}
    finally:
        n.check_and_clean()
