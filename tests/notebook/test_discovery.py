"""``Client()`` with no URL finds the server, as it does inside a Jupyter kernel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stratalab.launcher import ServerProcess
from stratalab.notebook import ApiError, Client, discover


def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def announce(runtime: Path, pid: int, url: str, mtime: float | None = None) -> Path:
    """A runtime file as the extension writes it."""
    path = runtime / f"stratalab-{pid}.json"
    path.write_text(json.dumps({"url": url, "admin_key": "slk_x", "token": "t", "pid": pid}))
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_client_finds_the_server_through_its_runtime_file(
    server: ServerProcess, server_root: Path, clean_env: Path
):
    real = server_root / "runtime" / f"stratalab-{server.process.pid}.json"
    shutil.copy(real, clean_env)
    stale = announce(clean_env, dead_pid(), "http://127.0.0.1:9/stratalab/api/v1")
    os.utime(stale, (real.stat().st_mtime + 60,) * 2)  # newest, but its server is gone

    with Client() as c:
        status = c.status()

    assert c.url == server.url
    assert c.connection.api_key == server.info["admin_key"]
    assert status["workers"] == 1


def test_the_server_this_process_runs_under_wins(server: ServerProcess, clean_env: Path):
    # a kernel is a child of its Jupyter server: a file naming one of our ancestors wins
    ours = announce(clean_env, os.getppid(), "http://ours/stratalab/api/v1", mtime=1_000_000)
    announce(clean_env, server.process.pid, server.url)

    info = discover()

    assert info.url == "http://ours/stratalab/api/v1" and info.source == str(ours)


def test_environment_and_data_dir_are_honoured(
    server: ServerProcess, server_root: Path, clean_env: Path, monkeypatch: pytest.MonkeyPatch
):
    with Client(data_dir=server_root / "data") as c:
        assert c.health()["status"] == "ok" and c.url == server.url

    monkeypatch.setenv("STRATALAB_URL", server.url)
    monkeypatch.setenv("STRATALAB_API_KEY", server.info["admin_key"])
    with Client() as c:
        assert c.status()["workers"] == 1
    assert discover().source == "$STRATALAB_URL"


def test_no_server_anywhere_is_a_clear_error(clean_env: Path):
    announce(clean_env, dead_pid(), "http://127.0.0.1:9/stratalab/api/v1")

    with pytest.raises(ApiError) as info:
        Client()

    assert info.value.code == "SERVICE_UNAVAILABLE"
    assert "no running StrataLab server found" in info.value.message
