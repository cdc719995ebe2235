"""Exact resume: stopping, saving, and carrying on in a new process changes nothing.

tests/helpers/resume_worker.py runs the same small training run (dropout on, shuffled
batches, warmup + cosine decay + clipping) straight through, and stopped three
ways: after 17 steps (inside epoch 2), after exactly one epoch with
``stop_after_steps``, and by ``on_epoch_end`` right after saving the epoch-1
checkpoint. Each stopped run is then finished by a fresh Python process that
only has the checkpoint; its weights, AdamW moments and steps, losses, printed
lines and final generator state must equal the straight run's bit for bit.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "helpers" / "resume_worker.py"
BATCHES_PER_EPOCH = 12


def run_worker(*args):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    result = subprocess.run([sys.executable, str(WORKER), *map(str, args)], cwd=str(REPO),
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]


def read(path):
    """Tensors and decoded metadata, read with the safetensors package (not our loader)."""
    with safe_open(str(path), "np") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = {k: (json.loads(v) if k not in ("created", "tinygpt.format", "dtype") else v)
                for k, v in f.metadata().items()}
    return tensors, meta


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume")
    run_worker("prepare", folder)
    return folder


@pytest.mark.parametrize(
    "name, step, epoch, batch_in_epoch",
    [
        ("mid-epoch", 17, 1, 5),  # stop_after_steps=17: epoch 2, batch 6 not yet trained
        ("boundary", BATCHES_PER_EPOCH, 1, 0),  # stop_after_steps at the end of epoch 1
        ("epoch-end", BATCHES_PER_EPOCH, 1, 0),  # saved by on_epoch_end, as the demo does
    ],
)
def test_resume_in_a_new_process_is_bit_identical(runs, name, step, epoch, batch_in_epoch):
    stopped_path = runs / f"{name}.safetensors"
    _, stopped = read(stopped_path)
    state = stopped["training_state"]
    assert state["global_step"] + 1 == step
    assert (state["epoch"], state["batch_in_epoch"], state["finished"]) == (
        epoch, batch_in_epoch, False)
    # on_epoch_end saves before the next epoch's order is drawn; stop_after_steps after
    assert (state["epoch_order"] is None) == (name == "epoch-end")

    resumed_path = runs / f"{name}-resumed.safetensors"
    run_worker("resume", stopped_path, resumed_path)
    straight_tensors, straight = read(runs / "straight.safetensors")
    resumed_tensors, resumed = read(resumed_path)

    assert straight["training_state"]["finished"]
    assert straight["training_state"]["global_step"] + 1 == 3 * BATCHES_PER_EPOCH
    assert sorted(resumed_tensors) == sorted(straight_tensors)
    for key, value in straight_tensors.items():
        other = resumed_tensors[key]
        assert other.dtype == value.dtype and other.shape == value.shape, key
        assert np.array_equal(other, value), (
            f"{name}: {key} differs by up to {np.abs(other - value).max()}")
    assert resumed["training_state"] == straight["training_state"]  # losses, tokens, steps
    assert resumed["optimizer"] == straight["optimizer"]  # step counts, lr, peak_lr
    assert resumed["rng_state"] == straight["rng_state"]
    assert resumed["extra"]["printed"] == straight["extra"]["printed"]  # evals and samples


def test_the_stopped_runs_really_differ_from_the_finished_one(runs):
    """Guards the test above against comparing a file with itself."""
    straight, _ = read(runs / "straight.safetensors")
    stopped, _ = read(runs / "mid-epoch.safetensors")
    key = "model.tok_emb.weight"
    assert not np.array_equal(straight[key], stopped[key])
