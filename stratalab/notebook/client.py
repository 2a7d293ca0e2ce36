"""The StrataLab client for notebooks and scripts: :class:`Client` and :class:`AsyncClient`.

Inside a kernel started by a StrataLab-enabled Jupyter server, ``Client()``
finds its server by itself (see :mod:`stratalab.notebook.discovery`); from a
script, pass ``Client(url, api_key=...)``. Resources hang off the client as
namespaces (``c.jobs``, ``c.workers``, ``c.keys``, ``c.models``,
``c.inference``, ``c.projects``, ``c.datasets``) with the same methods on
both clients; ``AsyncClient``'s are awaited, for code that runs on the
kernel's event loop. Every failure is an :class:`ApiError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stratalab.notebook.datasets import AsyncDatasets, Datasets
from stratalab.notebook.discovery import discover
from stratalab.notebook.errors import ApiError
from stratalab.notebook.inference import AsyncInference, Inference
from stratalab.notebook.jobs import AsyncJobs, Jobs
from stratalab.notebook.keys import AsyncKeys, Keys
from stratalab.notebook.models import AsyncModels, Models
from stratalab.notebook.projects import AsyncProjects, Projects
from stratalab.notebook.training import AsyncTraining, Training
from stratalab.notebook.transport import (
    AsyncTransport,
    Connection,
    Request,
    SyncTransport,
    arun,
    run,
)
from stratalab.notebook.types import Cluster, Health, Job, KeyCreated, LogLine, Queue, Status
from stratalab.notebook.workers import AsyncWorkers, Workers

if TYPE_CHECKING:
    from stratalab.notebook.dashboard import Dashboard

__all__ = ["ApiError", "AsyncClient", "Client", "connect", "discover"]


def connect(
    url: str | None = None,
    api_key: str | None = None,
    *,
    token: str | None = None,
    timeout: float = 30.0,
    data_dir: str | Path | None = None,
) -> Connection:
    """Where to send requests: the given URL and credentials, or a discovered server's."""
    if url is None:
        info = discover(data_dir)
        url = info.url
        if api_key is None and token is None:
            api_key, token = info.api_key, info.token
    return Connection(url=url.rstrip("/"), api_key=api_key, token=token, timeout=timeout)


def _describe(conn: Connection) -> str:
    auth = "API key" if conn.api_key else "Jupyter token" if conn.token else "no credentials"
    return f"{conn.url} ({auth})"


