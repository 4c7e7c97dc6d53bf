"""
peers.py: the servers the benchmark measures, and the tools around them.

It owns starting and stopping them: an nginx with the PyREPL module in its
own temp prefix on a free loopback port (the way t/helpers.py does it),
and a Jupyter server from Debian's packages (jupyter-server with
python3-ipykernel) in its own temp directory, token auth on, also on a free
loopback port.  Every process either of them starts carries the prefix in
its command line or working directory, so stop() can find and kill what is
left even after a failure.  It also runs pyrepl-load (the C load
generator) and reads PSS from /proc.
"""

import json
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BUILD = os.environ.get("PYREPL_BUILD", os.path.join(ROOT, "build"))
MODULE = os.path.join(BUILD, "nginx", "objs", "ngx_http_pyrepl_module.so")
BIN_DIR = os.path.join(BUILD, "bin")
LOADGEN = os.path.join(ROOT, "build", "bench", "pyrepl-load")
LOG_DIR = os.path.join(ROOT, "build", "bench", "logs")
NGINX = "/usr/sbin/nginx"
PYTHON = "/usr/bin/python3"

NGINX_CONF = """
daemon off;
worker_processes {workers};
worker_rlimit_nofile {nofile};
error_log logs/error.log warn;
pid logs/nginx.pid;
load_module {module};
events {{ worker_connections 16384; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path tmp/body;
    pyrepl_zone pyrepl {zone_size};
    pyrepl_bin_dir {bin_dir};
    pyrepl_socket_dir {prefix}/run;
    pyrepl_workdir {prefix}/work;
    pyrepl_checkpoint_path {prefix}/checkpoints;
    {http_extra}
    server {{
        listen 127.0.0.1:{port};
        location = /floor {{ return 200 "ok"; }}
        location /session {{ pyrepl; }}
        location /api {{ pyrepl; pyrepl_dialect jupyter; }}
    }}
}}
"""


class BenchError(Exception):
    pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise BenchError("timed out waiting for " + what)
        time.sleep(0.02)


def workdir_of(pid):
    """The host's path of process pid's working directory: in a jail, the
    directory mounted at its /home/pyrepl (its cwd reads /home/pyrepl)."""
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == "/home/pyrepl":
                return fields[3]
    return os.readlink(f"/proc/{pid}/cwd")


def processes_under(prefix):
    """PIDs (not zombies) whose command line or working directory
    (workdir_of) is inside prefix."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            cwd = workdir_of(pid)
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except OSError:
            continue
        if prefix in cmd or cwd.startswith(prefix):
            found.append(int(pid))
    return found


def kill_leftovers(prefix, grace=5.0):
    """SIGKILL whatever of prefix is still alive after grace seconds."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not processes_under(prefix):
            return []
        time.sleep(0.05)
    left = processes_under(prefix)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return left


def keep_log(path, name):
    """Copy a log out of a prefix before the prefix goes."""
    if os.path.exists(path):
        os.makedirs(LOG_DIR, exist_ok=True)
        shutil.copyfile(path, os.path.join(LOG_DIR, name))


CLK_TCK = os.sysconf("SC_CLK_TCK")


