"""Prefixed identifiers and UTC timestamps, the same everywhere.

IDs carry their kind (``job_``, ``key_``, ...) so a log line or a URL says
what it points at; times are timezone-aware UTC and render as ISO 8601 with
``Z``.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone

#: The prefixes the API promises (architecture decision 10).
PREFIXES = frozenset(
    {
        "model",
        "ds",
        "job",
        "infer",
        "batch",
        "ckpt",
        "exp",
        "proj",
        "res",
        "alert",
        "key",
        "wrk",
        "eval",
        "usr",
    }
)


def new_id(prefix: str) -> str:
    """Return a fresh random id such as ``job_3f9c1a2b7d4e5f60``."""
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    return f"{prefix}_{secrets.token_hex(8)}"


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """Treat a naive datetime (as SQLite returns them) as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def isoformat(value: datetime | None) -> str | None:
    """Render a time as ISO 8601 UTC with a ``Z`` suffix (or None)."""
    if value is None:
        return None
    text = as_utc(value).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")
