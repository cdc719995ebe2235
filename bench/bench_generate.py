"""Generation speed: tinygpt with the KV cache, without it, and the book's torch loop.

GPT_CONFIG_124M with context_length 1024 and qkv_bias (GPT-2 small's shape; random
weights, the speed does not depend on them), greedy decoding of 200 new tokens from a
4-token prompt, batch 1. The three runs use the same weights (the torch model's
seed-123 init, loaded into tinygpt) and the same thread count, so the greedy tokens are
also compared.

    python3 bench/bench_generate.py [--threads N] [--tokens 200] [--nocache-tokens N]

--nocache-tokens shortens the two uncached runs (they rerun the whole sequence every
step, so they are slow); their tokens/s is then measured on shorter sequences, which
flatters them, and the table says so.
"""

import argparse
import os
import sys
import time

# Thread counts must be fixed before NumPy (OpenBLAS) and torch are imported.
_parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
_parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                     help="threads for OpenBLAS and torch (default: all cores)")
_parser.add_argument("--tokens", type=int, default=200, help="new tokens (default 200)")
_parser.add_argument("--nocache-tokens", type=int, default=None,
                     help="new tokens for the two uncached runs (default: --tokens)")
_parser.add_argument("--prompt-length", type=int, default=4)
_parser.add_argument("--result", default="bench_generate",
                     help="name of the JSON stored in bench/results/ (default bench_generate)")
ARGS = _parser.parse_args()
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from machine import cpu_busy_fraction  # noqa: E402  (bench/machine.py)
from record import store  # noqa: E402  (bench/record.py)

from tests.reference.torch_gpt import GPTModel as TorchGPT  # noqa: E402
from tests.reference.torch_gpt import generate_text_simple as torch_generate  # noqa: E402
from tests.reference.torch_gpt import numpy_state_dict  # noqa: E402
from tinygpt.generation import generate_fast as generate  # noqa: E402
from tinygpt.model import GPT_CONFIG_124M, GPTModel  # noqa: E402

CFG = dict(GPT_CONFIG_124M, context_length=1024, qkv_bias=True)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main():
    torch.set_num_threads(ARGS.threads)
    busy_before = cpu_busy_fraction()
    n_cached = ARGS.tokens
    n_uncached = ARGS.nocache_tokens or ARGS.tokens
    print(f"GPT-2 124M shape (context 1024, qkv_bias), greedy, batch 1, "
          f"prompt {ARGS.prompt_length} tokens, {ARGS.threads} threads "
          f"(numpy {np.__version__}, torch {torch.__version__})")
    torch.manual_seed(123)
    ref = TorchGPT(CFG)
    ref.eval()
    model = GPTModel(CFG)
    model.load_state_dict(numpy_state_dict(ref))
    model.eval()
    prompt = np.random.default_rng(0).integers(0, CFG["vocab_size"], size=(1, ARGS.prompt_length))
    ctx = CFG["context_length"]

    generate(model, prompt, 2, ctx)  # warm-up: first-touch of the weights and buffers
    rows = []
    out_cached, t = timed(lambda: generate(model, prompt, n_cached, ctx))
    rows.append(("tinygpt, KV cache", n_cached, t))
    out_plain, t = timed(lambda: generate(model, prompt, n_uncached, ctx, use_cache=False))
    rows.append(("tinygpt, no cache", n_uncached, t))
    with torch.no_grad():
        out_torch, t = timed(lambda: torch_generate(ref, torch.from_numpy(prompt), n_uncached, ctx))
    rows.append(("torch book loop (generate_text_simple)", n_uncached, t))

    n = min(n_cached, n_uncached) + ARGS.prompt_length
    same = (np.array_equal(out_cached[:, :n], out_plain[:, :n])
            and np.array_equal(out_cached[:, :n], out_torch.numpy()[:, :n]))
    torch_rate = rows[2][1] / rows[2][2]
    print()
    print(f"| {'run':<40} | {'tokens':>6} | {'seconds':>8} | {'tokens/s':>9} | {'vs torch':>8} |")
    print(f"|{'-' * 42}|{'-' * 8}|{'-' * 10}|{'-' * 11}|{'-' * 10}|")
    for name, count, seconds in rows:
        rate = count / seconds
        print(f"| {name:<40} | {count:>6} | {seconds:>8.2f} | {rate:>9.2f} | "
              f"{rate / torch_rate:>7.2f}x |")
    print()
    print(f"greedy tokens identical across the three runs (first {n - ARGS.prompt_length}): "
          f"{same}")
    if n_uncached < n_cached:
        print(f"note: the uncached runs made only {n_uncached} tokens (--nocache-tokens); "
              f"their sequences were shorter, so their tokens/s is flattered and the "
              f"ratios understate the cache's advantage")
    if busy_before is not None:
        print(f"CPU busy with other work just before the runs: {100 * busy_before:.0f}% "
              f"of {os.cpu_count()} cores")
        if busy_before > 0.1:
            print("warning: other processes were using the CPU; BLAS threads that wait for "
                  "a busy core slow every run, the many small matrix-vector products of "
                  "cached decoding most. Rerun on a quiet machine (or try --threads 1).")
    rate = n_cached / rows[0][2]
    store(ARGS.result, {
        "threads": ARGS.threads, "prompt_tokens": ARGS.prompt_length,
        "runs": {name: {"tokens": count, "tokens_per_s": round(count / seconds, 2),
                        "vs_torch_book_loop": round(count / seconds / torch_rate, 2)}
                 for name, count, seconds in rows},
        "kv_cache_tokens_per_s": round(rate, 2),
        "kv_cache_vs_torch_book_loop": round(rate / torch_rate, 2),
        "greedy_tokens_identical": bool(same),
    }, busy=busy_before)
    print(f"targets: cache >= 10x torch book loop: {rate / torch_rate:.1f}x "
          f"({'met' if rate / torch_rate >= 10 else 'MISSED'}); >= 30 tokens/s: {rate:.1f} "
          f"({'met' if rate >= 30 else 'MISSED'})")


if __name__ == "__main__":
    main()
