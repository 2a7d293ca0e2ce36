"""The coordinator's settings, as plain data the web layer fills from traitlets."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

#: Settings ``PUT /config`` may change while the server runs.
RUNTIME_TUNABLE = (
    "rate_limit_per_minute",
    "aging_interval_s",
    "default_max_retries",
    "max_upload_mb",
    "inference_timeout_s",
    "max_batch_json_mb",
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
    #: bytes of loaded models each worker keeps (LRU), in MB.
    serving_cache_mb: int = 1024
    #: workers each model is loaded on ahead of traffic.
    serving_replicas: int = 2
    #: longest a sync request waits for others to share a forward pass.
    batch_wait_ms: float = 0.0
    #: default sync timeout when a request names none.
    inference_timeout_s: float = 30.0
    #: body limit of ``POST /inference/batch`` (batches are big by nature).
    max_batch_json_mb: int = 256
    #: seconds between alert evaluations (0: no evaluator).
    alert_interval_s: float = 5.0
    #: changes to the default alert rules, by name (see :mod:`.alert_rules`).
    alert_rules: list[dict[str, Any]] = field(default_factory=list)
    #: how long a failed job counts for the failure alerts.
    alert_failed_window_s: float = 900.0
    #: how long a worker that left counts as lost.
    alert_worker_window_s: float = 300.0
    #: the usage answer's price table: per CPU hour, per GPU hour, per 1,000 inference items.
    price_cpu_hour: float = 0.05
    price_gpu_hour: float = 2.5
    price_inference_1k_items: float = 0.0
    price_currency: str = "USD"
    #: token of the ``/internal`` routes; empty: created once in ``<data_dir>/internal_token``.
    internal_token: str = ""

    def public(self) -> dict[str, Any]:
        """Settings safe to show (no credentials in the database URL)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["data_dir"] = str(self.data_dir)
        out["db_url"] = _redact(self.db_url)
        out["internal_token"] = "***" if self.internal_token else ""
        out["runtime_tunable"] = list(RUNTIME_TUNABLE)
        return out


_SECRET_QUERY_KEYS = ("password", "passwd", "pwd", "secret", "token", "sslpassword")


def _redact(url: str) -> str:
    """The URL with every password hidden: in the userinfo and in query arguments."""
    if not url:
        return url
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "***"
    query = {
        k: ("***" if any(s in k.lower() for s in _SECRET_QUERY_KEYS) else v)
        for k, v in parsed.query.items()
    }
    return parsed.set(query=query).render_as_string(hide_password=True)
