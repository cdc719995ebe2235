"""Sliding-window dataset and data loader: the book's chapter 2 behaviour and chapter 5 counts."""

import re

import numpy as np
import pytest

from tinygpt.backend import get_rng_state, manual_seed
from tinygpt.data import DataLoader, GPTDatasetV1, create_dataloader_v1
from tinygpt.tensor import Tensor
from tinygpt.tokenizer import get_tokenizer

from .helpers.assertions import host

EOT = "<|endoftext|>"  # one token each: a text of exactly n tokens is EOT * n


@pytest.fixture(scope="module")
def tok():
    return get_tokenizer()


@pytest.fixture(scope="module")
def book_split(verdict_text):
    """The book's 90/10 split of "The Verdict" by characters."""
    train_ratio = 0.90
    split_idx = int(train_ratio * len(verdict_text))
    return verdict_text[:split_idx], verdict_text[split_idx:]


def _book_windows(token_ids, max_length, stride):
    """The book's listing 2.5 loop, written out, as the reference."""
    inputs, targets = [], []
    for i in range(0, len(token_ids) - max_length, stride):
        inputs.append(token_ids[i : i + max_length])
        targets.append(token_ids[i + 1 : i + max_length + 1])
    return inputs, targets


# --- GPTDatasetV1 -----------------------------------------------------------------------------


@pytest.mark.parametrize("max_length,stride", [(4, 1), (4, 4), (8, 3), (16, 20), (1, 1)])
def test_dataset_matches_book_loop(tok, verdict_text, max_length, stride):
    text = verdict_text[:600]
    ids = tok.encode(text, allowed_special={EOT})
    want_x, want_y = _book_windows(ids, max_length, stride)
    ds = GPTDatasetV1(text, tok, max_length=max_length, stride=stride)
    assert len(ds) == len(want_x)
    assert ds.inputs.dtype == np.int64 and ds.targets.dtype == np.int64
    assert ds.inputs.shape == (len(want_x), max_length)
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.tolist() == want_x[i]
        assert y.tolist() == want_y[i]
        assert (y[:-1] == x[1:]).all()  # targets are the inputs shifted by one


def test_dataset_keeps_endoftext(tok):
    ds = GPTDatasetV1("a" + EOT + "b c d e", tok, max_length=3, stride=1)
    assert 50256 in ds.inputs


def test_dataset_too_short_is_empty(tok):
    # Book behaviour: max_length tokens (or fewer) give no window, since the
    # last target would need one more token.
    ds = GPTDatasetV1(EOT * 4, tok, max_length=4, stride=1)
    assert len(ds) == 0 and ds.inputs.shape == (0, 4)
    assert len(GPTDatasetV1(EOT * 5, tok, max_length=4, stride=1)) == 1
    assert len(GPTDatasetV1("", tok, max_length=4, stride=1)) == 0


@pytest.mark.parametrize("arg", ["max_length", "stride"])
@pytest.mark.parametrize("bad", [0, -1, 2.5, True, None])
def test_dataset_validates(tok, arg, bad):
    kwargs = {"max_length": 4, "stride": 2, arg: bad}
    with pytest.raises(ValueError, match=f"{arg} must be an integer >= 1"):
        GPTDatasetV1("some text here", tok, **kwargs)


def test_dataset_needs_str(tok):
    with pytest.raises(TypeError, match="str"):
        GPTDatasetV1([1, 2, 3], tok, max_length=2, stride=1)


# --- DataLoader -------------------------------------------------------------------------------


def _small_dataset(tok, n_windows, max_length=4):
    ds = GPTDatasetV1(EOT * (max_length + n_windows), tok, max_length=max_length, stride=1)
    assert len(ds) == n_windows
    return ds


