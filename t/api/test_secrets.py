"""Nothing private reaches a client or a session: other clients' request
bytes in answers, nginx's environment, the warm-up code and session ids
on command lines, the socket directory's listing, nginx's error log as a
descriptor of user code.  Each test is the attack itself, then checks that
nginx, the supervisor and another session still work."""

import json
import os
import re
import socket
import textwrap

import pytest

from helpers import JAIL_HOME, PRELOAD, Nginx, root_only, wait_for

MARKER = "warmup_marker_5f1d"          # in the warm-up code only
SECRET = "operator-secret-7c2e9a"       # in nginx's own environment only
SESSION_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
               "TMPDIR": "/tmp", "PYREPL_T_EXTRA": "a=b c"}
if os.geteuid() == 0:          # no passwd entry for per-session uids
    SESSION_ENV.update(USER="pyrepl", LOGNAME="pyrepl")


def own_part(env):
    """env without what the sanitizer build adds on purpose (its report
    options, so that sessions' reports land where the tests look)."""
    return {k: v for k, v in env.items()
            if not (PRELOAD and k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"))}


@pytest.fixture(scope="module")
def nginx():
    n = Nginx(workers=2, http_extra=(
        f'pyrepl_warmup "import json; json.{MARKER} = 1"; '
        'pyrepl_env "PYREPL_T_EXTRA=a=b c";'))
    n.env = dict(n.env or os.environ, PYREPL_T_OPERATOR=SECRET,
                 HOME="/root")
    n.start()
    yield n
    n.check_and_clean()


@pytest.fixture
def victim(nginx):
    sid = nginx.create()
    assert nginx.run_json(sid, "kept = 42")["status"] == "ok"
    yield sid
    nginx.http.delete(f"{nginx.url}/session/{sid}")


def run(nginx, sid, code):
    r = nginx.run_json(sid, textwrap.dedent(code))
    assert r["status"] == "ok", r
    return r["stdout"]


def still_working(nginx, victim):
    assert nginx.run_json(victim, "kept")["result"] == {"text/plain": "42"}
    fresh = nginx.create()
    assert nginx.run_json(fresh, "1+1")["result"] == {"text/plain": "2"}
    nginx.http.delete(f"{nginx.url}/session/{fresh}")


def raw(nginx, request):
    """Send request bytes on a connection of their own; the answer's body."""
    with socket.create_connection(("127.0.0.1", nginx.port)) as c:
        c.sendall(request)
        data = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b" ")[1].decode(), body.decode()


# Answers: nothing but what the client sent --------------------------------

def test_a_404_holds_the_id_and_nothing_of_other_requests(nginx):
    secret = "Bearer tenant-key-" + "9" * 40
    for i in range(20):
        # another client's request leaves its bytes in a freed buffer
        raw(nginx, (f"POST /session/{'e' * 32}/run HTTP/1.1\r\n"
                    f"Host: x\r\nAuthorization: {secret}\r\n"
                    "Connection: close\r\n\r\n").encode())
        sid = f"{i:032x}"
        for method in ("GET", "DELETE"):
            status, body = raw(nginx, f"{method} /session/{sid} HTTP/1.0"
                                      "\r\n\r\n".encode())
            assert status == "404"
            assert body == ('{"error":{"code":"not_found",'
                            f'"message":"no session {sid}"}}}}\n'), body


def test_a_percent_encoded_id_is_an_ordinary_404(nginx):
    sid = "c" + "0" * 31
    status, body = raw(nginx, ("GET /session/%63" + "0" * 31 +
                               " HTTP/1.0\r\n\r\n").encode())
    assert status == "404"
    assert body == ('{"error":{"code":"not_found",'
                    f'"message":"no session {sid}"}}}}\n')


# Environment and command lines ---------------------------------------------

def test_python_sessions_start_from_a_clean_environment(nginx, victim):
    sid = nginx.create()
    out = run(nginx, sid, """
        import json, os
        print(json.dumps(dict(os.environ)))
        print(os.path.expanduser("~") == os.getcwd())
    """)
    env_json, home_ok = out.splitlines()
    env = own_part(json.loads(env_json))
    home = env.pop("HOME")
    assert env == SESSION_ENV
    # the working directory: in a jail it is always /home/pyrepl
    assert home_ok == "True" and (home == JAIL_HOME or home.endswith(sid))
    still_working(nginx, victim)


def test_bash_sessions_start_from_a_clean_environment(nginx, victim):
    sid = nginx.create(language="bash")
    out = run(nginx, sid, "env -0; echo; pwd")
    *pairs, cwd = out.split("\0")
    env = own_part(dict(p.split("=", 1) for p in pairs))
    assert env.pop("HOME") == cwd.strip()
    for shell_own in ("PWD", "SHLVL", "_"):
        env.pop(shell_own, None)
    assert env == SESSION_ENV
    still_working(nginx, victim)


def test_no_command_line_holds_warmup_code_or_a_session_id(nginx, victim):
    other = nginx.create(language="bash")       # pyrepl-bash has its own
    attacker = nginx.create()
    out = run(nginx, attacker, f"""
        import glob
        seen = b""
        for path in glob.glob("/proc/[0-9]*/cmdline"):
            try:
                with open(path, "rb") as f:
                    seen += f.read() + b"\\n"
            except OSError:
                pass
        print(b"pyrepl-" in seen, b"{MARKER}" in seen,
              b"{victim}" in seen, b"{other}" in seen)
    """)
    # the scan saw command lines of PyREPL's (the supervisor's; in a jail,
    # its init's), and nothing private in them
    assert out.split() == ["True", "False", "False", "False"]
    # the warm-up code still reached the zygote
    assert run(nginx, attacker, f"import json; print(json.{MARKER})") == "1\n"
    still_working(nginx, victim)


@root_only
def test_the_socket_and_work_directories_cannot_be_listed(nginx, victim):
    sid = nginx.create()
    out = run(nginx, sid, f"""
        import os
        for d in ({nginx.prefix + '/run'!r}, {nginx.prefix + '/work'!r}):
            try:
                print(os.listdir(d))
            except (PermissionError, FileNotFoundError):
                print("refused")        # (a jail has no such path)
    """)
    assert out.split() == ["refused", "refused"]
    still_working(nginx, victim)


def test_pyrepl_env_is_checked_by_nginx_t():
    for line, message in (
            ('pyrepl_env "1X=y";', "NAME=VALUE"),
            ('pyrepl_env "NOVALUE";', "NAME=VALUE"),
            ('pyrepl_env "A-B=1";', "letters, digits"),
            ('pyrepl_env "A=1"; pyrepl_env "A=2";', "sets this variable")):
        n = Nginx(http_extra=line)
        try:
            r = n.test_config()
            assert r.returncode != 0 and message in r.stderr, r.stderr
        finally:
            n.check_and_clean()


# Descriptors ---------------------------------------------------------------

FORGE = "2026/01/01 00:00:00 [alert] 1#1: forged by a session"


def test_python_code_holds_no_descriptor_of_nginx(nginx, victim):
    before = os.path.getsize(os.path.join(nginx.prefix, "logs", "error.log"))
    sid = nginx.create()
    out = run(nginx, sid, f"""
        import os
        for fd in sorted(int(f) for f in os.listdir("/proc/self/fd")):
            try:
                target = os.readlink(f"/proc/self/fd/{{fd}}")
            except OSError:
                continue                 # listdir's own, closed by now
            print(fd, target)
            if fd > 2 and not target.startswith(("pipe:", "anon_inode:")):
                for attack in (lambda: os.write(fd, b"{FORGE}\\n"),
                               lambda: os.ftruncate(fd, 0)):
                    try:
                        attack()
                    except OSError:
                        pass
    """)
    targets = [line.split(" ", 1)[1] for line in out.splitlines()]
    assert not [t for t in targets if t.startswith(nginx.prefix + "/logs")
                or t.endswith(".log")], out
    log = nginx.error_log()
    assert os.path.getsize(os.path.join(nginx.prefix, "logs", "error.log")) \
        >= before
    assert not re.search(r"\[alert\].*forged", log), log
    # what a session writes to its log descriptor is said to be its own
    wait_for(lambda: "forged by a session" in nginx.error_log(),
             what="the forged line, defused")
    line = [l for l in nginx.error_log().splitlines() if "forged" in l][0]
    assert "pyrepl-keeper" in line and "(alert)" in line, line
    still_working(nginx, victim)


def test_bash_code_holds_no_descriptor_of_nginx(nginx, victim):
    before = os.path.getsize(os.path.join(nginx.prefix, "logs", "error.log"))
    sid = nginx.create(language="bash")
    out = run(nginx, sid, f"""
        for f in /proc/$$/fd/*; do
            n=${{f##*/}}; t=$(readlink "$f") || continue
            echo "$n $t"
            case $t in pipe:*|anon_inode:*|/dev/null) continue ;; esac
            {{ echo '{FORGE}' >&$n; truncate -s 0 "$f"; }} 2>/dev/null
        done
        ls /proc/self/fd | tr '\\n' ' '
    """)
    *shell_fds, child_fds = out.splitlines()
    assert not [l for l in shell_fds if nginx.prefix in l or ".log" in l]
    # what the code starts sees 0-2, its directory listing and its code
    assert child_fds.split() == ["0", "1", "2", "3", "62"], child_fds
    assert os.path.getsize(os.path.join(nginx.prefix, "logs", "error.log")) \
        >= before
    assert not re.search(r"\[alert\].*forged", nginx.error_log())
    still_working(nginx, victim)
