"""Each fused op equals the chain of primitive ops it replaces (values and gradients).

The fused ops in tinygpt.fused hand-write their backward for speed; here the same
maths is written with the primitives (which test_gradcheck.py checks one by one)
and both are run in float64 on the same inputs with the same output weight. Forward
values and every input gradient must agree to ~1e-12 of their scale.
"""

import math

import numpy as np
import pytest

import tinygpt
from tinygpt import fused as fused_ops
from tinygpt import ops
from tinygpt.loss import cross_entropy
from tinygpt.tensor import Tensor

from .helpers.assertions import assert_close, host
from .helpers.attention import multi_head_attention

TOL = 1e-12


pytestmark = pytest.mark.usefixtures("keep_global_rng")


def run(fn, arrays, w, seed=None):
    """Output array and input gradients of ``fn`` on fresh float64 leaves, backward(w)."""
    if seed is not None:
        tinygpt.manual_seed(seed)
    leaves = [Tensor(np.array(a, dtype=np.float64), requires_grad=True) for a in arrays]
    out = fn(*leaves)
    out.backward(w)
    return out.data, [t.grad for t in leaves]


def assert_same(name, fused, primitive, arrays, seed=None, out_shape=None):
    """Run both on ``arrays`` with one random output weight; compare values and gradients."""
    rng = np.random.default_rng(7)
    probe = fused(*[Tensor(a) for a in arrays]) if out_shape is None else None
    w = rng.standard_normal(probe.shape if out_shape is None else out_shape)
    y_fused, g_fused = run(fused, arrays, w, seed)
    y_prim, g_prim = run(primitive, arrays, w, seed)
    assert y_fused.dtype == y_prim.dtype == np.float64
    assert_close(f"{name} forward", y_fused, y_prim, TOL)
    for i, (gf, gp) in enumerate(zip(g_fused, g_prim)):
        assert gf is not None and gp is not None, f"{name}: input {i} has no gradient"
        assert_close(f"{name} grad of input {i}", gf, gp, TOL)


rng = np.random.default_rng(3)


def test_layer_norm():
    def primitive(x, scale, shift):
        mean = x.mean(axis=-1, keepdims=True)
        xc = x - mean
        var = (xc * xc).mean(axis=-1, keepdims=True)  # biased variance, like torch
        return xc / (var + 1e-5).sqrt() * scale + shift

    def fused(x, scale, shift):
        return fused_ops.FusedLayerNorm.apply(x, scale, shift, eps=1e-5)

    arrays = [rng.standard_normal((2, 5, 8)) * 3 + 1, rng.standard_normal(8),
              rng.standard_normal(8)]
    assert_same("layer norm", fused, primitive, arrays)


def test_gelu_tanh_form():
    c = math.sqrt(2.0 / math.pi)

    def primitive(x):
        return 0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())

    assert_same("gelu", lambda x: fused_ops.FusedGELU.apply(x), primitive,
                [4 * rng.standard_normal((3, 7))])


def _softmax_primitive(x, axis=-1):
    shifted = x - x.array.max(axis=axis, keepdims=True)  # a constant shift: no gradient needed
    e = shifted.exp()
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("axis", [-1, 1])
def test_softmax(axis):
    arrays = [5 * rng.standard_normal((2, 4, 6))]
    assert_same("softmax", lambda x: ops.Softmax.apply(x, axis=axis),
                lambda x: _softmax_primitive(x, axis), arrays)


def _attention_primitive(q, k, v, n_heads, dropout_p=0.0):
    B, T, C = q.shape
    D = C // n_heads

    def heads(t):  # (B, T, C) -> (B, H, T, D)
        return t.reshape(B, T, n_heads, D).permute(0, 2, 1, 3)

    qh, kh, vh = heads(q), heads(k), heads(v)
    mask = np.triu(np.full((T, T), -np.inf), k=1)  # -inf above the diagonal
    scores = qh @ kh.transpose(2, 3) * (1.0 / math.sqrt(D)) + mask  # (B, H, T, T)
    weights = _softmax_primitive(scores)
    if dropout_p > 0.0:
        weights = weights * fused_ops.dropout_mask(weights.shape, dropout_p, weights.dtype)
    out = weights @ vh  # (B, H, T, D)
    return out.transpose(1, 2).reshape(B, T, C)


@pytest.mark.parametrize("n_heads,dropout_p", [(1, 0.0), (3, 0.0), (2, 0.3)])
def test_causal_attention(n_heads, dropout_p):
    arrays = [rng.standard_normal((2, 7, 6)) for _ in range(3)]

    def fused(q, k, v):
        return multi_head_attention(q, k, v, num_heads=n_heads, dropout_p=dropout_p)

    def primitive(q, k, v):
        return _attention_primitive(q, k, v, n_heads, dropout_p)

    # the same seed before each run: the dropout mask on the weights is the same draw
    assert_same("attention", fused, primitive, arrays, seed=11)


def test_causal_attention_ignores_the_future():
    """Changing the last token's q, k, v changes only the last output row."""
    q, k, v = (rng.standard_normal((1, 5, 4)) for _ in range(3))
    base = multi_head_attention(q, k, v, num_heads=2).data
    q2, k2, v2 = q.copy(), k.copy(), v.copy()
    for t in (q2, k2, v2):
        t[:, -1] += 10.0
    moved = multi_head_attention(q2, k2, v2, num_heads=2).data
    np.testing.assert_array_equal(host(moved[:, :-1]), host(base[:, :-1]))
    assert not np.allclose(host(moved[:, -1]), host(base[:, -1]))


