"""Checkpoints: POST /session/{id}/checkpoint, POST /session/{id}/restore
and POST /session {"from_checkpoint"}: what a session defined comes back in
another session, also after nginx restarts; checkpoints are checksummed,
capped and their tenant's only."""

import concurrent.futures
import glob
import importlib.util
import os

import pytest

from helpers import Nginx, pid_of, wait_for

KEY_A = "tenant-a-key-0123456789"
KEY_B = "tenant-b-key-0123456789"

STATE = """
import math
n = 42
text = 'héllo'
nested = {'a': [1, 2, {'b': (3, 4.5)}], 'none': None, 'set': {1, 2}}
def f(x):
    return x * 2
class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
    def norm(self):
        return math.hypot(self.x, self.y)
p = Point(3, 4)
sq = lambda v: v * v
def adder(c):
    def add(x):
        return x + c
    return add
add5 = adder(5)
"""

CHECK = ("(n, text, nested, f(3), p.norm(), type(p).__name__, sq(4), "
         "add5(1), math.pi > 3)")
EXPECTED = ("(42, 'héllo', {'a': [1, 2, {'b': (3, 4.5)}], 'none': None, "
            "'set': {1, 2}}, 6, 5.0, 'Point', 16, 6, True)")


@pytest.fixture(scope="module")
def nginx():
    n = Nginx(workers=2, http_extra=f"pyrepl_api_key {KEY_A};"
                                    f" pyrepl_api_key {KEY_B};"
                                    " pyrepl_checkpoint_max_size 1m;")
    n.http.headers["X-API-Key"] = KEY_A
    n.start()
    yield n
    n.check_and_clean()


def checkpoint(nginx, sid, **kw):
    r = nginx.http.post(f"{nginx.url}/session/{sid}/checkpoint", **kw)
    assert r.status_code == 201, r.text
    return r.json()


def stored(nginx, cid):
    files = glob.glob(f"{nginx.prefix}/checkpoints/*/{cid}.ckpt")
    assert len(files) == 1, files
    return files[0]


