"""Shard placement by consistent hashing with virtual nodes.

Each dataset shard is pinned to the worker that holds it (architecture
decision 12), and when a worker joins or leaves only the shards that must
move should move: those of the leaving worker, or those the new worker
takes over. A hash ring gives exactly that. Every worker owns ``vnodes``
points on a 64-bit ring; a key belongs to the first point at or after its
hash (wrapping around). Many points per worker even out the share each one
gets.

The hash is the first 8 bytes of BLAKE2b, never Python's ``hash()``, whose
string hashing is salted per process: the coordinator, a restarted
coordinator and a test must all place a shard on the same worker.

The ring is two sorted numpy arrays (point hashes and owner indices), so
placing many keys is one ``searchsorted`` (see ``benchmarks/bench_placement.py``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence

import numpy as np

logger = logging.getLogger(__name__)

#: Anything that can be placed: encoded to bytes the same way in every process.
Key = str | bytes | int


def _key_bytes(key: Key) -> bytes:
    """Stable bytes of a key: UTF-8 for text, decimal text for integers."""
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key).encode("ascii")
    raise TypeError(f"cannot place a key of type {type(key).__name__}; use str, bytes or int")


def stable_hash(key: Key) -> int:
    """64-bit hash of a key that is the same in every process and on every machine."""
    return int.from_bytes(hashlib.blake2b(_key_bytes(key), digest_size=8).digest(), "big")


def hash_keys(keys: Sequence[Key]) -> np.ndarray:
    """:func:`stable_hash` of many keys at once, as a ``uint64`` array.

    The digests are joined into one buffer and reinterpreted by numpy, which
    avoids creating a Python int per key.
    """
    blake2b = hashlib.blake2b
    try:
        # Fast path for the usual all-text keys: no helper call per key.
        digests = [blake2b(k.encode("utf-8"), digest_size=8).digest() for k in keys]  # type: ignore[union-attr]
    except AttributeError:
        digests = [blake2b(_key_bytes(k), digest_size=8).digest() for k in keys]
    return np.frombuffer(b"".join(digests), dtype=">u8").astype(np.uint64)


class HashRing:
    """A consistent-hash ring mapping keys (shard ids) to nodes (worker addresses).

    Parameters
    ----------
    nodes
        Initial nodes.
    vnodes
        Points per node on the ring. More points even out the load (the
        spread of a node's share shrinks like ``1/sqrt(vnodes)``) at the cost
        of a larger ring.
    """

    def __init__(self, nodes: Iterable[str] = (), *, vnodes: int = 64) -> None:
        if vnodes < 1:
            raise ValueError(f"vnodes must be >= 1, got {vnodes}")
        #: Points each node gets unless :meth:`add` says otherwise.
        self.vnodes = vnodes
        #: Points per node, in insertion order.
        self._weights: dict[str, int] = {}
        #: Point hashes of every node, kept so a rebuild does not rehash.
        self._points: dict[str, np.ndarray] = {}
        #: Nodes by index, as ``_owners`` refers to them.
        self._names: list[str] = []
        #: Sorted point hashes of the ring.
        self._ring = np.empty(0, dtype=np.uint64)
        #: ``_owners[i]`` is the index in ``_names`` of the node owning ``_ring[i]``.
        self._owners = np.empty(0, dtype=np.int64)
        for node in nodes:
            self._insert(node, vnodes)
        self._rebuild()

    @property
    def nodes(self) -> list[str]:
        """The nodes on the ring, sorted."""
        return sorted(self._weights)

    def __len__(self) -> int:
        return len(self._weights)

    def __contains__(self, node: object) -> bool:
        return node in self._weights

    def _insert(self, node: str, vnodes: int) -> None:
        """Record a node and hash its points, without rebuilding the ring."""
        if node in self._weights:
            raise ValueError(f"node {node!r} is already on the ring")
        if vnodes < 1:
            raise ValueError(f"vnodes must be >= 1, got {vnodes}")
        self._weights[node] = vnodes
        self._points[node] = hash_keys([f"{node}#{i}" for i in range(vnodes)])

    def _rebuild(self) -> None:
        """Sort every node's points into the ring.

        Ties between equal point hashes (astronomically rare) are broken by
        node name, so the owner of a point never depends on insertion order.
        """
        self._names = sorted(self._weights)
        if not self._names:
            self._ring = np.empty(0, dtype=np.uint64)
            self._owners = np.empty(0, dtype=np.int64)
            return
        points = np.concatenate([self._points[name] for name in self._names])
        owners = np.repeat(
            np.arange(len(self._names), dtype=np.int64),
            [len(self._points[name]) for name in self._names],
        )
        order = np.lexsort((owners, points))
        self._ring = points[order]
        self._owners = owners[order]

    def add(self, node: str, *, vnodes: int | None = None) -> None:
        """Add a node; it takes over the keys just before each of its points.

        Parameters
        ----------
        node
            Node name (a Dask worker address).
        vnodes
            Points for this node; more than the default gives a bigger worker
            a proportionally bigger share.

        Raises
        ------
        ValueError
            If the node is already on the ring.
        """
        self._insert(node, self.vnodes if vnodes is None else vnodes)
        self._rebuild()
        logger.debug("ring: added %s (%d nodes)", node, len(self._weights))

    def remove(self, node: str) -> None:
        """Remove a node; its keys move to the next points clockwise, no other key moves.

        Raises
        ------
        KeyError
            If the node is not on the ring.
        """
        if node not in self._weights:
            raise KeyError(node)
        del self._weights[node]
        del self._points[node]
        self._rebuild()
        logger.debug("ring: removed %s (%d nodes)", node, len(self._weights))

    def _owner_indices(self, hashes: np.ndarray) -> np.ndarray:
        """Index in ``_names`` of the owner of each hash."""
        if not len(self._ring):
            raise LookupError("the hash ring has no nodes")
        if len(hashes) > 4096:
            # Searching in sorted order walks the ring once instead of
            # jumping around it: several times faster for big batches.
            order = np.argsort(hashes, kind="stable")
            positions = np.empty(len(hashes), dtype=np.intp)
            positions[order] = np.searchsorted(self._ring, hashes[order], side="left")
        else:
            positions = np.searchsorted(self._ring, hashes, side="left")
        positions[positions == len(self._ring)] = 0  # wrap around
        return self._owners[positions]

    def lookup(self, key: Key) -> str:
        """The node that owns ``key``.

        Raises
        ------
        LookupError
            If the ring is empty.
        """
        hashes = np.array([stable_hash(key)], dtype=np.uint64)
        return self._names[int(self._owner_indices(hashes)[0])]

    def assign_hashes(self, hashes: np.ndarray) -> np.ndarray:
        """Owners of pre-hashed keys (from :func:`hash_keys`), as an array of node names.

        Shard ids rarely change while workers come and go, so a caller can
        hash them once and re-place them after every membership change with
        this method alone.
        """
        names = np.asarray(self._names, dtype=object)
        return names[self._owner_indices(np.asarray(hashes, dtype=np.uint64))]

    def assign(self, keys: Iterable[Key]) -> dict[Key, str]:
        """Place many keys at once.

        Parameters
        ----------
        keys
            Keys to place (shard ids). Duplicates collapse into one entry.

        Returns
        -------
        dict
            ``{key: node}``.

        Raises
        ------
        LookupError
            If the ring is empty.
        """
        key_list = list(keys)
        if not key_list:
            return {}
        owners = self.assign_hashes(hash_keys(key_list))
        return dict(zip(key_list, owners.tolist(), strict=True))
