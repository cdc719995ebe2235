"""A small reverse-mode autograd over NumPy (or CuPy) arrays.

A ``Tensor`` holds an array (``.data``) and, once ``backward()`` has run, the
gradient of the loss with respect to it (``.grad``, leaves only). Every
operation is a ``Function`` subclass (see ``ops.py``) whose ``forward`` and
``backward`` work on raw arrays and sit side by side; ``Function.apply`` wires
the result into the graph.

``backward()`` walks the graph once, in reverse topological order found with
an explicit stack (no recursion limit), accumulates gradients of tensors used
more than once, un-broadcasts in one place (``sum_to_shape``), and releases the
graph as it goes (a second ``backward()`` through it is torch's error) unless
``retain_graph=True``. ``grad(outputs, inputs)`` (torch.autograd.grad) returns the
gradients instead of adding them to ``.grad``. In-place changes bump a tensor's
version, and backward refuses values a Function saved that changed since.
"""

import contextlib
import functools
import inspect
import threading

import numpy

from .backend import DEFAULT_DTYPE, Device, check_device, device_name, to_numpy, xp
from .checks import dim_index, rectangular
from .dtypes import Size, torch_dtype

_state = threading.local()


def is_grad_enabled():
    return getattr(_state, "grad_enabled", True)


class no_grad(contextlib.ContextDecorator):
    """Context manager (or decorator) in which no graph is recorded.

    Re-entrant, like torch's: each ``with`` pushes the previous setting and its exit
    pops it (so one instance may be nested), and a decorated function gets a fresh
    context per call (recursion and threads each restore their own setting). As in
    torch, ``@no_grad`` works with or without parentheses, and a decorated generator
    function runs its body, not its consumer, without a graph."""

    _grad_enabled = False  # what the block sets

    def __new__(cls, orig_func=None):
        if orig_func is None:
            return super().__new__(cls)
        if not callable(orig_func):
            raise TypeError(f"{cls.__name__}() takes no arguments (or, as a bare "
                            f"decorator, a function), got {orig_func!r:.60}")
        return cls()(orig_func)  # bare @no_grad

    def __init__(self):
        self._previous = []  # a stack: one entry per open ``with`` of this instance

    def __enter__(self):
        self._previous.append(is_grad_enabled())
        _state.grad_enabled = self._grad_enabled
        return self

    def __exit__(self, *exc):
        _state.grad_enabled = self._previous.pop()
        return False

    def _recreate_cm(self):  # contextlib's hook: the context a decorated call uses
        return type(self)()

    def __call__(self, func):
        if not inspect.isgeneratorfunction(func):
            return super().__call__(func)

        @functools.wraps(func)
        def generator(*args, **kwargs):  # the setting holds while the body runs
            gen = func(*args, **kwargs)
            try:
                with self._recreate_cm():
                    response = gen.send(None)
                while True:
                    try:
                        request = yield response
                    except GeneratorExit:
                        with self._recreate_cm():
                            gen.close()
                        raise
                    except BaseException as exc:  # noqa: BLE001 - handed to the body
                        with self._recreate_cm():
                            response = gen.throw(exc)
                    else:
                        with self._recreate_cm():
                            response = gen.send(request)
            except StopIteration as stop:
                return stop.value

        return generator


class enable_grad(no_grad):
    """Context manager that turns graph recording back on inside ``no_grad``."""

    _grad_enabled = True


