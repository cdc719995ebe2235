"""tinygpt on CuPy against PyTorch on CUDA, on the same GPU, in one run.

    python bench/bench_gpu.py [--only step,chapter,generate] [--rounds 2] [--steps 5]
                              [--warmup 2] [--epochs 10] [--no-dropout] [--text PATH]
                              [--json PATH]
    python bench/bench_gpu.py --cpu-smoke   # the whole script on the CPU, tiny model

Three parts, each engine in its own fresh process (tinygpt with TINYGPT_BACKEND=cupy,
torch without it), the engines alternating for ``--rounds`` rounds; figures are medians.

step      one training step of GPT_CONFIG_124M (dropout 0.1, qkv_bias False) at
          (batch, context) = (2, 256) and (8, 1024), the config's context_length set to
          the context: forward, cross-entropy, backward, AdamW(lr 4e-4, weight_decay 0.1)
          step. ``--warmup`` untimed steps first (CuPy compiles its kernels on first
          use), then ``--steps`` timed ones, each ended by a device synchronize. Also
          tokens/s and peak device memory (torch: ``max_memory_allocated``, reserved in
          the raw figures; tinygpt: the CuPy memory pool's total bytes after the steps,
          an upper bound of its peak). ``--no-dropout`` times the same number of steps
          again in the same process with every dropout at p = 0, on both sides.
chapter   section 5.2's run (bench/bench_chapter.py's ``run_tinygpt`` / ``run_torch``,
          torch on ``cuda``): seed 123, context 256, batch 2, AdamW(4e-4, 0.1),
          ``--epochs`` epochs, eval_freq 5, eval_iter 5, a 50-token greedy sample after
          every epoch (the samples are swallowed, never printed); wall time (model
          construction included) and final losses. ``--chapter-rounds`` rounds (default 1).
generate  greedy decoding of ``--tokens`` (200) new tokens from a 4-token prompt, batch 1,
          GPT-2 small's shape (context 1024, qkv_bias), the same weights everywhere (the
          torch reference model seeded with 123): tinygpt's ``generate`` (KV cache), the
          book's ``generate_text_simple`` on CUDA, and Hugging Face's
          ``GPT2LMHeadModel.generate`` (float32, KV cache) when transformers imports. Each
          is timed after one warm-up generation; the greedy tokens are compared.

Ratios: tinygpt / torch of times for steps and the chapter (above 1: tinygpt is slower),
of tokens/s for generation (above 1: tinygpt is faster). Only figures from this one run
are compared. A failing worker prints the tail of its stderr; the other parts go on and
the script exits non-zero at the end.

``--cpu-smoke`` runs everything on the CPU with a tiny config (vocab 50257, emb 32,
2 layers, 2 heads, context 32; steps at (2, 16) and (8, 32); chapter 1 epoch; 10 new
tokens), tinygpt on NumPy and torch on the CPU, to test the script itself: its numbers
mean nothing. The chapter text is ``--text PATH`` or tinygpt's lookup
(``tinygpt.io.textsource.find_verdict``); it is never printed.
"""

import argparse
import contextlib
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_busy_fraction  # bench/machine.py

REPO = Path(__file__).resolve().parents[1]
RESULT_TAG = "BENCH_GPU_RESULT "
PARTS = ("step", "chapter", "generate")

GPT_CONFIG_124M = {"vocab_size": 50257, "context_length": 1024, "emb_dim": 768,
                   "n_heads": 12, "n_layers": 12, "drop_rate": 0.1, "qkv_bias": False}
TINY_CONFIG = {"vocab_size": 50257, "context_length": 32, "emb_dim": 32, "n_heads": 2,
               "n_layers": 2, "drop_rate": 0.1, "qkv_bias": False}
PROMPT_LENGTH = 4


# ----------------------------------------------------------------------------------
# Workers: each runs in a fresh child process and prints one tagged JSON line.


