"""``c.dashboard()``: a live ipywidgets view of the cluster inside a notebook.

Workers (threads, GPUs, CPU and memory), the queue by state, the running
jobs with a training job's progress, the open alerts, a Plotly chart of
queue depth and throughput over time, and the loss and validation accuracy
of running training jobs per round, refreshed in the background (see
:mod:`stratalab.notebook.background`) so the kernel stays free. When the
server goes away the header says "disconnected" and the next successful
refresh brings it back. :attr:`Dashboard.extras` takes more views.
"""

from __future__ import annotations

import html
import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import ipywidgets as widgets

from stratalab.notebook.background import Poller
from stratalab.notebook.errors import ApiError
from stratalab.notebook.jobs import TERMINAL
from stratalab.notebook.resource import collect, seg
from stratalab.notebook.transport import Connection, Op, Request
from stratalab.notebook.types import Job, Queue, Status, Worker

#: states of a job that holds a worker slot.
ACTIVE = [
    "SCHEDULING",
    "PREPARING",
    "RUNNING",
    "TRAINING",
    "CHECKPOINTING",
    "EVALUATING",
    "EXPORTING",
]
#: the most running (and queued) jobs listed.
MAX_RUNNING_SHOWN = 20
#: the most open alerts listed (the newest, shown worst first).
MAX_ALERTS_SHOWN = 10
#: training jobs whose loss curves are drawn, and points per curve.
MAX_CURVES = 4
CURVE_POINTS = 200


@dataclass(frozen=True)
class Snapshot:
    """What one refresh read from the server."""

    status: Status
    workers: list[Worker]
    queue: Queue
    running: list[Job]
    #: when it was read (epoch seconds, client clock).
    at: float
    #: open (active or acknowledged) alerts, newest first.
    alerts: list[dict[str, Any]] = field(default_factory=list)
    #: per-round metrics of the running training jobs, by job id.
    curves: dict[str, dict[str, Any]] = field(default_factory=dict)


def snapshot_op() -> Op[Snapshot]:
    """Read everything the dashboard shows (six small requests)."""
    status = yield Request("GET", "/status")
    workers = yield from collect("/workers")
    queue = yield Request("GET", "/queue")
    running = yield from collect(
        "/jobs", {"status": ACTIVE, "order_by": "-created_at"}, limit=MAX_RUNNING_SHOWN
    )
    alerts = yield from collect(
        "/alerts", {"status": "active,acknowledged"}, limit=MAX_ALERTS_SHOWN
    )
    curves: dict[str, dict[str, Any]] = {}
    for job in [j for j in running if j.get("type") == "training"][:MAX_CURVES]:
        params = {"max_points": CURVE_POINTS}
        answer = yield Request("GET", f"/jobs/{seg(job['id'])}/metrics", params=params)
        curves[job["id"]] = answer.get("metrics", {})
    return Snapshot(status, workers, queue, running, time.time(), alerts, curves)


def _table(headers: list[str], rows: list[list[Any]], empty: str) -> str:
    if not rows:
        return f"<i>{html.escape(empty)}</i>"
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{h}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td style='padding:2px 8px'>{html.escape(str(v))}</td>" for v in row)
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _gib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**30:.1f} GiB"


def workers_html(workers: list[Worker]) -> str:
    """The workers table."""
    rows = [
        [
            w["id"],
            w["status"],
            f"{w['used_cpu']}/{w['nthreads']}",
            f"{w['used_gpus']}/{w['gpus']}",
            "-" if w.get("cpu_percent") is None else f"{w['cpu_percent']:.0f}%",
            f"{_gib(w.get('memory_bytes'))} / {_gib(w.get('memory_limit_bytes'))}",
            len(w.get("running_jobs", [])),
        ]
        for w in workers
    ]
    headers = ["worker", "status", "CPU slots", "GPUs", "CPU", "memory", "jobs"]
    return "<b>Workers</b>" + _table(headers, rows, "no workers")


def queue_html(queue: Queue) -> str:
    """Jobs by state, queue depth and waits."""
    rows = [[state, n] for state, n in sorted(queue.get("by_state", {}).items())]
    wait = queue.get("estimated_wait_seconds")
    summary = (
        f"depth {queue['depth']}, running {queue['running']}, "
        f"estimated wait {'-' if wait is None else f'{wait:.0f} s'}, "
        f"24 h: {queue['completed_24h']} completed, {queue['failed_24h']} failed"
    )
    return f"<b>Queue</b><div>{html.escape(summary)}</div>" + _table(
        ["state", "jobs"], rows, "no jobs yet"
    )


