"""Build a registered plugin (reader, strategy, architecture) by name, safely.

Every pluggable policy is looked up by a name a user sent, with options the
user sent. One function answers the two ways that goes wrong, the same way
everywhere: an unknown name lists the allowed ones, and options the
constructor does not accept are refused by checking its signature — not by
catching ``TypeError`` from the constructor, which would also swallow real
bugs inside it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from stratalab.errors import StrataLabError, ValidationFailed

T = TypeVar("T")


def construct(
    factories: Mapping[str, Callable[..., T]],
    name: str,
    options: Mapping[str, Any],
    *,
    what: str,
    field: str,
    options_word: str = "options",
    unknown_error: type[StrataLabError] = ValidationFailed,
    options_error: type[StrataLabError] = ValidationFailed,
) -> T:
    """``factories[name](**options)``, or a clear error naming what was wrong.

    Parameters
    ----------
    what
        How the message names the kind of thing (``"sync_mode"``, ...).
    field
        The key under which ``details`` carries ``name``.
    options_word
        ``"options"`` or ``"arguments"``, for the message and ``details``.
    """
    factory = factories.get(name)
    if factory is None:
        raise unknown_error(
            f"unknown {what} {name!r}", details={field: name, "allowed": sorted(factories)}
        )
    try:
        inspect.signature(factory).bind(**options)
    except TypeError as exc:
        raise options_error(
            f"invalid {options_word} for {what} {name!r}: {exc}",
            details={field: name, options_word: sorted(options)},
        ) from None
    return factory(**options)
