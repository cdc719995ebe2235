"""A strict fake CuPy on the CPU, to catch host/device mixing on a machine without a GPU.

``PYTHONPATH=tests/fake_cupy TINYGPT_BACKEND=cupy python -m pytest`` makes tinygpt import
this module as ``cupy``: the suite then runs the CuPy code paths on NumPy, and mixing
host and device arrays fails here the way it fails on a GPU (cupy/_core/core.pyx,
_routines_indexing.pyx of CuPy 14):

* ``cupy.ndarray`` wraps a NumPy array and is not one: ``numpy.asarray(x)`` (anything
  that calls ``__array__``) raises TypeError; ``x.get()`` / ``asnumpy(x)`` copy to the
  host, ``asarray`` / ``array`` / ``ascontiguousarray`` copy NumPy data to the device;
* operators, ufuncs and module functions refuse NumPy arrays (TypeError "Unsupported
  type"); Python and NumPy scalars are fine; NumPy functions and ufuncs given a fake array
  dispatch here (``__array_function__``, ``__array_ufunc__``) and return fake arrays;
  ``a * b`` defers to ``b`` only by CuPy's rule (``__array_ufunc__ = None`` or a higher
  ``__array_priority__``), so ``device_array * Tensor`` fails as on a GPU;
* reductions and integer indexing give 0-d arrays, not scalars; ``float``, ``int``,
  ``bool``, ``.item()``, ``.tolist()`` are the (syncing) ways out; there is no
  ``__index__`` (``range(x.max())`` fails) and no ``ctypes``, ``resize`` & co.;
* indices may be NumPy int/bool arrays or lists (CuPy copies them over), but assigning a
  NumPy array or a list (``x[i] = host_values``) raises TypeError; real CuPy raises
  ValueError for basic slices and copies silently for advanced ones: both are refused;
* no strings, objects, datetimes or long doubles (ValueError "Unsupported dtype");
  no floating-point warnings (CuPy never warns on inf/nan).

Not modelled: kernels (no RawModule, RawKernel, ElementwiseKernel: tinygpt runs the
plain array twins of its fused kernels), streams and events (no-ops), devices (always
one; ``FAKE_CUPY_NO_GPU=1`` makes it none), memory pools, the cost and asynchrony of
transfers, CuPy's numerical differences, and which NumPy functions CuPy lacks (all of
NumPy's are forwarded).
"""

import os
import sys
import types

import numpy

_SCALARS = (int, float, complex, bool, numpy.generic)
_COMPARISONS = ("less", "less_equal", "equal", "not_equal", "greater", "greater_equal")
_ATTRIBUTES = set("""T all any argmax argmin argpartition argsort astype base byteswap choose
    clip compress conj conjugate copy cumprod cumsum diagonal dot dtype dump dumps fill flags
    flat flatten imag item itemsize mT max mean min nbytes ndim nonzero partition prod ptp put
    ravel real repeat reshape round searchsorted shape size sort squeeze std strides sum
    swapaxes take tobytes tofile tolist trace transpose var view""".split())  # CuPy's ndarray


def _unsupported(x):
    return TypeError(f"Unsupported type {type(x)}")


def _unwrap(x, host_ok=False):
    """Fake arrays -> their NumPy data, also inside lists and tuples; NumPy arrays are
    refused unless ``host_ok`` (the explicit host->device copies)."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, numpy.ndarray) and not host_ok:
        raise _unsupported(x)
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, host_ok) for v in x)
    return x


def _wrap(x):
    """NumPy results -> fake arrays (NumPy scalars become 0-d arrays, as CuPy returns)."""
    if isinstance(x, (numpy.ndarray, numpy.generic)):
        if x.dtype.kind in "OSUVMm" or x.dtype.itemsize > 8 * (1 + (x.dtype.kind == "c")):
            raise ValueError(f"Unsupported dtype {x.dtype}")
        return ndarray._of(numpy.asarray(x))
    if isinstance(x, (tuple, list)):
        return type(x)(_wrap(v) for v in x)
    if isinstance(x, (numpy.random.Generator, numpy.random.RandomState)):
        return _Namespace(x)
    return x


def _index(key):
    """An index as CuPy takes it: fake arrays, and NumPy int/bool arrays or lists."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    if isinstance(key, ndarray):
        return key._a
    if isinstance(key, numpy.ndarray) and key.dtype.kind not in "biu":
        raise IndexError(f"arrays used as indices must be of integer or boolean type "
                         f"(actual: {key.dtype.type})")
    return key


