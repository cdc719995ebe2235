"""Tests for tinygpt.generation: listing 5.4's ``generate`` against ``generate_fast`` (the same
tokens for one seed, greedy and sampled), greedy parity with the book's torch loop (small
configs and GPT_CONFIG_124M, past the context length), the book's seed-123 output, sampling
options, per-row EOS in batches, streaming, model modes, and every bad argument."""

import numpy as np
import pytest

from tinygpt import backend
from tinygpt.generation import generate, generate_fast, generate_stream, generate_text_simple
from tinygpt.grad_mode import is_grad_enabled
from tinygpt.model import GPT_CONFIG_124M, GPTModel
from tinygpt.tensor import Tensor

from .helpers.assertions import host

torch = pytest.importorskip("torch")
from .reference.torch_gpt import GPTModel as TorchGPT  # noqa: E402
from .reference.torch_gpt import generate_text_simple as torch_generate_text_simple  # noqa: E402
from .reference.torch_gpt import numpy_state_dict  # noqa: E402

SMALL = {
    "vocab_size": 97, "context_length": 16, "emb_dim": 32, "n_heads": 4,
    "n_layers": 2, "drop_rate": 0.0, "qkv_bias": False,
}
SMALL_BIAS = dict(SMALL, qkv_bias=True, n_heads=2, n_layers=3, drop_rate=0.1)

# Section 5.3 / chapter 4: "Every effort moves you" and the untrained seed-123 model's
# 10 greedy tokens.
EVERY_EFFORT = [6109, 3626, 6100, 345]
BOOK_IDS = [34245, 5139, 2492, 25405, 17434, 17853, 5308, 3398, 13174, 43071]
BOOK_TEXT = " rentingetic wasnم refres RexMeCHicular stren"


def make_pair(cfg, seed=0):
    torch.manual_seed(seed)
    ref = TorchGPT(cfg)
    ref.eval()
    ours = GPTModel(cfg)
    ours.load_state_dict(numpy_state_dict(ref))
    return ours, ref


def torch_greedy(ref, prompt, n, context_size):
    out = torch_generate_text_simple(ref, torch.from_numpy(np.asarray(prompt)), n, context_size)
    return out.numpy()


@pytest.fixture(scope="module")
def small():
    return make_pair(SMALL, seed=0)


@pytest.fixture(scope="module")
def small_bias():
    return make_pair(SMALL_BIAS, seed=1)


@pytest.fixture(scope="module")
def book_124m():
    """The book's untrained model: torch.manual_seed(123); GPTModel(GPT_CONFIG_124M)."""
    return make_pair(GPT_CONFIG_124M, seed=123)


# ----------------------------------------------------------------------------- parity


@pytest.mark.parametrize("which", ["small", "small_bias"])
@pytest.mark.parametrize("context_size", [16, 5])
@pytest.mark.parametrize("batch", [1, 3])
def test_greedy_matches_torch_past_the_context_length(request, which, context_size, batch):
    ours, ref = request.getfixturevalue(which)
    prompt = np.random.default_rng(batch).integers(0, 97, size=(batch, 4))
    n = 25  # 4 + 25 tokens: past context_length 16 (and far past 5)
    expected = torch_greedy(ref, prompt, n, context_size)
    assert expected.shape == (batch, 4 + n)
    simple = generate_text_simple(ours, prompt, n, context_size)
    cached = generate_fast(ours, prompt, n, context_size)
    uncached = generate_fast(ours, prompt, n, context_size, use_cache=False)
    for name, got in [("simple", simple), ("cached", cached), ("uncached", uncached)]:
        assert got.dtype == np.int64, name
        np.testing.assert_array_equal(host(got), expected, err_msg=name)


def test_prompt_longer_than_the_context_is_cropped_like_the_book(small):
    ours, ref = small
    prompt = np.random.default_rng(7).integers(0, 97, size=(2, 40))  # 40 > 16
    expected = torch_greedy(ref, prompt, 6, 16)
    np.testing.assert_array_equal(host(generate_fast(ours, prompt, 6, 16)), expected)
    np.testing.assert_array_equal(host(generate_text_simple(ours, prompt, 6, 16)), expected)


def test_context_size_above_context_length_is_clamped(small):
    ours, ref = small
    prompt = [[1, 2, 3]]
    expected = torch_greedy(ref, prompt, 20, 16)  # the model cannot see more than 16
    np.testing.assert_array_equal(host(generate_fast(ours, prompt, 20, 1000)), expected)
    np.testing.assert_array_equal(
        host(generate_text_simple(ours, prompt, 20, 1000)), expected
    )


