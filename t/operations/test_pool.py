"""Managed sessions through nginx: the warm pool, the zygote and its warm-up
code, and a killed zygote or supervisor (issue 3).

The supervisor's "status" frame (pool processes ready, the zygote's pid,
live sessions) is read straight from its socket; process facts from /proc.
"""

import os
import signal
import time

import pytest
import requests

from helpers import (JAIL_HOME, PLAIN_GLOBALS, Nginx, nginx_t_refusal, pid_of,
                     pool_procs, processes_under, running, sup_status,
                     wait_for, workdir_of)


# helpers ------------------------------------------------------------------

def wait_pool(n, count):
    def full():
        st = sup_status(n)
        return st and st["pool"] == count and len(pool_procs(n)) == count
    wait_for(full, what=f"{count} pool processes ({sup_status(n)})")


def keeper_pid(n):
    with open(os.path.join(n.prefix, "run", "keeper.pid")) as f:
        return int(f.read())


def keeper_alive(n, not_pid):
    """Whether keeper.pid names a live process other than not_pid."""
    try:
        pid = keeper_pid(n)
    except (OSError, ValueError):
        return False
    return pid != not_pid and os.path.exists(f"/proc/{pid}")


def state_of(n, sid):
    return n.http.get(f"{n.url}/session/{sid}").json()["state"]


def try_create(n):
    """A new session's id, or None while creates fail."""
    try:
        r = requests.post(n.url + "/session", timeout=5)
    except requests.RequestException:
        return None
    return r.json()["session_id"] if r.status_code == 201 else None


@pytest.fixture(scope="module")
def nginx():
    n = Nginx(workers=2)
    n.warmups = os.path.join(n.prefix, "warmups")
    n.write_conf(http_extra=(
        "pyrepl_max_sessions 40; pyrepl_pool_min_idle 2; "
        "pyrepl_warmup \"import json, os; json.warm = 1; "
        f"open('{n.warmups}', 'a').write(str(os.getpid()) + ' ')\";"))
    n.start()
    wait_pool(n, 2)
    yield n
    n.check_and_clean()


# the warm pool --------------------------------------------------------------

def test_a_warm_create_is_a_fresh_empty_session(nginx):
    wait_pool(nginx, 2)
    ready = pool_procs(nginx)
    sid = nginx.create()
    doc = nginx.run_json(sid, "import os; (sorted(globals()), os.getcwd(), "
                              "os.listdir('.'), os.getpid())")
    names, cwd, files, pid = eval(doc["result"]["text/plain"])
    assert names == PLAIN_GLOBALS + ["os"]
    pid = pid_of(nginx, sid)
    assert workdir_of(pid) == os.path.join(nginx.prefix, "work", sid)
    assert cwd in (JAIL_HOME, workdir_of(pid))
    assert files == []
    assert pid in ready, "the session was not one of the pool's processes"
    # what one session leaves is not there for the next
    nginx.run_json(sid, "left = 1\nopen('file', 'w').write('x')")
    other = nginx.create()
    doc = nginx.run_json(other, "import os; sorted(globals()), "
                                "os.listdir('.')")
    assert doc["result"]["text/plain"] == repr((PLAIN_GLOBALS + ["os"], []))
    for s in (sid, other):
        nginx.http.delete(f"{nginx.url}/session/{s}")


def test_the_pool_refills_after_creates(nginx):
    wait_pool(nginx, 2)
    first = set(pool_procs(nginx))
    sids = [nginx.create() for _ in range(5)]
    pids = {pid_of(nginx, s) for s in sids}
    assert len(pids) == 5
    wait_pool(nginx, 2)
    assert not set(pool_procs(nginx)) & (first | pids)
    assert sup_status(nginx)["sessions"] >= 5
    for s in sids:
        nginx.http.delete(f"{nginx.url}/session/{s}")


