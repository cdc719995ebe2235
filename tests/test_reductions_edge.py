"""Reductions and their edges, as torch (issue 29): positional arguments in torch's
order, ``dtype=`` and ``dim=()``; NaN as the largest value in sorting and selection;
ties in max/min gradients; gradients that stay finite next to inf; empty tensors and
bad indices. Every case runs on torch and on tinygpt through ``same``
(tests/helpers/torch_compare.py); ``grads`` adds each leaf's gradient."""

import math

import pytest

from .helpers.torch_compare import grads, same

INF, NAN = math.inf, math.nan
pytestmark = pytest.mark.filterwarnings("ignore:.*degrees of freedom is <= 0")  # torch's std([x])
X = [[1.0, 2.0, 4.0], [3.0, 5.0, 9.0]]

# --- arguments: torch's positions and keywords -------------------------------------------

ARGUMENTS = {
    "var(1, False)": lambda lib, x: x.var(1, False),
    "std(1, False)": lambda lib, x: x.std(1, False),
    "var(0, True, True)": lambda lib, x: x.var(0, True, True),
    "std(0, False, True)": lambda lib, x: x.std(0, False, True),
    "var(False)": lambda lib, x: x.var(False),
    "std(False)": lambda lib, x: x.std(False),
    "var(1, keepdim=True)": lambda lib, x: x.var(1, keepdim=True),
    "var(1, unbiased=False)": lambda lib, x: x.var(1, unbiased=False),
    "var(dim=1, correction=0)": lambda lib, x: x.var(dim=1, correction=0),
    "torch.var(x, 1, False)": lambda lib, x: lib.var(x, 1, False),
    "torch.std(x, 1, False)": lambda lib, x: lib.std(x, 1, False),
    "sum(dim=())": lambda lib, x: x.sum(dim=()),
    "sum(dim=[])": lambda lib, x: x.sum(dim=[]),
    "torch.sum(x, ())": lambda lib, x: lib.sum(x, ()),
    "sum((0, 1), True)": lambda lib, x: x.sum((0, 1), True),
    "sum(dtype=float64)": lambda lib, x: x.sum(dtype=lib.float64),
    "sum(1, dtype=float64)": lambda lib, x: x.sum(1, dtype=lib.float64),
    "mean(dtype=float64)": lambda lib, x: x.mean(dtype=lib.float64),
    "mean(1, True, dtype=float64)": lambda lib, x: x.mean(1, True, dtype=lib.float64),
    "torch.mean(x, 1, dtype=float64)": lambda lib, x: lib.mean(x, 1, dtype=lib.float64),
}


@pytest.mark.parametrize("case", ARGUMENTS.values(), ids=ARGUMENTS.keys())
def test_silent_wrong_result_reduction_arguments_as_torch_reads_them(case):
    same(grads(case, X))


INTEGER_REDUCTIONS = {
    "int sum(dtype=float32)": lambda lib: lib.tensor([1, 2]).sum(dtype=lib.float32),
    "int sum(0, dtype=int32)": lambda lib: lib.tensor([[1, 2]]).sum(0, dtype=lib.int32),
    "bool sum(dtype=bool)": lambda lib: lib.tensor([True, False]).sum(dtype=lib.bool),
    "int mean(dtype=float32)": lambda lib: lib.tensor([1, 2]).mean(dtype=lib.float32),
    "int mean(dtype=float64)": lambda lib: lib.tensor([1, 2]).mean(dtype=lib.float64),
}


@pytest.mark.parametrize("case", INTEGER_REDUCTIONS.values(), ids=INTEGER_REDUCTIONS.keys())
def test_silent_wrong_dtype_reduction_dtype_argument(case):
    same(case)


def test_junk_accepted_mean_with_an_integer_dtype():
    same(lambda lib: lib.tensor([1, 2]).mean(dtype=lib.int64), match="could not infer output")