def sum_to_shape(grad, shape):
    """Undo broadcasting: sum ``grad`` down to ``shape`` (the one place that does it)."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def _own(array, given):
    """``array`` as a leaf's own gradient: writable, not a view and not another leaf's
    (a backward may return a read-only broadcast view, or the same array for two
    inputs, as Add does). Copies only then; ``given`` collects the arrays handed out."""
    if array.base is not None or id(array) in given or not getattr(
            array.flags, "writeable", True):
        array = array.copy()
    given.add(id(array))
    return array


def _as_array(value, dtype=None):
    """Arrays keep their dtype; Python numbers and lists become the default float dtype."""
    if isinstance(value, Tensor):
        return value.data
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


class _VersionCounter:
    """How many times a tensor's values were changed in place (torch's ``t._version``),
    and by what, last. A view and ``detach()`` share their base's counter, as in torch:
    a change through either is a change of both."""

    __slots__ = ("value", "changed_by")

    def __init__(self, value=0):
        self.value, self.changed_by = value, None


class Tensor:
    """An array plus the bookkeeping reverse-mode differentiation needs."""

    __slots__ = ("data", "_grad", "_requires_grad", "creator", "_graph_freed", "_counter",
                 "_before", "__weakref__")
    # above NumPy's and CuPy's arrays (CuPy: 100), so ``array * Tensor`` defers to
    # Tensor.__rmul__ on either backend
    __array_priority__ = 1000

    def __init__(self, data, requires_grad=False, dtype=None):
        self.data = _as_array(data, dtype)
        self._grad = None
        self.creator = None  # the Function that produced this tensor (None for leaves)
        self._requires_grad = False
        if requires_grad:
            self.requires_grad = True  # checked: floating point only
        self._graph_freed = False
        self._counter = _VersionCounter()
        self._before = None  # this tensor before its last recorded in-place op (_in_place)

    # --- what it is ---------------------------------------------------------------
    @property
    def shape(self):
        return Size(self.data.shape)

    @property
    def dtype(self):  # prints as torch.float32; NumPy calls take it as numpy.float32
        return torch_dtype(self.data.dtype)

    @property
    def ndim(self):
        return self.data.ndim

    def dim(self):
        return self.data.ndim

    def size(self, dim=None):
        """The shape (torch's meaning; ``numel()`` counts the elements), or one dim's length."""
        if dim is None:
            return Size(self.data.shape)
        return int(self.data.shape[dim_index(dim, self.data.ndim)])

    def numel(self):
        return int(self.data.size)

    nelement = numel

    @property
    def device(self):
        return Device(device_name())

    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value):
        """torch's rules: only floating-point tensors require gradients, and only a
        leaf's flag can be changed."""
        if value and self.data.dtype.kind != "f":
            raise RuntimeError(
                f"only Tensors of floating point dtype can require gradients (this one is "
                f"{self.data.dtype}); convert it first, e.g. t.float()"
            )
        if self.creator is not None and not value:
            raise RuntimeError(
                "you can only change requires_grad flags of leaf variables; use "
                "t.detach() for a copy outside the graph"
            )
        self._requires_grad = bool(value)

    @property
    def grad(self):
        """The gradient that backward() added up here (a Tensor), or None."""
        return self._grad

    @grad.setter
    def grad(self, value):
        """Assigning a gradient checks it as torch does: a Tensor (or a backend array) of
        this tensor's shape and dtype, or None."""
        if value is not None:
            array = value.data if isinstance(value, Tensor) else value
            if not isinstance(array, (xp.ndarray, numpy.ndarray)):
                raise TypeError(f"assigned grad expected to be a Tensor or None but got grad "
                                f"of type {type(value).__name__}")
            if tuple(array.shape) != tuple(self.data.shape):
                raise RuntimeError(
                    f"assigned grad has data of a different size: a gradient of size "
                    f"{list(array.shape)} for a tensor of size {list(self.data.shape)}; the "
                    "gradient and the tensor must have the same size"
                )
            if array.dtype != self.data.dtype:
                raise RuntimeError(f"assigned grad has data of a different type: "
                                   f"{array.dtype} for a tensor of {self.data.dtype}")
        self._grad = value

    @property
    def is_leaf(self):
        return self.creator is None

    @property
    def grad_fn(self):
        return self.creator

    def __len__(self):
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self.data)

    # --- values on the host -----------------------------------------------------------
    def item(self):
        if self.data.size != 1:
            raise ValueError(
                f"item() needs a tensor with one element, this one has {self.data.size}; "
                "use .tolist() for all of them"
            )
        return self.data.item()

    def tolist(self):
        return to_numpy(self.data).tolist()

    def numpy(self):
        """The values as a NumPy array (a copy from the GPU under CuPy)."""
        return to_numpy(self.data)

    def __array__(self, dtype=None, copy=None):
        array = to_numpy(self.data)
        return array if dtype is None else array.astype(dtype, copy=False)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.data.dtype.kind not in "iub":
            raise TypeError(f"only integer tensors can be used as an index, not {self.dtype}")
        return int(self.item())

    def __bool__(self):
        if self.data.size != 1:
            raise RuntimeError(
                f"the truth value of a tensor with {self.data.size} elements is ambiguous; "
                "use .any() or .all()"
            )
        return bool(self.data.item())

    def __format__(self, spec):
        if self.data.ndim == 0:  # like torch: a 0-d tensor formats as its number
            return format(self.data.item(), spec)
        return format(repr(self), spec)

    def __repr__(self):
        return _tensor_repr(self)

    def __iter__(self):
        if self.data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(len(self.data)))

    def __hash__(self):  # by identity, like torch (== compares values)
        return id(self)

    def detach(self):
        out = Tensor(self.data)
        out._counter = self._counter  # the same values: a change to one changes both
        return out

    @property
    def _version(self):
        """How many in-place changes this tensor's values have had (torch's counter)."""
        return self._counter.value

    def _bump_version(self, changed_by):
        """Record an in-place change of ``.data`` (by the op named ``changed_by``): every
        writer into a tensor's values calls this, so that a backward needing the old
        values raises instead of using the new ones."""
        self._counter.value += 1
        self._counter.changed_by = changed_by

    def clone(self):
        return ops.Cast.apply(self, dtype=self.dtype)  # astype copies; the gradient passes

    def requires_grad_(self, requires_grad=True):
        if self.creator is not None:
            raise RuntimeError("requires_grad_() works on leaf tensors only; use .detach() first")
        self.requires_grad = bool(requires_grad)
        return self

    # --- graph --------------------------------------------------------------------
    def backward(self, grad=None, retain_graph=None, create_graph=False, inputs=None, *,
                 gradient=None):
        """Add the gradient of this tensor to ``.grad`` of every leaf it depends on (of
        ``inputs`` only, when given), then free the graph.

        ``gradient`` is torch's name for ``grad``, needed when this tensor is not a
        scalar. ``retain_graph=True`` keeps the graph and what its Functions saved, so
        a second backward through it works (and adds to ``.grad`` again)."""
        backward(self, gradient if grad is None else grad, retain_graph, create_graph, inputs)

    # --- operators (implemented in ops.py) ------------------------------------------
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
                xp.asarray(value, dtype=self.data.dtype))
            if value.data.dtype != self.data.dtype:
                value = ops.Cast.apply(value, dtype=self.data.dtype)
            self._in_place(ops.SetItem, value, index=index)
            return
        self.data[index] = value.data if isinstance(value, Tensor) else xp.asarray(value)
        self._bump_version("__setitem__")

    # --- shape ------------------------------------------------------------------------
    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        shape = tuple(int(n) for n in shape)
        try:
            return ops.Reshape.apply(self, shape=shape)
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
            order = list(range(self.ndim))
            a, b = dim_index(axes[0], self.ndim), dim_index(axes[1], self.ndim)
            if order:  # a 0-d tensor takes dims 0 and -1 and stays as it is
                order[a], order[b] = order[b], order[a]
            return ops.Transpose.apply(self, axes=tuple(order))
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

    # --- reductions: torch's dim= / keepdim= (NumPy's axis= / keepdims= work too) -----
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
        if self.data.dtype.kind != "f":
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
        return Tensor(_argext(xp.argmax, self.data, axis, keepdims))

    def argmin(self, dim=None, keepdim=False):
        _no_bool("argmin", self)
        axis, keepdim = _reduction_args(self, dim, keepdim, None, None)
        return Tensor(_argext(xp.argmin, self.data, axis, keepdim))

    def any(self):
        return Tensor(xp.any(self.data))

    def all(self):
        return Tensor(xp.all(self.data))

    # --- elementwise ------------------------------------------------------------------
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
        if self.data.size == 0:  # nothing to normalise (NumPy's max has no identity)
            return self * 1.0
        return ops.Softmax.apply(self, axis=axis)

    def log_softmax(self, dim):
        _floating("log_softmax", self)
        axis = dim_index(dim, self.ndim)
        if self.data.size == 0:
            return self * 1.0
        return ops.LogSoftmax.apply(self, axis=axis)

    def masked_fill(self, mask, value):
        """A copy with ``value`` where ``mask`` (broadcast to this shape) is true."""
        return ops.MaskedFill.apply(self, _fill_mask(self, mask, value, False), value=value)

    def masked_fill_(self, mask, value):
        """``masked_fill`` in place, as the book's attention does: this tensor object now
        holds the filled values, and gradients flow through the fill to what it was."""
        return self._in_place(ops.MaskedFill, _fill_mask(self, mask, value, True), value=value)

    def add_(self, other, *, alpha=1):
        """self += alpha * other in place (the version bumps; gradients flow as for +)."""
        other = other if alpha == 1 else other * alpha
        return self._in_place(ops.Add, _in_place_operand(self, other, "add_"))

    def mul_(self, other):
        return self._in_place(ops.Mul, _in_place_operand(self, other, "mul_"))

    def fill_(self, value):
        """Every entry set to ``value`` in place; no gradient reaches the old values."""
        value = value.item() if isinstance(value, Tensor) else value
        return self._in_place(ops.MaskedFill, Tensor(xp.ones((), dtype=bool)), value=value)

    def zero_(self):
        return self.fill_(0)

    def gather(self, dim, index):
        index = _as_tensor(index)
        if index.ndim != self.ndim:
            raise RuntimeError("Index tensor must have the same number of dimensions as input "
                               f"tensor ({index.ndim} and {self.ndim})")
        return ops.Gather.apply(self, index, axis=dim_index(dim, self.ndim))

    # --- the book after chapter 5 and the models a learner meets next ------------------
    def matmul(self, other):
        return self @ other

    def sigmoid(self):
        return ops.Sigmoid.apply(self)

    def cos(self):
        return ops.Cos.apply(self)

    def sin(self):
        return ops.Sin.apply(self)

    def rsqrt(self):
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
        found = xp.nonzero(self.data) if self.data.ndim else xp.nonzero(self.data.reshape(1))
        if as_tuple:
            return tuple(Tensor(i.astype(numpy.int64, copy=False)) for i in found)
        if self.data.ndim == 0:
            return Tensor(xp.zeros((len(found[0]), 0), dtype=numpy.int64))
        return Tensor(xp.stack(found, axis=1).astype(numpy.int64, copy=False))

    def is_floating_point(self):
        return self.data.dtype.kind == "f"

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
        self.data[...] = xp.asarray(_as_array(src), dtype=self.data.dtype)
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
        if self.data.dtype.kind not in "biu":
            raise TypeError(f"~ (bitwise not) needs a bool or integer tensor, got {self.dtype}; "
                            "for a float mask compare first, e.g. ~(x > 0)")
        return Tensor(xp.invert(self.data))

    logical_not = __invert__

    # --- dtypes and devices -----------------------------------------------------------
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

    def _in_place(self, function, *args, **options):
        """Apply ``function`` to this tensor and make this object its result (torch's
        in-place ops on our rebinding autograd: the old value lives on as the input,
        ``_before``, where the Functions that used this tensor earlier find it)."""
        if self.requires_grad and self.creator is None and is_grad_enabled():
            raise RuntimeError(
                "a leaf Variable that requires grad is being used in an in-place operation "
                "(it cannot be changed in place); use the out-of-place form (e.g. "
                "masked_fill) or work under no_grad()"
            )
        if getattr(self.data, "base", None) is not None:
            raise NotImplementedError(
                "in-place ops on a view (a tensor made by view/reshape/transpose/indexing "
                "of another) are not supported: torch would also change the original; use "
                "the out-of-place form, e.g. x = x.masked_fill(mask, value)"
            )
        before = Tensor.__new__(Tensor)
        before.data, before._grad, before._requires_grad = self.data, None, self.requires_grad
        before.creator, before._graph_freed = self.creator, self._graph_freed
        before._counter, before._before = _VersionCounter(self._version), self._before
        out = function.apply(before, *args, **options)
        self.data = out.data
        self._bump_version("__setitem__" if function is ops.SetItem else function.__name__)
        fn = out.creator
        if fn is not None:
            self.creator, self._requires_grad, self._before = fn, True, before
            if fn.reads_output:  # the output fn saved is this tensor now
                fn.output = (self._counter, self._version) + fn.output[2:]
        return self

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


