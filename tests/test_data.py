"""Sliding-window dataset and data loader: the book's chapter 2 behaviour and chapter 5 counts."""

import collections
import re
import warnings

import numpy as np
import pytest

from tinygpt.backend import get_rng_state, manual_seed
from tinygpt.data import (
    DataLoader,
    GPTDatasetV1,
    create_dataloader_v1,
    default_collate,
    train_val_split,
)
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


@pytest.mark.parametrize("bad", [0, -2, 1.5, False, np.int64(2)])
def test_loader_validates_batch_size(tok, bad):
    with pytest.raises(ValueError, match="batch_size should be a positive integer value"):
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


def test_train_val_split_is_the_books(verdict_text, book_split):
    assert train_val_split(verdict_text) == book_split  # train_ratio 0.90 by default
    assert train_val_split(verdict_text, train_ratio=0.90) == book_split
    assert train_val_split("abcdefghij", train_ratio=0.25) == ("ab", "cdefghij")
    for bad in (0, 1, 1.5, -0.1, float("nan"), "0.9", None, True):
        with pytest.raises(ValueError, match="train_ratio"):
            train_val_split(verdict_text, train_ratio=bad)


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


# --- DataLoader's arguments, against torch.utils.data.DataLoader --------------------------------

WORKERS = {"num_workers": 2}  # torch would start processes on a pass: such cases only build

LOADER_ARGUMENTS = [
    *({"batch_size": v} for v in (0, -1, 1.5, True, "2", np.int64(2), None, 2.0, 2)),
    *({"batch_size": 2, "drop_last": v} for v in ("False", 1, 0, None, np.bool_(True), True)),
    {"batch_size": None, "drop_last": True},
    *({"batch_size": 2, "shuffle": v} for v in ("False", 0, None, 2.5)),
    *({"num_workers": v} for v in (-1, "0", None, 1.5, np.int64(0), 0.0)),
    *({"timeout": v} for v in (-1, -0.5, "1", None, 5, 0.0)),
    {"prefetch_factor": 2}, {"prefetch_factor": 0}, dict(WORKERS, prefetch_factor=-1),
    dict(WORKERS, prefetch_factor="2"), dict(WORKERS, prefetch_factor=0),
    *({"persistent_workers": v} for v in (True, "x", 0)), dict(WORKERS, persistent_workers=True),
    {"multiprocessing_context": "spawn"}, dict(WORKERS, multiprocessing_context="bogus"),
    dict(WORKERS, multiprocessing_context=3), dict(WORKERS, multiprocessing_context="spawn"),
    dict(WORKERS, timeout=5), {"in_order": "x"}, {"pin_memory_device": "bogus"},
    {"collate_fn": 5}, {"generator": 5}, {"generator": 5, "shuffle": True},
    {"worker_init_fn": 5}, {"sampler": [0, 1], "shuffle": True},
    {"batch_sampler": [[0, 1]], "batch_size": 2}, {"batch_sampler": [[0, 1]], "drop_last": True},
]


def _loader_outcome(lib, dataset, kwargs):
    """("init" | "len" | "pass", the error class) where the loader fails, or ("ok", the
    shapes of a pass's batches) (no pass with workers: torch would start processes)."""
    stage = "init"
    try:
        loader = lib.utils.data.DataLoader(dataset, **kwargs)
        stage = "len"
        n = len(loader)
        if kwargs.get("num_workers"):
            return "ok", n
        stage = "pass"
        return "ok", [tuple(batch.shape) for batch in loader]
    except Exception as exc:  # noqa: BLE001 - the class is what we compare
        return stage, type(exc)


@pytest.mark.parametrize("kwargs", LOADER_ARGUMENTS, ids=repr)
def test_loader_checks_each_argument_as_torch_does(kwargs):
    pt = pytest.importorskip("torch")
    import tinygpt

    def samples(lib):
        return [lib.tensor([float(i)]) for i in range(5)]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's warning for too many workers
        expected = _loader_outcome(pt, samples(pt), kwargs)
        got = _loader_outcome(tinygpt, samples(tinygpt), kwargs)
    assert got == expected


