"""A quick fixed-seed run of tools/fuzz_api.py: random torch-named calls on
tinygpt and on torch end in the same numbers, torch's error class, or a clear refusal;
never a silent mismatch or a raw error. ``python tools/fuzz_api.py --cases 2000`` is the
full run."""

import numpy as np
import pytest

from ..helpers.tools import load_tool

pytest.importorskip("torch")

fuzz_api = load_tool("fuzz_api")


def _report(failures):
    return "\n".join(f"case {f['case']} ({f['family']}): {f['call']} -> {f['outcome']}: "
                     f"{f['detail'][:300]}" for f in failures)


def test_fuzz_api_no_silent_mismatch_no_raw_error():
    counts, failures, _, _ = fuzz_api.fuzz(150, seed=0)
    assert not failures, _report(failures)
    total = {o: sum(c[o] for c in counts.values()) for o in fuzz_api.OUTCOMES}
    assert sum(total.values()) == 150
    assert total["same numbers"] > 60 and total["same error"] > 15  # it did both


def test_fuzzer_sees_a_silent_mismatch_and_a_raw_error():
    def wrong(lib):  # tinygpt's answer differs in one element
        x = lib.ones(3)
        return x if lib is fuzz_api.torch else x * lib.tensor(np.array([1.0, 1.0, 2.0],
                                                                        np.float32))

    assert fuzz_api.classify(wrong)[0] == "silent mismatch"

    def raw(lib):
        if lib is fuzz_api.torch:
            raise RuntimeError("Dimension out of range")
        return ().__getitem__(1)  # IndexError: tuple index out of range

    assert fuzz_api.classify(raw)[0] == "raw error"

    def refused(lib):
        if lib is fuzz_api.torch:
            return lib.ones(2)
        raise NotImplementedError("use the other function")

    assert fuzz_api.classify(refused)[0] == "clear refusal"
