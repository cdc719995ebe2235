"""Sliding-window dataset and a small data loader (the book's chapter 2, on NumPy).

``GPTDatasetV1`` cuts a token stream into input windows of ``max_length``
tokens, ``stride`` apart, each paired with the same window shifted one token
to the right (the next-token targets). ``DataLoader`` batches them like
PyTorch's ``DataLoader`` does for the book: an optional shuffle at the start of
each pass, then consecutive slices of ``batch_size`` windows, the last one
short or dropped (``drop_last``).

For resuming training mid-epoch the order of a pass is explicit:
``order = loader.epoch_order()`` draws it and ``loader.iterate(order, k)``
replays it from batch ``k``; ``iter(loader)`` is both in one go.
"""

import math

import numpy as np

from .backend import get_rng
from .tokenizer import ENDOFTEXT, get_tokenizer


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _count_windows(n_tokens, max_length, stride):
    """len(range(0, n_tokens - max_length, stride)): how many windows a text gives."""
    return max(0, math.ceil((n_tokens - max_length) / stride))


class GPTDatasetV1:
    """Input/target windows over a tokenized text, as in the book's listing 2.5.

    ``inputs[i] = ids[s : s + max_length]`` and ``targets[i] = ids[s + 1 : s + max_length + 1]``
    for ``s = i * stride``, for every start ``s`` in ``range(0, len(ids) - max_length, stride)``.
    A text of ``max_length`` tokens or fewer gives no windows (an empty dataset).
    """

    def __init__(self, txt, tokenizer, max_length, stride):
        if not isinstance(txt, str):
            raise TypeError(f"GPTDatasetV1 expects the text as a str, got {type(txt).__name__}")
        self.max_length = _check_positive_int("max_length", max_length)
        self.stride = _check_positive_int("stride", stride)

        token_ids = np.asarray(tokenizer.encode(txt, allowed_special={ENDOFTEXT}), dtype=np.int64)
        self.n_tokens = len(token_ids)

        starts = np.arange(0, self.n_tokens - self.max_length, self.stride, dtype=np.int64)
        offsets = np.arange(self.max_length, dtype=np.int64)
        rows = starts[:, None] + offsets[None, :]  # (N, max_length) token positions
        self.inputs = token_ids[rows]  # (N, max_length) int64
        self.targets = token_ids[rows + 1]  # (N, max_length) int64, shifted by one

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, idx):
        return self.inputs[idx], self.targets[idx]


class DataLoader:
    """Batches ``(x, y)`` of int64 arrays (B, T) from a dataset of ``(input, target)`` pairs.

    ``len(loader)`` is the number of batches per pass. With ``shuffle`` a fresh
    permutation is drawn from ``tinygpt.backend.get_rng()`` at the start of
    every pass, so ``manual_seed`` makes the order repeatable and each epoch
    differs. ``name`` (e.g. "training") only labels error messages.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, name=None):
        self.dataset = dataset
        self.batch_size = _check_positive_int("batch_size", batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.name = name

    def __len__(self):
        n = len(self.dataset)
        if self.drop_last:
            return n // self.batch_size
        return math.ceil(n / self.batch_size)

    def epoch_order(self):
        """The order of the dataset's samples for one pass: a permutation if shuffling."""
        n = len(self.dataset)
        if self.shuffle:
            return get_rng().permutation(n).astype(np.int64)
        return np.arange(n, dtype=np.int64)

    def iterate(self, order, start_batch=0):
        """Yield the batches of one pass in ``order``, beginning at batch ``start_batch``.

        ``order`` is what ``epoch_order()`` returned (save it with a checkpoint
        to resume the same pass later).
        """
        order = np.asarray(order)
        n = len(self.dataset)
        if order.shape != (n,) or (n and not np.issubdtype(order.dtype, np.integer)):
            raise ValueError(
                f"order must be {n} integer sample indices (from epoch_order()), got an array "
                f"of shape {order.shape} and dtype {order.dtype}"
            )
        if n and not np.array_equal(np.sort(order), np.arange(n)):
            raise ValueError(
                f"order must be a permutation of 0..{n - 1} (from epoch_order()); this one "
                "repeats or skips samples"
            )
        n_batches = len(self)
        if (
            isinstance(start_batch, bool)
            or not isinstance(start_batch, (int, np.integer))
            or not (0 <= start_batch <= n_batches)
        ):
            raise ValueError(
                f"start_batch must be an integer in [0, {n_batches}] for a loader with "
                f"{n_batches} batches, got {start_batch!r}"
            )
        return self._batches(order, int(start_batch), n_batches)

    def _batches(self, order, start_batch, n_batches):
        # A generator of its own so that iterate() validates eagerly, at the call.
        B = self.batch_size
        for k in range(start_batch, n_batches):
            pairs = [self.dataset[int(i)] for i in order[k * B : (k + 1) * B]]
            x = np.stack([np.asarray(p[0], dtype=np.int64) for p in pairs])  # (B, T)
            y = np.stack([np.asarray(p[1], dtype=np.int64) for p in pairs])  # (B, T)
            yield x, y

    def __iter__(self):
        return self.iterate(self.epoch_order())

    def __repr__(self):
        label = f"{self.name!r}, " if self.name is not None else ""
        return (
            f"DataLoader({label}{len(self.dataset)} samples, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, {len(self)} batches)"
        )


def create_dataloader_v1(
    txt,
    batch_size=4,
    max_length=256,
    stride=128,
    shuffle=True,
    drop_last=True,
    num_workers=0,
    name=None,
    tokenizer=None,
):
    """The book's ``create_dataloader_v1``: tokenize ``txt`` and batch its windows.

    ``num_workers`` is accepted for the book's signature and ignored (batches
    are cheap slices here). Raises ValueError when the text yields no batch at
    all, saying how many tokens it has and how many are needed.
    """
    del num_workers  # no worker processes: batching is a NumPy slice
    batch_size = _check_positive_int("batch_size", batch_size)
    max_length = _check_positive_int("max_length", max_length)
    stride = _check_positive_int("stride", stride)
    if tokenizer is None:
        tokenizer = get_tokenizer()

    dataset = GPTDatasetV1(txt, tokenizer, max_length, stride)
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, name=name
    )
    if len(loader) == 0:
        which = f"the {name} data loader" if name else "the data loader"
        n_windows = 1 if not drop_last else batch_size
        # Window s needs tokens s .. s + max_length (one extra for the last target).
        needed = max_length + 1 + (n_windows - 1) * stride
        if len(dataset) == 0:
            problem = f"not enough for one window of max_length={max_length} plus 1 target token"
            remedy = (
                "use a longer text (or give this split a larger share of it) or a smaller "
                "context length / max_length"
            )
        else:
            problem = (
                f"only {len(dataset)} window(s) with max_length={max_length}, stride={stride}, "
                f"fewer than batch_size={batch_size} with drop_last=True"
            )
            remedy = (
                "use a smaller batch size, drop_last=False, a smaller stride, a smaller "
                "context length / max_length, or a longer text"
            )
        raise ValueError(
            f"{which} got {dataset.n_tokens} tokens, {problem}; it needs at least {needed} "
            f"tokens: {remedy}."
        )
    return loader
