"""A quick fixed-seed run of tools/fuzz_alias.py: random programs of views, in-place
changes and backward on tinygpt and on torch read the same after every step (values,
dtype, shape, requires_grad, .grad) and raise at the same step with torch's error class;
never a silent mismatch or a raw error. Then hand-written programs, one per class of
failure the fuzzer found, and checks of the fuzzer itself (torch against torch agrees;
NaN equals NaN; a dtype, shape or step difference is a failure).
``python tools/fuzz_alias.py --cases 2000`` is the full run."""

import numpy as np
import pytest

from ..helpers.tools import load_tool

pytest.importorskip("torch")

fuzz_alias = load_tool("fuzz_alias")


def _report(failures):
    return "\n\n".join(f"case {f['case']}: {f['outcome']}: {f['detail'][:300]}\n{f['program']}"
                       for f in failures[:10]) + f"\n\n({len(failures)} failures)"


def _totals(counts):
    return {o: sum(c[o] for c in counts.values()) for o in fuzz_alias.OUTCOMES}


def test_fuzz_alias_no_silent_mismatch_no_raw_error():
    counts, failures, _, _ = fuzz_alias.fuzz(300, seed=0)
    assert not failures, _report(failures)
    total = _totals(counts)
    assert sum(total.values()) == 300
    assert total["same numbers"] > 120 and total["same error"] > 40  # it did both


# --- hand-written programs: one per class of failure seen, what torch does in the comment

PROGRAMS = {
    "detach-aliases": """
# detach() aliases its base: x1 changes
x1 = lib.tensor([1.0, 2.0], requires_grad=True)
x1.detach().add_(3)
""",
    "base-change-seen-by-view": """
# a change of the base is seen by its views: v2 changes
x1 = lib.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
v2 = x1.reshape(-1)
with lib.no_grad():
    x1.fill_(2.0)
""",
    "view-change-seen-by-base": """
# a change through a view is seen by the base: x1 changes
x1 = lib.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
v2 = x1.t()
with lib.no_grad():
    v2[0].mul_(10)
""",
    "int-index-is-0d-view": """
# x[i] of a 1-d tensor is a 0-d view, not a copy: torch's saved-tensor error
x1 = lib.tensor([1.0, 2.0], requires_grad=True)
y2 = x1.exp()
v3 = y2[0]
v3.mul_(2)
loss = y2.sum()
loss.backward()
""",
    "augmented-in-place": """
# augmented assignment is in place: the same object, its dtype kept, seen by v2
x1 = lib.tensor([1.0, 2.0], requires_grad=True)
v2 = x1[:1]
with lib.no_grad():
    x1 += 1
    x1 *= lib.tensor([2.0, 3.0], dtype=lib.float64)
""",
    "no-grad-view-requires-grad": """
# a view made under no_grad of a tensor requiring grad requires grad
x1 = lib.tensor([1.0, 2.0], requires_grad=True)
with lib.no_grad():
    v2 = x1.unsqueeze(0)
""",
    "no-op-view-new-tensor": """
# a view that changes nothing is still a new tensor: v2.grad is None
x1 = lib.tensor([[1.0, 2.0]], requires_grad=True)
v2 = x1.squeeze(1)
v3 = x1.t().t()
loss = x1.sum()
loss.backward()
""",
    "data-shares-storage-not-version": """
# .data shares storage, not the version counter: no error, the new values
x1 = lib.tensor([1.0, 2.0], requires_grad=True)
y2 = x1 * x1
x1.data.add_(1)
loss = y2.sum()
loss.backward()
""",
    "copyslices-gradients": """
# in-place changes of views in a graph give CopySlices' gradients
x1 = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
x2 = lib.tensor(5.0, requires_grad=True)
y3 = x1 * 1
y3[1:].mul_(3)
y3[0] = x2 * 2
loss = (y3 * lib.tensor([1.0, 2.0, 4.0])).sum()
loss.backward()
""",
    "split-output-modified": """
# an output of split modified in place: torch's error
x1 = lib.tensor([1.0, 2.0], requires_grad=True)
y2 = x1 * 2
v3, v4 = y2.split(1)
v3.mul_(2)
""",
    "no-grad-view-modified": """
# a view made under no_grad modified with grad on: torch's error
x1 = lib.tensor([1.0, 2.0], requires_grad=True)
y2 = x1 * 2
with lib.no_grad():
    v3 = y2[0]
v3.mul_(2)
""",
    "expanded-write": """
# a write into an expanded tensor: torch's error
x1 = lib.tensor([[1.0, 2.0]])
x1.expand(3, 2).add_(1)
""",
    "partial-overlap": """
# an operand partly overlapping the target: torch's error
x1 = lib.tensor([1.0, 2.0, 3.0])
x1[1:] += x1[:2]
""",
    "float-into-int64": """
# a float written into an int64 tensor: torch's error
x1 = lib.tensor([1, 2])
x1 += 0.5
""",
    "setitem-shape": """
# x[i] = v of a shape that does not fit: torch's RuntimeError
x1 = lib.tensor([[1.0, 2.0, 3.0]])
x1[0] = lib.tensor([1.0, 2.0])
""",
    "leaf-in-place": """
# a leaf requiring grad changed in place: torch's error
x1 = lib.tensor([1.0, 2.0], requires_grad=True)
x1[0] = 3.0
""",
}


