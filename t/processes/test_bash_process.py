"""
test_bash_process.py: pyrepl-bash on its own, without nginx or the
supervisor.  Each test starts one session process on a fresh listening
Unix socket (binaries.BashProcess, the session fixture here), talks the
wire protocol to it (helpers.Conn) and asserts what a client would see.
Teardown kills and reaps the process, then fails if any process of the
shell's session (or the sentinel) is left, or on sanitizer output in its
log.
"""

import os
import signal
import socket
import subprocess
import threading
import time

import msgpack
import pytest

from binaries import BASH, SESSION_ID, BashProcess
from helpers import Run, frame, proc_stat, running as alive, wait_for


@pytest.fixture
def session():
    s = BashProcess()
    yield s
    s.stop()


def ok(r, stdout=None):
    assert r.status == "ok", r.frames
    assert r.complete["exit_code"] == 0
    if stdout is not None:
        assert r.stdout == stdout, r.frames
    return r


# State that persists ---------------------------------------------------------

def test_the_working_directory_persists(session):
    os.mkdir(os.path.join(session.work, "sub"))
    ok(session.run("cd sub"))
    ok(session.run("pwd"), os.path.join(session.work, "sub") + "\n")
    ok(session.run("cd /; cd -"), os.path.join(session.work, "sub") + "\n")


def test_plain_and_exported_variables_persist(session):
    ok(session.run("plain=1; export EXPORTED=2"))
    r = ok(session.run('echo "$plain $EXPORTED"; '
                       'sh -c \'echo "${plain-unset} $EXPORTED"\''))
    assert r.stdout == "1 2\nunset 2\n"


def test_a_function_defined_in_one_run_is_called_in_the_next(session):
    ok(session.run("greet() {\n  echo \"hello $1\"\n}"))
    ok(session.run("greet world"), "hello world\n")
    ok(session.run("declare -F greet"), "greet\n")


def test_aliases_persist_and_expand(session):
    ok(session.run("alias hi='echo aliased'"))
    ok(session.run("hi there"), "aliased there\n")
    # defined and used in one run, on separate lines
    ok(session.run("alias two='echo second'\ntwo"), "second\n")


def test_set_options_persist(session):
    ok(session.run("set -o pipefail; set -f"))
    r = session.run("false | true; echo \"status $?\"; echo /*; "
                    "[[ -o pipefail ]] && echo pipefail")
    ok(r, "status 1\n/*\npipefail\n")
    ok(session.run("set +o pipefail +f; false | true; echo $?"), "0\n")


def test_run_count_increases(session):
    assert ok(session.run("true")).complete["count"] == 1
    r = session.run("false")
    assert r.complete["count"] == 2
    assert ok(session.run("true")).complete["count"] == 3


# Output ----------------------------------------------------------------------

def test_output_streams_while_the_code_runs(session):
    c = session.connect()
    c.send(t="run", code="echo started; while [ ! -e go ]; do sleep 0.01; "
                         "done; echo finished")
    assert c.wait_stdout("started") == "started\n"
    open(os.path.join(session.work, "go"), "w").close()
    r = c.until_complete()
    ok(r, "finished\n")


def test_stdout_and_stderr_are_kept_apart(session):
    r = ok(session.run("echo out1; echo err1 >&2; echo out2; "
                       "sh -c 'echo err2 >&2'; printf out3"))
    assert r.stdout == "out1\nout2\nout3"
    assert r.stderr == "err1\nerr2\n"


def test_output_without_a_trailing_newline(session):
    ok(session.run("printf 'no newline'"), "no newline")
    ok(session.run("printf x; printf y >&2"), "x")
    ok(session.run("echo -n"), "")


def test_binary_output_is_replaced_never_dropped(session):
    r = ok(session.run(r"printf 'a\xffb\xfe\x00c \xe2\x82\xac\n'"))
    assert r.stdout == "a\ufffdb\ufffd\x00c \u20ac\n"
    # an unfinished character at the end of the run is replaced too
    r = ok(session.run(r"printf 'end \xe2\x82'"))
    assert r.stdout.startswith("end ") and set(r.stdout[4:]) == {"\ufffd"}
    ok(session.run("echo next"), "next\n")


def test_utf8_characters_are_never_split(session):
    # one byte per write, with pauses so that they are read separately
    r = ok(session.run("for b in e2 82 ac f0 9f 98 80 0a; do "
                       "printf \"\\x$b\"; sleep 0.02; done"))
    frames = [f["text"] for f in r.frames if f["t"] == "stdout"]
    assert "".join(frames) == "\u20ac\U0001F600\n"
    assert len(frames) > 1, "the writes were not read separately"


