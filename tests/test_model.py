"""tinygpt.model's GPTModel. Its two paths, ``tinygpt.use_fused``: the book's steps on
Tensors (attention, layer norm, GELU written out in ``model.py``) and the fused ops beside
them give the same logits, loss and gradients, with dropout off and on (the same masks for
the same seed); the switch itself; torch's functional names the fast path calls; and the
state dict: the book's keys and shapes, the ``mask`` buffer in state dicts, files and dtype
changes. Against the torch model as a whole: test_parity_torch.py."""

import numpy as np
import pytest

import tinygpt
import tinygpt as torch
import tinygpt.nn.functional as F
from tinygpt import GPTModel, fast_path, use_fused
from tinygpt.io.checkpoint import load_model, save_model

from .helpers.assertions import assert_close, host

pytestmark = pytest.mark.usefixtures("keep_global_rng")

CFG = {"vocab_size": 97, "context_length": 16, "emb_dim": 32, "n_heads": 4, "n_layers": 2,
       "drop_rate": 0.1, "qkv_bias": True}
DEVICE = tinygpt.backend.device_name()


def batch(size=3, num_tokens=11, seed=1):
    """Shorter than context_length, so the mask's crop to num_tokens is exercised."""
    ids = np.random.default_rng(seed).integers(0, CFG["vocab_size"], size=(size, num_tokens + 1))
    return ids[:, :-1], ids[:, 1:]


def run(model, fused, x, y):
    """Logits, loss and every parameter's gradient on one path, dropout seeded alike."""
    model.zero_grad()
    with use_fused(fused):
        tinygpt.manual_seed(5)
        logits = model(torch.tensor(x))
        loss = F.cross_entropy(logits.flatten(0, 1), torch.tensor(y).flatten())
        loss.backward()
    grads = {name: host(p.grad) for name, p in model.named_parameters()}
    return host(logits), loss.item(), grads


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_both_paths_give_the_same_logits_loss_and_every_gradient(dtype, mode):
    """float64 to 1e-9; float32 within 1e-5 of each tensor's largest value. In train mode
    dropout is on and both paths draw the same masks: the attention weights' mask is
    one draw of the (b, num_heads, num_tokens, num_tokens) shape on either path."""
    tol = 1e-9 if dtype == "float64" else 1e-5
    tinygpt.manual_seed(0)
    model = GPTModel(CFG, dtype=getattr(np, dtype)).train(mode == "train")
    x, y = batch()
    logits_f, loss_f, grads_f = run(model, True, x, y)
    logits_b, loss_b, grads_b = run(model, False, x, y)
    assert logits_b.dtype == logits_f.dtype == np.dtype(dtype)
    assert_close("logits", logits_b, logits_f, tol)
    assert abs(loss_b - loss_f) <= tol * abs(loss_f), (loss_b, loss_f)
    assert grads_b.keys() == grads_f.keys() and len(grads_f) == len(list(model.parameters()))
    largest = max(float(np.abs(g).max()) for g in grads_f.values())
    for name in grads_f:  # (the key bias's true gradient is 0: scaled by the largest)
        assert_close(f"grad {name}", grads_b[name], grads_f[name], tol, floor=1e-3 * largest)
    if mode == "train":  # the masks really dropped something: eval gives other numbers
        model.eval()
        assert not np.allclose(run(model, True, x, y)[0], logits_f)


def test_attention_dropout_is_the_same_draw_on_both_paths():
    """F.scaled_dot_product_attention's dropout and the Dropout module on the book's
    attn_weights use one mask for one seed (the second path sees the same draw)."""
    rng = np.random.default_rng(3)
    q, k, v = (torch.tensor(rng.standard_normal((2, 3, 5, 4))) for _ in range(3))
    tinygpt.manual_seed(11)
    fused = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5, is_causal=True)
    tinygpt.manual_seed(11)
    scores = (q @ k.transpose(2, 3)).masked_fill(torch.triu(torch.ones(5, 5), 1).bool(),
                                                 -float("inf"))
    weights = F.dropout(F.softmax(scores / 2.0, dim=-1), p=0.5)
    assert_close("context", fused, weights @ v, 1e-12)
    assert float(host(weights).min()) == 0.0  # something was dropped


