"""torch's in-place ops: ``x.add_(y)``, ``x += y``, ``x[i] = v``, ``x.zero_()``, ...

An in-place op computes its result as the out-of-place op would (the same Functions),
then writes it into the tensor's memory, so every view of those values sees it. In the
graph (torch's "Autograd mechanics: in-place operations"):

- the tensor's ``grad_fn`` becomes the op that computed the result, whose input was the
  tensor's old node: ops that used the old values keep their edges to that node, and
  if one of them saved the old values, the bumped version makes its backward raise
  torch's error (versions.py);
- on a view, the base's ``grad_fn`` becomes a ``CopySlices`` (ops.py) that puts the
  result's gradient in the view's region and the rest through to the base's old node;
  the view's own ``grad_fn`` is then made again from the base's (views.refresh).

torch's checks come first: a leaf that requires grad (or a view of one) cannot change
in place while a graph is recorded, nor a view made under no_grad or one of several
views (split); the result must keep the tensor's dtype (no float into an integer
tensor) and shape (no broadcasting to a larger one); memory that several elements share
(expand) cannot be written.
"""

import numpy

from . import ops
from .autograd import TensorBase
from .backend import xp
from .dtypes import can_cast, float_result, result_type
from .grad_mode import is_grad_enabled
from .views import refresh


def binary_(t, op, other, name, floats=False, alpha=1, **options):
    """``t = op(t, alpha * other)`` in place (add_, mul_, x += y, ...), computed in
    torch's result dtype and stored in t's."""
    if not isinstance(other, TensorBase) and not isinstance(
            other, (bool, int, float, numpy.number, numpy.bool_)):
        other = t._wrap(xp.asarray(other))
    if isinstance(other, TensorBase):
        _check_overlap(t, other)
    if alpha != 1:
        other = other * alpha
    dtype = result_type(t, other)
    dtype = float_result(dtype) if floats else dtype
    _check_cast(dtype, t.array.dtype)
    if isinstance(other, TensorBase):
        _check_shape(t, other.array.shape)

    def compute(source):
        return op.apply(_in_dtype(source, dtype, t), _in_dtype(other, dtype, t), **options)

    reads_self = op.reads is None or any(0 in r for r in op.reads)
    return _in_place(t, name, compute, (other,), reads_self and dtype == t.array.dtype)


def bitwise_(t, fn, other, name):
    """``t = fn(t, other)`` in place for bool and integer tensors (&=, |=, ^=)."""
    if t.array.dtype.kind not in "biu":
        raise RuntimeError(f"\"{name[:-1]}_cpu\" not implemented for '{_type_name(t)}'")
    return binary_(t, ops.Elementwise, other, name, fn=fn)


def result_(t, compute, name, reads_self=True, where=None):
    """``t = compute(t)`` in place, for any out-of-place ``compute`` (exp_, clamp_,
    masked_fill_, pow_). ``where``: a mask of the entries to write (masked_fill_, which
    may write memory that several elements share, entry by entry, as torch's)."""
    return _in_place(t, name, compute, (), reads_self, shared_ok=where is not None,
                     where=where)


def copy_(t, src, name="copy_", expand=False):
    """t's values := src's (broadcast to t's shape, converted to t's dtype). torch's
    fill_ and zero_ (``name``) may write memory that several elements share (expand);
    ``x[i] = v`` expands v to x[i]'s shape before the overlap check, as torch does."""
    _check_shape(t, src.array.shape)
    read = _expanded(t, src) if expand else src
    _check_overlap(t, read)
    # a copy of values onto themselves writes nothing new, even where they repeat
    shared_ok = name != "copy_" or _same_values(t, read)
    return _in_place(t, name, lambda source: ops.Copy.apply(source, src), (src,), False,
                     shared_ok=shared_ok)


