"""Quotas per API key: pyrepl_max_sessions_per_key (429 for that key only,
in either dialect, from_checkpoint creates included), the caller's
checkpoints listed and deleted (GET /session/checkpoints, DELETE
/session/checkpoints/{id}: another key's is a 404 like one that does not
exist), and pyrepl_checkpoint_quota (413 quota_exceeded, nothing left
behind, deleting frees room)."""

import glob
import os
import shutil
import signal

import pytest
import requests

from helpers import PID_CODE, Nginx, pid_in, wait_for

KEY_A = "quota-alpha-key-0123456789"
KEY_B = "quota-bravo-key-0123456789"
KEY_C = "quota-charlie-key-01234567"
KEY_D = "quota-delta-key-0123456789"
KEY_E = "quota-echo-key-01234567890"
KEY_F = "quota-foxtrot-key-01234567"
KEY_G = "quota-golf-key-01234567890"

PER_KEY = 3
QUOTA = 100 * 1024
BLOB = "blob = bytes(30000)"       # a checkpoint of some 30 KB: 3 fit


@pytest.fixture(scope="module")
def nginx():
    keys = " ".join(f"pyrepl_api_key {k};"
                    for k in (KEY_A, KEY_B, KEY_C, KEY_D, KEY_E, KEY_F,
                              KEY_G))
    n = Nginx(workers=2,
              http_extra=keys + " pyrepl_max_sessions 20;"
                                f" pyrepl_max_sessions_per_key {PER_KEY};"
                                " pyrepl_checkpoint_quota 100k;"
                                " pyrepl_restore_on_crash on;"
                                " pyrepl_reap_interval 100ms;",
              server_extra="location /os/session {"
                           " pyrepl; pyrepl_dialect opensandbox; }")
    n.start()
    yield n
    n.check_and_clean()


def as_(key):
    s = requests.Session()
    s.headers["X-API-Key"] = key
    return s


def create(nginx, client, **body):
    r = client.post(nginx.url + "/session", json=body or None)
    assert r.status_code == 201, r.text
    return r.json()["session_id"]


def run(nginx, client, sid, code):
    r = client.post(f"{nginx.url}/session/{sid}/run", json={"code": code},
                    headers={"Accept": "application/json"})
    assert r.status_code == 200, r.text
    return r.json()


def checkpoint(nginx, client, sid):
    r = client.post(f"{nginx.url}/session/{sid}/checkpoint")
    assert r.status_code == 201, r.text
    return r.json()


def listed(nginx, client):
    r = client.get(nginx.url + "/session/checkpoints")
    assert r.status_code == 200, r.text
    return r.json()["checkpoints"]


def entry(ck):
    return {k: ck[k] for k in ("checkpoint_id", "size_bytes", "created_at")}


def files_of(nginx, cid):
    return glob.glob(f"{nginx.prefix}/checkpoints/*/{cid}.ckpt")


def clean(nginx, client, sessions=(), checkpoints=()):
    for sid in sessions:
        client.delete(f"{nginx.url}/session/{sid}")
    for cid in checkpoints:
        client.delete(f"{nginx.url}/session/checkpoints/{cid}")


def test_a_key_at_its_cap_gets_429_and_other_keys_still_create(nginx):
    a, b = as_(KEY_A), as_(KEY_B)
    mine = [create(nginx, a) for _ in range(PER_KEY)]
    r = a.post(nginx.url + "/session")
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "too_many_sessions"
    assert "pyrepl_max_sessions_per_key" in r.json()["error"]["message"]

    # a create from a checkpoint is a create like any other
    cid = checkpoint(nginx, a, mine[0])["checkpoint_id"]
    r = a.post(nginx.url + "/session", json={"from_checkpoint": cid})
    assert r.status_code == 429
    assert len(a.get(nginx.url + "/session").json()["sessions"]) == PER_KEY

    # the other key is not held back by this one
    theirs = create(nginx, b)
    assert run(nginx, b, theirs, "6 * 7")["result"]["text/plain"] == "42"

    # a deleted session frees its place
    assert a.delete(f"{nginx.url}/session/{mine.pop()}").status_code == 204
    r = a.post(nginx.url + "/session", json={"from_checkpoint": cid})
    assert r.status_code == 201, r.text
    assert r.json()["restored_from"] == cid
    mine.append(r.json()["session_id"])
    assert run(nginx, a, mine[-1], "1 + 1")["result"]["text/plain"] == "2"
    clean(nginx, a, mine, [cid])
    clean(nginx, b, [theirs])


