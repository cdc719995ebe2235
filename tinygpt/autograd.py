"""The engine: reverse-mode automatic differentiation over NumPy (or CuPy) arrays.

Its first three sections are the whole engine; read them top to bottom.

1. ``Function``: one operation, ``forward`` and ``backward`` side by side on raw arrays
   (the operations are in ops.py). ``apply`` runs forward and, when a gradient is
   wanted, records the Function as its output's creator: these links are the graph.
2. ``Tensor``: an array (``data``) and its place in the graph: ``requires_grad``,
   ``grad`` (filled in by backward) and ``grad_fn`` (the Function that made it).
3. ``_run_backward``, what ``loss.backward()`` runs: the graph in reverse topological
   order, each gradient added into the inputs and un-broadcast by ``sum_to_shape``.

Below the engine: version counters, so that backward refuses a value changed in place
after a Function saved it, and torch.autograd's ``backward`` and ``grad``. Elsewhere:
grad_mode.py has ``no_grad``; tensor_methods.py sets torch's other Tensor methods
(printing, operators, shapes, reductions, ``to()``) on this ``Tensor``.
"""

import numpy

from .backend import DEFAULT_DTYPE, to_numpy, xp
from .checks import rectangular
from .grad_mode import enable_grad, is_grad_enabled, no_grad  # noqa: F401  (torch.autograd's)

# --- 1. Function: one operation, and the graph it records -------------------------------


class Function:
    """One differentiable operation. Subclasses implement, on raw arrays::

        forward(self, *arrays, **options) -> array     # may save what backward needs on self
        backward(self, grad_out) -> one gradient per array input (None: no gradient)

    ``needs_grad`` tells forward whether a graph is being recorded (if not, it need not
    save anything); ``retain_graph`` tells backward whether it may run again (if not, it
    may reuse saved buffers in place). ``reads``, ``reads_output`` and ``view`` say what
    the in-place checks must watch (see "in-place changes" below)."""

    inputs = versions = ()
    needs_grad = False
    retain_graph = False
    reads = None  # per input's gradient, the positions of the inputs it reads (None: all)
    reads_output = False  # backward reads the output
    view = False  # the output may share input 0's memory (and so its version counter)
    kernels = {}  # op class -> a class that runs it on the GPU (tinygpt/cuda/overrides.py)

    @classmethod
    def apply(cls, *inputs, **options):
        tensors, arrays, wanted = [], [], False
        for t in inputs:
            if not isinstance(t, Tensor):
                t = Tensor(t)
            tensors.append(t)
            arrays.append(t.array)
            wanted = wanted or t._requires_grad
        fn = cls() if cls not in Function.kernels else cls.for_arrays(*arrays, **options)
        fn.needs_grad = wanted and is_grad_enabled()
        y = fn.forward(*arrays, **options)
        out = view_of(tensors[0], y) if fn.view else Tensor._of(y)
        if fn.needs_grad and out.array.dtype.kind == "f":  # torch: x.long() has no grad_fn
            fn.inputs = tuple(tensors)
            fn.versions = tuple([t._counter.value for t in tensors])
            if fn.reads_output:
                fn.output = (out._counter, out._counter.value, out.array.dtype, out.array.shape)
            out._requires_grad = True
            out.creator = fn
        return out

    @classmethod
    def for_arrays(cls, *arrays, **options):
        """A new object to run this op on ``arrays``: the kernel class registered for it
        in ``Function.kernels`` when that ``takes`` these arrays, else the op itself."""
        kernel = Function.kernels.get(cls)
        if kernel is not None and kernel.takes(*arrays, **options):
            return kernel()
        return cls()

    def forward(self, *arrays, **options):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad_out):  # pragma: no cover - abstract
        raise NotImplementedError


# --- 2. Tensor: an array and its place in the graph -------------------------------------


