"""``tinygpt selftest``: the parity checks anyone can run, in seconds, with nothing but
the package.

What is checked (each a row of the printed table, with the worst error seen):

* every op in ``tinygpt.ops``: its backward against float64 central finite
  differences of its forward (``tinygpt.testing.check_gradient``, the checker the
  test suite uses: along one random direction over all inputs and along single
  elements, relative error <= 1e-6 at eps = 1e-6);
* training: a tiny GPT's loss on one fixed batch falls to under half its start
  in 30 AdamW steps, with every loss finite;
* the KV cache: its next-token logits equal the uncached forward's at every step,
  also once the window slides, and ``generate`` gives the same tokens with and
  without it (greedy and sampled);
* save/load: a model file and a training checkpoint give back bit-identical
  weights, logits, optimizer state and continued losses, and a flipped byte in a
  file is caught.

Comparisons go through ``tinygpt.testing.assert_close``, so a failure names the tensor,
max |diff| and the worst element. The comparison with the book's PyTorch model is the
test suite's (tests/test_parity_torch.py): PyTorch is a test dependency only.

``selftest()`` prints the table and returns True when nothing failed;
``run_checks()`` returns the rows.
"""

import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy

from ..backend import (
    check_available,
    get_rng_state,
    manual_seed,
    set_rng_state,
    widest_float,
)
from ..testing import GRAD_EPS, CheckFailed, assert_close, check_gradient, op_names

KV_CACHE_TOL = 1e-10  # float64 logits, cached against uncached (assert_close's tol)


@dataclass
class CheckResult:
    """One row of the table. ``error``: the worst error seen (None where not a number)."""

    group: str
    name: str
    status: str  # "PASS" or "FAIL"
    error: float = None
    note: str = ""
    seconds: float = 0.0

    @property
    def label(self):
        return f"{self.group:<10}{self.name}"


# ----------------------------------------------------------------------------------
# Gradients: one case per op of tinygpt.ops, checked by tinygpt.testing.check_gradient.