def test_book_seed_123_model_continues_every_effort_moves_you(book_124m):
    ours, ref = book_124m
    expected = torch_greedy(ref, [EVERY_EFFORT], 10, 256)
    np.testing.assert_array_equal(expected[0], EVERY_EFFORT + BOOK_IDS)  # the reference itself
    for use_cache in (True, False):
        out = generate_fast(ours, [EVERY_EFFORT], 10, 256, use_cache=use_cache)
        np.testing.assert_array_equal(host(out), expected)
    out = generate_text_simple(ours, np.array([EVERY_EFFORT]), 10, 256)
    np.testing.assert_array_equal(host(out), expected)
    tokenizer_module = pytest.importorskip("tinygpt.tokenizer")
    tokenizer = tokenizer_module.get_tokenizer()
    assert tokenizer.decode(out[0, 4:].tolist()) == BOOK_TEXT
    assert tokenizer.decode(out[0].tolist()) == "Every effort moves you" + BOOK_TEXT


def test_124m_greedy_past_the_context_length_matches_torch(book_124m):
    ours, ref = book_124m
    prompt = np.random.default_rng(3).integers(0, 50257, size=(1, 254))
    # 254 + 5 tokens: the 4th and 5th new tokens come from windows that have slid past
    # context_length 256 (the cache is re-primed twice).
    expected = torch_greedy(ref, prompt, 5, 256)
    np.testing.assert_array_equal(host(generate_fast(ours, prompt, 5, 256)), expected)


# ----------------------------------------------------------------------------- listing 5.4


BOOK_SETTINGS = [
    dict(),  # greedy
    dict(top_k=5),  # greedy: top-k never removes the argmax
    dict(temperature=1.4, top_k=25),  # the book's section 5.3.3 call
    dict(temperature=0.7),
    dict(temperature=2.0, top_k=3),
]


@pytest.mark.parametrize("settings", BOOK_SETTINGS, ids=repr)
@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("batch", [1, 2])
def test_listing_5_4_and_generate_fast_choose_the_same_tokens_for_one_seed(
        small_bias, settings, use_cache, batch):
    ours, _ = small_bias
    prompt = np.random.default_rng(batch).integers(0, 97, size=(batch, 3))
    saved = backend.get_rng_state()
    try:
        backend.manual_seed(123)
        book = generate(ours, Tensor(prompt), 25, 16, **settings)  # past context_length 16
        backend.manual_seed(123)
        fast = generate_fast(ours, prompt, 25, 16, use_cache=use_cache, **settings)
    finally:
        backend.set_rng_state(saved)
    assert isinstance(book, Tensor) and book.dtype == np.int64 and book.shape == (batch, 28)
    np.testing.assert_array_equal(host(book), host(fast))
    if settings.get("temperature"):  # the draws did something: not every row is greedy
        greedy = generate_fast(ours, prompt, 25, 16)
        assert not np.array_equal(host(book), host(greedy))


def test_listing_5_4_reproduces_the_books_greedy_tokens(book_124m):
    ours, ref = book_124m
    expected = torch_greedy(ref, [EVERY_EFFORT], 10, 256)
    out = generate(ours, Tensor(np.array([EVERY_EFFORT])), 10, 256)
    np.testing.assert_array_equal(host(out), expected)


def test_listing_5_4_greedy_matches_torch_past_the_context_length(small):
    ours, ref = small
    prompt = np.random.default_rng(5).integers(0, 97, size=(3, 4))
    for context_size in (16, 5, 1000):  # 1000 is clamped to context_length 16
        expected = torch_greedy(ref, prompt, 20, min(context_size, 16))
        np.testing.assert_array_equal(host(generate(ours, prompt, 20, context_size)), expected)


def test_listing_5_4_stops_at_eos_without_appending_it(small):
    ours, _ = small
    prompt = [[10, 11, 12]]
    free = host(generate(ours, prompt, 10, 16))[0, 3:]
    eos = int(free[2])
    first = int(np.flatnonzero(free == eos)[0])
    out = generate(ours, prompt, 10, 16, eos_id=eos)
    np.testing.assert_array_equal(host(out)[0], [10, 11, 12] + free[:first].tolist())
    np.testing.assert_array_equal(host(out), host(generate_fast(ours, prompt, 10, 16, eos_id=eos)))


def test_listing_5_4_sends_batches_with_eos_to_generate_fast(small):
    ours, _ = small
    with pytest.raises(NotImplementedError, match="generate_fast"):
        generate(ours, [[1, 2], [3, 4]], 5, 16, eos_id=3)


