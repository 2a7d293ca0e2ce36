"""``%load_ext stratalab``: the ``%stratalab`` line magic and ``%%stratalab run`` cell magic.

Line magic::

    %stratalab status                  server, cluster and queue at a glance
    %stratalab workers                 the workers (a DataFrame)
    %stratalab jobs [--status S] [--limit N]
    %stratalab watch JOB               follow a job's state changes until it ends
    %stratalab logs JOB [--tail N] [--follow]
    %stratalab dashboard               the live dashboard widget
    %stratalab connect [URL] [--api-key KEY] [--token TOKEN]

Cell magic: ``%%stratalab run [--gpu N] [--cpu N] [--memory-gb G] [--priority P]
[--max-retries N] [--name NAME]`` runs the cell's code as a ``task`` job on a cluster worker
and streams its output into the cell until it ends.

Errors from the server are printed (code, message, trace id), not raised as
tracebacks; interrupting the kernel stops following a job, not the job.
"""

from __future__ import annotations

import sys
from functools import partial
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

from stratalab.notebook.client import Client
from stratalab.notebook.errors import ApiError
from stratalab.notebook.types import Job

#: columns of ``%stratalab jobs``.
JOB_COLUMNS = ["id", "name", "status", "priority", "worker_id", "exit_code", "created_at"]
#: columns of ``%stratalab workers``.
WORKER_COLUMNS = [
    "id",
    "status",
    "nthreads",
    "used_cpu",
    "gpus",
    "used_gpus",
    "cpu_percent",
    "memory_bytes",
    "memory_limit_bytes",
    "running_jobs",
]


def _print_err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _explain(exc: ApiError) -> str:
    trace = f" (trace id {exc.trace_id})" if exc.trace_id else ""
    return f"StrataLab: {exc.code}: {exc.message}{trace}"


def _ended(job: Job) -> str:
    code = job.get("exit_code")
    exit_note = f" (exit code {code})" if code is not None else ""
    line = f"{job['id']} {job['status']}{exit_note}"
    if job["status"] != "COMPLETED" and job.get("error"):
        line += f": {job['error']}"
    return line


