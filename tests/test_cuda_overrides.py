"""The GPU overrides' plumbing, on any machine: which class ``Function.apply`` picks, that
backward runs on the object that ran forward, and that the kernel classes pass the right
arrays, saved values and Philox draws. The kernels themselves are replaced by array code
(``FAKE_KERNELS``); tests/test_cuda_kernels.py checks the real ones on a GPU."""

import types

import numpy as np
import pytest

import tinygpt
from tinygpt import backend, fused, ops
from tinygpt.autograd import Function, op_for
from tinygpt.backend import philox_uniforms as uniforms
from tinygpt.backend import xp
from tinygpt.cuda import overrides
from tinygpt.loss import cross_entropy
from tinygpt.tensor import Tensor

from .helpers.assertions import assert_close, host

pytestmark = pytest.mark.usefixtures("keep_global_rng")


def _dropout(x, p, draw):
    keep = uniforms(x.shape, *draw, xp) >= np.float32(p)
    return x * (keep.astype(x.dtype) * (1.0 / (1.0 - p)))


def _layer_norm_forward(x, scale, shift, eps):
    mean = x.mean(axis=-1, keepdims=True)
    rstd = 1.0 / xp.sqrt(((x - mean) ** 2).mean(axis=-1, keepdims=True) + eps)
    return (x - mean) * rstd * scale + shift, mean.reshape(-1), rstd.reshape(-1)


