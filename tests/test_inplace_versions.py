"""In-place changes and gradients: version counters, as torch has them.

Every in-place op bumps its tensor's ``_version``; a Function checks, at backward, the
versions of what it saved (torch's saved tensors). A saved tensor changed in place is
torch's RuntimeError; one that was not saved keeps its gradient flowing to the value
the op used. Nothing in a training step or in KV-cache generation trips the check."""

import numpy as np
import pytest

import tinygpt
from tinygpt import AdamW, GPTModel, no_grad
from tinygpt.fused import FusedCausalAttention
from tinygpt.kv_cache import CachedDecoder
from tinygpt.loss import cross_entropy
from tinygpt.tensor import Tensor

from .helpers.assertions import host

MODIFIED = "modified by an inplace operation"


def test_silent_wrong_gradient_masked_fill_after_exp_raises():
    """exp saves its output; changing that output in place must not give x.grad = [0, .]."""
    x = tinygpt.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp()
    z = y * 2
    y.masked_fill_(tinygpt.tensor([True, False]), 0.0)
    with pytest.raises(RuntimeError, match=MODIFIED + r".*output 0 of ExpBackward0, is at "
                                             r"version 1; expected version 0 instead"):
        (z.sum() + y.sum()).backward()
    assert x.grad is None


def test_silent_wrong_gradient_setitem_on_a_saved_factor_raises():
    """x * y saves y for x's gradient; y[0] = 100 afterwards must not give [100, 4]."""
    x = tinygpt.tensor([1.0, 2.0], requires_grad=True)
    y = tinygpt.tensor([3.0, 4.0])
    z = (x * y).sum()
    y[0] = 100.0
    with pytest.raises(RuntimeError, match=MODIFIED + r".*version 1; expected version 0.*"
                                             r"MulBackward0 saved it.*copy_ changed it"):
        z.backward()
    assert x.grad is None


@pytest.mark.parametrize("change", [
    lambda y: y.view(2).__setitem__(0, 100.0),  # a view shares the counter
    lambda y: y.detach().__setitem__(0, 100.0),  # so does detach()
    lambda y: y[:].__setitem__(0, 100.0),  # and basic indexing
    lambda y: y.view(1, 2).transpose(0, 1).__setitem__((0, 0), 100.0),  # views of views
])
@pytest.mark.parametrize("y_requires_grad", [False, True])
def test_silent_wrong_gradient_change_through_a_view_raises(change, y_requires_grad):
    x = tinygpt.tensor([1.0, 2.0], requires_grad=True)
    y = tinygpt.tensor([3.0, 4.0], requires_grad=y_requires_grad)
    z = (x * y).sum()
    with no_grad():  # no graph: the views are made without a Function, same counter
        change(y)
    assert y._version == 1
    with pytest.raises(RuntimeError, match=MODIFIED):
        z.backward()


def test_a_reshape_that_copies_has_its_own_counter():
    y = tinygpt.tensor([[1.0, 2.0], [3.0, 4.0]])
    flat = y.transpose(0, 1).reshape(4)  # not contiguous: NumPy copies
    flat[0] = 100.0
    assert flat._version == 1 and y._version == 0
    assert y.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_unsaved_input_changed_in_place_keeps_its_gradient_path():
    """b * w saves w only (w needs no gradient), so torch allows changing b afterwards:
    c's gradient still reaches a through the b that c used, not through the fill."""
    a = tinygpt.tensor([1.0, 2.0], requires_grad=True)
    w = tinygpt.tensor([1.0, 2.0])
    b = a * 2
    c = b * w
    b.masked_fill_(tinygpt.tensor([True, False]), 0.0)
    (c.sum() + b.sum()).backward()
    # torch: d/da of sum(2a * w) + sum(where(mask, 0, 2a)) = 2w + [0, 2]
    np.testing.assert_allclose(host(a.grad), [2.0, 6.0])


def test_saved_input_changed_by_masked_fill_raises_naming_it():
    a = tinygpt.tensor([1.0, 2.0], requires_grad=True)
    e = tinygpt.tensor([1.0, 2.0], requires_grad=True)
    b = a * 2
    c = b * e  # saves b for e's gradient
    b.masked_fill_(tinygpt.tensor([True, False]), 0.0)
    with pytest.raises(RuntimeError, match=r"output 0 of MaskedFillBackward0, is at version 1"):
        c.sum().backward()


def test_versions_count_in_place_changes():
    t = tinygpt.zeros(3)
    assert t._version == 0
    t[0] = 1.0
    t.masked_fill_(tinygpt.tensor([False, True, False]), 2.0)
    assert t._version == 2
    assert (t * 1.0)._version == 0  # a new tensor starts at 0


def test_in_place_on_a_leaf_that_requires_grad_is_torchs_error():
    x = tinygpt.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used "
                                           "in an in-place operation"):
        x.masked_fill_(tinygpt.tensor([True, False]), 0.0)


def test_optimizer_step_bumps_versions_and_a_later_backward_through_it_raises():
    """As torch: the step changes the weights in place; a graph built before it that
    saved them cannot be differentiated after it."""
    w = tinygpt.nn.Parameter(tinygpt.ones(3))
    x = tinygpt.tensor([1.0, 2.0, 3.0], requires_grad=True)
    loss = (x * w).sum()
    (w * 2.0).sum().backward()
    AdamW([w], lr=0.1).step()
    assert w._version == 1
    with pytest.raises(RuntimeError, match=r"MulBackward0 saved it.*AdamW.step changed it"):
        loss.backward()


