"""Dim arguments are checked as torch checks them (one helper, ``checks.dim_index``):
a dim out of range is torch's IndexError, never a silent wrap-around. Also torch's
rules for assigning ``.grad``, for ``requires_grad`` on non-float tensors, and for the
variance of one element."""

import numpy as np
import pytest

import tinygpt
import tinygpt.nn as nn
from tinygpt.checks import dim_index

OUT_OF_RANGE = r"Dimension out of range \(expected to be in range of \[-2, 1\], but got {}\)"


def test_dim_index_normalises_and_names_the_range():
    assert dim_index(-1, 3) == 2 and dim_index(0, 0) == 0 and dim_index(-1, 0) == 0
    with pytest.raises(IndexError, match=OUT_OF_RANGE.format(5)):
        dim_index(5, 2)
    with pytest.raises(TypeError, match="integer"):
        dim_index(1.5, 2)


@pytest.mark.parametrize("call,bad", [
    (lambda x: x.transpose(0, 5), 5),
    (lambda x: x.squeeze(5), 5),
    (lambda x: x.permute(0, 7), 7),
    (lambda x: x.flatten(5), 5),
    (lambda x: x.sum(2), 2),
    (lambda x: x.mean(-3), -3),
    (lambda x: x.var(5), 5),
    (lambda x: x.std(dim=5), 5),
    (lambda x: x.max(5), 5),
    (lambda x: x.min(dim=2), 2),
    (lambda x: x.argmax(5), 5),
    (lambda x: x.argmin(2), 2),
    (lambda x: x.softmax(3), 3),
    (lambda x: x.log_softmax(-3), -3),
    (lambda x: tinygpt.softmax(x, 2), 2),
    (lambda x: nn.functional.softmax(x, dim=2), 2),
    (lambda x: tinygpt.topk(x, 1, dim=5), 5),
    (lambda x: x.gather(5, tinygpt.zeros(2, 3, dtype=tinygpt.long)), 5),
    (lambda x: tinygpt.cat([x, x], dim=2), 2),
    (lambda x: x.size(5), 5),
])
def test_silent_wrong_result_dims_out_of_range_raise_torchs_index_error(call, bad):
    with pytest.raises(IndexError, match=OUT_OF_RANGE.format(bad)):
        call(tinygpt.ones(2, 3))


def test_dims_that_add_a_dim_have_one_more_place():
    x = tinygpt.ones(2, 3)
    assert x.unsqueeze(2).shape == (2, 3, 1) and x.unsqueeze(-3).shape == (1, 2, 3)
    with pytest.raises(IndexError, match=r"\[-3, 2\], but got 10"):
        x.unsqueeze(10)
    assert tinygpt.stack([x, x], dim=2).shape == (2, 3, 2)
    with pytest.raises(IndexError, match=r"\[-3, 2\], but got 3"):
        tinygpt.stack([x, x], dim=3)


def test_dims_in_range_still_work_as_torchs():
    torch = pytest.importorskip("torch")
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    x, t = tinygpt.tensor(a), torch.tensor(a)
    for ours, theirs in [
        (x.transpose(-1, 0), t.transpose(-1, 0)), (x.permute(2, 0, -2), t.permute(2, 0, -2)),
        (x.flatten(-2), t.flatten(-2)), (x.sum((-1, 0)), t.sum((-1, 0))),
        (x.softmax(-2), t.softmax(-2)), (x.max(-1).values, t.max(-1).values),
        (x.unsqueeze(-1), t.unsqueeze(-1)), (tinygpt.tensor(2.0).sum(0), torch.tensor(2.0).sum(0)),
    ]:
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)


def test_repeated_or_missing_dims_are_torchs_errors():
    x = tinygpt.ones(2, 3)
    with pytest.raises(RuntimeError, match="duplicate dims are not allowed"):
        x.permute(0, 0)
    with pytest.raises(RuntimeError, match="input.dim\\(\\) = 2 is not equal to len\\(dims\\) = 1"):
        x.permute(0)
    with pytest.raises(RuntimeError, match="dim 0 appears multiple times"):
        x.sum((0, -2))
    with pytest.raises(RuntimeError, match="start_dim cannot come after end_dim"):
        x.flatten(1, 0)
    with pytest.raises(TypeError, match="integer"):
        x.transpose(0, 1.5)


def test_silent_wrong_result_assigned_grad_of_another_shape_is_refused():
    p = nn.Parameter(tinygpt.ones(3))
    with pytest.raises(RuntimeError, match="assigned grad has data of a different size"):
        p.grad = tinygpt.ones(4)
    with pytest.raises(RuntimeError, match="assigned grad has data of a different type"):
        p.grad = tinygpt.ones(3, dtype=tinygpt.float64)
    with pytest.raises(TypeError, match="expected to be a Tensor or None"):
        p.grad = [1.0, 2.0, 3.0]
    assert p.grad is None
    p.grad = tinygpt.ones(3)  # the right shape and dtype: taken, as in torch
    tinygpt.AdamW([p], lr=0.1).step()
    assert p._version == 1


def test_silent_wrong_result_requires_grad_on_integer_tensors_is_refused():
    only_float = "only Tensors of floating point dtype can require gradients"
    with pytest.raises(RuntimeError, match=only_float):
        tinygpt.tensor([1, 2], requires_grad=True)
    with pytest.raises(RuntimeError, match=only_float):
        nn.Parameter(tinygpt.tensor([1, 2]))
    t = tinygpt.tensor([1, 2])
    with pytest.raises(RuntimeError, match=only_float):
        t.requires_grad = True
    with pytest.raises(RuntimeError, match=only_float):
        t.requires_grad_()
    assert not t.requires_grad
    assert not nn.Parameter(tinygpt.tensor([1, 2]), requires_grad=False).requires_grad


def test_variance_of_one_element_is_nan_as_torchs():
    one = tinygpt.tensor([3.0])
    assert np.isnan(one.var().item()) and np.isnan(one.std().item())
    assert one.var(unbiased=False).item() == 0.0
    assert np.isinf(tinygpt.tensor([1.0, 2.0]).var(correction=3).item())
    rows = tinygpt.tensor([[1.0], [2.0]]).var(dim=1)
    assert np.isnan(rows.numpy()).all()
