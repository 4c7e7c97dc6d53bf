"""Session state a client can reason about: the names each run changed,
the source of what the session defined, and GET /session/{id}/namespace."""

import os
import signal
import threading

import pytest
import requests

from helpers import Nginx, events_of, pid_of, running, wait_for


@pytest.fixture(scope="module")
def nginx():
    n = Nginx(workers=2)
    n.start()
    yield n
    n.check_and_clean()


@pytest.fixture
def sid(nginx):
    s = nginx.create()
    yield s
    nginx.http.delete(f"{nginx.url}/session/{s}")


def changes(nginx, sid, code):
    r = nginx.run_json(sid, code)
    return r["changes"], r


# change reports ---------------------------------------------------------

def test_a_run_reports_added_modified_and_removed_names(nginx, sid):
    c, _ = changes(nginx, sid, "a = 1\nb = [1]\nd = {}\nba = bytearray(b'x')"
                               "\ns = {1}\ngone = 0\nkeep = 'same'")
    assert c == {"added": ["a", "b", "ba", "d", "gone", "keep", "s"],
                 "modified": [], "removed": []}

    c, _ = changes(nginx, sid, "a = 2\nb.append(2)\nd['k'] = 1\nba[0] = 65"
                               "\ns.add(2)\ndel gone\nkeep = keep")
    assert c == {"added": [], "modified": ["a", "b", "ba", "d", "s"],
                 "removed": ["gone"]}


def test_a_failed_run_reports_what_it_changed_before_failing(nginx, sid):
    c, r = changes(nginx, sid, "x = 1\ny = [x]\nraise ValueError('half')"
                               "\nz = 3")
    assert r["status"] == "error"
    assert c == {"added": ["x", "y"], "modified": [], "removed": []}


def test_dunder_names_and_unchanged_runs_report_nothing(nginx, sid):
    c, _ = changes(nginx, sid, "__hidden = 1\n1 + 1")
    assert c == {"added": [], "modified": [], "removed": []}


def test_sse_and_websocket_completions_carry_changes(nginx, sid):
    ev = nginx.run(sid, "q = 5")
    assert events_of(ev, "execution_complete")[0]["changes"] == \
        {"added": ["q"], "modified": [], "removed": []}


def test_bash_runs_report_empty_changes(nginx):
    sid = nginx.create(language="bash")
    try:
        r = nginx.run_json(sid, "X=1")
        assert r["changes"] == {"added": [], "modified": [], "removed": []}
    finally:
        nginx.http.delete(f"{nginx.url}/session/{sid}")


# source tracking --------------------------------------------------------

def test_getsource_works_for_functions_and_classes(nginx, sid):
    nginx.run_json(sid, "def f(a):\n    return a + 1\n\n"
                        "class C:\n    def m(self):\n        return 3\n")
    r = nginx.run_json(sid, "import inspect\n"
                            "print(inspect.getsource(f), end='')\n"
                            "print(inspect.getsource(C), end='')\n"
                            "class D:\n    pass\n"
                            "print(inspect.getsource(D), end='')")
    assert r["status"] == "ok", r
    assert r["stdout"] == ("def f(a):\n    return a + 1\n"
                           "class C:\n    def m(self):\n        return 3\n"
                           "class D:\n    pass\n")


def test_tracebacks_show_lines_of_earlier_cells(nginx, sid):
    nginx.run_json(sid, "def boom(n):\n    return 10 // n\n")
    r = nginx.run_json(sid, "boom(0)")
    tb = "".join(r["error"]["traceback"])
    assert 'File "<cell 1>", line 2, in boom' in tb
    assert "return 10 // n" in tb