def test_loader_refuses_a_dataset_as_torch_does_when_used():
    pt = pytest.importorskip("torch")
    import tinygpt

    assert _loader_outcome(tinygpt, 5, {}) == _loader_outcome(pt, 5, {}) == ("len", TypeError)


@pytest.mark.parametrize("kwargs,match", [
    ({"sampler": [0, 1]}, "Subset"),
    ({"batch_sampler": [[0, 1]]}, "batch_size, shuffle and drop_last"),
    (dict(WORKERS, worker_init_fn=print), "num_workers=0"),
])
def test_loader_says_what_to_use_where_tinygpt_cannot_follow(tok, kwargs, match):
    with pytest.raises(NotImplementedError, match=match):
        DataLoader(_small_dataset(tok, 3), **kwargs)


def test_loader_warns_for_pin_memory_as_torch_does_on_the_cpu():
    pt = pytest.importorskip("torch")
    import tinygpt

    if tinygpt.backend.ON_GPU:
        pytest.skip("torch warns on a machine without an accelerator")
    caught = {}
    for lib in (pt, tinygpt):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            loader = lib.utils.data.DataLoader([lib.tensor([1.0])], pin_memory=True,
                                               pin_memory_device="cuda")
            assert not seen, "torch warns when a pass starts, not before"
            list(loader)
        caught[lib.__name__] = [(w.category, str(w.message).split(",")[0]) for w in seen]
    assert caught["tinygpt"] == caught["torch"] and len(caught["torch"]) == 2


def test_loader_settings_fixed_after_creation_as_in_torch(tok):
    pt = pytest.importorskip("torch")
    ours = DataLoader(_small_dataset(tok, 3), batch_size=2)
    theirs = pt.utils.data.DataLoader([pt.tensor([1.0])] * 3, batch_size=2)
    for attr in ("batch_size", "drop_last", "dataset", "sampler", "batch_sampler",
                 "persistent_workers"):
        for loader in (ours, theirs):
            with pytest.raises(ValueError, match=f"{attr} attribute should not be set"):
                setattr(loader, attr, getattr(loader, attr))
    ours.num_workers = theirs.num_workers = 0  # the others may change


def test_loader_without_batching_yields_converted_samples_like_torch():
    pt = pytest.importorskip("torch")
    samples = [(np.arange(3) + i, float(i), {"n": np.float32(i)}) for i in range(4)]
    ours = list(DataLoader(samples, batch_size=None))
    theirs = list(pt.utils.data.DataLoader(samples, batch_size=None))
    assert len(ours) == len(theirs) == len(DataLoader(samples, batch_size=None)) == 4
    for (x, f, d), (tx, tf, td) in zip(ours, theirs, strict=True):
        assert isinstance(x, Tensor) and x.tolist() == tx.tolist() and str(x.dtype) == str(tx.dtype)
        assert f == tf and type(f) is type(tf) is float
        assert str(d["n"].dtype) == str(td["n"].dtype) == "torch.float32"


def test_loader_fetches_a_batch_through_getitems_like_torch():
    pt = pytest.importorskip("torch")
    import tinygpt

    calls = {}

    class Batched:
        def __init__(self, lib):
            self.lib = lib

        def __len__(self):
            return 5

        def __getitem__(self, i):
            raise AssertionError("a loader must use __getitems__ when the dataset has it")

        def __getitems__(self, indices):
            calls.setdefault(self.lib.__name__, []).append(indices)
            return [self.lib.tensor([i]) for i in indices]

    for lib in (pt, tinygpt):
        list(lib.utils.data.DataLoader(Batched(lib), batch_size=2))
    assert calls["tinygpt"] == calls["torch"] == [[0, 1], [2, 3], [4]]


# --- default_collate, against torch's ------------------------------------------------------------

Pair = collections.namedtuple("Pair", "x y")


class Numbers(list):
    """A list subclass: torch's collate keeps the sample's sequence type."""


