"""Aliasing and in-place changes, as torch defines them (issue 29): a view is a new
Tensor over its base's storage, ``.data`` and ``detach()`` too, so a change through any
alias is seen by all of them; ``x += y`` is ``add_``; autograd gives the gradients of
what was computed, or torch's error. Every case runs on torch and on tinygpt through
``same`` (tests/helpers/torch_compare.py)."""

import operator

import numpy
import pytest

from .helpers.torch_compare import OURS, _same_result, grads, same, torch

W = [[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]  # a Linear(3, 2)'s weight
B = [0.1, -0.2]
X = [[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]]
LR = 0.1


def _trained_linear(lib):
    """A Linear(3, 2) with weights W and B, after one backward: grads set, no step."""
    layer = lib.nn.Linear(3, 2)
    with lib.no_grad():
        layer.weight.copy_(lib.tensor(W))
        layer.bias.copy_(lib.tensor(B))
    (layer(lib.tensor(X)) * lib.tensor([[1.0, 2.0], [3.0, 4.0]])).sum().backward()
    return layer


def _isub_under_no_grad(lib):
    layer = _trained_linear(lib)
    with lib.no_grad():
        for p in layer.parameters():
            p -= LR * p.grad
    return list(layer.parameters()), [isinstance(p, lib.nn.Parameter) for p in
                                      layer.parameters()]


def _isub_through_data(lib):
    layer = _trained_linear(lib)
    for p in layer.parameters():
        p.data -= LR * p.grad
    data = layer.weight.data
    # the parameter still holds its values, not a Tensor (tinygpt's raw values are
    # ``.array``; torch has no such attribute)
    holds_a_tensor = isinstance(getattr(layer.weight, "array", None), lib.Tensor)
    return (list(layer.parameters()), layer.weight * 1.0, isinstance(data, lib.Tensor),
            data.requires_grad, data.grad_fn is None, layer.weight.requires_grad,
            holds_a_tensor)


def _copy_through_data(lib):
    layer = _trained_linear(lib)
    layer.weight.data.copy_(lib.tensor(X))
    return layer.weight, layer.weight.requires_grad, layer.weight.grad_fn is None


def _normal_through_data(lib):
    """Random streams differ: the shape, dtype and in-placeness are compared, not values."""
    layer = _trained_linear(lib)
    before = layer.weight.detach().numpy().copy()
    drawn = layer.weight.data.normal_(0, 0.02)
    changed = bool((layer.weight.detach().numpy() != before).all())
    drawn.zero_()  # the tensor normal_ returns is p's storage
    return (tuple(drawn.shape), drawn.dtype, changed, layer.weight,
            float(drawn.detach().numpy().std()))


@pytest.mark.parametrize("case", [_isub_under_no_grad, _isub_through_data, _copy_through_data,
                                  _normal_through_data], ids=lambda f: f.__name__[1:])
def test_silent_wrong_result_parameter_update_in_place(case):
    same(case)


def test_silent_wrong_result_grad_data_max():
    same(lambda lib: _trained_linear(lib).weight.grad.data.max())


# --- views share storage: a change through a view changes its base, and back ------------

VIEWS = {  # x: (2, 3)
    "x[0]": lambda x: x[0],
    "t": lambda x: x.t(),
    "view": lambda x: x.view(6),
    "view(-1,2)": lambda x: x.view(-1, 2),
    "reshape": lambda x: x.reshape(3, 2),
    "transpose": lambda x: x.transpose(0, 1),
    "permute": lambda x: x.permute(1, 0),
    "unsqueeze": lambda x: x.unsqueeze(0),
    "squeeze": lambda x: x[:, None].squeeze(1),
    "narrow": lambda x: x.narrow(1, 1, 2),
    "chunk": lambda x: x.chunk(3, 1)[1],
    "split": lambda x: x.split(1)[1],
    "split(list)": lambda x: x.split([1, 2], 1)[1],
    "unbind": lambda x: x.unbind(1)[2],
    "x[:, 1]": lambda x: x[:, 1],
    "x[..., None]": lambda x: x[..., None],
    "x[1:, ::2]": lambda x: x[1:, ::2],
    "view of a view": lambda x: x.t()[1:],
    "detach": lambda x: x.detach(),
    "data": lambda x: x.data,
}


def _base(lib):
    return lib.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])


def _iadd_through(make_view):
    def case(lib):
        x = _base(lib)
        v = make_view(x)
        v += 10
        return x, v

    return case


def _base_changed_under(make_view):
    def case(lib):
        x = _base(lib)
        v = make_view(x)
        x.add_(1)
        return v

    return case


