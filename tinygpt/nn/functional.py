"""torch.nn.functional's names on tinygpt: ``import tinygpt.nn.functional as F``.

Each function takes Tensors (arrays and lists are wrapped) and runs on the fused ops
of ``ops.py``, so gradients flow as through the layers. Shapes are torch's: the class
dim of ``cross_entropy``'s input is dim 1, so the book's
``F.cross_entropy(logits.flatten(0, 1), targets.flatten())`` runs as printed.
"""

import numpy

from .. import fused, ops
from ..backend import xp
from ..checks import embedding_indices
from ..loss import cross_entropy as _cross_entropy
from ..tensor import Tensor
from ..tensors import log_softmax, softmax  # torch.softmax and F.softmax are one function

__all__ = ["binary_cross_entropy", "binary_cross_entropy_with_logits", "cross_entropy",
           "dropout", "embedding", "gelu", "layer_norm", "linear", "log_softmax", "mse_loss",
           "relu", "rms_norm", "scaled_dot_product_attention", "sigmoid", "silu", "softmax"]


def _tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",  # noqa: A002
                  label_smoothing=0.0):
    """Cross-entropy of logits against integer class ids, with torch's shapes:

        input (N, C),          target (N,)           -> the loss over N rows
        input (N, C, d1, ...), target (N, d1, ...)   -> the loss over N * d1 * ... rows
        input (C,),            target ()             -> one row

    ``reduction="mean"`` averages over the rows whose target is not ``ignore_index``
    (nan if there are none, as torch); ``"sum"`` adds them up.
    The work is done by ``loss.cross_entropy`` on (rows, C) logits."""
    if weight is not None:
        raise NotImplementedError(
            "cross_entropy(weight=...) (per-class weights) is not supported by tinygpt; "
            "use ignore_index to leave classes out"
        )
    if label_smoothing:
        raise NotImplementedError(
            "cross_entropy(label_smoothing=...) is not supported by tinygpt"
        )
    if reduction not in ("mean", "sum"):
        if reduction == "none":
            raise NotImplementedError(
                'cross_entropy(reduction="none") is not supported by tinygpt; call it with '
                'reduction="sum" on each row you need, or use the mean'
            )
        raise ValueError(f'reduction must be "mean", "sum" or "none", got {reduction!r}')
    logits, targets = _tensor(input), _tensor(target)
    if targets.dtype.kind == "f":
        raise NotImplementedError(
            "cross_entropy with class probabilities as targets is not supported by tinygpt; "
            "pass integer class ids (target.argmax(dim=1) if the targets are one-hot)"
        )

    if logits.ndim == 1:  # one unbatched row
        expected = ()
    elif logits.ndim >= 2:
        expected = (logits.shape[0],) + tuple(logits.shape[2:])
    else:
        raise ValueError("cross_entropy: input must have a class dim (C,), (N, C) or "
                         "(N, C, d1, ...), got a 0-d tensor")
    if tuple(targets.shape) != expected:
        hint = ""
        if logits.ndim == 3 and tuple(targets.shape) == tuple(logits.shape[:2]):
            hint = (" These look like (batch, tokens, vocab) logits: torch's class dim is "
                    "dim 1, so flatten them as the book does, "
                    "F.cross_entropy(logits.flatten(0, 1), targets.flatten()), or call "
                    "tinygpt.cross_entropy(logits, targets)")
        raise ValueError(
            f"cross_entropy: input of shape {tuple(logits.shape)} needs a target of shape "
            f"{expected} (the class dim is dim 1), got {tuple(targets.shape)}.{hint}"
        )

    C = logits.shape[0] if logits.ndim == 1 else logits.shape[1]
    if logits.ndim > 2:  # (N, C, d1, ...) -> (N, d1, ..., C) -> (rows, C)
        logits = logits.permute(0, *range(2, logits.ndim), 1)
    rows = logits.reshape(-1, C)
    targets = targets.reshape(-1)
    loss = _cross_entropy(rows, targets, ignore_index=ignore_index)
    if reduction == "sum":
        counted = int((targets.array != ignore_index).sum())
        if counted == 0:  # torch: 0 (the mean of nothing is nan), with zero gradients
            return (rows * 0.0).sum()
        loss = loss * float(counted)
    return loss


