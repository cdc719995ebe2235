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

from .autograd import Function, Tensor
from .backend import DEFAULT_DTYPE, dropout_rng, get_rng, next_philox_draw, xp
from .checks import integer, rectangular
from .cuda.philox import uniforms as philox_uniforms

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
        if not self.inputs[1].requires_grad:  # a constant divisor (e.g. sqrt(head_dim))
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
        return xp.log(x)

    def backward(self, dy):
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
        return xp.sqrt(x)

    def backward(self, dy):
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
    """y = x^p for a constant p;  dx = dy * p * x^(p-1)

    Small integer powers are products: ``x**3`` is ~60x slower in NumPy."""

    def forward(self, x, exponent):
        self.x, self.p = x, exponent
        return _power(x, exponent)

    def backward(self, dy):
        p = self.p
        return dy * (p * _power(self.x, p - 1)) if p != 1 else dy


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
        return x.astype(dtype)

    def backward(self, dy):
        return dy.astype(self.inputs[0].array.dtype)


# ----------------------------------------------------------------------------------
# Matrix product, shapes, indexing, reductions.


class MatMul(Function):
    """y = a @ b (batched over leading dims);  da = dy @ b^T, db = a^T @ dy"""

    reads = ((1,), (0,))  # da reads b, db reads a

    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, dy):
        a, b = self.a, self.b
        if b.ndim == 1:  # (…, K) @ (K,) -> (…,)
            return dy[..., None] * b, (a * dy[..., None]).reshape(-1, b.shape[0]).sum(0)
        if a.ndim == 1:  # (K,) @ (…, K, M) -> (…, M)
            da = (b @ dy[..., None])[..., 0]
            return da, a[:, None] * dy[..., None, :]
        return dy @ xp.swapaxes(b, -1, -2), xp.swapaxes(a, -1, -2) @ dy


class Reshape(Function):
    """y = x viewed as ``shape``;  dx = dy viewed as x's shape"""

    reads, view = (), True

    def forward(self, x, shape):
        self.in_shape = x.shape
        return x.reshape(shape)

    def backward(self, dy):
        return dy.reshape(self.in_shape)


class Transpose(Function):
    """y = x with axes permuted;  dx = dy with the inverse permutation"""

    reads, view = (), True

    def forward(self, x, axes):
        self.axes = axes
        return x.transpose(axes)

    def backward(self, dy):
        inverse = sorted(range(len(self.axes)), key=self.axes.__getitem__)
        return dy.transpose(inverse)


class GetItem(Function):
    """y = x[index];  dx = zeros with dy scattered (added) back at index"""

    reads, view = (), True

    def forward(self, x, index):
        parts = index if isinstance(index, tuple) else (index,)
        # Index arrays (host or device, bare or in a Tensor) become arrays of x's backend.
        parts = tuple(_index_array(i) for i in parts)
        self.advanced = any(hasattr(i, "dtype") and i.ndim > 0 for i in parts)
        index = parts if isinstance(index, tuple) else parts[0]
        self.in_shape, self.in_dtype, self.index = x.shape, x.dtype, index
        return x[index]

    def backward(self, dy):
        dx = xp.zeros(self.in_shape, dtype=self.in_dtype)
        if self.advanced:
            xp.add.at(dx, self.index, dy)  # advanced indexing: repeated indices accumulate
        else:
            dx[self.index] = dy  # basic indexing never repeats an element
        return dx


class SetItem(Function):
    """y = x with y[index] = value (value broadcast to x[index]): ``x[index] = value`` on
    a tensor in a graph, recorded by ``Tensor.__setitem__`` as an in-place op;
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


def _index_array(i):
    """An index part as ``x[...]`` takes it: arrays, lists and Tensors become backend arrays."""
    if isinstance(i, Tensor):
        i = i.array
    if isinstance(i, (list, numpy.ndarray)) or (hasattr(i, "dtype") and getattr(i, "ndim", 0)):
        return xp.asarray(i)
    return i


class Sum(Function):
    """y = sum(x, axis);  dx = dy broadcast back to x's shape"""

    reads = ()  # backward needs no input's values

    def forward(self, x, axis=None, keepdims=False):
        self.in_shape, self.axis, self.keepdims = x.shape, axis, keepdims
        return xp.asarray(x.sum(axis=axis, keepdims=keepdims))

    def backward(self, dy):
        if not self.keepdims and self.axis is not None:
            dy = xp.expand_dims(dy, self.axis)
        return xp.broadcast_to(dy, self.in_shape)


