"""Size on disk, time and peak memory to save and load a GPT_CONFIG_124M training checkpoint.

    python bench/bench_checkpoint.py [--folder DIR] [--repeat N]

Builds the chapter's model (GPT-2 124M, context 256), takes one AdamW step on
a batch of 2 x 256 random tokens so both moments exist, then times:
save_checkpoint (weights + 2 moments + metadata, written atomically with fsync),
load_checkpoint into the existing model and optimizer, load_checkpoint building
both from the file, and save_model / load_model for the weights alone. Each
time is the best of ``--repeat`` runs; the files go to ``--folder`` (default: a
temporary folder beside the system's temp dir, removed at the end).

Then the memory each one needs, each in a fresh Python process (in one process
the allocator's retained memory hides it): the peak resident set during the
operation (VmHWM, reset via /proc/self/clear_refs just before; Linux) minus the
resident set before it. A load must at least hold what it returns (a model file:
the weights; a checkpoint built from the file: weights and two moments); a save
should need next to nothing. ``--json`` also prints every number as one JSON line.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tinygpt  # noqa: E402
from tinygpt.io.checkpoint import load_checkpoint, load_model, save_checkpoint, save_model  # noqa: E402
from tinygpt.train import TrainingState, calc_loss_batch  # noqa: E402


def best_of(repeat, fn):
    times = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def _status_mib(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":")) / 1024


def child(op, folder):
    """Run ``op`` once in this fresh process; print its peak RSS growth (MiB) as JSON."""
    ckpt_path = os.path.join(folder, "checkpoint.safetensors")
    model_path = os.path.join(folder, "model.safetensors")
    if op.startswith("save"):
        model, optimizer, state = trained_model()
        out = os.path.join(folder, "child.safetensors")
        run_op = ((lambda: save_checkpoint(out, model, optimizer, state, extra={"bench": True}))
                  if op == "save_checkpoint" else (lambda: save_model(model, out)))
    elif op == "load_checkpoint_into":
        model = tinygpt.GPTModel(tinygpt.GPT_CONFIG_124M)
        optimizer = tinygpt.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
        run_op = lambda: load_checkpoint(ckpt_path, model, optimizer)  # noqa: E731
    else:
        run_op = {"load_checkpoint_build": lambda: load_checkpoint(ckpt_path),
                  "load_model": lambda: load_model(model_path)}[op]
    before = _status_mib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    result = run_op()
    print(json.dumps({"op": op, "extra_mib": _status_mib("VmHWM") - before}))
    del result


MEMORY_OPS = ("save_checkpoint", "load_checkpoint_into", "load_checkpoint_build", "save_model",
              "load_model")


def measure_memory(op, folder):
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", op, "--folder",
                          folder], capture_output=True, text=True, check=False,
                         env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    if out.returncode != 0:
        raise RuntimeError(f"{op} run failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])["extra_mib"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", help="where to write the files (default: a temp folder)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best kept)")
    parser.add_argument("--json", action="store_true", help="also print the numbers as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.folder)
        return
    folder = args.folder or tempfile.mkdtemp(prefix="tinygpt-bench-")
    os.makedirs(folder, exist_ok=True)
    try:
        run(folder, max(1, args.repeat), args.json)
    finally:
        if args.folder is None:
            shutil.rmtree(folder, ignore_errors=True)


def trained_model():
    """GPT_CONFIG_124M after one AdamW step (so both moments exist), and its state."""
    cfg = tinygpt.GPT_CONFIG_124M
    tinygpt.manual_seed(123)
    model = tinygpt.GPTModel(cfg)
    optimizer = tinygpt.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
    ids = numpy.random.default_rng(0).integers(0, cfg["vocab_size"], (2, cfg["context_length"]))
    optimizer.zero_grad()
    calc_loss_batch(ids[:, :-1], ids[:, 1:], model).backward()
    optimizer.step()
    model.zero_grad()  # keep only what a checkpoint holds in memory
    state = TrainingState(epoch=0, batch_in_epoch=1, epoch_order=list(range(9)), global_step=0,
                          tokens_seen=ids[:, :-1].size)
    return model, optimizer, state


def run(folder, repeat, as_json=False):
    started = time.perf_counter()
    tinygpt.GPTModel(tinygpt.GPT_CONFIG_124M)
    build_s = time.perf_counter() - started
    model, optimizer, state = trained_model()
    n_params = model.num_parameters()

    ckpt_path = os.path.join(folder, "checkpoint.safetensors")
    model_path = os.path.join(folder, "model.safetensors")
    save_ckpt_s, _ = best_of(repeat, lambda: save_checkpoint(ckpt_path, model, optimizer, state,
                                                             extra={"bench": True}))
    load_into_s, _ = best_of(repeat, lambda: load_checkpoint(ckpt_path, model, optimizer))
    load_build_s, ckpt = best_of(repeat, lambda: load_checkpoint(ckpt_path))
    save_model_s, _ = best_of(repeat, lambda: save_model(model, model_path))
    load_model_s, _ = best_of(repeat, lambda: load_model(model_path))
    for k, v in model.state_dict().items():  # the round trip is exact
        assert numpy.array_equal(v.numpy(), ckpt.model.state_dict()[k].numpy()), k

    ckpt_bytes = os.path.getsize(ckpt_path)
    model_bytes = os.path.getsize(model_path)
    payload = 3 * n_params * 4  # float32 weights + two float32 moments
    mb = 1e6
    print(f"GPT_CONFIG_124M: {n_params:,} parameters (float32); best of {repeat} runs each")
    print(f"  (building GPTModel(cfg) with its random init alone: {build_s:.2f} s)")
    print(f"training checkpoint: {ckpt_bytes / mb:,.1f} MB on disk "
          f"(tensor data {payload / mb:,.1f} MB, header + metadata "
          f"{(ckpt_bytes - payload) / 1e3:,.1f} kB)")
    print(f"  save_checkpoint:                          {save_ckpt_s:6.2f} s  "
          f"({ckpt_bytes / mb / save_ckpt_s:,.0f} MB/s)")
    print(f"  load_checkpoint into model + optimizer:   {load_into_s:6.2f} s  "
          f"({ckpt_bytes / mb / load_into_s:,.0f} MB/s)")
    print(f"  load_checkpoint building both:            {load_build_s:6.2f} s")
    print(f"model file: {model_bytes / mb:,.1f} MB on disk")
    print(f"  save_model:                               {save_model_s:6.2f} s")
    print(f"  load_model:                               {load_model_s:6.2f} s")
    del ckpt
    memory = {op: measure_memory(op, folder) for op in MEMORY_OPS}
    print("peak resident-set growth during each, in a fresh process (MiB):")
    for op, extra in memory.items():
        print(f"  {op:40s} {extra:8.0f}")
    figures = {
        "seconds": {"save_checkpoint": save_ckpt_s, "load_checkpoint_into": load_into_s,
                    "load_checkpoint_build": load_build_s, "save_model": save_model_s,
                    "load_model": load_model_s},
        "extra_mib": memory, "checkpoint_bytes": ckpt_bytes, "model_bytes": model_bytes,
    }
    from record import store  # bench/record.py

    store("bench_checkpoint", figures)
    if as_json:
        print(json.dumps({
            "seconds": {"save_checkpoint": save_ckpt_s, "load_checkpoint_into": load_into_s,
                        "load_checkpoint_build": load_build_s, "save_model": save_model_s,
                        "load_model": load_model_s},
            "extra_mib": memory, "checkpoint_bytes": ckpt_bytes, "model_bytes": model_bytes,
        }))


if __name__ == "__main__":
    main()
