"""The book's GPT-2 model: chapter 3's attention and chapter 4's layers, used throughout
chapter 5. The classes come in the book's order, with its names and shapes.

Attention, layer norm and GELU each show the book's steps on Tensors, and beside them one
``if`` to the fast path: the same maths as one fused op, called by torch's functional
name (``F.scaled_dot_product_attention``, ``F.layer_norm``, ``F.gelu``; the ops, with
their backward written by hand, are in ``ops.py``). ``tinygpt.use_fused(False)`` runs the
book's steps; the default is the fused ops. Both give the same numbers.

Shapes: b batch, num_tokens (T) tokens, emb_dim / d_out (C) channels, num_heads (H),
head_dim (D = C / H), vocab_size (V).
"""

import json
import math
import numbers

import numpy

from .backend import DEFAULT_DTYPE, to_numpy, xp
from .checks import int_problem, rectangular, token_ids
from .fast_path import is_fused_enabled
from .nn import Dropout, Embedding, Linear, Module, Parameter, Sequential, _match_dtype
from .nn import functional as F
from .tensor import Tensor
from .tensors import ones, triu

GPT_CONFIG_124M = {
    "vocab_size": 50257,  # GPT-2's BPE vocabulary
    "context_length": 256,  # shortened from 1024, as in the chapter
    "emb_dim": 768,  # the width of every token's vector
    "n_heads": 12,  # attention heads
    "n_layers": 12,  # transformer blocks
    "drop_rate": 0.1,  # dropout
    "qkv_bias": False,  # bias in the query, key and value projections
}


# ----------------------------------------------------------------------------------
# Chapter 3: multi-head causal self-attention.


class MultiHeadAttention(Module):
    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__()
        if d_out % num_heads != 0:
            raise ValueError(f"d_out ({d_out}) must be divisible by num_heads ({num_heads})")
        self.d_out = d_out
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads
        self.W_query = Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = Linear(d_out, d_out)
        self.dropout = Dropout(dropout)
        self.context_length = context_length
        # True above the diagonal: for each query (row), the later tokens it must not see.
        # A buffer, so the state dict holds it as the book's does; bool, so .to(dtype)
        # leaves it as it is.
        self.register_buffer(
            "mask", triu(ones(context_length, context_length, dtype=bool), diagonal=1))

    def forward(self, x, kv_cache=None):
        b, num_tokens, d_in = x.shape
        keys = self.W_key(x)  # (b, num_tokens, d_out)
        queries = self.W_query(x)
        values = self.W_value(x)

        # Each head gets its own head_dim slice of d_out: (b, num_tokens, d_out)
        # -> (b, num_tokens, num_heads, head_dim) -> (b, num_heads, num_tokens, head_dim)
        keys = keys.view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        queries = queries.view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        values = values.view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)

        if kv_cache is not None:  # decoding (kv_cache.py): the cached tokens' keys too
            context_vec = kv_cache.attend(queries, keys, values).transpose(1, 2)
        elif is_fused_enabled():  # the fast path: the steps below as one fused op
            p = self.dropout.p if self.training else 0.0
            context_vec = F.scaled_dot_product_attention(
                queries, keys, values, dropout_p=p, is_causal=True).transpose(1, 2)
        else:
            # Every query against every key of its head: (b, num_heads, num_tokens, num_tokens)
            attn_scores = queries @ keys.transpose(2, 3)
            # A token may attend to itself and the tokens before it: the mask's
            # top-left (num_tokens, num_tokens) corner marks the later ones, whose
            # scores become -inf, i.e. weight 0 after the softmax
            mask_bool = self.mask.bool()[:num_tokens, :num_tokens]
            attn_scores.masked_fill_(mask_bool, -math.inf)
            # dividing by sqrt(head_dim) keeps the scores' spread near 1, so the softmax
            # does not saturate and its gradients do not vanish
            attn_weights = F.softmax(attn_scores / self.head_dim**0.5, dim=-1)
            attn_weights = self.dropout(attn_weights)
            # each token's weighted sum of the values, then heads before tokens undone:
            # (b, num_heads, num_tokens, head_dim) -> (b, num_tokens, num_heads, head_dim)
            context_vec = (attn_weights @ values).transpose(1, 2)

        # The heads side by side again: (b, num_tokens, d_out)
        context_vec = context_vec.contiguous().view(b, num_tokens, self.d_out)
        context_vec = self.out_proj(context_vec)
        return context_vec


# ----------------------------------------------------------------------------------
# Chapter 4: the GPT architecture.