class Mean(Function):
    """y = mean(x, axis);  dx = dy / n broadcast back (n = number of averaged entries)"""

    reads = ()  # backward needs no input's values

    def forward(self, x, axis=None, keepdims=False):
        self.in_shape, self.axis, self.keepdims = x.shape, axis, keepdims
        out = xp.asarray(x.mean(axis=axis, keepdims=keepdims))
        self.count = x.size // max(out.size, 1)
        return out

    def backward(self, dy):
        if not self.keepdims and self.axis is not None:
            dy = xp.expand_dims(dy, self.axis)
        return xp.broadcast_to(dy * dy.dtype.type(1.0 / self.count), self.in_shape)


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

    reads = ((1,), ())  # dx reads the index

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
    """y = max of x over ``axis`` (a single axis or all);  dx = dy at the position of the
    first maximum, 0 elsewhere (as torch's max(dim) routes it)"""

    def forward(self, x, axis=None, keepdims=False, largest=True):
        flat = x.reshape(-1) if axis is None else x
        arg = xp.argmax(flat, axis=0 if axis is None else axis) if largest else (
            xp.argmin(flat, axis=0 if axis is None else axis))
        self.shape, self.axis, self.keepdims = x.shape, axis, keepdims
        self.indices = xp.expand_dims(arg, 0 if axis is None else axis)
        y = xp.take_along_axis(flat, self.indices, axis=0 if axis is None else axis)
        if axis is None:
            return y.reshape((1,) * x.ndim if keepdims else ())
        return y if keepdims else xp.squeeze(y, axis=axis)

    def backward(self, dy):
        axis = 0 if self.axis is None else self.axis
        flat_shape = (int(numpy.prod(self.shape)),) if self.axis is None else self.shape
        dy = dy.reshape(self.indices.shape)
        dx = xp.zeros(flat_shape, dtype=dy.dtype)
        xp.put_along_axis(dx, self.indices, dy, axis=axis)
        return dx.reshape(self.shape)


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
        wanted = [t.requires_grad for t in self.inputs] + [False]
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
        x_wanted, scale_wanted, shift_wanted = (t.requires_grad for t in self.inputs)
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


def dropout_mask(shape, p, dtype):
    """A 0 / (1/(1-p)) mask (inverted dropout): the next draw of the dropout generator
    (``backend.dropout_rng()``).

    "numpy": float32 uniforms from the package's generator, whatever ``dtype`` is, so
    float32 and float64 models seeded alike drop the same entries (on CuPy they are
    drawn on the host and copied).
    "philox": Philox uniforms (``cuda/philox.py``) computed where the data is; the
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


def softmax_array(x, axis=-1, out=None):
    """exp(x - max) / sum(exp(x - max)) along ``axis`` of a raw array (NumPy's or the
    backend's): tinygpt's one softmax, which every softmax entry point calls.

    Subtracting the max keeps exp from overflowing. ``out=x`` overwrites x (no second
    buffer). -inf entries get 0; a slice that is all -inf has no distribution: NaN."""
    module = numpy if isinstance(x, numpy.ndarray) else xp  # host arrays on CuPy too
    y = module.subtract(x, x.max(axis=axis, keepdims=True), out=out)
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


class TargetOutOfRangeError(IndexError, ValueError):
    """A target id outside [0, V): torch's IndexError, and a ValueError (bad input)."""


def cross_entropy(logits, targets, ignore_index=-100):
    """Mean cross-entropy of logits (N, V) or (B, T, V) against int targets (N,) or (B, T).

    The book's ``F.cross_entropy(logits.flatten(0, 1), targets.flatten())`` is
    ``cross_entropy(logits, targets)`` here (both shapes are accepted); targets must
    have exactly logits' shape without the last axis ((3, 2) targets for (2, 3, V)
    logits are refused, not flattened into the wrong pairs)."""
    if not isinstance(logits, Tensor):
        logits = Tensor(logits)
    targets = targets.array if isinstance(targets, Tensor) else targets
    if not isinstance(targets, xp.ndarray):
        targets = rectangular(targets, "targets")  # checked on the host, then copied
    integer("ignore_index", ignore_index)
    if logits.ndim not in (2, 3) or 0 in logits.shape:
        raise ValueError(f"logits must be (N, V) or (B, T, V) with no empty axis, got "
                         f"shape {tuple(logits.shape)}")
    if logits.dtype.kind != "f":
        raise ValueError(f"logits must be floating point, got dtype {logits.dtype}")
    if tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"targets of shape {tuple(targets.shape)} do not fit logits of shape "
            f"{tuple(logits.shape)}: they need one id per logits row, shape "
            f"{tuple(logits.shape[:-1])} (logits' shape without the vocabulary axis), as "
            "in the book's cross_entropy(logits.flatten(0, 1), targets.flatten())"
        )
    if logits.ndim == 3:
        logits = logits.reshape(-1, logits.shape[-1])
    targets = targets.reshape(-1)
    if targets.dtype.kind not in "iu":
        raise ValueError(f"targets must be integer token ids, got dtype {targets.dtype}")
    V = logits.shape[1]
    bad = (targets != ignore_index) & ((targets < 0) | (targets >= V))
    if bool(bad.any()):  # device targets: one sync per batch, not per op
        raise TargetOutOfRangeError(
            f"target ids must lie in [0, {V}) or equal ignore_index={ignore_index}; "
            f"found {int(targets[bad][0])}"
        )
    return CrossEntropy.apply(logits, xp.asarray(targets), ignore_index=ignore_index)


def perplexity(loss):
    """exp(loss) as a Python float (loss: a scalar Tensor, array or number).

    A loss above about 709.78 (a diverged model) has a perplexity beyond the largest
    float: that gives ``inf``, as torch's ``exp`` does, not an OverflowError. NaN stays NaN."""
    value = loss.item() if hasattr(loss, "item") else float(loss)
    try:
        return math.exp(value)
    except OverflowError:
        return math.inf


def dropout(x, p, training=True):
    if not training or p == 0.0:
        return x
    return Dropout.apply(x, p=p)


def op_names():
    """The names of this module's ops: its public Function classes (a private base such
    as _DerivativeFromOutput is no op of its own). The gradient checks walk them all."""
    return sorted(name for name, obj in globals().items()
                  if isinstance(obj, type) and issubclass(obj, Function) and obj is not Function
                  and obj.__module__ == __name__ and not name.startswith("_"))


__all__ = [
    "DEFAULT_DTYPE",
    "cross_entropy",
    "dropout",
    "linear",
    "perplexity",
    "softmax",
]