def _layer_norm_backward(dy, x, scale, mean, rstd):
    C = x.shape[-1]
    rstd = rstd.reshape(*x.shape[:-1], 1)
    xhat = (x - mean.reshape(rstd.shape)) * rstd
    g = dy * scale
    dx = rstd * (g - g.mean(axis=-1, keepdims=True)
                 - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, (dy * xhat).reshape(-1, C).sum(axis=0), dy.reshape(-1, C).sum(axis=0)


def _attention_forward(scores, scale, dropout_p=0.0, draw=None):
    T = scores.shape[-1]
    scores *= scale
    scores += fused.causal_mask(T, T, scores.dtype)
    probs = ops.softmax_array(scores, out=scores)
    return probs, (_dropout(probs, dropout_p, draw) if dropout_p > 0.0 else probs)


def _attention_backward(d_dropped, probs, scale, dropout_p=0.0, draw=None):
    d = _dropout(d_dropped, dropout_p, draw) if dropout_p > 0.0 else d_dropped
    return probs * (d - (d * probs).sum(axis=-1, keepdims=True)) * scale


def _cross_entropy_parts(logits, targets, ignore_index):
    valid = targets != ignore_index
    rows, safe = xp.arange(logits.shape[0]), xp.where(valid, targets, 0)
    row_max = logits.max(axis=1, keepdims=True)
    lse = xp.log(xp.exp(logits - row_max).sum(axis=1)) + row_max[:, 0]
    return valid, rows, safe, lse


def _cross_entropy_forward(logits, targets, ignore_index):
    valid, rows, safe, lse = _cross_entropy_parts(logits, targets, ignore_index)
    n_counted = valid.sum().astype(np.float32)
    return ((lse - logits[rows, safe]) * valid).sum() / n_counted, lse, n_counted


def _cross_entropy_backward(logits, targets, lse, coef, ignore_index):
    valid, rows, safe, _ = _cross_entropy_parts(logits, targets, ignore_index)
    dz = xp.exp(logits - lse[:, None])
    dz[rows, safe] -= 1.0
    return dz * valid[:, None] * coef


def _embedding_backward(ids, dy, num_embeddings):
    dweight = xp.zeros((num_embeddings, dy.shape[-1]), dtype=dy.dtype)
    xp.add.at(dweight, ids.reshape(-1), dy.reshape(-1, dy.shape[-1]))
    return dweight


def _gelu_backward(x, dy):
    op = fused.FusedGELU()
    op.forward(x)
    return op.backward(dy)


FAKE_KERNELS = types.SimpleNamespace(
    dropout=_dropout, gelu_forward=lambda x: fused.FusedGELU().forward(x),
    gelu_backward=_gelu_backward, layer_norm_forward=_layer_norm_forward,
    layer_norm_backward=_layer_norm_backward, attention_softmax_forward=_attention_forward,
    attention_softmax_backward=_attention_backward, cross_entropy_forward=_cross_entropy_forward,
    cross_entropy_backward=_cross_entropy_backward, embedding_backward=_embedding_backward)


@pytest.fixture
def fake_kernels(monkeypatch):
    """The overrides on, with array code for kernels; ``on[0] = False`` turns them off."""
    on = [True]
    monkeypatch.setattr(overrides, "kernels", FAKE_KERNELS)
    monkeypatch.setattr(overrides, "available",
                        lambda *arrays: on[0] and all(a.dtype == np.float32 for a in arrays))
    before = backend.dropout_rng()
    backend.set_dropout_rng("philox")
    yield on
    backend.set_dropout_rng(before)


def test_each_fused_layer_with_a_kernel_is_registered_once_tinygpt_is_imported():
    assert tinygpt is not None
    assert Function.kernels == {
        fused.FusedDropout: overrides.DropoutKernel, fused.FusedGELU: overrides.GELUKernel,
        fused.FusedLayerNorm: overrides.LayerNormKernel,
        fused.FusedEmbedding: overrides.EmbeddingKernel,
        fused.FusedCausalAttention: overrides.CausalAttentionKernel,
        fused.FusedCrossEntropy: overrides.CrossEntropyKernel}
    for op, kernel in Function.kernels.items():
        assert issubclass(kernel, op)


def test_the_op_itself_runs_where_the_kernels_are_off():
    x = xp.ones((2, 3), dtype=np.float32)
    if not backend.kernels_enabled():
        assert type(op_for(fused.FusedGELU, [x], {})) is fused.FusedGELU
    with backend.kernels_disabled():
        assert type(op_for(fused.FusedGELU, [x], {})) is fused.FusedGELU
        out = fused.FusedGELU.apply(Tensor(x, requires_grad=True))
        assert type(out.grad_fn) is fused.FusedGELU


def test_the_kernel_is_chosen_per_call_and_backward_runs_on_the_same_object(fake_kernels):
    x32 = Tensor(xp.ones((2, 3), dtype=np.float32), requires_grad=True)
    x64 = Tensor(xp.ones((2, 3), dtype=np.float64), requires_grad=True)
    out32, out64 = fused.FusedGELU.apply(x32), fused.FusedGELU.apply(x64)
    assert type(out32.grad_fn) is overrides.GELUKernel  # float32: the kernel
    assert type(out64.grad_fn) is fused.FusedGELU  # float64: the op
    fake_kernels[0] = False  # the kernels turned off between forward and backward
    out32.sum().backward()
    assert_close("GELU grad", host(x32.grad), host(_gelu_backward(x32.array, x32.array * 0 + 1)),
                 1e-6)


def _run(fn, arrays, seed):
    tinygpt.manual_seed(seed)
    tensors = [Tensor(xp.asarray(a), requires_grad=True) for a in arrays]
    out = fn(*tensors)
    op = type(out.grad_fn)  # the graph is released by backward
    w = xp.asarray(np.random.default_rng(1).standard_normal(out.shape).astype(np.float32))
    out.backward(w)
    return op, host(out), [host(t.grad) for t in tensors]


rng = np.random.default_rng(0)
CASES = {
    "dropout": (lambda x: fused.FusedDropout.apply(x, p=0.3), [rng.standard_normal((5, 7))]),
    "gelu": (lambda x: fused.FusedGELU.apply(x), [3.0 * rng.standard_normal((4, 9))]),
    "layer norm": (lambda x, s, b: fused.FusedLayerNorm.apply(x, s, b, eps=1e-5),
                   [rng.standard_normal((2, 3, 8)), rng.uniform(0.5, 2, 8),
                    rng.standard_normal(8)]),
    "attention": (lambda q, k, v: fused.FusedCausalAttention.apply(q, k, v, dropout_p=0.25),
                  [rng.standard_normal((2, 2, 6, 4)) for _ in range(3)]),
    "cross-entropy": (lambda z: cross_entropy(z, np.array([2, -100, 0, 4])),
                      [rng.standard_normal((4, 5))]),
    "embedding": (lambda w: fused.FusedEmbedding.apply(
        w, xp.asarray(np.array([[1, 3, 1], [0, 1, 4]]))),
                  [rng.standard_normal((5, 3))]),
}


@pytest.mark.parametrize("name", CASES)
def test_each_kernel_class_equals_its_op(fake_kernels, name):
    """Same outputs, gradients and dropout masks (the same Philox draws) both ways."""
    fn, arrays = CASES[name]
    arrays = [a.astype(np.float32) for a in arrays]
    op, y, grads = _run(fn, arrays, seed=3)
    assert op in Function.kernels.values()
    fake_kernels[0] = False
    op_ref, y_ref, grads_ref = _run(fn, arrays, seed=3)
    assert Function.kernels[op_ref] is op
    assert_close(f"{name} forward", y, y_ref, 1e-5)
    for i, (g, r) in enumerate(zip(grads, grads_ref)):
        assert_close(f"{name} grad {i}", g, r, 1e-5)


def test_whole_model_draws_the_same_masks_with_the_kernels():
    """A training step with dropout: kernel classes and ops give the same loss and
    gradients, so each draws the same Philox masks in the same order."""
    cfg = {"vocab_size": 31, "context_length": 8, "emb_dim": 16, "n_heads": 2,
           "n_layers": 2, "drop_rate": 0.2, "qkv_bias": True}
    ids = np.random.default_rng(2).integers(0, 31, size=(2, 9))
    mp, before = pytest.MonkeyPatch(), backend.dropout_rng()
    results = []
    try:
        for on in (True, False):
            mp.setattr(overrides, "kernels", FAKE_KERNELS)
            mp.setattr(overrides, "available", lambda *a, on=on: on)
            backend.set_dropout_rng("philox")
            tinygpt.manual_seed(4)
            model = tinygpt.GPTModel(cfg).train()
            loss = cross_entropy(model(ids[:, :-1]), ids[:, 1:])
            loss.backward()
            results.append((loss.item(), [host(p.grad) for p in model.parameters()]))
    finally:
        mp.undo()
        backend.set_dropout_rng(before)
    (loss, grads), (loss_ref, grads_ref) = results
    assert abs(loss - loss_ref) <= 1e-5 * abs(loss_ref)
    largest = max(float(np.abs(r).max()) for r in grads_ref)
    for i, (g, r) in enumerate(zip(grads, grads_ref)):
        assert_close(f"grad {i}", g, r, 1e-4, floor=1e-3 * largest)
