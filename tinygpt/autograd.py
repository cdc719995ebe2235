"""A small reverse-mode autograd over NumPy (or CuPy) arrays.

A ``Tensor`` holds an array (``.data``) and, once ``backward()`` has run, the
gradient of the loss with respect to it (``.grad``, leaves only). Every
operation is a ``Function`` subclass (see ``ops.py``) whose ``forward`` and
``backward`` work on raw arrays and sit side by side; ``Function.apply`` wires
the result into the graph.

``backward()`` walks the graph once, in reverse topological order found with
an explicit stack (no recursion limit), accumulates gradients of tensors used
more than once, un-broadcasts in one place (``sum_to_shape``), and releases the
graph as it goes: a second ``backward()`` through the same graph is an error.
"""

import contextlib
import threading

from .backend import DEFAULT_DTYPE, to_numpy, xp

_state = threading.local()


def is_grad_enabled():
    return getattr(_state, "grad_enabled", True)


class no_grad(contextlib.ContextDecorator):
    """Context manager (or decorator) in which no graph is recorded."""

    def __enter__(self):
        self._previous = is_grad_enabled()
        _state.grad_enabled = False
        return self

    def __exit__(self, *exc):
        _state.grad_enabled = self._previous
        return False


class enable_grad(no_grad):
    """Context manager that turns graph recording back on inside ``no_grad``."""

    def __enter__(self):
        self._previous = is_grad_enabled()
        _state.grad_enabled = True
        return self


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


def _as_array(value, dtype=None):
    """Arrays keep their dtype; Python numbers and lists become the default float dtype."""
    if isinstance(value, Tensor):
        return value.data
    if isinstance(value, xp.ndarray):
        return value if dtype is None else value.astype(dtype, copy=False)
    if hasattr(value, "__array__") and not isinstance(value, (list, tuple)):
        array = xp.asarray(to_numpy(value))
        return array if dtype is None else array.astype(dtype, copy=False)
    array = xp.asarray(value)
    if dtype is not None:
        return array.astype(dtype, copy=False)
    if array.dtype.kind == "f":
        return array.astype(DEFAULT_DTYPE, copy=False)
    return array


