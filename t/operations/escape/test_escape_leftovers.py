"""The escape suite, what a session leaves behind: files in shared temp
directories and /run/lock, trees deeper than a path, symlinks swapped
while the session is deleted, processes that left its process group or
outlive a crash or its files, socket names, and orphans and descriptors
that would write nginx's error log in its name.

Each test works as test_escape.py's do: hostile code in one session, then
a check that nginx, the supervisor and another session go on working
(attacks.contained).
"""

import os
import platform
import shutil
import subprocess
import textwrap
import threading

import pytest

from attacks import contained, out_of, run
from helpers import (UID_BASE, Nginx, first_pid, pid_of, proc_stat, root_only,
                     uid_processes, wait_for)

pytestmark = root_only


def zombie(pid):
    """pid is a zombie, or gone."""
    st = proc_stat(pid)
    return st is None or st.state == "Z"


def test_what_a_session_leaves_in_shared_temp_dirs_goes_with_it(
        unjailed, unjailed_victim):
    # (a jail has temporary directories of its own: test_jail.py)
    nginx, victim = unjailed, unjailed_victim
    sid = nginx.create()
    uid = UID_BASE + first_pid(nginx, sid)
    r = run(nginx, sid, """
        import os
        for d in ("/tmp", "/dev/shm"):
            with open(d + "/pyrepl-left-%d" % os.getuid(), "w") as f:
                f.write("secret")
        os.makedirs("/tmp/pyrepl-tree-%d/a/b" % os.getuid())
        """)
    assert r["status"] == "ok", r
    left = [f"/tmp/pyrepl-left-{uid}", f"/dev/shm/pyrepl-left-{uid}",
            f"/tmp/pyrepl-tree-{uid}"]
    assert all(os.path.exists(p) for p in left)
    assert nginx.http.delete(f"{nginx.url}/session/{sid}").status_code == 204
    wait_for(lambda: not any(os.path.exists(p) for p in left),
             what="the session's files in /tmp and /dev/shm to go")
    contained(nginx, victim)


# deleting a session ----------------------------------------------------------

# Folders of files named like the target's (and more, so that a walk
# through them takes a while), each with a symlink to the target next to
# it, and processes that left the session's process group and session id
# (setsid) swapping each folder with its link through renameat2(2)'s
# RENAME_EXCHANGE, round after round: a removal that walks paths unlinks
# the target's files through the links.  One of them swaps from a thread
# while its first thread has exited (a zombie that runs).
SWAPPER = """
import ctypes, os, threading
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2

def exchange(a, b):
    return libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)

def swap(pairs):
    while True:
        for a, b in pairs:
            exchange(a, b)

pairs = []
for i in range({pairs}):
    d, l = b"d%d" % i, b"l%d" % i
    os.mkdir(d)
    for n in {names!r} + ["z%d" % j for j in range(2000)]:
        open(os.path.join(d, n.encode()), "w").close()
    os.symlink({target!r}, l)
    pairs.append((d, l))
for _ in range(2):
    assert exchange(*pairs[0]) == 0, os.strerror(ctypes.get_errno())
for i in range({swappers}):
    if os.fork() == 0:
        os.setsid()
        mine = pairs[i::{swappers}]
        if i == 0:
            threading.Thread(target=swap, args=(mine,)).start()
            libc.syscall({sys_exit}, 0)
        swap(mine)
print("swapping")
"""

SYS_EXIT = {"x86_64": 60, "aarch64": 93}
SWAPPERS = 4


def delete_while_swapping(nginx, target, names, pairs):
    """A session swaps folders with links to target (SWAPPER) and is
    deleted; returns its uid and its working directory."""
    if platform.machine() not in SYS_EXIT:
        pytest.skip(f"no exit(2) number for {platform.machine()}")
    sid = nginx.create()
    uid = UID_BASE + first_pid(nginx, sid)
    out = out_of(nginx, sid, SWAPPER.format(
        pairs=pairs, names=names, target=target.encode(), swappers=SWAPPERS,
        sys_exit=SYS_EXIT[platform.machine()]))
    assert out == "swapping\n"
    # the session process and every swapper
    wait_for(lambda: len(uid_processes(uid)) == 1 + SWAPPERS,
             what="the swappers to start")
    assert nginx.http.delete(f"{nginx.url}/session/{sid}").status_code == 204
    return uid, os.path.join(nginx.prefix, "work", sid)


def gone_after_swaps(uid, workdir):
    wait_for(lambda: not os.path.exists(workdir),
             what="the working directory to go")
    wait_for(lambda: not uid_processes(uid),
             what="every process of the session's uid to be gone")


