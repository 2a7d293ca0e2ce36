"""Joining an existing cluster: ``dask scheduler`` and ``dask worker`` processes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stratalab.launcher import start_server
from stratalab.notebook.client import Client
from stratalab.testing import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def external_cluster(tmp_path: Path) -> Iterator[str]:
    """A scheduler and one worker started as separate processes via the dask CLI."""
    sched_file = tmp_path / "scheduler.json"
    scheduler = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dask",
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(sched_file),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(  # dask writes the file in place: wait until it is whole
        lambda: sched_file.exists() and sched_file.read_text().strip().endswith("}"),
        timeout=60,
        what="the dask scheduler file",
    )
    address = json.loads(sched_file.read_text())["address"]
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dask",
            "worker",
            address,
            "--nthreads",
            "1",
            "--nworkers",
            "1",
            "--no-dashboard",
            "--name",
            "external-0",
            "--memory-limit",
            "2GiB",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield address
    finally:
        for proc in (worker, scheduler):
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_server_joins_existing_scheduler_and_leaves_it_running(tmp_path, external_cluster):
    with start_server(tmp_path / "data", extra_args=["--dask-address", external_cluster]) as srv:
        c = Client(srv.url, api_key=srv.info["admin_key"])
        wait_until(c.workers, timeout=60, what="the external worker")
        status = c.status()
        job_id = c.submit("on-external", script="print('hello from outside')")["job_id"]
        job = c.wait(job_id, timeout=90)
        workers = c.workers()
        c.close()
    assert status["dask_address"] == external_cluster
    assert status["embedded_cluster"] is False
    assert job["status"] == "COMPLETED"
    assert "hello from outside" in job["output"]
    assert [w["name"] for w in workers] == ["external-0"]
    # the server did not shut down a cluster it did not start
    from distributed import Client as DaskClient

    with DaskClient(external_cluster, timeout=30) as dc:
        assert len(dc.scheduler_info()["workers"]) == 1
