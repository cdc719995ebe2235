"""tinygpt.nn answers to torch.nn's names: Module (buffers, state dicts, to(), the printed
tree), Parameter, ModuleList, nn.functional with torch's shapes, nn.utils.clip_grad_norm_.
Numbers are checked against PyTorch where it is installed."""

import copy

import numpy as np
import pytest

import tinygpt
import tinygpt.nn as nn
import tinygpt.nn.functional as F
from tinygpt import GPTModel, Tensor
from tinygpt.backend import BACKEND, BackendError

from .helpers.assertions import assert_close, host

pytestmark = pytest.mark.usefixtures("keep_global_rng")

TINY = {"vocab_size": 29, "context_length": 6, "emb_dim": 12, "n_heads": 3, "n_layers": 2,
        "drop_rate": 0.1, "qkv_bias": True}


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


class Masked(nn.Module):
    """A small module in the book's style: a linear layer and a causal-mask buffer."""

    def __init__(self, n=4, persistent=True):
        super().__init__()
        self.proj = nn.Linear(n, n)
        self.register_buffer("mask", tinygpt.triu(tinygpt.ones(n, n), diagonal=1),
                             persistent=persistent)
        self.register_buffer("steps", tinygpt.zeros(1, dtype=tinygpt.long))

    def forward(self, x):
        return self.proj(x).masked_fill(self.mask.bool(), 0.0)


def values(state_dict):
    return {k: host(v).copy() for k, v in state_dict.items()}


# --- buffers -------------------------------------------------------------------------------


def test_buffers_are_attributes_not_parameters_and_in_the_state_dict():
    m = Masked()
    assert isinstance(m.mask, Tensor) and not m.mask.requires_grad
    assert [n for n, _ in m.named_buffers()] == ["mask", "steps"]
    assert all(b is not p for b in m.buffers() for p in m.parameters())
    assert [n for n, _ in m.named_parameters()] == ["proj.weight", "proj.bias"]
    # torch's order: the module's own parameters, its buffers, then its children's
    assert list(m.state_dict()) == ["mask", "steps", "proj.weight", "proj.bias"]
    np.testing.assert_array_equal(host(m.state_dict()["mask"]), np.triu(np.ones((4, 4)), 1))
    assert "mask" not in Masked(persistent=False).state_dict()
    assert "mask" in dict(Masked(persistent=False).named_buffers())


def test_assigning_a_tensor_replaces_a_buffer_and_to_dtype_converts_float_buffers():
    m = Masked()
    m.mask = tinygpt.zeros(4, 4)
    assert "mask" in m._buffers and np.all(host(m.state_dict()["mask"]) == 0)
    m.to(np.float64)
    assert m.mask.dtype == np.float64 and m.proj.weight.dtype == np.float64
    assert m.steps.dtype == np.int64  # integer buffers keep their dtype, as in torch
    with pytest.raises(TypeError, match="buffer 'mask'"):
        m.mask = [1, 2]
    with pytest.raises(KeyError, match="already exists"):
        m.register_buffer("proj", tinygpt.zeros(1))


def test_load_state_dict_loads_buffers():
    source, target = Masked(), Masked()
    source.mask = tinygpt.ones(4, 4)
    target.load_state_dict(source.state_dict())
    np.testing.assert_array_equal(host(target.mask), np.ones((4, 4)))
    np.testing.assert_array_equal(host(target.proj.weight), host(source.proj.weight))


# --- state_dict / load_state_dict ------------------------------------------------------------


def test_state_dict_holds_tensors_sharing_memory_with_the_parameters():
    model = GPTModel(TINY)
    sd = model.state_dict()
    assert all(type(v) is Tensor for v in sd.values())
    assert [k for k in sd if not k.endswith(".att.mask")] == [
        n for n, _ in model.named_parameters()]
    model.tok_emb.weight.data[0, 0] = 42.0
    assert float(host(sd["tok_emb.weight"])[0, 0]) == 42.0
    keep = model.state_dict(keep_vars=True)
    assert keep["tok_emb.weight"] is model.tok_emb.weight


