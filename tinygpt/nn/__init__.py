"""torch.nn's names on tinygpt: ``import tinygpt.nn as nn``.

``Module`` and ``Parameter`` (the machinery, in ``module.py``), the containers
``Sequential`` and ``ModuleList``, the layers ``Linear``, ``Embedding``, ``Dropout``,
``LayerNorm`` and ``GELU`` with torch's arguments, the losses, and ``functional``
(``F.cross_entropy`` with torch's shapes, ...) and ``utils`` (``clip_grad_norm_``).
The book's own GPT layers (its ``LayerNorm`` with ``scale`` / ``shift``, its tanh
``GELU``, ``MultiHeadAttention`` ...) are in ``tinygpt/model.py``.

Names and shapes follow torch (``Linear.weight`` is ``(out, in)``), so a PyTorch state
dict loads unchanged.
"""

import math
from collections import OrderedDict

import numpy

from .. import fused
from ..backend import DEFAULT_DTYPE, check_device, get_rng, xp
from ..checks import embedding_indices, shape
from ..tensor import Tensor
from . import functional, init, utils
from .module import Module, Parameter

__all__ = [
    "GELU", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "Dropout", "Embedding",
    "Identity", "LayerNorm", "Linear", "MSELoss", "Module", "ModuleList", "Parameter", "ReLU",
    "RMSNorm", "Sequential", "SiLU", "Sigmoid", "functional", "init", "utils",
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
        out_features, in_features = shape((out_features, in_features), "Linear's features")
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features) if in_features else 0.0  # torch's bound for 0
        self.weight = Parameter(_uniform((out_features, in_features), bound))
        self.register_parameter(
            "bias", Parameter(_uniform((out_features,), bound)) if bias else None)
        if dtype is not None:
            self.to(dtype)

    def forward(self, x):
        weight = self.weight
        return functional.linear(_match_dtype(x, weight), weight, self.bias)

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
        num_embeddings, embedding_dim = shape((num_embeddings, embedding_dim),
                                              "Embedding's sizes")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        rng = get_rng()
        self.weight = Parameter(
            rng.standard_normal((num_embeddings, embedding_dim), dtype=numpy.float32)
        )
        if dtype is not None:
            self.to(dtype)

    def forward(self, ids):
        ids = ids.array if isinstance(ids, Tensor) else xp.asarray(ids)
        return fused.FusedEmbedding.apply(self.weight, embedding_indices(ids, self.num_embeddings))

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
        return functional.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class ReLU(Module):
    """max(x, 0) (chapter 4 plots it beside GELU)."""

    def forward(self, x):
        return functional.relu(x)


class SiLU(Module):
    """x * sigmoid(x) (the gate of a Llama-style SwiGLU feed-forward)."""

    def forward(self, x):
        return functional.silu(x)


class Sigmoid(Module):
    def forward(self, x):
        return functional.sigmoid(x)


class Identity(Module):
    """Returns its input (a placeholder where a layer is removed)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class BCELoss(Module):
    """``F.binary_cross_entropy`` as a module: probabilities against 0/1 targets."""

    def __init__(self, weight=None, reduction="mean"):
        super().__init__()
        self.weight, self.reduction = weight, reduction

    def forward(self, input, target):  # noqa: A002
        return functional.binary_cross_entropy(input, target, self.weight, self.reduction)


class BCEWithLogitsLoss(BCELoss):
    """``F.binary_cross_entropy_with_logits`` as a module: logits against 0/1 targets."""

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(weight, reduction)
        self.pos_weight = pos_weight

    def forward(self, input, target):  # noqa: A002
        return functional.binary_cross_entropy_with_logits(
            input, target, self.weight, self.reduction, self.pos_weight)


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
# Normalisation and activation with torch's arguments.


class LayerNorm(Module):
    """torch.nn.LayerNorm over the last dim: (x - mean) / sqrt(var + eps) * weight + bias
    (biased variance), one fused op. (The book's own LayerNorm, with ``scale`` and
    ``shift``, is ``tinygpt.model.LayerNorm``.)"""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True):
        super().__init__()
        if not isinstance(normalized_shape, int):
            shape = tuple(normalized_shape)
            if len(shape) != 1:
                raise NotImplementedError(
                    "LayerNorm over more than the last dim is not supported; flatten those "
                    "dims into the last one first"
                )
            normalized_shape = shape[0]
        if not elementwise_affine:
            raise NotImplementedError("LayerNorm(elementwise_affine=False) is not supported")
        self.normalized_shape, self.eps = (int(normalized_shape),), float(eps)
        self.weight = Parameter(numpy.ones(normalized_shape, dtype=DEFAULT_DTYPE))
        zeros = numpy.zeros(normalized_shape, dtype=DEFAULT_DTYPE)
        self.register_parameter("bias", Parameter(zeros) if bias else None)

    def forward(self, x):
        x = _match_dtype(x, self.weight)
        if x.ndim == 0 or x.shape[-1] != self.normalized_shape[0]:
            raise RuntimeError(f"Given normalized_shape={list(self.normalized_shape)}, expected "
                               f"input with shape [*, {self.normalized_shape[0]}], but got "
                               f"input of size {list(x.shape)}")
        shift = self.bias if self.bias is not None else Tensor(
            xp.zeros(self.normalized_shape, dtype=self.weight.dtype))
        return fused.FusedLayerNorm.apply(x, self.weight, shift, eps=self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine=True"


class RMSNorm(Module):
    """torch.nn.RMSNorm: x / sqrt(mean(x^2) + eps) * weight over the last dims
    (``normalized_shape``); ``eps=None`` is the input dtype's machine epsilon, as torch.
    Llama-style models use it in place of LayerNorm."""

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True, device=None,
                 dtype=None):
        super().__init__()
        check_device(device)
        shape = ((normalized_shape,) if isinstance(normalized_shape, int)
                 else tuple(normalized_shape))
        self.normalized_shape, self.eps = tuple(int(n) for n in shape), eps
        self.elementwise_affine = bool(elementwise_affine)
        weight = Parameter(numpy.ones(self.normalized_shape, dtype=DEFAULT_DTYPE))
        self.register_parameter("weight", weight if self.elementwise_affine else None)
        if dtype is not None:
            self.to(dtype)

    def forward(self, x):
        x = _match_dtype(x, self.weight) if self.weight is not None else x
        return functional.rms_norm(x, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


class GELU(Module):
    """torch.nn.GELU: ``approximate="tanh"`` is GPT-2's form (``fused.FusedGELU``); torch's
    default, the exact erf form, is not implemented (say approximate="tanh")."""

    def __init__(self, approximate="none"):
        super().__init__()
        functional.gelu_approximation(approximate)  # refuses "none" with the alternative
        self.approximate = approximate

    def forward(self, x):
        return fused.FusedGELU.apply(x)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


def _match_dtype(x, like):
    """Cast a floating input to the parameters' dtype once, at the module boundary; an
    integer or bool input is torch's RuntimeError (a float64 result would be silent)."""
    if not isinstance(x, Tensor):
        x = Tensor(x)
    if x.array.dtype == like.array.dtype and like.array.dtype.kind == "f":
        return x  # the common case, first: it runs for every layer of every forward
    if x.dtype.kind != "f":
        raise RuntimeError(f"expected a floating-point input like the parameters "
                           f"({like.dtype}), got dtype {x.dtype}; convert it, e.g. x.float()")
    if x.dtype != like.dtype:
        return x.to(like.dtype)
    return x
