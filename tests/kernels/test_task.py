"""Tests for ``stratalab.kernels.task``: real subprocesses, real Dask workers, no mocks."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from distributed import Client

from stratalab.kernels import gpu, topics
from stratalab.kernels.task import kill_job, run_task
from stratalab.testing import local_cluster

pytestmark = pytest.mark.timeout(60)

Events = list[tuple[str, dict[str, Any]]]


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``predicate`` until it holds; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.05)


def spec(tmp_path: Path, job_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "attempt": 1,
        "entrypoint": None,
        "script": None,
        "args": [],
        "env": {},
        "workdir_root": str(tmp_path / "jobs"),
        **fields,
    }


def logs(events: Events) -> list[dict[str, Any]]:
    return [event for topic, event in events if topic == topics.LOGS]


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with (
        local_cluster(2, memory_limit="auto") as cluster,
        Client(cluster) as c,
    ):
        yield c


def test_script_streams_lines_and_returns_exit_code(tmp_path: Path) -> None:
    events: Events = []
    script = (
        "import os, sys\n"
        "print('one', sys.argv[1:])\n"
        "print('oops', file=sys.stderr)\n"
        "print('two', os.environ['STRATALAB_JOB_ID'], os.environ['STRATALAB_ATTEMPT'])\n"
        "print('three', os.environ['GREETING'])\n"
        "sys.exit(3)\n"
    )

    result = run_task(
        spec(tmp_path, "job_script", script=script, args=["a", "b c"], env={"GREETING": "hi"}),
        publish=lambda topic, event: events.append((topic, event)),
    )

    assert result["exit_code"] == 3
    assert result["cancelled"] is False
    assert result["lines"] == 4
    workdir = Path(result["workdir"])
    assert workdir == tmp_path / "jobs" / "job_script" / "attempt-1"
    lines = logs(events)
    assert [e["seq"] for e in lines] == [0, 1, 2, 3]
    stdout = [e["line"] for e in lines if e["stream"] == "stdout"]
    assert stdout == ["one ['a', 'b c']", "two job_script 1", "three hi"]
    assert [e["line"] for e in lines if e["stream"] == "stderr"] == ["oops"]
    assert all(e["job_id"] == "job_script" and e["attempt"] == 1 for e in lines)
    started = [e for topic, e in events if topic == topics.LIFECYCLE]
    assert len(started) == 1
    assert started[0]["event"] == "started"
    assert started[0]["workdir"] == str(workdir)
    assert (workdir / "output.log").read_text().splitlines() == [e["line"] for e in lines]
    assert (workdir / "main.py").read_text() == script
    assert "three hi" in result["output_tail"]


def test_entrypoint_command_line(tmp_path: Path) -> None:
    events: Events = []
    entrypoint = f"{sys.executable} -c \"import sys; print('args', sys.argv[1:])\""

    result = run_task(
        spec(tmp_path, "job_cmd", entrypoint=entrypoint, args=["x"]),
        publish=lambda topic, event: events.append((topic, event)),
    )

    assert result["exit_code"] == 0
    assert [e["line"] for e in logs(events)] == ["args ['x']"]


def test_output_tail_is_bounded_and_long_lines_are_cut(tmp_path: Path) -> None:
    events: Events = []
    script = "print('x' * 100_000)\nfor i in range(1000):\n    print(f'line {i}')\n"

    result = run_task(
        spec(tmp_path, "job_long", script=script, max_output_bytes=100),
        publish=lambda topic, event: events.append((topic, event)),
    )

    lines = logs(events)
    assert len(lines) == 1001
    assert lines[0]["line"] == "x" * 16 * 1024
    assert lines[1]["line"] == "line 0"
    assert len(result["output_tail"].encode()) == 100
    assert result["output_tail"].endswith("line 999\n")


def test_missing_command_is_exit_127(tmp_path: Path) -> None:
    events: Events = []

    result = run_task(
        spec(tmp_path, "job_missing", entrypoint="no-such-command-stratalab --flag"),
        publish=lambda topic, event: events.append((topic, event)),
    )

    assert result["exit_code"] == 127
    assert result["cancelled"] is False
    [line] = logs(events)
    assert line["stream"] == "stderr"
    assert "no-such-command-stratalab" in line["line"]
    assert "No such file or directory" in line["line"]


def test_without_publisher_or_worker_events_are_dropped(tmp_path: Path) -> None:
    result = run_task(spec(tmp_path, "job_quiet", script="print('hello')"))

    assert result["exit_code"] == 0
    assert result["worker"] is None
    assert result["output_tail"] == "hello\n"


def test_failing_publisher_does_not_stall_the_job(tmp_path: Path) -> None:
    def publish(topic: str, event: dict[str, Any]) -> None:
        raise RuntimeError("subscriber gone")

    result = run_task(
        # 100 KB: more than a pipe buffer holds, so a dead reader would block the child.
        spec(tmp_path, "job_badpub", script="for i in range(1000):\n    print('x' * 99)\n"),
        publish=publish,
    )

    assert result["exit_code"] == 0
    assert result["lines"] == 1000


def test_unusable_workdir_root_falls_back(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    job_id = f"job_fallback_{tmp_path.name}"

    result = run_task(spec(tmp_path, job_id, script="print('ok')", workdir_root=str(blocker)))

    workdir = Path(result["workdir"])
    try:
        assert result["exit_code"] == 0
        assert workdir.parts[-3:] == ("stratalab-jobs", job_id, "attempt-1")
        assert (workdir / "output.log").read_text() == "ok\n"
    finally:
        shutil.rmtree(workdir.parent, ignore_errors=True)


def test_kill_job_when_nothing_runs_is_false() -> None:
    assert kill_job("job_not_here") is False


def test_logs_arrive_over_dask_events_in_order(client: Client, tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []
    lifecycle: list[dict[str, Any]] = []
    lock = threading.Lock()

    def on_log(event: tuple[float, dict[str, Any]]) -> None:
        with lock:
            if event[1]["job_id"] == "job_dask":
                received.append(event[1])

    client.subscribe_topic(topics.LOGS, on_log)
    client.subscribe_topic(topics.LIFECYCLE, lambda event: lifecycle.append(event[1]))
    try:
        script = (
            "import sys\n"
            "for i in range(50):\n"
            "    print(i, file=sys.stderr if i % 7 == 0 else None)\n"
        )
        future = client.submit(run_task, spec(tmp_path, "job_dask", script=script), pure=False)
        outcome = future.result(timeout=30)

        assert outcome["exit_code"] == 0
        assert outcome["lines"] == 50
        wait_for(lambda: len(received) == 50)
        with lock:
            assert [e["seq"] for e in received] == list(range(50))
            by_stream = {e["line"]: e["stream"] for e in received}
        assert sorted(int(line) for line in by_stream) == list(range(50))
        assert by_stream["14"] == "stderr"
        assert by_stream["15"] == "stdout"
        wait_for(lambda: any(e["job_id"] == "job_dask" for e in lifecycle))
        [started] = [e for e in lifecycle if e["job_id"] == "job_dask"]
        assert started["worker"] == outcome["worker"]
        assert started["worker"] in client.scheduler_info()["workers"]
    finally:
        client.unsubscribe_topic(topics.LOGS)
        client.unsubscribe_topic(topics.LIFECYCLE)


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie waiting to be reaped (a container's
    PID 1 may never reap the orphans re-parented to it)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_kill_job_kills_the_process_tree(client: Client, tmp_path: Path) -> None:
    pids: list[int] = []

    def on_log(event: tuple[float, dict[str, Any]]) -> None:
        msg = event[1]
        if msg["job_id"] == "job_cancel" and msg["line"].startswith("pids "):
            pids.extend(int(p) for p in msg["line"].split()[1:])

    script = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print('pids', os.getpid(), child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    client.subscribe_topic(topics.LOGS, on_log)
    try:
        address = sorted(client.scheduler_info()["workers"])[0]
        future = client.submit(
            run_task, spec(tmp_path, "job_cancel", script=script), workers=[address], pure=False
        )
        wait_for(lambda: len(pids) == 2)
        assert all(psutil.pid_exists(pid) for pid in pids)

        killed = client.run(kill_job, "job_cancel", workers=[address])

        assert killed == {address: True}
        outcome = future.result(timeout=30)
        assert outcome["cancelled"] is True
        assert outcome["exit_code"] != 0
        wait_for(lambda: all(_gone(pid) for pid in pids))
        assert client.run(kill_job, "job_cancel", workers=[address]) == {address: False}
    finally:
        client.unsubscribe_topic(topics.LOGS)


def test_detect_gpus_is_a_list() -> None:
    gpus = gpu.detect_gpus()

    assert isinstance(gpus, list)
    assert all({"index", "name", "memory_total_mb"} <= set(g) for g in gpus)
    info = gpu.worker_info()
    assert info["gpus"] == gpus
    assert isinstance(info["cuda_available"], bool)
