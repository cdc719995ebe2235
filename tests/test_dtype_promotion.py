"""dtypes by torch.result_type's rules (issue 29): unary ops that make floats give
float32 for integer and bool tensors; a 0-d tensor or a Python number of the same kind
defers to a tensor with dims; integers are not widened by NumPy's rules. Every case runs
on torch and on tinygpt through ``same`` (tests/helpers/torch_compare.py), which
compares dtypes, shapes and values."""

import operator

import pytest

from .helpers.torch_compare import same

UNARY = ["exp", "log", "sqrt", "tanh", "sin", "cos", "rsqrt", "sigmoid"]
INPUTS = {"int64": lambda lib: lib.tensor([1, 2, 4]), "bool": lambda lib: lib.tensor([True, False]),
          "int32": lambda lib: lib.tensor([1, 4], dtype=lib.int32),
          "uint8": lambda lib: lib.tensor([1, 4], dtype=lib.uint8)}


@pytest.mark.parametrize("name", UNARY)
@pytest.mark.parametrize("make", INPUTS.values(), ids=INPUTS.keys())
def test_silent_wrong_dtype_float_making_unary_op_on_integers_is_float32(name, make):
    same(lambda lib: getattr(make(lib), name)())


@pytest.mark.parametrize("name", UNARY)
def test_silent_wrong_dtype_torch_function_on_integers_is_float32(name):
    same(lambda lib: getattr(lib, name)(lib.tensor([1, 2, -3])))


POWERS = {
    "2 ** int": lambda lib: 2 ** lib.tensor([1, 2, 3]),
    "2 ** negative int": lambda lib: 2 ** lib.tensor([-1, 0, 1]),
    "2 ** int32": lambda lib: 2 ** lib.tensor([1, 2], dtype=lib.int32),
    "2 ** bool": lambda lib: 2 ** lib.tensor([True, False]),
    "2.0 ** int": lambda lib: 2.0 ** lib.tensor([1, 2, 3]),
    "2.5 ** int32": lambda lib: 2.5 ** lib.tensor([1, 2], dtype=lib.int32),
    "2 ** float64": lambda lib: 2 ** lib.tensor([1.0, 2.0], dtype=lib.float64),
    "bool ** 0": lambda lib: lib.tensor([True, False]) ** 0,
    "bool ** 2.0": lambda lib: lib.tensor([True, False]) ** 2.0,
    "int ** 0": lambda lib: lib.tensor([2, 3]) ** 0,
    "int ** 2": lambda lib: lib.tensor([2, 3]) ** 2,
    "int32 ** 2": lambda lib: lib.tensor([2, 3], dtype=lib.int32) ** 2,
    "int ** 2.0": lambda lib: lib.tensor([2, 3]) ** 2.0,
    "int ** 0.5": lambda lib: lib.tensor([4, 9]) ** 0.5,
    "pow(int, 2)": lambda lib: lib.pow(lib.tensor([2, 3]), 2),
    "pow(2, int)": lambda lib: lib.pow(2, lib.tensor([2, 3])),
}


@pytest.mark.parametrize("case", POWERS.values(), ids=POWERS.keys())
def test_silent_wrong_dtype_power(case):
    same(case)


@pytest.mark.parametrize("case", [
    lambda lib: lib.tensor([2.0, 3.0]) ** lib.tensor([3, 2]),
    lambda lib: lib.tensor([2, 3]) ** lib.tensor([3, 2]),
], ids=["float ** int tensor", "int tensor ** int tensor"])
def test_silent_wrong_dtype_tensor_power_or_a_refusal_naming_exp_log(case):
    same(case, alt=r"tensor \*\* tensor.*exp")


@pytest.mark.parametrize("case", [
    lambda lib: lib.tensor([1, 2]) ** -1,
    lambda lib: lib.tensor([0, 2]) ** -2,
    lambda lib: lib.tensor([1, 2], dtype=lib.int32) ** -1,
    lambda lib: lib.pow(lib.tensor([1, 2]), -1),
], ids=["int ** -1", "int ** -2", "int32 ** -1", "pow(int, -1)"])
def test_junk_accepted_integer_to_a_negative_integer_power(case):
    same(case, match="Integers to negative integer powers are not allowed")