def test_the_warmup_runs_once_in_the_zygote(nginx):
    zygote = sup_status(nginx)["zygote"]
    sids = [nginx.create() for _ in range(3)]
    for s in sids:
        doc = nginx.run_json(s, "'json' in __import__('sys').modules")
        assert doc["result"]["text/plain"] == "True"
        assert nginx.run_json(s, "import json; json.warm")["result"] == \
            {"text/plain": "1"}
    # one line per zygote ever started, none per session
    with open(nginx.warmups) as f:
        ran = [int(p) for p in f.read().split()]
    log = nginx.error_log()
    started = [int(l.rsplit(" ", 1)[1]) for l in log.splitlines()
               if "zygote started, pid" in l]
    assert ran == started and ran[-1] == zygote
    for s in sids:
        nginx.http.delete(f"{nginx.url}/session/{s}")


# a killed zygote ------------------------------------------------------------

def test_a_killed_zygote_is_replaced_and_creates_go_on(nginx):
    zygote = sup_status(nginx)["zygote"]
    assert zygote > 0
    os.kill(zygote, signal.SIGKILL)
    sid = nginx.create()
    assert nginx.run_json(sid, "6 * 7")["result"] == {"text/plain": "42"}
    wait_for(lambda: (sup_status(nginx) or {}).get("zygote") not in
             (None, 0, zygote), what="a new zygote")
    wait_pool(nginx, 2)
    nginx.http.delete(f"{nginx.url}/session/{sid}")


# a killed supervisor --------------------------------------------------------

def test_a_killed_supervisor_serves_creates_again_within_a_second(nginx):
    live = nginx.create()
    nginx.run_json(live, "state = 'kept'")
    live_pid = pid_of(nginx, live)
    old = nginx.supervisor_pid()

    t0 = time.monotonic()
    os.kill(old, signal.SIGKILL)
    sid = wait_for(lambda: try_create(nginx), timeout=5,
                   what="a create to work again")
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0, f"creates came back after {elapsed:.3f} s"

    assert nginx.supervisor_pid() not in (None, old)
    # the live session kept its process and its state
    assert nginx.run_json(live, "state")["result"] == {"text/plain":
                                                       "'kept'"}
    assert pid_of(nginx, live) == live_pid
    assert state_of(nginx, live) == "idle"
    assert nginx.run_json(sid, "1 + 1")["result"] == {"text/plain": "2"}
    # and it is managed again: a delete kills its process
    assert nginx.http.delete(f"{nginx.url}/session/{live}").status_code \
        == 204
    wait_for(lambda: not running(live_pid), what="the adopted session "
             "to be killed")
    nginx.http.delete(f"{nginx.url}/session/{sid}")
    wait_pool(nginx, 2)


def test_a_session_that_died_while_no_supervisor_ran_reads_crashed(nginx):
    keep, lose = nginx.create(), nginx.create()
    nginx.run_json(keep, "v = 'still here'")
    lose_pid = pid_of(nginx, lose)
    keeper = keeper_pid(nginx)
    old = nginx.supervisor_pid()

    os.kill(keeper, signal.SIGSTOP)           # no restart for now
    try:
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: not running(old), what="the supervisor to die")
        os.kill(lose_pid, signal.SIGKILL)
        wait_for(lambda: not running(lose_pid), what="the session to die")
    finally:
        os.kill(keeper, signal.SIGCONT)

    sid = wait_for(lambda: try_create(nginx), what="a create to work again")
    assert state_of(nginx, lose) == "crashed"
    ev = nginx.run_json(lose, "1")
    assert ev["status"] == "crashed"
    assert state_of(nginx, keep) == "idle"
    assert nginx.run_json(keep, "v")["result"] == {"text/plain":
                                                   "'still here'"}
    for s in (keep, lose, sid):
        nginx.http.delete(f"{nginx.url}/session/{s}")


