"""``c.datasets``: register datasets and see where their shards live.

Thin wrappers written against the planned routes (``POST/GET /datasets``,
``GET/DELETE /datasets/{id}``, ``GET /datasets/{id}/shards``); the request
body is passed through as given, so it follows the server's schema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stratalab.notebook.resource import AsyncResource, SyncResource, collect, seg, to_frame
from stratalab.notebook.transport import Request
from stratalab.notebook.types import Dataset

if TYPE_CHECKING:
    import pandas as pd


class Datasets(SyncResource):
    """Datasets: ``c.datasets.create(name, source=...)``, ``.list()``, ``.shards(id)``."""

    def create(self, name: str, **spec: Any) -> Dataset:
        """Register a dataset from a JSON source description (``POST /datasets``)."""
        dataset: Dataset = self._run(Request("POST", "/datasets", json={"name": name, **spec}))
        return dataset

    def records(self, *, limit: int | None = None) -> list[Dataset]:
        """Your datasets as dicts."""
        return list(self._run(collect("/datasets", limit=limit)))

    def list(self, *, limit: int | None = None) -> pd.DataFrame:
        """Your datasets as a DataFrame."""
        return to_frame(self.records(limit=limit), Dataset)

    def get(self, dataset_id: str) -> Dataset:
        """One dataset."""
        dataset: Dataset = self._run(Request("GET", f"/datasets/{seg(dataset_id)}"))
        return dataset

    def delete(self, dataset_id: str) -> None:
        """Delete a dataset."""
        self._run(Request("DELETE", f"/datasets/{seg(dataset_id)}"))

    def shards(self, dataset_id: str) -> dict[str, Any]:
        """The dataset's shards and the workers that hold them."""
        return dict(self._run(Request("GET", f"/datasets/{seg(dataset_id)}/shards")))


class AsyncDatasets(AsyncResource):
    """The asyncio twin of :class:`Datasets`."""

    async def create(self, name: str, **spec: Any) -> Dataset:
        """See :meth:`Datasets.create`."""
        req = Request("POST", "/datasets", json={"name": name, **spec})
        dataset: Dataset = await self._run(req)
        return dataset

    async def records(self, *, limit: int | None = None) -> list[Dataset]:
        """See :meth:`Datasets.records`."""
        return list(await self._run(collect("/datasets", limit=limit)))

    async def list(self, *, limit: int | None = None) -> pd.DataFrame:
        """See :meth:`Datasets.list`."""
        return to_frame(await self.records(limit=limit), Dataset)

    async def get(self, dataset_id: str) -> Dataset:
        """See :meth:`Datasets.get`."""
        dataset: Dataset = await self._run(Request("GET", f"/datasets/{seg(dataset_id)}"))
        return dataset

    async def delete(self, dataset_id: str) -> None:
        """See :meth:`Datasets.delete`."""
        await self._run(Request("DELETE", f"/datasets/{seg(dataset_id)}"))

    async def shards(self, dataset_id: str) -> dict[str, Any]:
        """See :meth:`Datasets.shards`."""
        return dict(await self._run(Request("GET", f"/datasets/{seg(dataset_id)}/shards")))
