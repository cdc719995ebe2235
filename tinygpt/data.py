"""Datasets and the data loader: the book's chapter 2 on tinygpt, with torch's names.

``Dataset`` and ``DataLoader`` are ``torch.utils.data``'s (also importable from
``tinygpt.utils.data``): subclass ``Dataset`` with ``__len__`` and ``__getitem__``, and
``DataLoader(dataset, batch_size, shuffle, drop_last, num_workers)`` yields its samples
stacked into batches of ``Tensor``s, field by field, as torch's default collate does.
``random_split(dataset, [0.9, 0.1], generator=tinygpt.Generator().manual_seed(42))``
cuts a dataset into ``Subset``s, as torch's does.

``GPTDatasetV1`` is the book's listing 2.5: it cuts a token stream into input windows of
``max_length`` tokens, ``stride`` apart, each paired with the same window shifted one
token to the right (the next-token targets). ``create_dataloader_v1`` wraps it in a
loader the way the book does, and ``train_val_split`` is chapter 5's 90/10 split of the
text that the two loaders (training, validation) are made from.

For resuming training mid-epoch the order of a pass is explicit:
``order = loader.epoch_order()`` draws it and ``loader.iterate(order, k)`` replays it
from batch ``k``; ``iter(loader)`` is both in one go.
"""

import collections.abc
import copy
import functools
import itertools
import math
import multiprocessing
import numbers
import warnings

import numpy as np

from .backend import DEFAULT_DTYPE, ON_GPU, resolve_rng, to_numpy, xp
from .checks import positive_int, real_problem
from .tensor import Tensor
from .tensors import Generator, as_tensor, stack
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

    def __len__(self):  # torch's Dataset has none: len() is a TypeError there too
        raise TypeError(
            f"object of type {type(self).__name__!r} has no len(): define __len__(self) "
            "returning the number of samples"
        )


