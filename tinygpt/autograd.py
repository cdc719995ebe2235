"""The engine: reverse-mode automatic differentiation over NumPy (or CuPy) arrays.

Its first three sections are the whole engine; read them top to bottom.

1. ``Function``: one operation, ``forward`` and ``backward`` side by side on raw arrays
   (the operations are in ops.py and fused.py). ``apply`` runs forward and, when a
   gradient is wanted, records the Function as its output's ``grad_fn``, with an edge to
   the node of each input: these links are the graph.
2. ``TensorBase``: what a tensor holds for the graph: its ``array``, ``requires_grad``,
   ``grad`` and ``grad_fn``. (tensor.py's ``Tensor`` inherits it and adds torch's methods.)
3. ``run_backward``, what ``loss.backward()`` runs: the nodes in reverse topological
   order, each op's backward handing gradients to its inputs, un-broadcast by
   ``sum_to_shape``, until the leaves add them to their ``.grad``.

Two of torch's rules join from their own modules, each through one call: ``check_saved``
(versions.py) refuses a backward whose saved values were changed in place, and
``refresh`` (views.py) gives a view whose base changed in place its new place in the
graph. Below the engine: torch.autograd's ``backward(inputs=)`` and ``grad``, and the
checks on what comes in.
"""

import numpy

from .backend import xp
from .grad_mode import enable_grad, is_grad_enabled, no_grad  # noqa: F401  (torch.autograd's)
from .versions import check_saved, note_versions
from .views import refresh, share_storage

# --- 1. Function: one operation, and the graph it records -------------------------------


class Function:
    """One differentiable operation. Subclasses implement, on raw arrays::

        forward(self, *arrays, **options) -> array    # may save what backward needs on self
        backward(self, grad_out) -> one gradient per array input (None: no gradient)

    Once recorded, ``parents`` holds, per input, the node its gradient goes to: the
    Function that made the input, the input itself if it is a leaf that requires grad
    (leaves gather ``.grad``), or None (no gradient wanted)."""

    parents = needs_input_grad = counters = versions = ()
    needs_grad = retain_graph = freed = False  # forward: record? backward: run again later?
    reads = None  # per input's gradient, the inputs whose values it reads (None: all)
    reads_output = False  # backward reads the output (the in-place checks watch it too)
    view = False  # the output may share input 0's memory: then it is a view of it
    differentiable = True  # False: no gradient, as torch's floor division has none
    torch_name = None  # torch's name for the node where ours differs (see name())
    kernels = {}  # op class -> the class that runs it on the GPU (tinygpt/cuda/overrides.py)

    @classmethod
    def apply(cls, *inputs, **options):
        tensors = inputs
        for t in inputs:
            if not isinstance(t, TensorBase):  # arrays or numbers: wrapped as tensors
                tensors = _tensors_of(inputs)
                break
        arrays = [t.array for t in tensors]
        fn = cls() if cls not in Function.kernels else op_for(cls, arrays, options)
        fn.needs_grad = is_grad_enabled() and any([t.requires_grad for t in tensors])
        out = tensors[0]._wrap(fn.forward(*arrays, **options))
        if fn.view:
            share_storage(out, tensors[0], cls, options)
        if fn.needs_grad and out.array.dtype.kind == "f":  # torch: x.long() has no grad_fn
            fn.record(tensors, out)
        return out

    def record(self, tensors, out):
        """Join the graph: an edge to each input's node, and ``out.grad_fn`` is this op."""
        self.parents = tuple([_edge(t) for t in tensors])
        self.needs_input_grad = tuple([t.requires_grad for t in tensors])
        self.out_shape, self.out_dtype = out.array.shape, out.array.dtype
        note_versions(self, tensors, out)
        out.creator, out._requires_grad = self, True

    def release(self):
        """Drop the arrays forward saved: without retain_graph, an op's backward runs once."""
        _drop_saved(self)

    def name(self):
        """torch's name for this op's node, as ``grad_fn=<MulBackward0>`` prints it."""
        return self.torch_name or f"{type(self).__name__.removeprefix('Fused')}Backward0"

    def __repr__(self):
        return f"<{self.name()} object at {id(self):#x}>"


