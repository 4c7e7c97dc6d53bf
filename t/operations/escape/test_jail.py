"""The escape suite, the jail (pyrepl_jail, on as root): what only a
session's own namespaces and control group give.  A session sees a
minimal read-only root (no nginx configuration, no other tenant's files,
no build tree), only its own processes, a /tmp, /dev/shm, System V IPC and
loopback of its own, and is held to its memory, task and CPU share as a
whole, memfd and shared memory included.

Each attack checks what a user would see and that nginx, the supervisor
and another session go on working (attacks.contained).  Tests that need a
kernel feature this host may lack (a control group controller) probe for
it in a session and skip with the reason.
"""

import os
import signal
import subprocess
import tempfile

import pytest

from attacks import contained, out_of, run
from helpers import (UID_BASE, Nginx, first_pid, nginx_t_refusal, pid_of,
                     pool_procs, proc_stat, root_only, uid_processes,
                     wait_for)

pytestmark = root_only


def controller(pid, name):
    """The control group of host process pid for controller name (the v2
    group when no v1 hierarchy has it), or None."""
    with open(f"/proc/{pid}/cgroup") as f:
        lines = [line.rstrip("\n").split(":", 2) for line in f]
    for _, controllers, path in lines:
        if name in controllers.split(","):
            return path
    for hid, _, path in lines:
        if hid == "0" and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            return path
    return None


def needs_group(pid, name):
    """Skip unless the session of host pid has a group of its own for
    controller name."""
    path = controller(pid, name)
    if path is None or "/pyrepl-" not in path:
        pytest.skip(f"this host gives sessions no {name} control group "
                    f"(the supervisor warned at start-up)")


# the root a session sees --------------------------------------------------

def test_nothing_of_the_host_is_visible(nginx, attacker, victim):
    # the configuration (and its API keys), nginx's prefix, the build tree
    here = os.path.dirname(os.path.abspath(__file__))
    out = out_of(nginx, attacker, f"""
        import os
        for path in ["/etc/nginx/nginx.conf", {nginx.prefix!r}, {here!r},
                     "/var", "/home/pyrepl/..", "/root", "/run", "/srv",
                     "/etc/shadow", "/boot", "/sys", "/mnt", "/opt"]:
            try:
                os.stat(path)
                print(path, "visible")
            except FileNotFoundError:
                print(path, "absent")
        print(sorted(os.listdir("/")))
        print(sorted(os.listdir("/home")))
        print(os.listdir("/usr/local/etc")
              if os.path.isdir("/usr/local/etc") else [])
        """)
    lines = out.splitlines()
    assert [line.split()[-1] for line in lines[:13]] == ["absent"] * 4 + \
        ["visible"] + ["absent"] * 8, lines
    assert lines[13] == str(sorted(
        {"bin", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32",
         "proc", "sbin", "tmp", "usr"} & set(os.listdir("/")) |
        {"dev", "etc", "home", "proc", "tmp", "usr"}))
    assert lines[14] == "['pyrepl']"
    assert lines[15] == "[]"        # the host's local configuration
    contained(nginx, victim)


def test_the_root_is_read_only_and_the_workdir_writable(nginx, attacker,
                                                       victim):
    out = out_of(nginx, attacker, """
        import errno, os
        for path in ["/x", "/usr/x", "/etc/x", "/etc/passwd", "/bin/x",
                     "/proc/x", "/dev/x"]:
            try:
                open(path, "w")
                print(path, "written")
            except OSError as e:
                print(path, errno.errorcode[e.errno])
        open("mine", "w").write("ok")
        print(os.getcwd(), os.environ["HOME"], open("mine").read())
        """)
    lines = out.splitlines()
    assert all(line.split()[1] in ("EROFS", "EACCES", "ENOENT")
               for line in lines[:7]), lines
    assert lines[7] == "/home/pyrepl /home/pyrepl ok"
    contained(nginx, victim)


def test_the_session_knows_who_and_where_it_is(nginx, attacker, victim):
    out = out_of(nginx, attacker, """
        import os, pwd, grp, socket, subprocess
        me = pwd.getpwuid(os.getuid())
        print(me.pw_dir, grp.getgrgid(os.getgid()).gr_gid == os.getgid())
        print(socket.gethostname(), os.uname().nodename)
        print(subprocess.run(["id", "-un"], capture_output=True,
                             text=True).stdout.strip() == me.pw_name)
        print(sorted(os.listdir("/dev")))
        import ssl
        print(ssl.create_default_context().cert_store_stats()["x509_ca"] > 0)
        """)
    lines = out.splitlines()
    assert lines[0] == "/home/pyrepl True"
    assert lines[1] == "pyrepl pyrepl"
    assert lines[2] == "True"
    assert lines[3] == str(sorted(
        ["fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr",
         "stdin", "stdout", "tty", "urandom", "zero"]))
    assert lines[4] == "True"
    contained(nginx, victim)


