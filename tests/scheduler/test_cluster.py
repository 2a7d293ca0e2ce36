"""Embedded-cluster GPU declaration: each of the first N workers owns one GPU."""

from __future__ import annotations

import pytest
from distributed import Client

from stratalab.scheduler.cluster import WorkerInfo, gpu_worker_specs, worker_id
from stratalab.testing import local_cluster

pytestmark = pytest.mark.timeout(120)


def test_gpu_specs_declare_resources_and_pin_devices_on_real_workers():
    with local_cluster(0, memory_limit="1GiB") as cluster:
        specs = gpu_worker_specs(cluster, 2, [{"index": 3, "name": "fake"}])
        assert specs["0"]["options"]["resources"] == {"GPU": 1}
        assert specs["0"]["options"]["env"]["CUDA_VISIBLE_DEVICES"] == "3"
        assert "GPU" not in specs["1"]["options"].get("resources", {})
        cluster.worker_spec.update(specs)
        cluster.sync(cluster._correct_state)
        with Client(cluster) as client:
            client.wait_for_workers(2, timeout=60)
            infos = [
                WorkerInfo.from_identity(a, w)
                for a, w in client.scheduler_info()["workers"].items()
            ]
            gpu_workers = [w for w in infos if w.gpus]
            assert len(gpu_workers) == 1
            seen = client.run(
                lambda: __import__("os").environ.get("CUDA_VISIBLE_DEVICES"),
                workers=[gpu_workers[0].address],
            )
            assert seen == {gpu_workers[0].address: "3"}


def test_worker_ids_are_stable_for_named_workers():
    assert worker_id("0", "tcp://a:1") == worker_id("0", "tcp://b:2")
    assert worker_id(None, "tcp://a:1") != worker_id(None, "tcp://b:2")
    assert worker_id("0", "x").startswith("wrk_")