def test_load_state_dict_returns_torchs_report():
    model = GPTModel(TINY)
    report = model.load_state_dict(GPTModel(TINY).state_dict())
    assert report.missing_keys == [] and report.unexpected_keys == []
    assert repr(report) == "<All keys matched successfully>"
    missing, unexpected = report  # a namedtuple, as torch's


def test_strict_false_reports_keys_and_loads_the_rest():
    model, donor = GPTModel(TINY), GPTModel(TINY)
    sd = dict(donor.state_dict())
    del sd["pos_emb.weight"]
    sd["extra.weight"] = np.zeros(3, np.float32)
    before_pos = host(model.pos_emb.weight).copy()
    report = model.load_state_dict(sd, strict=False)
    assert report.missing_keys == ["pos_emb.weight"]
    assert report.unexpected_keys == ["extra.weight"]
    np.testing.assert_array_equal(host(model.tok_emb.weight), host(donor.tok_emb.weight))
    np.testing.assert_array_equal(host(model.pos_emb.weight), before_pos)


def test_strict_load_raises_a_torch_like_message_and_changes_nothing():
    model = GPTModel(TINY)
    before = values(model.state_dict())
    sd = {k: host(v) + 1.0 for k, v in GPTModel(TINY).state_dict().items()}
    del sd["final_norm.shift"]
    sd["surprise"] = np.ones(2)
    with pytest.raises(ValueError) as info:
        model.load_state_dict(sd)
    message = str(info.value)
    assert message.startswith("Error(s) in loading state_dict for GPTModel:")
    assert 'Missing key(s) in state_dict: "final_norm.shift".' in message
    assert 'Unexpected key(s) in state_dict: "surprise".' in message
    for k, v in before.items():
        np.testing.assert_array_equal(host(model.state_dict()[k]), v, err_msg=k)


def test_a_shape_mismatch_is_an_error_even_when_not_strict():
    model = GPTModel(TINY)
    before = values(model.state_dict())
    sd = {k: host(v) + 1.0 for k, v in GPTModel(TINY).state_dict().items()}
    sd["out_head.weight"] = np.zeros((TINY["vocab_size"], TINY["emb_dim"] + 1), np.float32)
    with pytest.raises(ValueError, match=r"size mismatch for out_head.weight: copying a param "
                                         r"with shape \(29, 13\) from checkpoint, the shape in "
                                         r"current model is \(29, 12\)"):
        model.load_state_dict(sd, strict=False)
    for k, v in before.items():  # all or nothing: the good keys were not loaded either
        np.testing.assert_array_equal(host(model.state_dict()[k]), v, err_msg=k)


def test_values_may_be_tensors_arrays_or_torch_tensors(torch):
    donor = GPTModel(TINY)
    expected = values(donor.state_dict())
    for convert in (lambda v: v, host, lambda v: torch.from_numpy(host(v).copy()),
                    lambda v: host(v).astype(np.float64)):
        model = GPTModel(TINY)
        model.load_state_dict({k: convert(v) for k, v in donor.state_dict().items()})
        got = values(model.state_dict())
        for k in expected:
            np.testing.assert_array_equal(got[k], expected[k], err_msg=k)
        assert model.dtype == np.float32  # values are cast to the model's dtype


def test_load_copies_and_assign_takes_the_values_as_they_are():
    model, donor = GPTModel(TINY), GPTModel(TINY)
    model.load_state_dict(donor.state_dict())
    assert model.tok_emb.weight.array is not donor.tok_emb.weight.array
    model.tok_emb.weight.data[0, 0] = 7.0
    assert float(host(donor.tok_emb.weight)[0, 0]) != 7.0
    weight = model.tok_emb.weight
    sd = {k: v.double() for k, v in donor.state_dict().items()}
    model.load_state_dict(sd, assign=True)
    assert model.tok_emb.weight is weight  # the same Parameter: an optimizer keeps it
    assert model.tok_emb.weight.dtype == np.float64


