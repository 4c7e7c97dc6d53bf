"""The escape suite, the sandbox: untrusted code tries to get out of its
session.  Its identity and limits (its own uid, the directives' rlimits),
fork, memory and disk bombs, other sessions' files, processes and
sockets, nginx's and the supervisor's, the kernel (mount, unshare,
modules, raw and netlink sockets, the network), directives that loosen
or tighten the defaults, and nginx -t on bad sandbox directives.

Each test runs hostile code in one session while another session holds
state (conftest.py's attacker and victim), and checks what a user would
see: the attempt fails with a clear Python error (or only the attacker's
own session dies), and nginx, the supervisor and the other session go on
working (attacks.contained).  Sessions run as uid UID_BASE + their first
pid (helpers.first_pid), in a jail of their own (pyrepl_jail, on as root:
a host path or pid they try is often simply not there), under a seccomp
filter, with limits from the pyrepl_* directives (the defaults, except
those the fixtures set).  test_jail.py has what only the jail gives.
"""

import os
import shutil

import pytest

from attacks import contained, out_of, run
from helpers import (PRELOAD, UID_BASE, Nginx, first_pid, root_only,
                     uid_processes, wait_for)

pytestmark = root_only


# identity and limits ------------------------------------------------------

def test_a_session_runs_as_its_own_unprivileged_uid(nginx, attacker, victim):
    pid = first_pid(nginx, attacker)
    out = out_of(nginx, attacker, """
        import os
        print(os.getuid(), os.geteuid(), os.getgid(), os.getgroups())
        try:
            os.setuid(0)
        except PermissionError as e:
            print("setuid:", e.strerror)
        """)
    uid = UID_BASE + pid
    assert out.splitlines() == [f"{uid} {uid} {uid} [{uid}]",
                                "setuid: Operation not permitted"]
    assert UID_BASE + first_pid(nginx, victim[0]) != uid


def test_limits_are_the_directives(nginx, attacker):
    out = out_of(nginx, attacker, """
        import resource as r, os
        for name in ("DATA", "NPROC", "NOFILE", "FSIZE", "CORE", "CPU"):
            print(name, *r.getrlimit(getattr(r, "RLIMIT_" + name)))
        print(oct(os.stat(".").st_mode & 0o777), oct(os.umask(0o22)))
        print(open("/proc/self/status").read().split("NoNewPrivs:")[1]
              .split()[0])
        """)
    lines = out.splitlines()
    inf = "-1"    # RLIM_INFINITY as Python's resource module shows it
    if not PRELOAD:   # AddressSanitizer cannot live with an RLIMIT_DATA
        assert f"DATA {2 ** 30} {2 ** 30}" in lines
    assert "NPROC 32 32" in lines
    assert "NOFILE 1024 1024" in lines
    assert f"FSIZE {2 ** 20} {2 ** 20}" in lines
    assert "CORE 0 0" in lines
    assert f"CPU {inf} {inf}" in lines
    assert "0o700 0o77" in lines
    assert lines[-1] == "1"


# processes and memory ------------------------------------------------------

def test_fork_bomb_is_stopped_at_the_process_limit(nginx, attacker, victim):
    uid = UID_BASE + first_pid(nginx, attacker)
    out = out_of(nginx, attacker, """
        import os, time
        children = 0
        try:
            while True:
                if os.fork() == 0:
                    while True:          # every child forks too
                        try:
                            os.fork()
                        except OSError:
                            time.sleep(60)
                children += 1
        except BlockingIOError as e:
            print("stopped:", e.strerror)
        """, timeout_ms=20000)
    assert out.startswith("stopped: Resource temporarily unavailable")
    assert len(uid_processes(uid)) <= 32
    contained(nginx, victim)
    nginx.http.delete(f"{nginx.url}/session/{attacker}")
    wait_for(lambda: not uid_processes(uid), what="the bomb to be killed")


@pytest.mark.skipif(bool(PRELOAD), reason="no RLIMIT_AS under AddressSanitizer")
def test_memory_bomb_gets_memory_error(nginx, attacker, victim):
    out = out_of(nginx, attacker, """
        try:
            big = bytearray(4 << 30)
        except MemoryError:
            print("one block: MemoryError")
        hog = []
        try:
            while True:
                hog.append(bytearray(64 << 20))
        except MemoryError:
            print("growing: MemoryError after", len(hog) * 64, "MiB")
        del hog
        """)
    lines = out.splitlines()
    assert lines[0] == "one block: MemoryError"
    assert lines[1].startswith("growing: MemoryError after")
    assert int(lines[1].split()[3]) < 1024
    assert nginx.run_json(attacker, "1+1")["result"] == {"text/plain": "2"}
    contained(nginx, victim)