def test_greedy_tokens_are_the_same_on_both_paths():
    tinygpt.manual_seed(0)
    model = GPTModel(dict(CFG, drop_rate=0.0)).eval()
    prompt = np.array([[5, 17, 3]])
    with use_fused(True):
        fused = tinygpt.generate_text_simple(model, prompt, 12, CFG["context_length"])
    with use_fused(False):
        book = tinygpt.generate_text_simple(model, prompt, 12, CFG["context_length"])
    np.testing.assert_array_equal(host(book), host(fused))


def test_the_book_path_trains_an_epoch_of_the_verdict(verdict_text):
    """The book's loop on the book's steps: the loss falls over one epoch."""
    cfg = dict(CFG, vocab_size=50257, context_length=32, emb_dim=48)
    torch.manual_seed(123)
    loader = tinygpt.create_dataloader_v1(verdict_text, batch_size=8, max_length=32,
                                          stride=32, shuffle=True, drop_last=True)
    model = GPTModel(cfg).to(DEVICE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.1)
    losses = []
    with use_fused(False):
        for inputs, targets in loader:
            optimizer.zero_grad()
            loss = tinygpt.calc_loss_batch(inputs, targets, model, DEVICE)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    assert len(losses) == len(loader) >= 15
    assert np.mean(losses[-3:]) < 0.9 * losses[0], losses  # ~10.9 -> ~9.2


def test_the_book_path_resumes_bit_for_bit_from_torch_save(tmp_path):
    """Section 5.4's checkpoint (model and AdamW state dicts, the masks among them) on the
    book's path: the resumed run's next steps equal the uninterrupted run's."""
    x, y = batch()
    x, y = torch.tensor(x), torch.tensor(y)

    def steps(model, optimizer, n=2):
        losses = []
        for _ in range(n):
            optimizer.zero_grad()
            loss = tinygpt.calc_loss_batch(x, y, model, DEVICE)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return losses

    with use_fused(False):
        tinygpt.manual_seed(0)
        model = GPTModel(CFG)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
        steps(model, optimizer)
        torch.save({"model_state_dict": model.state_dict(),
                    "optimizer_state_dict": optimizer.state_dict()}, tmp_path / "run.pth")
        rng_state = tinygpt.get_rng_state()  # the dropout draws go on from here in both
        expected = steps(model, optimizer)
        checkpoint = torch.load(tmp_path / "run.pth", weights_only=True)
        resumed = GPTModel(CFG)
        resumed.load_state_dict(checkpoint["model_state_dict"])
        resumed_optimizer = torch.optim.AdamW(resumed.parameters(), lr=5e-4, weight_decay=0.1)
        resumed_optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
        tinygpt.set_rng_state(rng_state)
        assert steps(resumed, resumed_optimizer) == expected
    for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        np.testing.assert_array_equal(host(a), host(b), err_msg=name)


# --- the switch ------------------------------------------------------------------------


def test_use_fused_is_a_call_and_a_context_manager():
    start = fast_path.is_fused_enabled()
    try:
        with use_fused(not start):
            assert fast_path.is_fused_enabled() is (not start)
            with use_fused(start):
                assert fast_path.is_fused_enabled() is start
            assert fast_path.is_fused_enabled() is (not start)
        assert fast_path.is_fused_enabled() is start
        use_fused(False)
        assert fast_path.is_fused_enabled() is False
        use_fused(True)
        assert fast_path.is_fused_enabled() is True
        with pytest.raises(TypeError, match="True or False"):
            use_fused("no")
    finally:
        use_fused(start)


@pytest.mark.parametrize("value, expected", [("0", False), ("1", True), ("off", False),
                                             (" True ", True)])
def test_the_environment_sets_the_default(monkeypatch, value, expected):
    monkeypatch.setenv("TINYGPT_FUSED", value)
    assert fast_path._from_environment() is expected


def test_an_unknown_environment_value_is_refused(monkeypatch):
    monkeypatch.setenv("TINYGPT_FUSED", "maybe")
    with pytest.raises(ValueError, match="TINYGPT_FUSED must be 1"):
        fast_path._from_environment()


