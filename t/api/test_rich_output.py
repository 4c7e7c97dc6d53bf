"""Rich output in Python sessions: results carry their whole MIME bundle,
display() sends display_data in the middle of a run (SSE, WebSocket, the
JSON answer's "displays"), matplotlib figures arrive as PNG, pandas
DataFrames as HTML, IPython.display's objects through its own display()."""

import asyncio
import base64
import importlib.util
import json

import pytest
import websockets

from helpers import Nginx, events_of, ws_url

PNG = b"\x89PNG\r\n\x1a\n"


def needs(module):
    """Skip unless Debian's python3 has module (util/test installs it)."""
    return pytest.mark.skipif(importlib.util.find_spec(module) is None,
                              reason=f"{module} is not installed for "
                                     f"/usr/bin/python3 (util/test installs "
                                     f"it)")


RICH = '''
class Rich:
    def __repr__(self):
        return "Rich()"
    def _repr_html_(self):
        return "<b>rich</b>"
    def _repr_markdown_(self):
        return "**rich**", {"note": 1}
    def _repr_svg_(self):
        return "<svg/>"
    def _repr_png_(self):
        return b"\\x89PNG\\r\\n\\x1a\\nrest"
    def _repr_jpeg_(self):
        return b"\\xff\\xd8jpeg"
    def _repr_latex_(self):
        return "$x^2$"
    def _repr_json_(self):
        return {"a": [1, 2]}
'''


def test_a_result_carries_its_whole_mime_bundle(nginx, session):
    nginx.run_json(session, RICH)
    events = nginx.run(session, "Rich()")
    result, = events_of(events, "result")
    data = result["data"]
    assert data["text/plain"] == "Rich()"
    assert data["text/html"] == "<b>rich</b>"
    assert data["text/markdown"] == "**rich**"
    assert result["metadata"] == {"text/markdown": {"note": 1}}
    assert data["image/svg+xml"] == "<svg/>"
    assert base64.b64decode(data["image/png"]) == PNG + b"rest"
    assert base64.b64decode(data["image/jpeg"]) == b"\xff\xd8jpeg"
    assert data["text/latex"] == "$x^2$"
    assert data["application/json"] == {"a": [1, 2]}
    assert result["execution_count"] == 2
    # the JSON answer's result is the same bundle
    answer = nginx.run_json(session, "Rich()")
    assert answer["result"] == data


def test_mimebundle_and_broken_formatters(nginx, session):
    nginx.run_json(session, '''
class Bundle:
    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/html": "<i>b</i>", "text/plain": "B"}, {"k": "v"}
class Broken:
    def __repr__(self):
        return "Broken()"
    def _repr_html_(self):
        raise ValueError("no")
    def _repr_markdown_(self):
        return "*ok*"
class Anything:
    def __getattr__(self, name):
        return lambda *a, **k: object()
    def __repr__(self):
        return "Anything()"
''')
    assert nginx.run_json(session, "Bundle()")["result"] == {
        "text/html": "<i>b</i>", "text/plain": "B"}
    # a formatter that raises costs its own MIME type only, as in IPython
    assert nginx.run_json(session, "Broken()")["result"] == {
        "text/markdown": "*ok*", "text/plain": "Broken()"}
    # what no JSON can carry is left out
    assert nginx.run_json(session, "Anything()")["result"] == {
        "text/plain": "Anything()"}
    # a class is not its instances
    assert nginx.run_json(session, "Broken")["result"] == {
        "text/plain": "<class '__main__.Broken'>"}
    # a plain value: text/plain only, as before
    assert nginx.run_json(session, "1 + 1")["result"] == {"text/plain": "2"}
    # but a subclass of a built-in type has its own formatters
    nginx.run_json(session, "class Html(int):\n"
                            "    def _repr_html_(self):\n"
                            "        return '<b>%d</b>' % self")
    assert nginx.run_json(session, "Html(3)")["result"] == {
        "text/html": "<b>3</b>", "text/plain": "3"}


