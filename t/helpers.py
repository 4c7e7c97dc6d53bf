"""
helpers.py: what the test modules of every group (api/, processes/,
operations/) share, defined once here and imported by name.

- the build under test: PYREPL_BUILD (default <repo>/build) selects it,
  e.g. build/san for the sanitizer build; PYREPL_BIN_DIR (default
  $PYREPL_BUILD/bin) its worker binaries;
- the sanitizer build's environment and reports (san_env, san_reports,
  bad_lines);
- wait_for, the one way a test awaits a condition;
- processes, from /proc: proc_stat, running, gone, children, cmdline,
  processes_under, leftovers, kill_all, uid_processes, pool_processes;
- the worker processes' wire protocol (a 4-byte big-endian length, then a
  msgpack map with "t"): frame, Conn, Run, request;
- Nginx, one nginx with the module in a temp prefix on a free port, and
  what tests of the API through it use: parse_sse, events_of, stdout_of,
  start_stream, ws_url, pid_of, sup_status, pool_procs.

With the sanitizer build (util/build --sanitize leaves BUILD/preload), nginx
runs with the ASan runtime preloaded and every process of an instance
(nginx, the supervisor, sessions) writes sanitizer reports to
<prefix>/logs/asan.<pid>; worker binaries a test starts itself write to
SAN_DIR.  conftest.py fails a test on any such report.
"""

import ast
import collections
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

import msgpack
import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("PYREPL_BUILD", os.path.join(ROOT, "build"))
MODULE = os.path.join(BUILD, "nginx", "objs", "ngx_http_pyrepl_module.so")
BIN_DIR = os.environ.get("PYREPL_BIN_DIR", os.path.join(BUILD, "bin"))
NGINX = "/usr/sbin/nginx"

# sessions run as UID_BASE + their first pid (pyrepl_session_uids'
# default; first_pid()), but only when nginx runs as root
UID_BASE = 1610612736
root_only = pytest.mark.skipif(os.geteuid() != 0,
                               reason="sessions get their own uid only when "
                                      "nginx runs as root")

# a jailed session's working directory, as it sees it
JAIL_HOME = "/home/pyrepl"

# the globals of a fresh session's namespace
PLAIN_GLOBALS = ["__annotations__", "__builtins__", "__doc__", "__loader__",
                 "__name__", "__package__", "__spec__"]


# real clients from npm ------------------------------------------------------

# The client packages the tests drive, pinned; npm_install puts them all
# under build/npm (never committed), where t/clients/*.mjs load them from.
NPM_PACKAGES = {"eventsource": "3.0.7", "@alibaba-group/opensandbox": "0.1.11",
                "@jupyterlab/services": "7.6.6", "@e2b/code-interpreter": "2.8.0"}
NPM_DIR = os.path.join(BUILD, "npm")
CLIENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clients")


def npm_installed(name):
    try:
        with open(os.path.join(NPM_DIR, "node_modules", name,
                               "package.json")) as f:
            return json.load(f)["version"] == NPM_PACKAGES[name]
    except (OSError, ValueError, KeyError):
        return False


def npm_install():
    """Install NPM_PACKAGES under build/npm unless they are there; skip
    the test when node or the npm registry is out of reach."""
    if all(npm_installed(name) for name in NPM_PACKAGES):
        return
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are not installed (util/test installs "
                    "Debian's nodejs and npm)")
    os.makedirs(NPM_DIR, exist_ok=True)
    with open(os.path.join(NPM_DIR, "package.json"), "w") as f:
        json.dump({"private": True, "dependencies": NPM_PACKAGES}, f)
    r = subprocess.run(["npm", "install", "--no-audit", "--no-fund",
                        "--prefix", NPM_DIR],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        pytest.skip(f"npm could not install the client packages: "
                    f"{r.stderr.strip()[-300:]}")


def node(script, *args, timeout=60):
    """Run t/clients/SCRIPT with node; its stdout, parsed as JSON."""
    r = subprocess.run(["node", os.path.join(CLIENTS, script), *args],
                       capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, PYREPL_NPM=NPM_DIR))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


