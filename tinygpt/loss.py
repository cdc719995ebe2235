"""Chapter 5.1.2: the loss a language model trains on, cross-entropy, and perplexity.

``cross_entropy(logits, targets)`` is the mean of -log(probability of the target token)
over every position: the number ``train_model_simple`` brings down. Its work is done
by one fused op (``fused.FusedCrossEntropy``, forward and backward by hand). ``perplexity``
is exp(loss): the number of tokens the model is as unsure between as if it picked
uniformly among them.
"""

import math

from . import fused
from .backend import xp
from .checks import integer, rectangular
from .fast_path import is_fused_enabled
from .tensor import Tensor


class TargetOutOfRangeError(IndexError, ValueError):
    """A target id outside [0, V): torch's IndexError, and a ValueError (bad input)."""


def cross_entropy(logits, targets, ignore_index=-100):
    """5.1.2's loss: over every position, -log of the probability the model gives the
    token that comes next, averaged. logits (N, V) or (B, T, V), targets (N,) or (B, T)
    int ids; a position whose target is ``ignore_index`` does not count (nan if none
    does, as torch). The book's ``F.cross_entropy(logits.flatten(0, 1),
    targets.flatten())`` is this on the flattened rows."""
    logits, targets = _checked(logits, targets, ignore_index)  # (N, V), (N,)
    if is_fused_enabled():  # the fast path: the steps below as one fused op
        return fused.FusedCrossEntropy.apply(logits, targets, ignore_index=ignore_index)
    # The book's steps. Softmax then log, as log_softmax: the same numbers without
    # exp overflowing or log(0) for a very unlikely token.
    log_probas = logits.log_softmax(dim=-1)  # (N, V)
    counted = targets != ignore_index  # (N,) the positions that count
    rows = xp.arange(targets.shape[0])[counted]
    target_log_probas = log_probas[rows, targets[counted]]  # (n,) the target's log-probability
    avg_log_probas = target_log_probas.mean()  # ()
    neg_avg_log_probas = avg_log_probas * -1  # the loss: lower is better
    return neg_avg_log_probas


def _checked(logits, targets, ignore_index):
    """(logits as a (N, V) float Tensor, targets as an (N,) int array of the backend),
    or a ValueError saying what does not fit ((3, 2) targets for (2, 3, V) logits are
    refused, not flattened into the wrong pairs)."""
    if not isinstance(logits, Tensor):
        logits = Tensor(logits)
    targets = targets.array if isinstance(targets, Tensor) else targets
    if not isinstance(targets, xp.ndarray):
        targets = rectangular(targets, "targets")  # checked on the host, then copied
    integer("ignore_index", ignore_index)
    if logits.ndim not in (2, 3) or 0 in logits.shape:
        raise ValueError(f"logits must be (N, V) or (B, T, V) with no empty axis, got "
                         f"shape {tuple(logits.shape)}")
    if logits.dtype.kind != "f":
        raise ValueError(f"logits must be floating point, got dtype {logits.dtype}")
    if tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"targets of shape {tuple(targets.shape)} do not fit logits of shape "
            f"{tuple(logits.shape)}: they need one id per logits row, shape "
            f"{tuple(logits.shape[:-1])} (logits' shape without the vocabulary axis), as "
            "in the book's cross_entropy(logits.flatten(0, 1), targets.flatten())"
        )
    if logits.ndim == 3:
        logits = logits.reshape(-1, logits.shape[-1])
    targets = targets.reshape(-1)
    if targets.dtype.kind not in "iu":
        raise ValueError(f"targets must be integer token ids, got dtype {targets.dtype}")
    V = logits.shape[1]
    bad = (targets != ignore_index) & ((targets < 0) | (targets >= V))
    if bool(bad.any()):  # device targets: one sync per batch, not per op
        raise TargetOutOfRangeError(
            f"target ids must lie in [0, {V}) or equal ignore_index={ignore_index}; "
            f"found {int(targets[bad][0])}"
        )
    return logits, xp.asarray(targets)


def perplexity(loss):
    """exp(loss) as a Python float (loss: a scalar Tensor, array or number).

    A loss above about 709.78 (a diverged model) has a perplexity beyond the largest
    float: that gives ``inf``, as torch's ``exp`` does, not an OverflowError. NaN stays NaN."""
    value = loss.item() if hasattr(loss, "item") else float(loss)
    try:
        return math.exp(value)
    except OverflowError:
        return math.inf


__all__ = ["TargetOutOfRangeError", "cross_entropy", "perplexity"]
