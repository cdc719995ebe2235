"""Decoding strategies of section 5.3: temperature scaling, top-k and top-p (nucleus) sampling.

The book's helpers are here as the book writes them: ``softmax_with_temperature`` (scale,
then ``softmax``), ``print_sampled_tokens`` (``multinomial`` draws counted with
``bincount``) and ``top_k_filter`` (section 5.3.2's ``topk`` + ``where``, which listing
5.4's ``generate`` in ``tinygpt/generation.py`` calls). ``top_k_filter`` holds the one
top-k rule, with the ties as its argument: ``exact=False`` keeps every logit tied at the
k-th value (the book's), ``exact=True`` keeps exactly k (the fast pipeline's, below).

The rest is the fast generator's step, in NumPy, no model: these functions turn
next-token logits into filtered logits, exact probabilities or sampled token ids.
``generate_fast`` calls ``sample_next_token(logits[:, -1, :], ...)`` once per step.

Shapes: ``logits`` is ``(B, V)`` (a batch of rows, each processed independently) or
``(V,)`` (one row). Everything works along the last axis.

The pipeline, in the book's order (listing 5.4), then nucleus filtering on top::

    logits --top-k--> keep exactly k per row, others -inf
           --/ T----> temperature scaling (T > 0; T == 0 means greedy, no scaling)
           --top-p--> keep the smallest set of most probable tokens with mass >= p
           --softmax-> probabilities      --multinomial--> token ids

Tie-breaking rule (used everywhere, documented once): among equal logits the
LOWER token id ranks first. Greedy decoding picks the first maximum, like
``torch.argmax``; top-k keeps exactly ``k`` tokens even when several logits tie at
the k-th value (``top_k_filter(..., exact=True)``'s mask; the book's ``logits < min_val``
test, ``exact=False``, would keep them all); top-p grows its set in the same order.

Inputs are NumPy or CuPy arrays, lists, or tinygpt ``Tensor``s. The work is done on
the host in NumPy (its softmax is ``ops.softmax_array``, tinygpt's one softmax on raw
arrays); given a Tensor, a function answers with Tensors, otherwise with NumPy arrays.

Section 5.3's toy vocabulary of nine words is here too: ``TOY_VOCAB`` (word -> id),
``TOY_INVERSE_VOCAB`` (id -> word) and ``TOY_NEXT_TOKEN_LOGITS``, the logits the book
imagines after "every effort moves you".

Dtypes: float32 and float64 arrays keep their dtype; anything else (lists, ints,
float16) becomes float32. Returned probabilities are never promoted to float64;
float64 is used internally only for cumulative sums (top-p mass, sampling CDF),
where float32 would drift over a 50,257-token vocabulary.
"""

import numbers

import numpy as np

from tinygpt import tensors
from tinygpt.backend import DEFAULT_DTYPE, resolve_rng, to_numpy
from tinygpt.checks import positive_int, rectangular
from tinygpt.ops import softmax_array
from tinygpt.tensor import Tensor, first_k_mask

# A nucleus whose mass falls short of p by less than this counts as reaching p.
# Probabilities computed from float32 logits are only good to ~1e-7, so a boundary
# such as p = 0.75 for probabilities (0.5, 0.25, 0.25) must not flip on rounding.
TOP_P_TOLERANCE = 1e-6

# Section 5.3's nine-word vocabulary, and the next-token logits of its example.
TOY_VOCAB = {
    "closer": 0,
    "every": 1,
    "effort": 2,
    "forward": 3,
    "inches": 4,
    "moves": 5,
    "pizza": 6,
    "toward": 7,
    "you": 8,
}
TOY_INVERSE_VOCAB = {v: k for k, v in TOY_VOCAB.items()}
TOY_NEXT_TOKEN_LOGITS = np.array(
    [4.51, 0.89, -1.90, 6.75, 1.63, -1.62, -1.89, 6.28, 1.79], dtype=np.float32
)


# ----------------------------------------------------------------------------- section 5.3


def softmax_with_temperature(logits, temperature):
    """Section 5.3.1: the logits divided by the temperature, then softmax (last axis).

    T > 1 flattens the distribution, T < 1 sharpens it; T must be > 0. Returns a Tensor,
    as ``torch.softmax`` does. Like torch's, a T so small that logits / T overflows
    (1e-40) gives NaN; ``next_token_probabilities`` handles that limit (one-hot at the
    maximum).
    """
    logits = _check_book_temperature(logits, temperature)
    scaled_logits = logits / temperature
    return tensors.softmax(scaled_logits, dim=-1)