# a real browser -------------------------------------------------------------

# what a test nginx's server block needs for a browser: a location that
# serves t/clients/ (the pages the browser tests open), and short timeouts
# for the connections Chromium opens ahead of time, which a graceful stop
# of nginx would otherwise wait for (client_header_timeout)
BROWSER_SERVER = (f"location /t/ {{ alias {CLIENTS}/; }} "
                  "location = /favicon.ico { return 204; } "
                  "client_header_timeout 2s; keepalive_timeout 2s;")


def chromium():
    """A headless Chromium driven through chromium-driver (selenium), or a
    skip when Debian's chromium, chromium-driver or python3-selenium is
    missing (util/test installs them)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("python3-selenium is not installed")
    if not os.path.exists("/usr/bin/chromedriver"):
        pytest.skip("chromium-driver is not installed")
    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    opts.binary_location = "/usr/bin/chromium"
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"),
                            options=opts)


def title_is(driver, prefix, timeout=20):
    """Wait for the page's title to start with prefix; the title."""
    wait_for(lambda: driver.title.startswith(prefix), timeout=timeout,
             what=f"the page title to start with {prefix!r} "
                  f"(it is {driver.title!r})")
    return driver.title


# Jupyter's own servers --------------------------------------------------------

@contextlib.contextmanager
def jupyter_gateway(program, gateway_url, key, home, token):
    """Debian's jupyter-server or jupyter-notebook (program), in gateway
    mode in front of gateway_url with key, started in home and answering
    with token; yields its URL, stops it after.  Skips when it is not
    installed (util/test installs it)."""
    path = "/usr/bin/" + program
    if not os.path.exists(path):
        pytest.skip(f"Debian's {program} is not installed (util/test "
                    f"installs it)")
    port = free_port()
    app = "NotebookApp" if program == "jupyter-notebook" else "ServerApp"
    server = subprocess.Popen(
        ["/usr/bin/python3", path, "--allow-root", "--no-browser",
         f"--port={port}", "--ip=127.0.0.1", f"--{app}.token={token}",
         f"--gateway-url={gateway_url}", f"--GatewayClient.auth_token={key}"],
        cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=dict(os.environ, HOME=str(home),
                 JUPYTER_RUNTIME_DIR=os.path.join(str(home), "runtime")))
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            return requests.get(url + "/api", timeout=1).ok
        except requests.ConnectionError:
            assert server.poll() is None, server.stderr.read().decode()
            return False

    try:
        wait_for(up, timeout=60, what=program)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


# the sanitizer build --------------------------------------------------------

# What nginx needs in LD_PRELOAD (the ASan runtime, then a library that
# takes LD_PRELOAD out of nginx's environment again, so the processes nginx
# starts do not inherit it; see util/san_unpreload.c).
try:
    with open(os.path.join(BUILD, "preload")) as _f:
        PRELOAD = _f.read().strip()
except FileNotFoundError:
    PRELOAD = None

# abort_on_error=0: a report ends the process with exit code 1 (not a core
# dump); halt_on_error=1 with -fno-sanitize-recover: UB ends it too.
ASAN_OPTIONS = "abort_on_error=0:halt_on_error=1:detect_leaks=1"
UBSAN_OPTIONS = "abort_on_error=0:halt_on_error=1:print_stacktrace=1"
SAN_REPORT = re.compile(r"^asan\.\d+$")

# a sanitizer's report in a log
SANITIZER = re.compile(r"AddressSanitizer|LeakSanitizer|runtime error:|"
                       r"UndefinedBehaviorSanitizer")


def san_env(log_dir, preload=False):
    """os.environ with sanitizer options logging to log_dir/asan.<pid> (one
    runtime: ASan, LSan and UBSan reports alike), and LD_PRELOAD set if
    preload (for nginx)."""
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = ASAN_OPTIONS + ":log_path=" + log_dir + "/asan"
    env["UBSAN_OPTIONS"] = UBSAN_OPTIONS + ":log_path=" + log_dir + "/asan"
    if preload:
        env["LD_PRELOAD"] = PRELOAD
    return env