class Client:
    """A blocking client of one StrataLab server.

    Parameters
    ----------
    url
        The API base (``http://host:port/stratalab/api/v1``). Found
        automatically inside a StrataLab-enabled Jupyter server, from
        ``$STRATALAB_URL`` or from a data dir's ``server.json``.
    api_key
        An ``X-API-Key`` secret; defaults to the discovered admin key.
    token
        A Jupyter token, as an alternative to an API key.
    timeout
        Seconds for each request (streams wait as long as the server sends).
    data_dir
        A data dir whose ``server.json`` names the server.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        data_dir: str | Path | None = None,
    ) -> None:
        #: where requests go and how they authenticate.
        self.connection = connect(url, api_key, token=token, timeout=timeout, data_dir=data_dir)
        #: the API base URL.
        self.url = self.connection.url
        self._transport = SyncTransport(self.connection)
        #: jobs: submit, list, get, cancel, retry, wait, logs, monitor.
        self.jobs = Jobs(self)
        #: the cluster's workers: list, get, drain, enable.
        self.workers = Workers(self)
        #: API keys: create, list, revoke.
        self.keys = Keys(self)
        #: the model registry.
        self.models = Models(self)
        #: sync, async and batch inference.
        self.inference = Inference(self)
        #: projects and their analytics.
        self.projects = Projects(self)
        #: datasets and their shards.
        self.datasets = Datasets(self)
        #: training jobs: start (a built-in net, a model id or a torch module), pause, resume.
        self.training = Training(self)

    @classmethod
    def from_connection(cls, conn: Connection) -> Client:
        """A client for an existing :class:`Connection` (e.g. another client's)."""
        return cls(conn.url, conn.api_key, token=conn.token, timeout=conn.timeout)

    def __repr__(self) -> str:
        return f"<stratalab.Client {_describe(self.connection)}>"

    def close(self) -> None:
        """Close the connection pool."""
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------- system
    def health(self) -> Health:
        """``GET /health``: whether the server answers (needs no credentials)."""
        health: Health = run(Request("GET", "/health"), self._transport)
        return health

    def status(self) -> Status:
        """``GET /status``: version, uptime, Dask address and dashboard, counts."""
        status: Status = run(Request("GET", "/status"), self._transport)
        return status

    def queue(self) -> Queue:
        """``GET /queue``: depth by priority and state, waits, queued jobs with reasons."""
        queue: Queue = run(Request("GET", "/queue"), self._transport)
        return queue

    def cluster(self) -> Cluster:
        """``GET /cluster``: capacity, allocation and utilisation."""
        cluster: Cluster = run(Request("GET", "/cluster"), self._transport)
        return cluster

    def config(self) -> dict[str, Any]:
        """``GET /config``: the effective settings, credentials redacted."""
        return dict(run(Request("GET", "/config"), self._transport))

    def dashboard(self, *, interval: float = 2.0, autostart: bool = True) -> Dashboard:
        """A live ipywidgets dashboard of this server; ``.close()`` stops it."""
        from stratalab.notebook.dashboard import Dashboard

        return Dashboard(self.connection, interval=interval, autostart=autostart)

    # ------------------------------------------------- raw access, shortcuts
    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One call to any route (``params``, ``json``, ``data``, ``files``, ``headers``)."""
        return self._transport.send(Request(method, path, **kwargs))

    def stream_events(self, path: str, **params: Any) -> Iterator[tuple[str, Any]]:
        """``(event, data)`` pairs from any Server-Sent Events route."""
        for ev in self._transport.stream(Request("GET", path, params=params)):
            yield ev.event, ev.data

    def submit(
        self, name: str, *, script: str | None = None, entrypoint: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Shortcut for :meth:`Jobs.submit`."""
        return dict(self.jobs.submit(name, script, entrypoint=entrypoint, **fields))

    def job(self, job_id: str) -> Job:
        """Shortcut for :meth:`Jobs.get`."""
        return self.jobs.get(job_id)

    def cancel(self, job_id: str, reason: str | None = None) -> Job:
        """Shortcut for :meth:`Jobs.cancel`."""
        return self.jobs.cancel(job_id, reason)

    def wait(self, job_id: str, timeout: float = 600, poll_s: float = 0.2) -> Job:
        """Shortcut for :meth:`Jobs.wait` (with a 10-minute default timeout)."""
        return self.jobs.wait(job_id, timeout=timeout, poll_s=poll_s)

    def logs(
        self, job_id: str, *, follow: bool = True, tail: int = 100, level: str = "INFO"
    ) -> Iterator[LogLine]:
        """A job's log lines; with ``follow``, live until the job ends."""
        if follow:
            return self.jobs.stream_logs(job_id, tail=tail, level=level)
        return iter(self.jobs.logs(job_id, tail=tail, level=level))

    def create_key(self, user_id: str, *, scope: str = "user", name: str = "") -> KeyCreated:
        """Shortcut for :meth:`Keys.create`."""
        return self.keys.create(user_id, scope=scope, name=name)


class AsyncClient:
    """An asyncio client with the surface of :class:`Client`; its calls are awaited.

    Use it on a running event loop (a notebook cell can ``await`` directly)::

        async with AsyncClient() as c:
            job = await c.jobs.submit("hello", "print(42)")
            async for update in c.jobs.monitor(job["job_id"]):
                print(update["status"])

    Takes the same parameters as :class:`Client`.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        data_dir: str | Path | None = None,
    ) -> None:
        #: where requests go and how they authenticate.
        self.connection = connect(url, api_key, token=token, timeout=timeout, data_dir=data_dir)
        #: the API base URL.
        self.url = self.connection.url
        self._transport = AsyncTransport(self.connection)
        #: see :class:`Client`.
        self.jobs = AsyncJobs(self)
        self.workers = AsyncWorkers(self)
        self.keys = AsyncKeys(self)
        self.models = AsyncModels(self)
        self.inference = AsyncInference(self)
        self.projects = AsyncProjects(self)
        self.datasets = AsyncDatasets(self)
        self.training = AsyncTraining(self)

    @classmethod
    def from_connection(cls, conn: Connection) -> AsyncClient:
        """A client for an existing :class:`Connection` (e.g. another client's)."""
        return cls(conn.url, conn.api_key, token=conn.token, timeout=conn.timeout)

    def __repr__(self) -> str:
        return f"<stratalab.AsyncClient {_describe(self.connection)}>"

    async def close(self) -> None:
        """Close the connection pool."""
        await self._transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def health(self) -> Health:
        """See :meth:`Client.health`."""
        health: Health = await arun(Request("GET", "/health"), self._transport)
        return health

    async def status(self) -> Status:
        """See :meth:`Client.status`."""
        status: Status = await arun(Request("GET", "/status"), self._transport)
        return status

    async def queue(self) -> Queue:
        """See :meth:`Client.queue`."""
        queue: Queue = await arun(Request("GET", "/queue"), self._transport)
        return queue

    async def cluster(self) -> Cluster:
        """See :meth:`Client.cluster`."""
        cluster: Cluster = await arun(Request("GET", "/cluster"), self._transport)
        return cluster

    async def config(self) -> dict[str, Any]:
        """See :meth:`Client.config`."""
        return dict(await arun(Request("GET", "/config"), self._transport))

    def dashboard(self, *, interval: float = 2.0, autostart: bool = True) -> Dashboard:
        """See :meth:`Client.dashboard` (refreshes as a task on the running loop)."""
        from stratalab.notebook.dashboard import Dashboard

        return Dashboard(self.connection, interval=interval, autostart=autostart)
