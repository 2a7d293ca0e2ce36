"""Per-caller request budgets (token buckets), for the 429 and X-RateLimit-*.

A bucket holds ``limit`` tokens and refills at ``limit`` per minute; each
request takes one. In memory on purpose: a restart forgives everyone, which
is the behaviour users expect of a rate limit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass
class Verdict:
    """One request's outcome, with what the headers report."""

    allowed: bool
    limit: int  #: requests per minute
    remaining: int  #: whole requests left now
    reset_s: float  #: seconds until the bucket is full again
    retry_after_s: float  #: seconds until one more request is allowed (0 if allowed)


class RateLimiter:
    """Token buckets keyed by caller."""

    def __init__(self, per_minute: int) -> None:
        #: requests per minute per caller; 0 disables limiting.
        self.per_minute = per_minute
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated)

    def check(self, key: str, now: float | None = None) -> Verdict:
        """Spend one token of ``key``'s bucket if there is one."""
        limit = self.per_minute
        if limit <= 0:
            return Verdict(True, 0, 0, 0.0, 0.0)
        now = time.monotonic() if now is None else now
        rate = limit / 60.0
        tokens, updated = self._buckets.get(key, (float(limit), now))
        tokens = min(float(limit), tokens + (now - updated) * rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        retry = 0.0 if allowed else (1.0 - tokens) / rate
        return Verdict(
            allowed=allowed,
            limit=limit,
            remaining=max(0, math.floor(tokens)),
            reset_s=(limit - tokens) / rate,
            retry_after_s=retry,
        )