M = [[True, False, True], [True, True, True]]
ANY_ALL = {
    "any(1)": lambda lib, b: b.any(1),
    "all(1)": lambda lib, b: b.all(1),
    "any(0)": lambda lib, b: b.any(0),
    "all(0)": lambda lib, b: b.all(0),
    "any(1, True)": lambda lib, b: b.any(1, True),
    "all(0, keepdim=True)": lambda lib, b: b.all(0, keepdim=True),
    "any(dim=-1)": lambda lib, b: b.any(dim=-1),
    "all(dim=(0, 1))": lambda lib, b: b.all(dim=(0, 1)),
    "torch.any(b, 1)": lambda lib, b: lib.any(b, 1),
    "torch.all(b, 0, True)": lambda lib, b: lib.all(b, 0, True),
    "float any(0)": lambda lib, b: b.float().any(0),
    "int all()": lambda lib, b: b.long().all(),
    "uint8 all(1)": lambda lib, b: b.to(lib.uint8).all(1),
}


@pytest.mark.parametrize("case", ANY_ALL.values(), ids=ANY_ALL.keys())
def test_silent_wrong_result_any_all_over_a_dim(case):
    same(lambda lib: case(lib, lib.tensor(M)))


# --- NaN is the largest value ---------------------------------------------------------------

V = [1.0, NAN, 3.0, 2.0]
R = [[1.0, NAN, 3.0], [4.0, 0.5, 2.0]]
NAN_SELECTIONS = {
    "max()": lambda lib, x: x.max(),
    "min()": lambda lib, x: x.min(),
    "max(0)": lambda lib, x: x.max(0),
    "min(0)": lambda lib, x: x.min(0),
    "max(-1) rows": lambda lib, x: x.reshape(2, 2).max(-1),
    "argmax()": lambda lib, x: x.argmax(),
    "argmin()": lambda lib, x: x.argmin(),
    "argmax(0, True)": lambda lib, x: x.argmax(0, True),
    "topk(2)": lambda lib, x: x.topk(2),
    "topk(2, largest=False)": lambda lib, x: x.topk(2, largest=False),
    "topk(4)": lambda lib, x: x.topk(4),
    "torch.topk(x, 1)": lambda lib, x: lib.topk(x, 1),
    "sort()": lambda lib, x: x.sort(),
    "sort(descending=True)": lambda lib, x: x.sort(descending=True),
    "torch.sort(x)": lambda lib, x: lib.sort(x),
    "torch.max(x, 0)": lambda lib, x: lib.max(x, 0),
}


@pytest.mark.parametrize("case", NAN_SELECTIONS.values(), ids=NAN_SELECTIONS.keys())
def test_silent_wrong_result_nan_is_the_largest_value(case):
    same(lambda lib: case(lib, lib.tensor(V)))


ROW_SELECTIONS = {
    "max(1)": lambda lib, x: x.max(1),
    "min(1)": lambda lib, x: x.min(1),
    "argmax(1)": lambda lib, x: x.argmax(1),
    "argmin(1)": lambda lib, x: x.argmin(1),
    "topk(2, 1)": lambda lib, x: x.topk(2, 1),
    "topk(1, 0)": lambda lib, x: x.topk(1, 0),
    "sort(1)": lambda lib, x: x.sort(1),
    "sort(0, True)": lambda lib, x: x.sort(0, True),
}


@pytest.mark.parametrize("case", ROW_SELECTIONS.values(), ids=ROW_SELECTIONS.keys())
def test_silent_wrong_result_nan_is_the_largest_value_along_a_dim(case):
    same(lambda lib: case(lib, lib.tensor(R)))


# --- ties: a full reduction splits the gradient, a reduction over a dim routes it ---------

