"""torch's Tensor methods, on the engine's ``Tensor`` (autograd.py).

The engine needs only ``data``, ``grad``, ``requires_grad``, ``grad_fn`` and
``backward()``; everything else a PyTorch user calls on a tensor lives here: what it
is (``shape``, ``dtype``, ``device``), printing, operators with torch's dtype
promotion, shape methods, reductions with ``dim=``/``keepdim=``, in-place ops,
``to()``, and a table of torch methods tinygpt does not have, each with a hint. Every
method is a thin layer over a ``Function`` from ``ops.py`` (so gradients flow) plus
the checks that turn NumPy's errors into torch's.

``TensorMethods`` is written as a class so the methods read as methods; the bottom of
this module sets each of them on ``autograd.Tensor``, which stays one class.
"""

import types

import numpy

from . import ops
from .autograd import Tensor, _as_array, _in_place, view_of
from .backend import DEFAULT_DTYPE, Device, check_device, device_name, to_numpy, xp
from .checks import dim_index
from .dtypes import Size, torch_dtype
from .grad_mode import is_grad_enabled


class TensorMethods:
    """The methods torch's Tensor has beyond the engine's core (set on Tensor below)."""

    __slots__ = ()

    # above NumPy's and CuPy's arrays (CuPy: 100), so ``array * Tensor`` defers to
    # Tensor.__rmul__ on either backend
    __array_priority__ = 1000

    # --- what it is ---------------------------------------------------------------------
    @property
    def shape(self):
        return Size(self.array.shape)

    @property
    def dtype(self):  # prints as torch.float32; NumPy calls take it as numpy.float32
        return torch_dtype(self.array.dtype)

    @property
    def ndim(self):
        return self.array.ndim

    @property
    def _version(self):
        """How many in-place changes this tensor's values have had (torch's counter)."""
        return self._counter.value

    def dim(self):
        return self.array.ndim

    def size(self, dim=None):
        """The shape (torch's meaning; ``numel()`` counts the elements), or one dim's length."""
        if dim is None:
            return Size(self.array.shape)
        return int(self.array.shape[dim_index(dim, self.array.ndim)])

    def numel(self):
        return int(self.array.size)

    nelement = numel

    @property
    def device(self):
        return Device(device_name())

    def __len__(self):
        if self.array.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self.array)

    # --- values on the host -------------------------------------------------------------
    def item(self):
        if self.array.size != 1:
            raise ValueError(
                f"item() needs a tensor with one element, this one has {self.array.size}; "
                "use .tolist() for all of them"
            )
        return self.array.item()

    def tolist(self):
        return to_numpy(self.array).tolist()

    def numpy(self):
        """The values as a NumPy array (a copy from the GPU under CuPy)."""
        return to_numpy(self.array)

    def __array__(self, dtype=None, copy=None):
        array = to_numpy(self.array)
        return array if dtype is None else array.astype(dtype, copy=False)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.array.dtype.kind not in "iub":
            raise TypeError(f"only integer tensors can be used as an index, not {self.dtype}")
        return int(self.item())

    def __bool__(self):
        if self.array.size != 1:
            raise RuntimeError(
                f"the truth value of a tensor with {self.array.size} elements is ambiguous; "
                "use .any() or .all()"
            )
        return bool(self.array.item())

    def __format__(self, spec):
        if self.array.ndim == 0:  # like torch: a 0-d tensor formats as its number
            return format(self.array.item(), spec)
        return format(repr(self), spec)

    def __repr__(self):
        return _tensor_repr(self)

    def __iter__(self):
        if self.array.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(len(self.array)))

    def __hash__(self):  # by identity, like torch (== compares values)
        return id(self)

    # --- leaving or joining the graph ---------------------------------------------------
    def detach(self):
        out = Tensor(self.array)
        out._counter = self._counter  # the same values: a change to one changes both
        return out

    def clone(self):
        return ops.Cast.apply(self, dtype=self.dtype)  # astype copies; the gradient passes

    def requires_grad_(self, requires_grad=True):
        if self.creator is not None:
            raise RuntimeError("requires_grad_() works on leaf tensors only; use .detach() first")
        self.requires_grad = bool(requires_grad)
        return self

    # --- operators (implemented in ops.py) ----------------------------------------------
    # Mixed dtypes follow torch: a Python float with an integer tensor gives float32, a
    # float tensor keeps its dtype against Python numbers and integer tensors.
    def __add__(self, other):
        return _broadcast(ops.Add, *_operands(self, other))

    def __radd__(self, other):
        return _broadcast(ops.Add, *reversed(_operands(self, other)))

    def __sub__(self, other):
        _no_bool_subtraction(self, other)
        return _broadcast(ops.Sub, *_operands(self, other))

    def __rsub__(self, other):
        _no_bool_subtraction(self, other)
        return _broadcast(ops.Sub, *reversed(_operands(self, other)))

    def __mul__(self, other):
        return _broadcast(ops.Mul, *_operands(self, other))

    def __rmul__(self, other):
        return _broadcast(ops.Mul, *reversed(_operands(self, other)))

    def __truediv__(self, other):
        return _broadcast(ops.Div, *_operands(self, other, true_division=True))

    def __rtruediv__(self, other):
        return _broadcast(ops.Div, *reversed(_operands(self, other, true_division=True)))

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor):
            raise NotImplementedError(
                "tensor ** tensor is not supported; write torch.exp(b * torch.log(a))"
            )
        if self.dtype.kind != "f" and isinstance(exponent, float):
            return self.float() ** exponent
        return ops.Pow.apply(self, exponent=exponent)

    def __rpow__(self, base):  # base ** self = exp(self * log(base))
        return (self * float(numpy.log(base))).exp()

    def __neg__(self):
        return ops.Neg.apply(self)

    def __matmul__(self, other):
        return _matmul(self, other)

    def __rmatmul__(self, other):
        return _matmul(Tensor(other) if not isinstance(other, Tensor) else other, self)

    # comparisons give bool tensors (no gradient); ``t == None`` is False, as in torch
    def __eq__(self, other):
        return False if other is None else _compare(xp.equal, self, other)

    def __ne__(self, other):
        return True if other is None else _compare(xp.not_equal, self, other)

    def __lt__(self, other):
        return _compare(xp.less, self, other)

    def __le__(self, other):
        return _compare(xp.less_equal, self, other)

    def __gt__(self, other):
        return _compare(xp.greater, self, other)

    def __ge__(self, other):
        return _compare(xp.greater_equal, self, other)

    def __getitem__(self, index):
        return ops.GetItem.apply(self, index=index)

    def __setitem__(self, index, value):
        """``x[index] = value`` in place, as torch: outside a graph it writes into the
        array; where a gradient is recorded (x or value requires grad) it is an in-place
        op (SetItem), so gradients reach x's other entries and ``value``."""
        parts = index if isinstance(index, tuple) else (index,)
        parts = tuple(ops._index_array(i) for i in parts)
        index = parts if isinstance(index, tuple) else parts[0]
        value_requires_grad = isinstance(value, Tensor) and value.requires_grad
        if (self.requires_grad or value_requires_grad) and is_grad_enabled():
            value = value if isinstance(value, Tensor) else Tensor(
                xp.asarray(value, dtype=self.array.dtype))
            if value.array.dtype != self.array.dtype:
                value = ops.Cast.apply(value, dtype=self.array.dtype)
            _in_place(self, ops.SetItem, value, index=index)
            return
        self.array[index] = value.array if isinstance(value, Tensor) else xp.asarray(value)
        self._bump_version("__setitem__")

    # --- shape --------------------------------------------------------------------------
    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        shape = tuple(map(int, shape))
        try:
            if self._requires_grad and is_grad_enabled():
                return ops.Reshape.apply(self, shape=shape)
            return view_of(self, self.array.reshape(shape))  # no graph: no Function
        except ValueError:  # NumPy's words; torch's error and class
            if list(shape).count(-1) > 1:
                raise RuntimeError("only one dimension can be inferred") from None
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size "
                               f"{self.numel()}") from None

    view = reshape

    def contiguous(self):
        return self  # every op takes strided arrays; nothing to copy

    def flatten(self, start_dim=0, end_dim=-1):
        """Like torch: merge dims start_dim..end_dim (inclusive) into one."""
        n = self.ndim
        start, end = dim_index(start_dim, n), dim_index(end_dim, n)
        if n == 0:
            return self.reshape(1)
        if start > end:
            raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
        merged = 1
        for size in self.shape[start:end + 1]:
            merged *= size
        return self.reshape(self.shape[:start] + (merged,) + self.shape[end + 1:])

    def unsqueeze(self, dim):
        dim = dim_index(dim, self.ndim + 1)
        return self.reshape(self.shape[:dim] + (1,) + self.shape[dim:])

    def squeeze(self, dim=None):
        """Drop dims of length 1 (all, or ``dim`` only when its length is 1, as torch)."""
        if dim is None:
            return self.reshape(tuple(n for n in self.shape if n != 1))
        dims = {dim_index(d, self.ndim)
                for d in (dim if isinstance(dim, (tuple, list)) else (dim,))}
        keep = tuple(n for i, n in enumerate(self.shape) if not (i in dims and n == 1))
        return self if keep == self.shape else self.reshape(keep)

    def transpose(self, *axes):
        """``transpose(a, b)`` swaps two axes (torch style); ``transpose()`` reverses all;
        ``transpose((..))`` permutes (NumPy style)."""
        if len(axes) == 2:
            n = self.array.ndim
            order = list(range(n))
            a, b = dim_index(axes[0], n), dim_index(axes[1], n)
            if order:  # a 0-d tensor takes dims 0 and -1 and stays as it is
                order[a], order[b] = order[b], order[a]
            if self._requires_grad and is_grad_enabled():
                return ops.Transpose.apply(self, axes=tuple(order))
            return view_of(self, self.array.transpose(order))
        if not axes:
            return ops.Transpose.apply(self, axes=tuple(reversed(range(self.ndim))))
        return self.permute(*axes)

    def permute(self, *dims):
        if not dims:
            raise TypeError('permute() missing 1 required positional arguments: "dims"')
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        if len(dims) != self.ndim:
            raise RuntimeError(
                "permute(): number of dimensions in the tensor input does not match the "
                "length of the desired ordering of dimensions i.e. input.dim() = "
                f"{self.ndim} is not equal to len(dims) = {len(dims)}"
            )
        axes = tuple(dim_index(d, self.ndim) for d in dims)
        if len(set(axes)) != len(axes):
            raise RuntimeError("permute(): duplicate dims are not allowed.")
        return ops.Transpose.apply(self, axes=axes)

    @property
    def T(self):
        return self.transpose()

    def t(self):
        """The transpose of a matrix; a vector or a number as it is (torch's t())."""
        if self.ndim > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is "
                               f"{self.ndim}D; use transpose(dim0, dim1)")
        return self.transpose(0, 1) if self.ndim == 2 else self

    # --- reductions: torch's dim= / keepdim= (NumPy's axis= / keepdims= work too) -------
    def sum(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        axis, keepdims = _reduction_args(self, dim, keepdim, axis, keepdims)
        return ops.Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        if self.dtype.kind != "f":  # checked before the dims, as torch does
            raise RuntimeError(
                f"mean() needs a floating-point tensor, got {self.dtype}; use .float().mean()"
            )
        axis, keepdims = _reduction_args(self, dim, keepdim, axis, keepdims)
        return ops.Mean.apply(self, axis=axis, keepdims=keepdims)

    def var(self, dim=None, keepdim=False, unbiased=True, *, correction=None):
        """Variance over ``dim``: sum((x - mean)^2) / (n - correction); ``unbiased=False``
        (the book's layer norm) divides by n. Built from ops, so it has a gradient."""
        if self.array.dtype.kind != "f":
            raise RuntimeError("std and var only support floating point and complex dtypes; "
                               "convert first, e.g. x.float().var()")
        axis, _ = _reduction_args(self, dim, keepdim, None, None)
        correction = (1 if unbiased else 0) if correction is None else correction
        n = self.numel() if axis is None else int(numpy.prod(
            [self.shape[a] for a in (axis if isinstance(axis, tuple) else (axis,))]))
        centered = self - self.mean(axis, keepdim=True)
        squares = (centered * centered).sum(axis, keepdim=keepdim)
        if n - correction > 0:
            return squares * (1.0 / (n - correction))
        with numpy.errstate(invalid="ignore"):  # no degrees of freedom: nan (0/0), as torch
            return squares * numpy.inf

    def std(self, dim=None, keepdim=False, unbiased=True, *, correction=None):
        return self.var(dim, keepdim, unbiased, correction=correction).sqrt()

    def max(self, dim=None, keepdim=False):
        """max() -> the largest value; max(dim) -> (values, indices); max(other) ->
        the elementwise maximum."""
        return _extreme(self, dim, keepdim, largest=True)

    def min(self, dim=None, keepdim=False):
        return _extreme(self, dim, keepdim, largest=False)

    def argmax(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        """Index of the largest entry (the first one; flat when ``dim`` is None)."""
        _no_bool("argmax", self)
        axis, keepdims = _reduction_args(self, dim, keepdim, axis, keepdims)
        return Tensor(_argext(xp.argmax, self.array, axis, keepdims))

    def argmin(self, dim=None, keepdim=False):
        _no_bool("argmin", self)
        axis, keepdim = _reduction_args(self, dim, keepdim, None, None)
        return Tensor(_argext(xp.argmin, self.array, axis, keepdim))

    def any(self):
        return Tensor(xp.any(self.array))

    def all(self):
        return Tensor(xp.all(self.array))

    # --- elementwise --------------------------------------------------------------------
    def exp(self):
        return ops.Exp.apply(self)

    def log(self):
        return ops.Log.apply(self)

    def tanh(self):
        return ops.Tanh.apply(self)

    def sqrt(self):
        return ops.Sqrt.apply(self)

    def pow(self, exponent):
        return self ** exponent

    def abs(self):
        return ops.Abs.apply(self)

    __abs__ = abs

    def dot(self, other):
        if self.ndim != 1 or getattr(other, "ndim", 1) != 1:
            raise ValueError("dot() takes two 1-D tensors; use @ (matmul) for matrices")
        return self @ other

    def softmax(self, dim):
        _floating("softmax", self)
        axis = dim_index(dim, self.ndim)
        if self.array.size == 0:  # nothing to normalise (NumPy's max has no identity)
            return self * 1.0
        return ops.Softmax.apply(self, axis=axis)

    def log_softmax(self, dim):
        _floating("log_softmax", self)
        axis = dim_index(dim, self.ndim)
        if self.array.size == 0:
            return self * 1.0
        return ops.LogSoftmax.apply(self, axis=axis)

    def masked_fill(self, mask, value):
        """A copy with ``value`` where ``mask`` (broadcast to this shape) is true."""
        return ops.MaskedFill.apply(self, _fill_mask(self, mask, value, False), value=value)

    def masked_fill_(self, mask, value):
        """``masked_fill`` in place, as the book's attention does: this tensor object now
        holds the filled values, and gradients flow through the fill to what it was."""
        return _in_place(self, ops.MaskedFill, _fill_mask(self, mask, value, True), value=value)

    def add_(self, other, *, alpha=1):
        """self += alpha * other in place (the version bumps; gradients flow as for +)."""
        other = other if alpha == 1 else other * alpha
        return _in_place(self, ops.Add, _in_place_operand(self, other, "add_"))

    def mul_(self, other):
        return _in_place(self, ops.Mul, _in_place_operand(self, other, "mul_"))

    def fill_(self, value):
        """Every entry set to ``value`` in place; no gradient reaches the old values."""
        value = value.item() if isinstance(value, Tensor) else value
        return _in_place(self, ops.MaskedFill, Tensor(xp.ones((), dtype=bool)), value=value)

    def zero_(self):
        return self.fill_(0)

    def gather(self, dim, index):
        index = _as_tensor(index)
        if index.ndim != self.ndim:
            raise RuntimeError("Index tensor must have the same number of dimensions as input "
                               f"tensor ({index.ndim} and {self.ndim})")
        return ops.Gather.apply(self, index, axis=dim_index(dim, self.ndim))

    # --- the book after chapter 5 and the models a learner meets next -------------------
    def matmul(self, other):
        return self @ other

    def sigmoid(self):
        """1 / (1 + exp(-x)); SiLU is x * x.sigmoid()."""
        return ops.Sigmoid.apply(self)

    def cos(self):  # cos and sin: rotary position embeddings
        return ops.Cos.apply(self)

    def sin(self):
        return ops.Sin.apply(self)

    def rsqrt(self):
        """1 / sqrt(x), as RMSNorm scales by it."""
        return ops.Rsqrt.apply(self)

    def repeat_interleave(self, repeats, dim=None, *, output_size=None):
        """Each entry ``repeats`` times in a row along ``dim`` (the flattened tensor when
        ``dim`` is None): grouped-query attention's keys shared by several heads."""
        if isinstance(repeats, Tensor) and repeats.numel() == 1:
            repeats = int(repeats.item())
        if not isinstance(repeats, int) or isinstance(repeats, bool):
            raise NotImplementedError(
                "repeat_interleave with per-entry repeats (a tensor of counts) is not "
                "supported by tinygpt; pass one int, or build the index and use x[idx]"
            )
        if repeats < 0:
            raise ValueError(f"repeat_interleave: repeats must be >= 0, got {repeats}")
        x = self.reshape(-1) if dim is None else self
        return ops.RepeatInterleave.apply(x, repeats=repeats, axis=dim or 0)

    def nonzero(self, *, as_tuple=False):
        """Indices of the non-zero entries: an (n, ndim) int64 tensor, or with
        ``as_tuple=True`` one 1-D tensor per dim (what ``x[...]`` takes)."""
        found = xp.nonzero(self.array) if self.array.ndim else xp.nonzero(self.array.reshape(1))
        if as_tuple:
            return tuple(Tensor(i.astype(numpy.int64, copy=False)) for i in found)
        if self.array.ndim == 0:
            return Tensor(xp.zeros((len(found[0]), 0), dtype=numpy.int64))
        return Tensor(xp.stack(found, axis=1).astype(numpy.int64, copy=False))

    def is_floating_point(self):
        return self.array.dtype.kind == "f"

    def copy_(self, src):
        """Write ``src``'s values (broadcast, in this tensor's dtype) into this tensor, in
        place: outside any graph, e.g. a parameter under no_grad()."""
        if self.requires_grad and is_grad_enabled():
            if self.creator is not None:
                raise NotImplementedError(
                    "copy_ into a tensor computed in a graph is not supported by tinygpt; "
                    "use the new values directly (or torch.where) instead")
            raise RuntimeError(
                "a leaf Variable that requires grad is being used in an in-place operation; "
                "wrap the copy in torch.no_grad(), as loading weights does")
        self.array[...] = xp.asarray(_as_array(src), dtype=self.array.dtype)
        self._bump_version("copy_")
        return self

    # & | ^ ~ on bool (logical) and integer (bitwise) tensors, as torch; no gradient
    def __and__(self, other):
        return _bitwise(xp.bitwise_and, "&", self, other)

    __rand__ = __and__

    def __or__(self, other):
        return _bitwise(xp.bitwise_or, "|", self, other)

    __ror__ = __or__

    def __xor__(self, other):
        return _bitwise(xp.bitwise_xor, "^", self, other)

    __rxor__ = __xor__

    def __invert__(self):
        if self.array.dtype.kind not in "biu":
            raise TypeError(f"~ (bitwise not) needs a bool or integer tensor, got {self.dtype}; "
                            "for a float mask compare first, e.g. ~(x > 0)")
        return Tensor(xp.invert(self.array))

    logical_not = __invert__

    # --- dtypes and devices -------------------------------------------------------------
    def astype(self, dtype):
        return ops.Cast.apply(self, dtype=dtype)

    def float(self):
        return self.to(xp.float32)

    def double(self):
        return self.to(xp.float64)

    def long(self):
        return self.to(xp.int64)

    def int(self):
        return self.to(xp.int32)

    def bool(self):
        return self.to(xp.bool_)

    def half(self):
        raise NotImplementedError(_NO_HALF)

    def bfloat16(self):
        raise NotImplementedError(_NO_HALF)

    def to(self, *args, **kwargs):
        """to(device), to(dtype), to(device, dtype), to(other_tensor): like torch. The
        device must be where tinygpt computes ("cpu" on NumPy, "cuda" on CuPy)."""
        dtype = to_arguments(args, kwargs)
        if dtype is None or dtype == self.dtype:  # (a dtype == None is True for float64)
            return self
        return ops.Cast.apply(self, dtype=dtype)

    def cpu(self):
        check_device("cpu")
        return self

    def cuda(self, device=None):
        check_device("cuda" if device is None else device)
        return self

    # --- torch's methods tinygpt lacks: each raises with a hint -------------------------
    def __getattr__(self, name):
        hint = _UNSUPPORTED.get(name)
        if hint is None:
            raise AttributeError(f"'Tensor' object has no attribute {name!r}")
        raise NotImplementedError(f"Tensor.{name} is not supported by tinygpt; {hint}")


_NO_HALF = ("float16 and bfloat16 are not supported: tinygpt computes in float32 (or "
            "float64 for checks)")
_UNSUPPORTED = {
    "expand": "use broadcasting (a (1, n) tensor combines with an (m, n) one)",
    "repeat": "use torch.cat([x] * n, dim)",
    "scatter": "use torch.where or index assignment outside the graph",
    "index_select": "use indexing, x[:, idx]",
    "register_hook": "read .grad after backward() instead",
    "retain_grad": "keep the tensor and read what backward() gives its leaves",
    "pin_memory": "tinygpt has no pinned memory; arrays move with .to()",
    "share_memory_": "tinygpt has no multiprocessing sharing",
    "to_sparse": "tinygpt has dense arrays only",
}

# --- printing ---------------------------------------------------------------------------

PRINT_OPTIONS = {"precision": 4, "sci_mode": None, "threshold": 1000, "edgeitems": 3,
                 "linewidth": 80}


def _tensor_repr(t):
    """torch-style: tensor([...]) with 4 decimals, plus dtype / requires_grad / grad_fn
    (``tensors.set_printoptions`` changes the settings)."""
    values = to_numpy(t.array)
    o = PRINT_OPTIONS
    options = {"precision": o["precision"], "separator": ", ", "prefix": "tensor(",
               "threshold": o["threshold"], "edgeitems": o["edgeitems"],
               "max_line_width": o["linewidth"]}
    if values.dtype.kind == "f":
        options["floatmode"] = "fixed"
        if o["sci_mode"] is False:
            options["suppress_small"] = True
        elif o["sci_mode"] is True:
            options["formatter"] = {"float_kind": lambda v: f"{v:.{o['precision']}e}"}
    body = numpy.array2string(values, **options)
    extras = []
    if values.dtype not in (numpy.float32, numpy.int64, numpy.bool_):
        extras.append(f"dtype={torch_dtype(values.dtype)}")
    if t.creator is not None:
        extras.append(f"grad_fn=<{type(t.creator).__name__}>")
    elif t.requires_grad:
        extras.append("requires_grad=True")
    return "tensor(" + body + "".join(", " + e for e in extras) + ")"


def _as_tensor(value):
    return value if isinstance(value, Tensor) else Tensor(value)


# --- torch's errors for arguments NumPy would take or reject in its own words -----------


def _broadcast_error(a_shape, b_shape):
    """torch's RuntimeError for two shapes that do not broadcast."""
    for i in range(1, min(len(a_shape), len(b_shape)) + 1):
        m, n = a_shape[-i], b_shape[-i]
        if m != n and 1 not in (m, n):
            return RuntimeError(
                f"The size of tensor a ({m}) must match the size of tensor b ({n}) at "
                f"non-singleton dimension {max(len(a_shape), len(b_shape)) - i}")
    return RuntimeError(f"shapes {list(a_shape)} and {list(b_shape)} do not broadcast")


def _broadcast(function, a, b):
    """``function.apply(a, b)``, with torch's error when the shapes do not broadcast."""
    try:
        return function.apply(a, b)
    except ValueError as exc:
        if "could not be broadcast" not in str(exc):
            raise
        raise _broadcast_error(a.shape, b.shape) from None


def _no_bool_subtraction(a, b):
    if a.array.dtype.kind == "b" or isinstance(b, bool) or (
            isinstance(b, Tensor) and b.array.dtype.kind == "b"):
        raise RuntimeError(
            "Subtraction, the `-` operator, with a bool tensor is not supported. If you are "
            "trying to invert a mask, use the `~` or `logical_not()` operator instead.")


def _matmul(a, b):
    """a @ b with torch's checks: tensors of at least one dim and of one dtype."""
    if not isinstance(b, Tensor):
        if isinstance(b, (bool, int, float, numpy.number, numpy.bool_)):
            raise TypeError(f"unsupported operand type(s) for @: 'Tensor' and "
                            f"'{type(b).__name__}'")
        b = Tensor(b)
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError(f"both arguments to matmul need to be at least 1D, but they are "
                           f"{a.ndim}D and {b.ndim}D")
    if a.dtype != b.dtype:
        raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: {a.dtype} "
                           f"!= {b.dtype}")
    if a.dtype.kind == "b":
        raise NotImplementedError("matmul of bool tensors is not supported (nor by torch); "
                                  "convert them first, e.g. a.float() @ b.float()")
    try:
        return ops.MatMul.apply(a, b)
    except ValueError:  # NumPy's gufunc message
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({list(a.shape)} @ "
                           f"{list(b.shape)})") from None


def _no_bool(name, t):
    if t.dtype.kind == "b":
        raise RuntimeError(f"{name}(): does not support bool input")


def _floating(name, t):
    if t.dtype.kind != "f":  # torch has no integer kernel either
        raise NotImplementedError(f"{name} of a {t.dtype} tensor is not supported (nor by "
                                  f"torch); convert it first: x.float().{name}(dim)")


def _in_place_operand(x, other, name):
    """``other`` as a Tensor of ``x``'s dtype that broadcasts to exactly ``x``'s shape, or
    torch's error: an in-place result keeps its tensor's dtype and shape."""
    dtype = result_dtype(x, other)
    if dtype != x.dtype and (x.dtype.kind in "iub" and dtype.kind == "f" or x.dtype.kind == "b"):
        raise RuntimeError(f"{name}: result type {dtype} can't be cast to the desired output "
                           f"type {x.dtype}")
    other = other if isinstance(other, Tensor) else Tensor(xp.asarray(other, dtype=x.dtype))
    if other.shape != x.shape:
        try:
            shape = numpy.broadcast_shapes(x.shape, other.shape)
        except ValueError:
            raise _broadcast_error(x.shape, other.shape) from None
        if shape != x.shape:
            raise RuntimeError(f"output with shape {list(x.shape)} doesn't match the "
                               f"broadcast shape {list(shape)}")
    return other if other.dtype == x.dtype else ops.Cast.apply(other, dtype=x.dtype)


def _fill_mask(x, mask, value, in_place):
    """The mask of masked_fill, checked as torch checks it: bool, broadcastable to ``x``
    (to exactly ``x``'s shape in place), and a value the dtype can hold."""
    mask = _as_tensor(mask)
    if mask.dtype.kind != "b":
        raise RuntimeError(f"masked_fill_ only supports boolean masks, but got mask with "
                           f"dtype {mask.dtype}")
    small, big = mask.array.shape, x.array.shape
    if small != big and not (len(small) <= len(big) and all(
            m == 1 or m == n for m, n in zip(reversed(small), reversed(big)))):
        try:  # the mask does not broadcast to x: a larger result, or an error
            shape = numpy.broadcast_shapes(x.shape, mask.shape)
        except ValueError:
            raise _broadcast_error(x.shape, mask.shape) from None
        if in_place and shape != x.shape:
            raise RuntimeError(f"output with shape {list(x.shape)} doesn't match the "
                               f"broadcast shape {list(shape)}")
    if x.dtype.kind in "iub" and isinstance(value, (float, numpy.floating)) and not (
            numpy.isfinite(value)):
        raise RuntimeError(f"value cannot be converted to type {x.dtype} without overflow: "
                           f"{value}")
    return mask


def result_dtype(a, b):
    """The dtype of ``a op b`` by torch's rules (a: a Tensor; b: a Tensor or a number):
    a Python float with an integer tensor gives float32; a float tensor keeps its dtype
    against numbers and integer tensors; otherwise the wider of the two. NumPy's dtype:
    ``Tensor.dtype``'s torch-printing wrapper costs more than this whole function."""
    da = a.array.dtype
    if isinstance(b, Tensor):
        db = b.array.dtype
        if da == db:
            return da
        if (da.kind == "f") != (db.kind == "f"):
            return da if da.kind == "f" else db  # the float side wins, whatever its width
        if (a.ndim == 0) != (b.ndim == 0) and (da.kind == "b") == (db.kind == "b"):
            return db if a.ndim == 0 else da  # a 0-d tensor of the same kind defers
        return xp.dtype(numpy.promote_types(da, db))
    if isinstance(b, (bool, numpy.bool_)):
        return da
    if isinstance(b, (float, numpy.floating)) and da.kind != "f":
        return xp.dtype(DEFAULT_DTYPE)
    if da.kind == "b":
        return xp.dtype(numpy.int64)
    return da


def _operands(a, b, true_division=False):
    """(a, b) as Tensors of their common dtype (a is a Tensor; b a Tensor, a number or
    an array)."""
    if isinstance(b, Tensor) and a.array.dtype == b.array.dtype and (
            a.array.dtype.kind == "f" or not true_division):
        return a, b  # the common case, first: it runs for every residual sum
    if not isinstance(b, (Tensor, bool, int, float, numpy.number, numpy.bool_)):
        b = Tensor(b)
    dtype = result_dtype(a, b)
    if true_division and dtype.kind != "f":
        dtype = xp.dtype(DEFAULT_DTYPE)  # int / int is a float, as in torch
    if not isinstance(b, Tensor):
        b = Tensor(xp.asarray(b, dtype=dtype))
    a = a if a.array.dtype == dtype else ops.Cast.apply(a, dtype=dtype)
    b = b if b.array.dtype == dtype else ops.Cast.apply(b, dtype=dtype)
    return a, b


def _compare(fn, a, b):
    b = b.array if isinstance(b, Tensor) else (
        b if isinstance(b, (int, float, numpy.number, bool)) else xp.asarray(b))
    return Tensor(fn(a.array, b))


def _bitwise(fn, symbol, a, b):
    """``a <symbol> b`` for bool or integer operands (a Tensor, b a Tensor or a number)."""
    b_data = b.array if isinstance(b, Tensor) else b
    kinds = (a.array.dtype.kind, getattr(b_data, "dtype", numpy.asarray(b_data).dtype).kind)
    if any(k not in "biu" for k in kinds):
        raise TypeError(f"{symbol} needs bool or integer tensors (logical / bitwise), got "
                        f"{a.dtype} and {getattr(b, 'dtype', type(b).__name__)}; compare "
                        "first to get bool masks, e.g. (x > 0) {symbol} (y > 0)")
    return Tensor(fn(a.array, b_data if isinstance(b, Tensor) else xp.asarray(b_data)))


def _reduction_args(t, dim, keepdim, axis, keepdims):
    """The axis (or axes, or None for all) and keepdims of a reduction of ``t``, from
    torch's dim= / keepdim= or NumPy's axis= / keepdims=, each dim checked."""
    axis = dim if axis is None else axis
    ndim = t.array.ndim
    if isinstance(axis, (tuple, list)):
        axes = tuple(dim_index(d, ndim) for d in axis)
        for i, d in enumerate(axes):
            if d in axes[:i]:
                raise RuntimeError(f"dim {d} appears multiple times in the list of dims")
        axis = axes
    elif axis is not None:
        axis = dim_index(axis, ndim)
    if ndim == 0:  # a 0-d tensor reduces over dim 0 or -1 to itself
        axis = None
    return axis, bool(keepdim if keepdims is None else keepdims)


def _argext(fn, data, axis, keepdims):
    if axis is None:
        index = fn(data.reshape(-1))
        return index.reshape((1,) * data.ndim) if keepdims else index
    return fn(data, axis=axis, keepdims=keepdims)


class _ValuesIndices(tuple):
    """(values, indices), as torch's max(dim) / topk return them."""

    values = property(lambda self: self[0])
    indices = property(lambda self: self[1])

    def __new__(cls, values, indices):
        return super().__new__(cls, (values, indices))


def _extreme(t, dim, keepdim, largest):
    if isinstance(dim, Tensor):  # max(other): elementwise
        a, b = _operands(t, dim)
        take_a = (a.array >= b.array) if largest else (a.array <= b.array)
        return ops.Where.apply(Tensor(take_a), a, b)
    if dim is None:
        return ops.Max.apply(t, axis=None, keepdims=False, largest=largest)
    dim = dim_index(dim, t.ndim)
    dim = dim if t.ndim else None  # a 0-d tensor is its own extreme
    values = ops.Max.apply(t, axis=dim, keepdims=keepdim, largest=largest)
    indices = _argext(xp.argmax if largest else xp.argmin, t.array, dim, keepdim)
    return _ValuesIndices(values, Tensor(indices))


def to_arguments(args, kwargs):
    """The dtype that torch's ``to(...)`` arguments ask for (None if none), after checking
    the device they name: to(device), to(dtype), to(device, dtype), to(other_tensor)."""
    device, dtype = kwargs.get("device"), kwargs.get("dtype")
    for arg in args:
        if isinstance(arg, Tensor):
            device, dtype = arg.device, arg.dtype
        elif isinstance(arg, (str, Device)) or type(arg).__name__ == "device":
            device = arg
        else:
            dtype = arg
    check_device(device)
    if dtype is None:
        return None
    try:
        return xp.dtype(dtype)
    except TypeError:
        raise TypeError(f"{dtype!r} is not a dtype tinygpt can compute in") from None


def _attach(methods, cls):
    """Set each attribute of ``methods`` on ``cls``, under ``cls``'s name in tracebacks
    and argument errors (``Tensor.sum() got an unexpected keyword argument``)."""
    for name, value in vars(methods).items():
        if name in ("__module__", "__qualname__", "__doc__", "__slots__"):
            continue
        if isinstance(value, types.FunctionType):
            value.__qualname__ = value.__qualname__.replace(
                methods.__name__ + ".", cls.__name__ + ".", 1)
        setattr(cls, name, value)


_attach(TensorMethods, Tensor)