def san_reports(log_dir):
    """The text of every sanitizer report file in log_dir."""
    found = []
    try:
        names = sorted(os.listdir(log_dir))
    except FileNotFoundError:
        return found
    for name in names:
        if SAN_REPORT.match(name):
            with open(os.path.join(log_dir, name), errors="replace") as f:
                found.append(f"--- {name}\n" + f.read())
    return found


def bad_lines(text, pattern=SANITIZER):
    """The lines of a log that match pattern."""
    return [line for line in text.splitlines() if pattern.search(line)]


# worker binaries that tests start themselves report here
SAN_DIR = None
if PRELOAD:
    SAN_DIR = tempfile.mkdtemp(prefix="pyrepl-san-")
    os.environ.update(san_env(SAN_DIR))


# waiting ---------------------------------------------------------------------

def wait_for(cond, timeout=10.0, what="condition"):
    """Poll cond() until it returns a true value, and return that; fail
    after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.01)


# processes -----------------------------------------------------------------

Stat = collections.namedtuple("Stat", "state ppid pgrp session comm")


def proc_stat(pid):
    """pid's /proc/PID/stat as a Stat (state letter, parent, process group,
    session, command name), or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None             # gone, possibly between open() and read()
    if ")" not in data:
        return None
    rest = data[data.rindex(")") + 2:].split()
    return Stat(rest[0], int(rest[1]), int(rest[2]), int(rest[3]),
                data[data.index("(") + 1:data.rindex(")")])


def running(pid):
    """pid is a live process: neither gone nor a zombie."""
    st = proc_stat(pid)
    return st is not None and st.state not in "ZX"


def gone(pid):
    """No process at all: exited and reaped."""
    return proc_stat(pid) is None


def children(pid):
    """The live children of pid, sorted."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = proc_stat(int(d))
            if st and st.ppid == pid and st.state not in "ZX":
                out.append(int(d))
    return sorted(out)


def cmdline(pid):
    """pid's arguments, or [] if it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode() for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def workdir_of(pid):
    """The host's path of process pid's working directory: in a jail, the
    directory mounted at its /home/pyrepl (its cwd reads /home/pyrepl)."""
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == JAIL_HOME:
                return fields[3]
    return os.readlink(f"/proc/{pid}/cwd")


def processes_under(prefix):
    """Live processes (but this one) whose command line or working
    directory (workdir_of) is inside prefix."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            cwd = workdir_of(pid)
        except OSError:
            continue
        if (prefix in cmd or cwd.startswith(prefix)) and running(int(pid)):
            found.append(int(pid))
    return found


def leftovers(prefix, timeout=10.0):
    """Wait for every process under prefix to go; the ones left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = processes_under(prefix)
        if not left:
            return []
        time.sleep(0.02)
    return processes_under(prefix)


def kill_all(pids):
    """SIGKILL each of pids that is still there."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def uid_processes(uid):
    """Processes with uid as their real, effective, saved or file-system
    uid, zombies included.  From /proc/PID/status: /proc/PID itself is
    root's for a process that is not dumpable, as sessions are."""
    found = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/status") as f:
                    status = f.read()
            except OSError:
                continue
            uids = status.split("\nUid:")[1].split("\n")[0].split()
            if str(uid) in uids:
                found.append(int(p))
    return found


def pool_processes(pids, workdir):
    """Those of pids that are pool processes waiting in workdir/pool-*."""
    out = []
    for pid in pids:
        try:
            cwd = workdir_of(pid)
        except OSError:
            continue            # exited meanwhile
        st = proc_stat(pid)
        if st and st.comm == "pyrepl-session" and \
                cwd.startswith(os.path.join(workdir, "pool-")):
            out.append(pid)
    return sorted(out)


def read_pid(path):
    """The pid in a pid file, or None while there is none."""
    try:
        with open(path) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


# the worker processes' frames -----------------------------------------------

def frame(msg):
    """msg as one frame: a 4-byte big-endian length, then msgpack."""
    body = msgpack.packb(msg)
    return struct.pack(">I", len(body)) + body