@magics_class
class StrataLabMagics(Magics):
    """The ``%stratalab`` magics; they share one lazily created :class:`Client`."""

    def __init__(self, shell: Any = None, client: Client | None = None) -> None:
        super().__init__(shell)
        self._client = client

    @property
    def client(self) -> Client:
        """The client the magics use: discovered on first use, or set by ``connect``."""
        if self._client is None:
            self._client = Client()
        return self._client

    @line_cell_magic
    def stratalab(self, line: str, cell: str | None = None) -> Any:
        """Talk to StrataLab: ``%stratalab status|workers|jobs|watch|logs|dashboard|connect``.

        ``%%stratalab run [--gpu N] [--cpu N] [--name NAME]`` runs the cell on the cluster.
        """
        command, _, rest = line.strip().partition(" ")
        if cell is not None:
            if command != "run":
                raise UsageError("the cell magic is `%%stratalab run [--gpu N] [--cpu N] ...`")
            call = partial(self._run_cell, rest, cell)
        else:
            commands = {
                "status": self._status,
                "workers": self._workers,
                "jobs": self._jobs,
                "watch": self._watch,
                "logs": self._logs,
                "dashboard": self._dashboard,
                "connect": self._connect,
            }
            if command not in commands:
                raise UsageError(
                    f"unknown command {command!r}; use one of {', '.join(commands)} "
                    "(or the cell magic `%%stratalab run`)"
                )
            call = partial(commands[command], rest)
        try:
            return call()
        except ApiError as exc:
            _print_err(_explain(exc))
        except KeyboardInterrupt:
            _print_err("stopped following (the job goes on; `%stratalab watch JOB` to resume)")
        return None

    # ------------------------------------------------------------ commands
    def _status(self, rest: str) -> None:
        c = self.client
        status, cluster, queue = c.status(), c.cluster(), c.queue()
        dash = status.get("dask_dashboard") or "-"
        cap, used = cluster["capacity"], cluster["allocated"]
        print(
            f"StrataLab {status['version']} at {c.url} (up {status['uptime_s']:.0f} s, "
            f"{status['database']})\n"
            f"Dask:    {status['dask_address']}  dashboard: {dash}\n"
            f"workers: {cluster['workers']['total']} ({cluster['workers']['active']} active); "
            f"CPU slots {used['cpu']}/{cap['cpu']} used; GPUs {used['gpu']}/{cap['gpu']} used\n"
            f"queue:   {queue['depth']} queued, {queue['running']} running; last 24 h: "
            f"{queue['completed_24h']} completed, {queue['failed_24h']} failed"
        )

    def _workers(self, rest: str) -> None:
        frame = self.client.workers.list()
        display(frame[[c for c in WORKER_COLUMNS if c in frame.columns]])

    @magic_arguments()
    @argument("--status", action="append", help="only jobs in this state (repeatable)")
    @argument("--limit", type=int, default=20, help="at most this many (newest first)")
    def _jobs(self, rest: str) -> None:
        args = parse_argstring(self._jobs, rest)
        status = [s.upper() for s in args.status] if args.status else None
        frame = self.client.jobs.list(status=status, limit=args.limit)
        display(frame[[c for c in JOB_COLUMNS if c in frame.columns]])

    @magic_arguments()
    @argument("job_id", help="the job to follow")
    def _watch(self, rest: str) -> None:
        args = parse_argstring(self._watch, rest)
        for update in self.client.jobs.monitor(args.job_id):
            if update["event"] == "state":
                ts = (update["ts"] or "")[11:23]
                print(
                    f"{ts}  {update['from_state'] or '-':>12} -> {update['status']:<12} "
                    f"{update['reason'] or ''}",
                    flush=True,
                )
        print(_ended(self.client.jobs.get(args.job_id)), flush=True)

    @magic_arguments()
    @argument("job_id", help="the job")
    @argument("--tail", type=int, default=100, help="lines from the end")
    @argument("--follow", action="store_true", help="keep printing until the job ends")
    def _logs(self, rest: str) -> None:
        args = parse_argstring(self._logs, rest)
        jobs = self.client.jobs
        if args.follow:
            lines = jobs.stream_logs(args.job_id, tail=args.tail)
        else:
            lines = iter(jobs.logs(args.job_id, tail=args.tail))
        for entry in lines:
            out = sys.stderr if entry["stream"] == "stderr" else sys.stdout
            print(f"[{entry['stream']}] {entry['message']}", file=out, flush=True)

    def _dashboard(self, rest: str) -> Any:
        return self.client.dashboard()

    @magic_arguments()
    @argument("url", nargs="?", default=None, help="the API base URL (default: discover)")
    @argument("--api-key", default=None, help="an X-API-Key secret")
    @argument("--token", default=None, help="a Jupyter token")
    def _connect(self, rest: str) -> None:
        args = parse_argstring(self._connect, rest)
        client = Client(args.url, args.api_key, token=args.token)
        client.health()
        if self._client is not None:
            self._client.close()
        self._client = client
        print(f"connected: {client!r}")

    @magic_arguments()
    @argument("--gpu", type=int, default=None, help="GPUs the job needs")
    @argument("--cpu", type=int, default=None, help="CPU slots the job needs")
    @argument("--memory-gb", type=float, default=None, help="memory the job needs")
    @argument("--priority", type=int, default=None, help="1 (lowest) to 10")
    @argument("--max-retries", type=int, default=None, help="retries after a failure")
    @argument("--name", default="notebook-cell", help="the job's name")
    def _run_cell(self, rest: str, cell: str) -> None:
        args = parse_argstring(self._run_cell, rest)
        jobs = self.client.jobs
        submitted = jobs.submit(
            args.name,
            cell,
            cpu=args.cpu,
            gpu=args.gpu,
            memory_gb=args.memory_gb,
            priority=args.priority,
            max_retries=args.max_retries,
        )
        job_id = submitted["job_id"]
        print(f"{job_id} submitted ({submitted['status']}); streaming its output", flush=True)
        try:
            for entry in jobs.stream_logs(job_id, tail=100_000):
                if entry["stream"] == "stderr":
                    _print_err(entry["message"])
                elif entry["stream"] != "system":
                    print(entry["message"], flush=True)
        except KeyboardInterrupt:
            _print_err(f"stopped following {job_id} (it goes on; `%stratalab watch {job_id}`)")
            return
        print(_ended(jobs.get(job_id)), flush=True)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext stratalab`` (through :func:`stratalab.load_ipython_extension`)."""
    ipython.register_magics(StrataLabMagics)


__all__ = ["StrataLabMagics", "load_ipython_extension"]
