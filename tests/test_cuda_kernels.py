"""Each fused CUDA kernel against its twin (the plain array code that runs with the kernels
off), on a GPU: ``TINYGPT_BACKEND=cupy``. Skipped elsewhere; ``tests/test_philox.py`` checks
on the CPU that the kernels' source compiles and that the Philox twin is the generator.

Tolerances: float32 kernels that reduce in another order, or call CUDA's tanhf / expf
instead of NumPy's, agree to ~1e-6 relative to the largest value; dropout masks, AdamW and
the embedding gradient are exact (same random bits; no fused multiply-add; sums in the
same order)."""

import numpy as np
import pytest

import tinygpt
from tinygpt import backend, fused
from tinygpt.kv_cache import CachedDecoder
from tinygpt.loss import cross_entropy
from tinygpt.optim import AdamW
from tinygpt.tensor import Tensor

from .helpers.assertions import assert_close, host
from .helpers.attention import multi_head_attention

pytestmark = [
    pytest.mark.skipif(not backend.kernels_enabled(),
                       reason="needs the CUDA kernels: TINYGPT_BACKEND=cupy on an NVIDIA GPU"),
    pytest.mark.usefixtures("keep_global_rng"),
]

TOL = 2e-5


def _device(*arrays):
    return [backend.asarray(np.asarray(a, dtype=np.float32)) for a in arrays]


def _both(fn, arrays, seed=0):
    """(kernel result, twin result) of fn(*Tensors) -> Tensor, and the inputs' gradients of
    sum(out * w) both ways. The dropout generator is reseeded before each run."""
    results = []
    w = None
    for disabled in (False, True):
        tinygpt.manual_seed(seed)
        tensors = [Tensor(a, requires_grad=True) for a in arrays]
        with backend.kernels_disabled() if disabled else _nothing():
            out = fn(*tensors)
            if w is None:
                w = backend.asarray(np.random.default_rng(1).standard_normal(out.shape)
                                    .astype(np.float32))
            out.backward(w)
        results.append((host(out), [host(t.grad) for t in tensors]))
    return results


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _check(name, fn, arrays, tol=TOL, exact=False, seed=0):
    (out, grads), (out_ref, grads_ref) = _both(fn, arrays, seed)
    if exact:
        np.testing.assert_array_equal(out, out_ref, err_msg=f"{name} forward")
        for i, (g, r) in enumerate(zip(grads, grads_ref)):
            np.testing.assert_array_equal(g, r, err_msg=f"{name} grad {i}")
        return
    assert_close(f"{name} forward", out, out_ref, tol)
    for i, (g, r) in enumerate(zip(grads, grads_ref)):
        assert_close(f"{name} grad {i}", g, r, tol)


rng = np.random.default_rng(0)


def test_philox_is_the_dropout_generator():
    assert backend.dropout_rng() == "philox"


@pytest.mark.parametrize("shape", [(7,), (3, 5, 11), (64, 1000)])
def test_dropout_kernel_equals_the_philox_twin(shape):
    _check("dropout", lambda x: fused.FusedDropout.apply(x, p=0.3),
           _device(rng.standard_normal(shape)), exact=True)


def test_gelu():
    x = 4.0 * rng.standard_normal((33, 257))
    _check("gelu", lambda t: fused.FusedGELU.apply(t), _device(x))


@pytest.mark.parametrize("C", [5, 64, 768])
def test_layer_norm(C):
    x, s, b = rng.standard_normal((3, 7, C)), rng.uniform(0.5, 2, C), rng.standard_normal(C)
    _check("layer norm", lambda x, s, b: fused.FusedLayerNorm.apply(x, s, b, eps=1e-5),
           _device(x, s, b))


@pytest.mark.parametrize("T,H,p", [(1, 1, 0.0), (7, 2, 0.0), (13, 3, 0.25), (64, 2, 0.1)])
def test_causal_attention(T, H, p):
    q, k, v = (rng.standard_normal((2, T, 6 * H)) for _ in range(3))
    _check("attention", lambda q, k, v: multi_head_attention(
        q, k, v, num_heads=H, dropout_p=p), _device(q, k, v))


@pytest.mark.parametrize("V", [7, 50257])
def test_cross_entropy_with_ignored_rows(V):
    z = 3.0 * rng.standard_normal((6, V))
    targets = np.array([2, -100, 0, 5, 5, 1])
    _check("cross-entropy", lambda z: cross_entropy(z, targets), _device(z))


def test_cross_entropy_all_rows_ignored_is_nan_like_torch():
    z = _device(rng.standard_normal((3, 5)))[0]
    loss = cross_entropy(Tensor(z, requires_grad=True), np.full(3, -100))
    assert np.isnan(float(loss.item()))


def test_embedding_gradient_is_numpys_add_at_bit_for_bit():
    weight = rng.standard_normal((50, 8)).astype(np.float32)
    ids = rng.integers(0, 50, size=(4, 300))  # many repeats
    dy = rng.standard_normal((4, 300, 8)).astype(np.float32)
    t = Tensor(backend.asarray(weight), requires_grad=True)
    fused.FusedEmbedding.apply(t, backend.asarray(ids)).backward(backend.asarray(dy))
    expected = np.zeros_like(weight)
    np.add.at(expected, ids.ravel(), dy.reshape(-1, 8))
    np.testing.assert_array_equal(host(t.grad), expected)