def test_threads_start_under_the_memory_limit(nginx, attacker, victim):
    # glibc reserves a 64 MiB arena per thread that allocates: reserved
    # address space is not memory, so 60 threads start (the process limit
    # of this instance is 32 tasks per uid: 30 threads at a time)
    out = out_of(nginx, attacker, """
        import threading
        from concurrent.futures import ThreadPoolExecutor
        started = []
        def work(i, together):
            small = [bytearray(200) for _ in range(1000)]   # from an arena
            together.wait(30)
            started.append(i)
            return len(small)
        for batch in range(2):
            together = threading.Barrier(30)
            with ThreadPoolExecutor(max_workers=30) as ex:
                assert sum(ex.map(work, range(30), [together] * 30)) == 30000
        print(len(started))
        """)
    assert out == "60\n"
    contained(nginx, victim)


def test_disk_fill_stops_at_the_file_size_limit(nginx, attacker, victim):
    out = out_of(nginx, attacker, """
        import os
        try:
            with open("fill", "wb") as f:
                for _ in range(4):
                    f.write(b"x" * (512 << 10))
                    f.flush()
        except OSError as e:
            print("write:", e.strerror)
        print(os.path.getsize("fill"))
        """)
    assert out.splitlines() == ["write: File too large", str(1 << 20)]
    contained(nginx, victim)


def test_bash_sessions_have_the_same_limits(nginx, victim):
    sid = nginx.create(language="bash")
    try:
        r = nginx.run_json(sid, "id -u; ulimit -u; ulimit -n; ulimit -f; "
                                "head -c 2000000 /dev/zero > big; "
                                "echo status $?; stat -c %s big")
        lines = r["stdout"].splitlines()
        pid_uid = int(lines[0])
        assert pid_uid > UID_BASE
        assert lines[1:4] == ["32", "1024", "1024"]     # 1 KiB blocks
        assert lines[4] != "status 0"
        assert lines[5] == str(1 << 20)
    finally:
        nginx.http.delete(f"{nginx.url}/session/{sid}")
    contained(nginx, victim)


# other sessions and nginx ------------------------------------------------

def test_another_sessions_directory_is_out_of_reach(nginx, attacker, victim):
    other = os.path.join(nginx.prefix, "work", victim[0])
    root = os.path.join(nginx.prefix, "work")
    out = out_of(nginx, attacker, f"""
        import os
        for what, f in [("list", lambda: os.listdir({other!r})),
                        ("read", lambda: open({other!r} + "/note.txt").read()),
                        ("write", lambda: open({other!r} + "/x", "w")),
                        ("list all", lambda: os.listdir({root!r}))]:
            try:
                f()
                print(what, "worked")
            except (PermissionError, FileNotFoundError):
                print(what, "denied")   # (a jail has no such path)
        """)
    assert out.splitlines() == ["list denied", "read denied", "write denied",
                                "list all denied"]
    contained(nginx, victim)


def test_signals_to_other_sessions_and_nginx_are_refused(nginx, attacker,
                                                         victim):
    targets = {"victim": victim[1], "nginx master": nginx.proc.pid,
               "supervisor": nginx.supervisor_pid()}
    for i, pid in enumerate(nginx.worker_pids()):
        targets[f"worker {i}"] = pid
    out = out_of(nginx, attacker, f"""
        import os, signal
        for name, pid in {targets!r}.items():
            for target in (pid, -pid):
                try:
                    os.kill(target, signal.SIGKILL)
                    print(name, "killed")
                except PermissionError:
                    print(name, "denied")
                except ProcessLookupError:
                    print(name, "denied")   # -pid: not a group it may see
        """)
    assert "killed" not in out, out
    assert len(out.splitlines()) == 2 * len(targets)
    # kill(-1) reaches every process of the attacker's uid but itself:
    # none of anyone else's
    r = run(nginx, attacker, """
        import os, signal
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass        # a jail: no other process of its own to signal
        """)
    assert r["status"] == "ok"
    contained(nginx, victim)