def test_a_delete_racing_symlink_swaps_removes_nothing_outside(nginx,
                                                              victim):
    target = os.path.join(nginx.prefix, "root-only")
    os.mkdir(target, 0o700)
    names = ["f%03d" % i for i in range(300)]
    for n in names:
        with open(os.path.join(target, n), "w") as f:
            f.write("root's")
    uid, workdir = delete_while_swapping(nginx, target, names, pairs=12)
    assert sorted(os.listdir(target)) == names
    gone_after_swaps(uid, workdir)
    assert sorted(os.listdir(target)) == names
    contained(nginx, victim)


def test_a_delete_racing_symlink_swaps_leaves_the_sockets(nginx, victim):
    run_dir = os.path.join(nginx.prefix, "run")
    names = [victim[0] + ".sock", "supervisor.sock", "supervisor.pid"]
    uid, workdir = delete_while_swapping(nginx, run_dir, names, pairs=12)
    gone_after_swaps(uid, workdir)
    for n in names:
        assert os.path.exists(os.path.join(run_dir, n)), n
    contained(nginx, victim)


def test_what_a_crashed_session_left_running_is_killed(nginx, victim):
    if platform.machine() not in SYS_EXIT:
        pytest.skip(f"no exit(2) number for {platform.machine()}")
    sid = nginx.create()
    uid = UID_BASE + first_pid(nginx, sid)
    # a process of its own session whose first thread exits: a zombie
    # whose other thread runs on; then the session process dies
    r = run(nginx, sid, f"""
        import ctypes, os, signal, threading, time
        if os.fork() == 0:
            os.setsid()
            threading.Thread(target=time.sleep, args=(1000,)).start()
            ctypes.CDLL(None).syscall({SYS_EXIT[platform.machine()]}, 0)
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)
        """)
    assert r["status"] == "crashed", r
    wait_for(lambda: not uid_processes(uid),
             what="every process of the crashed session's uid to be gone")
    assert nginx.http.delete(f"{nginx.url}/session/{sid}").status_code == 204
    contained(nginx, victim)


def test_a_tree_deeper_than_a_path_is_removed(nginx, victim):
    sid = nginx.create()
    out = out_of(nginx, sid, """
        import os
        fd = os.open(".", os.O_RDONLY)
        for _ in range(1000):
            os.mkdir("dddddddd", dir_fd=fd)
            deeper = os.open("dddddddd", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = deeper
        os.close(os.open("bottom", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
        print("deep")
        """)
    assert out == "deep\n"
    workdir = os.path.join(nginx.prefix, "work", sid)
    assert nginx.http.delete(f"{nginx.url}/session/{sid}").status_code == 204
    wait_for(lambda: not os.path.exists(workdir),
             what="the working directory to go")
    contained(nginx, victim)


def test_what_a_session_leaves_in_run_lock_goes_with_it(unjailed,
                                                       unjailed_victim):
    # (a jail has no /run at all)
    nginx, victim = unjailed, unjailed_victim
    if not os.path.isdir("/run/lock"):
        pytest.skip("no /run/lock on this machine")
    sid = nginx.create()
    uid = UID_BASE + first_pid(nginx, sid)
    out = out_of(nginx, sid, """
        import os
        try:
            with open("/run/lock/pyrepl-left-%d" % os.getuid(), "w") as f:
                f.write("lock")
            print("written")
        except OSError as e:
            print(e.strerror)
        """)
    if out != "written\n":
        nginx.http.delete(f"{nginx.url}/session/{sid}")
        pytest.skip("/run/lock is not writable by a session: " + out.strip())
    left = f"/run/lock/pyrepl-left-{uid}"
    assert os.path.exists(left)
    assert nginx.http.delete(f"{nginx.url}/session/{sid}").status_code == 204
    wait_for(lambda: not os.path.lexists(left),
             what="the session's file in /run/lock to go")
    contained(nginx, victim)


HOPPER = r"""
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
/* hopper CHAINS SECONDS: chains of processes that fork and exit at once */
int main(int argc, char **argv) {
    int i, chains = atoi(argv[1]);
    time_t deadline = time(NULL) + atoi(argv[2]);
    struct timespec ts = {0, 10000};
    for (i = 0; i < chains; i++) {
        if (fork() == 0) {
            for (;;) {
                setpgid(0, 0);
                if (time(NULL) > deadline) _exit(0);
                nanosleep(&ts, NULL);
                if (fork() > 0) _exit(0);
            }
        }
    }
    _exit(0);
}
"""