class Tensor:
    """An array plus the bookkeeping reverse-mode differentiation needs."""

    __slots__ = ("data", "grad", "requires_grad", "creator", "_graph_freed", "__weakref__")
    # above NumPy's and CuPy's arrays (CuPy: 100), so ``array * Tensor`` defers to
    # Tensor.__rmul__ on either backend
    __array_priority__ = 1000

    def __init__(self, data, requires_grad=False, dtype=None):
        self.data = _as_array(data, dtype)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.creator = None  # the Function that produced this tensor (None for leaves)
        self._graph_freed = False

    # --- array-like conveniences -------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    def numel(self):
        return int(self.data.size)

    def __len__(self):
        return len(self.data)

    def item(self):
        return self.data.item()

    def numpy(self):
        return to_numpy(self.data)

    def detach(self):
        return Tensor(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.data!r}{grad})"

    # --- graph --------------------------------------------------------------------
    def backward(self, grad=None):
        """Fill ``.grad`` of every leaf this tensor depends on, then free the graph."""
        if self._graph_freed:
            raise RuntimeError(
                "backward() was already called through this graph and its saved arrays "
                "were freed; run the forward pass again before calling backward() again"
            )
        if not self.requires_grad:
            raise RuntimeError(
                "this tensor does not require grad: it was computed under no_grad() or "
                "from tensors that do not require grad"
            )
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient needs a scalar, got shape {self.shape}; "
                    "pass grad= of the same shape"
                )
            grad = xp.ones_like(self.data)
        else:
            grad = _as_array(grad, self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"grad has shape {grad.shape}, expected {self.shape}")

        order = _topological_order(self)
        # A shared intermediate freed by an earlier backward() would otherwise pass for
        # a leaf, and the tensors before it would silently miss their gradient.
        if any(node._graph_freed for node in order):
            raise RuntimeError(
                "backward() was already called through part of this graph (a tensor it "
                "depends on had its saved arrays freed); add the losses and call backward() "
                "once, or run the forward pass again"
            )
        grads = {id(self): grad}
        for node in reversed(order):
            node_grad = grads.pop(id(node), None)
            fn = node.creator
            if fn is None:  # a leaf: accumulate into .grad
                if node_grad is not None:
                    node.grad = node_grad if node.grad is None else node.grad + node_grad
                continue
            node.creator = None
            node._graph_freed = True
            if node_grad is None:
                continue
            input_grads = fn.backward(node_grad)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            for inp, inp_grad in zip(fn.inputs, input_grads):
                if inp_grad is None or not inp.requires_grad:
                    continue
                inp_grad = sum_to_shape(inp_grad, inp.shape)
                previous = grads.get(id(inp))
                grads[id(inp)] = inp_grad if previous is None else previous + inp_grad
            fn.inputs = ()  # release what forward saved

    # --- operators (implemented in ops.py) ------------------------------------------
    def __add__(self, other):
        return ops.Add.apply(self, _wrap(other, self))

    def __radd__(self, other):
        return ops.Add.apply(_wrap(other, self), self)

    def __sub__(self, other):
        return ops.Sub.apply(self, _wrap(other, self))

    def __rsub__(self, other):
        return ops.Sub.apply(_wrap(other, self), self)

    def __mul__(self, other):
        return ops.Mul.apply(self, _wrap(other, self))

    def __rmul__(self, other):
        return ops.Mul.apply(_wrap(other, self), self)

    def __truediv__(self, other):
        return ops.Div.apply(self, _wrap(other, self))

    def __rtruediv__(self, other):
        return ops.Div.apply(_wrap(other, self), self)

    def __neg__(self):
        return ops.Neg.apply(self)

    def __matmul__(self, other):
        return ops.MatMul.apply(self, _wrap(other, self))

    def __rmatmul__(self, other):
        return ops.MatMul.apply(_wrap(other, self), self)

    def __getitem__(self, index):
        return ops.GetItem.apply(self, index=index)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return ops.Reshape.apply(self, shape=shape)

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        """Like torch: merge dims start_dim..end_dim (inclusive) into one."""
        n = self.ndim
        start, end = start_dim % n, end_dim % n
        merged = 1
        for size in self.shape[start:end + 1]:
            merged *= size
        return self.reshape(self.shape[:start] + (merged,) + self.shape[end + 1:])

    def transpose(self, *axes):
        """``transpose(a, b)`` swaps two axes (torch style); ``transpose()`` reverses all;
        ``transpose((..))`` permutes (NumPy style)."""
        if len(axes) == 2 and all(isinstance(a, int) for a in axes):
            order = list(range(self.ndim))
            a, b = axes[0] % self.ndim, axes[1] % self.ndim
            order[a], order[b] = order[b], order[a]
            axes = tuple(order)
        elif len(axes) == 1:
            axes = tuple(axes[0])
        elif not axes:
            axes = tuple(reversed(range(self.ndim)))
        return ops.Transpose.apply(self, axes=axes)

    @property
    def T(self):
        return self.transpose()

    def sum(self, axis=None, keepdims=False):
        return ops.Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return ops.Mean.apply(self, axis=axis, keepdims=keepdims)

    def exp(self):
        return ops.Exp.apply(self)

    def log(self):
        return ops.Log.apply(self)

    def tanh(self):
        return ops.Tanh.apply(self)

    def sqrt(self):
        return ops.Sqrt.apply(self)

    def astype(self, dtype):
        return ops.Cast.apply(self, dtype=dtype)

    def argmax(self, axis=None, keepdims=False):
        """Index of the largest entry (no gradient)."""
        return xp.argmax(self.data, axis=axis, keepdims=keepdims)


def _wrap(value, like):
    """Python numbers become 0-d arrays of ``like``'s dtype, so float32 stays float32."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (int, float)):
        return Tensor(xp.asarray(value, dtype=like.dtype))
    return Tensor(value)


def _topological_order(root):
    """Nodes reachable from ``root``, each after all of its inputs (explicit stack)."""
    order, visited = [], set()
    stack = [(root, False)]
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
            for inp in node.creator.inputs:
                if inp.requires_grad and id(inp) not in visited:
                    stack.append((inp, False))
    return order


class Function:
    """One differentiable operation. Subclasses implement, on raw arrays::

        forward(self, *arrays, **options) -> array     # may save what backward needs on self
        backward(self, grad_out) -> grad or tuple of grads, one per array input (None = no grad)

    ``self.needs_grad`` tells forward whether a graph is being recorded, so it can
    skip saving arrays under ``no_grad()``.
    """

    inputs = ()
    needs_grad = False

    @classmethod
    def apply(cls, *inputs, **options):
        tensors = tuple(t if isinstance(t, Tensor) else Tensor(t) for t in inputs)
        fn = cls()
        fn.needs_grad = is_grad_enabled() and any(t.requires_grad for t in tensors)
        out = Tensor(fn.forward(*(t.data for t in tensors), **options))
        if fn.needs_grad:
            fn.inputs = tensors
            out.requires_grad = True
            out.creator = fn
        return out

    def forward(self, *arrays, **options):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad_out):  # pragma: no cover - abstract
        raise NotImplementedError


from . import ops  # noqa: E402  (ops needs Function and Tensor defined first)