def test_listing_5_4_restores_the_model_mode_and_records_no_graph(small_bias):
    ours, _ = small_bias  # drop_rate 0.1: train mode would make greedy decoding random
    ours.eval()
    expected = host(generate(ours, [[1, 2, 3]], 12, 16))
    ours.train()
    ours.trf_blocks[0].eval()
    modes = [m.training for m in ours.modules()]
    out = generate(ours, [[1, 2, 3]], 12, 16)
    np.testing.assert_array_equal(host(out), expected)
    assert [m.training for m in ours.modules()] == modes
    assert not out.requires_grad and is_grad_enabled()
    assert all(p.grad is None for p in ours.parameters())
    ours.eval()


BAD_BOOK_ARGS = [
    ({"temperature": -0.5}, "temperature"),
    ({"top_k": 0}, "top_k"),
    ({"top_k": 98}, "top_k"),
    ({"max_new_tokens": -1}, "max_new_tokens"),
    ({"context_size": 0}, "context_size"),
    ({"idx": [[]]}, "empty"),
    ({"idx": [[1, 97]]}, "vocabulary"),
    ({"eos_id": 97}, "eos_id"),
]


@pytest.mark.parametrize("bad,match", BAD_BOOK_ARGS, ids=[repr(b) for b, _ in BAD_BOOK_ARGS])
def test_listing_5_4_bad_arguments_raise_value_error(small, bad, match):
    ours, _ = small
    args = {"idx": [[1, 2, 3]], "max_new_tokens": 3, "context_size": 16}
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        generate(ours, **args)


# ----------------------------------------------------------------------------- sampling options


def test_temperature_zero_is_greedy_even_with_top_k_and_top_p(small):
    ours, _ = small
    greedy = generate_fast(ours, [[5, 6, 7]], 12, 16)
    for kwargs in [{"top_k": 3}, {"top_p": 0.5}, {"top_k": 5, "top_p": 0.9}]:
        np.testing.assert_array_equal(
            host(generate_fast(ours, [[5, 6, 7]], 12, 16, **kwargs)), host(greedy)
        )


def test_top_k_1_equals_greedy_at_any_temperature(small):
    ours, _ = small
    prompt = np.random.default_rng(0).integers(0, 97, size=(2, 3))
    greedy = generate_fast(ours, prompt, 20, 16)
    for t in (0.5, 1.0, 3.0):
        sampled = generate_fast(ours, prompt, 20, 16, temperature=t, top_k=1)
        np.testing.assert_array_equal(host(sampled), host(greedy))


def test_seeded_sampling_is_reproducible(small):
    ours, _ = small
    prompt = [[1, 2, 3], [4, 5, 6]]
    kwargs = dict(temperature=1.5, top_k=20, top_p=0.95)
    a = generate_fast(ours, prompt, 20, 16, rng=42, **kwargs)
    b = generate_fast(ours, prompt, 20, 16, rng=np.random.default_rng(42), **kwargs)
    np.testing.assert_array_equal(host(a), host(b))
    assert not np.array_equal(host(a), host(generate_fast(ours, prompt, 20, 16, rng=43, **kwargs)))
    # The int seed makes one generator for the whole run: the steps do not all reuse
    # the same random number (with 97 tokens at T=1.5 a sample of 20 is not constant).
    assert len(set(a[0, 3:].tolist())) > 1
    # The default is the package generator: manual_seed reproduces a run.
    backend.manual_seed(7)
    c = generate_fast(ours, prompt, 20, 16, **kwargs)
    backend.manual_seed(7)
    np.testing.assert_array_equal(host(generate_fast(ours, prompt, 20, 16, **kwargs)), host(c))
    # The cache does not change what is sampled.
    np.testing.assert_array_equal(host(generate_fast(ours, prompt, 20, 16, rng=42, use_cache=False,
                                           **kwargs)), host(a))


# ----------------------------------------------------------------------------- EOS


def test_eos_single_prompt_stops_without_appending_it(small):
    ours, _ = small
    prompt = [[10, 11, 12]]
    free = generate_fast(ours, prompt, 10, 16)[0, 3:]
    eos = int(free[2])
    first = int(np.flatnonzero(free == eos)[0])
    out = generate_fast(ours, prompt, 10, 16, eos_id=eos)
    np.testing.assert_array_equal(host(out[0]), host([10, 11, 12] + free[:first].tolist()))
    # EOS on the very first step: only the prompt comes back.
    out = generate_fast(ours, prompt, 10, 16, eos_id=int(free[0]))
    np.testing.assert_array_equal(host(out), host(prompt))


