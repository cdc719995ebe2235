"""The chapter's training workflow: loss over loaders, the loop, schedule, plot, demo."""

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinygpt
from tinygpt import GPT_CONFIG_124M, AdamW, GPTModel
from tinygpt.backend import asarray
from tinygpt.data import DataLoader, GPTDatasetV1, create_dataloader_v1
from tinygpt.tokenizer import get_tokenizer
from tinygpt.train import (
    TrainingDivergedError,
    calc_loss_batch,
    calc_loss_loader,
    clip_grad_norm,
    evaluate_model,
    learning_rate_at,
    plot_losses,
    train_model,
    train_model_simple,
)

from .helpers.assertions import host

REPO = Path(__file__).resolve().parents[1]
TINY = dict(GPT_CONFIG_124M, context_length=32, emb_dim=32, n_heads=4, n_layers=2,
            drop_rate=0.1)


def book_loaders(text, context, batch_size=2):
    split_idx = int(0.90 * len(text))
    train_loader = create_dataloader_v1(
        text[:split_idx], batch_size=batch_size, max_length=context, stride=context,
        drop_last=True, shuffle=True, num_workers=0)
    val_loader = create_dataloader_v1(
        text[split_idx:], batch_size=batch_size, max_length=context, stride=context,
        drop_last=False, shuffle=False, num_workers=0)
    return train_loader, val_loader


def quiet(*args, **kwargs):
    pass


def test_book_initial_losses_with_torch_seed_123_weights(verdict_text):
    """Book 5.1.3: 10.98758347829183 (train) and 10.98110580444336 (validation)."""
    torch = pytest.importorskip("torch")
    from .reference.torch_gpt import GPTModel as TorchGPT
    from .reference.torch_gpt import numpy_state_dict

    torch.manual_seed(123)
    ref = TorchGPT(GPT_CONFIG_124M)
    model = GPTModel(GPT_CONFIG_124M)
    model.load_state_dict(numpy_state_dict(ref))
    model.eval()
    tinygpt.manual_seed(123)
    train_loader, val_loader = book_loaders(verdict_text, 256)
    assert len(train_loader) == 9 and len(val_loader) == 1
    train_loss = calc_loss_loader(train_loader, model)
    val_loss = calc_loss_loader(val_loader, model)
    assert abs(train_loss - 10.98758347829183) < 1e-4
    assert abs(val_loss - 10.98110580444336) < 1e-4


def test_calc_loss_loader_empty_is_nan_and_num_batches_capped(verdict_text):
    model = GPTModel(TINY)
    empty = DataLoader(GPTDatasetV1("short", get_tokenizer(), max_length=32, stride=32))
    assert len(empty) == 0
    assert math.isnan(calc_loss_loader(empty, model))
    train_loader, _ = book_loaders(verdict_text, 32)
    model.eval()
    one = calc_loss_loader(train_loader, model, num_batches=1)
    capped = calc_loss_loader(train_loader, model, num_batches=10_000)
    assert np.isfinite(one) and np.isfinite(capped)
    x, y = next(iter(train_loader))
    loss = calc_loss_batch(x, y, model, None)
    assert loss.shape == () and loss.dtype == np.float32


def test_tiny_model_losses_fall_and_book_lines_print(verdict_text, capsys):
    tinygpt.manual_seed(123)
    train_loader, val_loader = book_loaders(verdict_text, 32, batch_size=8)
    model = GPTModel(TINY)
    optimizer = AdamW(model.parameters(), lr=2e-3, weight_decay=0.1)
    train_losses, val_losses, tokens = train_model_simple(
        model, train_loader, val_loader, optimizer, None, num_epochs=3, eval_freq=5,
        eval_iter=2, start_context="Every effort moves you", tokenizer=get_tokenizer())
    out = capsys.readouterr().out
    assert "Ep 1 (Step 000000): Train loss " in out and ", Val loss " in out
    assert out.count("Every effort moves you") == 3  # one sample per epoch
    assert len(train_losses) == len(val_losses) == len(tokens) > 3
    assert train_losses[-1] < train_losses[0] - 1.0
    assert val_losses[-1] < val_losses[0]
    assert tokens == sorted(tokens) and tokens[0] == 8 * 32


def test_book_loop_and_train_model_give_the_same_losses(verdict_text, capsys):
    """train_model_simple (the book's loop as printed) and train_model (the same loop
    with the long-run extras) draw the same numbers in the same order: with one seed
    they report the same losses and print the same lines."""
    results = []
    for loop in ("simple", "full"):
        tinygpt.manual_seed(3)
        train_loader, val_loader = book_loaders(verdict_text, 32)
        model = GPTModel(TINY)
        optimizer = AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
        args = dict(num_epochs=2, eval_freq=3, eval_iter=2,
                    start_context="Every effort moves you", tokenizer=get_tokenizer())
        if loop == "simple":
            losses = train_model_simple(model, train_loader, val_loader, optimizer, None,
                                        **args)
        else:
            state = train_model(model, train_loader, val_loader, optimizer, progress=False,
                                print_fn=print, **args)
            losses = (state.train_losses, state.val_losses, state.track_tokens_seen)
        results.append((losses, capsys.readouterr().out))
    (simple, printed_simple), (full, printed_full) = results
    assert len(simple[0]) > 10
    assert simple == full
    assert printed_simple == printed_full