def test_state_dict_round_trips_through_save_and_load(tmp_path):
    model = GPTModel(TINY)
    tinygpt.save(model.state_dict(), tmp_path / "model.pth")
    fresh = GPTModel(TINY)
    fresh.load_state_dict(tinygpt.load(tmp_path / "model.pth", weights_only=True))
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(host(fresh.state_dict()[k]), host(v), err_msg=k)


# --- Parameter and attribute assignment ---------------------------------------------------


def test_parameter_from_a_tensor_an_array_or_a_list():
    t = tinygpt.tensor([[1.0, 2.0], [3.0, 4.0]])
    p = nn.Parameter(t)
    assert p.array is t.array and p.requires_grad and p.is_leaf  # shares the array, as torch
    q = nn.Parameter(np.zeros(3, np.float32))
    assert q.shape == (3,) and q.dtype == np.float32
    r = nn.Parameter([1.0, 2.0], requires_grad=False)
    assert r.dtype == np.float32 and not r.requires_grad
    assert repr(r).startswith("Parameter containing:\ntensor([1., 2.]")


def test_assigning_a_parameter_replaces_it_like_the_books_assign():
    gpt = GPTModel(TINY)
    right = np.arange(6 * 12, dtype=np.float32).reshape(6, 12)
    gpt.pos_emb.weight = nn.Parameter(tinygpt.tensor(right))  # listing 5.5's assign
    assert dict(gpt.named_parameters())["pos_emb.weight"] is gpt.pos_emb.weight
    np.testing.assert_array_equal(host(gpt.state_dict()["pos_emb.weight"]), right)
    with pytest.raises(TypeError, match=r"nn.Parameter\(value\)"):
        gpt.pos_emb.weight = tinygpt.tensor(right)  # torch refuses a plain Tensor too


def test_a_missing_bias_is_none_and_can_be_given_later():
    lin = nn.Linear(3, 2, bias=False)
    assert lin.bias is None
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    assert list(lin.state_dict()) == ["weight"]
    lin.bias = nn.Parameter(np.zeros(2, np.float32))
    assert [n for n, _ in lin.named_parameters()] == ["weight", "bias"]
    lin.bias = None
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    out = lin(tinygpt.ones(4, 3))
    assert out.shape == (4, 2)


def test_deleting_and_deep_copying_modules():
    m = Masked()
    clone = copy.deepcopy(m)
    assert clone.proj.weight is not m.proj.weight
    np.testing.assert_array_equal(host(clone.proj.weight), host(m.proj.weight))
    del m.mask
    assert "mask" not in m.state_dict()
    with pytest.raises(AttributeError, match="no attribute 'mask'"):
        m.mask  # noqa: B018


# --- traversal, modes, gradients --------------------------------------------------------------


def test_children_modules_apply_and_requires_grad():
    model = GPTModel(TINY)
    assert [n for n, _ in model.named_children()] == [
        "tok_emb", "pos_emb", "drop_emb", "trf_blocks", "final_norm", "out_head"]
    assert list(model.children())[0] is model.tok_emb
    assert model.modules()[0] is model
    seen = []
    assert model.apply(lambda m: seen.append(type(m).__name__)) is model
    assert seen[-1] == "GPTModel" and seen.count("TransformerBlock") == 2
    assert model.requires_grad_(False) is model
    assert not any(p.requires_grad for p in model.parameters())
    model.requires_grad_()
    assert all(p.requires_grad for p in model.parameters())


def test_train_eval_return_self_and_zero_grad_keeps_or_drops_gradients():
    model = GPTModel(TINY)
    assert model.eval() is model and not model.trf_blocks[1].att.training
    assert model.train() is model and model.trf_blocks[1].att.training
    ids = np.array([[1, 2, 3]])
    tinygpt.cross_entropy(model(ids), np.array([[2, 3, 4]])).backward()
    model.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not host(p.grad).any() for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_a_shared_parameter_is_listed_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(5, 3)
            self.head = nn.Linear(3, 5, bias=False)
            self.head.weight = self.emb.weight

    tied = Tied()
    assert [n for n, _ in tied.named_parameters()] == ["emb.weight"]
    assert list(tied.state_dict()) == ["emb.weight", "head.weight"]  # torch keeps both keys


