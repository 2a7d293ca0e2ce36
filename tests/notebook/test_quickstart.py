"""``notebooks/quickstart.ipynb`` runs top to bottom in a real kernel against a real server.

The kernel finds the server the way a kernel of a StrataLab-enabled Jupyter
server does, with nothing typed: here through the runtime file the server
wrote, in the Jupyter runtime dir the kernel inherits.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from stratalab.launcher import ServerProcess

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "quickstart.ipynb"


@pytest.mark.timeout(240)
def test_quickstart_notebook_runs(
    server: ServerProcess, server_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    for name in ("STRATALAB_URL", "STRATALAB_API_KEY", "STRATALAB_TOKEN", "STRATALAB_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(server_root / "runtime"))
    nb = nbformat.read(NOTEBOOK, as_version=4)

    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "this cell ran on" in text and "COMPLETED (exit code 0)" in text
    assert "-> COMPLETED" in text
