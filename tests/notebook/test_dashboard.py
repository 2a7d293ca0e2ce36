"""The dashboard widget against a real server that goes away and comes back.

This module starts its own server (it stops and restarts it on the same port
and data dir, as a user restarting ``stratalab server`` would).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stratalab.launcher import ServerProcess, free_port, start_server
from stratalab.notebook import Client
from stratalab.notebook.dashboard import Dashboard
from stratalab.testing import wait_until

SLEEPER = "import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n"


class Restartable:
    """A server that can be stopped and started again on the same port and data dir."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.server: ServerProcess = self.start()

    def start(self) -> ServerProcess:
        self.server = start_server(
            self.root / "data",
            port=self.port,
            extra_args=["--workers", "1"],
            env={"JUPYTER_RUNTIME_DIR": str(self.root / "runtime")},
        )
        return self.server


@pytest.fixture(scope="module")
def restartable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Restartable]:
    """This module's own server."""
    srv = Restartable(tmp_path_factory.mktemp("dashboard-server"))
    yield srv
    srv.server.stop()


@pytest.fixture
def own_client(restartable: Restartable) -> Iterator[Client]:
    """An admin client of this module's server."""
    info = restartable.server.info
    with Client(info["url"], api_key=info["admin_key"]) as c:
        yield c


def test_dashboard_shows_the_cluster(own_client: Client):
    done = own_client.jobs.submit("done", "print(1)")["job_id"]
    own_client.jobs.wait(done, timeout=90)
    running = own_client.jobs.submit("running", SLEEPER, max_retries=0)["job_id"]
    wait_until(lambda: own_client.jobs.get(running)["status"] == "RUNNING", timeout=60)
    worker_id = own_client.workers.records()[0]["id"]
    board = own_client.dashboard(autostart=False)
    try:
        assert board.refresh() is True

        assert "connected" in board.header.value and "disconnected" not in board.header.value
        assert worker_id in board.workers_view.value
        assert "1/1" in board.workers_view.value  # CPU slots: the sleeper holds the one slot
        assert "COMPLETED" in board.queue_view.value and "RUNNING" in board.queue_view.value
        assert running in board.running_view.value and done not in board.running_view.value
        assert list(board.figure.data[1].y) == [1]  # one running job plotted
        assert board.snapshot is not None and board.snapshot.status["workers"] == 1
    finally:
        board.close()
        own_client.jobs.cancel(running)


def test_dashboard_shows_training_progress_and_loss_curves(own_client: Client):
    ds = own_client.datasets.create("digits", format="builtin", source="digits")
    job_id = own_client.training.start(ds["id"], "mlp", hidden=[16], epochs=300)["job_id"]
    wait_until(
        lambda: (own_client.jobs.get(job_id).get("progress") or {}).get("current_round", 0) >= 2,
        timeout=90,
    )
    board = own_client.dashboard(autostart=False)
    try:
        assert board.refresh() is True
        assert job_id in board.running_view.value
        assert "round" in board.running_view.value and "loss" in board.running_view.value
        names = [trace.name for trace in board.loss_figure.data]
        assert names == [f"{job_id[-6:]} loss", f"{job_id[-6:]} val_accuracy"]
        losses = list(board.loss_figure.data[0].y)
        assert len(losses) >= 2 and all(v > 0 for v in losses)
        assert list(board.loss_figure.data[0].x)[:2] == [1, 2]
    finally:
        board.close()
        own_client.jobs.cancel(job_id)


@pytest.mark.slow  # stops the server and starts it again
def test_dashboard_says_disconnected_and_reconnects(restartable: Restartable, own_client: Client):
    board = Dashboard(own_client.connection, autostart=False)
    try:
        assert board.refresh() is True

        restartable.server.stop()
        assert board.refresh() is False
        assert "disconnected" in board.header.value and "SERVICE_UNAVAILABLE" in board.header.value
        assert board.error is not None and board.error.code == "SERVICE_UNAVAILABLE"

        restartable.start()
        assert board.refresh() is True
        assert "connected" in board.header.value and "disconnected" not in board.header.value
        assert len(board.figure.data[0].y) == 2  # the history survives the outage
    finally:
        board.close()


def test_dashboard_refreshes_in_a_background_thread(own_client: Client):
    board = own_client.dashboard(interval=0.1)
    try:
        assert board._poller.mode == "thread" and board.refreshing
        wait_until(
            lambda: len(board.figure.data[0].y or ()) >= 3, timeout=30, what="three refreshes"
        )
    finally:
        board.close()
    assert not board.refreshing


async def test_dashboard_refreshes_as_a_task_on_the_running_loop(own_client: Client):
    board = own_client.dashboard(interval=0.1)
    try:
        assert board._poller.mode == "asyncio" and board.refreshing
        deadline = time.monotonic() + 30
        while len(board.figure.data[0].y or ()) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the loop is free: the refresh runs between our sleeps
        assert len(board.figure.data[0].y) >= 3 and board.connected
    finally:
        board.close()
    for _ in range(100):  # let the cancellation land (the task closes its connections)
        if not board.refreshing:
            break
        await asyncio.sleep(0.01)
    assert not board.refreshing