def _peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _engine_setup(spec):
    """(sync function, peak-memory function, torch module or None) of the worker's engine."""
    if spec["engine"] == "tinygpt":
        import tinygpt.backend as backend

        if spec["gpu"] and not backend.ON_GPU:
            backend.xp.ndarray  # noqa: B018 - raises BackendError saying why CuPy cannot run
            raise RuntimeError("tinygpt is not running on CuPy (is TINYGPT_BACKEND=cupy set?)")

        def memory():
            if backend.ON_GPU:
                pool = backend.xp.get_default_memory_pool()
                return {"peak_mib": pool.total_bytes() / 2**20,
                        "used_mib": pool.used_bytes() / 2**20}
            return {"peak_mib": _peak_rss_mib()}

        return backend.synchronize, memory, None
    import torch

    torch.set_num_threads(spec["threads"])
    if spec["gpu"]:
        if not torch.cuda.is_available():
            raise RuntimeError(f"torch {torch.__version__} sees no CUDA device")
        torch.cuda.reset_peak_memory_stats()

        def memory():
            return {"peak_mib": torch.cuda.max_memory_allocated() / 2**20,
                    "reserved_mib": torch.cuda.max_memory_reserved() / 2**20}

        return torch.cuda.synchronize, memory, torch
    return (lambda: None), (lambda: {"peak_mib": _peak_rss_mib()}), torch


def worker_info(spec):
    """Versions, the GPU's name and the float32 matmul settings."""
    from importlib import metadata

    import numpy

    info = {"numpy": numpy.__version__, "python": sys.version.split()[0]}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cuda"] = torch.version.cuda
        info["torch_fp32_matmul"] = torch.get_float32_matmul_precision()
        if spec["gpu"] and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError as exc:
        info["torch"] = f"not importable ({exc})"
    import tinygpt.backend as backend

    if backend.ON_GPU:
        xp = backend.xp
        info["cupy"] = xp.__version__
        info["cuda_runtime"] = xp.cuda.runtime.runtimeGetVersion()
        info.setdefault("gpu", xp.cuda.runtime.getDeviceProperties(0)["name"].decode())
        info["tinygpt_kernels"] = backend.kernels_enabled()
    else:
        for dist in ("cupy-cuda12x", "cupy-cuda13x", "cupy-cuda11x", "cupy"):
            with contextlib.suppress(metadata.PackageNotFoundError):
                info["cupy"] = metadata.version(dist) + " (installed, not used)"
                break
        else:
            info["cupy"] = "not installed"
    info["CUPY_TF32"] = os.environ.get("CUPY_TF32", "unset")
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except Exception as exc:  # noqa: BLE001 - any import failure means: skip the HF row
        info["transformers"] = None
        info["transformers_missing"] = f"{type(exc).__name__}: {exc}"
    return info


def worker_step(spec):
    """Times ``spec["steps"]`` training steps (after ``spec["warmup"]``), each synchronized."""
    import numpy as np

    cfg, batch = spec["cfg"], spec["batch"]
    rng = np.random.default_rng(0)
    ids = rng.integers(0, cfg["vocab_size"], size=(batch, cfg["context_length"]))
    targets = rng.integers(0, cfg["vocab_size"], size=(batch, cfg["context_length"]))
    sync, memory, torch = _engine_setup(spec)
    if torch is None:
        import tinygpt

        tinygpt.manual_seed(0)
        model = tinygpt.GPTModel(cfg)
        model.train()
        opt = tinygpt.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
        dropout_type = tinygpt.nn.Dropout

        def step():
            loss = tinygpt.cross_entropy(model(ids), targets)
            loss.backward()
            opt.step()
            opt.zero_grad()
            return loss
    else:
        sys.path.insert(0, str(REPO))
        from tests.reference.torch_gpt import GPTModel

        device = "cuda" if spec["gpu"] else "cpu"
        torch.manual_seed(0)
        model = GPTModel(cfg).to(device)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
        x, y = torch.from_numpy(ids).to(device), torch.from_numpy(targets).to(device)
        dropout_type = torch.nn.Dropout

        def step():
            logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
            loss.backward()
            opt.step()
            opt.zero_grad()
            return loss

    def timed_steps():
        for _ in range(spec["warmup"]):
            step()
        sync()
        times, loss = [], None
        for _ in range(spec["steps"]):
            started = time.perf_counter()
            loss = step()
            sync()
            times.append(time.perf_counter() - started)
        return times, float(loss.item()) if loss is not None else None

    out = {}
    out["times"], out["last_loss"] = timed_steps()
    out.update(memory())
    if spec["no_dropout"]:
        for module in model.modules():
            if isinstance(module, dropout_type):
                module.p = 0.0
        out["times_no_dropout"], out["last_loss_no_dropout"] = timed_steps()
    return out


