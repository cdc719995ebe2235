"""torch.nn's names on tinygpt: ``import tinygpt.nn as nn``.

``Module`` and ``Parameter`` (the machinery, in ``module.py``), the containers
``Sequential`` and ``ModuleList``, the layers ``Linear``, ``Embedding`` and ``Dropout``,
and ``functional`` (``F.cross_entropy`` with torch's shapes, ...) and ``utils``
(``clip_grad_norm_``).

Also here, for now: the GPT layers of the book's chapter 4 (``LayerNorm``, ``GELU``,
``FeedForward``, ``MultiHeadAttention``, ``TransformerBlock``). Note that they are the
book's classes, not torch.nn's namesakes: ``LayerNorm`` holds ``scale`` / ``shift``
(torch's: ``weight`` / ``bias``) and ``GELU`` is GPT-2's tanh form (torch's default is
the exact erf form).

Names and shapes follow the book's PyTorch classes (``Linear.weight`` is ``(out, in)``,
``FeedForward.layers.0``), so a PyTorch state dict loads unchanged.
"""

import math
from collections import OrderedDict

import numpy

from .. import ops
from ..autograd import Tensor
from ..backend import DEFAULT_DTYPE, check_device, get_rng, xp
from . import functional, utils
from .module import Module, Parameter

__all__ = [
    "GELU", "CrossEntropyLoss", "Dropout", "Embedding", "FeedForward", "LayerNorm", "Linear",
    "MSELoss", "Module", "ModuleList", "MultiHeadAttention", "Parameter", "ReLU", "Sequential",
    "TransformerBlock", "functional", "utils",
]


# ----------------------------------------------------------------------------------
# Containers.


class Sequential(Module):
    """Modules applied in order; children are named "0", "1", ... like torch.
    ``Sequential(OrderedDict(name=module, ...))`` names them."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, module in modules[0].items():
                self.add_module(name, module)
        else:
            for i, module in enumerate(modules):
                self.add_module(str(i), module)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Sequential(OrderedDict(list(self._modules.items())[i]))
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x


class ModuleList(Module):
    """A list of modules whose parameters the parent sees, named "0", "1", ... like
    torch. It has no forward: loop over it (``for block in self.blocks: x = block(x)``)."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _index(self, i):
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for a ModuleList of {n}")
        return i % n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return ModuleList(list(self._modules.values())[i])
        return self._modules[str(self._index(i))]

    def __setitem__(self, i, module):
        setattr(self, str(self._index(i)), module)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __iadd__(self, modules):
        return self.extend(modules)

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        for module in modules:
            self.append(module)
        return self

    def insert(self, index, module):
        items = list(self._modules.values())
        items.insert(index, module)
        self._modules.clear()
        for i, m in enumerate(items):
            self.add_module(str(i), m)

    def __repr__(self):
        """torch's layout: runs of identical children print once, "(0-11): 12 x Block(...)"."""
        reprs = [repr(m) for m in self]
        if not reprs:
            return self._get_name() + "()"
        runs = []  # [first index, last index, repr]
        for i, text in enumerate(reprs):
            if runs and runs[-1][2] == text:
                runs[-1][1] = i
            else:
                runs.append([i, i, text])
        lines = [
            (f"({a}): {text}" if a == b else f"({a}-{b}): {b - a + 1} x {text}").replace(
                "\n", "\n  ")
            for a, b, text in runs
        ]
        return self._get_name() + "(\n  " + "\n  ".join(lines) + "\n)"


# ----------------------------------------------------------------------------------
# torch.nn's layers.


def _uniform(shape, bound):
    """U(-bound, bound) drawn directly in float32 (a float64 draw of 163M values is slow)."""
    values = get_rng().random(shape, dtype=numpy.float32)
    values *= 2.0 * bound
    values -= bound
    return values


class Linear(Module):
    """y = x W^T + b, weight (out, in). Init like torch: U(-1/sqrt(in), 1/sqrt(in))."""

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        check_device(device)
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight = Parameter(_uniform((out_features, in_features), bound))
        self.register_parameter(
            "bias", Parameter(_uniform((out_features,), bound)) if bias else None)
        if dtype is not None:
            self.to(dtype)

    def forward(self, x):
        x = _match_dtype(x, self.weight)
        return ops.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Embedding(Module):
    """Rows of a (num_embeddings, dim) table. Init N(0, 1) like torch."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, device=None,
                 dtype=None):
        super().__init__()
        if padding_idx is not None:
            raise NotImplementedError(
                "Embedding(padding_idx=...) is not supported by tinygpt; mask the padded "
                "positions' loss with cross_entropy's ignore_index instead"
            )
        check_device(device)
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        rng = get_rng()
        self.weight = Parameter(
            rng.standard_normal((num_embeddings, embedding_dim), dtype=numpy.float32)
        )
        if dtype is not None:
            self.to(dtype)

    def forward(self, ids):
        ids = ids.data if isinstance(ids, Tensor) else xp.asarray(ids)
        return ops.Embedding.apply(self.weight, ids)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class Dropout(Module):
    """Inverted dropout in train mode; the identity in eval mode."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        if inplace:
            raise NotImplementedError(
                "Dropout(inplace=True) is not supported by tinygpt; use the returned tensor "
                "(inplace=False)"
            )
        self.p, self.inplace = float(p), False

    def forward(self, x):
        return ops.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class ReLU(Module):
    """max(x, 0) (chapter 4 plots it beside GELU)."""

    def forward(self, x):
        return functional.relu(x)


