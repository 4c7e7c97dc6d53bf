"""Debian's classic Notebook (jupyter-notebook 6.4, --gateway-url) in
front of PyREPL's Jupyter dialect, used in a headless Chromium as a person
uses it: a notebook opened, a cell that prints, one that calls input()
answered in the box the page shows, one that plots."""

import json

import pytest

from helpers import Nginx, chromium, jupyter_gateway, wait_for

KEY = "notebook-key-0123456789"
TOKEN = "notebook-token"

NOTEBOOK = {"type": "notebook", "content": {
    "cells": [{"cell_type": "code", "source": src, "metadata": {},
               "outputs": [], "execution_count": None}
              for src in ('print("hello from pyrepl")',
                          'x = input("who? ")\nprint("hello", x)',
                          "import matplotlib.pyplot as plt\n"
                          "plt.plot([1, 2, 3])\nplt.show()")],
    "metadata": {"kernelspec": {"name": "python3", "language": "python",
                                "display_name": "Python 3"}},
    "nbformat": 4, "nbformat_minor": 5}}


@pytest.fixture
def notebook(tmp_path):
    n = Nginx(http_extra=f"pyrepl_api_key {KEY};",
              server_extra="location /api { pyrepl; "
                           "pyrepl_dialect jupyter; }").start()
    try:
        with jupyter_gateway("jupyter-notebook", n.url, KEY, tmp_path,
                             TOKEN) as url:
            yield n, url
    finally:
        n.check_and_clean()


def outputs(driver, cell):
    return json.loads(driver.execute_script(
        f"return JSON.stringify(Jupyter.notebook.get_cell({cell})"
        f".output_area.outputs)"))


def test_a_notebook_runs_its_cells_in_pyrepl(notebook):
    from selenium.webdriver.common.by import By

    n, url = notebook
    n.http.put(url + "/api/contents/t.ipynb", json=NOTEBOOK,
               headers={"Authorization": "token " + TOKEN}).raise_for_status()
    driver = chromium()
    try:
        driver.get(f"{url}/notebooks/t.ipynb?token={TOKEN}")
        wait_for(lambda: driver.execute_script(
                     "return typeof Jupyter !== 'undefined' "
                     "&& Jupyter.notebook && Jupyter.notebook.kernel "
                     "&& Jupyter.notebook.kernel.is_connected()"),
                 timeout=60, what="the notebook's kernel to connect")

        driver.execute_script("Jupyter.notebook.execute_cells([0, 1])")
        printed = wait_for(lambda: outputs(driver, 0), timeout=30,
                           what="the first cell's output")
        assert printed == [{"output_type": "stream", "name": "stdout",
                            "text": "hello from pyrepl\n"}]

        box, = wait_for(lambda: driver.find_elements(
                            By.CSS_SELECTOR, "input.raw_input"),
                        timeout=30, what="input()'s box")
        box.send_keys("bob\n")
        wait_for(lambda: "hello bob" in "".join(
                     o.get("text", "") for o in outputs(driver, 1)),
                 timeout=30, what="the answer's output")

        driver.execute_script("Jupyter.notebook.execute_cells([2])")
        img, = wait_for(lambda: driver.find_elements(
                            By.CSS_SELECTOR, ".output_png img"),
                        timeout=60, what="the plot")
        assert img.get_attribute("src").startswith(
            "data:image/png;base64,iVBORw0KGgo")
        shown = outputs(driver, 2)
        assert [o["output_type"] for o in shown] == ["display_data"]
        kernel = driver.execute_script(
            "return Jupyter.notebook.kernel.id")
    finally:
        driver.quit()
    # the notebook's kernel is a PyREPL session
    r = n.http.get(f"{n.url}/api/kernels/{kernel}",
                   headers={"Authorization": "token " + KEY})
    assert r.status_code == 200
