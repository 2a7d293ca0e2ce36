"""Inference work survives a server restart and a killed worker.

An async request accepted while no worker could serve it is still there
after a restart, and is answered once a worker is back. A batch whose worker
is SIGKILLed mid-run completes with every result (Dask re-runs the shards).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from distributed import Client as DaskClient

from stratalab.kernels.models.samples import make_mlp_onnx
from stratalab.launcher import start_server
from stratalab.testing import local_cluster, wait_until
from tests.jupyter_ext.modelfiles import array, ort_run, tensor

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _client(server) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"X-API-Key": server.info["admin_key"]}, timeout=60
    )


def test_async_request_survives_a_restart(tmp_path: Path, model_files):
    data = tmp_path / "data"
    x = np.random.default_rng(2).normal(size=(2, 4)).astype(np.float32)
    with start_server(data, extra_args=["--workers", "1"]) as server, _client(server) as c:
        model = c.post(
            "/models", files={"model": ("mlp.onnx", model_files.onnx.read_bytes())}
        ).json()
        worker = c.get("/workers").json()["items"][0]["id"]
        assert c.post(f"/workers/{worker}/drain", json={}).status_code == 200
        accepted = c.post(
            "/inference?async=true", json={"model_id": model["id"], "input": tensor(x)}
        )
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        assert c.get(f"/inference/{job_id}").json()["status"] == "queued"

    with start_server(data, extra_args=["--workers", "1"]) as server, _client(server) as c:
        assert c.get(f"/inference/{job_id}").json()["status"] == "queued"
        worker = c.get("/workers").json()["items"][0]["id"]
        assert c.post(f"/workers/{worker}/enable").status_code == 200
        done = wait_until(
            lambda: (j := c.get(f"/inference/{job_id}").json())["status"] == "completed" and j,
            timeout=60,
            what="the async request to be answered after the restart",
        )
    np.testing.assert_allclose(array(done["result"]), ort_run(model_files.onnx, x), rtol=1e-5)


@pytest.fixture(scope="module")
def cluster_address() -> Iterator[str]:
    """This module's own cluster: one of its workers gets killed."""
    with local_cluster(2) as cluster:
        yield cluster.scheduler_address


def test_batch_completes_after_one_of_its_workers_is_killed(tmp_path: Path, cluster_address):
    model_path = make_mlp_onnx(tmp_path / "wide.onnx", in_features=16, hidden=256, out=4)
    x = np.random.default_rng(5).normal(size=(100_000, 16)).astype(np.float32)
    extra = ["--dask-address", cluster_address]
    with start_server(tmp_path / "data", extra_args=extra) as server, _client(server) as c:
        model = c.post("/models", files={"model": ("wide.onnx", model_path.read_bytes())}).json()
        resp = c.post(
            "/inference/batch",
            json={"model_id": model["id"], "input": tensor(x), "shard_size": 500},
        )
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["job_id"]
        seen = wait_until(
            lambda: (
                (j := c.get(f"/inference/{job_id}?limit=0").json())["progress"]["completed_shards"]
                >= 2
                and j
            ),
            timeout=60,
            what="the first shards to finish",
        )
        with DaskClient(cluster_address, timeout=30) as dc:
            pids = dc.run(os.getpid)
        victim = sorted(pids)[0]
        os.kill(pids[victim], signal.SIGKILL)
        killed_at = time.monotonic()
        done = wait_until(
            lambda: (
                (j := c.get(f"/inference/{job_id}?offset=99990&limit=10").json())["status"]
                in ("completed", "failed")
                and j
            ),
            timeout=180,
            what="the batch to end",
        )
    assert seen["progress"]["percent"] < 100, "the batch ended before the kill; make it bigger"
    assert killed_at > 0
    assert done["status"] == "completed", done
    assert done["progress"]["completed_tasks"] == 100_000
    assert done["progress"]["failed_tasks"] == 0
    np.testing.assert_allclose(
        np.stack([array(i)[0] for i in done["results"]["items"]]),
        ort_run(model_path, x[99_990:]),
        rtol=1e-4,
        atol=1e-5,
    )
