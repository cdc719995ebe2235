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
