"""The jupyter_server extension: StrataLab's settings, routes and lifecycle.

Enabled automatically by the installed package (a file in
``jupyter_server_config.d``), so ``jupyter server`` and ``jupyter lab`` serve
the API at ``/stratalab/api/v1``. Every setting is a traitlet
(``--StrataLab.<name>=...``); the coordinator starts once the server's event
loop runs and stops with the server.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir, jupyter_runtime_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Dict, Float, Int, List, Unicode, default

import stratalab
from stratalab.files import write_private
from stratalab.jupyter_ext import (
    alerts,
    benchmarks,
    dashboard,
    datasets,
    efficiency,
    inference,
    jobs,
    keys,
    metrics,
    models,
    projects,
    system,
    training,
    usage,
    websocket,
    workers,
)
from stratalab.jupyter_ext.base import API_PREFIX, NotFoundHandler
from stratalab.scheduler.bootstrap import ensure_admin_key
from stratalab.scheduler.config import CoordinatorConfig
from stratalab.scheduler.coordinator import Coordinator


def default_data_dir() -> str:
    """``$STRATALAB_DATA_DIR``, else ``stratalab`` under Jupyter's data dir."""
    return os.environ.get("STRATALAB_DATA_DIR") or str(Path(jupyter_data_dir()) / "stratalab")


