"""The engine: order, accumulation, un-broadcasting, no_grad, graph release, zero_grad."""

import gc
import sys
import weakref

import numpy as np
import pytest

import tinygpt
from tinygpt import AdamW, GPTModel, fused, no_grad
from tinygpt.autograd import Function, sum_to_shape
from tinygpt.grad_mode import enable_grad, is_grad_enabled
from tinygpt.loss import cross_entropy
from tinygpt.nn import Parameter
from tinygpt.tensor import Tensor

from .helpers.assertions import host


def leaf(values):
    return Tensor(np.asarray(values, dtype=np.float64), requires_grad=True)


# --- depth -------------------------------------------------------------------------------


def test_deep_chain_backward_has_no_recursion_limit():
    depth = 5000
    assert depth > sys.getrecursionlimit() // 2  # deep enough that recursion would hurt
    x = leaf(0.5)
    y = x
    for _ in range(depth):
        y = y * 1.0001 + 0.0
    y.backward()
    assert np.isclose(host(x.grad), 1.0001**depth, rtol=1e-12)


def test_very_deep_chain_is_freed_without_backward():
    """Dropping a 50000-op graph that never ran backward must not overflow the C stack."""
    x = leaf(1.0)
    y = x
    for _ in range(50000):
        y = y + 1.0
    probe = weakref.ref(y)
    del y
    gc.collect()
    assert probe() is None


def test_wide_graph_order_is_correct():
    """A diamond repeated many times: every path's gradient arrives before it is used."""
    x = leaf([1.0, 2.0])
    y = x
    for _ in range(200):
        a, b = y * 2.0, y * 3.0
        y = (a + b) * 0.2  # d/dy = 1
    y.sum().backward()
    np.testing.assert_allclose(host(x.grad), [1.0, 1.0], rtol=1e-12)


# --- accumulation and broadcasting ---------------------------------------------------------


def test_tensor_used_twice_accumulates():
    x = leaf([1.0, -2.0, 3.0])
    y = (x * x + x * 3.0 - x).sum()  # dy/dx = 2x + 2
    y.backward()
    np.testing.assert_allclose(host(x.grad), host(2 * x.data + 2))


