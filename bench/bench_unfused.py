"""The book's steps (``tinygpt.use_fused(False)``) against the fused ops: one training step.

    python bench/bench_unfused.py [--threads 2] [--rounds 3] [--steps 3] [--config 124M]
                                  [--arms fused,book] [--base PATH]

Arms: ``fused`` (GPTModel, the default fast path), ``book`` (the same model running the
book's attention, layer norm and GELU steps on Tensors), ``torch`` (the book's PyTorch
model, ``tests/reference/torch_gpt.py``) and ``base`` (the fused GPTModel of another
checkout at ``--base``, e.g. a worktree of the commit before a change). All train the
chapter's setting: the config's shape, batch 2, context 256, dropout 0.1, cross-entropy,
backward, AdamW(lr 4e-4, weight_decay 0.1). Each arm runs in its own fresh process and
the arms take turns for ``--rounds`` rounds, the order reversed every other round. The
table shows each one's median step time, the ratio of those medians to the first arm's,
and the median of the paired ratios: each step against the first arm's step of the same
round and place, so a slow moment of a shared machine weighs on both sides of a ratio.
``--config small`` (2 layers, emb_dim 128) is quick.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
B, T = 2, 256
CONFIGS = {
    "124M": {"vocab_size": 50257, "context_length": T, "emb_dim": 768, "n_heads": 12,
             "n_layers": 12, "drop_rate": 0.1, "qkv_bias": False},
    "small": {"vocab_size": 50257, "context_length": T, "emb_dim": 128, "n_heads": 4,
              "n_layers": 2, "drop_rate": 0.1, "qkv_bias": False},
}
ARMS = ("fused", "book", "torch", "base")


def worker(arm, config, steps, threads):
    """Runs in a child process (its tinygpt is the one on PYTHONPATH): one warm-up step,
    then ``steps`` timed steps; prints their times as JSON."""
    import numpy as np

    cfg = CONFIGS[config]
    rng = np.random.default_rng(0)
    ids = rng.integers(0, cfg["vocab_size"], size=(B, T))
    targets = rng.integers(0, cfg["vocab_size"], size=(B, T))
    if arm == "torch":
        import torch

        sys.path.insert(0, str(REPO))
        from tests.reference.torch_gpt import GPTModel

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = GPTModel(cfg).train()
        opt = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
        x, y = torch.from_numpy(ids), torch.from_numpy(targets)
        functional, synchronize = torch.nn.functional, lambda: None
    else:
        import tinygpt

        if arm == "book":
            tinygpt.use_fused(False)
        tinygpt.runtime.keep_freed_memory_for_reuse()  # as train_model does
        tinygpt.manual_seed(0)
        model = tinygpt.GPTModel(cfg).train()
        opt = tinygpt.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
        x, y = tinygpt.tensor(ids), tinygpt.tensor(targets)
        functional, synchronize = tinygpt.nn.functional, tinygpt.backend.synchronize

    def step():
        opt.zero_grad()
        logits = model(x)
        loss = functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        loss.backward()
        opt.step()
        synchronize()

    step()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    print(json.dumps({"times": times}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="124M")
    parser.add_argument("--arms", default="fused,book",
                        help=f"comma list of {', '.join(ARMS)}; ratios are to the first")
    parser.add_argument("--base", type=Path, help="the checkout the base arm imports tinygpt from")
    parser.add_argument("--result", default="bench_unfused",
                        help="name of the JSON stored in bench/results/ (default bench_unfused)")
    parser.add_argument("--worker", choices=ARMS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.config, args.steps, args.threads)
        return
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if not arms or any(a not in ARMS for a in arms):
        parser.error(f"--arms takes a comma list of {', '.join(ARMS)}, got {args.arms!r}")
    if "base" in arms and (args.base is None or not (args.base / "tinygpt").is_dir()):
        parser.error("the base arm needs --base PATH, a checkout holding tinygpt/")
    sys.path.insert(0, str(REPO / "bench"))
    from bench_train import child_env  # bench/bench_train.py
    from machine import cpu_busy_fraction  # bench/machine.py
    from record import store  # bench/record.py

    busy = cpu_busy_fraction()
    times = {arm: [] for arm in arms}
    for i in range(args.rounds):
        for arm in (arms if i % 2 == 0 else arms[::-1]):
            root = args.base if arm == "base" else REPO
            env = child_env(args.threads, root)
            env.pop("TINYGPT_FUSED", None)  # each arm sets its own path
            out = subprocess.run(
                [sys.executable, __file__, "--worker", arm, "--config", args.config,
                 "--steps", str(args.steps), "--threads", str(args.threads)],
                env=env, capture_output=True, text=True, cwd=root)
            if out.returncode != 0:
                raise SystemExit(f"{arm} worker failed:\n{out.stderr[-3000:]}")
            times[arm] += json.loads(out.stdout.strip().splitlines()[-1])["times"]
    med = {arm: statistics.median(v) for arm, v in times.items()}
    paired = {arm: statistics.median(t / t0 for t, t0 in zip(times[arm], times[arms[0]]))
              for arm in arms}
    backend = os.environ.get("TINYGPT_BACKEND", "numpy")
    print(f"config {args.config}, batch {B}, context {T}, backend {backend}, "
          f"{args.threads} threads; {args.rounds} rounds x {args.steps} steps")
    print(f"{'arm':8}{'median s':>10}{f'/ {arms[0]}':>12}{'paired':>9}   all times")
    for arm in arms:
        print(f"{arm:8}{med[arm]:10.3f}{med[arm] / med[arms[0]]:12.3f}{paired[arm]:9.3f}   "
              + " ".join(f"{t:.2f}" for t in times[arm]))
    store(args.result, {
        "config": args.config, "batch": B, "context": T, "backend": backend,
        "threads": args.threads, "rounds": args.rounds, "steps": args.steps,
        "base": str(args.base) if "base" in arms else None,
        "arms": {arm: {"median_s": round(med[arm], 4),
                       f"vs_{arms[0]}": round(med[arm] / med[arms[0]], 3),
                       f"paired_vs_{arms[0]}": round(paired[arm], 3),
                       "times_s": [round(t, 4) for t in times[arm]]} for arm in arms},
    }, busy=busy)


if __name__ == "__main__":
    main()