def _forward(func, host_ok=False):
    def forwarded(*args, **kwargs):
        args, kwargs = _unwrap(args, host_ok), {k: _unwrap(v, host_ok) for k, v in kwargs.items()}
        with numpy.errstate(all="ignore"):
            return _wrap(func(*args, **kwargs))

    forwarded.__name__ = forwarded.__qualname__ = getattr(func, "__name__", "function")
    return forwarded


class _Namespace:
    """A NumPy module or object whose functions take and return fake arrays."""

    def __init__(self, target):
        self._target = target

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        attr = getattr(self._target, name)
        if isinstance(attr, numpy.ufunc):
            return ufunc(attr)
        if callable(attr) and not isinstance(attr, type):
            return _forward(attr)
        return _wrap(attr)


class ufunc:
    """A NumPy ufunc that takes fake arrays and scalars only; ``out=`` must be fake."""

    def __init__(self, np_ufunc):
        self._ufunc, self.__name__ = np_ufunc, np_ufunc.__name__

    def _call(self, method, inputs, kwargs):
        if self.__name__ in _COMPARISONS:  # CuPy's workaround for numpy/numpy#12142
            inputs = [x.item() if isinstance(x, numpy.ndarray) and x.ndim == 0 else x
                      for x in inputs]
        for x in inputs:
            if not isinstance(x, (ndarray, *_SCALARS)):
                raise _unsupported(x)
        out = kwargs.get("out")
        if out is not None and not all(isinstance(o, ndarray) for o in
                                       (out if isinstance(out, tuple) else (out,))):
            raise TypeError(f"out must be a cupy.ndarray, got {type(out)}")
        kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
        with numpy.errstate(all="ignore"):
            result = method(*_unwrap(tuple(inputs)), **kwargs)
        return out if out is not None else _wrap(result)

    def __call__(self, *inputs, **kwargs):
        return self._call(self._ufunc, inputs, kwargs)

    def at(self, a, indices, b=None):
        if not isinstance(a, ndarray):
            raise _unsupported(a)
        at = self._ufunc.at
        self._call(lambda *b: at(a._a, _index(indices), *b), () if b is None else (b,), {})

    def __getattr__(self, name):  # reduce, accumulate, outer, nin, ...
        if name.startswith("_"):
            raise AttributeError(name)
        attr = getattr(self._ufunc, name)
        return (lambda *inputs, **kw: self._call(attr, inputs, kw)) if callable(attr) else attr


def _should_use_rop(x, y):
    """CuPy's rule: defer to ``y`` when it opts out of ufuncs or has a higher priority."""
    y_ufunc = getattr(y, "__array_ufunc__", _should_use_rop)
    if y_ufunc is not _should_use_rop:
        return y_ufunc is None
    return getattr(x, "__array_priority__", 0) < getattr(y, "__array_priority__", 0)


def _operator(name, reflected=False, inplace=False):
    func = ufunc(getattr(numpy, name))

    def op(self, other):
        if inplace:
            return func(self, other, out=self)
        if not isinstance(other, ndarray) and _should_use_rop(self, other):
            return NotImplemented
        if name in ("equal", "not_equal") and type(other).__eq__ is object.__eq__:
            return ndarray._of(numpy.full(self.shape, name == "not_equal"))  # None, objects
        return func(other, self) if reflected else func(self, other)

    return op


class ndarray:
    """A device array of the fake: NumPy data that refuses to mix with host arrays."""

    __slots__ = ("_a",)
    __array_priority__ = 100
    __hash__ = None

    def __init__(self, shape, dtype=float, order="C"):
        self._a = numpy.empty(shape, dtype=dtype, order=order)

    @classmethod
    def _of(cls, array):
        self = object.__new__(cls)
        self._a = array
        return self

    def get(self, stream=None, order="C", out=None):
        if out is None:
            return numpy.array(self._a, order=order)
        out[...] = self._a
        return out

    def set(self, arr, stream=None):
        self._a[...] = arr

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def __array_ufunc__(self, np_ufunc, method, *inputs, **kwargs):
        if "out" in kwargs:
            if len(kwargs["out"]) != 1:
                raise ValueError("The 'out' parameter must have exactly one array value")
            kwargs["out"] = kwargs["out"][0]
        ours = ufunc(np_ufunc)
        return (ours if method == "__call__" else getattr(ours, method))(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        ours = sys.modules[__name__]
        for part in func.__module__.split(".")[1:] + [func.__name__]:
            ours = getattr(ours, part, None)
        return NotImplemented if ours is None else ours(*args, **kwargs)

    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        if isinstance(value, (list, tuple)) or (
                isinstance(value, numpy.ndarray) and value.ndim > 0):
            raise TypeError(f"cannot assign a host {type(value).__name__} to a cupy.ndarray "
                            f"(copy it over with cupy.asarray first)")
        self._a[_index(key)] = value._a if isinstance(value, ndarray) else value

    def __len__(self):
        if self._a.ndim == 0:
            raise TypeError("len() of unsized object")
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self._a)))

    def __format__(self, spec):
        return format(self._a, spec)

    def __deepcopy__(self, memo=None):
        return self.copy()

    __copy__ = __deepcopy__

    def __reduce__(self):
        return array, (self.get(),)

    @property
    def data(self):
        """CuPy's MemoryPointer; only ``.ptr`` is modelled."""
        return types.SimpleNamespace(ptr=self._a.__array_interface__["data"][0])

    @property
    def device(self):
        return cuda.Device(0)

    def __getattr__(self, name):  # shape, dtype, reshape, sum, astype, ...: CuPy's only
        if name not in _ATTRIBUTES:
            raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r}")
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)

        def method(*args, **kwargs):
            result = _forward(attr)(*args, **kwargs)
            return self if isinstance(result, ndarray) and result._a is self._a else result

        return method


