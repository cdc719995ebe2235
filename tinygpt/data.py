"""Datasets and the data loader: the book's chapter 2 on tinygpt, with torch's names.

``Dataset`` and ``DataLoader`` are ``torch.utils.data``'s (also importable from
``tinygpt.utils.data``): subclass ``Dataset`` with ``__len__`` and ``__getitem__``, and
``DataLoader(dataset, batch_size, shuffle, drop_last, num_workers)`` yields its samples
stacked into batches of ``Tensor``s, field by field, as torch's default collate does.

``GPTDatasetV1`` is the book's listing 2.5: it cuts a token stream into input windows of
``max_length`` tokens, ``stride`` apart, each paired with the same window shifted one
token to the right (the next-token targets). ``create_dataloader_v1`` wraps it in a
loader the way the book does.

For resuming training mid-epoch the order of a pass is explicit:
``order = loader.epoch_order()`` draws it and ``loader.iterate(order, k)`` replays it
from batch ``k``; ``iter(loader)`` is both in one go.
"""

import collections.abc
import math
import numbers

import numpy as np

from .backend import check_device, get_rng, xp
from .checks import nonnegative_int, positive_int
from .tensor import Tensor
from .tensors import tensor
from .tokenizer import ENDOFTEXT, get_tokenizer


class Dataset:
    """``torch.utils.data.Dataset``: the base class of map-style datasets.

    Subclass it and define ``__len__`` (how many samples) and ``__getitem__(index)`` (one
    sample: a Tensor, an array, a number, or a tuple, list or dict of those). A
    ``DataLoader`` stacks the samples into batches.
    """

    def __getitem__(self, index):
        raise NotImplementedError(
            f"{type(self).__name__} must define __getitem__(self, index) returning one sample"
        )

    def __len__(self):
        raise NotImplementedError(
            f"{type(self).__name__} must define __len__(self) returning the number of samples"
        )


class GPTDatasetV1(Dataset):
    """Input/target windows over a tokenized text, as in the book's listing 2.5.

    ``inputs[i] = ids[s : s + max_length]`` and ``targets[i] = ids[s + 1 : s + max_length + 1]``
    for ``s = i * stride``, for every start ``s`` in ``range(0, len(ids) - max_length, stride)``.
    A text of ``max_length`` tokens or fewer gives no windows (an empty dataset).
    ``dataset[i]`` is the pair ``(input, target)`` of int64 Tensors (max_length,); all
    windows are kept as two NumPy arrays, ``inputs`` and ``targets`` (N, max_length).
    """

    def __init__(self, txt, tokenizer, max_length, stride):
        if not isinstance(txt, str):
            raise TypeError(f"GPTDatasetV1 expects the text as a str, got {type(txt).__name__}")
        self.max_length = positive_int("max_length", max_length)
        self.stride = positive_int("stride", stride)

        token_ids = np.asarray(tokenizer.encode(txt, allowed_special={ENDOFTEXT}), dtype=np.int64)
        self.n_tokens = len(token_ids)

        starts = np.arange(0, self.n_tokens - self.max_length, self.stride, dtype=np.int64)
        # a window longer than the text gives none; its offsets would only fill memory
        offsets = np.arange(self.max_length if len(starts) else 0, dtype=np.int64)
        rows = starts[:, None] + offsets[None, :]  # (N, max_length) token positions
        shape = (len(starts), self.max_length)
        self.inputs = token_ids[rows].reshape(shape)  # (N, max_length) int64
        self.targets = token_ids[rows + 1].reshape(shape)  # (N, max_length), shifted by one

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, idx):
        return Tensor(self.inputs[idx]), Tensor(self.targets[idx])


# ----------------------------------------------------------------------------------
# Batching: torch's default collate.


def default_collate(batch):
    """Stack a list of samples into one batch, field by field, like torch's.

    - Tensors and arrays of one shape (S...) -> a Tensor (B, S...), dtype kept;
    - Python numbers as torch takes them: a float first -> float64 (B,); an int or bool
      first -> ``tensor(batch)``'s dtype (ints int64, any float float32, all bools bool);
      NumPy scalars keep their dtype;
    - strings -> as they are (the list, or in a field the tuple, of them);
    - a tuple or list -> a list with each position collated (so ``(x, y)`` samples give
      ``[X, Y]``); a namedtuple stays that namedtuple; a dict -> a dict, key by key.

    The stacked Tensors carry no autograd graph back to the samples.
    """
    elem = batch[0]
    if isinstance(elem, Tensor) or isinstance(elem, (np.ndarray, xp.ndarray)):
        return _stack(batch)
    if isinstance(elem, np.bool_):
        return Tensor(np.asarray(batch, dtype=np.bool_))
    if isinstance(elem, np.generic) and elem.dtype.kind in "iuf":
        return Tensor(np.asarray(batch, dtype=elem.dtype))
    if isinstance(elem, (numbers.Integral, numbers.Real)):
        _same_kind(batch, numbers.Real, "a number")
        # torch's rule keys on the first sample: [1, 2.5] is float32, [1.5, 2] float64
        float64 = isinstance(elem, numbers.Real) and not isinstance(elem, numbers.Integral)
        return tensor(batch, dtype=np.float64 if float64 else None)
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        return {key: default_collate([sample[key] for sample in batch]) for key in elem}
    if isinstance(elem, collections.abc.Sequence):
        if any(len(sample) != len(elem) for sample in batch):
            raise RuntimeError(
                "each element in list of batch should be of equal size: the samples have "
                f"{sorted({len(sample) for sample in batch})} fields"
            )
        fields = [default_collate(samples) for samples in zip(*batch)]
        if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # a namedtuple
            return type(elem)(*fields)
        return fields
    raise TypeError(
        f"default_collate: samples must be Tensors, arrays, numbers, strings, or tuples, "
        f"lists or dicts of those; found {type(elem).__name__}. Return one of these from "
        "__getitem__, or pass collate_fn=your_function"
    )


