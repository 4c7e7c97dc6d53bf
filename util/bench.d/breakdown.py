"""
breakdown.py: where the time of the benchmark's missed targets goes
(util/bench --breakdown runs it).  Not part of the table: it breaks a few
scenarios down by process, on the same kind of nginx as util/bench.

For each scenario it reads, before and after, /proc/<pid>/task/*/schedstat
of the nginx workers and the session processes (CPU time, and run-queue
delay: time a thread was runnable but another process had the CPU) and the
load generator's CPU, and prints them per request.  Then it runs the HTTP
1+1 loop again under strace -c (workers and session, all threads) for
system calls per request, and the WebSocket loop with --quickack (the
client acknowledges at once), which shows what of a WebSocket round trip
is the server's Nagle algorithm waiting for a delayed ACK.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import bench
from peers import CLK_TCK, LOADGEN, Nginx, busy_seconds, loadgen


def schedstat(pids):
    """Summed (cpu ns, run-queue delay ns, timeslices) over every thread."""
    cpu = delay = slices = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    a, b, c = (int(x) for x in f.read().split())
            except (OSError, ValueError):
                continue
            cpu += a
            delay += b
            slices += c
    return cpu, delay, slices


def measure(name, groups, args):
    """Run pyrepl-load with args; per request: CPU and run-queue delay of
    each group of processes, the load generator's CPU, and what the rest
    of the machine used."""
    before = {g: schedstat(p) for g, p in groups.items()}
    t = os.times()
    kids0 = t.children_user + t.children_system
    busy0, wall0 = busy_seconds(), time.monotonic()
    r = loadgen(*args)
    wall = time.monotonic() - wall0
    busy = busy_seconds() - busy0
    t = os.times()
    kids = t.children_user + t.children_system - kids0
    n = r.get("requests") or 1
    out = {"scenario": name, "requests": n, "rate": r.get("rate"),
           "p50_us": r["lat_us"]["p50"], "p99_us": r["lat_us"]["p99"],
           "loadgen_cpu_us": kids * 1e6 / n}
    ours = kids
    for g, pids in groups.items():
        a = schedstat(pids)
        cpu = a[0] - before[g][0]
        ours += cpu / 1e9
        out[g] = {"cpu_us": cpu / 1e3 / n,
                  "runq_delay_us": (a[1] - before[g][1]) / 1e3 / n,
                  "slices": (a[2] - before[g][2]) / n}
    out["machine_busy_cores"] = busy / wall
    out["other_cores"] = max(0.0, busy - ours) / wall
    return out


TIMEHIST = re.compile(r"^\s*[\d.]+\s+\[\d+\]\s+(.*?)\[(\d+)(?:/(\d+))?\]"
                      r"\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)")


def sched_delays(inst, groups, fn):
    """Run fn() under "perf sched record" (all CPUs); return fn's result
    and, per group of processes, the scheduling delays of their threads
    (wake-up to running, from "perf sched timehist") in microseconds."""
    data = os.path.join(inst.prefix, "sched.data")
    rec = subprocess.Popen(["perf", "sched", "record", "-a", "-o", data],
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        result = fn()
    finally:
        rec.send_signal(signal.SIGINT)
        rec.wait(timeout=60)
    th = subprocess.run(["perf", "sched", "timehist", "-i", data],
                        capture_output=True, text=True).stdout
    os.unlink(data)
    tid_group = {}
    for g, pids in groups.items():
        for pid in pids:
            try:
                for tid in os.listdir(f"/proc/{pid}/task"):
                    tid_group[int(tid)] = g
            except OSError:
                pass
    delays = {g: [] for g in groups}
    for line in th.splitlines():
        m = TIMEHIST.match(line)
        if m and int(m.group(2)) in tid_group:
            delays[tid_group[int(m.group(2))]].append(
                float(m.group(5)) * 1000)
    out = {}
    for g, v in delays.items():
        v.sort()
        if v:
            out[g] = {"switches": len(v),
                      "p50_us": v[len(v) // 2],
                      "p99_us": v[min(len(v) - 1, int(len(v) * 0.99))],
                      "max_us": v[-1],
                      "over_1ms": sum(1 for x in v if x > 1000)}
    return result, out


def strace_counts(inst, pids, args, seconds):
    """strace -c -f of pids while pyrepl-load runs; calls per request."""
    cmd = ["strace", "-c", "-f", "-o", os.path.join(inst.prefix, "st")]
    for pid in pids:
        cmd += ["-p", str(pid)]
    st = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    r = loadgen(*args)
    st.terminate()
    st.wait(timeout=10)
    calls = {}
    with open(os.path.join(inst.prefix, "st")) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and parts[0][0].isdigit() and \
                    parts[-1] not in ("total",):
                calls[parts[-1]] = int(parts[3])
    n = r["requests"] or 1
    return {k: round(v / n, 2) for k, v in sorted(calls.items(),
                                                   key=lambda x: -x[1])
            if v / n >= 0.05}


def main():
    inst = Nginx("profile")
    inst.add("pyrepl_max_sessions 200;")
    inst.start()
    report = {"clk_tck": CLK_TCK, "scenarios": [], "strace": {}}
    try:
        port = inst.port
        r = loadgen("create", "--port", port, "--path", "/session",
                    "--status", 201, "--count", 64, "--keep")
        sids = r["ids"]
        for s in sids:
            inst.request("POST", f"/session/{s}/run", {"code": "1+1"})
        workers = inst.worker_pids()
        one = inst.session_pids(sids[:1])
        many = inst.session_pids(sids)
        run = f"/session/{sids[0]}/run"
        ws = f"/session/{sids[0]}/ws"
        http = ("--method", "POST", "--body", bench.RUN_11, "--accept",
                bench.JSON_ACCEPT, "--ok", bench.OK_MARK)
        wsrun = ("--ws", "--msg", bench.WS_RUN % json.dumps("1+1"),
                 "--done", bench.WS_DONE, "--ok", bench.OK_MARK)
        d = ("--warmup", 0.5, "--duration", 3)
        paths64 = []
        for s in sids:
            paths64 += ["--path", f"/session/{s}/run"]
        ws64 = []
        for s in sids:
            ws64 += ["--path", f"/session/{s}/ws"]

        g1 = {"nginx_workers": workers, "session": one}
        g64 = {"nginx_workers": workers, "sessions": many}
        sc = report["scenarios"]
        sc.append(measure("floor GET /floor, 1 conn",
                          {"nginx_workers": workers},
                          ("load", "--port", port, "--path", "/floor", *d)))
        sc.append(measure("1+1 HTTP JSON, 1 conn", g1,
                          ("load", "--port", port, "--path", run, *http,
                           *d)))
        sc.append(measure("1+1 HTTP JSON, 64 sessions", g64,
                          ("load", "--port", port, "--conns", 64, *paths64,
                           *http, *d)))
        sc.append(measure("1+1 WebSocket, 1 conn", g1,
                          ("load", "--port", port, "--path", ws, *wsrun,
                           *d)))
        sc.append(measure("1+1 WebSocket, 1 conn, client --quickack", g1,
                          ("load", "--port", port, "--path", ws, *wsrun,
                           "--quickack", *d)))
        sc.append(measure("1+1 WebSocket, 64 sessions, client --quickack",
                          g64, ("load", "--port", port, "--conns", 64,
                                *ws64, *wsrun, "--quickack", *d)))
        code = bench.stamp_code(2000)
        for qa in ((), ("--quickack",)):
            for label, extra in (
                    ("SSE", ("--path", run, "--method", "POST", "--body",
                             json.dumps({"code": code}))),
                    ("WebSocket", ("--ws", "--path", ws, "--msg",
                                   bench.WS_RUN % json.dumps(code),
                                   "--done", bench.WS_DONE))):
                r, sched = sched_delays(
                    inst, g1, lambda: loadgen("stream", "--stamps", "--port",
                                              port, *extra, *qa))
                sc.append({"scenario": f"streaming {label}"
                                       + (", client --quickack" if qa
                                          else ""),
                           "p50_us": r["stamp_us"]["p50"],
                           "p99_us": r["stamp_us"]["p99"],
                           "p999_us": r["stamp_us"]["p999"],
                           "sched": sched})
        r, sched = sched_delays(
            inst, g1, lambda: measure("1+1 HTTP JSON, 1 conn, under perf "
                                      "sched", g1,
                                      ("load", "--port", port, "--path",
                                       run, *http, *d)))
        r["sched"] = sched
        sc.append(r)
        report["strace"]["1+1 HTTP JSON, 1 conn"] = strace_counts(
            inst, workers + one, ("load", "--port", port, "--path", run,
                                  *http, "--warmup", 0, "--duration", 2), 2)
        report["strace"]["1+1 WebSocket, 1 conn"] = strace_counts(
            inst, workers + one, ("load", "--port", port, "--path", ws,
                                  *wsrun, "--warmup", 0, "--duration", 2), 2)
    finally:
        inst.stop()

    for s in report["scenarios"]:
        line = f"{s['scenario']}: p50 {s['p50_us']:.0f} us, " \
               f"p99 {s['p99_us']:.0f} us"
        if "rate" in s:
            line += f", {s['rate']:,.0f}/s; per request: loadgen " \
                    f"{s['loadgen_cpu_us']:.0f} us CPU"
            for g in ("nginx_workers", "session", "sessions"):
                if g in s:
                    line += f"; {g} {s[g]['cpu_us']:.0f} us CPU, " \
                            f"{s[g]['runq_delay_us']:.0f} us run-queue wait"
            line += f"; other processes used {s['other_cores']:.2f} cores"
        for g, v in s.get("sched", {}).items():
            line += f"; {g} scheduling delay (perf sched) p50 " \
                    f"{v['p50_us']:.0f} us, p99 {v['p99_us']:.0f} us, max " \
                    f"{v['max_us']:.0f} us, {v['over_1ms']} of " \
                    f"{v['switches']} over 1 ms"
        print("- " + line)
    for name, calls in report["strace"].items():
        print(f"- syscalls per request, {name} (workers + session): " +
              ", ".join(f"{k} {v}" for k, v in calls.items()))
    path = os.path.join(os.path.dirname(LOADGEN), "profile.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"(JSON: {path})")


if __name__ == "__main__":
    sys.exit(main())
