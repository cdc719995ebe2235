"""Text generation loops of sections 4.7 and 5.3: greedy, temperature, top-k, top-p, EOS.

``generate_text_simple`` is the book's greedy loop as written (no cache): crop the
sequence to the last ``context_size`` tokens, run the model, take the argmax of the
last position, append, repeat.

``generate`` is listing 5.4 made correct for batches and fast:

- temperature 0 is greedy (argmax) even when top_k / top_p are set; otherwise the
  logits go through ``tinygpt.sampling`` (exact-k top-k, temperature, nucleus top-p)
  and one token per row is drawn from ``rng``;
- a KV cache (``tinygpt.kv_cache``) is used by default: the prompt is run once and
  then one position per new token; past the context window the cache is re-primed
  on the sliding window, so the tokens equal the uncached loop's
  (``use_cache=False`` runs the book's full-window forward every step);
- ``eos_id`` is tracked per row. A row that produces ``eos_id`` is finished; from then
  on its new positions hold ``eos_id`` (the padding value: decode a row up to its first
  ``eos_id``). Generation stops as soon as every row has finished, and the step on
  which the last row finishes is not appended. So for one prompt the result is
  exactly the book's (the EOS token is not appended), and each row of a batch is its
  own single-prompt result followed by ``eos_id`` padding;
- ``generate_stream`` yields each new column of token ids, (B,), as soon as it is
  chosen (for the command line and demos); ``generate`` collects it.

Prompts: an int Tensor, array or nested list of shape (B, T) (a flat list or 1-D array
is one prompt, B = 1); every row has the same length T >= 1. Results are int64
(B, T + number of generated steps), prompt first: a Tensor for a Tensor prompt (as in
the book), a NumPy array otherwise.

Generation always has eval-mode semantics (no dropout) and records no autograd graph:
the cached path is an inference-only forward without dropout; the uncached path (and
``generate_text_simple``) switches the model to eval mode around its forward passes and
then gives every submodule its previous mode back, so a model in training mode is
still in training mode afterwards (and between the yields of a stream).
"""

import contextlib

import numpy

from .autograd import Tensor, no_grad
from .backend import to_numpy, xp
from .checks import nonnegative_int, positive_int, rectangular, token_ids
from .kv_cache import CachedDecoder
from .sampling import resolve_rng, sample_next_token, validate_sampling_args

# ----------------------------------------------------------------------------------
# The book's greedy loop.


def generate_text_simple(model, idx, max_new_tokens, context_size):
    """The book's greedy decoding loop (no cache).

    idx: int (B, T) Tensor, array or list -> int64 (B, T + max_new_tokens), a Tensor for
    a Tensor, else a NumPy array.
    Each step runs ``model(idx[:, -context_size:])`` and appends the argmax of the
    last position (ties: the lowest id, like ``torch.argmax``). Unlike the book, the
    loop puts the model in eval mode itself (restoring the previous mode after).
    """
    ids = _check_prompt(idx, model)
    max_new_tokens = nonnegative_int("max_new_tokens", max_new_tokens)
    window = _check_context_size(context_size, model)
    with _eval_mode(model), no_grad():
        for _ in range(max_new_tokens):
            idx_cond = ids[:, -window:]  # (B, <= window)
            logits = model(idx_cond).data[:, -1, :]  # (B, V) last position
            idx_next = to_numpy(xp.argmax(logits, axis=-1)).astype(numpy.int64)  # (B,)
            ids = numpy.concatenate([ids, idx_next[:, None]], axis=1)
    return _like_prompt(ids, idx)


# ----------------------------------------------------------------------------------
# Listing 5.4, for batches, with top-p, a seeded generator and a KV cache.


