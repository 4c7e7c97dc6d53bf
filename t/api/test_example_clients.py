"""The client examples (examples/clients/pyrepl_client.py and .mjs) run as
they are against a real server with an API key: a user sees the streamed
output, the input() answer echoed back, the interrupt and the state back in
a session made from the checkpoint, and nothing is left behind; a failure is
a non-zero exit with the server's answer."""

import importlib.util
import os
import re
import shutil
import subprocess

import pytest

from helpers import ROOT, Nginx

KEY = "example-clients-key-0123456789"
EXAMPLES = os.path.join(ROOT, "examples", "clients")

# what either client prints, session and checkpoint ids as ID
TRANSCRIPT = """\
session ID created at URL
a run streamed over SSE:
tick 0
tick 1
tick 2
  result: 6
  run ended: ok
input() answered over the WebSocket:
  asked 'Your name? ', answering 'Ada'
Hello, Ada!
  run ended: ok
a long run, interrupted once it printed:
working...
  error: KeyboardInterrupt
  run ended: interrupted
checkpoint ID saved
session ID made from it; there:
name = 'Ada', total = 6
  run ended: ok
session ID deleted
session ID deleted
checkpoint ID deleted
"""


@pytest.fixture(scope="module")
def nginx():
    n = Nginx(workers=2, http_extra=f"pyrepl_api_key {KEY};")
    n.http.headers["Authorization"] = "Bearer " + KEY
    n.start()
    yield n
    n.check_and_clean()


def command(client):
    """How a user runs the example, or a skip saying what is missing."""
    if client == "python":
        if importlib.util.find_spec("websockets") is None:
            pytest.skip("python3-websockets is not installed (util/test "
                        "installs it)")
        return ["/usr/bin/python3", os.path.join(EXAMPLES, "pyrepl_client.py")]
    if not shutil.which("node"):
        pytest.skip("node is not installed (util/test installs Debian's "
                    "nodejs)")
    has_websocket = subprocess.run(
        ["node", "-e", "process.exit(globalThis.WebSocket ? 0 : 1)"]
    ).returncode == 0
    if not has_websocket and not os.path.isdir("/usr/share/nodejs/ws"):
        pytest.skip("this node has no WebSocket and Debian's node-ws is not "
                    "installed (util/test installs it)")
    return ["node", os.path.join(EXAMPLES, "pyrepl_client.mjs")]


def run(nginx, client, key=KEY):
    return subprocess.run(command(client), capture_output=True, text=True,
                          timeout=120, env=dict(os.environ,
                                                PYREPL_URL=nginx.url,
                                                PYREPL_KEY=key))


@pytest.mark.parametrize("client", ["python", "node"])
def test_the_example_client_shows_the_api(nginx, client):
    r = run(nginx, client)
    assert (r.returncode, r.stderr) == (0, "")
    assert re.sub("[0-9a-f]{32}", "ID", r.stdout).replace(nginx.url, "URL") \
        == TRANSCRIPT
    # what it deleted is what it made: both sessions and the checkpoint
    first, checkpoint, restored, *deleted = re.findall("[0-9a-f]{32}",
                                                       r.stdout)
    assert first != restored
    assert deleted == [first, restored, checkpoint]
    assert nginx.http.get(nginx.url + "/session").json()["sessions"] == []
    assert nginx.http.get(nginx.url + "/session/checkpoints").json() == \
        {"checkpoints": []}


@pytest.mark.parametrize("client", ["python", "node"])
def test_the_example_client_says_why_it_failed(nginx, client):
    r = run(nginx, client, key="not-the-key-0123456789")
    assert r.returncode == 1
    assert r.stdout == ""
    name = os.path.basename(command(client)[1])
    assert r.stderr.startswith(f"{name}: POST /session: 401 ")
    assert '"code":"unauthorized"' in r.stderr
