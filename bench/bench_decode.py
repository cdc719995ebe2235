"""KV-cache decoding of this checkout against another one: a before/after A/B.

    python bench/bench_decode.py --base PATH [--tokens 20] [--rounds 30] [--threads 1]

GPT-2 small's shape (GPT_CONFIG_124M with context 1024 and qkv_bias), random weights
seeded alike, a 4-token prompt, batch 1: greedy decoding of ``--tokens`` new tokens with
the KV cache, then the same number sampled (temperature 1, top-k 50). Each checkout runs
in its own process; the two take turns, one short round each, the order flipping every
round, so both see the same moments of a shared machine. Both run on the same core (the
cores of a shared machine differ in load), and both are replaced by fresh ones, started
in turn first, every ``--restart-every`` rounds: how fast a process streams the weights
also depends on the memory it was given, which is luck, not code. The
table shows the median tokens/s of each and the median of the per-round ratios
(this/base, tokens/s), and whether the greedy tokens are the same.
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


def worker():
    """Runs in a child process whose PYTHONPATH picks the checkout: reads "greedy N" or
    "sampled N" lines, decodes N tokens and prints one JSON line per request."""
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
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        kind, tokens = line.split()
        options = {"temperature": 1.0, "top_k": 50} if kind == "sampled" else {}
        start = time.perf_counter()
        out = decode(model, prompt, int(tokens), 1024, **options)
        seconds = time.perf_counter() - start
        print(json.dumps({"seconds": seconds, "tokens": np.asarray(out)[0].tolist()}),
              flush=True)


class Worker:
    """One checkout's worker process."""

    def __init__(self, root, threads):
        from bench_train import child_env  # bench/ is this script's folder

        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker"], env=child_env(threads, root), cwd=root,
            text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        if hasattr(os, "sched_setaffinity"):  # both on one core: the cores differ in load
            os.sched_setaffinity(self.process.pid, {max(os.sched_getaffinity(0))})
        self.ask(None)

    def ask(self, request):
        if request is not None:
            self.process.stdin.write(request + "\n")
            self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"a worker stopped (exit code {self.process.wait()})")
        return json.loads(line)

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, required=False,
                        help="the other checkout (a folder holding tinygpt/)")
    parser.add_argument("--tokens", type=int, default=20, help="new tokens per round")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--restart-every", type=int, default=5,
                        help="fresh worker processes every this many rounds (default 5)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--result", default="bench_decode",
                        help="name of the JSON stored in bench/results/ (default bench_decode)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker()
        return
    if args.base is None or not (args.base / "tinygpt").is_dir():
        parser.error("--base PATH must be a checkout holding tinygpt/")
    sys.path.insert(0, str(REPO / "bench"))
    from machine import cpu_busy_fraction  # bench/machine.py
    from record import store  # bench/record.py

    busy = cpu_busy_fraction()
    roots = {"this": REPO, "base": args.base.resolve()}
    kinds = ("greedy", "sampled")
    seconds = {(arm, kind): [] for arm in roots for kind in kinds}
    tokens, workers = {}, {}
    for i in range(args.rounds):
        if i % args.restart_every == 0:
            for w in workers.values():
                w.close()
            order = list(roots) if i % (2 * args.restart_every) == 0 else list(roots)[::-1]
            workers = {arm: Worker(roots[arm], args.threads) for arm in order}
        for kind in kinds:
            for arm in (("this", "base") if i % 2 == 0 else ("base", "this")):
                answer = workers[arm].ask(f"{kind} {args.tokens}")
                seconds[arm, kind].append(answer["seconds"])
                if kind == "greedy":
                    tokens.setdefault(arm, set()).add(tuple(answer["tokens"]))
    for w in workers.values():
        w.close()
    figures = {"tokens": args.tokens, "rounds": args.rounds, "threads": args.threads,
               "restart_every": args.restart_every, "base": str(roots["base"])}
    print(f"GPT-2 small's shape, {args.rounds} rounds of {args.tokens} new tokens, "
          f"{args.threads} thread(s)")
    print(f"{'':10}{'this tok/s':>12}{'base tok/s':>12}{'this/base':>11}")
    for kind in kinds:
        rate = {arm: [args.tokens / s for s in seconds[arm, kind]] for arm in roots}
        med = {arm: statistics.median(rate[arm]) for arm in roots}
        ratio = statistics.median(t / b for t, b in zip(rate["this"], rate["base"]))
        print(f"{kind:10}{med['this']:12.2f}{med['base']:12.2f}{ratio:11.3f}")
        figures[kind] = {"this_tokens_per_s": round(med["this"], 2),
                         "base_tokens_per_s": round(med["base"], 2), "ratio": round(ratio, 3),
                         "this_all": [round(r, 2) for r in rate["this"]],
                         "base_all": [round(r, 2) for r in rate["base"]]}
    same = len(tokens["this"] | tokens["base"]) == 1
    print(f"greedy tokens identical in every round: {same}")
    figures["greedy_tokens_identical"] = same
    store(args.result, figures, busy=busy)


if __name__ == "__main__":
    main()