def grad_array(t):
    """The array of ``t.grad``: a Tensor after backward(), or an array set by hand."""
    grad = t.grad
    return grad.data if isinstance(grad, Tensor) else grad


PRINT_OPTIONS = {"precision": 4, "sci_mode": None, "threshold": 1000, "edgeitems": 3,
                 "linewidth": 80}


def _tensor_repr(t):
    """torch-style: tensor([...]) with 4 decimals, plus dtype / requires_grad / grad_fn
    (``tensors.set_printoptions`` changes the settings)."""
    values = to_numpy(t.data)
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
    if a.dtype.kind == "b" or isinstance(b, bool) or (
            isinstance(b, Tensor) and b.dtype.kind == "b"):
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
    small, big = mask.data.shape, x.data.shape
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
    against numbers and integer tensors; otherwise the wider of the two."""
    da = a.dtype
    if isinstance(b, Tensor):
        db = b.dtype
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
    if not isinstance(b, (Tensor, bool, int, float, numpy.number, numpy.bool_)):
        b = Tensor(b)
    dtype = result_dtype(a, b)
    if true_division and dtype.kind != "f":
        dtype = xp.dtype(DEFAULT_DTYPE)  # int / int is a float, as in torch
    if not isinstance(b, Tensor):
        b = Tensor(xp.asarray(b, dtype=dtype))
    a = a if a.dtype == dtype else ops.Cast.apply(a, dtype=dtype)
    b = b if b.dtype == dtype else ops.Cast.apply(b, dtype=dtype)
    return a, b


def _compare(fn, a, b):
    b = b.data if isinstance(b, Tensor) else (
        b if isinstance(b, (int, float, numpy.number, bool)) else xp.asarray(b))
    return Tensor(fn(a.data, b))


def _bitwise(fn, symbol, a, b):
    """``a <symbol> b`` for bool or integer operands (a Tensor, b a Tensor or a number)."""
    b_data = b.data if isinstance(b, Tensor) else b
    kinds = (a.data.dtype.kind, getattr(b_data, "dtype", numpy.asarray(b_data).dtype).kind)
    if any(k not in "biu" for k in kinds):
        raise TypeError(f"{symbol} needs bool or integer tensors (logical / bitwise), got "
                        f"{a.dtype} and {getattr(b, 'dtype', type(b).__name__)}; compare "
                        "first to get bool masks, e.g. (x > 0) {symbol} (y > 0)")
    return Tensor(fn(a.data, b_data if isinstance(b, Tensor) else xp.asarray(b_data)))


def _reduction_args(t, dim, keepdim, axis, keepdims):
    """The axis (or axes, or None for all) and keepdims of a reduction of ``t``, from
    torch's dim= / keepdim= or NumPy's axis= / keepdims=, each dim checked."""
    axis = dim if axis is None else axis
    ndim = t.data.ndim
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
        take_a = (a.data >= b.data) if largest else (a.data <= b.data)
        return ops.Where.apply(Tensor(take_a), a, b)
    if dim is None:
        return ops.Max.apply(t, axis=None, keepdims=False, largest=largest)
    dim = dim_index(dim, t.ndim)
    dim = dim if t.ndim else None  # a 0-d tensor is its own extreme
    values = ops.Max.apply(t, axis=dim, keepdims=keepdim, largest=largest)
    indices = _argext(xp.argmax if largest else xp.argmin, t.data, dim, keepdim)
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


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """torch.autograd.backward: one backward pass from ``tensors`` (a tensor or a list),
    each seeded with its ``grad_tensors`` entry (None: 1 for a scalar), adding into
    ``.grad`` of the leaves, or of ``inputs`` only."""
    roots, seeds = _seeds(tensors, grad_tensors, create_graph)
    if inputs is None:
        _run_backward(roots, seeds, retain_graph)
        return
    inputs = _tensors(inputs, "inputs")
    for t, g in zip(inputs, _run_backward(roots, seeds, retain_graph, inputs)):
        if g is not None:
            t.grad = Tensor(g if t.grad is None else grad_array(t) + g)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False, is_grads_batched=False, materialize_grads=False):
    """torch.autograd.grad: the gradients of ``outputs`` with respect to ``inputs``, a
    tuple with one Tensor per input; no ``.grad`` changes. ``grad_outputs`` seeds each
    output (None: 1 for a scalar). An input the outputs do not depend on is an error,
    or None with ``allow_unused=True`` (zeros with ``materialize_grads=True``)."""
    if is_grads_batched:
        raise NotImplementedError("grad(is_grads_batched=True) is not supported; call grad() "
                                  "once per row of grad_outputs")
    roots, seeds = _seeds(outputs, grad_outputs, create_graph)
    inputs = _tensors(inputs, "inputs")
    for t in inputs:
        if not t.requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    found = _run_backward(roots, seeds, retain_graph, inputs)
    result = []
    for i, (t, g) in enumerate(zip(inputs, found)):
        if g is None and materialize_grads:
            g = xp.zeros_like(t.data)
        elif g is None and not allow_unused:
            raise RuntimeError(
                f"The differentiated Tensor at index {i} appears to not have been used in the "
                "graph. Set allow_unused=True if this is the desired behavior."
            )
        result.append(None if g is None else Tensor(g))
    return tuple(result)


def _tensors(values, name):
    values = (values,) if isinstance(values, Tensor) else tuple(values)
    for v in values:
        if not isinstance(v, Tensor):
            raise TypeError(f"{name} must be Tensors, got {type(v).__name__}")
    return values


def _seeds(outputs, grad_outputs, create_graph):
    """The roots of a backward pass and the gradient each starts with, checked."""
    if create_graph:
        raise NotImplementedError(
            "create_graph=True (a graph of the gradients, for higher derivatives) is not "
            "supported: tinygpt's backward works on raw arrays; take a second derivative "
            "by finite differences of the first, or use PyTorch"
        )
    roots = _tensors(outputs, "outputs")
    if grad_outputs is None:
        grad_outputs = (None,) * len(roots)
    elif not isinstance(grad_outputs, (list, tuple)):  # one Tensor, array or number
        grad_outputs = (grad_outputs,)
    grad_outputs = tuple(grad_outputs)
    if len(grad_outputs) != len(roots):
        raise RuntimeError(f"got {len(grad_outputs)} gradients for {len(roots)} outputs")
    seeds = []
    for i, (t, g) in enumerate(zip(roots, grad_outputs)):
        if t._graph_freed:
            raise RuntimeError(_FREED)
        if not t.requires_grad:
            raise RuntimeError(f"element {i} of tensors does not require grad and does not "
                               "have a grad_fn (it was computed under no_grad() or from "
                               "tensors that do not require grad)")
        if g is None:
            if t.data.size != 1:
                raise RuntimeError(
                    f"grad can be implicitly created only for scalar outputs, got shape "
                    f"{tuple(t.data.shape)}; pass a gradient of the same shape"
                )
            g = xp.ones_like(t.data)
        else:
            g = _as_array(g, t.data.dtype)
            if g.shape != t.data.shape:
                raise ValueError(f"the gradient has shape {tuple(g.shape)}, expected "
                                 f"{tuple(t.data.shape)} (the output's)")
        seeds.append(g)
    return roots, seeds


_FREED = (
    "Trying to backward through the graph a second time (or directly access saved tensors "
    "after they have already been freed). Saved intermediate values of the graph are freed "
    "when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to "
    "backward through the graph a second time or if you need to access saved tensors after "
    "calling backward."
)


def _run_backward(roots, seeds, retain_graph=None, wanted=None):
    """The engine: one pass over the graph behind ``roots`` in reverse topological
    order, each root starting from its seed gradient.

    Without ``wanted``, gradients are added into the leaves' ``.grad``. With ``wanted``
    (tensors), no ``.grad`` changes: the gradient reaching each of them is returned
    (None where none does), and only Functions on a path to them run. Unless
    ``retain_graph``, each Function is released once it has run."""
    order = _topological_order(roots)
    # A shared intermediate freed by an earlier backward would otherwise pass for a leaf,
    # and the tensors before it would silently miss their gradient.
    if any(node._graph_freed for node in order):
        raise RuntimeError(_FREED)
    grads = {}
    for root, seed in zip(roots, seeds):
        previous = grads.get(id(root))
        grads[id(root)] = seed if previous is None else previous + seed
    found = needed = None
    if wanted is not None:
        found = {id(t): None for t in wanted}
        needed = set()  # nodes with a wanted tensor among their inputs, or behind them
        for node in order:
            fn = node.creator
            if fn is not None and any(id(i) in found or id(i) in needed for i in fn.inputs):
                needed.add(id(node))
    given = set()  # ids of the arrays handed out so far (see _own)
    for node in reversed(order):
        node_grad = grads.pop(id(node), None)
        if found is not None and id(node) in found and node_grad is not None:
            found[id(node)] = node_grad = _own(node_grad, given)
        fn = node.creator
        if fn is None:  # a leaf: accumulate into .grad (a Tensor, as in torch)
            if found is None and node_grad is not None:
                if node.grad is not None:
                    node_grad = grad_array(node) + node_grad
                else:
                    node_grad = _own(node_grad, given)
                node._grad = Tensor(node_grad)
            continue
        if needed is not None and id(node) not in needed:
            continue
        if not retain_graph:
            node.creator, node._graph_freed, node._before = None, True, None
        if node_grad is None:
            continue
        fn.retain_graph = bool(retain_graph)
        input_grads = fn.backward(node_grad)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        for inp, inp_grad in zip(fn.inputs, input_grads):
            if inp_grad is None or not inp._requires_grad:
                continue
            inp_grad = sum_to_shape(inp_grad, inp.data.shape)
            previous = grads.get(id(inp))
            grads[id(inp)] = inp_grad if previous is None else previous + inp_grad
        if not retain_graph:
            fn.inputs = ()  # release what forward saved
    return None if found is None else [found[id(t)] for t in wanted]


def _topological_order(roots):
    """Nodes reachable from ``roots``, each after all of its inputs (explicit stack).
    Each Function's inputs are taken as they were when it ran (``_inputs_as_run``)."""
    order, visited = [], set()
    stack = [(root, False) for root in roots]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node.creator is not None:
            for inp in _inputs_as_run(node.creator):
                if inp._requires_grad and id(inp) not in visited:
                    stack.append((inp, False))
    return order