def _gradient_cases():
    """Op class name -> (fn, input arrays): small shapes where each op is smooth."""
    from .. import fused, ops
    from ..loss import cross_entropy

    r = numpy.random.default_rng(42)

    def n(*shape):
        return r.standard_normal(shape)

    def pos(*shape):
        return r.uniform(0.5, 2.0, size=shape)

    ids = numpy.array([[1, 3, 3, 0], [7, 7, 2, 1]])  # repeated ids accumulate
    targets = numpy.array([2, -100, 0, 6, 6, 1])  # one ignored row

    def cast_round_trip(x):  # through the widest float the backend has, and back
        wide = ops.Cast.apply(x, dtype=widest_float())
        return ops.Cast.apply(ops.Exp.apply(wide), dtype=numpy.float64)

    return {
        "Add": (lambda a, b: a + b, [n(2, 3, 1), n(4)]),  # with broadcasting
        "Sub": (lambda a, b: a - b, [n(3, 1), n(1, 4)]),
        "Mul": (lambda a, b: a * b, [n(2, 3), n(3)]),
        "Div": (lambda a, b: a / b, [n(3, 4), pos(4)]),
        "Neg": (lambda a: -a, [n(3, 2)]),
        "Exp": (lambda a: a.exp(), [n(3, 2)]),
        "Log": (lambda a: a.log(), [pos(3, 2)]),
        "Tanh": (lambda a: a.tanh(), [n(3, 2)]),
        "Sqrt": (lambda a: a.sqrt(), [pos(3, 2)]),
        "Cast": (cast_round_trip, [n(3, 2)]),
        "Pow": (lambda a: a ** 3, [n(3, 2)]),
        "Abs": (lambda a: a.abs(), [n(3, 2)]),
        "Sigmoid": (lambda a: ops.Sigmoid.apply(a), [n(3, 2)]),
        "FusedSiLU": (lambda a: fused.FusedSiLU.apply(a), [n(3, 2)]),
        "Sin": (lambda a: ops.Sin.apply(a), [n(3, 2)]),
        "Cos": (lambda a: ops.Cos.apply(a), [n(3, 2)]),
        "Rsqrt": (lambda a: ops.Rsqrt.apply(a), [pos(3, 2)]),
        "RepeatInterleave": (lambda a: ops.RepeatInterleave.apply(a, repeats=2, axis=1),
                             [n(2, 3)]),
        "FusedBinaryCrossEntropy": (lambda p, t: fused.FusedBinaryCrossEntropy.apply(p, t),
                               [r.uniform(0.1, 0.9, size=(3, 2)), r.uniform(size=(3, 2))]),
        "FusedBinaryCrossEntropyWithLogits": (
            lambda z, t: fused.FusedBinaryCrossEntropyWithLogits.apply(z, t),
            [n(3, 2), r.uniform(size=(3, 2))]),
        "SetItem": (lambda a, v: ops.SetItem.apply(a, v, index=(slice(0, 2), 1)),
                    [n(3, 4), n(2)]),
        "MatMul": (lambda a, b: a @ b, [n(2, 3, 4), n(4, 5)]),
        "Reshape": (lambda a: a.reshape(4, -1), [n(2, 3, 2)]),
        "Transpose": (lambda a: a.permute(2, 0, 1), [n(2, 3, 4)]),
        "GetItem": (lambda a: a[numpy.array([0, 2, 0]), 1:], [n(3, 4)]),
        "MaskedFill": (lambda a: a.masked_fill(numpy.eye(3) > 0, -2.0), [n(2, 3, 3)]),
        "Where": (lambda a, b: ops.Where.apply(numpy.array([True, False, True]), a, b),
                  [n(2, 3), n(3)]),
        "Cat": (lambda a, b: ops.Cat.apply(a, b, axis=0), [n(2, 3), n(1, 3)]),
        "Stack": (lambda a, b: ops.Stack.apply(a, b, axis=1), [n(2, 3), n(2, 3)]),
        "Gather": (lambda a: ops.Gather.apply(a, numpy.array([[1, 1], [0, 2]]), axis=-1),
                   [n(2, 3)]),
        "Max": (lambda a: a.max(dim=1)[0], [n(3, 4)]),
        "Maximum": (lambda a, b: a.max(b), [n(3, 4), n(3, 4)]),
        "Clamp": (lambda a: a.clamp(-0.5, 0.5), [n(3, 4)]),
        "ClampTensor": (lambda a, lo, hi: a.clamp(lo, hi), [n(3, 4), n(4) - 1.0, n(4) + 1.0]),
        "Expand": (lambda a: a.expand(2, 3, 4), [n(3, 1)]),
        "Clone": (lambda a: a.t().contiguous(), [n(3, 4)]),
        "Copy": (lambda a, b: ops.Copy.apply(a, b), [n(3, 4), n(4)]),
        "CopySlices": (_scaled_columns, [n(3, 4), n(3, 2)]),
        "IndexSelect": (lambda a: a.index_select(1, numpy.array([2, 0, 2])), [n(2, 4)]),
        "Var": (lambda a: a.var(1), [n(3, 4)]),
        "Std": (lambda a: a.std(-1, keepdim=True), [n(2, 3, 4)]),
        "PowBase": (lambda a: 2.0 ** a, [n(3, 4)]),
        "PowTensor": (lambda a, b: a ** b, [pos(3, 4), n(3, 4)]),
        "Remainder": (lambda a, b: a % b, [3.0 * n(3, 4), pos(3, 4) + 0.5]),
        "Sum": (lambda a: a.sum(axis=1), [n(2, 3, 4)]),
        "Mean": (lambda a: a.mean(axis=-1, keepdims=True), [n(2, 3, 4)]),
        "FusedLinear": (lambda x, w, b: fused.FusedLinear.apply(x, w, b),
                        [n(2, 3, 4), n(5, 4), n(5)]),
        "FusedEmbedding": (lambda w: fused.FusedEmbedding.apply(w, ids), [n(8, 3)]),
        "FusedLayerNorm": (lambda x, s, b: fused.FusedLayerNorm.apply(x, s, b, eps=1e-5),
                      [n(2, 3, 6), pos(6), n(6)]),
        "FusedGELU": (lambda x: fused.FusedGELU.apply(x), [3.0 * n(4, 5)]),
        "FusedDropout": (lambda x: fused.FusedDropout.apply(x, p=0.3), [n(5, 6)]),
        "Softmax": (lambda x: ops.Softmax.apply(x, axis=-1), [n(3, 5)]),
        "LogSoftmax": (lambda x: x.log_softmax(-1), [n(3, 5)]),
        "FusedCausalAttention": (
            lambda q, k, v: fused.FusedCausalAttention.apply(q, k, v, dropout_p=0.2),
            [n(2, 2, 4, 3), n(2, 2, 4, 3), n(2, 2, 4, 3)]),
        "FusedCrossEntropy": (lambda z: cross_entropy(z, targets), [n(6, 7)]),
    }


def _scaled_columns(a, b):
    """An in-place op on a view inside a graph: recorded on its base (CopySlices)."""
    y = a * 1.0
    y[:, 1:3] *= b
    return y


