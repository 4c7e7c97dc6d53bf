"""pyrepl_dialect e2b: E2B's code interpreter API.

The first tests drive E2B's own JS SDK (npm @e2b/code-interpreter 2.8.0,
t/clients/e2b_sdk.mjs) as its users point it at a self-hosted sandbox:
Sandbox.connect(id, {debug: true, sandboxUrl}).  The others speak the wire
protocol for what the SDK cannot show: the NDJSON lines themselves,
keepalives, tenancy, runs that take turns, a client that goes away.
"""

import json
import threading

import pytest
import requests

from helpers import Nginx, node, npm_install, wait_for

KEY = "e2b-key-0123456789abcdef"
OTHER = "e2b-other-key-0123456789"


@pytest.fixture(scope="module")
def open_nginx():
    n = Nginx(server_extra="location /e2b/ { pyrepl; pyrepl_dialect e2b; }",
              http_extra="pyrepl_keepalive 500ms;").start()
    yield n
    n.check_and_clean()


@pytest.fixture(scope="module")
def nginx():
    n = Nginx(server_extra="location /e2b/ { pyrepl; pyrepl_dialect e2b; }",
              http_extra=f"pyrepl_api_key {KEY}; pyrepl_api_key {OTHER}; "
                         f"pyrepl_keepalive 500ms;").start()
    yield n
    n.check_and_clean()


def execute(n, body, key=KEY, **kw):
    """POST /execute: the response (status) and its parsed lines."""
    headers = {"X-Access-Token": key} if key else {}
    r = n.http.post(n.url + "/e2b/execute", json=body, headers=headers,
                    **kw)
    lines = [json.loads(l) for l in r.text.splitlines()] if r.ok else []
    return r, lines


def of(lines, kind):
    return [l for l in lines if l["type"] == kind]


def contexts(n, key=KEY):
    r = n.http.get(n.url + "/e2b/contexts",
                   headers={"E2B-Traffic-Access-Token": key})
    assert r.status_code == 200, r.text
    return r.json()


def test_the_e2b_sdk_runs_unchanged(open_nginx):
    npm_install()
    seen = node("e2b_sdk.mjs", open_nginx.url + "/e2b", timeout=180)

    # stdout reached the callback while the code ran: "first" came two
    # seconds of sleep before "second" and the end
    lines = seen["streamed"]["lines"]
    early = "".join(l["line"] for l in lines if l["at"] < 1000)
    late = "".join(l["line"] for l in lines if l["at"] >= 1000)
    assert (early, late) == ("first\n", "second\n")
    assert "".join(seen["streamed"]["stdout"]) == "first\nsecond\n"

    assert seen["value"]["text"] == "42" and seen["value"]["main"] == [True]
    assert seen["value"]["count"] >= 2
    assert seen["plot"] == [{"formats": ["png"], "main": False,
                             "png": "iVBORw0K"}]          # a PNG, base64
    html, frame = seen["html"]
    assert html == {"html": "<b>bold</b>", "main": False,
                    "text": "<IPython.core.display.HTML object>"}
    assert "<table" in frame["html"] and frame["main"] is True

    assert seen["error"]["name"] == "ZeroDivisionError"
    assert seen["error"]["value"] == "division by zero"
    assert seen["error"]["traceback"].startswith("Traceback")
    assert "1 / 0" in seen["error"]["traceback"]
    assert seen["onError"] == ["NameError"]

    # contexts: separate namespaces, each in its cwd, listed, restarted,
    # removed
    a, b = seen["contexts"]["a"], seen["contexts"]["b"]
    assert a["language"] == "python" and b["cwd"] == "/tmp"
    assert seen["inA"] == "'in a'" and seen["inB"] == "NameError"
    assert {a["id"], b["id"]} <= set(seen["contexts"]["listed"])
    assert seen["cwdB"] == "'/tmp'"
    assert seen["afterRestart"] == "NameError"
    assert seen["removed"]["name"] == "NotFoundError"
    assert b["id"] not in seen["listedAfter"]

    # envs for one run only
    assert seen["env"] == "'bar'" and "envAfter" not in seen

    assert seen["bash"] == "42 baz\n"
    assert seen["bashAfter"] == {"stdout": "\n", "error": "CommandError"}
    assert seen["bashContext"] == {"language": "bash",
                                   "stdout": "in bash context\n"}
    assert seen["otherLanguage"] == {"name": "SandboxError",
                                     "message": "400 Bad Request"}

    # the SDK gave up on a run; the next one ran at once, state intact
    assert seen["timeout"]["name"] == "TimeoutError"
    assert seen["afterTimeout"] == {"text": "'still here'"}


