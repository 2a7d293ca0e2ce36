"""Run a user's script or command as a subprocess on a Dask worker.

A ``task`` job is arbitrary user code, so it runs in its own process (a crash,
``os._exit`` or a leaked thread cannot take the worker down) and in its own
session, so that cancelling kills everything it started and nothing else. Its
output travels line by line over Dask's event channel (:mod:`.topics`) while it
runs; the coordinator gets the exit code and the tail of the output as the
task's result.

The coordinator submits :func:`run_task` as an ordinary Dask task and cancels
with ``client.run(kill_job, job_id, workers=[address])``: Dask cannot
interrupt a running task, but it can run a function on the worker beside it.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil
from distributed import get_worker

from stratalab.kernels import topics
from stratalab.kernels.metering import exited_cpu_ms
from stratalab.kernels.power import EnergyMeter

__all__ = ["kill_job", "run_task"]

logger = logging.getLogger(__name__)

Publish = Callable[[str, dict[str, Any]], None]

#: Exit code reported when the command cannot be started (the shell's "not found").
EXIT_NOT_STARTED = 127
#: Longest line published; a runaway line without newlines must not become a
#: multi-megabyte event on the scheduler.
MAX_LINE_BYTES = 16 * 1024
#: How long a cancelled process tree gets between SIGTERM and SIGKILL.
KILL_GRACE_S = 3.0
_PR_SET_PDEATHSIG = 1

#: Attempts running on this worker, by job id, so that :func:`kill_job` can find them.
_RUNNING: dict[str, RunningTask] = {}
#: Guards ``_RUNNING`` and the ``cancelled``/``reaped`` flags of its entries.
_LOCK = threading.Lock()


@dataclass
class RunningTask:
    """One attempt's process, as seen by :func:`kill_job`."""

    #: Job the attempt belongs to.
    job_id: str
    #: Attempt number (retries run the same job id again).
    attempt: int
    #: The child process; ``None`` while it is being started.
    proc: subprocess.Popen[bytes] | None = None
    #: Set by :func:`kill_job`; makes :func:`run_task` report ``cancelled``.
    cancelled: bool = False
    #: Set just before the child is reaped: from then on its pid, which is also
    #: the process group id, may be reused, so nobody may signal it any more.
    reaped: bool = False
    #: CPU ms and energy (J) of the attempt; None when not measured.
    cpu_ms: float | None = None
    energy_j: float | None = None