# --- ModuleList and Sequential ---------------------------------------------------------------


def test_module_list():
    blocks = nn.ModuleList([nn.Linear(2, 2) for _ in range(2)])
    blocks.append(nn.Linear(2, 3))
    blocks.extend([nn.Dropout(0.1)])
    assert len(blocks) == 4 and isinstance(blocks[-1], nn.Dropout)
    assert [type(b).__name__ for b in blocks] == ["Linear", "Linear", "Linear", "Dropout"]
    assert isinstance(blocks[1:3], nn.ModuleList) and len(blocks[1:3]) == 2
    with pytest.raises(IndexError):
        blocks[4]
    assert [n for n, _ in blocks.named_parameters()] == [
        "0.weight", "0.bias", "1.weight", "1.bias", "2.weight", "2.bias"]
    with pytest.raises(NotImplementedError, match="forward"):
        blocks(tinygpt.ones(2))

    class Stack(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(nn.Linear(2, 2) for _ in range(3))

        def forward(self, x):
            for block in self.blocks:
                x = block(x)
            return x

    model = Stack()
    assert list(model.state_dict())[-1] == "blocks.2.bias"
    assert model(tinygpt.ones(1, 2)).shape == (1, 2)
    assert repr(model) == (
        "Stack(\n  (blocks): ModuleList(\n"
        "    (0-2): 3 x Linear(in_features=2, out_features=2, bias=True)\n  )\n)")


def test_sequential_indexing_and_slicing():
    seq = nn.Sequential(nn.Linear(2, 3), nn.GELU(approximate="tanh"), nn.Linear(3, 1))
    assert isinstance(seq[0], nn.Linear) and len(seq) == 3
    assert isinstance(seq[:2], nn.Sequential) and len(seq[:2]) == 2
    assert seq(tinygpt.ones(4, 2)).shape == (4, 1)


# --- printing ------------------------------------------------------------------------------


def test_module_repr_is_torchs():
    model = GPTModel(dict(TINY, qkv_bias=False))
    text = repr(model)
    assert text.startswith(
        "GPTModel(\n"
        "  (tok_emb): Embedding(29, 12)\n"
        "  (pos_emb): Embedding(6, 12)\n"
        "  (drop_emb): Dropout(p=0.1, inplace=False)\n"
        "  (trf_blocks): Sequential(\n"
        "    (0): TransformerBlock(\n"
        "      (att): MultiHeadAttention(\n"
        "        (W_query): Linear(in_features=12, out_features=12, bias=False)\n")
    assert text.endswith(
        "  (final_norm): LayerNorm()\n"
        "  (out_head): Linear(in_features=12, out_features=29, bias=False)\n"
        ")")
    assert repr(nn.GELU(approximate="tanh")) == "GELU(approximate='tanh')"


def test_module_repr_matches_torch_for_the_same_layers(torch):
    ours = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.25), nn.Embedding(7, 2),
                         nn.Linear(3, 1, bias=False))
    ref = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Dropout(0.25),
                              torch.nn.Embedding(7, 2), torch.nn.Linear(3, 1, bias=False))
    assert repr(ours) == repr(ref)
    ours = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2), nn.Dropout(0.5)])
    ref = torch.nn.ModuleList([torch.nn.Linear(2, 2), torch.nn.Linear(2, 2),
                               torch.nn.Dropout(0.5)])
    assert repr(ours) == repr(ref)


# --- devices and dtypes ----------------------------------------------------------------------


