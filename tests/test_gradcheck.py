"""Every op in tinygpt.ops against float64 central finite differences.

One generic checker does the work: ``tinygpt.testing.check_gradient``, the one
``tinygpt selftest`` runs too. It runs the op once with ``backward(w)`` for a random
output weight ``w``, then compares the analytic gradient with the central difference
``(f(x + eps d) - f(x - eps d)) / 2 eps`` of ``f(x) = sum(op(x) * w)`` along one random
direction ``d`` over all inputs and along a few single elements of each input (relative
error <= 1e-6, eps = 1e-6). Before every evaluation the package generator is reseeded,
so ops that draw random numbers (dropout) use the same mask each time.

Run with ``-s`` to see the worst relative error per op.
"""


import numpy as np
import pytest

import tinygpt
import tinygpt.nn.functional as F
from tinygpt import backend, fused, ops
from tinygpt.autograd import Function
from tinygpt.backend import asarray
from tinygpt.loss import cross_entropy
from tinygpt.tensor import Tensor
from tinygpt.testing import CheckFailed, check_gradient, op_names

from .helpers.assertions import assert_close, host
from .helpers.attention import multi_head_attention

WORST = {}  # op name -> worst relative error seen (printed at the end of the module)


pytestmark = pytest.mark.usefixtures("keep_global_rng")


@pytest.fixture(scope="module", autouse=True)
def report_table():
    yield
    if WORST:
        print("\n\nworst relative gradient-check error per op (float64, eps 1e-6)")
        for name in sorted(WORST):
            print(f"  {name:22s} {WORST[name]:.2e}")


def gradcheck(name, fn, *arrays):
    """``check_gradient`` on ``fn`` and ``arrays``, recording the worst relative error
    under ``name`` in WORST."""
    worst = check_gradient(name, fn, arrays)
    WORST[name] = max(WORST.get(name, 0.0), worst)
    return worst


# ----------------------------------------------------------------------------------
# The cases: (op name, fn, input arrays). Inputs are drawn where the op is smooth
# (positive for Log / Sqrt / a divisor, no ties for max-based ops).

_r = np.random.default_rng(42)


def _assigned(x, index, value):
    """x[index] = value, as a learner writes it (Tensor.__setitem__ in a graph)."""
    x[index] = value
    return x


def _n(*shape):
    return _r.standard_normal(shape)


def _pos(*shape):
    return _r.uniform(0.5, 2.0, size=shape)


IDS = np.array([[1, 3, 3, 0, 7, 3], [7, 7, 2, 1, 3, 9]])  # repeated ids, rows 4..6 unused
TARGETS = np.array([2, -100, 0, 6, 6, -100, 1, 3])
TARGETS_BT = np.array([[2, 5, -100, 0], [6, 6, 1, -100]])


def _wide_round_trip(x):
    """Through the widest float the backend has (long double on x86 NumPy) and back."""
    y = ops.Cast.apply(x, dtype=backend.widest_float())
    y = ops.Exp.apply(y)
    return ops.Cast.apply(y, dtype=np.float64)