def test_each_layer_takes_the_selected_path(monkeypatch):
    """A fused op is called on the fast path and never on the book's."""
    calls = []
    for name in ("scaled_dot_product_attention", "layer_norm", "gelu"):
        original = getattr(F, name)
        monkeypatch.setattr(F, name, lambda *a, _f=original, _n=name, **k: (
            calls.append(_n), _f(*a, **k))[1])
    model = GPTModel(dict(CFG, n_layers=1))
    for fused in (False, True):
        calls.clear()
        with use_fused(fused):
            model(np.array([[1, 2, 3]]))
        expected = {"scaled_dot_product_attention": 1, "layer_norm": 3, "gelu": 1} if fused else {}
        assert {n: calls.count(n) for n in set(calls)} == expected


# --- torch's functional names on the fast path ----------------------------------------


def test_layer_norm_and_gelu_equal_the_book_layers():
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal((2, 3, 8)))
    w, b = torch.tensor(rng.standard_normal(8)), torch.tensor(rng.standard_normal(8))
    mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=False)
    assert_close("layer_norm", F.layer_norm(x, (8,), w, b, 1e-5),
                 w * ((x - mean) / (var + 1e-5).sqrt()) + b, 1e-12)
    assert_close("layer_norm, no affine", F.layer_norm(x, 8), (x - mean) / (var + 1e-5).sqrt(),
                 1e-12)
    c = float(np.sqrt(2.0 / np.pi))
    assert_close("gelu", F.gelu(x, approximate="tanh"),
                 0.5 * x * (1.0 + (c * (x + 0.044715 * x**3)).tanh()), 1e-12)


@pytest.mark.parametrize("call, alternative", [
    (lambda q: F.scaled_dot_product_attention(q, q, q), "is_causal=True"),
    (lambda q: F.scaled_dot_product_attention(q, q, q, attn_mask=q, is_causal=True),
     "attn_mask=None"),
    (lambda q: F.scaled_dot_product_attention(q, q, q, is_causal=True, scale=0.3),
     "multiply query"),
    (lambda q: F.scaled_dot_product_attention(q, q, q, is_causal=True, enable_gqa=True),
     "as many heads"),
    (lambda q: F.scaled_dot_product_attention(q[0], q[0], q[0], is_causal=True), "4-D"),
    (lambda q: F.scaled_dot_product_attention(q[:, :, :2], q, q, is_causal=True), "KVCache"),
    (lambda q: F.gelu(q), 'approximate="tanh"'),
    (lambda q: F.layer_norm(q, (5, 4)), "flatten"),
    (lambda q: F.dropout(q, 0.1, inplace=True), "returned tensor"),
], ids=["not-causal", "attn_mask", "scale", "gqa", "3-d", "fewer-queries", "gelu-erf",
        "layer_norm-2d", "dropout-inplace"])
def test_unsupported_arguments_name_the_alternative(call, alternative):
    q = torch.ones(1, 2, 5, 4)
    with pytest.raises(NotImplementedError, match=alternative):
        call(q)


def test_mismatched_arguments_are_value_errors():
    q = torch.ones(1, 2, 5, 4)
    with pytest.raises(ValueError, match="do not fit"):
        F.scaled_dot_product_attention(q, torch.ones(1, 2, 5, 3), q, is_causal=True)
    with pytest.raises(ValueError, match="one dtype"):
        F.scaled_dot_product_attention(q, q.double(), q, is_causal=True)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        F.scaled_dot_product_attention(q, q, q, dropout_p=1.0, is_causal=True)
    with pytest.raises(ValueError, match="last dim"):
        F.layer_norm(q, 5)
    with pytest.raises(ValueError, match="bias must have shape"):
        F.layer_norm(q, 4, bias=torch.ones(3))


# --- the state dict: the book's keys, the mask buffer, files ---------------------------


def test_the_mask_is_a_bool_buffer_that_dtype_changes_leave_alone():
    model = GPTModel(CFG)
    att = model.trf_blocks[0].att
    T = CFG["context_length"]
    np.testing.assert_array_equal(host(att.mask), np.triu(np.ones((T, T), bool), 1))
    assert att.mask.dtype == torch.bool and not att.mask.requires_grad
    assert all(p is not att.mask for p in model.parameters())
    model.to(torch.float64).to(DEVICE)
    assert att.mask.dtype == torch.bool and model.tok_emb.weight.dtype == np.float64
    assert "trf_blocks.1.att.mask" in dict(model.named_buffers())