def run_task(spec: dict[str, Any], publish: Publish | None = None) -> dict[str, Any]:
    """Run one attempt of a ``task`` job to completion and report how it ended.

    Parameters
    ----------
    spec
        ``job_id``, ``attempt``, exactly one of ``entrypoint`` (a command line,
        or a ``.py`` file run with this worker's Python) and ``script`` (inline
        Python source), ``args``, ``env``, ``workdir_root`` and optionally
        ``max_output_bytes`` (default 65536).
    publish
        Receives ``(topic, event)`` for every event. Given explicitly it wins;
        otherwise events go to the Dask worker this runs on, or are dropped
        when there is none (a direct call in a test or a notebook).

    Returns
    -------
    dict
        ``job_id, attempt, exit_code, cancelled, worker, workdir, output_tail,
        started_at, ended_at, lines, cpu_ms, gpu_ms, energy_j``; ``worker`` is
        ``None`` off a worker. ``cpu_ms``: the child and what it waited for
        (``None`` without ``waitid``); ``gpu_ms`` is not measured (``None``),
        nor is ``energy_j`` without RAPL or NVML.
        ``exit_code`` is negative when the process died from a signal (``-15``
        for SIGTERM) and 127 when it could not start. Failures of the user's
        code are results, not exceptions.
    """
    job_id = str(spec["job_id"])
    attempt = int(spec["attempt"])
    entrypoint: str | None = spec.get("entrypoint")
    script: str | None = spec.get("script")
    if (entrypoint is None) == (script is None):
        raise ValueError("a task spec needs exactly one of 'entrypoint' and 'script'")
    if not job_id or job_id in {".", ".."} or Path(job_id).name != job_id:
        raise ValueError(f"job_id {job_id!r} cannot name a directory")
    args = [str(a) for a in spec.get("args") or []]
    emit, address = _publisher(publish)

    workdir = _workdir(Path(spec["workdir_root"]), job_id, attempt)
    env = {**os.environ, **{str(k): str(v) for k, v in (spec.get("env") or {}).items()}}
    env.update(PYTHONUNBUFFERED="1", STRATALAB_JOB_ID=job_id, STRATALAB_ATTEMPT=str(attempt))
    max_output = spec.get("max_output_bytes")
    max_output = 65536 if max_output is None else max(0, int(max_output))
    output = _Output(job_id, attempt, workdir / "output.log", emit, max_output)
    task = RunningTask(job_id, attempt)
    with _LOCK:
        if job_id in _RUNNING:
            logger.warning("job %s already has an attempt running here; replacing it", job_id)
        _RUNNING[job_id] = task
    started_at = time.time()
    energy = EnergyMeter()
    energy.start()
    try:
        try:
            if script is not None:
                (workdir / "main.py").write_text(script, encoding="utf-8")
                cmd = [sys.executable, "-u", "main.py", *args]
            elif entrypoint is not None and entrypoint.endswith(".py"):
                cmd = [sys.executable, "-u", entrypoint, *args]
            else:
                cmd = [*shlex.split(entrypoint or ""), *args]
            proc = subprocess.Popen(
                cmd,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                # Safe despite the worker's threads: the hook only makes two
                # system calls through objects bound before the fork.
                preexec_fn=_die_with_parent(),  # noqa: PLW1509
            )
        except (OSError, ValueError, IndexError) as exc:
            # OSError: not found, not executable, bad interpreter; ValueError:
            # unbalanced quotes; IndexError: an empty command line.
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            output.emit("stderr", f"stratalab: cannot start {entrypoint or 'main.py'!r}: {reason}")
            return _result(
                task,
                EXIT_NOT_STARTED,
                address=address,
                workdir=workdir,
                output=output,
                started_at=started_at,
            )
        with _LOCK:
            task.proc = proc
            if task.cancelled:  # kill_job came while Popen ran
                _signal_tree(proc.pid, signal.SIGKILL)
        emit(
            topics.LIFECYCLE,
            {
                "job_id": job_id,
                "attempt": attempt,
                "event": "started",
                "worker": address,
                "pid": proc.pid,
                "workdir": str(workdir),
                "ts": time.time(),
            },
        )
        exit_code = _wait(task, proc, output)
        task.energy_j = energy.stop()
        return _result(
            task, exit_code, address=address, workdir=workdir, output=output, started_at=started_at
        )
    finally:
        output.close()
        with _LOCK:
            if _RUNNING.get(job_id) is task:
                del _RUNNING[job_id]


def kill_job(job_id: str) -> bool:
    """Kill the process tree of ``job_id``'s attempt on this worker.

    SIGTERM goes to the process group and to every descendant (in case one left
    the group); what is still alive after :data:`KILL_GRACE_S` gets SIGKILL.
    The escalation runs in a thread because ``client.run`` calls this on the
    worker's event loop, which must not stall for seconds. Returns whether an
    attempt was running; :func:`run_task` then returns ``cancelled: True``.
    """
    with _LOCK:
        task = _RUNNING.get(job_id)
        if task is None:
            return False
        task.cancelled = True
        if task.proc is None or task.reaped:
            return True  # run_task kills it as soon as Popen returns, or it is over
        procs = _signal_tree(task.proc.pid, signal.SIGTERM)
    threading.Thread(
        target=_escalate, args=(task, procs), name=f"stratalab-kill-{job_id}", daemon=True
    ).start()
    logger.info("cancelling job %s attempt %s (%d processes)", job_id, task.attempt, len(procs))
    return True


