"""Text generation: the book's loops of sections 4.7 and 5.3, and a fast generator beside them.

``generate_text_simple`` (section 4.7) and ``generate`` (listing 5.4) are the loops a
learner reads in the book, on tinygpt Tensors: crop the sequence to the last
``context_size`` tokens, run the model, keep the last position's logits, choose the next
token, append it, repeat. ``generate`` chooses with top-k (``sampling.top_k_filter``, the
book's ``topk`` + ``where``), temperature scaling, ``softmax`` and ``multinomial``, or
``argmax`` at temperature 0, and stops at ``eos_id``.

``generate_fast`` makes the same choices with what the command line and the demos need:

- a KV cache (``tinygpt.kv_cache``): the prompt is run once and then one position per new
  token; past the context window the cache is re-primed on the sliding window, so the
  tokens equal the uncached loop's (``use_cache=False`` reruns the whole window);
- top-p (nucleus) filtering after top-k and temperature (``tinygpt.sampling``), and
  top-k that keeps exactly k tokens when logits tie at the k-th value
  (``top_k_filter``'s ``exact=True`` rule);
- a seeded generator (``rng``); the draw is ``multinomial``'s, so for one generator state
  ``generate`` and ``generate_fast`` sample the same tokens from the same probabilities;
- ``eos_id`` per row of a batch. A row that produces ``eos_id`` is finished; from then on
  its new positions hold ``eos_id`` (the padding value: decode a row up to its first
  ``eos_id``). Generation stops as soon as every row has finished, and the step on which
  the last row finishes is not appended. So for one prompt the result is the book's (the
  EOS token is not appended), and each row of a batch is its own single-prompt result
  followed by ``eos_id`` padding;
- ``generate_stream`` yields each new column of token ids, (B,), as soon as it is chosen;
  ``generate_fast`` collects it.

Prompts: an int Tensor, array or nested list of shape (B, T) (a flat list or 1-D array is
one prompt, B = 1); every row has the same length T >= 1. ``generate`` answers with an
int64 Tensor (B, T + n), as the book's does; ``generate_text_simple`` and
``generate_fast`` answer a Tensor prompt with a Tensor and anything else with a NumPy array.

Generation always has eval-mode semantics (no dropout) and records no autograd graph:
every loop, cached or not, switches the model to eval mode around each forward pass and
then gives every submodule its previous mode back, so a model in training mode is still
in training mode afterwards (and between the yields of a stream).
"""

import numpy

from .backend import resolve_rng, to_numpy, xp
from .checks import nonnegative_int, positive_int, rectangular, token_ids
from .grad_mode import no_grad
from .kv_cache import CachedDecoder
from .nn.module import eval_mode
from .sampling import sample_next_token, top_k_filter, validate_sampling_args
from .tensor import Tensor
from .tensors import argmax, cat, multinomial, softmax

# ----------------------------------------------------------------------------------
# The book's greedy loop.


def generate_text_simple(model, idx, max_new_tokens, context_size):
    """The book's greedy decoding loop (no cache), on tinygpt Tensors.

    idx: int (B, T) Tensor, array or list -> int64 (B, T + max_new_tokens), a Tensor for
    a Tensor, else a NumPy array.
    Each step runs the model on the last ``context_size`` tokens and appends the argmax
    of the last position's probabilities (softmax keeps the logits' order, so it is the
    most likely token; ties: the lowest id, like ``torch.argmax``). Unlike the book's,
    the loop checks its arguments first (``_check_generate_args``) and runs the model in
    eval mode (each submodule's previous mode comes back after each step).
    """
    prompt = idx  # the answer comes back in the prompt's kind
    idx, context_size = _check_generate_args(model, idx, max_new_tokens, context_size)
    for _ in range(max_new_tokens):
        idx_cond = idx[:, -context_size:]  # the tokens the model can see, (B, <= context_size)
        with no_grad(), eval_mode(model):
            logits = model(idx_cond)  # (B, T, vocab)
        logits = logits[:, -1, :]  # only the last position predicts the next token, (B, vocab)
        probas = softmax(logits, dim=-1)  # (B, vocab)
        idx_next = argmax(probas, dim=-1, keepdim=True)  # (B, 1) the most likely token
        idx = cat((idx, idx_next), dim=1)  # (B, T + 1)
    return _like_prompt(idx, prompt)


# ----------------------------------------------------------------------------------
# Listing 5.4: the book's loop with top-k, temperature and EOS.


