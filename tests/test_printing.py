"""tinygpt.printing against torch: the same array, the same settings, the same text.

Each case builds a NumPy array, prints it with ``tensor_repr`` and with
``repr(torch.from_numpy(array))`` under the same print options, and asserts the two
strings are equal: hand-picked edge cases first, then a seeded random sweep.
"""

import math

import numpy
import pytest

from tinygpt import printing

torch = pytest.importorskip("torch")

nan, inf = math.nan, math.inf


@pytest.fixture(autouse=True)
def _default_printoptions():
    yield
    printing.set_printoptions(profile="default")
    torch.set_printoptions(profile="default")


def assert_prints_as_torch(values, options=None, autograd=None):
    """``options``: set_printoptions keywords for both; ``autograd``: None,
    "requires_grad" or "grad_fn" (a float tensor that needs its gradient, or a clone of one)."""
    values = numpy.asarray(values)
    options = options or {}
    printing.set_printoptions(**options)
    torch.set_printoptions(**options)
    t = torch.from_numpy(values.copy())
    extras = ()
    if autograd == "requires_grad":
        t.requires_grad_()
        extras = ("requires_grad=True",)
    elif autograd == "grad_fn":
        t = t.requires_grad_().clone()
        extras = ("grad_fn=<CloneBackward0>",)
    ours = printing.tensor_repr(values, extras=extras)
    theirs = repr(t)
    assert ours == theirs, (f"\n{values.dtype} {values.shape} {options}\n"
                            f"torch:\n{theirs}\ntinygpt:\n{ours}")


def f32(values):
    return numpy.asarray(values, dtype=numpy.float32)


# --- hand-picked cases -----------------------------------------------------------------------

EDGE_CASES = {
    # whole numbers, fixed digits, nan / inf / -0.
    "whole floats": f32([1.0, 0.0]),
    "whole 0-d": f32(1.0),
    "fraction 0-d": f32(0.5),
    "nan 0-d": f32(nan),
    "inf 0-d": f32(-inf),
    "minus zero 0-d": f32(-0.0),
    "tiny 0-d": f32(1e-5),
    "huge 0-d": f32(3e10),
    "zeros": numpy.zeros(4, numpy.float32),
    "nan only": f32([nan, nan]),
    "inf only": f32([inf, -inf]),
    "zero and nan": f32([0.0, nan]),
    "whole and inf": f32([1.0, inf]),
    "fraction and minus zero": f32([0.5, -0.0]),
    "minus zero and fraction": f32([-0.0, 1.5, -2.25]),
    "masked logits": f32([4.51, -inf, -inf, 6.75, -inf, 6.28]),
    "negative fractions": f32([-1.5, 2.25, -100.125]),
    "float64 digits": numpy.array([0.1, 0.2, 1 / 3]),
    "float64 whole": numpy.array([1.0, -2.0]),
    # scientific notation: where torch switches it on
    "small probabilities": f32([1.5737e-05, 9.8281e-06, 1.2588e-05]),
    "ratio over 1000": f32([1.0, 1001.0]),
    "ratio of exactly 1000": f32([1.0, 1000.0]),
    "ratio under 1000": f32([0.5, 499.0]),
    "over 1e8": f32([2e8]),
    "whole over 1e8": f32([1e9, 3.0]),
    "smallest 1e-4": f32([1e-4, 2e-4]),
    "under 1e-4 with nan": f32([5e-5, nan, 0.0]),
    "float32 max": f32([3.4028235e38, -1.0]),
    "denormal": f32([1e-40, 1.0]),
    # bools and integers
    "bools": numpy.array([True, False]),
    "true only": numpy.array([True, True]),
    "bool 0-d": numpy.array(False),
    "bool matrix": numpy.array([[True, False, True], [False, False, True]]),
    "int64": numpy.array([-3, 10, 250]),
    "int64 0-d": numpy.array(7),
    "int64 extremes": numpy.array([numpy.iinfo(numpy.int64).min, numpy.iinfo(numpy.int64).max]),
    "int32": numpy.array([1, -2], dtype=numpy.int32),
    "int16": numpy.array([[300, -7]], dtype=numpy.int16),
    "int8": numpy.array([-128, 127], dtype=numpy.int8),
    "uint8": numpy.array([0, 255, 3], dtype=numpy.uint8),
    "uint8 0-d": numpy.array(9, dtype=numpy.uint8),
    # empty tensors: size= unless 1-d, dtype= unless float32
    "empty": f32([]),
    "empty int64": numpy.array([], dtype=numpy.int64),
    "empty bool": numpy.array([], dtype=numpy.bool_),
    "empty float64": numpy.array([], dtype=numpy.float64),
    "empty 0x3": numpy.zeros((0, 3), numpy.float32),
    "empty 3x0 int": numpy.zeros((3, 0), numpy.int64),
    "empty 2x0x3 uint8": numpy.zeros((2, 0, 3), numpy.uint8),
    # line wrapping and nesting
    "long vector": numpy.arange(30, dtype=numpy.float32) + 0.5,
    "long int vector": numpy.arange(100),
    "matrix": numpy.arange(12, dtype=numpy.float32).reshape(3, 4) / 7,
    "wide matrix": numpy.arange(60, dtype=numpy.float32).reshape(2, 30) * 1.25,
    "3-d": numpy.arange(24, dtype=numpy.float32).reshape(2, 3, 4) - 11.5,
    "4-d": numpy.arange(48).reshape(2, 2, 3, 4),
    "unit dims": f32([[[0.25]]]),
    # summarised
    "summarised vector": numpy.arange(2000),
    "summarised matrix": numpy.arange(2000, dtype=numpy.float32).reshape(40, 50) / 3,
    "summarised 3-d": numpy.arange(2000, dtype=numpy.float64).reshape(10, 10, 20),
    "summarised, width from the ends only": numpy.concatenate(
        [f32([1.5, 2.5, 3.5]), numpy.full(1000, 12345.678, numpy.float32), f32([4.5, 5, 6])]),
}


