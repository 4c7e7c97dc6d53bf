"""Session state a client can reason about: the names each run changed,
the source of what the session defined, and GET /session/{id}/namespace."""

import threading

import pytest

from conftest import Nginx, events_of


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


# namespace --------------------------------------------------------------

def test_namespace_lists_variables_and_definitions(nginx, sid):
    nginx.run_json(sid, "import os\nn = 3\ntext = 'x' * 1000\n"
                        "nums = list(range(100))\n"
                        "handle = open('/dev/null')\n"
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
    assert var["handle"]["type"] == "TextIOWrapper"
    assert var["handle"]["serializable"] is False
    assert ns["definitions"] == [
        {"name": "K", "kind": "class", "source": "class K:\n    x = 1\n"},
        {"name": "f", "kind": "function",
         "source": "def f(a):\n    return a\n"},
    ]


def test_namespace_of_a_busy_session_is_409(nginx, sid):
    started = threading.Event()

    def long_run():
        r = nginx.http.post(f"{nginx.url}/session/{sid}/run",
                            json={"code": "print('go', flush=True)\n"
                                          "import time; time.sleep(30)"},
                            stream=True)
        for line in r.iter_lines():
            if b"go" in line:
                started.set()
                break
        r.close()               # disconnect: the run is interrupted

    t = threading.Thread(target=long_run)
    t.start()
    assert started.wait(10)
    r = nginx.http.get(f"{nginx.url}/session/{sid}/namespace")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "session_busy"
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
