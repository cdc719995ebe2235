"""Whole-model parity with the book's PyTorch GPTModel (tests/reference/torch_gpt.py)."""

import numpy as np
import pytest

import tinygpt
from tinygpt import GPT_CONFIG_124M, AdamW, GPTModel, cross_entropy, perplexity

from .helpers.assertions import assert_close, host

torch = pytest.importorskip("torch")
from .reference.torch_gpt import GPTModel as TorchGPT  # noqa: E402
from .reference.torch_gpt import numpy_state_dict  # noqa: E402

SMALL = {
    "vocab_size": 97, "context_length": 16, "emb_dim": 32, "n_heads": 4,
    "n_layers": 2, "drop_rate": 0.0, "qkv_bias": False,
}
SMALL_BIAS = dict(SMALL, qkv_bias=True, n_heads=2, n_layers=3)

TOL = {np.float64: 1e-9, np.float32: 1e-4}
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}


def make_pair(cfg, dtype, seed=0):
    torch.manual_seed(seed)
    ref = TorchGPT(cfg).to(TORCH_DTYPE[dtype])
    ref.eval()
    ours = GPTModel(cfg, dtype=dtype)
    ours.load_state_dict(numpy_state_dict(ref))
    ours.eval()
    return ours, ref


def run_both(ours, ref, ids, targets):
    logits_ref = ref(torch.from_numpy(ids))
    loss_ref = torch.nn.functional.cross_entropy(
        logits_ref.flatten(0, 1), torch.from_numpy(targets).flatten()
    )
    loss_ref.backward()
    logits = ours(ids)
    loss = cross_entropy(logits, targets)
    loss.backward()
    return logits, loss, logits_ref, loss_ref


@pytest.mark.parametrize("cfg", [SMALL, SMALL_BIAS], ids=["small", "small-qkv-bias"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_logits_loss_and_every_gradient_match_torch(cfg, dtype):
    ours, ref = make_pair(cfg, dtype)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, cfg["vocab_size"], size=(3, cfg["context_length"]))
    targets = rng.integers(0, cfg["vocab_size"], size=(3, cfg["context_length"]))
    logits, loss, logits_ref, loss_ref = run_both(ours, ref, ids, targets)
    tol = TOL[dtype]
    assert logits.dtype == dtype and loss.dtype == dtype
    assert_close("logits", logits.data, logits_ref.detach().numpy(), tol)
    assert_close("loss", loss.data, loss_ref.item(), tol / 10, scale_by_max=False)
    ref_params = dict(ref.named_parameters())
    floor = 1e-3 * max(float(p.grad.abs().max()) for p in ref.parameters())
    for name, p in ours.named_parameters():
        assert p.grad is not None, f"{name}: no gradient"
        assert p.grad.dtype == dtype, f"{name}: gradient dtype {p.grad.dtype}"
        assert_close(f"grad {name}", p.grad, ref_params[name].grad.numpy(), tol, floor=floor)


def test_gpt_config_124m_float32_matches_torch():
    cfg = dict(GPT_CONFIG_124M, drop_rate=0.0)
    ours, ref = make_pair(cfg, np.float32, seed=123)
    rng = np.random.default_rng(2)
    ids = rng.integers(0, cfg["vocab_size"], size=(2, 64))
    targets = rng.integers(0, cfg["vocab_size"], size=(2, 64))
    logits, loss, logits_ref, loss_ref = run_both(ours, ref, ids, targets)
    assert_close("logits", logits.data, logits_ref.detach().numpy(), 1e-4)
    assert abs(loss.item() - loss_ref.item()) < 1e-5
    ref_params = dict(ref.named_parameters())
    floor = 1e-3 * max(float(p.grad.abs().max()) for p in ref.parameters())
    for name, p in ours.named_parameters():
        assert_close(f"grad {name}", p.grad, ref_params[name].grad.numpy(), 1e-4, floor=floor)


def test_seed_123_book_loss_and_perplexity():
    """The book's 5.1.2 numbers: cross-entropy 10.7940, perplexity ~48725.8."""
    torch.manual_seed(123)
    ref = TorchGPT(GPT_CONFIG_124M)
    ref.eval()
    model = GPTModel(GPT_CONFIG_124M)
    model.load_state_dict(numpy_state_dict(ref))
    model.eval()
    inputs = np.array([[16833, 3626, 6100], [40, 1107, 588]])
    targets = np.array([[3626, 6100, 345], [1107, 588, 11311]])
    with tinygpt.no_grad():
        loss = cross_entropy(model(inputs), targets)
        with torch.no_grad():
            ref_loss = torch.nn.functional.cross_entropy(
                ref(torch.from_numpy(inputs)).flatten(0, 1), torch.from_numpy(targets).flatten()
            ).item()
    assert abs(loss.item() - ref_loss) < 1e-4
    assert abs(loss.item() - 10.7940) < 1e-4
    assert abs(perplexity(loss) - 48725.8) / 48725.8 < 1e-3


def test_perplexity_past_overflow_is_inf_as_torch_exp():
    """One perplexity (loss.perplexity, which `tinygpt eval` prints): exp of the loss,
    inf where exp overflows (a loss above ~709.78), as torch.exp gives; never an error."""
    for loss in (0.0, 10.794, 709.0, 709.8, 800.0, 1e6, float("inf")):
        expected = torch.exp(torch.tensor(loss, dtype=torch.float64)).item()
        assert perplexity(loss) == pytest.approx(expected, rel=1e-12)
        assert perplexity(tinygpt.tensor(loss, dtype=tinygpt.float64)) == perplexity(loss)
    assert perplexity(np.float32(800.0)) == float("inf")
    assert np.isnan(perplexity(float("nan")))


def test_ten_adamw_steps_match_torch():
    cfg = dict(SMALL, n_layers=2)
    ours, ref = make_pair(cfg, np.float32, seed=3)
    ours.train()
    ref.train()
    lr = 1e-3
    opt = AdamW(ours.parameters(), lr=lr, weight_decay=0.1)
    opt_ref = torch.optim.AdamW(ref.parameters(), lr=lr, weight_decay=0.1)
    rng = np.random.default_rng(4)
    for step in range(10):
        ids = rng.integers(0, cfg["vocab_size"], size=(4, cfg["context_length"]))
        targets = rng.integers(0, cfg["vocab_size"], size=(4, cfg["context_length"]))
        opt.zero_grad()
        opt_ref.zero_grad()
        _, loss, _, loss_ref = run_both(ours, ref, ids, targets)
        assert abs(loss.item() - loss_ref.item()) < 1e-5, f"step {step}"
        opt.step()
        opt_ref.step()
    ref_params = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        diff = np.abs(host(p) - ref_params[name].detach().numpy()).max()
        assert diff <= 0.1 * lr, f"param {name}: max |diff| {diff:.3e} > 0.1*lr"


def test_ten_adamw_steps_float64_match_torch():
    cfg = dict(SMALL_BIAS)
    ours, ref = make_pair(cfg, np.float64, seed=5)
    opt = AdamW(ours.parameters(), lr=1e-3)
    opt_ref = torch.optim.AdamW(ref.parameters(), lr=1e-3)
    rng = np.random.default_rng(6)
    for step in range(10):
        ids = rng.integers(0, cfg["vocab_size"], size=(2, 8))
        opt.zero_grad()
        opt_ref.zero_grad()
        _, loss, _, loss_ref = run_both(ours, ref, ids, np.roll(ids, -1, axis=1))
        assert abs(loss.item() - loss_ref.item()) <= 1e-9 * abs(loss_ref.item()), f"step {step}"
        opt.step()
        opt_ref.step()
    ref_params = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(f"param {name}", p.data, ref_params[name].detach().numpy(), 1e-10)


def test_torch_state_dict_loads_unchanged_and_keys_match():
    torch.manual_seed(0)
    ref = TorchGPT(SMALL_BIAS)
    ours = GPTModel(SMALL_BIAS)
    sd = {k: v.numpy() for k, v in ref.state_dict().items()}  # mask buffers included
    ours.load_state_dict(sd)
    assert list(ours.state_dict()) == list(ref.state_dict())  # the mask buffers too
    for k, v in ours.state_dict().items():
        assert v.shape == tuple(ref.state_dict()[k].shape), k
    back = TorchGPT(SMALL_BIAS)  # ours loads into the book's model, strictly
    back.load_state_dict({k: torch.tensor(host(v)) for k, v in ours.state_dict().items()})
    for k, v in back.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), ref.state_dict()[k].numpy(), err_msg=k)