def test_leaf_grad_accumulates_across_backward_calls_until_zeroed():
    x = leaf([1.0, 2.0])
    (x * 2.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(host(x.grad), [5.0, 5.0])


@pytest.mark.parametrize(
    "shape_a,shape_b",
    [((3, 1), (1, 4)), ((2, 3, 4), (4,)), ((2, 3, 4), (3, 1)), ((2, 1, 4), (1, 3, 1)),
     ((), (2, 3))],
)
def test_broadcasting_is_undone(shape_a, shape_b):
    rng = np.random.default_rng(0)
    a, b = leaf(rng.standard_normal(shape_a)), leaf(rng.standard_normal(shape_b))
    out = a * b
    w = rng.standard_normal(out.shape)
    out.backward(w)
    assert a.grad.shape == a.shape and b.grad.shape == b.shape
    bb = np.broadcast_to(host(b), out.shape)
    ba = np.broadcast_to(host(a), out.shape)
    np.testing.assert_allclose(host(a.grad), sum_to_shape(w * bb, shape_a))
    np.testing.assert_allclose(host(b.grad), sum_to_shape(w * ba, shape_b))
    # the reference sum, written out for one case the long way
    if shape_a == (3, 1):
        np.testing.assert_allclose(host(a.grad), (w * bb).sum(axis=1, keepdims=True))
        np.testing.assert_allclose(host(b.grad), (w * ba).sum(axis=0, keepdims=True))


def test_backend_array_on_the_left_defers_to_the_tensor():
    """``array * Tensor`` reaches Tensor.__rmul__ on NumPy and on CuPy (whose arrays defer
    only to a strictly higher __array_priority__)."""
    x = Tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    y = tinygpt.backend.asarray(np.array([3.0, 4.0], dtype=np.float32)) * x
    assert isinstance(y, Tensor)
    y.sum().backward()
    np.testing.assert_array_equal(host(x.grad), [3.0, 4.0])


def test_sum_to_shape():
    g = np.ones((2, 3, 4))
    assert sum_to_shape(g, (4,)).tolist() == [6.0] * 4
    assert sum_to_shape(g, (3, 1)).shape == (3, 1)
    assert float(sum_to_shape(g, ())) == 24.0


def test_tensors_that_do_not_require_grad_get_no_grad():
    x, c = leaf([1.0, 2.0]), Tensor(np.array([3.0, 4.0]))
    (x * c).sum().backward()
    assert c.grad is None and not c.requires_grad
    np.testing.assert_allclose(host(x.grad), [3.0, 4.0])


def test_integer_results_leave_the_graph_as_in_torch():
    """torch: only floating-point results require grad, so ``x.long()`` has no grad_fn
    and a backward through it raises instead of sending a gradient back to x."""
    x = leaf([1.5, 2.5])
    ids = x.long()
    assert not ids.requires_grad and ids.grad_fn is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        (ids * 2.0).sum().backward()
    assert x.grad is None


# --- no_grad ------------------------------------------------------------------------------


def test_no_grad_records_nothing(monkeypatch):
    x = leaf([1.0, 2.0])
    recorded = []
    original_apply = Function.apply.__func__

    def spy(cls, *inputs, **options):
        out = original_apply(cls, *inputs, **options)
        recorded.append(out)
        return out

    monkeypatch.setattr(Function, "apply", classmethod(spy))
    with no_grad():
        assert not is_grad_enabled()
        y = (x * 2.0 + 1.0).exp().sum()
    assert is_grad_enabled()
    assert len(recorded) == 4, "the spy should have seen mul, add, exp and sum"
    for out in recorded:
        assert not out.requires_grad and out.creator is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()
    assert x.grad is None


def test_no_grad_does_not_save_arrays_for_backward():
    """Under no_grad, fused ops skip saving what backward needs (memory at eval time)."""

    q = k = v = Tensor(np.ones((1, 2, 3, 2)), requires_grad=True)  # (b, heads, T, head_dim)
    seen = []

    class Spy(fused.FusedCausalAttention):
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            seen.append(self)
            return out

    with no_grad():
        Spy.apply(q, k, v)
    assert not hasattr(seen[0], "attn_weights") and seen[0].parents == ()
    Spy.apply(q, k, v)
    assert hasattr(seen[1], "attn_weights") and len(seen[1].parents) == 3


def test_no_grad_nests_restores_and_decorates():
    with no_grad():
        with enable_grad():
            assert is_grad_enabled()
            assert (leaf(1.0) * 2.0).requires_grad
        assert not is_grad_enabled()
    assert is_grad_enabled()
    with pytest.raises(ZeroDivisionError):
        with no_grad():
            raise ZeroDivisionError
    assert is_grad_enabled(), "no_grad must restore the mode after an exception"

    @no_grad()
    def f(t):
        return t * 2.0

    assert not f(leaf(1.0)).requires_grad
    assert is_grad_enabled()


def test_model_forward_under_no_grad_builds_no_graph():
    cfg = {"vocab_size": 11, "context_length": 4, "emb_dim": 8, "n_heads": 2,
           "n_layers": 1, "drop_rate": 0.0, "qkv_bias": False}
    model = GPTModel(cfg)
    with no_grad():
        logits = model(np.array([[1, 2, 3]]))
    assert not logits.requires_grad and logits.creator is None


# --- graph release -------------------------------------------------------------------------


def test_graph_is_released_after_backward():
    """As in torch, a tensor keeps its grad_fn after backward(), but what the ops saved
    for their backward (here MatMul's inputs and Tanh's output) is let go."""
    x = leaf(np.ones((3, 3)))
    h = (x @ x).tanh()
    y = h.sum()
    tanh = h.grad_fn
    matmul = tanh.parents[0]
    assert hasattr(tanh, "y") and hasattr(matmul, "a")
    y.backward()
    assert y.grad_fn is not None and h.grad_fn is tanh and not h.is_leaf
    assert tanh.freed and matmul.freed
    assert not hasattr(tanh, "y") and not hasattr(matmul, "a") and not hasattr(matmul, "b")
    assert tanh.parents == () and tanh.name() == "TanhBackward0"


def test_second_backward_raises_clear_error():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    grad_before = host(x.grad).copy()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()
    np.testing.assert_array_equal(host(x.grad), host(grad_before))


def test_backward_through_a_partly_released_graph_raises():
    """b and c share a; after b.backward() frees a's creator, c.backward() can't reach x.

    It must say so, not treat a as a leaf and silently give x a wrong gradient."""
    x = leaf([1.0, 2.0])
    a = x * 2.0
    b = (a * 3.0).sum()
    c = (a * 4.0).sum()
    b.backward()
    np.testing.assert_allclose(host(x.grad), [6.0, 6.0])
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        c.backward()
    np.testing.assert_allclose(host(x.grad), [6.0, 6.0])
    assert a.grad is None


def test_backward_with_retained_shared_graph_via_one_root():
    """The supported way: sum the losses and call backward once."""
    x = leaf([1.0, 2.0])
    a = x * 2.0
    ((a * 3.0).sum() + (a * 4.0).sum()).backward()
    np.testing.assert_allclose(host(x.grad), [14.0, 14.0])


# --- zero_grad and non-scalar backward -----------------------------------------------------


def test_zero_grad_on_module_and_optimizer():
    cfg = {"vocab_size": 11, "context_length": 4, "emb_dim": 8, "n_heads": 2,
           "n_layers": 1, "drop_rate": 0.0, "qkv_bias": True}
    model = GPTModel(cfg, dtype=np.float64)
    ids = np.array([[1, 2, 3, 4]])
    cross_entropy(model(ids), ids).backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    cross_entropy(model(ids), ids).backward()
    first = {n: host(p.grad).copy() for n, p in model.named_parameters()}
    opt = AdamW(model.parameters())
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    # after zero_grad a fresh backward gives the same gradients (nothing left over)
    cross_entropy(model(ids), ids).backward()
    for n, p in model.named_parameters():
        np.testing.assert_array_equal(host(p.grad), host(first[n]), err_msg=n)


def test_non_scalar_backward_needs_grad():
    x = leaf([[1.0, 2.0], [3.0, 4.0]])
    y = x * 2.0
    with pytest.raises(RuntimeError, match="scalar"):
        y.backward()
    assert x.grad is None
    with pytest.raises(ValueError, match="shape"):
        y.backward(np.ones(3))
    y.backward(np.full((2, 2), 0.5))
    np.testing.assert_allclose(host(x.grad), np.ones((2, 2)))


def test_backward_of_a_size_one_non_scalar_is_allowed():
    x = leaf([[3.0]])
    (x * x).backward()
    np.testing.assert_allclose(host(x.grad), [[6.0]])


def test_parameter_is_a_leaf_that_requires_grad():
    p = Parameter(np.zeros(3, dtype=np.float32))
    assert p.requires_grad and p.creator is None and p.dtype == np.float32
    assert tinygpt.Tensor is Tensor


# --- leaf gradients: each leaf owns a writable array --------------------------------------


def test_leaf_grad_from_a_broadcast_view_is_writable_for_clipping():
    """Sum's backward broadcasts a read-only view; clipping writes into the gradient."""
    w = tinygpt.nn.Parameter(tinygpt.ones(4))
    w.sum().backward()
    assert w.grad.array.flags.writeable and w.grad.array.base is None
    tinygpt.nn.utils.clip_grad_norm_([w], 0.1)
    np.testing.assert_allclose(host(w.grad), np.full(4, 0.05), rtol=1e-4)


def test_leaf_grads_are_never_one_shared_array():
    """Add's backward hands the same array to both inputs; each leaf gets its own."""
    a, b = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    (a + b).sum().backward()
    assert a.grad.array is not b.grad.array
    a.grad.array[0] = 7.0
    np.testing.assert_array_equal(host(b.grad), [1.0, 1.0])


def test_zero_grad_without_none_writes_into_every_leaf_grad():
    a, b = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    (a + b).sum().backward()
    AdamW([a, b]).zero_grad(set_to_none=False)
    np.testing.assert_array_equal(host(a.grad), [0.0, 0.0])
    np.testing.assert_array_equal(host(b.grad), [0.0, 0.0])


# --- retain_graph and autograd.grad ----------------------------------------------------------


def test_retain_graph_keeps_the_graph_for_a_second_backward_that_accumulates():
    x = leaf([1.0, 2.0])
    y = (x * x).exp().sum()
    y.backward(retain_graph=True)
    first = host(x.grad).copy()
    y.backward()
    np.testing.assert_allclose(host(x.grad), 2 * first)
    with pytest.raises(RuntimeError, match="Trying to backward through the graph a second time"):
        y.backward()  # the second call, without retain_graph, freed it


def test_retain_graph_keeps_buffers_ops_reuse_in_backward():
    """Cross-entropy turns its saved exp buffer into dz; attention works on its buffers:
    with retain_graph both backward passes give the same gradients."""
    cfg = {"vocab_size": 11, "context_length": 4, "emb_dim": 8, "n_heads": 2,
           "n_layers": 1, "drop_rate": 0.0, "qkv_bias": True}
    model = GPTModel(cfg, dtype=np.float64)
    ids = np.array([[1, 2, 3, 4]])
    loss = cross_entropy(model(ids), ids)
    loss.backward(retain_graph=True)
    first = {n: host(p.grad).copy() for n, p in model.named_parameters()}
    loss.backward()
    for n, p in model.named_parameters():
        np.testing.assert_allclose(host(p.grad), 2 * first[n], rtol=1e-12, err_msg=n)


def test_autograd_grad_returns_gradients_and_leaves_grad_alone():
    x, w = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    loss = (x * w).exp().sum()
    gx, gw = tinygpt.autograd.grad(loss, [x, w], retain_graph=True)
    assert x.grad is None and w.grad is None
    e = np.exp(np.array([3.0, 8.0]))
    np.testing.assert_allclose(host(gx), e * [3.0, 4.0])
    np.testing.assert_allclose(host(gw), e * [1.0, 2.0])
    (only_w,) = tinygpt.autograd.grad(loss, w)  # the graph was kept; now freed
    np.testing.assert_allclose(host(only_w), host(gw))
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


def test_autograd_grad_of_an_intermediate_and_with_grad_outputs():
    x = leaf([1.0, 2.0])
    h = x * 3.0
    (gh,) = tinygpt.autograd.grad((h * h).sum(), h)
    np.testing.assert_allclose(host(gh), [6.0, 12.0])
    (gx,) = tinygpt.autograd.grad(x * x, x, grad_outputs=Tensor(np.array([1.0, 10.0])))
    np.testing.assert_allclose(host(gx), [2.0, 40.0])


def test_autograd_grad_errors_are_torchs():
    x, unused = leaf([1.0, 2.0]), leaf([1.0])
    with pytest.raises(RuntimeError, match="index 1 appears to not have been used in the graph"):
        tinygpt.autograd.grad((x * 2.0).sum(), [x, unused])
    gx, nothing = tinygpt.autograd.grad((x * 2.0).sum(), [x, unused], allow_unused=True)
    assert nothing is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        tinygpt.autograd.grad((x * 2.0).sum(), [Tensor(np.ones(2))])
    with pytest.raises(RuntimeError, match="element 0 of tensors does not require grad"):
        tinygpt.autograd.grad(Tensor(np.ones(1)).sum(), [x])
    with pytest.raises(NotImplementedError, match="finite differences"):
        tinygpt.autograd.grad((x * x).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        tinygpt.autograd.grad(x * x, x)


def test_appendix_a_autograd_grad_matches_torch():
    """torch.autograd.grad with retain_graph=True, then backward, as appendix A does it."""
    torch = pytest.importorskip("torch")
    grads = {}
    for lib in (tinygpt, torch):
        x1 = lib.tensor([1.1], dtype=lib.float64)
        w1 = lib.tensor([2.2], dtype=lib.float64, requires_grad=True)
        b = lib.tensor([0.0], dtype=lib.float64, requires_grad=True)
        z = x1 * w1 + b
        loss = (1.0 + (-z).exp()).log().sum()  # -log(sigmoid(z)): the BCE of target 1
        g_w1 = lib.autograd.grad(loss, w1, retain_graph=True)
        g_b = lib.autograd.grad(loss, b, retain_graph=True)
        loss.backward()
        grads[lib.__name__] = [np.asarray(host(g[0].detach().numpy()))
                               for g in (g_w1, g_b)] + [w1.grad.numpy(), b.grad.numpy()]
    for mine, theirs in zip(grads["tinygpt"], grads["torch"]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12)


def test_backward_inputs_fills_only_those():
    x, w = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    (x * w).sum().backward(inputs=[w])
    assert x.grad is None
    np.testing.assert_allclose(host(w.grad), [1.0, 2.0])
