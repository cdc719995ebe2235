"""torch's errors where torch errs, torch's results where it computes:
each reproduction from the hostile probe, named for its failure class, checked against
torch itself where torch is installed."""

import json

import numpy as np
import pytest

import tinygpt as t
import tinygpt.nn as tnn
from tinygpt.data import DataLoader, Dataset, create_dataloader_v1, default_collate
from tinygpt.model import GPT_CONFIG_124M, validate_config

from ..helpers.torch_twins import error_class as _torch_error

torch = pytest.importorskip("torch")


# --- silent wrong results --------------------------------------------------------------


def test_silent_wrong_result_embedding_negative_index_is_index_error():
    table = tnn.Embedding(10, 3)
    for ids in ([-1], [10], [[1, -3]]):
        assert _torch_error(lambda ids=ids: torch.nn.Embedding(10, 3)(torch.tensor(ids))) is (
            IndexError)
        with pytest.raises(IndexError, match="index out of range in self"):
            table(t.tensor(ids))
        with pytest.raises(IndexError, match="index out of range"):
            tnn.functional.embedding(t.tensor(ids), table.weight)
    with pytest.raises(RuntimeError, match="integers"):
        table(t.tensor([1.0]))
    assert table(t.tensor([0, 9])).shape == (2, 3)
    assert table(t.tensor([], dtype=t.int64)).shape == (0, 3)


@pytest.mark.parametrize("batch", [[1, 2.5], [1.5, 2], [True, 2], [True, False], [3, 4],
                                   [np.float32(1), np.float32(2.5)]])
def test_silent_wrong_result_collate_promotes_numbers_as_torch(batch):
    from torch.utils.data import default_collate as torch_collate

    ours, theirs = default_collate(batch), torch_collate(batch)
    assert str(ours.dtype).replace("torch.", "") == str(theirs.dtype).replace("torch.", "")
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_silent_wrong_result_collate_stacks_mixed_dtypes_without_float64():
    batch = [t.tensor([1, 2]), t.tensor([1.5, 2.0])]
    stacked = default_collate(batch)
    assert stacked.dtype == t.float32
    np.testing.assert_array_equal(stacked.numpy(), [[1, 2], [1.5, 2]])