@pytest.mark.skipif(BACKEND == "cupy", reason="on CuPy 'cuda' is where tinygpt computes")
def test_module_to_cuda_on_numpy_raises_backend_error():
    model = GPTModel(TINY)
    with pytest.raises(BackendError, match="TINYGPT_BACKEND=cupy"):
        model.to("cuda")
    with pytest.raises(BackendError):
        model.cuda()
    with pytest.raises(BackendError):
        model.to(tinygpt.device("cuda"))


def test_module_to_device_dtype_and_the_shorthands():
    here = tinygpt.backend.device_name()
    model = GPTModel(TINY)
    assert model.to(here) is model and model.to(tinygpt.device(here)) is model
    assert model.to(here, np.float64) is model and model.dtype == np.float64
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert model.float() is model and model.dtype == np.float32
    assert model.to(dtype=tinygpt.float64).dtype == np.float64
    assert model.to(tinygpt.zeros(1)).dtype == np.float32  # a tensor's device and dtype
    if BACKEND != "cupy":
        assert model.cpu() is model
    with pytest.raises(TypeError, match="floating point"):
        model.to(tinygpt.long)
    with pytest.raises(NotImplementedError, match="float16"):
        model.half()
    with pytest.raises(BackendError, match="unknown device"):
        model.to("mps")


def test_module_to_accepts_a_torch_device(torch):
    model = nn.Linear(2, 2)
    if BACKEND == "cupy":
        assert model.to(torch.device("cuda")) is model
    else:
        assert model.to(torch.device("cpu")) is model
        with pytest.raises(BackendError):
            model.to(torch.device("cuda"))


# --- nn.functional ---------------------------------------------------------------------------


