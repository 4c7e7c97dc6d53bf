"""
bench.py: PyREPL's benchmark (issue 6), run by util/bench.

It starts its own nginx with the module (and, unless --no-jupyter, a
Jupyter server from Debian's packages) on loopback, drives them with
pyrepl-load (C, epoll; build/bench/pyrepl-load), and prints one Markdown
table (metric, PyREPL, Jupyter, ratio, target) with the machine's facts
above it; the same goes to build/bench/results.json with every raw figure.
Whatever it started is stopped at the end, also on failure or a signal.

Nothing here asserts a time: a missed target is reported, not failed.
The exit status is 1 only if a measurement could not be taken.

Ratio is how many times better PyREPL is than Jupyter on the same figure
(Jupyter / PyREPL for times and memory, PyREPL / Jupyter for rates).
"""

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
import traceback

from peers import (BUILD, LOADGEN, MODULE, NGINX, PYTHON, ROOT, BenchError,
                   Jupyter, Nginx, busy_seconds, cpu_seconds, loadgen,
                   processes_under, pss_kib)

RESULTS = os.path.join(ROOT, "build", "bench", "results.json")

# (key, metric, kind, target text, check on the PyREPL value and the
# floor's p50 in ms from the same run)
ROWS = [
    ("floor_1", "loadgen floor: GET /floor, 1 connection", "lat",
     None, None),
    ("floor_64", "loadgen floor: GET /floor, 64 connections", "rate",
     None, None),
    ("create_warm", "create, warm pool: POST /session", "lat",
     "p50 < 1 ms", lambda v, f: v["p50_ms"] < 1),
    ("create_cold", "create, empty pool: POST /session", "lat",
     "p50 < 10 ms", lambda v, f: v["p50_ms"] < 10),
    ("ready_warm", "create + first 1+1 answered, warm pool", "lat",
     "p50 < 2 ms", lambda v, f: v["p50_ms"] < 2),
    ("ready_cold", "create + first answer, empty pool", "lat",
     None, None),
    ("rt_http", "1+1 round trip, HTTP keep-alive (JSON)", "lat",
     "p50 < 0.3 ms and <= 5x floor, p99 < 1 ms",
     lambda v, f: (v["p50_ms"] < 0.3 and v["p99_ms"] < 1
                   and v["p50_ms"] <= 5 * f)),
    ("rt_sse", "1+1 round trip, HTTP keep-alive (SSE)", "lat", None, None),
    ("rt_ws", "1+1 round trip, WebSocket", "lat",
     "p50 < 0.2 ms and <= 5x floor",
     lambda v, f: v["p50_ms"] < 0.2 and v["p50_ms"] <= 5 * f),
    ("jup_ready", "Jupyter protocol: kernel created + kernel_info answered",
     "lat", None, None),
    ("jup_rt", "Jupyter protocol: execute 1+1 round trip (channels)",
     "lat", None, None),
    ("stream_sse", "streaming latency, print to client (SSE)", "lat",
     "p99 < 1 ms", lambda v, f: v["p99_ms"] < 1),
    ("stream_ws", "streaming latency, print to client (WebSocket)", "lat",
     "p99 < 1 ms", lambda v, f: v["p99_ms"] < 1),
    ("tput_http_1", "throughput 1+1, 1 session (HTTP)", "rate", None, None),
    ("tput_http_8", "throughput 1+1, 8 sessions (HTTP)", "rate", None, None),
    ("tput_http_64", "throughput 1+1, 64 sessions (HTTP)", "rate",
     ">= 10,000/s on 2 cores, p99 <= 4x p50", lambda v, f: _busy_ok(v)),
    ("tput_ws_1", "throughput 1+1, 1 session (WebSocket)", "rate",
     None, None),
    ("tput_ws_8", "throughput 1+1, 8 sessions (WebSocket)", "rate",
     None, None),
    ("tput_ws_64", "throughput 1+1, 64 sessions (WebSocket)", "rate",
     ">= 10,000/s on 2 cores, p99 <= 4x p50", lambda v, f: _busy_ok(v)),
    ("bulk_sse", "output throughput, print 50 MB (SSE)", "mbps",
     None, None),
    ("bulk_ws", "output throughput, print 50 MB (WebSocket)", "mbps",
     None, None),
    ("pss_100", "PSS per idle session (100 sessions)", "mib",
     "< 4 MiB", lambda v, f: v["mib"] < 4),
    ("pss_1000", "PSS per idle session (1000 sessions)", "mib",
     "< 4 MiB", lambda v, f: v["mib"] < 4),
    ("rt_bash", "bash `true` round trip, HTTP keep-alive (JSON)", "lat",
     "p50 < 1 ms", lambda v, f: v["p50_ms"] < 1),
    ("tx_small", "1+1 under rollback_on_failure, small namespace (JSON)",
     "lat", "p50 < 1.5 ms", lambda v, f: v["p50_ms"] < 1.5),
    ("rb_small", "failing run rolled back (commit_on_success), small "
     "namespace", "lat", None, None),
    ("rt_200mb", "1+1 commit_always, 200 MB namespace (JSON)", "lat",
     None, None),
    ("tx_200mb", "1+1 under rollback_on_failure, 200 MB namespace (JSON)",
     "lat", None, None),
    ("rb_200mb", "failing run rolled back (commit_on_success), 200 MB "
     "namespace", "lat", None, None),
    ("ckpt_size", "checkpoint size, 100 names holding 1 MB", "bytes",
     "< 2 MB", lambda v, f: v["bytes"] < 2 << 20),
    ("ckpt_time", "checkpoint time, 100 names holding 1 MB", "lat",
     "p50 < 20 ms", lambda v, f: v["p50_ms"] < 20),
    ("restore_time", "restore time, 100 names holding 1 MB", "lat",
     None, None),
    ("ckpt_big_size", "checkpoint size, a 100 MB array", "bytes", None,
     None),
    ("ckpt_big_time", "checkpoint time, a 100 MB array", "lat", None, None),
]

