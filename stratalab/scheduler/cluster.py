"""The Dask side of the coordinator: start or join a cluster, watch its workers.

The embedded default is a ``LocalCluster`` of worker processes that lives and
dies with the server. Given an address, the coordinator joins an existing
scheduler instead (``dask scheduler`` + ``dask worker``, dask-jobqueue,
dask-gateway, ...) and leaves it running on shutdown. GPUs are Dask worker
resources (``GPU``): on the embedded cluster each of the first N workers
owns one GPU (``CUDA_VISIBLE_DEVICES``), so GPU work lands only there.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from distributed import Client, LocalCluster, Nanny

from stratalab.kernels.gpu import detect_gpus

logger = logging.getLogger(__name__)


def worker_id(name: object, address: str) -> str:
    """A stable id for a worker: its Dask name, or its address when unnamed."""
    key = str(name) if name not in (None, "") else address
    return "wrk_" + hashlib.blake2b(key.encode(), digest_size=6).hexdigest()


@dataclass
class WorkerInfo:
    """What the coordinator knows about one live Dask worker."""

    id: str
    address: str
    name: str
    host: str
    nthreads: int
    memory_limit: int  #: bytes
    resources: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)  #: cpu %, memory bytes, ...
    status: str = "running"  #: Dask's worker status
    last_seen: float = 0.0  #: scheduler clock

    @property
    def gpus(self) -> int:
        """Whole GPUs this worker declares."""
        return int(self.resources.get("GPU", 0))

    @classmethod
    def from_identity(cls, address: str, info: dict[str, Any]) -> WorkerInfo:
        """Build from one entry of the scheduler's ``identity()['workers']``."""
        name = info.get("name", address)
        return cls(
            id=worker_id(name, address),
            address=address,
            name=str(name),
            host=str(info.get("host", "")),
            nthreads=int(info.get("nthreads", 1)),
            memory_limit=int(info.get("memory_limit") or 0),
            resources=dict(info.get("resources") or {}),
            metrics=dict(info.get("metrics") or {}),
            status=str(info.get("status", "running")),
            last_seen=float(info.get("last_seen") or 0.0),
        )


def gpu_worker_specs(
    cluster: LocalCluster, n_workers: int, gpus: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Worker specs giving each of the first ``len(gpus)`` workers one GPU."""
    template = cluster.new_worker_spec()
    ((_, base),) = template.items()
    specs: dict[str, dict[str, Any]] = {}
    for i in range(n_workers):
        options = dict(base["options"])
        if i < len(gpus):
            options["resources"] = {**options.get("resources", {}), "GPU": 1}
            options["env"] = {
                **options.get("env", {}),
                "CUDA_VISIBLE_DEVICES": str(gpus[i]["index"]),
            }
        specs[str(i)] = {"cls": base.get("cls", Nanny), "options": options}
    return specs


class DaskCluster:
    """Owns the Dask client and, in embedded mode, the ``LocalCluster``."""

    def __init__(
        self,
        *,
        address: str = "",
        n_workers: int = 2,
        threads_per_worker: int = 1,
        memory_limit: str = "auto",
        local_directory: str | None = None,
    ) -> None:
        #: scheduler address to join; empty means start an embedded cluster.
        self.address = address
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        self.memory_limit = memory_limit
        self.local_directory = local_directory
        self.cluster: LocalCluster | None = None
        self.client: Client | None = None
        #: GPUs found on this machine (embedded mode only).
        self.local_gpus: list[dict[str, Any]] = []

    @property
    def embedded(self) -> bool:
        """Whether this process started (and will stop) the cluster."""
        return self.cluster is not None

    async def start(self) -> Client:
        """Start the embedded cluster or connect to ``address``."""
        if self.address:
            self.client = await Client(self.address, asynchronous=True)
            logger.info("joined Dask scheduler %s", self.address)
            return self.client
        self.local_gpus = detect_gpus()
        self.cluster = await LocalCluster(
            n_workers=0 if self.local_gpus else self.n_workers,
            threads_per_worker=self.threads_per_worker,
            processes=True,
            memory_limit=self.memory_limit,
            dashboard_address=":0",
            local_directory=self.local_directory,
            asynchronous=True,
        )
        if self.local_gpus:
            self.cluster.worker_spec.update(
                gpu_worker_specs(self.cluster, self.n_workers, self.local_gpus)
            )
            await self.cluster._correct_state()
        self.client = await Client(self.cluster, asynchronous=True)
        await self.client.wait_for_workers(self.n_workers, timeout=120)  # type: ignore[misc]
        logger.info(
            "started LocalCluster %s with %d workers (%d GPUs)",
            self.cluster.scheduler_address,
            self.n_workers,
            len(self.local_gpus),
        )
        return self.client

    async def close(self) -> None:
        """Disconnect, and stop the cluster if this process started it."""
        if self.client is not None:
            await self.client.close()
            self.client = None
        if self.cluster is not None:
            await self.cluster.close()  # type: ignore[misc]
            self.cluster = None

    @property
    def scheduler_address(self) -> str:
        """Where the Dask scheduler listens."""
        if self.client is None:
            return self.address
        return str(self.client.scheduler.address)

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard URL, when the scheduler serves one."""
        if self.client is None:
            return None
        try:
            return str(self.client.dashboard_link)
        except (KeyError, AttributeError):
            return None

    async def workers(self) -> dict[str, WorkerInfo]:
        """Live workers by address, fresh from the scheduler."""
        if self.client is None:
            return {}
        identity = await self.client.scheduler.identity()
        return {
            addr: WorkerInfo.from_identity(addr, info)
            for addr, info in identity.get("workers", {}).items()
        }
