"""pyrepl_restore_on_crash on: a session whose process dies comes back
from its latest checkpoint, and says restored_from."""

import os
import signal

import pytest

from helpers import Nginx, pid_of, wait_for


@pytest.fixture(scope="module")
def nginx():
    n = Nginx(workers=2, http_extra="pyrepl_restore_on_crash on;"
                                    " pyrepl_reap_interval 100ms;")
    n.start()
    yield n
    n.check_and_clean()


def session(nginx, sid):
    return nginx.http.get(f"{nginx.url}/session/{sid}").json()


def test_an_idle_session_that_dies_comes_back_from_its_checkpoint(nginx):
    sid = nginx.create()
    nginx.run_json(sid, "def tag():\n    return 'back'\nitems = [1, 2, 3]")
    r = nginx.http.post(f"{nginx.url}/session/{sid}/checkpoint")
    cid = r.json()["checkpoint_id"]
    nginx.run_json(sid, "items.append('after the checkpoint')")
    old = pid_of(nginx, sid)
    os.kill(old, signal.SIGKILL)
    s = wait_for(lambda: (lambda s: s if s["state"] == "idle"
                          and "restored_from" in s else None)
                 (session(nginx, sid)), what="the session to come back")
    assert s["restored_from"] == cid
    r = nginx.run_json(sid, "(tag(), items)")
    assert r["result"]["text/plain"] == "('back', [1, 2, 3])"
    assert pid_of(nginx, sid) != old
    nginx.http.delete(f"{nginx.url}/session/{sid}")


def test_a_session_that_dies_in_a_run_comes_back(nginx):
    sid = nginx.create()
    nginx.run_json(sid, "kept = 'yes'")
    nginx.http.post(f"{nginx.url}/session/{sid}/checkpoint")
    r = nginx.run_json(sid, "import os\nos.kill(os.getpid(), 9)")
    assert r["status"] == "crashed"
    wait_for(lambda: session(nginx, sid).get("restored_from"),
             what="the session to come back")
    assert nginx.run_json(sid, "kept")["result"]["text/plain"] == "'yes'"
    nginx.http.delete(f"{nginx.url}/session/{sid}")


def test_without_a_checkpoint_a_dead_session_stays_crashed(nginx):
    plain = nginx.create()
    saved = nginx.create()
    nginx.http.post(f"{nginx.url}/session/{saved}/checkpoint")
    for sid in (plain, saved):
        r = nginx.run_json(sid, "import os\nos.kill(os.getpid(), 9)")
        assert r["status"] == "crashed"
    # the round of the reaper that brings one back has seen the other
    wait_for(lambda: session(nginx, saved).get("restored_from"),
             what="the checkpointed session to come back")
    s = session(nginx, plain)
    assert s["state"] == "crashed" and "restored_from" not in s
    for sid in (plain, saved):
        nginx.http.delete(f"{nginx.url}/session/{sid}")
