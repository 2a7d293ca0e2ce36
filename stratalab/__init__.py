"""StrataLab: a Jupyter-native distributed ML compute platform on Dask.

Importing the package is cheap: the server extension, the coordinator, the
worker kernels and the notebook client are imported only by the code paths
that need them (``from stratalab import Client`` loads the client then).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """Tell jupyter_server where the StrataLab extension app lives."""
    from stratalab.jupyter_ext.app import StrataLab

    return [{"module": "stratalab.jupyter_ext.app", "app": StrataLab}]


#: names served lazily from :mod:`stratalab.notebook` (module ``__getattr__``).
_NOTEBOOK_EXPORTS = frozenset({"ApiError", "AsyncClient", "Client"})


def __getattr__(name: str) -> Any:
    """``from stratalab import Client`` without importing httpx on ``import stratalab``."""
    if name in _NOTEBOOK_EXPORTS:
        import stratalab.notebook

        return getattr(stratalab.notebook, name)
    raise AttributeError(f"module 'stratalab' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext stratalab``: register the ``%stratalab`` line and cell magics."""
    from stratalab.notebook.magics import load_ipython_extension as load

    load(ipython)
