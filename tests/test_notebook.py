"""notebooks/chapter05.ipynb runs top to bottom, and it never quotes "The Verdict".

The notebook is executed with nbclient in a Jupyter kernel (``python3``, the interpreter
running the tests), as a reader would run it. The kernel inherits this process's
environment, so under ``PYTHONPATH=tests/fake_cupy TINYGPT_BACKEND=cupy`` it runs on the
fake CuPy too. The story is someone else's writing: neither the committed notebook (its
text and saved outputs) nor a fresh run may contain 8 consecutive words of it.
"""

import base64
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO_ROOT / "notebooks" / "chapter05.ipynb"
CELL_TIMEOUT_S = 600  # the training cell takes a few minutes on a CPU (167 s saved)
RUN_LENGTH = 8  # this many consecutive words of the story count as a quote

nbformat = pytest.importorskip("nbformat", reason="pip install -e '.[test]' (nbformat)")
nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[test]' (nbclient)")


def _read_notebook():
    return nbformat.read(NOTEBOOK, as_version=4)


@pytest.fixture(scope="module")
def executed_notebook(verdict_path):
    """The notebook after a fresh run, with the story found through TINYGPT_DATA."""
    pytest.importorskip("ipykernel", reason="pip install -e '.[test]' (ipykernel)")
    notebook = _read_notebook()
    client = nbclient.NotebookClient(
        notebook, kernel_name="python3", timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(REPO_ROOT)}},
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TINYGPT_DATA", str(verdict_path.parent))
        env.delenv("MPLBACKEND", raising=False)  # the kernel's default: inline figures
        try:
            client.execute()
        except nbclient.exceptions.CellExecutionError as err:
            pytest.fail(f"a cell of {NOTEBOOK.name} failed:\n{err}")
    return notebook


def _texts(notebook):
    """(where, text) for every cell's source and every text output (images left out)."""
    for i, cell in enumerate(notebook.cells):
        yield f"cell {i} ({cell.cell_type}) source", cell.source
        for j, output in enumerate(cell.get("outputs", [])):
            where = f"cell {i} output {j}"
            if output.output_type == "stream":
                yield where, output.text
            elif output.output_type == "error":
                yield where, "\n".join(output.traceback)
            else:
                for mime, value in output.get("data", {}).items():
                    if mime.startswith("text/") or mime.endswith("json"):
                        yield f"{where} ({mime})", value if isinstance(value, str) else str(value)


def _word_runs(text):
    words = text.split()
    return {tuple(words[i:i + RUN_LENGTH]) for i in range(len(words) - RUN_LENGTH + 1)}


def _quotes(notebook, verdict_text):
    """Where the notebook shares runs of RUN_LENGTH words with the story, and how many
    (the runs themselves are not reported, so a failure does not print the story)."""
    story = _word_runs(verdict_text)
    found = []
    for where, text in _texts(notebook):
        shared = len(_word_runs(text) & story)
        if shared:
            found.append(f"{where}: {shared} run(s) of {RUN_LENGTH} words")
    return found


def test_notebook_runs_without_errors(executed_notebook):
    code_cells = [c for c in executed_notebook.cells if c.cell_type == "code"]
    assert code_cells
    for i, cell in enumerate(executed_notebook.cells):
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"cell {i} raised {errors[0].ename}: {errors[0].evalue}"
        assert cell.execution_count is not None, f"cell {i} did not run"
    images = [o for c in code_cells for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, "no figure was shown inline (the loss plot of section 5.2)"


def test_saved_notebook_holds_its_outputs():
    """The committed file was executed top to bottom, so it reads on GitHub."""
    notebook = _read_notebook()
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code_cells]
    assert None not in counts, "the saved notebook has cells that never ran: execute and save it"
    assert counts == list(range(1, len(counts) + 1)), "the saved outputs are not from one run"
    assert not [o for c in code_cells for o in c.outputs if o.output_type == "error"]
    pngs = [o.data["image/png"] for c in code_cells for o in c.outputs
            if "image/png" in o.get("data", {})]
    assert pngs and all(base64.b64decode(p)[:4] == b"\x89PNG" for p in pngs)
    assert NOTEBOOK.stat().st_size < 500_000, "keep the saved outputs small"


def test_saved_notebook_quotes_no_verdict(verdict_text):
    found = _quotes(_read_notebook(), verdict_text)
    assert not found, f"{NOTEBOOK.name} quotes The Verdict: " + "; ".join(found)


def test_executed_notebook_quotes_no_verdict(executed_notebook, verdict_text):
    found = _quotes(executed_notebook, verdict_text)
    assert not found, "a fresh run of the notebook quotes The Verdict: " + "; ".join(found)


def test_quote_check_finds_a_quote(verdict_text):
    """The check itself: a stream output holding 8 words of the story (built here, never
    stored) is caught, and 7 words are not."""
    words = verdict_text.split()
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "print(sample)",
        outputs=[nbformat.v4.new_output("stream", name="stdout",
                                         text="sample: " + " ".join(words[500:508]) + "\n")],
    )])
    assert _quotes(notebook, verdict_text) == ["cell 0 output 0: 1 run(s) of 8 words"]
    notebook.cells[0].outputs[0].text = "sample: " + " ".join(words[500:507]) + "\n"
    assert _quotes(notebook, verdict_text) == []


def test_no_tracked_file_quotes_the_verdict(verdict_text):
    """The story is someone else's writing: no file of the repository (the README's demo
    output included) may hold RUN_LENGTH consecutive words of it."""
    import subprocess

    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    story = _word_runs(verdict_text)
    found = []
    for name in filter(None, listed.stdout.decode("utf-8").split("\0")):
        path = REPO_ROOT / name
        if not path.is_file() or path.stat().st_size > 5_000_000:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # binary: fixtures, images
            continue
        shared = len(_word_runs(text) & story)
        if shared:
            found.append(f"{name}: {shared} run(s) of {RUN_LENGTH} words")
    assert not found, "tracked files quote The Verdict: " + "; ".join(found)