# 1+1 round trips shown as a multiple of the floor's p50 beside their own
FLOOR_MULTIPLE = ("rt_http", "rt_sse", "rt_ws")


def _busy_ok(v):
    """Issue 19's target for 64 sessions: the rate, with a bounded tail."""
    return v["rate"] >= 10000 and v["p99_ms"] <= 4 * v["p50_ms"]


JSON_ACCEPT = "application/json"
RUN_11 = '{"code":"1+1"}'
TYPICAL_NS = """
def helper(x):
    return x + 1
class Record:
    def __init__(self, v):
        self.v = v
for i in range(97):
    kind = i % 3
    if kind == 0:
        globals()[f"blob{i}"] = bytes(10_000)
    elif kind == 1:
        globals()[f"nums{i}"] = list(range(1250))
    else:
        globals()[f"table{i}"] = {str(k): k for k in range(500)}
rec = Record(1)
"""
BIG_NS = """
try:
    import numpy
    big = numpy.ones(100 << 17)
except ImportError:
    big = bytearray(b'x' * (100 << 20))
"""
RUN_11_TX = '{"code":"1+1","tx_policy":"rollback_on_failure"}'
RUN_FAIL_TX = '{"code":"1/0","tx_policy":"commit_on_success"}'
WS_RUN = '{"type":"run","id":"{rid}","code":%s}'
WS_DONE = '"execution_complete"'
OK_MARK = '"status":"ok"'

JUP_DONE = ('"msg_type": "execute_reply"', '"execution_state": "idle"')
JUP_OK = '"status": "ok"'
# the same in PyREPL's Jupyter dialect, whose JSON has no spaces
PYREPL_JUP_DONE = ('"msg_type":"execute_reply"', '"execution_state":"idle"')
PYREPL_JUP_OK = '"status":"ok"'


