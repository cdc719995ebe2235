"""KV-cache decoding of this checkout against another one: a before/after A/B.

    python bench/bench_decode.py --base PATH [--tokens 100] [--rounds 3] [--threads 1]

GPT-2 small's shape (GPT_CONFIG_124M with context 1024 and qkv_bias), random weights
seeded alike, a 4-token prompt, batch 1: greedy decoding of ``--tokens`` new tokens with
the KV cache, then the same number sampled (temperature 1, top-k 50). Each checkout runs
in its own fresh process and the two alternate for ``--rounds`` rounds; the table shows
the median tokens/s of each and their ratio, and whether the greedy tokens are the same.
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


def worker(tokens):
    """Runs in a child process whose PYTHONPATH picks the checkout; prints one JSON line."""
    import numpy as np

    import tinygpt
    from tinygpt.model import GPT_CONFIG_124M, GPTModel

    try:  # the cached decoder's public name in the checkout at hand
        from tinygpt.generation import generate_fast as decode
    except ImportError:
        from tinygpt.generate import generate as decode

    tinygpt.manual_seed(0)
    cfg = dict(GPT_CONFIG_124M, context_length=1024, qkv_bias=True)
    model = GPTModel(cfg).eval()
    prompt = np.random.default_rng(0).integers(0, cfg["vocab_size"], size=(1, 4))
    decode(model, prompt, 2, 1024)  # warm-up: first touch of weights and buffers
    start = time.perf_counter()
    greedy = decode(model, prompt, tokens, 1024)
    greedy_s = time.perf_counter() - start
    start = time.perf_counter()
    decode(model, prompt, tokens, 1024, temperature=1.0, top_k=50)
    sampled_s = time.perf_counter() - start
    print(json.dumps({"greedy": tokens / greedy_s, "sampled": tokens / sampled_s,
                      "tokens": np.asarray(greedy)[0].tolist()}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, required=False,
                        help="the other checkout (a folder holding tinygpt/)")
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--result", default="bench_decode",
                        help="name of the JSON stored in bench/results/ (default bench_decode)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.tokens)
        return
    if args.base is None or not (args.base / "tinygpt").is_dir():
        parser.error("--base PATH must be a checkout holding tinygpt/")
    sys.path.insert(0, str(REPO / "bench"))
    from machine import cpu_busy_fraction  # bench/machine.py
    from record import store  # bench/record.py

    busy = cpu_busy_fraction()
    arms = {"this": REPO, "base": args.base.resolve()}
    runs = {arm: [] for arm in arms}
    for _ in range(args.rounds):
        for arm, root in arms.items():
            env = dict(os.environ, PYTHONPATH=str(root))
            for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                env[name] = str(args.threads)
            out = subprocess.run([sys.executable, __file__, "--worker", "--tokens",
                                  str(args.tokens)], env=env, capture_output=True, text=True,
                                 cwd=root)
            if out.returncode != 0:
                raise SystemExit(f"{arm} worker failed:\n{out.stderr[-3000:]}")
            runs[arm].append(json.loads(out.stdout.strip().splitlines()[-1]))
    figures = {"tokens": args.tokens, "rounds": args.rounds, "threads": args.threads,
               "base": str(arms["base"])}
    print(f"GPT-2 small's shape, {args.tokens} new tokens, {args.threads} thread(s), "
          f"{args.rounds} rounds")
    print(f"{'':10}{'this tok/s':>12}{'base tok/s':>12}{'this/base':>11}")
    for kind in ("greedy", "sampled"):
        med = {arm: statistics.median(r[kind] for r in runs[arm]) for arm in arms}
        ratio = med["this"] / med["base"]
        print(f"{kind:10}{med['this']:12.2f}{med['base']:12.2f}{ratio:11.3f}")
        figures[kind] = {"this_tokens_per_s": round(med["this"], 2),
                         "base_tokens_per_s": round(med["base"], 2), "ratio": round(ratio, 3),
                         "this_all": [round(r[kind], 2) for r in runs["this"]],
                         "base_all": [round(r[kind], 2) for r in runs["base"]]}
    same = all(r["tokens"] == runs["base"][0]["tokens"] for arm in arms for r in runs[arm])
    print(f"greedy tokens identical in every run: {same}")
    figures["greedy_tokens_identical"] = same
    store(args.result, figures, busy=busy)


if __name__ == "__main__":
    main()