@pytest.mark.parametrize(
    "n,batch_size,drop_last,want",
    [
        (7, 2, False, 4),
        (7, 2, True, 3),
        (6, 3, True, 2),
        (6, 3, False, 2),
        (2, 5, True, 0),
        (2, 5, False, 1),
    ],
)
def test_loader_len(tok, n, batch_size, drop_last, want):
    loader = DataLoader(_small_dataset(tok, n), batch_size=batch_size, drop_last=drop_last)
    assert len(loader) == want
    batches = list(loader)
    assert len(batches) == want
    sizes = [x.shape[0] for x, _ in batches]
    if want:
        assert sizes[:-1] == [batch_size] * (want - 1)
        assert sizes[-1] == (batch_size if drop_last else n - batch_size * (want - 1))


def test_loader_on_empty_dataset(tok):
    # Allowed: the book's calc_loss_loader returns nan for a loader of length 0.
    loader = DataLoader(GPTDatasetV1("", tok, max_length=4, stride=4), batch_size=2)
    assert len(loader) == 0
    assert list(loader) == []
    assert list(DataLoader(GPTDatasetV1("", tok, 4, 4), batch_size=2, shuffle=True)) == []


def test_loader_batches_in_order_without_shuffle(tok, verdict_text):
    ds = GPTDatasetV1(verdict_text[:2000], tok, max_length=8, stride=8)
    loader = DataLoader(ds, batch_size=3)
    xs = np.concatenate([x for x, _ in loader])
    ys = np.concatenate([y for _, y in loader])
    assert xs.dtype == np.int64 and ys.dtype == np.int64
    np.testing.assert_array_equal(host(xs), host(ds.inputs))
    np.testing.assert_array_equal(host(ys), host(ds.targets))


def test_loader_accepts_any_pair_dataset():
    # A plain list of (input, target) array pairs; fields that are lists of numbers
    # collate the way torch's do (tests/test_book_calls.py).
    pairs = [(np.array([1, 2]), np.array([2, 3])), (np.array([4, 5]), np.array([5, 6])),
             (np.array([7, 8]), np.array([8, 9]))]
    x, y = next(iter(DataLoader(pairs, batch_size=2)))
    assert isinstance(x, Tensor) and x.dtype == np.int64 and x.tolist() == [[1, 2], [4, 5]]
    assert y.tolist() == [[2, 3], [5, 6]]


@pytest.mark.parametrize("bad", [0, -2, 1.5, False])
def test_loader_validates_batch_size(tok, bad):
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        DataLoader(_small_dataset(tok, 3), batch_size=bad)


def test_epoch_order_without_shuffle_uses_no_randomness(tok):
    loader = DataLoader(_small_dataset(tok, 5), batch_size=2)
    manual_seed(1)
    before = get_rng_state()
    np.testing.assert_array_equal(host(loader.epoch_order()), np.arange(5))
    assert get_rng_state() == before


def test_seeded_shuffle_repeats_and_epochs_differ(tok):
    ds = _distinct_dataset(tok, 20)
    loader = DataLoader(ds, batch_size=3, shuffle=True)

    def two_epochs():
        return [[host(x) for x, _ in loader] for _ in range(2)]

    manual_seed(123)
    first = two_epochs()
    manual_seed(123)
    second = two_epochs()
    for e in range(2):
        for a, b in zip(first[e], second[e], strict=True):
            np.testing.assert_array_equal(host(a), host(b))
    epoch0 = np.concatenate(first[0])
    epoch1 = np.concatenate(first[1])
    assert not np.array_equal(host(epoch0), host(epoch1))
    # Every window appears exactly once per pass (no drop_last here).
    assert sorted(map(tuple, epoch0.tolist())) == sorted(map(tuple, ds.inputs.tolist()))


def _distinct_dataset(tok, n_windows):
    # Windows that differ from each other, so orders can be told apart.
    text = " ".join(f"w{i}" for i in range(4 * n_windows))
    ds = GPTDatasetV1(text, tok, max_length=4, stride=4)
    assert len(ds) >= n_windows
    return ds