def worker_chapter(spec):
    """bench/bench_chapter.py's run on this engine; its printed samples are swallowed."""
    sys.path.insert(0, str(REPO / "bench"))
    import bench_chapter

    sync, memory, torch = _engine_setup(spec)
    if spec["text"]:
        path = Path(spec["text"])
    else:
        from tinygpt.io.textsource import find_verdict

        path = find_verdict()
    text = path.read_text(encoding="utf-8")
    swallowed = io.StringIO()  # the samples quote the training text: never print them
    with contextlib.redirect_stdout(swallowed):
        if torch is None:
            seconds, train, val = bench_chapter.run_tinygpt(text, spec["epochs"], spec["seed"],
                                                            cfg=spec["cfg"])
        else:
            seconds, train, val = bench_chapter.run_torch(
                text, spec["epochs"], spec["threads"], spec["seed"],
                device="cuda" if spec["gpu"] else "cpu", cfg=spec["cfg"])
    out = {"seconds": seconds, "train": train, "val": val,
           "printed_lines": len(swallowed.getvalue().splitlines())}
    out.update(memory())
    return out


def worker_genprep(spec):
    """Writes the shared weights: the torch reference model seeded with 123 (weights.npz),
    and when asked the same model as a Hugging Face folder (hf/). Runs on the CPU."""
    import numpy as np
    import torch

    sys.path.insert(0, str(REPO))
    from tests.reference.torch_gpt import GPTModel as TorchGPT
    from tests.reference.torch_gpt import numpy_state_dict

    torch.manual_seed(123)
    state = numpy_state_dict(TorchGPT(spec["cfg"]))
    folder = Path(spec["folder"])
    np.savez(folder / "weights.npz", **state)
    if spec["hf"]:
        import tinygpt
        from tinygpt.io.hf_gpt2 import export_hf_gpt2

        model = tinygpt.GPTModel(spec["cfg"])
        model.load_state_dict(state)
        export_hf_gpt2(model, folder / "hf")
    return {"tensors": len(state)}


def worker_generate(spec):
    """One warm-up generation, then one timed one; returns the tokens and the seconds."""
    import numpy as np

    cfg, n = spec["cfg"], spec["tokens"]
    folder = Path(spec["folder"])
    prompt = np.random.default_rng(0).integers(0, cfg["vocab_size"], size=(1, PROMPT_LENGTH))
    sync, memory, torch = _engine_setup(spec)
    out = {}
    if torch is None:
        import tinygpt

        with np.load(folder / "weights.npz") as weights:
            state = {k: weights[k] for k in weights.files}
        model = tinygpt.GPTModel(cfg)
        model.load_state_dict(state)
        model.eval()
        del state

        def run():
            return np.asarray(tinygpt.generation.generate_fast(model, prompt, n,
                                                               cfg["context_length"]))
    else:
        device = "cuda" if spec["gpu"] else "cpu"
        x = torch.from_numpy(prompt).to(device)
        if spec["engine"] == "torch":
            sys.path.insert(0, str(REPO))
            from tests.reference.torch_gpt import GPTModel as TorchGPT
            from tests.reference.torch_gpt import generate_text_simple

            model = TorchGPT(cfg)
            with np.load(folder / "weights.npz") as weights:
                state = {k: torch.from_numpy(weights[k]) for k in weights.files}
            missing, unexpected = model.load_state_dict(state, strict=False)
            if unexpected or any(not k.endswith(".att.mask") for k in missing):
                raise RuntimeError(f"weights do not fit: missing {missing}, unexpected "
                                   f"{unexpected}")
            model.to(device).eval()

            def run():
                with torch.no_grad():
                    return generate_text_simple(model, x, n, cfg["context_length"]).cpu().numpy()
        else:
            import transformers

            model, loading = transformers.GPT2LMHeadModel.from_pretrained(
                str(folder / "hf"), output_loading_info=True)
            if loading["missing_keys"] or loading["unexpected_keys"]:
                raise RuntimeError(f"Hugging Face load: {loading}")
            model.to(device=device, dtype=torch.float32).eval()
            out["attn_implementation"] = getattr(model.config, "_attn_implementation", None)
            mask = torch.ones_like(x)

            def run():
                with torch.no_grad():
                    return model.generate(
                        x, attention_mask=mask, do_sample=False, max_new_tokens=n,
                        min_new_tokens=n, use_cache=True, pad_token_id=50256,
                    ).cpu().numpy()
    run()  # warm-up: kernel compilation, allocator, caches
    sync()
    started = time.perf_counter()
    tokens = run()
    sync()
    out["seconds"] = time.perf_counter() - started
    out["tokens"] = tokens[0].tolist()
    out.update(memory())
    return out