# --- 2. TensorBase: an array and its place in the graph ---------------------------------


class TensorBase:
    """``array`` (the values), ``requires_grad``, ``grad`` (what backward adds up here)
    and ``grad_fn`` (the Function that made it; None for a leaf). A leaf is a node of the
    graph itself: its ``parents`` are none. ``_counter`` and ``_view`` are for in-place
    changes (versions.py, views.py)."""

    __slots__ = ("array", "_grad", "_requires_grad", "creator", "_counter", "_view",
                 "__weakref__")
    parents, freed = (), False

    @property
    def requires_grad(self):
        if self._view is None:
            return self._requires_grad
        # a view of values that require grad does too, as in torch, even made under no_grad
        return self._requires_grad or self.creator is not None or self._view.base.requires_grad

    @requires_grad.setter
    def requires_grad(self, value):
        _check_requires_grad(self, value)  # torch's rules: floating point, leaves only
        self._requires_grad = bool(value) or self.creator is not None

    @property
    def grad(self):
        """The gradient that backward() added up here (a Tensor), or None."""
        return self._grad

    @grad.setter
    def grad(self, value):
        self._grad = None if value is None else _checked_grad(self, value)

    @property
    def grad_fn(self):
        if self._view is not None and self._view.version != self._counter.value:
            refresh(self)  # a view whose base changed in place since: a new grad_fn
        return self.creator

    @property
    def is_leaf(self):
        return self.grad_fn is None

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """Add the gradient of this tensor to ``.grad`` of every leaf it depends on (of
        ``inputs`` only, when given), then free the graph (unless ``retain_graph``)."""
        if inputs is not None or create_graph:
            return backward(self, gradient, retain_graph, create_graph, inputs)
        run_backward([_node(self)], [_seed(self, gradient)], retain_graph)


# --- 3. backward: the graph walked in reverse -------------------------------------------


def run_backward(nodes, seeds, retain_graph=False):
    """One pass over the graph behind ``nodes``, each starting from its seed gradient:
    every op runs once, after all the ops that use its output, and each leaf adds what
    reaches it to its ``.grad``. Unless ``retain_graph``, each op is released as it runs."""
    order = topological_order(nodes)
    if any(node.freed for node in order):  # a freed op would pass for a leaf
        raise RuntimeError(FREED)
    grads, given = {}, set()
    for node, seed in zip(nodes, seeds):
        grads[id(node)] = grads[id(node)] + seed if id(node) in grads else seed
    for node in reversed(order):
        grad = grads.pop(id(node), None)
        if isinstance(node, TensorBase):  # a leaf: add it up in .grad (a Tensor, as torch)
            if grad is not None:
                _accumulate(node, grad, given)
            continue
        if grad is not None:
            node.retain_graph = bool(retain_graph)
            propagate(node, grad, grads)
        if not retain_graph:
            node.release()


def propagate(fn, grad, grads):
    """One op's backward: the gradient of its output becomes its inputs', each summed to
    its input's shape and added to what that input has gathered so far."""
    check_saved(fn)  # torch's error if a value this backward reads was changed in place
    input_grads = fn.backward(grad)
    if not isinstance(input_grads, tuple):
        input_grads = (input_grads,)
    for parent, g in zip(fn.parents, input_grads):
        if parent is None or g is None:
            continue
        g = sum_to_shape(g, parent.array.shape if isinstance(parent, TensorBase)
                         else parent.out_shape)
        key = id(parent)
        grads[key] = g if key not in grads else grads[key] + g