def _logits_and_targets(shape, classes_dim, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal(shape).astype(np.float32)
    target_shape = shape[:classes_dim] + shape[classes_dim + 1:]
    return logits, rng.integers(0, shape[classes_dim], size=target_shape)


def test_cross_entropy_n_c_equals_tinygpts_and_torchs(torch):
    logits, targets = _logits_and_targets((7, 11), 1)
    targets[2] = -100  # ignored, as torch's default ignore_index
    ours = Tensor(logits, requires_grad=True)
    loss = F.cross_entropy(ours, tinygpt.tensor(targets))
    loss.backward()
    same = Tensor(logits, requires_grad=True)
    tinygpt.cross_entropy(same, targets).backward()
    assert loss.item() == tinygpt.cross_entropy(logits, targets).item()
    assert_close("grad vs tinygpt", ours.grad, same.grad, 1e-6)
    ref = torch.tensor(logits, requires_grad=True)
    ref_loss = torch.nn.functional.cross_entropy(ref, torch.from_numpy(targets))
    ref_loss.backward()
    assert abs(loss.item() - ref_loss.item()) <= 1e-6 * abs(ref_loss.item())
    assert_close("grad vs torch", ours.grad, ref.grad.numpy(), 1e-5)


@pytest.mark.parametrize("shape", [(3, 11, 5), (2, 7, 3, 4)], ids=["N,C,T", "N,C,d1,d2"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_class_dim_is_dim_1_like_torch(torch, shape, reduction):
    logits, targets = _logits_and_targets(shape, 1, seed=len(shape))
    targets.reshape(-1)[1] = 3
    ours = Tensor(logits, requires_grad=True)
    loss = F.cross_entropy(ours, targets, ignore_index=3, reduction=reduction)
    loss.backward()
    ref = torch.tensor(logits, requires_grad=True)
    ref_loss = torch.nn.functional.cross_entropy(ref, torch.from_numpy(targets),
                                                 ignore_index=3, reduction=reduction)
    ref_loss.backward()
    assert abs(loss.item() - ref_loss.item()) <= 1e-5 * abs(ref_loss.item()), reduction
    assert_close(f"grad ({reduction})", ours.grad, ref.grad.numpy(), 1e-5)


def test_cross_entropy_of_the_books_flattened_logits_equals_the_fused_loss():
    logits, targets = _logits_and_targets((2, 4, 9), 2)  # (B, T, V), targets (B, T)
    flat = F.cross_entropy(Tensor(logits).flatten(0, 1), Tensor(targets).flatten())
    assert flat.item() == pytest.approx(tinygpt.cross_entropy(logits, targets).item(), rel=1e-6)
    with pytest.raises(ValueError, match=r"flatten\(0, 1\)"):  # torch would refuse these too
        F.cross_entropy(Tensor(logits), Tensor(targets))


def test_cross_entropy_sum_with_nothing_counted_is_zero_and_unsupported_options_raise():
    logits = Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    loss = F.cross_entropy(logits, np.array([-100, -100]), reduction="sum")
    assert loss.item() == 0.0
    loss.backward()
    assert not host(logits.grad).any()
    with pytest.raises(NotImplementedError, match='reduction="sum"'):
        F.cross_entropy(logits, np.array([0, 1]), reduction="none")
    with pytest.raises(NotImplementedError, match="class ids"):
        F.cross_entropy(logits, np.ones((2, 3), np.float32))
    with pytest.raises(NotImplementedError, match="weight"):
        F.cross_entropy(logits, np.array([0, 1]), weight=np.ones(3))


def test_functional_layers_equal_torchs(torch):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 4)).astype(np.float32)
    w = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
    tf = torch.nn.functional
    assert_close("softmax", F.softmax(Tensor(x), dim=1), tf.softmax(tx, dim=1).numpy(), 1e-6)
    assert_close("log_softmax", F.log_softmax(x, dim=-1), tf.log_softmax(tx, -1).numpy(), 1e-6)
    assert_close("linear", F.linear(Tensor(x), Tensor(w), Tensor(b)),
                 tf.linear(tx, tw, tb).numpy(), 1e-6)
    assert_close("linear, no bias", F.linear(x, w), tf.linear(tx, tw).numpy(), 1e-6)
    assert_close("gelu", F.gelu(Tensor(x), approximate="tanh"),
                 tf.gelu(tx, approximate="tanh").numpy(), 1e-6)
    ids = np.array([[0, 2, 2], [1, 0, 3]])
    assert_close("embedding", F.embedding(Tensor(ids), Tensor(x[0])),
                 tf.embedding(torch.from_numpy(ids), tx[0]).numpy(), 0.0)
    assert F.dropout(Tensor(x), 0.5, training=False).array is Tensor(x).array or np.array_equal(
        host(F.dropout(Tensor(x), 0.5, training=False)), x)


def test_gelu_exact_form_and_dropout_options_say_what_to_use():
    with pytest.raises(NotImplementedError, match='approximate="tanh"'):
        F.gelu(tinygpt.ones(3))
    kept = F.dropout(tinygpt.ones(1000), p=0.5)
    assert set(np.unique(host(kept)).tolist()) <= {0.0, 2.0}
    with pytest.raises(NotImplementedError, match="inplace"):
        F.dropout(tinygpt.ones(3), inplace=True)


def test_torch_nn_names_resolve_on_tinygpt():
    import tinygpt as torch  # what a learner writes

    assert torch.nn.functional.cross_entropy is F.cross_entropy
    assert torch.nn.utils.clip_grad_norm_ is nn.utils.clip_grad_norm_
    assert torch.nn.Module is nn.Module and torch.nn.ModuleList is nn.ModuleList


# --- nn.utils.clip_grad_norm_ -------------------------------------------------------------------


@pytest.mark.parametrize("max_norm,norm_type", [(0.5, 2.0), (100.0, 2.0), (0.3, float("inf"))])
def test_clip_grad_norm_equals_torchs(torch, max_norm, norm_type):
    rng = np.random.default_rng(7)
    grads = [rng.standard_normal(s).astype(np.float32) for s in ((4, 3), (5,), (2, 2, 2))]
    ours = [nn.Parameter(np.zeros_like(g)) for g in grads]
    refs = [torch.nn.Parameter(torch.zeros(g.shape)) for g in grads]
    for p, r, g in zip(ours, refs, grads):
        p.grad = Tensor(g).array.copy()
        r.grad = torch.from_numpy(g.copy())
    ours.append(nn.Parameter(np.zeros(3, np.float32)))  # no gradient: skipped
    norm = nn.utils.clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    ref_norm = torch.nn.utils.clip_grad_norm_(refs, max_norm, norm_type=norm_type)
    assert isinstance(norm, Tensor) and norm.ndim == 0 and norm.dtype == np.float32
    assert abs(float(norm) - float(ref_norm)) <= 1e-6 * float(ref_norm)
    for i, (p, r) in enumerate(zip(ours, refs)):
        assert_close(f"clipped grad {i}", p.grad, r.grad.numpy(), 1e-6)


def test_clip_grad_norm_without_gradients_and_through_a_model():
    assert float(nn.utils.clip_grad_norm_([nn.Parameter(np.ones(2, np.float32))], 1.0)) == 0.0
    model = GPTModel(TINY)
    tinygpt.cross_entropy(model(np.array([[1, 2, 3]])), np.array([[2, 3, 4]])).backward()
    before = nn.utils.clip_grad_norm_(model.parameters(), 1e-3)
    assert float(before) > 1e-3
    after = nn.utils.clip_grad_norm_(model.parameters(), 1e9)
    assert float(after) == pytest.approx(1e-3, rel=1e-4)


def test_chapter_4s_relu_and_mse_loss_equal_torchs(torch):
    x = np.array([[-1.5, 0.0, 2.0], [0.5, -0.1, 3.0]], np.float32)
    target = np.array([[0.0, 1.0, 1.0], [2.0, 0.0, 1.0]], np.float32)
    ours = Tensor(x, requires_grad=True)
    loss = nn.MSELoss()(nn.ReLU()(ours), tinygpt.tensor(target))
    loss.backward()
    ref = torch.tensor(x, requires_grad=True)
    ref_loss = torch.nn.MSELoss()(torch.nn.ReLU()(ref), torch.from_numpy(target))
    ref_loss.backward()
    assert abs(loss.item() - ref_loss.item()) <= 1e-6 * ref_loss.item()
    assert_close("relu + mse grad", ours.grad, ref.grad.numpy(), 1e-6)
    assert F.mse_loss(x, target, reduction="sum").item() == pytest.approx(
        torch.nn.functional.mse_loss(torch.from_numpy(x), torch.from_numpy(target),
                                     reduction="sum").item(), rel=1e-6)
    with pytest.raises(ValueError, match="differ"):
        F.mse_loss(x, target[:1])
    logits, targets = _logits_and_targets((4, 5), 1)
    assert nn.CrossEntropyLoss()(logits, targets).item() == F.cross_entropy(logits,
                                                                            targets).item()


# --- torch's LayerNorm and GELU (the book's own are in tinygpt.model) ------------------------


def test_torch_layer_norm_and_gelu_match_torch(torch):
    x = np.random.default_rng(3).standard_normal((2, 5, 8)).astype(np.float32)
    ours = nn.LayerNorm(8)
    ref = torch.nn.LayerNorm(8)
    with torch.no_grad():
        ref.weight.copy_(torch.linspace(0.5, 1.5, 8))
        ref.bias.copy_(torch.linspace(-1, 1, 8))
    ours.load_state_dict(ref.state_dict())
    assert list(ours.state_dict()) == ["weight", "bias"]
    np.testing.assert_allclose(host(ours(tinygpt.tensor(x))), ref(torch.tensor(x)).detach(),
                               rtol=1e-5, atol=1e-5)
    gelu = nn.GELU(approximate="tanh")
    np.testing.assert_allclose(
        host(gelu(tinygpt.tensor(x))),
        torch.nn.GELU(approximate="tanh")(torch.tensor(x)).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(NotImplementedError, match='approximate="tanh"'):
        nn.GELU()  # torch's default is the exact erf form: refused, not approximated