def top_k_filter(logits, top_k, *, exact=False):
    """Section 5.3.2's top-k: in each row, the logits below the ``top_k``-th largest become
    -inf, so softmax gives them probability 0 and they are never drawn.

    logits: (..., V) Tensor (or anything ``tensor`` takes) -> a new Tensor, same shape.
    top_k: an integer, 1 <= top_k <= V.
    exact: what happens to logits tied with the ``top_k``-th largest value:

    - False, the book's steps (what listing 5.4's ``generate`` calls): ``topk`` finds the
      k largest, the last of them is the row's ``min_val``, and ``where`` sets every logit
      below it to -inf. Logits tied at ``min_val`` all stay: a row may keep more than k.
    - True: exactly ``top_k`` per row stay, the ones ``topk`` returns (ties: the lowest
      ids). This is the rule of ``process_logits``, ``generate_fast`` and the command
      line, which call the same mask (``_top_k_mask``). The logits must not be NaN.
    """
    logits = tensors.as_tensor(logits)
    top_k = _check_top_k(top_k, logits.shape[-1] if logits.ndim else 1)
    if exact:
        keep = Tensor(_top_k_mask(_no_nan(to_numpy(logits.array)), top_k))  # (..., V) bool
        return tensors.where(keep, logits, tensors.tensor(float("-inf")))
    top_logits, _ = tensors.topk(logits, top_k)  # (..., k) the k largest, largest first
    min_val = top_logits[..., -1:]  # (..., 1): each row against its own k-th largest
    return tensors.where(logits < min_val, tensors.tensor(float("-inf")), logits)


# ----------------------------------------------------------------------------- arguments


def validate_sampling_args(temperature, top_k, top_p, vocab_size):
    """Check the decoding settings; return them normalised as ``(float, int|None, float|None)``.

    - ``temperature``: a finite number >= 0 (0 = greedy decoding).
    - ``top_k``: None, or an integer with 1 <= top_k <= vocab_size.
    - ``top_p``: None, or a number in (0, 1].
    - ``vocab_size``: the number of logits per row (None skips the top_k upper bound).

    Raises ValueError with a message that names the argument, the value and the fix.
    """
    t = _check_temperature(temperature)

    k = _check_top_k(top_k, vocab_size, optional=True)

    p = None
    if top_p is not None:
        if isinstance(top_p, bool) or not isinstance(top_p, numbers.Real):
            raise ValueError(
                f"top_p must be None or a number in (0, 1], got {top_p!r} ({type(top_p).__name__})"
            )
        p = float(top_p)
        if not (0.0 < p <= 1.0):  # also rejects NaN
            raise ValueError(
                f"top_p must be in (0, 1] (the probability mass to keep), got {p}; "
                "use top_p=None or 1.0 to disable nucleus filtering"
            )
    return t, k, p


def _check_top_k(top_k, vocab_size, optional=False):
    """top_k as an int in [1, vocab_size] (None skips the upper bound; with ``optional``,
    top_k=None passes as None), or a ValueError that says how to fix it."""
    k = positive_int("top_k", top_k, optional=optional, hint="; it is the number of "
                     "candidates to keep, e.g. top_k=25 (top_k=None turns top-k filtering off)")
    if k is not None and vocab_size is not None and k > int(vocab_size):
        raise ValueError(
            f"top_k={k} is larger than the vocabulary size {int(vocab_size)}; "
            f"use top_k <= {int(vocab_size)} or top_k=None"
        )
    return k


def _check_book_temperature(logits, temperature):
    """softmax_with_temperature's arguments checked: the logits as a float Tensor."""
    if _check_temperature(temperature) == 0.0:
        raise ValueError(
            "softmax_with_temperature needs temperature > 0 (it divides the logits by T); "
            "for greedy decoding use next_token_probabilities(logits, 0.0) or "
            "sample_next_token(logits, temperature=0.0)"
        )
    return Tensor(_as_float_array(logits))


