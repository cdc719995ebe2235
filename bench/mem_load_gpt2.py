"""Peak memory of loading GPT-2 weights into a tinygpt GPTModel.

    python bench/mem_load_gpt2.py                    # gpt2-small (124M)
    python bench/mem_load_gpt2.py --size 124M --size 1558M --dir /big/tmp

Writes a synthetic checkpoint with the real shapes of the size (OpenAI's layout,
with tests/helpers/gpt2_fixtures.py's writer: no TensorFlow needed) into a temporary
folder, then, each in a fresh Python process:

- ``model``: build ``GPTModel(gpt2_config(size))`` only;
- ``stream``: build it, then ``load_tf_ckpt_into_gpt`` (tensor by tensor);
- ``book``: build it, then ``download_and_load_gpt2`` (all params in memory, as
  in the book) and ``load_weights_into_gpt``.

Each reports the resident set size once the model exists, and the peak RSS
during the load (``ru_maxrss``, with the peak reset via /proc/self/clear_refs
after the model is built so the model's own construction peak doesn't hide
it). "extra" is load peak minus the model's RSS: the memory the loading needs.
The claim to check: ``stream`` needs about one tensor (the largest is wte).
"""

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

MIB = 1 << 20


def _rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _reset_peak():
    """Reset the kernel's peak-RSS counter (Linux >= 4.0); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child(mode, models_dir, size):
    """Run one measurement in this (fresh) process and print it as JSON."""
    from tinygpt.io.pretrained import (
        config_from_hparams,
        download_and_load_gpt2,
        load_tf_ckpt_into_gpt,
        load_weights_into_gpt,
    )
    from tinygpt.model import GPTModel

    with open(os.path.join(models_dir, size, "hparams.json")) as f:
        cfg = config_from_hparams(json.load(f))
    start_rss = _rss_kb()
    model = GPTModel(cfg)
    model_rss = _rss_kb()
    construct_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reset = _reset_peak()
    t0 = time.perf_counter()
    if mode == "stream":
        load_tf_ckpt_into_gpt(model, os.path.join(models_dir, size, "model.ckpt"))
    elif mode == "book":
        _, params = download_and_load_gpt2(size, models_dir, download=False, known_sha256={})
        load_weights_into_gpt(model, params)
        del params
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    check = float(model.state_dict()["trf_blocks.0.att.W_query.weight"].numpy().sum())
    print(json.dumps({
        "mode": mode, "start_rss_mb": start_rss / 1024, "model_rss_mb": model_rss / 1024,
        "construct_peak_mb": construct_peak / 1024, "load_peak_mb": peak / 1024,
        "peak_reset": reset, "seconds": seconds, "checksum": check,
    }))


def measure(mode, models_dir, size):
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", mode,
                          "--dir", models_dir, "--size", size],
                         capture_output=True, text=True, check=False,
                         env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    if out.returncode != 0:
        raise RuntimeError(f"{mode} run failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", action="append", help="124M, 355M, 774M or 1558M (repeatable)")
    parser.add_argument("--dir", help="where to write the checkpoint (default: a temp dir)")
    parser.add_argument("--modes", default="model,stream,book")
    parser.add_argument("--keep", action="store_true", help="keep the written checkpoint")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        child(args.child, args.dir, args.size[0])
        return

    from tests.helpers.gpt2_fixtures import gpt2_tensor_shapes, write_gpt2_folder
    from tinygpt.io.pretrained import gpt2_config, gpt2_model_size

    figures = {}
    for name in args.size or ["124M"]:
        size = gpt2_model_size(name)
        cfg = gpt2_config(size)
        shapes = gpt2_tensor_shapes(cfg["n_layers"], cfg["emb_dim"])
        n_bytes = 4 * sum(int(math.prod(s)) for _, s in shapes)
        largest = max(shapes, key=lambda item: math.prod(item[1]))
        largest_mb = 4 * math.prod(largest[1]) / MIB
        models_dir = tempfile.mkdtemp(prefix="gpt2mem-", dir=args.dir)
        try:
            free = shutil.disk_usage(models_dir).free
            if free < n_bytes * 1.1:
                print(f"{size}: skipped, needs {n_bytes / 2**30:.1f} GiB of disk, "
                      f"{free / 2**30:.1f} GiB free in {models_dir}")
                continue
            t0 = time.perf_counter()
            write_gpt2_folder(os.path.join(models_dir, size), n_layer=cfg["n_layers"],
                              n_embd=cfg["emb_dim"], n_head=cfg["n_heads"], fast=True)
            print(f"GPT-2 {size}: checkpoint {n_bytes / MIB:.0f} MiB written in "
                  f"{time.perf_counter() - t0:.1f} s; largest tensor {largest[0]} "
                  f"{largest[1]} = {largest_mb:.0f} MiB")
            for mode in args.modes.split(","):
                r = measure(mode, models_dir, size)
                extra = max(0.0, r["load_peak_mb"] - r["model_rss_mb"])
                print(f"  {mode:6s} model RSS {r['model_rss_mb']:8.0f} MiB | construction peak "
                      f"{r['construct_peak_mb']:8.0f} MiB | load peak {r['load_peak_mb']:8.0f} MiB"
                      f" | extra {extra:7.0f} MiB ({extra / largest_mb:.2f} x largest tensor)"
                      f" | load {r['seconds']:.1f} s"
                      + ("" if r["peak_reset"] else "  [peak not resettable]"))
                figures.setdefault(size, {})[mode] = {
                    "model_rss_mib": round(r["model_rss_mb"]),
                    "load_peak_mib": round(r["load_peak_mb"]), "extra_mib": round(extra),
                    "extra_vs_largest_tensor": round(extra / largest_mb, 2),
                    "seconds": round(r["seconds"], 2), "peak_reset": r["peak_reset"]}
        finally:
            if args.keep:
                print(f"  kept {models_dir}")
            else:
                shutil.rmtree(models_dir, ignore_errors=True)
    if figures:
        from record import store  # bench/record.py

        store("mem_load_gpt2", figures)


if __name__ == "__main__":
    main()
