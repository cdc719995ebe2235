"""Argument checks used across tinygpt, so every message has the same words:

    positive_int("batch_size", 0)          batch_size must be an integer >= 1, got 0
    nonnegative_int("max_new_tokens", 2.0) max_new_tokens must be an integer >= 0, got 2.0 (float)
    token_ids([[1, 97]], 97, "in idx")     token id 97 in idx is outside the vocabulary [0, 97)
    real_problem("lr", float("inf"), 0)    lr must be >= 0 and finite, got inf
    rectangular([[1, 2], [3]], "idx")      idx is ragged: its rows have different lengths
                                           (2 and 1); pad them to one length

A bool is not an integer here (``True`` as a batch size is a mistake), NumPy integers
are; nor is it a number. A failed check raises ValueError; ``int_problem`` and
``real_problem`` return the sentence instead, for validators that list every problem
at once.
"""

import math
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


def integer(name, value):
    """``value`` as an int if it is an integer of any sign (not a bool); else a
    ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r:.60} "
                         f"({type(value).__name__})")
    return int(value)


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


def real_problem(name, value, minimum=None, below=None, *, above=None, maximum=None):
    """Why ``value`` is not a finite real number in the given bounds, or None.

    ``minimum`` / ``maximum`` are inclusive bounds, ``above`` / ``below`` exclusive ones
    (e.g. a beta: ``minimum=0.0, below=1.0``). NaN and infinities always fail."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"{name} must be a number, got {value!r:.60} ({type(value).__name__})"
    x = float(value)
    bounds = [f">= {minimum}" if minimum is not None else None,
              f"> {above}" if above is not None else None,
              f"< {below}" if below is not None else None,
              f"<= {maximum}" if maximum is not None else None]
    rule = " and ".join(b for b in bounds + ["finite"] if b)
    if not math.isfinite(x) or (
            (minimum is not None and x < minimum) or (above is not None and x <= above)
            or (below is not None and x >= below) or (maximum is not None and x > maximum)):
        return f"{name} must be {rule}, got {x}"
    return None


def rectangular(data, name, fix="pad them to one length"):
    """``data`` (a number, a nested list or tuple, a NumPy or CuPy array) as a NumPy
    array; a ragged nesting (rows of different lengths) is a ValueError naming ``name``,
    two of the lengths and ``fix``, instead of NumPy's "inhomogeneous shape"."""
    if not isinstance(data, (list, tuple)):
        return to_numpy(data)
    try:
        array = numpy.asarray(data)
    except ValueError:
        problem = _ragged(data)
        if problem is None:
            raise
        raise ValueError(f"{name} is ragged: {problem}; {fix}") from None
    if array.dtype == object:
        problem = _ragged(data)
        if problem is not None:
            raise ValueError(f"{name} is ragged: {problem}; {fix}")
    return array


def _ragged(data):
    """What makes a nested list ragged (a phrase), or None; one pass, level by level."""
    level = [data]
    while level:
        rows = [v for v in level if isinstance(v, (list, tuple))
                or len(getattr(v, "shape", ())) > 0]
        if not rows:
            return None
        if len(rows) != len(level):
            return "it mixes lists and single numbers at the same depth"
        lengths = [len(v) for v in rows]
        other = next((n for n in lengths if n != lengths[0]), None)
        if other is not None:
            return f"its rows have different lengths ({lengths[0]} and {other})"
        level = [x for v in rows for x in v]
    return None


def token_ids(ids, vocab_size, where=""):
    """``ids`` as int64, checked to be integers in [0, vocab_size); ``where`` (e.g.
    "in idx") names the argument in the message.

    Host ids (a NumPy array or a list) are checked on the host and come back as a
    NumPy array; ids already on the device stay there and cost one synchronisation.
    (Indexing an embedding with a negative id would wrap around instead of failing.)"""
    if not isinstance(ids, (numpy.ndarray, xp.ndarray)):
        ids = rectangular(ids, f"token ids {where}".strip())
    if ids.size == 0:
        return ids.astype(numpy.int64)
    where = f" {where}" if where else ""
    if ids.dtype.kind not in "iu":
        why = " (a value beyond int64, or not a number)" if ids.dtype.kind == "O" else ""
        raise ValueError(f"token ids{where} must be integers, got dtype {ids.dtype}{why}")
    if isinstance(ids, numpy.ndarray):
        lo, hi = int(ids.min()), int(ids.max())
    else:
        lo, hi = (int(v) for v in to_numpy(xp.stack([ids.min(), ids.max()])))
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        raise ValueError(f"token id {bad}{where} is outside the vocabulary [0, {vocab_size})")
    return ids.astype(numpy.int64, copy=False)


def embedding_indices(ids, num_embeddings):
    """``ids`` (an array of the backend) checked as torch's embedding checks them: an
    integer dtype (else RuntimeError) and every id in [0, num_embeddings) (else
    IndexError; NumPy would wrap a negative id around to a row from the end). Ids on the
    device cost one synchronisation."""
    if ids.dtype.kind not in "iu" or ids.dtype == numpy.uint8:
        raise RuntimeError(f"embedding indices must be integers (int64 or int32), got dtype "
                           f"{ids.dtype}")
    if ids.size:
        lo, hi = (int(v) for v in to_numpy(xp.stack([ids.min(), ids.max()])))
        if lo < 0 or hi >= num_embeddings:
            raise IndexError(f"index out of range in self: index {lo if lo < 0 else hi} is "
                             f"outside [0, {num_embeddings}) (the embedding's rows)")
    return ids


def shape(sizes, what="size"):
    """``sizes`` (a sequence of dims) as a tuple of ints, checked as torch checks a new
    tensor's size: a TypeError for a non-integer (2.5 is refused, not cropped), a
    RuntimeError for a negative dim."""
    for n in sizes:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"{what} must be integers, got {n!r:.60} ({type(n).__name__}) "
                            f"in {list(sizes)!r:.80}")
    for n in sizes:
        if n < 0:
            raise RuntimeError(f"Trying to create tensor with negative dimension {n}: "
                               f"{[int(v) for v in sizes]}; {what} must be >= 0")
    return tuple(int(n) for n in sizes)


def dim_index(dim, ndim):
    """``dim`` as an index into ``ndim`` dims (negative ones count from the end), checked
    as torch checks every dim argument: a non-integer is a TypeError, one out of range
    torch's IndexError. A 0-d tensor takes dims -1 and 0, as in torch; ops that add a
    dim (unsqueeze, stack) pass ndim + 1.

        dim_index(-1, 3) -> 2
        dim_index(5, 2)  -> IndexError: Dimension out of range (expected to be in range
                            of [-2, 1], but got 5)"""
    n = ndim if ndim > 0 else 1
    if type(dim) is int and -n <= dim < n:  # the common case first: it runs for every op
        return dim % n
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"a dim must be an integer, got {dim!r:.60} ({type(dim).__name__})")
    if not -n <= dim < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], "
                         f"but got {dim})")
    return int(dim) % n
