"""Training from a notebook: a built-in net and a torch module turned into TorchScript."""

from __future__ import annotations

import time

import torch

from stratalab.notebook import Client


def _digits(client: Client) -> str:
    ds = client.datasets.create("digits", format="builtin", source="digits")
    return str(ds["id"])


def test_train_a_torch_module_from_the_notebook_then_pause_resume_and_evaluate(
    client: Client,
) -> None:
    ds = _digits(client)
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    started = client.training.start(
        ds, net, input_shape=[64], epochs=3, learning_rate=0.01, name="my-net"
    )
    job_id = started["job_id"]
    job = client.jobs.wait(job_id, timeout=120)
    assert job["status"] == "COMPLETED", job
    trained_from = client.models.get(job["result"]["torchscript_model_id"])
    assert trained_from["source_job_id"] == job_id and trained_from["format"] == "torchscript"
    metrics = client.jobs.metrics(job_id)
    assert len(metrics["metrics"]["loss"]) == 3
    assert metrics["metrics"]["loss"][-1]["value"] < metrics["metrics"]["loss"][0]["value"]

    ev = client.training.evaluate(job_id, ds, num_samples=50)
    for _ in range(300):
        ev = client.training.evaluation(ev["id"])
        if ev["status"] in ("COMPLETED", "FAILED"):
            break
        time.sleep(0.1)
    assert ev["status"] == "COMPLETED" and ev["results"][0]["num_samples"] == 50
    assert len(client.training.checkpoints(job_id)) >= 1


def test_train_a_builtin_architecture_by_name(client: Client) -> None:
    ds = _digits(client)
    started = client.training.start(ds, "mlp", hidden=[16], epochs=2, target_accuracy=0.99)
    job = client.jobs.wait(started["job_id"], timeout=120)
    assert job["status"] == "COMPLETED"
    assert job["progress"]["current_round"] == 2