def test_a_file_planted_in_tmp_is_invisible_to_others(nginx, attacker,
                                                     victim):
    assert out_of(nginx, attacker, """
        for d in ("/tmp", "/dev/shm"):
            open(d + "/planted", "w").write("gotcha")
        print("planted")
        """) == "planted\n"
    out = out_of(nginx, victim[0], """
        import os
        print(os.listdir("/tmp"), os.listdir("/dev/shm"))
        """)
    assert out == "[] []\n"
    contained(nginx, victim)


def test_tmp_is_held_to_pyrepl_tmp_size(nginx, attacker, victim):
    # files of 512 KiB, under this instance's 1m pyrepl_file_size_limit
    out = out_of(nginx, attacker, """
        import errno
        written = 0
        try:
            for i in range(200):
                with open(f"/tmp/fill{i}", "wb") as f:
                    f.write(b"x" * (512 << 10))
                written += 1
        except OSError as e:
            print(errno.errorcode[e.errno], written // 2)
        """)
    code, mib = out.split()
    assert code == "ENOSPC" and 60 <= int(mib) <= 64    # the default 64m
    contained(nginx, victim)


# processes ----------------------------------------------------------------

def test_only_the_session_s_own_processes_are_visible(nginx, attacker,
                                                     victim):
    sid, _ = victim
    assert run(nginx, sid, """
        import subprocess
        held = subprocess.Popen(["sleep", "600",
                                 "--db-url=postgres://app:S3cretPass@db"])
        """)["status"] == "ok"
    out = out_of(nginx, attacker, """
        import os
        pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        lines = [open(f"/proc/{p}/cmdline", "rb").read() for p in pids]
        print(pids[0], len(pids), any(b"S3cret" in c for c in lines))
        print(open("/proc/1/cmdline", "rb").read().rstrip(b"\\0"))
        """)
    first, n, seen = out.splitlines()[0].split()
    assert (first, seen) == ("1", "False")
    assert int(n) <= 3          # the init, the session, maybe its thread
    assert out.splitlines()[1] == "b'pyrepl-init'"
    assert run(nginx, sid, "held.kill(); held.wait()")["status"] == "ok"
    contained(nginx, victim)


def test_the_init_reaps_orphans_and_subprocess_keeps_its_statuses(
        nginx, attacker, victim):
    out = out_of(nginx, attacker, """
        import os, subprocess, time
        print(subprocess.run(["sh", "-c", "exit 3"]).returncode)
        # an orphan: its parent exits, so the init gets it, and reaps it
        r, w = os.pipe()
        if os.fork() == 0:
            if os.fork() == 0:
                os.close(r)
                os.write(w, str(os.getpid()).encode())
                os._exit(0)
            os._exit(0)
        os.close(w)
        orphan = int(os.read(r, 32))
        os.wait()
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{orphan}"):
            assert time.monotonic() < deadline, "the orphan stayed a zombie"
            time.sleep(0.01)
        print("reaped")
        p = subprocess.Popen(["sh", "-c", "exit 5"])
        print(p.wait())
        """)
    assert out.splitlines() == ["3", "reaped", "5"]
    contained(nginx, victim)


def test_deleting_a_session_ends_everything_in_it(nginx, victim):
    sid = nginx.create()
    uid = UID_BASE + first_pid(nginx, sid)
    assert run(nginx, sid, """
        import os, subprocess
        # escapes to its own process group and session, then is orphaned
        subprocess.Popen(["setsid", "sh", "-c", "sleep 600 & sleep 600"])
        """)["status"] == "ok"
    wait_for(lambda: len(uid_processes(uid)) >= 4,
             what="the background processes to start")
    assert nginx.http.delete(f"{nginx.url}/session/{sid}").status_code == 204
    wait_for(lambda: not uid_processes(uid), what="the jail to be emptied")
    contained(nginx, victim)


def test_bash_sessions_are_jailed_too(nginx, victim):
    sid = nginx.create(language="bash")
    try:
        r = nginx.run_json(sid, "hostname; ls /proc | grep -c '^[0-9]'; "
                                "ls /etc/nginx 2>&1 >/dev/null | wc -l; "
                                "echo $HOME; pwd")
        lines = r["stdout"].splitlines()
        assert lines[0] == "pyrepl"
        assert int(lines[1]) <= 6        # init, bash, the pipeline's
        assert lines[2] == "1"           # ls: no such file
        assert lines[3:] == ["/home/pyrepl", "/home/pyrepl"]
    finally:
        nginx.http.delete(f"{nginx.url}/session/{sid}")
    contained(nginx, victim)