def test_a_checkpoint_round_trips_into_another_session(nginx):
    sid = nginx.create()
    assert nginx.run_json(sid, STATE)["status"] == "ok"
    ck = checkpoint(nginx, sid)
    assert len(ck["checkpoint_id"]) == 32
    assert ck["unsaved"] == []
    assert 0 < ck["size_bytes"] == os.path.getsize(stored(nginx,
                                                          ck["checkpoint_id"]))
    assert ck["created_at"].endswith("Z")
    nginx.http.delete(f"{nginx.url}/session/{sid}")

    other = nginx.create()
    r = nginx.http.post(f"{nginx.url}/session/{other}/restore",
                        json={"checkpoint_id": ck["checkpoint_id"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["session_id"] == other
    assert body["restored_from"] == ck["checkpoint_id"]
    assert body["failed"] == []
    assert set(body["restored"]) >= {"n", "f", "Point", "p", "sq", "add5",
                                     "math"}
    r = nginx.run_json(other, CHECK)
    assert r["result"]["text/plain"] == EXPECTED, r
    # definitions keep their source
    r = nginx.run_json(other, "import inspect\n"
                              "print(inspect.getsource(f), end='')\n"
                              "print(inspect.getsource(Point).splitlines()[0])")
    assert r["stdout"] == ("def f(x):\n    return x * 2\n"
                           "class Point:\n")
    nginx.http.delete(f"{nginx.url}/session/{other}")


def test_create_from_a_checkpoint(nginx):
    sid = nginx.create()
    nginx.run_json(sid, STATE)
    cid = checkpoint(nginx, sid)["checkpoint_id"]
    r = nginx.http.post(f"{nginx.url}/session", json={"from_checkpoint": cid})
    assert r.status_code == 201, r.text
    new = r.json()["session_id"]
    assert r.json()["restored_from"] == cid
    assert nginx.run_json(new, CHECK)["result"]["text/plain"] == EXPECTED
    for s in (sid, new):
        nginx.http.delete(f"{nginx.url}/session/{s}")


@pytest.mark.skipif(importlib.util.find_spec("numpy") is None,
                    reason="numpy is not installed")
def test_a_numpy_array_round_trips(nginx):
    sid = nginx.create()
    nginx.run_json(sid, "import numpy as np\n"
                        "a = np.arange(12, dtype=np.float32).reshape(3, 4)")
    cid = checkpoint(nginx, sid)["checkpoint_id"]
    r = nginx.http.post(f"{nginx.url}/session", json={"from_checkpoint": cid})
    new = r.json()["session_id"]
    r = nginx.run_json(new, "(a.dtype.name, a.shape, float(a.sum()))")
    assert r["result"]["text/plain"] == "('float32', (3, 4), 66.0)"
    for s in (sid, new):
        nginx.http.delete(f"{nginx.url}/session/{s}")


def test_names_that_cannot_be_saved_are_listed_with_the_reason(nginx):
    sid = nginx.create()
    nginx.run_json(sid, "gen = (i for i in range(3))\nkept = [1, 2]")
    ck = checkpoint(nginx, sid)
    assert [u["name"] for u in ck["unsaved"]] == ["gen"]
    assert "generator" in ck["unsaved"][0]["reason"]
    r = nginx.http.post(f"{nginx.url}/session",
                        json={"from_checkpoint": ck["checkpoint_id"]})
    new = r.json()["session_id"]
    r = nginx.run_json(new, "(kept, 'gen' in dir())")
    assert r["result"]["text/plain"] == "([1, 2], False)"
    for s in (sid, new):
        nginx.http.delete(f"{nginx.url}/session/{s}")


def test_checkpoints_belong_to_their_tenant(nginx):
    sid = nginx.create()
    nginx.run_json(sid, "secret = 'a'")
    cid = checkpoint(nginx, sid)["checkpoint_id"]
    b = {"X-API-Key": KEY_B}
    r = nginx.http.post(f"{nginx.url}/session",
                        json={"from_checkpoint": cid}, headers=b)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    # the session made for the failed restore is gone
    r = nginx.http.get(f"{nginx.url}/session", headers=b)
    assert r.json()["sessions"] == []
    other = nginx.http.post(f"{nginx.url}/session", headers=b).json()
    r = nginx.http.post(f"{nginx.url}/session/{other['session_id']}/restore",
                        json={"checkpoint_id": cid}, headers=b)
    assert r.status_code == 404
    nginx.http.delete(f"{nginx.url}/session/{other['session_id']}",
                      headers=b)
    nginx.http.delete(f"{nginx.url}/session/{sid}")


def test_a_corrupt_or_foreign_file_is_refused(nginx):
    sid = nginx.create()
    nginx.run_json(sid, "x = list(range(1000))")
    cid = checkpoint(nginx, sid)["checkpoint_id"]
    path = stored(nginx, cid)
    with open(path, "r+b") as f:
        f.seek(-10, os.SEEK_END)
        byte = f.read(1)
        f.seek(-10, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0xff]))
    r = nginx.http.post(f"{nginx.url}/session/{sid}/restore",
                        json={"checkpoint_id": cid})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "bad_checkpoint"
    assert "checksum" in r.json()["error"]["message"]

    foreign = path.replace(cid, "f" * 32)
    with open(foreign, "wb") as f:
        f.write(b"\x80\x04K\x01.")          # a pickle, not a checkpoint
    r = nginx.http.post(f"{nginx.url}/session/{sid}/restore",
                        json={"checkpoint_id": "f" * 32})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "not a PyREPL checkpoint"
    # the session is untouched and works
    assert nginx.run_json(sid, "len(x)")["result"]["text/plain"] == "1000"
    nginx.http.delete(f"{nginx.url}/session/{sid}")


def test_a_checkpoint_over_the_cap_is_413(nginx):
    sid = nginx.create()
    nginx.run_json(sid, "big = b'x' * (2 << 20)")
    r = nginx.http.post(f"{nginx.url}/session/{sid}/checkpoint")
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_large"
    assert glob.glob(f"{nginx.prefix}/work/{sid}/.pyrepl-*") == []
    nginx.http.delete(f"{nginx.url}/session/{sid}")


def test_what_the_code_left_under_the_checkpoints_name_is_replaced(nginx):
    sid = nginx.create()
    r = nginx.run_json(sid, "import os\nos.mkfifo('.pyrepl-checkpoint')\n"
                            "os.symlink('/etc/passwd', '.pyrepl-restore')\n"
                            "v = 7")
    assert r["status"] == "ok", r
    cid = checkpoint(nginx, sid)["checkpoint_id"]
    r = nginx.http.post(f"{nginx.url}/session/{sid}/restore",
                        json={"checkpoint_id": cid})
    assert r.status_code == 200, r.text
    assert nginx.run_json(sid, "v")["result"]["text/plain"] == "7"
    with open("/etc/passwd") as f:
        assert f.read().startswith("root:")
    nginx.http.delete(f"{nginx.url}/session/{sid}")


def test_bad_requests(nginx):
    sid = nginx.create()
    for body in ({}, {"checkpoint_id": 5}, {"checkpoint_id": "../x"},
                 {"checkpoint_id": "A" * 32}):
        r = nginx.http.post(f"{nginx.url}/session/{sid}/restore", json=body)
        assert r.status_code == 400, body
    r = nginx.http.post(f"{nginx.url}/session",
                        json={"from_checkpoint": "nope"})
    assert r.status_code == 400
    bash = nginx.create(language="bash")
    r = nginx.http.post(f"{nginx.url}/session/{bash}/checkpoint")
    assert r.status_code == 400
    for s in (sid, bash):
        nginx.http.delete(f"{nginx.url}/session/{s}")


def test_a_checkpoint_outlives_nginx():
    n = Nginx(http_extra=f"pyrepl_api_key {KEY_A};")
    n.http.headers["X-API-Key"] = KEY_A
    n.start()
    try:
        sid = n.create()
        n.run_json(sid, "def g():\n    return 'still here'\nv = [g()]")
        cid = checkpoint(n, sid)["checkpoint_id"]
        n.stop()
        n.start()
        r = n.http.post(f"{n.url}/session", json={"from_checkpoint": cid})
        assert r.status_code == 201, r.text
        new = r.json()["session_id"]
        assert n.run_json(new, "(g(), v)")["result"]["text/plain"] == \
            "('still here', ['still here'])"
    finally:
        n.check_and_clean()


def test_checkpoint_of_a_dead_session_is_409(nginx):
    sid = nginx.create()
    pid = pid_of(nginx, sid)
    os.kill(pid, 9)
    wait_for(lambda: not os.path.exists(f"{nginx.prefix}/run/{sid}.sock"),
             what="the supervisor to notice")
    r = nginx.http.post(f"{nginx.url}/session/{sid}/checkpoint")
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "session_crashed"
    nginx.http.delete(f"{nginx.url}/session/{sid}")


def test_checkpoints_of_one_session_at_once_are_one_201_and_409s(nginx):
    sid = nginx.create()
    nginx.run_json(sid, "x = list(range(200000))")
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(
            lambda _: nginx.http.post(f"{nginx.url}/session/{sid}/checkpoint"),
            range(6)))
    codes = sorted(r.status_code for r in answers)
    assert codes.count(201) >= 1, [r.text for r in answers]
    for r in answers:
        if r.status_code != 201:
            assert r.status_code == 409, r.text
            assert r.json()["error"]["code"] == "session_busy"
    nginx.http.delete(f"{nginx.url}/session/{sid}")


def test_a_checkpoint_is_taken_wherever_the_code_chdir_ed_to(nginx):
    sid = nginx.create()
    nginx.run_json(sid, "import os\nos.chdir('/tmp')\nw = 'moved'")
    cid = checkpoint(nginx, sid)["checkpoint_id"]
    r = nginx.http.post(f"{nginx.url}/session/{sid}/restore",
                        json={"checkpoint_id": cid})
    assert r.status_code == 200, r.text
    assert nginx.run_json(sid, "(w, os.getcwd())")["result"]["text/plain"] \
        == "('moved', '/tmp')"
    nginx.http.delete(f"{nginx.url}/session/{sid}")
