"""Loaded models kept on a worker, bounded by bytes, read from verified artifacts.

Decision 11 keeps models loaded on the workers so a sync request pays for a
forward pass, not for a load. Memory is what runs out, so the bound is bytes,
not a count: one vision model can weigh as much as a thousand tabular MLPs.
Artifacts are content-addressed (decision 5), so a file is verified against its
name when it is loaded, and a corrupted copy is refused instead of served.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stratalab.errors import NoModel
from stratalab.kernels.models.errors import ArtifactCorrupted, InvalidInput
from stratalab.kernels.models.formats import ModelFormat, detect_format, parse_format
from stratalab.kernels.models.runtime import LoadedModel, load_model_bytes, resolve_device
from stratalab.kernels.models.signature import ModelSignature

logger = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def check_sha256(sha256: str) -> str:
    """Return ``sha256`` lower-cased (``sha256:`` prefix allowed) or raise.

    The digest becomes a path component, so anything but 64 hex digits is
    refused before it can name a file outside the store.
    """
    digest = str(sha256).lower().removeprefix("sha256:")
    if not _SHA256.match(digest):
        raise InvalidInput("sha256 must be 64 hexadecimal digits", details={"sha256": sha256})
    return digest


def content_path(store_root: str | os.PathLike[str], sha256: str) -> Path:
    """Where the artifact with this digest lives: ``<root>/<sha[:2]>/<sha>``."""
    digest = check_sha256(sha256)
    return Path(store_root) / digest[:2] / digest


def read_verified(path: str | os.PathLike[str], sha256: str) -> bytes:
    """The file's bytes, after checking they hash to ``sha256``.

    Raises
    ------
    NoModel
        The file is missing (the model was deleted, or the store is not shared
        with this worker).
    ArtifactCorrupted
        The content does not match the digest.
    """
    digest = check_sha256(sha256)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise NoModel(
            f"model artifact {digest[:12]} is not available on this worker",
            details={"sha256": digest},
        ) from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        logger.error("artifact %s is corrupted: content hashes to %s", digest, actual)
        raise ArtifactCorrupted(
            f"model artifact {digest[:12]} failed its integrity check",
            details={"sha256": digest},
        )
    return data


@dataclass
class CachedModel:
    """A model in the cache and what the cache knows about its use."""

    #: Content digest of the model file.
    sha256: str
    #: Cache key: ``<sha256>:<device>``.
    key: str
    #: The loaded model.
    model: LoadedModel
    #: Bytes charged against the cache bound.
    nbytes: int
    #: Milliseconds spent reading, verifying and loading.
    load_ms: float
    #: ``time.time()`` of the load.
    loaded_at: float = field(default_factory=time.time)
    #: ``time.time()`` of the last lookup.
    last_used: float = field(default_factory=time.time)
    #: Lookups served from the cache.
    hits: int = 0

    @property
    def format(self) -> ModelFormat:
        """``"onnx"`` or ``"torchscript"``."""
        return self.model.signature.format

    @property
    def signature(self) -> ModelSignature:
        """The model's signature."""
        return self.model.signature

    def info(self) -> dict[str, Any]:
        """JSON-able summary for ``stratalab_models``."""
        return {
            "sha256": self.sha256,
            "format": self.format,
            "device": self.model.device,
            "nbytes": self.nbytes,
            "load_ms": round(self.load_ms, 3),
            "loaded_at": self.loaded_at,
            "last_used": self.last_used,
            "hits": self.hits,
            "signature": self.signature.to_dict(),
        }


