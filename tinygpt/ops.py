"""The primitive ops: each one class, ``forward`` and ``backward`` side by side on raw
arrays, the formula in its docstring. Read them as micrograd's list: arithmetic,
elementwise maths, casts, the matrix product, shapes and views, in-place helpers,
reductions, masks and joins, softmax. Every Tensor method and torch function is built
on them; the fused layers (fused.py) are tested against chains of them, and every op is
checked against float64 finite differences (tests/test_gradcheck.py, ``tinygpt selftest``).
"""

import math

import numpy

from .autograd import Function, TensorBase
from .backend import (
    xp,
)
from .views import replay

# ----------------------------------------------------------------------------------
# Elementwise arithmetic. Broadcasting is undone by the engine (sum_to_shape).


class Add(Function):
    """y = a + b;  da = dy, db = dy"""

    reads = ()  # backward needs no input's values

    def forward(self, a, b):
        return a + b

    def backward(self, dy):
        return dy, dy


class Sub(Function):
    """y = a - b;  da = dy, db = -dy"""

    reads = ()  # backward needs no input's values

    def forward(self, a, b):
        return a - b

    def backward(self, dy):
        return dy, -dy


class Mul(Function):
    """y = a * b;  da = dy * b, db = dy * a"""

    reads = ((1,), (0,))  # da reads b, db reads a

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, dy):
        return dy * self.b, dy * self.a


class Div(Function):
    """y = a / b;  da = dy / b, db = -dy * a / b^2"""

    reads = ((1,), (0, 1))  # da reads b, db reads a and b

    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, dy):
        da = dy / self.b
        if not self.needs_input_grad[1]:  # a constant divisor (e.g. sqrt(head_dim))
            return da, None
        return da, -da * self.a / self.b


class Neg(Function):
    """y = -x;  dx = -dy"""

    reads = ()  # backward needs no input's values

    def forward(self, x):
        return -x

    def backward(self, dy):
        return -dy


class _DerivativeFromOutput(Function):
    """An elementwise op whose derivative is a function of its output y alone (exp, tanh,
    sqrt, sigmoid, rsqrt): forward keeps y, not x, and the in-place checks watch y. A
    subclass gives ``f``, the function on arrays, and ``backward`` from ``self.y``."""

    reads, reads_output = ((),), True  # backward reads y, not x

    def forward(self, x):
        self.y = self.f(x)
        return self.y


class Exp(_DerivativeFromOutput):
    """y = exp(x);  dx = dy * y"""

    def f(self, x):
        return xp.exp(x)

    def backward(self, dy):
        return dy * self.y


class Log(Function):
    """y = log(x);  dx = dy / x"""

    def forward(self, x):
        self.x = x
        with numpy.errstate(divide="ignore", invalid="ignore"):  # -inf and nan, as torch
            return xp.log(x)

    def backward(self, dy):
        with numpy.errstate(divide="ignore", invalid="ignore"):
            return dy / self.x


class Tanh(_DerivativeFromOutput):
    """y = tanh(x);  dx = dy * (1 - y^2)"""

    def f(self, x):
        return xp.tanh(x)

    def backward(self, dy):
        return dy * (1.0 - self.y * self.y)


class Sqrt(_DerivativeFromOutput):
    """y = sqrt(x);  dx = dy / (2 y)"""

    def f(self, x):
        with numpy.errstate(invalid="ignore"):  # nan below 0, as torch
            return xp.sqrt(x)

    def backward(self, dy):
        with numpy.errstate(divide="ignore", invalid="ignore"):
            return dy / (2.0 * self.y)


class Abs(Function):
    """y = |x|;  dx = dy * sign(x)   (0 at x = 0, as torch)"""

    def forward(self, x):
        self.x = x
        return xp.abs(x)

    def backward(self, dy):
        return dy * xp.sign(self.x)


def sigmoid_array(x):
    """1 / (1 + exp(-x)) from exp(-|x|), which never overflows; x's dtype."""
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