def _inputs_as_run(fn):
    """``fn``'s inputs as they were when it ran, checked against in-place changes since.

    A changed tensor that ``fn`` saved for its backward is torch's error. One it did not
    save only moved on: its gradient belongs to the value ``fn`` used, which the in-place
    op kept as ``_before`` (or, for a change that recorded no graph, to the tensor)."""
    if fn.reads_output and fn.output[0].value != fn.output[1]:
        raise _modified_error(fn, fn.output[0], fn.output[1], fn.output[2], fn.output[3],
                              f"output 0 of {type(fn).__name__}")
    inputs, versions = fn.inputs, fn.versions
    for t, v in zip(inputs, versions):
        if t._counter.value != v:
            break
    else:  # nothing changed (a plain loop: this runs for every node)
        return inputs
    saved = fn.saved_inputs()
    as_run = []
    for i, (t, v) in enumerate(zip(inputs, versions)):
        if t._counter.value != v:
            if i in saved:
                made_by = None if t.creator is None else f"output 0 of {type(t.creator).__name__}"
                raise _modified_error(fn, t._counter, v, t.data.dtype, t.data.shape, made_by)
            while t._before is not None and v <= t._before._counter.value:
                t = t._before
        as_run.append(t)
    fn.inputs, fn.versions = tuple(as_run), tuple(t._counter.value for t in as_run)
    return fn.inputs