@pytest.mark.parametrize("name", EDGE_CASES)
def test_edge_case_prints_as_torch(name):
    assert_prints_as_torch(EDGE_CASES[name])


OPTION_CASES = [
    ({"precision": 2}, f32([1.23456, 2.5])),
    ({"precision": 0}, f32([1.5, 2.25, -0.5])),
    ({"precision": 8}, numpy.array([1 / 3, 2 / 3])),
    ({"sci_mode": True}, f32([1.5, 2.0])),
    ({"sci_mode": True}, f32([1.0, 2.0])),
    ({"sci_mode": True}, numpy.zeros(3, numpy.float32)),  # no nonzero value: stays 0.
    ({"sci_mode": True}, numpy.arange(5)),  # integers never change
    ({"sci_mode": False}, f32([1e-8, 1.0])),
    ({"sci_mode": False}, f32([1e12, 1.5])),
    ({"threshold": 5}, numpy.arange(10)),
    ({"threshold": 5}, f32(2.5)),
    ({"threshold": 5, "edgeitems": 1}, numpy.arange(24, dtype=numpy.float32).reshape(2, 3, 4)),
    ({"threshold": 5, "edgeitems": 0}, numpy.arange(10)),
    ({"threshold": 5, "edgeitems": 0}, numpy.arange(24).reshape(2, 3, 4)),
    ({"edgeitems": 0}, numpy.arange(4)),  # not summarised, yet size= is shown
    ({"edgeitems": 0}, f32(3.0)),
    ({"edgeitems": 0}, numpy.array([], dtype=numpy.int8)),
    ({"threshold": 10, "edgeitems": 2}, numpy.arange(36, dtype=numpy.float32).reshape(6, 6)),
    ({"linewidth": 20}, numpy.arange(12, dtype=numpy.float32) / 3),
    ({"linewidth": 5}, numpy.arange(6).reshape(2, 3)),
    ({"linewidth": 1}, f32([[1.5, 2.5], [3.5, 4.5]])),
    ({"linewidth": 200}, numpy.arange(60, dtype=numpy.float32) / 7),
    ({"profile": "short"}, numpy.arange(3000, dtype=numpy.float32) / 9),
    ({"profile": "full"}, numpy.arange(1200)),
    ({"profile": "full", "precision": 1}, f32([0.25, 0.75])),
]


@pytest.mark.parametrize("case", range(len(OPTION_CASES)))
def test_print_options_as_torch(case):
    options, values = OPTION_CASES[case]
    assert_prints_as_torch(values, options)


