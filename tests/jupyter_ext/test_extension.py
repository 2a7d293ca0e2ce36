"""The extension as installed: plain ``jupyter server`` serves StrataLab."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from stratalab.launcher import free_port
from stratalab.testing import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_plain_jupyter_server_enables_the_extension(tmp_path: Path):
    port = free_port()
    env = {
        **os.environ,
        "STRATALAB_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "server",
            f"--port={port}",
            "--no-browser",
            "--ServerApp.token=secret-token",
            "--allow-root",
            "--StrataLab.n_workers=1",
            f"--ServerApp.root_dir={tmp_path}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}/stratalab/api/v1"
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline:
            try:
                status = httpx.get(
                    f"{url}/status", headers={"Authorization": "token secret-token"}, timeout=5
                )
                if status.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        assert status is not None and status.status_code == 200, status
        assert status.json()["embedded_cluster"] is True
        assert httpx.get(f"{url}/health").json()["status"] in {"ok", "starting"}
        info = tmp_path / "data" / "server.json"
        wait_until(info.exists, timeout=30, what="server.json")
        assert oct(info.stat().st_mode & 0o777) == "0o600"
    finally:
        proc.terminate()
        proc.wait(60)
    assert not (tmp_path / "data" / "server.json").exists()  # removed on a clean stop
