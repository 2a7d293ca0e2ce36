"""A training job's live loss curve: a Plotly ``FigureWidget`` fed from ``/jobs/{id}/metrics``.

Written against the planned route ``GET /jobs/{id}/metrics?max_points``. It
reads either of the two shapes the seeds use: a dict of series
(``{"metrics": {"loss": [{"step", "value"}, ...]}}``) or rows of one step each
(``{"points": [{"step", "loss", "accuracy"}, ...]}``, also under ``items``).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stratalab.notebook.background import Poller
from stratalab.notebook.errors import ApiError
from stratalab.notebook.jobs import TERMINAL
from stratalab.notebook.resource import seg
from stratalab.notebook.transport import Connection, Op, Request

if TYPE_CHECKING:
    import plotly.graph_objects as go

#: keys of a metrics row that are not metrics.
_NOT_METRICS = {"step", "round", "epoch", "ts", "time", "timestamp", "worker", "worker_id"}


def series(payload: Any) -> dict[str, tuple[list[float], list[float]]]:
    """``{metric: (steps, values)}`` from a metrics answer of either shape."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    if not isinstance(payload, dict):
        return out
    by_name = payload.get("metrics")
    if isinstance(by_name, dict):
        for name, points in by_name.items():
            if not isinstance(points, list):
                continue
            rows = [p for p in points if isinstance(p, dict) and "value" in p]
            steps = [float(p["step"]) if "step" in p else float(i) for i, p in enumerate(rows)]
            out[str(name)] = (steps, [float(p["value"]) for p in rows])
        return out
    records = payload.get("points") or payload.get("items") or []
    for i, row in enumerate(r for r in records if isinstance(r, dict)):
        step = float(next((row[k] for k in ("step", "round") if k in row), i))
        for name, value in row.items():
            if name not in _NOT_METRICS and isinstance(value, (int, float)):
                steps, values = out.setdefault(str(name), ([], []))
                steps.append(step)
                values.append(float(value))
    return out


@dataclass(frozen=True)
class MetricsReading:
    """One poll: the job's status and its metrics so far."""

    status: str
    metrics: dict[str, tuple[list[float], list[float]]]


def metrics_op(job_id: str, max_points: int | None) -> Op[MetricsReading]:
    """Read the job's status and metrics."""
    job = yield Request("GET", f"/jobs/{seg(job_id)}")
    payload = yield Request(
        "GET", f"/jobs/{seg(job_id)}/metrics", params={"max_points": max_points}
    )
    return MetricsReading(str(job["status"]), series(payload))


class MetricsPlot:
    """A FigureWidget of a job's metrics that refreshes until the job ends.

    Parameters
    ----------
    conn
        The server.
    job_id
        The training job.
    interval
        Seconds between refreshes.
    follow
        Keep refreshing in the background until the job ends (else read once).
    max_points
        Points per series asked of the server (None: its default).
    """

    def __init__(
        self,
        conn: Connection,
        job_id: str,
        *,
        interval: float = 2.0,
        follow: bool = True,
        max_points: int | None = None,
    ) -> None:
        import plotly.graph_objects as go

        self.job_id = job_id
        #: the live figure; display it in a cell.
        self.figure: go.FigureWidget = go.FigureWidget(
            layout={
                "title": {"text": f"{job_id}: metrics"},
                "xaxis": {"title": {"text": "step"}},
                "height": 320,
            }
        )
        self._poller: Poller[MetricsReading] = Poller(
            conn,
            lambda: metrics_op(job_id, max_points),
            self._show,
            self._show_error,
            interval=interval,
        )
        if follow:
            self._poller.start()
        else:
            self._poller.poll_once()

    def stop(self) -> None:
        """Stop refreshing."""
        self._poller.stop()

    def _show(self, reading: MetricsReading) -> bool:
        names = [t.name for t in self.figure.data]
        with self.figure.batch_update():
            for name, (steps, values) in reading.metrics.items():
                if name not in names:
                    self.figure.add_scatter(name=name, mode="lines")
                    names.append(name)
                trace = self.figure.data[names.index(name)]
                trace.x, trace.y = steps, values
            self.figure.layout.title.text = f"{self.job_id}: {reading.status}"
        return reading.status in TERMINAL

    def _show_error(self, exc: ApiError) -> None:
        self.figure.layout.title.text = html.escape(f"{self.job_id}: {exc.code}: {exc.message}")