def generate(model, idx, max_new_tokens, context_size, temperature=0.0, top_k=None, eos_id=None):
    """Listing 5.4: up to ``max_new_tokens`` tokens after the prompt ``idx`` (B, T).

    top_k: keep the logits at or above the k-th largest, the rest become -inf (logits
    tied at the k-th value all stay, as in the book: ``top_k_filter``). temperature: 0
    picks the most likely token (greedy); > 0 divides the logits by it and draws the
    token with ``multinomial`` from tinygpt's generator (``manual_seed``). eos_id: stop,
    without appending it, when it comes (one prompt only: ``generate_fast`` tracks it per
    row of a batch).
    Returns an int64 Tensor (B, T + n), n <= max_new_tokens. A ``context_size`` above the
    model's ``context_length`` is clamped to it. Bad arguments raise ValueError.
    """
    idx, context_size = _check_generate_args(
        model, idx, max_new_tokens, context_size, temperature, top_k, eos_id)
    for _ in range(max_new_tokens):
        idx_cond = idx[:, -context_size:]  # the tokens the model can see, (B, <= context_size)
        with no_grad(), eval_mode(model):
            logits = model(idx_cond)  # (B, T, vocab)
        logits = logits[:, -1, :]  # only the last position predicts the next token, (B, vocab)

        if top_k is not None:  # top-k: logits below the k-th largest can never be drawn
            logits = top_k_filter(logits, top_k)  # the book's topk + where, (B, vocab)

        if temperature > 0.0:  # flatter (T > 1) or sharper (T < 1), then a random draw
            logits = logits / temperature
            probs = softmax(logits, dim=-1)  # (B, vocab)
            idx_next = multinomial(probs, num_samples=1)  # (B, 1)
        else:  # greedy decoding
            idx_next = argmax(logits, dim=-1, keepdim=True)  # (B, 1)

        if idx_next == eos_id:  # end of text: stop without appending it
            break
        idx = cat((idx, idx_next), dim=1)  # (B, T + 1)
    return idx


# ----------------------------------------------------------------------------------
# The fast generator: a KV cache, top-p, a seeded generator, batches with per-row EOS.


def generate_fast(
    model, idx, max_new_tokens, context_size, temperature=0.0, top_k=None, eos_id=None,
    top_p=None, rng=None, use_cache=True,
):
    """``generate`` with a KV cache, top-p, a seeded generator and per-row EOS.

    idx: int (B, T) Tensor, array or list (see the module docstring).  Returns int64
    (B, T + n), a Tensor for a Tensor prompt, else a NumPy array; n <= max_new_tokens
    (n < max_new_tokens only when every row has hit ``eos_id``).

    context_size: how many trailing tokens the model sees (the book passes the model's
    ``context_length``); a larger value is clamped to ``context_length``.
    temperature: 0 (default) = greedy; > 0 divides the logits before sampling (a
    temperature so small that the division would overflow acts as greedy, not NaN).
    top_k: keep exactly the k most likely tokens (ties: lowest ids; ``top_k_filter``'s
    ``exact=True`` rule).  top_p: keep the
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
    """Like ``generate_fast``, but yields each new column of token ids, int64 (B,), as it is
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
        with eval_mode(self.model), no_grad():
            return self.model(self.ids).array[:, -1, :]


# ----------------------------------------------------------------------------------
# Argument checks and helpers.


def _like_prompt(ids, idx):
    """The generated ids (a NumPy array or a Tensor) as a Tensor if the prompt ``idx``
    was one, else as a NumPy array."""
    if isinstance(idx, Tensor):
        return ids if isinstance(ids, Tensor) else Tensor(ids)
    return to_numpy(ids.array) if isinstance(ids, Tensor) else ids


def _check_prompt(idx, model):
    """idx (Tensor, array or list) -> int64 NumPy array (B, T), or a ValueError."""
    if getattr(model, "cfg", None) is None:
        raise TypeError(f"model must be a tinygpt GPTModel (with its .cfg), got "
                        f"{type(model).__name__}")
    if isinstance(idx, Tensor):
        idx = idx.array
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


def _check_generate_args(model, idx, max_new_tokens, context_size, temperature=0.0,
                         top_k=None, eos_id=None):
    """The book loops' arguments checked (``generate_text_simple`` passes the first four):
    (idx as an int64 Tensor (B, T), the window)."""
    ids = _check_prompt(idx, model)
    nonnegative_int("max_new_tokens", max_new_tokens)
    window = _check_context_size(context_size, model)
    vocab = int(model.cfg["vocab_size"])
    validate_sampling_args(temperature, top_k, None, vocab)
    if _check_eos(eos_id, vocab) is not None and ids.shape[0] > 1:
        raise NotImplementedError(
            "generate stops at eos_id for one prompt only (as the book's); for a batch use "
            "generate_fast, which tracks eos_id per row and pads finished rows with it")
    return Tensor(ids), window


def _check_eos(eos_id, vocab):
    eos_id = positive_int("eos_id", eos_id, 0, optional=True)  # a token id, or None
    if eos_id is not None and eos_id >= vocab:
        raise ValueError(f"eos_id {eos_id} is outside the vocabulary [0, {vocab})")
    return eos_id


__all__ = [
    "UncachedDecoder", "generate", "generate_fast", "generate_stream", "generate_text_simple",
]