def _check_temperature(temperature):
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise ValueError(
            f"temperature must be a number >= 0 (0 = greedy), got {temperature!r} "
            f"({type(temperature).__name__})"
        )
    t = float(temperature)
    if not np.isfinite(t):
        raise ValueError(f"temperature must be finite, got {t}; use e.g. temperature=1.0")
    if t < 0.0:
        raise ValueError(
            f"temperature must be >= 0, got {t}; use 0.0 for greedy decoding "
            "or a positive value such as 1.0 for sampling"
        )
    return t


# ----------------------------------------------------------------------------- helpers


def _like_input(result, original):
    """``result`` (an array or a tuple of them) as Tensors if ``original`` is a Tensor."""
    if not isinstance(original, Tensor):
        return result
    if isinstance(result, tuple):
        return tuple(Tensor(r) for r in result)
    return Tensor(result)


def _as_float_array(a):
    """A NumPy array on the CPU; float32/float64 arrays kept, everything else float32."""
    if isinstance(a, Tensor):
        a = a.array
    arr = np.asarray(rectangular(a, "logits"))
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"logits must be real numbers, got dtype {arr.dtype}")
    # A Python list of floats would become float64: only real arrays keep their dtype.
    if not hasattr(a, "dtype") or arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(DEFAULT_DTYPE)
    return arr


def _prepare(logits, temperature, top_k, top_p):
    """Validate logits and settings. Returns (x (B, V), was_1d, T, k, p)."""
    x = _as_float_array(logits)
    if x.ndim not in (1, 2):
        hint = " (take the last position first: logits[:, -1, :])" if x.ndim == 3 else ""
        raise ValueError(f"logits must have shape (B, V) or (V,), got shape {x.shape}{hint}")
    if x.shape[-1] == 0:
        raise ValueError(f"logits have an empty vocabulary axis: shape {x.shape}")
    t, k, p = validate_sampling_args(temperature, top_k, top_p, x.shape[-1])
    _no_nan(x)
    if np.isposinf(x).any():
        raise ValueError("logits contain +inf; check the model output")
    was_1d = x.ndim == 1
    x2 = x.reshape(1, -1) if was_1d else x  # (B, V)
    if np.isneginf(x2).all(axis=-1).any():
        raise ValueError("a row of logits is entirely -inf: no token can be chosen")
    return x2, was_1d, t, k, p


def _scale(x, t):
    """x / t along the last axis (t > 0; a Python float keeps float32).

    Where that would overflow (t -> 0+: 1e-40, 5e-324), the row is shifted by its
    maximum first: softmax and sampling do not change under a shift, and (x - max) / t
    cannot overflow upwards. The maximum becomes 0 and the other logits <= 0, mostly
    -inf: softmax gives greedy's token (logits tied exactly at the maximum share it
    evenly, as at any t > 0) where x / t would give NaN from inf - inf."""
    if t == 0.0 or x.size == 0:
        return x / t if t else x
    largest, tiny = float(np.finfo(x.dtype).max), float(np.finfo(x.dtype).smallest_subnormal)
    reach = np.max(np.abs(np.where(np.isfinite(x), x, 0.0)), axis=-1, keepdims=True)
    # A quarter of the largest float: t rounded into float32 may be a little smaller.
    # (Python floats here: a limit beyond float32 must not be cast into it.)
    limit = largest * t * 0.25
    cold = reach >= limit if limit < largest else np.zeros(reach.shape, dtype=bool)
    cold |= t < tiny  # t itself rounds to 0 (or to a few bits) in x's dtype
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        out = x / t
        if cold.any():
            top = np.max(x, axis=-1, keepdims=True)
            shifted = x - np.where(np.isfinite(top), top, 0.0)  # <= 0; 0 at the maximum
            # 0 / t is NaN when t rounds to 0 in float32: the maximum stays 0 instead
            out = np.where(cold, np.where(shifted == 0, 0.0, shifted / t), out)
    return out


def _top_k_mask(x, k):
    """(..., V) host logits without NaN -> (..., V) bool with exactly k True per row: the
    k largest logits, those ``tensors.topk`` picks (logits tied at the k-th value: the
    lowest ids). The one rule of ``top_k_filter(..., exact=True)`` and ``process_logits``."""
    if k >= x.shape[-1]:
        return np.ones(x.shape, dtype=bool)
    return first_k_mask(-x, k)  # on the host: no round trip through the device


def _no_nan(x):
    """x, or a ValueError if it holds NaN (no token can rank against a NaN)."""
    if x.dtype.kind == "f" and np.isnan(x).any():
        raise ValueError("logits contain NaN; check the model output (e.g. a diverged run)")
    return x


