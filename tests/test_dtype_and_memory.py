"""float32 stays float32 (activations, gradients, scalar arithmetic, float64 inputs cast
once at the boundary), and training steps don't grow memory (the graph is freed)."""

import gc
import os
import weakref

import numpy as np
import pytest

import tinygpt
from tinygpt import (
    AdamW,
    FeedForward,
    GPTModel,
    LayerNorm,
    MultiHeadAttention,
    TransformerBlock,
    cross_entropy,
)
from tinygpt.autograd import Function
from tinygpt.nn import Linear
from tinygpt.tensor import Tensor

CFG = {"vocab_size": 61, "context_length": 10, "emb_dim": 16, "n_heads": 4,
       "n_layers": 2, "drop_rate": 0.1, "qkv_bias": True}


pytestmark = pytest.mark.usefixtures("keep_global_rng")


@pytest.fixture
def op_log(monkeypatch):
    """Records (op, "forward"/"backward", dtype) for every op output and every gradient
    an op's backward returns, by wrapping Function.apply."""
    log = []
    original_apply = Function.apply.__func__

    def recording_apply(cls, *inputs, **options):
        out = original_apply(cls, *inputs, **options)
        log.append((cls.__name__, "forward", out.dtype))
        fn = out.creator
        if fn is not None:
            backward = fn.backward

            def recording_backward(dy):
                grads = backward(dy)
                for g in grads if isinstance(grads, tuple) else (grads,):
                    if g is not None:
                        log.append((cls.__name__, "backward", g.dtype))
                return grads

            fn.backward = recording_backward
        return out

    monkeypatch.setattr(Function, "apply", classmethod(recording_apply))
    return log


def _assert_all_float32(log, what):
    bad = [entry for entry in log if entry[2] != np.float32]
    assert not bad, f"{what}: not float32: {sorted(set(bad), key=str)[:10]}"


# --- dtype ----------------------------------------------------------------------------------


def test_every_activation_and_gradient_of_a_float32_model_is_float32(op_log):
    tinygpt.manual_seed(0)
    model = GPTModel(CFG).train()  # dropout on: its masks must be float32 too
    rng = np.random.default_rng(0)
    ids = rng.integers(0, CFG["vocab_size"], size=(2, CFG["context_length"]))
    targets = rng.integers(0, CFG["vocab_size"], size=(2, CFG["context_length"]))
    targets[0, :3] = -100  # the ignore_index path as well
    logits = model(ids)
    loss = cross_entropy(logits, targets)
    loss.backward()
    ops_seen = {name for name, _, _ in op_log}
    for op in ("FusedEmbedding", "Add", "FusedDropout", "FusedLayerNorm", "FusedLinear",
               "FusedCausalAttention", "FusedGELU", "Reshape", "FusedCrossEntropy"):
        assert op in ops_seen, f"{op} was not recorded; the spy missed part of the model"
    assert any(stage == "backward" for _, stage, _ in op_log)
    _assert_all_float32(op_log, "op outputs and gradients")
    assert logits.dtype == np.float32 and loss.dtype == np.float32
    for name, p in model.named_parameters():
        assert p.dtype == np.float32, f"{name}: parameter dtype {p.dtype}"
        assert p.grad is not None and p.grad.dtype == np.float32, f"{name}: grad {p.grad.dtype}"
    opt = AdamW(model.parameters(), lr=1e-3)
    opt.step()
    for name, p in model.named_parameters():
        assert p.dtype == np.float32, f"{name}: parameter became {p.dtype} after AdamW.step"
    for state in opt.state.values():
        assert state["exp_avg"].dtype == state["exp_avg_sq"].dtype == np.float32


def test_float64_model_stays_float64():
    tinygpt.manual_seed(0)
    model = GPTModel(CFG, dtype=np.float64).train()
    ids = np.array([[1, 2, 3], [4, 5, 6]])
    loss = cross_entropy(model(ids), ids)
    assert loss.dtype == np.float64
    loss.backward()
    assert all(p.grad.dtype == np.float64 for p in model.parameters())


