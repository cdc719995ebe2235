"""A learner's GPT typed against torch's names (tests/book_style.py), run on tinygpt:
its numbers equal the fused GPTModel's (and so the PyTorch reference's), it trains on
the verdict, and torch.save / torch.load resume it bit for bit."""

import numpy as np
import pytest

import tinygpt
import tinygpt as torch
from tinygpt import GPTModel

from . import book_style
from .checks import assert_close, host

pytestmark = pytest.mark.usefixtures("keep_global_rng")

CFG = {"vocab_size": 97, "context_length": 16, "emb_dim": 32, "n_heads": 4, "n_layers": 2,
       "drop_rate": 0.1, "qkv_bias": True}
DEVICE = tinygpt.backend.device_name()


def twins(cfg=CFG, seed=0):
    """The fused model and the typed one holding the same weights."""
    tinygpt.manual_seed(seed)
    fused = GPTModel(cfg)
    typed = book_style.TypedGPT(cfg)
    report = typed.load_state_dict(fused.state_dict(), strict=False)
    assert report.unexpected_keys == []
    assert all(k.endswith(".att.mask") for k in report.missing_keys)  # its own buffers
    return fused, typed


def batch(cfg=CFG, size=3, seed=1):
    ids = np.random.default_rng(seed).integers(0, cfg["vocab_size"],
                                               size=(size, cfg["context_length"] + 1))
    return ids[:, :-1], ids[:, 1:]


def test_state_dict_is_the_fused_models_plus_the_mask_buffers():
    fused, typed = twins()
    keys = list(typed.state_dict())
    assert [k for k in keys if not k.endswith(".att.mask")] == list(fused.state_dict())
    assert "trf_blocks.1.att.mask" in keys
    assert all(p is not typed.trf_blocks[0].att.mask for p in typed.parameters())


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_logits_loss_and_every_gradient_equal_the_fused_model(mode):
    """In train mode dropout is on: both models draw their masks in the same order
    (embeddings, then per block the attention weights and the two shortcuts), so the
    same seed drops the same entries."""
    fused, typed = twins()
    x, y = batch()
    results = {}
    for name, model in (("fused", fused), ("typed", typed)):
        model.train(mode == "train")
        tinygpt.manual_seed(5)
        logits = model(torch.tensor(x))
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), torch.tensor(y).flatten())
        loss.backward()
        grads = {k: host(p.grad) for k, p in model.named_parameters()}
        results[name] = (host(logits), loss.item(), grads)
    (logits_f, loss_f, grads_f), (logits_t, loss_t, grads_t) = results["fused"], results["typed"]
    assert_close("logits", logits_t, logits_f, 1e-4)
    assert abs(loss_t - loss_f) <= 1e-5 * abs(loss_f), (loss_t, loss_f)
    largest = max(float(np.abs(g).max()) for g in grads_f.values())
    assert grads_t.keys() == grads_f.keys()
    for name in grads_f:
        assert_close(f"grad {name}", grads_t[name], grads_f[name], 1e-4, floor=1e-3 * largest)


def test_greedy_tokens_equal_the_fused_generate():
    fused, typed = twins(dict(CFG, drop_rate=0.0))
    typed.eval()
    prompt = torch.tensor([[5, 17, 3]])
    ours = book_style.greedy(typed, prompt, 12, CFG["context_length"])
    assert isinstance(ours, tinygpt.Tensor) and ours.dtype == torch.long
    np.testing.assert_array_equal(
        host(ours), tinygpt.generate_text_simple(fused, host(prompt), 12, CFG["context_length"]))


def test_trains_an_epoch_of_the_verdict_with_falling_loss(verdict_text):
    cfg = dict(CFG, vocab_size=50257, context_length=32, emb_dim=48)
    ids = tinygpt.get_tokenizer().encode(verdict_text)
    torch.manual_seed(123)
    loader = book_style.make_loader(ids, batch_size=8, length=32, shuffle=True,
                                    drop_last=True)
    model = book_style.TypedGPT(cfg).to(DEVICE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.1)
    losses = book_style.train(model, loader, optimizer, DEVICE, epochs=1)
    assert len(losses) == len(loader) >= 15
    assert np.mean(losses[-3:]) < 0.9 * losses[0], losses  # ~10.9 -> ~9.2


def test_save_and_load_resume_bit_for_bit(tmp_path):
    """Checkpoint the model and AdamW after 3 steps the book's way (section 5.4); the
    resumed run's next 3 steps equal the uninterrupted run's, weights and losses."""
    _, model = twins()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    x, y = batch()
    loader = [(torch.tensor(x), torch.tensor(y))]
    book_style.train(model, loader * 3, optimizer, DEVICE, epochs=1)
    path = tmp_path / "model_and_optimizer.pth"
    torch.save({"model_state_dict": model.state_dict(),
                "optimizer_state_dict": optimizer.state_dict()}, path)
    rng_state = tinygpt.get_rng_state()  # dropout draws continue from here in both runs
    expected = book_style.train(model, loader * 3, optimizer, DEVICE, epochs=1)

    checkpoint = torch.load(path, map_location=DEVICE, weights_only=True)
    resumed = book_style.TypedGPT(CFG)
    resumed.load_state_dict(checkpoint["model_state_dict"])
    resumed_optimizer = torch.optim.AdamW(resumed.parameters(), lr=0.0005, weight_decay=0.1)
    resumed_optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
    tinygpt.set_rng_state(rng_state)
    again = book_style.train(resumed, loader * 3, resumed_optimizer, DEVICE, epochs=1)
    assert again == expected
    for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        np.testing.assert_array_equal(host(a), host(b), err_msg=name)