class LayerNorm(Module):
    """Each token's vector to mean 0 and variance 1 (over emb_dim), then a learned
    ``scale`` and ``shift``."""

    def __init__(self, emb_dim):
        super().__init__()
        self.eps = 1e-5
        self.scale = Parameter(numpy.ones(emb_dim, dtype=DEFAULT_DTYPE))
        self.shift = Parameter(numpy.zeros(emb_dim, dtype=DEFAULT_DTYPE))

    def forward(self, x):  # (..., emb_dim) -> the same shape
        x = _match_dtype(x, self.scale)
        if is_fused_enabled():  # the fast path: the steps below as one fused op
            return F.layer_norm(x, self.scale.shape, self.scale, self.shift, self.eps)
        mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
        # the biased variance (divide by emb_dim, not emb_dim - 1), as GPT-2 was trained
        var = x.var(dim=-1, keepdim=True, unbiased=False)  # (..., 1)
        norm_x = (x - mean) / (var + self.eps).sqrt()  # eps: no division by 0
        return self.scale * norm_x + self.shift


class GELU(Module):
    """GPT-2's activation: the tanh approximation of GELU."""

    def forward(self, x):
        if is_fused_enabled():  # the fast path: the formula below as one fused op
            return F.gelu(x, approximate="tanh")
        # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): near x for large positive x,
        # near 0 for large negative x, and smooth (with a small dip) in between
        return 0.5 * x * (1.0 + (_SQRT_2_OVER_PI * (x + 0.044715 * x**3)).tanh())


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)  # a Python float: float32 stays float32


class FeedForward(Module):
    def __init__(self, cfg):
        super().__init__()
        self.layers = Sequential(
            Linear(cfg["emb_dim"], 4 * cfg["emb_dim"]),
            GELU(),
            Linear(4 * cfg["emb_dim"], cfg["emb_dim"]),
        )

    def forward(self, x):  # (b, num_tokens, emb_dim) -> the same shape
        return self.layers(x)


class TransformerBlock(Module):
    def __init__(self, cfg):
        super().__init__()
        self.att = MultiHeadAttention(
            d_in=cfg["emb_dim"],
            d_out=cfg["emb_dim"],
            context_length=cfg["context_length"],
            num_heads=cfg["n_heads"],
            dropout=cfg["drop_rate"],
            qkv_bias=cfg["qkv_bias"],
        )
        self.ff = FeedForward(cfg)
        self.norm1 = LayerNorm(cfg["emb_dim"])
        self.norm2 = LayerNorm(cfg["emb_dim"])
        self.drop_shortcut = Dropout(cfg["drop_rate"])

    def forward(self, x, kv_cache=None):  # (b, num_tokens, emb_dim) -> the same shape
        x = _match_dtype(x, self.norm1.scale)  # else a float64 x spreads through the sum
        shortcut = x  # the attention, added back to its input
        x = self.norm1(x)
        x = self.att(x, kv_cache)  # kv_cache: this block's layer of it, when decoding
        x = self.drop_shortcut(x)
        x = x + shortcut

        shortcut = x  # the feed forward, added back to its input
        x = self.norm2(x)
        x = self.ff(x)
        x = self.drop_shortcut(x)
        return x + shortcut


