"""Argument checks used across tinygpt, so every message has the same words:

    positive_int("batch_size", 0)          batch_size must be an integer >= 1, got 0
    nonnegative_int("max_new_tokens", 2.0) max_new_tokens must be an integer >= 0, got 2.0 (float)
    token_ids([[1, 97]], 97, "in idx")     token id 97 in idx is outside the vocabulary [0, 97)

A bool is not an integer here (``True`` as a batch size is a mistake), NumPy integers
are. A failed check raises ValueError; ``int_problem`` returns the sentence instead, for
validators that list every problem at once.
"""

import numbers

import numpy

from .backend import to_numpy, xp


def int_problem(name, value, minimum=1, optional=False):
    """Why ``value`` is not an integer >= ``minimum`` (nor None, if ``optional``), or None."""
    if optional and value is None:
        return None
    expected = ("None or " if optional else "") + f"an integer >= {minimum}"
    subject = f"{name} must be" if name else "must be"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return f"{subject} {expected}, got {value!r} ({type(value).__name__})"
    if value < minimum:
        return f"{subject} {expected}, got {int(value)}"
    return None


def positive_int(name, value, minimum=1, *, optional=False, hint=""):
    """``value`` as an int if it is an integer >= ``minimum`` (or None, if ``optional``);
    else a ValueError naming ``name``, the rule and the value, followed by ``hint``."""
    problem = int_problem(name, value, minimum, optional)
    if problem is not None:
        raise ValueError(problem + hint)
    return None if value is None else int(value)


def nonnegative_int(name, value, *, hint=""):
    """``positive_int`` with 0 allowed."""
    return positive_int(name, value, 0, hint=hint)


def token_ids(ids, vocab_size, where=""):
    """``ids`` as int64, checked to be integers in [0, vocab_size); ``where`` (e.g.
    "in idx") names the argument in the message.

    Host ids (a NumPy array or a list) are checked on the host and come back as a
    NumPy array; ids already on the device stay there and cost one synchronisation.
    (Indexing an embedding with a negative id would wrap around instead of failing.)"""
    if not isinstance(ids, (numpy.ndarray, xp.ndarray)):
        ids = numpy.asarray(ids)
    if ids.size == 0:
        return ids.astype(numpy.int64)
    where = f" {where}" if where else ""
    if ids.dtype.kind not in "iu":
        raise ValueError(f"token ids{where} must be integers, got dtype {ids.dtype}")
    if isinstance(ids, numpy.ndarray):
        lo, hi = int(ids.min()), int(ids.max())
    else:
        lo, hi = (int(v) for v in to_numpy(xp.stack([ids.min(), ids.max()])))
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        raise ValueError(f"token id {bad}{where} is outside the vocabulary [0, {vocab_size})")
    return ids.astype(numpy.int64, copy=False)
