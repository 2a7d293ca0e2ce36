"""Energy counters of the machine a worker runs on: RAPL, NVML, or nothing.

Usage and efficiency report energy only where hardware measured it. Intel and
AMD CPUs expose cumulative package energy through the Linux powercap
interface (RAPL, ``/sys/class/powercap/intel-rapl:N/energy_uj``); NVIDIA GPUs
expose cumulative board energy through NVML (``pynvml``, when importable).
A task reads the counters before and after its work and reports the
difference. Where neither exists (a VM, a container without the sysfs files,
no NVIDIA driver), every reading is ``None`` and :func:`probe` says why: a
number is never made up.

The counters are whole-machine (CPU package) or whole-device (GPU), so the
energy of a task is what the hardware drew while it ran, including anything
else that ran beside it.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["EnergyMeter", "probe", "read_counters"]

logger = logging.getLogger(__name__)

#: where the Linux powercap framework lists RAPL domains.
RAPL_ROOT = Path("/sys/class/powercap")
#: top-level package domains only: sub-domains (core, dram) are parts of them.
_PACKAGE = re.compile(r"^intel-rapl:\d+$")


@dataclass
class Counters:
    """One reading of every energy counter this machine offers."""

    #: RAPL package counters in microjoules, and the value each wraps at.
    rapl: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: NVML total energy per GPU index, in millijoules.
    nvml: dict[int, int] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """``rapl``, ``nvml``, ``rapl+nvml`` or ``unavailable``."""
        parts = [name for name, found in (("rapl", self.rapl), ("nvml", self.nvml)) if found]
        return "+".join(parts) or "unavailable"


def _rapl(root: Path) -> tuple[dict[str, tuple[int, int]], str | None]:
    """Package counters under ``root``, or why there are none."""
    if not root.is_dir():
        return {}, f"{root} does not exist (no RAPL on this machine or in this container)"
    out: dict[str, tuple[int, int]] = {}
    reason = None
    for domain in sorted(root.iterdir()):
        if not _PACKAGE.match(domain.name):
            continue
        try:
            energy = int((domain / "energy_uj").read_text())
            wrap = int((domain / "max_energy_range_uj").read_text())
        except PermissionError:
            reason = f"{domain / 'energy_uj'} is not readable by this user"
            continue
        except (OSError, ValueError):
            continue
        out[domain.name] = (energy, wrap)
    if not out and reason is None:
        reason = f"no readable RAPL package domain under {root}"
    return out, reason


def _visible_gpus(count: int) -> list[int]:
    """NVML indices of the GPUs this process may use (NVML ignores CUDA_VISIBLE_DEVICES)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return list(range(count))
    indices = [int(v) for v in visible.split(",") if v.strip().isdigit()]
    return [i for i in indices if i < count]


def _nvml() -> tuple[dict[int, int], str | None]:
    """Total energy per visible GPU, or why there is none."""
    try:
        import pynvml
    except ImportError:
        return {}, "pynvml is not installed"
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - NVMLError and friends: no driver, no GPU
        return {}, "NVML could not start (no NVIDIA driver or GPU)"
    out: dict[int, int] = {}
    try:
        for index in _visible_gpus(int(pynvml.nvmlDeviceGetCount())):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            out[index] = int(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))
    except Exception:  # noqa: BLE001 - older GPUs do not support the energy counter
        return {}, "this GPU does not report total energy through NVML"
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # shutting down must not hide the reading
            logger.debug("nvmlShutdown failed", exc_info=True)
    return out, None if out else "NVML lists no visible GPU"


def read_counters(root: Path = RAPL_ROOT) -> tuple[Counters, list[str]]:
    """Every counter now, and the reasons for those that are missing."""
    rapl, rapl_reason = _rapl(root)
    nvml, nvml_reason = _nvml()
    reasons = [r for r in (rapl_reason, nvml_reason) if r]
    return Counters(rapl=rapl, nvml=nvml), reasons


def joules_between(before: Counters, after: Counters) -> float | None:
    """Energy drawn between two readings (RAPL wrap-around handled); None if unmeasured."""
    total = 0.0
    measured = False
    for name, (start, wrap) in before.rapl.items():
        if name not in after.rapl:
            continue
        end = after.rapl[name][0]
        delta = end - start if end >= start else end + wrap - start
        total += delta / 1e6
        measured = True
    for index, start_mj in before.nvml.items():
        if index in after.nvml:
            total += max(0, after.nvml[index] - start_mj) / 1e3
            measured = True
    return total if measured else None


def probe(root: Path = RAPL_ROOT) -> dict[str, Any]:
    """What this machine can measure: ``{"source", "reason", "counters"}``.

    ``source`` is ``unavailable`` (with the ``reason``) when nothing can be read.
    The coordinator runs this on every worker (``client.run``) to tell the
    API whether energy figures exist.
    """
    counters, reasons = read_counters(root)
    return {
        "source": counters.source,
        "reason": None if counters.source != "unavailable" else "; ".join(reasons),
        "counters": len(counters.rapl) + len(counters.nvml),
    }


class EnergyMeter:
    """Joules drawn between :meth:`start` and :meth:`stop`, or ``None`` when unmeasured."""

    def __init__(self, root: Path = RAPL_ROOT) -> None:
        self._root = root
        self._before: Counters | None = None

    def start(self) -> None:
        """Take the first reading."""
        self._before, _ = read_counters(self._root)

    def stop(self) -> float | None:
        """Energy since :meth:`start` in joules (``None`` if nothing could be read)."""
        if self._before is None or self._before.source == "unavailable":
            return None
        after, _ = read_counters(self._root)
        return joules_between(self._before, after)
