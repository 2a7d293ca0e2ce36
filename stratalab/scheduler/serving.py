"""Which worker serves a model, and the call that reaches it (decision 11).

Models are placed by rendezvous hashing on their sha256: each model has a
stable preference order over the live workers, so the same workers keep it
loaded across requests and restarts, and a worker joining or leaving moves
only its share. A request goes to the least busy worker already holding the
model, straight over the worker's RPC (no scheduler, no task); when that
worker is unreachable the next one is tried.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any

from distributed import Client

from stratalab.errors import NoDevices, ServiceUnavailable
from stratalab.kernels.serving.client import call_worker
from stratalab.kernels.serving.plugin import ServingPlugin
from stratalab.kernels.serving.protocol import OP_LOAD, OP_UNLOAD
from stratalab.scheduler.cluster import WorkerInfo
from stratalab.scheduler.placement import stable_hash

logger = logging.getLogger(__name__)

#: workers tried for one request before giving up.
MAX_ATTEMPTS = 3


class ServingRouter:
    """Places models on workers and sends sync requests to them."""

    def __init__(
        self,
        *,
        store_root: str,
        workers: Callable[[], dict[str, WorkerInfo]],
        drained: Callable[[], set[str]],
        cache_bytes: int,
        max_wait_ms: float,
        replicas: int,
    ) -> None:
        self.store_root = store_root
        self._workers = workers
        self._drained = drained
        self.cache_bytes = cache_bytes
        self.max_wait_ms = max_wait_ms
        self.replicas = replicas
        self.client: Client | None = None
        #: addresses known to hold each model (by sha256).
        self.holders: dict[str, set[str]] = {}
        #: requests in flight per worker address.
        self.inflight: dict[str, int] = {}
        self._turn = itertools.count()

    async def install(self, client: Client) -> None:
        """Register the serving plugin on every worker, present and future."""
        self.client = client
        plugin = ServingPlugin(
            self.store_root, max_bytes=self.cache_bytes, max_wait_ms=self.max_wait_ms
        )
        await client.register_plugin(plugin)

    # ------------------------------------------------------------- placement
    def live(self) -> dict[str, WorkerInfo]:
        """Workers that may take serving traffic (running and not drained)."""
        drained = self._drained()
        return {
            a: w
            for a, w in self._workers().items()
            if w.status == "running" and w.id not in drained
        }

    def candidates(self, sha256: str, *, prefer_gpu: bool = False) -> list[str]:
        """Worker addresses to try, best first; :class:`NoDevices` when there are none."""
        live = self.live()
        if not live:
            raise NoDevices(
                "no worker can serve models right now (none running, or all drained)",
                details={"workers": len(self._workers())},
            )
        held = self.holders.get(sha256, set())
        turn = next(self._turn)

        def rank(address: str) -> tuple[int, int, int, int]:
            gpu_first = 0 if (prefer_gpu and live[address].gpus) else 1
            holds = 0 if address in held else 1
            busy = self.inflight.get(address, 0) if address in held else 0
            # holders: least busy, ties taken in turn; others: the model's stable order
            order = (stable_hash(address) + turn) if address in held else -_hrw(sha256, address)
            return (gpu_first, holds, busy, order)

        return sorted(live, key=rank)

    def placement(self, sha256: str) -> list[str]:
        """The workers a model should be loaded on ahead of traffic."""
        live = self.live()
        return sorted(live, key=lambda a: -_hrw(sha256, a))[: max(1, self.replicas)]

    def loaded_on(self, sha256: str, ids: dict[str, WorkerInfo]) -> list[str]:
        """Worker ids holding the model now."""
        return sorted(ids[a].id for a in self.holders.get(sha256, ()) if a in ids)

    def workers_changed(self, workers: dict[str, WorkerInfo]) -> None:
        """Forget holders that left (their memory went with them)."""
        for held in self.holders.values():
            held.intersection_update(workers)
        for address in list(self.inflight):
            if address not in workers:
                del self.inflight[address]

    # ----------------------------------------------------------------- calls
    async def infer(
        self, sha256: str, *, prefer_gpu: bool, timeout: float, **msg: Any
    ) -> dict[str, Any]:
        """One sync request on the best worker; the next one if it is unreachable."""
        client = self._client()
        last: ServiceUnavailable | None = None
        for address in self.candidates(sha256, prefer_gpu=prefer_gpu)[:MAX_ATTEMPTS]:
            self.inflight[address] = self.inflight.get(address, 0) + 1
            try:
                reply = await call_worker(
                    client.rpc,
                    address,
                    timeout=timeout,
                    sha256=sha256,
                    prefer_gpu=prefer_gpu,
                    **msg,
                )
            except ServiceUnavailable as exc:
                last = exc
                self._drop(sha256, address)
                continue
            finally:
                self.inflight[address] = max(0, self.inflight.get(address, 1) - 1)
            self.holders.setdefault(sha256, set()).add(address)
            return reply
        raise last or NoDevices("no worker could serve the request")

    async def warm(
        self, sha256: str, fmt: str, *, prefer_gpu: bool = False, everywhere: bool = False
    ) -> list[str]:
        """Load a model on its placement workers (or all) now, so the first request is fast."""
        client = self._client()
        targets = list(self.live()) if everywhere else self.placement(sha256)

        async def load(address: str) -> str | None:
            try:
                await call_worker(
                    client.rpc,
                    address,
                    op=OP_LOAD,
                    timeout=120,
                    sha256=sha256,
                    fmt=fmt,
                    prefer_gpu=prefer_gpu,
                )
            except Exception as exc:  # noqa: BLE001 - warming is best effort
                logger.warning("could not load model %s on %s: %s", sha256[:12], address, exc)
                return None
            self.holders.setdefault(sha256, set()).add(address)
            return address

        done = await asyncio.gather(*(load(a) for a in targets))
        return [a for a in done if a is not None]

    async def unload(self, sha256: str) -> None:
        """Free a deleted model's memory on every worker that holds it."""
        client = self._client()
        for address in self.holders.pop(sha256, set()):
            try:
                await call_worker(client.rpc, address, op=OP_UNLOAD, timeout=10, sha256=sha256)
            except Exception as exc:  # noqa: BLE001 - the worker may be gone already
                logger.info("unload of %s on %s skipped: %s", sha256[:12], address, exc)

    def _drop(self, sha256: str, address: str) -> None:
        held = self.holders.get(sha256)
        if held is not None:
            held.discard(address)

    def _client(self) -> Client:
        if self.client is None:
            raise ServiceUnavailable("the Dask cluster is not connected yet")
        return self.client


def _hrw(sha256: str, address: str) -> int:
    """Rendezvous weight of a worker for a model: the highest weights win."""
    return stable_hash(f"{sha256}|{address}")