def test_terminals_are_a_few_per_session(nginx, attacker, victim):
    # devpts instances share the host's kernel.pty.max: one session must
    # not take them all
    out = out_of(nginx, attacker, """
        import errno, os
        held = []
        try:
            while len(held) < 100:
                held.append(os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY))
        except OSError as e:
            print(len(held), errno.errorcode[e.errno])
        """)
    n, code = out.split()
    assert int(n) <= 16 and code == "ENOSPC"
    assert out_of(nginx, victim[0], """
        import os
        print(len(os.openpty()))
        """) == "2\n"
    contained(nginx, victim)


def test_host_wide_aio_contexts_are_out_of_reach(nginx, attacker, victim):
    out = out_of(nginx, attacker, """
        import ctypes, errno
        libc = ctypes.CDLL(None, use_errno=True)
        ctx = ctypes.c_ulong(0)
        rc = libc.syscall(206, 128, ctypes.byref(ctx))   # io_setup
        print(rc, errno.errorcode[ctypes.get_errno()])
        """)
    assert out == "-1 EPERM\n"
    contained(nginx, victim)


def session_groups(pid):
    """The folders of host process pid's session control group, in every
    hierarchy it is in (mounted as /sys/fs/cgroup/CONTROLLER here)."""
    with open(f"/proc/{pid}/cgroup") as f:
        groups = [line.rstrip("\n").split(":", 2) for line in f]
    found = []
    for _, ctrls, path in groups:
        if "/pyrepl-" in path:
            mount = "/sys/fs/cgroup/" + (ctrls.split(",")[0] if ctrls
                                         else "unified")
            found += [d for d in (mount + path,
                                  mount + path[path.find("/pyrepl-"):])
                      if os.path.isdir(d)]
    return found


def test_control_groups_go_with_pool_processes_and_the_instance():
    n = Nginx().start()
    try:
        sid = n.create()
        needs_group(first_pid(n, sid), "pids")
        wait_for(lambda: len(pool_procs(n)) == 2, what="a full pool")
        pooled = proc_stat(pool_procs(n)[0]).ppid        # its jail's init
        groups = session_groups(pooled)
        instance = {d[:d.rindex("/")] for d in groups}
        assert groups and instance
        os.kill(pooled, signal.SIGKILL)         # a pool process dies
        wait_for(lambda: not any(os.path.exists(d) for d in groups),
                 what="the dead pool process's group to go")
    finally:
        n.check_and_clean()
    assert [d for d in instance if os.path.exists(d)] == []


# IPC and network ----------------------------------------------------------

SHM = """
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
IPC_CREAT, KEY = 0o1000, 0x7079726c
"""


def test_system_v_shared_memory_is_private(nginx, attacker, victim):
    out = out_of(nginx, attacker, SHM + """
shmid = libc.shmget(KEY, 64 << 20, IPC_CREAT | 0o666)
print(shmid >= 0)
""")
    assert out == "True\n"
    with open("/proc/sysvipc/shm") as f:
        assert "1886024300" not in f.read()      # KEY, as the host lists
    out = out_of(nginx, victim[0], SHM + """
print(libc.shmget(KEY, 0, 0), errno.errorcode[ctypes.get_errno()])
""")
    assert out == "-1 ENOENT\n"
    contained(nginx, victim)


def test_abstract_sockets_are_private(nginx, attacker, victim):
    assert run(nginx, attacker, """
        import socket
        held = socket.socket(socket.AF_UNIX)
        held.bind("\\0pyrepl-jail-test")
        held.listen()
        """)["status"] == "ok"
    out = out_of(nginx, victim[0], """
        import errno, socket
        try:
            socket.socket(socket.AF_UNIX).connect("\\0pyrepl-jail-test")
            print("connected")
        except OSError as e:
            print(errno.errorcode[e.errno])
        """)
    assert out == "ECONNREFUSED\n"
    host = subprocess.run(["sh", "-c", "cat /proc/net/unix"],
                          capture_output=True, text=True).stdout
    assert "@pyrepl-jail-test" not in host
    contained(nginx, victim)


# the control group --------------------------------------------------------