def test_ptrace_and_proc_of_another_session_are_refused(nginx, attacker,
                                                         victim):
    pid = victim[1]
    out = out_of(nginx, attacker, f"""
        import ctypes, errno, os
        libc = ctypes.CDLL(None, use_errno=True)
        PTRACE_ATTACH = 16
        rc = libc.ptrace(PTRACE_ATTACH, {pid}, None, None)
        # a jail does not even see it
        print("ptrace", rc, ctypes.get_errno() in (errno.EPERM, errno.ESRCH))
        rc = libc.ptrace(PTRACE_ATTACH, os.getppid(), None, None)
        print("ptrace parent", rc, os.strerror(ctypes.get_errno()))
        for f in ("mem", "environ", "cwd", "fd"):
            try:
                p = "/proc/{pid}/" + f
                os.listdir(p) if f in ("cwd", "fd") else open(p, "rb").read()
                print(f, "read")
            except (PermissionError, FileNotFoundError):
                print(f, "denied")
        """)
    assert out.splitlines() == [
        "ptrace -1 True",
        "ptrace parent -1 Operation not permitted",
        "mem denied", "environ denied", "cwd denied", "fd denied"]
    contained(nginx, victim)


def test_sockets_of_nginx_and_the_supervisor_are_out_of_reach(nginx,
                                                             attacker,
                                                             victim):
    run_dir = os.path.join(nginx.prefix, "run")
    out = out_of(nginx, attacker, f"""
        import socket
        for name in ("supervisor.sock", {victim[0] + ".sock"!r}):
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect({run_dir!r} + "/" + name)
                print(name, "connected")
            except (PermissionError, FileNotFoundError):
                print(name, "denied")   # (a jail has no such path)
        """)
    assert out.splitlines() == ["supervisor.sock denied",
                                victim[0] + ".sock denied"]
    contained(nginx, victim)


# the kernel ------------------------------------------------------------------

def test_mount_unshare_and_module_loading_are_denied(nginx, attacker,
                                                     victim):
    out = out_of(nginx, attacker, """
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET = 0x10000000, 0x20000, 0x40000000
        SYS_finit_module, SYS_init_module, SYS_bpf, SYS_keyctl = 313, 175, 321, 250
        def show(name, rc):
            print(name, rc, os.strerror(ctypes.get_errno()))
        show("mount", libc.mount(b"none", b".", b"tmpfs", 0, None))
        show("unshare user", libc.unshare(CLONE_NEWUSER))
        show("unshare mount", libc.unshare(CLONE_NEWNS))
        show("unshare net", libc.unshare(CLONE_NEWNET))
        show("chroot", libc.chroot(b"."))
        fd = os.open("/dev/null", os.O_RDONLY)
        show("finit_module", libc.syscall(SYS_finit_module, fd, b"", 0))
        show("init_module", libc.syscall(SYS_init_module, None, 0, b""))
        show("bpf", libc.syscall(SYS_bpf, 0, None, 0))
        show("keyctl", libc.syscall(SYS_keyctl, 0, 0, 0, 0, 0))
        """)
    lines = out.splitlines()
    assert len(lines) == 9
    for line in lines:
        assert line.split(" -1 ")[1] == "Operation not permitted", line
    contained(nginx, victim)


def test_raw_packet_and_netlink_sockets_are_denied(nginx, attacker, victim):
    out = out_of(nginx, attacker, """
        import socket
        for name, args in [
                ("raw", (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)),
                ("packet", (socket.AF_PACKET, socket.SOCK_RAW)),
                ("netlink", (socket.AF_NETLINK, socket.SOCK_RAW, 0)),
                ("raw6", (socket.AF_INET6, socket.SOCK_RAW, 58))]:
            try:
                socket.socket(*args)
                print(name, "opened")
            except PermissionError as e:
                print(name, e.strerror)
        """)
    assert out.splitlines() == [f"{n} Operation not permitted"
                                for n in ("raw", "packet", "netlink", "raw6")]
    contained(nginx, victim)


def test_network_off_is_a_loopback_of_the_session_s_own(nginx, attacker,
                                                       victim):
    # what Python does there fails loudly, as on a host with no route,
    # and works within the session, as on any host
    sid, _ = victim
    assert run(nginx, sid, """
        import socket
        held = socket.socket(socket.AF_UNIX)
        held.bind("\\0pyrepl-victim-abstract")
        held.listen()
        """)["status"] == "ok"
    out = out_of(nginx, attacker, f"""
        import asyncio, errno, logging.config, socket
        def attempt(what, call):
            try:
                call()
                print(what, "ok")
            except OSError as e:
                print(what, errno.errorcode[e.errno])
        # nginx's port is on the host's loopback, not this one
        attempt("nginx", lambda: socket.create_connection(
            ("127.0.0.1", {nginx.port}), 2))
        attempt("outside", lambda: socket.create_connection(
            ("192.0.2.1", 80), 2))
        attempt("abstract", lambda: socket.socket(socket.AF_UNIX).connect(
            "\\0pyrepl-victim-abstract"))
        async def echo():
            async def serve(r, w):
                w.write(await r.read(5))
                await w.drain()
                w.close()
            server = await asyncio.start_server(serve, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"hello")
            data = await r.read()
            server.close()
            return data
        print("asyncio", asyncio.run(echo()).decode())
        t = logging.config.listen(0)
        t.start()
        t.ready.wait(5)
        print("logging listener", t.ready.is_set())
        logging.config.stopListening()
        t.join(5)
        print("socketpair", len(socket.socketpair()))
        """)
    assert out.splitlines() == ["nginx ECONNREFUSED", "outside ENETUNREACH",
                                "abstract ECONNREFUSED", "asyncio hello",
                                "logging listener True", "socketpair 2"]
    contained(nginx, victim)