WORKERS = {"info": worker_info, "step": worker_step, "chapter": worker_chapter,
           "genprep": worker_genprep, "generate": worker_generate}


# ----------------------------------------------------------------------------------
# The parent: launches the workers, alternates engines, prints the table.


def _gpu_busy():
    """nvidia-smi's utilization.gpu (%) and memory.used (MiB) per GPU, or why not."""
    if shutil.which("nvidia-smi") is None:
        return "n/a (no nvidia-smi)"
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"n/a ({exc})"
    if out.returncode != 0:
        return f"n/a (nvidia-smi exit {out.returncode})"
    return "; ".join(line.strip() for line in out.stdout.strip().splitlines())


class Runner:
    """Starts workers with the right environment and records failures."""

    def __init__(self, args):
        self.args = args
        self.failures = []
        base = dict(os.environ, PYTHONUNBUFFERED="1",
                    PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            base[name] = str(args.threads)
        base.pop("TINYGPT_BACKEND", None)
        self.env_torch = dict(base, TINYGPT_MALLOC_TUNING="0")  # torch borrows only the tokenizer
        self.env_tinygpt = dict(base) if args.cpu_smoke else dict(base, TINYGPT_BACKEND="cupy")

    def run(self, kind, label, spec):
        """The worker's result dict, or None after printing why it failed."""
        spec = dict(spec, gpu=not self.args.cpu_smoke, threads=self.args.threads)
        env = self.env_tinygpt if spec.get("engine") == "tinygpt" else self.env_torch
        try:
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", kind, "--spec", json.dumps(spec)],
                env=env, capture_output=True, text=True, timeout=self.args.worker_timeout)
        except subprocess.TimeoutExpired as exc:
            tail = (exc.stderr or b"")[-3000:]
            tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
            return self._failed(label, f"timed out after {self.args.worker_timeout} s", tail)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
        if proc.returncode != 0 or not lines:
            return self._failed(label, f"exit status {proc.returncode}", proc.stderr[-3000:])
        return json.loads(lines[-1][len(RESULT_TAG):])

    def _failed(self, label, why, stderr_tail):
        print(f"!!! {label} FAILED ({why}); stderr tail:\n{stderr_tail.rstrip()}\n",
              flush=True)
        self.failures.append(f"{label}: {why}")
        return None


def _median(values):
    return statistics.median(values) if values else None


def _fmt(value, spec=".3f"):
    return "—" if value is None else format(value, spec)


def _ratio(ours, theirs):
    return None if ours is None or theirs is None or theirs == 0 else ours / theirs


SUMMARY = {
    "step": lambda out: f"median step {statistics.median(out['times']):.4f} s",
    "chapter": lambda out: f"{out['seconds']:.1f} s",
    "generate": lambda out: f"{out['seconds']:.3f} s",
}


