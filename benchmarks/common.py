"""What every benchmark shares: a load generator, percentiles, the results file.

Benchmarks report ratios against a baseline measured in the same run on the
same machine, print a markdown table, and append it with the machine's
description to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import psutil

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    """One line saying where the numbers come from."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, int(q) - 1))]


async def rps(
    base_url: str,
    make_request: Callable[[httpx.AsyncClient], Any],
    *,
    concurrency: int = 16,
    duration_s: float = 5.0,
    headers: dict[str, str] | None = None,
) -> dict[str, float]:
    """Requests/s of ``make_request`` from ``concurrency`` loops for ``duration_s``."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=30
    ) as client:
        deadline = time.perf_counter() + duration_s

        async def loop() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                resp = await make_request(client)
                latencies.append(time.perf_counter() - t0)
                if resp.status_code >= 400:
                    errors += 1

        t_start = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t_start
    return {
        "rps": len(latencies) / elapsed,
        "requests": float(len(latencies)),
        "errors": float(errors),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def table(rows: list[list[Any]], header: list[str]) -> str:
    """A markdown table."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def record(title: str, body: str, command: str) -> None:
    """Print and append a result section to RESULTS.md."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = f"\n## {title} — {stamp}\n\nMachine: {machine()}  \nCommand: `{command}`\n\n{body}\n"
    print(section)
    if not RESULTS.exists():
        RESULTS.write_text(
            "# Benchmark results\n\nAppended by the scripts in this folder; "
            "every figure is measured, with the machine it ran on.\n"
        )
    with RESULTS.open("a") as fh:
        fh.write(section)