BINARY = {
    "int32 ^ int": lambda lib: lib.tensor([1, 2], dtype=lib.int32) ^ 3,
    "int32 & int": lambda lib: lib.tensor([1, 3], dtype=lib.int32) & 1,
    "int32 | int": lambda lib: lib.tensor([1, 2], dtype=lib.int32) | 4,
    "int ^ int32": lambda lib: 3 ^ lib.tensor([1, 2], dtype=lib.int32),
    "int32 ^ True": lambda lib: lib.tensor([1, 2], dtype=lib.int32) ^ True,
    "uint8 | int": lambda lib: lib.tensor([1, 2], dtype=lib.uint8) | 4,
    "bool & int": lambda lib: lib.tensor([True, False]) & 1,
    "bool | True": lambda lib: lib.tensor([True, False]) | True,
    "int32 + 0-d int64": lambda lib: lib.tensor([1, 2], dtype=lib.int32) + lib.tensor(5),
    "0-d int64 + int32": lambda lib: lib.tensor(5) + lib.tensor([1, 2], dtype=lib.int32),
    "int32 + 0-d float64": lambda lib: lib.tensor([1, 2], dtype=lib.int32) + lib.tensor(
        5.0, dtype=lib.float64),
    "float32 + 0-d float64": lambda lib: lib.tensor([1.0]) + lib.tensor(2.0, dtype=lib.float64),
    "0-d float64 * float32": lambda lib: lib.tensor(2.0, dtype=lib.float64) * lib.tensor([1.0]),
    "int32 + 1-d int64": lambda lib: lib.tensor([1], dtype=lib.int32) + lib.tensor([2]),
    "0-d bool + int8": lambda lib: lib.tensor(True) + lib.tensor([1], dtype=lib.int8),
    "0-d uint8 + int8": lambda lib: lib.tensor(1, dtype=lib.uint8) + lib.tensor(
        [1], dtype=lib.int8),
    "uint8 + int8": lambda lib: lib.tensor([1], dtype=lib.uint8) + lib.tensor([1], dtype=lib.int8),
    "int8 + 200 (wraps)": lambda lib: lib.tensor([1], dtype=lib.int8) + 200,
    "int32 * True": lambda lib: lib.tensor([1, 2], dtype=lib.int32) * True,
    "int / int": lambda lib: lib.tensor([1, 2]) / lib.tensor([2, 2]),
    "int64 / int32": lambda lib: lib.tensor([7]) / lib.tensor([2], dtype=lib.int32),
    "int32 / 2": lambda lib: lib.tensor([7], dtype=lib.int32) / 2,
    "bool / bool": lambda lib: lib.tensor([True]) / lib.tensor([True]),
    "int + 1.5": lambda lib: lib.tensor([1, 2]) + 1.5,
    "1.5 * int32": lambda lib: 1.5 * lib.tensor([1, 2], dtype=lib.int32),
    "bool * 2.5": lambda lib: lib.tensor([True, False]) * 2.5,
    "bool + bool": lambda lib: lib.tensor([True, False]) + lib.tensor([True, True]),
    "bool * bool": lambda lib: lib.tensor([True, False]) * lib.tensor([True, True]),
    "bool + True": lambda lib: lib.tensor([True, False]) + True,
    "bool + int": lambda lib: lib.tensor([True, False]) + 1,
    "bool + int tensor": lambda lib: lib.tensor([True, False]) + lib.tensor([3, 4]),
    "bool + int32 tensor": lambda lib: lib.tensor([True]) + lib.tensor([3], dtype=lib.int32),
    "bool + float tensor": lambda lib: lib.tensor([True]) + lib.tensor([0.5]),
    "int == float": lambda lib: lib.tensor([1, 2]) == lib.tensor([1.0, 2.5]),
    "int32 < 1.5": lambda lib: lib.tensor([1, 2], dtype=lib.int32) < 1.5,
    "where(int32, 0-d int64)": lambda lib: lib.where(lib.tensor([True, False]),
                                                     lib.tensor([1, 2], dtype=lib.int32),
                                                     lib.tensor(0)),
    "maximum-like max(int32, 0-d float)": lambda lib: lib.tensor([1, 2], dtype=lib.int32).max(
        lib.tensor(1.5, dtype=lib.float64)),
}


@pytest.mark.parametrize("case", BINARY.values(), ids=BINARY.keys())
def test_silent_wrong_dtype_binary_op_follows_result_type(case):
    same(case)