def check_gradients():
    """One row per Function in tinygpt.ops and tinygpt.fused (an op without a case here
    fails)."""
    cases = _gradient_cases()
    rows = []
    for name in op_names():
        if name not in cases:
            rows.append(CheckResult("gradient", name, "FAIL", None,
                                    "no gradient case for this op in tinygpt/app/selftest.py"))
            continue
        rows.append(_gradient_row(name, *cases[name]))
    return rows


def _gradient_row(name, fn, arrays):
    """One op's row: PASS with its worst relative error, or FAIL saying where it is wrong."""
    return _run("gradient", name, lambda: (check_gradient(name, fn, arrays), ""))


# ----------------------------------------------------------------------------------
# Training, KV cache, save/load.

TINY = {"vocab_size": 61, "context_length": 8, "emb_dim": 16, "n_heads": 2, "n_layers": 2,
        "drop_rate": 0.0, "qkv_bias": True}


def _tiny_model(dtype=numpy.float32, seed=0, **overrides):
    from ..model import GPTModel

    manual_seed(seed)
    return GPTModel(dict(TINY, **overrides), dtype=dtype)


def _batch(seed=1, batch=4, vocab=TINY["vocab_size"], length=TINY["context_length"]):
    ids = numpy.random.default_rng(seed).integers(0, vocab, size=(batch, length + 1))
    return ids[:, :-1], ids[:, 1:]  # inputs and next-token targets, (B, T) each


def _train_steps(model, optimizer, x, y, steps):
    from ..loss import cross_entropy

    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = cross_entropy(model(x), y)
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
    return losses


def check_training():
    from ..optim import AdamW

    model = _tiny_model()
    model.train()
    optimizer = AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    x, y = _batch()
    losses = _train_steps(model, optimizer, x, y, 30)
    note = f"loss {losses[0]:.3f} -> {losses[-1]:.3f} in 30 AdamW steps"
    if not all(math.isfinite(v) for v in losses):
        raise CheckFailed(f"a loss was not finite: {note}")
    if not losses[-1] < 0.5 * losses[0]:
        raise CheckFailed(f"the loss did not fall to half: {note}")
    return None, note


def check_kv_cache_logits():
    from ..grad_mode import no_grad
    from ..kv_cache import CachedDecoder

    model = _tiny_model(numpy.float64, drop_rate=0.1)  # eval mode must switch dropout off
    model.eval()
    window = TINY["context_length"]
    seq = numpy.random.default_rng(3).integers(0, TINY["vocab_size"], size=(2, 5))
    decoder = CachedDecoder(model, 2, window)
    logits = decoder.prime(seq)
    worst = 0.0
    rng = numpy.random.default_rng(4)
    for step in range(8):  # 5 + 8 tokens: the window slides past context_length
        with no_grad():
            ref = model(seq[:, -window:]).array[:, -1, :]
        worst = max(worst, assert_close(f"cached logits at step {step}", logits, ref,
                                        KV_CACHE_TOL))
        if step == 7:
            break
        nxt = rng.integers(0, TINY["vocab_size"], size=2)
        seq = numpy.concatenate([seq, nxt[:, None]], axis=1)
        logits = decoder.feed(nxt)
    return worst, "float64, 8 steps incl. a sliding window (relative to max |logit|)"


def check_kv_cache_tokens():
    from ..generation import generate_fast

    model = _tiny_model(numpy.float32)
    prompt = numpy.random.default_rng(5).integers(0, TINY["vocab_size"], size=(2, 3))
    differing = 0
    for settings in ({"temperature": 0.0}, {"temperature": 1.0, "top_k": 20, "top_p": 0.9}):
        a = generate_fast(model, prompt, 12, TINY["context_length"], rng=7, use_cache=True,
                          **settings)
        b = generate_fast(model, prompt, 12, TINY["context_length"], rng=7, use_cache=False,
                          **settings)
        differing += int((a != b).sum()) if a.shape == b.shape else a.size
    if differing:
        raise CheckFailed(f"{differing} generated tokens differ with and without the cache",
                           float(differing))
    return 0.0, "greedy and sampled, 12 tokens past the window: identical"


