"""A quick fixed-seed run of tools/fuzz_files.py: damaged and hostile model
files, checkpoints, tinygpt.save files and TensorFlow checkpoints end in a clean error
naming the file or load what the file holds; no traceback, no silent wrong result, nothing
over the memory or time limit. ``python tools/fuzz_files.py --cases 2000`` is the full run.
"""

import os
import time

import numpy as np
import pytest

from ..helpers.tools import load_tool

if not hasattr(os, "fork"):
    pytest.skip("the fuzzer forks a child per case", allow_module_level=True)

fuzz_files = load_tool("fuzz_files")

def _report(failures):
    return "\n".join(f"case {f['case']} ({f['kind']}): {f['mutation'][:120]} -> "
                     f"{f['outcome']}: {f['detail'][:400]}" for f in failures)


def test_fuzz_safetensors_files_no_traceback_no_silent_wrong_result():
    started = time.perf_counter()
    counts, failures, _, slowest = fuzz_files.fuzz(
        240, seed=0, kinds=("model", "checkpoint", "object"), memory_mb=1024, seconds=20)
    assert not failures, _report(failures)
    total = {o: sum(c[o] for c in counts.values()) for o in fuzz_files.OUTCOMES}
    assert sum(total.values()) == 240
    assert total["clean error"] > 150 and total["loaded, identical"] > 0  # it did mutate
    assert slowest[0] < 5 and time.perf_counter() - started < 60


def test_fuzz_tf_checkpoints_no_traceback_no_silent_wrong_result():
    counts, failures, _, _ = fuzz_files.fuzz(
        120, seed=0, kinds=("tf", "tf_fixture"), memory_mb=1024, seconds=20)
    assert not failures, _report(failures)
    assert sum(sum(c.values()) for c in counts.values()) == 120


def test_fuzzer_sees_memory_and_time_overruns():
    def allocate():
        np.ones(1 << 30)  # 8 GB
        return "loaded, identical", ""

    outcome, _, _ = fuzz_files.run_forked(allocate, 256 << 20, 20)
    assert outcome == "over memory"
    outcome, _, took = fuzz_files.run_forked(lambda: time.sleep(30), 256 << 20, 1)
    assert outcome == "over time" and took < 15


def test_fuzzer_sees_a_silent_wrong_result(tmp_path):
    # a loader that ignores the damage: the canon of what it returns differs
    path = tmp_path / "m.safetensors"
    paths, canon, _ = fuzz_files.make_originals(str(tmp_path / "o"))["model"]
    wrong = dict(canon, config=dict(canon["config"], n_heads=4))
    assert fuzz_files.classify("model", paths, wrong, None, None, None, False)[0] == (
        "loaded, different")
    assert fuzz_files.classify("model", [str(path)], canon, None, None, None, False)[0] == (
        "clean error")  # FileNotFoundError naming the file
