"""The web IDE (examples/ide) in a real browser: headless Chromium through
chromium-driver, on a test nginx that serves the page at / beside the API,
as conf/pyrepl.conf does, with Debian's CodeMirror when it is installed.
What the tests do is what a person does: type in a cell, press
Shift+Enter, answer input(), press Interrupt, reload the page."""

import json
import os

import pytest

pytest.importorskip("selenium", reason="python3-selenium is not installed "
                                       "(util/test installs it)")

from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

from helpers import BUILD, Nginx, chromium, wait_for  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
IDE = os.path.join(ROOT, "examples", "ide")
CODEMIRROR = "/usr/share/javascript/codemirror"
KEY = "ide-key-0123456789abcdef"
SCREENSHOT = os.path.join(BUILD, "ide.png")


@pytest.fixture(scope="module")
def nginx():
    n = Nginx(http_extra=f"pyrepl_api_key {KEY}; "
                         "include /etc/nginx/mime.types;",
              server_extra=f"location / {{ root {IDE}; }} "
                           f"location /codemirror/ {{ alias {CODEMIRROR}/; }} "
                           "location = /favicon.ico { return 204; } "
                           "client_header_timeout 2s; keepalive_timeout 2s;"
              ).start()
    n.http.headers["Authorization"] = f"Bearer {KEY}"
    yield n
    n.check_and_clean()


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    driver.set_window_size(1280, 1000)
    yield driver
    driver.quit()


@pytest.fixture
def ide(browser, nginx):
    """The IDE freshly opened with the key entered, as a first visit."""
    blank(browser, nginx)
    browser.get(nginx.url + "/")
    key = browser.find_element(By.ID, "key")
    key.send_keys(KEY)
    browser.execute_script("arguments[0].dispatchEvent(new Event('change'))",
                           key)
    wait_for(lambda: session_id(browser), what="the IDE's session")
    # the key taken, the first cell has the focus
    wait_for(lambda: browser.execute_script(
        "return document.querySelector('#notebook .cell')"
        ".contains(document.activeElement)"), what="the first cell's focus")
    return browser


def blank(browser, nginx):
    """A page of the IDE's origin without the IDE (a 404), its storage
    cleared: no IDE page is left to write to it."""
    browser.get(nginx.url + "/no-such-page")
    browser.execute_script("localStorage.clear()")


def session_id(browser):
    s = browser.execute_script("return localStorage.getItem('pyrepl.session')")
    return (json.loads(s) or {}).get("id") if s else None


def cells(browser):
    return browser.find_elements(By.CSS_SELECTOR, "#notebook .cell")


def output(cell):
    return cell.find_element(By.CSS_SELECTOR, ".output")


def type_and_run(browser, code, keys=(Keys.SHIFT, Keys.ENTER)):
    """Type code where the focus is (a cell's editor) and press keys."""
    chain = ActionChains(browser)
    for line_no, line in enumerate(code.split("\n")):
        if line_no:
            chain.send_keys(Keys.ENTER)
            # CodeMirror indents after ':'; start each line afresh
            chain.key_down(Keys.SHIFT).send_keys(Keys.HOME).key_up(Keys.SHIFT)
            chain.send_keys(Keys.DELETE)
        chain.send_keys(line)
    chain.key_down(keys[0]).send_keys(keys[1]).key_up(keys[0]).perform()


def click_editor(cell):
    """Click in a cell's editor, as a person does to type there."""
    lines = cell.find_elements(By.CSS_SELECTOR, ".CodeMirror-line")
    (lines[-1] if lines else
     cell.find_element(By.CSS_SELECTOR, ".input textarea")).click()


def text_of(cell, what=".output"):
    """The text of what in cell, "" while there is none."""
    found = cell.find_elements(By.CSS_SELECTOR, what)
    return found[0].text if found else ""


def prompt_of(cell):
    return cell.find_element(By.CSS_SELECTOR, ".prompt").text


def test_the_first_cell_has_the_focus_and_output_streams(ide):
    assert ide.execute_script("return !!window.CodeMirror") == \
        os.path.exists(CODEMIRROR + "/lib/codemirror.js")
    # the page's style is applied (served as text/css)
    assert ide.execute_script("return getComputedStyle(document"
                              ".querySelector('header')).display") == "flex"
    first = cells(ide)[0]
    assert ide.execute_script(
        "return arguments[0].contains(document.activeElement)", first)
    # stdout shows while the run still waits for input(): it streamed
    type_and_run(ide, "import sys\nprint('hello', flush=True)\n"
                      "print('oops', file=sys.stderr)\nname = input('name? ')")
    wait_for(lambda: "hello" in text_of(first, "pre.stdout"),
             what="streamed stdout")
    assert text_of(first, "pre.stderr") == "oops"
    assert prompt_of(first) == "[*]:"
    # the answer box took the focus: typing there answers input()
    box = first.find_element(By.CSS_SELECTOR, "form.ask input")
    wait_for(lambda: ide.switch_to.active_element == box,
             what="the input box to take the focus")
    ActionChains(ide).send_keys("Ada", Keys.ENTER).perform()
    wait_for(lambda: prompt_of(first) == "[1]:", what="the run to end")
    assert "name? Ada" in text_of(first)
    # Shift+Enter moved on to a new cell, whose editor has the focus
    second = cells(ide)[1]
    assert ide.execute_script(
        "return arguments[0].contains(document.activeElement)", second)
    type_and_run(ide, "name.upper()")
    wait_for(lambda: prompt_of(second) == "[2]:", what="the second run")
    assert text_of(second, "pre.result") == "'ADA'"


