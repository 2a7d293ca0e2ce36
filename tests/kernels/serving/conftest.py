"""A content-addressed store of tiny real models, and one small real Dask cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from distributed import Client

from stratalab.kernels.models.samples import SampleStore, build_sample_store
from stratalab.testing import local_cluster


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> SampleStore:
    return build_sample_store(tmp_path_factory.mktemp("store"), tmp_path_factory.mktemp("build"))


@pytest.fixture(scope="session")
def client() -> Iterator[Client]:
    """One single-thread worker process: the machine is small and shared."""
    with (
        local_cluster(1, memory_limit="auto") as cluster,
        Client(cluster) as dask_client,
    ):
        yield dask_client


@pytest.fixture(scope="session")
def worker_address(client: Client) -> str:
    return next(iter(client.scheduler_info()["workers"]))
