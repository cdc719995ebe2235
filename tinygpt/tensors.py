"""torch's functions under their torch names, on tinygpt tensors.

With ``import tinygpt as torch`` the book's calls run as written: ``torch.tensor``,
``torch.arange(n, device=...)``, ``torch.softmax(x, dim=-1)``, ``torch.multinomial``,
``torch.cat``, ``torch.where(condition=..., input=..., other=...)``, ``torch.topk`` and
the rest below. Each one builds on the autograd ops (``ops.py``), so gradients flow
through them as through the Tensor methods.

Differences from torch, all deliberate:
- random numbers (``rand``, ``randn``, ``multinomial``, dropout, init) come from
  tinygpt's generator (``manual_seed``), so the same seed draws other numbers than
  torch's;
- one device per process: "cpu" with NumPy, or "cuda" with ``TINYGPT_BACKEND=cupy``
  (``device=`` arguments are checked, never ignored);
- dtypes are NumPy's (``torch.float32 == numpy.float32``); float16/bfloat16 are not
  supported.
"""

import builtins
import math
import numbers
import os
import types

import numpy

from . import backend, ops
from .backend import DEFAULT_DTYPE, Device, check_device, resolve_rng, to_numpy, xp
from .checks import dim_index, nonnegative_int, positive_int, rectangular, shape
from .dtypes import DTYPES, Size, dtype, promote_types, scalar_dtype
from .printing import set_printoptions
from .tensor import Tensor, _where

pi, e, inf, nan = math.pi, math.e, math.inf, math.nan
device = Device

# torch's dtype names (``dtypes.py``: NumPy dtypes that print as torch's). The package
# exports them all (torch.float, torch.long, ...); "float", "int" and "bool" would shadow
# builtins here, so only the package has them.
float32, float64, double = DTYPES["float32"], DTYPES["float64"], DTYPES["double"]
int64, long, int32 = DTYPES["int64"], DTYPES["long"], DTYPES["int32"]
int16, int8, uint8 = DTYPES["int16"], DTYPES["int8"], DTYPES["uint8"]


class _UnsupportedDtype:
    """torch.float16 and friends: a placeholder that fails clearly when used."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"tinygpt.{self.name} (not supported)"


float16, half, bfloat16 = (_UnsupportedDtype(n) for n in ("float16", "half", "bfloat16"))


def _dtype(dtype, default=None):
    if isinstance(dtype, _UnsupportedDtype):
        raise NotImplementedError(
            f"{dtype.name} is not supported: tinygpt computes in float32 (float64 for checks)"
        )
    return default if dtype is None else numpy.dtype(dtype)


def _size(size):
    """``zeros(2, 3)`` and ``zeros((2, 3))`` both mean shape (2, 3); ``zeros(())`` is a
    0-d tensor and ``zeros()`` torch's TypeError. Sizes are checked as torch checks them
    (2.5 is refused, not cropped)."""
    if not size:
        raise TypeError('missing 1 required positional arguments: "size" (a 0-d tensor is '
                        "size ())")
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    return shape(size)


def _new(array, requires_grad=False, device=None):
    check_device(device)
    return Tensor(array, requires_grad=requires_grad)


# ----------------------------------------------------------------------------------
# Creating tensors.


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor from a number, a (nested) list, a NumPy array or a tensor (copied).
    Like torch: Python floats give float32, ints int64, bools bool; arrays keep their
    dtype."""
    if isinstance(data, Tensor):
        data = data.array.copy()
    elif isinstance(data, (list, tuple)) and builtins.any(isinstance(v, Tensor) for v in data):
        data = [v.tolist() if isinstance(v, Tensor) else v for v in data]
    if isinstance(data, (list, tuple)):  # checked on the host, then copied over once
        array = rectangular(data, "tensor data", "pad the rows to one length")
    else:
        array = data if isinstance(data, xp.ndarray) else numpy.asarray(backend.to_numpy(data))
    if array.dtype.kind == "O" and dtype is not None and _dtype(dtype).kind in "fb" and (
            isinstance(_odd_leaf(data), numbers.Integral)):
        # ints beyond int64, asked for as floats (or bools): torch converts them
        array = numpy.asarray(data, dtype=numpy.float64)
    if array.dtype.kind not in "biuf":
        _refuse_data(data, array.dtype, asked=dtype is not None)
    if dtype is not None:
        if array.dtype.kind == "f" and _dtype(dtype).kind in "iu" and not bool(
                array.size == 0 or numpy.isfinite(backend.to_numpy(array)).all()):
            raise RuntimeError(f"value cannot be converted to type {_dtype(dtype)} without "
                               "overflow: the data holds nan or inf")
        array = array.astype(_dtype(dtype))
    elif not isinstance(data, (numpy.ndarray, xp.ndarray)):
        array = array.astype(_inferred_dtype(data, array.dtype))
    else:
        array = array.copy()
    array = xp.asarray(array)
    return _new(array, requires_grad, device)