class Conn:
    """One client connection to a worker process (the supervisor or a
    session) on its Unix socket, speaking frames."""

    def __init__(self, path, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = bytearray()

    def send(self, msg=None, **fields):
        """Send msg, or a frame of fields: send({"t": "kill"}) or
        send(t="run", code=...)."""
        self.send_raw(frame({**(msg or {}), **fields}))

    def send_raw(self, data):
        self.sock.sendall(data)

    def recv(self, timeout=10.0):
        """The next frame as a dict, or None on a clean EOF."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    payload = bytes(self.buf[4:4 + n])
                    del self.buf[:4 + n]
                    # raw=False: every str must be valid UTF-8
                    return msgpack.unpackb(payload, raw=False)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out waiting for a frame")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            except ConnectionResetError:
                data = b""
            if not data:
                assert not self.buf, "EOF inside a frame"
                return None
            self.buf += data

    def request(self, msg, timeout=10.0):
        """Send msg; the answer (ConnectionError if the peer closes the
        connection instead)."""
        self.send(msg)
        answer = self.recv(timeout)
        if answer is None:
            raise ConnectionError("closed without an answer")
        return answer

    def at_eof(self):
        """True if the peer closed this connection without answering."""
        return self.recv() is None

    def until_complete(self, timeout=10.0):
        """Frames up to and including "complete" (or a "fail")."""
        frames = []
        deadline = time.monotonic() + timeout
        while True:
            f = self.recv(max(deadline - time.monotonic(), 0.001))
            assert f is not None, f"EOF before complete, got {frames}"
            frames.append(f)
            if f["t"] in ("complete", "fail"):
                return Run(frames)

    def wait_stdout(self, text, timeout=10.0):
        """Read frames until the stdout seen so far contains text."""
        seen = ""
        deadline = time.monotonic() + timeout
        while text not in seen:
            f = self.recv(max(deadline - time.monotonic(), 0.001))
            assert f is not None and f["t"] == "stdout", f
            seen += f["text"]
        return seen

    def close(self):
        self.sock.close()


def request(path, msg, timeout=10.0):
    """Send msg on a connection of its own to the socket at path; the
    answer."""
    c = Conn(path, timeout)
    try:
        return c.request(msg, timeout)
    finally:
        c.close()


class Run:
    """The frames of one run, with what a user would look at."""

    def __init__(self, frames):
        self.frames = frames
        self.types = [f["t"] for f in frames]

    def text(self, kind):
        return "".join(f["text"] for f in self.frames if f["t"] == kind)

    @property
    def stdout(self):
        return self.text("stdout")

    @property
    def stderr(self):
        return self.text("stderr")

    def one(self, kind):
        found = [f for f in self.frames if f["t"] == kind]
        assert len(found) == 1, f"expected one {kind} in {self.frames}"
        return found[0]

    @property
    def result(self):
        return self.one("result")

    @property
    def error(self):
        return self.one("error")

    @property
    def complete(self):
        assert self.frames[-1]["t"] == "complete", self.frames
        return self.frames[-1]

    @property
    def status(self):
        return self.complete["status"]


# nginx -----------------------------------------------------------------------

# error.log lines that fail a test
BAD_LOG = re.compile(r"\[(alert|emerg)\]|" + SANITIZER.pattern +
                     r"|Can't open file: .*/asan")

CONF = """
daemon off;
worker_processes {workers};
error_log logs/error.log {log_level};
pid logs/nginx.pid;
load_module {module};
{main_extra}
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path tmp/body;
    pyrepl_zone pyrepl {zone_size};
    pyrepl_bin_dir {bin_dir};
    pyrepl_socket_dir {socket_dir};
    pyrepl_workdir {prefix}/work;
    pyrepl_checkpoint_path {prefix}/checkpoints;
    {http_extra}
    server {{
        listen 127.0.0.1:{port};
        {server_extra}
        location /session {{
            pyrepl;
        }}
    }}
}}
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Nginx:
    """One nginx instance with the module, in its own prefix.
    check_and_clean() stops it and fails if error.log has [alert] /
    [emerg] / sanitizer lines or if any process of the instance (the
    supervisor, a session) is left behind."""

    def __init__(self, workers=1, http_extra="", server_extra="",
                 main_extra="", zone_size="4m", log_level="info"):
        self.prefix = tempfile.mkdtemp(prefix="pyrepl-t-")
        os.chmod(self.prefix, 0o755)
        for d in ("conf", "logs", "tmp"):
            os.mkdir(os.path.join(self.prefix, d))
        # sanitizer reports of nginx's workers and of sessions, which run
        # as other users, land here too
        os.chmod(os.path.join(self.prefix, "logs"), 0o1777)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.conf_path = os.path.join(self.prefix, "conf", "nginx.conf")
        self.params = dict(workers=workers, http_extra=http_extra,
                           server_extra=server_extra, main_extra=main_extra,
                           zone_size=zone_size, log_level=log_level,
                           module=MODULE, bin_dir=BIN_DIR,
                           prefix=self.prefix, port=self.port,
                           socket_dir=self.prefix + "/run")
        self.write_conf()
        self.env = self.env_no_leaks = None
        if PRELOAD:
            # nginx never frees its cycle when a process exits (a worker's
            # connection and event arrays, for one), so its processes run
            # without the leak check, and so do the supervisor and sessions
            # they start; the tests in processes/ start those binaries
            # themselves, with it
            self.env = san_env(os.path.join(self.prefix, "logs"), preload=True)
            self.env["ASAN_OPTIONS"] += ":detect_leaks=0"
            self.env_no_leaks = self.env
        self.proc = None
        self.http = requests.Session()
        # log lines a test provokes on purpose (a worker it killed)
        self.expected = []

    def write_conf(self, **changes):
        self.params.update(changes)
        with open(self.conf_path, "w") as f:
            f.write(CONF.format(**self.params))

    def cmd(self, *args):
        return [NGINX, "-p", self.prefix + "/", "-c", self.conf_path, *args]

    def test_config(self):
        return subprocess.run(self.cmd("-t"), capture_output=True, text=True,
                              env=self.env_no_leaks)

    def start(self):
        self.proc = subprocess.Popen(self.cmd(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=self.env)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("nginx exited: " +
                                     self.proc.stderr.read().decode())
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return True
            except OSError:
                return False

        wait_for(up, what="nginx to listen")
        return self

    def send(self, name):
        subprocess.run(self.cmd("-s", name), check=True,
                       env=self.env_no_leaks)

    def worker_pids(self):
        out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid",
                              str(self.proc.pid)], capture_output=True,
                             text=True).stdout
        return sorted(int(l.split()[0]) for l in out.splitlines()
                      if "worker process" in l)

    def supervisor_pid(self):
        return read_pid(os.path.join(self.prefix, "run", "supervisor.pid"))

    def error_log(self):
        try:
            with open(os.path.join(self.prefix, "logs", "error.log"),
                      errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self, sig=signal.SIGQUIT):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)
        self.http.close()

    def leftovers(self, timeout=10.0):
        """Wait for every process of this instance to go; return the rest."""
        return leftovers(self.prefix, timeout)

    def check_and_clean(self):
        self.stop()
        problems = []
        left = self.leftovers()
        if left:
            problems.append(f"processes left behind: {left}")
            kill_all(left)
        bad = [l for l in bad_lines(self.error_log(), BAD_LOG)
               if not any(re.search(e, l) for e in self.expected)]
        if bad:
            problems.append("error.log:\n" + "\n".join(bad[:20]))
        reports = san_reports(os.path.join(self.prefix, "logs"))
        if reports:
            problems.append("sanitizer reports:\n" + "\n".join(reports))
        if problems:
            raise AssertionError("; ".join(problems) +
                                 f" (prefix {self.prefix} kept)")
        shutil.rmtree(self.prefix, ignore_errors=True)

    # API helpers -------------------------------------------------------

    def create(self, **body):
        r = self.http.post(self.url + "/session", json=body or None)
        assert r.status_code == 201, r.text
        return r.json()["session_id"]

    def run(self, sid, code, **extra):
        """Run code over SSE; returns the list of (event, data) pairs."""
        r = self.http.post(f"{self.url}/session/{sid}/run",
                           json={"code": code, **extra}, stream=True)
        assert r.status_code == 200, r.text
        return list(parse_sse(r))

    def run_json(self, sid, code, timeout=None, **extra):
        """Run code for one JSON answer (waiting at most timeout seconds
        for each read of it); returns the answer."""
        r = self.http.post(f"{self.url}/session/{sid}/run",
                           json={"code": code, **extra},
                           headers={"Accept": "application/json"},
                           timeout=timeout)
        assert r.status_code == 200, r.text
        return r.json()


