"""torch's functions tinygpt is to gain (issue 29): narrow, chunk, split, clamp, floor
division, expand, index_select and sort, each as a method and where torch has one as a
torch function, with values and float64 gradients compared with torch's through
``same(grads(...))``, and torch's errors for bad arguments (tests/helpers/torch_compare.py).
Their aliasing (each is a view where torch's is) is tested in test_views_and_inplace.py."""

import pytest

from .helpers.torch_compare import grads, same

A = [[1.0, -2.0, 3.0, 0.5], [4.0, 5.0, -6.0, 2.5], [0.0, 7.0, 8.0, -9.0]]  # (3, 4)

SHAPE_FUNCTIONS = {
    "narrow(1, 1, 2)": lambda lib, x: x.narrow(1, 1, 2),
    "narrow(0, -1, 1)": lambda lib, x: x.narrow(0, -1, 1),
    "narrow(-1, 0, 4)": lambda lib, x: x.narrow(-1, 0, 4),
    "torch.narrow": lambda lib, x: lib.narrow(x, 0, 1, 2),
    "chunk(2, 1)": lambda lib, x: x.chunk(2, 1),
    "chunk(2) uneven": lambda lib, x: x.chunk(2),
    "chunk(3, 1) of 4": lambda lib, x: x.chunk(3, 1),
    "chunk(5) of 3": lambda lib, x: x.chunk(5),
    "torch.chunk": lambda lib, x: lib.chunk(x, 2, -1),
    "split(1)": lambda lib, x: x.split(1),
    "split(3, 1) uneven": lambda lib, x: x.split(3, 1),
    "split([1, 2])": lambda lib, x: x.split([1, 2]),
    "split([1, 0, 3], 1)": lambda lib, x: x.split([1, 0, 3], 1),
    "split(split_size=2, dim=-1)": lambda lib, x: x.split(split_size=2, dim=-1),
    "torch.split int": lambda lib, x: lib.split(x, 2),
    "torch.split list": lambda lib, x: lib.split(x, [3, 1], dim=1),
    "unbind(1)": lambda lib, x: x.unbind(1),
    "torch.unbind": lambda lib, x: lib.unbind(x),
    "expand(-1, 3, 4) of (3, 1, 4)": lambda lib, x: x[:, :1].unsqueeze(1).expand(-1, 3, 4),
    "expand(-1, 5)": lambda lib, x: x[:, :1].expand(-1, 5),
    "expand new leading dims": lambda lib, x: x[:1].expand(2, 2, 4),
    "expand -1 under a new dim": lambda lib, x: x[:1].expand(2, -1, -1),
    "expand to the same shape": lambda lib, x: x.expand(3, 4),
    "expand(size)": lambda lib, x: x[0].expand((2, 4)),
    "expand_as": lambda lib, x: x[:1].expand_as(x),
    "index_select(0)": lambda lib, x: x.index_select(0, lib.tensor([2, 0])),
    "index_select repeats": lambda lib, x: x.index_select(1, lib.tensor([3, 1, 3, 3])),
    "index_select empty": lambda lib, x: x.index_select(0, lib.tensor([], dtype=lib.int64)),
    "index_select 0-d index": lambda lib, x: x.index_select(1, lib.tensor(2)),
    "index_select int32 index": lambda lib, x: x.index_select(0, lib.tensor([1], dtype=lib.int32)),
    "torch.index_select": lambda lib, x: lib.index_select(x, -1, lib.tensor([0, 0])),
    "sort()": lambda lib, x: x.sort(),
    "sort(0)": lambda lib, x: x.sort(0),
    "sort(1, True)": lambda lib, x: x.sort(1, True),
    "sort(dim=0, descending=True)": lambda lib, x: x.sort(dim=0, descending=True),
    "sort(stable=True)": lambda lib, x: x.sort(stable=True),
    "torch.sort": lambda lib, x: lib.sort(x, 0, descending=True),
    "sort values used": lambda lib, x: x.sort(1).values * x.sort(1)[0],
}


@pytest.mark.parametrize("body", SHAPE_FUNCTIONS.values(), ids=SHAPE_FUNCTIONS.keys())
def test_missing_function_values_and_gradients(body):
    same(grads(body, A))


TIES = [[2.0, 1.0, 2.0, 1.0], [3.0, 3.0, 3.0, 0.0]]


@pytest.mark.parametrize("body", [
    lambda lib, x: x.sort(dim=1, stable=True),
    lambda lib, x: x.sort(dim=1, descending=True, stable=True),
    lambda lib, x: lib.sort(x.long(), stable=True),
], ids=["sort ties", "sort ties descending", "sort int64 ties"])
def test_missing_function_sort_keeps_ties_in_index_order(body):
    same(grads(body, TIES))


CLAMPS = {
    "clamp(min)": lambda lib, x: x.clamp(0.5),
    "clamp(max=)": lambda lib, x: x.clamp(max=2.5),
    "clamp(min, max)": lambda lib, x: x.clamp(-1.0, 4.0),
    "clamp at the bounds": lambda lib, x: x.clamp(-2.0, 3.0),
    "clamp(min > max)": lambda lib, x: x.clamp(3.0, 1.0),
    "clamp int bounds": lambda lib, x: x.clamp(0, 5),
    "torch.clamp": lambda lib, x: lib.clamp(x, min=0.0, max=1.0),
    "clip": lambda lib, x: x.clip(-1.0, 1.0),
    "clamp(tensor min)": lambda lib, x: x.clamp(x[0]),
    "clamp(tensor min, tensor max)": lambda lib, x: x.clamp(x[0] * 0 - 1, x[1]),
    "clamp(max=tensor) broadcast": lambda lib, x: x.clamp(max=x[:, :1]),
    "torch.clamp(tensor bounds)": lambda lib, x: lib.clamp(x, x[2], x[1] + 1),
}