def running_html(jobs: list[Job], now: float) -> str:
    """The running jobs with their worker, time so far, and a training job's progress."""
    rows = []
    for j in jobs:
        started = j.get("started_at")
        elapsed = "-"
        if started:
            t0 = datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp()
            elapsed = f"{max(0.0, now - t0):.0f} s"
        rows.append(
            [
                j["id"],
                j["name"],
                j["status"],
                j.get("worker_id") or "-",
                j["priority"],
                elapsed,
                progress_text(j.get("progress")),
            ]
        )
    headers = ["job", "name", "status", "worker", "priority", "running for", "progress"]
    return "<b>Running jobs</b>" + _table(headers, rows, "nothing running")


def progress_text(progress: dict[str, Any] | None) -> str:
    """``42% · round 3 · loss 0.31 · val 0.91`` for a training job; ``-`` otherwise."""
    if not progress or progress.get("percent_complete") is None:
        return "-"
    parts = [f"{float(progress['percent_complete']):.0f}%"]
    if progress.get("current_round"):
        parts.append(f"round {progress['current_round']}")
    if progress.get("current_loss") is not None:
        parts.append(f"loss {float(progress['current_loss']):.3g}")
    if progress.get("val_accuracy") is not None:
        parts.append(f"val {float(progress['val_accuracy']):.3g}")
    return " · ".join(parts)


def queued_html(queue: Queue) -> str:
    """The jobs waiting longest or most urgent, and why each one waits."""
    rows = [
        [
            j["id"],
            j["name"],
            j["priority"],
            "-" if j.get("priority_aged") is None else f"{j['priority_aged']:.1f}",
            j.get("why_pending") or "-",
        ]
        for j in queue.get("jobs", [])[:MAX_RUNNING_SHOWN]
    ]
    headers = ["job", "name", "priority", "aged", "why pending"]
    return "<b>Queued jobs</b>" + _table(headers, rows, "nothing queued")


def alerts_html(alerts: list[dict[str, Any]]) -> str:
    """The open alerts, worst first: what, about what, since when."""
    order = {"critical": 0, "warning": 1, "info": 2}
    ranked = sorted(alerts, key=lambda a: order.get(a.get("severity", ""), 3))
    rows = [
        [
            a["severity"],
            a["rule"],
            a["message"],
            a["status"],
            (a.get("started_at") or "-").replace("T", " ")[:19],
        ]
        for a in ranked
    ]
    headers = ["severity", "rule", "message", "status", "since (UTC)"]
    return "<b>Alerts</b>" + _table(headers, rows, "no open alerts")


def _close_tree(widget: widgets.Widget) -> None:
    """Close a widget and, for a box, everything in it."""
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    widgets.Widget.close(widget)


