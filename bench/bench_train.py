"""tinygpt against the book's PyTorch GPTModel: one training step and one eval forward.

    python bench/bench_train.py [--threads 2] [--rounds 3] [--steps 3]

The chapter's setting: GPT_CONFIG_124M (context 256, dropout 0.1), batch 2,
cross-entropy, backward, AdamW(lr 4e-4, weight_decay 0.1). Each engine runs in
its own fresh process (so each one's peak resident memory is its own), and the
engines alternate for ``--rounds`` rounds so that machine noise hits both alike.
Modes: train (forward, loss, backward, AdamW step), eval (no_grad forward), fwdbwd
(forward and backward only). Prints the median step time of each, their ratio,
tokens/s, achieved GFLOP/s next to a NumPy float32 matrix-product peak measured in
the same run, and the peak RSS of each process. torch is needed only for its own side.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from machine import cpu_busy_fraction  # noqa: E402
from record import store  # noqa: E402

B, T = 2, 256


def model_flops(cfg, train):
    """Matrix-product FLOPs of one step: 2 per multiply-add, x3 for forward+backward."""
    C, L, V = cfg["emb_dim"], cfg["n_layers"], cfg["vocab_size"]
    N = B * T
    linear = 2 * N * (L * 12 * C * C + C * V)  # q, k, v, out (4C^2) + MLP (8C^2); out_head
    attention = L * 2 * 2 * B * T * T * C  # q k^T and P v
    return (linear + attention) * (3 if train else 1)


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(engine, mode, steps, threads):
    """Runs in a child process: prints one JSON line with step times and peak RSS."""
    import numpy as np

    rng = np.random.default_rng(0)
    cfg = {"vocab_size": 50257, "context_length": 256, "emb_dim": 768, "n_heads": 12,
           "n_layers": 12, "drop_rate": 0.1, "qkv_bias": False}
    ids = rng.integers(0, cfg["vocab_size"], size=(B, T))
    targets = rng.integers(0, cfg["vocab_size"], size=(B, T))
    if engine == "tinygpt":
        import tinygpt

        tinygpt.runtime.keep_freed_memory_for_reuse()  # what train_model does for a long run
        tinygpt.manual_seed(0)
        model = tinygpt.GPTModel(cfg)
        opt = tinygpt.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)

        def train_step():
            opt.zero_grad()
            loss = tinygpt.cross_entropy(model(ids), targets)
            loss.backward()
            opt.step()

        def eval_step():
            with tinygpt.no_grad():
                model(ids)

        def fwdbwd_step():
            model.zero_grad()
            tinygpt.cross_entropy(model(ids), targets).backward()
        model.eval() if mode == "eval" else model.train()
    else:
        import torch

        sys.path.insert(0, str(REPO))
        from tests.reference.torch_gpt import GPTModel

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = GPTModel(cfg)
        opt = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
        x, y = torch.from_numpy(ids), torch.from_numpy(targets)

        def train_step():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
            loss.backward()
            opt.step()

        def eval_step():
            with torch.no_grad():
                model(x)

        def fwdbwd_step():
            model.zero_grad()
            torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
        model.eval() if mode == "eval" else model.train()
    step = {"train": train_step, "eval": eval_step, "fwdbwd": fwdbwd_step}[mode]
    step()  # warm-up: allocations, first-touch page faults, thread pools
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    print(json.dumps({"times": times, "peak_rss_mib": peak_rss_mib()}))


def numpy_peak_gflops(threads):
    code = (
        "import numpy as np, time\n"
        "a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)\n"
        "b = a.copy(); a @ b\n"
        "best = min((lambda t: (a @ b, time.perf_counter() - t)[1])(time.perf_counter())"
        " for _ in range(5))\n"
        "print(2 * 2048**3 / best / 1e9)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=child_env(threads),
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def child_env(threads, root=REPO):
    """The environment of a worker: ``threads`` BLAS threads, tinygpt from ``root``."""
    env = dict(os.environ)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_worker(engine, steps, threads, *extra, script=__file__):
    """Run ``script --worker engine`` in a fresh process; its last line is JSON."""
    out = subprocess.run(
        [sys.executable, script, "--worker", engine, "--steps", str(steps),
         "--threads", str(threads), *extra],
        env=child_env(threads), capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{engine} {' '.join(extra)} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per engine")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round")
    parser.add_argument("--modes", default="train,eval",
                        help="comma list of train (fwd+bwd+AdamW), eval (no_grad forward), "
                             "fwdbwd (forward+backward, no optimizer)")
    parser.add_argument("--result", default="bench_train",
                        help="name of the JSON stored in bench/results/ (default bench_train)")
    parser.add_argument("--worker", choices=["tinygpt", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="train", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.mode, args.steps, args.threads)
        return

    cfg = {"vocab_size": 50257, "emb_dim": 768, "n_layers": 12}
    busy = cpu_busy_fraction()
    peak = numpy_peak_gflops(args.threads)
    figures = {"threads": args.threads, "rounds": args.rounds, "steps": args.steps,
               "batch": B, "context": T, "numpy_matmul_peak_gflops": round(peak, 1)}
    print(f"threads {args.threads}; NumPy float32 matmul peak {peak:.0f} GFLOP/s; "
          f"GPT_CONFIG_124M, batch {B}, context {T}; {args.rounds} rounds x {args.steps} steps")
    print(f"{'':24}{'tinygpt':>12}{'torch':>12}{'ratio':>8}")
    for mode in args.modes.split(","):
        results = {"tinygpt": [], "torch": []}
        rss = {"tinygpt": 0.0, "torch": 0.0}
        for _ in range(args.rounds):
            for engine in ("tinygpt", "torch"):
                r = run_worker(engine, args.steps, args.threads, "--mode", mode)
                results[engine] += r["times"]
                rss[engine] = max(rss[engine], r["peak_rss_mib"])
        med = {k: statistics.median(v) for k, v in results.items()}
        flops = model_flops(cfg, train=(mode != "eval"))
        label = {"train": "train step", "eval": "eval forward", "fwdbwd": "forward+backward"}[mode]
        ratio = med["tinygpt"] / med["torch"]
        print(f"{label + ' median s':24}{med['tinygpt']:12.3f}{med['torch']:12.3f}{ratio:8.2f}")
        print(f"{'  tokens/s':24}{B * T / med['tinygpt']:12.0f}{B * T / med['torch']:12.0f}")
        gf = {k: flops / v / 1e9 for k, v in med.items()}
        print(f"{'  GFLOP/s (% of peak)':24}{gf['tinygpt']:7.0f} ({gf['tinygpt'] / peak:3.0%})"
              f"{gf['torch']:7.0f} ({gf['torch'] / peak:3.0%})")
        print(f"{'  peak RSS MiB':24}{rss['tinygpt']:12.0f}{rss['torch']:12.0f}"
              f"{rss['tinygpt'] / rss['torch']:8.2f}")
        print(f"{'  all times':24}{' '.join(f'{t:.2f}' for t in results['tinygpt'])} | "
              f"{' '.join(f'{t:.2f}' for t in results['torch'])}")
        figures[mode] = {
            "tinygpt_median_s": round(med["tinygpt"], 4), "torch_median_s": round(med["torch"], 4),
            "ratio": round(ratio, 3),
            "tinygpt_gflops": round(gf["tinygpt"], 1), "torch_gflops": round(gf["torch"], 1),
            "tinygpt_peak_rss_mib": round(rss["tinygpt"]),
            "torch_peak_rss_mib": round(rss["torch"]),
            "peak_rss_ratio": round(rss["tinygpt"] / rss["torch"], 3),
            "tinygpt_times_s": [round(t, 4) for t in results["tinygpt"]],
            "torch_times_s": [round(t, 4) for t in results["torch"]],
        }
    store(args.result, figures, busy=busy)


if __name__ == "__main__":
    main()
