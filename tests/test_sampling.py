"""Tests for tinygpt.sampling: the book's section 5.3 numbers and helpers
(``softmax_with_temperature``, ``print_sampled_tokens``, ``topk``, ``top_k_filter``'s two tie
rules), exact top-k/top-p sets,
greedy decoding, argument checks, a chi-square test that sampling draws from the exact
probabilities, and that the fast path draws what ``multinomial`` draws."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinygpt import backend
from tinygpt.ops import softmax_array
from tinygpt.sampling import (
    TOP_P_TOLERANCE,
    next_token_probabilities,
    print_sampled_tokens,
    process_logits,
    sample_next_token,
    softmax_with_temperature,
    top_k_filter,
    validate_sampling_args,
)
from tinygpt.tensors import multinomial, tensor, topk

from .helpers.assertions import host

ROOT = Path(__file__).resolve().parents[1]

# Section 5.3's example: vocabulary and next-token logits after "every effort moves you".
WORDS = ["closer", "every", "effort", "forward", "inches", "moves", "pizza", "toward", "you"]
LOGITS = np.array([4.51, 0.89, -1.90, 6.75, 1.63, -1.62, -1.89, 6.28, 1.79], dtype=np.float32)

# torch.softmax(LOGITS / T) (torch 2.x, float32), the values behind figure 5.14.
BOOK_PROBS = {
    1: [0.060907, 0.001631, 0.000100, 0.572120, 0.003419, 0.000133, 0.000101, 0.357576, 0.004012],
    0.1: [0.0, 0.0, 0.0, 0.990987, 0.0, 0.0, 0.0, 0.009013, 0.0],
    5: [0.154648, 0.074975, 0.042912, 0.242052, 0.086934, 0.045384, 0.042998, 0.220336, 0.089761],
}
BOOK_TOP3_PROBS = [0.0615, 0.0, 0.0, 0.5775, 0.0, 0.0, 0.0, 0.3610, 0.0]  # section 5.3.2


# ----------------------------------------------------------------------------- chi-square

# Upper 0.1% points of the chi-square distribution (scipy.stats.chi2.ppf(0.999, df)).
CHI2_CRITICAL_P001 = {
    1: 10.828,
    2: 13.816,
    3: 16.266,
    4: 18.467,
    5: 20.515,
    6: 22.458,
    7: 24.322,
    8: 26.124,
    9: 27.877,
    10: 29.588,
}


def chi2_critical_p001(df):
    """Table for small df, Wilson-Hilferty approximation beyond it."""
    if df in CHI2_CRITICAL_P001:
        return CHI2_CRITICAL_P001[df]
    z = 3.090232  # standard normal upper 0.1% point
    a = 2.0 / (9.0 * df)
    return df * (1.0 - a + z * math.sqrt(a)) ** 3


def assert_counts_match(counts, probs, label=""):
    """Pearson chi-square goodness of fit at p = 0.001.

    Zero-probability tokens must never be drawn; cells with an expected count below 5
    are pooled into one cell so the chi-square approximation holds.
    """
    counts = np.asarray(counts, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    n = counts.sum()
    zero = probs == 0
    assert counts[zero].sum() == 0, f"{label}: drew a zero-probability token"
    expected = n * probs / probs.sum()
    big = expected >= 5
    obs_cells = list(counts[big])
    exp_cells = list(expected[big])
    small = ~big & ~zero
    if small.any():
        obs_cells.append(counts[small].sum())
        exp_cells.append(expected[small].sum())
    obs_cells, exp_cells = np.array(obs_cells), np.array(exp_cells)
    df = len(obs_cells) - 1
    if df == 0:
        assert counts.sum() == n
        return
    stat = float(np.sum((obs_cells - exp_cells) ** 2 / exp_cells))
    crit = chi2_critical_p001(df)
    assert stat < crit, f"{label}: chi2 = {stat:.2f} >= {crit} (df={df})"


def test_wilson_hilferty_close_to_table():
    for df, crit in CHI2_CRITICAL_P001.items():
        a = 2.0 / (9.0 * df)
        approx = df * (1.0 - a + 3.090232 * math.sqrt(a)) ** 3
        assert abs(approx - crit) / crit < 0.035  # worst at df = 1 (3%)


# ----------------------------------------------------------------------------- softmax


def test_softmax_book_example():
    import tinygpt

    probas = tinygpt.softmax(tensor(LOGITS), dim=0)  # the book's torch.softmax(..., dim=0)
    assert probas.dtype == np.float32
    np.testing.assert_allclose(host(probas), BOOK_PROBS[1], atol=2e-6)
    assert abs(float(probas.sum()) - 1.0) < 1e-6
    assert int(tinygpt.argmax(probas)) == WORDS.index("forward")
    np.testing.assert_array_equal(host(probas), softmax_array(LOGITS))  # the host pipeline's


def test_softmax_array_stable_and_dtypes():
    big = np.array([1000.0, 1001.0, -np.inf], dtype=np.float32)
    p = softmax_array(big)
    assert p.dtype == np.float32 and np.isfinite(p).all()
    np.testing.assert_allclose(
        host(p), [1 / (1 + math.e), math.e / (1 + math.e), 0.0], rtol=1e-6
    )
    assert softmax_array(big.astype(np.float64)).dtype == np.float64
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(host(softmax_array(x, axis=0).sum(axis=0)), 1.0, rtol=1e-6)


@pytest.mark.parametrize("T", [1, 0.1, 5])
def test_softmax_with_temperature_book_tables(T):
    probs = softmax_with_temperature(LOGITS, T)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(host(probs), BOOK_PROBS[T], atol=1e-5)
    np.testing.assert_allclose(host(next_token_probabilities(LOGITS, T)), host(probs), rtol=1e-6)


def test_softmax_with_temperature_is_the_books_two_steps():
    import tinygpt

    for T in [1, 0.1, 5, 1.4]:
        probs = softmax_with_temperature(tensor(LOGITS), T)
        assert isinstance(probs, tinygpt.Tensor)
        np.testing.assert_array_equal(host(probs), host(tinygpt.softmax(tensor(LOGITS) / T, dim=0)))


def test_softmax_with_temperature_matches_torch():
    torch = pytest.importorskip("torch")
    for T in [1, 0.1, 5, 1.4]:
        ref = torch.softmax(torch.tensor(LOGITS) / T, dim=0).numpy()
        np.testing.assert_allclose(host(softmax_with_temperature(LOGITS, T)), ref, atol=1e-7)


def test_pizza_probability_exercise_5_1():
    pizza = WORDS.index("pizza")
    assert abs(float(next_token_probabilities(LOGITS, 5)[pizza]) - 0.0430) < 1e-4  # "about 4%"
    assert float(next_token_probabilities(LOGITS, 0.1)[pizza]) < 1e-30
    assert abs(float(next_token_probabilities(LOGITS, 1)[pizza]) - 0.0001) < 1e-5


# ----------------------------------------------------------------------------- top-k


def test_top3_book_example():
    values, positions = topk(LOGITS, 3)
    np.testing.assert_allclose(host(values), [6.75, 6.28, 4.51])
    assert positions.tolist() == [3, 7, 0]
    masked = process_logits(LOGITS, top_k=3)
    expected = np.full(9, -np.inf, dtype=np.float32)
    expected[[0, 3, 7]] = LOGITS[[0, 3, 7]]
    np.testing.assert_array_equal(host(masked), expected)
    probs = next_token_probabilities(LOGITS, 1.0, top_k=3)
    np.testing.assert_allclose(host(np.round(probs, 4)), BOOK_TOP3_PROBS, atol=1e-12)
    assert probs.dtype == np.float32


def test_topk_has_torchs_semantics():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(13).standard_normal((3, 7, 5)).astype(np.float32)
    for kw in [dict(), dict(dim=1), dict(dim=0, largest=False), dict(dim=-1, sorted=True)]:
        ours, ref = topk(tensor(x), 2, **kw), torch.topk(torch.tensor(x), 2, **kw)
        np.testing.assert_array_equal(host(ours.values), ref.values.numpy(), err_msg=repr(kw))
        np.testing.assert_array_equal(host(ours.indices), ref.indices.numpy(), err_msg=repr(kw))
        values, indices = ours
        assert indices.dtype == np.int64 and values.shape == tuple(ref.values.shape)


def test_topk_equals_the_first_k_of_a_stable_sort_with_ties_and_infinities():
    """topk picks in O(n) per row (a partition); its indices are still the stable sort's
    first k: ties in index order, -inf, inf and -0.0 included, on every dim."""
    rng = np.random.default_rng(7)
    for _ in range(400):
        shape = tuple(int(n) for n in rng.integers(1, 6, size=rng.integers(1, 4)))
        x = rng.integers(-3, 3, size=shape).astype(np.float32)
        x[rng.random(shape) < 0.15] = -np.inf
        x[rng.random(shape) < 0.05] = np.inf
        x[rng.random(shape) < 0.05] = -0.0
        dim = int(rng.integers(-len(shape), len(shape)))
        k, largest = int(rng.integers(0, shape[dim] + 1)), bool(rng.random() < 0.7)
        values, indices = topk(tensor(x), k, dim=dim, largest=largest)
        expected = np.take(np.argsort(-x if largest else x, axis=dim, kind="stable"),
                           np.arange(k), axis=dim)
        np.testing.assert_array_equal(host(indices), expected, err_msg=f"{x!r} k={k}")
        np.testing.assert_array_equal(host(values), np.take_along_axis(x, expected, dim))

def test_top_k_ties_keep_exactly_k_lowest_ids_first():
    logits = np.array([1.0, 2.0, 2.0, 2.0, 0.0], dtype=np.float32)
    # The book's `logits < min_val` rule would keep ids 1, 2, 3 for k = 2.
    kept = np.isfinite(process_logits(logits, top_k=2))
    assert np.flatnonzero(kept).tolist() == [1, 2]
    assert np.flatnonzero(np.isfinite(process_logits(logits, top_k=1))).tolist() == [1]
    assert np.flatnonzero(np.isfinite(process_logits(logits, top_k=4))).tolist() == [0, 1, 2, 3]
    equal = np.zeros(6, dtype=np.float32)
    assert np.flatnonzero(np.isfinite(process_logits(equal, top_k=3))).tolist() == [0, 1, 2]
    values, ids = topk(logits, 2)
    assert ids.tolist() == [1, 2] and values.tolist() == [2.0, 2.0]


def test_top_k_random_ties_match_stable_sort_reference():
    rng = np.random.default_rng(1)
    logits = rng.integers(-3, 3, size=(64, 20)).astype(np.float32)  # many ties
    for k in [1, 2, 5, 7, 19, 20]:
        kept = np.isfinite(process_logits(logits, top_k=k))
        assert (kept.sum(axis=1) == k).all()
        ref = np.zeros_like(kept)
        order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
        np.put_along_axis(ref, order, True, axis=1)
        np.testing.assert_array_equal(host(kept), ref)


def test_top_k_keeps_values_and_vocab_size_k_is_noop():
    x = np.random.default_rng(2).standard_normal((3, 10)).astype(np.float32)
    out = process_logits(x, top_k=4)
    np.testing.assert_array_equal(host(out[np.isfinite(out)]), host(x[np.isfinite(out)]))
    np.testing.assert_array_equal(host(process_logits(x, top_k=10)), x)


def test_top_k_filter_holds_both_tie_rules():
    logits = tensor(np.array([[1.0, 2.0, 2.0, 2.0, 0.0], [3.0, 1.0, 1.0, 0.0, 2.0]],
                             dtype=np.float32))
    book = top_k_filter(logits, 2)  # the book's: every logit tied at the 2nd largest stays
    exact = top_k_filter(logits, 2, exact=True)  # exactly 2, the lowest ids among ties
    assert np.isfinite(host(book)).tolist() == [[False, True, True, True, False],
                                                [True, False, False, False, True]]
    assert np.isfinite(host(exact)).tolist() == [[False, True, True, False, False],
                                                 [True, False, False, False, True]]
    for out in (book, exact):  # the kept logits are the logits themselves
        kept = np.isfinite(host(out))
        np.testing.assert_array_equal(host(out)[kept], host(logits)[kept])
    # exact=True is the mask of the fast pipeline
    np.testing.assert_array_equal(host(exact), process_logits(host(logits), top_k=2))
    np.testing.assert_array_equal(host(top_k_filter(logits, 5)), host(logits))  # k = V
    np.testing.assert_array_equal(host(top_k_filter(logits, 5, exact=True)), host(logits))


def test_top_k_filter_book_rule_matches_torch_and_exact_rule_the_stable_sort():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.integers(-3, 3, size=(16, 12)).astype(np.float32)  # many ties
    x[rng.random(x.shape) < 0.1] = -np.inf
    for k in [1, 2, 5, 12]:
        ref = torch.tensor(x)
        top_logits, _ = torch.topk(ref, k)
        ref = torch.where(ref < top_logits[:, -1:], torch.tensor(float("-inf")), ref)
        np.testing.assert_array_equal(host(top_k_filter(tensor(x), k)), ref.numpy())
        order = np.argsort(-x, axis=1, kind="stable")[:, :k]
        expected = np.full_like(x, -np.inf)
        np.put_along_axis(expected, order, np.take_along_axis(x, order, 1), axis=1)
        np.testing.assert_array_equal(host(top_k_filter(tensor(x), k, exact=True)), expected)
    one_row = top_k_filter(LOGITS, 3)  # section 5.3.2's 1-D example
    np.testing.assert_array_equal(host(one_row), host(process_logits(LOGITS, top_k=3)))


@pytest.mark.parametrize("top_k,match", [(0, "top_k"), (10, "vocabulary size 9"),
                                         (2.5, "top_k"), (None, "top_k")])
def test_top_k_filter_bad_arguments(top_k, match):
    for exact in (False, True):
        with pytest.raises(ValueError, match=match):
            top_k_filter(tensor(LOGITS), top_k, exact=exact)
    with pytest.raises(ValueError, match="NaN"):
        top_k_filter(tensor([1.0, float("nan")]), 1, exact=True)


# ----------------------------------------------------------------------------- top-p


def kept_ids(logits, **kw):
    return np.flatnonzero(np.isfinite(process_logits(logits, **kw))).tolist()


def test_top_p_one_keeps_all_nonzero():
    np.testing.assert_array_equal(
        host(process_logits(LOGITS, temperature=1.0, top_p=1.0)), LOGITS
    )
    np.testing.assert_allclose(
        host(next_token_probabilities(LOGITS, 1.0, top_p=1.0)), softmax_array(LOGITS), rtol=1e-7
    )
    # after top-k, p = 1 keeps exactly the top-k survivors
    assert kept_ids(LOGITS, temperature=1.0, top_k=3, top_p=1.0) == [0, 3, 7]


def test_top_p_tiny_keeps_one():
    assert kept_ids(LOGITS, temperature=1.0, top_p=1e-12) == [3]
    assert kept_ids(np.zeros(5, dtype=np.float32), temperature=1.0, top_p=1e-12) == [0]
    probs = next_token_probabilities(LOGITS, 1.0, top_p=1e-12)
    np.testing.assert_array_equal(host(probs), np.eye(9, dtype=np.float32)[3])


def test_top_p_exact_boundaries():
    equal = np.zeros(4, dtype=np.float32)  # probabilities exactly 0.25 each
    assert kept_ids(equal, temperature=1.0, top_p=0.25) == [0]
    assert kept_ids(equal, temperature=1.0, top_p=0.5) == [0, 1]
    assert kept_ids(equal, temperature=1.0, top_p=0.75) == [0, 1, 2]
    assert kept_ids(equal, temperature=1.0, top_p=0.501) == [0, 1, 2]
    # (0.125, 0.5, 0.125, 0.25) from float32 logs: the mass reaches p exactly at each step
    logits = np.log(np.array([0.125, 0.5, 0.125, 0.25])).astype(np.float32)
    assert kept_ids(logits, temperature=1.0, top_p=0.5) == [1]
    assert kept_ids(logits, temperature=1.0, top_p=0.75) == [1, 3]
    assert kept_ids(logits, temperature=1.0, top_p=0.875) == [0, 1, 3]  # tie: lower id
    assert kept_ids(logits, temperature=1.0, top_p=0.876) == [0, 1, 2, 3]
    assert kept_ids(logits, temperature=1.0, top_p=0.49) == [1]
    assert kept_ids(logits, temperature=1.0, top_p=0.51) == [1, 3]


def test_top_p_is_smallest_set_reaching_p_random():
    rng = np.random.default_rng(3)
    logits = (2.0 * rng.standard_normal((50, 30))).astype(np.float32)
    for T, p in [(1.0, 0.3), (1.0, 0.9), (0.5, 0.95), (2.0, 0.6)]:
        kept = np.isfinite(process_logits(logits, temperature=T, top_p=p))
        probs = softmax_array(logits.astype(np.float64) / T)
        for row in range(logits.shape[0]):
            mass = probs[row, kept[row]].sum()
            assert mass >= p - TOP_P_TOLERANCE
            # dropping the least likely kept token falls short: the set is the smallest
            assert mass - probs[row, kept[row]].min() < p
            # it holds the most probable tokens
            assert probs[row, kept[row]].min() >= probs[row, ~kept[row]].max(initial=0.0)


def test_top_p_after_temperature_and_top_k():
    # T = 1: forward alone has 0.572 >= 0.5; T = 5 flattens: forward+toward 0.462 < 0.5
    assert kept_ids(LOGITS, temperature=1.0, top_p=0.5) == [3]
    assert kept_ids(LOGITS, temperature=5.0, top_p=0.5) == [0, 3, 7]
    # after top-3 the probabilities renormalise: forward+toward = 0.9385 >= 0.9
    assert kept_ids(LOGITS, temperature=1.0, top_k=3, top_p=0.9) == [3, 7]
    assert kept_ids(LOGITS, temperature=1.0, top_k=3, top_p=0.95) == [0, 3, 7]
    probs = next_token_probabilities(LOGITS, 1.0, top_k=3, top_p=0.9)
    np.testing.assert_allclose(host(probs[[3, 7]]), [0.6154, 0.3846], atol=1e-4)


def test_top_k_then_top_p_same_as_two_passes():
    # With top_k set, the nucleus is searched among the k survivors only (fast path);
    # it must agree with running top-p over the whole masked row.
    rng = np.random.default_rng(10)
    x = rng.integers(-4, 4, size=(40, 25)).astype(np.float32)  # many ties
    x[0, :20] = -np.inf  # fewer finite logits than k
    for T, k, p in [(1.0, 5, 0.5), (0.5, 10, 0.9), (2.0, 24, 0.3), (1.0, 7, 0.999)]:
        fast = process_logits(x, temperature=T, top_k=k, top_p=p)
        two_pass = process_logits(process_logits(x, top_k=k), temperature=T, top_p=p)
        np.testing.assert_array_equal(host(fast), host(two_pass))


# ----------------------------------------------------------------------------- batches


SETTINGS = [
    dict(temperature=0.0),
    dict(temperature=1.0),
    dict(temperature=0.7, top_k=5),
    dict(temperature=1.3, top_p=0.8),
    dict(temperature=2.0, top_k=10, top_p=0.5),
    dict(temperature=0.0, top_k=3, top_p=0.2),
]


@pytest.mark.parametrize("kw", SETTINGS)
def test_batch_rows_independent(kw):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 40)).astype(np.float32)
    x[2] = np.round(x[2])  # a row with ties
    batch = process_logits(x, **kw)
    rows = np.stack([process_logits(r, **kw) for r in x])
    np.testing.assert_array_equal(host(batch), host(rows))
    probs = next_token_probabilities(x, kw["temperature"], kw.get("top_k"), kw.get("top_p"))
    rows = np.stack(
        [
            next_token_probabilities(r, kw["temperature"], kw.get("top_k"), kw.get("top_p"))
            for r in x
        ]
    )
    np.testing.assert_allclose(host(probs), host(rows), rtol=1e-6, atol=0)
    np.testing.assert_allclose(host(probs.sum(axis=-1)), 1.0, rtol=1e-5)


def test_input_not_modified():
    x = np.random.default_rng(5).standard_normal((2, 12)).astype(np.float32)
    before = x.copy()
    out = process_logits(x)  # nothing to do: still a new array
    out[:] = 0.0
    for kw in SETTINGS:
        process_logits(x, **kw)
        sample_next_token(x, **kw, rng=0)
    np.testing.assert_array_equal(x, before)


# ----------------------------------------------------------------------------- greedy


def test_greedy_ignores_top_k_top_p_and_rng():
    x = np.array([[0.0, 3.0, 3.0, 1.0], [5.0, -1.0, 5.0, 9.0]], dtype=np.float32)
    gen = np.random.default_rng(7)
    state = gen.bit_generator.state
    for kw in [{}, dict(top_k=1), dict(top_k=3, top_p=0.01), dict(top_p=0.99)]:
        ids = sample_next_token(x, temperature=0.0, rng=gen, **kw)
        assert ids.shape == (2, 1) and ids.dtype == np.int64
        assert ids[:, 0].tolist() == [1, 3]  # tie 3.0 at ids 1, 2 -> lowest id
        probs = next_token_probabilities(x, 0.0, **kw)
        np.testing.assert_array_equal(host(probs), host(np.eye(4, dtype=np.float32)[[1, 3]]))
    assert gen.bit_generator.state == state  # greedy draws nothing
    one = sample_next_token(LOGITS)
    assert one.shape == (1,) and one.dtype == np.int64 and WORDS[int(one[0])] == "forward"


def test_greedy_matches_torch_argmax_on_ties():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(8).integers(0, 3, size=(16, 7)).astype(np.float32)
    ref = torch.argmax(torch.tensor(x), dim=-1, keepdim=True).numpy()
    np.testing.assert_array_equal(host(sample_next_token(x)), ref)


# ----------------------------------------------------------------------------- sampling


CHI2_SETTINGS = [
    (1.0, None, None),
    (1.0, 3, None),
    (5.0, None, None),
    (5.0, 5, None),
    (2.0, None, 0.8),
    (0.7, 4, 0.95),
    (1.4, 6, 0.99),
]


@pytest.mark.parametrize("temperature,top_k,top_p", CHI2_SETTINGS)
def test_sampling_matches_exact_probabilities(temperature, top_k, top_p):
    n = 10_000
    batch = np.broadcast_to(LOGITS, (n, LOGITS.size))  # one draw per row
    ids = sample_next_token(batch, temperature, top_k, top_p, rng=1234)
    assert ids.shape == (n, 1) and ids.dtype == np.int64
    counts = np.bincount(ids[:, 0], minlength=LOGITS.size)
    probs = next_token_probabilities(LOGITS, temperature, top_k, top_p)
    assert_counts_match(counts, probs, f"T={temperature} k={top_k} p={top_p}")


def test_sampling_batch_rows_use_their_own_distribution():
    n = 5_000
    rows = np.stack([LOGITS, LOGITS[::-1]])  # two different distributions
    batch = np.tile(rows, (n, 1))  # alternating rows
    ids = sample_next_token(batch, 2.0, rng=np.random.default_rng(99))[:, 0]
    for r in range(2):
        counts = np.bincount(ids[r::2], minlength=LOGITS.size)
        assert_counts_match(counts, next_token_probabilities(rows[r], 2.0), f"row {r}")


def test_sampling_one_uniform_per_row_and_rng_kinds():
    x = np.broadcast_to(LOGITS, (6, 9))
    a = sample_next_token(x, 1.0, rng=np.random.default_rng(11))
    gen = np.random.default_rng(11)
    u = gen.random(6)
    cdf = np.cumsum(softmax_array(LOGITS).astype(np.float64))
    expected = np.searchsorted(cdf, u * cdf[-1], side="right")
    np.testing.assert_array_equal(host(a[:, 0]), expected)
    # an int seed is a fresh generator each call
    np.testing.assert_array_equal(
        host(sample_next_token(x, 1.0, rng=5)), host(sample_next_token(x, 1.0, rng=5))
    )
    # None uses the package generator, reseeded by manual_seed
    saved = backend.get_rng_state()
    try:
        backend.manual_seed(42)
        first = sample_next_token(x, 3.0)
        backend.manual_seed(42)
        np.testing.assert_array_equal(host(sample_next_token(x, 3.0)), host(first))
    finally:
        backend.set_rng_state(saved)


def test_sampling_draws_what_multinomial_draws():
    # the fast path's draw is multinomial's: the same generator state, the same tokens
    x = np.random.default_rng(12).standard_normal((4, 30)).astype(np.float32)
    for kw in SETTINGS[1:-1]:
        ids = sample_next_token(x, rng=np.random.default_rng(8), **kw)
        probs = next_token_probabilities(x, kw["temperature"], kw.get("top_k"), kw.get("top_p"))
        expected = multinomial(tensor(probs), 1, generator=np.random.default_rng(8))
        np.testing.assert_array_equal(host(ids), host(expected))


def test_zero_probability_tokens_never_drawn():
    x = np.array([-np.inf, 0.0, -np.inf, 0.0, -np.inf], dtype=np.float32)
    ids = sample_next_token(np.broadcast_to(x, (2000, 5)), 1.0, rng=0)[:, 0]
    assert set(ids.tolist()) <= {1, 3}
    ids = sample_next_token(np.broadcast_to(LOGITS, (2000, 9)), 1.0, top_k=2, rng=0)[:, 0]
    assert set(ids.tolist()) == {3, 7}


def test_large_vocab():
    rng = np.random.default_rng(6)
    x = (3.0 * rng.standard_normal((2, 50257))).astype(np.float32)
    probs = next_token_probabilities(x, 0.8, top_k=200, top_p=0.9)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(host(probs.sum(axis=-1)), 1.0, rtol=1e-5)
    assert ((probs > 0).sum(axis=-1) <= 200).all()
    ids = sample_next_token(x, 0.8, top_k=200, top_p=0.9, rng=3)
    assert ids.shape == (2, 1) and (probs[[0, 1], ids[:, 0]] > 0).all()


# ----------------------------------------------------------------------------- dtypes


def test_dtypes_preserved():
    x32 = np.random.default_rng(9).standard_normal((3, 11)).astype(np.float32)
    for kw in SETTINGS:
        assert process_logits(x32, **kw).dtype == np.float32
        assert (
            next_token_probabilities(x32, kw["temperature"], kw.get("top_k"), kw.get("top_p")).dtype
            == np.float32
        )
    assert softmax_with_temperature(x32, 0.5).dtype == np.float32
    x64 = x32.astype(np.float64)
    assert next_token_probabilities(x64, 1.0, top_p=0.5).dtype == np.float64
    assert next_token_probabilities(x32.tolist(), 1.0).dtype == np.float32


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(temperature=-0.5), "temperature must be >= 0"),
        (dict(temperature=float("nan")), "temperature must be finite"),
        (dict(temperature=float("inf")), "temperature must be finite"),
        (dict(temperature="1.0"), "temperature must be a number"),
        (dict(temperature=True), "temperature must be a number"),
        (dict(temperature=1.0, top_k=0), "top_k must be None or an integer >= 1"),
        (dict(temperature=1.0, top_k=-3), "top_k must be None or an integer >= 1"),
        (dict(temperature=1.0, top_k=10), "larger than the vocabulary size 9"),
        (dict(temperature=1.0, top_k=2.5), "top_k must be None or an integer"),
        (dict(temperature=1.0, top_k=3.0), "top_k must be None or an integer"),
        (dict(temperature=1.0, top_k="3"), "top_k must be None or an integer"),
        (dict(temperature=1.0, top_k=True), "top_k must be None or an integer"),
        (dict(temperature=1.0, top_p=0.0), r"top_p must be in \(0, 1\]"),
        (dict(temperature=1.0, top_p=-0.1), r"top_p must be in \(0, 1\]"),
        (dict(temperature=1.0, top_p=1.5), r"top_p must be in \(0, 1\]"),
        (dict(temperature=1.0, top_p=float("nan")), r"top_p must be in \(0, 1\]"),
        (dict(temperature=1.0, top_p="0.9"), "top_p must be None or a number"),
        (dict(temperature=0.0, top_k=0), "top_k must be None or an integer >= 1"),  # even greedy
    ],
)
def test_bad_arguments_raise(kw, match):
    with pytest.raises(ValueError, match=match):
        validate_sampling_args(kw.get("temperature"), kw.get("top_k"), kw.get("top_p"), 9)
    with pytest.raises(ValueError, match=match):
        process_logits(LOGITS, **kw)
    with pytest.raises(ValueError, match=match):
        sample_next_token(LOGITS, **kw)
    t = kw.pop("temperature")
    with pytest.raises(ValueError, match=match):
        next_token_probabilities(LOGITS, t, **kw)


def test_validate_returns_normalised_values():
    assert validate_sampling_args(1, np.int64(3), 0.5, 9) == (1.0, 3, 0.5)
    assert validate_sampling_args(0.0, None, None, 9) == (0.0, None, None)
    t, k, p = validate_sampling_args(np.float32(0.5), 9, np.float64(1.0), 9)
    assert (type(t), type(k), type(p)) == (float, int, float)
    assert validate_sampling_args(1.0, 100, None, None)[1] == 100  # no vocab bound


def test_bad_logits_and_rng_raise():
    with pytest.raises(ValueError, match=r"logits\[:, -1, :\]"):
        sample_next_token(np.zeros((2, 3, 9), dtype=np.float32), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        process_logits(np.array([0.0, np.nan], dtype=np.float32))
    with pytest.raises(ValueError, match=r"\+inf"):
        next_token_probabilities(np.array([0.0, np.inf], dtype=np.float32), 1.0)
    with pytest.raises(ValueError, match="entirely -inf"):
        sample_next_token(np.full((1, 4), -np.inf, dtype=np.float32), 1.0)
    with pytest.raises(ValueError, match="rng must be"):
        sample_next_token(LOGITS, 1.0, rng="seed")
    with pytest.raises(ValueError, match="temperature > 0"):
        softmax_with_temperature(LOGITS, 0.0)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        softmax_with_temperature(LOGITS, -1.0)


# ----------------------------------------------------------------------------- print helper


def test_print_sampled_tokens(capsys):
    probas = softmax_array(LOGITS)
    counts = print_sampled_tokens(probas, dict(enumerate(WORDS)))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 9  # every word, zeros included
    assert lines == [f"{c} x {w}" for c, w in zip(counts, WORDS, strict=True)]
    assert counts.dtype == np.int64 and counts.sum() == 1000
    assert counts[[2, 5, 6]].sum() <= 3  # effort, moves, pizza: p ~ 1e-4 each
    again = print_sampled_tokens(probas, WORDS, seed=123)  # a list works too
    np.testing.assert_array_equal(host(again), host(counts))
    big = print_sampled_tokens(probas, WORDS, num_samples=10_000, seed=7)
    assert_counts_match(big, probas, "print_sampled_tokens")


def test_print_sampled_tokens_counts_multinomial_draws(capsys):
    probas = softmax_with_temperature(LOGITS, 5)
    saved = backend.get_rng_state()
    try:
        backend.manual_seed(1)
        counts = print_sampled_tokens(probas)  # the book's call: the toy vocabulary
        assert [float(x) for x in backend.get_rng().random(2)] == [
            float(x) for x in np.random.default_rng(1).random(2)]  # package generator untouched
    finally:
        backend.set_rng_state(saved)
    gen = np.random.default_rng(123)
    draws = [multinomial(probas, 1, generator=gen).item() for _ in range(1000)]
    np.testing.assert_array_equal(host(counts), np.bincount(draws, minlength=9))
    assert capsys.readouterr().out.splitlines()[3] == f"{int(counts[3])} x forward"


def test_print_sampled_tokens_bad_input():
    with pytest.raises(ValueError, match="no entry for token id 8"):
        print_sampled_tokens(softmax_array(LOGITS), WORDS[:8])
    with pytest.raises(ValueError, match="1-D"):
        print_sampled_tokens(softmax_array(LOGITS)[None], WORDS)
    with pytest.raises(ValueError, match="non-negative"):
        print_sampled_tokens(-softmax_array(LOGITS), WORDS)
    with pytest.raises(ValueError, match="num_samples"):
        print_sampled_tokens(softmax_array(LOGITS), WORDS, num_samples=0)


# ----------------------------------------------------------------------------- demo


def test_demo_runs_and_writes_png(tmp_path):
    out = tmp_path / "figs"
    result = subprocess.run(
        [sys.executable, str(ROOT / "demos" / "sampling.py"), "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "MPLBACKEND": "Agg",
            "PATH": "/usr/bin:/bin",
            "OPENBLAS_NUM_THREADS": "1",
            "HOME": str(tmp_path),
        },
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "next token: forward" in text
    assert "Top positions: [3 7 0]" in text
    assert "[0.0615 0.0000 0.0000 0.5775 0.0000 0.0000 0.0000 0.3610 0.0000]" in text
    assert "P(pizza) = 0.042998" in text
    png = out / "temperature-plot.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