def generate(
    model, idx, max_new_tokens, context_size, temperature=0.0, top_k=None, eos_id=None,
    top_p=None, rng=None, use_cache=True,
):
    """Generate up to ``max_new_tokens`` tokens after each prompt of ``idx``.

    idx: int (B, T) Tensor, array or list (see the module docstring).  Returns int64
    (B, T + n), a Tensor for a Tensor prompt, else a NumPy array; n <= max_new_tokens
    (n < max_new_tokens only when every row has hit ``eos_id``).

    context_size: how many trailing tokens the model sees (the book passes the model's
    ``context_length``); a larger value is clamped to ``context_length``.
    temperature: 0 (default) = greedy; > 0 divides the logits before sampling.
    top_k: keep exactly the k most likely tokens (ties: lowest ids).  top_p: keep the
    smallest most-likely set whose probability reaches p.  Both only matter when
    temperature > 0.
    eos_id: end-of-sequence token; finished rows are padded with it (module docstring).
    rng: None (the package generator, ``tinygpt.backend.get_rng()``), an int seed, or a
    ``numpy.random.Generator``.  use_cache: decode with the KV cache (default) or
    rerun the whole window each step (the book's way; same tokens, slower).

    Raises ValueError for a bad argument (temperature < 0 or not finite, top_k < 1 or
    > vocabulary size, top_p outside (0, 1], max_new_tokens < 0, context_size < 1, an
    empty or ragged prompt, ids or eos_id outside the vocabulary).
    """
    ids = _check_prompt(idx, model)
    stream = generate_stream(
        model, ids, max_new_tokens, context_size, temperature=temperature, top_k=top_k,
        eos_id=eos_id, top_p=top_p, rng=rng, use_cache=use_cache,
    )
    # Grown by doubling as tokens come, never preallocated by max_new_tokens (which may
    # be far more than eos_id or Ctrl-C lets run): memory follows the tokens produced.
    B, T = ids.shape
    out, n, end = ids, T, T + int(max_new_tokens)
    for column in stream:
        if n == out.shape[1]:
            room = min(max(n, 16), end - n)
            out = numpy.concatenate([out, numpy.empty((B, room), numpy.int64)], axis=1)
        out[:, n] = column
        n += 1
    return _like_prompt(out[:, :n].copy() if n < out.shape[1] else out, idx)


def generate_stream(
    model, idx, max_new_tokens, context_size, temperature=0.0, top_k=None, eos_id=None,
    top_p=None, rng=None, use_cache=True,
):
    """Like ``generate``, but yields each new column of token ids, int64 (B,), as it is
    chosen (rows already finished yield ``eos_id``); the prompt is not yielded.

    The arguments are checked when this is called (not at the first ``next``), so a
    bad argument raises ValueError right away. The generator stops after
    ``max_new_tokens`` columns, or earlier once every row has produced ``eos_id`` (that
    last all-EOS column is not yielded).
    """
    ids = _check_prompt(idx, model)
    max_new_tokens = nonnegative_int("max_new_tokens", max_new_tokens)
    window = _check_context_size(context_size, model)
    vocab = int(model.cfg["vocab_size"])
    temperature, top_k, top_p = validate_sampling_args(temperature, top_k, top_p, vocab)
    eos_id = _check_eos(eos_id, vocab)
    gen = resolve_rng(rng)  # once: the steps draw successive numbers
    if not isinstance(use_cache, (bool, numpy.bool_)):
        raise ValueError(f"use_cache must be True or False, got {use_cache!r}")
    return _stream(
        model, ids, max_new_tokens, window, temperature, top_k, top_p, eos_id, gen,
        bool(use_cache),
    )


def _stream(model, ids, max_new_tokens, window, temperature, top_k, top_p, eos_id, gen,
            use_cache):
    """The decoding loop behind ``generate_stream`` (arguments already checked)."""
    if max_new_tokens == 0:
        return
    B = ids.shape[0]
    decoder = CachedDecoder(model, B, window) if use_cache else UncachedDecoder(model, window)
    finished = numpy.zeros(B, dtype=bool)  # rows that have produced eos_id
    logits = decoder.prime(ids)  # (B, V); host ids, copied to the device once
    for step in range(max_new_tokens):
        next_ids = sample_next_token(
            to_numpy(logits), temperature=temperature, top_k=top_k, top_p=top_p, rng=gen,
        )[:, 0]  # (B,) int64
        if eos_id is not None:
            done = finished | (next_ids == eos_id)
            if done.all():
                return  # every row has ended: like the book, the EOS step is not appended
            next_ids[finished] = eos_id  # rows that ended earlier: pad
            finished = done
        yield next_ids
        if step + 1 < max_new_tokens:  # no forward for logits nobody will use
            logits = decoder.feed(next_ids)