class Tensor:
    """An array plus the bookkeeping reverse-mode differentiation needs. (torch's other
    methods, from ``shape`` to ``sum``, are set on this class by tensor_methods.py.)"""

    __slots__ = ("array", "_grad", "_requires_grad", "creator", "_graph_freed", "_counter",
                 "_before", "__weakref__")

    def __init__(self, data, requires_grad=False, dtype=None):
        self.array = _as_array(data, dtype)
        self._grad = None
        self.creator = None  # the Function that produced this tensor (None for leaves)
        self._requires_grad = False
        if requires_grad:
            self.requires_grad = True  # checked: floating point only
        self._graph_freed = False
        self._counter = _VersionCounter()
        self._before = None  # this tensor before its last recorded in-place op (_in_place)

    @classmethod
    def _of(cls, array):
        """A Function's output as a Tensor: no copy and no checks."""
        t = object.__new__(Tensor)
        t.array = array if isinstance(array, xp.ndarray) else _as_array(array)  # 0-d results
        t._grad = t.creator = t._before = None
        t._requires_grad = t._graph_freed = False
        t._counter = _VersionCounter()
        return t

    @property
    def data(self):  # (becomes a Tensor sharing the storage: torch's .data)
        return self.array

    @data.setter
    def data(self, value):
        self.array = value

    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value):
        _check_requires_grad(self, value)  # torch's rules: floating point, leaves only
        self._requires_grad = bool(value)

    @property
    def grad(self):
        """The gradient that backward() added up here (a Tensor), or None."""
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is not None:
            _check_grad(self, value)  # torch's checks: a tensor of this shape and dtype
        self._grad = value

    @property
    def is_leaf(self):
        return self.creator is None

    @property
    def grad_fn(self):
        return self.creator

    def _bump_version(self, changed_by):
        """Record an in-place change of ``.data`` by the op named ``changed_by``."""
        self._counter.value += 1
        self._counter.changed_by = changed_by

    def backward(self, grad=None, retain_graph=None, create_graph=False, inputs=None, *,
                 gradient=None):
        """Add the gradient of this tensor to ``.grad`` of every leaf it depends on (of
        ``inputs`` only, when given), then free the graph (unless ``retain_graph``).
        ``gradient`` is torch's name for ``grad``, needed for a non-scalar tensor."""
        backward(self, gradient if grad is None else grad, retain_graph, create_graph, inputs)


# --- 3. backward: the graph walked in reverse -------------------------------------------


def _run_backward(roots, seeds, retain_graph=None, wanted=None):
    """One pass over the graph behind ``roots`` in reverse topological order, each root
    starting from its seed gradient; the leaves' ``.grad`` add up what reaches them.
    (``wanted``: autograd.grad's tensors, whose gradients are returned instead.)
    Unless ``retain_graph``, each Function is released once it has run."""
    order = _topological_order(roots)
    if any(node._graph_freed for node in order):  # a freed node would pass for a leaf
        raise RuntimeError(_FREED)
    grads = {}
    for root, seed in zip(roots, seeds):
        grads[id(root)] = grads[id(root)] + seed if id(root) in grads else seed
    found, needed = _wanted(order, wanted)
    given = set()  # ids of the arrays handed out so far (see _own)
    for node in reversed(order):
        node_grad = grads.pop(id(node), None)
        if found is not None and id(node) in found and node_grad is not None:
            found[id(node)] = node_grad = _own(node_grad, given)
        fn = node.creator
        if fn is None:  # a leaf: accumulate into .grad (a Tensor, as in torch)
            if found is None and node_grad is not None:
                if node.grad is not None:
                    node_grad = grad_array(node) + node_grad
                else:
                    node_grad = _own(node_grad, given)
                node._grad = Tensor(node_grad)
            continue
        if needed is not None and id(node) not in needed:
            continue
        if not retain_graph:
            node.creator, node._graph_freed, node._before = None, True, None
        if node_grad is None:
            continue
        fn.retain_graph = bool(retain_graph)
        input_grads = fn.backward(node_grad)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        for inp, inp_grad in zip(fn.inputs, input_grads):
            if inp_grad is None or not inp._requires_grad:
                continue
            inp_grad = sum_to_shape(inp_grad, inp.array.shape)
            previous = grads.get(id(inp))
            grads[id(inp)] = inp_grad if previous is None else previous + inp_grad
        if not retain_graph:
            fn.inputs = ()  # release what forward saved
    return None if found is None else [found[id(t)] for t in wanted]


