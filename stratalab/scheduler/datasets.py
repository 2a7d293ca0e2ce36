"""Datasets: registration after a full read, logical shards, and their places on workers.

Registering reads the whole source once with the format's reader
(``stratalab.kernels.data``), so a ragged CSV row, a file that is not
Parquet, a missing label column or NPZ array is refused with a 422 that
names it, and nothing is stored. An accepted dataset records what the read
found (rows, features, label, classes), holds out the last
``validation_fraction`` of the rows, and cuts the rest into ``num_shards``
contiguous logical shards; no data is copied.

Shards are placed on workers by consistent hashing with virtual nodes
(:class:`~stratalab.scheduler.placement.HashRing`, keys
``"{dataset_id}:{shard_index}"``): when a worker joins or leaves only the
shards it takes or gives up move, so the other workers keep their cached
shards (``stratalab.kernels.data.cache``) and a training round goes on
where the data already is. Uploaded files are stored content-addressed in
the same :class:`~stratalab.scheduler.artifacts.ArtifactStore` as models.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import sqlalchemy as sa
from distributed import Client

from stratalab.errors import Conflict, NotFound, ServiceUnavailable
from stratalab.ids import new_id, utcnow
from stratalab.kernels.data.cache import cache_report, drop_dataset, row_range
from stratalab.scheduler.artifacts import ArtifactStore, PendingArtifact, artifact_in_use
from stratalab.scheduler.cluster import WorkerInfo
from stratalab.scheduler.config import CoordinatorConfig
from stratalab.scheduler.dataset_checks import check_dataset, default_name, resolve_source
from stratalab.scheduler.dataset_schemas import DatasetCreate, dataset_view
from stratalab.scheduler.db import Dataset, Job
from stratalab.scheduler.keys import Principal
from stratalab.scheduler.placement import HashRing, hash_keys
from stratalab.scheduler.states import TERMINAL
from stratalab.scheduler.store import Store

logger = logging.getLogger(__name__)

DbCall = Callable[..., Awaitable[Any]]
#: Job states that end a job's use of its dataset (paused jobs still need theirs).
_ENDED = [s.value for s in TERMINAL]
#: Points each worker gets on the ring (spread of a worker's share ~ 1/sqrt(64)).
VNODES = 64


def shard_key(dataset_id: str, index: int) -> str:
    """The key a shard has on the ring."""
    return f"{dataset_id}:{index}"


def assign_shards(
    ring: HashRing, dataset_id: str, indices: Iterable[int]
) -> tuple[dict[int, str], float]:
    """Place shards on the ring's nodes; returns ``{index: address}`` and the milliseconds.

    An empty ring (no workers) places nothing.
    """
    started = time.perf_counter()
    index_list = list(indices)
    if not index_list or not len(ring):
        return {}, (time.perf_counter() - started) * 1000
    owners = ring.assign_hashes(hash_keys([shard_key(dataset_id, i) for i in index_list]))
    placement = dict(zip(index_list, owners.tolist(), strict=True))
    return placement, (time.perf_counter() - started) * 1000


class DatasetService:
    """Registers, finds, places and deletes datasets; one method per route.

    Parameters
    ----------
    config
        The coordinator's settings (``max_upload_mb`` bounds uploads).
    store
        The database.
    artifacts
        Where uploaded files go (shared with the model registry).
    db
        Runs a blocking store call off the event loop.
    workers
        The live workers by address (the job runner's view).
    vnodes
        Points per worker on the hash ring.
    """

    def __init__(
        self,
        *,
        config: CoordinatorConfig,
        store: Store,
        artifacts: ArtifactStore,
        db: DbCall,
        workers: Callable[[], dict[str, WorkerInfo]],
        vnodes: int = VNODES,
    ) -> None:
        self.config = config
        self.store = store
        self.artifacts = artifacts
        self.workers = workers
        self._db = db
        #: The Dask client, given by the coordinator once the cluster is up.
        self.client: Client | None = None
        #: The ring over the live workers' addresses.
        self.ring = HashRing(vnodes=vnodes)
        #: Milliseconds the last full re-placement of every dataset took (shard_assignment_time).
        self.assignment_ms = 0.0
        #: Bumped on each membership change, so a registration can tell its ring went stale.
        self._generation = 0
        self._placing = asyncio.Lock()
        #: Held from an upload's commit to its row's insert, and by deletes, so a
        #: file shared by two datasets is never removed under the newer one.
        self._files = threading.Lock()

    # --------------------------------------------------------------- create
    def begin_upload(self) -> PendingArtifact:
        """A temp file for an uploaded dataset, bounded by ``max_upload_mb``."""
        return self.artifacts.begin(self.config.max_upload_mb << 20)

    async def register(
        self,
        principal: Principal,
        req: DatasetCreate,
        upload: PendingArtifact | None = None,
        *,
        filename: str | None = None,
    ) -> dict[str, Any]:
        """Read and check the source, cut it into shards, place them; returns the view.

        Parameters
        ----------
        upload
            The uploaded file, if the data came in the request (deleted or
            moved into the artifact store whatever happens).
        filename
            The upload's client-side name (for messages and the default name).

        Raises
        ------
        ValidationFailed
            (422) naming what is wrong with the request or the data; nothing is stored.
        """
        try:
            source, shown = resolve_source(req, upload, filename)
            checked = await asyncio.to_thread(
                check_dataset, req, source, shown, workers=len(self.ring)
            )
            generation = self._generation
            dataset_id = new_id("ds")
            placement, ms = await asyncio.to_thread(
                assign_shards, self.ring, dataset_id, range(checked.num_shards)
            )
            ds = Dataset(
                id=dataset_id,
                user_id=principal.user_id,
                name=req.name or default_name(filename or source, req.format),
                format=req.format,
                source=source,
                options=dict(req.options),
                info=checked.info.to_dict(),
                num_rows=checked.info.num_rows,
                num_shards=checked.num_shards,
                validation_rows=checked.validation_rows,
                sha256=None,
                size=upload.size if upload is not None else None,
                placement={str(k): v for k, v in placement.items()},
                shard_assignment_ms=ms,
                description=req.description,
                created_at=utcnow(),
            )
            await self._db(self._insert, ds, upload)
        finally:
            if upload is not None:
                upload.discard()
        if generation != self._generation:  # the workers changed while it was being placed
            await self._db(self._replace, [ds.id], self.ring)
            ds.placement = {str(k): v for k, v in self.placement(ds).items()}
        logger.info(
            "dataset %s registered (%s, %d rows, %d shards)",
            ds.id,
            ds.format,
            ds.num_rows,
            ds.num_shards,
        )
        return self.view(ds)

    async def validate(
        self,
        req: DatasetCreate,
        upload: PendingArtifact | None = None,
        *,
        filename: str | None = None,
    ) -> dict[str, Any]:
        """The checks of :meth:`register`, storing nothing; invalid data raises the same 422."""
        try:
            source, shown = resolve_source(req, upload, filename)
            checked = await asyncio.to_thread(
                check_dataset, req, source, shown, workers=len(self.ring)
            )
        finally:
            if upload is not None:
                upload.discard()
        return {
            "valid": True,
            "format": req.format,
            "num_rows": checked.info.num_rows,
            "train_rows": checked.train_rows,
            "validation_rows": checked.validation_rows,
            "num_shards": checked.num_shards,
            "info": checked.info.to_dict(),
        }

    def _insert(self, ds: Dataset, upload: PendingArtifact | None) -> None:
        """Give an upload its content address and insert the row, as one step for deletes."""
        with self._files:
            if upload is not None:
                ds.sha256 = self.artifacts.commit(upload)
                ds.source = str(self.artifacts.path(ds.sha256))
            try:
                with self.store.session() as s:
                    s.add(ds)
            except Exception:
                if ds.sha256 is not None and not self._file_in_use(ds.sha256):
                    self.artifacts.remove(ds.sha256)
                raise

    # ----------------------------------------------------------------- read
    async def get(self, principal: Principal, dataset_id: str) -> Dataset:
        """The caller's live dataset; another user's or a deleted one is 404."""
        ds = await self._db(self._owned, principal, dataset_id)
        assert isinstance(ds, Dataset)
        return ds

    def _owned(self, principal: Principal, dataset_id: str) -> Dataset:
        with self.store.session() as s:
            ds = s.get(Dataset, dataset_id)
        if ds is None or ds.deleted_at is not None or not principal.may_see(ds.user_id):
            raise NotFound(f"no dataset {dataset_id}", details={"dataset_id": dataset_id})
        return ds

    async def describe(self, principal: Principal, dataset_id: str) -> dict[str, Any]:
        """One dataset's view."""
        return self.view(await self.get(principal, dataset_id))

    async def page(
        self,
        principal: Principal,
        *,
        name: str | None = None,
        format: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of the caller's datasets (every user's for admins), newest first."""
        rows, total = await self._db(self._page, principal, name, format, offset, limit)
        return [self.view(ds) for ds in rows], total

    def _page(
        self, principal: Principal, name: str | None, format: str | None, offset: int, limit: int
    ) -> tuple[list[Dataset], int]:
        query = sa.select(Dataset).where(Dataset.deleted_at.is_(None))
        owner = principal.owner_filter()
        if owner is not None:
            query = query.where(Dataset.user_id == owner)
        if name:
            query = query.where(Dataset.name == name)
        if format:
            query = query.where(Dataset.format == format)
        with self.store.session() as s:
            total = s.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
            rows = s.scalars(
                query.order_by(Dataset.created_at.desc(), Dataset.id).offset(offset).limit(limit)
            ).all()
        return list(rows), int(total)

    async def shards(
        self, principal: Principal, dataset_id: str, *, offset: int = 0, limit: int = 50
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of a dataset's training shards: rows and the worker each is placed on."""
        ds = await self.get(principal, dataset_id)
        indices = range(offset, min(offset + limit, ds.num_shards))
        placement, _ = assign_shards(self.ring, ds.id, indices)
        ids = {w.address: w.id for w in self.workers().values()}
        descriptor = self.descriptor(ds)
        items = []
        for index in indices:
            start, stop = row_range(descriptor, index)
            address = placement.get(index)
            items.append(
                {
                    "index": index,
                    "start": start,
                    "stop": stop,
                    "rows": stop - start,
                    "worker_address": address,
                    "worker_id": ids.get(address) if address else None,
                }
            )
        return items, ds.num_shards

    async def cache(self, principal: Principal, node_id: str | None = None) -> dict[str, Any]:
        """What the workers' shard caches hold (the caller's datasets only, unless admin).

        Parameters
        ----------
        node_id
            A worker id (``wrk_...``) or address; all workers when None.
        """
        client = self._client()
        workers = self.workers()
        if node_id is not None:
            found = [w for w in workers.values() if node_id in (w.id, w.address)]
            if not found:
                raise NotFound(f"no worker {node_id}", details={"node_id": node_id})
            workers = {found[0].address: found[0]}
        if not workers:
            return {"workers": [], "bytes": 0}
        reports = await client.run(cache_report, workers=list(workers), on_error="return")
        visible = await self._db(self._visible, principal, _dataset_ids(reports.values()))
        out = []
        for address, report in sorted(reports.items()):
            if isinstance(report, BaseException):
                logger.warning("cache report from %s failed: %r", address, report)
                continue
            shards = [s for s in report["shards"] if visible is None or s["dataset_id"] in visible]
            info = workers.get(address)
            out.append(
                {
                    "worker_id": info.id if info else None,
                    "address": address,
                    "shards": shards,
                    "bytes": sum(int(s["bytes"]) for s in shards),
                    "max_bytes": report["max_bytes"],
                    "hits": report["hits"],
                    "misses": report["misses"],
                }
            )
        return {"workers": out, "bytes": sum(w["bytes"] for w in out)}

    def _visible(self, principal: Principal, ids: set[str]) -> set[str] | None:
        """Which of these dataset ids the caller owns (None: admins see every one)."""
        owner = principal.owner_filter()
        if owner is None:
            return None
        if not ids:
            return set()
        with self.store.session() as s:
            rows = s.scalars(
                sa.select(Dataset.id).where(Dataset.id.in_(sorted(ids)), Dataset.user_id == owner)
            ).all()
        return set(rows)

    # --------------------------------------------------------------- delete
    async def delete(self, principal: Principal, dataset_id: str) -> None:
        """Soft-delete a dataset (409 while a job uses it), drop its cached shards and file."""
        ds = await self._db(self._delete, principal, dataset_id)
        if self.client is not None:
            dropped = await self.client.run(drop_dataset, ds.id, on_error="return")
            logger.info("dataset %s deleted; cached shards dropped: %s", ds.id, dropped)

    def _delete(self, principal: Principal, dataset_id: str) -> Dataset:
        ds = self._owned(principal, dataset_id)
        with self.store.session() as s:
            live = s.scalars(sa.select(Job).where(Job.state.notin_(_ENDED))).all()
        busy = sorted(j.id for j in live if (j.spec or {}).get("dataset_id") == dataset_id)
        if busy:
            raise Conflict(
                f"dataset {dataset_id} is in use by unfinished jobs {busy[:5]}",
                details={"jobs": busy[:5]},
            )
        with self._files:
            with self.store.session() as s:
                row = s.get(Dataset, dataset_id)
                assert row is not None
                row.deleted_at = utcnow()
            if ds.sha256 is not None and not self._file_in_use(ds.sha256):
                self.artifacts.remove(ds.sha256)
        return ds

    def _file_in_use(self, sha256: str) -> bool:
        """Whether a live dataset or model still points at an artifact (call under the lock)."""
        return artifact_in_use(self.store, sha256)

    # ------------------------------------------------------------ placement
    async def workers_changed(self, workers: dict[str, WorkerInfo]) -> None:
        """Re-place every live dataset's shards on the new set of workers, and persist it.

        The ring is rebuilt over the new addresses; consistent hashing moves
        only the shards of a worker that left, or those a new worker takes
        over. A failure to persist is logged: the live placement
        (:meth:`placement`) is already right.
        """
        self.ring = HashRing(sorted(workers), vnodes=self.ring.vnodes)
        self._generation += 1
        ring = self.ring
        async with self._placing:
            try:
                moved, self.assignment_ms = await self._db(self._replace, None, ring)
            except Exception:
                logger.exception("could not store the new shard placement")
                return
        if moved:
            logger.info(
                "workers changed (%d live): %d shards moved, placement took %.1f ms",
                len(workers),
                moved,
                self.assignment_ms,
            )

    def _replace(self, ids: list[str] | None, ring: HashRing) -> tuple[int, float]:
        """Place the shards of live datasets (all, or ``ids``) on ``ring`` and store it.

        Returns how many shards moved and the milliseconds the placement took.
        """
        query = sa.select(Dataset).where(Dataset.deleted_at.is_(None))
        if ids is not None:
            query = query.where(Dataset.id.in_(ids))
        moved = 0
        total_ms = 0.0
        with self.store.session() as s:
            for ds in s.scalars(query):
                placement, ms = assign_shards(ring, ds.id, range(ds.num_shards))
                new = {str(k): v for k, v in placement.items()}
                old = ds.placement or {}
                moved += sum(1 for k, v in new.items() if old.get(k) not in (None, v))
                ds.shard_assignment_ms = ms
                total_ms += ms
                if new != old:
                    ds.placement = new
        return moved, total_ms

    def placement(self, ds: Dataset) -> dict[int, str]:
        """Shard index to worker address, on the current workers (the training loop's map)."""
        placement, _ = assign_shards(self.ring, ds.id, range(ds.num_shards))
        return placement

    def descriptor(self, ds: Dataset) -> dict[str, Any]:
        """The dataset as the workers' shard cache takes it (``kernels.data.cache``)."""
        return {
            "id": ds.id,
            "format": ds.format,
            "source": ds.source,
            "options": dict(ds.options or {}),
            "info": dict(ds.info or {}),
            "num_shards": ds.num_shards,
            "validation_rows": ds.validation_rows,
        }

    # ----------------------------------------------------------------- view
    def view(self, ds: Dataset) -> dict[str, Any]:
        """The API's dataset object, with the live workers' ids."""
        return dataset_view(ds, {w.address: w.id for w in self.workers().values()})

    def _client(self) -> Client:
        if self.client is None:
            raise ServiceUnavailable("the Dask cluster is not connected yet")
        return self.client


def _dataset_ids(reports: Iterable[Any]) -> set[str]:
    """Dataset ids named in workers' cache reports."""
    return {
        str(s["dataset_id"]) for r in reports if isinstance(r, dict) for s in r.get("shards", [])
    }