def test_errors_show_their_traceback(ide):
    type_and_run(ide, "def f():\n    return 1 / 0\nf()")
    first = cells(ide)[0]
    wait_for(lambda: prompt_of(first) == "[1]:", what="the run to end")
    tb = text_of(first, "pre.error")
    assert tb.startswith("Traceback") and "ZeroDivisionError" in tb
    assert "return 1 / 0" in tb


def test_a_plot_and_html_show_as_such(ide):
    type_and_run(ide, "import matplotlib.pyplot as plt\n"
                      "plt.plot([1, 2, 3], [3, 1, 2])\nplt.show()\n"
                      "import pandas as pd\npd.DataFrame({'col': [7, 8]})")
    first = cells(ide)[0]
    wait_for(lambda: prompt_of(first) == "[1]:", timeout=30,
             what="the plot's run to end")
    img = first.find_element(By.CSS_SELECTOR, ".output img")
    assert img.get_attribute("src").startswith("data:image/png;base64,")
    assert ide.execute_script("return arguments[0].naturalWidth", img) > 100
    frame = first.find_element(By.CSS_SELECTOR, ".output iframe.html")
    assert frame.get_attribute("sandbox") == "allow-same-origin"
    ide.switch_to.frame(frame)
    assert "col" in ide.find_element(By.TAG_NAME, "table").text
    ide.switch_to.default_content()
    ide.save_screenshot(SCREENSHOT)


def test_html_output_runs_no_script(ide):
    type_and_run(ide, "from IPython.display import HTML, display\n"
                      "display(HTML('<img src=x onerror=\"parent.document"
                      ".title=1\"><script>parent.document.title=2</script>'"
                      "))")
    first = cells(ide)[0]
    wait_for(lambda: prompt_of(first) == "[1]:", what="the run to end")
    first.find_element(By.CSS_SELECTOR, ".output iframe.html")
    assert ide.title == "PyREPL"


def test_interrupt_stops_a_long_run(ide, nginx):
    type_and_run(ide, "import time\nprint('start', flush=True)\n"
                      "time.sleep(60)")
    first = cells(ide)[0]
    wait_for(lambda: "start" in text_of(first), what="the run to start")
    ide.find_element(By.ID, "interrupt").click()
    wait_for(lambda: prompt_of(first) == "[1]:", what="the interrupt")
    assert "KeyboardInterrupt" in text_of(first, "pre.error")
    assert cells(ide)[0].get_attribute("data-status") == "interrupted"


def test_a_reload_keeps_the_session_and_the_cells(ide):
    sid = session_id(ide)
    type_and_run(ide, "kept = 6 * 7")
    wait_for(lambda: prompt_of(cells(ide)[0]) == "[1]:", what="the run")
    ide.refresh()
    wait_for(lambda: len(cells(ide)) == 2, what="the cells back")
    assert session_id(ide) == sid
    assert "kept = 6 * 7" in text_of(cells(ide)[0], ".input")
    click_editor(cells(ide)[1])
    type_and_run(ide, "kept")
    second = cells(ide)[1]
    wait_for(lambda: prompt_of(second) == "[2]:", what="the run after")
    assert text_of(second, "pre.result") == "42"


def test_variables_checkpoint_and_restore(ide):
    type_and_run(ide, "value = 'before'")
    wait_for(lambda: "value" in ide.find_element(By.ID, "vars").text,
             what="the variables panel")
    assert "str" in ide.find_element(By.ID, "vars").text
    ide.find_element(By.ID, "checkpoint").click()
    wait_for(lambda: ide.find_element(By.ID, "checkpoints")
             .get_attribute("value"), what="the checkpoint listed")
    click_editor(cells(ide)[1])
    type_and_run(ide, "value = 'after'")
    wait_for(lambda: prompt_of(cells(ide)[1]) == "[2]:",
             what="the second run")
    ide.find_element(By.ID, "restore").click()
    wait_for(lambda: "restored" in ide.find_element(By.ID, "status").text,
             what="the restore")
    third = cells(ide)[2]
    click_editor(third)
    type_and_run(ide, "value")
    wait_for(lambda: prompt_of(third) == "[3]:", what="the third run")
    assert text_of(third, "pre.result") == "'before'"


def test_restart_and_bash(ide, nginx):
    old = session_id(ide)
    type_and_run(ide, "x = 1")
    wait_for(lambda: prompt_of(cells(ide)[0]) == "[1]:", what="the run")
    select = ide.find_element(By.ID, "language")
    select.find_element(By.CSS_SELECTOR, "option[value=bash]").click()
    wait_for(lambda: session_id(ide) not in (None, old),
             what="a new session")
    assert prompt_of(cells(ide)[0]) == "[ ]:"
    r = nginx.http.get(f"{nginx.url}/session/{old}")
    assert r.status_code == 404                         # the old one went
    click_editor(cells(ide)[1])
    type_and_run(ide, "echo $((6 * 7)) from $0")
    second = cells(ide)[1]
    wait_for(lambda: "42 from" in text_of(second), what="bash's answer")
    assert nginx.http.get(f"{nginx.url}/session/{session_id(ide)}"
                          ).json()["language"] == "bash"


def test_without_the_key_the_ide_asks_for_it(browser, nginx):
    blank(browser, nginx)
    browser.get(nginx.url + "/")
    wait_for(lambda: "API key" in browser.find_element(By.ID, "status").text,
             what="the IDE to ask for the key")
    assert browser.switch_to.active_element == \
        browser.find_element(By.ID, "key")