EMPTIES = {
    "tensor([])": lambda lib: lib.tensor([]),
    "tensor([[], []])": lambda lib: lib.tensor([[], []]),
    "zeros(0)": lambda lib: lib.zeros(0),
    "arange(0)": lambda lib: lib.arange(0),
    "empty int64 sum": lambda lib: lib.tensor([], dtype=lib.int64).sum(),
    "empty int32 sum": lambda lib: lib.zeros(0, dtype=lib.int32).sum(),
    "empty int8 sum": lambda lib: lib.zeros(0, dtype=lib.int8).sum(),
    "empty bool sum": lambda lib: lib.tensor([], dtype=lib.bool).sum(),
    "empty float sum": lambda lib: lib.tensor([]).sum(),
    "empty int32 sum(0)": lambda lib: lib.zeros(0, 3, dtype=lib.int32).sum(0),
    "empty int / 2": lambda lib: lib.tensor([], dtype=lib.int64) / 2,
    "empty float + empty int": lambda lib: lib.tensor([]) + lib.tensor([], dtype=lib.int64),
    "empty int * 1.5": lambda lib: lib.tensor([], dtype=lib.int64) * 1.5,
    "empty int exp": lambda lib: lib.tensor([], dtype=lib.int64).exp(),
    "empty float64 * float32": lambda lib: lib.zeros(0, dtype=lib.float64) * lib.zeros(0),
    "empty float32 * 0-d float64": lambda lib: lib.zeros(0) * lib.tensor(1.0, dtype=lib.float64),
    "cat of empties": lambda lib: lib.cat([lib.tensor([]), lib.tensor([1, 2])]),
}


@pytest.mark.parametrize("case", EMPTIES.values(), ids=EMPTIES.keys())
def test_silent_wrong_dtype_empty_tensors(case):
    same(case)


SUMS = {
    "int32 sum": lambda lib: lib.tensor([1, 2], dtype=lib.int32).sum(),
    "int32 sum(0)": lambda lib: lib.tensor([[1, 2]], dtype=lib.int32).sum(0),
    "int32 sum(keepdim)": lambda lib: lib.tensor([[1, 2]], dtype=lib.int32).sum(1, True),
    "int8 sum": lambda lib: lib.tensor([100, 100], dtype=lib.int8).sum(),
    "uint8 sum": lambda lib: lib.tensor([200, 200], dtype=lib.uint8).sum(),
    "int16 sum": lambda lib: lib.tensor([1, 2], dtype=lib.int16).sum(),
    "bool sum": lambda lib: lib.tensor([True, True, False]).sum(),
    "bool sum(1)": lambda lib: lib.tensor([[True, True], [False, True]]).sum(1),
    "torch.sum(bool)": lambda lib: lib.sum(lib.tensor([True, True])),
    "sum of a comparison": lambda lib: (lib.tensor([1, 2, 3]) > 1).sum(),
}


@pytest.mark.parametrize("case", SUMS.values(), ids=SUMS.keys())
def test_silent_wrong_dtype_sum_of_small_integers_is_int64(case):
    same(case)


@pytest.mark.parametrize("op", [operator.add, operator.sub, operator.mul, operator.truediv],
                         ids=["add", "sub", "mul", "truediv"])
@pytest.mark.parametrize("left, right", [
    ("int32", "int64-0d"), ("int32", "float64-0d"), ("uint8", "int8"), ("int64", "float"),
    ("int32", "int"), ("float32", "float64-0d"), ("int64", "int32"), ("int32", "float"),
])
def test_silent_wrong_dtype_arithmetic_table(op, left, right):
    """Each arithmetic operator over pairs of operands (result_type decides them all)."""
    make = {
        "int32": lambda lib: lib.tensor([3, -4], dtype=lib.int32),
        "int64": lambda lib: lib.tensor([3, -4]),
        "uint8": lambda lib: lib.tensor([3, 4], dtype=lib.uint8),
        "int8": lambda lib: lib.tensor([1, -2], dtype=lib.int8),
        "float32": lambda lib: lib.tensor([3.0, -4.0]),
        "int64-0d": lambda lib: lib.tensor(2),
        "float64-0d": lambda lib: lib.tensor(2.0, dtype=lib.float64),
        "float": lambda lib: 2.5,
        "int": lambda lib: 2,
    }
    same(lambda lib: (op(make[left](lib), make[right](lib)), op(make[right](lib),
                                                                make[left](lib))))
