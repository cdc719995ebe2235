"""torch's views: tensors that share their values with another tensor, their base.

``x[0]``, ``x.view(...)``, ``x.transpose(0, 1)``, ``x.expand(...)``, ``x.narrow(...)`` and
the other view ops return a new Tensor over the same memory as ``x`` (NumPy's basic
indexing, reshape and transpose already give views; tinygpt keeps them). The view shares
``x``'s version counter, so an in-place change through either is a change of both, and
remembers (``share_storage``, in its ``_view``):

- ``base``: the tensor that owns the memory (for a view of a view, the first one);
- ``ops``: the view ops, with their options, that make the view from the base;
- ``version``: the counter's value when the view's ``grad_fn`` was set;
- ``meta``: how it was made, where that forbids an in-place change with a graph (torch's
  creation meta): ``"no_grad"`` (made under no_grad) or ``"multi"`` (one of several
  views, as ``split`` returns).

With them tinygpt follows torch's two rules for views inside a graph:

- an in-place op on a view is recorded on the base: the base's new ``grad_fn`` is a
  ``CopySlices`` (ops.py), which sends the view's region of the gradient through the op;
- a view whose base changed in place since the view's ``grad_fn`` was recorded gets a
  new one, made again from the base's current one (``refresh``): the view now reads the
  changed values, so its gradient must reach the base through the change.
"""

from .backend import xp
from .grad_mode import enable_grad, is_grad_enabled


class View:
    """What a view knows of its base (a Tensor's ``_view``; None for a tensor that owns
    its values)."""

    __slots__ = ("base", "ops", "version", "meta")

    def __init__(self, base, ops, version, meta):
        self.base, self.ops, self.version, self.meta = base, ops, version, meta


def share_storage(out, base, op, options, grad_enabled=None):
    """Make ``out``, the result of view op ``op`` on ``base``, a view of ``base``'s
    values: the same base, version counter and view chain (plus this op). A result that
    does not share memory (NumPy had to copy, as torch's reshape does) is no view.
    ``grad_enabled``: is_grad_enabled(), when the caller has asked already."""
    owner = out.array.base  # NumPy and CuPy give a view its base's owner: the cheap test
    if owner is None or (owner is not base.array and owner is not base.array.base):
        if out.array.size and not xp.may_share_memory(out.array, base.array):
            return
    out._counter = base._counter
    above = base._view
    root, chain = (base, ()) if above is None else (above.base, above.ops)
    meta = None if above is None else above.meta
    if meta is None and not (is_grad_enabled() if grad_enabled is None else grad_enabled):
        meta = "no_grad"
    out._view = View(root, chain + ((op, options),), out._counter.value, meta)


def refresh(t):
    """Give view ``t`` a ``grad_fn`` made again from its base's current one, as torch
    regenerates a view's grad_fn: replay the view ops on the base, with a graph. A view
    torch cannot place this way (made under no_grad, or one of several views) raises
    torch's error instead."""
    view = t._view
    if t.creator is None and not view.base.requires_grad:
        view.version = t._counter.value
        return  # no graph to join
    if view.meta is not None:
        raise RuntimeError(_STALE[view.meta])
    view.version = t._counter.value
    with enable_grad():
        node = view.base
        for op, options in view.ops:
            node = op.apply(node, **options)
    t.creator, t._requires_grad = node.creator, node._requires_grad


_STALE = {
    "no_grad": "A view was created in no_grad mode and its base or another view of its base "
               "has been modified inplace with grad mode enabled. Given that this use case "
               "is ambiguous and error-prone, it is forbidden. You can clarify your code by "
               "moving both the view and the inplace either both inside the no_grad block (if "
               "you don't want the inplace to be tracked) or both outside (if you want the "
               "inplace to be tracked).",
    "multi": "Output 0 of SplitBackward0 is a view and its base or another view of its base "
             "has been modified inplace. This view is the output of a function that returns "
             "multiple views. Such functions do not allow the output views to be modified "
             "inplace. You should replace the inplace operation by an out-of-place one.",
}


def replay(view_ops, array):
    """The view ``view_ops`` make of ``array``, on arrays alone: where a view of the base
    lies in the base's gradient (CopySlices)."""
    for op, options in view_ops:
        array = op().forward(array, **options)
    return array
