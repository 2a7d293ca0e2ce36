"""Find the GPUs of the machine a Dask worker runs on.

The coordinator calls :func:`worker_info` with ``client.run`` to learn what
each worker can do (and to fill ``GET /workers``). It is a probe on machines we
do not control, so it answers "no GPU" rather than raise: a missing driver, a
hung ``nvidia-smi`` or a CPU-only torch must never fail worker discovery.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import subprocess
from typing import Any

__all__ = ["detect_gpus", "worker_info"]

logger = logging.getLogger(__name__)

#: ``nvidia-smi`` can hang for a long time on a wedged driver.
NVIDIA_SMI_TIMEOUT_S = 5.0
_NVIDIA_SMI = [
    "nvidia-smi",
    "--query-gpu=index,name,memory.total",
    "--format=csv,noheader,nounits",
]


def detect_gpus() -> list[dict[str, Any]]:
    """List this machine's GPUs as ``[{"index", "name", "memory_total_mb"}]``.

    ``nvidia-smi`` comes first because it needs no CUDA context and sees every
    GPU even when torch is CPU-only; torch is the fallback for machines that
    have the driver libraries but not the tool (many containers). Never raises.
    """
    gpus = _from_nvidia_smi()
    if gpus is None:
        gpus = _from_torch()
    return gpus


def worker_info() -> dict[str, Any]:
    """What the coordinator needs to know about a worker's host, for ``client.run``."""
    gpus = detect_gpus()
    return {
        "gpus": gpus,
        "cuda_available": _torch_cuda_available(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
    }


def _from_nvidia_smi() -> list[dict[str, Any]] | None:
    """GPUs as ``nvidia-smi`` reports them, ``None`` if it cannot tell us."""
    try:
        done = subprocess.run(
            _NVIDIA_SMI,
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=True,
        )
    except FileNotFoundError:
        return None
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("nvidia-smi failed: %s", exc)
        return None
    gpus: list[dict[str, Any]] = []
    for row in done.stdout.splitlines():
        if not row.strip():
            continue
        try:
            index, rest = row.split(",", 1)
            name, memory = rest.rsplit(",", 1)  # a name may contain commas
            gpus.append(
                {"index": int(index), "name": name.strip(), "memory_total_mb": int(float(memory))}
            )
        except ValueError:
            logger.warning("cannot parse nvidia-smi row %r", row)
    return gpus


def _from_torch() -> list[dict[str, Any]]:
    """GPUs as torch sees them; ``[]`` without torch or without CUDA."""
    if importlib.util.find_spec("torch") is None:
        return []
    try:
        import torch

        return [
            {
                "index": i,
                "name": props.name,
                "memory_total_mb": int(props.total_memory // (1024 * 1024)),
            }
            for i in range(torch.cuda.device_count())
            for props in [torch.cuda.get_device_properties(i)]
        ]
    except Exception:
        # A broken driver or torch build raises anything from OSError to
        # RuntimeError; for a probe that means "no usable GPU".
        logger.warning("torch could not list CUDA devices", exc_info=True)
        return []


def _torch_cuda_available() -> bool:
    """Whether torch, as installed on this worker, can run on a GPU."""
    if importlib.util.find_spec("torch") is None:
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        logger.warning("torch could not check CUDA", exc_info=True)
        return False
