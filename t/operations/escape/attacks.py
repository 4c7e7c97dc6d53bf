"""
attacks.py: what the modules of the escape suite share besides their
fixtures (conftest.py): running the attacker's code, and checking that
nothing but the attacker's own session suffered (contained).
"""

import os
import textwrap


def run(nginx, sid, code, **extra):
    """Run code (dedented) for one JSON answer."""
    return nginx.run_json(sid, textwrap.dedent(code), **extra)


def out_of(nginx, sid, code, **extra):
    """The stdout of code that must run without an error."""
    r = run(nginx, sid, code, **extra)
    assert r["status"] == "ok", r
    return r["stdout"]


def contained(nginx, victim):
    """nginx, the supervisor, the pool and the victim all still work."""
    sid, pid = victim
    assert os.path.exists(f"/proc/{pid}")
    r = nginx.run_json(sid, "secret")
    assert r["result"] == {"text/plain": "'v-1234'"}, r
    status = nginx.http.get(nginx.url + "/status").json()
    assert status["status"] == "ok", status
    fresh = nginx.create()
    assert nginx.run_json(fresh, "1+1")["result"] == {"text/plain": "2"}
    nginx.http.delete(f"{nginx.url}/session/{fresh}")
