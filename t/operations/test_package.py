"""The Debian package (util/package): apt-get installs it into this
machine's Debian nginx, which then serves PyREPL with a configuration that
only loads the module through the snippet the install enabled and says
pyrepl; (no pyrepl_bin_dir, none of the paths: the module's defaults as
root); a purge leaves nothing behind: no file of the package, no link in
/etc/nginx/modules-enabled, no session folder, socket or checkpoint, no
process, no control group.

The package is installed machine-wide: one test at a time holds
LOCK (another worktree's suite may run this test too), and the package is
purged whatever happens."""

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
import zlib

import pytest

from helpers import ROOT, Nginx, wait_for

PKG = "libnginx-mod-http-pyrepl"
LINK = "/etc/nginx/modules-enabled/50-mod-http-pyrepl.conf"
SNIPPET = "/usr/share/nginx/modules-available/mod-http-pyrepl.conf"
BIN_DIR = "/usr/lib/pyrepl"
LOCK = "/run/lock/pyrepl-package-test"
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=300"]

# all the configuration there is: the installed snippet and pyrepl;
CONF = """
daemon off;
worker_processes 1;
error_log logs/error.log info;
pid logs/nginx.pid;
include {link};
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path tmp/body;
    pyrepl_zone pyrepl 4m;
    {http_extra}
    server {{
        listen 127.0.0.1:{port};
        location /session {{
            pyrepl;
        }}
    }}
}}
"""


def debian_nginx():
    """Why this machine cannot take the package, or None."""
    if os.geteuid() != 0:
        return "installing a package needs root"
    if not shutil.which("dpkg") or not shutil.which("apt-get"):
        return "no dpkg and apt-get: not a Debian system"
    r = subprocess.run(["dpkg", "-S", "/usr/sbin/nginx"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return "/usr/sbin/nginx is not Debian's packaged nginx"
    return None


pytestmark = pytest.mark.skipif(debian_nginx() is not None,
                                reason=str(debian_nginx()))


class PackagedNginx(Nginx):
    """Debian's nginx in a temp prefix with CONF: the installed module."""

    def write_conf(self, **changes):
        self.params.update(changes)
        with open(self.conf_path, "w") as f:
            f.write(CONF.format(link=LINK, **self.params))


def installed():
    r = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Status}", PKG],
                       capture_output=True, text=True)
    return r.returncode == 0 and r.stdout not in ("", "not-installed")