class Sigmoid(_DerivativeFromOutput):
    """y = 1 / (1 + exp(-x));  dx = dy * y (1 - y)

    Computed from exp(-|x|), which never overflows."""

    def f(self, x):
        return sigmoid_array(x)

    def backward(self, dy):
        return dy * (self.y * (1.0 - self.y))


class Cos(Function):
    """y = cos(x);  dx = -dy * sin(x)"""

    def forward(self, x):
        if self.needs_grad:  # RoPE's tables are built without a graph: keep nothing
            self.x = x
        return xp.cos(x)

    def backward(self, dy):
        return -dy * xp.sin(self.x)


class Sin(Function):
    """y = sin(x);  dx = dy * cos(x)"""

    def forward(self, x):
        if self.needs_grad:
            self.x = x
        return xp.sin(x)

    def backward(self, dy):
        return dy * xp.cos(self.x)


class Rsqrt(_DerivativeFromOutput):
    """y = 1 / sqrt(x);  dx = -dy * y^3 / 2"""

    def f(self, x):
        with numpy.errstate(divide="ignore", invalid="ignore"):
            return 1.0 / xp.sqrt(x)

    def backward(self, dy):
        y = self.y
        return dy * (y * y * y) * -0.5


class RepeatInterleave(Function):
    """y = each entry of x ``repeats`` times in a row along ``axis``;
    dx = dy with each run of ``repeats`` summed back into its entry"""

    reads = ()  # backward needs no input's values

    def forward(self, x, repeats, axis):
        self.axis, self.repeats = axis % x.ndim, repeats
        return xp.repeat(x, repeats, axis=self.axis)

    def backward(self, dy):
        a, r = self.axis, self.repeats
        runs = dy.reshape(dy.shape[:a] + (dy.shape[a] // max(r, 1), r) + dy.shape[a + 1:])
        return runs.sum(axis=a + 1)


class Pow(Function):
    """y = x^p for a constant p;  dx = dy * p * x^(p-1)   (0 for p = 0, as torch)

    Small integer powers are products: ``x**3`` is ~60x slower in NumPy."""

    def forward(self, x, exponent):
        self.x, self.p = x, exponent
        return _power(x, exponent)

    def backward(self, dy):
        p = self.p
        if p == 0:
            return xp.zeros_like(dy)
        return dy * (p * _power(self.x, p - 1)) if p != 1 else dy


class PowBase(Function):
    """y = base^x for a number ``base``;  dx = dy * y * log(base)"""

    reads, reads_output = ((),), True

    def forward(self, x, base):
        base_array = xp.asarray(base, dtype=x.dtype)
        self.y = xp.power(base_array, x) if x.dtype.kind == "f" else _integer_power(
            base_array, x)
        self.log_base = base
        return self.y

    def backward(self, dy):
        with numpy.errstate(divide="ignore", invalid="ignore"):
            return dy * self.y * math.log(self.log_base) if self.log_base > 0 else \
                dy * self.y * float("nan")

    torch_name = "PowBackward1"


class PowTensor(Function):
    """y = a^b;  da = dy * b * a^(b-1) (0 where b = 0),  db = dy * y * log(a) (0 where
    a = 0 and b >= 0), as torch's"""

    reads_output = True

    def forward(self, a, b):
        self.a, self.b = a, b
        self.y = a ** b if a.dtype.kind == "f" else _integer_power(a, b)
        return self.y

    def backward(self, dy):
        a, b = self.a, self.b
        with numpy.errstate(divide="ignore", invalid="ignore"):
            da = xp.where(b == 0, 0.0, dy * b * a ** (b - 1)).astype(dy.dtype)
            db = xp.where((a == 0) & (b >= 0), 0.0, dy * self.y * xp.log(a)).astype(dy.dtype)
        return da, db

    torch_name = "PowBackward2"


def _integer_power(base, exponent):
    """base ** exponent for integers, a negative exponent included (NumPy refuses it):
    0, except 1 for a base of 1 and +-1 for a base of -1, as torch computes it."""
    negative = exponent < 0
    power = base ** xp.where(negative, 0, exponent)
    one = xp.ones((), dtype=power.dtype)
    unit = xp.where(base == 1, one, xp.where(base == -1, xp.where(exponent % 2 == 0, one, -one),
                                               xp.zeros((), dtype=power.dtype)))
    return xp.where(negative, unit, power)


class FloorDivide(Function):
    """y = floor(a / b), Python's ``//`` (rounded toward -inf); torch has no gradient"""

    reads = ()

    def forward(self, a, b):
        if a.dtype.kind in "iu" and bool((b == 0).any()):
            raise RuntimeError("ZeroDivisionError")
        with numpy.errstate(divide="ignore", invalid="ignore"):
            return xp.floor_divide(a, b)

    differentiable = False  # as torch's

    def backward(self, dy):
        raise RuntimeError("derivative for aten::floor_divide is not implemented")

    torch_name = "NotImplemented"


class Remainder(Function):
    """y = a - floor(a / b) * b, Python's ``%`` (the sign of b);
    da = dy,  db = -dy * floor(a / b)"""

    reads = ((), (0, 1))

    def forward(self, a, b):
        if a.dtype.kind in "iu" and bool((b == 0).any()):
            raise RuntimeError("ZeroDivisionError")
        self.a, self.b = a, b
        with numpy.errstate(divide="ignore", invalid="ignore"):
            return xp.remainder(a, b)

    def backward(self, dy):
        with numpy.errstate(divide="ignore", invalid="ignore"):
            return dy, -dy * xp.floor_divide(self.a, self.b)


class Elementwise(Function):
    """y = fn(*inputs) for the ops without a gradient (& | ^ ~ on bools and integers):
    their results are never floats, so nothing is recorded"""

    reads, differentiable = (), False

    def forward(self, *arrays, fn):
        return fn(*arrays)


class Clamp(Function):
    """y = min(max(x, low), high) for numbers low, high (either may be None);
    dx = dy where low <= x <= high, else 0"""

    reads = ((0,),)

    def forward(self, x, low=None, high=None):
        self.x, self.low, self.high = x, low, high
        return xp.clip(x, low, high)

    def backward(self, dy):
        keep = xp.ones(self.x.shape, dtype=bool)
        if self.low is not None:
            keep &= self.x >= self.low
        if self.high is not None:
            keep &= self.x <= self.high
        return xp.where(keep, dy, xp.zeros((), dtype=dy.dtype))

    torch_name = "ClampBackward1"


class ClampTensor(Function):
    """y = min(max(x, low), high) for tensors low, high;  dx = dy where low <= x <= high,
    dlow = dy where x < low <= high,  dhigh = dy where x > high or low > high (y = high)"""

    def forward(self, x, low, high):
        self.x, self.low, self.high = x, low, high
        return xp.minimum(xp.maximum(x, low), high)

    def backward(self, dy):
        zero = xp.zeros((), dtype=dy.dtype)
        x, low, high = self.x, self.low, self.high
        return (xp.where((x >= low) & (x <= high), dy, zero),
                xp.where((x < low) & (low <= high), dy, zero),
                xp.where((x > high) | (low > high), dy, zero))

    torch_name = "ClampBackward0"


class Maximum(Function):
    """y = the elementwise max (``largest``) or min of a and b (NaN wins, as torch);
    da = dy where a is the one (half of it where a = b), db likewise; as torch, an input
    is only refused its share where the other one clearly wins"""

    reads = ((0, 1), (0, 1))

    def forward(self, a, b, largest=True):
        self.a, self.b, self.largest = a, b, largest
        return xp.maximum(a, b) if largest else xp.minimum(a, b)

    def backward(self, dy):
        a, b, zero = self.a, self.b, xp.zeros((), dtype=dy.dtype)
        shared = xp.where(a == b, dy * 0.5, dy)
        a_loses, b_loses = (a < b, a > b) if self.largest else (a > b, a < b)
        return xp.where(a_loses, zero, shared), xp.where(b_loses, zero, shared)

    def name(self):
        return "MaximumBackward0" if self.largest else "MinimumBackward0"


def _power(x, p):
    if p == 0:
        return xp.ones_like(x)
    if p == 1:
        return x.copy()
    if p == 2:
        return x * x
    if p == 3:
        return x * x * x
    if p == 0.5:
        return xp.sqrt(x)
    return x ** x.dtype.type(p) if x.dtype.kind == "f" else x ** p


class Cast(Function):
    """y = x converted to ``dtype``;  dx = dy converted back."""

    reads = ()  # backward needs no input's values, only the input's dtype

    def forward(self, x, dtype):
        self.in_dtype = x.dtype
        return x.astype(dtype)

    def backward(self, dy):
        return dy.astype(self.in_dtype, copy=False)

    torch_name = "ToCopyBackward0"


class Clone(Function):
    """y = a copy of x ("K": in x's layout, as torch's clone; "C": row-major, as
    contiguous());  dx = dy"""

    reads = ()

    def forward(self, x, order="K"):
        return x.copy(order=order)

    def backward(self, dy):
        return dy


# ----------------------------------------------------------------------------------
# Matrix product, shapes, indexing, reductions.


class MatMul(Function):
    """y = a @ b (batched over leading dims);  da = dy @ b^T, db = a^T @ dy"""

    reads = ((1,), (0,))  # da reads b, db reads a

    def forward(self, a, b):
        self.a, self.b, self.dims = a, b, (a.ndim, b.ndim)
        return a @ b

    def backward(self, dy):
        a, b = self.a, self.b
        if b.ndim == 1:  # (…, K) @ (K,) -> (…,)
            return dy[..., None] * b, (a * dy[..., None]).reshape(-1, b.shape[0]).sum(0)
        if a.ndim == 1:  # (K,) @ (…, K, M) -> (…, M)
            da = (b @ dy[..., None])[..., 0]
            return da, a[:, None] * dy[..., None, :]
        return dy @ xp.swapaxes(b, -1, -2), xp.swapaxes(a, -1, -2) @ dy

    def name(self):
        return {(2, 2): "MmBackward0", (1, 1): "DotBackward0", (2, 1): "MvBackward0"}.get(
            self.dims, "UnsafeViewBackward0")


class Reshape(Function):
    """y = x viewed as ``shape``;  dx = dy viewed as x's shape"""

    reads, view = (), True

    def forward(self, x, shape):
        self.in_shape = x.shape
        return x.reshape(shape)

    def backward(self, dy):
        return dy.reshape(self.in_shape)

    torch_name = "ViewBackward0"


class Transpose(Function):
    """y = x with axes permuted;  dx = dy with the inverse permutation"""

    reads, view = (), True

    def forward(self, x, axes):
        self.axes = axes
        return x.transpose(axes)

    def backward(self, dy):
        inverse = sorted(range(len(self.axes)), key=self.axes.__getitem__)
        return dy.transpose(inverse)

    def name(self):
        moved = [i for i, a in enumerate(self.axes) if a != i]
        return "TransposeBackward0" if len(moved) == 2 else "PermuteBackward0"


class GetItem(Function):
    """y = x[index];  dx = zeros with dy scattered (added) back at index

    An index of ints, slices, None and ... gives a view of x, as in torch (NumPy's
    basic indexing; a trailing ``...`` keeps a single element a 0-d view, not a copy).
    Int arrays and masks (advanced indexing) give a copy."""

    reads, view = (), True

    def forward(self, x, index):
        parts = index if isinstance(index, tuple) else (index,)
        # Index arrays (host or device, bare or in a Tensor) become arrays of x's backend.
        parts = tuple(index_array(i) for i in parts)
        self.advanced = not is_basic(parts)
        if not self.advanced and Ellipsis not in parts:
            parts += (Ellipsis,)
        index = parts if isinstance(index, tuple) or not self.advanced else parts[0]
        self.in_shape, self.in_dtype, self.index = x.shape, x.dtype, index
        return x[index]

    def backward(self, dy):
        dx = xp.zeros(self.in_shape, dtype=self.in_dtype)
        if self.advanced:
            xp.add.at(dx, self.index, dy)  # advanced indexing: repeated indices accumulate
        else:
            dx[self.index] = dy  # basic indexing never repeats an element
        return dx

    def name(self):
        if self.advanced:
            return "IndexBackward0"
        last = next((p for p in reversed(self.index) if p is not None and p is not Ellipsis),
                    None)
        if last is None:
            return "UnsqueezeBackward0" if None in self.index else "AliasBackward0"
        return "SliceBackward0" if isinstance(last, slice) else "SelectBackward0"


class SetItem(Function):
    """y = x with y[index] = value (value broadcast to x[index]): torch's index_put_, for
    ``x[index] = value`` with int arrays or masks (inplace.py writes y into x);
    dx = dy with zeros at index,  dvalue = dy[index] (summed to value's shape)"""

    reads = ()  # backward needs only the index

    def forward(self, x, value, index):
        self.index = index
        y = x.copy()
        y[index] = value
        return y

    def backward(self, dy):
        dx = dy.copy()
        dx[self.index] = 0
        return dx, dy[self.index]

    torch_name = "IndexPutBackward0"


class Copy(Function):
    """y = src broadcast to x's shape, in x's dtype: ``x.copy_(src)`` (inplace.py writes y
    into x);  dx = 0 (x's old values are gone: zeros, as torch's),  dsrc = dy in src's
    dtype"""

    reads = ((), ())

    def forward(self, x, src):
        self.src_dtype = src.dtype
        return xp.broadcast_to(src.astype(x.dtype, copy=False), x.shape)

    def backward(self, dy):
        dx = xp.zeros_like(dy) if self.needs_input_grad[0] else None
        return dx, dy.astype(self.src_dtype, copy=False)

    torch_name = "CopyBackwards"


class CopySlices(Function):
    """An in-place change of a view, recorded on its base (inplace.py): the base's new
    values are its old ones with the view's region replaced by the result r of the op.
    dbase_old = dy with the region set to 0,  dr = dy's region

    r's own node leads back, through the op, to the view's old values: a view of the old
    base. So the region's gradient reaches the old base through the op, and the rest of
    it directly."""

    reads = ((), ())

    def __init__(self, view_ops, base_array):
        self.view_ops, self.layout = view_ops, base_array

    def backward(self, dy):
        dbase = xp.empty_like(self.layout)  # the base's layout, where the view ops find
        dbase[...] = dy  # the region as they found it in the base
        region = replay(self.view_ops, dbase)
        if any(s == 0 and n > 1 for s, n in zip(region.strides, region.shape)):
            raise RuntimeError("unsupported operation: more than one element of the "
                               "written-to tensor refers to a single memory location. Please "
                               "clone() the tensor before performing the operation.")
        if not xp.may_share_memory(region, dbase):
            raise NotImplementedError("an in-place change of this view cannot be traced back "
                                      "to its base; change a clone() of the view instead")
        dr = region.copy()
        region[...] = 0
        return dbase, dr

    torch_name = "CopySlices"


def index_array(i):
    """An index part as ``x[...]`` takes it: arrays, lists and Tensors become backend
    arrays; a 0-d integer one becomes an int, as torch treats it."""
    if isinstance(i, TensorBase):
        i = i.array
    if isinstance(i, (list, numpy.ndarray)) or (hasattr(i, "dtype") and hasattr(i, "ndim")):
        i = xp.asarray(i)
        if i.ndim == 0 and i.dtype.kind in "iu":
            return int(i)
    return i


def is_basic(index):
    """Whether ``index`` (parts as ``index_array`` gives them) selects a view: ints,
    slices, None and ``...`` only."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, slice) or (
        isinstance(p, (int, numpy.integer)) and not isinstance(p, (bool, numpy.bool_)))
        for p in parts)


class Expand(Function):
    """y = x repeated along its dims of length 1 (and new leading dims), without a copy:
    a view whose repeats share memory;  dx = dy summed back (the engine's sum_to_shape)"""

    reads, view = (), True

    def forward(self, x, shape):
        lead = len(shape) - x.ndim  # new leading dims, and dims of length 1, step by 0
        strides = (0,) * lead + tuple(0 if n == 1 and m != 1 else s for n, m, s in
                                      zip(x.shape, shape[lead:], x.strides))
        # as_strided, not broadcast_to: a writable view, as torch's (inplace.py refuses
        # writes where elements share memory; a slice of it without repeats may be written)
        return xp.lib.stride_tricks.as_strided(x, shape, strides)

    def backward(self, dy):
        return dy


class IndexSelect(Function):
    """y = the entries of x at ``index`` along ``axis``;
    dx = zeros with dy added back at those entries (repeated indices accumulate)"""

    reads = ((1,), ())

    def forward(self, x, index, axis):
        self.shape, self.index, self.axis = x.shape, index, axis
        return xp.take(x, index, axis=axis)

    def backward(self, dy):
        dx = xp.zeros(self.shape, dtype=dy.dtype)
        xp.add.at(dx, (slice(None),) * self.axis + (self.index,), dy)
        return dx, None


class Sum(Function):
    """y = sum(x, axis);  dx = dy broadcast back to x's shape"""

    reads = ()  # backward needs no input's values

    def forward(self, x, axis=None, keepdims=False):
        self.in_shape, self.axis, self.keepdims = x.shape, axis, keepdims
        return xp.asarray(x.sum(axis=axis, keepdims=keepdims, dtype=x.dtype))

    def backward(self, dy):
        return xp.broadcast_to(_kept_dims(dy, self.axis, self.keepdims), self.in_shape)

    def name(self):
        return "SumBackward0" if self.axis is None else "SumBackward1"


class Mean(Function):
    """y = mean(x, axis);  dx = dy / n broadcast back (n = number of averaged entries)"""

    reads = ()  # backward needs no input's values

    def forward(self, x, axis=None, keepdims=False):
        self.in_shape, self.axis, self.keepdims = x.shape, axis, keepdims
        if x.size == 0:  # torch: nan, without NumPy's warning
            with numpy.errstate(invalid="ignore", divide="ignore"):
                out = xp.asarray(x.sum(axis=axis, keepdims=keepdims) / 0.0, dtype=x.dtype)
            self.count = 0
            return out
        out = xp.asarray(x.mean(axis=axis, keepdims=keepdims))
        self.count = x.size // max(out.size, 1)
        return out

    def backward(self, dy):
        scale = 1.0 / self.count if self.count else float("nan")
        dy = _kept_dims(dy, self.axis, self.keepdims)
        return xp.broadcast_to(dy * dy.dtype.type(scale), self.in_shape)

    def name(self):
        return "MeanBackward0" if self.axis is None else "MeanBackward1"


def _kept_dims(dy, axis, keepdims):
    """A reduction's gradient with the reduced dims back as dims of length 1."""
    return dy if keepdims or axis is None else xp.expand_dims(dy, axis)


class Var(Function):
    """y = sum((x - mean)^2) / (n - correction) over ``axis``  (n: entries averaged);
    dx = dy * 2 (x - mean) / (n - correction)"""

    reads = ((0,),)  # as torch's, which saves x (the centred values are kept here)

    def forward(self, x, axis=None, keepdims=False, correction=1):
        self.axis, self.keepdims = axis, keepdims
        n = x.size if axis is None else math.prod(
            x.shape[a] for a in (axis if isinstance(axis, tuple) else (axis,)))
        self.centered = x - x.mean(axis=axis, keepdims=True) if x.size else x
        squares = (self.centered * self.centered).sum(axis=axis, keepdims=keepdims)
        with numpy.errstate(invalid="ignore", divide="ignore"):  # no degrees of freedom:
            self.scale = 1.0 / (n - correction) if n - correction > 0 else math.inf  # nan/inf
            return xp.asarray(squares * self.scale, dtype=x.dtype)

    def backward(self, dy):
        dy = _kept_dims(dy, self.axis, self.keepdims)
        with numpy.errstate(invalid="ignore"):
            return dy * (2.0 * self.scale) * self.centered


class Std(Var):
    """y = sqrt(var);  dx = dy / (2 y) * dvar/dx, 0 where y = 0 (as torch)"""

    reads_output = True

    def forward(self, x, axis=None, keepdims=False, correction=1):
        self.y = xp.sqrt(super().forward(x, axis, keepdims, correction))
        return self.y

    def backward(self, dy):
        with numpy.errstate(divide="ignore", invalid="ignore"):
            dvar = xp.where(self.y == 0, xp.zeros((), dtype=dy.dtype), dy / (2.0 * self.y))
        return super().backward(dvar)


class MaskedFill(Function):
    """y = value where mask else x  (mask broadcast to x);  dx = dy where not mask, else 0"""

    reads = ((1,), ())  # dx reads the mask

    def forward(self, x, mask, value):
        self.mask = mask.astype(bool, copy=False)
        return xp.where(self.mask, xp.asarray(value, dtype=x.dtype), x)

    def backward(self, dy):
        return xp.where(self.mask, xp.zeros((), dtype=dy.dtype), dy), None


class Where(Function):
    """y = a where condition else b;  da = dy where condition, db = dy elsewhere"""

    reads = ((), (0,), (0,))  # da and db read the condition

    def forward(self, condition, a, b):
        self.condition = condition.astype(bool, copy=False)
        return xp.where(self.condition, a, b)

    def backward(self, dy):
        zero = xp.zeros((), dtype=dy.dtype)
        return None, xp.where(self.condition, dy, zero), xp.where(self.condition, zero, dy)


class Cat(Function):
    """y = the inputs joined along ``axis``;  each dx = its slice of dy"""

    reads = ()  # backward needs no input's values

    def forward(self, *arrays, axis=0):
        self.axis = axis
        self.bounds = numpy.cumsum([a.shape[axis] for a in arrays])[:-1].tolist()
        return xp.concatenate(arrays, axis=axis)

    def backward(self, dy):
        return tuple(xp.split(dy, self.bounds, axis=self.axis))


class Stack(Function):
    """y = the inputs stacked along a new ``axis``;  each dx = dy taken at its index"""

    reads = ()  # backward needs no input's values

    def forward(self, *arrays, axis=0):
        self.axis = axis
        return xp.stack(arrays, axis=axis)

    def backward(self, dy):
        return tuple(xp.moveaxis(dy, self.axis, 0))


class Gather(Function):
    """y = x taken at ``index`` along ``axis`` (torch.gather, NumPy take_along_axis);
    dx = zeros with dy added back at those positions (repeated indices accumulate)"""

    reads = ((0, 1), ())  # dx reads the index (torch saves x too)

    def forward(self, x, index, axis):
        self.shape, self.index, self.axis = x.shape, index, axis
        return xp.take_along_axis(x, index, axis=axis)

    def backward(self, dy):
        dx = xp.zeros(self.shape, dtype=dy.dtype)
        ndim = len(self.shape)
        grids = list(xp.meshgrid(*(xp.arange(n) for n in self.index.shape), indexing="ij"))
        grids[self.axis % ndim] = self.index
        xp.add.at(dx, tuple(grids), dy)
        return dx, None


class Max(Function):
    """y = the largest (``largest``) or smallest entry of x over ``axis`` (NaN counts as
    the largest, as in torch).
    max(dim):    dx = dy at the index max(dim) returns (the first extreme), 0 elsewhere;
    max(), amax: dx = dy shared evenly among the entries equal to y (torch's tie rule)"""

    def forward(self, x, axis=None, keepdims=False, largest=True, spread=None):
        self.shape, self.axis, self.keepdims = x.shape, axis, keepdims
        self.spread = axis is None if spread is None else spread
        # torch's saved values: max(dim) keeps the indices, max() x and y
        self.reads, self.reads_output = (((0,),), True) if self.spread else ((), False)
        if self.spread:
            y = x.max(axis=axis, keepdims=True) if largest else x.min(axis=axis, keepdims=True)
            if self.needs_grad:
                self.hit = (x == y) | (xp.isnan(x) & xp.isnan(y))
            return y if keepdims else (y.reshape(()) if axis is None else xp.squeeze(y, axis))
        self.indices = extreme_indices(x, axis, True, largest)
        y = xp.take_along_axis(x, self.indices, axis=axis)
        return y if keepdims else xp.squeeze(y, axis=axis)

    def backward(self, dy):
        dy = _kept_dims(dy, self.axis, self.keepdims)
        if self.spread:
            count = self.hit.sum(axis=self.axis, keepdims=True).astype(dy.dtype)
            return xp.where(self.hit, dy / count, xp.zeros((), dtype=dy.dtype))
        dx = xp.zeros(self.shape, dtype=dy.dtype)
        xp.put_along_axis(dx, self.indices, dy.reshape(self.indices.shape), axis=self.axis)
        return dx

    def name(self):
        if self.axis is None:
            return "MaxBackward1"
        return "AmaxBackward0" if self.spread else "MaxBackward0"


def extreme_indices(x, axis, keepdims, largest):
    """argmax (``largest``) or argmin of x along ``axis`` (flat when None): the first
    extreme, NaN counting as the largest (NumPy's argmax and argmin both stop at a NaN,
    as torch's do)."""
    if axis is None:
        index = (xp.argmax if largest else xp.argmin)(x.reshape(-1))
        return index.reshape((1,) * x.ndim) if keepdims else xp.asarray(index)
    return (xp.argmax if largest else xp.argmin)(x, axis=axis, keepdims=keepdims)


def softmax_array(x, axis=-1, out=None):
    """exp(x - max) / sum(exp(x - max)) along ``axis`` of a raw array (NumPy's or the
    backend's): tinygpt's one softmax, which every softmax entry point calls.

    Subtracting the max keeps exp from overflowing. ``out=x`` overwrites x (no second
    buffer). -inf entries get 0; a slice that is all -inf has no distribution: NaN."""
    module = numpy if isinstance(x, numpy.ndarray) else xp  # host arrays on CuPy too
    with numpy.errstate(invalid="ignore"):  # a row of -inf only: NaN, as torch
        y = module.asarray(module.subtract(x, x.max(axis=axis, keepdims=True), out=out))
    module.exp(y, out=y)
    y /= y.sum(axis=axis, keepdims=True)
    return y


class Softmax(Function):
    """y = exp(x - max) / sum(exp(x - max))  over ``axis``;  dx = y * (dy - sum(dy * y))"""

    reads, reads_output = ((),), True  # backward reads y, not x

    def forward(self, x, axis=-1):
        self.axis = axis
        self.y = softmax_array(x, axis)
        return self.y

    def backward(self, dy):
        y = self.y
        return y * (dy - (dy * y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    """y = x - max - log(sum(exp(x - max)))  over ``axis``;  dx = dy - softmax(x) * sum(dy)"""

    reads, reads_output = ((),), True  # backward reads y, not x

    def forward(self, x, axis=-1):
        self.axis = axis
        shifted = x - x.max(axis=axis, keepdims=True)
        y = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        self.y = y
        return y

    def backward(self, dy):
        return dy - xp.exp(self.y) * dy.sum(axis=self.axis, keepdims=True)
