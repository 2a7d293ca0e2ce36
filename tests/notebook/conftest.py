"""One real StrataLab server (``stratalab server``, one Dask worker) for the notebook tests.

It is shared by the client, discovery and magics modules; the dashboard
module starts its own because it stops and restarts it. The server writes
its runtime file into a private Jupyter runtime dir, so discovery tests see
exactly this server and nothing of the developer's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stratalab.launcher import ServerProcess, start_server
from stratalab.notebook import Client

#: prints three numbered lines, slowly enough to be followed live.
COUNTING = (
    "import sys, time\n"
    "for i in range(3):\n"
    "    print(f'line {i}', flush=True)\n"
    "    time.sleep(0.2)\n"
    "print('to stderr', file=sys.stderr)\n"
)
#: runs until cancelled.
SLEEPER = "import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n"


@pytest.fixture(scope="package")
def server_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Data dir and Jupyter runtime dir of the shared server."""
    return tmp_path_factory.mktemp("notebook-server")


@pytest.fixture(scope="package")
def server(server_root: Path) -> Iterator[ServerProcess]:
    """A real server with one worker process, as a user starts it."""
    runtime = server_root / "runtime"
    srv = start_server(
        server_root / "data",
        extra_args=["--workers", "1"],
        env={"JUPYTER_RUNTIME_DIR": str(runtime)},
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="package")
def client(server: ServerProcess) -> Iterator[Client]:
    """An admin client of the shared server (as a script would make one)."""
    with Client(server.url, api_key=server.info["admin_key"]) as c:
        yield c


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No StrataLab variables, and empty Jupyter dirs: discovery sees only what a test puts."""
    for name in ("STRATALAB_URL", "STRATALAB_API_KEY", "STRATALAB_TOKEN", "STRATALAB_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))
    return runtime
