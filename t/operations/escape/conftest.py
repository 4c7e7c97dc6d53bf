"""
conftest.py of operations/escape/: the fixtures of the escape suite.

- nginx: the instance the attacks run against, with a file size limit, a
  process limit of 32 a session and the status location contained() asks;
- victim: a session with state that must survive whatever the attacker
  does, as (session id, pid); attacker: the session the attack runs in;
- loose: an instance whose directives loosen the defaults (network on, a
  CPU limit of a second, seccomp logging instead of refusing).
"""

import os

import pytest

from helpers import Nginx


@pytest.fixture(scope="module")
def nginx():
    n = Nginx(workers=2,
              http_extra="pyrepl_file_size_limit 1m; pyrepl_max_processes 32;"
                         " pyrepl_run_timeout_max 60s;",
              server_extra="location = /status { pyrepl_status; }").start()
    yield n
    n.check_and_clean()


@pytest.fixture
def victim(nginx):
    """A session with state that must survive whatever the attacker does."""
    sid = nginx.create()
    out = nginx.run_json(sid, "import os\nsecret = 'v-1234'\nos.getpid()")
    pid = int(out["result"]["text/plain"])
    with open(os.path.join(nginx.prefix, "work", sid, "note.txt"), "w") as f:
        f.write("private")
    yield sid, pid
    nginx.http.delete(f"{nginx.url}/session/{sid}")


@pytest.fixture
def attacker(nginx):
    sid = nginx.create()
    yield sid
    nginx.http.delete(f"{nginx.url}/session/{sid}")


@pytest.fixture(scope="module")
def loose():
    n = Nginx(http_extra="pyrepl_network on; pyrepl_cpu_limit 1s;"
                         " pyrepl_seccomp log;").start()
    yield n
    n.check_and_clean()
