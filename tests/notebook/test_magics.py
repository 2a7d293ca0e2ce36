"""``%load_ext stratalab`` magics through a real IPython shell and a real server."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from stratalab.launcher import ServerProcess
from stratalab.notebook import Client

CELL = (
    "import os, sys\n"
    "print('hello from', os.environ['STRATALAB_JOB_ID'])\n"
    "print('careful', file=sys.stderr)\n"
    "print(sum(range(10)))\n"
)


@pytest.fixture(scope="module")
def shell(server: ServerProcess) -> InteractiveShell:
    """An IPython shell with the extension loaded and connected to the test server."""
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "stratalab")
    with capture_output() as out:
        ip.run_line_magic("stratalab", f"connect {server.url} --api-key {server.info['admin_key']}")
    assert "connected" in out.stdout, out.stderr
    return ip


def test_status_prints_server_cluster_and_queue(shell: InteractiveShell, server: ServerProcess):
    with capture_output() as out:
        shell.run_line_magic("stratalab", "status")

    assert f"at {server.url}" in out.stdout
    assert server.info["dask_address"] in out.stdout
    assert "workers: 1 (1 active)" in out.stdout


def test_workers_and_jobs_show_dataframes(shell: InteractiveShell, client: Client):
    job_id = client.jobs.submit("for-the-table", "print(1)")["job_id"]
    client.jobs.wait(job_id, timeout=90)
    worker_id = client.workers.records()[0]["id"]

    with capture_output() as workers:
        shell.run_line_magic("stratalab", "workers")
    with capture_output() as jobs:
        shell.run_line_magic("stratalab", "jobs --status completed --limit 5")

    assert worker_id in workers.outputs[0].data["text/plain"]
    table = jobs.outputs[0].data["text/html"]
    assert job_id in table and "COMPLETED" in table and "FAILED" not in table


def test_run_cell_streams_output_and_final_status(shell: InteractiveShell, client: Client):
    with capture_output() as out:
        shell.run_cell_magic("stratalab", "run --name magic-cell --cpu 1", CELL)

    first = out.stdout.splitlines()[0]
    job_id = first.split()[0]
    assert first.endswith("streaming its output")
    assert f"hello from {job_id}" in out.stdout and "\n45\n" in out.stdout
    assert "careful" in out.stderr and "careful" not in out.stdout
    assert out.stdout.rstrip().endswith(f"{job_id} COMPLETED (exit code 0)")
    job = client.jobs.get(job_id)
    assert job["name"] == "magic-cell" and job["script"] == CELL


def test_run_cell_reports_a_failure(shell: InteractiveShell):
    with capture_output() as out:
        shell.run_cell_magic(
            "stratalab",
            "run --name broken --max-retries 0",
            "print('about to fail')\nraise SystemExit(4)",
        )

    assert "about to fail" in out.stdout
    assert "FAILED (exit code 4)" in out.stdout


def test_watch_follows_states_and_logs_prints_output(shell: InteractiveShell, client: Client):
    job_id = client.jobs.submit("watched", "print('watched line')")["job_id"]

    with capture_output() as watched:
        shell.run_line_magic("stratalab", f"watch {job_id}")
    with capture_output() as logs:
        shell.run_line_magic("stratalab", f"logs {job_id} --tail 10")

    transitions = [line.split("->")[1].split()[0] for line in watched.stdout.splitlines()[:-1]]
    assert transitions == ["PENDING", "QUEUED", "SCHEDULING", "PREPARING", "RUNNING", "COMPLETED"]
    assert watched.stdout.splitlines()[-1] == f"{job_id} COMPLETED (exit code 0)"
    assert "[stdout] watched line" in logs.stdout


def test_errors_are_one_clear_line_not_a_traceback(shell: InteractiveShell):
    with capture_output() as out:
        result = shell.run_line_magic("stratalab", "watch job_missing")

    assert result is None
    assert out.stderr.startswith("StrataLab: NOT_FOUND: no job job_missing (trace id ")
    assert "Traceback" not in out.stderr + out.stdout
    with pytest.raises(UsageError, match="unknown command 'bogus'"):
        shell.run_line_magic("stratalab", "bogus")
    with pytest.raises(UsageError):
        shell.run_cell_magic("stratalab", "status", "print(1)")