def topological_order(nodes):
    """Every node behind ``nodes``, each after all the nodes it takes inputs from (an
    explicit stack, so deep graphs hit no recursion limit)."""
    order, visited, stack = [], set(), [(node, False) for node in nodes]
    while stack:
        node, expanded = stack.pop()
        if expanded:  # every node it reads from is in the order: now it can go
            order.append(node)
        elif id(node) not in visited:
            visited.add(id(node))
            stack.append((node, True))
            stack.extend((p, False) for p in node.parents
                         if p is not None and id(p) not in visited)
    return order


def sum_to_shape(grad, shape):
    """Undo broadcasting: sum ``grad`` down to ``shape`` (the one place that does it)."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def _accumulate(leaf, grad, given):
    """Add ``grad`` to ``leaf.grad``: in place into the leaf's own array, as torch does,
    or, for the first gradient, as an array the leaf owns (``_own``)."""
    old = leaf._grad
    if old is not None and getattr(old.array.flags, "writeable", True):
        old.array += grad
        old._counter.bump("backward")
    elif old is not None:
        leaf._grad = leaf._wrap(old.array + grad)
    else:
        leaf._grad = leaf._wrap(_own(grad, given))


def _own(array, given):
    """``array`` as a leaf's own gradient: writable, not a view and not another leaf's
    (a backward may return a read-only broadcast view, or the same array for two
    inputs, as Add does). Copies only then; ``given`` collects the arrays handed out."""
    if array.base is not None or id(array) in given or not getattr(
            array.flags, "writeable", True):
        array = array.copy()
    given.add(id(array))
    return array


def op_for(cls, arrays, options):
    """A new object to run op ``cls`` on ``arrays``: the kernel class registered for it in
    ``Function.kernels`` (cuda/overrides.py) when that ``takes`` these arrays, else the op."""
    kernel = Function.kernels.get(cls)
    if kernel is not None and kernel.takes(*arrays, **options):
        return kernel()
    return cls()


def _drop_saved(fn):
    """Forget the graph edges and every array ``fn`` saved (its small settings stay, so
    it still prints its name), and mark it freed."""
    for key, value in list(vars(fn).items()):
        if key == "parents" or _holds_arrays(value):
            delattr(fn, key)
    fn.freed = True


def _holds_arrays(value):
    if isinstance(value, (tuple, list)):
        return any(_holds_arrays(v) for v in value)
    return isinstance(value, (xp.ndarray, numpy.ndarray, numpy.generic))


def _edge(t):
    """Where a gradient for input ``t`` goes: the op that made it, t itself if it is a
    leaf that requires grad, or nowhere (None). A view made under no_grad of values that
    require grad reports requires_grad but is neither, as in torch: its gradient is lost."""
    fn = t.grad_fn
    return fn if fn is not None else (t if t._requires_grad else None)


def _node(t):
    """The node a gradient for ``t`` goes to: the op that made it, or the tensor itself
    (a leaf)."""
    fn = t.grad_fn
    return t if fn is None else fn


def _tensors_of(inputs):
    """An op's inputs as tensors: arrays and numbers wrapped like the first tensor."""
    first = next((t for t in inputs if isinstance(t, TensorBase)), None)
    if first is None:
        raise TypeError("Function.apply takes Tensors (at least one); wrap arrays with "
                        "tinygpt.tensor() or Tensor()")
    return [t if isinstance(t, TensorBase) else first._wrap(xp.asarray(t)) for t in inputs]