@pytest.mark.parametrize("module_name", ["Linear", "LayerNorm", "TransformerBlock"])
def test_float64_input_is_cast_once_at_the_module_boundary(module_name, op_log):
    tinygpt.manual_seed(0)
    module = {
        "Linear": lambda: Linear(8, 5),
        "LayerNorm": lambda: LayerNorm(8),
        "TransformerBlock": lambda: TransformerBlock(dict(CFG, emb_dim=8, n_heads=2)),
    }[module_name]()
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3, 8)), requires_grad=True)
    assert x.dtype == np.float64
    out = module(x)
    assert out.dtype == np.float32, f"{module_name} output {out.dtype}"
    casts = [e for e in op_log if e[0] == "Cast" and e[1] == "forward"]
    assert len(casts) == 1, f"expected one cast at the boundary, saw {len(casts)}"
    assert casts[0][2] == np.float32
    after_cast = op_log[op_log.index(casts[0]) + 1:]
    _assert_all_float32(after_cast, f"{module_name} ops after the cast")
    out.backward(np.ones(out.shape, dtype=np.float32))
    assert x.grad.dtype == np.float64  # the gradient comes back in the input's own dtype
    for p in module.parameters():
        assert p.grad.dtype == np.float32


@pytest.mark.parametrize("module_name", ["MultiHeadAttention", "FeedForward"])
def test_float64_input_never_reaches_past_the_first_ops(module_name, op_log):
    """Modules that start with Linears cast there: every op output is float32."""
    tinygpt.manual_seed(0)
    module = {
        "MultiHeadAttention": lambda: MultiHeadAttention(8, 8, 4, 0.0, num_heads=2),
        "FeedForward": lambda: FeedForward(dict(CFG, emb_dim=8)),
    }[module_name]()
    out = module(Tensor(np.random.default_rng(0).standard_normal((2, 3, 8))))
    assert out.dtype == np.float32
    _assert_all_float32(op_log, f"{module_name} ops")


def test_float64_plain_array_into_linear_gives_float32():
    layer = Linear(4, 3)
    out = layer(np.ones((2, 4)))  # a float64 NumPy array, not a Tensor
    assert out.dtype == np.float32


@pytest.mark.parametrize(
    "expr",
    [
        lambda t: t + 1, lambda t: 1 + t, lambda t: t - 2.5, lambda t: 2.5 - t,
        lambda t: t * 3, lambda t: 0.1 * t, lambda t: t / 3.0, lambda t: 3.0 / t,
        lambda t: -t, lambda t: t * np.float64(2.0), lambda t: (t * 0.5).exp() + 1e-3,
        lambda t: t.mean() * 2.0, lambda t: (t + 1.0).sqrt(), lambda t: t / 7,
    ],
)
def test_python_scalar_arithmetic_keeps_float32(expr):
    t = Tensor(np.linspace(0.5, 2.0, 6, dtype=np.float32), requires_grad=True)
    out = expr(t)
    assert out.dtype == np.float32
    out.backward(np.ones(out.shape, dtype=np.float32))
    assert t.grad.dtype == np.float32


def test_python_numbers_and_lists_become_float32_tensors():
    assert Tensor(1.5).dtype == np.float32
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert Tensor(np.ones(2)).dtype == np.float64  # an explicit array keeps its dtype
    assert tinygpt.loss.perplexity(Tensor(np.float32(0.0))) == 1.0


# --- memory ---------------------------------------------------------------------------------


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_training_steps_do_not_grow_resident_memory():
    cfg = {"vocab_size": 1024, "context_length": 64, "emb_dim": 64, "n_heads": 4,
           "n_layers": 2, "drop_rate": 0.1, "qkv_bias": False}
    tinygpt.manual_seed(0)
    model = GPTModel(cfg).train()
    opt = AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    B, T = 8, cfg["context_length"]
    batches = [rng.integers(0, cfg["vocab_size"], size=(2, B, T)) for _ in range(4)]
    creators = []

    def step(i):
        ids, targets = batches[i % len(batches)]
        opt.zero_grad()
        logits = model(ids)
        loss = cross_entropy(logits, targets)
        creators.append(weakref.ref(logits.creator))
        loss.backward()
        opt.step()
        return logits.array.nbytes

    for i in range(5):  # warm-up: optimizer state, allocator pools, caches
        logits_bytes = step(i)
    gc.collect()
    before = _rss_bytes()
    for i in range(20):
        step(i)
    gc.collect()
    grown = _rss_bytes() - before
    # One step's graph holds several (B, T, V) and (B, T, 4C) buffers (>= 4 x the
    # logits); keeping it would grow RSS by >= 20 x that. Allow 4 logits' worth of slack.
    slack = 4 * logits_bytes
    assert grown <= slack, (
        f"resident memory grew by {grown / 2**20:.1f} MiB over 20 steps "
        f"(allowed {slack / 2**20:.1f} MiB): something keeps each step's graph alive"
    )
    assert all(ref() is None for ref in creators), "a step's graph outlived its backward()"
