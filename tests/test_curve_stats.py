"""tools/curve_stats.py's arithmetic: the statistics against published values, the spike
and curve summary, the compact vocabulary and the float32 mask. Nothing is trained or timed."""

import math

import numpy as np
import pytest

from .helpers.tools import load_tool

pytest.importorskip("scipy")

curve_stats = load_tool("curve_stats")

# R's `sleep` data (Cushny & Peebles): extra hours of sleep under two drugs.
DRUG1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
DRUG2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_welch_matches_r_t_test_on_sleep():
    # R: t.test(extra ~ group, data = sleep): t = -1.8608, df = 17.776, p-value = 0.07939,
    # 95 percent confidence interval: -3.3654832  0.2054832
    diff, (lo, hi), p = curve_stats.welch(DRUG1, DRUG2)
    assert diff == pytest.approx(-1.58)
    assert (lo, hi) == pytest.approx((-3.3654832, 0.2054832), abs=1e-6)
    assert p == pytest.approx(0.07939, abs=1e-5)


def test_mann_whitney_matches_r_wilcox_test():
    # R: wilcox.test(extra ~ group, data = sleep): W = 25.5, p-value = 0.06933 (ties:
    # normal approximation with continuity correction)
    assert curve_stats.mann_whitney(DRUG1, DRUG2) == pytest.approx(0.06933, abs=1e-5)
    # no ties, n = 3 + 3: exact, the most extreme of C(6, 3) = 20 orderings, two-sided
    assert curve_stats.mann_whitney([1, 2, 3], [4, 5, 6]) == pytest.approx(2 / 20)


def test_mean_sd_is_the_sample_sd():
    m, sd = curve_stats.mean_sd([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
    assert m == 5.0
    assert sd == pytest.approx(math.sqrt(32 / 7))


def test_summarize_finds_the_largest_spike_and_the_val_minimum():
    run = {"train": [10.0, 8.0, 6.0, 9.0, 4.0, 4.4], "val": [10.0, 7.0, 6.5, 6.6, 6.8, 7.0]}
    s = curve_stats.summarize(run)
    assert s["final_train"] == 4.4 and s["final_val"] == 7.0
    assert s["spike"] == pytest.approx(1.5) and s["spike_step"] == 15  # 6 -> 9 at eval 3
    assert s["min_val"] == 6.5 and s["min_val_step"] == 10


def test_table_reports_every_pair_and_counts_spikes():
    rng = np.random.default_rng(0)
    results = {}
    for arm in curve_stats.ARMS:
        results[arm] = {}
        for seed in range(1, 5):
            train = list(np.linspace(7, 1, 18) * rng.uniform(0.9, 1.1, 18))
            if seed == 1:
                train[4] = 2 * train[3]
            results[arm][str(seed)] = {"train": train, "val": list(np.linspace(7, 6, 18) + seed),
                                       "seconds": 1.0}
    text = curve_stats.table(results, list(curve_stats.ARMS))
    for a, b in (("f64", "f32"), ("f64", "torch"), ("f32", "torch")):
        assert text.count(f"| {a} vs {b} |") == 4  # final train, final val, step 20, largest
    assert text.count("| 1/4 (") == 3  # one spike > 1.5 in each arm


def test_the_printed_evaluations_give_epochs_and_steps():
    printed = ("Ep 1 (Step 000000): Train loss 9.781, Val loss 9.933\n"
               "Every effort moves you, and the\n"
               "Ep 2 (Step 000010): Train loss 6.5, Val loss 7.25\n")
    assert curve_stats.parse_evaluations(printed) == [(1, 0, 9.781, 9.933),
                                                      (2, 10, 6.5, 7.25)]


def test_summarize_reads_the_step_20_spike_and_the_epoch_of_the_val_minimum():
    run = {"train": [10.0, 8.0, 7.0, 5.0, 9.0, 4.0], "val": [10.0, 8.0, 7.5, 6.0, 6.5, 7.0],
           "epoch": [1, 1, 2, 2, 3, 4], "step": [0, 5, 10, 15, 20, 25]}
    s = curve_stats.summarize(run)
    assert s["spike20"] == pytest.approx(9.0 / 5.0)  # step 20 over step 15
    assert s["spike"] == pytest.approx(1.8) and s["spike_step"] == 20
    assert s["min_val_step"] == 15 and s["min_val_epoch"] == 2
    old = curve_stats.summarize({"train": run["train"], "val": run["val"]})
    assert old["min_val_epoch"] is None and old["spike20"] == pytest.approx(1.8)


def test_the_table_gives_each_arms_range_and_the_epoch_of_the_val_minimum():
    def run(final, best_epoch):
        val = [7.0, 6.0, 5.0, 6.0]
        val[best_epoch - 1] = 4.0
        return {"train": [9.0, 6.0, 5.0, final], "val": val, "epoch": [1, 2, 3, 4],
                "step": [0, 5, 10, 15], "seconds": 2.0}

    results = {"f32": {"1": run(1.0, 2), "2": run(3.0, 3), "3": run(2.0, 3)}}
    row = next(line for line in curve_stats.table(results, ["f32"]).splitlines()
               if line.startswith("| f32 |"))
    assert "| 2.000 ± 1.000 (1.000–3.000) |" in row  # final train: mean ± SD (min–max)
    assert "| 3 (2–3) |" in row  # epoch of the lowest val loss: median (range)
    assert "| - |" in row  # no evaluation at step 20


def test_compact_tokenizer_renumbers_and_round_trips():
    class Base:  # a stand-in for GPT-2's tokenizer: one id per character
        def encode(self, text, **kwargs):
            return [ord(c) for c in text]

        def decode(self, ids):
            return "".join(map(chr, ids))

    tok = curve_stats.CompactTokenizer(Base(), ["banana", "cab"])
    assert tok.n_vocab == 4  # a b c n
    assert tok.encode("cab") == [2, 0, 1]
    assert tok.decode(tok.encode("banana")) == "banana"


def test_the_two_arms_masks_are_inverted_dropout_from_their_uniforms():
    """f32 (shipped): fused.dropout_mask keeps u >= p for float32 uniforms u; f64 (the
    bench's patch): the same from float64 uniforms."""
    import tinygpt
    from tinygpt.backend import get_rng

    state, source = get_rng().bit_generator.state, tinygpt.backend.dropout_rng()
    tinygpt.backend.set_dropout_rng("numpy")  # the CPU's masks (CuPy's default is Philox)
    try:
        for draw, dtype in ((tinygpt.fused.dropout_mask, np.float32),
                            (curve_stats.float64_dropout_mask, np.float64)):
            tinygpt.manual_seed(5)
            mask = tinygpt.backend.to_numpy(draw((200, 500), 0.1, np.float32))
            u = np.random.default_rng(5).random((200, 500), dtype=dtype)
            assert mask.dtype == np.float32
            np.testing.assert_array_equal(mask != 0, u >= dtype(0.1))
            assert set(np.unique(mask)) == {np.float32(0.0), np.float32(1 / 0.9)}
    finally:
        get_rng().bit_generator.state = state
        tinygpt.backend.set_dropout_rng(source)
