"""Size on disk and time to save and load a GPT_CONFIG_124M training checkpoint.

    python bench/bench_checkpoint.py [--folder DIR] [--repeat N]

Builds the chapter's model (GPT-2 124M, context 256), takes one AdamW step on
a batch of 2 x 256 random tokens so both moments exist, then times:
save_checkpoint (weights + 2 moments + metadata, written atomically with fsync),
load_checkpoint into the existing model and optimizer, load_checkpoint building
both from the file, and save_model / load_model for the weights alone. Each
time is the best of ``--repeat`` runs; the files go to ``--folder`` (default: a
temporary folder beside the system's temp dir, removed at the end).
"""

import argparse
import os
import shutil
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", help="where to write the files (default: a temp folder)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best kept)")
    args = parser.parse_args(argv)
    folder = args.folder or tempfile.mkdtemp(prefix="tinygpt-bench-")
    os.makedirs(folder, exist_ok=True)
    try:
        run(folder, max(1, args.repeat))
    finally:
        if args.folder is None:
            shutil.rmtree(folder, ignore_errors=True)


def run(folder, repeat):
    cfg = tinygpt.GPT_CONFIG_124M
    tinygpt.manual_seed(123)
    started = time.perf_counter()
    model = tinygpt.GPTModel(cfg)
    build_s = time.perf_counter() - started
    optimizer = tinygpt.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
    ids = numpy.random.default_rng(0).integers(0, cfg["vocab_size"], (2, cfg["context_length"]))
    optimizer.zero_grad()
    calc_loss_batch(ids[:, :-1], ids[:, 1:], model).backward()
    optimizer.step()
    model.zero_grad()  # keep only what a checkpoint holds in memory
    n_params = model.num_parameters()
    state = TrainingState(epoch=0, batch_in_epoch=1, epoch_order=list(range(9)), global_step=0,
                          tokens_seen=ids[:, :-1].size)

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


if __name__ == "__main__":
    main()