TIES = {
    "max() of [1, 3, 3]": (lambda lib, x: x.max(), [1.0, 3.0, 3.0]),
    "min() of [1, 1, 3]": (lambda lib, x: x.min(), [1.0, 1.0, 3.0]),
    "max() of three ties": (lambda lib, x: x.max(), [2.0, 2.0, 2.0]),
    "max(0) of [1, 3, 3]": (lambda lib, x: x.max(0).values, [1.0, 3.0, 3.0]),
    "max(1)": (lambda lib, x: x.max(1)[0], [[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]]),
    "min(1, keepdim)": (lambda lib, x: x.min(1, True)[0], [[1.0, 3.0, 1.0], [0.0, 2.0, 0.0]]),
    "torch.max(x)": (lambda lib, x: lib.max(x), [[5.0, 1.0], [5.0, 5.0]]),
    "max(other) with ties": (lambda lib, x: x.max(lib.ones(3, dtype=x.dtype)), [1.0, 3.0, 0.0]),
    "min(other) with ties": (lambda lib, x: x.min(lib.ones(3, dtype=x.dtype)), [1.0, 3.0, 0.0]),
}


@pytest.mark.parametrize("body, data", TIES.values(), ids=TIES.keys())
def test_silent_wrong_gradient_max_min_with_ties(body, data):
    same(grads(body, data))


# --- gradients that stay finite where torch's do ------------------------------------------

MASK = [[True, False], [True, True]]
Q = [[1.0, 2.0], [3.0, 4.0]]
FINITE = {
    "x ** 0 at 0": (lambda lib, x: x ** 0, [0.0, 1.0, 2.0]),
    "x ** 0.0 at 0": (lambda lib, x: x ** 0.0, [0.0, 1.0, 2.0]),
    "pow(x, 0) at 0": (lambda lib, x: lib.pow(x, 0), [0.0, -1.0]),
    "std() of a constant": (lambda lib, x: x.std(), [2.0, 2.0, 2.0]),
    "std(1) of a constant row": (lambda lib, x: x.std(1), [[2.0, 2.0, 2.0], [1.0, 2.0, 3.0]]),
    "std(unbiased=False) constant": (lambda lib, x: x.std(unbiased=False), [5.0, 5.0]),
    "var() of a constant": (lambda lib, x: x.var(), [2.0, 2.0, 2.0]),
    "std() of one value": (lambda lib, x: x.std(), [2.0]),
    "triu with inf below": (lambda lib, x: lib.triu(x), [[1.0, INF], [-INF, 2.0]]),
    "tril with inf above": (lambda lib, x: lib.tril(x), [[1.0, INF], [-INF, 2.0]]),
    "torch.tril(x, -1)": (lambda lib, x: lib.tril(x, -1), [[1.0, INF], [-INF, 2.0]]),
    "torch.triu(x, 1) with nan": (lambda lib, x: lib.triu(x, 1), [[NAN, 1.0], [NAN, NAN]]),
    "where(mask, x, -inf).softmax": (
        lambda lib, x: lib.where(lib.tensor(MASK), x, -INF).softmax(-1), Q),
    "where(mask, x, -inf).exp": (
        lambda lib, x: lib.where(lib.tensor(MASK), x, -INF).exp(), Q),
    "masked_fill(~mask, -inf).softmax": (
        lambda lib, x: x.masked_fill(~lib.tensor(MASK), -INF).softmax(-1), Q),
    "where with inf in the unused input": (
        lambda lib, x: lib.where(lib.tensor(MASK), x * 2, x), [[1.0, INF], [3.0, 4.0]]),
    "where(x > 0, x.log(), 0) at 0": (
        lambda lib, x: lib.where(x > 0, x.log(), 0.0), [0.0, 1.0, 2.0]),
    "softmax of a row of -inf": (lambda lib, x: x.softmax(-1), [[-INF, -INF], [1.0, 2.0]]),
}


@pytest.mark.parametrize("body, data", FINITE.values(), ids=FINITE.keys())
def test_silent_wrong_gradient_near_zero_inf_and_nan(body, data):
    same(grads(body, data))


# --- bad indices ------------------------------------------------------------------------------