def busy_seconds():
    """CPU seconds the whole machine spent not idle, since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (sum(v) - v[3] - v[4]) / CLK_TCK      # minus idle and iowait


def cpu_seconds(pids):
    """utime + stime of these processes, in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def pss_kib(pid):
    """Pss of one process in KiB (smaps_rollup), None if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def children_of(ppid):
    kids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == ppid and fields[0] != "Z":
            kids.append(int(pid))
    return kids


def loadgen(*args, timeout=600, allow_errors=False):
    """Run pyrepl-load; return its JSON.  Exit 2 means some requests
    failed: an error unless allow_errors (then "errors" says how many)."""
    cmd = [LOADGEN, *[str(a) for a in args]]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode not in (0, 2) or not p.stdout.strip():
        raise BenchError(f"pyrepl-load {args[0]} failed ({p.returncode}): "
                         f"{p.stderr.strip()[-500:]}")
    out = json.loads(p.stdout)
    if p.returncode == 2 and not allow_errors:
        raise BenchError(f"pyrepl-load {args[0]} saw errors: {out} "
                         f"{p.stderr.strip()[-300:]}")
    return out


class Nginx:
    """An nginx with the module in a fresh temp prefix on a free port."""

    def __init__(self, name, workers=2, zone_size="16m", http_extra=""):
        self.name = name
        self.prefix = tempfile.mkdtemp(prefix=f"pyrepl-bench-{name}-")
        os.chmod(self.prefix, 0o755)
        for d in ("conf", "logs", "tmp"):
            os.mkdir(os.path.join(self.prefix, d))
        self.port = free_port()
        self.conf_path = os.path.join(self.prefix, "conf", "nginx.conf")
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if nofile == resource.RLIM_INFINITY or nofile > 65536:
            nofile = 65536
        self.params = dict(workers=workers, zone_size=zone_size,
                           nofile=nofile,
                           http_extra=http_extra, module=MODULE,
                           bin_dir=BIN_DIR, prefix=self.prefix,
                           port=self.port)
        self.proc = None
        self.write_conf()

    def write_conf(self, **changes):
        self.params.update(changes)
        with open(self.conf_path, "w") as f:
            f.write(NGINX_CONF.format(**self.params))

    def cmd(self, *args):
        return [NGINX, "-p", self.prefix + "/", "-c", self.conf_path, *args]

    def accepts(self, directive):
        """Does nginx -t accept this http-level directive here?"""
        saved = self.params["http_extra"]
        self.write_conf(http_extra=saved + "\n    " + directive)
        ok = subprocess.run(self.cmd("-t", "-q"), capture_output=True
                            ).returncode == 0
        self.write_conf(http_extra=saved)
        return ok

    def add(self, directive):
        self.write_conf(http_extra=self.params["http_extra"] + "\n    " +
                        directive)

    def start(self):
        t = subprocess.run(self.cmd("-t", "-q"), capture_output=True,
                           text=True)
        if t.returncode != 0:
            raise BenchError(f"nginx -t ({self.name}): {t.stderr.strip()}")
        self.proc = subprocess.Popen(self.cmd(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)

        def up():
            if self.proc.poll() is not None:
                raise BenchError("nginx exited: " +
                                 self.proc.stderr.read().decode())
            try:
                socket.create_connection(("127.0.0.1", self.port),
                                         0.2).close()
                return True
            except OSError:
                return False

        wait_for(up, 10, f"nginx ({self.name}) to listen")
        return self

    def request(self, method, path, body=None, timeout=60):
        """(status, parsed JSON or None) of one request."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                     data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            raw = e.read()
            status = e.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None

    def error_log(self):
        try:
            with open(os.path.join(self.prefix, "logs", "error.log"),
                      errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def pids(self):
        """Every live process of this instance: nginx rewrites its own
        command line, so the master and workers are found by parentage."""
        found = set(processes_under(self.prefix))
        if self.proc and self.proc.poll() is None:
            found.add(self.proc.pid)
            found.update(children_of(self.proc.pid))
        return found

    def worker_pids(self):
        return children_of(self.proc.pid) if self.proc else []

    def session_pids(self, sids):
        """PIDs of the processes working in these sessions' directories
        (in a jail, its init too)."""
        work = os.path.join(self.prefix, "work") + "/"
        want = set(sids)
        pids = []
        for pid in processes_under(work):
            try:
                cwd = workdir_of(pid)
            except OSError:
                continue
            if cwd.startswith(work) and cwd[len(work):].split("/")[0] in want:
                pids.append(pid)
        return pids

    def stop(self):
        """Stop nginx (and so the supervisor and every session); kill
        whatever remains; keep error.log as build/bench/logs/NAME.log.
        Returns the PIDs that had to be killed."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        left = kill_leftovers(self.prefix)
        keep_log(os.path.join(self.prefix, "logs", "error.log"),
                 f"nginx-{self.name}.log")
        shutil.rmtree(self.prefix, ignore_errors=True)
        return left


class Jupyter:
    """A Jupyter server (Debian's jupyter-server + python3-ipykernel)."""

    def __init__(self):
        self.prefix = tempfile.mkdtemp(prefix="pyrepl-bench-jupyter-")
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.proc = None
        self.log = None

    def env(self):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("JUPYTER", "IPYTHON", "PYENV"))}
        p = self.prefix
        env.update(HOME=p, JUPYTER_RUNTIME_DIR=p + "/runtime",
                   JUPYTER_DATA_DIR=p + "/data",
                   JUPYTER_CONFIG_DIR=p + "/config", IPYTHONDIR=p + "/ipython",
                   PATH="/usr/bin:/bin")
        return env

    def start(self):
        self.log = open(os.path.join(self.prefix, "server.log"), "wb")
        cmd = [PYTHON, "-m", "jupyter_server",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
               "--ServerApp.port_retries=0",
               f"--ServerApp.token={self.token}",
               "--ServerApp.open_browser=False",
               "--ServerApp.allow_root=True",
               f"--ServerApp.root_dir={self.prefix}",
               # no output throttling: the rows measure the transport
               "--ServerApp.iopub_msg_rate_limit=0",
               "--ServerApp.iopub_data_rate_limit=0"]
        self.proc = subprocess.Popen(cmd, cwd=self.prefix, env=self.env(),
                                     stdout=self.log, stderr=self.log,
                                     start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise BenchError("jupyter server exited, see " +
                                 self.log.name)
            try:
                return self.request("GET", "/api/status", timeout=1)[0] == 200
            except OSError:
                return False

        wait_for(up, 60, "the Jupyter server to answer")
        return self

    def auth_header(self):
        return f"Authorization: token {self.token}"

    def request(self, method, path, body=None, timeout=60):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                     data=data, method=method)
        req.add_header("Authorization", "token " + self.token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            raw = e.read()
            status = e.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None

    def start_kernels(self, n):
        """POST n kernels; their ids (the kernels may still be starting:
        jupyter-server only learns they are up from their first status
        message, so the caller runs something in each)."""
        ids = []
        for _ in range(n):
            status, k = self.request("POST", "/api/kernels",
                                     {"name": "python3"})
            if status != 201:
                raise BenchError(f"POST /api/kernels answered {status}")
            ids.append(k["id"])
        return ids

    def pids(self):
        return set(processes_under(self.prefix))

    def kernel_pids(self):
        return children_of(self.proc.pid) if self.proc else []

    def version(self):
        try:
            import jupyter_server
            return jupyter_server.__version__
        except ImportError:
            return "?"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            # SIGTERM: the server shuts its kernels down, then exits
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        left = kill_leftovers(self.prefix)
        if self.log:
            self.log.close()
            keep_log(self.log.name, "jupyter.log")
        shutil.rmtree(self.prefix, ignore_errors=True)
        return left