@pytest.fixture(scope="module")
def limited():
    n = Nginx(workers=2, http_extra="pyrepl_memory_limit 256m; "
                                    "pyrepl_tmp_size 1024m;",
              server_extra="location = /status { pyrepl_status; }").start()
    yield n
    n.check_and_clean()


@pytest.fixture
def limited_victim(limited):
    sid = limited.create()
    limited.run_json(sid, "secret = 'v-1234'")
    yield sid, pid_of(limited, sid)
    limited.http.delete(f"{limited.url}/session/{sid}")


HOGS = """
    import os
    for _ in range(4):
        if os.fork() == 0:
            hoard = []
            while True:
                hoard.append(b"z" * (1 << 20))
    for _ in range(4):
        os.wait()
"""


@pytest.mark.parametrize("hoard", [
    # memfd and tmpfs pages belong to no process's address space: only
    # the group's memory limit counts them
    """
        import os
        fd = os.memfd_create("hoard")
        while True:
            os.write(fd, b"x" * (16 << 20))
    """,
    """
        with open("/dev/shm/hoard", "wb") as f:
            while True:
                f.write(b"x" * (16 << 20))
    """,
    HOGS,
], ids=["memfd", "dev-shm", "forked-hogs"])
def test_memory_past_the_limit_ends_the_session_as_out_of_memory(
        limited, limited_victim, hoard):
    sid = limited.create()
    needs_group(pid_of(limited, sid), "memory")
    uid = UID_BASE + first_pid(limited, sid)
    r = run(limited, sid, hoard, timeout_ms=60000)
    assert r["status"] == "crashed", r
    assert "ran out of memory" in r["error"]["evalue"], r
    got = limited.http.get(f"{limited.url}/session/{sid}").json()
    assert got["state"] == "crashed"
    wait_for(lambda: not uid_processes(uid), what="the session's processes "
                                                  "to be gone")
    assert limited.http.delete(
        f"{limited.url}/session/{sid}").status_code == 204
    contained(limited, limited_victim)


def test_running_out_of_memory_between_runs_is_told_at_the_next(
        limited, limited_victim):
    sid = limited.create()
    needs_group(pid_of(limited, sid), "memory")
    assert run(limited, sid, """
        import threading, time
        def hog():
            time.sleep(0.1)
            with open("/dev/shm/hoard", "wb") as f:
                while True:
                    f.write(b"z" * (1 << 20))
        threading.Thread(target=hog, daemon=True).start()
        """)["status"] == "ok"

    def crashed():
        return limited.http.get(f"{limited.url}/session/{sid}").json()[
            "state"] == "crashed"
    wait_for(crashed, what="the session to run out of memory")
    r = run(limited, sid, "1")
    assert r["status"] == "crashed"
    assert "ran out of memory" in r["error"]["evalue"], r
    limited.http.delete(f"{limited.url}/session/{sid}")
    contained(limited, limited_victim)


def test_socket_buffers_count_against_the_memory_limit(limited,
                                                      limited_victim):
    # unread loopback TCP: on cgroup v1 the kernel charges TCP buffers
    # only under a limit of their own (without it one session held 2.2 GB)
    sid = limited.create()
    needs_group(pid_of(limited, sid), "memory")
    r = run(limited, sid, """
        import socket
        queued, held = 0, []
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(512)
        for _ in range(300):
            a = socket.create_connection(srv.getsockname())
            b, _ = srv.accept()
            for s in (a, b):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            a.setblocking(False)
            held += [a, b]
            try:
                while True:
                    queued += a.send(b"x" * (1 << 20))
            except (BlockingIOError, OSError):
                pass
        print(queued >> 20)
        """, timeout_ms=120000)
    if r["status"] == "ok":
        assert int(r["stdout"]) < 2 * 256, r["stdout"]     # MiB
    else:
        assert r["status"] == "crashed", r              # ended instead
    limited.http.delete(f"{limited.url}/session/{sid}")
    contained(limited, limited_victim)


def test_a_setsid_cpu_hog_cannot_starve_another_session(limited,
                                                       limited_victim):
    # 40 spinning processes, each in its own session and so its own
    # autogroup, against one: with a group each the CPU is shared per
    # session.  The victim's share of the CPU over its own run: about
    # half a core on two (one core when the hog's group gets the other),
    # 3% without groups.
    sid = limited.create()
    needs_group(pid_of(limited, sid), "cpu")
    assert run(limited, sid, """
        import subprocess
        hogs = [subprocess.Popen(["setsid", "sh", "-c",
                                  "while :; do :; done"])
                for _ in range(40)]
        """)["status"] == "ok"
    try:
        out = out_of(limited, limited_victim[0], """
            import time
            wall, cpu = time.monotonic(), time.process_time()
            n = 0
            while time.process_time() - cpu < 0.5:
                n += 1
            print(round((time.process_time() - cpu)
                        / (time.monotonic() - wall), 2))
            """)
        assert float(out) >= 0.25, f"the victim got {out} of a core"
    finally:
        limited.http.delete(f"{limited.url}/session/{sid}")
    contained(limited, limited_victim)