# --- torch.autograd.backward and .grad: gradients of some inputs only -------------------


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """torch.autograd.backward: one backward pass from ``tensors`` (a tensor or a list),
    each seeded with its ``grad_tensors`` entry (None: 1 for a scalar), adding into
    ``.grad`` of the leaves, or of ``inputs`` only (leaves or not, as in torch)."""
    roots, seeds = _roots_and_seeds(tensors, grad_tensors, create_graph)
    if inputs is None:
        run_backward([_node(t) for t in roots], seeds, retain_graph)
        return
    inputs = _checked_tensors(inputs, "inputs")
    for t, g in zip(inputs, _gradients_at(roots, seeds, inputs, retain_graph)):
        if g is not None:
            t.grad = t._wrap(g if t.grad is None else t.grad.array + g)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False, is_grads_batched=False, materialize_grads=False):
    """torch.autograd.grad: the gradients of ``outputs`` with respect to ``inputs``, a
    tuple with one Tensor per input; no ``.grad`` changes. ``grad_outputs`` seeds each
    output (None: 1 for a scalar). An input the outputs do not depend on is an error,
    or None with ``allow_unused=True`` (zeros with ``materialize_grads=True``)."""
    if is_grads_batched:
        raise NotImplementedError("grad(is_grads_batched=True) is not supported; call grad() "
                                  "once per row of grad_outputs")
    roots, seeds = _roots_and_seeds(outputs, grad_outputs, create_graph)
    inputs = _checked_tensors(inputs, "inputs")
    for t in inputs:
        if not t.requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    result = []
    for i, (t, g) in enumerate(zip(inputs, _gradients_at(roots, seeds, inputs,
                                                         retain_graph))):
        if g is None and materialize_grads:
            g = xp.zeros_like(t.array)
        elif g is None and not allow_unused:
            raise RuntimeError(
                f"The differentiated Tensor at index {i} appears to not have been used in the "
                "graph. Set allow_unused=True if this is the desired behavior."
            )
        result.append(None if g is None else t._wrap(g))
    return tuple(result)


def _gradients_at(roots, seeds, targets, retain_graph):
    """The gradient that reaches each of ``targets`` from ``roots`` (None where none
    does), with every ``.grad`` left as it is. ``run_backward`` runs on the graph with
    its edges rewired for the pass: an edge to a target's node goes through a ``_Catch``
    that keeps the gradient passing by, and an edge that leads to no target is cut, so
    only the ops between the roots and the targets run. Edges are put back afterwards."""
    order = topological_order([_node(t) for t in roots])
    catches = {}  # id of a target's node -> its _Catch
    for t in targets:
        catches.setdefault(id(_node(t)), _Catch(_node(t), t.array))
    leads = set(catches)  # ids of the nodes from which a gradient reaches a target
    for node in order:
        if any(p is not None and id(p) in leads for p in node.parents):
            leads.add(id(node))
    for catch in catches.values():  # on through the target's op if it leads on
        node = catch.node
        onward = not isinstance(node, TensorBase) and any(
            p is not None and id(p) in leads for p in node.parents)
        catch.parents = (node if onward else None,)
    rewired = {}
    for node in order:
        if id(node) in leads and not isinstance(node, TensorBase):
            rewired[node] = node.parents
            node.parents = tuple(catches[id(p)] if p is not None and id(p) in catches
                                 else (p if p is not None and id(p) in leads else None)
                                 for p in node.parents)
    nodes, kept = [catches.get(id(_node(t)), _node(t)) for t in roots], []
    for node, seed in zip(nodes, seeds):
        if isinstance(node, _Catch) or id(node) in leads:
            kept.append((node, seed))
    try:
        run_backward([n for n, _ in kept], [s for _, s in kept], retain_graph)
    finally:
        for node, parents in rewired.items():
            if not node.freed:
                node.parents = parents
    return [catches[id(_node(t))].caught for t in targets]


class _Catch(Function):
    """A stand-in for a target's node in ``_gradients_at``: it keeps the gradient that
    reaches it (``caught``) and passes it on to the node, when the node leads on to
    another target."""

    reads = ((),)
    caught = None

    def __init__(self, node, array):
        self.node, self.out_shape, self.out_dtype = node, array.shape, array.dtype

    def backward(self, grad):
        self.caught = grad.copy()
        return grad

    def release(self):  # what it caught is read after the pass
        self.freed = True


