"""The CUDA kernels of the CuPy backend, one Python function per kernel.

The kernels' source is ``kernels.cu`` beside this file, compiled once per process by
CuPy (NVRTC; CuPy caches the binary on disk). Each function here launches one kernel
and does what a few lines of array code do elsewhere; those lines are its twin:

    dropout                      fused.FusedDropout             x * dropout_mask(...)
    gelu_forward / _backward     fused.FusedGELU                the tanh formula
    layer_norm_forward / _bwd    fused.FusedLayerNorm           mean, var, xhat ...
    attention_softmax_fwd/_bwd   fused.FusedCausalAttention     scale, mask, softmax, dropout
    cross_entropy_forward/_bwd   fused.FusedCrossEntropy        logsumexp, softmax - onehot
    embedding_backward           fused.FusedEmbedding           xp.add.at
    adamw_update                 optim.AdamW             the chunked update
    decode_*                     kv_cache                one position of CachedDecoder

``overrides.py`` runs the first six in place of the ops, ``optim.AdamW`` and
``decode.py`` call the others. ``available(*arrays)`` says whether the kernels run these
arrays (CuPy backend, kernels on, float32). tests/test_cuda_kernels.py runs every op
both ways on a GPU and compares.

Shapes: B batch, T tokens, C channels, H heads, D head size, V vocabulary, N rows.
"""
import functools
import math
from importlib import resources

import numpy

from ..backend import kernels_enabled, xp

THREADS = 256
_f32, _i32, _i64, _u32 = numpy.float32, numpy.int32, numpy.int64, numpy.uint32


def available(*arrays):
    """True when the kernels run these arrays: CuPy backend, kernels on, all float32."""
    return kernels_enabled() and all(a.dtype == _f32 for a in arrays)


@functools.cache
def _module():
    source = resources.files("tinygpt.cuda").joinpath("kernels.cu").read_text(encoding="utf-8")
    return xp.RawModule(code=source, options=("--std=c++17",))


@functools.cache
def _function(name):
    return _module().get_function(name)


def _launch(name, grid, args, shared_mem=0):
    _function(name)((int(grid),), (THREADS,), args, shared_mem=shared_mem)