def test_a_long_session_keeps_a_bounded_amount_of_source(nginx, sid):
    nginx.run_json(sid, "def boom(n):\n    return 10 // n\n\n"
                        "class K:\n    def m(self):\n        return 1\n")
    # far more cells than are kept, a few lines each
    for i in range(600):
        r = nginx.run_json(sid, f"x{i % 7} = {i}\n# cell {i} " + "x" * 100)
        assert r["status"] == "ok"
    r = nginx.run_json(sid, "import linecache, inspect\n"
                            "cells = [f for f in linecache.cache "
                            "if f.startswith('<cell ')]\n"
                            "print(len(cells), '<cell 100>' in cells, "
                            "'<cell 601>' in cells)\n"
                            "print(inspect.getsource(K), end='')\n"
                            "boom(0)")
    count, old, recent = r["stdout"].splitlines()[0].split()
    # the latest 200 to 250, plus the one that defines boom and K
    assert 200 <= int(count) <= 252 and (old, recent) == ("False", "True")
    assert r["stdout"].endswith("class K:\n    def m(self):\n"
                                "        return 1\n")
    tb = "".join(r["error"]["traceback"])
    assert 'File "<cell 1>", line 2, in boom' in tb
    assert "return 10 // n" in tb


def test_inspect_getfile_is_inspect_s_own(nginx, sid):
    # CPython's own test_inspect: a class whose __module__ cannot be read
    r = nginx.run_json(sid, "import inspect\n"
                            "class CM(type):\n"
                            "    @property\n"
                            "    def __module__(cls):\n"
                            "        raise AttributeError\n"
                            "class C(metaclass=CM):\n    pass\n"
                            "try:\n    inspect.getfile(C)\n"
                            "except TypeError as e:\n    print('TypeError')\n"
                            "print(inspect.getfile.__module__, "
                            "inspect.getfile.__name__)")
    assert r["stdout"] == "TypeError\ninspect getfile\n", r


# namespace --------------------------------------------------------------

def test_namespace_lists_variables_and_definitions(nginx, sid):
    nginx.run_json(sid, "import os\nn = 3\ntext = 'x' * 1000\n"
                        "nums = list(range(100))\n"
                        "handle = (i for i in range(3))\n"
                        "def f(a):\n    return a\n"
                        "class K:\n    x = 1\n"
                        "sq = lambda v: v * v\n")
    r = nginx.http.get(f"{nginx.url}/session/{sid}/namespace")
    assert r.status_code == 200, r.text
    ns = r.json()
    var = {v["name"]: v for v in ns["variables"]}
    assert set(var) == {"os", "n", "text", "nums", "handle", "sq"}
    assert var["n"] == {"name": "n", "type": "int", "size_bytes": 28,
                        "serializable": True}
    assert var["text"]["size_bytes"] >= 1000
    assert var["nums"]["size_bytes"] > 100 * 28
    assert var["handle"]["type"] == "generator"
    assert var["handle"]["serializable"] is False
    assert ns["definitions"] == [
        {"name": "K", "kind": "class", "source": "class K:\n    x = 1\n"},
        {"name": "f", "kind": "function",
         "source": "def f(a):\n    return a\n"},
    ]


def test_an_interrupt_after_a_run_never_lands_in_a_state_request(nginx,
                                                                 sid):
    # an interrupt that reaches the process just after its run ended (a
    # deadline racing the end of the run) is pending when the next
    # request comes: a state request must not take it
    r = nginx.run_json(sid, "import os, signal, threading, time\n"
                            "x = 1\n"
                            "main = threading.main_thread().ident\n"
                            "def late():\n"
                            "    time.sleep(0.1)\n"
                            "    signal.pthread_kill(main, signal.SIGINT)\n"
                            "    open('sent', 'w').close()\n"
                            "threading.Thread(target=late).start()")
    assert r["status"] == "ok", r
    sent = os.path.join(nginx.prefix, "work", sid, "sent")
    wait_for(lambda: os.path.exists(sent), what="the late interrupt")
    r = nginx.http.get(f"{nginx.url}/session/{sid}/namespace")
    assert r.status_code == 200, r.text
    assert "x" in [v["name"] for v in r.json()["variables"]]
    # nor in the next run
    assert nginx.run_json(sid, "x + 1")["result"] == {"text/plain": "2"}


def test_namespace_of_a_busy_session_is_409(nginx, sid):
    started, asked = threading.Event(), threading.Event()

    def long_run():
        r = requests.post(f"{nginx.url}/session/{sid}/run",
                          json={"code": "print('go', flush=True)\n"
                                        "import time; time.sleep(30)"},
                          stream=True)
        lines = r.iter_lines()      # kept: dropping it closes the stream
        for line in lines:
            if b"go" in line:
                started.set()
                break
        asked.wait(10)
        r.close()               # disconnect: the run is interrupted

    t = threading.Thread(target=long_run)
    t.start()
    try:
        assert started.wait(10)
        r = nginx.http.get(f"{nginx.url}/session/{sid}/namespace")
        assert r.status_code == 409
        assert r.json()["error"]["code"] == "session_busy"
    finally:
        asked.set()
        t.join()


