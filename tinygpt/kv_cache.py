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

The forward below runs over the model's own parameter arrays
(``blk.att.W_query.weight.data`` …) with the forward halves of the training ops
(``ops.Linear``, ``ops.LayerNorm``, ``ops.GELU``, ``ops.CausalAttention``) called
directly: the same maths, with no autograd graph and no dropout (eval-mode semantics).
It reads the arrays when called, so it always uses the model's current weights.

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
every token (``_forward`` is its twin).

Shapes: B batch, T tokens, C emb_dim, H heads, D head size (C = H * D), V vocab,
L the number of cached positions.
"""

import numpy

from . import ops
from .backend import to_numpy, xp
from .checks import positive_int, rectangular, token_ids
from .cuda.decode import KernelDecodeStep


class KVCache:
    """Preallocated key and value buffers, one pair per transformer layer.

    ``keys[i]`` and ``values[i]`` are (B, H, max_len, D) arrays of the model's dtype;
    the first ``length`` positions along axis 2 are valid.
    """

    def __init__(self, n_layers, batch_size, n_heads, max_len, head_dim, dtype):
        shape = (batch_size, n_heads, max_len, head_dim)
        self.keys = [xp.zeros(shape, dtype=dtype) for _ in range(n_layers)]
        self.values = [xp.zeros(shape, dtype=dtype) for _ in range(n_layers)]
        self.batch_size, self.max_len = batch_size, max_len
        self.length = 0

    def reset(self):
        """Forget the cached positions (the buffers are reused, not reallocated)."""
        self.length = 0

    @property
    def nbytes(self):
        return sum(int(k.nbytes) + int(v.nbytes) for k, v in zip(self.keys, self.values))


class CachedDecoder:
    """Next-token logits for a growing batch of sequences, with a KV cache.

    ``prime(ids)`` then ``feed(next_ids)`` once per generated token give, at every step,
    the same logits as the uncached ``model(seq[:, -window:]).data[:, -1, :]`` where
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
        self.n_heads = int(cfg["n_heads"])
        self.head_dim = int(cfg["emb_dim"]) // self.n_heads
        self.dtype = model.tok_emb.weight.data.dtype
        self.cache = KVCache(
            int(cfg["n_layers"]), int(batch_size), self.n_heads, window, self.head_dim,
            self.dtype,
        )
        # The token ids now in the cache (B, window), on the host; the first cache.length
        # are valid. Kept so the window can be re-primed when it slides.
        self.ids = numpy.zeros((int(batch_size), window), dtype=numpy.int64)
        self._step = KernelDecodeStep(self) if KernelDecodeStep.applies(self) else None

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
        return self._forward(xp.asarray(ids))

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
            return self._forward(xp.asarray(next_ids[:, None]))
        # Window full: drop the oldest token and recompute every position (the position
        # embeddings of all kept tokens have changed).
        self.ids[:, :-1] = self.ids[:, 1:].copy()
        self.ids[:, -1] = next_ids
        self.cache.reset()
        return self._forward(xp.asarray(self.ids))

    # --- the inference forward --------------------------------------------------------
    def _forward(self, ids):
        """Run ids (B, Tn) at positions [L, L + Tn), L = cache.length; fill the cache.

        Returns the last position's logits (B, V)."""
        model, cache = self.model, self.cache
        start = cache.length
        B, Tn = ids.shape
        x = model.tok_emb.weight.data[ids]  # (B, Tn, C), a fresh array (fancy indexing)
        x += model.pos_emb.weight.data[start:start + Tn]
        last_layer = len(model.trf_blocks) - 1
        for layer, blk in enumerate(model.trf_blocks):
            h = _layer_norm(x, blk.norm1)
            # The last layer's keys and values are cached for every position, but only
            # the last position's output is used: the rest of that layer runs on 1 row.
            last_only = layer == last_layer and Tn > 1
            h = self._attention(h, blk.att, layer, start, last_only)
            if last_only:
                x = x[:, -1:, :]  # (B, 1, C)
            x += h
            h = _layer_norm(x, blk.norm2)
            h = _linear(h, blk.ff.layers[0])
            h = _gelu(h)
            h = _linear(h, blk.ff.layers[2])
            x += h
        cache.length = start + Tn
        last = _layer_norm(x[:, -1, :], model.final_norm)  # (B, C): only the last position
        return last @ model.out_head.weight.data.T  # (B, V)

    def _attention(self, x, att, layer, start, last_only=False):
        """Causal attention of x (b, Tn, emb_dim) over the cached positions [0, start + Tn):
        the keys and values of the Tn new rows go into the cache, then the queries attend
        with ``ops.CausalAttention``'s forward, the training op's own maths. The output is
        (b, Tn, emb_dim), or (b, 1, emb_dim) for the last row only when ``last_only``."""
        b, num_tokens, d_out = x.shape
        end = start + num_tokens

        def heads(t):  # (b, n, d_out) -> (b, num_heads, n, head_dim)
            return t.reshape(b, t.shape[1], self.n_heads, self.head_dim).transpose(0, 2, 1, 3)

        cached_keys, cached_values = self.cache.keys[layer], self.cache.values[layer]
        cached_keys[:, :, start:end] = heads(_linear(x, att.W_key))
        cached_values[:, :, start:end] = heads(_linear(x, att.W_value))
        keys, values = cached_keys[:, :, :end], cached_values[:, :, :end]  # views
        if last_only:
            x = x[:, -1:, :]
        queries = heads(_linear(x, att.W_query))  # (b, num_heads, n_q, head_dim)
        context_vec = _forward_of(ops.CausalAttention, queries, keys, values)
        context_vec = context_vec.transpose(0, 2, 1, 3).reshape(b, x.shape[1], d_out)
        return _linear(context_vec, att.out_proj)


# ----------------------------------------------------------------------------------
# Layers on raw arrays: the forward halves of the ops in ops.py, called directly, so
# the maths lives in one place (a Function's forward is plain array code; called
# outside Function.apply it records no graph).


def _forward_of(op, *arrays, **options):
    """``op``'s forward on arrays, no graph: its GPU override where one takes them."""
    return op.for_arrays(*arrays, **options).forward(*arrays, **options)


def _linear(x, lin):
    """x (…, in) @ W^T + b, W (out, in)."""
    bias = None if lin.bias is None else lin.bias.data
    return _forward_of(ops.Linear, x, lin.weight.data, bias)


def _layer_norm(x, ln):
    """Layer norm over the last axis with the module's scale, shift and eps."""
    return _forward_of(ops.LayerNorm, x, ln.scale.data, ln.shift.data, eps=ln.eps)


def _gelu(x):
    """GPT-2's tanh GELU."""
    return _forward_of(ops.GELU, x)


def cached_next_logits(model, ids, window=None):
    """One-shot helper: the last position's logits (B, V) of ``ids`` (B, T) as a NumPy
    array, computed by the cache's forward (for checks against ``model(ids)``)."""
    ids = to_numpy(ids)
    decoder = CachedDecoder(model, ids.shape[0], window)
    return to_numpy(decoder.prime(ids))


__all__ = ["CachedDecoder", "KVCache", "cached_next_logits"]
