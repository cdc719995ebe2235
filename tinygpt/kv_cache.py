"""A key/value cache for fast greedy or sampled decoding (inference only).

The uncached loop of section 5.3 runs the whole window through the model for
every new token, although only the last position's logits are used and the keys
and values of all earlier positions come out the same each time. Here each
layer's keys and values are kept in preallocated buffers, so after one pass over
the prompt ("priming") every new token costs one position's worth of work:

    prime(ids)   ids (B, T)  -> forward over T positions, fill K/V[:, :, :T]
    feed(next)   next (B,)   -> forward over 1 position at index T, attend to K/V[:, :, :T+1]

Both return the next-token logits of the last position only, (B, V): the output
head (the largest matrix of GPT-2) runs on one row per sequence, never on all T.

The forward is the model's own: ``model(ids, kv_cache=cache)`` (``GPTModel.forward``),
through the same modules and parameters as training, in eval mode (no dropout) and
with no autograd graph. Only the attention differs, and only in where its keys and
values come from: ``MultiHeadAttention.forward`` hands its head-split queries, keys
and values to its layer of the cache (``KVCache.layers[i].attend``), which stores the
new keys and values after the cached ones and attends over all of them with
``fused.FusedCausalAttention``, the fast path's own op.

Sliding window. GPT-2 has learned *absolute* position embeddings: once the
sequence is longer than the window, every kept token moves one position to the
left, so all cached keys and values change. A ring buffer that only overwrites
the oldest slot would be wrong. ``feed`` therefore re-primes the cache on the
last ``window`` tokens whenever the window slides; that is exactly what the
uncached loop computes (``model(ids[:, -window:])[:, -1]``), only without the
output head on every position.

On a GPU, ``feed`` while the window has room runs ``KernelDecodeStep``
(``cuda/decode.py``): the same one-position forward as a fixed sequence of CUDA
kernels over preallocated buffers, recorded once as a CUDA graph and replayed for
every token (its twin is ``_forward``, the model's own forward with the cache).

Shapes: B batch, T tokens, C emb_dim, H heads, D head size (C = H * D), V vocab,
L the number of cached positions.
"""

import numpy

from . import fused
from .backend import to_numpy, xp
from .checks import positive_int, rectangular, token_ids
from .cuda.decode import KernelDecodeStep
from .grad_mode import is_grad_enabled, no_grad
from .nn.module import eval_mode


class KVCache:
    """Preallocated key and value buffers, one pair per transformer layer, for
    ``GPTModel.forward(ids, kv_cache=cache)``.

    ``keys[i]`` and ``values[i]`` are (B, H, max_len, D) arrays of the model's dtype;
    the first ``length`` positions along axis 2 are valid. ``layers[i]`` is block i's
    part, the one its attention is given.
    """

    def __init__(self, n_layers, batch_size, n_heads, max_len, head_dim, dtype):
        shape = (batch_size, n_heads, max_len, head_dim)
        self.keys = [xp.zeros(shape, dtype=dtype) for _ in range(n_layers)]
        self.values = [xp.zeros(shape, dtype=dtype) for _ in range(n_layers)]
        self.layers = [CacheLayer(self, i) for i in range(n_layers)]
        self.batch_size, self.max_len = batch_size, max_len
        self.length = 0

    def reset(self):
        """Forget the cached positions (the buffers are reused, not reallocated)."""
        self.length = 0

    def start(self, num_tokens, context_length):
        """The position of the first of ``num_tokens`` new tokens (the number cached), or
        a ValueError when the cache or the model's context cannot hold them."""
        room = min(self.max_len, context_length)
        if self.length + num_tokens > room:
            raise ValueError(f"the KV cache holds {room} positions; {self.length} are "
                             f"cached, so {num_tokens} more do not fit (reset() first)")
        return self.length

    @property
    def nbytes(self):
        return sum(int(k.nbytes) + int(v.nbytes) for k, v in zip(self.keys, self.values))


class CacheLayer:
    """One transformer block's keys and values in a ``KVCache``."""

    def __init__(self, cache, index):
        self.cache, self.index = cache, index

    def attend(self, queries, keys, values):
        """Causal attention of new positions over the cached ones and themselves.

        queries, keys, values: (b, num_heads, num_tokens, head_dim) Tensors of the
        positions [L, L + num_tokens), L = cache.length. Their keys and values are stored
        after the cached ones; then the queries attend to all L + num_tokens keys with
        ``fused.FusedCausalAttention``, whose mask lets each query see the keys up to its own
        position. -> context_vec (b, num_heads, num_tokens, head_dim)."""
        if is_grad_enabled() and queries.requires_grad:
            raise RuntimeError("the KV cache is for decoding; run the model under "
                               "no_grad() (the cached keys carry no gradient)")
        cache = self.cache
        start = cache.length  # GPTModel.forward checked that the new positions fit
        end = start + keys.shape[2]
        cached_keys, cached_values = cache.keys[self.index], cache.values[self.index]
        cached_keys[:, :, start:end] = keys.array
        cached_values[:, :, start:end] = values.array
        return fused.FusedCausalAttention.apply(
            queries, cached_keys[:, :, :end], cached_values[:, :, :end])  # views: no copy


