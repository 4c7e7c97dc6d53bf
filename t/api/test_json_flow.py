"""
test_json_flow.py: a run answered as one JSON document (Accept:
application/json) is written as the run goes, under the same flow control
as SSE.  A client that does not read holds up its run, not the memory of
the nginx worker (README: 128 KiB of escaped output per JSON run, stderr
past its share in a temporary file); the document arrives whole and exact
however the output interleaves and however slowly it is read; and it stays
valid JSON equal to what the code wrote whatever the output holds.
"""

import fcntl
import hashlib
import io
import json
import os
import signal
import socket
import struct
import termios
import time

import pytest
from helpers import PRELOAD, Nginx, pid_of, wait_for

JSON = {"Accept": "application/json"}

# README, "Runs": what one JSON run holds of escaped output in a worker
ESCAPED_PER_RUN = 128 * 1024
# and the rest of what a stuck run holds: the frame being read and its text
# (64 KiB from a session, each), nginx's output_buffers, allocator slack
PER_RUN = 1024 * 1024
SLACK = 4 * 1024 * 1024

# code printing size MiB of text that is mostly NUL (6 bytes escaped)
FLOOD = ("import sys\n"
         "chunk = '\\0' * 65535 + '\\n'\n"
         "for _ in range({size} * 16):\n"
         "    sys.{stream}.write(chunk)\n")

# writes interleaved stdout and stderr through o and e; run in a session
# and here, to know what it wrote
ODD = "".join(map(chr, range(32))) + '"\\/' + "\x7f\u2028\u2029é✓🐍"
GEN = ("odd = " + repr(ODD) + "\n"
       "for i in range(20000):\n"
       "    o.write('out %d %s\\n' % (i, odd[:i % len(odd)] * 5))\n"
       "    e.write('err %d %s\\n' % (i, odd[i % len(odd):] * 3))\n")


@pytest.fixture(scope="module")
def nginx():
    # one worker takes every run: what they cost adds up in one process
    n = Nginx(workers=1, http_extra="pyrepl_max_output 64m;",
              server_extra="location = /status { pyrepl_status; }").start()
    yield n
    n.check_and_clean()


