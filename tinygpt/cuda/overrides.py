"""The CUDA kernels in place of ``ops.py``'s fused layers.

Each class below runs one op with the kernels of ``kernels.py``. It subclasses the op
(same arguments, same saved-value checks) and is registered for it in
``Function.kernels`` by ``@override``. ``Function.apply`` asks its ``takes`` once per
call, at forward time: when the kernels are on (CuPy backend, ``TINYGPT_KERNELS`` not 0,
outside ``backend.kernels_disabled()``) and the arrays qualify (float32), the kernel
class runs forward and the same object runs backward. Otherwise the op's own array
code runs: the twin that tests/test_cuda_kernels.py compares each kernel with.

Dropout draws the same Philox masks either way: the kernels compute ``philox.py``'s
numbers, one draw per call, so the backward redraws its mask instead of keeping it.
"""

import math

from .. import fused
from ..autograd import Function
from ..backend import dropout_rng, next_philox_draw
from . import kernels
from .kernels import available


def override(op):
    """Class decorator: run the decorated kernel class in place of ``op`` wherever its
    ``takes(*arrays, **options)`` says it takes the arrays of a call."""
    def register(kernel):
        Function.kernels[op] = kernel
        return kernel
    return register


@override(fused.FusedDropout)
class DropoutKernel(fused.FusedDropout):
    """One kernel each way; the backward redraws the forward's mask."""

    @staticmethod
    def takes(x, p):
        return p > 0.0 and dropout_rng() == "philox" and available(x)

    def forward(self, x, p):
        self.p, self.draw = p, next_philox_draw()
        return kernels.dropout(x, p, self.draw)

    def backward(self, dy):
        return kernels.dropout(dy, self.p, self.draw)


@override(fused.FusedGELU)
class GELUKernel(fused.FusedGELU):
    """One kernel each way; the backward recomputes tanh from x instead of keeping it."""

    @staticmethod
    def takes(x):
        return available(x)

    def forward(self, x):
        self.x = x
        return kernels.gelu_forward(x)

    def backward(self, dy):
        return kernels.gelu_backward(self.x, dy)


@override(fused.FusedLayerNorm)
class LayerNormKernel(fused.FusedLayerNorm):
    """One kernel each way; keeps x, mean and rstd (not xhat)."""

    @staticmethod
    def takes(x, scale, shift, eps=1e-5):
        return available(x, scale, shift)

    def forward(self, x, scale, shift, eps=1e-5):
        y, self.mean, self.rstd = kernels.layer_norm_forward(x, scale, shift, eps)
        self.x, self.scale = x, scale
        return y

    def backward(self, dy):
        return kernels.layer_norm_backward(dy, self.x, self.scale, self.mean, self.rstd)


@override(fused.FusedEmbedding)
class EmbeddingKernel(fused.FusedEmbedding):
    """The op's forward; the backward sums rows by sorted id, with no atomics, so it
    gives the same bits every run."""

    @staticmethod
    def takes(weight, ids):
        return available(weight)

    def backward(self, dy):
        return kernels.embedding_backward(self.ids, dy, self.weight_shape[0]), None


@override(fused.FusedCausalAttention)
class CausalAttentionKernel(fused.FusedCausalAttention):
    """The op's two products, with one kernel each way for the lines between them:
    scale, causal mask, softmax and dropout (the backward redraws the mask). Training
    only: the queries are all the keys' positions."""

    @staticmethod
    def takes(queries, keys, values, dropout_p=0.0):
        return (queries.shape[-2] == keys.shape[-2] and available(queries, keys, values)
                and (dropout_p == 0.0 or dropout_rng() == "philox"))

    def forward(self, queries, keys, values, dropout_p=0.0):
        scale = 1.0 / math.sqrt(queries.shape[-1])
        attn_scores = queries @ keys.transpose(0, 1, 3, 2)  # (b, heads, T, T)
        draw = next_philox_draw() if dropout_p > 0.0 else None
        attn_weights, dropped = kernels.attention_softmax_forward(
            attn_scores, scale, dropout_p, draw)
        if self.needs_grad:
            self.queries, self.keys, self.values, self.scale = queries, keys, values, scale
            self.attn_weights, self.dropped = attn_weights, dropped
            self.dropout_p, self.draw = dropout_p, draw
        return dropped @ values

    def backward(self, d_context):
        d_dropped = d_context @ self.values.transpose(0, 1, 3, 2)  # (b, heads, T, T)
        d_scores = kernels.attention_softmax_backward(
            d_dropped, self.attn_weights, self.scale, self.dropout_p, self.draw)
        # Products with a (T, T) operand transposed are taken transposed
        # (d_values^T = d_context^T dropped): CuPy would copy that operand.
        d_values = (d_context.transpose(0, 1, 3, 2) @ self.dropped).transpose(0, 1, 3, 2)
        d_keys = (self.queries.transpose(0, 1, 3, 2) @ d_scores).transpose(0, 1, 3, 2)
        return d_scores @ self.keys, d_keys, d_values


@override(fused.FusedCrossEntropy)
class CrossEntropyKernel(fused.FusedCrossEntropy):
    """One kernel each way; no host synchronisation and no (N, V) buffer kept."""

    @staticmethod
    def takes(logits, targets, ignore_index=-100):
        return available(logits)

    def forward(self, logits, targets, ignore_index=-100):
        loss, lse, n_counted = kernels.cross_entropy_forward(logits, targets, ignore_index)
        if self.needs_grad:
            self.logits, self.targets, self.lse = logits, targets, lse
            self.n, self.ignore_index = n_counted, ignore_index
        return loss

    def backward(self, dloss):
        dz = kernels.cross_entropy_backward(
            self.logits, self.targets, self.lse, dloss / self.n, self.ignore_index)
        return dz, None
