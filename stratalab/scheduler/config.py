"""The coordinator's settings, as plain data the web layer fills from traitlets."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

#: Settings ``PUT /config`` may change while the server runs.
RUNTIME_TUNABLE = (
    "rate_limit_per_minute",
    "aging_interval_s",
    "default_max_retries",
    "max_upload_mb",
)


@dataclass
class CoordinatorConfig:
    """Everything the core needs to start; see the traitlets for each meaning."""

    data_dir: Path
    db_url: str = ""
    dask_address: str = ""
    n_workers: int = 2
    threads_per_worker: int = 1
    worker_memory_limit: str = "auto"
    aging_interval_s: float = 60.0
    default_max_retries: int = 1
    rate_limit_per_minute: int = 6000
    max_upload_mb: int = 512
    max_json_kb: int = 1024
    owner: str = "admin"
    dispatch_interval_s: float = 1.0
    monitor_interval_s: float = 1.0

    def public(self) -> dict[str, Any]:
        """Settings safe to show (no credentials in the database URL)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["data_dir"] = str(self.data_dir)
        out["db_url"] = _redact(self.db_url)
        out["runtime_tunable"] = list(RUNTIME_TUNABLE)
        return out


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