def _grid_stride(n):
    """Blocks for a grid-stride kernel over n items (enough to fill the GPU, no more)."""
    return max(1, min((n + THREADS - 1) // THREADS, 4096))


def _contiguous(*arrays):
    return tuple(xp.ascontiguousarray(a) for a in arrays)


def _draw_args(draw):
    """(seed, draw number) -> the four 32-bit kernel arguments."""
    seed, number = draw
    return (_u32(seed & 0xFFFFFFFF), _u32(seed >> 32),
            _u32(number & 0xFFFFFFFF), _u32((number >> 32) & 0xFFFFFFFF))


def _keep_scale(p):
    return _f32(1.0 / (1.0 - p))


# ----------------------------------------------------------------------------------
# Training ops.


def dropout(x, p, draw):
    """x * mask of Philox draw ``draw`` (seed, number); the backward is dropout(dy, p, draw)."""
    (x,) = _contiguous(x)
    y = xp.empty_like(x)
    _launch("dropout_apply", _grid_stride((x.size + 3) // 4),
            (x, y, _i64(x.size), *_draw_args(draw), _f32(p), _keep_scale(p)))
    return y


def gelu_forward(x):
    (x,) = _contiguous(x)
    y = xp.empty_like(x)
    _launch("gelu_forward", _grid_stride(x.size), (x, y, _i64(x.size)))
    return y


def gelu_backward(x, dy):
    x, dy = _contiguous(x, dy)
    dx = xp.empty_like(x)
    _launch("gelu_backward", _grid_stride(x.size), (x, dy, dx, _i64(x.size)))
    return dx


def layer_norm_forward(x, scale, shift, eps, out=None, mean=None, rstd=None):
    """x (..., C) -> (y, mean, rstd), mean and rstd (rows,) for the backward.
    ``out``, ``mean``, ``rstd``: buffers to write into (the decode step's)."""
    x, scale, shift = _contiguous(x, scale, shift)
    C = x.shape[-1]
    rows = x.size // C
    y = xp.empty_like(x) if out is None else out
    mean = xp.empty(rows, dtype=_f32) if mean is None else mean
    rstd = xp.empty(rows, dtype=_f32) if rstd is None else rstd
    warps = THREADS // 32
    _launch("layernorm_forward", (rows + warps - 1) // warps,
            (x, scale, shift, y, mean, rstd, _i32(rows), _i32(C), _f32(eps)))
    return y, mean, rstd


def layer_norm_backward(dy, x, scale, mean, rstd):
    """-> (dx, dscale, dshift); the column sums are deterministic CuPy reductions."""
    dy, x = _contiguous(dy, x)
    C = x.shape[-1]
    rows = x.size // C
    dx, dy_xhat = xp.empty_like(x), xp.empty_like(x)
    warps = THREADS // 32
    _launch("layernorm_backward", (rows + warps - 1) // warps,
            (dy, x, scale, mean, rstd, dx, dy_xhat, _i32(rows), _i32(C)))
    return dx, dy_xhat.reshape(rows, C).sum(axis=0), dy.reshape(rows, C).sum(axis=0)


def attention_softmax_forward(scores, scale, dropout_p=0.0, draw=None):
    """scores (B, H, T, T) of q k^T, overwritten by the causal softmax of scores * scale.
    Returns (probs, probs_dropped); probs_dropped is probs when there is no dropout."""
    (scores,) = _contiguous(scores)
    T = scores.shape[-1]
    use_dropout = dropout_p > 0.0
    dropped = xp.empty_like(scores) if use_dropout else scores
    _launch("attention_softmax_forward", scores.size // T,
            (scores, dropped, _i32(T), _f32(scale), _i32(use_dropout),
             *_draw_args(draw or (0, 0)), _f32(dropout_p),
             _keep_scale(dropout_p if use_dropout else 0.0)))
    return scores, dropped


def attention_softmax_backward(dprobs_dropped, probs, scale, dropout_p=0.0, draw=None):
    """dL/dS from dL/d(probs_dropped), in place on ``dprobs_dropped`` (B, H, T, T)."""
    dP, probs = _contiguous(dprobs_dropped, probs)
    T = probs.shape[-1]
    use_dropout = dropout_p > 0.0
    _launch("attention_softmax_backward", probs.size // T,
            (dP, probs, _i32(T), _f32(scale), _i32(use_dropout), *_draw_args(draw or (0, 0)),
             _f32(dropout_p), _keep_scale(dropout_p if use_dropout else 0.0)))
    return dP


def cross_entropy_forward(logits, targets, ignore_index):
    """logits (N, V), targets int (N,) -> (loss (0-d), lse (N,), n_counted (0-d float32)).
    No host synchronisation: the count of counted rows stays on the device (0/0 = nan, as
    torch gives when every row is ignored)."""
    logits, targets = _contiguous(logits, targets.astype(_i64, copy=False))
    N, V = logits.shape
    loss_rows, lse = xp.empty(N, dtype=_f32), xp.empty(N, dtype=_f32)
    if N:
        _launch("cross_entropy_forward", N,
                (logits, targets, loss_rows, lse, _i32(V), _i64(ignore_index)))
    n_counted = (targets != ignore_index).sum().astype(_f32)
    return loss_rows.sum() / n_counted, lse, n_counted


def cross_entropy_backward(logits, targets, lse, coef, ignore_index):
    """dlogits (N, V) = (softmax - onehot) * coef (a device scalar: dloss / n_counted)."""
    logits, targets, coef = _contiguous(logits, targets.astype(_i64, copy=False),
                                        xp.asarray(coef, dtype=_f32).reshape(1))
    N, V = logits.shape
    dz = xp.empty_like(logits)
    if N:
        _launch("cross_entropy_backward", N,
                (logits, targets, lse, coef, dz, _i32(V), _i64(ignore_index)))
    return dz


def embedding_backward(ids, dy, num_embeddings):
    """dW (num_embeddings, C): rows of dy (…, C) summed by id, deterministically."""
    C = dy.shape[-1]
    ids = ids.reshape(-1).astype(_i64, copy=False)
    dy = xp.ascontiguousarray(dy).reshape(-1, C)
    dweight = xp.zeros((num_embeddings, C), dtype=dy.dtype)
    N = ids.size
    if N:
        order = xp.argsort(ids).astype(_i64, copy=False)  # CuPy's argsort is stable
        sorted_ids = xp.ascontiguousarray(ids[order])
        _launch("embedding_backward", N, (sorted_ids, order, dy, dweight, _i64(N), _i32(C)))
    return dweight


def adamw_update(p, g, m, v, decay, beta1, beta2, eps, step_size, bias2_sqrt):
    """One AdamW step of one parameter, in place on p, m and v (all the same shape).
    The constants are rounded to float32 as NumPy rounds Python floats against float32
    arrays, so the kernel's result is the twin's bit for bit."""
    n = p.size
    _launch("adamw_update", _grid_stride(n),
            (p, xp.ascontiguousarray(g), m, v, _i64(n), _f32(decay), _f32(1.0 - beta1),
             _f32(beta2), _f32(1.0 - beta2), _f32(bias2_sqrt), _f32(eps), _f32(step_size)))


# ----------------------------------------------------------------------------------
# The decode step (decode.KernelDecodeStep): no allocation, no library call.


def decode_embed(step, wte, wpe, x):
    """x (B, C) = wte[ids] + wpe[position]; step = (position, id_0, ..., id_{B-1}) int64."""
    B, C = x.shape
    _launch("decode_embed", (B * C + THREADS - 1) // THREADS,
            (step, wte, wpe, x, _i32(B), _i32(C)))


def decode_linear(x, weight, bias, out, gelu=False, residual=None):
    """out (B, N) = act(x (B, K) @ weight (N, K)^T + bias) [+ residual (B, N)]."""
    B, K = x.shape
    N = weight.shape[0]
    warps = THREADS // 32
    _launch("decode_linear", (N + warps - 1) // warps,
            (x, weight, x if bias is None else bias, out if residual is None else residual, out,
             _i32(B), _i32(K), _i32(N), _i32(bias is not None), _i32(gelu),
             _i32(residual is not None)))


def decode_attention_fits(max_len, head_dim):
    """Whether decode_attention handles this cache: its scores live in shared memory."""
    return head_dim <= THREADS and (max_len + head_dim + THREADS) * 4 <= 48 * 1024


def decode_attention(step, q, k, v, keys, values, out):
    """Store k, v (B, C) at the step's position of keys/values (B, H, L, D), then
    out (B, C) = attention of q over positions 0..position."""
    B, H, L, D = keys.shape
    _launch("decode_attention", B * H,
            (step, q, k, v, keys, values, out, _i32(H), _i32(L), _i32(D),
             _f32(1.0 / math.sqrt(D))),
            shared_mem=(L + D + THREADS) * 4)