def test_printing_the_status_format_does_not_end_the_run(session):
    fake = "0123456789abcdef 0 hB"
    r = ok(session.run(f"echo '{fake}'; printf '{fake}'; "
                       f"echo '{fake}' >&61; printf junk >&61; echo after"))
    assert r.stdout == f"{fake}\n{fake}after\n"
    # stray bytes on the status pipe do not hide the next status line
    ok(session.run("echo next"), "next\n")


def test_fifty_megabytes_of_output_arrive_exactly(session):
    r = ok(session.run("yes | head -c 50M", timeout=60))
    chunks = [f["text"] for f in r.frames if f["t"] == "stdout"]
    out = "".join(chunks)
    assert len(out) == 52428800
    assert out == "y\n" * (52428800 // 2)
    assert max(len(x) for x in chunks) <= 64 * 1024


def test_output_between_runs_is_dropped(session):
    ok(session.run("(while [ ! -e go ]; do sleep 0.01; done; echo late; "
                   "echo late >&2; touch done) &"))
    open(os.path.join(session.work, "go"), "w").close()
    wait_for(lambda: os.path.exists(os.path.join(session.work, "done")),
             what="the background job to write")
    r = ok(session.run("wait; echo next"), "next\n")
    assert r.stderr == ""


def test_xtrace_shows_only_the_users_commands(session):
    ok(session.run("set -x"))
    r = ok(session.run("echo hi", cwd="/", env=["V=1"]))
    assert r.stdout == "hi\n"
    assert r.stderr.splitlines() == ["++ echo hi"], r.stderr
    r = ok(session.run("set +x"))
    ok(session.run("echo quiet"), "quiet\n")


# Stdin -----------------------------------------------------------------------

def test_stdin_given_with_the_run(session):
    ok(session.run("cat", stdin="abc\ndef"), "abc\ndef")
    ok(session.run('read -r a; read -r b; echo "[$a|$b]"',
                   stdin="first\nsecond\n"), "[first|second]\n")
    ok(session.run("wc -c", stdin=b"\x00\x01\xff" * 1000), "3000\n")


def test_without_stdin_commands_see_eof(session):
    ok(session.run("cat; echo \"cat $?\""), "cat 0\n")
    ok(session.run("read -r x; echo \"read $?\""), "read 1\n")
    # the stdin of one run does not leak into the next
    ok(session.run("cat", stdin="once"), "once")
    ok(session.run("cat"), "")


def test_input_frames_are_refused(session):
    c = session.connect()
    c.send(t="input", text="x")
    f = c.recv()
    assert f["t"] == "fail" and f["errcode"] == "no_pending_input"


# cwd and env for one run -----------------------------------------------------

def test_cwd_and_env_apply_to_one_run_only(session):
    ok(session.run("export KEEP=orig; plain=p; cd /"))
    r = ok(session.run('pwd; echo "$KEEP $NEW $plain"; '
                       'sh -c \'echo "$KEEP $NEW $plain"\'',
                       cwd=session.work,
                       env=["KEEP=run", "NEW=n'ew\"$x", "plain=q"]))
    assert r.stdout == (f"{session.work}\nrun n'ew\"$x q\n"
                        f"run n'ew\"$x q\n")
    r = ok(session.run('pwd; echo "$KEEP ${NEW-unset} $plain"; '
                       'sh -c \'echo "$KEEP ${plain-unexported}"\''))
    assert r.stdout == "/\norig unset p\norig unexported\n"


def test_a_cd_inside_a_run_with_cwd_is_undone(session):
    ok(session.run("cd /tmp"))
    ok(session.run("cd /usr; pwd", cwd="/"), "/usr\n")
    ok(session.run("pwd"), "/tmp\n")


def test_a_bad_cwd_fails_the_run_without_running_it(session):
    r = session.run("echo never", cwd="/no/such/dir", env=["X=1"])
    assert r.status == "error"
    assert r.complete["exit_code"] == 1
    assert "No such file or directory" in r.stderr
    assert r.stdout == ""
    ok(session.run('echo "${X-unset}"'), "unset\n")


def test_set_e_does_not_end_the_shell_over_a_bad_cwd(session):
    ok(session.run("set -e"))
    r = session.run("echo never", cwd="/no/such/dir")
    assert r.status == "error" and r.complete["exit_code"] == 1
    ok(session.run("echo alive; set +e"), "alive\n")
    assert session.proc.poll() is None


@pytest.mark.parametrize("env", [["NOEQUALS"], ["=v"], ["1X=v"],
                                 ["A-B=v"], ["A=\x00"]])
def test_bad_env_entries_are_refused(session, env):
    r = session.run("echo never", env=env)
    assert r.types == ["fail"] and r.frames[0]["errcode"] == "bad_request"
    ok(session.run("echo fine"), "fine\n")


# Errors ----------------------------------------------------------------------

def test_a_non_zero_exit_is_an_error(session):
    r = session.run("echo before; false")
    assert r.types == ["stdout", "error", "complete"]
    assert r.error["ename"] == "CommandError"
    assert r.error["evalue"] == "exit status 1"
    assert r.status == "error" and r.complete["exit_code"] == 1
    r = session.run("(exit 7)")
    assert r.complete["exit_code"] == 7 and r.status == "error"
    r = session.run("nosuchcommand")
    assert r.complete["exit_code"] == 127
    assert "nosuchcommand: command not found" in r.stderr


def test_return_ends_the_run_early(session):
    r = session.run("echo a; return 3; echo b")
    assert r.stdout == "a\n" and r.complete["exit_code"] == 3


@pytest.mark.parametrize("code", ['echo "unterminated', "if true; then",
                                  "}", "echo $((1 +))"])
def test_syntax_errors_stay_in_their_run(session, code):
    r = session.run(code)
    assert r.status == "error", r.frames
    assert r.stderr
    ok(session.run("echo after"), "after\n")


def test_commands_see_only_their_own_descriptors(session):
    # ls: 0-2, its directory (3) and the code's own memfd; neither the
    # status pipe nor the stdin memfd, which the shell holds close-on-exec
    r = ok(session.run("ls /proc/self/fd; ls -l /proc/$$/fd"))
    fds = sorted(int(x) for x in r.stdout.split("total")[0].split())
    assert fds == [0, 1, 2, 3, 62], r.stdout
    assert "socket:" not in r.stdout


# Interrupts, timeouts, closed connections ------------------------------------

def test_interrupt_kills_the_run_and_its_background_children(session):
    ok(session.run("kept=yes"))
    c = session.connect()
    c.send(t="run", code="sleep 100 & echo \"bg $!\"; sleep 100")
    bg = int(c.wait_stdout("\n").split()[1])
    assert alive(bg)
    started = time.monotonic()
    c.send(t="interrupt")
    r = c.until_complete()
    assert time.monotonic() - started < 5
    assert r.status == "interrupted", r.frames
    assert r.complete["exit_code"] == 130
    wait_for(lambda: not alive(bg), what="the background sleep to die")
    ok(session.run('echo "$kept"'), "yes\n")


@pytest.mark.parametrize("code", [
    "while :; do :; done",
    "f() { while true; do echo -n; done; }; f; echo after",
    "while :; do sleep 100; done; echo after",
    "sleep 100 | cat; echo after",
    "x=$(sleep 100); echo after",
    "sleep 100 & wait; echo after",
])
def test_interrupt_stops_any_kind_of_run(session, code):
    c = session.connect()
    c.send(t="run", code="echo started; " + code)
    c.wait_stdout("started")
    c.send(t="interrupt")
    r = c.until_complete()
    assert r.status == "interrupted", r.frames
    assert "after" not in r.stdout
    ok(session.run("echo next"), "next\n")


def test_interrupt_sent_with_the_run_is_not_lost(session):
    c = session.connect()
    c.send_raw(frame({"t": "run", "code": "sleep 100"})
               + frame({"t": "interrupt"}))
    assert c.until_complete().status == "interrupted"


def test_interrupt_from_another_connection(session):
    c = session.connect()
    c.send(t="run", code="echo started; sleep 100")
    c.wait_stdout("started")
    session.connect().send(t="interrupt")
    assert c.until_complete().status == "interrupted"


def test_sigint_repeated_during_a_stop_does_not_undo_it(session):
    # a stop signals the shell again every tick until the run ends; one
    # that lands while the INT trap's job is ending the run made bash run
    # the trap again and forget the interrupt: the run went on and ended
    # "ok".  SIGINT sent without pause stands in for the ticks (without
    # the fix about half of the runs went on); its first ones may reach
    # the shell before the interrupt frame reaches the session, which
    # makes the run an error with status 130, as any SIGINT to the shell
    for _ in range(20):
        c = session.connect()
        c.send(t="run", code="echo started; sleep 100; echo after")
        c.wait_stdout("started")
        c.send(t="interrupt")
        done = threading.Event()

        def repeat():
            while not done.is_set():
                os.kill(session.shell, signal.SIGINT)

        t = threading.Thread(target=repeat)
        t.start()
        try:
            r = c.until_complete()
        finally:
            done.set()
            t.join()
        c.close()
        assert r.status in ("interrupted", "error"), r.frames
        assert r.complete["exit_code"] == 130
        assert "after" not in r.stdout
    ok(session.run("echo next"), "next\n")


def test_a_command_that_ignores_sigint_is_killed(session):
    c = session.connect()
    c.send(t="run", code="bash -c 'trap \"\" INT; echo started; sleep 100'")
    c.wait_stdout("started")
    started = time.monotonic()
    c.send(t="interrupt")
    r = c.until_complete()
    assert r.status == "interrupted"
    assert 0.5 < time.monotonic() - started < 5
    assert "did not stop" in session.log()


def test_a_daemon_started_by_the_run_is_killed_too(session):
    c = session.connect()
    c.send(t="run", code="setsid -f sh -c 'echo \"daemon $$\"; "
                         "exec sleep 100'; sleep 100")
    pid = int(c.wait_stdout("\n").split()[1])
    assert proc_stat(pid)[3] == pid, "not in a session of its own"
    c.send(t="interrupt")
    assert c.until_complete().status == "interrupted"
    wait_for(lambda: not alive(pid), what="the daemon to die")


def test_a_shell_that_cannot_be_stopped_is_killed():
    s = BashProcess()
    try:
        c = s.connect()
        # the user's own trap replaces the session's for this run
        c.send(t="run", code="trap '' INT; echo started; "
                             "while :; do :; done")
        c.wait_stdout("started")
        started = time.monotonic()
        c.send(t="interrupt")
        frames = []
        while (f := c.recv()) is not None:
            frames.append(f)
        r = Run(frames)
        assert 2.5 < time.monotonic() - started < 8
        assert r.error["ename"] == "ShellKilled"
        assert r.status == "interrupted"
        assert r.complete["exit_code"] == 137
        assert s.proc.wait(timeout=10) == 1
        assert "killing it" in s.log()
    finally:
        s.stop()


def test_background_jobs_of_earlier_runs_survive_an_interrupt(session):
    r = ok(session.run("sleep 100 & echo $!"))
    bg = int(r.stdout)
    c = session.connect()
    c.send(t="run", code="echo started; sleep 100")
    c.wait_stdout("started")
    c.send(t="interrupt")
    assert c.until_complete().status == "interrupted"
    assert alive(bg)
    ok(session.run("kill %1; wait %1; echo gone"), "gone\n")


def test_interrupt_between_runs_does_nothing(session):
    # between runs: after one (the shell has set its trap by then)
    ok(session.run("true"))
    c = session.connect()
    c.send(t="interrupt")
    os.kill(session.shell, signal.SIGINT)
    ok(session.run("echo still"), "still\n")
    assert alive(session.shell)


def test_a_stop_before_the_shell_is_ready_leaves_it_alive():
    # the first run of a fresh shell, stopped at once: the stop may come
    # before the shell has read its bootstrap (and set its INT trap); it
    # must wait for that instead of ending the shell with SIGINT
    for _ in range(10):
        s = BashProcess()
        try:
            r = s.run("sleep 30", timeout_ms=1)
            assert r.status == "timeout", r.frames
            assert alive(s.shell)
            ok(s.run("echo alive"), "alive\n")
        finally:
            s.stop()


def test_timeout_stops_the_run_at_its_deadline(session):
    r = session.run("sleep 30", timeout_ms=300)
    assert r.status == "timeout", r.frames
    assert 250 <= r.complete["ms"] < 5000
    r = session.run("while :; do :; done", timeout_ms=300)
    assert r.status == "timeout"
    ok(session.run("sleep 0.1; echo in time", timeout_ms=5000), "in time\n")


def test_closing_the_connection_stops_the_run(session):
    c = session.connect()
    c.send(t="run", code="sleep 100 & echo \"bg $!\"; sleep 100")
    bg = int(c.wait_stdout("\n").split()[1])
    c.close()
    wait_for(lambda: not alive(bg), what="the run's processes to die")
    ok(session.run_when_idle("echo next"), "next\n")
    assert "stopping the run" in session.log()


def test_a_run_sent_while_an_abandoned_run_stops_waits_for_it(session):
    """The abandoned run ignores SIGINT, so stopping it takes until
    SIGKILL; a run sent meanwhile runs then, instead of being refused."""
    c = session.connect()
    c.send(t="run", code="/usr/bin/python3 -c 'import signal, time; "
                         "signal.signal(signal.SIGINT, signal.SIG_IGN); "
                         "print(\"started\", flush=True); time.sleep(100)'")
    c.wait_stdout("started")
    c.close()
    wait_for(lambda: "stopping the run" in session.log(),
             what="the session to see the connection go")
    nxt = session.connect()
    nxt.send(t="run", code="echo next")
    r = nxt.until_complete()
    ok(r, "next\n")


def test_a_second_run_while_busy_is_refused(session):
    c = session.connect()
    c.send(t="run", code="echo started; sleep 100")
    c.wait_stdout("started")
    other = session.connect()
    other.send(t="run", code="true")
    f = other.recv()
    assert f["t"] == "fail" and f["errcode"] == "session_busy"
    other.send(t="interrupt")
    assert c.until_complete().status == "interrupted"


# The end of the shell and of the process -------------------------------------

@pytest.mark.parametrize("code, status, exit_code", [
    ("echo bye; exit", "ok", 0),
    ("echo bye; exit 4", "error", 4),
    ("echo bye; kill -9 $$", "error", 137),
    ("echo bye; echo ${nosuch:?}", "error", 1),
    ("set -e; echo bye; false; echo not this", "error", 1),
])
def test_a_shell_that_ends_ends_the_process_cleanly(code, status,
                                                    exit_code):
    s = BashProcess()
    try:
        r = s.run_to_eof(code)
        assert r.stdout == "bye\n"
        assert r.status == status and r.complete["exit_code"] == exit_code
        if status == "error":
            assert r.error["evalue"] == f"exit status {exit_code}"
        assert s.proc.wait(timeout=10) == 0
    finally:
        s.stop()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killing_the_process_kills_the_shell_and_its_children(sig):
    s = BashProcess()
    try:
        r = ok(s.run("sleep 100 & echo $!; (sleep 100 & echo $!) ; "
                     "sleep 100 >/dev/null 2>&1 </dev/null & disown; "
                     "echo $!"))
        pids = [int(x) for x in r.stdout.split()] + [s.shell]
        assert all(alive(p) for p in pids)
        c = s.connect()
        c.send(t="run", code="echo started; sleep 100")
        c.wait_stdout("started")
        s.proc.send_signal(sig)
        s.proc.wait(timeout=10)
        wait_for(lambda: not any(alive(p) for p in pids),
                 what="the shell and its children to die")
    finally:
        s.stop()


def test_the_process_exits_when_the_listening_socket_fails(session):
    session.listener.shutdown(socket.SHUT_RDWR)
    assert session.proc.wait(timeout=10) != 0
    assert "listening socket failed" in session.log()


# Protocol --------------------------------------------------------------------

def test_a_malformed_frame_closes_only_that_connection(session):
    bad = session.connect()
    bad.send_raw(b"\x00\x00\x00\x03abc")
    f = bad.recv()
    assert f["t"] == "fail" and f["errcode"] == "bad_request"
    assert bad.recv() is None
    c = session.connect()
    c.send(t="run")
    assert c.recv()["errcode"] == "bad_request"
    ok(session.run("echo still here"), "still here\n")


@pytest.mark.parametrize("args", [
    [],
    ["--listen-fd", "0"],
    ["--listen-fd", "3", "--id", SESSION_ID],      # never on a command line
    ["--listen-fd", "3", "--max-frame", "10"],
    ["--listen-fd", "3", "extra"],
])
def test_bad_command_lines_are_refused(args):
    p = subprocess.run([BASH, *args], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=10)
    assert p.returncode != 0
    assert b"pyrepl-bash[" in p.stderr


def test_a_small_frame_limit_keeps_output_frames_under_it():
    s = BashProcess("--max-frame", "4096")
    try:
        c = s.connect()
        c.send(t="run", code="head -c 100000 /dev/zero | tr '\\0' x")
        r = c.until_complete()
        assert r.stdout == "x" * 100000
        assert all(len(msgpack.packb(f)) <= 4096 for f in r.frames)
    finally:
        s.stop()


# Many runs ---------------------------------------------------------------------
# (how fast: util/bench's "bash `true` round trip" row)

def test_a_thousand_runs_in_a_row_all_complete(session):
    for _ in range(1000):
        r = session.run("true")
        assert r.status == "ok" and r.complete["exit_code"] == 0
        session.conns.clear()
