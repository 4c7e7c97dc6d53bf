"""
measure_pool.py: numbers for the warm pool (issue 3); not a test.

  /usr/bin/python3 t/measure_pool.py [--creates N] [--sessions 100,1000]

1. Create latency over HTTP (http.client, one keep-alive connection:
   requests costs about 2 ms of client CPU per request here), p50/p99,
   with pyrepl_pool_min_idle 2 (warm) and 0 (every create forks the
   zygote): steady (each create waits until the pool is full, then 50 ms
   more for the refilled process to finish its start-up, then five GETs
   warm the HTTP path up again, as on a server busy with other requests:
   after an idle pause this VM needs about 0.5 ms to wake each process)
   and back to back (the refill and the start-up of the last session run
   during the next create).  Each line also gives a 404 GET's p50, the HTTP round trip.
2. PSS per idle session: the sum of Pss in /proc/<pid>/smaps_rollup over
   the session processes divided by their number, with 100 and 1000 live
   sessions, fresh and after one small run each; the zygote's own Pss and
   Rss for reference.
"""

import argparse
import http.client
import json
import os
import sys
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from helpers import (Nginx, pool_procs, processes_under,  # noqa: E402
                     sup_status, wait_for)


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def create_latency(pool, creates, paced):
    """p50, p99, max of POST /session in ms, and p50 of a GET that answers
    404 (the HTTP round trip alone).  paced: "steady" above; else back to
    back."""
    n = Nginx(workers=1, zone_size="16m",
              http_extra=f"pyrepl_pool_min_idle {pool}; "
                         f"pyrepl_max_sessions {creates + 40};").start()
    try:
        wait_for(lambda: (sup_status(n) or {}).get("pool") == pool
                 and (sup_status(n) or {}).get("zygote"), timeout=20,
                 what="the pool")
        c = http.client.HTTPConnection("127.0.0.1", n.port)

        def request(method, path):
            c.request(method, path, headers={"Content-Length": "0"})
            r = c.getresponse()
            return r.status, r.read()

        lat, base, sids = [], [], []
        for i in range(creates + 20):
            if paced:
                wait_for(lambda: sup_status(n)["pool"] == pool,
                         what="a full pool")
                time.sleep(0.05)      # a client's think time
                for _ in range(5):
                    request("GET", "/session/" + "0" * 32)
            t0 = time.perf_counter()
            request("GET", "/session/" + "0" * 32)
            t1 = time.perf_counter()
            status, body = request("POST", "/session")
            t2 = time.perf_counter()
            assert status == 201, body
            sids.append(json.loads(body)["session_id"])
            if i >= 20:                      # warm-up of nginx and python
                base.append((t1 - t0) * 1000)
                lat.append((t2 - t1) * 1000)
        for s in sids:
            request("DELETE", "/session/" + s)
        return pct(lat, 50), pct(lat, 99), max(lat), pct(base, 50)
    finally:
        n.check_and_clean()


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            fields = dict(l.split(":", 1) for l in f if ":" in l)
    except OSError:
        return None, None
    return (int(fields["Pss"].split()[0]), int(fields["Rss"].split()[0]))


def session_pids(n):
    """Processes serving a session (cwd WORKDIR/<id>), not the pool."""
    work = os.path.join(n.prefix, "work")
    out = []
    for pid in processes_under(n.prefix):
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        name = os.path.basename(cwd)
        if os.path.dirname(cwd) == work and len(name) == 32:
            out.append(pid)
    return out


def memory(count):
    n = Nginx(workers=1, zone_size="64m",
              http_extra=f"pyrepl_max_sessions {count + 10};").start()
    try:
        http = requests.Session()
        sids = []
        for _ in range(count):
            r = http.post(n.url + "/session")
            assert r.status_code == 201, r.text
            sids.append(r.json()["session_id"])
        wait_for(lambda: sup_status(n)["pool"] == 2, timeout=30,
                 what="the pool")
        res = {}
        for phase in ("fresh", "after one run"):
            pids = session_pids(n)
            assert len(pids) == count, (len(pids), count)
            total = [pss_kib(p) for p in pids]
            pss = sum(t[0] for t in total) / len(total)
            rss = sum(t[1] for t in total) / len(total)
            res[phase] = (pss, rss)
            if phase == "fresh":
                for s in sids:
                    r = http.post(f"{n.url}/session/{s}/run",
                                  json={"code": "x = 1 + 1"},
                                  headers={"Accept": "application/json"})
                    assert r.status_code == 200
        z = sup_status(n)["zygote"]
        zp = pss_kib(z)
        pool = [pss_kib(p)[0] for p in pool_procs(n)]
        return res, zp, pool
    finally:
        n.check_and_clean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--creates", type=int, default=300)
    ap.add_argument("--sessions", default="100,1000")
    args = ap.parse_args()

    for pool in (2, 0):
        for paced in (True, False):
            p50, p99, mx, get = create_latency(pool, args.creates, paced)
            print(f"create over HTTP, pyrepl_pool_min_idle {pool}, "
                  f"{'steady' if paced else 'back to back'}: "
                  f"p50 {p50:.3f} ms  p99 {p99:.3f} ms  max {mx:.3f} ms "
                  f"({args.creates} creates; a 404 GET: p50 {get:.3f} ms)")

    for count in (int(c) for c in args.sessions.split(",")):
        res, (zpss, zrss), pool = memory(count)
        for phase, (pss, rss) in res.items():
            print(f"{count} idle sessions, {phase}: Pss {pss / 1024:.2f} "
                  f"MiB per session (Rss {rss / 1024:.2f} MiB)")
        print(f"  zygote Pss {zpss / 1024:.2f} MiB, Rss {zrss / 1024:.2f} "
              f"MiB; pool processes Pss "
              f"{', '.join('%.2f' % (p / 1024) for p in pool)} MiB")


if __name__ == "__main__":
    main()