def _checked_tensors(values, name):
    values = (values,) if isinstance(values, TensorBase) else tuple(values)
    for v in values:
        if not isinstance(v, TensorBase):
            raise TypeError(f"{name} must be Tensors, got {type(v).__name__}")
    return values


def _roots_and_seeds(outputs, grad_outputs, create_graph):
    """The roots of a backward pass and the gradient each starts with, checked."""
    if create_graph:
        raise NotImplementedError(
            "create_graph=True (a graph of the gradients, for higher derivatives) is not "
            "supported: tinygpt's backward works on raw arrays; take a second derivative "
            "by finite differences of the first, or use PyTorch"
        )
    roots = _checked_tensors(outputs, "outputs")
    if grad_outputs is None:
        grad_outputs = (None,) * len(roots)
    elif not isinstance(grad_outputs, (list, tuple)):  # one Tensor, array or number
        grad_outputs = (grad_outputs,)
    if len(grad_outputs) != len(roots):
        raise RuntimeError(f"got {len(grad_outputs)} gradients for {len(roots)} outputs")
    return roots, [_seed(t, g, i) for i, (t, g) in enumerate(zip(roots, grad_outputs))]


def _seed(t, gradient, i=0):
    """The gradient a backward pass from ``t`` starts with, checked as torch checks it."""
    if t.creator is not None and t.creator.freed:
        raise RuntimeError(FREED)
    if not t.requires_grad:
        raise RuntimeError(f"element {i} of tensors does not require grad and does not "
                           "have a grad_fn (it was computed under no_grad() or from "
                           "tensors that do not require grad)")
    if gradient is None:
        if t.array.size != 1:
            raise RuntimeError(
                f"grad can be implicitly created only for scalar outputs, got shape "
                f"{tuple(t.array.shape)}; pass a gradient of the same shape"
            )
        return xp.ones_like(t.array)
    g = gradient.array if isinstance(gradient, TensorBase) else xp.asarray(gradient)
    if g.shape != t.array.shape:
        raise ValueError(f"the gradient has shape {tuple(g.shape)}, expected "
                         f"{tuple(t.array.shape)} (the output's)")
    return g.astype(t.array.dtype, copy=False)


def _check_requires_grad(t, value):
    """torch's rules: only floating-point tensors require gradients, and only a leaf's
    flag can be changed."""
    if value and t.array.dtype.kind != "f":
        raise RuntimeError(
            f"only Tensors of floating point dtype can require gradients (this one is "
            f"{t.array.dtype}); convert it first, e.g. t.float()"
        )
    if t.creator is not None and not value:
        raise RuntimeError(
            "you can only change requires_grad flags of leaf variables. If you want to use "
            "a computed variable in a subgraph that doesn't require differentiation use "
            "var_no_grad = var.detach()."
        )


def _checked_grad(t, value):
    """A gradient assigned to ``t.grad``: a Tensor (or a backend array, wrapped) of
    ``t``'s shape and dtype, or torch's error."""
    array = value.array if isinstance(value, TensorBase) else value
    if not isinstance(array, xp.ndarray):
        raise TypeError(f"assigned grad expected to be a Tensor or None but got grad "
                        f"of type {type(value).__name__}")
    if tuple(array.shape) != tuple(t.array.shape):
        raise RuntimeError(
            f"assigned grad has data of a different size: a gradient of size "
            f"{list(array.shape)} for a tensor of size {list(t.array.shape)}; the "
            "gradient and the tensor must have the same size"
        )
    if array.dtype != t.array.dtype:
        raise RuntimeError(f"assigned grad has data of a different type: "
                           f"{array.dtype} for a tensor of {t.array.dtype}")
    return value if isinstance(value, TensorBase) else t._wrap(array)


FREED = (
    "Trying to backward through the graph a second time (or directly access saved tensors "
    "after they have already been freed). Saved intermediate values of the graph are freed "
    "when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to "
    "backward through the graph a second time or if you need to access saved tensors after "
    "calling backward."
)