class CachedDecoder:
    """Next-token logits for a growing batch of sequences, with a KV cache.

    ``prime(ids)`` then ``feed(next_ids)`` once per generated token give, at every step,
    the same logits as the uncached ``model(seq[:, -window:]).array[:, -1, :]`` where
    ``seq`` is the prompt plus every token fed so far (to float32 rounding).

    model: a ``tinygpt.model.GPTModel``.  batch_size: rows per call.
    window: how many tokens the model sees (the book's ``context_size``), at most the
    model's ``context_length``; default: the context length.
    """

    def __init__(self, model, batch_size, window=None):
        cfg = model.cfg
        context_length = int(cfg["context_length"])
        batch_size = positive_int("batch_size", batch_size)
        window = positive_int("window", window, optional=True) or context_length
        if not 1 <= window <= context_length:
            raise ValueError(
                f"window must be in [1, context_length={context_length}], got {window}"
            )
        self.model, self.window = model, window
        n_heads = int(cfg["n_heads"])
        self.head_dim = int(cfg["emb_dim"]) // n_heads
        self.cache = KVCache(int(cfg["n_layers"]), int(batch_size), n_heads, window,
                             self.head_dim, model.tok_emb.weight.array.dtype)
        # The token ids now in the cache (B, window), on the host; the first cache.length
        # are valid. Kept so the window can be re-primed when it slides.
        self.ids = numpy.zeros((int(batch_size), window), dtype=numpy.int64)
        self._step = KernelDecodeStep(self) if KernelDecodeStep.applies(self) else None
        # eval_mode's walk over the modules, done once: the model's structure does not
        # change while it decodes
        self._all_modules = model.modules()

    # --- the public steps ---------------------------------------------------------------
    def prime(self, ids):
        """Reset the cache and run the last ``window`` tokens of ``ids`` (B, T).

        Returns the logits of the last position, (B, V)."""
        ids = rectangular(ids, "ids")  # ids are checked on the host (a no-op for host ids)
        if ids.ndim != 2 or ids.shape[0] != self.cache.batch_size or ids.shape[1] == 0:
            raise ValueError(
                f"prime expects ids of shape ({self.cache.batch_size}, T) with T >= 1, "
                f"got {tuple(ids.shape)}"
            )
        ids = token_ids(ids[:, -self.window:], self.model.cfg["vocab_size"])
        T = ids.shape[1]
        self.cache.reset()
        self.ids[:, :T] = ids
        return self._forward(ids)  # host ids: the model checks them without a sync

    def feed(self, next_ids):
        """Append one token per row, next_ids (B,) or (B, 1); return the new logits (B, V).

        While the window has room this is a one-position forward; once it is full, the
        window slides by one and the cache is re-primed on its ``window`` tokens."""
        if self.cache.length == 0:
            raise RuntimeError("call prime(prompt_ids) before feed()")
        next_ids = rectangular(next_ids, "next_ids").reshape(-1)
        if next_ids.shape[0] != self.cache.batch_size:
            raise ValueError(
                f"feed expects {self.cache.batch_size} token ids (one per row), "
                f"got {next_ids.shape[0]}"
            )
        next_ids = token_ids(next_ids, self.model.cfg["vocab_size"])
        L = self.cache.length
        if L < self.window:
            self.ids[:, L] = next_ids
            if self._step is not None:
                logits = self._step(next_ids, L)
                self.cache.length = L + 1
                return logits
            return self._forward(next_ids[:, None])
        # Window full: drop the oldest token and recompute every position (the position
        # embeddings of all kept tokens have changed).
        self.ids[:, :-1] = self.ids[:, 1:].copy()
        self.ids[:, -1] = next_ids
        self.cache.reset()
        return self._forward(self.ids)

    # --- the inference forward --------------------------------------------------------
    def _forward(self, ids):
        """Run ids (B, Tn) at positions [L, L + Tn), L = cache.length, through the model
        with the cache (eval mode, no graph), which grows by Tn.

        Returns the last position's logits (B, V)."""
        with eval_mode(self.model, self._all_modules), no_grad():
            return self.model(ids, kv_cache=self.cache).array[:, -1, :]


def cached_next_logits(model, ids, window=None):
    """One-shot helper: the last position's logits (B, V) of ``ids`` (B, T) as a NumPy
    array, computed by the cache's forward (for checks against ``model(ids)``)."""
    ids = to_numpy(ids)
    decoder = CachedDecoder(model, ids.shape[0], window)
    return to_numpy(decoder.prime(ids))


__all__ = ["CacheLayer", "CachedDecoder", "KVCache", "cached_next_logits"]