def _inferred_dtype(data, numpy_dtype):
    """torch's dtype for a number or a nested list: Python floats give float32 (its
    default), ints int64, bools bool, and NumPy numbers their own dtype, promoted
    together (``[np.float32(1), np.float64(2)]`` is float64)."""
    dtype, stack = None, [data]
    while stack:
        value = stack.pop()
        if isinstance(value, (list, tuple)):
            stack.extend(value)
            continue
        one = value.dtype if isinstance(value, numpy.generic) else scalar_dtype(value)
        dtype = one if dtype is None else promote_types(dtype, one)
    if dtype is None:  # no numbers at all (tensor([])): float32, torch's default
        return DEFAULT_DTYPE if numpy_dtype.kind == "f" else numpy_dtype
    return dtype


def _odd_leaf(data):
    """The first value in ``data``, depth first, that is not a number or overflows int64
    (else ``data``): what a tensor's error names."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, (list, tuple)):
            stack.extend(reversed(value))
        elif not isinstance(value, numbers.Number) or (
                isinstance(value, int) and not -2**63 <= value < 2**63):
            return value
    return data


def _refuse_data(data, dtype, asked=False):
    """torch's errors for what a tensor cannot hold: text, None, dicts, objects (a
    TypeError when a dtype was ``asked`` for, as torch converts each value to it)."""
    if dtype.kind == "c":
        raise NotImplementedError("complex tensors are not supported by tinygpt; keep the "
                                  "real and imaginary parts in two float tensors")
    if dtype.kind in "US":
        raise TypeError(f"tensor(): invalid data type '{'str' if dtype.kind == 'U' else 'bytes'}'"
                        "; convert text to numbers first (e.g. a tokenizer's ids)")
    leaf = _odd_leaf(data)
    if isinstance(leaf, numbers.Integral):
        raise ValueError(f"Overflow when unpacking long long: {leaf} does not fit in int64; "
                         "pass dtype=float32 for a rounded value")
    if asked:
        raise TypeError(f"tensor(): a {type(leaf).__name__} cannot be converted to a "
                        "number; a tensor holds numbers or bools")
    raise RuntimeError(f"Could not infer dtype of {type(leaf).__name__}: a tensor holds "
                       f"numbers or bools, got {dtype} data")


def as_tensor(data, dtype=None, device=None):
    return data if isinstance(data, Tensor) and dtype is None else tensor(data, dtype, device)


def from_numpy(array):
    """A tensor over the NumPy array (shared memory on the NumPy backend)."""
    return Tensor(array)


def is_tensor(obj):
    return isinstance(obj, Tensor)


def zeros(*size, dtype=None, device=None, requires_grad=False):
    return _new(xp.zeros(_size(size), dtype=_dtype(dtype, DEFAULT_DTYPE)), requires_grad, device)


def ones(*size, dtype=None, device=None, requires_grad=False):
    return _new(xp.ones(_size(size), dtype=_dtype(dtype, DEFAULT_DTYPE)), requires_grad, device)


def empty(*size, dtype=None, device=None, requires_grad=False):
    return zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    default = numpy.bool_ if isinstance(fill_value, (bool, numpy.bool_)) else (
        numpy.int64 if isinstance(fill_value, numbers.Integral) else DEFAULT_DTYPE)
    array = xp.full(_size((size,)), fill_value, dtype=_dtype(dtype, default))
    return _new(array, requires_grad, device)


def zeros_like(t, dtype=None):
    return zeros(t.shape, dtype=dtype or t.dtype)


def ones_like(t, dtype=None):
    return ones(t.shape, dtype=dtype or t.dtype)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    """Integers (int64) when start, end and step are ints, else float32, as torch."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise RuntimeError("arange: step must be nonzero")
    if (end - start) * step < 0:  # NumPy gives an empty range; torch refuses
        raise RuntimeError(f"arange: upper bound and lower bound inconsistent with step "
                           f"sign: from {start} to {end} by {step}")
    ints = builtins.all(isinstance(v, numbers.Integral) for v in (start, end, step))
    default = numpy.int64 if ints else DEFAULT_DTYPE
    return _new(xp.arange(start, end, step, dtype=_dtype(dtype, default)), requires_grad,
                device)


