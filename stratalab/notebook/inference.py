"""``c.inference``: run a model now, later (async), or over many inputs (batch)."""

from __future__ import annotations

import time
from typing import Any

from stratalab.notebook.errors import WaitTimeout
from stratalab.notebook.jobs import TERMINAL
from stratalab.notebook.resource import AsyncResource, SyncResource, seg
from stratalab.notebook.tensors import encode
from stratalab.notebook.transport import Op, Request, Sleep
from stratalab.notebook.types import BatchAccepted, InferenceAccepted, InferenceJob, InferenceResult


def run_request(
    model_id: str,
    input: Any,
    *,
    project_id: str | None,
    timeout_ms: int | None,
    prefer_gpu: bool,
    params: dict[str, Any] | None,
    background: bool,
) -> Request:
    """``POST /inference``; numpy inputs are sent as ``{"data", "shape"}``."""
    options: dict[str, Any] = {"prefer_gpu": prefer_gpu}
    if timeout_ms is not None:
        options["timeout"] = timeout_ms
    body: dict[str, Any] = {"model_id": model_id, "input": encode(input), "options": options}
    if project_id is not None:
        body["project_id"] = project_id
    if params is not None:
        body["params"] = params
    if background:
        body["async"] = True
    return Request("POST", "/inference", json=body)


