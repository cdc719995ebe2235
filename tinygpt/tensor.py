"""``Tensor``: an array in tinygpt's graph (``autograd.TensorBase``) with torch's methods.

Everything a PyTorch user calls on a tensor is a method of this one class, grouped as
torch's documentation groups them: what it is, values on the host, views (which share
the tensor's memory: views.py), operators (torch's type promotion: dtypes.result_type),
shapes, reductions with ``dim=`` / ``keepdim=``, elementwise maths, in-place ops
(inplace.py), dtypes and devices. Each method is a thin layer over a Function of
ops.py (so gradients flow) plus the checks that turn NumPy's errors into torch's.
"""

import math
import numbers

import numpy

from . import inplace, ops
from .autograd import TensorBase
from .backend import DEFAULT_DTYPE, Device, check_device, device_name, get_rng, to_numpy, xp
from .checks import dim_index, nonnegative_int, rectangular
from .dtypes import Size, can_cast, float_result, result_type, torch_dtype
from .grad_mode import is_grad_enabled
from .printing import tensor_repr
from .versions import VersionCounter
from .views import share_storage


class Tensor(TensorBase):
    """A tensor: ``Tensor(data, requires_grad=False, dtype=None)`` wraps an array (shared,
    not copied), a number or a nested list (Python floats become float32)."""

    __slots__ = ()
    # above NumPy's and CuPy's arrays (CuPy: 100), so ``array * Tensor`` defers to
    # Tensor.__rmul__ on either backend
    __array_priority__ = 1000

    def __init__(self, data, requires_grad=False, dtype=None):
        self.array = _as_array(data, dtype)
        self._grad = self.creator = self._view = None
        self._requires_grad = False
        self._counter = VersionCounter()  # shared with views (versions.py)
        if requires_grad:
            self.requires_grad = True

    @staticmethod
    def _of(array):
        """A Function's result as a Tensor: no copy and no checks (it runs for every op)."""
        t = object.__new__(Tensor)
        t.array = array if isinstance(array, xp.ndarray) else xp.asarray(array)  # 0-d results
        t._grad = t.creator = t._view = None
        t._requires_grad = False
        t._counter = VersionCounter()
        return t

    _wrap = _of  # what autograd calls to make a result: a Tensor, never a Parameter,
    # whatever the class of the inputs (t._wrap(array) is Tensor._of(array))

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
    def device(self):
        return Device(device_name())

    @property
    def _version(self):
        """How many in-place changes these values have had (torch's counter)."""
        return self._counter.value

    @property
    def _base(self):
        """The tensor whose memory this view shares (None if it is not a view)."""
        return None if self._view is None else self._view.base

    def _is_view(self):
        return self._view is not None

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

    def element_size(self):
        return self.array.itemsize

    def is_floating_point(self):
        return self.array.dtype.kind == "f"

    def is_contiguous(self):
        return bool(self.array.flags.c_contiguous)

    def __len__(self):
        if self.array.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self.array)

    # --- values on the host -------------------------------------------------------------
    def item(self):
        if self.array.size != 1:
            raise RuntimeError(f"a Tensor with {self.array.size} elements cannot be converted "
                               "to Scalar; use .tolist() for all of them")
        return self.array.item()

    def tolist(self):
        return to_numpy(self.array).tolist()

    def numpy(self, *, force=False):
        """The values as a NumPy array: the same memory on the CPU (a copy from the GPU).
        As in torch, a tensor in a graph must be detached first."""
        if self.requires_grad and not force:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use "
                               "tensor.detach().numpy() instead.")
        return to_numpy(self.array)

    def __array__(self, dtype=None, copy=None):
        array = self.numpy()
        return array if dtype is None else array.astype(dtype, copy=False)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.array.dtype.kind not in "iub" or self.array.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to "
                            "an index")
        return int(self.item())

    def __bool__(self):
        if self.array.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with {self.array.size} values is "
                               "ambiguous; use .any() or .all()")
        return bool(self.array.item())

    def __format__(self, spec):
        if self.array.ndim == 0:  # like torch: a 0-d tensor formats as its number
            return format(self.array.item(), spec)
        if spec:
            raise TypeError("unsupported format string passed to Tensor.__format__")
        return repr(self)

    def __repr__(self):
        if self.grad_fn is not None:
            extras = (f"grad_fn=<{self.grad_fn.name()}>",)
        else:
            extras = ("requires_grad=True",) if self.requires_grad else ()
        device = "cuda:0" if device_name() == "cuda" else None
        return tensor_repr(to_numpy(self.array), extras=extras, device=device)

    def __iter__(self):  # torch's: the rows, as views
        if self.array.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return iter(self.unbind(0))

    def __hash__(self):  # by identity, like torch (== compares values)
        return id(self)

    # --- the graph, and views of the same values ----------------------------------------
    @property
    def data(self):
        """torch's ``.data``: the same values as a tensor outside the graph. It shares
        this tensor's memory, but not its version counter: changes made through it are
        not seen by autograd's checks (``detach()`` is the checked way)."""
        return Tensor._of(self.array)

    @data.setter
    def data(self, value):
        """``t.data = other``: t now holds other's values (its memory), as in torch."""
        self.array = value.array if isinstance(value, Tensor) else _as_array(value)

    def detach(self):
        """The same values outside the graph, sharing memory and version counter."""
        out = Tensor._of(self.array)
        out._counter = self._counter
        return out

    def detach_(self):
        if self._view is not None:
            raise RuntimeError("Can't detach views in-place. Use detach() instead.")
        self.creator, self._requires_grad = None, False
        return self

    def requires_grad_(self, requires_grad=True):
        self.requires_grad = requires_grad
        return self

    def clone(self):
        """A copy of the values (the same layout) in the graph: its gradient passes."""
        return ops.Clone.apply(self, order="K")

    def contiguous(self):
        """This tensor if its values lie in row-major order, else a row-major copy."""
        return self if self.is_contiguous() else ops.Clone.apply(self, order="C")

    # --- operators ----------------------------------------------------------------------
    # Mixed dtypes follow torch.result_type (dtypes.py): int64 + 2.5 is float32, an
    # int32 tensor + 3 stays int32, int / int is float32.
    def __add__(self, other):
        return _binary(ops.Add, self, other)

    __radd__ = __add__  # a + b and b + a: the same values, dtype and graph

    def __sub__(self, other):
        _no_bool_subtraction(self, other)
        return _binary(ops.Sub, self, other)

    def __rsub__(self, other):
        _no_bool_subtraction(self, other)
        return _binary(ops.Sub, other, self)

    def __mul__(self, other):
        return _binary(ops.Mul, self, other)

    __rmul__ = __mul__

    def __truediv__(self, other):
        return _binary(ops.Div, self, other, floats=True)

    def __rtruediv__(self, other):
        return _binary(ops.Div, other, self, floats=True)

    def __floordiv__(self, other):
        return _floor_divide(self, other)

    def __rfloordiv__(self, other):
        return _floor_divide(other, self)

    def floor_divide(self, other):
        return _floor_divide(self, other)

    def remainder(self, other):
        return self % other

    def __mod__(self, other):
        return _binary(ops.Remainder, self, other)

    def __rmod__(self, other):
        return _binary(ops.Remainder, other, self)

    def __pow__(self, exponent):
        return _power(self, exponent)

    def __rpow__(self, base):
        return _power(base, self)

    def __neg__(self):
        if self.array.dtype.kind == "b":
            raise RuntimeError("Negation, the `-` operator, on a bool tensor is not supported. "
                               "If you are trying to invert a mask, use the `~` or "
                               "`logical_not()` operator instead.")
        return ops.Neg.apply(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return self.abs()

    def __matmul__(self, other):
        return _matmul(self, other)

    def __rmatmul__(self, other):
        return _matmul(_as_tensor(other), self)

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

    # & | ^ ~ on bool (logical) and integer (bitwise) tensors, as torch; no gradient
    def __and__(self, other):
        return _bitwise(xp.bitwise_and, "&", self, other)

    def __or__(self, other):
        return _bitwise(xp.bitwise_or, "|", self, other)

    def __xor__(self, other):
        return _bitwise(xp.bitwise_xor, "^", self, other)

    __rand__, __ror__, __rxor__ = __and__, __or__, __xor__

    def __invert__(self):
        if self.array.dtype.kind not in "biu":
            raise TypeError(f"~ (bitwise not) needs a bool or integer tensor, got {self.dtype}; "
                            "for a float mask compare first, e.g. ~(x > 0)")
        return ops.Elementwise.apply(self, fn=xp.invert)

    logical_not = __invert__

    # --- indexing: x[i] is a view where torch's is (ints, slices, None, ...) ------------
    def __getitem__(self, index):
        return _view(ops.GetItem, self, index=_index(self, index))

    def __setitem__(self, index, value):
        """``x[index] = value``, in place: a copy into the view ``x[index]`` (torch's
        copy_), or, for an index with int tensors or masks, torch's index_put_."""
        index = _index(self, index)
        if not ops.is_basic(index):
            return inplace.index_put_(self, index, value)
        view = self[index]
        value = _as_tensor(value)
        while value.ndim > view.ndim and value.shape[0] == 1:  # torch drops leading 1s
            value = value[0]
        inplace.copy_(view, value, expand=True)

    # --- shape: views where torch's are -------------------------------------------------
    def view(self, *shape):
        """The same values under another shape, always a view: a tensor whose layout
        cannot give that shape without a copy raises torch's error (use reshape)."""
        if len(shape) == 1 and not isinstance(shape[0], (tuple, list, numbers.Integral)):
            raise NotImplementedError("view(dtype) (reinterpreting the bytes) is not supported "
                                      "by tinygpt; convert the values with .to(dtype)")
        out = self.reshape(*shape)
        if out._view is None and out.array.size and out.array is not self.array:
            raise RuntimeError("view size is not compatible with input tensor's size and "
                               "stride (at least one dimension spans across two contiguous "
                               "subspaces). Use .reshape(...) instead.")
        return out

    def reshape(self, *shape):
        """Another shape for the same elements: a view when the layout allows it (as
        torch's), else a copy."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        try:
            return _view(ops.Reshape, self, shape=tuple(map(int, shape)))
        except ValueError:  # NumPy's words; torch's error and class
            _new_shape(self, shape)
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size "
                               f"{self.numel()}") from None

    def view_as(self, other):
        return self.view(other.shape)

    def reshape_as(self, other):
        return self.reshape(other.shape)

    def flatten(self, start_dim=0, end_dim=-1):
        """Like torch: merge dims start_dim..end_dim (inclusive) into one."""
        n = self.ndim
        start, end = dim_index(start_dim, n), dim_index(end_dim, n)
        if n == 0:
            return self.reshape(1)
        if start > end:
            raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
        if start == end:
            return self
        merged = math.prod(self.shape[start:end + 1])
        return self.reshape(self.shape[:start] + (merged,) + self.shape[end + 1:])

    def unflatten(self, dim, sizes):
        dim = dim_index(dim, self.ndim)
        return self.reshape(self.shape[:dim] + tuple(sizes) + self.shape[dim + 1:])

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
        return self.reshape(keep)

    def transpose(self, dim0, dim1):
        """Dims ``dim0`` and ``dim1`` swapped: a view."""
        n = self.array.ndim
        order = list(range(n))
        a, b = dim_index(dim0, n), dim_index(dim1, n)
        if order:  # a 0-d tensor takes dims 0 and -1 and stays as it is
            order[a], order[b] = order[b], order[a]
        return _view(ops.Transpose, self, axes=tuple(order))

    swapaxes = swapdims = transpose

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
        return _view(ops.Transpose, self, axes=axes)

    @property
    def T(self):
        return _view(ops.Transpose, self, axes=tuple(reversed(range(self.ndim))))

    @property
    def mT(self):  # noqa: N802 - torch's name
        if self.ndim < 2:
            raise RuntimeError("tensor.mT is only supported on matrices or batches of "
                               f"matrices. Got {self.ndim}-D tensor.")
        return self.transpose(-2, -1)

    def t(self):
        """The transpose of a matrix; a vector or a number as it is (torch's t())."""
        if self.ndim > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is "
                               f"{self.ndim}D; use transpose(dim0, dim1)")
        return self.transpose(0, 1) if self.ndim == 2 else self.view(self.shape)

    def expand(self, *sizes):
        """The tensor repeated along dims of length 1 (and new leading dims) without
        copying: a view in which many elements share one memory location (-1 keeps a
        dim's length)."""
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = tuple(sizes[0])
        return _view(ops.Expand, self, shape=_expanded_shape(self.shape, sizes))

    def expand_as(self, other):
        return self.expand(other.shape)

    def select(self, dim, index):
        """The slice at ``index`` of ``dim``, without that dim: a view (``x[:, i]``)."""
        dim = _some_dim(self, dim, "select")
        return self[(slice(None),) * dim + (int(index),)]

    def narrow(self, dim, start, length):
        """``length`` entries of ``dim`` from ``start`` on: a view."""
        dim = _some_dim(self, dim, "narrow")
        size = self.shape[dim]
        start = int(start)
        if not -size <= start <= size:
            raise IndexError(f"start out of range (expected to be in range of [{-size}, "
                             f"{size}], but got {start})")
        start %= size if size else 1
        if length < 0 or start + length > size:
            raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size "
                               f"({size}).")
        return self[(slice(None),) * dim + (slice(start, start + length),)]

    def split(self, split_size, dim=0):
        """Pieces of ``split_size`` entries along ``dim`` (the last may be shorter), or of
        the lengths in a list: views, as torch's."""
        dim = _some_dim(self, dim, "split")
        size = self.shape[dim]
        if isinstance(split_size, (list, tuple)):
            lengths = [int(n) for n in split_size]
            if sum(lengths) != size or any(n < 0 for n in lengths):
                raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to "
                                   f"{size} (input tensor's size at dimension {dim}), but got "
                                   f"split_sizes={lengths}")
        else:
            step = int(split_size)
            if step <= 0 and not (step == 0 and size == 0):
                raise RuntimeError(f"split expects split_size be non-negative, but got "
                                   f"split_size={step}")
            lengths = [min(step, size - i) for i in range(0, size, step)] if size else [0]
        return self._pieces(dim, lengths)

    def chunk(self, chunks, dim=0):
        """At most ``chunks`` pieces of equal length along ``dim`` (the last may be
        shorter): views."""
        if chunks <= 0:
            raise RuntimeError("chunk expects `chunks` to be greater than 0, got: "
                               f"{chunks}")
        dim = _some_dim(self, dim, "chunk")
        size = self.shape[dim]
        return self.split(max(-(-size // chunks), 1) if size else 0, dim) if size else \
            self._pieces(dim, [0] * chunks)

    def unbind(self, dim=0):
        """The slices along ``dim``, each without that dim: views."""
        dim = _some_dim(self, dim, "unbind")
        pieces = tuple(self[(slice(None),) * dim + (i,)] for i in range(self.shape[dim]))
        return inplace.mark_several(pieces)

    def _pieces(self, dim, lengths):
        """The views of consecutive ``lengths`` entries of ``dim`` (split and chunk)."""
        pieces, start = [], 0
        for n in lengths:
            pieces.append(self[(slice(None),) * dim + (slice(start, start + n),)])
            start += n
        return inplace.mark_several(tuple(pieces))

    # --- reductions: torch's dim= / keepdim= (NumPy's axis= / keepdims= work too) -------
    def sum(self, dim=None, keepdim=False, *, dtype=None, axis=None, keepdims=None):
        x = self if dtype is not None or self.array.dtype.kind == "f" else \
            self.to(numpy.int64)  # torch sums integers and bools in int64
        if dtype is not None:
            x = self.to(dtype)
        axis, keepdims = _reduction_args(x, dim, keepdim, axis, keepdims)
        return ops.Sum.apply(x, axis=axis, keepdims=keepdims)

    def mean(self, dim=None, keepdim=False, *, dtype=None, axis=None, keepdims=None):
        x = self if dtype is None else self.to(dtype)
        if x.array.dtype.kind != "f":  # checked before the dims, as torch does
            raise RuntimeError(
                f"mean(): could not infer output dtype. Input dtype must be either a floating "
                f"point or complex dtype. Got: {x.dtype}; use .float().mean()")
        axis, keepdims = _reduction_args(x, dim, keepdim, axis, keepdims)
        return ops.Mean.apply(x, axis=axis, keepdims=keepdims)

    def var(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        """Variance over ``dim``: sum((x - mean)^2) / (n - correction). torch's
        positional order, ``var(dim, unbiased, keepdim)``; ``unbiased=False`` (the
        book's layer norm) divides by n; ``var(False)`` is ``var(unbiased=False)``."""
        return _spread(ops.Var, self, dim, unbiased, keepdim, correction)

    def std(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        """The square root of ``var``; its gradient is 0 where the spread is 0, as
        torch's."""
        return _spread(ops.Std, self, dim, unbiased, keepdim, correction)

    def max(self, dim=None, keepdim=False):
        """max() -> the largest value; max(dim) -> (values, indices); max(other) ->
        the elementwise maximum. NaN counts as the largest value, as in torch."""
        return _extreme(self, dim, keepdim, largest=True)

    def min(self, dim=None, keepdim=False):
        return _extreme(self, dim, keepdim, largest=False)

    def amax(self, dim=(), keepdim=False):
        return _amax(self, dim, keepdim, largest=True)

    def amin(self, dim=(), keepdim=False):
        return _amax(self, dim, keepdim, largest=False)

    def argmax(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        """Index of the largest entry (the first one; NaN is largest; flat when ``dim``
        is None)."""
        return _arg_extreme(self, "argmax", dim, keepdim, axis, keepdims)

    def argmin(self, dim=None, keepdim=False):
        return _arg_extreme(self, "argmin", dim, keepdim, None, None)

    def any(self, dim=None, keepdim=False):
        return _truth(xp.any, self, dim, keepdim)

    def all(self, dim=None, keepdim=False):
        return _truth(xp.all, self, dim, keepdim)

    # --- elementwise --------------------------------------------------------------------
    # Float-valued ops on integer or bool tensors compute in float32, as torch's.
    def exp(self):
        return ops.Exp.apply(_floats(self))

    def log(self):
        return ops.Log.apply(_floats(self))

    def relu(self):
        return self.clamp(min=0)

    def tanh(self):
        """(e^x - e^-x) / (e^x + e^-x): GPT-2's GELU is built on it."""
        return ops.Tanh.apply(_floats(self))

    def sqrt(self):
        return ops.Sqrt.apply(_floats(self))

    def abs(self):
        return ops.Abs.apply(self)

    def rsqrt(self):
        """1 / sqrt(x), as RMSNorm scales by it."""
        return ops.Rsqrt.apply(_floats(self))

    def sigmoid(self):
        """1 / (1 + exp(-x)); SiLU is x * x.sigmoid()."""
        return ops.Sigmoid.apply(_floats(self))

    def neg(self):
        return -self

    def square(self):
        return self * self

    def cos(self):  # cos and sin: rotary position embeddings
        return ops.Cos.apply(_floats(self))

    def sin(self):
        return ops.Sin.apply(_floats(self))

    def pow(self, exponent):
        return _power(self, exponent)

    def clamp(self, min=None, max=None):  # noqa: A002 - torch's names
        """Each value limited to [min, max] (numbers or tensors); the gradient passes where
        the value lies inside."""
        return _clamp(self, min, max)

    clip = clamp

    def add(self, other, *, alpha=1):
        return self + (other if alpha == 1 else other * alpha)

    def sub(self, other, *, alpha=1):
        return self - (other if alpha == 1 else other * alpha)

    def mul(self, other):
        return self * other

    def div(self, other, *, rounding_mode=None):
        if rounding_mode is None:
            return self / other
        if rounding_mode == "floor":
            return self // other
        raise NotImplementedError(f"div(rounding_mode={rounding_mode!r}) is not supported by "
                                  "tinygpt; use rounding_mode='floor' or None")

    def dot(self, other):
        if self.ndim != 1 or getattr(other, "ndim", 1) != 1:
            raise RuntimeError("1D tensors expected, but got "
                               f"{self.ndim}D and {getattr(other, 'ndim', 1)}D tensors")
        return self @ other

    def matmul(self, other):
        return self @ other

    def softmax(self, dim, dtype=None):
        x = self if dtype is None else self.to(dtype)
        axis = dim_index(dim, x.ndim)
        _floating("softmax", x, axis)
        return x.clone() if x.array.size == 0 else ops.Softmax.apply(x, axis=axis)

    def log_softmax(self, dim, dtype=None):
        x = self if dtype is None else self.to(dtype)
        axis = dim_index(dim, x.ndim)
        _floating("log_softmax", x, axis)
        return x.clone() if x.array.size == 0 else ops.LogSoftmax.apply(x, axis=axis)

    def masked_fill(self, mask, value):
        """A copy with ``value`` where ``mask`` (broadcast to this shape) is true."""
        return ops.MaskedFill.apply(self, _fill_mask(self, mask, value, False), value=value)

    def where(self, condition, other):
        return _where(condition, self, other)

    def gather(self, dim, index):
        index = _as_tensor(index)
        dim = dim_index(dim, self.ndim)
        if index.ndim != self.ndim:
            raise RuntimeError("Index tensor must have the same number of dimensions as input "
                               f"tensor ({index.ndim} and {self.ndim})")
        _check_indices(index.array, self.shape[dim] if self.ndim else 1, dim, "gather")
        return ops.Gather.apply(self, index, axis=dim)

    def index_select(self, dim, index):
        index = _as_tensor(index)
        dim = dim_index(dim, self.ndim)
        if index.array.dtype.kind not in "iu":
            raise RuntimeError("index_select(): Expected dtype int32 or int64 for index")
        if index.ndim > 1:
            raise IndexError("index_select(): Index is supposed to be a vector")
        n = self.shape[dim] if self.ndim else 1
        if index.numel() and (int(index.array.min()) < 0 or int(index.array.max()) >= n):
            if self.ndim > 1:
                bad = next(int(i) for i in to_numpy(index.array).reshape(-1) if not 0 <= i < n)
                raise RuntimeError(f"INDICES element is out of DATA bounds, id={bad} "
                                   f"axis_dim={n}")
            raise IndexError("index out of range in self")
        return ops.IndexSelect.apply(self, index.reshape(-1), axis=dim)

    def sort(self, dim=-1, descending=False, stable=False):
        """(values, indices) along ``dim``, ascending (NaN last, as the largest), equal
        values in index order."""
        dim = dim_index(dim, self.ndim)
        indices = _order(self, dim, descending)
        return _ValuesIndices(ops.Gather.apply(self, Tensor._of(indices), axis=dim),
                              Tensor._of(indices))

    def argsort(self, dim=-1, descending=False, stable=False):
        return Tensor._of(_order(self, dim_index(dim, self.ndim), descending))

    def topk(self, k, dim=-1, largest=True, sorted=True):  # noqa: A002
        """(values, indices) of the ``k`` largest (or smallest) entries along ``dim``,
        largest first; among equal values the lower index comes first."""
        dim = dim_index(dim, self.ndim)
        n = self.shape[dim] if self.ndim else 1
        if nonnegative_int("k", k) > n:  # k = 0 gives empty results, as in torch
            raise RuntimeError(f"topk: selected index k out of range: k must be in [0, {n}] for "
                               f"a dim of length {n}, got {k}")
        if self.ndim == 0:  # torch gives the element itself, for k = 0 too
            return _ValuesIndices(self.reshape(()), Tensor(xp.zeros((), dtype=numpy.int64)))
        keys = -self.array if largest else self.array
        if 0 < k < n and isinstance(keys, numpy.ndarray) and keys.dtype.kind == "f" \
                and not numpy.isnan(keys).any():  # NaN: the sort's order, below
            indices = numpy.moveaxis(_first_k(numpy.moveaxis(keys, dim, -1), int(k)), -1, dim)
        else:  # NaN is the largest value, as in torch
            indices = xp.take(_order(self, dim, descending=largest), xp.arange(int(k)), axis=dim)
        values = ops.Gather.apply(self, Tensor._of(indices), axis=dim)
        return _ValuesIndices(values, Tensor._of(indices.astype(numpy.int64)))

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
            raise RuntimeError(f"repeat_interleave: repeats must be >= 0, got {repeats}")
        x = self.reshape(-1) if dim is None else self
        return ops.RepeatInterleave.apply(x, repeats=repeats,
                                          axis=0 if dim is None else dim_index(dim, x.ndim))

    def nonzero(self, *, as_tuple=False):
        """Indices of the non-zero entries: an (n, ndim) int64 tensor, or with
        ``as_tuple=True`` one 1-D tensor per dim (what ``x[...]`` takes)."""
        found = xp.nonzero(self.array) if self.array.ndim else xp.nonzero(
            self.array.reshape(1))
        if as_tuple:
            return tuple(Tensor._of(i.astype(numpy.int64, copy=False)) for i in found)
        if self.array.ndim == 0:
            return Tensor._of(xp.zeros((len(found[0]), 0), dtype=numpy.int64))
        return Tensor._of(xp.stack(found, axis=1).astype(numpy.int64, copy=False))

    # --- in-place ops (inplace.py): the tensor's memory changes, its views see it -------
    def add_(self, other, *, alpha=1):
        """self += alpha * other in place (the version bumps; gradients flow as for +)."""
        return inplace.binary_(self, ops.Add, other, "add_", alpha=alpha)

    def sub_(self, other, *, alpha=1):
        _no_bool_subtraction(self, other)
        return inplace.binary_(self, ops.Sub, other, "sub_", alpha=alpha)

    def mul_(self, other):
        return inplace.binary_(self, ops.Mul, other, "mul_")

    def div_(self, other):
        return inplace.binary_(self, ops.Div, other, "div_", floats=True)

    def pow_(self, exponent):
        return inplace.result_(self, lambda x: _power(x, exponent), "pow_")

    def floor_divide_(self, other):
        return inplace.binary_(self, ops.FloorDivide, other, "floor_divide_")

    def remainder_(self, other):
        return inplace.binary_(self, ops.Remainder, other, "remainder_")

    def bitwise_and_(self, other):
        return inplace.bitwise_(self, xp.bitwise_and, other, "bitwise_and_")

    def bitwise_or_(self, other):
        return inplace.bitwise_(self, xp.bitwise_or, other, "bitwise_or_")

    def bitwise_xor_(self, other):
        return inplace.bitwise_(self, xp.bitwise_xor, other, "bitwise_xor_")

    # augmented assignment changes the tensor in place, as in torch: x += y is x.add_(y)
    # (without these, Python would rebind the name to a new tensor and change nothing)
    __iadd__, __isub__, __imul__, __itruediv__ = add_, sub_, mul_, div_
    __ifloordiv__, __imod__, __ipow__ = floor_divide_, remainder_, pow_
    __iand__, __ior__, __ixor__ = bitwise_and_, bitwise_or_, bitwise_xor_

    def clamp_(self, min=None, max=None):  # noqa: A002
        return inplace.result_(self, lambda x: _clamp(x, min, max), "clamp_")

    clip_ = clamp_

    def exp_(self):
        return inplace.result_(self, Tensor.exp, "exp_")

    def masked_fill_(self, mask, value):
        """``masked_fill`` in place, as the book's attention does: the tensor's values
        change, and gradients flow through the fill to what it was."""
        mask = _fill_mask(self, mask, value, True)
        return inplace.result_(self, lambda x: x.masked_fill(mask, value), "masked_fill_",
                               reads_self=False, where=mask.array)

    def fill_(self, value):
        """Every entry set to ``value`` in place; no gradient reaches the old values."""
        if isinstance(value, Tensor) and value.ndim:
            raise RuntimeError("fill_ only supports 0-dimension value tensor but got tensor "
                               f"with {value.ndim} dimensions.")
        return inplace.copy_(self, value if isinstance(value, Tensor) else Tensor._of(
            xp.asarray(numpy.asarray(value).astype(self.array.dtype))), "fill_")

    def zero_(self):
        return inplace.copy_(self, Tensor._of(xp.zeros((), dtype=self.array.dtype)), "zero_")

    def copy_(self, src):
        """Write ``src``'s values (broadcast, converted to this tensor's dtype) into this
        tensor; the gradient of this tensor's new values goes to ``src``."""
        return inplace.copy_(self, _as_tensor(src))

    def normal_(self, mean=0.0, std=1.0, *, generator=None):
        """Values drawn from N(mean, std^2), in place, from tinygpt's generator."""
        values = get_rng().standard_normal(self.shape) * std + mean
        return self.copy_(Tensor._of(xp.asarray(values, dtype=self.array.dtype)))

    def uniform_(self, a=0.0, b=1.0, *, generator=None):
        values = get_rng().uniform(a, b, self.shape)
        return self.copy_(Tensor._of(xp.asarray(values, dtype=self.array.dtype)))

    # --- dtypes and devices -------------------------------------------------------------
    def float(self):
        return self.to(numpy.float32)

    def double(self):
        return self.to(numpy.float64)

    def long(self):
        return self.to(numpy.int64)

    def int(self):
        return self.to(numpy.int32)

    def bool(self):
        return self.to(numpy.bool_)

    def half(self):
        raise NotImplementedError(_NO_HALF)

    def bfloat16(self):
        raise NotImplementedError(_NO_HALF)

    def type(self, dtype=None):
        if dtype is None:
            return f"torch.{_TYPE_NAMES.get(self.array.dtype.name, 'Tensor')}"
        return self.to(dtype)

    def type_as(self, other):
        return self.to(other.dtype)

    def to(self, *args, **kwargs):
        """to(device), to(dtype), to(device, dtype), to(other_tensor): like torch. The
        device must be where tinygpt computes ("cpu" on NumPy, "cuda" on CuPy)."""
        dtype = to_arguments(args, kwargs)
        if dtype is None or dtype == self.array.dtype:
            return self
        return ops.Cast.apply(self, dtype=dtype)

    def cpu(self):
        check_device("cpu")
        return self

    def cuda(self, device=None):
        check_device("cuda" if device is None else device)
        return self

    def new_tensor(self, data):
        return Tensor(numpy.array(to_numpy(_as_array(data))), dtype=self.array.dtype)

    def new_zeros(self, *size):
        return Tensor._of(xp.zeros(_sizes(size), dtype=self.array.dtype))

    def new_ones(self, *size):
        return Tensor._of(xp.ones(_sizes(size), dtype=self.array.dtype))

    def new_full(self, size, fill_value):
        return Tensor._of(xp.full(_sizes((size,)), fill_value, dtype=self.array.dtype))

    new_empty = new_zeros

    # --- torch's methods tinygpt lacks: each raises with a hint -------------------------
    def __getattr__(self, name):
        hint = _UNSUPPORTED.get(name)
        if hint is None:
            raise AttributeError(f"'Tensor' object has no attribute {name!r}")
        raise NotImplementedError(f"Tensor.{name} is not supported by tinygpt; {hint}")


_NO_HALF = ("float16 and bfloat16 are not supported: tinygpt computes in float32 (or "
            "float64 for checks)")
_TYPE_NAMES = {"float32": "FloatTensor", "float64": "DoubleTensor", "int64": "LongTensor",
               "int32": "IntTensor", "int16": "ShortTensor", "int8": "CharTensor",
               "uint8": "ByteTensor", "bool": "BoolTensor"}
_UNSUPPORTED = {
    "repeat": "use torch.cat([x] * n, dim), or expand() to read the repeats without a copy",
    "scatter": "use torch.where or index assignment (x[idx] = v)",
    "scatter_": "use index assignment (x[idx] = v)",
    "register_hook": "read .grad after backward() instead",
    "retain_grad": "call torch.autograd.grad(loss, t) for a non-leaf's gradient",
    "pin_memory": "tinygpt has no pinned memory; arrays move with .to()",
    "share_memory_": "tinygpt has no multiprocessing sharing",
    "to_sparse": "tinygpt has dense arrays only",
    "storage": "compare values, or data_ptr-free: views share their base's values",
    "untyped_storage": "views share their base's values (x._base)",
    "data_ptr": "x._base tells which tensor a view shares memory with",
}


# --- making tensors ---------------------------------------------------------------------


def _as_array(value, dtype=None):
    """Arrays keep their dtype; Python numbers and lists become the default float dtype."""
    if isinstance(value, TensorBase):
        array = value.array
        return array if dtype is None else array.astype(dtype, copy=False)
    if isinstance(value, xp.ndarray):
        return value if dtype is None else value.astype(dtype, copy=False)
    if hasattr(value, "__array__") and not isinstance(value, (list, tuple)):
        array = xp.asarray(to_numpy(value))
        return array if dtype is None else array.astype(dtype, copy=False)
    if isinstance(value, (list, tuple)):
        value = rectangular(value, "tensor data", "pad the rows to one length")
    array = xp.asarray(value)
    if dtype is not None:
        return array.astype(dtype, copy=False)
    if array.dtype.kind == "f":
        return array.astype(DEFAULT_DTYPE, copy=False)
    return array


def _as_tensor(value):
    return value if isinstance(value, Tensor) else Tensor(value)


def _scalar(value):
    """Whether ``value`` is a Python (or NumPy) number, as torch treats them."""
    return isinstance(value, (bool, int, float, numpy.number, numpy.bool_))


def _sizes(size):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    return tuple(int(n) for n in size)


def _view(op, t, **options):
    """A view op (reshape, transpose, x[i], expand): ``op.apply``, or without a graph to
    record its forward and the shared storage alone (decoding makes thousands of them)."""
    grad_enabled = is_grad_enabled()
    if grad_enabled and t.requires_grad:
        return op.apply(t, **options)
    out = Tensor._of(op().forward(t.array, **options))
    share_storage(out, t, op, options, grad_enabled)
    return out


# --- operators: promotion, broadcasting, torch's errors ---------------------------------


def _binary(op, a, b, floats=False):
    """``op`` on a and b (tensors or numbers), computed in torch's result dtype (a float
    one for ``floats`` ops: true division), with torch's error for shapes that do not
    broadcast."""
    if type(a) is Tensor and type(b) is Tensor and a.array.dtype is b.array.dtype and (
            not floats or a.array.dtype.kind == "f"):
        x, y = a, b  # the common case, first: it runs for every residual sum
    else:
        x, y = _operands(a, b, floats)
    try:
        return op.apply(x, y)
    except ValueError as exc:
        if "could not be broadcast" not in str(exc):
            raise
        raise _broadcast_error(x.shape, y.shape) from None


def _operands(a, b, floats=False):
    """(a, b) as Tensors of their result dtype (each a Tensor, a number or an array)."""
    if not isinstance(a, Tensor) and not _scalar(a):
        a = Tensor(a)
    if not isinstance(b, Tensor) and not _scalar(b):
        b = Tensor(b)
    dtype = result_type(a, b)
    if floats:
        dtype = float_result(dtype)
    return _in_dtype(a, dtype), _in_dtype(b, dtype)


def _in_dtype(x, dtype):
    """``x`` (a Tensor or a number) as a Tensor of ``dtype`` (through the graph); a number
    wraps around as torch's does (int8 + 200)."""
    if not isinstance(x, Tensor):
        return Tensor._of(xp.asarray(numpy.asarray(x).astype(dtype)))
    return x if x.array.dtype == dtype else ops.Cast.apply(x, dtype=dtype)


def _floats(x):
    """``x`` as a float tensor: integers and bools become float32 (torch's default)."""
    return x if x.array.dtype.kind == "f" else ops.Cast.apply(x, dtype=float_result(x.dtype))


def _broadcast_error(a_shape, b_shape):
    """torch's RuntimeError for two shapes that do not broadcast."""
    for i in range(1, min(len(a_shape), len(b_shape)) + 1):
        m, n = a_shape[-i], b_shape[-i]
        if m != n and 1 not in (m, n):
            return RuntimeError(
                f"The size of tensor a ({m}) must match the size of tensor b ({n}) at "
                f"non-singleton dimension {max(len(a_shape), len(b_shape)) - i}")
    return RuntimeError(f"shapes {list(a_shape)} and {list(b_shape)} do not broadcast")


def _no_bool_subtraction(a, b):
    if any(isinstance(v, (bool, numpy.bool_)) or (
            isinstance(v, Tensor) and v.array.dtype.kind == "b") for v in (a, b)):
        raise RuntimeError(
            "Subtraction, the `-` operator, with a bool tensor is not supported. If you are "
            "trying to invert a mask, use the `~` or `logical_not()` operator instead.")


def _floor_divide(a, b):
    x, y = _operands(a, b)
    if x.array.dtype.kind == "b":
        raise NotImplementedError("\"div_floor_cpu\" not implemented for 'Bool'")
    return _binary(ops.FloorDivide, x, y)


def _power(base, exponent):
    """base ** exponent, either a tensor (or both), in torch's result dtype."""
    if not isinstance(base, Tensor) and not isinstance(exponent, Tensor):
        raise TypeError("pow() needs a tensor")
    if isinstance(exponent, Tensor) and not isinstance(base, Tensor) and not _scalar(base):
        base = Tensor(base)
    dtype = result_type(base, exponent)
    if dtype.kind in "iub" and not isinstance(exponent, Tensor) and exponent < 0:
        raise RuntimeError("Integers to negative integer powers are not allowed.")
    if not isinstance(exponent, Tensor):
        return ops.Pow.apply(_in_dtype(base, dtype), exponent=exponent)
    if not isinstance(base, Tensor):
        return ops.PowBase.apply(_in_dtype(exponent, dtype), base=base)
    return _binary(ops.PowTensor, _in_dtype(base, dtype), _in_dtype(exponent, dtype))


def _matmul(a, b):
    """a @ b with torch's checks: tensors of at least one dim and of one dtype."""
    if not isinstance(b, Tensor):
        if _scalar(b):
            raise TypeError(f"unsupported operand type(s) for @: 'Tensor' and "
                            f"'{type(b).__name__}'")
        b = Tensor(b)
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError(f"both arguments to matmul need to be at least 1D, but they are "
                           f"{a.ndim}D and {b.ndim}D")
    if a.array.dtype != b.array.dtype:
        raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: {a.dtype} "
                           f"!= {b.dtype}")
    if a.array.dtype.kind == "b":
        raise NotImplementedError("matmul of bool tensors is not supported (nor by torch); "
                                  "convert them first, e.g. a.float() @ b.float()")
    try:
        return ops.MatMul.apply(a, b)
    except ValueError:  # NumPy's gufunc message
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({list(a.shape)} @ "
                           f"{list(b.shape)})") from None


def _compare(fn, a, b):
    """``fn(a, b)`` in the operands' result dtype: a bool tensor, outside the graph."""
    x, y = _operands(a, b)
    try:
        return Tensor._of(fn(x.array, y.array))
    except ValueError:
        raise _broadcast_error(x.shape, y.shape) from None


def _bitwise(fn, symbol, a, b):
    """``a <symbol> b`` for bool or integer operands (tensors or numbers)."""
    x, y = _operands(a, b)
    if x.array.dtype.kind not in "biu":
        raise TypeError(f"{symbol} needs bool or integer tensors (logical / bitwise), got "
                        f"{x.dtype}; compare first to get bool masks, e.g. "
                        f"(x > 0) {symbol} (y > 0)")
    return ops.Elementwise.apply(x, y, fn=fn)


def _clamp(x, low, high):
    if low is None and high is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    if isinstance(low, Tensor) or isinstance(high, Tensor):
        if not all(v is None or isinstance(v, Tensor) for v in (low, high)):
            raise TypeError("clamp() received an invalid combination of arguments - got "
                            "a tensor and a number as bounds; give both as tensors or both "
                            "as numbers")
        dtype = result_type(x, *(v for v in (low, high) if v is not None))
        bounds = [Tensor._of(xp.full((), -xp.inf if i == 0 else xp.inf, dtype=dtype))
                  if v is None else _in_dtype(v, dtype) for i, v in enumerate((low, high))]
        try:
            return ops.ClampTensor.apply(_in_dtype(x, dtype), *bounds)
        except ValueError:
            raise _broadcast_error(x.shape, next(b for b in bounds if b.ndim).shape) from None
    dtype = result_type(x, *(v for v in (low, high) if v is not None))
    return ops.Clamp.apply(_in_dtype(x, dtype), low=low, high=high)


def _where(condition, input, other):  # noqa: A002 - torch's argument names
    """``input`` where ``condition`` else ``other`` (numbers or tensors, broadcast);
    ``where(condition)`` alone gives the indices where it holds, one tensor per dim."""
    condition = _as_tensor(condition)
    if input is None and other is None:
        return tuple(Tensor._of(i) for i in xp.nonzero(condition.array))
    if condition.dtype.kind != "b":
        raise RuntimeError(f"where expected condition to be a boolean tensor, but got a "
                           f"tensor with dtype {condition.dtype}")
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):
        input = Tensor(input)
    input, other = _operands(input, other)
    try:
        return ops.Where.apply(condition, input, other)
    except ValueError:  # NumPy's words; torch's class
        shapes = [list(t.shape) for t in (condition, input, other)]
        raise RuntimeError(f"where: the shapes {shapes} do not broadcast") from None


def _first_k(keys, k):
    """The first k of a stable argsort along the last axis (the k smallest keys, ties
    in index order), in O(n) per row rather than a sort's O(n log n): the k-th smallest
    value from a partition, every key below it, then the keys equal to it in index
    order until k are chosen; only those k are sorted. (50,257 logits: ~10x faster.)"""
    chosen = first_k_mask(keys, k)
    candidates = numpy.nonzero(chosen)[-1].reshape(*keys.shape[:-1], k)  # index order
    order = numpy.argsort(numpy.take_along_axis(keys, candidates, -1), axis=-1, kind="stable")
    return numpy.take_along_axis(candidates, order, -1)


def first_k_mask(keys, k):
    """(..., n) host keys without NaN, 0 < k < n -> bool mask of the k smallest per row,
    ties at the k-th value broken by index (the entries a stable argsort puts first)."""
    kth = numpy.partition(keys, k - 1, axis=-1)[..., k - 1:k]
    below, tied = keys < kth, keys == kth
    slots = k - below.sum(axis=-1, keepdims=True)  # places left for keys tied at kth
    if (tied.sum(axis=-1, keepdims=True) == slots).all():  # no tie to break
        return below | tied
    return below | (tied & (numpy.cumsum(tied, axis=-1) <= slots))


# --- reductions -------------------------------------------------------------------------


def _reduction_args(t, dim, keepdim, axis, keepdims):
    """The axis (or axes, or None for all) and keepdims of a reduction of ``t``, from
    torch's dim= / keepdim= or NumPy's axis= / keepdims=, each dim checked. An empty
    list of dims reduces over all of them, as torch's sum(dim=())."""
    axis = dim if axis is None else axis
    ndim = t.array.ndim
    if isinstance(axis, (tuple, list)):
        axes = tuple(dim_index(d, ndim) for d in axis)
        for i, d in enumerate(axes):
            if d in axes[:i]:
                raise RuntimeError(f"dim {d} appears multiple times in the list of dims")
        axis = axes or None
    elif axis is not None:
        axis = dim_index(axis, ndim)
    if ndim == 0:  # a 0-d tensor reduces over dim 0 or -1 to itself
        axis = None
    return axis, bool(keepdim if keepdims is None else keepdims)


def _spread(op, x, dim, unbiased, keepdim, correction):
    """var/std's arguments as torch takes them: ``(dim, unbiased, keepdim)``, with a bool
    first meaning ``unbiased`` (torch's other overload)."""
    if isinstance(dim, (bool, numpy.bool_)):
        dim, unbiased = None, dim
    if x.array.dtype.kind != "f":
        raise RuntimeError("std and var only support floating point and complex dtypes; "
                           "convert first, e.g. x.float().var()")
    if correction is None:
        correction = 0 if unbiased is False else 1
    axis, keepdim = _reduction_args(x, dim, keepdim, None, None)
    return op.apply(x, axis=axis, keepdims=keepdim, correction=correction)


class _ValuesIndices(tuple):
    """(values, indices), as torch's max(dim) / topk / sort return them."""

    values = property(lambda self: self[0])
    indices = property(lambda self: self[1])

    def __new__(cls, values, indices):
        return super().__new__(cls, (values, indices))


def _extreme(t, dim, keepdim, largest):
    if isinstance(dim, Tensor):  # max(other): elementwise
        a, b = _operands(t, dim)
        return ops.Maximum.apply(a, b, largest=largest)
    _no_empty(t, "max" if largest else "min", dim)
    if dim is None:
        return ops.Max.apply(t, axis=None, keepdims=False, largest=largest)
    dim = dim_index(dim, t.ndim)
    dim = dim if t.ndim else None  # a 0-d tensor is its own extreme
    values = ops.Max.apply(t, axis=dim, keepdims=keepdim, largest=largest)
    indices = ops.extreme_indices(t.array, dim, keepdim, largest)
    return _ValuesIndices(values, Tensor._of(indices.astype(numpy.int64, copy=False)))


def _truth(fn, t, dim, keepdim):
    """any / all: bool, except uint8 stays uint8, as torch's."""
    axis, keepdim = _reduction_args(t, dim, keepdim, None, None)
    out = fn(t.array != 0, axis=axis, keepdims=keepdim)
    return Tensor._of(out.astype(numpy.uint8) if t.array.dtype == numpy.uint8 else out)


def _amax(t, dim, keepdim, largest):
    axis, keepdim = _reduction_args(t, dim, keepdim, None, None)
    _no_empty(t, "amax" if largest else "amin", axis)
    return ops.Max.apply(t, axis=axis, keepdims=keepdim, largest=largest, spread=True)


def _arg_extreme(t, name, dim, keepdim, axis, keepdims):
    if t.array.dtype.kind == "b":
        raise RuntimeError(f"{name}(): does not support bool input")
    axis, keepdims = _reduction_args(t, dim, keepdim, axis, keepdims)
    _no_empty(t, name, axis)
    return Tensor._of(ops.extreme_indices(t.array, axis, keepdims, name == "argmax"))


def _no_empty(t, name, axis):
    """torch's errors for an extreme of nothing: of an empty tensor without a dim, or
    along a dim of length 0."""
    if t.array.size:
        return
    if axis is None:
        extra = " Specify the reduction dim with the 'dim' argument." if name in (
            "max", "min") else ""
        error = RuntimeError if name in ("max", "min") else IndexError
        raise error(f"{name}(): Expected reduction dim to be specified for input.numel() == "
                    f"0.{extra}")
    for d in (axis if isinstance(axis, tuple) else (axis,)):
        if t.shape[d] == 0:
            raise IndexError(f"{name}(): Expected reduction dim {d} to have non-zero size.")


def _order(t, dim, descending):
    """The stable sort order of ``t`` along ``dim``, NaN as the largest value."""
    keys = t.array
    if t.ndim == 0:
        return xp.zeros((), dtype=numpy.int64)
    if descending:
        if keys.dtype.kind == "f":
            keys = xp.where(xp.isnan(keys), -xp.inf, -keys)  # NaN first
            keys = xp.where(xp.isnan(t.array), xp.asarray(-xp.inf, dtype=keys.dtype), keys)
        elif keys.dtype.kind == "b":
            keys = ~keys
        else:
            keys = -keys.astype(numpy.int64)
    order = xp.argsort(keys, axis=dim, kind="stable")
    if descending and t.array.dtype.kind == "f":  # NaNs before -inf: they share a key
        nan_first = xp.take_along_axis(xp.isnan(t.array), order, axis=dim)
        order = xp.take_along_axis(order, xp.argsort(~nan_first, axis=dim, kind="stable"),
                                   axis=dim)
    return order.astype(numpy.int64, copy=False)


# --- indexing and shapes ----------------------------------------------------------------


def _index(t, index):
    """An index as ``x[...]`` takes it (Tensors and lists become arrays), checked as torch
    checks it: slices step forward, ints lie in range."""
    parts = index if isinstance(index, tuple) else (index,)
    parts = tuple(ops.index_array(i) for i in parts)
    for part in parts:
        if isinstance(part, slice) and part.step is not None and part.step <= 0:
            raise ValueError("step must be greater than zero")
    at = next((i for i, p in enumerate(parts) if p is Ellipsis), None)
    if at is not None:  # the parts after ... index the last dims
        _check_ints(t, parts[:at], 0)
        after = parts[at + 1:]
        _check_ints(t, after, t.ndim - sum(_dims_taken(p) for p in after))
    else:
        _check_ints(t, parts, 0)
    return parts if isinstance(index, tuple) else parts[0]


def _dims_taken(part):
    """How many of a tensor's dims one index part consumes."""
    if part is None:
        return 0
    if getattr(part, "dtype", None) is not None and part.dtype.kind == "b":
        return part.ndim
    return 1


def _check_ints(t, parts, dim):
    """torch's IndexError for an int part outside its dim (from ``dim`` on)."""
    for part in parts:
        if isinstance(part, numbers.Integral) and not isinstance(part, bool):
            if not 0 <= dim < t.ndim:
                raise IndexError(f"too many indices for tensor of dimension {t.ndim}")
            n = t.shape[dim]
            if not -n <= part < n:
                raise IndexError(f"index {part} is out of bounds for dimension {dim} with "
                                 f"size {n}")
        dim += _dims_taken(part)


def _some_dim(t, dim, name):
    """``dim`` of a tensor that must have dims (select, narrow, split, chunk, unbind)."""
    if t.ndim == 0:
        if name in ("split", "chunk"):
            raise RuntimeError(f"{name} expects at least a 1-dimensional tensor")
        if name == "unbind":
            raise IndexError(f"Dimension specified as {dim} but tensor has no dimensions")
        error = IndexError if name == "select" else RuntimeError
        raise error(f"{name}() cannot be applied to a 0-dim tensor.")
    return dim_index(dim, t.ndim)


def _new_shape(t, shape):
    """A reshape's target as ints, checked with torch's errors."""
    shape = tuple(int(n) for n in shape)
    if shape.count(-1) > 1:
        raise RuntimeError("only one dimension can be inferred")
    if any(n < -1 for n in shape):
        raise RuntimeError(f"invalid shape dimension {min(shape)}")
    known = math.prod(n for n in shape if n != -1)
    size = t.array.size
    if (-1 in shape and (known == 0 or size % known)) or (-1 not in shape and known != size):
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {size}")
    return shape


def _expanded_shape(shape, sizes):
    """expand's target shape, with torch's rules and errors."""
    sizes = tuple(int(n) for n in sizes)
    if len(sizes) < len(shape):
        raise RuntimeError(f"expand(torch.FloatTensor{{{list(shape)}}}, size={list(sizes)}): "
                           "the number of sizes provided (" f"{len(sizes)}) must be greater "
                           f"or equal to the number of dimensions in the tensor "
                           f"({len(shape)})")
    lead = len(sizes) - len(shape)
    out = []
    for i, n in enumerate(sizes):
        old = shape[i - lead] if i >= lead else None
        if n == -1:
            if old is None:
                raise RuntimeError("The expanded size of the tensor (-1) isn't allowed in a "
                                   "leading, non-existing dimension " f"{i}")
            n = old
        elif old is not None and old != 1 and old != n:
            raise RuntimeError(f"The expanded size of the tensor ({n}) must match the "
                               f"existing size ({old}) at non-singleton dimension {i}.  "
                               f"Target sizes: {list(sizes)}.  Tensor sizes: {list(shape)}")
        out.append(n)
    return tuple(out)


def _check_indices(index, n, dim, name):
    """torch's error for an index outside [0, n) (NumPy would wrap a negative one)."""
    if index.dtype.kind not in "iu":
        raise RuntimeError(f"{name}(): Expected dtype int64 for index")
    if index.size:
        lo, hi = int(index.min()), int(index.max())
        if lo < 0 or hi >= n:
            raise RuntimeError(f"index {lo if lo < 0 else hi} is out of bounds for dimension "
                               f"{dim} with size {n}")


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
    if isinstance(value, Tensor):
        if value.ndim:
            raise RuntimeError("masked_fill_ only supports a 0-dimensional value tensor, but "
                               f"got tensor with {value.ndim} dimension(s).")
        value = value.item()
    if x.dtype.kind in "iub" and isinstance(value, (float, numpy.floating)) and not (
            numpy.isfinite(value)):
        raise RuntimeError(f"value cannot be converted to type {x.dtype} without overflow: "
                           f"{value}")
    return mask


def _floating(name, t, axis):
    """torch's error for softmax of integers or bools (torch has no such kernel)."""
    if t.array.dtype.kind != "f":
        kernel = f"{name}_lastdim_kernel_impl" if axis == t.ndim - 1 or t.ndim == 0 else \
            f"{name}_kernel_impl"
        raise NotImplementedError(f"\"{kernel}\" not implemented for "
                                  f"'{_TYPE_NAMES[t.array.dtype.name][:-6]}'; convert it "
                                  f"first: x.float().{name}(dim)")


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


__all__ = ["Tensor", "can_cast", "to_arguments"]