def test_adamw_kernel_is_the_twin_bit_for_bit():
    shapes = [(37,), (64, 33), (1000, 70)]
    params = {}
    for disabled in (False, True):
        local = np.random.default_rng(5)
        ps = [tinygpt.nn.Parameter(local.standard_normal(s).astype(np.float32)) for s in shapes]
        opt = AdamW(ps, lr=3e-3, weight_decay=0.1)
        with backend.kernels_disabled() if disabled else _nothing():
            for _ in range(4):
                for p in ps:
                    p.grad = backend.asarray(local.standard_normal(p.shape).astype(np.float32))
                opt.step()
        params[disabled] = [host(p.data) for p in ps]
    for a, b in zip(params[False], params[True]):
        np.testing.assert_array_equal(a, b)


CFG = {"vocab_size": 97, "context_length": 32, "emb_dim": 48, "n_heads": 4, "n_layers": 2,
       "drop_rate": 0.1, "qkv_bias": True}


def test_whole_model_loss_and_gradients():
    ids = rng.integers(0, CFG["vocab_size"], size=(3, CFG["context_length"] + 1))
    results = []
    for disabled in (False, True):
        tinygpt.manual_seed(4)
        model = tinygpt.GPTModel(CFG).train()
        with backend.kernels_disabled() if disabled else _nothing():
            loss = cross_entropy(model(ids[:, :-1]), ids[:, 1:])
            loss.backward()
        results.append((loss.item(), {n: host(p.grad) for n, p in model.named_parameters()}))
    (loss, grads), (loss_ref, grads_ref) = results
    assert abs(loss - loss_ref) <= 1e-5 * abs(loss_ref)
    largest = max(float(np.abs(g).max()) for g in grads_ref.values())
    for name in grads:
        assert_close(f"grad {name}", grads[name], grads_ref[name], 1e-4, floor=1e-3 * largest)


def test_training_is_deterministic():
    """No atomics anywhere: two runs of the same steps give the same bits (exact resume)."""
    ids = rng.integers(0, CFG["vocab_size"], size=(3, CFG["context_length"] + 1))
    runs = []
    for _ in range(2):
        tinygpt.manual_seed(6)
        model = tinygpt.GPTModel(CFG).train()
        opt = AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
        for _ in range(3):
            opt.zero_grad()
            cross_entropy(model(ids[:, :-1]), ids[:, 1:]).backward()
            opt.step()
        runs.append([host(p.data) for p in model.parameters()])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("batch,graphs", [(1, True), (3, True), (2, False), (9, True)])
def test_decode_step_equals_the_twin(batch, graphs):
    tinygpt.manual_seed(2)
    model = tinygpt.GPTModel(CFG).eval()
    prompt = rng.integers(0, CFG["vocab_size"], size=(batch, 5))
    feeds = rng.integers(0, CFG["vocab_size"], size=(12, batch))
    decoder = CachedDecoder(model, batch)
    assert decoder._step is not None, "the kernel decode step should apply to float32 on a GPU"
    decoder._step.use_graph = graphs
    ours = [host(decoder.prime(prompt))] + [host(decoder.feed(ids)) for ids in feeds]
    with backend.kernels_disabled():
        twin = CachedDecoder(model, batch)
        assert twin._step is None
        expected = [host(twin.prime(prompt))] + [host(twin.feed(ids)) for ids in feeds]
    for step, (a, b) in enumerate(zip(ours, expected)):
        assert_close(f"logits after {step} feeds", a, b, TOL)
    if graphs:
        assert decoder._step.graph is not None, decoder._step.graph_error
        assert decoder._step.graph_error is None


def test_decode_graph_follows_replaced_weights():
    tinygpt.manual_seed(3)
    model = tinygpt.GPTModel(CFG).eval()
    decoder = CachedDecoder(model, 1)
    prompt = np.array([[1, 2, 3]])
    decoder.prime(prompt)
    decoder.feed(np.array([4]))
    decoder.feed(np.array([5]))  # recorded
    model.out_head.weight.data = model.out_head.weight.data * 2.0  # a new array
    with backend.kernels_disabled():
        twin = CachedDecoder(model, 1)
        twin.prime(prompt)
        twin.feed(np.array([4]))
        twin.feed(np.array([5]))
        expected = twin.feed(np.array([6]))
    assert_close("after replacing a weight", decoder.feed(np.array([6])), expected, TOL)


def test_generate_greedy_tokens_match_the_uncached_loop():
    tinygpt.manual_seed(5)
    model = tinygpt.GPTModel(dict(CFG, drop_rate=0.0))
    prompt = rng.integers(0, CFG["vocab_size"], size=(2, 4))
    cached = tinygpt.generation.generate_fast(model, prompt, 40, CFG["context_length"])
    uncached = tinygpt.generation.generate_fast(model, prompt, 40, CFG["context_length"],
                                                use_cache=False)
    np.testing.assert_array_equal(cached, uncached)