def mse_loss(input, target, reduction="mean"):  # noqa: A002
    """Mean (or sum) of (input - target)^2; the shapes must match (torch would broadcast
    with a warning, which hides a transposed target)."""
    x, y = _tensor(input), _tensor(target)
    if tuple(x.shape) != tuple(y.shape):
        raise ValueError(f"mse_loss: input of shape {tuple(x.shape)} and target of shape "
                         f"{tuple(y.shape)} differ; reshape one to the other")
    diff = x - y
    if reduction == "mean":
        return (diff * diff).mean()
    if reduction == "sum":
        return (diff * diff).sum()
    raise NotImplementedError(f'mse_loss(reduction={reduction!r}): use "mean" or "sum", or '
                              "compute (input - target) ** 2 yourself")


def relu(input):  # noqa: A002
    """max(x, 0); the gradient is 1 where x > 0 and 0 elsewhere (as torch, 0 at x = 0)."""
    x = _tensor(input)
    return x.masked_fill(x <= 0, 0.0)


def dropout(input, p=0.5, training=True, inplace=False):  # noqa: A002
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p), in
    training; the identity otherwise (``training=False``)."""
    if inplace:
        raise NotImplementedError(
            "dropout(inplace=True) is not supported by tinygpt; use the returned tensor"
        )
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    x = _tensor(input)
    if not training or p == 0.0:
        return x
    return fused.FusedDropout.apply(x, p=float(p))


def linear(input, weight, bias=None):  # noqa: A002
    """x W^T + b, weight (out, in): ``fused.FusedLinear``, one op."""
    x = input if isinstance(input, Tensor) else Tensor(input)  # inline: it runs per layer
    weight = weight if isinstance(weight, Tensor) else Tensor(weight)
    x_shape, w_shape = x.array.shape, weight.array.shape  # the arrays': it runs per layer
    if not x_shape or len(w_shape) != 2 or x_shape[-1] != w_shape[1]:
        raise RuntimeError(f"linear: input of shape {tuple(x.shape)} cannot be multiplied by "
                           f"a weight of shape {tuple(weight.shape)} (out, in): the input's "
                           "last dim must be in")
    if bias is None:
        return fused.FusedLinear.apply(x, weight)
    return fused.FusedLinear.apply(x, weight, bias if isinstance(bias, Tensor) else Tensor(bias))


def gelu(input, approximate="none"):  # noqa: A002
    """GELU. tinygpt has GPT-2's tanh form, ``approximate="tanh"``:
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). torch's default, ``"none"``, is the
    exact x * Phi(x) with the erf, which tinygpt does not have: it raises rather than
    give other numbers (the two differ by up to about 5e-4)."""
    gelu_approximation(approximate)
    return fused.FusedGELU.apply(_tensor(input))


def gelu_approximation(approximate):
    """Accept torch's ``approximate`` argument when it asks for the tanh form."""
    if approximate == "tanh":
        return
    if approximate == "none":
        raise NotImplementedError(
            'GELU with approximate="none" (the exact erf form, torch\'s default) is not '
            'supported by tinygpt; use the tanh form GPT-2 uses: approximate="tanh"'
        )
    raise ValueError(f'approximate must be "none" or "tanh", got {approximate!r}')


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):  # noqa: A002
    """(x - mean) / sqrt(var + eps) * weight + bias over the last dim (biased variance):
    ``fused.FusedLayerNorm``, one fused op. ``weight`` None is ones, ``bias`` None zeros."""
    x = _tensor(input)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if len(shape) != 1:
        raise NotImplementedError(
            f"layer_norm over the last {len(shape)} dims is not supported by tinygpt; "
            "flatten those dims into the last one first (x.flatten(-2)) and normalise that")
    if x.array.ndim == 0 or x.array.shape[-1] != shape[0]:
        raise ValueError(f"layer_norm: normalized_shape {shape} must be the input's last dim, "
                         f"input has shape {tuple(x.shape)}")
    weight = Tensor(xp.ones(shape, dtype=x.dtype)) if weight is None else _tensor(weight)
    bias = Tensor(xp.zeros(shape, dtype=x.dtype)) if bias is None else _tensor(bias)
    x_dtype = x.array.dtype
    for name, t in (("weight", weight), ("bias", bias)):  # on the arrays: it runs per layer
        if t.array.shape != shape:
            raise ValueError(f"layer_norm: {name} must have shape {shape}, got {tuple(t.shape)}")
        if t.array.dtype != x_dtype:
            raise ValueError(f"layer_norm: input is {x.dtype} but {name} is {t.dtype}; "
                             f"convert one, e.g. input.to({t.dtype})")
    return fused.FusedLayerNorm.apply(x, weight, bias, eps=float(eps))


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None, enable_gqa=False):
    """Causal attention, ``fused.FusedCausalAttention`` (one fused op): softmax(query @ key^T /
    sqrt(head_dim), later keys masked) with dropout ``dropout_p`` on the weights, @ value.

    query, key, value: (b, num_heads, num_tokens, head_dim) -> (b, num_heads, num_tokens,
    head_dim). As in torch, ``dropout_p`` applies whatever the module's mode: pass 0.0
    in eval (``dropout_p=p if self.training else 0.0``). tinygpt's fused attention is
    the causal one only, so ``is_causal=True`` is required."""
    steps = ("or write the steps out: attn_scores = query @ key.transpose(2, 3), "
             "masked_fill_, softmax, @ value (as tinygpt.model.MultiHeadAttention does)")
    if attn_mask is not None:
        raise NotImplementedError(
            "scaled_dot_product_attention(attn_mask=...) is not supported by tinygpt; for "
            f"the causal mask pass is_causal=True and attn_mask=None, {steps}")
    if not is_causal:
        raise NotImplementedError(
            "scaled_dot_product_attention without is_causal=True (attention to later "
            f"tokens) is not supported by tinygpt; pass is_causal=True, {steps}")
    if scale is not None:
        raise NotImplementedError(
            "scaled_dot_product_attention(scale=...) is not supported by tinygpt, only the "
            "default 1/sqrt(head_dim); multiply query by scale * sqrt(head_dim) first")
    if enable_gqa:
        raise NotImplementedError(
            "scaled_dot_product_attention(enable_gqa=True) is not supported by tinygpt; "
            "give key and value as many heads as query")
    if isinstance(dropout_p, bool) or not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be a probability in [0, 1), got {dropout_p!r}")
    q, k, v = _tensor(query), _tensor(key), _tensor(value)
    if not q.ndim == k.ndim == v.ndim == 4:
        raise NotImplementedError(
            "scaled_dot_product_attention takes 4-D (batch, heads, tokens, head_dim) "
            f"tensors in tinygpt, got shapes {tuple(q.shape)}, {tuple(k.shape)}, "
            f"{tuple(v.shape)}; reshape to 4-D (e.g. x[None] for one sequence)")
    if q.shape[-2] != k.shape[-2]:
        raise NotImplementedError(
            f"causal attention of {q.shape[-2]} queries to {k.shape[-2]} keys is not "
            "supported by scaled_dot_product_attention in tinygpt (torch aligns that mask "
            "to the top left); give it all positions' queries, or use tinygpt.kv_cache.KVCache")
    if (q.shape[:2] != k.shape[:2] or k.shape[:3] != v.shape[:3]
            or q.shape[-1] != k.shape[-1]):
        raise ValueError(f"scaled_dot_product_attention: query {tuple(q.shape)}, key "
                         f"{tuple(k.shape)} and value {tuple(v.shape)} do not fit: they need "
                         "the same batch, heads and tokens, and query and key one head_dim")
    if not q.dtype == k.dtype == v.dtype:
        raise ValueError(f"scaled_dot_product_attention: query, key and value must have one "
                         f"dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    return fused.FusedCausalAttention.apply(q, k, v, dropout_p=float(dropout_p))


def embedding(input, weight):  # noqa: A002
    """Rows ``weight[input]`` of a (num_embeddings, dim) table; the gradient scatters
    back into ``weight`` (repeated ids add up)."""
    ids = input.array if isinstance(input, Tensor) else Tensor(input).array
    weight = _tensor(weight)
    return fused.FusedEmbedding.apply(weight, embedding_indices(ids, weight.shape[0]))


def silu(input, inplace=False):  # noqa: A002
    """x * sigmoid(x) (SwiGLU's gate in Llama-style feed-forwards)."""
    if inplace:
        raise NotImplementedError("silu(inplace=True) is not supported by tinygpt; use the "
                                  "returned tensor")
    return fused.FusedSiLU.apply(_tensor(input))


def sigmoid(input):  # noqa: A002
    return ops.Sigmoid.apply(_tensor(input))


def _reduce(losses, reduction, name):
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    if reduction == "none":
        return losses
    raise ValueError(f'{name}: reduction must be "mean", "sum" or "none", got {reduction!r}')


def _probability_pair(input, target, name):  # noqa: A002
    """(input, target) as float Tensors of one shape (torch refuses other shapes too)."""
    x, t = _tensor(input), _tensor(target)
    if tuple(x.shape) != tuple(t.shape):
        raise ValueError(f"{name}: target of shape {tuple(t.shape)} must have the input's "
                         f"shape {tuple(x.shape)}; e.g. target.view(input.shape)")
    if x.dtype.kind != "f":
        raise ValueError(f"{name}: input must be floating point, got {x.dtype}")
    return x, t.to(x.dtype)


def binary_cross_entropy(input, target, weight=None, reduction="mean"):  # noqa: A002
    """-(t log(p) + (1 - t) log(1 - p)) of probabilities ``input`` in [0, 1] against
    ``target``; each log clamped at -100, as torch. ``weight`` scales each element."""
    p, t = _probability_pair(input, target, "binary_cross_entropy")
    values = p.array
    if bool(((values < 0) | (values > 1)).any()):
        raise ValueError("binary_cross_entropy: all elements of input should be between 0 "
                         "and 1 (apply sigmoid first, or use binary_cross_entropy_with_logits)")
    losses = fused.FusedBinaryCrossEntropy.apply(p, t)
    if weight is not None:
        losses = losses * weight
    return _reduce(losses, reduction, "binary_cross_entropy")


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean",  # noqa: A002
                                     pos_weight=None):
    """binary_cross_entropy(sigmoid(input), target), computed from the logits without
    overflow."""
    if pos_weight is not None:
        raise NotImplementedError(
            "binary_cross_entropy_with_logits(pos_weight=...) is not supported by tinygpt; "
            "weight the positive examples with weight= instead"
        )
    z, t = _probability_pair(input, target, "binary_cross_entropy_with_logits")
    losses = fused.FusedBinaryCrossEntropyWithLogits.apply(z, t)
    if weight is not None:
        losses = losses * weight
    return _reduce(losses, reduction, "binary_cross_entropy_with_logits")


def rms_norm(input, normalized_shape, weight=None, eps=None):  # noqa: A002
    """x / sqrt(mean(x^2) + eps) * weight over the last ``len(normalized_shape)`` dims;
    ``eps=None`` is the dtype's machine epsilon, as torch."""
    x = _tensor(input)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(x.shape[x.ndim - len(shape):]) != shape:
        raise ValueError(f"rms_norm: normalized_shape {shape} must be the input's last dims, "
                         f"input has shape {tuple(x.shape)}")
    if eps is None:
        eps = float(numpy.finfo(x.array.dtype).eps)
    dims = tuple(range(x.ndim - len(shape), x.ndim))
    y = x * ((x * x).mean(dims, keepdim=True) + float(eps)).rsqrt()
    return y if weight is None else y * weight
