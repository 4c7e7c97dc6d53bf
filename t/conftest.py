"""
conftest.py: the fixtures every test module may use (the harness itself is
helpers.py).  nginx is a real nginx (Debian's /usr/sbin/nginx with the
module loaded) in a fresh temp prefix on a free loopback port, one per
module (PYREPL_WORKERS workers, default 2); its teardown fails if
error.log has [alert] / [emerg] / sanitizer lines or if any process of
that instance is left behind.  session is a
Python session on it.  A module or folder that needs another nginx, or
another kind of session, defines its own fixture of the same name.

With the sanitizer build, a report of a worker binary a test started
itself fails that test (right after it).
"""

import os

import pytest

from helpers import SAN_DIR, Nginx, san_reports


@pytest.fixture(autouse=True)
def sanitizer_reports():
    """Fail a test after which a worker binary it started itself wrote a
    sanitizer report (only with the sanitizer build)."""
    yield
    if SAN_DIR:
        reports = san_reports(SAN_DIR)
        if reports:
            for name in os.listdir(SAN_DIR):
                os.rename(os.path.join(SAN_DIR, name),
                          os.path.join(SAN_DIR, "seen-" + name))
            raise AssertionError(f"sanitizer reports (in {SAN_DIR}):\n" +
                                 "\n".join(reports))


def pytest_unconfigure(config):
    if SAN_DIR and not os.listdir(SAN_DIR):
        os.rmdir(SAN_DIR)


@pytest.fixture(scope="module")
def nginx():
    n = Nginx(workers=int(os.environ.get("PYREPL_WORKERS", "2"))).start()
    yield n
    n.check_and_clean()


@pytest.fixture
def session(nginx):
    sid = nginx.create()
    yield sid
    nginx.http.delete(f"{nginx.url}/session/{sid}")