def test_shuffle_follows_manual_seed_after_loader_creation(tok):
    # The loader must ask the backend for the generator at each pass, not keep
    # the one that existed when it was built (manual_seed replaces it).
    loader = DataLoader(_distinct_dataset(tok, 10), batch_size=2, shuffle=True)
    manual_seed(7)
    a = loader.epoch_order()
    manual_seed(7)
    b = loader.epoch_order()
    np.testing.assert_array_equal(host(a), host(b))
    assert sorted(a.tolist()) == list(range(len(loader.dataset)))


@pytest.mark.parametrize("drop_last", [True, False])
def test_iterate_resumes_from_start_batch(tok, drop_last):
    loader = DataLoader(_distinct_dataset(tok, 11), batch_size=3, shuffle=True, drop_last=drop_last)
    manual_seed(5)
    order = loader.epoch_order()
    full = list(loader.iterate(order))
    assert len(full) == len(loader)
    for k in range(len(loader) + 1):
        resumed = list(loader.iterate(order, start_batch=k))
        assert len(resumed) == len(loader) - k
        for (xa, ya), (xb, yb) in zip(resumed, full[k:], strict=True):
            np.testing.assert_array_equal(host(xa), host(xb))
            np.testing.assert_array_equal(host(ya), host(yb))


def test_iter_is_iterate_of_epoch_order(tok):
    loader = DataLoader(_distinct_dataset(tok, 9), batch_size=2, shuffle=True)
    manual_seed(11)
    via_iter = [x for x, _ in loader]
    manual_seed(11)
    via_order = [x for x, _ in loader.iterate(loader.epoch_order())]
    for a, b in zip(via_iter, via_order, strict=True):
        np.testing.assert_array_equal(host(a), host(b))


def test_iterate_validates(tok):
    loader = DataLoader(_small_dataset(tok, 5), batch_size=2)
    order = loader.epoch_order()
    with pytest.raises(ValueError, match=r"start_batch must be an integer in \[0, 3\]"):
        loader.iterate(order, start_batch=4)
    with pytest.raises(ValueError, match="start_batch"):
        loader.iterate(order, start_batch=-1)
    with pytest.raises(ValueError, match="5 integer sample indices"):
        loader.iterate(order[:4])
    with pytest.raises(ValueError, match="permutation"):
        loader.iterate(np.array([0, 0, 1, 2, 3]))
    with pytest.raises(ValueError, match="integer sample indices"):
        loader.iterate(order.astype(np.float64))


# --- create_dataloader_v1 and the book's chapter 5 loaders ----------------------------------


def test_book_loaders(book_split):
    # Section 5.1.3: batch_size 2, context 256, stride 256. The book's text says
    # 9 training batches and 1 validation batch (its printed listing shows 8
    # training lines, a typo): 4,612 training tokens give 18 windows, 534
    # validation tokens give 2.
    train_data, val_data = book_split
    manual_seed(123)
    train_loader = create_dataloader_v1(
        train_data,
        batch_size=2,
        max_length=256,
        stride=256,
        drop_last=True,
        shuffle=True,
        num_workers=0,
        name="training",
    )
    val_loader = create_dataloader_v1(
        val_data,
        batch_size=2,
        max_length=256,
        stride=256,
        drop_last=False,
        shuffle=False,
        num_workers=0,
        name="validation",
    )
    assert train_loader.dataset.n_tokens == 4612 and len(train_loader.dataset) == 18
    assert val_loader.dataset.n_tokens == 534 and len(val_loader.dataset) == 2
    assert len(train_loader) == 9 and len(val_loader) == 1

    train_batches = list(train_loader)
    val_batches = list(val_loader)
    assert len(train_batches) == 9 and len(val_batches) == 1
    for x, y in train_batches + val_batches:
        assert x.shape == (2, 256) and y.shape == (2, 256)
        assert x.dtype == np.int64 and y.dtype == np.int64
        # targets: inputs shifted by one
        np.testing.assert_array_equal(host(x[:, 1:]), host(y[:, :-1]))
    # Total tokens seen by training: 9 * 2 * 256.
    assert sum(x.numel() for x, _ in train_batches) == 4608


