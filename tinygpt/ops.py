"""Every differentiable operation: forward and backward side by side on raw arrays.

Primitives first (arithmetic, matmul, shapes, reductions, exp/log/tanh), then the
fused layers a GPT spends its time in (linear, embedding, layer norm, GELU,
dropout, causal attention, softmax, cross-entropy). Tests show each fused op
equals its chain of primitives and passes a float64 finite-difference check.

This file is array code only. On a GPU (CuPy backend) some fused layers run as CUDA
kernels instead: ``tinygpt/cuda/overrides.py`` registers a kernel class for them in
``Function.kernels``, and ``Function.apply`` picks it, once per call, when it takes the
arrays. The ops below are then the kernels' twins: the code the CPU runs, and the code
the tests compare each kernel with.

Shape letters: B batch, T tokens, C channels (emb_dim), H heads, D head size,
V vocabulary, N = B*T rows.
"""

import math

import numpy

from .autograd import Function, TensorBase
from .backend import (
    DEFAULT_DTYPE,
    dropout_rng,
    get_rng,
    next_philox_draw,
    philox_uniforms,
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


class SiLU(Function):
    """y = x * sigmoid(x)   (SwiGLU's gate);  dx = dy * (s + x s (1 - s)),  s = sigmoid(x)"""

    def forward(self, x):
        self.x, self.s = x, sigmoid_array(x)
        return x * self.s

    def backward(self, dy):
        s = self.s
        return dy * (s * (1.0 + self.x * (1.0 - s)))

    def name(self):
        return "SiluBackward0"


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


class BinaryCrossEntropy(Function):
    """loss_i = -(t log(p) + (1 - t) log(1 - p)), each log clamped at -100 as torch does
    (p: probabilities, t: targets);  dp = dy (p - t) / max(p (1 - p), 1e-12),
    dt = dy (log(1 - p) - log(p))"""

    def forward(self, p, t):
        self.p, self.t = p, t
        with numpy.errstate(divide="ignore"):
            self.log_p = xp.maximum(xp.log(p), -100.0)
            self.log_1mp = xp.maximum(xp.log(1.0 - p), -100.0)
        return -(t * self.log_p + (1.0 - t) * self.log_1mp)

    def backward(self, dy):
        p = self.p
        dp = dy * (p - self.t) / xp.maximum(p * (1.0 - p), 1e-12)
        return dp, dy * (self.log_1mp - self.log_p)


class BinaryCrossEntropyWithLogits(Function):
    """loss_i = max(z, 0) - z t + log(1 + exp(-|z|))   (= BCE of sigmoid(z), without
    overflow);  dz = dy (sigmoid(z) - t),  dt = -dy z"""

    def forward(self, z, t):
        self.z, self.t = z, t
        return xp.maximum(z, 0.0) - z * t + xp.log1p(xp.exp(-xp.abs(z)))

    def backward(self, dy):
        return dy * (sigmoid_array(self.z) - self.t), -dy * self.z


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

    def name(self):
        return "PowBackward1"


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

    def name(self):
        return "PowBackward2"


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

    def name(self):
        return "NotImplemented"


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

    def name(self):
        return "ClampBackward1"


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

    def name(self):
        return "ClampBackward0"


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
        return dy.astype(self.in_dtype)

    def name(self):
        return "ToCopyBackward0"


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

    def name(self):
        return "ViewBackward0"


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

    def name(self):
        return "IndexPutBackward0"


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

    def name(self):
        return "CopyBackwards"


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

    def name(self):
        return "CopySlices"


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


# ----------------------------------------------------------------------------------
# Fused layers.


class Linear(Function):
    """y = x @ W^T + b           x: (…, in)  W: (out, in)  b: (out,)  y: (…, out)
    dx = dy @ W,  dW = dy2^T @ x2,  db = sum over rows of dy   (x2, dy2: rows flattened)

    Flattening to rows makes each gradient one large matrix product. A gradient nobody
    needs is not computed: a frozen layer (weight.requires_grad False, as in finetuning)
    costs no dW, and the first layer after frozen ones no dx."""

    reads = ((1,), (0,), ())  # dx reads W, dW reads x

    def forward(self, x, weight, bias=None):
        self.x, self.weight = x, weight
        y = _rows(x) @ weight.T  # (N, out): one product, W^T not copied
        if bias is not None:
            y += bias
        return y.reshape(*x.shape[:-1], weight.shape[0])

    def backward(self, dy):
        x, weight = self.x, self.weight
        wanted = list(self.needs_input_grad) + [False]
        dy2 = _rows(dy)  # (N, out)
        dx = (dy2 @ weight).reshape(x.shape) if wanted[0] else None
        dweight = dy2.T @ _rows(x) if wanted[1] else None
        dbias = dy2.sum(axis=0) if wanted[2] else None
        return dx, dweight, dbias


class Embedding(Function):
    """y = W[ids]          ids: int (…)  W: (V, C)  y: (…, C)
    dW = scatter-add of dy rows into the rows named by ids (repeated ids accumulate)"""

    reads = ((1,), ())  # dW reads the ids

    def forward(self, weight, ids):
        self.ids, self.weight_shape = ids, weight.shape
        return weight[ids]

    def backward(self, dy):
        dweight = xp.zeros(self.weight_shape, dtype=dy.dtype)
        xp.add.at(dweight, self.ids.ravel(), dy.reshape(-1, self.weight_shape[1]))
        return dweight, None


class LayerNorm(Function):
    """y = xhat * scale + shift,  xhat = (x - mean) * rstd,  rstd = 1/sqrt(var + eps)
    (biased variance over the last axis)                   x: (…, C)  scale, shift: (C,)
    dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),  g = dy * scale
    dscale = sum(dy * xhat),  dshift = sum(dy)   (sums over all rows)"""

    def forward(self, x, scale, shift, eps=1e-5):
        xc = x - _mean_last(x)
        var = _mean_last(xc * xc)
        rstd = 1.0 / xp.sqrt(var + eps)
        xc *= rstd  # xc now holds xhat
        self.xhat, self.rstd, self.scale = xc, rstd, scale
        y = xc * scale
        y += shift
        return y

    def backward(self, dy):
        xhat, C = self.xhat, self.scale.shape[0]
        x_wanted, scale_wanted, shift_wanted = self.needs_input_grad
        dx = None
        if x_wanted:  # not needed after frozen layers
            g = dy * self.scale
            g_xhat = g * xhat
            dx = g - _mean_last(g)
            dx -= xhat * _mean_last(g_xhat)
            dx *= self.rstd
        dscale = (dy * xhat).reshape(-1, C).sum(axis=0) if scale_wanted else None
        dshift = dy.reshape(-1, C).sum(axis=0) if shift_wanted else None
        return dx, dscale, dshift

    def name(self):
        return "NativeLayerNormBackward0"


def _mean_last(x):
    """x.mean(axis=-1, keepdims=True), the same numbers (NumPy's mean is this sum, then
    this division) without the Python layer NumPy's mean adds to every call."""
    total = x.sum(axis=-1, keepdims=True)
    total /= x.shape[-1]
    return total


_GELU_C = math.sqrt(2.0 / math.pi)


class GELU(Function):
    """y = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)   (GPT-2's tanh form)
    dx = dy * (0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)),  t = tanh(u)

    Powers are written as products: ``x**3`` is ~60x slower in NumPy."""

    def forward(self, x):
        x2 = x * x
        u = x2 * 0.044715
        u += 1.0
        u *= x
        u *= _GELU_C
        t = xp.tanh(u, out=u)
        self.x, self.x2, self.t = x, x2, t
        y = t + 1.0
        y *= x
        y *= 0.5
        return y

    def backward(self, dy):
        x, x2, t = self.x, self.x2, self.t
        # d/dx tanh(u) part: 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3*0.044715 x^2)
        inner = x2 * (3.0 * 0.044715 * _GELU_C)
        inner += _GELU_C
        inner *= x
        one_minus_t2 = 1.0 - t * t
        inner *= one_minus_t2
        inner += 1.0 + t
        inner *= 0.5
        inner *= dy
        return inner

    def name(self):
        return "GeluBackward0"


def dropout_mask(shape, p, dtype):
    """A 0 / (1/(1-p)) mask (inverted dropout): the next draw of the dropout generator
    (``backend.dropout_rng()``).

    "numpy": float32 uniforms from the package's generator, whatever ``dtype`` is, so
    float32 and float64 models seeded alike drop the same entries (on CuPy they are
    drawn on the host and copied).
    "philox": Philox uniforms (``backend.philox_uniforms``) computed where the data is; the
    kernels' own masks are these."""
    if dropout_rng() == "philox":
        keep = philox_uniforms(shape, *next_philox_draw(), xp) >= numpy.float32(p)
    else:
        keep = xp.asarray(get_rng().random(shape, dtype=numpy.float32)) >= numpy.float32(p)
    return keep.astype(dtype) * (1.0 / (1.0 - p))


class Dropout(Function):
    """y = x * mask,  mask = 1/(1-p) with probability 1-p else 0;  dx = dy * mask"""

    reads = ((),)  # dx reads the mask, kept by the op

    def forward(self, x, p):
        self.mask = dropout_mask(x.shape, p, x.dtype)
        return x * self.mask

    def backward(self, dy):
        return dy * self.mask

    def name(self):
        return "MulBackward0"


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


_causal_masks = {}


def causal_mask(num_queries, num_keys, dtype):
    """(num_queries, num_keys) additive mask: 0 where a query may look, -inf on the keys
    after it. The queries are the last ``num_queries`` of the ``num_keys`` positions: all
    of them in training, the new ones when decoding with a KV cache; so query i sees keys
    0 .. num_keys - num_queries + i. Cached per shape (the one causal mask of tinygpt)."""
    key = (num_queries, num_keys, xp.dtype(dtype).str)
    mask = _causal_masks.get(key)
    if mask is None:
        mask = xp.triu(xp.full((num_queries, num_keys), -xp.inf, dtype=dtype),
                       k=num_keys - num_queries + 1)
        if len(_causal_masks) > 64:  # prompts of many lengths: keep the cache small
            _causal_masks.clear()
        _causal_masks[key] = mask
    return mask


class CausalAttention(Function):
    """Causal attention of every head, the book's steps on head-split arrays
    (queries: (b, heads, n_q, head_dim); keys, values: (b, heads, n_k, head_dim)):

        attn_scores  = queries @ keys^T                             (b, heads, n_q, n_k)
        attn_weights = softmax(attn_scores / sqrt(head_dim) + mask) mask: -inf on later keys
        dropped      = attn_weights * keep                          dropout: keep = 0 or 1/(1-p)
        context_vec  = dropped @ values                             (b, heads, n_q, head_dim)

    Training has n_q == n_k; decoding with a KV cache (``kv_cache.CacheLayer.attend``)
    has the new positions' queries against every cached key (no graph, no dropout).

    backward:  d_dropped = d_context @ values^T,   d_values = dropped^T @ d_context,
               d_weights = d_dropped * keep,
               d_scores = attn_weights * (d_weights - sum(d_weights * attn_weights))
                          / sqrt(head_dim),
               d_queries = d_scores @ keys,   d_keys = d_scores^T @ queries
    """

    def forward(self, queries, keys, values, dropout_p=0.0):
        head_dim = queries.shape[-1]
        scale = 1.0 / math.sqrt(head_dim)  # a Python float: float32 stays float32
        attn_scores = queries @ keys.transpose(0, 1, 3, 2)  # (b, heads, n_q, n_k)
        attn_scores *= scale
        if attn_scores.shape[-2] > 1:  # one query (decoding) is the last: it sees every key
            attn_scores += causal_mask(*attn_scores.shape[-2:], attn_scores.dtype)
        attn_weights = softmax_array(attn_scores, out=attn_scores)  # no second buffer
        if dropout_p > 0.0:
            keep = dropout_mask(attn_weights.shape, dropout_p, attn_weights.dtype)
            dropped = attn_weights * keep
        else:
            keep, dropped = None, attn_weights
        context_vec = dropped @ values  # (b, heads, n_q, head_dim)
        if self.needs_grad:
            self.queries, self.keys, self.values, self.scale = queries, keys, values, scale
            self.attn_weights, self.keep, self.dropped = attn_weights, keep, dropped
        return context_vec

    def backward(self, d_context):
        d_dropped = d_context @ self.values.transpose(0, 1, 3, 2)  # (b, heads, n_q, n_k)
        d_values = self.dropped.transpose(0, 1, 3, 2) @ d_context
        if self.keep is not None:
            d_dropped *= self.keep
        weights = self.attn_weights
        # softmax backward, in place: weights * (d - sum(d * weights)), then the scale
        d_scores = d_dropped
        d_scores -= (d_scores * weights).sum(axis=-1, keepdims=True)
        d_scores *= weights
        d_scores *= self.scale
        d_queries = d_scores @ self.keys
        d_keys = d_scores.transpose(0, 1, 3, 2) @ self.queries
        return d_queries, d_keys, d_values


class CrossEntropy(Function):
    """loss = mean over counted rows of (logsumexp(z_i) - z_i[t_i])   z: (N, V)  t: (N,)
    Rows whose target equals ``ignore_index`` are not counted (torch's -100).
    dz = (softmax(z) - onehot(t)) / n_counted  (ignored rows get 0)

    Never builds a one-hot; keeps one (N, V) buffer, turned into dz in place."""

    def forward(self, logits, targets, ignore_index=-100):
        N = logits.shape[0]
        valid = targets != ignore_index
        n_counted = int(valid.sum())
        safe_targets = xp.where(valid, targets, 0)
        rows = xp.arange(N)
        row_max = logits.max(axis=1, keepdims=True)  # (N, 1)
        exp = logits - row_max  # the one extra (N, V) buffer
        xp.exp(exp, out=exp)
        sum_exp = exp.sum(axis=1, keepdims=True)  # (N, 1)
        logsumexp = xp.log(sum_exp)[:, 0] + row_max[:, 0]
        per_row = logsumexp - logits[rows, safe_targets]
        if n_counted == 0:
            loss = xp.asarray(xp.nan, dtype=logits.dtype)  # torch gives nan too
        else:
            loss = (per_row * valid).sum() / float(n_counted)
        if self.needs_grad:
            self.exp, self.sum_exp = exp, sum_exp
            self.rows, self.targets, self.valid, self.n = rows, safe_targets, valid, n_counted
        return xp.asarray(loss, dtype=logits.dtype)

    def backward(self, dloss):
        dz = self.exp  # the forward's buffer becomes dz, unless backward may run again
        if self.retain_graph:
            dz = dz.copy()
        else:
            self.exp = None
        dz /= self.sum_exp
        dz[self.rows, self.targets] -= 1.0
        if self.n == 0:
            dz[...] = 0.0
        else:
            dz *= dloss / self.n
            if not self.valid.all():
                dz[~self.valid] = 0.0
        return dz, None

    def name(self):
        return "NllLossBackward0"


# ----------------------------------------------------------------------------------
# Functional front doors (take Tensors or arrays).


def _rows(a):
    """(…, C) -> (N, C); unlike reshape(-1, C) it also holds when C or N is 0."""
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def linear(x, weight, bias=None):
    x_shape, w_shape = x.array.shape, weight.array.shape  # the arrays': it runs per layer
    if not x_shape or len(w_shape) != 2 or x_shape[-1] != w_shape[1]:
        raise RuntimeError(f"linear: input of shape {tuple(x.shape)} cannot be multiplied by "
                           f"a weight of shape {tuple(weight.shape)} (out, in): the input's "
                           "last dim must be in")
    return Linear.apply(x, weight) if bias is None else Linear.apply(x, weight, bias)


def softmax(x, axis=-1, dim=None):
    """Softmax over ``axis`` (``dim`` accepted for torch-style calls)."""
    if dim is not None:
        axis = dim
    return Softmax.apply(x, axis=axis)


def dropout(x, p, training=True):
    if not training or p == 0.0:
        return x
    return Dropout.apply(x, p=p)


def op_names():
    """The names of this module's ops: its public Function classes (a private base such
    as _DerivativeFromOutput is no op of its own). The gradient checks walk them all."""
    return sorted(name for name, obj in globals().items()
                  if isinstance(obj, type) and issubclass(obj, Function) and obj is not Function
                  and obj.__module__ == __name__ and not name.startswith("_")
                  and obj.differentiable)


__all__ = [
    "DEFAULT_DTYPE",
    "dropout",
    "linear",
    "softmax",
]
