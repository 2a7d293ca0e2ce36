"""Find the StrataLab server a notebook belongs to, so ``Client()`` needs no URL.

A kernel started by a StrataLab-enabled Jupyter server inherits its
environment, so it sees the same Jupyter runtime dir, where the extension
writes ``stratalab-<pid>.json`` (url, token, admin key) on start. The kernel
is a child of that server, so the file whose pid is one of our ancestors
names *our* server even when several run; files of dead servers (a crash
leaves them behind) are skipped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from stratalab.notebook.errors import ApiError


@dataclass(frozen=True)
class ServerInfo:
    """What a running server announced (``server.json`` / ``stratalab-<pid>.json``)."""

    #: the API base URL.
    url: str
    #: the admin API key, when the announcement carries one.
    api_key: str | None = None
    #: the Jupyter token, when the announcement carries one.
    token: str | None = None
    #: the server's process id (None when found through the environment).
    pid: int | None = None
    #: where it was found: a file path or ``$STRATALAB_URL``.
    source: str = ""

    @classmethod
    def from_file(cls, path: Path) -> ServerInfo | None:
        """The announcement in ``path``; None when it is unreadable or its server is gone."""
        try:
            raw: Any = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(raw, dict) or not raw.get("url"):
            return None
        pid = raw.get("pid")
        if isinstance(pid, int) and not psutil.pid_exists(pid):
            return None
        return cls(
            url=str(raw["url"]),
            api_key=raw.get("admin_key") or None,
            token=raw.get("token") or None,
            pid=pid if isinstance(pid, int) else None,
            source=str(path),
        )


def _ancestors() -> list[int]:
    """Our parent, grandparent, ...: a kernel's Jupyter server is among them."""
    try:
        return [p.pid for p in psutil.Process().parents()]
    except psutil.Error:
        return []


def runtime_servers(runtime_dir: str | Path | None = None) -> list[ServerInfo]:
    """Live servers announced in Jupyter's runtime dir: our own first, then newest first."""
    if runtime_dir is None:
        from jupyter_core.paths import jupyter_runtime_dir

        runtime_dir = jupyter_runtime_dir()
    paths = []
    for path in Path(runtime_dir).glob("stratalab-*.json"):
        try:
            paths.append((path.stat().st_mtime, path))
        except OSError:
            continue
    found = [info for _, p in sorted(paths, reverse=True) if (info := ServerInfo.from_file(p))]
    ancestors = _ancestors()
    rank = {pid: i for i, pid in enumerate(ancestors)}
    return sorted(found, key=lambda s: rank.get(s.pid or -1, len(ancestors)))


def discover(data_dir: str | Path | None = None) -> ServerInfo:
    """Find a running server.

    Looks, in order, at ``$STRATALAB_URL`` (with ``$STRATALAB_API_KEY`` or
    ``$STRATALAB_TOKEN``), ``data_dir/server.json``,
    ``$STRATALAB_DATA_DIR/server.json``, the ``stratalab-<pid>.json`` files in
    Jupyter's runtime dir (the server this kernel runs under first), and the
    default data dir's ``server.json``.

    Raises
    ------
    ApiError
        ``SERVICE_UNAVAILABLE`` when no live server is announced anywhere.
    """
    if url := os.environ.get("STRATALAB_URL"):
        return ServerInfo(
            url=url,
            api_key=os.environ.get("STRATALAB_API_KEY") or None,
            token=os.environ.get("STRATALAB_TOKEN") or None,
            source="$STRATALAB_URL",
        )
    dirs = [Path(d) for d in (data_dir, os.environ.get("STRATALAB_DATA_DIR")) if d]
    for d in dirs:
        if info := ServerInfo.from_file(d / "server.json"):
            return info
    if found := runtime_servers():
        return found[0]
    from jupyter_core.paths import jupyter_data_dir

    if info := ServerInfo.from_file(Path(jupyter_data_dir()) / "stratalab" / "server.json"):
        return info
    raise ApiError(
        "SERVICE_UNAVAILABLE",
        "no running StrataLab server found ($STRATALAB_URL, server.json, Jupyter's runtime "
        "dir); start one with `stratalab server` or pass Client(url, api_key=...)",
    )