def test_book_loader_tokens_line_up_with_text(tok, book_split):
    train_data, _ = book_split
    loader = create_dataloader_v1(
        train_data, batch_size=2, max_length=256, stride=256, shuffle=False, drop_last=True
    )
    ids = tok.encode(train_data)
    x, y = next(iter(loader))
    assert x[0].tolist() == ids[:256] and y[0].tolist() == ids[1:257]
    assert x[1].tolist() == ids[256:512]


def test_create_dataloader_defaults(verdict_text):
    loader = create_dataloader_v1(verdict_text)  # book defaults: 4 x 256, stride 128
    assert loader.batch_size == 4 and loader.shuffle and loader.drop_last
    x, y = next(iter(loader))
    assert x.shape == (4, 256) and y.shape == (4, 256)
    assert len(loader.dataset) == len(range(0, 5145 - 256, 128))


def test_too_short_text_error_names_loader_and_counts(tok):
    with pytest.raises(ValueError) as info:
        create_dataloader_v1(
            EOT * 100,
            batch_size=2,
            max_length=256,
            stride=256,
            drop_last=False,
            shuffle=False,
            name="validation",
            tokenizer=tok,
        )
    msg = str(info.value)
    assert "validation data loader" in msg
    assert "100 tokens" in msg
    assert "at least 257 tokens" in msg
    assert "max_length" in msg and "longer text" in msg


def test_drop_last_leaving_no_batch_error(tok):
    # 300 tokens -> one window of 256: not enough for a full batch of 2.
    with pytest.raises(ValueError) as info:
        create_dataloader_v1(
            EOT * 300,
            batch_size=2,
            max_length=256,
            stride=256,
            drop_last=True,
            name="training",
            tokenizer=tok,
        )
    msg = str(info.value)
    assert "training data loader" in msg and "300 tokens" in msg
    assert "at least 513 tokens" in msg
    assert "batch size" in msg and "drop_last=False" in msg and "stride" in msg


@pytest.mark.parametrize(
    "batch_size,stride,drop_last", [(1, 256, True), (2, 256, True), (3, 100, True), (2, 7, False)]
)
def test_needed_token_count_is_exact(tok, batch_size, stride, drop_last):
    max_length = 256
    with pytest.raises(ValueError, match=r"needs at least \d+ tokens") as info:
        create_dataloader_v1(
            EOT * 10,
            batch_size=batch_size,
            max_length=max_length,
            stride=stride,
            drop_last=drop_last,
            tokenizer=tok,
        )
    needed = int(re.search(r"needs at least (\d+) tokens", str(info.value)).group(1))
    with pytest.raises(ValueError):
        create_dataloader_v1(
            EOT * (needed - 1),
            batch_size=batch_size,
            max_length=max_length,
            stride=stride,
            drop_last=drop_last,
            tokenizer=tok,
        )
    loader = create_dataloader_v1(
        EOT * needed,
        batch_size=batch_size,
        max_length=max_length,
        stride=stride,
        drop_last=drop_last,
        tokenizer=tok,
    )
    assert len(loader) == 1


def test_error_without_name(tok):
    with pytest.raises(ValueError, match="^the data loader got 3 tokens"):
        create_dataloader_v1(EOT * 3, batch_size=1, max_length=4, stride=4, tokenizer=tok)


@pytest.mark.parametrize("arg", ["batch_size", "max_length", "stride"])
def test_create_dataloader_validates(tok, arg):
    kwargs = {"batch_size": 2, "max_length": 4, "stride": 4, arg: 0}
    with pytest.raises(ValueError, match=f"{arg} must be an integer >= 1, got 0"):
        create_dataloader_v1("plenty of text " * 20, tokenizer=tok, **kwargs)
