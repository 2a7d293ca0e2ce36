"""A content-addressed store of tiny real models, and one small real Dask cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from distributed import Client, LocalCluster

from stratalab.kernels.models.samples import SampleStore, build_sample_store


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> SampleStore:
    return build_sample_store(tmp_path_factory.mktemp("store"), tmp_path_factory.mktemp("build"))


@pytest.fixture(scope="session")
def client() -> Iterator[Client]:
    """One single-thread worker process: the machine is small and shared."""
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as dask_client,
    ):
        yield dask_client


@pytest.fixture(scope="session")
def worker_address(client: Client) -> str:
    return next(iter(client.scheduler_info()["workers"]))
