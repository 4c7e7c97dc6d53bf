"""
conftest.py of processes/: the fixtures of the tests that start the worker
binaries themselves (binaries.py), without nginx.

- session: one pyrepl-python on its listening socket, started as the
  supervisor would (binaries.SessionProcess); its teardown kills and reaps
  it and fails on sanitizer output in its log (test_bash_process.py has
  its own: one pyrepl-bash);
- tmp: a temp directory with the fake session binary in it; at teardown it
  fails on sanitizer lines in its logs and on any process left in it;
- sup: a supervisor with the fake session binary in tmp; zsup: one with a
  zygote and a pool of two.  Both must shut down cleanly, leaving nothing.
"""

import os
import shutil
import tempfile

import pytest

from binaries import (DEADLINE, SessionProcess, Supervisor, Zygote,
                      write_fake_session)
from helpers import bad_lines, kill_all, leftovers


@pytest.fixture
def session():
    s = SessionProcess()
    yield s
    s.stop()


@pytest.fixture
def tmp():
    root = tempfile.mkdtemp(prefix="pyrepl-")
    write_fake_session(root)
    yield root
    for name in os.listdir(root):
        if name.endswith(".log"):
            with open(os.path.join(root, name), errors="replace") as f:
                log = f.read()
            assert not bad_lines(log), log
    # SIGKILLed processes may take a moment to be gone; await it, bounded
    strays = leftovers(root, DEADLINE)
    kill_all(strays)
    shutil.rmtree(root, ignore_errors=True)
    assert not strays, "processes left behind: %s" % strays


@pytest.fixture
def sup(tmp):
    s = Supervisor(tmp).start()
    yield s
    assert s.stop() == 0, s.log()
    assert os.listdir(s.work) == [], "workdirs left after shutdown"


@pytest.fixture
def zsup(tmp):
    s = Zygote(tmp).start()
    yield s
    assert s.stop() == 0, s.log()
    assert os.listdir(s.work) == [], "workdirs left after shutdown"
    assert os.listdir(s.run) == [], "files left after shutdown"
