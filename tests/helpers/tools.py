"""Load a script (tools/, demos/) as a module, so its functions can be tested."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools"


def load_script(path, name=None):
    """The Python file ``path`` as a module (tools/ and demos/ are not packages)."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_tool(name):
    """tools/<name>.py as a module."""
    return load_script(TOOLS / f"{name}.py", name)