def test_state_dict_keys_and_shapes_are_the_books():
    pytest.importorskip("torch")  # the reference model is torch's
    from .reference.torch_gpt import GPTModel as TorchGPT

    ref = TorchGPT(dict(CFG, qkv_bias=False))
    ours = GPTModel(dict(CFG, qkv_bias=False))
    ref_sd = ref.state_dict()  # the causal-mask buffers included, in the same places
    assert list(ours.state_dict()) == list(ref_sd)
    for k, v in ours.state_dict().items():
        assert tuple(v.shape) == tuple(ref_sd[k].shape), k
    ours.load_state_dict(ref.state_dict())  # torch tensors, mask buffers included
    np.testing.assert_array_equal(host(ours.out_head.weight),
                                  ref.out_head.weight.detach().numpy())


def test_state_dict_holds_the_masks_where_the_book_has_them():
    keys = list(GPTModel(CFG).state_dict())
    assert keys[2:4] == ["trf_blocks.0.att.mask", "trf_blocks.0.att.W_query.weight"]
    assert [k for k in keys if k.endswith(".att.mask")] == [
        f"trf_blocks.{i}.att.mask" for i in range(CFG["n_layers"])]


def test_a_state_dict_with_or_without_masks_loads():
    donor, model = GPTModel(CFG), GPTModel(CFG)
    sd = donor.state_dict()
    without = {k: v for k, v in sd.items() if not k.endswith(".att.mask")}
    report = model.load_state_dict(without)  # strict: tinygpt's files, converted GPT-2
    assert report.missing_keys == [] and report.unexpected_keys == []
    T = CFG["context_length"]
    book = dict(without, **{f"trf_blocks.{i}.att.mask": np.triu(np.ones((T, T), np.float32), 1)
                            for i in range(CFG["n_layers"])})  # the book's float masks
    assert model.load_state_dict(book).missing_keys == []
    assert model.trf_blocks[0].att.mask.dtype == torch.bool
    np.testing.assert_array_equal(host(model.out_head.weight), host(donor.out_head.weight))


def test_the_torch_models_mask_buffers_load_into_the_fused_model():
    model = GPTModel(CFG)
    sd = dict(GPTModel(CFG).state_dict())
    T = CFG["context_length"]
    sd["trf_blocks.0.att.mask"] = np.triu(np.ones((T, T), np.float32), 1)
    report = model.load_state_dict(sd)
    assert report.unexpected_keys == []


def test_a_mask_that_is_not_causal_is_refused_and_nothing_loads():
    model, donor = GPTModel(CFG), GPTModel(CFG)
    before = host(model.tok_emb.weight).copy()
    sd = dict(donor.state_dict())
    sd["trf_blocks.1.att.mask"] = np.zeros((16, 16), np.float32)  # attends to later tokens
    with pytest.raises(ValueError, match=r"trf_blocks\.1\.att\.mask: is not the causal mask"):
        model.load_state_dict(sd)
    np.testing.assert_array_equal(host(model.tok_emb.weight), before)
    sd["trf_blocks.1.att.mask"] = np.zeros((8, 8))  # the wrong size: the usual report
    with pytest.raises(ValueError, match="size mismatch for trf_blocks.1.att.mask"):
        model.load_state_dict(sd)


def test_files_round_trip_with_the_masks(tmp_path):
    """torch.save of the state dict keeps the masks (as the book's file does); tinygpt's
    model and checkpoint files hold the weights only, and both load."""
    model = GPTModel(CFG)
    torch.save(model.state_dict(), tmp_path / "model.pth")
    loaded = torch.load(tmp_path / "model.pth", weights_only=True)
    assert loaded["trf_blocks.0.att.mask"].dtype == torch.bool
    fresh = GPTModel(CFG)
    fresh.load_state_dict(loaded)
    save_model(model, tmp_path / "model.safetensors")
    again = load_model(tmp_path / "model.safetensors")
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(host(fresh.state_dict()[name]), host(value), name)
        np.testing.assert_array_equal(host(again.state_dict()[name]), host(value), name)