@pytest.mark.parametrize("name", PROGRAMS)
def test_aliasing_program_as_torch(name):
    program = fuzz_alias.Program.of(PROGRAMS[name])
    record = fuzz_alias.check(program)
    assert record["outcome"] in ("same numbers", "same error"), (
        f"{record['outcome']}: {record['detail']}\n{record['program']}")


# --- the fuzzer itself ------------------------------------------------------------------


def test_fuzzer_reports_nothing_when_torch_runs_both_sides():
    counts, failures, others, _ = fuzz_alias.fuzz(300, seed=1, ours=fuzz_alias.torch,
                                                  versions=True)
    assert not failures and not others, _report(failures + others)
    total = _totals(counts)
    assert total["clear refusal"] == 0 and total["same numbers"] > 120


@pytest.mark.parametrize("name", PROGRAMS)
def test_hand_written_programs_agree_on_torch(name):
    program = fuzz_alias.Program.of(PROGRAMS[name])
    assert fuzz_alias.classify(program, ours=fuzz_alias.torch)[0] in ("same numbers",
                                                                       "same error")


def _run(value, stop=1, exc=None, label="x1"):
    return fuzz_alias.Run([(0, label, value)], stop, exc)


def test_comparison_nan_dtype_shape_and_steps():
    compare = fuzz_alias.compare
    nan = np.array([1.0, np.nan], np.float32)
    assert compare(_run(nan), _run(nan.copy()))[0] == "same numbers"
    assert compare(_run(nan), _run(np.array([1.0, 2.0], np.float32)))[0] == "silent mismatch"
    assert compare(_run(np.array([1.0, 2.0], np.float32)), _run(nan))[0] == "silent mismatch"
    assert compare(_run(nan), _run(nan.astype(np.float64)))[0] == "silent mismatch"
    assert compare(_run(nan), _run(nan[None]))[0] == "silent mismatch"
    assert compare(_run(None), _run(nan))[0] == "silent mismatch"  # .grad None vs a tensor
    flag = np.array(True)
    assert compare(_run(flag), _run(np.array(False)))[0] == "silent mismatch"
    error = RuntimeError("one of the variables needed for gradient computation has been "
                         "modified by an inplace operation")
    # torch raised at step 0; tinygpt too: the same error; tinygpt computed on: a mismatch
    assert compare(_run(None, 0, error), _run(None, 0, RuntimeError("x")))[0] == "same error"
    assert compare(_run(None, 0, error), _run(nan, 1))[0] == "silent mismatch"
    # tinygpt raised where torch computed: a raw error (a NotImplementedError: a refusal)
    assert compare(_run(nan), _run(None, 0, ValueError("x")))[0] == "raw error"
    assert compare(_run(nan), _run(None, 0, NotImplementedError("x")))[0] == "clear refusal"
    # what was read before the step that raised must agree too
    assert compare(fuzz_alias.Run([(0, "x1", nan)], 1, error),
                   fuzz_alias.Run([(0, "x1", nan[:1])], 1, error))[0] == "silent mismatch"


def test_a_program_reads_views_and_grads_after_each_step():
    program = fuzz_alias.Program.of("""
x1 = lib.tensor([1.0, 2.0], requires_grad=True)
v2 = x1[:1]
loss = (x1 * x1).sum()
loss.backward()
""")
    run = fuzz_alias.run(fuzz_alias.torch, program)
    assert run.stop == 4 and run.exc is None
    last = {label: value for step, label, value in run.trace if step == 3}
    np.testing.assert_array_equal(last["x1.grad"], [2.0, 4.0])
    assert last["v2.grad"] is None and last["v2.requires_grad"]
    assert {label for step, label, _ in run.trace if step == 0} == {
        "x1", "x1.requires_grad", "x1.grad"}


class _Off:
    """torch, except that ``tensor([3.0])`` holds 4.0: a library with one bug."""

    def __getattr__(self, name):
        return getattr(fuzz_alias.torch, name)

    def tensor(self, data, **kwargs):
        return fuzz_alias.torch.tensor([4.0] if data == [3.0] else data, **kwargs)


def test_shrink_keeps_the_failure_and_drops_the_rest():
    program = fuzz_alias.Program.of("""
x1 = lib.tensor([1.0, 2.0], requires_grad=True)
x2 = lib.tensor([3.0], requires_grad=True)
y3 = x2 * 2
v4 = x1[1:]
loss = y3.sum() + v4.sum()
loss.backward()
""", observe=False)
    off = _Off()
    outcome, step, detail = fuzz_alias.classify(program, ours=off)
    assert (outcome, step) == ("silent mismatch", 5) and detail.startswith("x2:")
    small = fuzz_alias.shrink(program, ours=off)
    assert [s.code for s in small.steps] == ["x2 = lib.tensor([3.0], requires_grad=True)"]
    assert small.observe and fuzz_alias.classify(small, ours=off)[0] == "silent mismatch"
