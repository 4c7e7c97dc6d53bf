"""A session is Python as a plain python3 is: the same interpreter flags,
locale and encodings in the same environment, a home, a user name, thread
pools, and the places libraries look for their cache and configuration.
Each fact is read in a session and in /usr/bin/python3 started with the
session's own environment, and compared."""

import json
import subprocess
import textwrap

import pytest

from helpers import Nginx

FACTS = textwrap.dedent("""
    import getpass, json, locale, os, pathlib, site, sys
    facts = {
        "flags": {k: getattr(sys.flags, k) for k in (
            "isolated", "ignore_environment", "no_user_site", "safe_path",
            "no_site", "optimize", "dont_write_bytecode", "utf8_mode")},
        "locale": locale.getlocale(),
        "preferred": locale.getpreferredencoding(),
        "fs": sys.getfilesystemencoding(),
        "stdout": sys.stdout.encoding,
        "user_site": site.ENABLE_USER_SITE,
        "orig_argv0": sys.orig_argv[:1],
        "user": getpass.getuser(),
        "home": str(pathlib.Path.home()) == os.environ["HOME"],
        "tilde": os.path.expanduser("~") == os.environ["HOME"],
        "breakpointhook": os.environ.get("PYTHONBREAKPOINT"),
    }
    print(json.dumps(facts))
""")


@pytest.fixture(scope="module")
def nginx():
    n = Nginx(http_extra='pyrepl_env "PYTHONBREAKPOINT=0";').start()
    yield n
    n.check_and_clean()


def test_a_session_starts_python_as_python3_does(nginx):
    sid = nginx.create()
    r = nginx.run_json(sid, FACTS + "\nimport os; env = dict(os.environ)")
    assert r["status"] == "ok", r
    session = json.loads(r["stdout"])
    env = json.loads(nginx.run_json(sid, "import json; print(json.dumps("
                                         "env))")["stdout"])
    plain = json.loads(subprocess.run(["/usr/bin/python3", "-c", FACTS],
                                      env=env, cwd="/", capture_output=True,
                                      text=True, check=True).stdout)
    # python3 -c: orig_argv is the command line; a session's is python3's
    assert session.pop("orig_argv0")[0].startswith("/usr/bin/python3")
    plain.pop("orig_argv0")
    assert session == plain
    assert session["user"] == env["USER"] == env["LOGNAME"]
    assert session["breakpointhook"] == "0"
    # PYTHONBREAKPOINT=0, read from the environment: breakpoint() is a no-op
    r = nginx.run_json(sid, "breakpoint(); 'after'")
    assert r["result"] == {"text/plain": "'after'"}, r


def test_the_user_site_directory_is_under_home(nginx):
    # where pip install --user puts packages, derived from the session's
    # HOME (not the zygote's, which had none when site computed it)
    sid = nginx.create()
    r = nginx.run_json(sid, textwrap.dedent("""
        import os, site
        d = site.getusersitepackages()
        os.makedirs(d)
        with open(os.path.join(d, "mine_user_mod.py"), "w") as f:
            f.write("VALUE = 7\\n")
        site.addsitedir(d)
        import mine_user_mod
        d.startswith(os.environ["HOME"] + "/.local/"), mine_user_mod.VALUE
    """))
    assert r["result"] == {"text/plain": "(True, 7)"}, r


def test_the_locale_is_the_environment_s(nginx):
    sid = nginx.create()
    r = nginx.run_json(sid, "import locale, os\n"
                            "locale.setlocale(locale.LC_CTYPE), "
                            "os.environ['LANG']")
    assert r["result"] == {"text/plain": "('C.UTF-8', 'C.UTF-8')"}, r


ORDER = textwrap.dedent("""
    import sys
    for i in range(100):
        print(i)
        sys.stderr.write(f"e{i}\\n")
        print(f"p{i}", file=sys.stderr, end="\\n")
    sys.stdout.write("end\\n")
""")
IN_ORDER = "".join(f"{i}\ne{i}\np{i}\n" for i in range(100)) + "end\n"


def test_writes_to_stdout_and_stderr_arrive_in_the_order_made(nginx):
    # over SSE (and, with the same pipeline, WebSocket): the events in the
    # order they came, stdout and stderr interleaved as the code wrote them
    sid = nginx.create()
    events = nginx.run(sid, ORDER)
    got = [(e, d["text"]) for e, d in events if e in ("stdout", "stderr")]
    assert "".join(t for _, t in got) == IN_ORDER
    assert "".join(t for e, t in got if e == "stderr") == \
        "".join(f"e{i}\np{i}\n" for i in range(100))
    # what a terminal shows for the same program run by python3 itself
    assert subprocess.run(["/usr/bin/python3", "-u", "-c", ORDER],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True).stdout == IN_ORDER
    r = nginx.run_json(sid, "import sys; sys.stdout.fileno(), "
                            "sys.stderr.fileno(), sys.stdout.isatty()")
    assert r["result"] == {"text/plain": "(1, 2, False)"}
    nginx.http.delete(f"{nginx.url}/session/{sid}")
