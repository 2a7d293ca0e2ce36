"""Probes that run inside Dask's own processes (``Client.run_on_scheduler``).

Here, in the package every Dask machine can import, so the function travels
by reference and the scheduler never unpickles code by value.
"""

from __future__ import annotations

from typing import Any


def scheduler_probe(dask_scheduler: Any) -> dict[str, Any]:
    """CPU, memory and queue sizes of the Dask scheduler process it runs in."""
    recent = dask_scheduler.monitor.recent()
    return {
        "cpu": float(recent.get("cpu") or 0.0),
        "memory": int(recent.get("memory") or 0),
        "tasks": len(dask_scheduler.tasks),
        "queued": len(getattr(dask_scheduler, "queued", ())),
        "unrunnable": len(getattr(dask_scheduler, "unrunnable", ())),
        "workers": len(dask_scheduler.workers),
        "clients": len(dask_scheduler.clients),
        "host_net_io": {
            "read_bps": float(recent.get("host_net_io.read_bps") or 0.0),
            "write_bps": float(recent.get("host_net_io.write_bps") or 0.0),
        },
    }
