"""``c.training``: train a model across the cluster from a notebook.

``c.training.start(dataset_id, model=...)`` takes a built-in architecture
name (``"mlp"``, ``"small_cnn"``), the id of an uploaded TorchScript model,
or a ``torch.nn.Module``, which the client turns into TorchScript and
uploads first. Then ``c.jobs.wait(job_id)`` shows a tqdm bar and
``c.jobs.plot_metrics(job_id)`` a live loss curve.
"""

from __future__ import annotations

import io
from typing import Any

from stratalab.notebook.models import upload_request
from stratalab.notebook.resource import AsyncResource, SyncResource, collect, seg
from stratalab.notebook.transport import Op, Request

#: Architectures the server builds by name.
ARCHITECTURES = ("mlp", "small_cnn")


def module_to_torchscript(module: Any, example_input: Any = None) -> bytes:
    """TorchScript bytes of a ``torch.nn.Module``: scripted, or traced with ``example_input``.

    Scripting keeps control flow; tracing (when scripting fails and an example
    is given) records the operations one forward pass runs.
    """
    import torch

    try:
        scripted = torch.jit.script(module)
    except Exception:  # noqa: BLE001 - torch raises many kinds; tracing is the fallback
        if example_input is None:
            raise TypeError(
                "this module cannot be scripted; pass example_input so it can be traced"
            ) from None
        scripted = torch.jit.trace(module, example_input)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    return buffer.getvalue()


def start_op(
    dataset_id: str,
    model: Any,
    *,
    input_shape: list[int] | None,
    example_input: Any,
    options: dict[str, Any],
) -> Op[dict[str, Any]]:
    """Upload a module if one is given, then ``POST /jobs`` with ``type: training``."""
    spec: dict[str, Any]
    model_options = options.pop("model_options", {})
    if isinstance(model, str) and model in ARCHITECTURES:
        spec = {"architecture": model, **model_options}
    elif isinstance(model, str):
        spec = {"model_id": model}
    else:
        if input_shape is None:
            raise TypeError("a torch.nn.Module needs input_shape, e.g. [64] or [1, 8, 8]")
        data = module_to_torchscript(model, example_input)
        uploaded = yield upload_request(
            data,
            name=options.get("name") or type(model).__name__,
            format="torchscript",
            input_shape=[None, *input_shape],
            output_shape=None,
            input_schema=None,
            output_schema=None,
            labels=None,
            preprocessing=None,
            postprocessing=None,
            description="uploaded from a notebook for training",
        )
        spec = {"model_id": uploaded["id"]}
    body = {
        "type": "training",
        "name": options.pop("name", None) or "training",
        "model": spec,
        "data_config": {"dataset_id": dataset_id, "batch_size": options.pop("batch_size", 32)},
        "training_config": options.pop("training_config"),
        "resource_config": options.pop("resource_config"),
        **{k: v for k, v in options.items() if v is not None},
    }
    result: dict[str, Any] = yield Request("POST", "/jobs", json=body)
    return result


def pause_request(job_id: str, save_checkpoint: bool) -> Request:
    """``POST /jobs/{id}/pause``."""
    return Request("POST", f"/jobs/{seg(job_id)}/pause", json={"save_checkpoint": save_checkpoint})


def resume_request(job_id: str, checkpoint_id: str) -> Request:
    """``POST /jobs/{id}/resume`` (empty ``checkpoint_id``: the latest good one)."""
    return Request("POST", f"/jobs/{seg(job_id)}/resume", json={"checkpoint_id": checkpoint_id})


def evaluate_request(job_id: str, dataset_id: str, name: str, params: dict[str, Any]) -> Request:
    """``POST /evaluations`` with one benchmark (``num_samples``; ``split``, ``batch_size``)."""
    params = dict(params)
    bench: dict[str, Any] = {"name": name, "dataset": dataset_id}
    if "num_samples" in params:
        bench["num_samples"] = params.pop("num_samples")
    if params:
        bench["parameters"] = params
    return Request("POST", "/evaluations", json={"job_id": job_id, "benchmarks": [bench]})


def _options(
    *,
    name: str | None,
    hidden: list[int] | None,
    epochs: int,
    learning_rate: float,
    optimizer: str,
    sync_mode: str,
    batch_size: int,
    local_steps: int | None,
    target_accuracy: float | None,
    min_devices: int,
    max_devices: int | None,
    gpu: int,
    priority: int | None,
) -> dict[str, Any]:
    training = {
        "epochs": epochs,
        "learning_rate": learning_rate,
        "optimizer": optimizer,
        "sync_mode": sync_mode,
        "local_steps": local_steps,
        "target_accuracy": target_accuracy,
    }
    resources = {"min_devices": min_devices, "max_devices": max_devices, "gpu": gpu}
    return {
        "name": name,
        "priority": priority,
        "batch_size": batch_size,
        "model_options": {"hidden": hidden} if hidden is not None else {},
        "training_config": {k: v for k, v in training.items() if v is not None},
        "resource_config": {k: v for k, v in resources.items() if v is not None},
    }


