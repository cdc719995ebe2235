"""The GPT-2 model of the book's chapter 4, used throughout chapter 5."""

import numpy

from .autograd import Tensor
from .backend import to_numpy, xp
from .nn import Dropout, Embedding, LayerNorm, Linear, Module, Sequential, TransformerBlock

GPT_CONFIG_124M = {
    "vocab_size": 50257,  # GPT-2's BPE vocabulary
    "context_length": 256,  # shortened from 1024, as in the chapter
    "emb_dim": 768,
    "n_heads": 12,
    "n_layers": 12,
    "drop_rate": 0.1,
    "qkv_bias": False,
}

CONFIG_KEYS = tuple(GPT_CONFIG_124M)


def validate_config(cfg):
    """Return a clean copy of ``cfg`` or raise ValueError naming every problem."""
    if not isinstance(cfg, dict):
        raise ValueError(f"config must be a dict like GPT_CONFIG_124M, got {type(cfg).__name__}")
    problems = [f"missing key {k!r}" for k in CONFIG_KEYS if k not in cfg]
    for key in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
        value = cfg.get(key)
        if key in cfg and (
            isinstance(value, bool) or not isinstance(value, (int, numpy.integer)) or value <= 0
        ):
            problems.append(f"{key!r} must be a positive integer, got {value!r}")
    if "drop_rate" in cfg:
        rate = cfg["drop_rate"]
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
            problems.append(f"'drop_rate' must be a number in [0, 1), got {rate!r}")
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


class GPTModel(Module):
    """Token + position embeddings, ``n_layers`` transformer blocks, final norm, output head.

        in_idx: int (B, T), T <= context_length  ->  logits: (B, T, vocab_size)
    """

    _ignored_state_keys = (".att.mask",)  # the torch model's causal-mask buffers

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

    def check_input(self, in_idx):
        """The ids as an int array (B, T) of the backend, or a ValueError that says what is
        wrong. Ids from the host are checked there and then copied once; ids already on
        the device cost one synchronisation (per batch) for the range check."""
        ids = in_idx.data if isinstance(in_idx, Tensor) else in_idx
        if not isinstance(ids, xp.ndarray):
            ids = numpy.asarray(ids)
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
        if ids.size == 0:
            return xp.asarray(ids)
        if isinstance(ids, numpy.ndarray):
            lo, hi = int(ids.min()), int(ids.max())
        else:
            lo, hi = (int(v) for v in to_numpy(xp.stack([ids.min(), ids.max()])))
        if lo < 0 or hi >= vocab:
            raise ValueError(
                f"token id {lo if lo < 0 else hi} is outside the vocabulary [0, {vocab})"
            )
        return xp.asarray(ids)

    def forward(self, in_idx):
        ids = self.check_input(in_idx)  # (B, T)
        T = ids.shape[1]
        tok_embeds = self.tok_emb(ids)  # (B, T, C)
        pos_embeds = self.pos_emb(xp.arange(T))  # (T, C)
        x = self.drop_emb(tok_embeds + pos_embeds)  # (B, T, C)
        x = self.trf_blocks(x)
        x = self.final_norm(x)
        return self.out_head(x)  # (B, T, V)
