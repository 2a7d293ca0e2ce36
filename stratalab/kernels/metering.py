"""What a piece of work on a worker cost: CPU and GPU milliseconds and energy.

Usage and billing count what the workers measured, never an estimate made on
the coordinator. A task job's process tree is measured by
:func:`exited_cpu_ms`. A training round or an evaluation wraps its work in a
:class:`Meter` and returns :meth:`Meter.usage` with its result:

- ``cpu_ms``: CPU time of the worker process during the work
  (``time.process_time``), so torch's intra-op threads count. On a worker
  running several tasks at once (``threads_per_worker > 1``) it includes
  what the others used meanwhile.
- ``gpu_ms``: the GPU timeline between two CUDA events recorded around the
  work on the current stream (0 on a CPU device).
- ``energy_j``: RAPL/NVML counters' difference (:mod:`.power`), ``None``
  where the machine has neither.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

import psutil

from stratalab.kernels.power import EnergyMeter

__all__ = ["Meter", "exited_cpu_ms"]


def exited_cpu_ms(pid: int) -> float | None:
    """CPU ms of an exited but not yet reaped child: its own and its waited-for children's.

    The task kernel calls this between ``waitid(WNOWAIT)`` and the reap: the
    zombie still carries its times (``/proc/<pid>/stat``), and they belong
    to that one process tree, unlike ``RUSAGE_CHILDREN``, which mixes every
    child the worker ever reaped. Background processes the child left
    running (killed afterwards) are not counted.
    """
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return (t.user + t.system + t.children_user + t.children_system) * 1000.0


class Meter:
    """Measures the block it wraps (``with Meter(device) as m: ...``)."""

    def __init__(self, device: str = "cpu", *, energy: bool = True) -> None:
        self.device = device
        self._energy = EnergyMeter() if energy else None
        self._cpu0 = 0.0
        self._events: tuple[Any, Any] | None = None
        #: filled on exit.
        self.cpu_ms = 0.0
        self.gpu_ms = 0.0
        self.energy_j: float | None = None

    def __enter__(self) -> Meter:
        if self._energy is not None:
            self._energy.start()
        if self.device == "cuda":
            import torch

            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            self._events = (start, end)
        self._cpu0 = time.process_time()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cpu_ms = (time.process_time() - self._cpu0) * 1000.0
        if self._events is not None:
            start, end = self._events
            end.record()
            end.synchronize()
            self.gpu_ms = float(start.elapsed_time(end))
        if self._energy is not None:
            self.energy_j = self._energy.stop()

    def usage(self) -> dict[str, Any]:
        """``cpu_ms``, ``gpu_ms`` and ``energy_j`` (None when unmeasured)."""
        return {"cpu_ms": self.cpu_ms, "gpu_ms": self.gpu_ms, "energy_j": self.energy_j}