def test_the_opensandbox_dialect_obeys_the_same_cap(nginx):
    c = as_(KEY_C)
    c.headers.pop("X-API-Key")
    c.headers["X-EXECD-ACCESS-TOKEN"] = KEY_C      # as execd's SDKs send it
    mine = [create(nginx, c) for _ in range(PER_KEY - 1)]
    r = c.post(nginx.url + "/os/session", json={})
    assert r.status_code == 200, r.text
    mine.append(r.json()["session_id"])
    for path in ("/os/session", "/session"):
        r = c.post(nginx.url + path, json={})
        assert r.status_code == 429, path
        assert r.json()["error"]["code"] == "too_many_sessions"
    # another key creates through the same dialect
    b = as_(KEY_B)
    r = b.post(nginx.url + "/os/session", json={})
    assert r.status_code == 200, r.text
    clean(nginx, b, [r.json()["session_id"]])
    clean(nginx, c, mine)


def test_each_key_lists_and_deletes_only_its_own_checkpoints(nginx):
    d, b = as_(KEY_D), as_(KEY_B)
    sd, sb = create(nginx, d), create(nginx, b)
    run(nginx, d, sd, "v = 'delta'")
    first, second = checkpoint(nginx, d, sd), checkpoint(nginx, d, sd)
    theirs = checkpoint(nginx, b, sb)
    key = lambda c: c["checkpoint_id"]
    assert sorted(listed(nginx, d), key=key) == \
        sorted([entry(first), entry(second)], key=key)
    assert listed(nginx, b) == [entry(theirs)]

    # another key's checkpoint is answered as one that does not exist
    cid = first["checkpoint_id"]
    other = b.delete(f"{nginx.url}/session/checkpoints/{cid}")
    unknown = b.delete(f"{nginx.url}/session/checkpoints/{'0' * 32}")
    assert other.status_code == unknown.status_code == 404
    assert other.json() == unknown.json()
    assert other.json()["error"]["code"] == "not_found"
    assert len(files_of(nginx, cid)) == 1

    # its owner deletes it: gone from the list, the disk and for restores
    r = d.delete(f"{nginx.url}/session/checkpoints/{cid}")
    assert r.status_code == 204 and r.content == b""
    assert files_of(nginx, cid) == []
    assert listed(nginx, d) == [entry(second)]
    assert d.delete(f"{nginx.url}/session/checkpoints/{cid}").status_code \
        == 404
    r = d.post(f"{nginx.url}/session/{sd}/restore", json={"checkpoint_id": cid})
    assert r.status_code == 404
    r = d.post(f"{nginx.url}/session/{sd}/restore",
               json={"checkpoint_id": second["checkpoint_id"]})
    assert r.status_code == 200, r.text
    assert run(nginx, d, sd, "v")["result"]["text/plain"] == "'delta'"
    clean(nginx, d, [sd], [second["checkpoint_id"]])
    clean(nginx, b, [sb], [theirs["checkpoint_id"]])
    assert listed(nginx, d) == [] and listed(nginx, b) == []


def test_checkpoint_routes_take_their_methods_and_real_ids_only(nginx):
    d = as_(KEY_D)
    base = nginx.url + "/session/checkpoints"
    for method, url in (("POST", base), ("DELETE", base), ("PUT", base),
                        ("GET", f"{base}/{'a' * 32}"),
                        ("POST", f"{base}/{'a' * 32}")):
        r = d.request(method, url)
        assert r.status_code == 405, (method, url)
        assert r.json()["error"]["code"] == "method_not_allowed"
    for bad in ("abc", "A" * 32, "g" * 32, "0" * 31, "0" * 33,
                "0" * 32 + "/x", "0" * 32 + ".ckpt", "..." + "0" * 29):
        r = d.delete(f"{base}/{bad}")
        assert r.status_code == 404, bad
        assert r.json()["error"]["code"] == "not_found"
    assert listed(nginx, d) == []