def test_display_sends_display_data_in_order_with_the_output(nginx, session):
    nginx.run_json(session, RICH)
    code = ("import sys\n"
            "print('before')\n"
            "sys.stderr.write('err\\n')\n"
            "display(Rich(), 'two')\n"
            "print('after')\n"
            "display({'text/html': '<p>raw</p>'}, raw=True)\n"
            "display(Rich(), metadata={'m': 1})")
    events = [(e, d) for e, d in nginx.run(session, code)
              if e not in ("init", "execution_complete")]
    shown = []                 # a print's writes may come as one event or two
    for e, d in events:
        if e in ("stdout", "stderr") and shown and \
                shown[-1].startswith(e + ":"):
            shown[-1] += d["text"]
        elif e in ("stdout", "stderr"):
            shown.append(e + ":" + d["text"])
        else:
            shown.append(e)
    assert shown == ["stdout:before\n", "stderr:err\n",
                     "display_data", "display_data", "stdout:after\n",
                     "display_data", "display_data"]
    displays = events_of(events, "display_data")
    assert displays[0]["data"]["text/html"] == "<b>rich</b>"
    assert displays[1] == {"data": {"text/plain": "'two'"}, "metadata": {}}
    assert displays[2] == {"data": {"text/html": "<p>raw</p>",
                                    "text/plain": ""}, "metadata": {}}
    assert displays[3]["metadata"] == {"text/markdown": {"note": 1}, "m": 1}
    # display() returns None: no result
    assert events_of(events, "result") == []

    answer = nginx.run_json(session, code)
    assert answer["stdout"] == "before\nafter\n"
    assert [d["data"]["text/plain"] for d in answer["displays"]] == [
        "Rich()", "'two'", "", "Rich()"]
    assert nginx.run_json(session, "1")["displays"] == []


def test_display_data_over_the_websocket(nginx, session):
    async def go():
        async with websockets.connect(ws_url(nginx, session)) as ws:
            await ws.send(json.dumps({"type": "run", "id": "r", "code":
                                      "print(1); display(2); print(3)"}))
            seen = []
            while not seen or seen[-1]["type"] != "execution_complete":
                seen.append(json.loads(await asyncio.wait_for(ws.recv(),
                                                              10)))
            return seen

    seen = asyncio.run(go())
    kinds = [m["type"] for m in seen if m["type"] != "stdout"
             or m["text"].strip()]
    assert kinds == ["init", "stdout", "display_data", "stdout",
                     "execution_complete"]
    shown, = [m for m in seen if m["type"] == "display_data"]
    assert shown["data"] == {"text/plain": "2"} and shown["id"] == "r"


def test_display_in_a_forked_child_prints_its_text(nginx, session):
    answer = nginx.run_json(session, '''
import os
pid = os.fork()
if pid == 0:
    display("from the child")
    os._exit(0)
os.waitpid(pid, 0)
''')
    assert answer["stdout"] == "'from the child'\n"
    assert answer["displays"] == []
    assert answer["status"] == "ok"


@pytest.fixture(scope="module")
def small():
    n = Nginx(http_extra="pyrepl_max_output 64k;").start()
    yield n
    n.check_and_clean()


def test_display_data_counts_toward_pyrepl_max_output(small):
    sid = small.create()
    events = small.run(sid, "while True:\n"
                            "    display({'text/html': 'x' * 20000}, "
                            "raw=True)")
    assert len(events_of(events, "display_data")) == 3   # 60,000 bytes fit
    assert "pyrepl_max_output" in "".join(
        d["text"] for d in events_of(events, "stderr"))
    end, = events_of(events, "execution_complete")
    assert end["status"] == "interrupted"
    assert small.run_json(sid, "display(1)")["displays"] == [
        {"data": {"text/plain": "1"}, "metadata": {}}]


@needs("matplotlib")
def test_plots_arrive_as_png(nginx, session):
    events = nginx.run(session, "import matplotlib.pyplot as plt\n"
                                "plt.plot([1, 2, 3])\n"
                                "plt.show()\n"
                                "print('shown')\n"
                                "plt.figure(); plt.bar([1], [2])")
    kinds = [e for e, d in events if e in ("stdout", "display_data")]
    assert kinds[0] == "display_data" and "stdout" in kinds[1:]
    first, second = events_of(events, "display_data")
    for shown in (first, second):
        assert base64.b64decode(shown["data"]["image/png"]).startswith(PNG)
        assert shown["data"]["text/plain"].startswith("<Figure size")
        assert shown["metadata"]["image/png"]["width"] > 100
    # the figure left open at the end came after what the run printed
    assert kinds[-1] == "display_data"
    # and is closed: the next run shows nothing of it
    answer = nginx.run_json(session, "len(plt.get_fignums())")
    assert answer["result"] == {"text/plain": "0"}
    assert answer["displays"] == []


@needs("pandas")
def test_a_dataframe_is_html(nginx, session):
    answer = nginx.run_json(session, "import pandas as pd\n"
                                     "pd.DataFrame({'a': [1, 2]})")
    assert "<table" in answer["result"]["text/html"]
    assert "a" in answer["result"]["text/plain"]


@needs("IPython")
def test_ipython_display_objects(nginx, session):
    answer = nginx.run_json(session, '''
from IPython.display import display, HTML, Markdown, Image
display(HTML("<u>h</u>"), Markdown("*m*"))
Image(data=b"\\x89PNG\\r\\n\\x1a\\n" + bytes(8), format="png")
''')
    html, md = answer["displays"]
    assert html["data"]["text/html"] == "<u>h</u>"
    assert md["data"]["text/markdown"] == "*m*"
    assert base64.b64decode(answer["result"]["image/png"]).startswith(PNG)