def _modified_error(fn, counter, expected, dtype, shape, made_by):
    """torch's error for a saved tensor changed in place, naming the ops involved."""
    what = f"[tinygpt.{numpy.dtype(dtype).name} [{', '.join(str(n) for n in shape)}]]"
    if made_by:
        what += f", which is {made_by},"
    return RuntimeError(
        "one of the variables needed for gradient computation has been modified by an "
        f"inplace operation: {what} is at version {counter.value}; expected version "
        f"{expected} instead. Hint: {type(fn).__name__} saved it for backward, and "
        f"{counter.changed_by or 'an in-place op'} changed it afterwards; use the "
        "out-of-place form (e.g. x = x.masked_fill(mask, value)) or change a .clone()"
    )


class Function:
    """One differentiable operation. Subclasses implement, on raw arrays::

        forward(self, *arrays, **options) -> array     # may save what backward needs on self
        backward(self, grad_out) -> grad or tuple of grads, one per array input (None = no grad)

    ``self.needs_grad`` tells forward whether a graph is being recorded, so it can
    skip saving arrays under ``no_grad()``. ``self.retain_graph`` tells backward whether
    it may run again: only when it is False may backward reuse a saved buffer in place.

    Version checks (torch's saved tensors): ``reads`` says which inputs backward reads,
    as one tuple of input positions per input's gradient (None: every input, for any
    gradient); ``reads_output`` that it reads the output. A tensor among those, changed
    in place between forward and backward, makes backward raise. ``view``: the output
    may share input 0's memory (reshape, transpose, basic indexing), and so its
    version counter.
    """

    inputs = versions = ()
    needs_grad = False
    retain_graph = False  # backward(retain_graph=True): backward must keep saved arrays intact
    reads = None
    reads_output = False
    view = False

    @classmethod
    def apply(cls, *inputs, **options):
        tensors = tuple(t if isinstance(t, Tensor) else Tensor(t) for t in inputs)
        fn = cls()
        fn.needs_grad = is_grad_enabled() and any([t._requires_grad for t in tensors])
        out = Tensor(fn.forward(*(t.data for t in tensors), **options))
        if cls.view and xp.may_share_memory(out.data, tensors[0].data):
            out._counter = tensors[0]._counter
        if fn.needs_grad:
            fn.inputs = tensors
            fn.versions = tuple([t._counter.value for t in tensors])
            if cls.reads_output:
                fn.output = (out._counter, out._counter.value, out.data.dtype, out.data.shape)
            out._requires_grad = True
            out.creator = fn
        return out

    def saved_inputs(self):
        """Positions of the inputs this backward reads, given which inputs need a gradient."""
        if self.reads is None:
            return range(len(self.inputs))
        return {j for i, t in enumerate(self.inputs) if t.requires_grad
                for j in (self.reads[i] if i < len(self.reads) else ())}

    def forward(self, *arrays, **options):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad_out):  # pragma: no cover - abstract
        raise NotImplementedError


from . import ops  # noqa: E402  (ops needs Function and Tensor defined first)