@pytest.mark.parametrize("autograd", ["requires_grad", "grad_fn"])
@pytest.mark.parametrize("values", [
    f32(1.5),
    numpy.arange(3, dtype=numpy.float64),
    f32([0.0, 1.0]),
    numpy.arange(10, dtype=numpy.float32) + 0.5,  # the suffix wraps onto its own line
    numpy.arange(9, dtype=numpy.float64) + 0.5,  # dtype= and the autograd suffix
    numpy.arange(12, dtype=numpy.float32).reshape(3, 4) + 0.5,
    numpy.zeros((0, 4), numpy.float64),
])
def test_autograd_suffixes_as_torch(values, autograd):
    assert_prints_as_torch(values, autograd=autograd)


def test_set_printoptions_as_torch():
    """Every call sets sci_mode; a profile sets the rest first; get_printoptions reads back."""
    printing.set_printoptions(sci_mode=True, precision=6)
    printing.set_printoptions(threshold=50)
    assert printing.get_printoptions() == {"precision": 6, "threshold": 50, "edgeitems": 3,
                                           "linewidth": 80, "sci_mode": None}
    printing.set_printoptions(profile="short", linewidth=100)
    assert printing.get_printoptions() == {"precision": 2, "threshold": 1000, "edgeitems": 2,
                                           "linewidth": 100, "sci_mode": None}
    with printing.printoptions(precision=1, sci_mode=False):
        assert printing.tensor_repr(f32([1e-6, 0.25])) == "tensor([0.0, 0.2])"
    assert printing.get_printoptions()["precision"] == 2


# --- a seeded random sweep -------------------------------------------------------------------

DTYPES = [numpy.float32, numpy.float64, numpy.int64, numpy.int32, numpy.int16, numpy.int8,
          numpy.uint8, numpy.bool_]
SWEEP = 400


def _random_shape(rng):
    ndim = int(rng.integers(0, 4))
    most = [1, 40, 12, 7][ndim]  # room to pass a small threshold
    shape = [int(n) for n in rng.integers(1, most + 1, size=ndim)]
    if ndim and rng.random() < 0.1:  # empty
        shape[int(rng.integers(0, ndim))] = 0
    return tuple(shape)


def _random_floats(rng, shape, dtype):
    n = math.prod(shape)
    kind = rng.integers(0, 4)
    if kind == 0:  # whole numbers
        values = rng.integers(-1000, 1000, size=n).astype(dtype)
    elif kind == 1:  # one magnitude
        values = rng.standard_normal(n) * 10.0 ** rng.uniform(-7, 11)
    else:  # magnitudes mixed, some whole
        values = rng.standard_normal(n) * 10.0 ** rng.uniform(-9, 12, size=n)
        whole = rng.random(n) < 0.3
        values[whole] = numpy.round(values[whole])
    values = values.astype(dtype)
    special = rng.random(n) < (0.1 if rng.random() < 0.5 else 0.0)
    values[special] = rng.choice(numpy.array([nan, inf, -inf, 0.0, -0.0], dtype),
                                 size=int(special.sum()))
    return values.reshape(shape)


def _random_values(rng, shape, dtype):
    if dtype == numpy.bool_:
        return rng.random(shape) < rng.random()
    if numpy.dtype(dtype).kind == "f":
        return _random_floats(rng, shape, dtype)
    info = numpy.iinfo(dtype)
    top = min(int(info.max), 10 ** int(rng.integers(1, 19)))
    low = 0 if info.min == 0 else max(int(info.min), -top)
    return rng.integers(low, top, size=shape, dtype=dtype, endpoint=True)


def _random_options(rng):
    if rng.random() < 0.4:
        return {}
    options = {}
    if rng.random() < 0.5:
        options["precision"] = int(rng.integers(0, 9))
    if rng.random() < 0.5:
        options["threshold"] = int(rng.choice([3, 10, 30, 1000]))
    if rng.random() < 0.5:
        options["edgeitems"] = int(rng.integers(0, 5))
    if rng.random() < 0.5:
        options["linewidth"] = int(rng.integers(10, 140))
    if rng.random() < 0.3:
        options["sci_mode"] = bool(rng.random() < 0.5)
    return options


@pytest.mark.parametrize("seed", range(SWEEP))
def test_random_array_prints_as_torch(seed):
    rng = numpy.random.default_rng([29, seed])
    dtype = DTYPES[seed % len(DTYPES)]
    values = _random_values(rng, _random_shape(rng), dtype)
    autograd = None
    if numpy.dtype(dtype).kind == "f" and rng.random() < 0.25:
        autograd = str(rng.choice(["requires_grad", "grad_fn"]))
    assert_prints_as_torch(values, _random_options(rng), autograd)
