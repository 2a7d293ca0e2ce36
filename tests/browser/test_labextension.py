"""The JupyterLab panel (``labextension/``) in a real browser.

A real ``jupyter lab`` with the StrataLab extension and one Dask worker runs as
a child process; headless Chromium (Debian's ``/usr/bin/chromium``, driven by
Playwright) opens JupyterLab with the server's token, opens the StrataLab
panel, and does what a user does: reads the workers, submits tasks from the
form, watches them finish, cancels one. What the panel shows is checked
against the REST API. The tests skip only when Chromium or Playwright is
missing; ``.ci/run`` installs both.

Set ``STRATALAB_UPDATE_SCREENSHOTS=1`` to write the screenshot to
``docs/labextension-panel.png``; otherwise it goes to the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratalab.launcher import ServerProcess, free_port
from stratalab.testing import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

CHROMIUM = os.environ.get("STRATALAB_CHROMIUM", "/usr/bin/chromium")
#: This machine has no network beyond loopback: keep Chromium from reaching out.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "labextension-panel.png"
EXTENSION = "stratalab-labextension"
TOKEN = "browser-test-token"
SIDEBAR_TAB = '.jp-SideBar.jp-mod-left [data-id="stratalab-sidebar"]'
#: generous waits (ms): a job's run, a page load, the panel's poll with back-off.
LONG = 120_000
SHORT = 30_000

if not Path(CHROMIUM).exists():
    pytest.skip(
        f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is missing (pip install -e '.[test]')"
)
pytest.importorskip("jupyterlab", reason="jupyterlab is missing (pip install -e '.[test]')")


@dataclass
class Lab:
    """A running ``jupyter lab`` with StrataLab, and an admin client of its API."""

    server: ServerProcess
    url: str
    token: str
    api: httpx.Client

    def job(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/{id}`` with the admin key."""
        resp = self.api.get(f"/jobs/{job_id}")
        resp.raise_for_status()
        return dict(resp.json())


def labextension_installed() -> bool:
    """Whether the built panel is where JupyterLab looks for prebuilt extensions."""
    from jupyter_core.paths import jupyter_path

    return any(
        (Path(d) / EXTENSION / "package.json").exists() for d in jupyter_path("labextensions")
    )