def _topological_order(roots):
    """Nodes reachable from ``roots``, each after all of its inputs (explicit stack, so
    deep graphs hit no recursion limit). Inputs are taken as each Function ran
    (``_inputs_as_run``)."""
    order, visited = [], set()
    stack = [(root, False) for root in roots]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node.creator is not None:
            for inp in _inputs_as_run(node.creator):
                if inp._requires_grad and id(inp) not in visited:
                    stack.append((inp, False))
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


def _own(array, given):
    """``array`` as a leaf's own gradient: writable, not a view and not another leaf's
    (a backward may return a read-only broadcast view, or the same array for two
    inputs, as Add does). Copies only then; ``given`` collects the arrays handed out."""
    if array.base is not None or id(array) in given or not getattr(
            array.flags, "writeable", True):
        array = array.copy()
    given.add(id(array))
    return array


# --- in-place changes: version counters -------------------------------------------------
# An in-place op bumps its tensor's version (``Tensor._bump_version``). A Function notes
# the versions of its inputs when it runs; before its backward, ``_inputs_as_run`` finds
# any input changed since: an error if backward reads it (``reads``, ``reads_output``:
# torch's saved tensors), else the value it used, kept by ``_in_place``. A ``view`` op's
# output shares its input's counter: a change through either is a change of both.


class _VersionCounter:
    """How many times a tensor's values were changed in place (torch's ``t._version``),
    and by what, last. A view and ``detach()`` share their base's counter, as in torch:
    a change through either is a change of both."""

    __slots__ = ("value", "changed_by")

    def __init__(self, value=0):
        self.value, self.changed_by = value, None


def view_of(t, array):
    """``array``, made from t's values by a view op (reshape, transpose, indexing), as a
    Tensor: when it shares t's memory it shares t's version counter too. Without a graph
    to record, Tensor.reshape and transpose call this directly, not the Function."""
    out = Tensor._of(array)
    if xp.may_share_memory(array, t.array):  # one set of values: one version counter
        out._counter = t._counter
    return out


def _in_place(t, function, *args, **options):
    """Apply ``function`` to ``t`` and make ``t`` itself its result: torch's in-place
    ops (masked_fill_, add_, x[i] = v) on an autograd that rebinds. The old value lives
    on as the input, ``_before``, where the Functions that used ``t`` earlier find it
    (``_inputs_as_run``); the version bump makes those that saved it raise."""
    if t.requires_grad and t.creator is None and is_grad_enabled():
        raise RuntimeError(
            "a leaf Variable that requires grad is being used in an in-place operation "
            "(it cannot be changed in place); use the out-of-place form (e.g. "
            "masked_fill) or work under no_grad()"
        )
    if getattr(t.array, "base", None) is not None:
        raise NotImplementedError(
            "in-place ops on a view (a tensor made by view/reshape/transpose/indexing "
            "of another) are not supported: torch would also change the original; use "
            "the out-of-place form, e.g. x = x.masked_fill(mask, value)"
        )
    before = Tensor.__new__(Tensor)
    before.array, before._grad, before._requires_grad = t.array, None, t.requires_grad
    before.creator, before._graph_freed = t.creator, t._graph_freed
    before._counter, before._before = _VersionCounter(t._counter.value), t._before
    out = function.apply(before, *args, **options)
    t.array = out.array
    t._bump_version("__setitem__" if function is ops.SetItem else function.__name__)
    fn = out.creator
    if fn is not None:
        t.creator, t._requires_grad, t._before = fn, True, before
        if fn.reads_output:  # the output fn saved is this tensor now
            fn.output = (t._counter, t._counter.value) + fn.output[2:]
    return t


