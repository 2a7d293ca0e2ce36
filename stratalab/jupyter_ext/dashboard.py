"""Routes for the dashboard: one fat snapshot, its SSE stream, and throughput buckets."""

from __future__ import annotations

import time

from tornado import web

from stratalab.errors import BadRequest
from stratalab.jupyter_ext.base import ApiHandler
from stratalab.jupyter_ext.sse import KEEPALIVE_S, SSEHandler

#: most buckets one throughput answer may have (a chart cannot show more).
MAX_BUCKETS = 10_000


class DashboardHandler(ApiHandler):
    """``/dashboard``."""

    async def get(self) -> None:
        """Coordinator, workers, datasets, checkpoints, barriers, metrics, jobs, logs at once."""
        _, text = await self.coordinator.observability.dashboard(self.principal())
        self.finish(text)  # already JSON (APIHandler.finish sets application/json)


class DashboardStreamHandler(SSEHandler):
    """``/dashboard/stream?interval``: snapshots, and job/worker events as they happen."""

    async def get(self) -> None:
        """A ``snapshot`` at most every ``interval`` seconds, ``jobs``/``workers`` events live."""
        obs, p = self.coordinator.observability, self.principal()
        interval = self.query_float("interval", 2.0, lo=obs.stream_interval_s, hi=3600.0)
        with obs.dashboard_stream(p) as sub:
            self.start_stream()
            _, text = await obs.dashboard(p)
            await self.send_raw("snapshot", text)
            last = time.monotonic()
            while not self.closed:
                event = await sub.get(timeout=KEEPALIVE_S)
                if lagged := sub.take_lagged():
                    await self.send("lagged", {"dropped": lagged})
                if event is None:
                    await self.keepalive()
                elif event.topic == "dashboard":
                    # the shared ticker may run faster than this client asked for
                    if time.monotonic() - last >= interval - obs.stream_interval_s / 2:
                        last = time.monotonic()
                        await self.send_raw("snapshot", event.data["text"])
                else:
                    await self.send(event.topic, event.data)
        self.finish()


class DashboardThroughputHandler(ApiHandler):
    """``/dashboard/throughput?bucket_size&window&project_id``."""

    async def get(self) -> None:
        """Inference requests, items and errors per ``bucket_size`` seconds over ``window``."""
        window = self.query_int("window", 3600, lo=1, hi=7 * 86_400)
        bucket = self.query_float("bucket_size", 0.0, lo=0.0, hi=86_400.0)
        if bucket and window / bucket > MAX_BUCKETS:
            raise BadRequest(
                f"window / bucket_size is {window / bucket:,.0f} buckets; "
                f"the limit is {MAX_BUCKETS:,}",
                details={"field": "bucket_size"},
            )
        self.reply(
            await self.coordinator.observability.throughput(
                self.principal(),
                bucket_s=bucket or None,
                window_s=float(window),
                project_id=self.get_query_argument("project_id", None),
            )
        )


def routes(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """The dashboard routes under ``prefix``."""
    return [
        (f"{prefix}/dashboard", DashboardHandler),
        (f"{prefix}/dashboard/stream", DashboardStreamHandler),
        (f"{prefix}/dashboard/throughput", DashboardThroughputHandler),
    ]