def linspace(start, end, steps, dtype=None, device=None):
    steps = nonnegative_int("steps", steps)
    return _new(xp.linspace(start, end, steps, dtype=_dtype(dtype, DEFAULT_DTYPE)),
                False, device)


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False):
    """Uniform [0, 1) numbers from tinygpt's generator (seeded by ``manual_seed``), or
    from ``generator`` (a ``tinygpt.Generator``)."""
    values = _stream(generator).random(_size(size)).astype(_dtype(dtype, DEFAULT_DTYPE))
    return _new(values, requires_grad, device)


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False):
    """Standard normal numbers from tinygpt's generator (or ``generator``)."""
    values = _stream(generator).standard_normal(_size(size)).astype(
        _dtype(dtype, DEFAULT_DTYPE))
    return _new(values, requires_grad, device)


def randint(low, high=None, size=(), *, generator=None, dtype=None, device=None):
    if high is None:
        low, high = 0, low
    values = _stream(generator).integers(low, high, size=_size((size,)), dtype=numpy.int64)
    return _new(values.astype(_dtype(dtype, numpy.int64)), False, device)


def randperm(n, *, generator=None, dtype=None, device=None):
    """0 .. n-1 in a random order, from tinygpt's generator (or ``generator``)."""
    values = _stream(generator).permutation(nonnegative_int("n", n))
    return _new(values.astype(_dtype(dtype, numpy.int64)), False, device)


def _stream(generator):
    """The NumPy stream a random function draws from: torch takes a Generator, not a
    seed, for ``generator=``."""
    if isinstance(generator, numbers.Integral):
        raise TypeError(f"generator must be a tinygpt.Generator, got "
                        f"{type(generator).__name__}; seed one with "
                        "tinygpt.Generator().manual_seed(seed)")
    return resolve_rng(generator, "generator")