def batch_request(
    model_id: str,
    inputs: Any,
    *,
    name: str | None,
    project_id: str | None,
    params: dict[str, Any] | None,
    timeout_ms: int | None,
    shard_size: int | None,
) -> Request:
    """``POST /inference/batch``: a list goes as ``inputs`` (one item each), an array as
    ``input`` (one item per row)."""
    body: dict[str, Any] = {"model_id": model_id}
    if isinstance(inputs, list):
        body["inputs"] = [encode(x) for x in inputs]
    else:
        body["input"] = encode(inputs)
    optional = {
        "name": name,
        "project_id": project_id,
        "params": params,
        "shard_size": shard_size,
        "options": None if timeout_ms is None else {"timeout": timeout_ms},
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    return Request("POST", "/inference/batch", json=body)


def cancel_request(job_id: str, reason: str | None) -> Request:
    """``DELETE /inference/{job_id}`` (with an optional reason)."""
    body = {"reason": reason} if reason else None
    return Request("DELETE", f"/inference/{seg(job_id)}", json=body)


def ended(status: Any) -> bool:
    """Whether an inference job's status (lower case on this route) is final."""
    return str(status).upper() in TERMINAL


def get_request(job_id: str, offset: int | None = None, limit: int | None = None) -> Request:
    """``GET /inference/{job_id}`` (``offset``/``limit`` page a batch's results)."""
    params = {"offset": offset, "limit": limit}
    return Request("GET", f"/inference/{seg(job_id)}", params=params)


def _show_progress(bar: Any, job: InferenceJob) -> None:
    """Items done of a batch (or 0/1 for one request) on a tqdm bar."""
    prog = job.get("progress")
    total = prog["total_tasks"] if prog else 1
    done = prog["completed_tasks"] + prog["failed_tasks"] if prog else int(ended(job["status"]))
    if bar.total != total:
        bar.total = total
    bar.update(done - bar.n)
    bar.set_postfix_str(str(job.get("status", "")))


def wait_op(
    job_id: str, *, timeout: float | None, poll_s: float, progress: bool
) -> Op[InferenceJob]:
    """Poll until the inference job ends; a tqdm bar follows a batch's items.

    Polls ask for one result only; the answer returned has the first page of them.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc=job_id, unit="item")
    try:
        while True:
            job: InferenceJob = yield get_request(job_id, limit=1)
            if bar is not None:
                _show_progress(bar, job)
            if ended(job.get("status")):
                final: InferenceJob = yield get_request(job_id)
                return final
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"inference {job_id} is still {job.get('status')}")
            yield Sleep(poll_s)
    finally:
        if bar is not None:
            bar.close()


class Inference(SyncResource):
    """Inference: ``c.inference.run(model_id, x)``, ``.submit``, ``.batch``, ``.wait``."""

    def run(
        self,
        model_id: str,
        input: Any,
        *,
        project_id: str | None = None,
        timeout_ms: int | None = None,
        prefer_gpu: bool = False,
        params: dict[str, Any] | None = None,
    ) -> InferenceResult:
        """Run the model on ``input`` and wait for the answer.

        ``input`` may be numpy arrays (or a dict of them, for named inputs);
        turn ``result`` back into arrays with :func:`stratalab.notebook.to_numpy`.
        """
        req = run_request(
            model_id,
            input,
            project_id=project_id,
            timeout_ms=timeout_ms,
            prefer_gpu=prefer_gpu,
            params=params,
            background=False,
        )
        result: InferenceResult = self._run(req)
        return result

    def submit(
        self,
        model_id: str,
        input: Any,
        *,
        project_id: str | None = None,
        timeout_ms: int | None = None,
        prefer_gpu: bool = False,
        params: dict[str, Any] | None = None,
    ) -> InferenceAccepted:
        """Like :meth:`run` but returns at once (202); fetch it with :meth:`get`/:meth:`wait`."""
        req = run_request(
            model_id,
            input,
            project_id=project_id,
            timeout_ms=timeout_ms,
            prefer_gpu=prefer_gpu,
            params=params,
            background=True,
        )
        accepted: InferenceAccepted = self._run(req)
        return accepted

    def get(
        self, job_id: str, *, offset: int | None = None, limit: int | None = None
    ) -> InferenceJob:
        """Status, progress and (a page of) results of an async or batch job."""
        job: InferenceJob = self._run(get_request(job_id, offset, limit))
        return job

    def batch(
        self,
        model_id: str,
        inputs: Any,
        *,
        name: str | None = None,
        project_id: str | None = None,
        params: dict[str, Any] | None = None,
        timeout_ms: int | None = None,
        shard_size: int | None = None,
    ) -> BatchAccepted:
        """Run the model over many inputs, sharded across the workers (answers at once).

        ``inputs`` is a list (one item each) or an array (one item per row).
        Follow it with :meth:`wait` and page its results with :meth:`get`.
        """
        req = batch_request(
            model_id,
            inputs,
            name=name,
            project_id=project_id,
            params=params,
            timeout_ms=timeout_ms,
            shard_size=shard_size,
        )
        accepted: BatchAccepted = self._run(req)
        return accepted

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        poll_s: float = 0.5,
        progress: bool = True,
    ) -> InferenceJob:
        """Block until the job ends, with a tqdm bar over a batch's items."""
        op = wait_op(job_id, timeout=timeout, poll_s=poll_s, progress=progress)
        job: InferenceJob = self._run(op)
        return job

    def cancel(self, job_id: str, reason: str | None = None) -> InferenceJob:
        """Cancel an async or batch job; finished shards keep their results."""
        job: InferenceJob = self._run(cancel_request(job_id, reason))
        return job


class AsyncInference(AsyncResource):
    """The asyncio twin of :class:`Inference`."""

    async def run(
        self,
        model_id: str,
        input: Any,
        *,
        project_id: str | None = None,
        timeout_ms: int | None = None,
        prefer_gpu: bool = False,
        params: dict[str, Any] | None = None,
    ) -> InferenceResult:
        """See :meth:`Inference.run`."""
        req = run_request(
            model_id,
            input,
            project_id=project_id,
            timeout_ms=timeout_ms,
            prefer_gpu=prefer_gpu,
            params=params,
            background=False,
        )
        result: InferenceResult = await self._run(req)
        return result

    async def submit(
        self,
        model_id: str,
        input: Any,
        *,
        project_id: str | None = None,
        timeout_ms: int | None = None,
        prefer_gpu: bool = False,
        params: dict[str, Any] | None = None,
    ) -> InferenceAccepted:
        """See :meth:`Inference.submit`."""
        req = run_request(
            model_id,
            input,
            project_id=project_id,
            timeout_ms=timeout_ms,
            prefer_gpu=prefer_gpu,
            params=params,
            background=True,
        )
        accepted: InferenceAccepted = await self._run(req)
        return accepted

    async def get(
        self, job_id: str, *, offset: int | None = None, limit: int | None = None
    ) -> InferenceJob:
        """See :meth:`Inference.get`."""
        job: InferenceJob = await self._run(get_request(job_id, offset, limit))
        return job

    async def batch(
        self,
        model_id: str,
        inputs: Any,
        *,
        name: str | None = None,
        project_id: str | None = None,
        params: dict[str, Any] | None = None,
        timeout_ms: int | None = None,
        shard_size: int | None = None,
    ) -> BatchAccepted:
        """See :meth:`Inference.batch`."""
        req = batch_request(
            model_id,
            inputs,
            name=name,
            project_id=project_id,
            params=params,
            timeout_ms=timeout_ms,
            shard_size=shard_size,
        )
        accepted: BatchAccepted = await self._run(req)
        return accepted

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        poll_s: float = 0.5,
        progress: bool = True,
    ) -> InferenceJob:
        """See :meth:`Inference.wait`."""
        op = wait_op(job_id, timeout=timeout, poll_s=poll_s, progress=progress)
        job: InferenceJob = await self._run(op)
        return job

    async def cancel(self, job_id: str, reason: str | None = None) -> InferenceJob:
        """See :meth:`Inference.cancel`."""
        job: InferenceJob = await self._run(cancel_request(job_id, reason))
        return job
