"""Choosing the backend and the device: what a user sees when CuPy or the GPU is missing,
or when ``device`` names somewhere tinygpt is not computing."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinygpt
from tinygpt import backend

REPO = Path(__file__).resolve().parents[1]
FAKE_CUPY = REPO / "tests" / "fake_cupy"
CFG = {"vocab_size": 11, "context_length": 4, "emb_dim": 8, "n_heads": 2, "n_layers": 1,
       "drop_rate": 0.0, "qkv_bias": False}


def run(code_or_args, with_fake_cupy=False, **env):
    """Run python -c CODE (str) or python ARGS (list) in a fresh process."""
    child_env = dict(os.environ, **env)
    paths = [p for p in child_env.get("PYTHONPATH", "").split(os.pathsep)
             if p and Path(p).resolve() != FAKE_CUPY]
    if with_fake_cupy:
        paths.insert(0, str(FAKE_CUPY))
    child_env["PYTHONPATH"] = os.pathsep.join(paths)
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    return subprocess.run([sys.executable, *args], env=child_env, capture_output=True,
                          text=True, timeout=120, cwd=REPO)


def cupy_importable():
    return run("import cupy", TINYGPT_BACKEND="numpy").returncode == 0


USE = f"import tinygpt; tinygpt.GPTModel({CFG!r})"


@pytest.mark.skipif(cupy_importable(), reason="CuPy is installed here")
def test_cupy_missing_import_works_and_first_use_says_what_to_do():
    assert run("import tinygpt", TINYGPT_BACKEND="cupy").returncode == 0
    out = run(USE, TINYGPT_BACKEND="cupy")
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("tinygpt.backend.BackendError: TINYGPT_BACKEND=cupy, but CuPy "
                           "cannot be imported"), last
    assert "pip install 'tinygpt[gpu]'" in last and "unset TINYGPT_BACKEND" in last


@pytest.mark.skipif(cupy_importable(), reason="CuPy is installed here")
def test_cli_reports_missing_cupy_in_one_line():
    out = run(["-m", "tinygpt", "selftest"], TINYGPT_BACKEND="cupy")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("tinygpt: error: TINYGPT_BACKEND=cupy, but CuPy cannot be "
                               "imported"), lines[0]


def test_no_gpu_gives_one_clear_line():
    """CuPy installed but no usable GPU (the fake CuPy pretends the driver finds none)."""
    out = run(["-m", "tinygpt", "selftest"], with_fake_cupy=True, TINYGPT_BACKEND="cupy",
              FAKE_CUPY_NO_GPU="1")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "TINYGPT_BACKEND=cupy, but CuPy finds no usable NVIDIA GPU" in lines[0]
    assert "unset TINYGPT_BACKEND" in lines[0]


def test_unknown_backend_and_dropout_generator():
    out = run(USE, TINYGPT_BACKEND="tpu")
    assert "TINYGPT_BACKEND must be 'numpy' or 'cupy', not 'tpu'" in out.stderr
    code = ("import tinygpt; from tinygpt import ops, autograd\n"
            "tinygpt.nn.functional.dropout(tinygpt.tensor([1.0, 2.0]), 0.5)")
    out = run(code, TINYGPT_BACKEND="numpy", TINYGPT_DROPOUT_RNG="mersenne")
    assert "TINYGPT_DROPOUT_RNG must be 'numpy' or 'philox', not 'mersenne'" in out.stderr


@pytest.mark.skipif(backend.BACKEND != "numpy", reason="checks the NumPy backend's answers")
def test_cuda_device_on_numpy_is_refused_with_what_to_do():
    model = tinygpt.GPTModel(CFG)
    x = np.zeros((1, 4), dtype=np.int64)
    with pytest.raises(backend.BackendError, match="set TINYGPT_BACKEND=cupy"):
        tinygpt.calc_loss_batch(x, x, model, device="cuda")
    for ok in (None, "cpu", "CPU"):
        tinygpt.calc_loss_batch(x, x, model, device=ok)
    with pytest.raises(backend.BackendError, match="unknown device 'mps'"):
        backend.check_device("mps")


def test_device_objects_are_read_by_name():
    torch = pytest.importorskip("torch")
    backend.check_device(torch.device(backend.device_name()))
    backend.check_device(tinygpt.device(backend.device_name()))
    if backend.BACKEND == "numpy":
        with pytest.raises(backend.BackendError):
            backend.check_device(torch.device("cuda"))
    else:  # the book moves its model to "cpu" to generate: the GPU keeps it, with a warning
        with pytest.warns(UserWarning, match="keeps every array on the GPU"):
            backend._warned_cpu_on_gpu = False
            backend.check_device(torch.device("cpu"))


def test_device_names():
    assert tinygpt.device("cuda:0") == "cuda:0" and tinygpt.device("cpu").type == "cpu"
    assert repr(tinygpt.device("cuda:0")) == "device(type='cuda', index=0)"
    with pytest.raises(backend.BackendError, match="one GPU"):
        if backend.BACKEND == "cupy":
            backend.check_device("cuda:1")
        else:
            raise backend.BackendError("tinygpt uses one GPU")
