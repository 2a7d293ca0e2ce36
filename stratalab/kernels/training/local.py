"""The local-training step a Dask task runs, and model evaluation.

``train_local`` is a plain function of numpy inputs and numpy outputs: the
coordinator ships the global parameters and a model spec, the worker trains
on its shard and returns new parameters plus the numbers FedAvg and the
dashboard need. It holds no Dask code; progress reporting goes through the
optional ``on_step`` callback, which the Dask task wrapper points at
``distributed.get_worker().log_event`` (architecture decision 12).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from stratalab.errors import ValidationFailed
from stratalab.kernels.training.architectures import (
    build_model,
    get_params,
    prepare_inputs,
    set_params,
)

logger = logging.getLogger(__name__)

#: Optimizers ``train_local`` accepts by name.
OPTIMIZERS = ("sgd", "adam")

#: ``on_step(step, metrics)``: called every ``report_every`` steps with loss and accuracy.
StepCallback = Callable[[int, dict[str, float]], None]


def _labels(y: np.ndarray, n_rows: int) -> torch.Tensor:
    """Validate class labels and turn them into an int64 tensor."""
    labels = np.asarray(y)
    if labels.ndim != 1 or len(labels) != n_rows:
        raise ValidationFailed(
            f"labels must be a 1-d array with one entry per row ({n_rows}), "
            f"got shape {tuple(labels.shape)}",
        )
    integral = np.issubdtype(labels.dtype, np.integer) or (
        np.issubdtype(labels.dtype, np.floating) and bool(np.all(np.mod(labels, 1) == 0))
    )
    if labels.size and not integral:
        raise ValidationFailed("class labels must be integers")
    return torch.from_numpy(labels.astype(np.int64))


def _check_labels_fit(labels: torch.Tensor, model: nn.Module, sample: torch.Tensor) -> None:
    """Fail early, with a clear message, when a label has no output logit."""
    if labels.numel() == 0:
        return
    model.eval()  # no dropout, no batch-norm statistics update from this probe
    with torch.no_grad():
        num_classes = int(model(sample[:1]).shape[-1])
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValidationFailed(
            f"labels range over [{low}, {high}] but the model has {num_classes} classes",
            details={"min_label": low, "max_label": high, "num_classes": num_classes},
        )


def _make_optimizer(
    name: str, params: Any, lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """Create the named optimizer; only plain SGD (with momentum 0.9) and Adam."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValidationFailed(
        f"unknown optimizer {name!r}", details={"optimizer": name, "allowed": list(OPTIMIZERS)}
    )


def train_local(
    params: Sequence[np.ndarray] | None,
    model_spec: Mapping[str, Any],
    shard_arrays: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int = 1,
    local_steps: int | None = None,
    batch_size: int = 32,
    lr: float = 0.01,
    optimizer: str = "sgd",
    weight_decay: float = 0.0,
    seed: int = 0,
    device: str = "cpu",
    on_step: StepCallback | None = None,
    report_every: int = 10,
) -> dict[str, Any]:
    """Train a model on one shard, starting from the global parameters.

    Parameters
    ----------
    params
        Global parameters to start from (``get_params`` order), or ``None``
        to start from the spec's initialisation seeded by ``seed`` (the first
        round, when the coordinator has no parameters yet).
    model_spec
        Model spec for :func:`~stratalab.kernels.training.architectures.build_model`.
    shard_arrays
        ``(X, y)``: features (flat or shaped rows) and integer class labels.
    epochs
        Passes over the shard; ignored when ``local_steps`` is given.
    local_steps
        Exact number of mini-batch steps, cycling over the shard (the
        ``local_steps`` of the API's training config). ``None`` means
        ``epochs`` full passes.
    batch_size
        Mini-batch size (the last batch of a pass may be smaller).
    lr
        Learning rate.
    optimizer
        ``"sgd"`` (momentum 0.9) or ``"adam"``. Optimizer state starts fresh
        every call: in FedAvg only the weights are shared.
    weight_decay
        L2 penalty.
    seed
        Seeds the initialisation (when ``params`` is None), the shuffling
        and dropout, so the same inputs give the same result on the same
        device. The worker's global torch RNG is left as it was.
    device
        Torch device to train on (``"cuda"`` on a GPU worker).
    on_step
        Optional progress callback ``on_step(step, {"loss": ..., "accuracy": ...})``
        called every ``report_every`` steps and after the last step.
    report_every
        Steps between ``on_step`` calls.

    Returns
    -------
    dict
        ``params`` (new parameters), ``num_samples`` (rows in the shard, the
        FedAvg weight), ``loss`` and ``accuracy`` (sample-weighted means over
        the training steps, measured while the weights move: use
        :func:`evaluate` for a clean number), ``samples_per_s`` and ``steps``.

    Raises
    ------
    ValidationFailed
        If the shard is empty, labels do not fit the model, or an option is
        out of range.
    """
    features, targets = shard_arrays
    if batch_size < 1 or epochs < 1 or (local_steps is not None and local_steps < 1):
        raise ValidationFailed(
            "batch_size, epochs and local_steps must be positive",
            details={"batch_size": batch_size, "epochs": epochs, "local_steps": local_steps},
        )
    if not (lr > 0 and math.isfinite(lr)):
        raise ValidationFailed("lr must be a positive number", details={"lr": lr})
    inputs = prepare_inputs(model_spec, features)
    n_rows = len(inputs)
    if n_rows == 0:
        raise ValidationFailed("cannot train on an empty shard")
    labels = _labels(targets, n_rows)

    with torch.random.fork_rng(devices=[]):  # seed without leaking into the worker's RNG
        torch.manual_seed(seed)
        model = build_model(model_spec)
        if params is not None:
            set_params(model, params)
        _check_labels_fit(labels, model, inputs)
        model.to(device)
        opt = _make_optimizer(optimizer, model.parameters(), lr, weight_decay)
        batches_per_pass = math.ceil(n_rows / batch_size)
        total_steps = local_steps if local_steps is not None else epochs * batches_per_pass
        started = time.perf_counter()
        loss_sum, correct, seen = _run_steps(
            model,
            opt,
            inputs.to(device),
            labels.to(device),
            total_steps=total_steps,
            batch_size=batch_size,
            generator=torch.Generator().manual_seed(seed),
            on_step=on_step,
            report_every=report_every,
        )
        elapsed = max(time.perf_counter() - started, 1e-9)
    logger.debug("trained %d steps on %d rows in %.3f s", total_steps, n_rows, elapsed)
    return {
        "params": get_params(model),
        "num_samples": n_rows,
        "loss": loss_sum / seen,
        "accuracy": correct / seen,
        "samples_per_s": seen / elapsed,
        "steps": total_steps,
    }