def index_put_(t, index, value):
    """``t[index] = value`` for an index with int tensors or masks (torch's index_put_):
    only the indexed entries are written."""
    parts = index if isinstance(index, tuple) else (index,)
    one_mask = len(parts) == 1 and getattr(parts[0], "dtype", None) is not None and \
        parts[0].dtype.kind == "b"
    if not isinstance(value, TensorBase):
        value = t._wrap(xp.asarray(value, dtype=t.array.dtype))
    elif one_mask and value.array.size == 1:  # torch's masked_fill_: the value's number
        value = t._wrap(xp.asarray(value.array.reshape(()).astype(t.array.dtype)))
    else:
        if value.array.dtype != t.array.dtype:
            raise RuntimeError(f"Index put requires the source and destination dtypes match, "
                               f"got {_type_name(t)} for the destination and "
                               f"{_type_name(value)} for the source.")
        _check_overlap(t, value, any_overlap=True)
    written = xp.zeros(t.array.shape, dtype=bool)
    written[index] = True

    def compute(source):
        try:
            return ops.SetItem.apply(source, value, index=index)
        except (ValueError, TypeError) as exc:  # NumPy's words for shapes that do not fit
            raise RuntimeError(f"shape mismatch: value tensor of shape "
                               f"{list(value.array.shape)} cannot be broadcast to indexing "
                               f"result ({exc})") from None

    return _in_place(t, "index_put_", compute, (value,), False, shared_ok=True, where=written)


def mark_several(pieces):
    """Mark views returned together (split, chunk, unbind): torch forbids changing one in
    place inside a graph."""
    for piece in pieces:
        if piece._view is not None and piece._view.meta is None:
            piece._view.meta = "multi"
    return pieces


def _in_place(t, name, compute, others, reads_self, shared_ok=False, where=None):
    """t <- compute(t), in t's memory; the graph as torch records it (module docstring)."""
    _check_memory(t, shared_ok)
    source = t
    if reads_self and is_grad_enabled() and (t.requires_grad or any(
            isinstance(o, TensorBase) and o.requires_grad for o in others)):
        # the op saves its input for backward: a copy, as t's memory is about to change
        source = t._wrap(t.array.copy())
        source.creator, source._requires_grad = t.grad_fn, t.requires_grad
    out = compute(source)
    if out.array.shape != t.array.shape:
        raise RuntimeError(f"output with shape {list(t.array.shape)} doesn't match the "
                           f"broadcast shape {list(out.array.shape)}")
    if out.array.dtype != t.array.dtype:
        _check_cast(out.array.dtype, t.array.dtype)
        out = out.to(t.array.dtype)
    recorded = out.creator is not None
    if recorded:
        _check_graph(t)
    if where is None:
        t.array[...] = out.array
    else:
        xp.copyto(t.array, out.array, where=where)
    t._counter.bump(name, out.creator.name() if recorded else None)
    if recorded:
        fn = out.creator
        if fn.reads_output:  # the output it saved is t's values now
            fn.output_version = (t._counter, t._counter.value)
        if t._view is None:
            t.creator, t._requires_grad = fn, True
        else:
            base = t._view.base
            ops.CopySlices(t._view.ops, base.array).record([base, out], base)
            refresh(t)
    return t


def _check_graph(t):
    """torch's errors for an in-place change that a recorded graph cannot take."""
    view = t._view
    if view is None:
        if t.creator is None and t._requires_grad:
            raise RuntimeError("a leaf Variable that requires grad is being used in an "
                               "in-place operation.")
        return
    if view.base.creator is None and view.base._requires_grad:
        raise RuntimeError("a view of a leaf Variable that requires grad is being used in an "
                           "in-place operation.")
    if view.meta == "no_grad":
        raise RuntimeError(
            "A view was created in no_grad mode and is being modified inplace with grad mode "
            "enabled. Given that this use case is ambiguous and error-prone, it is forbidden. "
            "You can clarify your code by moving both the view and the inplace either both "
            "inside the no_grad block (if you don't want the inplace to be tracked) or both "
            "outside (if you want the inplace to be tracked).")
    if view.meta == "multi":
        raise RuntimeError(
            "Output 0 of SplitBackward0 is a view and is being modified inplace. This view is "
            "the output of a function that returns multiple views. Such functions do not "
            "allow the output views to be modified inplace. You should replace the inplace "
            "operation by an out-of-place one.")


def _check_memory(t, shared_ok):
    """torch's error for writing where several elements share one memory location (but
    fill_, zero_ and masked_fill_ may: every alias gets the one value)."""
    array = t.array
    if not shared_ok and any(s == 0 and n > 1 for s, n in zip(array.strides, array.shape)):
        raise RuntimeError("unsupported operation: more than one element of the written-to "
                           "tensor refers to a single memory location. Please clone() the "
                           "tensor before performing the operation.")
    if not getattr(array.flags, "writeable", True):
        raise RuntimeError("this tensor's memory is read-only (a NumPy array that cannot be "
                           "written); clone() it before changing it in place")