class Subset(Dataset):
    """``torch.utils.data.Subset``: the samples of ``dataset`` at ``indices``, in that
    order (``subset[k]`` is ``dataset[indices[k]]``)."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = indices
        if (type(self).__getitem__ is not Subset.__getitem__
                and type(self).__getitems__ is Subset.__getitems__):
            raise NotImplementedError(
                f"{type(self).__name__} overrides __getitem__ but not __getitems__, which a "
                "DataLoader calls for a batch; define it too, e.g. def __getitems__(self, "
                "indices): return [self.__getitem__(idx) for idx in indices]"
            )

    def __getitem__(self, idx):
        if isinstance(idx, list):
            return self.dataset[[self.indices[i] for i in idx]]
        return self.dataset[self.indices[idx]]

    def __getitems__(self, indices):
        """The samples at ``indices`` (of this subset), in one call: what a DataLoader asks."""
        getitems = getattr(self.dataset, "__getitems__", None)
        if callable(getitems):
            return getitems([self.indices[i] for i in indices])
        return [self.dataset[self.indices[i]] for i in indices]

    def __len__(self):
        return len(self.indices)


def random_split(dataset, lengths, generator=None):
    """``torch.utils.data.random_split``: ``dataset`` cut into non-overlapping Subsets of
    the given ``lengths``, at a random permutation from ``generator`` (a
    ``tinygpt.Generator``; None: tinygpt's generator, seeded by ``manual_seed``).

    Fractions summing to 1 work as torch's: each split gets ``floor(len(dataset) * f)``
    samples and what is left over goes one at a time to the splits in turn, from the
    first (10 samples at [0.25, 0.75] give 3 and 7); a split of 0 warns.
    """
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        counts = []
        for i, fraction in enumerate(lengths):
            if fraction < 0 or fraction > 1:
                raise ValueError(f"Fraction at index {i} is not between 0 and 1")
            counts.append(math.floor(len(dataset) * fraction))
        for i in range(len(dataset) - sum(counts)):  # the remainder, round-robin
            counts[i % len(counts)] += 1
        lengths = counts
        for i, length in enumerate(lengths):
            if length == 0:
                warnings.warn(f"Length of split at index {i} is 0. This might result in an "
                              "empty dataset.", stacklevel=2)
    if sum(lengths) != len(dataset):
        raise ValueError("Sum of input lengths does not equal the length of the input "
                         f"dataset! ({sum(lengths)} against {len(dataset)} samples)")
    indices = _generator_stream(generator, "random_split").permutation(sum(lengths)).tolist()
    ends = itertools.accumulate(lengths)
    return [Subset(dataset, indices[end - length : end])
            for end, length in zip(ends, lengths, strict=True)]


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
    """Stack a list of samples into one batch, field by field, as torch's does. The first
    sample's type decides:

    - Tensors of one shape (S...) -> ``stack(batch)``, a Tensor (B, S...) in the samples'
      common dtype (torch's promotion), in the autograd graph when a sample requires grad;
      every sample must then be a Tensor. NumPy arrays likewise, each taken as a Tensor
      (arrays of strings or objects are refused);
    - numbers -> what torch.tensor(batch) gives: a Python float first -> float64 (B,);
      an int, bool or NumPy scalar first -> the samples' common dtype, Python ints
      counting as int64, floats as float32 ([1, 2.5] is float32, [1.5, 2] float64);
    - strings -> the list of them, as they are;
    - a dict (any mapping) -> one of its type, key by key; a namedtuple -> that
      namedtuple; a tuple -> a list with each position collated (so ``(x, y)`` samples
      give ``[X, Y]``); a list -> a list of its type.
    """
    elem = batch[0]
    if isinstance(elem, (Tensor, np.ndarray, xp.ndarray)):
        if not isinstance(elem, Tensor) and elem.dtype.kind in "SUO":
            raise TypeError(_cannot_collate(f"an array of dtype {elem.dtype}"))
        return _stack(batch)
    if isinstance(elem, (np.bool_, np.number)) or (
            isinstance(elem, int) and not isinstance(elem, np.generic)):
        return _numbers(batch)
    if isinstance(elem, float):
        return _numbers(batch, float64=True)
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        return _rebuilt(elem, {key: default_collate([sample[key] for sample in batch])
                               for key in elem})
    if isinstance(elem, collections.abc.Sequence):
        if any(len(sample) != len(elem) for sample in batch):
            raise RuntimeError(
                "each element in list of batch should be of equal size: the samples have "
                f"{sorted({len(sample) for sample in batch})} fields"
            )
        return _rebuilt(elem, [default_collate(samples) for samples in zip(*batch)])
    raise TypeError(_cannot_collate(f"a {type(elem).__name__}"))


def default_convert(data):
    """torch's ``default_convert``, what a loader with ``batch_size=None`` applies to each
    sample: NumPy arrays and scalars become Tensors (an array's memory shared, as
    torch.as_tensor does), containers are rebuilt around their converted items, and
    anything else (Tensors, numbers, strings) is returned as it is."""
    if isinstance(data, (np.ndarray, xp.ndarray)):
        return data if data.dtype.kind in "SUO" else Tensor(data)
    if isinstance(data, (np.bool_, np.number)):
        return Tensor(np.asarray(data))
    if isinstance(data, collections.abc.Mapping):
        return _rebuilt(data, {key: default_convert(data[key]) for key in data})
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes, Tensor)):
        return _rebuilt(data, [default_convert(item) for item in data])
    return data


def _cannot_collate(what):
    return (f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts or "
            f"lists; found {what}. Return one of these from __getitem__, or pass "
            "collate_fn=your_function")


def _rebuilt(elem, fields):
    """``fields`` (a dict, or a list of positions) in ``elem``'s container type, as torch
    rebuilds it: a copy of a mutable mapping or sequence with the fields put in, a
    namedtuple of its type, a list for a tuple, else ``type(elem)(fields)``, or the
    plain dict or list when that type cannot be built so."""
    if isinstance(elem, tuple):
        return type(elem)(*fields) if hasattr(elem, "_fields") else fields
    try:
        if isinstance(elem, (collections.abc.MutableMapping, collections.abc.MutableSequence)):
            clone = copy.copy(elem)
            for key, value in (fields.items() if isinstance(fields, dict) else enumerate(fields)):
                clone[key] = value
            return clone
        return type(elem)(fields)
    except TypeError:  # e.g. a range, or a mapping type without dict's constructor
        return fields


def _stack(batch):
    """Tensors or arrays of one shape (S...) -> one Tensor (B, S...), through ``stack``
    (so in the graph when a sample requires grad); arrays alone are stacked on the host,
    then copied to the device once."""
    if isinstance(batch[0], Tensor):
        for i, item in enumerate(batch):
            if not isinstance(item, Tensor):
                raise TypeError(f"expected Tensor as element {i} in argument 0, but got "
                                f"{type(item).__name__}: return one kind of sample from "
                                "__getitem__, or pass collate_fn=your_function")
    items = [item if isinstance(item, (Tensor, np.ndarray, xp.ndarray)) else as_tensor(item)
             for item in batch]
    shapes = [tuple(item.shape) for item in items]
    bad = next((i for i, shape in enumerate(shapes) if shape != shapes[0]), None)
    if bad is not None:
        raise RuntimeError(
            f"stack expects each tensor to be equal size, but got {list(shapes[0])} at entry "
            f"0 and {list(shapes[bad])} at entry {bad}: make every sample the same length "
            "(crop or pad), or pass collate_fn=your_function"
        )
    if all(isinstance(item, np.ndarray) for item in items):
        common = functools.reduce(_promoted, (item.dtype for item in items))
        return Tensor(np.stack([item.astype(common, copy=False) for item in items]))
    return stack([item if isinstance(item, Tensor) else Tensor(item) for item in items])


def _promoted(a, b):
    """torch.promote_types for the dtypes tinygpt holds: a float wins over integers and
    bools whatever its width, a bool gives way; otherwise NumPy's rule."""
    if a == b:
        return a
    if (a.kind == "f") != (b.kind == "f"):
        return a if a.kind == "f" else b
    if "b" in (a.kind, b.kind):
        return b if a.kind == "b" else a
    return np.promote_types(a, b)


def _numbers(batch, float64=False):
    """``torch.tensor(batch)`` for a batch of numbers (``dtype=float64`` when ``float64``):
    each Python int counts as int64, float as float32, bool as bool, a NumPy scalar (or a
    one-element array or Tensor) as its dtype, and the batch takes their promotion."""
    values, dtypes = [], []
    for i, sample in enumerate(batch):
        number = _number(sample)
        if number is None:
            what = "None" if sample is None else f"a {type(sample).__name__}"
            error = RuntimeError if sample is None and not float64 else TypeError
            raise error(
                f"default_collate: sample 0 is a number but sample {i} is {what}; return one "
                "kind of sample from __getitem__, or pass collate_fn=your_function"
            )
        values.append(number[0])
        dtypes.append(number[1])
    dtype = np.dtype(np.float64) if float64 else functools.reduce(_promoted, dtypes)
    if dtype.kind in "iu" and any(isinstance(v, np.bool_) for v in values):
        # torch.tensor([np.True_, 3]) raises this too: a NumPy bool is no integer to it
        raise TypeError("'numpy.bool' object cannot be interpreted as an integer: the batch "
                        "mixes NumPy bools with integers; return one kind of number")
    try:
        return Tensor(np.asarray(values, dtype=dtype))
    except OverflowError:
        raise ValueError(f"Overflow when unpacking long long: a sample does not fit in "
                         f"{dtype}") from None


def _number(sample):
    """(the value, its dtype as torch.tensor infers it) of a number in a list, or None."""
    if isinstance(sample, bool):
        return sample, np.dtype(np.bool_)
    if isinstance(sample, (np.bool_, np.number)):
        return sample, sample.dtype
    if isinstance(sample, int):
        return sample, np.dtype(np.int64)
    if isinstance(sample, float):
        return sample, np.dtype(DEFAULT_DTYPE)
    if isinstance(sample, (np.ndarray, Tensor)) and sample.dtype.kind in "biuf" and (
            sample.ndim == 0 if isinstance(sample, np.ndarray) else sample.numel() == 1):
        array = to_numpy(sample.array if isinstance(sample, Tensor) else sample).reshape(())
        return array[()], array.dtype
    return None


# ----------------------------------------------------------------------------------
# The loader.


class DataLoader:
    """``torch.utils.data.DataLoader``: batches of Tensors from a ``Dataset``.

    Each pass takes the samples in order, or with ``shuffle`` in a fresh permutation
    drawn from ``generator`` (a ``tinygpt.Generator``) or else from tinygpt's generator
    (``tinygpt.manual_seed`` makes it repeatable; each epoch differs), cuts them into
    slices of ``batch_size`` (the last one short, or dropped with ``drop_last``) and
    stacks each slice with ``collate_fn`` (``default_collate``: an ``(input, target)``
    sample gives ``[inputs, targets]``, Tensors of shape (B, ...)). ``len(loader)`` is
    the number of batches per pass. ``batch_size=None`` yields the samples one by one,
    through ``default_convert``. A dataset with ``__getitems__(indices)`` gets a batch's
    indices in one call, as in torch.

    The arguments are checked as torch checks them, with torch's errors, at the same
    moment (some only when a pass starts). tinygpt starts no worker processes: with
    ``num_workers`` > 0 the batches are built in this process, the same batches as with
    0, and the worker settings (``prefetch_factor``, ``persistent_workers``,
    ``multiprocessing_context``, ``timeout``, ``in_order``) are checked and then change
    nothing; a ``worker_init_fn`` there raises NotImplementedError, as do ``sampler`` and
    ``batch_sampler``. ``pin_memory`` changes nothing either (warning on the CPU, as
    torch does without an accelerator). ``name`` (tinygpt's, e.g. "training") only
    labels messages.
    """

    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None,
                 num_workers=0, collate_fn=None, pin_memory=False, drop_last=False, timeout=0,
                 worker_init_fn=None, multiprocessing_context=None, generator=None, *,
                 prefetch_factor=None, persistent_workers=False, pin_memory_device="",
                 in_order=True, name=None):
        # torch's checks, in torch's order, with its classes
        _nonnegative("num_workers", num_workers, "num_workers option should be "
                     "non-negative; use num_workers=0 to disable multiprocessing.")
        _nonnegative("timeout", timeout, "timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in "
                             "multiprocessing: let num_workers > 0 to enable "
                             "multiprocessing, otherwise set prefetch_factor to None.")
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        elif prefetch_factor is not None:
            _nonnegative("prefetch_factor", prefetch_factor,
                         "prefetch_factor option should be non-negative")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        _check_multiprocessing_context(multiprocessing_context, num_workers)
        shuffle = bool(shuffle)  # as torch: any value, by its truth
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None and (
                batch_size != 1 or shuffle or sampler is not None or drop_last):
            raise ValueError("batch_sampler option is mutually exclusive with batch_size, "
                             "shuffle, sampler, and drop_last")
        if batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually "
                             "exclusive with drop_last")
        if batch_size is not None and (not isinstance(batch_size, int)
                                       or isinstance(batch_size, bool) or batch_size <= 0):
            raise ValueError(f"batch_size should be a positive integer value, but got "
                             f"batch_size={batch_size!r}")
        if not isinstance(drop_last, bool):
            raise ValueError(f"drop_last should be a boolean value (True or False), but got "
                             f"drop_last={drop_last!r}")
        # what tinygpt cannot follow
        for argument, value, instead in (
            ("sampler", sampler, "use shuffle=True for a random order each pass, or "
             "shuffle=False for the dataset's order; to draw from part of the dataset, "
             "wrap it in Subset(dataset, indices)"),
            ("batch_sampler", batch_sampler, "use batch_size, shuffle and drop_last"),
            ("worker_init_fn", worker_init_fn if num_workers > 0 else None, "tinygpt "
             "starts no worker processes (batches are built in this process); seed with "
             "tinygpt.manual_seed, or use num_workers=0"),
        ):
            if value is not None:
                raise NotImplementedError(
                    f"DataLoader({argument}=...) is not supported by tinygpt: {instead}"
                )
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.num_workers = num_workers  # accepted; no workers run
        self.collate_fn = collate_fn if collate_fn is not None else (
            default_collate if batch_size is not None else default_convert)
        self.generator = generator
        self.pin_memory, self.pin_memory_device = pin_memory, pin_memory_device
        self.timeout, self.worker_init_fn, self.in_order = timeout, worker_init_fn, in_order
        self.multiprocessing_context = multiprocessing_context
        self.prefetch_factor, self.persistent_workers = prefetch_factor, persistent_workers
        self.sampler = self.batch_sampler = None
        self.name = name
        self._initialized = True

    def __setattr__(self, attr, value):
        if getattr(self, "_initialized", False) and attr in _FIXED_AFTER_INIT:
            raise ValueError(f"{attr} attribute should not be set after "
                             f"{type(self).__name__} is initialized")
        super().__setattr__(attr, value)

    def __len__(self):
        n = len(_map_style(self.dataset))
        if self.batch_size is None:
            return n
        if self.drop_last:
            return n // self.batch_size
        return math.ceil(n / self.batch_size)

    def epoch_order(self):
        """The order of the dataset's samples for one pass: a permutation if shuffling."""
        n = len(_map_style(self.dataset))
        rng = _generator_stream(self.generator, "DataLoader")  # checked even unshuffled
        if self.shuffle:
            return rng.permutation(n).astype(np.int64)
        return np.arange(n, dtype=np.int64)

    def iterate(self, order, start_batch=0):
        """Yield the batches of one pass in ``order``, beginning at batch ``start_batch``.

        ``order`` is what ``epoch_order()`` returned (save it with a checkpoint
        to resume the same pass later).
        """
        order = np.asarray(order)
        n = len(_map_style(self.dataset))
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
        self._start_pass()
        return self._batches(order, int(start_batch), n_batches)

    def _start_pass(self):
        """What torch checks when a pass starts, rather than when the loader is made."""
        if self.pin_memory and not ON_GPU:
            if self.pin_memory_device:
                warnings.warn(f"pin_memory_device is deprecated, the current accelerator will "
                              f"be used as the device, ignore pin_memory_device="
                              f"{self.pin_memory_device!r}.", stacklevel=3)
            warnings.warn("'pin_memory' argument is set as true but no accelerator is found, "
                          "then device pinned memory won't be used.", stacklevel=3)
        if self.num_workers and not isinstance(self.num_workers, numbers.Integral):
            raise TypeError(f"'{type(self.num_workers).__name__}' object cannot be interpreted "
                            f"as an integer: num_workers must be a whole number, got "
                            f"{self.num_workers!r}")
        if self.num_workers == 0 and self.timeout > 0:
            raise AssertionError("_SingleProcessDataLoaderIter requires timeout == 0: a "
                                 "timeout applies to worker processes; pass num_workers > 0 "
                                 "or timeout=0")
        if not callable(self.collate_fn):
            raise TypeError(f"'{type(self.collate_fn).__name__}' object is not callable: "
                            f"collate_fn must be a function, got {self.collate_fn!r:.60}")

    def _batches(self, order, start_batch, n_batches):
        # A generator of its own so that iterate() validates eagerly, at the call.
        if self.batch_size is None:
            for i in order[start_batch:]:
                yield self.collate_fn(self.dataset[int(i)])
            return
        B = self.batch_size
        getitems = getattr(self.dataset, "__getitems__", None)
        for k in range(start_batch, n_batches):
            indices = [int(i) for i in order[k * B : (k + 1) * B]]
            samples = (getitems(indices) if callable(getitems)
                       else [self.dataset[i] for i in indices])
            yield self.collate_fn(samples)  # e.g. [inputs (B, T), targets (B, T)]

    def __iter__(self):
        return self.iterate(self.epoch_order())

    def __repr__(self):
        label = f"{self.name!r}, " if self.name is not None else ""
        return (
            f"DataLoader({label}{len(self.dataset)} samples, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, {len(self)} batches)"
        )