CASES = [
    # elementwise, with broadcasting undone by the engine
    ("Add", lambda a, b: ops.Add.apply(a, b), [_n(3, 4), _n(3, 4)]),
    ("Add-broadcast", lambda a, b: ops.Add.apply(a, b), [_n(2, 3, 1), _n(4)]),
    ("Sub", lambda a, b: ops.Sub.apply(a, b), [_n(3, 1), _n(1, 5)]),
    ("Mul", lambda a, b: ops.Mul.apply(a, b), [_n(2, 3, 4), _n(3, 1)]),
    ("Mul-same-tensor", lambda a: ops.Mul.apply(a, a), [_n(5)]),
    ("Div", lambda a, b: ops.Div.apply(a, b), [_n(3, 4), _pos(4)]),
    ("Div-scalar-numerator", lambda b: 2.0 / b, [_pos(3, 2)]),
    ("Neg", lambda a: ops.Neg.apply(a), [_n(4, 3)]),
    ("Exp", lambda a: ops.Exp.apply(a), [_n(4, 3)]),
    ("Log", lambda a: ops.Log.apply(a), [_pos(4, 3)]),
    ("Tanh", lambda a: ops.Tanh.apply(a), [_n(4, 3)]),
    ("Sqrt", lambda a: ops.Sqrt.apply(a), [_pos(4, 3)]),
    ("Cast", _wide_round_trip, [_n(3, 4)]),
    ("Abs", lambda a: ops.Abs.apply(a), [_n(3, 4)]),
    ("Pow-cube", lambda a: ops.Pow.apply(a, exponent=3), [_n(3, 4)]),
    ("Pow-fraction", lambda a: ops.Pow.apply(a, exponent=1.5), [_pos(3, 4)]),
    ("Pow-negative", lambda a: a ** -2, [_pos(5)]),
    ("PowBase", lambda a: 2.0 ** a, [_n(3, 4)]),
    ("PowTensor", lambda a, b: a ** b, [_pos(3, 4), _n(3, 4)]),
    ("Remainder", lambda a, b: a % b, [_n(3, 4) * 3, _pos(3, 4) + 0.5]),
    # matrix products
    ("MatMul", lambda a, b: ops.MatMul.apply(a, b), [_n(3, 4), _n(4, 5)]),
    ("MatMul-batched", lambda a, b: ops.MatMul.apply(a, b), [_n(2, 3, 4), _n(2, 4, 5)]),
    ("MatMul-broadcast", lambda a, b: ops.MatMul.apply(a, b), [_n(2, 1, 3, 4), _n(3, 4, 2)]),
    ("MatMul-shared-rhs", lambda a, b: ops.MatMul.apply(a, b), [_n(2, 3, 4), _n(4, 5)]),
    ("MatMul-vector-rhs", lambda a, b: ops.MatMul.apply(a, b), [_n(2, 3, 4), _n(4)]),
    ("MatMul-vector-lhs", lambda a, b: ops.MatMul.apply(a, b), [_n(4), _n(2, 4, 3)]),
    ("MatMul-dot", lambda a, b: ops.MatMul.apply(a, b), [_n(4), _n(4)]),
    # shapes and indexing
    ("Reshape", lambda a: ops.Reshape.apply(a, shape=(4, -1)), [_n(2, 3, 2)]),
    ("Transpose", lambda a: ops.Transpose.apply(a, axes=(2, 0, 1)), [_n(2, 3, 4)]),
    ("Transpose-swap", lambda a: a.transpose(1, -1), [_n(2, 3, 4)]),
    ("GetItem-basic", lambda a: a[1:, ::2], [_n(4, 5)]),
    ("GetItem-int-ellipsis", lambda a: a[1, ..., None, 2], [_n(3, 4, 5)]),
    ("GetItem-repeated", lambda a: a[np.array([0, 2, 0, 0, 3])], [_n(4, 3)]),
    ("GetItem-list-mixed", lambda a: a[:, [1, 1, 3, 1]], [_n(2, 5)]),
    ("GetItem-pairs-repeated", lambda a: a[np.array([0, 0, 1, 0]), np.array([2, 2, 2, 1])],
     [_n(3, 4)]),
    ("GetItem-bool-mask", lambda a: a[np.array([True, False, True, True])], [_n(4, 2)]),
    ("MaskedFill", lambda a: ops.MaskedFill.apply(a, np.triu(np.ones((4, 4)), 1) > 0,
                                                 value=-3.0), [_n(2, 4, 4)]),
    ("MaskedFill-in-place", lambda a: (a * 1.0).masked_fill_(np.eye(3) > 0, 0.0), [_n(3, 3)]),
    ("SetItem", lambda a, b: ops.SetItem.apply(a, b, index=(slice(None), 1)), [_n(3, 4), _n(3)]),
    ("SetItem-in-place", lambda a, b: _assigned(a * 1.0, np.array([2, 0]), b), [_n(3, 2), _n(2)]),
    ("Where", lambda a, b: ops.Where.apply(np.array([[True, False, True]]), a, b),
     [_n(2, 3), _n(2, 3)]),
    ("Where-broadcast", lambda a, b: ops.Where.apply(np.array([True, False]), a, b),
     [_n(3, 2), _n(2)]),
    ("Cat", lambda a, b, c: ops.Cat.apply(a, b, c, axis=1), [_n(2, 1), _n(2, 3), _n(2, 2)]),
    ("Stack", lambda a, b: ops.Stack.apply(a, b, axis=-1), [_n(3, 2), _n(3, 2)]),
    ("Gather", lambda a: ops.Gather.apply(a, np.array([[2, 0, 2], [1, 1, 3]]), axis=1),
     [_n(2, 4)]),
    ("Max", lambda a: ops.Max.apply(a), [_n(3, 4)]),
    ("Max-axis", lambda a: ops.Max.apply(a, axis=1, keepdims=True), [_n(2, 5, 3)]),
    ("Max-min-axis", lambda a: ops.Max.apply(a, axis=0, largest=False), [_n(4, 3)]),
    ("Max-amax-dims", lambda a: a.amax((0, 2), keepdim=True), [_n(2, 5, 3)]),
    ("Maximum", lambda a, b: a.max(b), [_n(3, 4), _n(3, 4)]),
    ("Maximum-min-broadcast", lambda a, b: a.min(b), [_n(3, 4), _n(4)]),
    ("Clamp", lambda a: a.clamp(-0.5, 0.5), [_n(3, 4)]),
    ("Clamp-low-only", lambda a: a.clamp(min=0.2), [_n(3, 4)]),
    ("ClampTensor", lambda a, lo, hi: a.clamp(lo, hi), [_n(3, 4), _n(4) - 1.0, _n(4) + 1.0]),
    # views that share memory, and in-place changes through them
    ("Expand", lambda a: a.expand(2, 3, 4), [_n(3, 1)]),
    ("Expand-as-read-twice", lambda a: a.expand(3, -1) * a.t(), [_n(1, 3)]),
    ("Clone", lambda a: a.clone(), [_n(3, 4)]),
    ("Clone-contiguous", lambda a: a.t().contiguous().view(-1), [_n(3, 4)]),
    ("Copy", lambda a, b: ops.Copy.apply(a, b), [_n(3, 4), _n(4)]),
    ("CopySlices", lambda a, b: _scaled_columns(a * 1.0, b), [_n(3, 4), _n(3, 2)]),
    ("CopySlices-view-of-view", lambda a, b: _copied_into_row(a * 1.0, b), [_n(3, 4), _n(2)]),
    ("IndexSelect", lambda a: a.index_select(1, np.array([2, 0, 2])), [_n(2, 4)]),
    # reductions
    ("Var", lambda a: a.var(1), [_n(3, 4)]),
    ("Var-biased-keepdim", lambda a: a.var(0, False, True), [_n(3, 4)]),
    ("Std", lambda a: a.std(), [_n(3, 4)]),
    ("Std-dim", lambda a: a.std(-1, keepdim=True), [_n(2, 3, 4)]),
    ("Sum", lambda a: ops.Sum.apply(a), [_n(3, 4)]),
    ("Sum-axis", lambda a: ops.Sum.apply(a, axis=1), [_n(2, 3, 4)]),
    ("Sum-axes-keepdims", lambda a: ops.Sum.apply(a, axis=(0, -1), keepdims=True),
     [_n(2, 3, 4)]),
    ("Sum-negative-axis", lambda a: ops.Sum.apply(a, axis=-2), [_n(2, 3, 4)]),
    ("Mean", lambda a: ops.Mean.apply(a), [_n(3, 4)]),
    ("Mean-axis-keepdims", lambda a: ops.Mean.apply(a, axis=-1, keepdims=True), [_n(2, 3, 4)]),
    ("Mean-axes", lambda a: ops.Mean.apply(a, axis=(0, 2)), [_n(2, 3, 4)]),
    # fused layers
    ("FusedLinear", lambda x, w, b: fused.FusedLinear.apply(x, w, b),
     [_n(2, 3, 4), _n(5, 4), _n(5)]),
    ("FusedLinear-no-bias", lambda x, w: fused.FusedLinear.apply(x, w), [_n(2, 3, 4), _n(5, 4)]),
    ("FusedLinear-2d", lambda x, w, b: F.linear(x, w, b), [_n(3, 4), _n(2, 4), _n(2)]),
    ("FusedEmbedding", lambda w: fused.FusedEmbedding.apply(w, IDS), [_n(10, 4)]),
    ("FusedLayerNorm", lambda x, s, b: fused.FusedLayerNorm.apply(x, s, b, eps=1e-5),
     [_n(2, 3, 6), _pos(6), _n(6)]),
    ("FusedLayerNorm-small-var", lambda x, s, b: fused.FusedLayerNorm.apply(x, s, b, eps=1e-5),
     [0.05 * _n(4, 5), _n(5), _n(5)]),
    ("FusedGELU", lambda x: fused.FusedGELU.apply(x), [3.0 * _n(4, 5)]),
    ("FusedDropout", lambda x: fused.FusedDropout.apply(x, p=0.3), [_n(6, 7)]),
    ("FusedCausalAttention",
     lambda q, k, v: fused.FusedCausalAttention.apply(q, k, v), [_n(2, 2, 5, 4) for _ in range(3)]),
    ("FusedCausalAttention-kv-cache-shape",  # 2 queries against 5 keys: the last two positions
     lambda q, k, v: fused.FusedCausalAttention.apply(q, k, v), [_n(1, 2, 2, 3), _n(1, 2, 5, 3),
                                                           _n(1, 2, 5, 3)]),
    ("FusedCausalAttention-multi-head",
     lambda q, k, v: multi_head_attention(q, k, v, num_heads=2),
     [_n(2, 5, 8), _n(2, 5, 8), _n(2, 5, 8)]),
    ("FusedCausalAttention-dropout",
     lambda q, k, v: multi_head_attention(q, k, v, num_heads=4, dropout_p=0.25),
     [_n(2, 5, 8), _n(2, 5, 8), _n(2, 5, 8)]),
    ("Softmax", lambda x: ops.Softmax.apply(x), [_n(3, 6)]),
    ("Softmax-axis0", lambda x: tinygpt.softmax(x, dim=0), [_n(4, 2, 3)]),
    ("LogSoftmax", lambda x: ops.LogSoftmax.apply(x, axis=-1), [_n(3, 6)]),
    ("LogSoftmax-axis0", lambda x: x.log_softmax(0), [_n(4, 3)]),
    ("FusedCrossEntropy", lambda z: cross_entropy(z, np.array([2, 0, 6, 6, 1, 3])),
     [_n(6, 7)]),
    ("FusedCrossEntropy-ignore-index", lambda z: cross_entropy(z, TARGETS), [_n(8, 7)]),
    ("FusedCrossEntropy-3d-ignore-index", lambda z: cross_entropy(z, TARGETS_BT),
     [_n(2, 4, 7)]),
    ("FusedCrossEntropy-custom-ignore",
     lambda z: cross_entropy(z, np.array([6, 2, 6, 0]), ignore_index=6),
     [_n(4, 7)]),
    # the book after chapter 5 (appendix A's MLP) and Llama-style blocks
    ("Sigmoid", lambda x: x.sigmoid(), [_n(3, 5) * 4]),
    ("FusedSiLU", lambda x: fused.FusedSiLU.apply(x), [_n(3, 5) * 3]),
    ("Cos", lambda x: x.cos(), [_n(4, 3)]),
    ("Sin", lambda x: x.sin(), [_n(4, 3)]),
    ("Rsqrt", lambda x: x.rsqrt(), [_pos(3, 4)]),
    ("RepeatInterleave", lambda x: x.repeat_interleave(3, dim=1), [_n(2, 4, 3)]),
    ("RepeatInterleave-flat", lambda x: x.repeat_interleave(2), [_n(2, 3)]),
    ("FusedBinaryCrossEntropy", lambda p, t: fused.FusedBinaryCrossEntropy.apply(p, t),
     [_r.uniform(0.1, 0.9, (3, 4)), _r.uniform(0.0, 1.0, (3, 4))]),
    ("FusedBinaryCrossEntropyWithLogits",
     lambda z, t: fused.FusedBinaryCrossEntropyWithLogits.apply(z, t),
     [_n(3, 4) * 3, _r.uniform(0.0, 1.0, (3, 4))]),
]