def _inputs_as_run(fn):
    """``fn``'s inputs as they were when it ran, checked against in-place changes since.

    A changed tensor that ``fn`` saved for its backward is torch's error. One it did not
    save only moved on: its gradient belongs to the value ``fn`` used, which the in-place
    op kept as ``_before`` (or, for a change that recorded no graph, to the tensor)."""
    if fn.reads_output and fn.output[0].value != fn.output[1]:
        raise _modified_error(fn, fn.output[0], fn.output[1], fn.output[2], fn.output[3],
                              f"output 0 of {type(fn).__name__}")
    inputs, versions = fn.inputs, fn.versions
    for t, v in zip(inputs, versions):
        if t._counter.value != v:
            break
    else:  # nothing changed (a plain loop: this runs for every node)
        return inputs
    saved = _saved_inputs(fn)
    as_run = []
    for i, (t, v) in enumerate(zip(inputs, versions)):
        if t._counter.value != v:
            if i in saved:
                made_by = None if t.creator is None else f"output 0 of {type(t.creator).__name__}"
                raise _modified_error(fn, t._counter, v, t.array.dtype, t.array.shape, made_by)
            while t._before is not None and v <= t._before._counter.value:
                t = t._before
        as_run.append(t)
    fn.inputs, fn.versions = tuple(as_run), tuple(t._counter.value for t in as_run)
    return fn.inputs


def _saved_inputs(fn):
    """Positions of the inputs ``fn``'s backward reads, given which need a gradient."""
    if fn.reads is None:
        return range(len(fn.inputs))
    return {j for i, t in enumerate(fn.inputs) if t.requires_grad
            for j in (fn.reads[i] if i < len(fn.reads) else ())}


def _modified_error(fn, counter, expected, dtype, shape, made_by):
    """torch's error for a saved tensor changed in place, naming the ops involved."""
    what = f"[tinygpt.{numpy.dtype(dtype).name} [{', '.join(str(n) for n in shape)}]]"
    if made_by:
        what += f", which is {made_by},"
    return RuntimeError(
        "one of the variables needed for gradient computation has been modified by an "
        f"inplace operation: {what} is at version {counter.value}; expected version "
        f"{expected} instead. Hint: {type(fn).__name__} saved it for backward, and "
        f"{counter.changed_by or 'an in-place op'} changed it afterwards; use the "
        "out-of-place form (e.g. x = x.masked_fill(mask, value)) or change a .clone()"
    )


# --- torch.autograd.backward and .grad, and checking what comes in ---------------------


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """torch.autograd.backward: one backward pass from ``tensors`` (a tensor or a list),
    each seeded with its ``grad_tensors`` entry (None: 1 for a scalar), adding into
    ``.grad`` of the leaves, or of ``inputs`` only."""
    roots, seeds = _seeds(tensors, grad_tensors, create_graph)
    if inputs is None:
        _run_backward(roots, seeds, retain_graph)
        return
    inputs = _tensors(inputs, "inputs")
    for t, g in zip(inputs, _run_backward(roots, seeds, retain_graph, inputs)):
        if g is not None:
            t.grad = Tensor(g if t.grad is None else grad_array(t) + g)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False, is_grads_batched=False, materialize_grads=False):
    """torch.autograd.grad: the gradients of ``outputs`` with respect to ``inputs``, a
    tuple with one Tensor per input; no ``.grad`` changes. ``grad_outputs`` seeds each
    output (None: 1 for a scalar). An input the outputs do not depend on is an error,
    or None with ``allow_unused=True`` (zeros with ``materialize_grads=True``)."""
    if is_grads_batched:
        raise NotImplementedError("grad(is_grads_batched=True) is not supported; call grad() "
                                  "once per row of grad_outputs")
    roots, seeds = _seeds(outputs, grad_outputs, create_graph)
    inputs = _tensors(inputs, "inputs")
    for t in inputs:
        if not t.requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    found = _run_backward(roots, seeds, retain_graph, inputs)
    result = []
    for i, (t, g) in enumerate(zip(inputs, found)):
        if g is None and materialize_grads:
            g = xp.zeros_like(t.array)
        elif g is None and not allow_unused:
            raise RuntimeError(
                f"The differentiated Tensor at index {i} appears to not have been used in the "
                "graph. Set allow_unused=True if this is the desired behavior."
            )
        result.append(None if g is None else Tensor(g))
    return tuple(result)