def _cross_entropy_primitive(z, targets, ignore_index=-100):
    z = z.reshape(-1, z.shape[-1])  # (N, V)
    targets = targets.reshape(-1)
    keep = np.flatnonzero(targets != ignore_index)
    m = z.array.max(axis=1, keepdims=True)
    log_sum_exp = ((z - m).exp().sum(axis=1, keepdims=True)).log() + m  # (N, 1)
    log_probs = z - log_sum_exp  # (N, V)
    picked = log_probs[keep, targets[keep]]  # advanced indexing picks each row's target
    return -picked.mean()


@pytest.mark.parametrize(
    "shape,targets",
    [
        ((6, 9), np.array([0, 8, 3, 3, 5, 1])),
        ((2, 4, 9), np.array([[1, -100, 4, 4], [-100, 8, 0, 2]])),
    ],
    ids=["2d", "3d-ignore-index"],
)
def test_cross_entropy(shape, targets):
    arrays = [3 * rng.standard_normal(shape)]
    assert_same("cross-entropy", lambda z: cross_entropy(z, targets),
                lambda z: _cross_entropy_primitive(z, targets), arrays, out_shape=())


def test_cross_entropy_large_logits_stay_finite():
    """Logits of 1e4 overflow a naive exp; both forms subtract the row max."""
    z = rng.standard_normal((4, 5)) * 1e4
    targets = np.array([0, 1, 2, 3])
    loss = cross_entropy(Tensor(z), targets).item()
    ref = _cross_entropy_primitive(Tensor(z), targets).item()
    assert np.isfinite(loss) and abs(loss - ref) <= 1e-12 * abs(ref)


def test_embedding_is_indexing():
    ids = np.array([[4, 1, 4, 4], [0, 1, 9, 4]])  # repeated ids must accumulate
    arrays = [rng.standard_normal((10, 3))]
    assert_same("embedding", lambda w: fused_ops.FusedEmbedding.apply(w, ids), lambda w: w[ids],
                arrays)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_linear_is_matmul_plus_bias(bias):
    x, w, b = rng.standard_normal((2, 3, 5)), rng.standard_normal((4, 5)), rng.standard_normal(4)
    if bias:
        assert_same("linear", lambda x, w, b: fused_ops.FusedLinear.apply(x, w, b),
                    lambda x, w, b: x @ w.T + b, [x, w, b])
    else:
        assert_same("linear", lambda x, w: fused_ops.FusedLinear.apply(x, w), lambda x, w: x @ w.T,
                    [x, w])


def test_dropout_is_a_mask_multiply():
    x = rng.standard_normal((5, 6))

    def primitive(t):
        return t * fused_ops.dropout_mask(t.shape, 0.4, t.dtype)

    assert_same("dropout", lambda t: fused_ops.FusedDropout.apply(t, p=0.4), primitive, [x], seed=5)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adamw_update_equals_the_steps_of_adamw(amsgrad):
    """fused.adamw_update (the fast path, in cache-sized slices) against Adam.step's
    written-out steps (use_fused(False)): five steps of AdamW on the same gradients."""
    import tinygpt

    shapes = [(40_000,), (3, 7)]  # one parameter larger than a slice
    results = []
    for fused_path in (True, False):
        params = [tinygpt.nn.Parameter(np.random.default_rng(i).standard_normal(s))
                  for i, s in enumerate(shapes)]
        opt = tinygpt.optim.AdamW(params, lr=1e-2, weight_decay=0.1, amsgrad=amsgrad)
        with tinygpt.use_fused(fused_path):
            for step in range(5):
                for i, p in enumerate(params):
                    p.grad = tinygpt.tensor(np.random.default_rng(100 * step + i)
                                            .standard_normal(p.shape))
                opt.step()
        results.append([host(p) for p in params])
    for i, (a, b) in enumerate(zip(*results)):
        assert_close(f"parameter {i} after 5 AdamW steps", a, b, 1e-12)


@pytest.mark.parametrize("shape,targets", [
    ((6, 7), np.array([1, -100, 3, 6, 0, 2])),  # one ignored row
    ((2, 4, 7), np.array([[1, 2, 3, 4], [5, 6, 0, -100]])),  # (B, T, V): the model's
])
def test_cross_entropy_books_steps_equal_the_fused_op(shape, targets):
    """use_fused(False): F.cross_entropy on the flattened rows runs the book's steps
    (log_softmax, the target's log-probability, mean, negate) on Tensors; they give the
    fused op's loss and gradient (float64, 1e-9)."""
    import tinygpt
    import tinygpt.nn.functional as F

    z = np.random.default_rng(0).standard_normal(shape)
    results = {}
    for fused_path in (True, False):
        logits = Tensor(z, requires_grad=True)
        with tinygpt.use_fused(fused_path):
            loss = F.cross_entropy(logits.flatten(0, -2), Tensor(targets).flatten())
        results[fused_path] = (loss.grad_fn.name(), host(loss), _grad_of(loss, logits))
    assert results[True][0] == "NllLossBackward0"  # one fused op
    assert results[False][0] == "MulBackward0"  # the last of the book's steps: * -1
    assert_close("cross-entropy loss", results[False][1], results[True][1], 1e-9)
    assert_close("cross-entropy dlogits", results[False][2], results[True][2], 1e-9)


def _grad_of(loss, leaf):
    loss.backward()
    return host(leaf.grad)