class UncachedDecoder:
    """The same ``prime`` / ``feed`` interface as ``CachedDecoder``, the book's way:
    every step runs the model on the whole window ``seq[:, -window:]`` (eval mode, no
    graph) and keeps the last position's logits (B, V)."""

    def __init__(self, model, window):
        self.model, self.window = model, int(window)
        self.ids = None

    def prime(self, ids):
        self.ids = xp.asarray(ids)[:, -self.window:]
        return self._last_logits()

    def feed(self, next_ids):
        next_ids = xp.asarray(next_ids).reshape(-1, 1).astype(self.ids.dtype)
        self.ids = xp.concatenate([self.ids, next_ids], axis=1)[:, -self.window:]
        return self._last_logits()

    def _last_logits(self):
        # eval mode only around the forward: user code between two yields of a stream
        # sees the model in the mode it chose.
        with _eval_mode(self.model), no_grad():
            return self.model(self.ids).data[:, -1, :]


# ----------------------------------------------------------------------------------
# Argument checks and helpers.


@contextlib.contextmanager
def _eval_mode(model):
    """Eval mode inside the block; afterwards every submodule gets its own old mode back."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, mode in modes:
            object.__setattr__(module, "training", mode)


def _like_prompt(ids, idx):
    """The generated ids (a NumPy array) as a Tensor if the prompt was one."""
    return Tensor(ids) if isinstance(idx, Tensor) else ids


def _check_prompt(idx, model):
    """idx (Tensor, array or list) -> int64 NumPy array (B, T), or a ValueError."""
    if getattr(model, "cfg", None) is None:
        raise TypeError(f"model must be a tinygpt GPTModel (with its .cfg), got "
                        f"{type(model).__name__}")
    if isinstance(idx, Tensor):
        idx = idx.data
    if isinstance(idx, (str, bytes)):
        raise TypeError("idx must be token ids, not text; encode the prompt first, e.g. "
                        "text_to_token_ids(text, tokenizer)")
    if isinstance(idx, (list, tuple)):
        ids = rectangular(idx, "idx", "every prompt needs the same number of tokens "
                          "(generate each prompt separately, or crop them)")
        if ids.size == 0:
            ids = ids.astype(numpy.int64)
    else:
        ids = to_numpy(idx)
    if ids.ndim == 1:
        ids = ids[None, :]  # one prompt
    if ids.ndim != 2:
        raise ValueError(f"idx must have shape (batch, tokens), got shape {ids.shape}")
    if ids.shape[0] == 0:
        raise ValueError("idx holds no prompts (batch size 0)")
    if ids.shape[1] == 0:
        raise ValueError(
            "the prompt is empty (0 tokens); give at least one token id, e.g. the "
            "<|endoftext|> id 50256 to generate from nothing"
        )
    return token_ids(ids, int(model.cfg["vocab_size"]), "in idx").copy()  # never the caller's


def _check_context_size(context_size, model):
    """The window the model sees: context_size, clamped to the model's context_length."""
    context_size = positive_int(
        "context_size", context_size, hint="; it is the number of trailing tokens the model "
        "sees (the book passes cfg['context_length'])",
    )
    # The model cannot look further back than its position embeddings reach.
    return min(context_size, int(model.cfg["context_length"]))


def _check_eos(eos_id, vocab):
    eos_id = positive_int("eos_id", eos_id, 0, optional=True)  # a token id, or None
    if eos_id is not None and eos_id >= vocab:
        raise ValueError(f"eos_id {eos_id} is outside the vocabulary [0, {vocab})")
    return eos_id


__all__ = ["UncachedDecoder", "generate", "generate_stream", "generate_text_simple"]