for _f in (bool, int, float, complex, repr, str):  # the syncing ways out, as in CuPy
    setattr(ndarray, f"__{_f.__name__}__", (lambda f: lambda self: f(self._a))(_f))
for _name, _op in [("add", "add"), ("sub", "subtract"), ("mul", "multiply"),
                   ("truediv", "true_divide"), ("floordiv", "floor_divide"),
                   ("mod", "remainder"), ("pow", "power"), ("matmul", "matmul"),
                   ("and", "bitwise_and"), ("or", "bitwise_or"), ("xor", "bitwise_xor"),
                   ("lshift", "left_shift"), ("rshift", "right_shift")]:
    setattr(ndarray, f"__{_name}__", _operator(_op))
    setattr(ndarray, f"__r{_name}__", _operator(_op, reflected=True))
    setattr(ndarray, f"__i{_name}__", _operator(_op, inplace=True))
for _name, _op in [("lt", "less"), ("le", "less_equal"), ("eq", "equal"), ("ne", "not_equal"),
                   ("gt", "greater"), ("ge", "greater_equal"), ("neg", "negative"),
                   ("pos", "positive"), ("abs", "absolute"), ("invert", "invert")]:
    _f = ufunc(getattr(numpy, _op))
    setattr(ndarray, f"__{_name}__", _operator(_op) if _f._ufunc.nin == 2 else
            (lambda f: lambda self: f(self))(_f))


# --- module level ------------------------------------------------------------------------

def asnumpy(a, stream=None, order="C", out=None):
    """The device->host copy (NumPy input comes back as NumPy, as in CuPy)."""
    return a.get(order=order, out=out) if isinstance(a, ndarray) else numpy.asarray(a)


def get_array_module(*args):
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else numpy


array, asarray, asanyarray, ascontiguousarray = (
    _forward(f, host_ok=True)
    for f in (numpy.array, numpy.asarray, numpy.asanyarray, numpy.ascontiguousarray))
random, linalg, fft = _Namespace(numpy.random), _Namespace(numpy.linalg), _Namespace(numpy.fft)


def _as_strided(x, shape=None, strides=None):
    """cupy.lib.stride_tricks.as_strided: a view of a device array's memory."""
    return ndarray._of(numpy.lib.stride_tricks.as_strided(_unwrap(x), shape, strides))


lib = types.SimpleNamespace(stride_tricks=types.SimpleNamespace(as_strided=_as_strided))


def __getattr__(name):  # the rest of NumPy, forwarded; no CUDA kernels
    if name.startswith("__") or name in ("RawModule", "RawKernel", "ElementwiseKernel"):
        raise AttributeError(f"module 'cupy' (fake) has no attribute {name!r}")
    value = globals()[name] = getattr(_Namespace(numpy), name)
    return value


class _Device:
    def __init__(self, device=0, **options):
        self.id = int(device) if isinstance(device, int) else 0
        self.ptr = 0

    def synchronize(self):
        pass

    def use(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _get_device_count():
    if os.environ.get("FAKE_CUPY_NO_GPU") == "1":
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
    return 1


cuda = types.ModuleType(f"{__name__}.cuda", "Fake cupy.cuda: one device, no-op streams.")
cuda.runtime = types.ModuleType(f"{__name__}.cuda.runtime")
cuda.runtime.getDeviceCount, cuda.runtime.getDevice = _get_device_count, lambda: 0
cuda.Device = cuda.Stream = cuda.Event = _Device
cuda.Stream.null = _Device()
cuda.get_current_stream = lambda device=None: cuda.Stream.null
sys.modules[cuda.__name__], sys.modules[cuda.runtime.__name__] = cuda, cuda.runtime