def _wanted(order, wanted):
    """For autograd.grad: the gradient found for each wanted tensor (none yet), and the
    nodes on a path to one of them, the only ones whose Functions must run. (None, None)
    for a plain backward."""
    if wanted is None:
        return None, None
    found = {id(t): None for t in wanted}
    needed = set()
    for node in order:
        fn = node.creator
        if fn is not None and any(id(i) in found or id(i) in needed for i in fn.inputs):
            needed.add(id(node))
    return found, needed


def grad_array(t):
    """The array of ``t.grad``: a Tensor after backward(), or an array set by hand."""
    grad = t.grad
    return grad.array if isinstance(grad, Tensor) else grad


def _tensors(values, name):
    values = (values,) if isinstance(values, Tensor) else tuple(values)
    for v in values:
        if not isinstance(v, Tensor):
            raise TypeError(f"{name} must be Tensors, got {type(v).__name__}")
    return values


def _seeds(outputs, grad_outputs, create_graph):
    """The roots of a backward pass and the gradient each starts with, checked."""
    if create_graph:
        raise NotImplementedError(
            "create_graph=True (a graph of the gradients, for higher derivatives) is not "
            "supported: tinygpt's backward works on raw arrays; take a second derivative "
            "by finite differences of the first, or use PyTorch"
        )
    roots = _tensors(outputs, "outputs")
    if grad_outputs is None:
        grad_outputs = (None,) * len(roots)
    elif not isinstance(grad_outputs, (list, tuple)):  # one Tensor, array or number
        grad_outputs = (grad_outputs,)
    grad_outputs = tuple(grad_outputs)
    if len(grad_outputs) != len(roots):
        raise RuntimeError(f"got {len(grad_outputs)} gradients for {len(roots)} outputs")
    seeds = []
    for i, (t, g) in enumerate(zip(roots, grad_outputs)):
        if t._graph_freed:
            raise RuntimeError(_FREED)
        if not t.requires_grad:
            raise RuntimeError(f"element {i} of tensors does not require grad and does not "
                               "have a grad_fn (it was computed under no_grad() or from "
                               "tensors that do not require grad)")
        if g is None:
            if t.array.size != 1:
                raise RuntimeError(
                    f"grad can be implicitly created only for scalar outputs, got shape "
                    f"{tuple(t.array.shape)}; pass a gradient of the same shape"
                )
            g = xp.ones_like(t.array)
        else:
            g = _as_array(g, t.array.dtype)
            if g.shape != t.array.shape:
                raise ValueError(f"the gradient has shape {tuple(g.shape)}, expected "
                                 f"{tuple(t.array.shape)} (the output's)")
        seeds.append(g)
    return roots, seeds


_FREED = (
    "Trying to backward through the graph a second time (or directly access saved tensors "
    "after they have already been freed). Saved intermediate values of the graph are freed "
    "when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to "
    "backward through the graph a second time or if you need to access saved tensors after "
    "calling backward."
)


def _as_array(value, dtype=None):
    """Arrays keep their dtype; Python numbers and lists become the default float dtype."""
    if isinstance(value, Tensor):
        return value.array
    if isinstance(value, xp.ndarray):
        return value if dtype is None else value.astype(dtype, copy=False)
    if hasattr(value, "__array__") and not isinstance(value, (list, tuple)):
        array = xp.asarray(to_numpy(value))
        return array if dtype is None else array.astype(dtype, copy=False)
    if isinstance(value, (list, tuple)):
        value = rectangular(value, "tensor data", "pad the rows to one length")
    array = xp.asarray(value)
    if dtype is not None:
        return array.astype(dtype, copy=False)
    if array.dtype.kind == "f":
        return array.astype(DEFAULT_DTYPE, copy=False)
    return array


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
            "you can only change requires_grad flags of leaf variables; use "
            "t.detach() for a copy outside the graph"
        )


def _check_grad(t, value):
    """A gradient assigned to ``t.grad``: a Tensor (or a backend array) of ``t``'s shape
    and dtype, or torch's error."""
    array = value.array if isinstance(value, Tensor) else value
    if not isinstance(array, (xp.ndarray, numpy.ndarray)):
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


# ops needs Function and Tensor defined first; tensor_methods completes Tensor.
from . import ops, tensor_methods  # noqa: E402,F401
