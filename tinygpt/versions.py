"""torch's in-place checks: a version counter per set of values, and the check, before an
op's backward, that the values it saved were not changed in place since it ran.

Every tensor has a version counter (torch's ``t._version``). A view and ``detach()`` share
their base's counter, since they share its values; ``.data`` gets a new one, as in torch
(a change through ``.data`` is not tracked). An in-place op bumps the counter.

An op notes the version of each of its inputs when it runs (``note_versions``). Before its
backward, ``check_saved(fn)`` compares: an input whose version moved is torch's error if
the backward reads it (``fn.reads``: torch's saved tensors), and harmless if it does not
(``Add`` reads neither input, so ``y = a + b; a.mul_(2)`` still backpropagates).
"""

import numpy


class VersionCounter:
    """How many times a tensor's values were changed in place, and by which op last."""

    # Class defaults, no __init__: every tensor gets a counter, few are ever bumped.
    value, changed_by, now_made_by = 0, None, None

    def bump(self, changed_by, now_made_by=None):
        """One more in-place change, by the op named ``changed_by``; ``now_made_by``: the
        name of the values' new grad_fn, when the change was recorded in a graph."""
        self.value += 1
        self.changed_by, self.now_made_by = changed_by, now_made_by


def note_versions(fn, tensors, out):
    """Record, on ``fn``, the version of each input (and of its output, if its backward
    reads the output) at the time it runs."""
    fn.counters = tuple([t._counter for t in tensors])
    fn.versions = tuple([c.value for c in fn.counters])
    fn.inputs_meta = tuple([(t.array.shape, t.array.dtype) for t in tensors])  # for errors
    if fn.reads_output:
        fn.output_version = (out._counter, out._counter.value)


def check_saved(fn):
    """torch's RuntimeError if a value ``fn``'s backward reads was changed in place after
    ``fn`` ran. Cheap when nothing changed: one comparison per input."""
    if fn.reads_output:
        counter, version = fn.output_version
        if counter.value != version:
            raise _modified_error(fn, counter, version, (fn.out_shape, fn.out_dtype),
                                  f"output 0 of {fn.name()}")
    for counter, version in zip(fn.counters, fn.versions):
        if counter.value != version:
            break
    else:
        return
    for i in saved_inputs(fn):
        counter, version = fn.counters[i], fn.versions[i]
        if counter.value != version:
            parent = fn.parents[i] if i < len(fn.parents) else None
            made_by = counter.now_made_by  # as torch: the values' grad_fn now
            if made_by is None and parent is not None and not hasattr(parent, "array"):
                made_by = parent.name()
            made_by = made_by and f"output 0 of {made_by}"
            raise _modified_error(fn, counter, version, fn.inputs_meta[i], made_by)


def saved_inputs(fn):
    """Positions of the inputs ``fn``'s backward reads, given which need a gradient."""
    if fn.reads is None:
        return range(len(fn.counters))
    return sorted({j for i, wanted in enumerate(fn.needs_input_grad) if wanted
                   for j in (fn.reads[i] if i < len(fn.reads) else ())})


def _modified_error(fn, counter, expected, meta, made_by):
    """torch's error for a saved value changed in place, naming the ops involved."""
    shape, dtype = meta
    what = f"[tinygpt.{numpy.dtype(dtype).name} [{', '.join(str(n) for n in shape)}]]"
    if made_by:
        what += f", which is {made_by},"
    return RuntimeError(
        "one of the variables needed for gradient computation has been modified by an "
        f"inplace operation: {what} is at version {counter.value}; expected version "
        f"{expected} instead. Hint: {fn.name()} saved it for backward, and "
        f"{counter.changed_by or 'an in-place op'} changed it afterwards; use the "
        "out-of-place form (e.g. x = x.masked_fill(mask, value)) or change a .clone()"
    )