def apt(*args):
    r = subprocess.run(APT + list(args), capture_output=True, text=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r.stdout


def packaged_processes():
    """Processes that run a program of the package (also once a purge
    deleted it: "... (deleted)")."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                exe = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                continue
            if exe.startswith(BIN_DIR + "/"):
                found.append((int(pid), exe))
    return found


def cgroups_named(name):
    """Control groups called name, in every hierarchy."""
    found = []
    for top, dirs, _ in os.walk("/sys/fs/cgroup"):
        found += [os.path.join(top, d) for d in dirs if d == name]
    return found


def fnv1a(s):
    """The supervisor's FNV-1a of its socket directory, which names its
    sessions' control groups pyrepl-<hash> (sup_jail.c)."""
    h = 2166136261
    for c in s.encode():
        h = ((h ^ c) * 16777619) & 0xffffffff
    return f"{h:08x}"


@pytest.fixture(scope="module")
def deb():
    """util/package's package."""
    r = subprocess.run([os.path.join(ROOT, "util", "package")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    path = r.stdout.split()[-1]
    assert os.path.basename(path).startswith(PKG + "_")
    return path


def contents(path):
    """The paths a package holds, directories included."""
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", path],
                         capture_output=True, check=True).stdout
    names = subprocess.run(["tar", "-t"], input=tar, capture_output=True,
                           check=True).stdout.decode().split()
    return [p.lstrip(".").rstrip("/") for p in names if p != "./"]


@pytest.fixture
def package(deb):
    """The package installed (by one test on the machine at a time), and
    purged after the test whatever happened; the paths it added."""
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        added = [p for p in contents(deb) if not os.path.lexists(p)]
        try:
            apt("install", deb)
            assert installed()
            yield added
        finally:
            if installed():
                apt("purge", PKG)


@contextlib.contextmanager
def serving(http_extra=""):
    """PackagedNginx started; stopped after, whatever happened."""
    n = PackagedNginx(http_extra=http_extra).start()
    try:
        yield n
    finally:
        n.stop()


def defaults(n):
    """The module's default folders as root for n's configuration (named
    by a CRC32 of its path): sockets, working directories, checkpoints."""
    h = f"{zlib.crc32(n.conf_path.encode()):08x}"
    return f"/run/pyrepl/{h}", f"/var/lib/pyrepl/{h}", \
        f"/var/lib/pyrepl/{h}-checkpoints"


def forget_kept(ckpt):
    """Once the instance a purge kept is gone, what it kept: its (empty)
    checkpoints folder, and the default folders if nothing else is there."""
    wait_for(lambda: not packaged_processes(), timeout=20,
             what="the package's processes to exit")
    os.rmdir(ckpt)
    for d in ("/run/pyrepl", "/var/lib/pyrepl"):
        with contextlib.suppress(OSError):
            os.rmdir(d)


def test_the_package_installs_serves_and_purges_without_a_trace(package):
    assert "/usr/lib/nginx/modules/ngx_http_pyrepl_module.so" in package
    assert os.readlink(LINK) == SNIPPET

    with serving() as n:
        run_dir, work, ckpt = defaults(n)
        sid = n.create()
        out = n.run_json(sid, "import sys\nprint(sys.executable)\n6 * 7")
        assert out["status"] == "ok", out
        assert out["result"] == {"text/plain": "42"}
        assert out["stdout"].startswith("/usr/bin/python3")
        assert os.path.isdir(os.path.join(work, sid))
        r = n.http.post(f"{n.url}/session/{sid}/checkpoint")
        assert r.status_code == 201, r.text
        assert os.listdir(ckpt)

        bash = n.create(language="bash")
        assert n.run_json(bash, "echo $((6 * 7))")["stdout"] == "42\n"

        # the workers the module found by itself
        with open(os.path.join(run_dir, "keeper.pid")) as f:
            keeper = int(f.read())
        assert os.readlink(f"/proc/{keeper}/exe") == \
            BIN_DIR + "/pyrepl-supervisor"
        assert {exe for _, exe in packaged_processes()} == \
            {BIN_DIR + "/" + b for b in ("pyrepl-supervisor",
                                         "pyrepl-python", "pyrepl-bash")}
        n.check_and_clean()

    wait_for(lambda: not packaged_processes(), timeout=20,
             what="the package's processes to exit")
    apt("purge", PKG)
    assert not installed()

    assert not os.path.lexists(LINK)
    assert not os.path.lexists(LINK + ".removed")
    left = [p for p in package if os.path.lexists(p)]
    assert left == [], left
    for d in (run_dir, work, ckpt):
        assert not os.path.lexists(d), d
    assert packaged_processes() == []
    assert cgroups_named("pyrepl-" + fnv1a(run_dir)) == []


def test_a_purge_keeps_the_folders_of_an_nginx_still_serving(package):
    with serving() as n:
        run_dir, work, ckpt = defaults(n)
        sid = n.create()
        assert n.run_json(sid, "x = 21")["status"] == "ok"

        apt("purge", PKG)
        assert not os.path.lexists(LINK)

        # the session, its socket and its folder are still there
        assert os.path.exists(os.path.join(run_dir, sid + ".sock"))
        assert os.path.isdir(os.path.join(work, sid))
        assert n.run_json(sid, "x * 2")["result"] == {"text/plain": "42"}
        n.check_and_clean()

    forget_kept(ckpt)


def test_a_purge_keeps_the_folders_of_a_serving_nginx_with_its_own_sockets(
        package):
    # no keeper lock in /run/pyrepl: the supervisor's command line tells
    top = tempfile.mkdtemp(prefix="pyrepl-t-sockets-")
    os.chmod(top, 0o755)                # nginx's workers reach the sockets
    with serving(f"pyrepl_socket_dir {top}/run;") as n:
        _, work, ckpt = defaults(n)
        sid = n.create()
        assert n.run_json(sid, "x = 21")["status"] == "ok"

        apt("purge", PKG)

        assert os.path.isdir(os.path.join(work, sid))
        assert n.run_json(sid, "x * 2")["result"] == {"text/plain": "42"}
        n.check_and_clean()

    forget_kept(ckpt)
    shutil.rmtree(top)
