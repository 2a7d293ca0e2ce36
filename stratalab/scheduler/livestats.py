"""Live figures of each service: this process, the Dask scheduler, the workers, the database.

Nothing here touches the store's tables: the coordinator's own process is
sampled with psutil, the Dask scheduler answers a probe
(:func:`stratalab.kernels.diagnostics.scheduler_probe`), and the workers'
CPU, memory and task queues come from the heartbeats the coordinator's
monitor already collects. The coordinator's recent log records are kept in a
bounded ring (:class:`LogRing`) for ``GET /logs``.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from collections import deque
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

import psutil

from stratalab.ids import isoformat
from stratalab.scheduler.cluster import WorkerInfo
from stratalab.scheduler.views import level_name

#: services ``GET /metrics/live`` reports on.
SERVICES = ("coordinator", "scheduler", "workers", "database")
#: metric groups it can filter by; ``status`` is always included.
METRIC_GROUPS = ("cpu", "memory", "queues", "network")
#: the fields of each group, as they appear in a service's object.
_GROUP_FIELDS = {
    "cpu": {"cpu_usage"},
    "memory": {"memory_usage", "memory_limit"},
    "queues": {
        "queue_size",
        "running",
        "executing",
        "ready",
        "waiting",
        "tasks",
        "queued",
        "unrunnable",
        "log_backlog",
        "record_backlog",
        "executor_queue",
        "event_subscribers",
        "events_dropped",
        "pool_checked_out",
    },
    "network": {"read_bps", "write_bps"},
}
_ALWAYS = {"status", "count", "workers", "dialect", "pid", "latency_ms"}
_MB = 1024 * 1024
#: Dask's log format: ``2026-11-23 21:17:17,670 - distributed.worker - WARNING - text``.
_DASK_LINE = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - (?P<logger>\S+) - (?P<level>[A-Z]+) - "
    r"(?P<message>.*)$",
    re.DOTALL,
)
_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


class ProcessSampler:
    """CPU and memory of this process (psutil keeps the CPU counter between calls)."""

    def __init__(self) -> None:
        self._proc = psutil.Process(os.getpid())
        self._proc.cpu_percent(None)  # the first reading only starts the counter

    def sample(self) -> dict[str, Any]:
        """``cpu_usage`` (% of one core since the last call), ``memory_usage`` (MB RSS)."""
        with self._proc.oneshot():
            return {
                "pid": self._proc.pid,
                "cpu_usage": round(self._proc.cpu_percent(None), 1),
                "memory_usage": round(self._proc.memory_info().rss / _MB, 1),
                "threads": self._proc.num_threads(),
            }


class LogRing(logging.Handler):
    """The coordinator's newest log records (bounded), for ``GET /logs``."""

    def __init__(self, capacity: int = 1000, level: int = logging.INFO) -> None:
        super().__init__(level)
        self._records: deque[tuple[int, float, int, str, str]] = deque(maxlen=capacity)
        self._seq = itertools.count(1)  # atomic under the GIL: executor threads log too

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record's time, level, logger and message (never its traceback)."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        seq = next(self._seq)
        self._records.append((seq, record.created, record.levelno, record.name, message))

    def entries(self, *, min_level: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` records at ``min_level`` or above, oldest first."""
        out: list[dict[str, Any]] = []
        for seq, ts, level, name, message in reversed(self._records):
            if level < min_level:
                continue
            out.append(
                {
                    "id": f"coordinator-{seq}",
                    "ts": _iso(ts),
                    "source": "coordinator",
                    "job_id": None,
                    "logger": name,
                    "level": level_name(level),
                    "message": message,
                }
            )
            if len(out) >= limit:
                break
        out.reverse()
        return out


def _iso(ts: float) -> str | None:
    return isoformat(datetime.fromtimestamp(ts, tz=timezone.utc))


def parse_worker_logs(
    lines: Iterable[tuple[str, str]], *, min_level: int = 0
) -> list[dict[str, Any]]:
    """Dask's ``(level, text)`` pairs (newest first) as entries, oldest first."""
    out = []
    for level, text in lines:
        number = _LEVELS.get(level, 20)
        if number < min_level:
            continue
        m = _DASK_LINE.match(text)
        if m is None:
            out.append({"ts": None, "logger": None, "level": level, "message": text})
            continue
        when = datetime.strptime(m["ts"], "%Y-%m-%d %H:%M:%S,%f")
        out.append(
            {
                # Dask formats its log times in the worker's local time zone
                "ts": isoformat(when.astimezone(timezone.utc)),
                "logger": m["logger"],
                "level": m["level"],
                "message": m["message"],
            }
        )
    out.reverse()
    return out


def task_counts(info: WorkerInfo) -> dict[str, int]:
    """A worker's tasks by state, from its last heartbeat."""
    counts = info.metrics.get("task_counts") or {}
    return {str(k): int(v) for k, v in counts.items()} if isinstance(counts, dict) else {}


def workers_stats(views: list[dict[str, Any]], infos: dict[str, WorkerInfo]) -> dict[str, Any]:
    """``GET /workers/stats``: counts, capacity, use and task queues over the live workers."""
    by_status: dict[str, int] = {}
    for v in views:
        by_status[v["status"]] = by_status.get(v["status"], 0) + 1
    cpus = [float(v["cpu_percent"]) for v in views if v.get("cpu_percent") is not None]
    tasks: dict[str, int] = {}
    for info in infos.values():
        for state, n in task_counts(info).items():
            tasks[state] = tasks.get(state, 0) + n
    nthreads = sum(v["nthreads"] for v in views)
    gpus = sum(v["gpus"] for v in views)
    used_cpu = sum(v["used_cpu"] for v in views)
    used_gpu = sum(v["used_gpus"] for v in views)
    return {
        "total": len(views),
        "active": by_status.get("active", 0),
        "by_status": by_status,
        "hosts": len({v["host"] for v in views}),
        "nthreads": nthreads,
        "gpus": gpus,
        "memory_limit_bytes": sum(v["memory_limit_bytes"] or 0 for v in views),
        "memory_used_bytes": sum(int(v.get("memory_bytes") or 0) for v in views),
        "cpu_percent": {
            "mean": round(sum(cpus) / len(cpus), 1) if cpus else None,
            "max": round(max(cpus), 1) if cpus else None,
        },
        "tasks": tasks,
        "running_jobs": sum(len(v["running_jobs"]) for v in views),
        "allocated": {"cpu": used_cpu, "gpu": used_gpu},
        "utilization": {
            "cpu": round(used_cpu / nthreads, 4) if nthreads else 0.0,
            "gpu": round(used_gpu / gpus, 4) if gpus else 0.0,
        },
    }


def worker_services(infos: dict[str, WorkerInfo], drained: set[str]) -> dict[str, Any]:
    """The ``workers`` service of ``GET /metrics/live``: one object per worker."""
    per_worker = {}
    for info in infos.values():
        counts = task_counts(info)
        net = info.metrics.get("host_net_io") or {}
        per_worker[info.id] = {
            "status": "draining" if info.id in drained else info.status,
            "cpu_usage": info.metrics.get("cpu"),
            "memory_usage": round(int(info.metrics.get("memory") or 0) / _MB, 1),
            "memory_limit": round(info.memory_limit / _MB, 1) if info.memory_limit else None,
            "executing": counts.get("executing", 0),
            "ready": counts.get("ready", 0),
            "waiting": counts.get("waiting", 0),
            "queue_size": counts.get("ready", 0) + counts.get("waiting", 0),
            "read_bps": net.get("read_bps"),
            "write_bps": net.get("write_bps"),
        }
    return {
        "status": "healthy" if infos else "degraded",
        "count": len(infos),
        "workers": per_worker,
    }


def scheduler_service(probe: dict[str, Any] | None, latency_ms: float) -> dict[str, Any]:
    """The ``scheduler`` service from :func:`~stratalab.kernels.diagnostics.scheduler_probe`."""
    if probe is None:
        return {"status": "unreachable", "latency_ms": round(latency_ms, 3)}
    net = probe.get("host_net_io") or {}
    return {
        "status": "healthy",
        "latency_ms": round(latency_ms, 3),
        "cpu_usage": round(float(probe["cpu"]), 1),
        "memory_usage": round(int(probe["memory"]) / _MB, 1),
        "tasks": probe["tasks"],
        "queued": probe["queued"],
        "unrunnable": probe["unrunnable"],
        "workers": probe["workers"],
        "read_bps": net.get("read_bps"),
        "write_bps": net.get("write_bps"),
    }


def select(
    services: dict[str, dict[str, Any]], groups: Iterable[str] | None
) -> dict[str, dict[str, Any]]:
    """Keep only the fields of the metric ``groups`` (all when None), per service."""
    if groups is None:
        return services
    keep = set(_ALWAYS).union(*(_GROUP_FIELDS[g] for g in groups))

    def trim(obj: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for k, v in obj.items():
            if k == "workers" and isinstance(v, dict):
                out[k] = {wid: trim(w) for wid, w in v.items()}
            elif k in keep:
                out[k] = v
        return out

    return {name: trim(obj) for name, obj in services.items()}


def now_iso() -> str | None:
    """The current time as the API writes it."""
    return _iso(time.time())