def check_save_load():
    from ..errors import CheckpointError
    from ..io.checkpoint import load_checkpoint, load_model, save_checkpoint, save_model
    from ..optim import AdamW

    model = _tiny_model()
    x, y = _batch()
    optimizer = AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    _train_steps(model, optimizer, x, y, 2)
    with tempfile.TemporaryDirectory(prefix="tinygpt-selftest-") as tmp:
        model_path = os.path.join(tmp, "model.safetensors")
        save_model(model, model_path)
        loaded = load_model(model_path)
        saved_back = loaded.state_dict()
        for name, a in model.state_dict().items():  # tol 0: bit-identical
            a, b = a.array, saved_back[name].array
            if a.dtype != b.dtype or a.shape != b.shape:
                raise CheckFailed(f"{name}: {a.dtype}{a.shape} came back as {b.dtype}{b.shape}")
            assert_close(name, b, a, 0.0)
        model.eval()
        loaded.eval()
        assert_close("logits of the loaded model", loaded(x), model(x), 0.0)
        model.train()

        # A checkpoint mid-run: continuing from it must repeat the same losses exactly.
        ckpt_path = os.path.join(tmp, "checkpoint.safetensors")
        save_checkpoint(ckpt_path, model, optimizer, None)
        expected = _train_steps(model, optimizer, x, y, 2)
        ckpt = load_checkpoint(ckpt_path)
        again = _train_steps(ckpt.model, ckpt.optimizer, x, y, 2)
        assert_close("losses after resuming", again, expected, 0.0)

        # A flipped byte in the tensor data must be caught, not loaded.
        with open(model_path, "r+b") as f:
            f.seek(-3, os.SEEK_END)
            byte = f.read(1)
            f.seek(-3, os.SEEK_END)
            f.write(bytes([byte[0] ^ 0x10]))
        try:
            load_model(model_path)
        except CheckpointError:
            pass
        else:
            raise CheckFailed("a model file with a flipped byte loaded without an error")
    return 0.0, "model file + checkpoint: bit-identical; a flipped byte is caught"


# ----------------------------------------------------------------------------------
# Running and reporting.


def _short(exc):
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:160]


def _run(group, name, fn):
    """One check as a row: PASS, or FAIL with the reason."""
    started = time.perf_counter()
    try:
        error, note = fn()
        status = "PASS"
    except CheckFailed as exc:
        error, note, status = exc.error, str(exc), "FAIL"
    except Exception as exc:  # noqa: BLE001 - a crash is a failed check, reported
        error, note, status = None, _short(exc), "FAIL"
    return CheckResult(group, name, status, error, note, time.perf_counter() - started)


def run_checks(progress=None):
    """Run every check; returns the list of ``CheckResult``.

    ``progress(result)`` is called after each row (e.g. to print it at once). The
    package's random generator is left as it was."""
    check_available()  # a missing GPU is one clear error, not a table of failed checks
    report = progress or (lambda result: None)
    rng_state = get_rng_state()
    results = []

    def add(result):
        results.append(result)
        report(result)

    try:
        for row in check_gradients():
            add(row)
        add(_run("training", "loss falls (tiny GPT, AdamW)", check_training))
        add(_run("kv-cache", "logits = no-cache forward", check_kv_cache_logits))
        add(_run("kv-cache", "tokens = no-cache tokens", check_kv_cache_tokens))
        add(_run("save/load", "round trip", check_save_load))
    finally:
        set_rng_state(rng_state)
    return results


def _format_error(error):
    if error is None:
        return "-"
    return "0" if error == 0.0 else f"{error:.1e}"


def format_row(result):
    return (f"{result.label:<42}{result.status:<7}{_format_error(result.error):>10}  "
            f"{result.note}").rstrip()


def selftest(file=None):
    """Run the checks, printing the table to ``file`` (stdout) as they go.

    Returns True when no check failed."""
    out = file or sys.stdout
    started = time.perf_counter()
    print(f"{'check':<42}{'result':<7}{'worst err':>10}  note", file=out)
    print("-" * 78, file=out, flush=True)
    results = run_checks(progress=lambda r: print(format_row(r), file=out, flush=True))
    counts = {s: sum(r.status == s for r in results) for s in ("PASS", "FAIL")}
    print("-" * 78, file=out)
    print(f"{len(results)} checks: {counts['PASS']} passed, {counts['FAIL']} failed "
          f"in {time.perf_counter() - started:.1f} s.", file=out)
    print(f"worst err: relative error (gradients: vs float64 central differences, eps "
          f"{GRAD_EPS:g}; comparisons: max |diff| / max |ref|); for kv-cache tokens the number "
          "of differing tokens.", file=out)
    if counts["FAIL"]:
        print("FAILED: " + ", ".join(r.label.replace("  ", " ").strip()
                                     for r in results if r.status == "FAIL"), file=out)
    out.flush()
    return counts["FAIL"] == 0


__all__ = ["CheckResult", "run_checks", "selftest"]


if __name__ == "__main__":
    sys.exit(0 if selftest() else 1)