def status_bytes(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def spill_files(pid, prefix):
    """The deleted temporary files under prefix/tmp that pid holds open."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(prefix + "/tmp/") and target.endswith(
                "(deleted)"):
            found.append(target)
    return found


def post_raw(nginx, sid, code, **extra):
    """POST a JSON run on a socket with a small receive buffer (so nginx
    soon waits for its owner), answered with Connection: close."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.connect(("127.0.0.1", nginx.port))
    body = json.dumps({"code": code, **extra}).encode()
    s.sendall(b"POST /session/%s/run HTTP/1.1\r\nHost: t\r\n"
              b"Accept: application/json\r\nConnection: close\r\n"
              b"Content-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % (sid.encode(), len(body))
              + body)
    return s


def unread(sock):
    """Bytes nginx has sent on sock that its owner has not read."""
    return struct.unpack("i", fcntl.ioctl(sock, termios.FIONREAD,
                                          b"\0\0\0\0"))[0]


def wait_still(sample, what, quiet=1.0, timeout=60.0):
    """Wait until sample() is true and has kept its value for quiet s."""
    seen = {"value": None, "since": 0.0}

    def still():
        v, now = sample(), time.monotonic()
        if not v or v != seen["value"]:
            seen.update(value=v, since=now)
            return False
        return now - seen["since"] >= quiet

    wait_for(still, timeout, what)


def state(nginx, sid):
    return nginx.http.get(f"{nginx.url}/session/{sid}").json()["state"]


def json_run_when_free(nginx, sid, code):
    """A JSON run once the session has unwound an interrupted one."""
    def ran():
        r = nginx.http.post(f"{nginx.url}/session/{sid}/run",
                            json={"code": code}, headers=JSON)
        assert r.status_code in (200, 409), r.text
        return r.status_code == 200 and r.json()

    return wait_for(ran, what="the session to take a run")


@pytest.mark.skipif(PRELOAD is not None,
                    reason="the sanitizer runtime's quarantine and shadow "
                           "memory make a worker's RSS meaningless")
def test_clients_that_never_read_cost_the_worker_little(nginx):
    flooders = [nginx.create() for _ in range(3)]
    spiller = nginx.create()
    for sid in flooders + [spiller]:
        doc = nginx.run_json(sid, "import sys\nprint('warm')\n"
                                  "sys.stderr.write('up')\n6 * 7")
        assert doc["result"] == {"text/plain": "42"}
    worker, = nginx.worker_pids()
    before = status_bytes(worker, "VmHWM")

    # 16 MiB of stdout each (96 MiB escaped) and 8 MiB of stderr (48 MiB)
    clients = [post_raw(nginx, sid, FLOOD.format(size=16, stream="stdout"))
               for sid in flooders]
    clients.append(post_raw(nginx, spiller,
                            FLOOD.format(size=8, stream="stderr")))
    try:
        # each answer has begun and none moves any more: nginx waits for
        # the clients (and the floods, for nginx)
        wait_still(lambda: all(unread(c) for c in clients) and
                   tuple(unread(c) for c in clients),
                   "the answers to stop moving")

        grown = status_bytes(worker, "VmHWM") - before
        bound = len(clients) * PER_RUN + SLACK
        assert grown < bound, \
            f"the worker grew by {grown >> 10} KiB, over {bound >> 10} KiB"

        # the floods wait for their clients; the stderr one went to disk
        # and its run is over
        assert [state(nginx, sid) for sid in flooders] == ["busy"] * 3
        assert state(nginx, spiller) == "idle"
        assert len(spill_files(worker, nginx.prefix)) == 1
    finally:
        for c in clients:
            c.close()

    wait_for(lambda: all(state(nginx, sid) == "idle" for sid in flooders),
             what="the interrupted runs to end")
    wait_for(lambda: not spill_files(worker, nginx.prefix),
             what="the worker to close the temporary file")
    for sid in flooders + [spiller]:
        assert json_run_when_free(nginx, sid, "1 + 1")["result"] == \
            {"text/plain": "2"}
    # nginx and the supervisor still serve everything else
    assert nginx.run_json(nginx.create(), "'fresh'")["result"] == \
        {"text/plain": "'fresh'"}
    assert nginx.worker_pids() == [worker]


def expected_output(gen):
    o, e = io.StringIO(), io.StringIO()
    exec(gen, {"o": o, "e": e})
    return o.getvalue(), e.getvalue()


def digest(text):
    return len(text), hashlib.sha256(text.encode()).hexdigest()


def read_answer(sock, slow):
    """Read a whole HTTP answer (Connection: close) from sock, slowly if
    slow; returns (status line, headers, body with chunking undone)."""
    data = []
    for i in range(1 << 30):
        piece = sock.recv(4096)
        if not piece:
            break
        data.append(piece)
        if slow and i % 16 == 0:
            time.sleep(0.002)       # a slow client, so the answer backs up
    head, _, body = b"".join(data).partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines)}
    if headers.get("transfer-encoding") == "chunked":
        plain = []
        while True:
            size, _, body = body.partition(b"\r\n")
            size = int(size, 16)
            if size == 0:
                break
            plain.append(body[:size])
            body = body[size + 2:]
        body = b"".join(plain)
    return status, headers, body


