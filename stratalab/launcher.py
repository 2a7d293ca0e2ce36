"""Start a StrataLab server as a child process and wait until it is ready.

Used by ``stratalab demo``, the restart tests and the benchmarks, so all of
them start the server exactly as a user does (``stratalab server``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """A running ``stratalab server`` and what it announced in server.json."""

    process: subprocess.Popen[bytes]
    info: dict[str, Any]
    log_path: Path

    @property
    def url(self) -> str:
        """The API base URL (ends in ``/stratalab/api/v1``)."""
        return str(self.info["url"])

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, wait, and SIGKILL if it does not stop; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return int(self.process.returncode)

    def kill(self) -> None:
        """SIGKILL the server (a crash, for tests)."""
        self.process.kill()
        self.process.wait(10)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(
    data_dir: Path,
    *,
    port: int | None = None,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 180,
) -> ServerProcess:
    """Run ``stratalab server`` in ``data_dir`` and wait for its server.json."""
    data_dir.mkdir(parents=True, exist_ok=True)
    info_path = data_dir / "server.json"
    info_path.unlink(missing_ok=True)
    log_path = data_dir / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "stratalab.cli",
        "server",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port or free_port()),
        *(extra_args or []),
    ]
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child process
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"stratalab server exited with {proc.returncode}; see {log_path}:\n"
                + log_path.read_text(errors="replace")[-3000:]
            )
        if info_path.exists():
            try:
                info = json.loads(info_path.read_text())
            except json.JSONDecodeError:
                info = None
            if info and info.get("pid") == proc.pid:
                return ServerProcess(proc, info, log_path)
        time.sleep(0.1)
    proc.kill()
    raise TimeoutError(f"stratalab server did not start in {timeout} s; see {log_path}")
