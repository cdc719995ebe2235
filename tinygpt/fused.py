"""The fused ops: the layers a GPT spends its time in, each one op with its backward
written by hand, where the book's steps would be a chain of primitives (ops.py).

    FusedLinear          x @ W^T + b, rows flattened so each gradient is one matrix product
    FusedEmbedding       W[ids], the backward a scatter-add
    FusedLayerNorm       (x - mean) / sqrt(var + eps) * scale + shift
    FusedGELU            GPT-2's tanh GELU
    FusedDropout         x * mask, the mask drawn once
    FusedCausalAttention softmax(q k^T / sqrt(d) + causal mask), dropout, @ v
    FusedCrossEntropy    mean(logsumexp(z) - z[target]), no one-hot
    FusedSiLU, FusedBinaryCrossEntropy, FusedBinaryCrossEntropyWithLogits
    adamw_update         AdamW's step on raw arrays, in place, in cache-sized chunks

Each is the fast path beside the book's steps (``model.py``'s layers, ``loss.py``,
``optim``), which ``tinygpt.use_fused(False)`` runs instead; tests/test_fused_vs_primitives.py
shows each equals its chain of primitives and tests/test_gradcheck.py checks its backward
against finite differences. The names say "Fused" so none is mistaken for the book's or
torch's module of the same layer.

On a GPU (CuPy backend) some of them run as CUDA kernels instead: ``tinygpt/cuda/overrides.py``
registers a kernel class in ``Function.kernels``, and ``Function.apply`` picks it, once
per call, when it takes the arrays. The ops below are the kernels' twins: the code the
CPU runs, and the code the tests compare each kernel with.

Shape letters: B batch, T tokens, C channels (emb_dim), H heads, D head size,
V vocabulary, N = B*T rows.
"""

import math

import numpy

from .autograd import Function
from .backend import ON_GPU, dropout_rng, get_rng, next_philox_draw, philox_uniforms, xp
from .ops import sigmoid_array, softmax_array


class FusedSiLU(Function):
    """y = x * sigmoid(x)   (SwiGLU's gate);  dx = dy * (s + x s (1 - s)),  s = sigmoid(x)"""

    def forward(self, x):
        self.x, self.s = x, sigmoid_array(x)
        return x * self.s

    def backward(self, dy):
        s = self.s
        return dy * (s * (1.0 + self.x * (1.0 - s)))

    torch_name = "SiluBackward0"


class FusedBinaryCrossEntropy(Function):
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


class FusedBinaryCrossEntropyWithLogits(Function):
    """loss_i = max(z, 0) - z t + log(1 + exp(-|z|))   (= BCE of sigmoid(z), without
    overflow);  dz = dy (sigmoid(z) - t),  dt = -dy z"""

    def forward(self, z, t):
        self.z, self.t = z, t
        return xp.maximum(z, 0.0) - z * t + xp.log1p(xp.exp(-xp.abs(z)))

    def backward(self, dy):
        return dy * (sigmoid_array(self.z) - self.t), -dy * self.z


class FusedLinear(Function):
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


class FusedEmbedding(Function):
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


class FusedLayerNorm(Function):
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

    torch_name = "NativeLayerNormBackward0"


def _mean_last(x):
    """x.mean(axis=-1, keepdims=True), the same numbers (NumPy's mean is this sum, then
    this division) without the Python layer NumPy's mean adds to every call."""
    total = x.sum(axis=-1, keepdims=True)
    total /= x.shape[-1]
    return total


_GELU_C = math.sqrt(2.0 / math.pi)


class FusedGELU(Function):
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

    torch_name = "GeluBackward0"


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


class FusedDropout(Function):
    """y = x * mask,  mask = 1/(1-p) with probability 1-p else 0;  dx = dy * mask"""

    reads = ((),)  # dx reads the mask, kept by the op

    def forward(self, x, p):
        self.mask = dropout_mask(x.shape, p, x.dtype)
        return x * self.mask

    def backward(self, dy):
        return dy * self.mask

    torch_name = "MulBackward0"


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


class FusedCausalAttention(Function):
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


class FusedCrossEntropy(Function):
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

    torch_name = "NllLossBackward0"


def _rows(a):
    """(…, C) -> (N, C); unlike reshape(-1, C) it also holds when C or N is 0."""
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


# ----------------------------------------------------------------------------------
# AdamW's update, fused: the step's passes on cache-sized slices, in place.

CHUNK = 1 << 15  # elements a slice: its handful of passes stay in the CPU's cache


def adamw_update(p, g, m, v, vmax, decay, beta1, beta2, eps, step_size, bias2_sqrt,
                 scratch=None):
    """AdamW's step on raw arrays, in place (``optim.Adam.step`` writes the steps out):

        p <- p * decay,   m <- m + (1 - beta1) (g - m),   v <- beta2 v + (1 - beta2) g^2,
        (amsgrad: v <- max(vmax, v), kept in vmax),
        p <- p - step_size * m / (sqrt(v) / bias2_sqrt + eps)

    The CPU walks the arrays in slices of ``CHUNK`` elements, so the passes run on data
    in the cache instead of streaming 163M floats from memory a dozen times; on a GPU,
    where each slice would be a dozen kernel launches, one slice is the whole array.
    ``scratch``: a buffer of at least one slice to reuse; the one used is returned."""
    flat_p, flat_g, flat_m, flat_v = (a.reshape(-1) for a in (p, g, m, v))
    flat_vmax = None if vmax is None else vmax.reshape(-1)
    chunk = flat_p.size if ON_GPU else CHUNK
    if scratch is None or scratch.dtype != flat_p.dtype or scratch.size < chunk:
        scratch = xp.empty(chunk, dtype=flat_p.dtype)
    for start in range(0, flat_p.size, chunk):
        end = min(start + chunk, flat_p.size)
        pp, gg = flat_p[start:end], flat_g[start:end]
        mm, vv = flat_m[start:end], flat_v[start:end]
        tmp = scratch[: end - start]
        if decay != 1.0:
            pp *= decay
        xp.subtract(gg, mm, out=tmp)  # m <- m + (1 - beta1) (g - m)   (torch's lerp)
        tmp *= 1.0 - beta1
        mm += tmp
        vv *= beta2  # v <- beta2 v + (1 - beta2) g^2
        xp.multiply(gg, gg, out=tmp)
        tmp *= 1.0 - beta2
        vv += tmp
        if flat_vmax is not None:  # amsgrad: divide by the largest v so far
            vv = xp.maximum(flat_vmax[start:end], vv, out=flat_vmax[start:end])
        xp.sqrt(vv, out=tmp)  # p <- p - step_size * m / (sqrt(v) / sqrt(bias2) + eps)
        tmp /= bias2_sqrt
        tmp += eps
        xp.divide(mm, tmp, out=tmp)
        tmp *= step_size
        pp -= tmp
    return scratch