@pytest.mark.parametrize("make_view", VIEWS.values(), ids=VIEWS.keys())
def test_silent_wrong_result_iadd_on_a_view_changes_its_base(make_view):
    same(_iadd_through(make_view))


@pytest.mark.parametrize("make_view", [*VIEWS.values(), lambda x: x[:, :1].expand(2, 4)],
                         ids=[*VIEWS.keys(), "expand"])
def test_silent_wrong_result_a_view_sees_its_base_changed_in_place(make_view):
    same(_base_changed_under(make_view))


@pytest.mark.parametrize("case", [
    lambda lib: (a := lib.ones(2, 2), a.detach().zero_(), a)[-1],
    lambda lib: (x := lib.ones(2, 2), x.data.add_(1), x)[-1],
    lambda lib: (x := lib.ones(4), v := x.view(2, 2), x.add_(1), v)[-1],
    lambda lib: (x := lib.ones(2, 2), operator.iadd(x[0], 10), x)[-1],
    lambda lib: (x := lib.ones(2, 2), operator.imul(x.t()[1], 3), x)[-1],
    lambda lib: (x := lib.ones(2, 2), x[0].fill_(7), x)[-1],
    lambda lib: (x := lib.ones(2, 2), x[:, 1].copy_(lib.tensor([4.0, 5.0])), x)[-1],
], ids=["detach-zero_", "data-add_", "view-then-base-add_", "x[0]-iadd", "t()[1]-imul",
        "x[0]-fill_", "x[:,1]-copy_"])
def test_silent_wrong_result_alias_changed_in_place(case):
    same(case)


def test_silent_wrong_result_reshape_of_a_contiguous_tensor_is_a_view():
    same(lambda lib: (x := _base(lib), x.reshape(6).add_(10), x)[-1])


def test_silent_wrong_result_reshape_of_a_non_contiguous_tensor_copies():
    same(lambda lib: (x := _base(lib), r := x.t().reshape(6), r.add_(10), x, r)[-2:])


def test_junk_accepted_view_of_a_non_contiguous_tensor():
    same(lambda lib: _base(lib).t().view(6), match="view size is not compatible")


def test_junk_accepted_iadd_through_an_expanded_view():
    same(lambda lib: lib.ones(2, 1).expand(2, 3).add_(1), match="more than one element")


# --- augmented assignment is in place, so it refuses what an in-place op refuses ----------


@pytest.mark.parametrize("case", [
    lambda lib: operator.iadd(lib.ones(2, requires_grad=True), 1),
    lambda lib: operator.imul(lib.ones(2, requires_grad=True), 2),
], ids=["iadd", "imul"])
def test_junk_accepted_augmented_assignment_on_a_leaf_that_requires_grad(case):
    same(case, match="a leaf Variable that requires grad is being used in an in-place")


@pytest.mark.parametrize("case", [
    lambda lib: operator.itruediv(lib.tensor([1, 2]), 2),
    lambda lib: operator.imul(lib.tensor([1, 2]), 2.5),
    lambda lib: operator.iadd(lib.tensor([1, 2]), lib.tensor([0.5, 1.0])),
    lambda lib: operator.iadd(lib.tensor([True, False]), 1),
], ids=["int-itruediv-2", "int-imul-2.5", "int-iadd-float-tensor", "bool-iadd-1"])
def test_silent_wrong_dtype_augmented_assignment_cannot_change_dtype(case):
    same(case, match="can't be cast to the desired output type")


def test_silent_wrong_result_augmented_assignment_cannot_change_shape():
    same(lambda lib: operator.iadd(lib.ones(2), lib.ones(2, 2)),
         match=r"output with shape \[2\] doesn't match the broadcast shape \[2, 2\]")


@pytest.mark.parametrize("case", [
    lambda lib: (x := lib.tensor([1, 2]), operator.iadd(x, 3), x)[-1],
    lambda lib: (x := lib.tensor([1.0, 2.0]), y := x, operator.imul(x, 3), y)[-1],
    lambda lib: (x := lib.tensor([1.0, 2.0]), y := x, operator.isub(x, 1), y)[-1],
    lambda lib: (x := lib.tensor([1.0, 2.0]), y := x, operator.itruediv(x, 4), y)[-1],
    lambda lib: (x := lib.tensor([4.0, 9.0]), y := x, operator.ipow(x, 2), y)[-1],
    lambda lib: (x := lib.tensor([1, 2], dtype=lib.int32), y := x, operator.iadd(x, 2), y)[-1],
    lambda lib: (x := lib.ones(2, 3), y := x, operator.iadd(x, lib.tensor([1.0, 2.0, 3.0])),
                 y)[-1],
    lambda lib: (x := lib.tensor([1.0, 2.0]), operator.iadd(x, 1) is x)[-1],
], ids=["int-iadd", "imul", "isub", "itruediv", "ipow", "int32-iadd", "broadcast-iadd",
        "identity"])