def _run_steps(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    total_steps: int,
    batch_size: int,
    generator: torch.Generator,
    on_step: StepCallback | None,
    report_every: int,
) -> tuple[float, int, int]:
    """The mini-batch loop: reshuffle every pass, cycle until ``total_steps``.

    Loss and hits are summed on the model's device and read back only when
    reported, so a GPU is not synchronised after every step.

    Returns
    -------
    tuple
        Sample-weighted loss sum, correct predictions, samples seen.
    """
    n_rows = len(inputs)
    batches_per_pass = math.ceil(n_rows / batch_size)
    loss_fn = nn.CrossEntropyLoss()
    loss_sum = torch.zeros((), device=inputs.device)
    correct = torch.zeros((), dtype=torch.int64, device=inputs.device)
    seen = 0
    model.train()
    order = torch.randperm(n_rows, generator=generator)
    for step in range(1, total_steps + 1):
        position = (step - 1) % batches_per_pass
        if position == 0 and step > 1:
            order = torch.randperm(n_rows, generator=generator)
        index = order[position * batch_size : (position + 1) * batch_size].to(inputs.device)
        batch_x, batch_y = inputs[index], labels[index]
        opt.zero_grad(set_to_none=True)
        logits = model(batch_x)
        loss = loss_fn(logits, batch_y)
        loss.backward()
        opt.step()
        loss_sum += loss.detach() * len(index)
        correct += (logits.detach().argmax(dim=1) == batch_y).sum()
        seen += len(index)
        if on_step is not None and (step % report_every == 0 or step == total_steps):
            on_step(step, {"loss": float(loss_sum) / seen, "accuracy": int(correct) / seen})
    return float(loss_sum), int(correct), seen


def evaluate(
    params: Sequence[np.ndarray],
    model_spec: Mapping[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int = 1024,
    device: str = "cpu",
) -> dict[str, Any]:
    """Measure loss, accuracy and per-class precision/recall of parameters on data.

    Parameters
    ----------
    params
        Parameters to evaluate (``get_params`` order).
    model_spec
        The model spec the parameters belong to.
    X, y
        Features and integer class labels.
    batch_size
        Rows per forward pass (bounds memory, not the result).
    device
        Torch device to evaluate on.

    Returns
    -------
    dict
        ``loss`` (mean cross-entropy), ``accuracy``, ``num_samples`` and
        ``per_class``: for each class seen in ``y`` or predicted, keyed by the
        class index as a string (JSON-safe), ``precision``, ``recall`` and
        ``support`` (true rows of that class). A class never predicted has
        precision 0.0; one never present has recall 0.0.
    """
    inputs = prepare_inputs(model_spec, X)
    n_rows = len(inputs)
    if n_rows == 0:
        raise ValidationFailed("cannot evaluate on an empty dataset")
    labels = _labels(y, n_rows)
    model = build_model(model_spec)
    set_params(model, params)
    _check_labels_fit(labels, model, inputs)
    model.to(device).eval()
    loss_sum = 0.0
    predictions = torch.empty(n_rows, dtype=torch.int64)
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    with torch.no_grad():
        for start in range(0, n_rows, batch_size):
            batch = slice(start, start + batch_size)
            logits = model(inputs[batch].to(device))
            loss_sum += float(loss_fn(logits, labels[batch].to(device)))
            predictions[batch] = logits.argmax(dim=1).cpu()
    predicted = predictions.numpy()
    truth = labels.numpy()
    return {
        "loss": loss_sum / n_rows,
        "accuracy": float(np.mean(predicted == truth)),
        "num_samples": n_rows,
        "per_class": per_class_metrics(truth, predicted),
    }


def per_class_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, dict[str, float]]:
    """Precision, recall and support of every class in ``truth`` or ``predicted``.

    Kept separate from :func:`evaluate` so the arithmetic can be checked by
    hand without a model.
    """
    classes = np.union1d(np.unique(truth), np.unique(predicted))
    report: dict[str, dict[str, float]] = {}
    for cls in classes:
        true_positive = int(np.sum((predicted == cls) & (truth == cls)))
        predicted_count = int(np.sum(predicted == cls))
        support = int(np.sum(truth == cls))
        report[str(int(cls))] = {
            "precision": true_positive / predicted_count if predicted_count else 0.0,
            "recall": true_positive / support if support else 0.0,
            "support": float(support),
        }
    return report