def test_namespace_errors(nginx):
    r = nginx.http.get(f"{nginx.url}/session/{'0' * 32}/namespace")
    assert r.status_code == 404
    bash = nginx.create(language="bash")
    try:
        r = nginx.http.get(f"{nginx.url}/session/{bash}/namespace")
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "bad_request"
        r = nginx.http.post(f"{nginx.url}/session/{bash}/namespace")
        assert r.status_code == 405
    finally:
        nginx.http.delete(f"{nginx.url}/session/{bash}")


# transactions -----------------------------------------------------------

def test_rollback_on_failure_undoes_in_place_mutations(nginx, sid):
    with open(f"{nginx.prefix}/work/{sid}/settings.py", "w") as f:
        f.write("level = 1\n")
    nginx.run_json(sid, "import settings\n"
                        "lst = [1, 2]\nd = {'a': 1}\n"
                        "class Box:\n    pass\n"
                        "box = Box()\nbox.v = 'old'\ngone = 'here'\n")
    before = pid_of(nginx, sid)
    r = nginx.run_json(sid, "lst.append(3)\nd['b'] = 2\ndel d['a']\n"
                            "box.v = 'new'\nsettings.level = 99\n"
                            "fresh = 1\ndel gone\nlst = 'rebound'\n"
                            "raise RuntimeError('half way')\nnever = 1",
                       tx_policy="rollback_on_failure")
    assert r["status"] == "error"
    assert r["tx"] == "rolled_back"
    assert r["error"]["evalue"] == "half way"
    r = nginx.run_json(sid, "(lst, d, box.v, settings.level, gone,"
                            " 'fresh' in dir(), 'never' in dir())")
    assert r["result"]["text/plain"] == \
        "([1, 2], {'a': 1}, 'old', 1, 'here', False, False)"
    after = pid_of(nginx, sid)
    assert after != before
    # the process that ran the undone code is gone, the session lives on
    wait_for(lambda: not running(before), what="the old process to be killed")
    assert nginx.http.get(f"{nginx.url}/session/{sid}").json()["state"] \
        == "idle"


def test_rollback_on_failure_keeps_a_successful_run(nginx, sid):
    nginx.run_json(sid, "lst = []")
    before = pid_of(nginx, sid)
    r = nginx.run_json(sid, "lst.append(1)", tx_policy="rollback_on_failure")
    assert (r["status"], r["tx"]) == ("ok", "committed")
    assert nginx.run_json(sid, "lst")["result"]["text/plain"] == "[1]"
    assert pid_of(nginx, sid) == before


def test_commit_on_success_undoes_an_interrupted_run(nginx, sid):
    nginx.run_json(sid, "n = 0")
    r = nginx.run_json(sid, "import time\nn = 1\ntime.sleep(30)",
                       tx_policy="commit_on_success", timeout_ms=300)
    assert (r["status"], r["tx"]) == ("timeout", "rolled_back")
    assert nginx.run_json(sid, "n")["result"]["text/plain"] == "0"
    # rollback_on_failure keeps what a timed-out run did
    r = nginx.run_json(sid, "import time\nn = 2\ntime.sleep(30)",
                       tx_policy="rollback_on_failure", timeout_ms=300)
    assert (r["status"], r["tx"]) == ("timeout", "committed")
    assert nginx.run_json(sid, "n")["result"]["text/plain"] == "2"


