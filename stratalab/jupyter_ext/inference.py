"""Routes for inference: sync or async requests, batches, polling and cancel."""

from __future__ import annotations

import time

from tornado import web

from stratalab.jupyter_ext.base import ApiHandler
from stratalab.scheduler.model_schemas import BatchRequest, InferenceRequest
from stratalab.scheduler.schemas import CancelRequest


class InferenceHandler(ApiHandler):
    """``/inference``."""

    async def post(self) -> None:
        """Sync by default; async by ``?async=true``, ``X-Async: true`` or body ``async``."""
        started = time.perf_counter() - self.request.request_time()
        req = self.body(InferenceRequest)
        header = self.request.headers.get("X-Async", "").strip().lower() in ("1", "true", "yes")
        serving = self.coordinator.serving
        if req.async_ or header or self.query_bool("async", False):
            out = await serving.infer_async(self.principal(), req)
            self.reply(out, 202, location=out["poll_url"])
            return
        self.reply(await serving.infer(self.principal(), req, started))


class BatchHandler(ApiHandler):
    """``/inference/batch``: bodies are large by nature, with their own limit."""

    def _body_limit(self) -> int:
        return self.coordinator.config.max_batch_json_mb << 20

    async def post(self) -> None:
        """Shard the inputs across the workers; always answers 202."""
        req = self.body(BatchRequest)
        out = await self.coordinator.serving.batch(self.principal(), req)
        self.reply(out, 202, location=out["poll_url"])


class InferenceJobHandler(ApiHandler):
    """``/inference/{job_id}``."""

    async def get(self, job_id: str) -> None:
        """Status and result; for a batch, progress and a page of results."""
        offset = self.query_int("offset", 0, lo=0, hi=100_000_000)
        limit = self.query_int("limit", 100, lo=0, hi=1000)
        self.reply(
            await self.coordinator.serving.inference_job(
                self.principal(), job_id, offset=offset, limit=limit
            )
        )

    async def delete(self, job_id: str) -> None:
        """Cancel a request or batch that has not ended."""
        req = self.body(CancelRequest, optional=True)
        self.reply(
            await self.coordinator.serving.cancel_inference(self.principal(), job_id, req.reason)
        )


def routes(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """URL patterns of this module."""
    jid = r"(?P<job_id>[A-Za-z0-9_-]{1,64})"
    return [
        (f"{prefix}/inference", InferenceHandler),
        (f"{prefix}/inference/batch", BatchHandler),
        (f"{prefix}/inference/{jid}", InferenceJobHandler),
    ]