@pytest.fixture(scope="module")
def hopper(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("no gcc to build the process hopper with")
    d = tmp_path_factory.mktemp("hopper")
    (d / "hopper.c").write_text(HOPPER)
    subprocess.run(["gcc", "-O2", "-o", str(d / "hopper"), str(d / "hopper.c")],
                   check=True)
    return str(d / "hopper")


def test_no_process_outlives_its_session_s_files(nginx, victim, hopper):
    # processes that fork and exit as fast as they can: a scan of /proc
    # passes a child forked under a pid it had passed already, while its
    # parent, met later, has exited; the files go only once no process of
    # the session is left at all, so none may be running when they do
    for attempt in range(3):
        sid = nginx.create()
        workdir = os.path.join(nginx.prefix, "work", sid)
        shutil.copy(hopper, os.path.join(workdir, "hopper"))
        os.chmod(os.path.join(workdir, "hopper"), 0o755)
        uid = int(out_of(nginx, sid, """
            import os, subprocess
            subprocess.Popen(["./hopper", "8", "20"])
            print(os.getuid())
            """))
        assert nginx.http.delete(f"{nginx.url}/session/{sid}").status_code \
            == 204
        wait_for(lambda: not os.path.exists(workdir), timeout=30,
                 what="the session's files to go")
        left = [p for p in uid_processes(uid) if not zombie(p)]
        assert left == [], f"attempt {attempt}: {left} outlived the purge"
    contained(nginx, victim)


def test_socket_names_never_show_a_session_id(loose):
    # the kernel lists every Unix socket by the name it was bound to, to
    # anyone who reads /proc/net/unix (a shared network, here)
    others = [loose.create(language="bash"), loose.create()]
    reader = loose.create()
    r = loose.run_json(reader, "print(open('/proc/net/unix').read())")
    assert r["status"] == "ok", r
    assert "supervisor.sock" in r["stdout"]        # the list is there
    for sid in others:
        assert sid not in r["stdout"]
    for sid in others + [reader]:
        loose.http.delete(f"{loose.url}/session/{sid}")


ORPHANS = """
    import os
    for i in range({n}):
        if os.fork() == 0:
            try:
                os.setsid()
                pid = os.fork()
                if pid == 0:
                    {body}
                print(pid, flush=True)
            finally:
                os._exit(0)
        os.wait()
    """


def test_what_sessions_leave_cannot_write_the_log(unjailed, unjailed_victim):
    # orphans of a session, one named like a log line, many of them: the
    # supervisor that sweeps them writes one line, and none of their words
    # (in a jail they are the init's, and go with their session)
    nginx, victim = unjailed, unjailed_victim
    attacker = nginx.create()
    before = len(nginx.error_log().splitlines())
    body = ("import ctypes, time; ctypes.CDLL(None).prctl("
            "15, b'\\n[alert] forged', 0, 0, 0); time.sleep(120)")
    # (this instance's process limit is 32 a session)
    # (each orphan's pid, as its parent saw it: a count of the uid's
    # processes raced with any sweep set off meanwhile, by the end of an
    # earlier test's session, which takes these orphans too)
    made = out_of(nginx, attacker, ORPHANS.format(n=25, body=body)).split()
    assert len(made) == 25
    uid = UID_BASE + first_pid(nginx, attacker)
    # another session's end sweeps what no live session owns: these
    # orphans left their session's
    other = nginx.create()
    nginx.http.delete(f"{nginx.url}/session/{other}")
    wait_for(lambda: len([p for p in uid_processes(uid) if not zombie(p)])
             == 1, timeout=30, what="the orphans to be swept")
    added = nginx.error_log().splitlines()[before:]
    assert not [l for l in added if "forged" in l], added[:5]
    assert len(added) < 20, added[:30]
    nginx.http.delete(f"{nginx.url}/session/{attacker}")
    contained(nginx, victim)


def relay_fd_code(text, seconds):
    """Python that writes text to its log relay (a datagram socket) as
    fast as it can for seconds, as a session's machinery would."""
    return f"""
        import os, socket, time
        for fd in map(int, os.listdir("/proc/self/fd")):
            try:
                s = socket.socket(fileno=os.dup(fd))
            except OSError:
                continue
            if s.type == socket.SOCK_DGRAM:
                break
        end = time.monotonic() + {seconds}
        i = 0
        while True:
            try:
                s.send(b"{text} %d" % i, socket.MSG_DONTWAIT)
                i += 1
            except BlockingIOError:
                pass
            if time.monotonic() > end:
                break
        """


def test_a_session_cannot_silence_another_s_log_lines(nginx, attacker,
                                                       victim):
    before = len(nginx.error_log().splitlines())
    flooding = threading.Thread(target=out_of, args=(
        nginx, attacker, relay_fd_code("FLOOD", 3)))
    flooding.start()
    wait_for(lambda: "FLOOD 0" in nginx.error_log(), what="the flood")
    # another session's machinery logs meanwhile (os._exit says so)
    other = nginx.create()
    pid = pid_of(nginx, other)
    nginx.run_json(other, "import os; os._exit(0)")
    flooding.join()
    added = nginx.error_log().splitlines()[before:]
    assert [l for l in added if f"pid {pid}," in l
            and "called os._exit()" in l], "its line was lost"
    flood = [l for l in added if "FLOOD" in l]
    assert len(flood) <= 200, len(flood)       # a burst and its rate
    nginx.http.delete(f"{nginx.url}/session/{other}")
    contained(nginx, victim)


def test_many_sessions_in_turn_keep_their_log_budgets(nginx):
    # more sessions than a small table of budgets would hold, each sending
    # a burst in turn: a uid that lost its budget to the others would get
    # a fresh one every turn
    sids = [nginx.create() for _ in range(70)]
    code = textwrap.dedent(RELAY.format(body="""
    for i in range(150):
        s.send(b"TURN %d" % i)
    """))
    before = len(nginx.error_log().splitlines())
    for turn in range(2):
        for sid in sids:
            assert nginx.run_json(sid, code)["status"] == "ok"
    added = nginx.error_log().splitlines()[before:]
    per_uid = {}
    for line in added:
        if "TURN" in line:
            uid = line.split("uid ", 1)[1].split(":", 1)[0]
            per_uid[uid] = per_uid.get(uid, 0) + 1
    assert len(per_uid) == 70, per_uid
    # a burst of 100, then 20 a second over the seconds the turns took
    assert max(per_uid.values()) < 200, sorted(per_uid.values())[-5:]
    for sid in sids:
        nginx.http.delete(f"{nginx.url}/session/{sid}")


RELAY = """
    import os, socket
    for fd in map(int, os.listdir("/proc/self/fd")):
        try:
            s = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        if s.type == socket.SOCK_DGRAM:
            break
    {body}
    """


@pytest.mark.parametrize("body", [
    # take every line sent on the relay: connect it to a socket of ours
    "r = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
    "    r.bind('/tmp/stolen.sock')\n"
    "    os.chmod('/tmp/stolen.sock', 0o777)\n"
    "    s.connect('/tmp/stolen.sock')",
    # or silence it for whoever shares it
    "s.shutdown(socket.SHUT_WR)",
], ids=["connect", "shutdown"])
def test_a_session_s_relay_is_its_own(nginx, attacker, victim, body):
    older = nginx.create()
    out_of(nginx, attacker, RELAY.format(body=body))
    # a session forked before that, and one forked after, still log
    for sid in (older, nginx.create()):
        before = len(nginx.error_log().splitlines())
        pid = pid_of(nginx, sid)
        nginx.run_json(sid, "import os; os._exit(0)")
        wait_for(lambda: [l for l in nginx.error_log().splitlines()[before:]
                          if f"pid {pid}," in l
                          and "called os._exit()" in l],
                 what="the session's line in the error log")
        nginx.http.delete(f"{nginx.url}/session/{sid}")
    contained(nginx, victim)


STOPPER = """
    import ctypes, os
    # past the pids of its own forks below
    base = int(open("/proc/sys/kernel/ns_last_pid").read()) + 20
    for i in range(4):
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                kill = ctypes.CDLL(None).kill
                f = os.open("/proc/sys/kernel/ns_last_pid", os.O_RDONLY)
                while True:
                    last = int(os.pread(f, 16, 0))
                    for pid in range(max(base, last - 1), last + 6):
                        kill(pid, 19)
            os._exit(0)
        os.wait()
    """


def test_a_session_cannot_stop_the_supervisor_s_kill(nginx, victim):
    # processes of the session stop (SIGSTOP) every pid about to be born:
    # among them the child through which the supervisor kills the
    # session's uid at its delete, which then has the session's uid
    for attempt in range(4):
        sid = nginx.create()
        out_of(nginx, sid, STOPPER)
        assert nginx.http.delete(f"{nginx.url}/session/{sid}"
                                 ).status_code == 204
        # the supervisor answers on
        other = nginx.create()
        assert nginx.run_json(other, "1")["status"] == "ok"
        nginx.http.delete(f"{nginx.url}/session/{other}")
    contained(nginx, victim)


def test_a_session_s_many_files_do_not_hold_up_the_others():
    # the supervisor removes a deleted session's files in a child of its
    # own: a session that leaves a great many does not stall every create
    n = Nginx(http_extra="pyrepl_supervisor_timeout 300ms;").start()
    try:
        sid = n.create()
        r = n.run_json(sid, textwrap.dedent("""
            import os
            os.mkdir("many")
            for i in range(300000):
                os.close(os.open(f"many/{i}", os.O_CREAT | os.O_WRONLY))
            """), timeout_ms=120000)
        assert r["status"] == "ok", r
        workdir = os.path.join(n.prefix, "work", sid)
        assert n.http.delete(f"{n.url}/session/{sid}").status_code == 204
        fresh = n.http.post(n.url + "/session")
        assert fresh.status_code == 201, fresh.text
        wait_for(lambda: not os.path.exists(workdir), timeout=60,
                 what="the files to go")
    finally:
        n.check_and_clean()