def test_silent_wrong_result_pretrain_cosine_decay_must_be_a_bool(tmp_path):
    from tinygpt.app.workflow import pretrain

    cfg = dict(GPT_CONFIG_124M, context_length=8, emb_dim=8, n_heads=2, n_layers=1)
    text = tmp_path / "text.txt"
    text.write_text("a few words to train on, repeated. " * 40, encoding="utf-8")
    with pytest.raises(ValueError, match="cosine_decay must be True or False, got 'no'"):
        pretrain(cfg, {"cosine_decay": "no"}, text=text, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


# --- junk accepted -----------------------------------------------------------------------


@pytest.mark.parametrize("data", ["abc", b"x", [1, "a"], None, {}, set(), [None], [[1], [None]],
                                  object()])
def test_junk_accepted_tensor_refuses_what_torch_refuses(data):
    expected = _torch_error(lambda: torch.tensor(data))
    assert expected in (TypeError, RuntimeError)
    with pytest.raises(expected, match="invalid data type|Could not infer dtype"):
        t.tensor(data)


def test_junk_accepted_tensor_complex_is_a_clear_refusal():
    with pytest.raises(NotImplementedError, match="complex"):
        t.tensor([1 + 2j])


@pytest.mark.parametrize("name", ["tril", "triu"])
def test_junk_accepted_triangle_of_a_vector(name):
    assert _torch_error(lambda: getattr(torch, name)(torch.ones(3))) is RuntimeError
    with pytest.raises(RuntimeError, match=f"{name}: input tensor must have at least 2 dim"):
        getattr(t, name)(t.ones(3))
    np.testing.assert_array_equal(getattr(t, name)(t.ones(2, 3, 3), diagonal=1).numpy(),
                                  getattr(torch, name)(torch.ones(2, 3, 3), diagonal=1).numpy())


@pytest.mark.parametrize("x", [[[1, 2]], [[True, False]]])
def test_junk_accepted_linear_on_integer_input(x):
    assert _torch_error(lambda: torch.nn.Linear(2, 3)(torch.tensor(x))) is RuntimeError
    with pytest.raises(RuntimeError, match="floating-point input"):
        tnn.Linear(2, 3)(t.tensor(x))
    with pytest.raises(RuntimeError, match="floating-point input"):
        tnn.LayerNorm(2)(t.tensor(x))


# --- misleading memory errors ---------------------------------------------------------------


def test_misleading_memory_error_huge_max_length_says_text_too_short():
    with pytest.raises(ValueError, match="not enough for one window of max_length=10000"):
        create_dataloader_v1("a short text " * 20, batch_size=1, max_length=10**15, stride=1)


def test_misleading_memory_error_huge_context_length_in_a_run_says_text_too_short(tmp_path):
    from tinygpt.app.workflow import pretrain

    text = tmp_path / "text.txt"
    text.write_text("a few words to train on, repeated. " * 40, encoding="utf-8")
    cfg = dict(GPT_CONFIG_124M, context_length=10**12, emb_dim=8, n_heads=2, n_layers=1)
    with pytest.raises(ValueError, match="not enough for one window of max_length=10{12}"):
        pretrain(cfg, {"num_epochs": 1}, text=text, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


# --- raw errors where torch gives a result or a clear error -------------------------------


def test_raw_error_cat_and_stack_of_nothing():
    assert _torch_error(lambda: torch.cat([])) is ValueError
    assert _torch_error(lambda: torch.stack([])) is RuntimeError
    with pytest.raises(ValueError, match="non-empty list"):
        t.cat([])
    with pytest.raises(RuntimeError, match="non-empty list"):
        t.stack([])
    with pytest.raises(TypeError, match="sequence of tensors"):
        t.cat(t.ones(2))
    with pytest.raises(RuntimeError, match="zero-dimensional"):
        t.cat([t.tensor(1.0)])
    mixed = t.stack([t.ones(2), t.ones(2, dtype=t.int64)])
    assert mixed.dtype == torch.stack([torch.ones(2), torch.ones(2, dtype=torch.long)]).numpy(
    ).dtype


def test_raw_error_linear_with_no_inputs_computes_like_torch():
    layer = tnn.Linear(0, 3)
    out = layer(t.ones(2, 0))
    np.testing.assert_array_equal(out.detach().numpy(), np.zeros((2, 3), np.float32))  # bound 0
    out.sum().backward()
    assert layer.weight.grad.shape == (3, 0) and layer.bias.grad.shape == (3,)
    assert tnn.Linear(3, 0)(t.ones(2, 3)).shape == (2, 0)


@pytest.mark.parametrize("make", [lambda m: m.nn.Linear(-1, 3), lambda m: m.nn.Linear(3, -1),
                                  lambda m: m.nn.Embedding(-1, 3), lambda m: m.nn.Linear(2.5, 3),
                                  lambda m: m.nn.Embedding(4, 1.5)])
def test_raw_error_bad_layer_sizes_raise_torch_classes(make):
    expected = _torch_error(lambda: make(torch))
    assert expected in (TypeError, RuntimeError)
    with pytest.raises(expected, match="negative dimension|must be integers"):
        make(t)


def test_raw_error_linear_shape_mismatch():
    assert _torch_error(lambda: torch.nn.Linear(3, 2)(torch.ones(2, 4))) is RuntimeError
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        tnn.Linear(3, 2)(t.ones(2, 4))


@pytest.mark.parametrize("norm_type", [0, 1, 2, 3.5, -1, float("inf"), float("-inf")])
def test_raw_error_clip_grad_norm_any_order_like_torch(norm_type):
    grads = ([0.0, 2.0, -3.0], [0.0, 0.0], [0.5, 4.0])
    results = []
    for m in (torch, t):
        params = [m.nn.Parameter(m.ones(len(g))) for g in grads]
        for p, g in zip(params, grads):
            p.grad = m.tensor(g)
        total = m.nn.utils.clip_grad_norm_(params, 1.0, norm_type=norm_type)
        results.append((float(total), [p.grad.numpy().copy() for p in params]))
    (total_torch, grads_torch), (total_ours, grads_ours) = results
    assert total_ours == pytest.approx(total_torch, rel=1e-5)
    for a, b in zip(grads_ours, grads_torch):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


class _Mixed(Dataset):
    def __init__(self, samples):
        self.samples = samples

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


def test_raw_error_dataset_returning_an_array_then_an_int():
    with pytest.raises(RuntimeError, match="stack expects each tensor to be equal size"):
        list(DataLoader(_Mixed([np.array([1, 2]), 3]), batch_size=2))
    with pytest.raises(TypeError, match="sample 0 is a number but sample 1 is a ndarray"):
        list(DataLoader(_Mixed([3, np.array([1, 2])]), batch_size=2))


# --- settings ------------------------------------------------------------------------------


def test_settings_non_json_extra_key_refused_up_front():
    with pytest.raises(ValueError, match="extra key 'note' must hold JSON data"):
        validate_config(dict(GPT_CONFIG_124M, note=object()))
    clean = validate_config(dict(GPT_CONFIG_124M, note={"source": ["a", 1]}))
    json.dumps(clean)


def test_settings_numpy_drop_rate_accepted():
    for rate in (np.float32(0.1), np.float64(0.0), np.int64(0)):
        clean = validate_config(dict(GPT_CONFIG_124M, drop_rate=rate))
        assert type(clean["drop_rate"]) is float and clean["drop_rate"] == pytest.approx(rate)
    with pytest.raises(ValueError, match="drop_rate"):
        validate_config(dict(GPT_CONFIG_124M, drop_rate=np.float32(1.0)))


# --- found by tools/fuzz_api.py ---------------------------------------------------------------


def test_fuzz_found_topk_k_zero_and_too_large_as_torch():
    values, indices = t.topk(t.tensor([[3.0, 1.0, 2.0]]), 0)
    assert values.shape == indices.shape == (1, 0)
    assert _torch_error(lambda: torch.topk(torch.ones(2), 3)) is RuntimeError
    with pytest.raises(RuntimeError, match="selected index k out of range"):
        t.topk(t.ones(2), 3)


def test_fuzz_found_layer_norm_wrong_last_dim():
    assert _torch_error(lambda: torch.nn.LayerNorm(3)(torch.ones(2, 4))) is RuntimeError
    with pytest.raises(RuntimeError, match=r"expected input with shape \[\*, 3\]"):
        tnn.LayerNorm(3)(t.ones(2, 4))


def test_fuzz_found_tensor_nan_as_integers_and_huge_ints():
    assert _torch_error(lambda: torch.tensor([1.5, float("nan")], dtype=torch.int64)) is (
        RuntimeError)
    with pytest.raises(RuntimeError, match="cannot be converted to type int64"):
        t.tensor([1.5, float("nan")], dtype=t.int64)
    assert float(t.tensor(2**70, dtype=t.float32)) == float(torch.tensor(2**70,
                                                                         dtype=torch.float32))
    assert _torch_error(lambda: torch.tensor([1, 2**70])) is ValueError
    with pytest.raises(ValueError, match="Overflow when unpacking long long: 1180591620717411"):
        t.tensor([1, 2**70])


@pytest.mark.parametrize("data", [None, [1, None], set(), {}, object()])
def test_junk_accepted_tensor_with_a_dtype_is_a_type_error_as_in_torch(data):
    assert _torch_error(lambda: torch.tensor(data, dtype=torch.float32)) is TypeError
    with pytest.raises(TypeError, match="cannot be converted to a number"):
        t.tensor(data, dtype=t.float32)


def test_fuzz_found_where_condition_and_shapes():
    x = [1.0, 2.0]
    assert _torch_error(lambda: torch.where(torch.tensor([1, 0]), torch.tensor(x), 0.0)) is (
        RuntimeError)
    with pytest.raises(RuntimeError, match="condition to be a boolean tensor"):
        t.where(t.tensor([1, 0]), t.tensor(x), 0.0)
    with pytest.raises(RuntimeError, match="do not broadcast"):
        t.where(t.tensor([True, False, True]), t.tensor(x), 0.0)


def test_fuzz_found_creation_sizes_and_ranges_as_torch():
    for call in (lambda m: m.zeros(), lambda m: m.ones(1.5), lambda m: m.zeros(-1),
                 lambda m: m.arange(0, -3, 1), lambda m: m.arange(0, 5, 0)):
        expected = _torch_error(lambda call=call: call(torch))
        assert expected is not None and _torch_error(lambda call=call: call(t)) is expected
    assert t.zeros(()).shape == ()
    assert t.full((2,), True).dtype == t.bool and t.full((2,), 2).dtype == t.int64
    assert t.arange(2, 2, 1).shape == (0,)
