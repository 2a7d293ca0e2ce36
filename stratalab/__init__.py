"""StrataLab: a Jupyter-native distributed ML compute platform on Dask.

Importing the package is cheap: the server extension, the coordinator and the
worker kernels are imported only by the code paths that need them.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """Tell jupyter_server where the StrataLab extension app lives."""
    from stratalab.jupyter_ext.app import StrataLab

    return [{"module": "stratalab.jupyter_ext.app", "app": StrataLab}]
