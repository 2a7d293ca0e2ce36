"""Tests of the training-round and evaluation tasks, in-process and on a real Dask worker."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from distributed import Client
from torch import nn

from stratalab.errors import ValidationFailed
from stratalab.kernels import topics
from stratalab.kernels.data import make_reader
from stratalab.kernels.data.cache import CACHE, cache_report
from stratalab.kernels.training import weighted_average
from stratalab.kernels.training.architectures import build_model, get_params
from stratalab.kernels.training.local import evaluate
from stratalab.kernels.training.rounds import MetricThrottle, run_evaluation, run_training_round
from stratalab.testing import local_cluster, wait_until

pytestmark = pytest.mark.timeout(60)

MLP = {"architecture": "mlp", "in_features": 64, "hidden": [64], "num_classes": 10}
CONFIG = {"epochs": 2, "batch_size": 32, "lr": 0.01, "optimizer": "sgd"}
#: Keys of a METRICS event, as the coordinator and dashboard read them.
EVENT_KEYS = {
    "job_id",
    "attempt",
    "round",
    "worker",
    "step",
    "loss",
    "accuracy",
    "samples_per_s",
    "ts",
}
Events = list[tuple[str, dict[str, Any]]]


@pytest.fixture(scope="module")
def digits() -> dict[str, Any]:
    """A shard-cache descriptor of the bundled digits: 4 shards, 180 validation rows."""
    return {
        "id": "ds_rounds_digits",
        "format": "builtin",
        "source": "digits",
        "options": {},
        "info": make_reader("builtin").inspect("digits").to_dict(),
        "num_shards": 4,
        "validation_rows": 180,
    }


def round_spec(dataset: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "job_id": "job_rounds",
        "attempt": 1,
        "round": 1,
        "dataset": dataset,
        "shards": [0],
        "model_spec": MLP,
        "params": None,
        "config": CONFIG,
        "seed": 0,
        "use_gpu": False,
        **fields,
    }


def test_fedavg_rounds_learn_digits(digits: dict[str, Any]) -> None:
    # Prepare: two tasks per round, two shards each, averaged like the coordinator does
    params = None
    results: list[dict[str, Any]] = []

    # Execute
    for rnd in (1, 2, 3):
        results = [
            run_training_round(
                round_spec(digits, round=rnd, shards=shards, params=params, seed=rnd * 10 + i)
            )
            for i, shards in enumerate(([0, 1], [2, 3]))
        ]
        params = weighted_average([(r["params"], r["num_samples"]) for r in results])
    report = run_evaluation(
        {"dataset": digits, "split": "validation", "model_spec": MLP, "params": params}
    )

    # Assert
    assert report["accuracy"] > 0.8
    assert report["num_samples"] == 180
    assert report["latency_ms"] > 0
    assert report["worker"] is None and report["device"] == "cpu"
    assert set(report["per_class"]) == {str(c) for c in range(10)}
    assert [r["shards"] for r in results] == [[0, 1], [2, 3]]
    assert sum(r["num_samples"] for r in results) == 1797 - 180
    for result in results:
        assert result["worker"] is None and result["device"] == "cpu"
        assert result["compute_s"] > 0
        assert result["steps"] == 2 * int(np.ceil(result["num_samples"] / 32))


def test_a_round_is_reproducible_and_reads_its_shard_from_the_cache(
    digits: dict[str, Any],
) -> None:
    # Prepare
    spec = round_spec(digits, shards=[1], config={"local_steps": 5}, seed=4)
    run_training_round(spec)
    hits = CACHE.hits

    # Execute
    first = run_training_round(spec)
    second = run_training_round(spec)

    # Assert
    assert CACHE.hits >= hits + 2
    for a, b in zip(first["params"], second["params"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_round_publishes_throttled_step_metrics(digits: dict[str, Any]) -> None:
    # Prepare
    events: Events = []
    spec = round_spec(
        digits, round=3, attempt=2, config={"local_steps": 40, "batch_size": 16}, report_every=1
    )

    # Execute
    result = run_training_round(spec, publish=lambda topic, e: events.append((topic, e)))

    # Assert: some events, never one per step, the last step always, fields complete
    assert {topic for topic, _ in events} == {topics.METRICS}
    payloads = [event for _, event in events]
    assert 1 <= len(payloads) <= 40
    assert payloads[-1]["step"] == result["steps"] == 40
    steps = [p["step"] for p in payloads]
    assert steps == sorted(set(steps))
    for payload in payloads:
        assert set(payload) == EVENT_KEYS
        assert (payload["job_id"], payload["attempt"], payload["round"]) == ("job_rounds", 2, 3)
        assert payload["worker"] is None
        assert payload["samples_per_s"] > 0 and 0.0 <= payload["accuracy"] <= 1.0


def test_metric_throttle_holds_events_and_flushes_the_last() -> None:
    # Prepare
    now = [0.0]
    sent: list[dict[str, Any]] = []
    throttle = MetricThrottle(sent.append, interval=0.25, clock=lambda: now[0])

    # Execute: steps at 0.0, 0.1, 0.2, 0.3, 0.4 s
    for step in range(1, 6):
        throttle.offer({"step": step})
        now[0] += 0.1
    throttle.flush()
    throttle.flush()

    # Assert: the first, the first one 0.25 s later, and the held last one, once
    assert [e["step"] for e in sent] == [1, 4, 5]


def test_max_samples_caps_the_rows_and_gpu_falls_back_to_cpu(digits: dict[str, Any]) -> None:
    # Execute
    result = run_training_round(
        round_spec(digits, shards=[0, 1], max_samples=50, use_gpu=True, config={"local_steps": 2})
    )

    # Assert
    assert result["num_samples"] == 50
    assert result["device"] == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"shards": []}, "at least one shard"),
        ({"config": {"epochs": 1, "momentum": 0.5}}, "unknown training option"),
        ({"max_samples": 0}, "max_samples"),
        ({"report_every": 0}, "report_every"),
        ({"config": {"optimizer": "lbfgs"}}, "unknown optimizer"),
    ],
)
def test_bad_round_specs_are_refused(
    digits: dict[str, Any], fields: dict[str, Any], message: str
) -> None:
    # Execute / Assert
    with pytest.raises(ValidationFailed, match=message):
        run_training_round(round_spec(digits, **fields))


def test_evaluation_of_the_train_split_and_a_sample(digits: dict[str, Any]) -> None:
    # Prepare
    params = run_training_round(round_spec(digits, config={"local_steps": 3}))["params"]
    base = {"dataset": digits, "model_spec": MLP, "params": params, "use_gpu": False}

    # Execute
    whole = run_evaluation({**base, "split": "train", "batch_size": 256})
    sample = run_evaluation({**base, "split": "train", "num_samples": 100})

    # Assert: the train split is every shard; a sample is its first rows
    assert whole["num_samples"] == 1797 - 180
    assert sample["num_samples"] == 100
    x, y = make_reader("builtin").read_shard("digits", 0, 1)
    expected = evaluate(params, MLP, x[:100], y[:100])
    assert sample["accuracy"] == expected["accuracy"]
    assert sample["loss"] == pytest.approx(expected["loss"])
    with pytest.raises(ValidationFailed, match="unknown split"):
        run_evaluation({**base, "split": "test"})


def test_a_round_trains_an_uploaded_torchscript_model(
    digits: dict[str, Any], tmp_path: Path
) -> None:
    # Prepare: a user's scripted network, saved as a file
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    spec = {"architecture": "torchscript", "path": str(path), "input_shape": [64]}
    initial = get_params(build_model(spec))
    x, y = make_reader("builtin").read_shard("digits", 0, 4)
    before = evaluate(initial, spec, x, y)

    # Execute: one round from the file's own weights (params None)
    result = run_training_round(round_spec(digits, model_spec=spec, config=CONFIG))

    # Assert
    after = evaluate(result["params"], spec, x, y)
    assert after["loss"] < before["loss"] / 2
    assert after["accuracy"] > 0.8
    assert any(not np.array_equal(a, b) for a, b in zip(initial, result["params"], strict=True))
    np.testing.assert_array_equal(get_params(build_model(spec))[0], initial[0])  # file untouched


def test_round_on_a_dask_worker_streams_metrics_events(digits: dict[str, Any]) -> None:
    # Prepare
    received: list[dict[str, Any]] = []
    lock = threading.Lock()

    def on_metrics(event: tuple[float, dict[str, Any]]) -> None:
        if event[1].get("job_id") == "job_dask_round":
            with lock:
                received.append(event[1])

    with local_cluster(1, dashboard_address=":0") as cluster, Client(cluster) as client:
        client.subscribe_topic(topics.METRICS, on_metrics)
        try:
            # Execute
            spec = round_spec(
                digits,
                job_id="job_dask_round",
                config={"local_steps": 30, "batch_size": 16},
                report_every=1,
            )
            result = client.submit(run_training_round, spec, pure=False).result(timeout=45)

            # Assert: events from that worker, ending at the last step; the shard is cached
            wait_until(
                lambda: any(e["step"] == 30 for e in received), timeout=20, what="the last step"
            )
            (address,) = client.scheduler_info()["workers"]
            assert result["worker"] == address
            assert result["steps"] == 30
            with lock:
                assert all(set(e) == EVENT_KEYS for e in received)
                assert {e["worker"] for e in received} == {address}
                assert received[-1]["loss"] == pytest.approx(result["loss"])
            report = client.run(cache_report)[address]
            assert {"dataset_id": "ds_rounds_digits", "shard": 0} in [
                {"dataset_id": s["dataset_id"], "shard": s["shard"]} for s in report["shards"]
            ]
        finally:
            client.unsubscribe_topic(topics.METRICS)