class MSELoss(Module):
    """Mean squared error, as a module (chapter 4's gradient demonstration uses it)."""

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, input, target):  # noqa: A002
        return functional.mse_loss(input, target, reduction=self.reduction)


class CrossEntropyLoss(Module):
    """``F.cross_entropy`` as a module, with torch's shapes."""

    def __init__(self, ignore_index=-100, reduction="mean"):
        super().__init__()
        self.ignore_index, self.reduction = ignore_index, reduction

    def forward(self, input, target):  # noqa: A002
        return functional.cross_entropy(input, target, ignore_index=self.ignore_index,
                                        reduction=self.reduction)


# ----------------------------------------------------------------------------------
# The book's chapter-4 layers of GPT-2 (to move to model.py).


class LayerNorm(Module):
    """Normalise the last axis (biased variance, eps 1e-5), then scale and shift."""

    def __init__(self, emb_dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.scale = Parameter(numpy.ones(emb_dim, dtype=DEFAULT_DTYPE))
        self.shift = Parameter(numpy.zeros(emb_dim, dtype=DEFAULT_DTYPE))

    def forward(self, x):
        x = _match_dtype(x, self.scale)
        return ops.LayerNorm.apply(x, self.scale, self.shift, eps=self.eps)


class GELU(Module):
    """GPT-2's tanh approximation of GELU."""

    def forward(self, x):
        return ops.GELU.apply(x)


class FeedForward(Module):
    """Linear(C, 4C) -> GELU -> Linear(4C, C), as ``layers.0`` … ``layers.2``."""

    def __init__(self, cfg):
        super().__init__()
        C = cfg["emb_dim"]
        self.layers = Sequential(Linear(C, 4 * C), GELU(), Linear(4 * C, C))

    def forward(self, x):  # (B, T, C) -> (B, T, C)
        return self.layers(x)


class MultiHeadAttention(Module):
    """Causal multi-head self-attention: separate W_query / W_key / W_value (the book's
    names), one fused op for the heads' scores, softmax, dropout and weighted sum,
    then ``out_proj``."""

    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__()
        if d_out % num_heads != 0:
            raise ValueError(f"d_out ({d_out}) must be divisible by num_heads ({num_heads})")
        self.d_out, self.num_heads = d_out, num_heads
        self.head_dim = d_out // num_heads
        self.context_length = context_length
        self.W_query = Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = Linear(d_out, d_out)
        self.dropout = Dropout(dropout)

    def forward(self, x):  # (B, T, C) -> (B, T, C)
        queries = self.W_query(x)  # (B, T, C)
        keys = self.W_key(x)
        values = self.W_value(x)
        p = self.dropout.p if self.training else 0.0
        context = ops.CausalSelfAttention.apply(
            queries, keys, values, n_heads=self.num_heads, dropout_p=p
        )  # (B, T, C), heads merged
        return self.out_proj(context)


class TransformerBlock(Module):
    """Pre-norm block: x + drop(att(norm1(x))), then x + drop(ff(norm2(x)))."""

    def __init__(self, cfg):
        super().__init__()
        self.att = MultiHeadAttention(
            d_in=cfg["emb_dim"], d_out=cfg["emb_dim"], context_length=cfg["context_length"],
            num_heads=cfg["n_heads"], dropout=cfg["drop_rate"], qkv_bias=cfg["qkv_bias"],
        )
        self.ff = FeedForward(cfg)
        self.norm1 = LayerNorm(cfg["emb_dim"])
        self.norm2 = LayerNorm(cfg["emb_dim"])
        self.drop_shortcut = Dropout(cfg["drop_rate"])

    def forward(self, x):  # (B, T, C) -> (B, T, C)
        x = _match_dtype(x, self.norm1.scale)  # else a float64 x spreads through the residual
        x = x + self.drop_shortcut(self.att(self.norm1(x)))
        return x + self.drop_shortcut(self.ff(self.norm2(x)))


def _match_dtype(x, like):
    """Cast a floating input to the parameters' dtype once, at the module boundary."""
    if not isinstance(x, Tensor):
        x = Tensor(x)
    if x.dtype != like.dtype and x.dtype.kind == "f":
        return x.astype(like.dtype)
    return x