class Dashboard(widgets.VBox):
    """A live dashboard widget; display it, and ``close()`` it when done.

    Parameters
    ----------
    conn
        The server (a client's ``connection``).
    interval
        Seconds between refreshes.
    history
        Points kept in the chart.
    autostart
        Start refreshing in the background at once.
    """

    def __init__(
        self,
        conn: Connection,
        *,
        interval: float = 2.0,
        history: int = 300,
        autostart: bool = True,
    ) -> None:
        import plotly.graph_objects as go

        #: whether the last refresh reached the server.
        self.connected = False
        #: the last successful refresh.
        self.snapshot: Snapshot | None = None
        #: the last error, when disconnected.
        self.error: ApiError | None = None
        self.url = conn.url
        self.header = widgets.HTML(f"connecting to {html.escape(conn.url)} ...")
        self.workers_view = widgets.HTML()
        self.queue_view = widgets.HTML()
        self.running_view = widgets.HTML()
        self.queued_view = widgets.HTML()
        self.alerts_view = widgets.HTML()
        self.figure = go.FigureWidget(
            layout={
                "title": {"text": "queue depth and throughput"},
                "height": 300,
                "margin": {"l": 40, "r": 40, "t": 40, "b": 30},
                "yaxis": {"title": {"text": "jobs"}, "rangemode": "tozero"},
                "yaxis2": {
                    "title": {"text": "jobs/min"},
                    "overlaying": "y",
                    "side": "right",
                    "rangemode": "tozero",
                },
                "legend": {"orientation": "h"},
            }
        )
        self.figure.add_scatter(name="queued", mode="lines")
        self.figure.add_scatter(name="running", mode="lines")
        self.figure.add_scatter(name="finished/min", mode="lines", yaxis="y2")
        #: loss (left axis) and validation accuracy (right axis) of running training jobs.
        self.loss_figure = go.FigureWidget(
            layout={
                "title": {"text": "training: loss and validation accuracy per round"},
                "height": 300,
                "margin": {"l": 40, "r": 40, "t": 40, "b": 30},
                "xaxis": {"title": {"text": "round"}},
                "yaxis": {"title": {"text": "loss"}, "rangemode": "tozero"},
                "yaxis2": {
                    "title": {"text": "val accuracy"},
                    "overlaying": "y",
                    "side": "right",
                    "range": [0, 1],
                },
                "legend": {"orientation": "h"},
            }
        )
        #: room for more widgets (``extras.children += (w,)``).
        self.extras = widgets.VBox([])
        self._points: deque[tuple[datetime, int, int, int]] = deque(maxlen=history)
        super().__init__(
            [
                self.header,
                widgets.HBox([self.workers_view, self.queue_view]),
                self.running_view,
                self.queued_view,
                self.alerts_view,
                self.figure,
                self.loss_figure,
                self.extras,
            ]
        )
        self._poller: Poller[Snapshot] = Poller(
            conn, snapshot_op, self._show, self._show_error, interval=interval
        )
        if autostart:
            self.start()

    # ------------------------------------------------------------ control
    def start(self) -> None:
        """Refresh in the background (a task on the kernel's loop, or a thread)."""
        self._poller.start()

    def stop(self) -> None:
        """Stop refreshing; the widget keeps its last values."""
        self._poller.stop()

    @property
    def refreshing(self) -> bool:
        """Whether the background refresh runs."""
        return self._poller.running

    def refresh(self) -> bool:
        """Refresh once now (blocking); True when the server answered."""
        self._poller.poll_once()
        return self.connected

    def close(self) -> None:
        """Stop refreshing and close the widget and its parts."""
        self.stop()
        _close_tree(self)

    # ------------------------------------------------------------ rendering
    def _show(self, snap: Snapshot) -> None:
        self.connected, self.error, self.snapshot = True, None, snap
        status = snap.status
        link = status.get("dask_dashboard")
        dask = (
            f" &middot; <a href='{html.escape(link)}' target='_blank'>Dask dashboard</a>"
            if link
            else ""
        )
        stamp = time.strftime("%H:%M:%S", time.localtime(snap.at))
        self.header.value = (
            f"<b style='color:green'>&#9679; connected</b> to {html.escape(self.url)} "
            f"&middot; StrataLab {html.escape(status['version'])} "
            f"&middot; up {status['uptime_s']:.0f} s{dask} "
            f"&middot; updated {stamp}"
        )
        self.workers_view.value = workers_html(snap.workers)
        self.queue_view.value = queue_html(snap.queue)
        self.running_view.value = running_html(snap.running, snap.at)
        self.queued_view.value = queued_html(snap.queue)
        self.alerts_view.value = alerts_html(snap.alerts)
        self._plot(snap)
        self._plot_curves(snap.curves)

    def _show_error(self, exc: ApiError) -> None:
        self.connected, self.error = False, exc
        stamp = time.strftime("%H:%M:%S")
        self.header.value = (
            f"<b style='color:#c00'>&#9679; disconnected</b> from {html.escape(self.url)}: "
            f"{html.escape(exc.code)}: {html.escape(exc.message)} "
            f"&middot; retrying every {self._poller.interval:g} s (last try {stamp})"
        )

    def _plot(self, snap: Snapshot) -> None:
        finished = sum(n for s, n in snap.queue.get("by_state", {}).items() if s in TERMINAL)
        when = datetime.fromtimestamp(snap.at, tz=timezone.utc)
        self._points.append((when, snap.queue["depth"], snap.queue["running"], finished))
        pts = list(self._points)
        rates = [0.0]
        for (t0, *_, f0), (t1, *_, f1) in itertools.pairwise(pts):
            dt = (t1 - t0).total_seconds()
            rates.append(max(0, f1 - f0) * 60 / dt if dt > 0 else 0.0)
        times = [p[0] for p in pts]
        with self.figure.batch_update():
            self.figure.data[0].x, self.figure.data[0].y = times, [p[1] for p in pts]
            self.figure.data[1].x, self.figure.data[1].y = times, [p[2] for p in pts]
            self.figure.data[2].x, self.figure.data[2].y = times, rates

    def _plot_curves(self, curves: dict[str, dict[str, Any]]) -> None:
        """One loss and one validation-accuracy line per running training job."""
        traces = []
        for job_id, metrics in curves.items():
            for name, axis, dash in (("loss", "y", None), ("val_accuracy", "y2", "dot")):
                points = metrics.get(name) or []
                traces.append(
                    {
                        "name": f"{job_id[-6:]} {name}",
                        "x": [p["round"] for p in points],
                        "y": [p["value"] for p in points],
                        "yaxis": axis,
                        "mode": "lines+markers",
                        "line": {"dash": dash} if dash else {},
                    }
                )
        with self.loss_figure.batch_update():
            self.loss_figure.data = ()
            for trace in traces:
                self.loss_figure.add_scatter(**trace)
