"""An editor follows the Tensor's methods to their code: static analysis (jedi, the engine
behind most Python editors' go-to-definition) finds each method's ``def`` line, which it
cannot when a class is assembled at import time."""

from pathlib import Path

import pytest

jedi = pytest.importorskip("jedi")

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("sum", "view", "__matmul__", "masked_fill_", "backward", "add_", "__iadd__",
           "reshape", "softmax", "requires_grad")


@pytest.mark.parametrize("name", METHODS)
def test_go_to_definition_finds_the_tensor_methods_def_line(name):
    source = f"from tinygpt import Tensor\nTensor.{name}\n"
    script = jedi.Script(source, path=ROOT / "navigation_probe.py",
                         project=jedi.Project(ROOT))
    found = script.goto(2, len("Tensor.") + 1, follow_imports=True)
    assert found, f"go-to-definition found nothing for Tensor.{name}"
    where = found[0]
    assert where.module_path is not None and where.module_path.parent == ROOT / "tinygpt", (
        f"Tensor.{name} resolved to {where.module_path}")
    line = where.get_line_code().strip()
    assert line.startswith((f"def {name}(", "@property")) or f"{name} =" in line or (
        line.startswith("__") and name in line), f"Tensor.{name} -> {line!r}"
