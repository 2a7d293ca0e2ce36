"""The ``stratalab`` command line: keys management and the demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stratalab.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_keys_create_list_revoke(tmp_path: Path):
    d = str(tmp_path)
    created = run("keys", "--data-dir", d, "create", "--user", "alice", "--admin")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["key"].startswith("slk_") and key["scope"] == "admin"
    listed = run("keys", "--data-dir", d, "list")
    assert key["id"] in listed.stdout and "active" in listed.stdout
    assert key["key"] not in listed.stdout
    revoked = run("keys", "--data-dir", d, "revoke", key["id"])
    assert revoked.returncode == 0
    assert "revoked" in run("keys", "--data-dir", d, "list").stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_runs_end_to_end(tmp_path: Path):
    result = run("demo", "--data-dir", str(tmp_path / "demo"), timeout=280)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    out = result.stdout
    assert "all demo checks passed" in out
    for section in ("GET /queue", "GET /workers", "results", "timeline of broken-step"):
        assert section in out
    assert "waiting for GPU=1" in out