class _SharedMaskDropout(torch.nn.Module):
    """torch dropout that draws its keep-mask the way tinygpt does (float32 uniforms >= p
    from a NumPy generator), so both engines drop exactly the same entries."""

    generator = None

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = (_SharedMaskDropout.generator.random(tuple(x.shape), dtype=np.float32)
                >= np.float32(self.p))
        return x * torch.from_numpy(keep.astype(np.float32)) * (1.0 / (1.0 - self.p))


@pytest.fixture
def numpy_dropout_masks():
    """Dropout masks drawn from the NumPy generator (float32 uniforms) on either backend,
    the masks _SharedMaskDropout reproduces; CuPy's default, Philox, draws others."""
    previous = tinygpt.backend.dropout_rng()
    tinygpt.backend.set_dropout_rng("numpy")
    yield
    tinygpt.backend.set_dropout_rng(previous)


@pytest.mark.usefixtures("numpy_dropout_masks")
def test_training_with_dropout_matches_torch_given_the_same_masks():
    """With dropout on, tinygpt's training is torch's computation: fed the same masks
    (both models draw them in the same order: embeddings, then per block attention
    weights and the two shortcuts), 30 AdamW steps give the same losses."""
    cfg = dict(SMALL, drop_rate=0.1, n_layers=2)
    torch.manual_seed(8)
    ref = TorchGPT(cfg)
    for module in list(ref.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Dropout):
                setattr(module, name, _SharedMaskDropout(child.p))
    ours = GPTModel(cfg)
    ours.load_state_dict(numpy_state_dict(ref))
    ours.train()
    ref.train()
    opt = AdamW(ours.parameters(), lr=1e-3, weight_decay=0.1)
    opt_ref = torch.optim.AdamW(ref.parameters(), lr=1e-3, weight_decay=0.1)
    rng = np.random.default_rng(9)
    for step in range(30):
        ids = rng.integers(0, cfg["vocab_size"], size=(2, cfg["context_length"]))
        tinygpt.manual_seed(1000 + step)
        _SharedMaskDropout.generator = np.random.default_rng(1000 + step)
        opt.zero_grad()
        opt_ref.zero_grad()
        _, loss, _, loss_ref = run_both(ours, ref, ids, np.roll(ids, -1, axis=1))
        assert abs(loss.item() - loss_ref.item()) < 1e-5, f"step {step}"
        opt.step()
        opt_ref.step()
    ref_params = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        diff = np.abs(host(p) - ref_params[name].detach().numpy()).max()
        assert diff <= 0.1 * 1e-3, f"param {name}: max |diff| {diff:.3e} > 0.1*lr"
