"""What runs in a user's kernel or script: the client SDK, magics and widgets (HTTP only).

``Client``/``AsyncClient`` cover the REST API; ``%load_ext stratalab`` adds the
``%stratalab`` magics; ``Client().dashboard()`` is the live widget. Widgets and
magics import ipywidgets, Plotly and IPython only when used.
"""

from __future__ import annotations

from typing import Any

from stratalab.notebook.client import AsyncClient, Client
from stratalab.notebook.discovery import ServerInfo, discover
from stratalab.notebook.errors import ApiError, WaitTimeout
from stratalab.notebook.tensors import to_numpy
from stratalab.notebook.transport import Connection

__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "Connection",
    "ServerInfo",
    "WaitTimeout",
    "discover",
    "load_ipython_extension",
    "to_numpy",
]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext stratalab.notebook``: register the ``%stratalab`` magics."""
    from stratalab.notebook.magics import load_ipython_extension as load

    load(ipython)