def _same_kind(batch, kind, what):
    """A TypeError naming the first sample that is not a ``kind`` like the first one."""
    for i, sample in enumerate(batch):
        if not isinstance(sample, kind):
            raise TypeError(
                f"default_collate: sample 0 is {what} but sample {i} is a "
                f"{type(sample).__name__}; return one kind of sample from __getitem__, or "
                "pass collate_fn=your_function"
            )


def _stack(batch):
    """Tensors or arrays of one shape (S...) -> one Tensor (B, S...), in the samples'
    common dtype by torch's promotion (a float dtype wins over integers)."""
    arrays = [item.array if isinstance(item, Tensor) else item
              if isinstance(item, (np.ndarray, xp.ndarray)) else np.asarray(item)
              for item in batch]
    shapes = {tuple(a.shape) for a in arrays}
    if len(shapes) > 1:
        raise RuntimeError(
            f"stack expects each tensor to be equal size, but the samples have shapes "
            f"{sorted(shapes)}: make every sample the same length (crop or pad), or pass "
            "collate_fn=your_function"
        )
    dtypes = {a.dtype for a in arrays}
    if len(dtypes) > 1:
        floats = [d for d in dtypes if d.kind == "f"]
        common = np.result_type(*(floats or dtypes))
        arrays = [a.astype(common, copy=False) for a in arrays]
    if all(isinstance(a, np.ndarray) for a in arrays):
        return Tensor(np.stack(arrays))  # on the host, then one copy to the device
    return Tensor(xp.stack([xp.asarray(a) for a in arrays]))


# ----------------------------------------------------------------------------------
# The loader.


class DataLoader:
    """``torch.utils.data.DataLoader``: batches of Tensors from a ``Dataset``.

    Each pass takes the samples in order, or with ``shuffle`` in a fresh permutation
    drawn from tinygpt's generator (``tinygpt.manual_seed`` makes it repeatable; each
    epoch differs), cuts them into slices of ``batch_size`` (the last one short, or
    dropped with ``drop_last``) and stacks each slice with ``collate_fn``
    (``default_collate``: an ``(input, target)`` sample gives ``[inputs, targets]``,
    Tensors of shape (B, ...)). ``len(loader)`` is the number of batches per pass.

    ``num_workers`` is accepted and changes nothing: the batches are built in this
    process, the same batches as with 0 (tinygpt starts no worker processes).
    ``pin_memory``, ``timeout``, ``prefetch_factor``, ``persistent_workers`` and the
    other worker settings are accepted for the same reason and do nothing. ``sampler``,
    ``batch_sampler``, ``generator`` and ``worker_init_fn`` raise NotImplementedError.
    ``name`` (tinygpt's, e.g. "training") only labels messages.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, sampler=None, batch_sampler=None,
                 num_workers=0, collate_fn=None, pin_memory=False, drop_last=False, timeout=0,
                 worker_init_fn=None, multiprocessing_context=None, generator=None, *,
                 prefetch_factor=None, persistent_workers=False, pin_memory_device="",
                 in_order=True, name=None):
        for argument, value, instead in (
            ("sampler", sampler, "use shuffle=True for a random order each pass, or "
             "shuffle=False for the dataset's order"),
            ("batch_sampler", batch_sampler, "use batch_size, shuffle and drop_last"),
            ("generator", generator, "shuffling draws from tinygpt's generator: call "
             "tinygpt.manual_seed(seed) for a repeatable order"),
            ("worker_init_fn", worker_init_fn, "tinygpt starts no worker processes (batches "
             "are built in this process); seed with tinygpt.manual_seed"),
        ):
            if value is not None:
                raise NotImplementedError(
                    f"DataLoader({argument}=...) is not supported by tinygpt: {instead}"
                )
        if pin_memory_device:
            check_device(pin_memory_device)
        if batch_size is None:
            raise NotImplementedError(
                "DataLoader(batch_size=None) (no batching) is not supported by tinygpt: "
                "index the dataset directly, dataset[i], or use batch_size=1"
            )
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(
                f"DataLoader needs a map-style dataset with __len__ and __getitem__, got "
                f"{type(dataset).__name__}; iterable datasets are not supported"
            )
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"collate_fn must be a function, got {collate_fn!r}")
        self.dataset = dataset
        self.batch_size = positive_int("batch_size", batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.num_workers = nonnegative_int("num_workers", num_workers)  # accepted; no workers run
        self.collate_fn = default_collate if collate_fn is None else collate_fn
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
            samples = [self.dataset[int(i)] for i in order[k * B : (k + 1) * B]]
            yield self.collate_fn(samples)  # e.g. [inputs (B, T), targets (B, T)]

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

    ``num_workers`` is passed on to the ``DataLoader``, which accepts it and builds
    the same batches in this process. Raises ValueError when the text yields no
    batch at all, saying how many tokens it has and how many are needed.
    """
    batch_size = positive_int("batch_size", batch_size)
    max_length = positive_int("max_length", max_length)
    stride = positive_int("stride", stride)
    if tokenizer is None:
        tokenizer = get_tokenizer()

    dataset = GPTDatasetV1(txt, tokenizer, max_length, stride)
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
        num_workers=num_workers, name=name,
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