def test_a_checkpoint_past_the_quota_is_413_and_leaves_nothing(nginx):
    e, b = as_(KEY_E), as_(KEY_B)
    sid = create(nginx, e)
    run(nginx, e, sid, BLOB)
    kept = [checkpoint(nginx, e, sid) for _ in range(3)]
    assert sum(ck["size_bytes"] for ck in kept) <= QUOTA
    tenant_dir = os.path.dirname(files_of(nginx, kept[0]["checkpoint_id"])[0])

    r = e.post(f"{nginx.url}/session/{sid}/checkpoint")
    assert r.status_code == 413
    error = r.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert "pyrepl_checkpoint_quota" in error["message"]
    assert str(QUOTA) in error["message"]
    # nothing of the refused one, in the key's directory or the session's
    assert len(os.listdir(tenant_dir)) == 3
    assert glob.glob(f"{nginx.prefix}/work/{sid}/.pyrepl-*") == []
    assert len(listed(nginx, e)) == 3

    # the session goes on; another key's quota is its own
    assert run(nginx, e, sid, "len(blob)")["result"]["text/plain"] == "30000"
    other = create(nginx, b)
    run(nginx, b, other, BLOB)
    theirs = checkpoint(nginx, b, other)

    # deleting frees room
    gone = kept.pop(0)["checkpoint_id"]
    r = e.delete(f"{nginx.url}/session/checkpoints/{gone}")
    assert r.status_code == 204
    kept.append(checkpoint(nginx, e, sid))
    assert len(os.listdir(tenant_dir)) == 3
    clean(nginx, e, [sid], [ck["checkpoint_id"] for ck in kept])
    clean(nginx, b, [other], [theirs["checkpoint_id"]])


def test_a_key_at_both_caps_still_gets_its_crashed_session_back(nginx):
    f = as_(KEY_F)
    sessions = [create(nginx, f) for _ in range(PER_KEY)]
    sid = sessions[0]
    run(nginx, f, sid, BLOB + "\nkept = 'yes'")
    cids = [checkpoint(nginx, f, sid)["checkpoint_id"] for _ in range(3)]
    assert f.post(f"{nginx.url}/session/{sid}/checkpoint").status_code == 413
    pid = pid_in(run(nginx, f, sid, PID_CODE))
    os.kill(pid, signal.SIGKILL)
    s = wait_for(lambda: (lambda s: s if s.get("restored_from") else None)
                 (f.get(f"{nginx.url}/session/{sid}").json()),
                 what="the session to come back")
    assert s["restored_from"] == cids[-1]
    assert run(nginx, f, sid, "kept")["result"]["text/plain"] == "'yes'"
    clean(nginx, f, sessions, cids)


def test_a_session_whose_checkpoint_was_deleted_stays_crashed(nginx):
    g = as_(KEY_G)
    sid = create(nginx, g)
    cid = checkpoint(nginx, g, sid)["checkpoint_id"]
    assert g.delete(f"{nginx.url}/session/checkpoints/{cid}").status_code \
        == 204
    pid = pid_in(run(nginx, g, sid, PID_CODE))
    os.kill(pid, signal.SIGKILL)

    def failed():
        if f"could not be restored from checkpoint {cid}" \
                not in nginx.error_log():
            return None
        s = g.get(f"{nginx.url}/session/{sid}").json()
        return s if s["state"] == "crashed" else None

    s = wait_for(failed, what="the revival to fail")
    assert "restored_from" not in s
    clean(nginx, g, [sid])


@pytest.mark.parametrize("extra,message", [
    ("pyrepl_max_sessions_per_key many;", "invalid number"),
    ("pyrepl_max_sessions 10; pyrepl_max_sessions_per_key 11;",
     "pyrepl_max_sessions_per_key 11 is more than pyrepl_max_sessions 10"),
    ("pyrepl_checkpoint_quota lots;", "invalid value"),
    ("pyrepl_checkpoint_quota 1m; pyrepl_checkpoint_quota off;",
     "is duplicate"),
    ("pyrepl_checkpoint_quota off; pyrepl_max_sessions_per_key 0;", None),
    ("pyrepl_checkpoint_quota 10g; pyrepl_max_sessions_per_key 100;", None),
])
def test_nginx_t_checks_the_quota_directives(extra, message):
    n = Nginx(http_extra=extra)
    try:
        r = n.test_config()
        if message is None:
            assert r.returncode == 0, r.stderr
        else:
            assert r.returncode != 0
            assert message in r.stderr, r.stderr
    finally:
        shutil.rmtree(n.prefix, ignore_errors=True)