COLLATE_CASES = {
    "numpy f32, f64": [np.float32(1), np.float64(2.5)],
    "numpy i32, f32": [np.int32(1), np.float32(2.5)],
    "numpy u8, i8": [np.uint8(1), np.int8(-2)],
    "numpy f16, float": [np.float16(1), 2.5],
    "numpy bool, int": [np.bool_(True), 3],
    "int, numpy bool": [3, np.bool_(True)],
    "numpy bool, float": [np.bool_(True), 2.5],
    "int, numpy f64": [1, np.float64(2.5)],
    "int, numpy f16": [1, np.float16(2.5)],
    "int, 0-d array": [3, np.array(2)],
    "int, array": [3, np.array([1, 2])],
    "int, str": [1, "a"],
    "int, None": [1, None],
    "float, None": [1.5, None],
    "int too big": [1, 2**63],
    "arrays of strings": [np.array(["a"]), np.array(["b"])],
    "arrays of objects": [np.array([None]), np.array([None])],
    "arrays i32, f32": [np.array([1], dtype=np.int32), np.array([2.5], dtype=np.float32)],
    "arrays i64, f16": [np.array([1]), np.array([2.5], dtype=np.float16)],
    "arrays u8, i8": [np.array([1], dtype=np.uint8), np.array([2], dtype=np.int8)],
    "array, list": [np.array([1, 2]), [3, 4]],
    "array, int": [np.array([1, 2]), 3],
    "ragged lists": [[1, 2], [3]],
    "list subclass": [Numbers([1, 2]), Numbers([3, 4])],
    "OrderedDict": [collections.OrderedDict(a=1, b=2.0), collections.OrderedDict(a=3, b=4.0)],
    "namedtuple": [Pair(1, 2.0), Pair(3, 4.0)],
    "range": [range(2), range(2)],
    "None": [None, None],
    "sets": [{1}, {2}],
    "numpy strings": [np.str_("a"), np.str_("b")],
}


def _collated(collate, batch, pt):
    """What ``collate(batch)`` gives, in terms both libraries share: the error class, or
    the container types with each tensor's dtype and values."""
    try:
        out = collate(batch)
    except Exception as exc:  # noqa: BLE001 - the class is what we compare
        return type(exc)

    def plain(x):
        if isinstance(x, (Tensor, pt.Tensor)):
            return "tensor", str(x.dtype).replace("torch.", ""), x.tolist()
        if isinstance(x, dict):
            return type(x).__name__, {k: plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return type(x).__name__, [plain(v) for v in x]
        return x

    return plain(out)


@pytest.mark.parametrize("name", list(COLLATE_CASES))
def test_collate_gives_torchs_batch_or_error(name):
    pt = pytest.importorskip("torch")
    batch = COLLATE_CASES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "a list of numpy.ndarrays is slow"
        expected = _collated(pt.utils.data.default_collate, batch, pt)
    assert _collated(default_collate, batch, pt) == expected


@pytest.mark.parametrize("name,make", [
    ("int and float tensors", lambda lib: [lib.tensor([1, 2]), lib.tensor([1.5, 2.0])]),
    ("tensors of two shapes", lambda lib: [lib.tensor([1, 2]), lib.tensor([1])]),
    ("a tensor, then an array", lambda lib: [lib.tensor([1]), np.array([2])]),
    ("an array, then a tensor", lambda lib: [np.array([2]), lib.tensor([1])]),
    ("a tensor, then an int", lambda lib: [lib.tensor([1]), 3]),
    ("0-d tensors", lambda lib: [lib.tensor(1.5), lib.tensor(2.5)]),
    ("an int, then a 0-d tensor", lambda lib: [3, lib.tensor(2)]),
])
def test_collate_of_tensors_like_torch(name, make):
    pt = pytest.importorskip("torch")
    import tinygpt

    expected = _collated(pt.utils.data.default_collate, make(pt), pt)
    assert _collated(default_collate, make(tinygpt), pt) == expected


def test_collate_keeps_the_graph_like_torch():
    """torch's collate is torch.stack: samples that require grad give a batch in the graph."""
    pt = pytest.importorskip("torch")
    import tinygpt

    grads = {}
    for lib in (pt, tinygpt):
        w = lib.tensor([1.0, 2.0], requires_grad=True)
        batch = lib.utils.data.default_collate([(w * 2, 1), (w * 3, 2)])
        assert batch[0].requires_grad and not batch[1].requires_grad
        (batch[0] * lib.tensor([[1.0, 1.0], [10.0, 10.0]])).sum().backward()
        grads[lib.__name__] = w.grad.tolist()
    assert grads["tinygpt"] == grads["torch"] == [32.0, 32.0]


# --- Generator, random_split and Subset ----------------------------------------------------------


def test_shuffle_from_a_generator_repeats_whatever_the_package_seed(tok):
    import tinygpt

    data = _distinct_dataset(tok, 12)

    def two_passes():
        loader = DataLoader(data, batch_size=5, shuffle=True,
                            generator=tinygpt.Generator().manual_seed(42))
        return [loader.epoch_order() for _ in range(2)]

    manual_seed(0)
    first = two_passes()
    manual_seed(99)
    before = get_rng_state()
    again = two_passes()
    assert get_rng_state() == before, "shuffling from a Generator leaves the package's alone"
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], first[1]), "the generator moves on from pass to pass"
    assert sorted(first[0].tolist()) == list(range(len(first[0])))