def _nucleus_mask(x, p):
    """(B, N) temperature-scaled logits -> (B, N) bool: the top-p nucleus of each row.

    Sort each row by descending logit (stable: ties keep column order, i.e. lowest id
    first) and keep a token while the mass of the tokens ranked before it is still
    below p: that is the smallest prefix whose mass reaches p. The first token is
    always kept.
    """
    order = np.argsort(-x, axis=-1, kind="stable")  # (B, N) descending
    sorted_logits = np.take_along_axis(x, order, axis=-1)
    # float64 for the running sum: 50k float32 additions drift by more than the tolerance.
    probs = softmax_array(sorted_logits.astype(np.float64), axis=-1)  # (B, N)
    cum = np.cumsum(probs, axis=-1)
    mass_before = np.concatenate([np.zeros_like(cum[:, :1]), cum[:, :-1]], axis=-1)
    keep_sorted = mass_before < p - TOP_P_TOLERANCE
    keep_sorted[:, 0] = True  # at least one token survives, however small p is
    keep = np.empty_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)  # back to column order
    return keep


def _filter(x, t, k, p):
    """Top-k, temperature, top-p on validated logits x (B, V); always a new array."""
    B, V = x.shape
    keep = None  # (B, V) bool, None = keep everything
    if k is not None and k < V:
        keep = _top_k_mask(x, k)
    out = _scale(x, t)
    if p is not None and p < 1.0:
        if keep is None:
            keep = _nucleus_mask(out, p)
        else:
            # Only the k survivors can enter the nucleus: sort k logits per row, not V.
            cand = np.nonzero(keep)[1].reshape(B, k)  # (B, k) their ids, ascending
            in_nucleus = _nucleus_mask(np.take_along_axis(out, cand, axis=-1), p)
            keep = np.zeros_like(keep)
            np.put_along_axis(keep, cand, in_nucleus, axis=-1)
    if keep is not None:
        return np.where(keep, out, -np.inf)  # Python -inf: dtype kept
    return out.copy() if out is x else out


# ----------------------------------------------------------------------------- public API


def process_logits(logits, temperature=0.0, top_k=None, top_p=None):
    """Filtered, temperature-scaled logits; removed tokens are ``-inf``.

    logits: (B, V) or (V,) -> same shape, a new array (the input is not modified).

    1. top_k: keep exactly ``top_k`` tokens per row (ties: lowest id first).
    2. temperature: divide by T when T > 0. T == 0 means greedy decoding: the logits
       stay unscaled (the caller takes the argmax, which every filter keeps). A T > 0 so
       small that logits / T would overflow gives (logits - max) / T instead, the same
       distribution: 0 at the maximum, -inf (or very negative) elsewhere.
    3. top_p: keep the smallest set of most probable tokens (probabilities after steps
       1-2; at T == 0 the unscaled softmax) whose mass reaches ``top_p`` (up to
       ``TOP_P_TOLERANCE``); always at least one token; ``top_p=1`` keeps everything.
    """
    x, was_1d, t, k, p = _prepare(logits, temperature, top_k, top_p)
    out = _filter(x, t, k, p)
    return _like_input(out[0] if was_1d else out, logits)


def next_token_probabilities(logits, temperature, top_k=None, top_p=None):
    """Exact next-token probabilities under the decoding settings (float32 stays float32).

    logits: (B, V) or (V,) -> probabilities of the same shape, each row summing to 1.
    This is exercise 5.1's "faster and more precise way": instead of counting 1,000
    samples, read P(token) directly. ``temperature == 0`` (greedy) gives a one-hot row
    at the argmax (first maximum, like torch.argmax), whatever top_k/top_p are.
    """
    x, was_1d, t, k, p = _prepare(logits, temperature, top_k, top_p)
    if t == 0.0:
        probs = np.zeros_like(x)
        probs[np.arange(x.shape[0]), np.argmax(x, axis=-1)] = 1.0
    else:
        probs = softmax_array(_filter(x, t, k, p), axis=-1)
    return _like_input(probs[0] if was_1d else probs, logits)