def test_book_attention_steps_with_masked_fill_in_place_backprop_like_the_fused_op():
    """The book's steps on Tensors: scores, masked_fill_ (in place), softmax, context."""
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 2, 4, 3)) for _ in range(3))
    grads = []
    for book in (True, False):
        queries, keys, values = (Tensor(a, requires_grad=True) for a in (q, k, v))
        if book:
            attn_scores = queries @ keys.transpose(2, 3)
            mask = Tensor(np.triu(np.ones((4, 4), dtype=bool), k=1))
            attn_scores.masked_fill_(mask, -np.inf)
            attn_weights = (attn_scores / 3 ** 0.5).softmax(-1)
            context_vec = attn_weights @ values
        else:
            context_vec = FusedCausalAttention.apply(queries, keys, values)
        (context_vec * context_vec).sum().backward()
        grads.append([host(t.grad) for t in (queries, keys, values)])
    for name, book, fused in zip("qkv", *grads):
        np.testing.assert_allclose(book, fused, rtol=1e-9, atol=1e-12, err_msg=name)


CFG = {"vocab_size": 17, "context_length": 8, "emb_dim": 8, "n_heads": 2, "n_layers": 2,
       "drop_rate": 0.1, "qkv_bias": True}


@pytest.mark.parametrize("fused", [True, False])
def test_training_steps_and_kv_cache_generation_raise_no_false_alarm(fused):
    """Forward (the fused ops, or the book's steps with masked_fill_), a KV-cache
    generation between forward and backward (it must not touch what the graph saved),
    backward, clipping and AdamW steps: no version error."""
    with tinygpt.use_fused(fused):
        _train_and_generate()


def _train_and_generate():
    tinygpt.manual_seed(0)
    model = GPTModel(CFG)
    optimizer = AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    ids = np.arange(16).reshape(2, 8) % CFG["vocab_size"]
    losses = []
    for _ in range(3):
        model.train()
        optimizer.zero_grad()
        loss = cross_entropy(model(ids), ids)
        model.eval()
        with no_grad():
            decoder = CachedDecoder(model, batch_size=2)
            decoder.prime(ids[:, :4])
            for token in range(3):
                decoder.feed(np.array([token, token]))
        loss.backward()
        tinygpt.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert all(p._version == 3 for p in model.parameters())


@pytest.mark.parametrize("name,change", [
    ("copy_", lambda t: t.copy_(tinygpt.ones(3))),
    ("add_", lambda t: t.add_(1.0)),
    ("mul_", lambda t: t.mul_(2.0)),
    ("fill_", lambda t: t.fill_(2.0)),
    ("zero_", lambda t: t.zero_()),
    ("masked_fill_", lambda t: t.masked_fill_(tinygpt.tensor([True, False, True]), 0.0)),
    ("__setitem__", lambda t: t.__setitem__(0, 5.0)),
    ("nn.init", lambda t: tinygpt.nn.init.normal_(t)),
])
def test_every_in_place_op_bumps_the_version_and_is_caught(name, change):
    if name.endswith("_") and not hasattr(tinygpt.Tensor, name):
        pytest.skip(f"Tensor.{name} is not there yet")
    w = tinygpt.tensor([1.0, 2.0, 3.0], requires_grad=True)
    t = tinygpt.tensor([4.0, 5.0, 6.0])
    loss = (w * t).sum()  # saves t for w's gradient
    change(t)
    assert t._version == 1
    with pytest.raises(RuntimeError, match=MODIFIED):
        loss.backward()


def test_sgd_step_bumps_the_version():
    w = tinygpt.nn.Parameter(tinygpt.ones(3))
    (w * 2.0).sum().backward()
    tinygpt.optim.SGD([w], lr=0.1, momentum=0.9).step()
    assert w._version == 1
    np.testing.assert_allclose(host(w.data), np.full(3, 0.8), rtol=1e-6)


def test_sigmoid_saves_its_output_as_torch_does():
    x = tinygpt.tensor([1.0, 2.0], requires_grad=True)
    y = tinygpt.sigmoid(x)
    z = y * 2
    y.masked_fill_(tinygpt.tensor([True, False]), 0.0)
    with pytest.raises(RuntimeError, match="output 0 of SigmoidBackward0"):
        z.sum().backward()


def test_setitem_in_a_graph_gives_torchs_gradients():
    """x[index] = value on a tensor in a graph is an in-place op, as in torch: the old
    entries get no gradient, ``value`` gets its share, later uses see the new values."""
    torch = pytest.importorskip("torch")
    grads = {}
    for lib in (tinygpt, torch):
        x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        v = lib.tensor(5.0, requires_grad=True)
        y = x * 2
        y[0] = v * 3
        y[1:] = y[1:] * 3.0 + y[:2]  # uses y before this assignment
        (y * lib.tensor([1.0, 2.0, 3.0])).sum().backward()
        grads[lib.__name__] = [np.asarray(t.detach().numpy()) for t in (y, x.grad, v.grad)]
    for name, mine, theirs in zip(("y", "x.grad", "v.grad"), grads["tinygpt"], grads["torch"]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-6, err_msg=name)


def test_setitem_on_a_saved_output_is_torchs_error_and_allowed_under_no_grad():
    x = tinygpt.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp()
    z = y.sum()
    y[0] = 1.0
    with pytest.raises(RuntimeError, match=r"output 0 of ExpBackward0.*copy_ changed it"):
        (z + y.sum()).backward()
    y = x * 2
    y[1:] = y[1:] * y[1:]  # the product saved views of y, which this assignment changes
    with pytest.raises(RuntimeError, match=MODIFIED):
        y.sum().backward()  # torch: "output 0 of AsStrided, is at version 1"
    with no_grad():  # a leaf's values, as loading or init change them
        x[0] = 7.0
    assert x._version == 1 and x.tolist() == [7.0, 2.0]
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad"):
        x[0] = 1.0