# torch's DataLoader refuses to change these once it is made
_FIXED_AFTER_INIT = ("batch_size", "batch_sampler", "sampler", "drop_last", "dataset",
                     "persistent_workers")


def _nonnegative(name, value, message):
    """torch's ``value < 0`` check: TypeError for what is no number, ValueError below 0."""
    if not isinstance(value, numbers.Real):
        raise TypeError(f"'<' not supported between instances of '{type(value).__name__}' and "
                        f"'int': {name} must be a number, got {value!r:.60}")
    if value < 0:
        raise ValueError(message)


def _check_multiprocessing_context(context, num_workers):
    """torch's checks of ``multiprocessing_context`` (which then changes nothing here)."""
    if context is None:
        return
    if num_workers == 0:
        raise ValueError("multiprocessing_context can only be used with multi-process "
                         f"loading (num_workers > 0), but got num_workers={num_workers}")
    if isinstance(context, str):
        methods = multiprocessing.get_all_start_methods()
        if context not in methods:
            raise ValueError(f"multiprocessing_context option should specify a valid start "
                             f"method in {methods!r}, but got multiprocessing_context="
                             f"{context!r}")
    elif not isinstance(context, multiprocessing.context.BaseContext):
        raise TypeError("multiprocessing_context option should be a valid context object or a "
                        f"string specifying the start method, but got "
                        f"multiprocessing_context={context!r:.60}")


