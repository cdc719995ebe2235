"""Dropout: seeded and repeatable, drops ~p of the entries, scales the rest by 1/(1-p)
exactly, and is the identity in eval mode (op, module, attention and whole model)."""

import math

import numpy as np
import pytest

import tinygpt
import tinygpt.nn.functional as F
from tinygpt import GPTModel
from tinygpt.nn import Dropout
from tinygpt.tensor import Tensor

from .helpers.assertions import host
from .helpers.attention import multi_head_attention

CFG = {"vocab_size": 53, "context_length": 12, "emb_dim": 16, "n_heads": 4,
       "n_layers": 2, "drop_rate": 0.2, "qkv_bias": False}


pytestmark = pytest.mark.usefixtures("keep_global_rng")


def x_like(shape, dtype=np.float32):
    # strictly positive inputs: a zero in the output can only come from the mask
    return np.random.default_rng(0).uniform(0.5, 1.5, size=shape).astype(dtype)


def test_seeded_dropout_repeats_and_different_draws_differ():
    drop = Dropout(0.5)
    x = Tensor(x_like((64, 64)))
    tinygpt.manual_seed(123)
    first = drop(x).data
    second = drop(x).data  # the generator moved on: a different mask
    tinygpt.manual_seed(123)
    again = drop(x).data
    np.testing.assert_array_equal(host(first), host(again))
    assert not np.array_equal(host(first), host(second))


def test_rng_state_round_trip_repeats_the_mask():
    x = Tensor(x_like((32, 32)))
    tinygpt.manual_seed(5)
    state = tinygpt.get_rng_state()
    first = F.dropout(x, 0.3).data
    tinygpt.set_rng_state(state)
    np.testing.assert_array_equal(host(F.dropout(x, 0.3).data), host(first))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fraction_dropped_is_p_and_kept_values_scale_exactly(p, dtype):
    n = 500_000
    x = x_like((n,), dtype)
    tinygpt.manual_seed(7)
    y = host(F.dropout(Tensor(x), p))
    assert y.dtype == dtype
    dropped = y == 0.0
    # the count of dropped entries is Binomial(n, p): allow 6 standard deviations
    sigma = math.sqrt(p * (1.0 - p) / n)
    assert abs(dropped.mean() - p) <= 6.0 * sigma, f"dropped {dropped.mean():.5f}, p={p}"
    # kept entries are x * 1/(1-p), bit for bit (the scale rounded once to dtype)
    scale = dtype(1.0 / (1.0 - p))
    np.testing.assert_array_equal(y[~dropped], x[~dropped] * scale)


def test_gradient_uses_the_same_mask():
    x = Tensor(x_like((20, 30), np.float64), requires_grad=True)
    tinygpt.manual_seed(9)
    y = F.dropout(x, 0.4)
    w = np.random.default_rng(1).standard_normal(y.shape)
    y.backward(w)
    mask = host(y) / host(x)  # 0 or 1/(1-p)
    np.testing.assert_allclose(host(x.grad), w * mask, rtol=1e-15)
    assert set(np.unique(np.round(mask, 12))) == {0.0, round(1 / 0.6, 12)}


def test_eval_mode_and_p_zero_are_the_identity():
    x = Tensor(x_like((8, 8)))
    drop = Dropout(0.5)
    drop.eval()
    state = tinygpt.get_rng_state()
    assert drop(x) is x
    assert F.dropout(x, 0.0) is x
    assert F.dropout(x, 0.7, training=False) is x
    assert tinygpt.get_rng_state() == state, "eval-mode dropout must not draw numbers"


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_module_rejects_bad_probability(p):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        Dropout(p)


def test_attention_dropout_drops_weights_and_keeps_rows_scaled():
    """With v = identity-like rows, the output is the (dropped, scaled) weight matrix."""
    B, T, p = 1, 64, 0.25
    q = np.zeros((B, T, T))  # equal scores: row t has weight 1/(t+1) on keys 0..t
    v = np.eye(T)[None]  # (1, T, T): out[t] = row t of the weights
    tinygpt.manual_seed(3)
    out = host(multi_head_attention(q, q, v, num_heads=1, dropout_p=p))[0]
    weights = np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]
    causal = weights > 0
    assert np.all(out[~causal] == 0.0), "dropout must not leak weight onto future tokens"
    kept = out[causal] != 0.0
    np.testing.assert_allclose(out[causal][kept], weights[causal][kept] / (1 - p), rtol=1e-12)
    n = causal.sum()
    assert abs((~kept).mean() - p) <= 6.0 * math.sqrt(p * (1 - p) / n)
    # eval (p=0): plain softmax weights, no draws
    np.testing.assert_allclose(
        host(multi_head_attention(q, q, v, num_heads=1))[0], weights, rtol=1e-12
    )


# --- whole model ----------------------------------------------------------------------------


@pytest.fixture
def model_and_ids():
    tinygpt.manual_seed(0)
    model = GPTModel(CFG)
    ids = np.random.default_rng(2).integers(0, CFG["vocab_size"], size=(2, CFG["context_length"]))
    return model, ids


def test_model_in_eval_mode_is_deterministic(model_and_ids):
    model, ids = model_and_ids
    model.eval()
    tinygpt.manual_seed(1)
    a = model(ids).data
    tinygpt.manual_seed(99)
    b = model(ids).data
    np.testing.assert_array_equal(host(a), host(b))
    assert all(not m.training for m in model.modules())


def test_model_in_train_mode_differs_across_calls_but_repeats_under_a_seed(model_and_ids):
    model, ids = model_and_ids
    model.train()
    tinygpt.manual_seed(1)
    a = model(ids).data
    b = model(ids).data
    tinygpt.manual_seed(1)
    c = model(ids).data
    assert not np.allclose(host(a), host(b)), "train-mode dropout should differ between calls"
    np.testing.assert_array_equal(host(a), host(c))
    model.eval()
    eval_out = model(ids).data
    assert not np.allclose(host(a), host(eval_out))


def test_model_with_drop_rate_zero_is_deterministic_in_train_mode():
    tinygpt.manual_seed(0)
    model = GPTModel(dict(CFG, drop_rate=0.0)).train()
    ids = np.array([[1, 2, 3, 4]])
    np.testing.assert_array_equal(host(model(ids).data), host(model(ids).data))
