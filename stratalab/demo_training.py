"""The training part of ``stratalab demo``: a real model trained across every worker.

Registers scikit-learn's bundled digits (nothing downloaded), trains an MLP
with synchronous FedAvg on all workers until it reaches the stated validation
accuracy, pauses and resumes it from its checkpoint on the way, evaluates the
result on the held-out split, and calls the exported model at once. Returns
the promises it could not keep.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from stratalab.notebook.client import Client
from stratalab.notebook.errors import ApiError
from stratalab.notebook.tensors import to_numpy

#: validation accuracy the demo promises on digits.
TARGET_ACCURACY = 0.93


def _wait(client: Client, job_id: str, check: Any, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = client.request("GET", f"/jobs/{job_id}")
        if check(job):
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} is still {job.get('status')}")


def run_training_demo(client: Client, banner: Any, table: Any) -> list[str]:
    """The datasets-and-training showcase; returns the problems it found."""
    problems: list[str] = []
    banner("POST /datasets: scikit-learn's digits, cut into shards placed on the workers")
    ds = client.request(
        "POST", "/datasets", json={"name": "digits", "format": "builtin", "source": "digits"}
    )
    print(
        f"  {ds['id']}: {ds['num_rows']} rows ({ds['validation_rows']} held out), "
        f"{ds['num_shards']} shards, shape {ds['info']['feature_shape']}, "
        f"{ds['info']['num_classes']} classes"
    )
    spread = ", ".join(f"{w['worker_id']}: {w['shards']}" for w in ds["shards_per_worker"])
    print(f"  shards per worker (consistent hashing): {spread}")

    banner(f"POST /jobs type=training: FedAvg full_sync to {TARGET_ACCURACY:.0%} validation")
    body = {
        "type": "training",
        "name": "digits-mlp",
        "model": {"architecture": "mlp", "hidden": [64]},
        "data_config": {"dataset_id": ds["id"], "batch_size": 32},
        "training_config": {
            "epochs": 30,
            "learning_rate": 0.01,
            "optimizer": "sgd",
            "sync_mode": "full_sync",
            "target_accuracy": TARGET_ACCURACY,
        },
        "resource_config": {"min_devices": 1},
        "output_config": {"model_name": "digits-mlp"},
    }
    t0 = time.perf_counter()
    job_id = client.request("POST", "/jobs", json=body)["job_id"]
    _wait(client, job_id, lambda j: (j["progress"] or {}).get("current_round", 0) >= 1)
    try:
        client.request("POST", f"/jobs/{job_id}/pause", json={"save_checkpoint": True})
    except ApiError as exc:  # it reached the target before the pause arrived
        print(f"  pause refused: {exc.message}")
    else:
        paused = _wait(client, job_id, lambda j: j["status"] in ("PAUSED", "COMPLETED"))
        if paused["status"] == "PAUSED":
            print(f"  paused after round {paused['progress']['current_round']} (checkpointed)")
            client.request("POST", f"/jobs/{job_id}/resume", json={"checkpoint_id": ""})
            print("  resumed from the latest checkpoint")
    done = _wait(client, job_id, lambda j: j["status"] in ("COMPLETED", "FAILED", "CANCELLED"))
    took = time.perf_counter() - t0
    metrics = client.request("GET", f"/jobs/{job_id}/metrics")["metrics"]
    rows = [
        {
            "round": loss["round"],
            "loss": round(loss["value"], 4),
            "val_accuracy": round(acc["value"], 4),
            "samples_per_s": round(sps["value"]),
            "barrier_ms": round(bar["value"], 1),
        }
        for loss, acc, sps, bar in zip(
            metrics["loss"],
            metrics["val_accuracy"],
            metrics["samples_per_s"],
            metrics["barrier_ms"],
            strict=False,
        )
    ]
    print(table(rows, ["round", "loss", "val_accuracy", "samples_per_s", "barrier_ms"]))
    result = done.get("result") or {}
    evaluation = result.get("evaluation", {})
    print(
        f"  {job_id}: {done['status']} in {took:.1f} s on "
        f"{len(done['progress']['assigned_devices'])} worker(s); "
        f"validation accuracy {evaluation.get('accuracy', 0):.4f} "
        f"(target {TARGET_ACCURACY})"
    )
    ckpts = client.request("GET", f"/jobs/{job_id}/checkpoints")["items"]
    print(
        f"  {len(ckpts)} checkpoints, last {ckpts[0]['size']} bytes at "
        f"{ckpts[0]['checkpoint_throughput']:.1f} MB/s"
    )
    if done["status"] != "COMPLETED":
        return [*problems, f"the training job ended {done['status']}: {done.get('error')}"]
    if evaluation.get("accuracy", 0) < TARGET_ACCURACY:
        problems.append(f"validation accuracy {evaluation.get('accuracy')} < {TARGET_ACCURACY}")

    banner("POST /evaluations, then POST /inference on the exported model")
    ev = client.request(
        "POST",
        "/evaluations",
        json={"job_id": job_id, "benchmarks": [{"name": "held-out", "dataset": ds["id"]}]},
    )
    ev = _wait_evaluation(client, ev["id"])
    bench = ev["results"][0] if ev["results"] else {}
    print(
        f"  {ev['id']}: {ev['status']}, accuracy {bench.get('accuracy', 0):.4f}, "
        f"{bench.get('latency_ms', 0) * 1000:.1f} µs per sample"
    )
    model_id = result["model_id"]
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.data[-5:].astype(np.float32)
    answer = client.request("POST", "/inference", json={"model_id": model_id, "input": x.tolist()})
    predicted = to_numpy(answer["result"]).argmax(axis=1).tolist()
    print(f"  {model_id} predicts {predicted} for digits {digits.target[-5:].tolist()}")
    if sum(p == t for p, t in zip(predicted, digits.target[-5:], strict=True)) < 4:
        problems.append("the trained model's predictions are mostly wrong")
    return problems


def _wait_evaluation(client: Client, evaluation_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    ev: dict[str, Any] = {}
    while time.monotonic() < deadline:
        ev = client.request("GET", f"/evaluations/{evaluation_id}")
        if ev["status"] in ("COMPLETED", "FAILED"):
            return ev
        time.sleep(0.2)
    return ev
