"""The worker's cache of dataset shards: read a shard once, train on it every round.

A training round pins each shard to the worker that holds it (architecture
decision 12); this module is what "holds" means. The first round reads the
shard from its source, later rounds (and evaluations) find it in memory. The
cache is per worker process, bounded in bytes, and evicts the least recently
used shard first.

The coordinator describes a dataset to workers with a plain dict (a
*descriptor*) so nothing here depends on the store::

    {"id": "ds_...", "format": "csv", "source": "file:///...", "options": {...},
     "info": DatasetInfo.to_dict(), "num_shards": 8, "validation_rows": 180}

Rows ``[0, num_rows - validation_rows)`` are cut into ``num_shards``
contiguous shards; the last ``validation_rows`` rows are the validation split.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from stratalab.kernels.data.base import Arrays, DatasetInfo, make_reader, shard_range

#: Default bound of the cache per worker process.
DEFAULT_MAX_BYTES = 1 << 30

#: Key of the validation split in the cache (shard indices are >= 0).
VALIDATION = -1


def info_of(descriptor: Mapping[str, Any]) -> DatasetInfo:
    """The stored ``DatasetInfo`` of a descriptor, rebuilt as the dataclass."""
    data = dict(descriptor["info"])
    for key in ("columns", "features", "feature_shape", "classes"):
        if data.get(key) is not None:
            data[key] = tuple(data[key])
    return DatasetInfo(**data)


def train_rows(descriptor: Mapping[str, Any]) -> int:
    """Rows used for training: all but the validation split."""
    return int(descriptor["info"]["num_rows"]) - int(descriptor.get("validation_rows", 0))


def row_range(descriptor: Mapping[str, Any], shard: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of a training shard, or of the validation split."""
    n_train = train_rows(descriptor)
    if shard == VALIDATION:
        return n_train, int(descriptor["info"]["num_rows"])
    return shard_range(n_train, shard, int(descriptor["num_shards"]))


def _read(descriptor: Mapping[str, Any], shard: int) -> Arrays:
    start, stop = row_range(descriptor, shard)
    reader = make_reader(str(descriptor["format"]), **dict(descriptor.get("options") or {}))
    return reader.read_rows(str(descriptor["source"]), start, stop, info_of(descriptor))


class ShardCache:
    """A byte-bounded LRU of shards in one worker process (thread-safe)."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, int, int], tuple[Arrays, int, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        """Bytes the cached arrays hold."""
        return sum(size for _, size, _ in self._entries.values())

    def get(self, descriptor: Mapping[str, Any], shard: int) -> Arrays:
        """A shard's ``(X, y)``, read from its source on a miss."""
        key = (str(descriptor["id"]), int(descriptor["num_shards"]), shard)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry[0]
        arrays = _read(descriptor, shard)  # outside the lock: reads can be slow
        size = int(arrays[0].nbytes + arrays[1].nbytes)
        with self._lock:
            self.misses += 1
            self._entries[key] = (arrays, size, time.time())
            self._entries.move_to_end(key)
            while len(self._entries) > 1 and self.nbytes > self.max_bytes:
                self._entries.popitem(last=False)
        return arrays

    def drop(self, dataset_id: str) -> int:
        """Forget every shard of a dataset (deleted or re-registered); how many went."""
        with self._lock:
            keys = [k for k in self._entries if k[0] == dataset_id]
            for key in keys:
                del self._entries[key]
        return len(keys)

    def report(self) -> dict[str, Any]:
        """What is cached, for ``GET /data/cache``."""
        with self._lock:
            shards = [
                {
                    "dataset_id": ds,
                    "shard": "validation" if shard == VALIDATION else shard,
                    "num_shards": n,
                    "rows": len(arrays[1]),
                    "bytes": size,
                    "cached_at": cached_at,
                }
                for (ds, n, shard), (arrays, size, cached_at) in self._entries.items()
            ]
            return {
                "shards": shards,
                "bytes": sum(s["bytes"] for s in shards),
                "max_bytes": self.max_bytes,
                "hits": self.hits,
                "misses": self.misses,
            }


#: The cache of this process (one per Dask worker process).
CACHE = ShardCache()


def load_shard(descriptor: Mapping[str, Any], shard: int) -> Arrays:
    """A training shard from this worker's cache."""
    return CACHE.get(descriptor, shard)


def load_validation(descriptor: Mapping[str, Any]) -> Arrays:
    """The validation split from this worker's cache."""
    return CACHE.get(descriptor, VALIDATION)


def cache_report() -> dict[str, Any]:
    """This worker's cache contents (run through ``Client.run``)."""
    return CACHE.report()


def drop_dataset(dataset_id: str) -> int:
    """Forget a dataset's shards on this worker (run through ``Client.run``)."""
    return CACHE.drop(dataset_id)
