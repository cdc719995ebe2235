"""tinygpt against the book's PyTorch GPTModel: one chapter-6 classification-finetuning step.

    python bench/bench_finetune.py [--threads 2] [--rounds 3] [--steps 3]

Chapter 6's setting on GPT-2 124M (context 1024, qkv_bias, no dropout): every parameter
frozen (requires_grad False), then the last transformer block and the final norm made
trainable again and the output head replaced by a new Linear(768, 2); batch 8 of 120
tokens, cross-entropy of the last token's logits, backward, AdamW(lr 5e-5, weight_decay
0.1) over model.parameters(). A frozen layer should cost no gradient work, so the step
is mostly the forward pass. Each engine runs in its own fresh process, the engines
alternate for ``--rounds`` rounds, and the median step times and their same-run ratio
are printed and stored in bench/results/bench_finetune.json.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from bench_train import peak_rss_mib, run_worker  # noqa: E402
from machine import cpu_busy_fraction  # noqa: E402
from record import store  # noqa: E402

B, T, NUM_CLASSES = 8, 120, 2
CONFIG = {"vocab_size": 50257, "context_length": 1024, "emb_dim": 768, "n_heads": 12,
          "n_layers": 12, "drop_rate": 0.0, "qkv_bias": True}


def prepare_for_classification(model, nn):
    """Chapter 6's steps, on either engine: freeze, new head, unfreeze the last block."""
    for param in model.parameters():
        param.requires_grad = False
    model.out_head = nn.Linear(CONFIG["emb_dim"], NUM_CLASSES)
    for param in model.trf_blocks[-1].parameters():
        param.requires_grad = True
    for param in model.final_norm.parameters():
        param.requires_grad = True
    return model


def worker(engine, steps, threads):
    """Runs in a child process: prints one JSON line with step times and peak RSS."""
    import numpy as np

    rng = np.random.default_rng(0)
    ids = rng.integers(0, CONFIG["vocab_size"], size=(B, T))
    labels = rng.integers(0, NUM_CLASSES, size=(B,))
    if engine == "tinygpt":
        import tinygpt as torch
        from tinygpt import GPTModel

        torch.runtime.keep_freed_memory_for_reuse()
    else:
        import torch

        from tests.reference.torch_gpt import GPTModel

        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = prepare_for_classification(GPTModel(CONFIG), torch.nn)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.1)
    input_batch, target_batch = torch.tensor(ids), torch.tensor(labels)

    def step():
        optimizer.zero_grad()
        logits = model(input_batch)[:, -1, :]  # the last token's logits
        loss = torch.nn.functional.cross_entropy(logits, target_batch)
        loss.backward()
        optimizer.step()

    step()  # warm-up: allocations, first-touch page faults, thread pools
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    print(json.dumps({"times": times, "peak_rss_mib": peak_rss_mib()}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per engine")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round")
    parser.add_argument("--result", default="bench_finetune",
                        help="name of the JSON stored in bench/results/")
    parser.add_argument("--worker", choices=["tinygpt", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.threads)
        return

    busy = cpu_busy_fraction()
    print(f"threads {args.threads}; GPT-2 124M, last block + final norm + 2-class head "
          f"trainable; batch {B}, {T} tokens; {args.rounds} rounds x {args.steps} steps")
    results = {"tinygpt": [], "torch": []}
    rss = {"tinygpt": 0.0, "torch": 0.0}
    for _ in range(args.rounds):
        for engine in ("tinygpt", "torch"):
            r = run_worker(engine, args.steps, args.threads, script=__file__)
            results[engine] += r["times"]
            rss[engine] = max(rss[engine], r["peak_rss_mib"])
    med = {k: statistics.median(v) for k, v in results.items()}
    ratio = med["tinygpt"] / med["torch"]
    print(f"{'':24}{'tinygpt':>12}{'torch':>12}{'ratio':>8}")
    print(f"{'finetune step median s':24}{med['tinygpt']:12.3f}{med['torch']:12.3f}{ratio:8.2f}")
    print(f"{'  peak RSS MiB':24}{rss['tinygpt']:12.0f}{rss['torch']:12.0f}")
    print(f"{'  all times':24}{' '.join(f'{t:.3f}' for t in results['tinygpt'])} | "
          f"{' '.join(f'{t:.3f}' for t in results['torch'])}")
    store(args.result, {
        "threads": args.threads, "rounds": args.rounds, "steps": args.steps, "batch": B,
        "tokens": T, "tinygpt_median_s": round(med["tinygpt"], 4),
        "torch_median_s": round(med["torch"], 4), "ratio": round(ratio, 3),
        "tinygpt_peak_rss_mib": round(rss["tinygpt"]), "torch_peak_rss_mib": round(rss["torch"]),
        "tinygpt_times_s": [round(t, 4) for t in results["tinygpt"]],
        "torch_times_s": [round(t, 4) for t in results["torch"]],
    }, busy=busy)


if __name__ == "__main__":
    main()
