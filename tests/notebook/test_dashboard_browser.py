"""The dashboard widget rendered by JupyterLab in headless Chromium.

A real ``stratalab server`` (a Jupyter server with JupyterLab) runs a real
kernel, the notebook cell ``c.dashboard()`` is executed from the browser, and
what the browser draws is checked against the REST API: the widget
frontends (ipywidgets, Plotly's FigureWidget) load, the refresh runs on the
kernel's event loop, and the tables and chart appear.

Set ``STRATALAB_UPDATE_SCREENSHOTS=1`` to write ``docs/notebook-dashboard.png``;
otherwise the screenshot goes to the test's tmp dir.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from stratalab.launcher import start_server
from stratalab.notebook import Client
from stratalab.testing import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

CHROMIUM = os.environ.get("STRATALAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-component-update"]
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "notebook-dashboard.png"
TOKEN = "dashboard-test-token"
CELL = "from stratalab import Client\nc = Client()\nboard = c.dashboard(interval=1)\nboard"
SLEEPER = "import time\ntime.sleep(300)\n"

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is missing")
pytest.importorskip("jupyterlab", reason="jupyterlab is missing")


def write_lab_files(tmp: Path) -> list[str]:
    """A notebook with the dashboard cell, quiet JupyterLab settings; the server's arguments."""
    root, settings = tmp / "root", tmp / "settings"
    quiet = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    quiet.parent.mkdir(parents=True)
    quiet.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    root.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(nb, root / "dashboard.ipynb")
    return [
        "--workers",
        "2",  # one for the sleeping task, one for the training job
        f"--ServerApp.root_dir={root}",
        f"--IdentityProvider.token={TOKEN}",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
    ]


def test_dashboard_renders_live_in_jupyterlab(tmp_path: Path):
    args = write_lab_files(tmp_path)
    runtime = {"JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    with start_server(tmp_path / "data", extra_args=args, env=runtime) as server:
        c = Client(server.url, api_key=server.info["admin_key"])
        done = c.jobs.submit("finished", "print('ok')")["job_id"]
        c.jobs.wait(done, timeout=90)
        running = c.jobs.submit("train-model", SLEEPER, priority=8, max_retries=0)["job_id"]
        queued = c.jobs.submit("needs-a-gpu", "print(1)", gpu=1)["job_id"]
        wait_until(lambda: c.jobs.get(running)["status"] == "RUNNING", timeout=60)
        ds = c.datasets.create("digits", format="builtin", source="digits")
        training = c.training.start(ds["id"], "mlp", hidden=[32], epochs=500, name="digits-mlp")
        wait_until(
            lambda: (
                (c.jobs.get(training["job_id"]).get("progress") or {}).get("current_round", 0) >= 3
            ),
            timeout=90,
        )
        worker_id = c.workers.records()[0]["id"]
        base = str(server.info["server_url"]).rstrip("/")
        shot = SCREENSHOT if os.environ.get("STRATALAB_UPDATE_SCREENSHOTS") else tmp_path / "d.png"

        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1280, "height": 2000}).new_page()
            page.goto(f"{base}/lab/tree/dashboard.ipynb?reset&token={TOKEN}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            page.get_by_text("| Idle").wait_for(timeout=120_000)  # the kernel is ready
            page.locator(".jp-Cell .jp-InputArea-editor").first.click()
            page.keyboard.press("Shift+Enter")
            output = page.locator(".jp-OutputArea-output").first
            output.locator("table").first.wait_for(timeout=60_000)
            output.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=60_000)
            # the refresh goes on in the background: the chart gains points by itself
            # 3 traces of queue and throughput, 2 of the training job's loss and accuracy
            page.wait_for_function(
                "() => document.querySelectorAll('.js-plotly-plot .scatterlayer .trace')"
                ".length >= 5",
                timeout=60_000,
            )
            text = output.inner_text()
            output.screenshot(path=str(shot))
            browser.close()
        c.jobs.cancel(running)
        c.jobs.cancel(queued)
        c.jobs.cancel(training["job_id"])
        c.close()

    assert "connected" in text and "disconnected" not in text
    assert worker_id in text
    assert "digits-mlp" in text and "round" in text and "loss" in text
    assert running in text and "train-model" in text
    assert queued in text and "waiting for GPU=1" in text
    assert shot.stat().st_size > 10_000
