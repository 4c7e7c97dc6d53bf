"""OpenSandbox's own JS SDK (npm @alibaba-group/opensandbox 0.1.11, run
by node) against pyrepl_dialect opensandbox, as its users point it at an
execd: ConnectionConfig and DefaultAdapterFactory().createExecdStack with
X-EXECD-ACCESS-TOKEN (t/clients/opensandbox_sdk.mjs)."""

import pytest

from helpers import Nginx, node, npm_install

KEY = "opensandbox-sdk-key-0123456789"


@pytest.fixture(scope="module")
def nginx():
    n = Nginx(http_extra=f"pyrepl_default_language bash; "
                         f"pyrepl_api_key {KEY};",
              server_extra="pyrepl_dialect opensandbox; "
                           "location = /ping { pyrepl; } "
                           "location /command { pyrepl; }").start()
    yield n
    n.check_and_clean()


def test_the_opensandbox_sdk_runs_unchanged(nginx):
    npm_install()
    seen = node("opensandbox_sdk.mjs", nginx.url, KEY, timeout=120)
    assert seen["ping"] is True
    assert seen["pwd"]["stdout"].endswith("/work/dir\n")   # made for it
    assert seen["pwd"]["exitCode"] == 0
    assert seen["false"] == 1
    assert seen["timeout"] not in (0, None)        # read as a failure
    assert seen["interrupted"]["stdout"] == "go\n"
    assert seen["interrupted"]["exitCode"] not in (0, None)
    assert seen["after"] == "still here\n"
    assert seen["deleted"] == "refused"
    assert seen["oneShot"]["stdout"].startswith("x\n")
    assert seen["oneShot"]["stdout"].endswith("/w\n")
    assert seen["oneShot"]["exitCode"] == 0
    assert seen["oneShotExit"] == 4
    # one-shot commands leave no session behind
    r = nginx.http.get(nginx.url + "/session",
                       headers={"X-EXECD-ACCESS-TOKEN": KEY})
    assert r.json()["sessions"] == []


def test_background_commands_say_they_are_not_served(nginx):
    r = nginx.http.post(nginx.url + "/command",
                        json={"command": "true", "background": True},
                        headers={"X-EXECD-ACCESS-TOKEN": KEY})
    assert r.status_code == 501
    assert r.json()["error"]["code"] == "not_implemented"
    r = nginx.http.get(nginx.url + "/command/status/x",
                       headers={"X-EXECD-ACCESS-TOKEN": KEY})
    assert r.status_code == 501
