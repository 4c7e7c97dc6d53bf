"""nginx integration: workers share sessions, reload keeps them, quit leaves
no process, and nginx -t rejects bad directives."""

import os
import re
import signal

import pytest
import requests

from helpers import Nginx, wait_for, processes_under


@pytest.fixture
def fresh():
    """An nginx of its own for tests that stop or reload it."""
    made = []

    def make(**kw):
        n = Nginx(**kw)
        made.append(n)
        return n

    yield make
    for n in made:
        n.check_and_clean()


def test_two_workers_share_every_session(fresh):
    n = fresh(workers=2, server_extra="add_header X-Worker $pid always;")
    n.start()
    sid = n.create()
    n.run(sid, "hits = []")
    seen = set()

    def both_workers_ran():
        # a new connection each time, so the kernel spreads them out
        with requests.Session() as s:
            r = s.post(f"{n.url}/session/{sid}/run",
                       json={"code": "hits.append(1); len(hits)"},
                       headers={"Accept": "application/json"})
            assert r.status_code == 200
            seen.add(r.headers["X-Worker"])
        return len(seen) == 2

    wait_for(both_workers_ran, timeout=30, what="runs on both workers")
    # every run, on either worker, saw the one namespace
    total = n.run_json(sid, "len(hits)")["result"]["text/plain"]
    s = n.http.get(f"{n.url}/session/{sid}").json()
    assert s["execution_count"] == int(total) + 2


def test_reload_keeps_live_sessions(fresh):
    n = fresh(workers=2).start()
    sid = n.create()
    n.run(sid, "kept = 'across reload'")
    supervisor = n.supervisor_pid()
    old = n.worker_pids()
    n.send("reload")
    wait_for(lambda: not set(n.worker_pids()) & set(old)
             and len(n.worker_pids()) == 2, what="new workers")
    n.http = requests.Session()
    assert n.run_json(sid, "kept")["result"] == {"text/plain":
                                                 "'across reload'"}
    assert n.supervisor_pid() == supervisor
    assert sid in [s["session_id"] for s in
                   n.http.get(n.url + "/session").json()["sessions"]]


@pytest.mark.parametrize("how", [signal.SIGQUIT, signal.SIGTERM])
def test_stopping_nginx_leaves_no_process(fresh, how):
    n = fresh(workers=2).start()
    sids = [n.create() for _ in range(3)]
    for sid in sids:
        n.run(sid, "import subprocess; "
                   "p = subprocess.Popen(['sleep', '1000'])")
    assert len(processes_under(n.prefix)) >= 1 + 2 + 3
    n.stop(how)
    assert n.leftovers() == []
    # nothing of PyREPL's is left on disk either, keeper.pid included
    assert not os.path.exists(os.path.join(n.prefix, "run"))
    assert not os.path.exists(os.path.join(n.prefix, "work"))
    # the keeper's and supervisor's lines carry the time, as nginx's do
    ours = [l for l in n.error_log().splitlines()
            if "pyrepl-keeper[" in l or "pyrepl-supervisor[" in l]
    assert ours and all(re.match(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d "
                                 r"pyrepl-(keeper|supervisor)\[", l)
                        for l in ours), ours


def test_a_supervisor_socket_of_a_dead_instance_is_replaced(fresh):
    n = fresh().start()
    n.stop()
    assert n.leftovers() == []
    n.start()
    sid = n.create()
    assert n.run_json(sid, "1")["result"] == {"text/plain": "1"}


@pytest.mark.parametrize("change,message", [
    (dict(zone_size="abc"), "invalid pyrepl_zone size"),
    (dict(zone_size="8k"), "is too small"),
    (dict(bin_dir="/nonexistent"), "is not executable"),
    (dict(http_extra="pyrepl_session_ttl 2d;"), "pyrepl_session_ttl"),
    (dict(http_extra="pyrepl_max_frame 1k;"), "pyrepl_max_frame"),
    (dict(socket_dir="/tmp/" + "d" * 90), "too long for Unix socket paths"),
    (dict(http_extra="pyrepl_zone other 1m;"), "is duplicate"),
    (dict(http_extra="pyrepl_supervisor_timeout soon;"), "invalid value"),
])
def test_nginx_t_rejects_bad_directives(fresh, change, message):
    n = fresh()
    n.write_conf(**change)
    r = n.test_config()
    assert r.returncode != 0
    assert message in r.stderr, r.stderr


def test_pyrepl_without_a_zone_is_rejected(fresh):
    n = fresh()
    conf = open(n.conf_path).read().replace("pyrepl_zone pyrepl 4m;", "")
    open(n.conf_path, "w").write(conf)
    r = n.test_config()
    assert r.returncode != 0
    assert "require a \"pyrepl_zone\"" in r.stderr


def test_nginx_t_accepts_the_example_and_starts_nothing(fresh):
    n = fresh()
    r = n.test_config()
    assert r.returncode == 0, r.stderr
    assert processes_under(n.prefix) == []
