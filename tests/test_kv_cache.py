"""Tests for tinygpt.kv_cache: at every step, before and after the context limit, the
cached decoder's logits equal the uncached model's last-position logits (within 1e-5)
and greedy tokens are identical; buffers are preallocated and reused; the training
model is left untouched."""

import numpy as np
import pytest

from tinygpt import nn
from tinygpt.generation import generate_fast
from tinygpt.grad_mode import no_grad
from tinygpt.kv_cache import CachedDecoder, KVCache, cached_next_logits
from tinygpt.model import GPT_CONFIG_124M, GPTModel

from .helpers.assertions import assert_close, host

SMALL = {
    "vocab_size": 97, "context_length": 16, "emb_dim": 32, "n_heads": 4,
    "n_layers": 2, "drop_rate": 0.0, "qkv_bias": False,
}
SMALL_BIAS = dict(SMALL, qkv_bias=True, n_heads=2, n_layers=3, drop_rate=0.1)
# GPT-2 124M's layer shapes with a short context, so the window slides within a few steps.
SHORT_124M = dict(GPT_CONFIG_124M, context_length=12, qkv_bias=True)

CONFIGS = {"small": SMALL, "small-qkv-bias": SMALL_BIAS}
TOL = 1e-5


def make_model(cfg, seed=0, dtype=None):
    from tinygpt import backend

    backend.manual_seed(seed)
    model = GPTModel(cfg, dtype=dtype)
    # Random init gives small logits; scale the output head so the logits are O(1-10),
    # like a trained model's, and the tolerance means something.
    model.out_head.weight.data *= 8.0
    model.eval()
    return model


def uncached_last_logits(model, seq, window):
    with no_grad():
        return model(seq[:, -window:]).data[:, -1, :]


def run_both(model, prompt, n_steps, window):
    """Greedy decoding driven by the uncached model; the cached decoder is fed the same
    tokens. Returns the largest logits difference seen and the number of steps."""
    decoder = CachedDecoder(model, prompt.shape[0], window)
    seq = prompt.copy()
    cached = decoder.prime(prompt)
    worst = 0.0
    for step in range(n_steps):
        expected = uncached_last_logits(model, seq, window)
        assert cached.shape == expected.shape and cached.dtype == expected.dtype
        worst = max(worst, assert_close(f"logits at step {step} (sequence length "
                                        f"{seq.shape[1]}, window {window})",
                                        cached, expected, TOL))
        np.testing.assert_array_equal(host(cached.argmax(-1)), host(expected.argmax(-1)))
        next_ids = host(expected).argmax(-1)  # (B,)
        seq = np.concatenate([seq, next_ids[:, None]], axis=1)
        cached = decoder.feed(next_ids)
    return worst


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("window", [16, 6])
def test_logits_match_uncached_at_every_step_past_the_context_limit(name, batch, window):
    cfg = CONFIGS[name]
    model = make_model(cfg, seed=batch)
    prompt = np.random.default_rng(window).integers(0, cfg["vocab_size"], size=(batch, 4))
    # 4 + 30 tokens: the first window - 4 steps fill the cache, the rest slide it.
    run_both(model, prompt, 30, window)


@pytest.fixture(scope="module")
def short_124m():
    return make_model(SHORT_124M, seed=0)


@pytest.mark.parametrize("batch", [1, 2])
def test_gpt2_124m_shapes_logits_match_uncached(short_124m, batch):
    model = short_124m
    prompt = np.random.default_rng(batch).integers(0, 50257, size=(batch, 5))
    run_both(model, prompt, 10, 12)  # 5 + 10 > 12: slides from step 8 on


def test_prompt_longer_than_the_window_is_cropped():
    model = make_model(SMALL)
    prompt = np.random.default_rng(0).integers(0, 97, size=(2, 40))
    run_both(model, prompt, 5, 16)
    run_both(model, prompt, 5, 3)


def test_float64_model_matches_to_float64_precision():
    model = make_model(SMALL_BIAS, dtype=np.float64)
    prompt = np.random.default_rng(0).integers(0, 97, size=(2, 3))
    decoder = CachedDecoder(model, 2, 16)
    seq, logits = prompt, decoder.prime(prompt)
    for _ in range(20):
        assert logits.dtype == np.float64
        assert_close("logits f64", logits, uncached_last_logits(model, seq, 16), 1e-12)
        next_ids = host(logits).argmax(-1)
        seq = np.concatenate([seq, next_ids[:, None]], axis=1)
        logits = decoder.feed(next_ids)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("batch", [1, 3])
def test_cached_and_uncached_generate_give_identical_greedy_tokens(name, batch):
    cfg = CONFIGS[name]
    model = make_model(cfg, seed=2)
    prompt = np.random.default_rng(batch).integers(0, 97, size=(batch, 5))
    for context_size in (16, 7):
        a = generate_fast(model, prompt, 30, context_size, use_cache=True)
        b = generate_fast(model, prompt, 30, context_size, use_cache=False)
        np.testing.assert_array_equal(host(a), host(b))