BAD_INDICES = {
    "gather(-1)": lambda lib: lib.tensor([1.0, 2.0, 3.0]).gather(0, lib.tensor([-1])),
    "gather(3)": lambda lib: lib.tensor([1.0, 2.0, 3.0]).gather(0, lib.tensor([3])),
    "gather 2-d": lambda lib: lib.ones(2, 3).gather(1, lib.tensor([[0], [5]])),
    "gather 2-d negative": lambda lib: lib.ones(2, 3).gather(1, lib.tensor([[0], [-2]])),
    "torch.gather": lambda lib: lib.gather(lib.ones(2, 3), 1, lib.tensor([[0], [3]])),
    "index_select(3)": lambda lib: lib.tensor([1.0, 2.0, 3.0]).index_select(0, lib.tensor([3])),
    "index_select(-1)": lambda lib: lib.tensor([1.0, 2.0, 3.0]).index_select(0, lib.tensor([-1])),
    "index_select dim 1": lambda lib: lib.ones(2, 3).index_select(1, lib.tensor([0, 7])),
    "index_select float index": lambda lib: lib.ones(3).index_select(0, lib.tensor([1.0])),
}


@pytest.mark.parametrize("case", BAD_INDICES.values(), ids=BAD_INDICES.keys())
def test_silent_wrong_result_gather_and_index_select_refuse_bad_indices(case):
    same(case, raises=True)


def test_silent_wrong_result_gather_with_a_negative_index_says_out_of_bounds():
    same(lambda lib: lib.tensor([1.0, 2.0, 3.0]).gather(0, lib.tensor([-1])),
         match="index -1 is out of bounds for dimension 0 with size 3")


def test_silent_wrong_result_index_select_out_of_range_says_so():
    same(lambda lib: lib.tensor([1.0, 2.0]).index_select(0, lib.tensor([2])),
         match="index out of range in self")


# --- empty tensors --------------------------------------------------------------------------

EMPTY_GRADIENTS = {
    "mean()": (lambda lib, x: x.mean(), []),
    "sum()": (lambda lib, x: x.sum(), []),
    "mean(0) of (0, 3)": (lambda lib, x: x.reshape(0, 3).mean(0), []),
    "mean(1) of (2, 0)": (lambda lib, x: x.mean(1), [[], []]),
    "sum(1) of (2, 0)": (lambda lib, x: x.sum(1), [[], []]),
    "max(1) of (0, 3)": (lambda lib, x: x.reshape(0, 3).max(1)[0], []),
}


@pytest.mark.parametrize("body, data", EMPTY_GRADIENTS.values(), ids=EMPTY_GRADIENTS.keys())
def test_silent_wrong_result_reductions_of_empty_tensors(body, data):
    same(grads(body, data))


EMPTY_ERRORS = {
    "max()": lambda lib: lib.tensor([]).max(),
    "min()": lambda lib: lib.tensor([]).min(),
    "argmax()": lambda lib: lib.tensor([]).argmax(),
    "argmin()": lambda lib: lib.tensor([]).argmin(),
    "max() of (0, 3)": lambda lib: lib.zeros(0, 3).max(),
    "max(1) of (2, 0)": lambda lib: lib.zeros(2, 0).max(1),
    "min(0) of (0, 3)": lambda lib: lib.zeros(0, 3).min(0),
    "argmax(1) of (2, 0)": lambda lib: lib.zeros(2, 0).argmax(1),
    "argmax(0) of (0, 3)": lambda lib: lib.zeros(0, 3).argmax(0),
    "torch.max(empty, 0)": lambda lib: lib.max(lib.tensor([]), 0),
    "int max()": lambda lib: lib.tensor([], dtype=lib.int64).max(),
}


@pytest.mark.parametrize("case", EMPTY_ERRORS.values(), ids=EMPTY_ERRORS.keys())
def test_raw_error_max_and_argmax_of_nothing(case):
    same(case, match="Expected reduction dim")


def test_silent_wrong_result_max_over_a_non_empty_dim_of_an_empty_tensor():
    same(lambda lib: (lib.zeros(2, 0).max(0), lib.zeros(0, 3).argmax(1), lib.zeros(0, 3).max(1)))