@pytest.mark.parametrize("n,lengths", [
    (10, [3, 7]), (10, [0.3, 0.7]), (10, [0.25, 0.75]), (11, [0.1, 0.2, 0.7]),
    (7, [1 / 3, 1 / 3, 1 / 3]), (5, [0.5, 0.5]), (3, [0.1, 0.9]), (4, [4, 0]),
    (10, [3, 6]), (10, [0.5, 0.4]), (10, [-0.5, 1.5]), (0, [0.5, 0.5]),
])
def test_random_split_sizes_and_errors_like_torch(n, lengths):
    pt = pytest.importorskip("torch")
    import tinygpt
    from tinygpt.utils.data import random_split

    outcomes = []
    for split, generator in ((pt.utils.data.random_split, pt.Generator().manual_seed(0)),
                             (random_split, tinygpt.Generator().manual_seed(0))):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            try:
                parts = split(range(n), lengths, generator=generator)
            except Exception as exc:  # noqa: BLE001 - the class is what we compare
                outcomes.append(type(exc))
                continue
        assert sorted(i for part in parts for i in part) == list(range(n))
        outcomes.append(([len(part) for part in parts], [str(w.message) for w in seen]))
    assert outcomes[1] == outcomes[0]


def test_random_split_draws_from_its_generator(tok):
    import tinygpt
    from tinygpt.utils.data import Subset, random_split

    data = _distinct_dataset(tok, 9)
    manual_seed(1)
    train, val = random_split(data, [0.8, 0.2], generator=tinygpt.Generator().manual_seed(7))
    manual_seed(2)
    again = random_split(data, [0.8, 0.2], generator=tinygpt.Generator().manual_seed(7))
    assert isinstance(train, Subset) and train.dataset is data
    assert (train.indices, val.indices) == (again[0].indices, again[1].indices)
    assert all(isinstance(i, int) for i in train.indices)
    manual_seed(3)
    default = random_split(data, [0.8, 0.2])  # tinygpt's generator, as torch's default
    manual_seed(3)
    assert random_split(data, [0.8, 0.2])[0].indices == default[0].indices
    with pytest.raises(TypeError, match="tinygpt.Generator"):
        random_split(data, [0.8, 0.2], generator=7)


def test_subset_indexes_and_loads_like_torch():
    pt = pytest.importorskip("torch")
    from tinygpt.utils.data import Subset

    data = [np.array([i, 10 * i]) for i in range(6)]
    ours, theirs = Subset(data, [4, 0, 2]), pt.utils.data.Subset(data, [4, 0, 2])
    assert len(ours) == len(theirs) == 3
    assert ours[0].tolist() == theirs[0].tolist() == [4, 40]
    assert [x.tolist() for x in ours.__getitems__([2, 1])] == [[2, 20], [0, 0]]
    batches = [b.tolist() for b in DataLoader(ours, batch_size=2)]
    assert batches == [b.tolist() for b in pt.utils.data.DataLoader(theirs, batch_size=2)]

    class OnlyGetitem(Subset):
        def __getitem__(self, idx):
            return super().__getitem__(idx)

    for subset in (OnlyGetitem, type("OnlyGetitem", (pt.utils.data.Subset,),
                                     {"__getitem__": lambda self, i: i})):
        with pytest.raises(NotImplementedError, match="__getitems__"):
            subset(data, [0])