def test_the_sdk_with_a_key(nginx):
    npm_install()
    seen = node("e2b_sdk.mjs", nginx.url + "/e2b", KEY, timeout=180)
    assert seen["value"]["text"] == "42"
    assert seen["removed"]["name"] == "NotFoundError"
    assert seen["afterTimeout"] == {"text": "'still here'"}
    # what the SDK made belongs to its key
    mine = {c["id"] for c in contexts(nginx)}
    assert set(seen["listedAfter"]) <= mine
    assert not mine & {c["id"] for c in contexts(nginx, OTHER)}
    r = nginx.http.get(nginx.url + "/e2b/contexts",
                       headers={"E2B-Traffic-Access-Token": "wrong-key-0123456"})
    assert r.status_code == 401


def test_health(open_nginx):
    r = open_nginx.http.get(open_nginx.url + "/e2b/health")
    assert (r.status_code, r.text) == (200, "OK")


def test_every_line_is_json_and_the_end_is_last(nginx):
    r, lines = execute(nginx, {"code": "print('a')\nimport sys\n"
                                       "print('b', file=sys.stderr)\n7"})
    assert r.headers["Content-Type"] == "application/x-ndjson"
    kinds = [l["type"] for l in lines]
    assert kinds[-3:] == ["result", "number_of_executions",
                          "end_of_execution"]
    assert set(kinds[:-3]) == {"stdout", "stderr"}
    assert "".join(l["text"] for l in of(lines, "stdout")) == "a\n"
    assert "".join(l["text"] for l in of(lines, "stderr")) == "b\n"
    assert all(l["timestamp"].endswith("Z") for l in lines[:-3])
    assert lines[-3] == {"type": "result", "is_main_result": True,
                         "text": "7"}
    assert not r.text.startswith("\n") and "\n\n" not in r.text


def test_silence_is_kept_alive(nginx):
    r, lines = execute(nginx, {"code": "import time\ntime.sleep(1.3)\n'done'"})
    assert len(of(lines, "keepalive")) >= 2
    assert of(lines, "result")[0]["text"] == "'done'"


def test_rich_results_carry_every_format(nginx):
    code = "\n".join([
        "class Rich:",
        "    def _repr_mimebundle_(self, include=None, exclude=None):",
        "        return {'text/plain': 'rich', 'text/markdown': '**md**',",
        "                'image/svg+xml': '<svg/>', 'text/latex': '$x$',",
        "                'application/json': {'k': [1]},",
        "                'application/javascript': 'f()',",
        "                'application/x-custom': 'own'}",
        "display(Rich())",
        "Rich()",
    ])
    r, lines = execute(nginx, {"code": code})
    shown, value = of(lines, "result")
    for res, main in ((shown, False), (value, True)):
        assert res == {"type": "result", "is_main_result": main,
                       "text": "rich", "markdown": "**md**",
                       "svg": "<svg/>", "latex": "$x$", "json": {"k": [1]},
                       "javascript": "f()", "application/x-custom": "own"}


def test_context_and_language_together_are_refused(nginx):
    r, _ = execute(nginx, {"code": "1", "language": "python",
                           "context_id": "0" * 32})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "bad_request"
    r, _ = execute(nginx, {"code": "1", "language": "javascript"})
    assert r.status_code == 400
    r, _ = execute(nginx, {"language": "python"})
    assert r.status_code == 400