def alternate(runner, kind, label, engines, spec, rounds):
    """Runs each engine ``rounds`` times, alternating; an engine that fails stops."""
    results = {engine: [] for engine in engines}
    failed = set()
    for r in range(rounds):
        for engine in engines:
            if engine in failed:
                continue
            out = runner.run(kind, f"{label} [{engine}, round {r + 1}]",
                             dict(spec, engine=engine))
            if out is None:
                failed.add(engine)
            else:
                results[engine].append(out)
                print(f"  {label}: {engine}, round {r + 1}/{rounds}: {SUMMARY[kind](out)}",
                      flush=True)
    return results


def part_step(runner, args, cfg, shapes, rows, raw):
    mem_label = "peak RSS MiB" if args.cpu_smoke else "peak device MiB"
    variants = [("times", "last_loss", f"dropout {cfg['drop_rate']}")]
    if args.no_dropout:
        variants.append(("times_no_dropout", "last_loss_no_dropout", "no dropout"))
    for batch, context in shapes:
        step_cfg = dict(cfg, context_length=context)
        label = f"step B={batch} T={context}"
        spec = {"cfg": step_cfg, "batch": batch, "steps": args.steps, "warmup": args.warmup,
                "no_dropout": args.no_dropout}
        res = alternate(runner, "step", label, ("tinygpt", "torch"), spec, args.rounds)
        raw[label] = res
        for key, loss_key, what in variants:
            med = {e: _median([t for r in res[e] for t in r[key]]) for e in res}
            tps = {e: None if med[e] is None else batch * context / med[e] for e in med}
            loss = {e: res[e][-1][loss_key] if res[e] else None for e in res}
            rows.append((f"{label}, {what}: median s", _fmt(med["tinygpt"]), _fmt(med["torch"]),
                         _fmt(_ratio(med["tinygpt"], med["torch"]), ".2f")))
            rows.append((f"{label}, {what}: tokens/s", _fmt(tps["tinygpt"], ",.0f"),
                         _fmt(tps["torch"], ",.0f"), ""))
            rows.append((f"{label}, {what}: loss after last step", _fmt(loss["tinygpt"]),
                         _fmt(loss["torch"]), ""))
        mem = {e: max((r["peak_mib"] for r in res[e]), default=None) for e in res}
        reserved = max((r.get("reserved_mib", 0.0) for r in res["torch"]), default=0.0)
        torch_mem = _fmt(mem["torch"], ",.0f")
        if reserved:
            torch_mem += f" (reserved {reserved:,.0f})"
        rows.append((f"{label}: {mem_label}", _fmt(mem["tinygpt"], ",.0f"), torch_mem,
                     _fmt(_ratio(mem["tinygpt"], mem["torch"]), ".2f")))


def part_chapter(runner, args, cfg, rows, raw):
    spec = {"cfg": cfg, "epochs": args.epochs, "seed": 123,
            "text": str(Path(args.text).resolve()) if args.text else None}
    label = f"chapter run, {args.epochs} epoch(s)"
    res = alternate(runner, "chapter", label, ("tinygpt", "torch"), spec, args.chapter_rounds)
    raw["chapter"] = res
    med = {e: _median([r["seconds"] for r in res[e]]) for e in res}
    rows.append((f"{label}: wall s", _fmt(med["tinygpt"], ".1f"), _fmt(med["torch"], ".1f"),
                 _fmt(_ratio(med["tinygpt"], med["torch"]), ".2f")))
    losses = {e: f"{res[e][-1]['train']:.3f} / {res[e][-1]['val']:.3f}" if res[e] else "—"
              for e in res}
    rows.append((f"{label}: final train / val loss", losses["tinygpt"], losses["torch"], ""))