def sample_next_token(logits, temperature=0.0, top_k=None, top_p=None, rng=None):
    """Next token ids, shape (B, 1) int64 for (B, V) logits ((1,) for (V,) logits).

    The trailing axis of length 1 is kept (like ``torch.argmax(..., keepdim=True)`` and
    ``torch.multinomial(probs, 1)``) so the generate loop can
    ``np.concatenate([idx, next_ids], axis=1)``.

    - ``temperature == 0``: greedy argmax of the raw logits (ties: lowest id), even
      when top_k/top_p are set (they never remove the argmax); ``rng`` is not used.
    - otherwise: draw from ``next_token_probabilities`` with ``multinomial`` (one
      uniform number per row from ``rng``), so the same generator state draws the same
      tokens as listing 5.4's ``generate``.

    rng: None (the package generator, ``tinygpt.backend.get_rng()``), an int seed (a
    fresh generator, so the call is reproducible on its own), or a
    ``numpy.random.Generator`` (to continue a stream across calls).
    """
    x, was_1d, t, k, p = _prepare(logits, temperature, top_k, top_p)
    gen = resolve_rng(rng)  # resolved (and checked) even when greedy; nothing is drawn
    if t == 0.0:
        ids = np.argmax(x, axis=-1)  # (B,) first maximum
    else:
        probs = softmax_array(_filter(x, t, k, p), axis=-1)  # (B, V)
        ids = to_numpy(tensors.multinomial(Tensor(probs), 1, generator=gen).array)[:, 0]
    ids = ids.astype(np.int64).reshape(-1, 1)  # (B, 1)
    return _like_input(ids[0] if was_1d else ids, logits)


def print_sampled_tokens(probas, inverse_vocab=None, num_samples=1_000, seed=123):
    """Section 5.3.1: draw ``num_samples`` tokens from ``probas`` (V,) with ``multinomial``,
    count them with ``bincount`` and print "count x word" per vocabulary entry.

    inverse_vocab: id -> word (a dict or a list); by default section 5.3's
    ``TOY_INVERSE_VOCAB``, so ``print_sampled_tokens(probas)`` runs as the book calls it.
    seed: the book seeds torch's generator with 123 first; here an int seeds a generator
    of its own (the package's is left alone), a Generator is used as it is, None is the
    package generator. NumPy's stream differs from torch's, so the counts differ from the
    book's but follow the same distribution (expected count of token i: num_samples *
    probas[i]). Returns the counts, an int64 Tensor (V,).
    """
    probas, inverse_vocab, generator = _check_print_args(probas, inverse_vocab, seed)
    sample = [tensors.multinomial(probas, num_samples=1, generator=generator).item()
              for _ in range(positive_int("num_samples", num_samples))]
    # minlength: every word gets a line, zeros included (the book's stops at the largest id)
    sampled_ids = tensors.bincount(tensors.tensor(sample), minlength=len(probas))
    for i, freq in enumerate(sampled_ids):
        print(f"{freq} x {inverse_vocab[i]}")
    return sampled_ids


def _check_print_args(probas, inverse_vocab, seed):
    """print_sampled_tokens' arguments checked: (probas (V,) Tensor, id -> word, generator)."""
    p = _as_float_array(probas)
    if p.ndim != 1:
        raise ValueError(f"probas must be a 1-D array of shape (V,), got shape {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any() or p.sum() <= 0:
        raise ValueError("probas must be finite, non-negative and have a positive sum")
    if inverse_vocab is None:
        if p.shape[0] != len(TOY_INVERSE_VOCAB):
            raise ValueError(
                f"probas has {p.shape[0]} entries, but without inverse_vocab the words are "
                f"section 5.3's toy vocabulary of {len(TOY_INVERSE_VOCAB)}; pass "
                "inverse_vocab (id -> word) for another vocabulary"
            )
        inverse_vocab = TOY_INVERSE_VOCAB
    for i in range(p.shape[0]):
        try:
            inverse_vocab[i]
        except (KeyError, IndexError):
            raise ValueError(
                f"inverse_vocab has no entry for token id {i}; it must map every id "
                f"0..{p.shape[0] - 1} to a word"
            ) from None
    return Tensor(p), inverse_vocab, resolve_rng(seed, "seed")


__all__ = [
    "TOY_INVERSE_VOCAB",
    "TOY_NEXT_TOKEN_LOGITS",
    "TOY_VOCAB",
    "TOP_P_TOLERANCE",
    "next_token_probabilities",
    "print_sampled_tokens",
    "process_logits",
    "sample_next_token",
    "softmax_with_temperature",
    "top_k_filter",
    "validate_sampling_args",
]