def _find_eos_case(model, n, all_finish):
    """Prompts (3, 4) and an eos id that the rows first produce at different steps
    (greedy), every row (all_finish) or only some of them (not all_finish)."""
    for seed in range(200):
        prompts = np.random.default_rng(seed).integers(0, 97, size=(3, 4))
        free = generate_fast(model, prompts, n, 16)[:, 4:]  # (3, n) without EOS
        for eos in np.unique(free):
            steps = [np.flatnonzero(row == eos) for row in free]
            steps = [int(s[0]) if s.size else None for s in steps]
            found = [s for s in steps if s is not None]
            if len(set(found)) > 1 and (len(found) == len(steps)) == all_finish:
                return prompts, int(eos), steps
    pytest.fail("no prompts with the wanted EOS pattern; widen the search")


@pytest.mark.parametrize("all_finish", [True, False])
def test_eos_is_tracked_per_row_and_finished_rows_are_padded(small, all_finish):
    ours, _ = small
    n = 12
    prompts, eos, steps = _find_eos_case(ours, n, all_finish)
    out = generate_fast(ours, prompts, n, 16, eos_id=eos)
    for row, prompt in zip(out, prompts, strict=True):
        # Each row is its own single-prompt result, then eos_id padding.
        single = generate_fast(ours, prompt[None, :], n, 16, eos_id=eos)[0]
        np.testing.assert_array_equal(host(row[: single.size]), host(single))
        assert (row[single.size:] == eos).all()
    if all_finish:
        # Stops when the last row ends; that all-EOS step is not appended.
        assert out.shape[1] == 4 + max(steps)
    else:
        assert out.shape[1] == 4 + n
    assert (out[:, 4:] == eos).any(axis=1).sum() == sum(s is not None and s < out.shape[1] - 4
                                                        for s in steps)
    # The stream yields the same columns.
    columns = list(generate_stream(ours, prompts, n, 16, eos_id=eos))
    np.testing.assert_array_equal(host(np.stack(columns, axis=1)), host(out[:, 4:]))


def test_batch_rows_equal_single_prompt_greedy(small_bias):
    ours, _ = small_bias
    prompts = np.random.default_rng(2).integers(0, 97, size=(4, 5))
    batch = generate_fast(ours, prompts, 15, 16)
    for p, row in zip(prompts, batch, strict=True):
        np.testing.assert_array_equal(host(generate_fast(ours, p[None, :], 15, 16)[0]), host(row))


# ----------------------------------------------------------------------------- streaming


@pytest.mark.parametrize("use_cache", [True, False])
def test_stream_yields_the_same_columns_as_generate(small, use_cache):
    ours, _ = small
    prompts = np.random.default_rng(4).integers(0, 97, size=(2, 3))
    kwargs = dict(temperature=1.0, top_k=10, rng=3, use_cache=use_cache)
    columns = list(generate_stream(ours, prompts, 20, 16, **kwargs))
    assert len(columns) == 20
    for c in columns:
        assert c.shape == (2,) and c.dtype == np.int64
    full = generate_fast(ours, prompts, 20, 16, **kwargs)
    np.testing.assert_array_equal(host(np.stack(columns, axis=1)), host(full[:, 3:]))


def test_stream_checks_arguments_before_the_first_token(small):
    ours, _ = small
    with pytest.raises(ValueError, match="temperature"):
        generate_stream(ours, [[1, 2]], 5, 16, temperature=-1.0)  # no next() needed


# ----------------------------------------------------------------------------- model state


@pytest.mark.parametrize("use_cache", [True, False])
def test_generation_uses_eval_mode_and_restores_the_mode(small_bias, use_cache):
    ours, _ = small_bias  # drop_rate 0.1: train mode would make greedy decoding random
    ours.eval()
    expected = generate_fast(ours, [[1, 2, 3]], 20, 16, use_cache=use_cache)
    ours.train()
    ours.trf_blocks[0].eval()  # a mixed state must come back exactly
    modes = [m.training for m in ours.modules()]
    for _ in range(2):
        got = generate_fast(ours, [[1, 2, 3]], 20, 16, use_cache=use_cache)
        np.testing.assert_array_equal(host(got), expected)
        np.testing.assert_array_equal(
            host(generate_text_simple(ours, [[1, 2, 3]], 20, 16)), expected
        )
    assert [m.training for m in ours.modules()] == modes
    assert is_grad_enabled()
    ours.eval()