def _scaled_columns(y, b):
    """y[:, 1:3] *= b: an in-place op on a view, recorded on y (CopySlices)."""
    y[:, 1:3] *= b
    return y


def _copied_into_row(y, b):
    """A view of a view (row 1, columns 2:) written by copy_."""
    y[1][2:].copy_(b)
    return y


@pytest.mark.parametrize("name,fn,arrays", CASES, ids=[c[0] for c in CASES])
def test_gradient_matches_finite_differences(name, fn, arrays):
    gradcheck(name.split("-")[0], fn, *arrays)


def test_every_op_in_ops_has_a_gradient_check():
    """A new Function in ops.py must come with a case above."""
    functions = set(op_names())
    assert {"Exp", "Tanh", "Sqrt", "Sigmoid", "Rsqrt"} <= functions
    checked = {c[0].split("-")[0] for c in CASES}
    assert functions - checked == set(), f"ops without a gradient check: {functions - checked}"


def test_cast_float32_to_float64_gradient_comes_back_float32():
    """Cast can't be finite-differenced through float32; its gradient is exact: dy cast back."""
    x = Tensor(np.linspace(-1, 1, 6, dtype=np.float32), requires_grad=True)
    y = x.to(np.float64)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(host(y), host(x).astype(np.float64))
    w = np.random.default_rng(0).standard_normal(6)
    y.backward(w)
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(host(x.grad), w.astype(np.float32))