@pytest.mark.parametrize("body", CLAMPS.values(), ids=CLAMPS.keys())
def test_missing_function_clamp_values_and_gradients(body):
    same(grads(body, A))


@pytest.mark.parametrize("case", [
    lambda lib: lib.tensor([1, 5]).clamp(2.5),
    lambda lib: lib.tensor([1, 5]).clamp(2, 4),
    lambda lib: lib.tensor([1, 5]).clamp(lib.tensor([2, 2]), lib.tensor([3, 4])),
    lambda lib: lib.tensor([1, 5], dtype=lib.int32).clamp(max=3),
    lambda lib: lib.tensor([1.0, 5.0]).clamp(lib.tensor([2.0, 2.0], dtype=lib.float64)),
], ids=["int clamp(2.5)", "int clamp(2, 4)", "int tensor bounds", "int32 clamp", "f32 f64 bound"])
def test_silent_wrong_dtype_clamp(case):
    same(case)


@pytest.mark.parametrize("case, match", [
    (lambda lib: lib.tensor([1.0, 5.0]).clamp(), "At least one of 'min' or 'max'"),
    (lambda lib: lib.tensor([1.0]).clamp(lib.tensor([2.0]), 4.0), None),
    (lambda lib: lib.ones(2).clamp(lib.ones(3)), None),
], ids=["no bounds", "tensor and number bounds", "bound does not broadcast"])
def test_junk_accepted_clamp(case, match):
    same(case, raises=True, match=match)


FLOOR_DIVISIONS = {
    "int // int": lambda lib: lib.tensor([7, -7, 7, -7]) // lib.tensor([2, 2, -2, -2]),
    "int // 2": lambda lib: lib.tensor([7, -7, 0]) // 2,
    "int // -2": lambda lib: lib.tensor([7, -7, 0]) // -2,
    "int // 2.0": lambda lib: lib.tensor([7, -7]) // 2.0,
    "7 // int": lambda lib: 7 // lib.tensor([2, -2, 3]),
    "7.5 // int": lambda lib: 7.5 // lib.tensor([2, -2]),
    "int32 // int": lambda lib: lib.tensor([7, -7], dtype=lib.int32) // 2,
    "uint8 // uint8": lambda lib: lib.tensor([7, 200], dtype=lib.uint8) // lib.tensor(
        [2, 3], dtype=lib.uint8),
    "float // float": lambda lib: lib.tensor([7.5, -7.5, 7.5, -7.5]) // lib.tensor(
        [2.0, 2.0, -2.0, -2.0]),
    "float64 // 0.5": lambda lib: lib.tensor([1.25, -1.25], dtype=lib.float64) // 0.5,
    "int // float tensor": lambda lib: lib.tensor([7, -7]) // lib.tensor([2.0, 2.0]),
    "float // 0": lambda lib: lib.tensor([1.0, -1.0, 0.0]) // 0,
    "float // inf": lambda lib: lib.tensor([1.0, -1.0]) // float("inf"),
    "torch.floor_divide": lambda lib: lib.floor_divide(lib.tensor([7, -7]), 2),
    "floor_divide method": lambda lib: lib.tensor([-7.0, 7.0]).floor_divide(lib.tensor(2.0)),
    "div(rounding_mode='floor')": lambda lib: lib.tensor([-7, 7]).div(2, rounding_mode="floor"),
}


@pytest.mark.parametrize("case", FLOOR_DIVISIONS.values(), ids=FLOOR_DIVISIONS.keys())
def test_missing_function_floor_division_rounds_down(case):
    same(case)


@pytest.mark.parametrize("case, match", [
    (lambda lib: lib.tensor([7, -7]) // 0, "ZeroDivisionError"),
    (lambda lib: lib.tensor([7]) // lib.tensor([0]), "ZeroDivisionError"),
    (lambda lib: lib.tensor([True]) // lib.tensor([True]), None),
], ids=["int // 0", "int // int zero", "bool // bool"])
def test_junk_accepted_floor_division(case, match):
    same(case, raises=True, match=match)


@pytest.mark.parametrize("body", [
    lambda lib, x: x // 2,
    lambda lib, x: x // lib.tensor([[2.0, 3.0, 4.0, 1.0]], dtype=x.dtype),
    lambda lib, x: 7.0 // x,
], ids=["x // 2", "x // tensor", "7 // x"])
def test_silent_wrong_gradient_floor_division_has_no_derivative(body):
    """torch records the op (requires_grad is True) and refuses at backward."""
    same(grads(body, A), match="derivative for aten::floor_divide is not implemented")


BAD_ARGUMENTS = {
    "narrow past the end": lambda lib: lib.ones(6).narrow(0, 4, 3),
    "narrow bad dim": lambda lib: lib.ones(6).narrow(1, 0, 1),
    "split sizes that do not add up": lambda lib: lib.ones(6).split([1, 4]),
    "split(0)": lambda lib: lib.ones(6).split(0),
    "chunk(0)": lambda lib: lib.ones(6).chunk(0),
    "expand a non-singleton dim": lambda lib: lib.ones(2, 1).expand(3, 3),
    "expand -1 in a new dim": lambda lib: lib.ones(2, 1).expand(-1, 2, 3),
    "expand to fewer dims": lambda lib: lib.ones(2, 3).expand(3),
    "index_select 2-d index": lambda lib: lib.ones(3).index_select(0, lib.tensor([[0]])),
    "sort bad dim": lambda lib: lib.ones(3).sort(1),
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS.values(), ids=BAD_ARGUMENTS.keys())
def test_junk_accepted_bad_arguments_to_the_new_functions(case):
    same(case, raises=True)