def test_silent_wrong_result_augmented_assignment_updates_every_alias(case):
    same(case)


# --- in-place ops on views inside a graph: torch's gradients --------------------------------


def _index_iadd(lib, w):
    y = w * 2
    y[0] += 1
    return y * w


def _rows_mul_(lib, w):
    y = w * 1
    y[:, :2].mul_(2)
    return y


def _transpose_add_(lib, w, z):
    y = w * 1
    y.t().add_(z)
    return y


def _view_of_view_mul_(lib, w):
    y = w * 1
    y[1][1:].mul_(w[0, :2])
    return y


def _base_changed_then_view_used(lib, w):
    y = w * 1
    v = y[0]
    y.mul_(2)
    return v * 3


def _chained(lib, w):
    return (w * 1).mul_(2).add_(w).mul_(w)


def _setitem_from_graph(lib, w, z):
    y = w * 1
    y[:, 1] = z * z
    return y


def _view_changed_after_use(lib, w):
    y = w * 2
    z = y.exp()  # saves its output, not y
    y[0].add_(1)
    return y, z


W2 = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
Z = [[0.5, -1.0], [2.0, 1.5], [-0.5, 0.25]]


GRAPHS = {
    "y[0] += 1": (_index_iadd, (W2,)),
    "y[:, :2].mul_(2)": (_rows_mul_, (W2,)),
    "y.t().add_(z)": (_transpose_add_, (W2, Z)),
    "y[1][1:].mul_(w)": (_view_of_view_mul_, (W2,)),
    "base changed, then the view used": (_base_changed_then_view_used, (W2,)),
    "chained in-place ops": (_chained, (W2,)),
    "y[:, 1] = z * z": (_setitem_from_graph, (W2, [2.0, -3.0])),
    "a view changed after its base was used": (_view_changed_after_use, (W2,)),
}


@pytest.mark.parametrize("body, arrays", GRAPHS.values(), ids=GRAPHS.keys())
def test_silent_wrong_gradient_in_place_on_a_view_in_a_graph(body, arrays):
    same(grads(body, *arrays))


def _saved_changed_through_view(lib, w):
    y = w.exp()
    z = y * w  # saves y for w's gradient
    y[1:].mul_(2)
    return z


def _saved_factor_changed_through_view(lib, w):
    c = lib.tensor([1.0, 2.0, 3.0], dtype=w.dtype)
    z = w * c
    c[1:].mul_(2)
    return z


@pytest.mark.parametrize("body", [_saved_changed_through_view,
                                  _saved_factor_changed_through_view],
                         ids=lambda f: f.__name__[1:])
def test_silent_wrong_gradient_saved_tensor_changed_through_a_view(body):
    same(grads(body, [1.0, 2.0, 3.0]), match="modified by an inplace operation")


@pytest.mark.parametrize("change", [
    lambda w: w[0].add_(1),
    lambda w: w.t().mul_(2),
    lambda w: w.view(-1).zero_(),
    lambda w: operator.iadd(w[:, 1], 1),
], ids=["w[0].add_", "w.t().mul_", "w.view.zero_", "w[:,1]-iadd"])
def test_junk_accepted_in_place_on_a_view_of_a_leaf_that_requires_grad(change):
    same(grads(lambda lib, w: change(w), W2),
         match="a view of a leaf Variable that requires grad is being used in an in-place")


@pytest.mark.parametrize("pieces", [
    lambda y: y.split(1)[0],
    lambda y: y.split([1, 1])[1],
    lambda y: y.chunk(2)[0],
    lambda y: y.unbind()[1],
    lambda y: y.split(2)[0],  # one piece: still an output of split
], ids=["split", "split(list)", "chunk", "unbind", "split-one-piece"])
def test_junk_accepted_in_place_on_an_output_of_a_multi_view_function(pieces):
    same(grads(lambda lib, w: pieces(w * 1).mul_(2), W2), match="returns multiple views")


def test_silent_wrong_result_in_place_on_split_outputs_without_grad_changes_the_base():
    same(lambda lib: (y := lib.tensor(W2), [p.mul_(2) for p in y.split(1, 1)], y)[-1])


def test_the_helper_tells_values_dtypes_and_shapes_apart():
    for ours in (OURS.zeros(2), OURS.ones(2).double(), OURS.ones(1, 2), OURS.ones(2).tolist()):
        with pytest.raises(AssertionError):
            _same_result("x", torch.ones(2), ours)
    _same_result("x", torch.tensor([numpy.nan, 1.0]), OURS.tensor([numpy.nan, 1.0]))
