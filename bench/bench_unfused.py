"""A learner's GPT typed against torch's names (unfused) against tinygpt's fused GPTModel.

    python bench/bench_unfused.py [--threads 2] [--rounds 3] [--steps 3] [--config 124M]

The typed model (tests/book_style.py) builds attention, layer norm and GELU from the
autograd's primitives, as the book writes them with PyTorch; GPTModel runs the same maths
as fused ops (one op per layer, forward and backward written by hand). Both train the
chapter's setting: the config's shape, batch 2, context 256, dropout 0.1, cross-entropy,
backward, AdamW(lr 4e-4, weight_decay 0.1). Each model runs in its own fresh process and
the two alternate for ``--rounds`` rounds; the table shows the median step time of each
and their ratio, in one run. ``--config small`` (2 layers, emb_dim 128) is quick.
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


def worker(model_kind, config, steps):
    """Runs in a child process: one warm-up step, then ``steps`` timed steps."""
    import numpy as np

    sys.path.insert(0, str(REPO))
    import tinygpt
    from tests.book_style import TypedGPT

    tinygpt.keep_freed_memory_for_reuse()  # as train_model does
    cfg = CONFIGS[config]
    rng = np.random.default_rng(0)
    ids = tinygpt.tensor(rng.integers(0, cfg["vocab_size"], size=(B, T)))
    targets = tinygpt.tensor(rng.integers(0, cfg["vocab_size"], size=(B, T)))
    tinygpt.manual_seed(0)
    model = (tinygpt.GPTModel if model_kind == "fused" else TypedGPT)(cfg).train()
    opt = tinygpt.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)

    def step():
        opt.zero_grad()
        logits = model(ids)
        loss = tinygpt.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        loss.backward()
        opt.step()
        tinygpt.backend.synchronize()

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
    parser.add_argument("--worker", choices=["fused", "unfused"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.config, args.steps)
        return
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(args.threads)
    times = {"fused": [], "unfused": []}
    for _ in range(args.rounds):
        for kind in times:
            out = subprocess.run(
                [sys.executable, __file__, "--worker", kind, "--config", args.config,
                 "--steps", str(args.steps)], env=env, capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"{kind} worker failed:\n{out.stderr[-3000:]}")
            times[kind] += json.loads(out.stdout.strip().splitlines()[-1])["times"]
    med = {k: statistics.median(v) for k, v in times.items()}
    backend = os.environ.get("TINYGPT_BACKEND", "numpy")
    print(f"config {args.config}, batch {B}, context {T}, backend {backend}, "
          f"{args.threads} threads; {args.rounds} rounds x {args.steps} steps")
    print(f"{'':34}{'median s':>10}")
    print(f"{'fused GPTModel (tinygpt ops)':34}{med['fused']:10.3f}")
    print(f"{'typed model (torch-style code)':34}{med['unfused']:10.3f}")
    print(f"ratio unfused / fused: {med['unfused'] / med['fused']:.2f}")
    for kind, values in times.items():
        print(f"  {kind:8} all times: {' '.join(f'{t:.2f}' for t in values)}")


if __name__ == "__main__":
    main()