def test_checker_catches_a_wrong_gradient():
    """The checker itself: an op whose backward is off by 1% must fail."""

    class BadSquare(Function):
        def forward(self, x):
            self.x = x
            return x * x

        def backward(self, dy):
            return dy * 2.0 * self.x * 1.01

    with pytest.raises(AssertionError, match="relative error"):
        gradcheck("BadSquare", lambda x: BadSquare.apply(x), _n(3))
    WORST.pop("BadSquare", None)


def test_checker_catches_a_gradient_leaking_into_a_masked_entry():
    """Masked entries: a non-zero analytic gradient where the output can't move fails."""

    class LeakyFirst(Function):
        def forward(self, x):
            return x[:1] * 1.0

        def backward(self, dy):
            dx = asarray(np.full((3,), 0.5))
            dx[0] = dy[0]
            return dx

    with pytest.raises(AssertionError):
        gradcheck("LeakyFirst", lambda x: LeakyFirst.apply(x), _n(3))
    WORST.pop("LeakyFirst", None)


def test_checker_leaves_the_package_generator_as_it_was():
    state = backend.get_rng_state()
    gradcheck("FusedDropout", lambda x: fused.FusedDropout.apply(x, p=0.5), _n(4, 3))
    assert backend.get_rng_state() == state


def test_comparison_names_the_tensor_and_its_worst_element():
    """assert_close reports like llm.c's check_tensor: name, max |diff|, worst element."""
    ref = np.arange(12.0).reshape(3, 4)
    ours = ref.copy()
    ours[2, 1] += 1e-3
    assert assert_close("ok", ours, ref, 1e-3) == pytest.approx(1e-3 / 11)
    with pytest.raises(CheckFailed, match=r"^w: max \|diff\| 1\.000e-03 .*worst element "
                                          r"\(2, 1\): ours 9\.001 vs ref 9") as caught:
        assert_close("w", ours, ref, 1e-5)
    assert caught.value.error == pytest.approx(1e-3 / 11)
    with pytest.raises(AssertionError, match="shape"):
        assert_close("w", ours[:2], ref, 1e-3)
    assert assert_close("same", ref, ref.copy(), 0.0) == 0.0  # tol 0: bit-identical