def nginx_t_refusal(http_extra):
    """What nginx -t says as it refuses a configuration with http_extra in
    its http block (it must refuse it)."""
    n = Nginx(http_extra=http_extra)
    try:
        r = n.test_config()
        assert r.returncode != 0, "nginx -t accepted " + http_extra
        return r.stderr
    finally:
        n.check_and_clean()


def parse_sse(response):
    """Yield (event, data) from an SSE response as lines arrive."""
    response.encoding = "utf-8"          # SSE is UTF-8 whatever it says
    event, data = None, []
    for raw in response.iter_lines(decode_unicode=True):
        if raw == "":
            if event is not None:
                yield event, json.loads("\n".join(data))
            event, data = None, []
            continue
        if raw.startswith(":"):
            continue
        field, _, value = raw.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)


def events_of(events, name):
    return [d for e, d in events if e == name]


def stdout_of(events):
    return "".join(d["text"] for e, d in events if e == "stdout")


def start_stream(nginx, sid, code, **extra):
    """Start an SSE run on a connection of its own; returns (http session,
    response, events iterator)."""
    s = requests.Session()
    r = s.post(f"{nginx.url}/session/{sid}/run",
               json={"code": code, **extra}, stream=True, timeout=30)
    assert r.status_code == 200, r.text
    return s, r, parse_sse(r)