def _publisher(publish: Publish | None) -> tuple[Publish, str | None]:
    """Pick where events go, and the worker address to report.

    The worker is looked up here, in the task's thread, because the reader
    threads cannot find it themselves; ``Worker.log_event`` is thread-safe.
    The returned callable never raises: a reader thread that died on a
    publishing error would stop draining its pipe and hang the job on a full
    pipe, and ``run_task`` must not lose track of a child it started.
    """
    try:
        worker = get_worker()
    except ValueError:
        worker = None
    address = worker.address if worker is not None else None
    target = publish if publish is not None else worker.log_event if worker is not None else None

    def emit(topic: str, event: dict[str, Any]) -> None:
        if target is None:
            return
        try:
            target(topic, event)
        except Exception:
            logger.warning("could not publish a %s event", topic, exc_info=True)

    return emit, address


def _workdir(root: Path, job_id: str, attempt: int) -> Path:
    """Create the attempt's directory, under the worker's own space if ``root`` is unusable.

    ``workdir_root`` is chosen by the coordinator, which may not share a
    filesystem with this worker (a remote cluster); a job should still run.
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
        usable = os.access(root, os.W_OK | os.X_OK)
    except OSError:
        usable = False
    if not usable:
        try:
            fallback = Path(get_worker().local_directory)
        except ValueError:
            fallback = Path(tempfile.gettempdir())
        logger.warning("workdir_root %s is not writable here; using %s", root, fallback)
        root = fallback / "stratalab-jobs"
    workdir = root / job_id / f"attempt-{attempt}"
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


@functools.cache
def _prctl() -> Any:
    """``prctl`` from the C library already loaded in this process, or ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when its parent dies (Linux).

    Without it a worker that is killed (OOM, ``kill -9``, lost node) leaves the
    job running as an orphan nobody can cancel. The signal fires when the
    *thread* that forked exits, which is fine: that thread is the one in
    :func:`run_task`, blocked until the child ends. Everything is looked up
    before the fork so the child only makes system calls.
    """
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()
    sigkill = int(signal.SIGKILL)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sigkill)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sigkill)

    return preexec


class _Output:
    """Numbers, publishes and records the output lines of one attempt.

    One lock covers the sequence number, the publish call, ``output.log`` and
    the tail, so that event order, ``seq`` order and file order are the same
    across both streams.
    """

    def __init__(
        self, job_id: str, attempt: int, path: Path, emit: Publish, max_bytes: int
    ) -> None:
        self.job_id = job_id
        self.attempt = attempt
        #: Lines emitted so far; the next line's ``seq``.
        self.lines = 0
        self._emit = emit
        self._lock = threading.Lock()
        self._log: IO[str] = path.open("a", encoding="utf-8", buffering=1)
        self._max = max_bytes
        self._tail: deque[bytes] = deque()
        self._tail_bytes = 0

    def emit(self, stream: str, line: str) -> None:
        """Publish one line and keep it in ``output.log`` and the tail."""
        with self._lock:
            seq = self.lines
            self.lines += 1
            event = {
                "job_id": self.job_id,
                "attempt": self.attempt,
                "seq": seq,
                "stream": stream,
                "line": line,
                "ts": time.time(),
            }
            self._emit(topics.LOGS, event)
            if not self._log.closed:
                self._log.write(line + "\n")
            data = (line + "\n").encode("utf-8")
            self._tail.append(data)
            self._tail_bytes += len(data)
            while len(self._tail) > 1 and self._tail_bytes - len(self._tail[0]) >= self._max:
                self._tail_bytes -= len(self._tail.popleft())

    def pump(self, stream: str, pipe: IO[bytes]) -> None:
        """Reader-thread body: emit every line of ``pipe`` until EOF."""
        with pipe:
            for raw in _lines(pipe):
                line = raw.decode("utf-8", errors="replace").removesuffix("\n")
                self.emit(stream, line.removesuffix("\r"))

    def tail(self) -> str:
        """The last ``max_output_bytes`` of the combined output."""
        with self._lock:
            data = b"".join(self._tail)[-self._max :] if self._max > 0 else b""
        return data.decode("utf-8", errors="replace")

    def close(self) -> None:
        """Close ``output.log``; late lines still reach the publisher and the tail."""
        with self._lock:
            self._log.close()


def _lines(pipe: IO[bytes]) -> Iterator[bytes]:
    """Lines of ``pipe``, each cut at :data:`MAX_LINE_BYTES`, in bounded memory."""
    while chunk := pipe.readline(MAX_LINE_BYTES):
        rest = chunk
        while len(rest) == MAX_LINE_BYTES and not rest.endswith(b"\n"):
            rest = pipe.readline(MAX_LINE_BYTES)  # drop the remainder of an overlong line
        yield chunk


def _wait(task: RunningTask, proc: subprocess.Popen[bytes], output: _Output) -> int:
    """Stream the output until the child exits, clean up what it left, reap it.

    A job's leftover background processes are killed with it, as a batch
    system would: they would hold the pipes open (so the output never ends)
    and the worker's resources. The child is waited for without being reaped
    first, so its pid, which is the group id, stays reserved while we signal.
    """
    assert proc.stdout is not None and proc.stderr is not None
    readers = [
        threading.Thread(
            target=output.pump,
            args=(name, pipe),
            name=f"stratalab-{task.job_id}-{name}",
            daemon=True,
        )
        for name, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr))
    ]
    for reader in readers:
        reader.start()
    if hasattr(os, "waitid"):
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        task.cpu_ms = exited_cpu_ms(proc.pid)
        with _LOCK:
            _killpg(proc.pid, signal.SIGTERM)
        _join(readers, KILL_GRACE_S)
        with _LOCK:
            if any(r.is_alive() for r in readers):
                _killpg(proc.pid, signal.SIGKILL)
            task.reaped = True
    exit_code = proc.wait()
    _join(readers, KILL_GRACE_S)
    if any(r.is_alive() for r in readers):
        logger.warning("output of job %s is still open after exit; not waiting", task.job_id)
    return exit_code


def _result(
    task: RunningTask,
    exit_code: int,
    *,
    address: str | None,
    workdir: Path,
    output: _Output,
    started_at: float,
) -> dict[str, Any]:
    with _LOCK:
        cancelled = task.cancelled
    return {
        "job_id": task.job_id,
        "attempt": task.attempt,
        "exit_code": exit_code,
        "cancelled": cancelled,
        "worker": address,
        "workdir": str(workdir),
        "output_tail": output.tail(),
        "started_at": started_at,
        "ended_at": time.time(),
        "lines": output.lines,
        "cpu_ms": task.cpu_ms,
        "gpu_ms": None,
        "energy_j": task.energy_j,
    }


def _signal_tree(pid: int, sig: int) -> list[psutil.Process]:
    """Send ``sig`` to ``pid``'s process group and descendants; return them all.

    Call with ``_LOCK`` held and the child not reaped. Descendants are listed
    before signalling because a dead parent's children are re-parented away.
    """
    try:
        leader = psutil.Process(pid)
        procs = [leader, *leader.children(recursive=True)]
    except psutil.Error:
        procs = []
    _killpg(pid, sig)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)  # psutil refuses if the pid was reused
    return procs


def _escalate(task: RunningTask, procs: list[psutil.Process]) -> None:
    """SIGKILL whatever of a cancelled tree outlives the grace period."""
    deadline = time.monotonic() + KILL_GRACE_S
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in procs):
            return
        time.sleep(0.05)
    with _LOCK:
        if task.proc is not None and not task.reaped:
            _killpg(task.proc.pid, signal.SIGKILL)
    for proc in procs:
        if _alive(proc):
            with contextlib.suppress(psutil.Error):
                proc.kill()
    logger.warning("job %s ignored SIGTERM; sent SIGKILL", task.job_id)


def _alive(proc: psutil.Process) -> bool:
    """Whether ``proc`` still runs; a zombie has exited and only awaits its parent."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _join(threads: list[threading.Thread], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
