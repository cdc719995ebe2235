"""The whole chapter run, tinygpt against the book's PyTorch loop, on this machine.

    python bench/bench_chapter.py [--text the-verdict.txt] [--epochs 10] [--threads 2]

Both sides do the chapter's 5.2 run: GPT_CONFIG_124M (context 256), seed 123,
AdamW(lr 0.0004, weight_decay 0.1), batch 2, eval_freq 5, eval_iter 5, a sample
after every epoch. tinygpt runs its own ``train_model_simple``; PyTorch runs the
book's listings (chapter 2's dataset and DataLoader, listing 5.3's loop, the
chapter-4 model from tests/reference). Each side runs in its own process, one
after the other; the wall time of each (model construction included, imports
excluded) and its final losses are printed. The two sides draw different random
numbers (init, dropout, shuffling), so their losses agree only roughly.

``run_tinygpt`` and ``run_torch`` also serve bench/bench_gpu.py, which passes a
smaller ``cfg`` for its CPU smoke run and ``device="cuda"`` for torch on a GPU
(tinygpt's device is chosen by ``TINYGPT_BACKEND``).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CFG = {"vocab_size": 50257, "context_length": 256, "emb_dim": 768, "n_heads": 12,
       "n_layers": 12, "drop_rate": 0.1, "qkv_bias": False}


def run_tinygpt(text, epochs, seed=123, cfg=CFG):
    """The chapter run in tinygpt: (wall seconds, final train loss, final val loss)."""
    import tinygpt
    from tinygpt.data import create_dataloader_v1
    from tinygpt.tokenizer import get_tokenizer
    from tinygpt.train import train_model_simple

    tinygpt.runtime.keep_freed_memory_for_reuse()  # as the CLI and the demo do (train_model)
    started = time.perf_counter()
    tokenizer = get_tokenizer()
    split_idx = int(0.90 * len(text))
    tinygpt.manual_seed(seed)
    T = cfg["context_length"]
    train_loader = create_dataloader_v1(text[:split_idx], batch_size=2, max_length=T,
                                        stride=T, drop_last=True, shuffle=True)
    val_loader = create_dataloader_v1(text[split_idx:], batch_size=2, max_length=T,
                                      stride=T, drop_last=False, shuffle=False)
    model = tinygpt.GPTModel(cfg)
    optimizer = tinygpt.AdamW(model.parameters(), lr=0.0004, weight_decay=0.1)
    train_losses, val_losses, _ = train_model_simple(
        model, train_loader, val_loader, optimizer, None, num_epochs=epochs, eval_freq=5,
        eval_iter=5, start_context="Every effort moves you", tokenizer=tokenizer)
    tinygpt.backend.synchronize()  # a no-op on NumPy
    return time.perf_counter() - started, train_losses[-1], val_losses[-1]


def run_torch(text, epochs, threads, seed=123, device="cpu", cfg=CFG):
    """The book's chapter run in PyTorch on ``device`` ("cpu" or "cuda"): the model and
    each batch are moved there with ``.to(device)``, as in the book's listings.
    Returns (wall seconds, final train loss, final val loss)."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    sys.path.insert(0, str(REPO))
    from tests.reference.torch_gpt import GPTModel, generate_text_simple
    from tinygpt.tokenizer import get_tokenizer

    torch.set_num_threads(threads)

    class GPTDatasetV1(Dataset):  # the book's chapter 2
        def __init__(self, txt, tokenizer, max_length, stride):
            self.input_ids, self.target_ids = [], []
            token_ids = tokenizer.encode(txt, allowed_special={"<|endoftext|>"})
            for i in range(0, len(token_ids) - max_length, stride):
                self.input_ids.append(torch.tensor(token_ids[i:i + max_length]))
                self.target_ids.append(torch.tensor(token_ids[i + 1:i + max_length + 1]))

        def __len__(self):
            return len(self.input_ids)

        def __getitem__(self, idx):
            return self.input_ids[idx], self.target_ids[idx]

    def create_dataloader_v1(txt, batch_size, max_length, stride, shuffle, drop_last):
        dataset = GPTDatasetV1(txt, tokenizer, max_length, stride)
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                          num_workers=0)

    def calc_loss_batch(input_batch, target_batch, model):
        input_batch, target_batch = input_batch.to(device), target_batch.to(device)
        logits = model(input_batch)
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), target_batch.flatten())

    def calc_loss_loader(data_loader, model, num_batches):
        if len(data_loader) == 0:
            return float("nan")
        num_batches = min(num_batches, len(data_loader))
        total = 0.0
        for i, (x, y) in enumerate(data_loader):
            if i >= num_batches:
                break
            total += calc_loss_batch(x, y, model).item()
        return total / num_batches

    def evaluate_model(model, train_loader, val_loader, eval_iter):
        model.eval()
        with torch.no_grad():
            train_loss = calc_loss_loader(train_loader, model, eval_iter)
            val_loss = calc_loss_loader(val_loader, model, eval_iter)
        model.train()
        return train_loss, val_loss

    def generate_and_print_sample(model, start_context):
        model.eval()
        encoded = torch.tensor(tokenizer.encode(start_context)).unsqueeze(0).to(device)
        with torch.no_grad():
            token_ids = generate_text_simple(model, encoded, 50, cfg["context_length"])
        print(tokenizer.decode(token_ids.squeeze(0).tolist()).replace("\n", " "))
        model.train()

    started = time.perf_counter()
    tokenizer = get_tokenizer()
    split_idx = int(0.90 * len(text))
    torch.manual_seed(seed)
    T = cfg["context_length"]
    train_loader = create_dataloader_v1(text[:split_idx], 2, T, T, True, True)
    val_loader = create_dataloader_v1(text[split_idx:], 2, T, T, False, False)
    torch.manual_seed(seed)
    model = GPTModel(cfg).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0004, weight_decay=0.1)
    train_losses, val_losses = [], []
    global_step = -1
    for epoch in range(epochs):
        model.train()
        for input_batch, target_batch in train_loader:
            optimizer.zero_grad()
            loss = calc_loss_batch(input_batch, target_batch, model)
            loss.backward()
            optimizer.step()
            global_step += 1
            if global_step % 5 == 0:
                tr, va = evaluate_model(model, train_loader, val_loader, 5)
                train_losses.append(tr)
                val_losses.append(va)
                print(f"Ep {epoch + 1} (Step {global_step:06d}): "
                      f"Train loss {tr:.3f}, Val loss {va:.3f}")
        generate_and_print_sample(model, "Every effort moves you")
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - started, train_losses[-1], val_losses[-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--text", type=Path, help="the-verdict.txt (default: tinygpt's lookup)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--engines", default="tinygpt,torch")
    parser.add_argument("--seed", type=int, default=123, help="both sides' seed (the book's: 123)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.text is None:
        from tinygpt.io.textsource import find_verdict

        args.text = find_verdict()
    text = Path(args.text).read_text(encoding="utf-8")
    if args.worker:
        if args.worker == "tinygpt":
            seconds, tr, va = run_tinygpt(text, args.epochs, args.seed)
        else:
            seconds, tr, va = run_torch(text, args.epochs, args.threads, args.seed)
        print(json.dumps({"seconds": seconds, "train": tr, "val": va}))
        return

    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads),
               OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    results = {}
    for engine in args.engines.split(","):
        print(f"--- {engine} ---", flush=True)
        # the torch side borrows tinygpt's tokenizer only: leave its malloc untuned
        worker_env = dict(env, TINYGPT_MALLOC_TUNING="0") if engine == "torch" else env
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", engine, "--text", str(args.text),
             "--epochs", str(args.epochs), "--threads", str(args.threads),
             "--seed", str(args.seed)],
            env=worker_env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{engine} failed:\n{proc.stderr[-3000:]}")
        lines = proc.stdout.strip().splitlines()
        print("\n".join(lines[-4:-1]))
        results[engine] = json.loads(lines[-1])
    print(f"\n{'engine':10}{'wall s':>10}{'train':>8}{'val':>8}")
    for engine, r in results.items():
        print(f"{engine:10}{r['seconds']:10.1f}{r['train']:8.3f}{r['val']:8.3f}")
    figures = {"epochs": args.epochs, "threads": args.threads, "seed": args.seed,
               "engines": {e: {"wall_s": round(r["seconds"], 1), "final_train_loss": r["train"],
                               "final_val_loss": r["val"]} for e, r in results.items()}}
    if len(results) == 2:
        ratio = results["tinygpt"]["seconds"] / results["torch"]["seconds"]
        figures["wall_time_ratio"] = round(ratio, 3)
        print(f"ratio tinygpt/torch wall time: {ratio:.2f}")
    sys.path.insert(0, str(REPO / "bench"))
    from record import store  # bench/record.py

    store("bench_chapter", figures)


if __name__ == "__main__":
    main()