def test_explicit_commit_across_runs(nginx, sid):
    nginx.run_json(sid, "acc = []")
    r = nginx.run_json(sid, "acc.append('a')", tx_policy="explicit")
    assert r["tx"] == "pending"
    # another run must wait for the verdict, from any worker
    for _ in range(2):
        r = nginx.http.post(f"{nginx.url}/session/{sid}/run",
                            json={"code": "acc"})
        assert r.status_code == 409
        assert r.json()["error"]["code"] == "transaction_pending"
    r = nginx.http.post(f"{nginx.url}/session/{sid}/commit")
    assert r.status_code == 204
    assert nginx.run_json(sid, "acc")["result"]["text/plain"] == "['a']"

    r = nginx.run_json(sid, "acc.append('b')\nacc2 = 1", tx_policy="explicit")
    assert r["tx"] == "pending"
    # the namespace shows the pending state
    names = [v["name"] for v in
             nginx.http.get(f"{nginx.url}/session/{sid}/namespace")
             .json()["variables"]]
    assert "acc2" in names
    r = nginx.http.post(f"{nginx.url}/session/{sid}/rollback")
    assert r.status_code == 204
    r = nginx.run_json(sid, "(acc, 'acc2' in dir())")
    assert r["result"]["text/plain"] == "(['a'], False)"


def test_commit_or_rollback_without_a_transaction_is_409(nginx, sid):
    for what in ("commit", "rollback"):
        r = nginx.http.post(f"{nginx.url}/session/{sid}/{what}")
        assert r.status_code == 409
        assert r.json()["error"]["code"] == "no_transaction"


def test_bad_tx_policies_are_400(nginx, sid):
    r = nginx.http.post(f"{nginx.url}/session/{sid}/run",
                        json={"code": "1", "tx_policy": "sometimes"})
    assert r.status_code == 400
    assert "tx_policy" in r.json()["error"]["message"]
    bash = nginx.create(language="bash")
    try:
        r = nginx.http.post(f"{nginx.url}/session/{bash}/run",
                            json={"code": "true", "tx_policy": "explicit"})
        assert r.status_code == 400
        r = nginx.http.post(f"{nginx.url}/session/{bash}/run",
                            json={"code": "true",
                                  "tx_policy": "commit_always"},
                            headers={"Accept": "application/json"})
        assert r.status_code == 200
    finally:
        nginx.http.delete(f"{nginx.url}/session/{bash}")


def test_many_rollbacks_keep_the_session_whole(nginx, sid):
    nginx.run_json(sid, "total = 0")
    pids = set()
    for i in range(5):
        r = nginx.run_json(sid, f"total += {i}\nprint('out', {i})\n1/0",
                           tx_policy="commit_on_success")
        assert (r["tx"], r["stdout"]) == ("rolled_back", f"out {i}\n")
        pids.add(pid_of(nginx, sid))
    assert len(pids) == 5
    assert nginx.run_json(sid, "total")["result"]["text/plain"] == "0"
    r = nginx.run_json(sid, "x = input()")
    assert r["error"]["ename"] == "EOFError"


def test_a_moved_session_survives_a_supervisor_restart(nginx, sid):
    nginx.run_json(sid, "kept = 1")
    first = pid_of(nginx, sid)
    r = nginx.run_json(sid, "kept = 2\n1/0", tx_policy="commit_on_success")
    assert r["tx"] == "rolled_back"
    moved = pid_of(nginx, sid)
    assert moved != first
    wait_for(lambda: not running(first), what="the old process to be killed")

    old_sup = nginx.supervisor_pid()
    os.kill(old_sup, signal.SIGKILL)
    wait_for(lambda: nginx.supervisor_pid() not in (None, old_sup),
             what="a new supervisor")
    # the new supervisor adopted the moved process, and can kill its group
    assert nginx.run_json(sid, "kept")["result"]["text/plain"] == "1"
    assert pid_of(nginx, sid) == moved
    r = nginx.http.delete(f"{nginx.url}/session/{sid}")
    assert r.status_code == 204
    wait_for(lambda: not running(moved), what="the moved process to be killed")


def test_routine_work_writes_no_noise_to_the_log(nginx):
    # last in this module: transactions committed and rolled back, moved
    # sessions, deleted ones, subprocesses; none of it is an error
    sid = nginx.create()
    for policy in ("rollback_on_failure", "commit_on_success"):
        nginx.run_json(sid, "import subprocess\n"
                            "subprocess.run(['true'])\nx = 1",
                       tx_policy=policy)
        nginx.run_json(sid, "1 / 0", tx_policy=policy)
    nginx.http.delete(f"{nginx.url}/session/{sid}")
    noise = [l for l in nginx.error_log().splitlines()
             if "reaped unknown child" in l or "No child processes" in l]
    assert noise == [], noise[:5]
