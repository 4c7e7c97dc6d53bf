"""
conftest.py of operations/escape/: the fixtures of the escape suite.

- nginx: the instance the attacks run against, with a file size limit, a
  process limit of 32 a session and the status location contained() asks;
- victim: a session with state that must survive whatever the attacker
  does, as (session id, pid); attacker: the session the attack runs in;
- loose: an instance whose directives loosen the defaults (network on, a
  CPU limit of a second, seccomp logging instead of refusing);
- unjailed and its unjailed_victim: as nginx, but pyrepl_jail off, for
  what only a session outside a jail can do (leave files in the host's
  shared temporary directories, orphans the supervisor sweeps).
"""

import os

import pytest

from helpers import Nginx, pid_of


ATTACKED = ("pyrepl_file_size_limit 1m; pyrepl_max_processes 32;"
            " pyrepl_run_timeout_max 60s;")


def attacked(extra=""):
    n = Nginx(workers=2, http_extra=ATTACKED + extra,
              server_extra="location = /status { pyrepl_status; }").start()
    yield n
    n.check_and_clean()


def a_victim(nginx):
    """A session with state that must survive whatever the attacker does."""
    sid = nginx.create()
    nginx.run_json(sid, "secret = 'v-1234'")
    pid = pid_of(nginx, sid)
    with open(os.path.join(nginx.prefix, "work", sid, "note.txt"), "w") as f:
        f.write("private")
    yield sid, pid
    nginx.http.delete(f"{nginx.url}/session/{sid}")


@pytest.fixture(scope="module")
def nginx():
    yield from attacked()


@pytest.fixture
def victim(nginx):
    yield from a_victim(nginx)


@pytest.fixture(scope="module")
def unjailed():
    yield from attacked(" pyrepl_jail off;")


@pytest.fixture
def unjailed_victim(unjailed):
    yield from a_victim(unjailed)


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