# directives that loosen or tighten the defaults ---------------------------

def test_network_on_allows_tcp_but_never_raw_sockets(loose):
    sid = loose.create()
    out = out_of(loose, sid, f"""
        import socket
        s = socket.create_connection(("127.0.0.1", {loose.port}), 2)
        s.sendall(b"GET /session/nope HTTP/1.0\\r\\n\\r\\n")
        print(s.recv(100).split(b"\\r\\n")[0].decode())
        """)
    assert out.splitlines() == ["HTTP/1.1 404 Not Found"]
    loose.http.delete(f"{loose.url}/session/{sid}")


def test_seccomp_log_lets_calls_through(loose):
    sid = loose.create()
    out = out_of(loose, sid, """
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        # denied with "on"; "log" only has the kernel log it
        print(libc.personality(0x0040000) != -1)   # ADDR_NO_RANDOMIZE
        print(open("/proc/self/status").read().split("Seccomp:")[1].split()[0])
        """)
    assert out.splitlines() == ["True", "2"]
    loose.http.delete(f"{loose.url}/session/{sid}")


def test_cpu_spin_past_its_limit_ends_only_that_session(loose):
    other = loose.create()
    loose.run_json(other, "kept = 7")
    sid = loose.create()
    r = loose.run_json(sid, "while True: pass", timeout_ms=30000)
    assert r["status"] == "crashed"
    assert loose.http.get(f"{loose.url}/session/{sid}").json()["state"] \
        == "crashed"
    assert loose.run_json(other, "kept")["result"] == {"text/plain": "7"}
    loose.http.delete(f"{loose.url}/session/{sid}")
    loose.http.delete(f"{loose.url}/session/{other}")


# nginx -t --------------------------------------------------------------------

@pytest.mark.parametrize("directive, message", [
    ("pyrepl_memory_limit 1m;", "pyrepl_memory_limit must be at least 128m"),
    ("pyrepl_memory_limit lots;", "invalid value"),
    ("pyrepl_cpu_limit 0s;", "invalid value"),
    ("pyrepl_max_processes 2;", "pyrepl_max_processes must be between 4"),
    ("pyrepl_open_files 8;", "pyrepl_open_files must be between 32"),
    ("pyrepl_seccomp maybe;", "invalid value \"maybe\""),
    ("pyrepl_network sometimes;", "invalid value \"sometimes\""),
    ("pyrepl_user no-such-user;", "pyrepl_user: no user \"no-such-user\""),
    ("pyrepl_user nobody no-such-group;", "no group \"no-such-group\""),
    ("pyrepl_session_uids 5;", "pyrepl_session_uids \"5\": \"off\" or a "
                               "first uid from 65536"),
    ("pyrepl_session_uids off; pyrepl_user root;", "never run as root"),
    ("pyrepl_session_uids off; pyrepl_user nobody;",
     "is the user nginx's workers run as"),
])
def test_nginx_t_rejects_bad_sandbox_directives(directive, message):
    n = Nginx(http_extra=directive, main_extra="user nobody nogroup;")
    try:
        r = n.test_config()
        assert r.returncode != 0, r.stderr
        assert message in r.stderr, r.stderr
    finally:
        shutil.rmtree(n.prefix)     # its error.log has the [emerg]


def test_nginx_t_accepts_a_separate_user_for_all_sessions():
    n = Nginx(http_extra="pyrepl_session_uids off; pyrepl_user daemon;"
                         " pyrepl_seccomp log; pyrepl_cpu_limit 10m;"
                         " pyrepl_memory_limit off;",
              main_extra="user nobody nogroup;")
    try:
        r = n.test_config()
        assert r.returncode == 0, r.stderr
    finally:
        n.check_and_clean()
