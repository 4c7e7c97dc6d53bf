"""The escape suite, a host that cannot make jails: the supervisor says
so at start-up and runs sessions without one, never silently.  A module of
its own: while it takes pid namespaces away, no other nginx of the suite
runs (module fixtures end with their module).
"""

import os

import pytest

from attacks import out_of
from helpers import Nginx, root_only

pytestmark = root_only


def test_a_host_that_cannot_make_jails_gets_a_warning_not_silence():
    # no pid namespace may be made (as in a container without the
    # privilege): the supervisor says so at start and sessions still run
    knob = "/proc/sys/user/max_pid_namespaces"
    try:
        with open(knob) as f:
            saved = f.read()
        with open(knob, "w") as f:
            f.write("0")
    except OSError as e:
        pytest.skip(f"cannot take pid namespaces away on this host: {e}")
    try:
        n = Nginx().start()
        sid = n.create()
    finally:
        with open(knob, "w") as f:
            f.write(saved)
    try:
        assert "warning: sessions are not jailed" in n.error_log()
        out = out_of(n, sid, """
            import os, socket
            print(socket.gethostname() == os.uname().nodename != "pyrepl",
                  os.path.exists("/etc/nginx"), os.getcwd() != "/home/pyrepl")
            """)
        assert out == f"True {os.path.exists('/etc/nginx')} True\n"
    finally:
        n.check_and_clean()