class Generator:
    """torch.Generator's counterpart (``tinygpt.Generator``): a random stream of its own,
    apart from the package generator, for ``DataLoader(generator=)``, ``random_split``,
    ``multinomial`` and ``nn.init``.

    ``Generator().manual_seed(42)`` seeds it (and returns it, as torch's does); two
    generators with one seed draw the same numbers whatever ``tinygpt.manual_seed`` did.
    Unseeded, it starts from torch's default seed, 67280421310721, so it repeats from run
    to run as torch's does; ``seed()`` picks a seed from the operating system instead. The
    numbers come from a NumPy PCG64 generator, so they are tinygpt's, not torch's.
    ``get_state()`` is the stream's position as a uint8 Tensor (the seed included), which
    ``set_state`` restores. ``stream`` is the NumPy generator the numbers come from."""

    DEFAULT_SEED = 67280421310721  # torch.Generator().initial_seed()
    _STATE_BYTES = (16, 16, 1, 4, 8)  # PCG64 state, increment, has_uint32, uinteger; seed

    def __init__(self, device="cpu"):
        self.device = Device(device)
        if self.device != "cpu":  # its numbers are drawn on the host on either backend
            check_device(device)
        self.manual_seed(self.DEFAULT_SEED)

    def manual_seed(self, seed):
        """Seed the stream: a Python int in [-2**63, 2**64 - 1], a negative one taken
        modulo 2**64 as torch takes it; returns this generator."""
        if isinstance(seed, numpy.integer):  # torch refuses them too, with this class
            raise TypeError("an integer is required: Generator.manual_seed takes a Python "
                            f"int; pass int(seed), not {type(seed).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise RuntimeError(f"manual_seed expected a long, but got {type(seed).__name__}")
        if not -(1 << 63) <= seed < (1 << 64):
            raise ValueError(f"Overflow when unpacking long long: seed {seed} is outside "
                             "[-2**63, 2**64 - 1]")
        self._seed = int(seed) % (1 << 64)
        self.stream = numpy.random.default_rng(self._seed)
        return self

    def seed(self):
        """Seed the stream from the operating system's entropy; returns the seed."""
        self.manual_seed(int.from_bytes(os.urandom(8), "little"))
        return self._seed

    def initial_seed(self):
        """The seed the stream started from."""
        return self._seed

    def get_state(self):
        """The stream's position and seed as a uint8 Tensor (45 bytes; torch's CPU state
        has another size and layout, so the two don't mix)."""
        state = self.stream.bit_generator.state
        fields = (state["state"]["state"], state["state"]["inc"], state["has_uint32"],
                  state["uinteger"], self._seed)
        raw = b"".join(int(v).to_bytes(n, "little") for v, n in zip(fields, self._STATE_BYTES))
        return Tensor(numpy.frombuffer(raw, dtype=numpy.uint8).copy())

    def set_state(self, new_state):
        """Restore a state from ``get_state()``; returns this generator."""
        if not isinstance(new_state, Tensor):
            raise TypeError(f"expected a torch.ByteTensor, but got {type(new_state).__name__}")
        raw = to_numpy(new_state.array)
        if raw.dtype != numpy.uint8:
            raise TypeError("RNG state must be a torch.ByteTensor (a uint8 Tensor from "
                            "get_state())")
        if raw.size != sum(self._STATE_BYTES):
            raise RuntimeError(f"Expected a tinygpt Generator state of size "
                               f"{sum(self._STATE_BYTES)} but found the input RNG state size "
                               f"to be {raw.size}")
        raw, fields = raw.reshape(-1).tobytes(), []
        for n in self._STATE_BYTES:
            fields.append(int.from_bytes(raw[:n], "little"))
            raw = raw[n:]
        state, inc, has_uint32, uinteger, seed = fields
        if inc % 2 == 0 or has_uint32 > 1:
            raise RuntimeError("Invalid PCG64 state: not a state from Generator.get_state()")
        rng = numpy.random.default_rng()
        rng.bit_generator.state = {"bit_generator": "PCG64",
                                   "state": {"state": state, "inc": inc},
                                   "has_uint32": has_uint32, "uinteger": uinteger}
        self.stream, self._seed = rng, seed
        return self

    def clone_state(self):
        """A new Generator at this one's position."""
        return Generator(self.device).set_state(self.get_state())

    def __repr__(self):
        return f"<tinygpt.Generator on {self.device}, initial_seed={self._seed}>"


def manual_seed(seed):
    """Seed tinygpt's generators (init, dropout, shuffling, sampling); returns the NumPy
    Generator (torch returns its own Generator)."""
    return backend.manual_seed(seed)


# ----------------------------------------------------------------------------------
# Maths on tensors (gradients flow through all but the integer results).


def _t(x):
    return x if isinstance(x, Tensor) else tensor(x)


def exp(x):
    return _t(x).exp()


def log(x):
    return _t(x).log()


def sqrt(x):
    return _t(x).sqrt()


def tanh(x):
    return _t(x).tanh()


def abs(x):  # noqa: A001 - torch's name
    return _t(x).abs()


def dot(a, b):
    return _t(a).dot(_t(b))


def _elementwise(name):
    """torch.<name>(x): the Tensor method of that name (gradient and all)."""

    def function(x):
        return getattr(_t(x), name)()

    function.__name__ = function.__qualname__ = name
    function.__doc__ = f"torch.{name}(x), the same as x.{name}()."
    return function


sigmoid, cos, sin, rsqrt = (_elementwise(n) for n in ("sigmoid", "cos", "sin", "rsqrt"))


def matmul(a, b):
    return _t(a) @ _t(b)


def repeat_interleave(x, repeats, dim=None, *, output_size=None):
    return _t(x).repeat_interleave(repeats, dim, output_size=output_size)


def nonzero(x, *, as_tuple=False):
    return _t(x).nonzero(as_tuple=as_tuple)


def logical_and(a, b):
    return _t(a).bool() & _t(b).bool()


def logical_or(a, b):
    return _t(a).bool() | _t(b).bool()


def logical_not(x):
    return ~_t(x).bool()


def finfo(dtype=None):
    """Limits of a float dtype (``eps``, ``max``, ``tiny``), NumPy's finfo."""
    return numpy.finfo(numpy.dtype(DEFAULT_DTYPE if dtype is None else _dtype(dtype)))


def iinfo(dtype):
    return numpy.iinfo(numpy.dtype(_dtype(dtype)))


def pow(x, exponent):  # noqa: A001 - torch's name
    if not isinstance(x, Tensor):
        return _t(exponent).__rpow__(x)
    return x ** exponent


def sum(x, dim=None, keepdim=False, *, dtype=None):  # noqa: A001
    return _t(x).sum(dim, keepdim, dtype=dtype)


def mean(x, dim=None, keepdim=False, *, dtype=None):
    return _t(x).mean(dim, keepdim, dtype=dtype)


def var(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return _t(x).var(dim, unbiased, keepdim, correction=correction)


def std(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return _t(x).std(dim, unbiased, keepdim, correction=correction)


def max(x, dim=None, keepdim=False):  # noqa: A001
    return _t(x).max(dim, keepdim)


def min(x, dim=None, keepdim=False):  # noqa: A001
    return _t(x).min(dim, keepdim)


def argmax(x, dim=None, keepdim=False):
    return _t(x).argmax(dim, keepdim)


def argmin(x, dim=None, keepdim=False):
    return _t(x).argmin(dim, keepdim)


def any(x, dim=None, keepdim=False):  # noqa: A001
    return _t(x).any(dim, keepdim)


def all(x, dim=None, keepdim=False):  # noqa: A001
    return _t(x).all(dim, keepdim)


def maximum(a, b):
    return _t(a).max(_t(b))


def minimum(a, b):
    return _t(a).min(_t(b))


def clamp(x, min=None, max=None):  # noqa: A002 - torch's names
    return _t(x).clamp(min, max)


clip = clamp


def floor_divide(a, b):
    return _t(a) // b


def remainder(a, b):
    return _t(a) % b


def narrow(x, dim, start, length):
    return _t(x).narrow(dim, start, length)


def chunk(x, chunks, dim=0):
    return _t(x).chunk(chunks, dim)


def split(tensor, split_size_or_sections, dim=0):
    return _t(tensor).split(split_size_or_sections, dim)


def unbind(x, dim=0):
    return _t(x).unbind(dim)


def gather(x, dim, index):
    return _t(x).gather(dim, index)


def index_select(x, dim, index):
    return _t(x).index_select(dim, index)


def sort(x, dim=-1, descending=False, stable=False):
    return _t(x).sort(dim, descending, stable)


def argsort(x, dim=-1, descending=False, stable=False):
    return _t(x).argsort(dim, descending, stable)


def transpose(x, dim0, dim1):
    return _t(x).transpose(dim0, dim1)


def permute(x, dims):
    return _t(x).permute(dims)


def reshape(x, shape):
    return _t(x).reshape(shape)


def flatten(x, start_dim=0, end_dim=-1):
    return _t(x).flatten(start_dim, end_dim)


def squeeze(x, dim=None):
    return _t(x).squeeze(dim)


def unsqueeze(x, dim):
    return _t(x).unsqueeze(dim)


def clone(x):
    return _t(x).clone()


def square(x):
    return _t(x).square()


def softmax(input, dim=None, dtype=None):  # noqa: A002 - torch's argument names
    """exp(x) / sum(exp(x)) along ``dim`` (``Tensor.softmax``, the ``Softmax`` op):
    torch.softmax, and torch.nn.functional.softmax, which is this same function."""
    if dim is None:
        raise TypeError("softmax needs dim= (which dim sums to 1), e.g. softmax(x, dim=-1)")
    return _t(input).softmax(dim, dtype)


def log_softmax(input, dim=None, dtype=None):  # noqa: A002
    """log(softmax(x)) along ``dim``, computed without overflow (``Tensor.log_softmax``);
    also torch.nn.functional.log_softmax."""
    if dim is None:
        raise TypeError("log_softmax needs dim=, e.g. log_softmax(x, dim=-1)")
    return _t(input).log_softmax(dim, dtype)


def _triangle(name, x, diagonal):
    """x with the entries outside the triangle of its last two dims set to 0 (a fill, not
    a product: an inf there gives 0, not NaN); the gradient passes inside the triangle. A
    1-D tensor has no triangle (NumPy would broadcast it to one)."""
    x = _t(x)
    if x.ndim < 2:
        raise RuntimeError(f"{name}: input tensor must have at least 2 dimensions, got "
                           f"shape {tuple(x.shape)}")
    if not x.requires_grad:  # a mask or data: no graph, and a bool mask stays bool
        return Tensor._of(getattr(xp, name)(x.array, k=diagonal))
    outside = ~getattr(xp, name)(xp.ones(x.shape[-2:], dtype=bool), k=diagonal)
    return ops.MaskedFill.apply(x, Tensor._of(outside), value=0)


def triu(x, diagonal=0):
    """The upper triangle of the last two dims (the rest zero)."""
    return _triangle("triu", x, diagonal)


def tril(x, diagonal=0):
    """The lower triangle of the last two dims (the rest zero)."""
    return _triangle("tril", x, diagonal)


def _joinable(name, tensors):
    """The sequence's items as Tensors of their common dtype (torch's promotion: NumPy's
    would turn int64 with float32 into float64); torch's errors for a bare tensor or an
    empty sequence."""
    if isinstance(tensors, Tensor):
        raise TypeError(f"{name}() takes a sequence of tensors (a list or tuple), got one "
                        f"Tensor; wrap it: {name}([x])")
    tensors = [_t(t) for t in tensors]
    if not tensors:
        error = ValueError if name == "cat" else RuntimeError  # torch's classes
        raise error(f"{name}(): expected a non-empty list of Tensors")
    common = tensors[0].array.dtype
    for t in tensors[1:]:
        common = promote_types(common, t.array.dtype)
    return [t.to(common) for t in tensors]


def cat(tensors, dim=0):
    tensors = _joinable("cat", tensors)
    if builtins.any(t.ndim == 0 for t in tensors):
        raise RuntimeError("cat(): zero-dimensional tensors cannot be concatenated; "
                           "use stack(), or reshape them to (1,)")
    axis = dim_index(dim, tensors[0].ndim)
    first = tensors[0].shape
    for i, t in enumerate(tensors[1:], 1):
        if t.ndim != len(first):
            raise RuntimeError(f"Tensors must have same number of dimensions: got "
                               f"{len(first)} and {t.ndim}")
        bad = next((d for d in range(len(first)) if d != axis and t.shape[d] != first[d]), None)
        if bad is not None:
            raise RuntimeError(f"Sizes of tensors must match except in dimension {axis}. "
                               f"Expected size {first[bad]} but got size {t.shape[bad]} for "
                               f"tensor number {i} in the list.")
    return ops.Cat.apply(*tensors, axis=axis)


concat = concatenate = cat


def stack(tensors, dim=0):
    tensors = _joinable("stack", tensors)
    axis = dim_index(dim, tensors[0].ndim + 1)
    for i, t in enumerate(tensors[1:], 1):
        if t.shape != tensors[0].shape:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got "
                               f"{list(tensors[0].shape)} at entry 0 and {list(t.shape)} at "
                               f"entry {i}")
    return ops.Stack.apply(*tensors, axis=axis)


def where(condition, input=None, other=None):  # noqa: A002 - torch's argument names
    """``input`` where ``condition`` else ``other`` (numbers or tensors, broadcast);
    ``where(condition)`` alone gives the indices where it holds, one tensor per dim."""
    return _where(condition, input, other)


def topk(x, k, dim=-1, largest=True, sorted=True):  # noqa: A002
    """(values, indices) of the ``k`` largest (or smallest) entries along ``dim``,
    largest first; among equal values the lower index comes first (``Tensor.topk``)."""
    return _t(x).topk(k, dim, largest, sorted)


def multinomial(input, num_samples, replacement=False, generator=None):  # noqa: A002
    """Draw ``num_samples`` indices per row with probabilities proportional to ``input``
    (V,) or (B, V), from tinygpt's generator (or ``generator``, a NumPy Generator).
    Without replacement a drawn index is not drawn again in the row, as in torch."""
    probs = numpy.asarray(backend.to_numpy(_t(input).array), dtype=numpy.float64)
    rows = probs.reshape(-1, probs.shape[-1]) if probs.ndim > 1 else probs[None]
    if probs.ndim not in (1, 2):
        raise ValueError(f"multinomial expects a (V,) or (B, V) tensor, got shape {probs.shape}")
    if not numpy.isfinite(rows).all() or (rows < 0).any():
        raise ValueError("multinomial: probabilities must be finite and non-negative")
    totals = rows.sum(axis=1)
    if (totals <= 0).any():
        raise ValueError("multinomial: every row needs a positive sum of probabilities")
    n = positive_int("num_samples", num_samples)
    if not replacement and n > int((rows > 0).sum(axis=1).min()):
        raise ValueError(
            f"multinomial: cannot draw {n} samples without replacement from a row with "
            f"fewer non-zero probabilities; pass replacement=True"
        )
    rng = resolve_rng(generator, "generator")
    out = numpy.empty((rows.shape[0], n), dtype=numpy.int64)
    for r, p in enumerate(rows / totals[:, None]):
        if replacement or n == 1:
            cdf = numpy.cumsum(p)
            out[r] = numpy.minimum(numpy.searchsorted(cdf, rng.random(n) * cdf[-1],
                                                      side="right"), len(p) - 1)
        else:
            out[r] = rng.choice(len(p), size=n, replace=False, p=p)
    return Tensor(out if probs.ndim > 1 else out[0])


def bincount(x, weights=None, minlength=0):
    values = backend.to_numpy(_t(x).array)
    w = None if weights is None else backend.to_numpy(_t(weights).array)
    return Tensor(numpy.bincount(values, weights=w, minlength=minlength))


def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """True when |a - b| <= atol + rtol * |b| everywhere (torch's test, on the host)."""
    return bool(numpy.allclose(backend.to_numpy(_t(a).array), backend.to_numpy(_t(b).array),
                               rtol=rtol, atol=atol, equal_nan=equal_nan))


def equal(a, b):
    """True when both have the same shape and the same values."""
    a, b = _t(a), _t(b)
    return a.shape == b.shape and bool(xp.all(a.array == b.array))


def numel(x):
    return _t(x).numel()


# ----------------------------------------------------------------------------------
# Devices: one per process (see backend.py).

# torch.cuda's questions are answered by the GPU subpackage itself (tinygpt/cuda/), so
# `tinygpt.cuda` is one thing: the package, with torch's is_available() and friends.
from . import cuda  # noqa: E402

backends = types.SimpleNamespace(
    mps=types.SimpleNamespace(is_available=lambda: False, is_built=lambda: False),
    cuda=types.SimpleNamespace(is_built=lambda: backend.BACKEND == "cupy"),
)

__all__ = [
    "Device", "abs", "allclose", "arange", "argmax", "argmin", "as_tensor", "backends", "bfloat16",
    "bincount", "dot", "set_printoptions", "Size", "dtype", "sigmoid", "cos", "sin", "rsqrt",
    "matmul", "repeat_interleave", "nonzero", "logical_and", "logical_or", "logical_not",
    "finfo", "iinfo",
    "cat", "concat", "concatenate", "cuda", "device", "e", "empty", "equal", "exp", "float16",
    "from_numpy", "full", "half", "inf", "is_tensor", "linspace", "log", "log_softmax",
    "manual_seed", "max", "mean", "min", "multinomial", "nan", "numel", "ones",
    "ones_like", "pi", "pow", "rand", "randint", "randn", "softmax", "sqrt", "stack",
    "sum", "tanh", "tensor", "topk", "tril", "triu", "var", "where", "zeros",
    "zeros_like", "float32", "float64", "double", "int64", "long", "int32", "int16", "int8",
    "uint8", "std", "any", "all", "maximum", "minimum", "clamp", "clip", "floor_divide",
    "remainder", "narrow", "chunk", "split", "unbind", "gather", "index_select", "sort",
    "argsort", "transpose", "permute", "reshape", "flatten", "squeeze", "unsqueeze", "clone",
    "randperm", "square", "Generator",
]