def jup_msg(msg_type, content):
    """A Jupyter shell message; "{rid}" is left for pyrepl-load."""
    return json.dumps({
        "header": {"msg_id": "{rid}", "username": "bench",
                   "session": "bench", "msg_type": msg_type,
                   "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "content": content,
        "channel": "shell", "buffers": []})


def jup_exec(code):
    return jup_msg("execute_request", {
        "code": code, "silent": False, "store_history": True,
        "user_expressions": {}, "allow_stdin": False,
        "stop_on_error": True})


def stamp_code(lines):
    """Code printing lines "@@<CLOCK_MONOTONIC ns>", 0.5 ms apart."""
    return ("import time\n"
            f"for _ in range({lines}):\n"
            "    print(f'@@{time.monotonic_ns()}', flush=True)\n"
            "    time.sleep(0.0005)\n")


def bulk_code(mb):
    """Code printing mb * 10**6 bytes in 1000-byte lines."""
    return ("import sys\n"
            "w = sys.stdout.write\n"
            "s = 'x' * 999 + '\\n'\n"
            f"for _ in range({mb * 1000}):\n"
            "    w(s)\n")


class Plan:
    """Sizes and durations of one pass (--quick or full)."""

    def __init__(self, quick):
        self.quick = quick
        if quick:
            self.warmup, self.duration, self.floor = 0.2, 0.8, 0.5
            self.create_warm, self.create_cold, self.pace_ms = 12, 8, 60
            self.stream_lines, self.bulk_mb = 300, 10
            self.pss_counts = (50, 200)
            self.jup_create, self.jup_kernels = 2, 8
            self.jup_pss = 8
        else:
            self.warmup, self.duration, self.floor = 1.0, 5.0, 3.0
            self.create_warm, self.create_cold, self.pace_ms = 100, 50, 100
            self.stream_lines, self.bulk_mb = 2000, 50
            self.pss_counts = (100, 1000)
            self.jup_create, self.jup_kernels = 10, 64
            self.jup_pss = 100


class Bench:
    def __init__(self, args):
        self.args = args
        self.plan = Plan(args.quick)
        self.cells = {key: {"pyrepl": None, "jupyter": None}
                      for key, *_ in ROWS}
        self.raw = {}
        self.notes = []
        self.failed = []
        self.config = {}
        self.cpu_log = []           # (wall seconds, foreign CPU seconds)
        self.instances = []

    # recording --------------------------------------------------------

    def put(self, key, side, value, raw=None):
        self.cells[key][side] = value
        if raw is not None:
            self.raw.setdefault(key, {})[side] = raw

    def na(self, key, side, why):
        self.cells[key][side] = {"na": why}

    def attempt(self, what, keys, side, fn):
        """Run one measurement; on failure mark its rows and go on."""
        try:
            fn()
        except Exception as e:             # noqa: BLE001 (reported below)
            msg = f"{type(e).__name__}: {e}"
            self.failed.append(f"{what} ({side}): {msg}")
            traceback.print_exc(file=sys.stderr)
            for k in keys:
                if self.cells[k][side] is None:
                    self.na(k, side, "failed: " + msg[:120])

    def lg(self, *args, **kw):
        """pyrepl-load, with what the machine's CPUs did meanwhile: ours
        (the servers measured, the load generator, this script) and
        "foreign" (anything else, e.g. other test runs on the machine),
        in cores, kept in the result as "cpu"."""
        def ours():
            pids = set()
            for inst in self.instances:
                pids.update(inst.pids())
            return {pid: cpu_seconds([pid]) for pid in pids}

        def own():
            t = os.times()
            return t.user + t.system + t.children_user + t.children_system

        b0, o0, s0, t0 = busy_seconds(), ours(), own(), time.monotonic()
        r = loadgen(*args, **kw)
        b1, o1, s1, t1 = busy_seconds(), ours(), own(), time.monotonic()
        wall = max(t1 - t0, 1e-6)
        mine = sum(o1[p] - o0[p] for p in o1 if p in o0) + (s1 - s0)
        foreign = max(0.0, (b1 - b0) - mine)
        r["cpu"] = {"wall_s": round(wall, 3),
                    "busy_cores": round((b1 - b0) / wall, 2),
                    "ours_cores": round(mine / wall, 2),
                    "foreign_cores": round(foreign / wall, 2)}
        self.cpu_log.append((wall, foreign))
        return r

    @staticmethod
    def lat(res, field="lat_us"):
        s = res[field]
        return {"p50_ms": s["p50"] / 1000, "p99_ms": s["p99"] / 1000,
                "n": s["n"]}

    @staticmethod
    def rate(res):
        return {"rate": res["rate"], "p50_ms": res["lat_us"]["p50"] / 1000,
                "p99_ms": res["lat_us"]["p99"] / 1000,
                "n": res["requests"]}

    # PyREPL -----------------------------------------------------------

    def pyrepl(self):
        p = self.plan
        extra = self.args.pyrepl_conf
        main = Nginx("main", workers=self.args.workers, http_extra=extra)
        cold = None
        if extra:
            self.config["pyrepl_conf"] = [extra]
        self.instances.append(main)

        for d in ("pyrepl_max_sessions %d;" % (p.pss_counts[1] + 100),
                  "pyrepl_max_output 256m;"):
            if main.accepts(d):
                main.add(d)
                self.config.setdefault("pyrepl_main", []).append(d)

        pool_ok = main.accepts("pyrepl_pool_min_idle 0;")
        if pool_ok:
            cold = Nginx("cold", workers=self.args.workers,
                         http_extra=extra + " pyrepl_pool_min_idle 0;")
            self.instances.append(cold)
            cold.start()
            self.config["pyrepl_cold"] = ["pyrepl_pool_min_idle 0;"]
            self.notes.append(
                f"Warm-pool rows: the pool at its default size, creates "
                f"{p.pace_ms} ms apart so it refills; empty-pool rows: a "
                f"second nginx with `pyrepl_pool_min_idle 0;`.")
        else:
            self.notes.append(
                "`pyrepl_pool_min_idle` is not in this build (nginx -t "
                "rejects it), so there is no pool: the warm and empty-pool "
                "create rows measure the same thing, a create from "
                "nothing, on one nginx.")
        main.start()
        self.main = main
        port = main.port

        def floor():
            r = self.lg("load", "--port", port, "--path", "/floor",
                        "--conns", 1, "--warmup", p.warmup,
                        "--duration", p.floor)
            self.put("floor_1", "pyrepl", self.lat(r), r)
            r = self.lg("load", "--port", port, "--path", "/floor",
                        "--conns", 64, "--warmup", p.warmup,
                        "--duration", p.floor)
            self.put("floor_64", "pyrepl", self.rate(r), r)

        self.attempt("loadgen floor", ["floor_1", "floor_64"], "pyrepl",
                     floor)

        def creates(inst, count, pace, create_key, ready_key):
            r = self.lg("create", "--port", inst.port, "--path", "/session",
                        "--status", 201, "--count", count,
                        "--ready-path", "/session/{sid}/run",
                        "--ready-body", RUN_11, "--ok", OK_MARK,
                        "--delete-path", "/session/{sid}",
                        "--pace-ms", pace)
            self.put(create_key, "pyrepl", self.lat(r, "create_us"), r)
            self.put(ready_key, "pyrepl", self.lat(r, "ready_us"))

        self.attempt("create, warm", ["create_warm", "ready_warm"],
                     "pyrepl", lambda: creates(main, p.create_warm,
                                               p.pace_ms, "create_warm",
                                               "ready_warm"))
        self.attempt("create, cold", ["create_cold", "ready_cold"],
                     "pyrepl", lambda: creates(cold or main, p.create_cold,
                                               20, "create_cold",
                                               "ready_cold"))
        if cold:
            cold.stop()

        sids = []

        def sessions():
            r = self.lg("create", "--port", port, "--path", "/session",
                        "--status", 201, "--count", 64, "--keep")
            sids.extend(r["ids"])
            self.warm_up(main, sids)

        self.attempt("64 sessions", [], "pyrepl", sessions)
        if len(sids) < 64:
            for k in ("rt_http", "rt_sse", "rt_ws", "stream_sse",
                      "stream_ws", "tput_http_1", "tput_http_8",
                      "tput_http_64", "tput_ws_1", "tput_ws_8", "tput_ws_64",
                      "bulk_sse", "bulk_ws", "ckpt_size", "ckpt_time"):
                self.na(k, "pyrepl", "failed: no sessions")
        else:
            self.pyrepl_runs(port, sids)
            self.attempt("checkpoint", ["ckpt_size", "ckpt_time",
                                        "restore_time", "ckpt_big_size",
                                        "ckpt_big_time"], "pyrepl",
                         lambda: self.checkpoint(main, sids[2], sids[6]))
            for sid in sids:
                main.request("DELETE", f"/session/{sid}")

        self.pyrepl_jupyter(main)

        self.attempt("PSS", ["pss_100", "pss_1000"], "pyrepl",
                     lambda: self.pyrepl_pss(main))

    def pyrepl_jupyter(self, inst):
        """The Jupyter rows on PyREPL's Jupyter dialect (location /api),
        driven as the Jupyter column drives a Jupyter server."""
        p = self.plan

        def ready():
            r = self.lg("create", "--port", inst.port, "--path",
                        "/api/kernels", "--body", '{"name":"python3"}',
                        "--status", 201, "--id-key", "id",
                        "--count", p.create_warm,
                        "--ready-ws-path",
                        "/api/kernels/{sid}/channels?session_id={sid}",
                        "--ready-msg", jup_msg("kernel_info_request", {}),
                        "--ready-done", "kernel_info_reply",
                        "--delete-path", "/api/kernels/{sid}",
                        "--pace-ms", p.pace_ms)
            self.put("jup_ready", "pyrepl", self.lat(r, "ready_us"), r)

        self.attempt("Jupyter protocol, create", ["jup_ready"], "pyrepl",
                     ready)

        def rt():
            status, kernel = inst.request("POST", "/api/kernels",
                                          {"name": "python3"})
            if status != 201:
                raise BenchError(f"POST /api/kernels: {status}")
            try:
                r = self.lg("load", "--ws", "--port", inst.port, "--path",
                            f"/api/kernels/{kernel['id']}/channels",
                            "--msg", jup_exec("1+1"),
                            "--done", PYREPL_JUP_DONE[0],
                            "--done", PYREPL_JUP_DONE[1],
                            "--ok", PYREPL_JUP_OK,
                            "--warmup", p.warmup, "--duration", p.duration)
                self.put("jup_rt", "pyrepl", self.lat(r), r)
            finally:
                inst.request("DELETE", f"/api/kernels/{kernel['id']}")

        self.attempt("Jupyter protocol, 1+1", ["jup_rt"], "pyrepl", rt)

    def warm_up(self, inst, sids):
        """Run 1+1 once in every session (64 at a time)."""
        path = os.path.join(inst.prefix, "tmp", "paths")
        with open(path, "w") as f:
            f.writelines(f"/session/{s}/run\n" for s in sids)
        self.lg("load", "--port", inst.port, "--paths-file", path, "--once",
                "--conns", min(64, len(sids)), "--method", "POST",
                "--body", RUN_11, "--accept", JSON_ACCEPT, "--ok", OK_MARK)

    def pyrepl_runs(self, port, sids):
        p = self.plan
        run = f"/session/{sids[0]}/run"
        ws = f"/session/{sids[0]}/ws"
        common = ("--warmup", p.warmup, "--duration", p.duration)

        def rt():
            r = self.lg("load", "--port", port, "--path", run, "--method",
                        "POST", "--body", RUN_11, "--accept", JSON_ACCEPT,
                        "--ok", OK_MARK, *common)
            self.put("rt_http", "pyrepl", self.lat(r), r)
            r = self.lg("load", "--port", port, "--path", run, "--method",
                        "POST", "--body", RUN_11, "--ok", "execution_complete",
                        *common)
            self.put("rt_sse", "pyrepl", self.lat(r), r)
            r = self.lg("load", "--ws", "--port", port, "--path", ws,
                        "--msg", WS_RUN % json.dumps("1+1"), "--done",
                        WS_DONE, "--ok", OK_MARK, *common)
            self.put("rt_ws", "pyrepl", self.lat(r), r)

        self.attempt("1+1 round trips", ["rt_http", "rt_sse", "rt_ws"],
                     "pyrepl", rt)

        def stream():
            code = stamp_code(p.stream_lines)
            r = self.lg("stream", "--stamps", "--port", port, "--path", run,
                        "--method", "POST",
                        "--body", json.dumps({"code": code}))
            self.check_stamps(r)
            self.put("stream_sse", "pyrepl", self.lat(r, "stamp_us"), r)
            r = self.lg("stream", "--stamps", "--ws", "--port", port,
                        "--path", ws, "--msg", WS_RUN % json.dumps(code),
                        "--done", WS_DONE, "--ok", OK_MARK)
            self.check_stamps(r)
            self.put("stream_ws", "pyrepl", self.lat(r, "stamp_us"), r)

        self.attempt("streaming", ["stream_sse", "stream_ws"], "pyrepl",
                     stream)

        def tput():
            for n in (1, 8, 64):
                args = []
                for s in sids[:n]:
                    args += ["--path", f"/session/{s}/run"]
                r = self.lg("load", "--port", port, "--conns", n, *args,
                            "--method", "POST", "--body", RUN_11,
                            "--accept", JSON_ACCEPT, "--ok", OK_MARK,
                            *common)
                self.put(f"tput_http_{n}", "pyrepl", self.rate(r), r)
            for n in (1, 8, 64):
                args = []
                for s in sids[:n]:
                    args += ["--path", f"/session/{s}/ws"]
                r = self.lg("load", "--ws", "--port", port, "--conns", n,
                            *args, "--msg", WS_RUN % json.dumps("1+1"),
                            "--done", WS_DONE, "--ok", OK_MARK, *common)
                self.put(f"tput_ws_{n}", "pyrepl", self.rate(r), r)

        self.attempt("throughput", [k for k, *_ in ROWS
                                    if k.startswith("tput_")], "pyrepl", tput)

        def bulk():
            code = bulk_code(p.bulk_mb)
            r = self.lg("stream", "--port", port,
                        "--path", f"/session/{sids[1]}/run", "--method",
                        "POST", "--body", json.dumps({"code": code}))
            self.put("bulk_sse", "pyrepl", self.mbps(r), r)
            r = self.lg("stream", "--ws", "--port", port,
                        "--path", f"/session/{sids[1]}/ws",
                        "--msg", WS_RUN % json.dumps(code), "--done",
                        WS_DONE, "--ok", OK_MARK)
            self.put("bulk_ws", "pyrepl", self.mbps(r), r)

        self.attempt("output throughput", ["bulk_sse", "bulk_ws"], "pyrepl",
                     bulk)

        def tx(sid, suffix):
            path = f"/session/{sid}/run"
            rows = [("tx_" + suffix, RUN_11_TX, '"tx":"committed"'),
                    ("rb_" + suffix, RUN_FAIL_TX, '"tx":"rolled_back"')]
            if suffix != "small":
                rows.insert(0, ("rt_" + suffix, RUN_11, OK_MARK))
            for key, body, mark in rows:
                r = self.lg("load", "--port", port, "--path", path,
                            "--method", "POST", "--body", body,
                            "--accept", JSON_ACCEPT, "--ok", mark, *common)
                self.put(key, "pyrepl", self.lat(r), r)

        def bash():
            status, body = self.instances[0].request(
                "POST", "/session", {"language": "bash"})
            if status != 201:
                raise BenchError(f"bash session: {status} {body}")
            sid = body["session_id"]
            r = self.lg("load", "--port", port, "--path",
                        f"/session/{sid}/run", "--method", "POST",
                        "--body", '{"code":"true"}', "--accept", JSON_ACCEPT,
                        "--ok", '"exit_code":0', *common)
            self.put("rt_bash", "pyrepl", self.lat(r), r)
            self.instances[0].request("DELETE", f"/session/{sid}")

        self.attempt("bash round trip", ["rt_bash"], "pyrepl", bash)

        self.attempt("transactions, small namespace", ["tx_small", "rb_small"],
                     "pyrepl", lambda: tx(sids[4], "small"))

        def big():
            status, body = self.instances[0].request(
                "POST", f"/session/{sids[5]}/run",
                {"code": "big = b'x' * (200 << 20)"})
            if status != 200:
                raise BenchError(f"200 MB namespace: {status} {body}")
            tx(sids[5], "200mb")
            self.instances[0].request("DELETE", f"/session/{sids[5]}")

        self.attempt("transactions, 200 MB namespace",
                     ["rt_200mb", "tx_200mb", "rb_200mb"], "pyrepl", big)
        self.notes.append("Transactions: a snapshot (fork) is taken before "
                          "each run; committed runs let it go, rolled-back "
                          "runs hand the session to it (new pid). The 200 MB "
                          "session holds `big = b'x' * (200 << 20)`.")

    def check_stamps(self, r):
        want = self.plan.stream_lines
        if not r["ok"] or r["stamp_us"]["n"] != want:
            raise BenchError(f"stream: {r['stamp_us']['n']} of {want} "
                             f"stamps, ok={r['ok']}")

    def mbps(self, r):
        mb = self.plan.bulk_mb
        if not r["ok"] or r["bytes"] < mb * 10**6:
            raise BenchError(f"bulk: ok={r['ok']}, {r['bytes']} bytes of "
                             f"{mb * 10**6}")
        return {"mb_s": mb / r["seconds"], "seconds": r["seconds"],
                "mb": mb, "wire_bytes": r["bytes"]}

    def checkpoint(self, inst, sid, big_sid):
        n = 5 if self.plan.quick else 30
        inst.request("POST", f"/session/{sid}/run", {"code": TYPICAL_NS})
        status, body = inst.request("POST", f"/session/{sid}/checkpoint")
        if status != 201:
            raise BenchError(f"checkpoint answered {status}: {body}")
        self.put("ckpt_size", "pyrepl", {"bytes": body["size_bytes"]}, body)
        r = self.lg("load", "--port", inst.port, "--path",
                    f"/session/{sid}/checkpoint", "--method", "POST",
                    "--status", 201, "--warmup", 0, "--count", n)
        self.put("ckpt_time", "pyrepl", self.lat(r), r)
        r = self.lg("load", "--port", inst.port, "--path",
                    f"/session/{sid}/restore", "--method", "POST",
                    "--body", json.dumps({"checkpoint_id":
                                          body["checkpoint_id"]}),
                    "--status", 200, "--warmup", 0, "--count", n)
        self.put("restore_time", "pyrepl", self.lat(r), r)

        inst.request("POST", f"/session/{big_sid}/run", {"code": BIG_NS})
        status, body = inst.request("POST", f"/session/{big_sid}/checkpoint")
        if status != 201:
            raise BenchError(f"checkpoint answered {status}: {body}")
        self.put("ckpt_big_size", "pyrepl", {"bytes": body["size_bytes"]},
                 body)
        r = self.lg("load", "--port", inst.port, "--path",
                    f"/session/{big_sid}/checkpoint", "--method", "POST",
                    "--status", 201, "--warmup", 0, "--count", 3)
        self.put("ckpt_big_time", "pyrepl", self.lat(r), r)
        self.notes.append("Checkpoints: the typical session holds 100 names "
                          "of 10 kB each (`bytes`, lists, dicts, a function "
                          "and a class); the big one a 100 MB numpy array "
                          "(a `bytearray` without numpy).")

    def pyrepl_pss(self, inst):
        sids = []
        for n, key in zip(self.plan.pss_counts, ("pss_100", "pss_1000")):
            r = self.lg("create", "--port", inst.port, "--path", "/session",
                        "--status", 201, "--count", n - len(sids), "--keep",
                        timeout=1200)
            new = r["ids"]
            self.warm_up(inst, new)
            sids += new
            time.sleep(1.0)
            pids = inst.session_pids(sids)
            if len(pids) < len(sids):
                raise BenchError(f"{len(pids)} session processes for "
                                 f"{len(sids)} sessions")
            total = sum(pss_kib(pid) or 0 for pid in pids)
            rest = [pid for pid in processes_under(inst.prefix)
                    if pid not in pids]
            rest_kib = sum(pss_kib(pid) or 0 for pid in rest)
            self.put(key, "pyrepl", {"mib": total / len(sids) / 1024,
                                     "n": len(sids), "processes": len(pids)},
                     {"pss_kib_total": total, "processes": len(pids),
                      "rest_pss_kib": rest_kib, "rest_processes": len(rest)})
            self.notes.append(
                f"With {len(sids)} sessions, the rest of PyREPL (nginx, "
                f"supervisor, zygote, idle pool: {len(rest)} processes) "
                f"held {rest_kib / 1024:.1f} MiB PSS, not counted above.")

    # Jupyter ----------------------------------------------------------

    def jupyter(self):
        p = self.plan
        jup = Jupyter()
        self.instances.append(jup)
        jup.start()
        self.jup = jup
        port = jup.port
        auth = ("--header", jup.auth_header())
        common = ("--warmup", p.warmup, "--duration", p.duration)

        for key in ("floor_1", "floor_64", "create_warm", "ready_warm"):
            self.na(key, "jupyter", "n/a")
        for key in ("rt_http", "rt_sse", "stream_sse", "tput_http_1",
                    "tput_http_8", "tput_http_64", "bulk_sse"):
            self.na(key, "jupyter", "n/a (no HTTP run)")
        for key in ("rt_bash", "ckpt_size", "ckpt_time", "restore_time",
                    "ckpt_big_size",
                    "ckpt_big_time", "tx_small", "rb_small", "rt_200mb",
                    "tx_200mb", "rb_200mb"):
            self.na(key, "jupyter", "n/a")
        self.na("pss_1000", "jupyter", "not run (~1000 kernels)")

        def create():
            r = self.lg("create", "--port", port, *auth, "--path",
                        "/api/kernels", "--body", '{"name":"python3"}',
                        "--status", 201, "--id-key", "id",
                        "--count", p.jup_create,
                        "--ready-ws-path",
                        "/api/kernels/{sid}/channels?session_id={sid}",
                        "--ready-msg", jup_msg("kernel_info_request", {}),
                        "--ready-done", "kernel_info_reply",
                        "--delete-path", "/api/kernels/{sid}",
                        "--pace-ms", 200, timeout=600)
            self.put("create_cold", "jupyter", self.lat(r, "create_us"), r)
            self.put("ready_cold", "jupyter", self.lat(r, "ready_us"))
            self.put("jup_ready", "jupyter", self.lat(r, "ready_us"))

        self.attempt("Jupyter create", ["create_cold", "ready_cold",
                                        "jup_ready"],
                     "jupyter", create)

        kids = []
        conn_ids = iter(range(1, 1 << 30))

        def chan(kernel):
            """A channels URL with a session_id of its own: jupyter-server
            keeps a closed connection's messages for the next one of the
            same session and replays them, which would confuse runs."""
            return (f"/api/kernels/{kernel}/channels"
                    f"?session_id=bench{next(conn_ids)}")

        def more_kernels(n):
            """Start kernels up to n in all, 8 at a time, each answering a
            1+1 before the next batch starts."""
            while len(kids) < n:
                batch = jup.start_kernels(min(8, n - len(kids)))
                args = []
                for k in batch:
                    args += ["--path", chan(k)]
                self.lg("load", "--ws", "--once", "--port", port, *auth,
                        "--conns", len(batch), *args,
                        "--msg", jup_exec("1+1"), *done, timeout=300)
                kids.extend(batch)

        done = ("--done", JUP_DONE[0], "--done", JUP_DONE[1], "--ok", JUP_OK)
        self.attempt("Jupyter kernels", [], "jupyter",
                     lambda: more_kernels(min(8, p.jup_kernels)))
        if not kids:
            for k in ("rt_ws", "stream_ws", "tput_ws_1", "tput_ws_8",
                      "tput_ws_64", "bulk_ws", "pss_100"):
                self.na(k, "jupyter", "failed: no kernels")
            return

        ws = chan(kids[0])

        def rt():
            r = self.lg("load", "--ws", "--port", port, *auth, "--path", ws,
                        "--msg", jup_exec("1+1"), *done, *common)
            self.put("rt_ws", "jupyter", self.lat(r), r)
            self.put("jup_rt", "jupyter", self.lat(r))

        self.attempt("Jupyter 1+1", ["rt_ws", "jup_rt"], "jupyter", rt)

        def stream():
            r = self.lg("stream", "--stamps", "--ws", "--port", port, *auth,
                        "--path", ws,
                        "--msg", jup_exec(stamp_code(p.stream_lines)), *done)
            self.check_stamps(r)
            self.put("stream_ws", "jupyter", self.lat(r, "stamp_us"), r)

        self.attempt("Jupyter streaming", ["stream_ws"], "jupyter", stream)

        def bulk():
            r = self.lg("stream", "--ws", "--port", port, *auth, "--path",
                        chan(kids[1]),
                        "--msg", jup_exec(bulk_code(p.bulk_mb)), *done)
            self.put("bulk_ws", "jupyter", self.mbps(r), r)

        self.attempt("Jupyter output", ["bulk_ws"], "jupyter", bulk)

        def tput():
            for n in (1, 8, 64):
                if n > p.jup_kernels:
                    self.na(f"tput_ws_{n}", "jupyter", "skipped (--quick)")
                    continue
                more_kernels(n)
                args = []
                for k in kids[:n]:
                    args += ["--path", chan(k)]
                r = self.lg("load", "--ws", "--port", port, *auth,
                            "--conns", n, *args, "--msg", jup_exec("1+1"),
                            *done, *common)
                self.put(f"tput_ws_{n}", "jupyter", self.rate(r), r)

        self.attempt("Jupyter throughput", ["tput_ws_1", "tput_ws_8",
                                            "tput_ws_64"], "jupyter", tput)

        def pss():
            # every kernel has run 1+1, as the PyREPL sessions have
            more_kernels(p.jup_pss)
            time.sleep(1.0)
            pids = jup.kernel_pids()
            total = sum(pss_kib(pid) or 0 for pid in pids)
            self.notes.append(
                f"The Jupyter server process itself held "
                f"{(pss_kib(jup.proc.pid) or 0) / 1024:.1f} MiB PSS with "
                f"{len(pids)} kernels, not counted above.")
            self.put("pss_100", "jupyter", {"mib": total / len(pids) / 1024,
                                            "n": len(pids)},
                     {"pss_kib_total": total, "processes": len(pids)})

        self.attempt("Jupyter PSS", ["pss_100"], "jupyter", pss)

    # output -----------------------------------------------------------

    def machine(self):
        def run(*cmd):
            try:
                p = subprocess.run(cmd, capture_output=True, text=True,
                                   timeout=20)
                return (p.stdout + p.stderr).strip()
            except OSError:
                return "?"

        model = "?"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // 1024
        debs = run("dpkg-query", "-W", "-f", "${Package} ${Version}\\n",
                   "jupyter-server", "python3-ipykernel", "nginx")
        with open("/proc/loadavg") as f:
            load_end = " ".join(f.read().split()[:3])
        return {
            "loadavg_start": self.load_start,
            "loadavg_end": load_end,
            "cores": os.cpu_count(),
            "cpu": model,
            "memory_mib": mem,
            "kernel": platform.release(),
            "nginx": run(NGINX, "-v").replace("nginx version: ", ""),
            "python": run(PYTHON, "-V").replace("Python ", ""),
            "debian": open("/etc/debian_version").read().strip(),
            "packages": debs.splitlines(),
            "nginx_workers": self.args.workers,
            "loadgen": LOADGEN,
            "cc": run("cc", "--version").splitlines()[0],
            "commit": run("git", "-C", ROOT, "rev-parse", "--short", "HEAD"),
            "module": MODULE,
        }

    @staticmethod
    def fmt_ms(x):
        if x < 1:
            return f"{x:.3f}"
        if x < 100:
            return f"{x:.1f}"
        return f"{x:,.0f}"

    def fmt(self, kind, v):
        if v is None:
            return "not measured"
        if "na" in v:
            return v["na"]
        if kind == "lat":
            return (f"{self.fmt_ms(v['p50_ms'])} / "
                    f"{self.fmt_ms(v['p99_ms'])} ms")
        if kind == "rate":
            return (f"{v['rate']:,.0f} /s (p50 {self.fmt_ms(v['p50_ms'])} "
                    f"/ p99 {self.fmt_ms(v['p99_ms'])} ms)")
        if kind == "mbps":
            note = "" if v["mb"] == 50 else f" ({v['mb']} MB)"
            return f"{v['mb_s']:,.0f} MB/s{note}"
        if kind == "mib":
            return f"{v['mib']:.2f} MiB (n={v['n']})"
        if kind == "bytes":
            return f"{v['bytes']:,} B"
        return json.dumps(v)

    @staticmethod
    def floor_multiple(key, v, floor):
        if key not in FLOOR_MULTIPLE or not v or "na" in v or not floor:
            return ""
        return f" ({v['p50_ms'] / floor:.1f}x floor)"

    @staticmethod
    def ratio(kind, py, jup):
        if not py or not jup or "na" in py or "na" in jup:
            return None
        if kind == "lat":
            return jup["p50_ms"] / py["p50_ms"] if py["p50_ms"] else None
        if kind == "rate":
            return py["rate"] / jup["rate"] if jup["rate"] else None
        if kind == "mbps":
            return py["mb_s"] / jup["mb_s"] if jup["mb_s"] else None
        if kind == "mib":
            return jup["mib"] / py["mib"] if py["mib"] else None
        return None

    def report(self, machine, started):
        rows = []
        floor = self.cells["floor_1"]["pyrepl"]
        floor = floor["p50_ms"] if floor and "na" not in floor else None
        for key, metric, kind, target, check in ROWS:
            py, jup = self.cells[key]["pyrepl"], self.cells[key]["jupyter"]
            if jup is None and self.args.no_jupyter:
                jup = {"na": "skipped (--no-jupyter)"}
            met = None
            if check and py and "na" not in py and floor:
                met = bool(check(py, floor))
            ratio = self.ratio(kind, py, jup)
            rows.append({"key": key, "metric": metric, "kind": kind,
                         "pyrepl": py, "jupyter": jup, "ratio": ratio,
                         "target": target, "target_met": met,
                         "pyrepl_text": self.fmt(kind, py)
                         + self.floor_multiple(key, py, floor),
                         "jupyter_text": self.fmt(kind, jup)})

        def busy(key, side):
            cpu = self.raw.get(key, {}).get(side, {}).get("cpu")
            return cpu and cpu["foreign_cores"] >= 0.5

        for r in rows:
            for side in ("pyrepl", "jupyter"):
                if busy(r["key"], side):
                    r[side + "_text"] += " †"

        out = []
        mode = "--quick" if self.args.quick else "full"
        out.append(f"# PyREPL benchmark ({mode} run, "
                   f"{time.strftime('%Y-%m-%d %H:%M:%S')}, "
                   f"{time.monotonic() - started:.0f} s)")
        out.append("")
        m = machine
        out.append(f"- machine: {m['cores']} cores ({m['cpu']}), "
                   f"{m['memory_mib']} MiB, Linux {m['kernel']}, "
                   f"Debian {m['debian']}")
        out.append(f"- nginx {m['nginx']} ({m['nginx_workers']} workers), "
                   f"Python {m['python']}, "
                   + ", ".join(m["packages"]))
        wall = sum(w for w, _ in self.cpu_log)
        foreign = sum(f for _, f in self.cpu_log)
        peak = max((f / w for w, f in self.cpu_log if w > 0.5), default=0)
        m["foreign_cores_mean"] = round(foreign / wall, 2) if wall else 0
        m["foreign_cores_peak"] = round(peak, 2)
        out.append(f"- other processes on the machine (not this bench) used "
                   f"{m['foreign_cores_mean']:.2f} cores on average while "
                   f"pyrepl-load ran (peak {peak:.2f}); load average "
                   f"{m['loadavg_start']} at start, {m['loadavg_end']} at "
                   f"end")
        out.append(f"- PyREPL commit {m['commit']} (working tree as built); "
                   f"load generator pyrepl-load ({m['cc']}), on the same "
                   f"cores")
        out.append("- latencies are p50 / p99; ratio = how many times "
                   "better PyREPL is (Jupyter/PyREPL for times and memory, "
                   "PyREPL/Jupyter for rates)")
        out.append("")
        out.append("| metric | PyREPL | Jupyter | ratio | target |")
        out.append("|---|---|---|---|---|")
        for r in rows:
            ratio = f"{r['ratio']:.1f}x" if r["ratio"] else ""
            if r["target"] is None:
                target = ""
            elif r["target_met"] is None:
                target = r["target"]
            else:
                target = r["target"] + (" (met)" if r["target_met"]
                                        else " (**missed**)")
            out.append(f"| {r['metric']} | {r['pyrepl_text']} | "
                       f"{r['jupyter_text']} | {ratio} | {target} |")
        notes = self.notes + [
            "PyREPL 1+1 runs go over HTTP keep-alive (JSON or SSE) or one "
            "WebSocket per session; Jupyter's over "
            "/api/kernels/{id}/channels (execute_request until "
            "execute_reply and status idle).",
            "Empty-pool create: PyREPL POST /session; Jupyter "
            "POST /api/kernels. Create + first answer: PyREPL adds a "
            "1+1 run, Jupyter opens the channels WebSocket and waits for "
            "kernel_info_reply.",
            "Streaming: the code prints CLOCK_MONOTONIC stamps "
            "(print(..., flush=True), 0.5 ms apart); the delay is to the "
            "read() that brought each stamp.",
            "PSS: sum of Pss (smaps_rollup) of the session processes "
            "(Jupyter: kernel processes) after each ran 1+1, divided by "
            "their count; nginx, the supervisor and the Jupyter server "
            "are not counted.",
        ]
        if any("†" in r["pyrepl_text"] + r["jupyter_text"] for r in rows):
            notes.append("†: other processes on the machine used half a "
                         "core or more while this was measured.")
        if self.failed:
            notes += ["FAILED: " + f for f in self.failed]
        out.append("")
        out += ["- " + n for n in notes]
        text = "\n".join(out) + "\n"

        doc = {"quick": self.args.quick, "jupyter": not self.args.no_jupyter,
               "machine": machine, "config": self.config,
               "prefixes": [i.prefix for i in self.instances],
               "plan": vars(self.plan), "rows": rows, "notes": notes,
               "failed": self.failed, "raw": self.raw}
        path = self.args.json or RESULTS
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(doc, f, indent=1, default=str)
        return text

    def run(self):
        started = time.monotonic()
        with open("/proc/loadavg") as f:
            self.load_start = " ".join(f.read().split()[:3])
        self.instances = []
        try:
            self.attempt("PyREPL", [], "pyrepl", self.pyrepl)
            for inst in self.instances:
                if isinstance(inst, Nginx):
                    bad = [l for l in inst.error_log().splitlines()
                           if re.search(r"\[(alert|emerg|crit)\]", l)]
                    if bad:
                        self.notes.append(f"nginx ({inst.name}) error.log: "
                                          + " | ".join(bad[:3]))
                    inst.stop()
            if self.args.no_jupyter:
                for key, *_ in ROWS:
                    if self.cells[key]["jupyter"] is None:
                        self.na(key, "jupyter", "skipped (--no-jupyter)")
            else:
                self.attempt("Jupyter", [], "jupyter", self.jupyter)
        finally:
            for inst in self.instances:
                left = inst.stop()
                if left:
                    self.notes.append(f"killed leftover processes {left}")
        for key, *_ in ROWS:
            for side in ("pyrepl", "jupyter"):
                if self.cells[key][side] is None:
                    self.na(key, side, "not measured")
        text = self.report(self.machine(), started)
        sys.stdout.write(text)
        sys.stdout.flush()
        return 1 if self.failed else 0


def main():
    ap = argparse.ArgumentParser(prog="util/bench", description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="a short pass with smaller counts (under a minute)")
    ap.add_argument("--no-jupyter", action="store_true",
                    help="leave the Jupyter column out")
    ap.add_argument("--json", metavar="PATH",
                    help="where the JSON goes (default build/bench/"
                         "results.json)")
    ap.add_argument("--workers", type=int, default=2,
                    help="nginx worker processes (default 2)")
    ap.add_argument("--pyrepl-conf", metavar="DIRECTIVES", default="",
                    help="extra http-level directives for PyREPL's nginx, "
                         "e.g. to measure without parts of the sandbox")
    ap.add_argument("--breakdown", action="store_true",
                    help="instead of the table: CPU, run-queue delay and "
                         "system calls per request of the missed targets' "
                         "scenarios (breakdown.py)")
    args = ap.parse_args()

    for path in (MODULE, LOADGEN, os.path.join(BUILD, "bin")):
        if not os.path.exists(path):
            sys.exit(f"util/bench: {path} is missing; run util/build")

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    if args.breakdown:
        import breakdown
        sys.exit(breakdown.main())
    sys.exit(Bench(args).run())


if __name__ == "__main__":
    main()