def start_lab(tmp: Path) -> ServerProcess:
    """``jupyter lab`` on a free port, one worker, and settings that keep the UI quiet."""
    data_dir, root_dir, settings = tmp / "data", tmp / "root", tmp / "settings"
    for d in (data_dir, root_dir):
        d.mkdir(parents=True)
    # No "get Jupyter news?" toast over the panel, no update checks (no network here).
    apputils = settings / "@jupyterlab" / "apputils-extension"
    notification = apputils / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    log_path = tmp / "lab.log"
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={free_port()}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root_dir}",
        f"--IdentityProvider.token={TOKEN}",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
        f"--StrataLab.data_dir={data_dir}",
        "--StrataLab.n_workers=1",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--ServerApp.allow_root=True")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root_dir, start_new_session=True
        )
    info_path = data_dir / "server.json"

    def announced() -> dict[str, Any] | None:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{tail}")
        try:
            info = json.loads(info_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return info if info.get("pid") == proc.pid else None

    try:
        info = wait_until(announced, timeout=180, interval=0.2, what="jupyter lab's server.json")
    except BaseException:
        proc.kill()
        raise
    return ServerProcess(proc, info, log_path)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A ``jupyter lab`` server shared by the tests of this module."""
    if not labextension_installed():
        pytest.fail(
            f"the {EXTENSION} labextension is not installed: `pip install -e .` builds it "
            "with Node.js and npm (see labextension/README.md)"
        )
    server = start_lab(tmp_path_factory.mktemp("lab"))
    info = server.info
    api = httpx.Client(base_url=info["url"], headers={"X-API-Key": info["admin_key"]}, timeout=30)
    base = str(info["server_url"]).replace("localhost", "127.0.0.1").rstrip("/")
    try:
        wait_until(
            lambda: api.get("/workers").json()["total"] >= 1,
            timeout=120,
            interval=0.2,
            what="the Dask worker",
        )
        yield Lab(server, base, info["token"], api)
    finally:
        api.close()
        server.stop()


@pytest.fixture
def page(lab: Lab) -> Iterator[Any]:
    """JupyterLab in headless Debian Chromium, loaded and logged in with the token.

    Playwright starts per test, after pytest-jupyter's autouse event loop, so
    that fixture never takes Playwright's loop for its own.
    """
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1360, "height": 860})
        context.set_default_timeout(SHORT)
        pg = context.new_page()
        # `reset`: each test starts from the default layout, not the last test's.
        pg.goto(f"{lab.url}/lab?reset&token={lab.token}")
        pg.wait_for_selector(".jp-LauncherCard", timeout=LONG)  # the app has started
        pg.wait_for_selector(SIDEBAR_TAB, state="attached")  # and so has the panel's plugin
        yield pg
        browser.close()


def open_from_palette(page: Any) -> Any:
    """Open the panel in the main area through the command palette."""
    page.keyboard.press("Control+Shift+C")
    palette = page.locator("#command-palette input")
    palette.fill("StrataLab")
    page.locator("#command-palette .lm-CommandPalette-item", has_text="StrataLab").first.click()
    panel = page.locator("#stratalab-main .jp-StrataLab")
    panel.wait_for()
    return panel


def job_row(panel: Any, job_id: str) -> Any:
    return panel.locator(f'[data-testid="jobs"] tr[data-job-id="{job_id}"]')


def submit(panel: Any, name: str, entrypoint: str, *, gpu: int = 0) -> str:
    """Fill in the form, press Submit, and return the new job's id from the notice."""
    form = panel.locator('[data-testid="submit-form"]')
    form.locator('input[name="name"]').fill(name)
    form.locator('input[name="entrypoint"]').fill(entrypoint)
    form.locator('input[name="gpu"]').fill(str(gpu))
    form.locator('button[type="submit"]').click()
    notice = panel.locator('[data-testid="notice"]', has_text=f"Submitted {name} as")
    notice.wait_for()
    match = re.search(r"as (job_[A-Za-z0-9]+)", notice.inner_text())
    assert match, notice.inner_text()
    return match.group(1)


def expect_status(panel: Any, job_id: str, status: str, timeout: int = LONG) -> None:
    job_row(panel, job_id).and_(panel.locator(f'tr[data-status="{status}"]')).wait_for(
        timeout=timeout
    )


def test_panel_shows_workers_runs_and_cancels_jobs(lab: Lab, page: Any, tmp_path: Path):
    panel = open_from_palette(page)
    conn = panel.locator('[data-testid="connection"]')
    sync_api.expect(conn).to_have_attribute("data-connection", "connected", timeout=LONG)

    # The workers table shows exactly the server's workers.
    workers = lab.api.get("/workers").json()["items"]
    rows = panel.locator('[data-testid="workers"] tbody tr')
    sync_api.expect(rows).to_have_count(len(workers), timeout=SHORT)
    for w in workers:
        row = panel.locator(f'tr[data-worker-id="{w["id"]}"]')
        sync_api.expect(row).to_contain_text(w["address"].split("://")[-1])
        sync_api.expect(row).to_contain_text("active")
    status = lab.api.get("/status").json()
    sync_api.expect(panel.locator('[data-testid="status"]')).to_contain_text(status["version"])

    # A task submitted from the form shows up and reaches COMPLETED.
    done = submit(panel, "hello", "echo hello from the panel")
    job_row(panel, done).wait_for()
    expect_status(panel, done, "COMPLETED")
    assert lab.job(done)["status"] == "COMPLETED"

    # A long one: wait until it runs, press its Cancel button, see CANCELLED.
    slow = submit(panel, "sleepy", "sleep 600")
    expect_status(panel, slow, "RUNNING")
    job_row(panel, slow).get_by_role("button", name="Cancel").click()
    expect_status(panel, slow, "CANCELLED")
    assert lab.job(slow)["status"] == "CANCELLED"
    sync_api.expect(job_row(panel, slow).get_by_role("button", name="Cancel")).to_have_count(0)

    # One running and one waiting for a GPU nobody has: the queue says why.
    running = submit(panel, "long-sleep", "sleep 600")
    more_gpus_than_any_worker = max(w["gpus"] for w in workers) + 1
    waiting = submit(panel, "needs-a-gpu", "nvidia-smi", gpu=more_gpus_than_any_worker)
    expect_status(panel, running, "RUNNING")
    expect_status(panel, waiting, "QUEUED")
    queued = panel.locator(f'[data-testid="queue"] tr[data-job-id="{waiting}"]')
    sync_api.expect(queued).to_contain_text("GPU", timeout=LONG)
    assert lab.job(waiting)["why_pending"], lab.job(waiting)

    page.locator(".jp-Notification-Toast-Close").evaluate_all("els => els.forEach(e => e.click())")
    shot = SCREENSHOT if os.environ.get("STRATALAB_UPDATE_SCREENSHOTS") else tmp_path / "panel.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot))
    print(f"screenshot: {shot}")

    for job_id in (running, waiting):
        job_row(panel, job_id).get_by_role("button", name="Cancel").click()
        expect_status(panel, job_id, "CANCELLED")


def test_sidebar_and_launcher_open_the_panel(lab: Lab, page: Any, tmp_path: Path):
    # The launcher has a StrataLab card; it opens the main-area panel.
    card = page.locator(".jp-LauncherCard", has_text="StrataLab")
    card.first.click()
    main = page.locator("#stratalab-main .jp-StrataLab")
    sync_api.expect(main.locator('[data-testid="workers"] tbody tr')).to_have_count(1)

    # The left sidebar's StrataLab tab shows the same panel, columns narrowed.
    page.locator(SIDEBAR_TAB).click()
    side = page.locator("#stratalab-sidebar")
    side.wait_for()
    sync_api.expect(side.locator('[data-testid="connection"]')).to_have_attribute(
        "data-connection", "connected", timeout=LONG
    )
    sync_api.expect(side.locator('[data-testid="workers"] tbody tr')).to_have_count(1)
    page.screenshot(path=str(tmp_path / "sidebar.png"))


def test_panel_shows_api_errors_and_recovers_from_a_lost_server(
    lab: Lab, page: Any, tmp_path: Path
):
    panel = open_from_palette(page)
    conn = panel.locator('[data-testid="connection"]')
    alert = panel.locator('[data-testid="refresh-error"]')
    sync_api.expect(conn).to_have_attribute("data-connection", "connected", timeout=LONG)

    # The server refuses the form: its code and message are shown, nothing breaks.
    form = panel.locator('[data-testid="submit-form"]')
    form.locator('input[name="name"]').fill("not a valid name!")
    form.locator('input[name="entrypoint"]').fill("true")
    form.locator('button[type="submit"]').click()
    sync_api.expect(panel.locator('[data-testid="notice"]')).to_contain_text("VALIDATION_ERROR")

    # An error envelope from the API: shown as CODE: message.
    envelope = {
        "error": {
            "code": "SERVICE_UNAVAILABLE",
            "message": "the database does not answer",
            "trace_id": "0" * 32,
        }
    }
    api_glob = "**/stratalab/api/v1/**"

    def unavailable(route: Any) -> None:
        route.fulfill(status=503, content_type="application/json", body=json.dumps(envelope))

    page.route(api_glob, unavailable)
    sync_api.expect(conn).to_have_attribute("data-connection", "error", timeout=LONG)
    sync_api.expect(alert).to_contain_text("SERVICE_UNAVAILABLE: the database does not answer")
    # The last good data stays on screen.
    sync_api.expect(panel.locator('[data-testid="workers"] tbody tr')).to_have_count(1)

    # No answer at all: "disconnected", until the server answers again.
    page.unroute(api_glob)
    page.route(api_glob, lambda route: route.abort("connectionrefused"))
    sync_api.expect(conn).to_have_attribute("data-connection", "disconnected", timeout=LONG)
    sync_api.expect(alert).to_contain_text("DISCONNECTED")
    page.screenshot(path=str(tmp_path / "disconnected.png"))
    page.unroute(api_glob)
    sync_api.expect(conn).to_have_attribute("data-connection", "connected", timeout=LONG)
    sync_api.expect(alert).to_have_count(0)
