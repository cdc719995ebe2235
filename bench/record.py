"""Stored bench results: every figure the docs quote comes from one of these files.

``store(name, figures)`` writes ``bench/results/<name>.json`` with the figures and their
provenance: the date, the commit (``-dirty`` when the tree had uncommitted changes), the
machine (CPU, cores, memory, library versions, how busy it was) and the exact command.
A later run of the same bench replaces the file; git keeps the earlier ones.
``tests/test_docs_figures.py`` checks every figure in ``docs/performance.md`` against them.
"""

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_busy_fraction  # noqa: E402  (bench/machine.py)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def _git(*args):
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def commit():
    """HEAD's hash, with ``-dirty`` when tracked files differ from it."""
    head = _git("rev-parse", "HEAD")
    if head is None:
        return None
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return head + ("-dirty" if dirty else "")


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib():
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
        return round(kib / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None


def _versions():
    versions = {"python": platform.python_version()}
    for name in ("numpy", "torch", "cupy"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = module.__version__
    return versions


def machine(busy=None):
    """What the figures were measured on, and how busy it was just before."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "versions": _versions(),
        "load_average_1_5_15": [round(x, 2) for x in load] if load else None,
        "cpu_busy_before": round(busy, 3) if busy is not None else None,
    }


def store(name, figures, busy=None, command=None, folder=RESULTS):
    """Write ``<folder>/<name>.json`` (default ``bench/results/``) and return its path.
    ``busy`` is the share of the CPU other work used just before the run
    (``machine.cpu_busy_fraction()``)."""
    if busy is None:
        busy = cpu_busy_fraction(0.5)
    result = {
        "script": Path(sys.argv[0]).resolve().relative_to(REPO).as_posix()
        if Path(sys.argv[0]).resolve().is_relative_to(REPO) else sys.argv[0],
        "command": command or " ".join(["python", *sys.argv]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "machine": machine(busy),
        "figures": figures,
    }
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)
    print(f"stored {path.relative_to(REPO)}")
    return path