@pytest.mark.parametrize("reader", ["fast", "slow"])
def test_interleaved_output_past_the_spool_arrives_whole(nginx, reader):
    sid = nginx.create()
    out, err = expected_output(GEN)
    # stdout fills many buffers; stderr escapes to far more than the spool
    # keeps in memory
    assert len(json.dumps(out)) > 32 * ESCAPED_PER_RUN
    assert len(json.dumps(err)) > 32 * ESCAPED_PER_RUN

    s = post_raw(nginx, sid, "import sys\no, e = sys.stdout, sys.stderr\n"
                             + GEN + "'done'")
    status, headers, answer = read_answer(s, reader == "slow")
    s.close()
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == "application/json"
    doc = json.loads(answer)

    assert digest(doc["stdout"]) == digest(out)
    assert digest(doc["stderr"]) == digest(err)
    assert doc["result"] == {"text/plain": "'done'"}
    assert doc["status"] == "ok" and doc["error"] is None
    assert set(doc) >= {"execution_count", "duration_ms", "changes"}
    nginx.http.delete(f"{nginx.url}/session/{sid}")


def crashed_runs(nginx):
    return nginx.http.get(nginx.url + "/status").json()["counters"][
        "runs"].get("crashed", 0)


def test_a_run_that_ends_while_its_stdout_waits_answers_whole(nginx):
    sid = nginx.create()
    pid = pid_of(nginx, sid)
    crashed = crashed_runs(nginx)
    c = post_raw(nginx, sid, FLOOD.format(size=16, stream="stdout"),
                 timeout_ms=5000)
    try:
        wait_still(lambda: unread(c), "the answer to stop moving",
                   quiet=0.5)
        # at its deadline the run's interrupt finds the session gone: the
        # run ends while escaped stdout still waits for the client
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: crashed_runs(nginx) == crashed + 1,
                 what="the run to end as crashed")
        status, _, answer = read_answer(c, False)
    finally:
        c.close()
    assert status == "HTTP/1.1 200 OK"
    doc = json.loads(answer)
    assert doc["status"] == "crashed"
    assert doc["error"]["ename"] == "SessionCrashed"
    assert len(doc["stdout"]) > 65536
    assert set(doc["stdout"]) == {"\0", "\n"}
    nginx.http.delete(f"{nginx.url}/session/{sid}")


def sse_output(nginx, sid, code):
    events = nginx.run(sid, code)
    return ("".join(d["text"] for e, d in events if e == "stdout"),
            "".join(d["text"] for e, d in events if e == "stderr"))


@pytest.mark.parametrize("repeat", [1, 3001])
def test_any_output_makes_valid_json_equal_to_it(nginx, repeat):
    # every control character, quotes, backslash, DEL, line separators and
    # characters of 2 to 4 bytes; repeated, the escapes fall across every
    # buffer boundary, in one write and in writes of odd sizes
    sid = nginx.create()
    text = ODD * repeat
    doc = nginx.run_json(sid, f"import sys\ntext = {text!r}\n"
                              "sys.stdout.write(text)\n"
                              "for i in range(0, len(text), 4093):\n"
                              "    sys.stderr.write(text[i:i + 4093])\n"
                              "    sys.stdout.write(text[i:i + 4093])\n")
    assert doc["stdout"] == text * 2
    assert doc["stderr"] == text
    # a result and an error that need escaping, in memory or past it
    doc = nginx.run_json(sid, f"class R:\n    def __repr__(self): "
                              f"return {text!r}\nR()")
    assert doc["result"] == {"text/plain": text}
    doc = nginx.run_json(sid, f"raise ValueError({text!r})")
    assert doc["status"] == "error"
    assert doc["error"]["ename"] == "ValueError"
    assert doc["error"]["evalue"] == text
    nginx.http.delete(f"{nginx.url}/session/{sid}")


def test_invalid_utf8_reads_as_over_sse(nginx):
    sid = nginx.create()
    code = ("import os\n"
            "os.write(1, b'a\\xffb\\xc3(c\\xed\\xa0\\x80d\\xf0\\x9f\\x90')\n"
            "os.write(2, b'\\x80\\x00\\xfe')\n")
    out, err = sse_output(nginx, sid, code)
    assert "\ufffd" in out and "\ufffd" in err
    doc = nginx.run_json(sid, code)
    assert (doc["stdout"], doc["stderr"]) == (out, err)
    nginx.http.delete(f"{nginx.url}/session/{sid}")
