"""``c.dashboard()``: a live ipywidgets view of the cluster inside a notebook.

Workers (threads, GPUs, CPU and memory), the queue by state, the running
jobs, and a Plotly chart of queue depth and throughput over time, refreshed
in the background (see :mod:`stratalab.notebook.background`) so the kernel
stays free. When the server goes away the header says "disconnected" and
the next successful refresh brings it back. :attr:`Dashboard.extras` is the
area where loss curves and alerts are added.
"""

from __future__ import annotations

import html
import itertools
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import ipywidgets as widgets

from stratalab.notebook.background import Poller
from stratalab.notebook.errors import ApiError
from stratalab.notebook.jobs import TERMINAL
from stratalab.notebook.resource import collect
from stratalab.notebook.transport import Connection, Op, Request
from stratalab.notebook.types import Job, Queue, Status, Worker

#: states of a job that holds a worker slot.
ACTIVE = ["SCHEDULING", "PREPARING", "RUNNING", "TRAINING", "CHECKPOINTING", "EVALUATING"]
#: the most running (and queued) jobs listed.
MAX_RUNNING_SHOWN = 20


@dataclass(frozen=True)
class Snapshot:
    """What one refresh read from the server."""

    status: Status
    workers: list[Worker]
    queue: Queue
    running: list[Job]
    #: when it was read (epoch seconds, client clock).
    at: float


def snapshot_op() -> Op[Snapshot]:
    """Read everything the dashboard shows (five small requests)."""
    status = yield Request("GET", "/status")
    workers = yield from collect("/workers")
    queue = yield Request("GET", "/queue")
    running = yield from collect(
        "/jobs", {"status": ACTIVE, "order_by": "-created_at"}, limit=MAX_RUNNING_SHOWN
    )
    return Snapshot(status, workers, queue, running, time.time())


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
    """The running jobs with their worker and time so far."""
    rows = []
    for j in jobs:
        started = j.get("started_at")
        elapsed = "-"
        if started:
            t0 = datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp()
            elapsed = f"{max(0.0, now - t0):.0f} s"
        rows.append(
            [j["id"], j["name"], j["status"], j.get("worker_id") or "-", j["priority"], elapsed]
        )
    headers = ["job", "name", "status", "worker", "priority", "running for"]
    return "<b>Running jobs</b>" + _table(headers, rows, "nothing running")


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
        #: the area where loss curves and alerts are added (``extras.children += (w,)``).
        self.extras = widgets.VBox([widgets.HTML("<i>Loss curves and alerts appear here.</i>")])
        self._points: deque[tuple[datetime, int, int, int]] = deque(maxlen=history)
        super().__init__(
            [
                self.header,
                widgets.HBox([self.workers_view, self.queue_view]),
                self.running_view,
                self.queued_view,
                self.figure,
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
        self._plot(snap)

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