class StrataLab(ExtensionApp):
    """StrataLab inside a Jupyter server."""

    name = "stratalab"
    description = "StrataLab: distributed ML compute on Dask, served from Jupyter."
    load_other_extensions = True
    serverapp_config = {"open_browser": False}

    data_dir = Unicode(
        help="Where the database, artifacts, job working directories and server.json live. "
        "Default: $STRATALAB_DATA_DIR or <jupyter data dir>/stratalab."
    ).tag(config=True)
    db_url = Unicode(
        "",
        help="SQLAlchemy database URL (e.g. postgresql+psycopg://user:pw@host/db). "
        "Empty: SQLite (WAL) in the data dir.",
    ).tag(config=True)
    dask_address = Unicode(
        "",
        help="Address of an existing Dask scheduler to use. Empty: start a LocalCluster "
        "of worker processes with the server and stop it with the server.",
    ).tag(config=True)
    n_workers = Int(2, help="Worker processes of the embedded LocalCluster.").tag(config=True)
    threads_per_worker = Int(1, help="Threads per embedded worker (job slots per worker).").tag(
        config=True
    )
    worker_memory_limit = Unicode(
        "auto", help="Memory limit per embedded worker (Dask syntax)."
    ).tag(config=True)
    max_upload_mb = Int(512, help="Largest file upload accepted, in MiB (413 above).").tag(
        config=True
    )
    max_json_kb = Int(1024, help="Largest JSON request body accepted, in KiB (413 above).").tag(
        config=True
    )
    rate_limit_per_minute = Int(
        6000, help="Requests per minute per API key or user; 0 disables limiting (429 above)."
    ).tag(config=True)
    aging_interval_s = Float(
        60.0, help="Seconds a queued job waits to gain one priority level (aging)."
    ).tag(config=True)
    default_max_retries = Int(1, help="Retries of a failed job when the request names none.").tag(
        config=True
    )
    admin_key = Unicode(
        "",
        help="Admin API key to accept. Empty: create one on first start and keep it in "
        "<data_dir>/admin_key (mode 0600).",
    ).tag(config=True)
    owner = Unicode(help="User id of Jupyter-authenticated callers (the server's owner).").tag(
        config=True
    )
    serving_cache_mb = Int(
        1024, help="Memory for loaded models on each worker, in MiB (least recently used go)."
    ).tag(config=True)
    serving_replicas = Int(
        2, help="Workers each model is loaded on ahead of its first request."
    ).tag(config=True)
    batch_wait_ms = Float(
        0.0,
        help="Longest a sync request waits for others to share its forward pass "
        "(0: batch only requests already queued, never delay a lone one).",
    ).tag(config=True)
    inference_timeout_s = Float(
        30.0, help="Sync inference timeout when a request names none (504 after it)."
    ).tag(config=True)
    max_batch_json_mb = Int(
        256, help="Largest POST /inference/batch body, in MiB (413 above)."
    ).tag(config=True)
    alert_interval_s = Float(
        5.0, help="Seconds between alert rule evaluations (a failed job wakes it early); 0: off."
    ).tag(config=True)
    alert_rules = List(
        Dict(),
        help="Changes to the default alert rules, by name: a known name changes that rule's "
        "fields (threshold, duration_s, severity, comparison, enabled), a new name adds a rule "
        "({name, metric, comparison, threshold, duration_s, severity}). See GET /alerts/rules.",
    ).tag(config=True)
    alert_failed_window_s = Float(
        900.0, help="Seconds a failed job counts for the job_failed and failed_jobs alerts."
    ).tag(config=True)
    alert_worker_window_s = Float(
        300.0, help="Seconds a worker that left the cluster counts as lost (worker_lost alert)."
    ).tag(config=True)
    price_cpu_hour = Float(
        0.05, help="Price of one CPU hour measured on the workers, in price_currency (usage)."
    ).tag(config=True)
    price_gpu_hour = Float(
        2.5, help="Price of one GPU hour measured on the workers, in price_currency (usage)."
    ).tag(config=True)
    price_inference_1k_items = Float(
        0.0, help="Price of 1,000 inference or batch items served, on top of compute time."
    ).tag(config=True)
    price_currency = Unicode("USD", help="Currency of the price_* settings.").tag(config=True)
    internal_token = Unicode(
        "",
        help="Token the /internal routes require (X-Internal-Token). Empty: create one on "
        "first start and keep it in <data_dir>/internal_token (mode 0600).",
    ).tag(config=True)
    write_server_info = Bool(True, help="Write <data_dir>/server.json and print it on start.").tag(
        config=True
    )

    @default("data_dir")
    def _default_data_dir(self) -> str:
        return default_data_dir()

    @default("owner")
    def _default_owner(self) -> str:
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return "owner"

    coordinator: Coordinator
    _info_paths: list[Path]

    def coordinator_config(self) -> CoordinatorConfig:
        """The core's settings from these traitlets."""
        return CoordinatorConfig(
            data_dir=Path(self.data_dir).expanduser().resolve(),
            db_url=self.db_url,
            dask_address=self.dask_address,
            n_workers=self.n_workers,
            threads_per_worker=self.threads_per_worker,
            worker_memory_limit=self.worker_memory_limit,
            aging_interval_s=self.aging_interval_s,
            default_max_retries=self.default_max_retries,
            rate_limit_per_minute=self.rate_limit_per_minute,
            max_upload_mb=self.max_upload_mb,
            max_json_kb=self.max_json_kb,
            owner=self.owner,
            serving_cache_mb=self.serving_cache_mb,
            serving_replicas=self.serving_replicas,
            batch_wait_ms=self.batch_wait_ms,
            inference_timeout_s=self.inference_timeout_s,
            max_batch_json_mb=self.max_batch_json_mb,
            price_cpu_hour=self.price_cpu_hour,
            price_gpu_hour=self.price_gpu_hour,
            price_inference_1k_items=self.price_inference_1k_items,
            price_currency=self.price_currency,
            internal_token=self.internal_token,
            alert_interval_s=self.alert_interval_s,
            alert_rules=[dict(r) for r in self.alert_rules],
            alert_failed_window_s=self.alert_failed_window_s,
            alert_worker_window_s=self.alert_worker_window_s,
        )

    def initialize_settings(self) -> None:
        """Create the coordinator and hand it to the handlers."""
        self.coordinator = Coordinator(self.coordinator_config())
        self.settings["stratalab.coordinator"] = self.coordinator
        self._info_paths = []

    def initialize_handlers(self) -> None:
        """Register every route under ``/stratalab/api/v1``."""
        for module in (
            system,
            keys,
            jobs,
            training,
            dashboard,
            alerts,
            websocket,
            metrics,  # before workers: /workers/{id} would also match /workers/stats
            workers,
            datasets,
            models,
            inference,
            projects,
            benchmarks,
            usage,
            efficiency,
        ):
            self.handlers.extend(module.routes(API_PREFIX))
        self.handlers.append((rf"{API_PREFIX}(/.*)?", NotFoundHandler))

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        """Start the coordinator in the background once the loop runs."""
        task = self.coordinator.start_soon()
        if self.write_server_info:
            task.add_done_callback(lambda t: asyncio.ensure_future(self._announce(t)))

    async def _announce(self, started: asyncio.Task[None]) -> None:
        """Write server.json (0600) and print it as one line of JSON."""
        if started.cancelled() or started.exception() is not None:
            return
        c, server = self.coordinator, self.serverapp
        assert server is not None
        admin_key = await c.db(ensure_admin_key, c.keys, c.config, self.admin_key)
        url = server.connection_url.rstrip("/") + API_PREFIX
        info = {
            "url": url,
            "server_url": server.connection_url,
            "token": server.identity_provider.token,
            "admin_key": admin_key,
            "dask_address": c.cluster.scheduler_address,
            "dask_dashboard": c.cluster.dashboard_link,
            "data_dir": str(c.config.data_dir),
            "pid": os.getpid(),
            "version": stratalab.__version__,
        }
        runtime = Path(jupyter_runtime_dir())
        runtime.mkdir(parents=True, exist_ok=True)
        paths = [c.config.data_dir / "server.json", runtime / f"stratalab-{os.getpid()}.json"]
        for path in paths:
            write_private(path, json.dumps(info, indent=2))
        self._info_paths = paths
        print(json.dumps(info), flush=True)  # the documented start line
        self.log.info("StrataLab API at %s (Dask dashboard: %s)", url, info["dask_dashboard"])
        sys.stdout.flush()

    async def stop_extension(self) -> None:
        """Stop the coordinator (and the embedded cluster) with the server."""
        for path in getattr(self, "_info_paths", []):
            path.unlink(missing_ok=True)
        await self.coordinator.stop()


main = launch_new_instance = StrataLab.launch_instance