class Training(SyncResource):
    """Training jobs: ``c.training.start(ds, model="mlp")``, pause, resume, evaluate."""

    def start(
        self,
        dataset_id: str,
        model: Any = "mlp",
        *,
        name: str | None = None,
        hidden: list[int] | None = None,
        input_shape: list[int] | None = None,
        example_input: Any = None,
        epochs: int = 5,
        learning_rate: float = 0.01,
        optimizer: str = "sgd",
        sync_mode: str = "full_sync",
        batch_size: int = 32,
        local_steps: int | None = None,
        target_accuracy: float | None = None,
        min_devices: int = 1,
        max_devices: int | None = None,
        gpu: int = 0,
        priority: int | None = None,
    ) -> dict[str, Any]:
        """Start a training job; it is stored before this returns.

        Parameters
        ----------
        model
            ``"mlp"`` / ``"small_cnn"`` (sized from the dataset), a model id
            (``model_...``, TorchScript), or a ``torch.nn.Module``.
        input_shape, example_input
            For a module: one sample's shape, and an input to trace with
            when scripting fails.
        """
        options = _options(
            name=name,
            hidden=hidden,
            epochs=epochs,
            learning_rate=learning_rate,
            optimizer=optimizer,
            sync_mode=sync_mode,
            batch_size=batch_size,
            local_steps=local_steps,
            target_accuracy=target_accuracy,
            min_devices=min_devices,
            max_devices=max_devices,
            gpu=gpu,
            priority=priority,
        )
        op = start_op(
            dataset_id,
            model,
            input_shape=input_shape,
            example_input=example_input,
            options=options,
        )
        return dict(self._run(op))

    def pause(self, job_id: str, *, save_checkpoint: bool = True) -> dict[str, Any]:
        """Pause after the current round."""
        return dict(self._run(pause_request(job_id, save_checkpoint)))

    def resume(self, job_id: str, checkpoint_id: str = "") -> dict[str, Any]:
        """Resume a paused job from a checkpoint (the latest good one by default)."""
        return dict(self._run(resume_request(job_id, checkpoint_id)))

    def checkpoints(self, job_id: str) -> list[dict[str, Any]]:
        """The job's checkpoints, newest first."""
        return list(self._run(collect(f"/jobs/{seg(job_id)}/checkpoints")))

    def evaluate(
        self, job_id: str, dataset_id: str, *, name: str = "evaluation", **params: Any
    ) -> dict[str, Any]:
        """Evaluate the job's latest checkpoint on a dataset (``split``, ``num_samples``)."""
        return dict(self._run(evaluate_request(job_id, dataset_id, name, params)))

    def evaluation(self, evaluation_id: str) -> dict[str, Any]:
        """One evaluation with its results."""
        return dict(self._run(Request("GET", f"/evaluations/{seg(evaluation_id)}")))


class AsyncTraining(AsyncResource):
    """The asyncio twin of :class:`Training`."""

    async def start(
        self,
        dataset_id: str,
        model: Any = "mlp",
        *,
        name: str | None = None,
        hidden: list[int] | None = None,
        input_shape: list[int] | None = None,
        example_input: Any = None,
        epochs: int = 5,
        learning_rate: float = 0.01,
        optimizer: str = "sgd",
        sync_mode: str = "full_sync",
        batch_size: int = 32,
        local_steps: int | None = None,
        target_accuracy: float | None = None,
        min_devices: int = 1,
        max_devices: int | None = None,
        gpu: int = 0,
        priority: int | None = None,
    ) -> dict[str, Any]:
        """See :meth:`Training.start`."""
        options = _options(
            name=name,
            hidden=hidden,
            epochs=epochs,
            learning_rate=learning_rate,
            optimizer=optimizer,
            sync_mode=sync_mode,
            batch_size=batch_size,
            local_steps=local_steps,
            target_accuracy=target_accuracy,
            min_devices=min_devices,
            max_devices=max_devices,
            gpu=gpu,
            priority=priority,
        )
        op = start_op(
            dataset_id,
            model,
            input_shape=input_shape,
            example_input=example_input,
            options=options,
        )
        return dict(await self._run(op))

    async def pause(self, job_id: str, *, save_checkpoint: bool = True) -> dict[str, Any]:
        """See :meth:`Training.pause`."""
        return dict(await self._run(pause_request(job_id, save_checkpoint)))

    async def resume(self, job_id: str, checkpoint_id: str = "") -> dict[str, Any]:
        """See :meth:`Training.resume`."""
        return dict(await self._run(resume_request(job_id, checkpoint_id)))

    async def checkpoints(self, job_id: str) -> list[dict[str, Any]]:
        """See :meth:`Training.checkpoints`."""
        return list(await self._run(collect(f"/jobs/{seg(job_id)}/checkpoints")))

    async def evaluate(
        self, job_id: str, dataset_id: str, *, name: str = "evaluation", **params: Any
    ) -> dict[str, Any]:
        """See :meth:`Training.evaluate`."""
        return dict(await self._run(evaluate_request(job_id, dataset_id, name, params)))

    async def evaluation(self, evaluation_id: str) -> dict[str, Any]:
        """See :meth:`Training.evaluation`."""
        return dict(await self._run(Request("GET", f"/evaluations/{seg(evaluation_id)}")))