def test_quit_after_a_supervisor_restart_leaves_no_process():
    n = Nginx(workers=1, http_extra="pyrepl_pool_min_idle 3;").start()
    try:
        sids = [n.create() for _ in range(3)]
        n.run(sids[0], "import subprocess; "
                       "p = subprocess.Popen(['sleep', '1000'])")
        os.kill(n.supervisor_pid(), signal.SIGKILL)
        sids.append(wait_for(lambda: try_create(n),
                             what="a create to work again"))
        wait_pool(n, 3)
        # keeper, supervisor, zygote, 3 in the pool, 4 sessions, a sleep
        assert len(processes_under(n.prefix)) >= 1 + 1 + 1 + 1 + 3 + 4 + 1
        n.stop(signal.SIGQUIT)
        assert n.leftovers() == []
        assert not os.path.exists(os.path.join(n.prefix, "run"))
    finally:
        n.check_and_clean()


# an empty pool --------------------------------------------------------------

def test_without_a_pool_creates_fork_from_the_zygote():
    n = Nginx(workers=1, http_extra="pyrepl_pool_min_idle 0;").start()
    try:
        wait_for(lambda: (sup_status(n) or {}).get("zygote"),
                 what="the zygote")
        for _ in range(3):
            sid = n.create()
            pid = pid_of(n, sid)
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                assert f.read().split(b"\0")[:2] == [b"pyrepl-python",
                                                     b"--session"]
            assert sup_status(n)["pool"] == 0
            assert pool_procs(n) == []
    finally:
        n.check_and_clean()


@pytest.mark.parametrize("extra,message", [
    ("pyrepl_pool_min_idle 1001;", "pyrepl_pool_min_idle must be between"),
    ("pyrepl_pool_min_idle many;", "invalid number"),
    ("pyrepl_warmup a b;", "invalid number of arguments"),
])
def test_nginx_t_checks_the_pool_directives(extra, message):
    assert message in nginx_t_refusal(extra)


@pytest.mark.parametrize("order", ["keeper first", "supervisor first"])
def test_the_keeper_and_the_supervisor_can_both_be_killed(order):
    n = Nginx(workers=1).start()
    try:
        sid = n.create()
        n.run(sid, "kept = 'yes'\nimport subprocess\n"
                   "p = subprocess.Popen(['sleep', '1000'])")
        first = keeper_pid(n)
        for victim in ((first, n.supervisor_pid()) if order == "keeper first"
                       else (n.supervisor_pid(), first)):
            os.kill(victim, signal.SIGKILL)
            # a keeper runs again (the supervisor became it, or restarted),
            # and creates work, whichever of the two died
            wait_for(lambda: keeper_alive(n, victim), timeout=20,
                     what="a live keeper")
            new = wait_for(lambda: try_create(n), timeout=20,
                           what="a create to work again")
            assert n.run_json(new, "1 + 1")["result"] == {"text/plain": "2"}
        assert keeper_pid(n) != first
        # the session lived on, and was adopted
        assert n.run_json(sid, "kept")["result"] == {"text/plain": "'yes'"}
        n.stop(signal.SIGQUIT)
        # and nothing outlives nginx
        assert n.leftovers() == []
    finally:
        n.check_and_clean()


def test_nothing_outlives_nginx_when_keeper_and_supervisor_die_together():
    n = Nginx(workers=1).start()
    try:
        sids = [n.create(), n.create(language="bash")]
        n.run(sids[0], "import subprocess\n"
                       "p = subprocess.Popen(['sleep', '1000'])")
        n.run(sids[1], "sleep 1000 &")
        supervisor = n.supervisor_pid()
        for pid in (keeper_pid(n), supervisor):
            os.kill(pid, signal.SIGKILL)
        # no keeper and no supervisor are left to watch the sessions
        wait_for(lambda: not os.path.exists(f"/proc/{supervisor}"),
                 what="the supervisor to go")
        n.stop(signal.SIGQUIT)
        assert n.leftovers() == []
    finally:
        n.check_and_clean()