def _map_style(dataset):
    """``dataset`` if it has ``__len__`` and ``__getitem__``; else torch's TypeError."""
    if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise TypeError(
            f"DataLoader needs a map-style dataset with __len__ and __getitem__, got "
            f"{type(dataset).__name__}; iterable datasets are not supported"
        )
    return dataset


def _generator_stream(generator, caller):
    """The NumPy stream a ``generator=`` argument names: None -> tinygpt's generator;
    a ``tinygpt.Generator`` (or a NumPy Generator) -> its own; else torch's TypeError."""
    if generator is not None and not isinstance(generator, (Generator, np.random.Generator)):
        raise TypeError(f"{caller}(generator=...) takes a tinygpt.Generator (e.g. "
                        f"tinygpt.Generator().manual_seed(42)) or None, got "
                        f"{type(generator).__name__}")
    return resolve_rng(generator, "generator")


def train_val_split(text_data, train_ratio=0.90):
    """Section 5.1.3's split of a text: (train_data, val_data), the first ``train_ratio``
    of its characters to train on and the rest to validate on.

    The cut is at character ``split_idx = int(train_ratio * len(text_data))``, wherever
    that falls (inside a word too), as in the book. train_ratio: a number in (0, 1).
    """
    problem = real_problem("train_ratio", train_ratio, above=0.0, below=1.0)
    if problem:
        raise ValueError(f"{problem}: the share of the text to train on, e.g. 0.90")
    split_idx = int(train_ratio * len(text_data))
    train_data = text_data[:split_idx]
    val_data = text_data[split_idx:]
    return train_data, val_data


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