def part_generate(runner, args, cfg, have_hf, rows, raw, notes):
    engines = ("tinygpt", "torch") + (("hf",) if have_hf else ())
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as folder:
        print("  generate: writing the shared weights", flush=True)
        prep = runner.run("genprep", "generate weights", {"engine": "torch", "cfg": cfg,
                                                          "folder": folder, "hf": have_hf})
        if prep is None:
            return
        spec = {"cfg": cfg, "tokens": args.tokens, "folder": folder}
        res = alternate(runner, "generate", "generate", engines, spec, args.rounds)
    raw["generate"] = res
    rate = {e: _median([args.tokens / r["seconds"] for r in res[e]]) for e in res}
    label = f"generate {args.tokens} tokens (greedy, batch 1): tokens/s"
    rows.append((f"{label}, vs book loop (no cache)", _fmt(rate["tinygpt"], ",.1f"),
                 _fmt(rate["torch"], ",.1f"), _fmt(_ratio(rate["tinygpt"], rate["torch"]), ".2f")))
    if have_hf:
        impl = next((r.get("attn_implementation") for r in res["hf"]), None)
        rows.append((f"{label}, vs HF GPT2LMHeadModel.generate (KV cache, {impl})",
                     _fmt(rate["tinygpt"], ",.1f"), _fmt(rate["hf"], ",.1f"),
                     _fmt(_ratio(rate["tinygpt"], rate["hf"]), ".2f")))
    tokens = {e: res[e][0]["tokens"] for e in res if res[e]}
    if "tinygpt" in tokens and len(tokens) > 1:
        ours = tokens["tinygpt"]
        for engine, theirs in tokens.items():
            if engine == "tinygpt":
                continue
            if theirs == ours:
                notes.append(f"greedy tokens tinygpt vs {engine}: identical "
                             f"({len(ours) - PROMPT_LENGTH} new tokens)")
            else:
                where = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b),
                             min(len(ours), len(theirs)))
                notes.append(f"greedy tokens tinygpt vs {engine}: DIFFER from new token "
                             f"{where - PROMPT_LENGTH} on")
        raw["generate_tokens_identical"] = all(t == ours for t in tokens.values())