def test_evaluate_model_restores_mode_and_is_deterministic(verdict_text):
    train_loader, val_loader = book_loaders(verdict_text, 32)
    model = GPTModel(TINY).train()
    n = len(train_loader)  # all batches, so the shuffled order does not matter
    first = evaluate_model(model, train_loader, val_loader, None, n)
    assert model.training
    assert evaluate_model(model, train_loader, val_loader, None, n) == pytest.approx(first)


def test_non_finite_loss_stops_with_a_clear_error(verdict_text):
    train_loader, val_loader = book_loaders(verdict_text, 32)
    model = GPTModel(TINY)
    model.out_head.weight.data[...] = np.inf
    before = model.tok_emb.weight.array.copy()
    # inf weights make NaN on purpose: NumPy's "invalid value" warning is expected here
    with pytest.raises(TrainingDivergedError, match="learning rate"), np.errstate(invalid="ignore"):
        train_model(model, train_loader, val_loader, AdamW(model.parameters()), num_epochs=1,
                    eval_freq=5, eval_iter=1, start_context="Every", tokenizer=get_tokenizer(),
                    progress=False, print_fn=quiet)
    np.testing.assert_array_equal(host(model.tok_emb.weight), host(before))


def test_learning_rate_schedule_warmup_and_cosine():
    lrs = [learning_rate_at(s, 1e-3, 100, warmup_steps=10, initial_lr=1e-5, cosine_decay=True,
                            min_lr=1e-4) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-5)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))
    assert lrs[10] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(1e-4, rel=0.01)
    assert learning_rate_at(50, 1e-3, 100) == 1e-3  # off by default


def test_clip_grad_norm_scales_to_max_norm():
    params = [tinygpt.nn.Parameter(np.zeros(n, np.float32)) for n in (3, 4)]
    params[0].grad = asarray(np.full(3, 3.0, np.float32))
    params[1].grad = asarray(np.full(4, 4.0, np.float32))
    norm = clip_grad_norm(params, 1.0)
    assert float(norm) == pytest.approx(math.sqrt(27 + 64))
    new = math.sqrt(sum(float((p.grad ** 2).sum()) for p in params))
    assert new == pytest.approx(1.0, rel=1e-4)
    assert params[0].grad.dtype == np.float32


def test_schedule_and_clipping_options_train(verdict_text):
    tinygpt.manual_seed(0)
    train_loader, val_loader = book_loaders(verdict_text, 32, batch_size=8)
    model = GPTModel(TINY)
    optimizer = AdamW(model.parameters(), lr=2e-3)
    state = train_model(model, train_loader, val_loader, optimizer, num_epochs=1, eval_freq=4,
                        eval_iter=1, start_context="Every", tokenizer=get_tokenizer(),
                        warmup_steps=4, cosine_decay=True, min_lr=1e-4, grad_clip=1.0,
                        progress=False, print_fn=quiet)
    assert state.finished and state.global_step == len(train_loader) - 1
    assert optimizer.lr == pytest.approx(learning_rate_at(
        state.global_step, 2e-3, len(train_loader), 4, None, True, 1e-4))


def test_plot_losses_writes_png(tmp_path):
    path = tmp_path / "loss.png"
    plot_losses(np.linspace(0, 2, 4), [10, 20, 30, 40], [9.0, 7.0, 5.0, 4.0],
                [9.5, 8.0, 7.0, 7.5], path=path, show=False)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_demo_quick_run_writes_plot_weights_and_summary(tmp_path, verdict_path):
    """The demo prints the README's lines and writes its four files; ``tinygpt train`` with
    the same settings runs the same workflow, so it prints the same lines."""
    def run(*command, out):
        result = subprocess.run(
            [sys.executable, *command, "--config", "small", "--epochs", "1",
             "--text", str(verdict_path), "--out", str(out), "--no-progress"],
            capture_output=True, text=True, timeout=300, cwd=str(REPO))
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout.splitlines()

    out = tmp_path / "run"
    lines = run("demos/train_verdict.py", out=out)
    assert re.fullmatch(r"Model: 13,270,016 parameters, context 64; text 20,479 characters; "
                        r"\d+ training and \d+ validation batches", lines[0]), lines[0]
    assert lines[1].startswith("Ep 1 (Step 000000): Train loss")
    assert lines[-4].startswith("Every effort moves you") and lines[-3] == ""
    assert re.fullmatch(r"Done in \d+\.\d s \(\d+\.\d tokens/s\)\. Final train loss "
                        r"\d+\.\d{3}, val loss \d+\.\d{3}", lines[-2]), lines[-2]
    files = ("loss-plot.png", "model.safetensors", "checkpoint.safetensors", "metrics.csv",
             "summary.json")
    assert lines[-1] == "Wrote " + ", ".join(str(out / name) for name in files)
    for name in files:
        assert (out / name).is_file(), name
    from tinygpt.io.checkpoint import load_model

    model = load_model(out / "model.safetensors")
    assert model.cfg["emb_dim"] == 128

    cli_lines = run("-m", "tinygpt", "train", out=tmp_path / "cli")
    assert cli_lines[-1].startswith("Next: tinygpt generate")
    assert cli_lines[:-3] == lines[:-2]  # all but the timing, the paths and the hint
    assert cli_lines[-3].endswith(lines[-2].split(")")[-1])  # the same final losses


def test_demo_reports_a_missing_text_clearly(tmp_path):
    result = subprocess.run(
        [sys.executable, "demos/train_verdict.py", "--text", str(tmp_path / "nope.txt"),
         "--out", str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=str(REPO))
    assert result.returncode == 2
    assert "nope.txt" in result.stderr and "Traceback" not in result.stderr
