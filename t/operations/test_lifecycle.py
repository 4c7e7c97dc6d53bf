"""Session lifecycle: TTL and renew, the reaper, idle timeout, the session
limit, interrupt, and the pyrepl_status endpoint."""

import os
import re
import threading
import time

import pytest
import requests

from helpers import Nginx, events_of, parse_sse, pid_of, running, wait_for


@pytest.fixture(scope="module")
def nginx():
    n = Nginx(workers=2,
              http_extra="pyrepl_max_sessions 6; pyrepl_reap_interval 100ms;"
                         " pyrepl_idle_timeout 4s; pyrepl_run_timeout_max 60s;"
                         " pyrepl_timeout_grace 500ms; pyrepl_max_output 64k;"
                         " pyrepl_max_code_size 2k;",
              server_extra="location = /status { pyrepl_status; }").start()
    yield n
    n.check_and_clean()


def test_a_run_that_swallows_its_timeout_is_killed(nginx):
    sid = nginx.create()
    other = nginx.create()
    nginx.run(other, "z = 3")
    code = ("import signal\n"
            "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "while True: pass\n")
    ev = nginx.run(sid, code, timeout_ms=200)
    err = events_of(ev, "error")[0]
    assert err["ename"] == "SessionCrashed"
    assert "ignored the interrupt" in err["evalue"]
    assert events_of(ev, "execution_complete")[0]["status"] == "crashed"
    assert nginx.http.get(f"{nginx.url}/session/{sid}").json()["state"] \
        == "crashed"
    assert nginx.run_json(other, "z")["result"] == {"text/plain": "3"}
    nginx.http.delete(f"{nginx.url}/session/{sid}")
    nginx.http.delete(f"{nginx.url}/session/{other}")


def test_timeout_ms_is_capped_by_pyrepl_run_timeout_max(nginx):
    sid = nginx.create()
    for bad in (0, 60001, -5):
        r = nginx.http.post(f"{nginx.url}/session/{sid}/run",
                            json={"code": "1", "timeout_ms": bad})
        assert r.status_code == 400
        assert "60000" in r.json()["error"]["message"]
    assert nginx.run_json(sid, "1", timeout_ms=60000)["status"] == "ok"
    nginx.http.delete(f"{nginx.url}/session/{sid}")


def test_output_past_pyrepl_max_output_is_cut_and_the_run_stopped(nginx):
    sid = nginx.create()
    ev = nginx.run(sid, "while True: print('é' * 99)")
    out = "".join(d["text"] for d in events_of(ev, "stdout"))
    assert 60 * 1024 < len(out.encode()) <= 64 * 1024
    assert set(out) <= {"é", "\n"}                 # no broken character
    err = "".join(d["text"] for d in events_of(ev, "stderr"))
    assert "pyrepl_max_output (65536 bytes)" in err
    assert events_of(ev, "execution_complete")[0]["status"] == "interrupted"
    assert nginx.run_json(sid, "'still here'")["status"] == "ok"
    nginx.http.delete(f"{nginx.url}/session/{sid}")


def test_code_over_pyrepl_max_code_size_is_413(nginx):
    sid = nginx.create()
    r = nginx.http.post(f"{nginx.url}/session/{sid}/run",
                        json={"code": "x = 1  #" + "#" * 3000})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_large"
    assert nginx.run_json(sid, "'#' * 3")["status"] == "ok"
    nginx.http.delete(f"{nginx.url}/session/{sid}")


def test_an_expired_session_is_reaped(nginx):
    sid = nginx.create(ttl_seconds=2)
    pid = pid_of(nginx, sid)
    workdir = os.path.join(nginx.prefix, "work", sid)
    assert os.path.isdir(workdir)

    def gone():
        return nginx.http.get(f"{nginx.url}/session/{sid}").status_code == 404

    wait_for(gone, timeout=5, what="the session to expire")
    wait_for(lambda: not running(pid), timeout=3, what="its process to go")
    wait_for(lambda: not os.path.exists(workdir), timeout=3,
             what="its directory to go")
    assert sid not in [s["session_id"] for s in
                       nginx.http.get(nginx.url + "/session").json()
                       ["sessions"]]
    r = nginx.http.post(f"{nginx.url}/session/{sid}/run", json={"code": "1"})
    assert r.status_code == 404


def test_renew_moves_the_expiry(nginx):
    sid = nginx.create(ttl_seconds=2)
    r = nginx.http.post(f"{nginx.url}/session/{sid}/renew",
                        json={"ttl_seconds": 600})
    assert r.status_code == 200
    expires = time.mktime(time.strptime(r.json()["expires_at"],
                                        "%Y-%m-%dT%H:%M:%SZ"))
    assert expires - time.mktime(time.gmtime()) > 590
    s = nginx.http.get(f"{nginx.url}/session/{sid}").json()
    assert s["expires_at"] == r.json()["expires_at"]
    # still there after the original TTL would have ended it
    nginx.run(sid, "import time; time.sleep(2.5)")
    assert nginx.http.get(f"{nginx.url}/session/{sid}").status_code == 200
    nginx.http.delete(f"{nginx.url}/session/{sid}")


@pytest.mark.parametrize("body", [None, {}, {"ttl_seconds": 0},
                                  {"ttl_seconds": "5"},
                                  {"ttl_seconds": 86401}])
def test_renew_rejects_bad_ttls(nginx, body):
    sid = nginx.create()
    r = nginx.http.post(f"{nginx.url}/session/{sid}/renew", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "bad_request"
    nginx.http.delete(f"{nginx.url}/session/{sid}")


def test_renew_of_an_unknown_session_is_404(nginx):
    r = nginx.http.post(f"{nginx.url}/session/{'a' * 32}/renew",
                        json={"ttl_seconds": 5})
    assert r.status_code == 404


def test_an_idle_session_times_out_but_a_used_one_stays(nginx):
    idle = nginx.create()
    used = nginx.create()
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        nginx.run(used, "1")
        time.sleep(0.5)   # a client's think time, not synchronisation
        if nginx.http.get(f"{nginx.url}/session/{idle}").status_code == 404:
            break
    assert nginx.http.get(f"{nginx.url}/session/{idle}").status_code == 404
    assert nginx.http.get(f"{nginx.url}/session/{used}").status_code == 200
    nginx.http.delete(f"{nginx.url}/session/{used}")


def test_a_busy_session_does_not_idle_out(nginx):
    sid = nginx.create()
    ev = nginx.run(sid, "import time; time.sleep(5); 'done'")
    assert events_of(ev, "result")[0]["data"]["text/plain"] == "'done'"
    nginx.http.delete(f"{nginx.url}/session/{sid}")


def test_the_session_limit_answers_429(nginx):
    ids = []
    while True:
        r = nginx.http.post(nginx.url + "/session")
        if r.status_code != 201:
            break
        ids.append(r.json()["session_id"])
        assert len(ids) <= 6
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "too_many_sessions"
    assert len(ids) >= 1
    nginx.http.delete(f"{nginx.url}/session/{ids.pop()}")
    ids.append(nginx.create())
    for sid in ids:
        nginx.http.delete(f"{nginx.url}/session/{sid}")


@pytest.mark.parametrize("code", [
    "while True: pass",
    "import time\ntime.sleep(100)",
])
def test_interrupt_stops_a_run_and_keeps_the_namespace(nginx, code):
    sid = nginx.create()
    nginx.run(sid, "kept = 7")
    s = requests.Session()
    r = s.post(f"{nginx.url}/session/{sid}/run",
               json={"code": "print('go', flush=True)\n" + code}, stream=True)
    events = parse_sse(r)
    assert next(events)[0] == "init"
    assert next(events)[0] == "stdout"
    i = nginx.http.post(f"{nginx.url}/session/{sid}/interrupt")
    assert i.status_code == 204
    rest = list(events)
    assert events_of(rest, "error")[0]["ename"] == "KeyboardInterrupt"
    assert events_of(rest, "execution_complete")[0]["status"] == "interrupted"
    assert nginx.run_json(sid, "kept")["result"] == {"text/plain": "7"}
    s.close()
    nginx.http.delete(f"{nginx.url}/session/{sid}")


def test_interrupt_of_an_idle_session_is_harmless(nginx):
    sid = nginx.create()
    assert nginx.http.post(f"{nginx.url}/session/{sid}/interrupt"
                           ).status_code == 204
    assert nginx.run_json(sid, "1 + 1")["status"] == "ok"
    nginx.http.delete(f"{nginx.url}/session/{sid}")
    assert nginx.http.post(f"{nginx.url}/session/{sid}/interrupt"
                           ).status_code == 404


def test_status_reports_sessions_and_counters(nginx):
    before = nginx.http.get(nginx.url + "/status").json()
    sid = nginx.create()
    nginx.run(sid, "1")
    nginx.run(sid, "1/0")
    st = nginx.http.get(nginx.url + "/status")
    assert st.status_code == 200
    st = st.json()
    assert st["status"] == "ok"
    assert st["supervisor"]["up"] is True
    assert st["zygote"]["up"] is True
    assert st["pool"]["min_idle"] == 2
    assert 0 <= st["pool"]["idle"] <= 2
    assert st["sessions"]["idle"] >= 1
    assert st["max_sessions"] == 6
    c, b = st["counters"], before["counters"]
    assert c["created"] == b["created"] + 1
    assert c["runs"]["ok"] == b["runs"]["ok"] + 1
    assert c["runs"]["error"] == b["runs"]["error"] + 1
    nginx.http.delete(f"{nginx.url}/session/{sid}")


def test_status_takes_get_and_head_only(nginx):
    head = nginx.http.head(nginx.url + "/status")
    assert head.status_code == 200 and head.content == b""
    r = nginx.http.post(nginx.url + "/status")
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, HEAD"
    assert r.json()["error"]["code"] == "method_not_allowed"


def test_status_in_prometheus_format(nginx):
    sid = nginx.create()
    nginx.run(sid, "1")
    r = nginx.http.get(nginx.url + "/status?format=prometheus")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    text = r.text
    assert re.search(r"^pyrepl_up 1$", text, re.M)
    assert re.search(r"^pyrepl_zygote_up 1$", text, re.M)
    assert re.search(r"^pyrepl_pool_idle [0-2]$", text, re.M)
    assert re.search(r'^pyrepl_sessions\{state="idle"\} [1-9]', text, re.M)
    assert re.search(r'^pyrepl_runs_total\{status="ok"\} [1-9]', text, re.M)
    buckets = [int(v) for v in re.findall(
        r'^pyrepl_run_duration_seconds_bucket\{le="[^"]+"\} (\d+)$', text,
        re.M)]
    assert buckets == sorted(buckets) and buckets[-1] >= 1
    count = int(re.search(r"^pyrepl_run_duration_seconds_count (\d+)$", text,
                          re.M).group(1))
    assert count == buckets[-1]
    for line in text.splitlines():
        assert line.startswith("#") or re.fullmatch(
            r'[a-z_]+(\{[a-z]+="[^"]*"\})? [0-9.]+', line), line
    nginx.http.delete(f"{nginx.url}/session/{sid}")


def test_status_says_when_the_supervisor_is_down(fresh_nginx):
    n = fresh_nginx
    wait_for(lambda: n.http.get(n.url + "/status").json()["status"] == "ok",
             what="the zygote to be ready")
    # stop the keeper (which would restart it) and the supervisor
    keeper = int(open(os.path.join(n.prefix, "run", "keeper.pid")).read())
    os.kill(keeper, 19)                        # SIGSTOP: no restarts
    os.kill(n.supervisor_pid(), 9)
    try:
        def down():
            r = n.http.get(n.url + "/status")
            return r.status_code == 503 and r.json()
        st = wait_for(down, what="status to report the supervisor down")
        assert st["supervisor"]["up"] is False
        assert st["status"] == "degraded"
        r = n.http.get(n.url + "/status?format=prometheus")
        assert re.search(r"^pyrepl_up 0$", r.text, re.M)
    finally:
        os.kill(keeper, 18)                    # SIGCONT: it restarts it


@pytest.fixture
def fresh_nginx():
    n = Nginx(workers=1, server_extra="location = /status "
                                      "{ pyrepl_status; }").start()
    yield n
    n.check_and_clean()


def test_a_crash_during_a_run_is_counted(nginx):
    before = nginx.http.get(nginx.url + "/status").json()["counters"]
    sid = nginx.create()
    ev = nginx.run(sid, "import os; os._exit(3)")
    assert events_of(ev, "execution_complete")[0]["status"] == "crashed"
    after = nginx.http.get(nginx.url + "/status").json()["counters"]
    assert after["crashes"] == before["crashes"] + 1
    r = nginx.http.get(nginx.url + "/status?format=prometheus")
    assert re.search(r"^pyrepl_session_crashes_total %d$"
                     % after["crashes"], r.text, re.M)
    nginx.http.delete(f"{nginx.url}/session/{sid}")


def test_a_full_zone_says_so():
    n = Nginx(zone_size="32k", http_extra="pyrepl_max_sessions 1000; "
                                          "pyrepl_pool_min_idle 0;").start()
    try:
        made = []
        while True:
            r = n.http.post(n.url + "/session", json={"language": "bash"})
            if r.status_code != 201:
                break
            made.append(r.json()["session_id"])
            assert len(made) < 1000
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "too_many_sessions"
        assert "session table is full" in r.json()["error"]["message"]
        assert "pyrepl_zone" in r.json()["error"]["message"]
        for sid in made:
            n.http.delete(f"{n.url}/session/{sid}")
    finally:
        n.check_and_clean()


def test_what_a_killed_worker_was_doing_is_finished_or_undone():
    n = Nginx(workers=1, http_extra="pyrepl_max_sessions 2; "
                                    "pyrepl_reap_interval 100ms;",
              server_extra="location = /status { pyrepl_status; }").start()
    n.expected.append(r"worker process \d+ exited on signal 9")
    try:
        busy = n.create()
        # a run in progress, and a create the supervisor holds up
        r = requests.post(f"{n.url}/session/{busy}/run",
                          json={"code": "import time; time.sleep(60)"},
                          stream=True)
        events = parse_sse(r)          # kept: its end would close r
        assert next(events)[0] == "init"
        supervisor = n.supervisor_pid()
        os.kill(supervisor, 19)                   # SIGSTOP
        def create():
            try:
                requests.post(n.url + "/session", timeout=30)
            except requests.ConnectionError:
                pass                    # its worker is killed meanwhile

        creating = threading.Thread(target=create)
        creating.start()

        def starting():
            # the table alone: /status would wait for the supervisor
            states = [s["state"] for s in
                      n.http.get(n.url + "/session").json()["sessions"]]
            return sorted(states) == ["busy", "starting"]
        wait_for(starting, what="a create in flight and a run")
        os.kill(n.worker_pids()[0], 9)
        os.kill(supervisor, 18)                   # SIGCONT
        creating.join(30)
        r.close()

        # the run's session is idle again, the create undone: nothing
        # counts against pyrepl_max_sessions but the one session
        def settled():
            try:
                st = n.http.get(n.url + "/status").json()["sessions"]
            except requests.RequestException:
                return False
            return (st["starting"], st["busy"], st["idle"]) == (0, 0, 1)
        wait_for(settled, what="the dead worker's work settled")
        other = n.create()

        # the killed run unwinds in its session a moment longer than the
        # table's mark: a run meanwhile is told so (409), then taken
        def taken():
            r = n.http.post(f"{n.url}/session/{busy}/run",
                            json={"code": "1 + 1"},
                            headers={"Accept": "application/json"})
            if r.status_code == 409 and "still finishing" in r.text:
                return False
            return r.json()
        assert wait_for(taken, what="the session to take a run")[
            "result"] == {"text/plain": "2"}
        assert n.run_json(other, "2 + 2")["result"] == {"text/plain": "4"}
    finally:
        n.check_and_clean()