def ws_url(nginx, sid):
    return f"ws://127.0.0.1:{nginx.port}/session/{sid}/ws"


# a session's answer to this is its own pid as the host numbers it (in a
# jail the session sees a pid namespace of its own): pid_in(answer)
PID_CODE = "import os; (os.getpid(), os.readlink('/proc/self/ns/pid'))"


def pid_in(answer):
    """The host's pid of the session that ran PID_CODE for answer."""
    return host_pid(*ast.literal_eval(answer["result"]["text/plain"]))


def pid_of(nginx, sid):
    """The pid of the process of a Python session, as the host numbers
    it."""
    return pid_in(nginx.run_json(sid, PID_CODE))


def first_pid(nginx, sid):
    """The pid that names a session's uid (UID_BASE + it): its process's,
    or in a jail its init's, pid 1 of the session's namespace."""
    pid, ns = ast.literal_eval(nginx.run_json(sid, PID_CODE)
                               ["result"]["text/plain"])
    return host_pid(1 if ns != os.readlink("/proc/self/ns/pid") else pid, ns)


def host_pid(pid, ns):
    """The host's pid of the process that is pid in pid namespace ns (as
    /proc/PID/ns/pid names it)."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{name}/ns/pid") != ns:
                continue
            with open(f"/proc/{name}/status") as f:
                status = f.read()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("NSpid:") and int(line.split()[-1]) == pid:
                return int(name)
    raise AssertionError(f"no process {pid} in {ns}")


def sup_status(nginx):
    """The supervisor's status frame (pool processes ready, the zygote's
    pid, live sessions), or None while none answers."""
    try:
        return request(os.path.join(nginx.prefix, "run", "supervisor.sock"),
                       {"t": "status"}, timeout=5)
    except OSError:
        return None


def pool_procs(nginx):
    """Processes of this instance waiting in the pool."""
    return pool_processes(processes_under(nginx.prefix),
                          os.path.join(nginx.prefix, "work"))
