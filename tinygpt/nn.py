"""Modules: parameters with names, train/eval mode, state dicts, and the GPT layers.

Names and shapes follow the book's PyTorch classes (``Linear.weight`` is
``(out, in)``, ``LayerNorm.scale`` / ``.shift``, ``FeedForward.layers.0``), so a
PyTorch state dict converted to NumPy loads unchanged.
"""

import math
from collections import OrderedDict

import numpy

from . import ops
from .autograd import Tensor
from .backend import DEFAULT_DTYPE, get_rng, to_numpy, xp


class Parameter(Tensor):
    """A tensor that a Module owns and an optimizer updates."""

    __slots__ = ()

    def __init__(self, data, dtype=None):
        super().__init__(data, requires_grad=True, dtype=dtype)

    def __repr__(self):
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


class Module:
    """Base class: attributes that are Parameters or Modules are registered by name."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"call Module.__init__() in {type(self).__name__}.__init__ first")
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    # --- traversal ----------------------------------------------------------------
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, module in self._modules.items():
            yield from module.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return [m for _, m in self.named_modules()]

    def named_parameters(self, prefix=""):
        for module_name, module in self.named_modules(prefix):
            for name, param in module._parameters.items():
                yield (f"{module_name}.{name}" if module_name else name), param

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def num_parameters(self):
        return sum(p.numel() for p in self.parameters())

    # --- modes ----------------------------------------------------------------------
    def train(self, mode=True):
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def to(self, dtype):
        """Convert every parameter to ``dtype`` (e.g. numpy.float64 for gradient checks)."""
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = None
        return self

    @property
    def dtype(self):
        params = self.parameters()
        return params[0].dtype if params else xp.dtype(DEFAULT_DTYPE)

    # --- state dicts ----------------------------------------------------------------
    def state_dict(self):
        """Name -> array, in registration order. The arrays are the live parameter
        storage (like torch's state_dict): copy them if training goes on."""
        return OrderedDict((name, p.data) for name, p in self.named_parameters())

    # keys of buffers the book's torch model has and we rebuild ourselves
    _ignored_state_keys = ()

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into the parameters, all or nothing.

        Every key is checked first (missing, unexpected, shape, non-finite); if any
        is wrong a ValueError lists every offending key and no parameter changes.
        Values are cast to each parameter's dtype (float64 input into a float32 model
        is converted once, here)."""
        params = OrderedDict(self.named_parameters())
        given = {
            k: v for k, v in state_dict.items()
            if not any(k.endswith(suffix) for suffix in self._ignored_state_keys)
        }
        problems = []
        if strict:
            problems += [f"missing key {k!r}" for k in params if k not in given]
            problems += [f"unexpected key {k!r}" for k in given if k not in params]
        arrays = {}
        for name, value in given.items():
            if name not in params:
                continue
            array = _to_array(value)
            expected = params[name].shape
            if tuple(array.shape) != tuple(expected):
                problems.append(
                    f"{name!r}: shape {tuple(array.shape)} does not match the model's "
                    f"{tuple(expected)}"
                )
                continue
            if array.dtype.kind not in "fiu":
                problems.append(f"{name!r}: dtype {array.dtype} is not numeric")
                continue
            if not bool(numpy.isfinite(array).all()):
                problems.append(f"{name!r}: contains NaN or infinite values")
                continue
            arrays[name] = array
        if problems:
            raise ValueError(
                "load_state_dict failed; the model keeps its previous weights. Problems:\n  "
                + "\n  ".join(problems)
            )
        for name, array in arrays.items():
            param = params[name]
            param.data[...] = xp.asarray(array, dtype=param.dtype)
        return self


def _to_array(value):
    if isinstance(value, Tensor):
        return to_numpy(value.data)
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        return value.detach().cpu().numpy()
    return to_numpy(value)


class Sequential(Module):
    """Modules applied in order; children are named "0", "1", … like torch."""

    def __init__(self, *modules):
        super().__init__()
        for i, module in enumerate(modules):
            setattr(self, str(i), module)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x


def _uniform(shape, bound):
    """U(-bound, bound) drawn directly in float32 (a float64 draw of 163M values is slow)."""
    values = get_rng().random(shape, dtype=numpy.float32)
    values *= 2.0 * bound
    values -= bound
    return values


class Linear(Module):
    """y = x W^T + b, weight (out, in). Init like torch: U(-1/sqrt(in), 1/sqrt(in))."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = Parameter(_uniform((out_features, in_features), bound))
        self.bias = Parameter(_uniform((out_features,), bound)) if bias else None

    def forward(self, x):
        x = _match_dtype(x, self.weight)
        return ops.linear(x, self.weight, self.bias)


class Embedding(Module):
    """Rows of a (num_embeddings, dim) table. Init N(0, 1) like torch."""

    def __init__(self, num_embeddings, embedding_dim):
        super().__init__()
        rng = get_rng()
        self.weight = Parameter(
            rng.standard_normal((num_embeddings, embedding_dim), dtype=numpy.float32)
        )

    def forward(self, ids):
        ids = ids.data if isinstance(ids, Tensor) else xp.asarray(ids)
        return ops.Embedding.apply(self.weight, ids)


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


class Dropout(Module):
    """Inverted dropout in train mode; the identity in eval mode."""

    def __init__(self, p):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x):
        return ops.dropout(x, self.p, self.training)


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
