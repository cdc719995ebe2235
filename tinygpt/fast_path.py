"""One switch for the whole process: the fused ops (the fast path) or the book's steps.

``model.py``'s attention, layer norm and GELU each hold both: the book's steps written out
on Tensors, and beside them one call to the fused op under torch's functional name. The
switch picks which one runs, everywhere at once; both give the same numbers (the tests
check logits, loss and every gradient).

    tinygpt.use_fused(False)               # the book's steps from here on
    with tinygpt.use_fused(False):         # ... or only inside the block
        logits = model(ids)

The default is the fast path. ``TINYGPT_FUSED=0`` in the environment starts the process
on the book's steps instead, so any script or test file runs on either path:
``TINYGPT_FUSED=0 python -m pytest tests/test_parity_torch.py``.
"""

import os

import numpy

_ON, _OFF = ("1", "true", "on", "yes"), ("0", "false", "off", "no")


def _from_environment():
    value = os.environ.get("TINYGPT_FUSED", "1").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(
        f"TINYGPT_FUSED must be 1 (the fused ops) or 0 (the book's steps), got {value!r}"
    )


_enabled = _from_environment()


def is_fused_enabled():
    """True when the models run the fused ops, False when they run the book's steps."""
    return _enabled


class use_fused:  # noqa: N801 - a function to its callers, like torch.set_grad_enabled
    """``use_fused(enabled)`` sets the path for the whole process at once; used as
    ``with use_fused(enabled):`` it lasts for the block, then the previous setting
    returns. Process-wide, not per thread: every thread's models follow it."""

    def __init__(self, enabled=True):
        global _enabled
        if not isinstance(enabled, (bool, numpy.bool_)):
            raise TypeError(f"use_fused takes True or False, got {enabled!r}")
        self.previous = _enabled
        _enabled = bool(enabled)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        global _enabled
        _enabled = self.previous
        return False

    def __repr__(self):
        return f"use_fused({_enabled})"


__all__ = ["is_fused_enabled", "use_fused"]
