"""Content-addressed artifact files (decision 5): models, dataset uploads, checkpoints.

An upload streams into a private temp file in the store's own directory while
it is hashed, so a 500 MB model never sits in memory and the final rename is
atomic: a file appears at ``<root>/<sha[:2]>/<sha>`` whole or not at all. An
upload that is refused, too large or cut off leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sqlalchemy as sa

from stratalab.errors import PayloadTooLarge
from stratalab.kernels.serving.cache import content_path, read_verified
from stratalab.scheduler.db import Dataset, Model
from stratalab.scheduler.store import Store

logger = logging.getLogger(__name__)


class PendingArtifact:
    """A file being written: bytes go to a temp file and into a running sha256."""

    def __init__(self, tmp_dir: Path, max_bytes: int) -> None:
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="upload-")  # 0o600
        self._fh = os.fdopen(fd, "wb")
        #: where the bytes are until :meth:`ArtifactStore.commit` moves them.
        self.path = Path(name)
        self.max_bytes = max_bytes
        self.size = 0
        self._hash = hashlib.sha256()

    def write(self, chunk: bytes | memoryview) -> None:
        """Append ``chunk``; :class:`PayloadTooLarge` past the limit (nothing kept)."""
        self.size += len(chunk)
        if self.size > self.max_bytes:
            self.discard()
            raise PayloadTooLarge(
                f"the file is larger than the upload limit of {self.max_bytes} bytes",
                details={"limit_bytes": self.max_bytes},
            )
        self._hash.update(chunk)
        self._fh.write(chunk)

    @property
    def sha256(self) -> str:
        """Hex digest of what was written so far."""
        return self._hash.hexdigest()

    def read_bytes(self) -> bytes:
        """The content written so far (flushed first)."""
        if not self._fh.closed:
            self._fh.flush()
        return self.path.read_bytes()

    def finish(self) -> None:
        """Flush and fsync: the content is durable before it gets its name."""
        if not self._fh.closed:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()

    def discard(self) -> None:
        """Close and delete the temp file (idempotent)."""
        with contextlib.suppress(OSError):
            self._fh.close()
        self.path.unlink(missing_ok=True)


class ArtifactStore:
    """Files named by their sha256 under one root, shared with the workers."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp_dir = self.root / ".tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def clean_tmp(self) -> int:
        """Delete temp files left by uploads a crash interrupted; returns how many."""
        removed = 0
        for leftover in [*self.tmp_dir.glob("upload-*"), *self.tmp_dir.glob("put-*")]:
            leftover.unlink(missing_ok=True)
            removed += 1
        return removed

    def begin(self, max_bytes: int) -> PendingArtifact:
        """Start writing a new artifact of at most ``max_bytes``."""
        return PendingArtifact(self.tmp_dir, max_bytes)

    def commit(self, pending: PendingArtifact) -> str:
        """Give the finished file its content address; returns the sha256.

        The same content uploaded twice is stored once.
        """
        pending.finish()
        digest = pending.sha256
        target = self.path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            pending.discard()
        else:
            os.chmod(pending.path, 0o644)
            os.replace(pending.path, target)
            _fsync_dir(target.parent)
        return digest

    def put(self, data: bytes) -> str:
        """Store bytes the coordinator made (a checkpoint, an export); returns the sha256.

        Written like an upload: temp file, fsync, rename, then the directory
        entry fsynced, so a crash leaves the old state or the new, never half.
        The digest is computed in a second thread while the bytes are written
        (hashlib releases the GIL), so naming by content costs no extra pass.
        """
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix="put-")
        tmp = Path(name)
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="stratalab-sha256") as pool:
                digest_of = pool.submit(lambda: hashlib.sha256(data).hexdigest())
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                digest = digest_of.result()
            os.chmod(tmp, 0o644)
            target = self.path(digest)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                tmp.unlink()
            else:
                os.replace(tmp, target)
                _fsync_dir(target.parent)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return digest

    def path(self, sha256: str) -> Path:
        """Where the artifact with this digest lives."""
        return content_path(self.root, sha256)

    def read(self, sha256: str) -> bytes:
        """The artifact's bytes, verified against the digest."""
        return read_verified(self.path(sha256), sha256)

    def remove(self, sha256: str) -> None:
        """Delete an artifact nobody references any more."""
        self.path(sha256).unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    """Make a rename durable (the directory entry), where the OS allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        logger.debug("fsync of directory %s not supported", path)
    finally:
        os.close(fd)


def artifact_in_use(store: Store, sha256: str) -> bool:
    """Whether a live dataset or model still points at an artifact (uploads share the store)."""
    with store.session() as s:
        for table in (Dataset, Model):
            users = s.scalar(
                sa.select(sa.func.count())
                .select_from(table)
                .where(table.sha256 == sha256, table.deleted_at.is_(None))
            )
            if users:
                return True
    return False