def test_an_unknown_or_foreign_context_is_not_found(nginx):
    r, _ = execute(nginx, {"code": "1", "context_id": "0" * 32})
    assert r.status_code == 404
    mine = nginx.http.post(nginx.url + "/e2b/contexts", json={},
                           headers={"X-API-Key": KEY}).json()
    r, _ = execute(nginx, {"code": "1", "context_id": mine["id"]}, key=OTHER)
    assert r.status_code == 404
    for method, path in (("DELETE", ""), ("POST", "/restart")):
        r = nginx.http.request(method, f"{nginx.url}/e2b/contexts/"
                               f"{mine['id']}{path}",
                               headers={"X-API-Key": OTHER})
        assert r.status_code == 404
    r, lines = execute(nginx, {"code": "'mine'", "context_id": mine["id"]})
    assert of(lines, "result")[0]["text"] == "'mine'"


def test_each_key_has_its_own_default_context(nginx):
    execute(nginx, {"code": "who = 'first key'"})
    r, lines = execute(nginx, {"code": "who"}, key=OTHER)
    assert of(lines, "error")[0]["name"] == "NameError"
    r, lines = execute(nginx, {"code": "who"})
    assert of(lines, "result")[0]["text"] == "'first key'"


def test_first_runs_at_once_make_one_default_context(nginx):
    n = nginx
    before = {c["id"] for c in contexts(n, OTHER)}
    results = []

    # bash, OTHER's: no earlier test made that default context
    def bash(i):
        r = requests.post(n.url + "/e2b/execute",
                          json={"code": f"echo run{i} $$",
                                "language": "bash"},
                          headers={"X-Access-Token": OTHER})
        results.append([json.loads(l) for l in r.text.splitlines()])

    threads = [threading.Thread(target=bash, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    made = [c for c in contexts(n, OTHER) if c["id"] not in before]
    assert [c["language"] for c in made] == ["bash"]
    # they took turns in it: every run answered whole, by one shell
    outs = sorted("".join(l["text"] for l in of(lines, "stdout"))
                  for lines in results)
    assert [o.split()[0] for o in outs] == [f"run{i}" for i in range(6)]
    assert len({o.split()[1] for o in outs}) == 1


def test_runs_in_one_context_take_turns(nginx):
    ctx = nginx.http.post(nginx.url + "/e2b/contexts", json={},
                          headers={"X-API-Key": KEY}).json()

    def execute_(code):
        r = requests.post(nginx.url + "/e2b/execute",
                          json={"code": code, "context_id": ctx["id"]},
                          headers={"X-Access-Token": KEY}, stream=True)
        return r

    first = execute_("import time\nprint('first\\n', end='', flush=True)\n"
                     "time.sleep(0.5)\nn = 1\n'first done'")
    lines = first.iter_lines()
    assert json.loads(next(lines))["text"] == "first\n"   # it runs
    second = {}
    t = threading.Thread(target=lambda: second.update(
        r=execute_("n += 1\nn")))
    t.start()
    rest = [json.loads(l) for l in lines]
    t.join()
    assert of(rest, "result")[0]["text"] == "'first done'"
    assert second["r"].status_code == 200
    after = [json.loads(l) for l in second["r"].text.splitlines()]
    assert of(after, "result")[0]["text"] == "2"


def test_closing_the_stream_interrupts_the_run(nginx):
    ctx = nginx.http.post(nginx.url + "/e2b/contexts", json={},
                          headers={"X-API-Key": KEY}).json()
    r = requests.post(nginx.url + "/e2b/execute",
                      json={"code": "import time, os\n"
                                    "print('going\\n', end='', flush=True)\n"
                                    "time.sleep(3)\nopen('ran', 'w').close()",
                            "context_id": ctx["id"]},
                      headers={"X-Access-Token": KEY}, stream=True)
    assert json.loads(next(r.iter_lines()))["text"] == "going\n"
    r.close()
    _, lines = execute(nginx, {"code": "import os, time\ntime.sleep(3.5)\n"
                                       "os.path.exists('ran')",
                               "context_id": ctx["id"]})
    assert of(lines, "result")[0]["text"] == "False"
    assert of(lines, "number_of_executions")[0]["execution_count"] == 2


def test_a_run_waiting_its_turn_whose_client_leaves_never_runs(nginx):
    ctx = nginx.http.post(nginx.url + "/e2b/contexts", json={},
                          headers={"X-API-Key": KEY}).json()

    def post(code, **kw):
        return requests.post(nginx.url + "/e2b/execute",
                             json={"code": code, "context_id": ctx["id"]},
                             headers={"X-Access-Token": KEY}, **kw)

    busy = post("import time\nprint('busy\\n', end='', flush=True)\n"
                "time.sleep(1)",
                stream=True)
    going = busy.iter_lines()            # held: its end would close busy
    assert json.loads(next(going))["text"] == "busy\n"
    with pytest.raises(requests.exceptions.ReadTimeout):
        post("open('waited', 'w').close()", timeout=0.3)
    busy.close()
    r = post("import os\nos.path.exists('waited')")
    lines = [json.loads(l) for l in r.text.splitlines()]
    assert of(lines, "result")[0]["text"] == "False"


def test_restart_gives_a_fresh_namespace_and_waits_for_no_run(nginx):
    ctx = nginx.http.post(nginx.url + "/e2b/contexts",
                          json={"language": None, "cwd": None},
                          headers={"X-API-Key": KEY}).json()
    assert ctx["language"] == "python" and ctx["cwd"] == "/home/pyrepl"
    execute(nginx, {"code": "kept = 1", "context_id": ctx["id"]})
    r = nginx.http.post(f"{nginx.url}/e2b/contexts/{ctx['id']}/restart",
                        headers={"X-API-Key": KEY})
    assert r.status_code == 204
    _, lines = execute(nginx, {"code": "kept", "context_id": ctx["id"]})
    assert of(lines, "error")[0]["name"] == "NameError"
    assert of(lines, "number_of_executions")[0]["execution_count"] == 1
    r = nginx.http.delete(f"{nginx.url}/e2b/contexts/{ctx['id']}",
                          headers={"X-API-Key": KEY})
    assert r.status_code == 204
    assert ctx["id"] not in {c["id"] for c in contexts(nginx)}


def test_env_vars_are_for_that_run_only(nginx):
    code = "import os\nos.environ.get('E2B_T', 'unset')"
    _, lines = execute(nginx, {"code": code, "env_vars": {"E2B_T": "on"}})
    assert of(lines, "result")[0]["text"] == "'on'"
    _, lines = execute(nginx, {"code": code, "env_vars": None})
    assert of(lines, "result")[0]["text"] == "'unset'"
    r, _ = execute(nginx, {"code": code, "env_vars": {"E2B_T": 1}})
    assert r.status_code == 400


def test_input_has_no_one_to_answer(nginx):
    _, lines = execute(nginx, {"code": "input('name? ')"})
    assert of(lines, "error")[0]["name"] == "EOFError"


def test_bad_routes_and_methods(nginx):
    h = {"X-API-Key": KEY}
    assert nginx.http.get(nginx.url + "/e2b/execute",
                          headers=h).status_code == 405
    assert nginx.http.get(nginx.url + "/e2b/nothing",
                          headers=h).status_code == 404
    assert nginx.http.get(nginx.url + "/e2b/contexts/" + "0" * 31,
                          headers=h).status_code == 404
    r = nginx.http.post(nginx.url + "/e2b/contexts",
                        json={"cwd": "x" * 2000}, headers=h)
    assert r.status_code == 400
    r = nginx.http.post(nginx.url + "/e2b/contexts", data="[1]", headers=h)
    assert r.status_code == 400


def test_a_run_waiting_its_turn_is_answered_at_once(nginx):
    """Its headers and keepalives come while it waits, as E2B's do: the
    SDK gives up on headers that take longer than its request timeout."""
    ctx = nginx.http.post(nginx.url + "/e2b/contexts", json={},
                          headers={"X-API-Key": KEY}).json()

    def post(body, **kw):
        return requests.post(nginx.url + "/e2b/execute",
                             json={"context_id": ctx["id"], **body},
                             headers={"X-Access-Token": KEY}, stream=True,
                             **kw)

    busy = post({"code": "import time\nprint('busy\\n', end='', flush=True)"
                         "\ntime.sleep(60)"})
    going = busy.iter_lines()
    assert json.loads(next(going))["text"] == "busy\n"
    # the timeout only keeps a broken server from hanging the test
    waiting = post({"code": "'my turn'"}, timeout=30)
    assert waiting.status_code == 200
    lines = waiting.iter_lines()
    assert json.loads(next(lines)) == {"type": "keepalive"}
    busy.close()                            # interrupts the run ahead
    rest = [json.loads(l) for l in lines]
    assert of(rest, "result")[0]["text"] == "'my turn'"
    assert rest[-1] == {"type": "end_of_execution"}


def test_a_run_that_waited_past_its_timeout_says_so_in_its_lines(nginx):
    ctx = nginx.http.post(nginx.url + "/e2b/contexts", json={},
                          headers={"X-API-Key": KEY}).json()
    busy = requests.post(nginx.url + "/e2b/execute",
                         json={"context_id": ctx["id"],
                               "code": "import time\nprint('busy\\n', end='',"
                                       " flush=True)\ntime.sleep(60)"},
                         headers={"X-Access-Token": KEY}, stream=True)
    going = busy.iter_lines()
    assert json.loads(next(going))["text"] == "busy\n"
    r, lines = execute(nginx, {"code": "1", "context_id": ctx["id"],
                               "timeout_ms": 300})
    assert r.status_code == 200
    assert [l["type"] for l in lines if l["type"] != "keepalive"] == [
        "error", "end_of_execution"]
    assert of(lines, "error")[0]["name"] == "session_busy"
    busy.close()


def test_a_restarted_context_is_in_its_home(nginx):
    ctx = nginx.http.post(nginx.url + "/e2b/contexts", json={"cwd": "/tmp"},
                          headers={"X-API-Key": KEY}).json()
    assert ctx["cwd"] == "/tmp"
    r = nginx.http.post(f"{nginx.url}/e2b/contexts/{ctx['id']}/restart",
                        headers={"X-API-Key": KEY})
    assert r.status_code == 204
    listed = {c["id"]: c for c in contexts(nginx)}[ctx["id"]]
    _, lines = execute(nginx, {"code": "import os\nos.getcwd()",
                               "context_id": ctx["id"]})
    assert of(lines, "result")[0]["text"] == repr(listed["cwd"])
    assert listed["cwd"] == "/home/pyrepl"


def test_transactions_are_not_e2b_s(nginx):
    r, _ = execute(nginx, {"code": "1", "tx_policy": "explicit"})
    assert r.status_code == 400
    r, lines = execute(nginx, {"code": "'still free'"})
    assert of(lines, "result")[0]["text"] == "'still free'"


def test_a_default_context_whose_shell_exited_goes(nginx):
    execute(nginx, {"code": "mark=first", "language": "bash"})

    def bash_contexts():
        return {c["id"] for c in contexts(nginx) if c["language"] == "bash"}

    old = bash_contexts()
    execute(nginx, {"code": "exit 3", "language": "bash"})
    # the next bash run without a context has a new shell
    r, lines = execute(nginx, {"code": "echo ${mark:-new}",
                               "language": "bash"})
    assert "".join(l["text"] for l in of(lines, "stdout")) == "new\n"
    # and the one that exited is listed no more (nor counts for the key)
    wait_for(lambda: len(old - bash_contexts()) == 1,
             what="the exited default context to go")
    assert len(bash_contexts()) == len(old)


def test_runs_waiting_their_turn_run_in_the_order_they_came(nginx):
    ctx = nginx.http.post(nginx.url + "/e2b/contexts", json={},
                          headers={"X-API-Key": KEY}).json()

    def post(code):
        return requests.post(nginx.url + "/e2b/execute",
                             json={"code": code, "context_id": ctx["id"]},
                             headers={"X-Access-Token": KEY}, stream=True,
                             timeout=30)

    busy = post("import time\norder = []\n"
                "print('busy\\n', end='', flush=True)\ntime.sleep(1)")
    going = busy.iter_lines()
    assert json.loads(next(going))["text"] == "busy\n"
    # each answer begins at once: each run is in line before the next comes
    waiting = [post(f"order.append({i})") for i in range(10)]
    list(going)
    for r in waiting:
        assert json.loads(list(r.iter_lines())[-1]) == {
            "type": "end_of_execution"}
    _, lines = execute(nginx, {"code": "order", "context_id": ctx["id"]})
    assert of(lines, "result")[0]["text"] == str(list(range(10)))