def test_generation_leaves_weights_and_gradients_alone(small):
    ours, _ = small
    before = {k: host(v).copy() for k, v in ours.state_dict().items()}
    generate_fast(ours, [[3, 4]], 20, 16)
    generate_fast(ours, [[3, 4]], 5, 16, use_cache=False)
    for name, p in ours.named_parameters():
        np.testing.assert_array_equal(host(p), host(before[name]), err_msg=name)
        assert p.grad is None, name


# ----------------------------------------------------------------------------- inputs


def test_prompt_forms(small):
    ours, _ = small
    expected = generate_fast(ours, np.array([[8, 9, 10]]), 4, 16)
    assert expected.shape == (1, 7)
    np.testing.assert_array_equal(host(generate_fast(ours, [[8, 9, 10]], 4, 16)), expected)
    one_prompt = generate_fast(ours, [8, 9, 10], 4, 16)
    np.testing.assert_array_equal(host(one_prompt), expected)
    np.testing.assert_array_equal(
        host(generate_fast(ours, np.array([8, 9, 10], np.int32), 4, 16)), expected
    )
    np.testing.assert_array_equal(
        host(generate_text_simple(ours, [8, 9, 10], 4, 16)), expected
    )


def test_zero_new_tokens_returns_the_prompt(small):
    ours, _ = small
    for fn in (generate_fast, generate_text_simple):
        out = fn(ours, [[1, 2, 3]], 0, 16)
        assert out.dtype == np.int64
        np.testing.assert_array_equal(host(out), [[1, 2, 3]])
    assert list(generate_stream(ours, [[1, 2, 3]], 0, 16)) == []


def test_float64_model_generates_the_same_tokens(small):
    ours, _ = small
    wide = GPTModel(SMALL, dtype=np.float64)
    wide.load_state_dict(ours.state_dict())
    prompt = [[1, 50, 3]]
    np.testing.assert_array_equal(
        host(generate_fast(wide, prompt, 20, 16)), host(generate_fast(ours, prompt, 20, 16))
    )


BAD_GENERATE_ARGS = [
    ({"temperature": -0.5}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"temperature": float("inf")}, "temperature"),
    ({"top_k": 0}, "top_k"),
    ({"top_k": -3}, "top_k"),
    ({"top_k": 98}, "top_k"),  # vocab_size is 97
    ({"top_k": 2.5}, "top_k"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"top_p": -0.1}, "top_p"),
    ({"top_p": float("nan")}, "top_p"),
    ({"max_new_tokens": -1}, "max_new_tokens"),
    ({"max_new_tokens": 2.0}, "max_new_tokens"),
    ({"context_size": 0}, "context_size"),
    ({"context_size": -4}, "context_size"),
    ({"idx": [[]]}, "empty"),
    ({"idx": np.zeros((2, 0), dtype=np.int64)}, "empty"),
    ({"idx": []}, "empty"),
    ({"idx": np.zeros((0, 3), dtype=np.int64)}, "no prompts"),
    ({"idx": [[1, 2], [3]]}, "different lengths"),
    ({"idx": [[1, 97]]}, "vocabulary"),
    ({"idx": [[-1, 2]]}, "vocabulary"),
    ({"idx": np.array([[1.0, 2.0]])}, "integers"),
    ({"idx": np.zeros((1, 2, 3), dtype=np.int64)}, "shape"),
    ({"eos_id": 97}, "eos_id"),
    ({"eos_id": -1}, "eos_id"),
    ({"rng": "seed"}, "rng"),
    ({"use_cache": "yes"}, "use_cache"),
]


@pytest.mark.parametrize(
    "bad,match", BAD_GENERATE_ARGS, ids=[repr(b) for b, _ in BAD_GENERATE_ARGS]
)
def test_bad_generate_arguments_raise_value_error(small, bad, match):
    ours, _ = small
    args = {"idx": [[1, 2, 3]], "max_new_tokens": 3, "context_size": 16}
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        generate_fast(ours, **args)
    with pytest.raises(ValueError, match=match):
        generate_stream(ours, **args)


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"max_new_tokens": -1}, "max_new_tokens"),
        ({"context_size": 0}, "context_size"),
        ({"idx": [[]]}, "empty"),
        ({"idx": [[1, 500]]}, "vocabulary"),
    ],
)
def test_bad_generate_text_simple_arguments_raise_value_error(small, bad, match):
    ours, _ = small
    args = {"idx": [[1, 2, 3]], "max_new_tokens": 3, "context_size": 16}
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        generate_text_simple(ours, **args)