# directives ---------------------------------------------------------------

def test_pyrepl_bind_shows_host_paths_read_only_or_writable():
    with tempfile.TemporaryDirectory() as data, \
            tempfile.TemporaryDirectory() as out:
        os.chmod(data, 0o755)
        os.chmod(out, 0o777)
        with open(os.path.join(data, "input.csv"), "w") as f:
            f.write("a,b\n1,2\n")
        n = Nginx(http_extra=f"pyrepl_bind {data} /data; "
                             f"pyrepl_bind {out} /results rw;").start()
        try:
            sid = n.create()
            got = out_of(n, sid, """
                import errno
                print(open("/data/input.csv").read().splitlines()[1])
                try:
                    open("/data/x", "w")
                except OSError as e:
                    print(errno.errorcode[e.errno])
                open("/results/sum.txt", "w").write("3")
                """)
            assert got.splitlines() == ["1,2", "EROFS"]
            with open(os.path.join(out, "sum.txt")) as f:
                assert f.read() == "3"
            assert not os.path.exists(os.path.join(data, "x"))
        finally:
            n.check_and_clean()


def test_a_bind_source_is_its_real_path():
    # a link in the configured path is resolved by nginx -t, once; what
    # the jail opens it then opens without following any link
    with tempfile.TemporaryDirectory() as top:
        os.chmod(top, 0o755)
        os.mkdir(os.path.join(top, "real"))
        with open(os.path.join(top, "real", "f"), "w") as f:
            f.write("data")
        os.symlink("real", os.path.join(top, "link"))
        n = Nginx(http_extra=f"pyrepl_bind {top}/link /data;").start()
        try:
            sid = n.create()
            assert out_of(n, sid, "print(open('/data/f').read())") == \
                "data\n"
        finally:
            n.check_and_clean()


def test_nginx_t_refuses_binds_sessions_could_redirect():
    # a session could replace a bind's source (or a folder on its way)
    # with a link to / for the next jails: sources sessions can write are
    # refused, and so are destinations inside other binds
    with tempfile.TemporaryDirectory() as top:
        os.makedirs(os.path.join(top, "shared", "models"))
        shared = os.path.join(top, "shared")
        assert "sessions write in the rw bind" in nginx_t_refusal(
            f"pyrepl_bind {shared} /shared rw; "
            f"pyrepl_bind {shared}/models /models;")
        assert "sessions write in the rw bind" in nginx_t_refusal(
            f"pyrepl_bind {shared}/models /models; "
            f"pyrepl_bind {shared} /shared rw;")
        assert "one inside the other" in nginx_t_refusal(
            f"pyrepl_bind {shared} /shared; "
            f"pyrepl_bind /usr/share/doc /shared/doc;")
    n = Nginx()
    try:
        os.makedirs(os.path.join(n.prefix, "work", "data"))
        n.write_conf(http_extra=f"pyrepl_bind {n.prefix}/work/data /data;")
        r = n.test_config()
        assert r.returncode != 0
        assert "sessions write in, or PyREPL keeps private" in r.stderr, \
            r.stderr
    finally:
        n.check_and_clean()


@pytest.mark.parametrize("directive, message", [
    ("pyrepl_bind data;", "absolute paths"),
    ("pyrepl_bind /nonexistent-pyrepl-path;", "No such file or directory"),
    ("pyrepl_bind /usr /proc;", "is in \"/proc\", the jail's own"),
    ("pyrepl_bind /usr /x wr;", "takes SRC [DST] [ro|rw]"),
    ("pyrepl_bind /usr/share/doc //x;", "without \":\", \"//\""),
    ("pyrepl_bind /usr/share/doc /./proc;", "without \":\", \"//\""),
    ("pyrepl_bind /usr/share/doc /usr/local rw;", "the jail's own"),
    ("pyrepl_bind /usr/share/doc /home;", "the jail's own"),
    ("pyrepl_tmp_size 1x;", "invalid value"),
    ("pyrepl_cpu_weight 0;", "between 1 and 10000"),
    ("pyrepl_jail maybe;", "invalid value"),
])
def test_nginx_t_rejects_bad_jail_directives(directive, message):
    assert message in nginx_t_refusal(directive)

