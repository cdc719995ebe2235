"""torch's ``dtype`` and ``Size`` objects: what ``x.dtype`` and ``x.shape`` return.

They print as torch's do (``torch.float32``, ``torch.Size([2, 3])``), so a learner's
output matches the book's, and they stay NumPy's underneath: a ``dtype`` hands NumPy
(and CuPy) its NumPy dtype through the ``.dtype`` attribute, so
``numpy.zeros(3, dtype=x.dtype)``, ``a.astype(x.dtype)`` and ``x.dtype.kind`` work,
and it equals the NumPy dtype (``tinygpt.float32 == numpy.float32``).
"""

import numpy


class dtype:  # noqa: N801 - torch's name
    """A NumPy dtype that prints as torch's (``torch.int64``)."""

    __slots__ = ("dtype", "_torch_name")

    def __init__(self, numpy_dtype, torch_name):
        self.dtype = numpy.dtype(numpy_dtype)  # NumPy's protocol: numpy.dtype(obj) reads it
        self._torch_name = torch_name

    def __getattr__(self, name):  # kind, itemsize, type, str, char, name: NumPy's
        return getattr(self.dtype, name)

    def __eq__(self, other):
        if type(other) is dtype:
            return self.dtype is other.dtype
        try:
            return self.dtype == numpy.dtype(other)
        except TypeError:
            return NotImplemented

    def __hash__(self):  # as the NumPy dtype's, so either finds the other in a dict
        return hash(self.dtype)

    def __repr__(self):
        return "torch." + self._torch_name

    __str__ = __repr__

    def __reduce__(self):  # pickles as the package attribute of the same name
        return (_by_name, (self._torch_name,))

    @property
    def is_floating_point(self):
        return self.dtype.kind == "f"

    @property
    def is_signed(self):
        return self.dtype.kind in "if"


# one object per NumPy dtype; torch's aliases (float, long, ...) name the same object
_CANONICAL = {numpy.float32: "float32", numpy.float64: "float64", numpy.int64: "int64",
              numpy.int32: "int32", numpy.int16: "int16", numpy.int8: "int8",
              numpy.uint8: "uint8", numpy.bool_: "bool"}
BY_NUMPY = {numpy.dtype(t): dtype(t, name) for t, name in _CANONICAL.items()}
_ALIASES = {"float": "float32", "double": "float64", "long": "int64", "int": "int32"}
DTYPES = {name: BY_NUMPY[numpy.dtype(t)] for t, name in _CANONICAL.items()}
DTYPES.update({alias: DTYPES[name] for alias, name in _ALIASES.items()})


def _by_name(name):
    return DTYPES[name]


def torch_dtype(numpy_dtype):
    """The torch-printing dtype of a NumPy dtype (the NumPy dtype itself if torch has none)."""
    return BY_NUMPY.get(numpy_dtype, numpy_dtype)


class Size(tuple):
    """A shape: a tuple that prints as ``torch.Size([2, 3])``; slices and sums stay Sizes."""

    __slots__ = ()

    def __repr__(self):
        return f"torch.Size({list(self)})"

    __str__ = __repr__

    def __getitem__(self, index):
        item = tuple.__getitem__(self, index)
        return Size(item) if isinstance(index, slice) else item

    def __add__(self, other):
        return Size(tuple.__add__(self, other))

    def __radd__(self, other):
        return Size(tuple(other) + tuple(self))

    def numel(self):
        n = 1
        for d in self:
            n *= d
        return n


# --- torch's type promotion: the dtype of an op's result ------------------------------

DEFAULT_FLOAT = numpy.dtype(numpy.float32)  # torch's default dtype


def result_type(*operands):
    """``torch.result_type``'s rule for the dtype of an op on ``operands``: tensors (whose
    ``.array`` has a dtype) and Python numbers.

    Each operand falls in a group: a tensor with dims, a 0-d tensor, or a number (a bool
    is a bool, an int int64, a float the default float32). Within a group the widest
    dtype wins (``promote_types``). Across groups a higher category (bool < integer <
    floating point) wins, but the same category defers to the group with dims: int32
    plus an int64 0-d tensor is int32, int32 plus 2.5 is float32, float16 plus a float64
    0-d tensor would stay float16."""
    groups = [None, None, None]  # tensors with dims, 0-d tensors, numbers
    for x in operands:
        array = getattr(x, "array", None)
        if array is not None:
            dt, group = array.dtype, (0 if array.ndim else 1)
        else:
            dt, group = scalar_dtype(x), 2
        groups[group] = dt if groups[group] is None else promote_types(groups[group], dt)
    return _above(groups[0], _above(groups[1], groups[2]))


def _above(higher, lower):
    """The dtype of two groups' results, ``higher`` the group with more dims."""
    if higher is None or lower is None:
        return lower if higher is None else higher
    if higher.kind == "f":
        return higher
    if higher.kind == "b" or lower.kind == "f":
        return promote_types(higher, lower)
    return higher


def promote_types(a, b):
    """torch.promote_types: the smallest dtype both fit in; bool below every other, and a
    float beats an integer whatever their widths (int64 with float32 is float32)."""
    a, b = numpy.dtype(a), numpy.dtype(b)
    if a == b or b.kind == "b":
        return a
    if a.kind == "b":
        return b
    if (a.kind == "f") != (b.kind == "f"):
        return a if a.kind == "f" else b
    return numpy.promote_types(a, b)


def scalar_dtype(value):
    """The dtype torch gives a Python number in an op with tensors."""
    if isinstance(value, (bool, numpy.bool_)):
        return numpy.dtype(numpy.bool_)
    if isinstance(value, (int, numpy.integer)):
        return numpy.dtype(numpy.int64)
    if isinstance(value, (float, numpy.floating)):
        return DEFAULT_FLOAT
    raise TypeError(f"{type(value).__name__} is not a number a tensor op takes")


def can_cast(from_dtype, to_dtype):
    """torch.can_cast: whether an in-place result of ``from_dtype`` may be stored in a
    tensor of ``to_dtype`` (no float into an integer, no integer into a bool)."""
    order = {"b": 0, "u": 1, "i": 1, "f": 2}
    return order[numpy.dtype(from_dtype).kind] <= order[numpy.dtype(to_dtype).kind]


def float_result(dtype):
    """The dtype of a float-valued op (exp, /, sigmoid) on ``dtype``: integers and bools
    give the default float32, floats keep theirs."""
    dtype = numpy.dtype(dtype)
    return dtype if dtype.kind == "f" else DEFAULT_FLOAT