class GPTModel(Module):
    """in_idx: token ids (b, num_tokens), num_tokens <= context_length
    -> logits (b, num_tokens, vocab_size).

    kv_cache (decoding, ``kv_cache.KVCache``): in_idx are the tokens after the cached
    ones; every block stores their keys and values in the cache and attends to all, and
    only the last position's logits come back, (b, 1, vocab_size)."""

    # a state dict may leave the causal masks out (tinygpt's own files, GPT-2 weights
    # converted): each block keeps the one it built
    _optional_state_keys = (".att.mask",)

    def __init__(self, cfg, dtype=None):
        super().__init__()
        cfg = validate_config(cfg)
        self.cfg = cfg
        self.tok_emb = Embedding(cfg["vocab_size"], cfg["emb_dim"])
        self.pos_emb = Embedding(cfg["context_length"], cfg["emb_dim"])
        self.drop_emb = Dropout(cfg["drop_rate"])
        self.trf_blocks = Sequential(*[TransformerBlock(cfg) for _ in range(cfg["n_layers"])])
        self.final_norm = LayerNorm(cfg["emb_dim"])
        self.out_head = Linear(cfg["emb_dim"], cfg["vocab_size"], bias=False)
        if dtype is not None:
            self.to(dtype)

    def forward(self, in_idx, kv_cache=None):
        in_idx = self.check_input(in_idx)  # (b, num_tokens), on the device
        batch_size, seq_len = in_idx.shape
        # with a cache, the new tokens' positions come after the cached ones
        start = 0 if kv_cache is None else kv_cache.start(seq_len, self.cfg["context_length"])
        tok_embeds = self.tok_emb(in_idx)  # (b, num_tokens, emb_dim)
        pos_embeds = self.pos_emb(xp.arange(start, start + seq_len))  # (num_tokens, emb_dim)
        x = tok_embeds + pos_embeds  # (b, num_tokens, emb_dim)
        x = self.drop_emb(x)
        if kv_cache is None:
            x = self.trf_blocks(x)
        else:  # decoding: each block with its own layer of the cache
            for block, layer_cache in zip(self.trf_blocks, kv_cache.layers):
                x = block(x, layer_cache)
            kv_cache.length += seq_len
            if seq_len > 1:  # the next token needs only the last position: (b, 1, emb_dim)
                x = x[:, -1:, :]
        x = self.final_norm(x)
        logits = self.out_head(x)  # (b, num_tokens, vocab_size)
        return logits

    def _state_value_problem(self, name, array):
        """A mask given to ``load_state_dict`` must be the causal one, the only mask the
        fused attention computes (the book's float masks are, and load as bool)."""
        if not name.endswith(".att.mask"):
            return None
        causal = numpy.triu(numpy.ones(array.shape, dtype=bool), 1)
        if not numpy.array_equal(to_numpy(array) != 0, causal):
            return "is not the causal mask (nonzero exactly above the diagonal)"
        return None

    def check_input(self, in_idx):
        """The ids as an int array (b, num_tokens) of the backend, or a ValueError that
        says what is wrong. Ids from the host are checked there and then copied once;
        ids already on the device cost one synchronisation (per batch) for the range
        check."""
        ids = in_idx.array if isinstance(in_idx, Tensor) else in_idx
        if not isinstance(ids, xp.ndarray):
            ids = rectangular(ids, "input ids")  # a ragged list: a clear ValueError
        if ids.ndim == 1:
            raise ValueError(
                f"input ids must be 2-D (batch, tokens); got shape {ids.shape}. "
                "Add a batch dimension, e.g. ids[None, :] or text_to_token_ids()"
            )
        if ids.ndim != 2:
            raise ValueError(f"input ids must be 2-D (batch, tokens), got shape {ids.shape}")
        if ids.dtype.kind not in "iu":
            raise ValueError(f"input ids must be integers, got dtype {ids.dtype}")
        T, context, vocab = ids.shape[1], self.cfg["context_length"], self.cfg["vocab_size"]
        if T == 0:
            raise ValueError("input has no tokens (shape (B, 0))")
        if T > context:
            raise ValueError(
                f"sequence of {T} tokens is longer than context_length={context}; "
                f"crop it to the last {context} tokens (ids[:, -{context}:])"
            )
        return xp.asarray(token_ids(ids, vocab))


# ----------------------------------------------------------------------------------
# Checks, below the code they guard.

CONFIG_KEYS = tuple(GPT_CONFIG_124M)


def validate_config(cfg):
    """Return a clean copy of ``cfg`` or raise ValueError naming every problem."""
    if not isinstance(cfg, dict):
        raise ValueError(f"config must be a dict like GPT_CONFIG_124M, got {type(cfg).__name__}")
    problems = [f"missing key {k!r}" for k in CONFIG_KEYS if k not in cfg]
    for key in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
        if key in cfg and (problem := int_problem(repr(key), cfg[key])):
            problems.append(problem)
    if "drop_rate" in cfg:
        rate = cfg["drop_rate"]
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0.0 <= rate < 1.0:
            problems.append(f"'drop_rate' must be a number in [0, 1), got {rate!r}")
    for key in set(cfg) - set(CONFIG_KEYS):  # saved with the model as they are
        try:
            json.dumps({key: cfg[key]})
        except (TypeError, ValueError):
            problems.append(f"extra key {key!r} must hold JSON data (numbers, text, lists, "
                            f"dicts), as the config is saved with the model; got "
                            f"{type(cfg[key]).__name__}")
    if "qkv_bias" in cfg and not isinstance(cfg["qkv_bias"], (bool, numpy.bool_)):
        problems.append(f"'qkv_bias' must be True or False, got {cfg['qkv_bias']!r}")
    if not problems and cfg["emb_dim"] % cfg["n_heads"] != 0:
        problems.append(
            f"'emb_dim' ({cfg['emb_dim']}) must be divisible by 'n_heads' ({cfg['n_heads']})"
        )
    if problems:
        raise ValueError("invalid GPT config:\n  " + "\n  ".join(problems))
    clean = dict(cfg)
    for key in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
        clean[key] = int(clean[key])
    clean["drop_rate"] = float(clean["drop_rate"])
    clean["qkv_bias"] = bool(clean["qkv_bias"])
    return clean


__all__ = ["GELU", "GPT_CONFIG_124M", "FeedForward", "GPTModel", "LayerNorm",
           "MultiHeadAttention", "TransformerBlock", "validate_config"]