def print_table(rows, header, echo=True):
    """The rows as a markdown table: printed (unless ``echo`` is False) and returned."""
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(4)]
    lines = ["| " + " | ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths))) + " |"
             for row in [header] + rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":"
                                   for i, w in enumerate(widths)) + "|")
    if echo:
        print("\n".join(lines), flush=True)
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(PARTS),
                        help="comma list of parts: step, chapter, generate (default: all)")
    parser.add_argument("--rounds", type=int, help="alternating rounds of step and generate "
                                                   "(default 2; smoke 1)")
    parser.add_argument("--steps", type=int, help="timed steps per worker (default 5; smoke 2)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 2; smoke 1)")
    parser.add_argument("--no-dropout", action="store_true",
                        help="also time the steps with dropout off (same workers)")
    parser.add_argument("--epochs", type=int, help="chapter epochs (default 10; smoke 1)")
    parser.add_argument("--chapter-rounds", type=int, default=1)
    parser.add_argument("--tokens", type=int, help="new tokens to generate (default 200; "
                                                   "smoke 10)")
    parser.add_argument("--text", type=Path, help="the-verdict.txt (default: tinygpt's lookup)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of each worker")
    parser.add_argument("--worker-timeout", type=int, default=400,
                        help="seconds before a worker is killed and counted as failed")
    parser.add_argument("--json", type=Path, help="also write the table and raw times here")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="tiny config, everything on the CPU: tests the script")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        out = WORKERS[args.worker](json.loads(args.spec))
        print(RESULT_TAG + json.dumps(out), flush=True)
        return

    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--only: unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    smoke = args.cpu_smoke
    for name, gpu_default, smoke_default in (("rounds", 2, 1), ("steps", 5, 2), ("warmup", 2, 1),
                                             ("epochs", 10, 1), ("tokens", 200, 10)):
        if getattr(args, name) is None:
            setattr(args, name, smoke_default if smoke else gpu_default)
    if min(args.rounds, args.steps, args.epochs, args.tokens, args.chapter_rounds) < 1 \
            or args.warmup < 0:
        parser.error("--rounds, --steps, --epochs, --tokens, --chapter-rounds must be >= 1 "
                     "and --warmup >= 0")
    base = TINY_CONFIG if smoke else GPT_CONFIG_124M
    shapes = [(2, 16), (8, 32)] if smoke else [(2, 256), (8, 1024)]
    chapter_cfg = dict(base, context_length=32 if smoke else 256)
    gen_cfg = dict(base, context_length=32 if smoke else 1024, qkv_bias=True)
    ours, theirs = ("tinygpt (NumPy)", "torch (CPU)") if smoke else ("tinygpt (CuPy)",
                                                                      "torch (CUDA)")

    started = time.perf_counter()
    cpu_busy = cpu_busy_fraction()
    gpu_busy = "n/a (CPU smoke mode)" if smoke else _gpu_busy()
    runner = Runner(args)
    info = runner.run("info", "versions", {"engine": "tinygpt"}) or {}
    print(f"{'CPU SMOKE MODE (tiny config, numbers mean nothing)' if smoke else 'GPU run'}: "
          f"{info.get('gpu', 'no GPU')}")
    print(f"versions: cupy {info.get('cupy')}, torch {info.get('torch')} "
          f"(CUDA {info.get('torch_cuda')}), transformers {info.get('transformers')}, "
          f"numpy {info.get('numpy')}, python {info.get('python')}")
    print(f"float32 matmuls: torch precision {info.get('torch_fp32_matmul')!r}, "
          f"CUPY_TF32={info.get('CUPY_TF32')}; tinygpt CUDA kernels: "
          f"{info.get('tinygpt_kernels', 'n/a')}")
    busy = "n/a" if cpu_busy is None else f"{100 * cpu_busy:.0f}% of {os.cpu_count()} cores"
    print(f"before starting: GPU utilization, memory used: {gpu_busy}; CPU busy: {busy}")
    print(f"parts {','.join(parts)}; rounds {args.rounds}, {args.warmup} warm-up + "
          f"{args.steps} timed steps, chapter {args.epochs} epoch(s) x {args.chapter_rounds} "
          f"round(s), {args.tokens} new tokens; {args.threads} CPU threads per worker",
          flush=True)

    rows, raw, notes = [], {}, []
    header = ("figure", ours, theirs, "tinygpt / torch")

    def write_json():
        if args.json:
            args.json.write_text(json.dumps({
                "mode": "cpu-smoke" if smoke else "gpu", "info": info,
                "gpu_busy_before": gpu_busy, "cpu_busy_before": cpu_busy,
                "args": {k: str(v) for k, v in vars(args).items()},
                "table": [dict(zip(header, row)) for row in rows],
                "table_markdown": print_table(rows, header, echo=False) if rows else [],
                "notes": notes, "raw": raw, "failures": runner.failures}, indent=1) + "\n")

    for part in parts:  # each part's rows are printed (and saved) as soon as it ends
        first = len(rows)
        if part == "step":
            part_step(runner, args, base, shapes, rows, raw)
        elif part == "chapter":
            part_chapter(runner, args, chapter_cfg, rows, raw)
        else:
            have_hf = bool(info.get("transformers"))
            if not have_hf:
                notes.append("Hugging Face row skipped: transformers does not import "
                             f"({info.get('transformers_missing', 'unknown')})")
            part_generate(runner, args, gen_cfg, have_hf, rows, raw, notes)
        if rows[first:] and len(parts) > 1:
            print_table(rows[first:], header)
            print(flush=True)
        write_json()

    print()
    if rows:
        print_table(rows, header)
    print("ratios: time tinygpt / time torch for steps and the chapter (> 1: tinygpt slower); "
          "tokens/s tinygpt / tokens/s other for generation (> 1: tinygpt faster); "
          "memory tinygpt / torch")
    if not smoke:
        print("memory: tinygpt = CuPy pool total bytes after the steps (>= its peak); "
              "torch = max_memory_allocated (max_memory_reserved in brackets)")
    for note in notes:
        print(note)
    raw["total_wall_s"] = wall = time.perf_counter() - started
    print(f"total wall time of the bench: {wall:.0f} s")
    if args.json:
        write_json()
        print(f"wrote {args.json}")
    if not smoke and rows:  # a CPU smoke run's numbers mean nothing: never stored
        from record import store  # bench/record.py

        store("bench_gpu", {"info": info, "gpu_busy_before": gpu_busy,
                            "table": [dict(zip(header, row)) for row in rows],
                            "notes": notes, "failures": runner.failures, "raw": raw},
              busy=cpu_busy)
    if runner.failures:
        print(f"{len(runner.failures)} worker(s) failed:\n  " + "\n  ".join(runner.failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
