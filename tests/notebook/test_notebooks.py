"""``notebooks/train_and_serve.ipynb`` and ``notebooks/monitoring.ipynb`` run end to end.

As with the quickstart (``test_quickstart.py``), each notebook runs top to bottom in a real
kernel that finds the package's shared server through the runtime file the server wrote, with
nothing typed. Every cell asserts what it shows, so an error or a wrong figure in any cell
fails the run (nbclient raises ``CellExecutionError`` naming the cell).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from stratalab.launcher import ServerProcess

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def streamed_text(nb: nbformat.NotebookNode) -> str:
    """Everything the code cells printed."""
    return "".join(
        o.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for o in cell.outputs
        if o.output_type == "stream"
    )


#: lines each notebook prints when its cells did what they claim.
PRINTED = {
    "train_and_serve.ipynb": [
        "paused after round",
        "accuracy on 179 rows",
        "agrees with served on",
        "rounds, loss",
    ],
    "monitoring.ipynb": [
        "COMPLETED (exit code 0)",
        "[stdout] tick 3",
        "stratalab_workers_active 1.0",
    ],
}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", sorted(PRINTED))
def test_notebook_runs_against_a_real_server(
    name: str,
    server: ServerProcess,
    server_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    for var in ("STRATALAB_URL", "STRATALAB_API_KEY", "STRATALAB_TOKEN", "STRATALAB_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(server_root / "runtime"))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)

    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = streamed_text(nb)
    for line in PRINTED[name]:
        assert line in text, (line, text[-2000:])
