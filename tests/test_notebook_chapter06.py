"""notebooks/chapter06.ipynb runs top to bottom on its own toy dataset, and learns it.

Executed with nbclient in a Jupyter kernel, as a reader would run it; the notebook
writes its CSV files to a temporary folder and removes them at the end.
"""

import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO_ROOT / "notebooks" / "chapter06.ipynb"

nbformat = pytest.importorskip("nbformat", reason="pip install -e '.[test]' (nbformat)")
nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[test]' (nbclient)")


def _outputs(notebook):
    return "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))


def test_chapter06_notebook_runs_and_classifies():
    pytest.importorskip("ipykernel", reason="pip install -e '.[test]' (ipykernel)")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, kernel_name="python3", timeout=300,
                            resources={"metadata": {"path": str(REPO_ROOT)}}).execute()
    text = _outputs(notebook)
    assert "Input batch dimensions: torch.Size([8, " in text
    accuracy = int(re.search(r"test accuracy: (\d+)%", text).group(1))
    assert accuracy >= 90, f"the toy task should be learned, test accuracy {accuracy}%"
    assert text.rstrip().endswith("spam\nnot spam")


def test_saved_notebook_shows_a_run():
    text = _outputs(nbformat.read(NOTEBOOK, as_version=4))
    assert "Training accuracy" in text and "test accuracy" in text