def _check_overlap(t, other, any_overlap=False):
    """torch's error when an operand shares part of the memory being written, which
    would make the result depend on the order of the writes: the same memory with the
    same layout (``x += x``) is fine, except for index_put_ (``any_overlap``). As in
    torch, only memory without gaps is checked."""
    a, b = t.array, other.array
    if a is b and not any_overlap:
        return
    if not a.size or not b.size or not xp.may_share_memory(a, b):
        return
    if not (_dense(a) and _dense(b)):
        return
    a_begin, b_begin = _address(a), _address(b)
    a_end, b_end = a_begin + a.nbytes, b_begin + b.nbytes
    same = (a_begin, a_end, _strides(a)) == (b_begin, b_end, _strides(b))
    if (same and not any_overlap) or not (a_begin < b_end and b_begin < a_end):
        return
    raise RuntimeError("unsupported operation: some elements of the input tensor and the "
                       "written-to tensor refer to a single memory location, which may "
                       "cause an incorrect result. Please clone() the tensor before "
                       "performing the operation.")


def _strides(array):
    """``array``'s strides as torch lays them out: a new dim of length 1 steps as if the
    array were contiguous there (NumPy gives ``x[None]`` a stride of 0)."""
    strides, after = [], array.itemsize
    for n, stride in reversed(list(zip(array.shape, array.strides))):
        strides.insert(0, after if n == 1 and stride == 0 else stride)
        after = n * strides[0]
    return tuple(strides)


def _dense(array):
    """Whether ``array``'s elements fill a block of memory without gaps or repeats, in
    some order of its dims (torch's is_non_overlapping_and_dense)."""
    expected = array.itemsize
    for stride, n in sorted((abs(s), n) for s, n in zip(array.strides, array.shape) if n != 1):
        if stride != expected:
            return False
        expected *= n
    return True


def _expanded(t, src):
    """``src`` broadcast to t's shape as torch's expand lays it out (a new leading dim of
    length 1 strides as if contiguous, a repeated one by 0), for the overlap check."""
    array, shape = src.array, t.array.shape
    if array.shape == shape:
        return src
    lead = len(shape) - array.ndim
    strides = [0 if n == 1 and m != 1 else s for n, m, s in
               zip(array.shape, shape[lead:], array.strides)]
    for i in reversed(range(lead)):
        after = shape[i + 1] * strides[0] if strides else array.itemsize
        strides.insert(0, after if shape[i] == 1 else 0)
    return t._wrap(xp.lib.stride_tricks.as_strided(array, shape, strides))


def _same_values(t, src):
    """Whether ``src`` is ``t``'s very values: the same memory, layout and dtype."""
    a, b = t.array, src.array
    return a.size > 0 and xp.may_share_memory(a, b) and (
        _address(a), a.shape, a.strides, a.dtype) == (_address(b), b.shape, b.strides, b.dtype)


def _address(array):
    interface = getattr(array, "__array_interface__", None)
    return interface["data"][0] if interface is not None else array.data.ptr


def _check_cast(dtype, target):
    if not can_cast(dtype, target):
        raise RuntimeError(f"result type {_TYPE_NAMES[numpy.dtype(dtype).name]} can't be "
                           f"cast to the desired output type "
                           f"{_TYPE_NAMES[numpy.dtype(target).name]}")


def _check_shape(t, shape):
    """An operand must broadcast to exactly t's shape: an in-place result keeps it."""
    try:
        result = numpy.broadcast_shapes(t.array.shape, tuple(shape))
    except ValueError:
        result = None
    if result is None:
        for i in range(1, min(len(shape), t.array.ndim) + 1):
            m, n = t.array.shape[-i], shape[-i]
            if m != n and n != 1:
                raise RuntimeError(
                    f"The size of tensor a ({m}) must match the size of tensor b ({n}) at "
                    f"non-singleton dimension {t.array.ndim - i}")
    if result != t.array.shape:
        raise RuntimeError(f"output with shape {list(t.array.shape)} doesn't match the "
                           f"broadcast shape {list(result)}")


def _in_dtype(x, dtype, like):
    """``x`` (a tensor or a number) as a tensor of ``dtype``, through the graph."""
    if not isinstance(x, TensorBase):
        return like._wrap(xp.asarray(x, dtype=dtype))
    return x if x.array.dtype == dtype else x.to(dtype)


def _type_name(t):
    return _TYPE_NAMES[t.array.dtype.name]


_TYPE_NAMES = {"float32": "Float", "float64": "Double", "int64": "Long", "int32": "Int",
               "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool"}
