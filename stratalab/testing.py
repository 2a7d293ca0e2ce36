"""Helpers for tests of StrataLab and of code built on it (like distributed.utils_test)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> T:
    """Call ``probe`` until it returns something truthy; return that value.

    Raises :class:`TimeoutError` naming ``what`` after ``timeout`` seconds, so a
    test polls with a deadline instead of guessing a sleep.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what or probe}")
        time.sleep(interval)