class ModelCache:
    """LRU cache of loaded models bounded by bytes; safe to use from several threads.

    Parameters
    ----------
    store_root:
        Root of the content-addressed artifact store, when this worker shares it.
    max_bytes:
        Bound on the summed :attr:`CachedModel.nbytes`. After a load, least
        recently used models are evicted until the total fits. A model larger
        than the bound on its own is still loaded (refusing it would make it
        unservable) and is the first evicted by the next load.
    threads:
        ONNX Runtime intra-op threads per session.
    on_evict:
        Called (from the evicting thread) with each evicted entry, so owners of
        per-model state (the micro-batchers) can drop it.
    """

    def __init__(
        self,
        store_root: str | os.PathLike[str] | None,
        *,
        max_bytes: int,
        threads: int = 1,
        on_evict: Callable[[CachedModel], None] | None = None,
    ) -> None:
        #: Root of the artifact store, or ``None`` when every load names a path.
        self.store_root = None if store_root is None else Path(store_root)
        #: Byte bound.
        self.max_bytes = int(max_bytes)
        self._threads = threads
        self._on_evict = on_evict
        self._entries: OrderedDict[str, CachedModel] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    @property
    def nbytes(self) -> int:
        """Bytes charged by the loaded models."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, sha256: object) -> bool:
        with self._lock:
            return any(entry.sha256 == sha256 for entry in self._entries.values())

    def key_for(self, sha256: str, fmt: ModelFormat | str | None, *, prefer_gpu: bool) -> str:
        """Cache key of a model for a device preference."""
        return f"{check_sha256(sha256)}:{resolve_device(fmt, prefer_gpu=prefer_gpu)}"

    def peek(self, key: str) -> CachedModel | None:
        """The entry for ``key`` if loaded, marking it used; never loads (no I/O)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._touch(key, entry)
            return entry

    def get(
        self,
        sha256: str,
        fmt: ModelFormat | str | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        prefer_gpu: bool = False,
    ) -> tuple[CachedModel, bool]:
        """The loaded model, loading it on a miss; returns ``(entry, was_cached)``.

        Blocking (file read, hashing, session creation): call it from a
        thread, not from the event loop. Concurrent misses on one model load
        it once.
        """
        key = self.key_for(sha256, fmt, prefer_gpu=prefer_gpu)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._touch(key, entry)
                return entry, True
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    self._touch(key, entry)
                    return entry, True
            try:
                entry = self._load(key, sha256, fmt, path=path, prefer_gpu=prefer_gpu)
            except BaseException:
                with self._lock:
                    self._loading.pop(key, None)
                raise
            with self._lock:
                # Publishing the entry and retiring the loading lock together
                # leaves no window in which a third thread would load again.
                self._entries[key] = entry
                self._bytes += entry.nbytes
                self._loading.pop(key, None)
                evicted = self._evict_over_bound(keep=key)
        for old in evicted:
            self._notify(old)
        return entry, False

    def evict(self, sha256: str) -> list[CachedModel]:
        """Drop every loaded copy of a model (all devices); returns what was dropped."""
        digest = check_sha256(sha256)
        with self._lock:
            keys = [k for k, e in self._entries.items() if e.sha256 == digest]
            dropped = [self._pop(k) for k in keys]
        for entry in dropped:
            self._notify(entry)
        return dropped

    def clear(self) -> None:
        """Drop every model."""
        with self._lock:
            dropped = [self._pop(k) for k in list(self._entries)]
        for entry in dropped:
            self._notify(entry)

    def entries(self) -> list[CachedModel]:
        """Loaded models, least recently used first."""
        with self._lock:
            return list(self._entries.values())

    def _load(
        self,
        key: str,
        sha256: str,
        fmt: ModelFormat | str | None,
        *,
        path: str | os.PathLike[str] | None,
        prefer_gpu: bool,
    ) -> CachedModel:
        """Read, verify and load one model (no cache lock held)."""
        digest = check_sha256(sha256)
        if path is None:
            if self.store_root is None:
                raise NoModel(
                    "this worker has no model store and the request named no path",
                    details={"sha256": digest},
                )
            path = content_path(self.store_root, digest)
        start = time.perf_counter()
        data = read_verified(path, digest)
        model_format = parse_format(str(fmt)) if fmt is not None else detect_format(data)
        model = load_model_bytes(data, model_format, prefer_gpu=prefer_gpu, threads=self._threads)
        load_ms = (time.perf_counter() - start) * 1000.0
        logger.info(
            "loaded model %s (%s, %d bytes) on %s in %.1f ms",
            digest[:12],
            model_format,
            model.nbytes,
            model.device,
            load_ms,
        )
        return CachedModel(
            sha256=digest, key=key, model=model, nbytes=model.nbytes, load_ms=load_ms
        )

    def _touch(self, key: str, entry: CachedModel) -> None:
        """Mark used (caller holds the lock)."""
        self._entries.move_to_end(key)
        entry.hits += 1
        entry.last_used = time.time()

    def _pop(self, key: str) -> CachedModel:
        """Remove one entry (caller holds the lock)."""
        entry = self._entries.pop(key)
        self._bytes -= entry.nbytes
        return entry

    def _evict_over_bound(self, *, keep: str) -> list[CachedModel]:
        """Evict until under the bound, oversized models first, then LRU (lock held)."""
        evicted: list[CachedModel] = []
        while self._bytes > self.max_bytes:
            candidates = [k for k in self._entries if k != keep]
            if not candidates:
                break  # only the newly loaded (oversized) model is left
            oversized = [k for k in candidates if self._entries[k].nbytes > self.max_bytes]
            evicted.append(self._pop(oversized[0] if oversized else candidates[0]))
        return evicted

    def _notify(self, entry: CachedModel) -> None:
        """Log an eviction and call ``on_evict`` (no lock held)."""
        logger.info("evicted model %s (%d bytes)", entry.sha256[:12], entry.nbytes)
        if self._on_evict is not None:
            self._on_evict(entry)
