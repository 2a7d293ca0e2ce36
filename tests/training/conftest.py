"""Helpers of the training tests: a registered digits dataset and job bodies."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.conftest import Api

DONE = {"COMPLETED", "FAILED", "CANCELLED"}


async def register_digits(api: Api, key: str | None = None, **extra: Any) -> str:
    """Register scikit-learn's bundled digits (nothing downloaded)."""
    resp = await api(
        "POST",
        "datasets",
        json_body={"name": "digits", "format": "builtin", "source": "digits", **extra},
        key=key,
    )
    assert resp.status == 201, resp.text
    return str(resp.json["id"])


def training_body(
    dataset_id: str, *, resources: dict[str, Any] | None = None, priority: int = 5, **training: Any
) -> dict[str, Any]:
    """A ``POST /jobs`` body training a small MLP on a dataset."""
    return {
        "type": "training",
        "name": "digits-mlp",
        "priority": priority,
        "model": {"architecture": "mlp", "hidden": [32]},
        "data_config": {"dataset_id": dataset_id, "batch_size": 32},
        "training_config": {"epochs": 4, "learning_rate": 0.01, **training},
        "resource_config": {"min_devices": 1, **(resources or {})},
    }


async def submit(api: Api, body: dict[str, Any], key: str | None = None) -> str:
    resp = await api("POST", "jobs", json_body=body, key=key)
    assert resp.status == 201, resp.text
    return str(resp.json["job_id"])


async def wait_for(api: Api, job_id: str, check: Any, timeout: float = 60) -> dict[str, Any]:
    """Poll a job until ``check(job)`` holds."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = (await api("GET", f"jobs/{job_id}")).json
        if check(job):
            return job
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} never satisfied the check: {job}")


def rounds_of(metrics: dict[str, Any]) -> list[int]:
    """The rounds of the global per-round points, in order."""
    return [p["round"] for p in metrics["metrics"].get("loss", [])]