def test_one_shot_helper_equals_the_model():
    model = make_model(SMALL_BIAS)
    ids = np.random.default_rng(0).integers(0, 97, size=(3, 11))
    assert_close("cached_next_logits", cached_next_logits(model, ids),
                 uncached_last_logits(model, ids, 16), TOL)


# ----------------------------------------------------------------------------- buffers


def test_buffers_are_preallocated_float32_and_reused():
    model = make_model(SMALL)
    decoder = CachedDecoder(model, batch_size=2, window=8)
    cache = decoder.cache
    assert isinstance(cache, KVCache)
    assert len(cache.keys) == len(cache.values) == SMALL["n_layers"]
    for buf in cache.keys + cache.values:
        assert buf.shape == (2, 4, 8, 8)  # (B, H, window, D)
        assert buf.dtype == np.float32
    assert cache.nbytes == 2 * 2 * (2 * 4 * 8 * 8) * 4
    ids_before = [id(b) for b in cache.keys + cache.values]
    logits = decoder.prime(np.array([[1, 2, 3], [4, 5, 6]]))
    assert cache.length == 3
    for step in range(20):  # fills the window at step 5, then slides (re-primes)
        assert logits.dtype == np.float32 and logits.shape == (2, 97)
        logits = decoder.feed(logits.argmax(-1))
        assert cache.length == min(3 + step + 1, 8)
    assert [id(b) for b in cache.keys + cache.values] == ids_before


def test_cache_uses_the_models_current_weights():
    model = make_model(SMALL)
    ids = np.array([[1, 2, 3]])
    decoder = CachedDecoder(model, 1)
    before = decoder.prime(ids).copy()
    model.trf_blocks[0].ff.layers[0].weight.data *= 0.5  # e.g. a training step in between
    after = decoder.prime(ids)
    assert not np.allclose(host(before), host(after))
    assert_close("after weight change", after, uncached_last_logits(model, ids, 16), TOL)


def test_the_cache_runs_the_models_own_modules():
    """One GPT forward: a module swapped into the model changes the cached logits exactly
    as it changes the uncached ones (a forward of the cache's own would not see it)."""
    model = make_model(SMALL)
    ids = np.array([[1, 2, 3, 4]])
    before = cached_next_logits(model, ids)
    ff = model.trf_blocks[1].ff  # the last block's GELU becomes a ReLU
    ff.layers = nn.Sequential(ff.layers[0], nn.ReLU(), ff.layers[2])
    after = cached_next_logits(model, ids)
    assert not np.allclose(host(before), host(after))
    assert_close("cached logits with ReLU", after, uncached_last_logits(model, ids, 16), TOL)


def test_the_cache_refuses_a_graph():
    model = make_model(SMALL)
    cache = KVCache(SMALL["n_layers"], 1, 4, 16, 8, np.float32)
    with pytest.raises(RuntimeError, match="no_grad"):
        model(np.array([[1, 2]]), kv_cache=cache)


def test_more_tokens_than_the_cache_or_the_context_holds_is_a_clear_error():
    model = make_model(SMALL)  # context 16
    cache = KVCache(SMALL["n_layers"], 1, 4, 32, 8, np.float32)  # room for 32
    with no_grad():
        model(np.arange(10)[None], kv_cache=cache)
        with pytest.raises(ValueError, match="holds 16 positions; 10 are cached"):
            model(np.arange(7)[None], kv_cache=cache)
        assert cache.length == 10  # nothing was written
        small = KVCache(SMALL["n_layers"], 1, 4, 4, 8, np.float32)
        with pytest.raises(ValueError, match="holds 4 positions; 0 are cached, so 5"):
            model(np.arange(5)[None], kv_cache=small)


def test_decoding_leaves_the_training_model_untouched():
    model = make_model(SMALL_BIAS)
    model.train()
    before = {k: host(v).copy() for k, v in model.state_dict().items()}
    decoder = CachedDecoder(model, 1)
    logits = decoder.prime(np.array([[1, 2]]))
    for _ in range(20):
        logits = decoder.feed(logits.argmax(-1))
    assert model.training  # eval mode only around each forward, then the mode given back
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(host(p), host(before[name]), err_msg=name)
        assert p.grad is None


def test_bad_decoder_use_raises():
    model = make_model(SMALL)
    with pytest.raises(ValueError, match="window"):
        CachedDecoder(model, 1, window=0)
    with pytest.raises(ValueError, match="window"):
        CachedDecoder(model, 1, window=17)
    decoder = CachedDecoder(model, 2)
    with pytest.raises(RuntimeError, match="prime"):
        decoder.feed(np.array([1, 2]))
    with pytest.raises(ValueError, match="shape"):
        decoder.prime(np.array([[1, 2]]))  # batch 1 into a batch-2 decoder
    with pytest.raises(ValueError, match="shape"):
        decoder.prime(np.zeros((2, 0), dtype=np.int64))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        decoder.prime(np.array([[1], [-1]]))
    with pytest.raises(ValueError, match="integers"):
        decoder.prime(np.array([[1.0], [2.0]]))
    decoder.prime(np.array([[1], [2]]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        decoder.feed(np.array([1, 97]))
    with pytest.raises(ValueError, match="one per row"):
        decoder.feed(np.array([1, 2, 3]))
