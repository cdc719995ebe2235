"""Hostile model files and checkpoints: a file's size fields are not trusted.
The config in a file is checked against its tensors' names and shapes, from the header,
before any data is read or any model built, so loading costs what the file holds; a
dtype that would change the weights is refused; a failure changes nothing. Tests are
named after the failure they guard against: an unbounded allocation, a silent wrong
result, a change on error, an unclear error.

The hostile files are *re-signed*: written through the same writer, so their checksums
hold and the checks behind them are what is tested (an edit anyone can make)."""

import json
import resource
import time
import tracemalloc

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

import tinygpt
from tinygpt.backend import get_rng_state, manual_seed
from tinygpt.errors import CheckpointError
from tinygpt.io import checkpoint as ckpt_io
from tinygpt.io.checkpoint import (
    gpt_state_shapes,
    load_checkpoint,
    load_model,
    save_checkpoint,
    save_model,
)
from tinygpt.model import GPTModel
from tinygpt.optim import AdamW
from tinygpt.train import TrainingState

CFG = {"vocab_size": 64, "context_length": 16, "emb_dim": 16, "n_heads": 2, "n_layers": 2,
       "drop_rate": 0.0, "qkv_bias": False}

# Each claims far more than the file holds: gigabytes, or a loop of 10**9 layers.
HUGE_CONFIGS = {
    "emb_dim 8192": {"emb_dim": 8192, "n_heads": 8},
    "n_layers 20000": {"n_layers": 20000},
    "n_layers 10**9": {"n_layers": 10**9},
    "vocab_size 2**40": {"vocab_size": 2**40},
    "context_length 10**9": {"context_length": 10**9},
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile-model-files")
    manual_seed(0)
    model = GPTModel(CFG)
    optimizer = AdamW(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad = tinygpt.full(tuple(p.shape), 0.5)  # on the backend, as torch wants a Tensor
    optimizer.step()
    paths = {"model": folder / "model.safetensors", "checkpoint": folder / "ckpt.safetensors"}
    save_model(model, paths["model"])
    save_checkpoint(paths["checkpoint"], model, optimizer, TrainingState())
    return paths


def _resign(src, dst, metadata=None, tensors=None):
    """``src`` rewritten with ``metadata`` entries replaced (JSON values as dicts, updated;
    None: dropped) and ``tensors`` replaced, with fresh checksums."""
    with safe_open(str(src), framework="numpy") as f:
        meta = dict(f.metadata())
    arrays = dict(load_file(str(src)))
    for key, value in (metadata or {}).items():
        if value is None:
            meta.pop(key)
        elif isinstance(value, dict):
            meta[key] = json.dumps(dict(json.loads(meta[key]), **value))
        else:
            meta[key] = value
    for name, array in (tensors or {}).items():
        if array is None:
            arrays.pop(name)
        else:
            arrays[name] = array
    meta.pop(ckpt_io.CRC_KEY)
    ckpt_io._write_safetensors(str(dst), arrays, meta)
    return dst


class _Bounded:
    """The block's time, and its peak of Python and NumPy allocations (tracemalloc); the
    address space is capped meanwhile (Linux), so a regression fails, not the machine."""

    def __init__(self, extra_bytes=1 << 30):
        self.extra = extra_bytes

    def __enter__(self):
        self.limits = resource.getrlimit(resource.RLIMIT_AS)
        try:
            with open("/proc/self/status") as f:
                vm = next(int(line.split()[1]) for line in f if line.startswith("VmSize:"))
            resource.setrlimit(resource.RLIMIT_AS, (vm * 1024 + self.extra, self.limits[1]))
        except (OSError, ValueError, StopIteration):
            pass
        tracemalloc.start()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.started
        self.peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        resource.setrlimit(resource.RLIMIT_AS, self.limits)


def test_gpt_state_shapes_are_the_models():
    for cfg in (CFG, dict(CFG, qkv_bias=True, n_layers=3), dict(CFG, n_layers=1, emb_dim=8)):
        model = GPTModel(cfg)
        assert list(gpt_state_shapes(cfg)) == [
            (k, tuple(v.shape)) for k, v in model.named_parameters()]


# --- an unbounded allocation: the config's sizes trusted before the tensors --------------


@pytest.mark.parametrize("override", list(HUGE_CONFIGS.values()), ids=list(HUGE_CONFIGS))
def test_unbounded_memory_config_larger_than_tensors_load_model(files, tmp_path, override):
    path = _resign(files["model"], tmp_path / "m.safetensors", {"config": override})
    with _Bounded() as b, pytest.raises(CheckpointError) as info:
        load_model(path)
    assert str(path) in str(info.value)
    assert "do not fit the model config" in str(info.value)
    assert b.seconds < 2 and b.peak < 2 << 20, (b.seconds, b.peak)


@pytest.mark.parametrize("override", list(HUGE_CONFIGS.values()), ids=list(HUGE_CONFIGS))
def test_unbounded_memory_config_larger_than_tensors_load_checkpoint(files, tmp_path,
                                                                     override):
    path = _resign(files["checkpoint"], tmp_path / "c.safetensors", {"config": override})
    for load in (load_checkpoint, load_model):
        with _Bounded() as b, pytest.raises(CheckpointError) as info:
            load(path)
        assert str(path) in str(info.value)
        assert "do not fit the model config" in str(info.value)
        assert b.seconds < 2 and b.peak < 2 << 20, (load, b.seconds, b.peak)


def test_unbounded_memory_config_larger_than_tensors_no_tensors_at_all(tmp_path):
    # the 240-byte file: a config of emb_dim 8192 and not one tensor
    path = tmp_path / "tiny.safetensors"
    ckpt_io._write_safetensors(str(path), {}, {
        ckpt_io.FORMAT_KEY: "model", ckpt_io.VERSION_KEY: "2",
        "config": json.dumps(dict(CFG, emb_dim=8192, n_heads=8, n_layers=20000))})
    assert path.stat().st_size < 400
    with _Bounded() as b, pytest.raises(CheckpointError, match="'tok_emb.weight' is missing"):
        load_model(path)
    assert b.seconds < 1 and b.peak < 1 << 20


def test_unbounded_memory_config_checked_before_any_data_is_read(files, tmp_path):
    # a shape that does not fit the config is reported even though a tensor's bytes are
    # damaged too: the header is checked before any data is read
    path = _resign(files["model"], tmp_path / "m.safetensors",
                   tensors={"final_norm.scale": np.ones((2, 8), np.float32)})
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"'final_norm.scale' has shape \(2, 8\), the "
                       r"config implies \(16,\)"):
        load_model(path)


def test_unbounded_memory_transposed_tensor_refused_before_the_model_is_built(files, tmp_path):
    # the same bytes under a transposed shape: the sizes add up, the shapes do not
    weight = load_file(str(files["model"]))["trf_blocks.0.ff.layers.0.weight"]
    path = _resign(files["model"], tmp_path / "m.safetensors",
                   tensors={"trf_blocks.0.ff.layers.0.weight": np.ascontiguousarray(weight.T)})
    with pytest.raises(CheckpointError, match=r"has shape \(16, 64\), the config implies"):
        load_model(path)


def test_unclear_error_checkpoint_moment_shape_from_header(files, tmp_path):
    moment = load_file(str(files["checkpoint"]))["optimizer.7.exp_avg"]
    path = _resign(files["checkpoint"], tmp_path / "c.safetensors",
                   tensors={"optimizer.7.exp_avg": moment.reshape(1, -1)})
    with pytest.raises(CheckpointError, match=r"'optimizer.7.exp_avg' has shape \(1, 1024\), "
                       r"its parameter \(64, 16\)") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


# --- a silent wrong result: a dtype that changes the weights ------------------------------


@pytest.mark.parametrize("dtype", ["int32", "bool", "complex64", np.int64, "float16", int,
                                   "not a dtype"])
def test_silent_wrong_result_load_model_integer_dtype(files, dtype):
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        load_model(files["model"], dtype=dtype)


@pytest.mark.parametrize("dtype", ["float64", np.float64, float, "float32"])
def test_silent_wrong_result_load_model_float_dtype_converts_exactly(files, dtype):
    saved = load_file(str(files["model"]))
    model = load_model(files["model"], dtype=dtype)
    for name, value in model.named_parameters():
        array = np.asarray(value.data)
        assert array.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(array, saved[name].astype(array.dtype))


# --- a change on error: the optimizer refused after the model was loaded ------------------


@pytest.mark.parametrize("edit", ["negative exp_avg_sq", "step 10**30"])
def test_changed_on_error_optimizer_state_refused_leaves_model_unchanged(files, tmp_path, edit):
    if edit == "step 10**30":
        with safe_open(str(files["checkpoint"]), framework="numpy") as f:
            meta = json.loads(f.metadata()["optimizer"])
        meta["steps"]["3"] = 10**30
        path = _resign(files["checkpoint"], tmp_path / "c.safetensors",
                       {"optimizer": json.dumps(meta)})
    else:
        moment = load_file(str(files["checkpoint"]))["optimizer.3.exp_avg_sq"]
        path = _resign(files["checkpoint"], tmp_path / "c.safetensors",
                       tensors={"optimizer.3.exp_avg_sq": -1.0 - moment})
    manual_seed(5)
    model = GPTModel(CFG)
    optimizer = AdamW(model.parameters(), lr=1e-3)
    before = {k: np.array(v.data) for k, v in model.state_dict().items()}
    rng_before = get_rng_state()
    with pytest.raises(CheckpointError, match="AdamW refuses") as info:
        load_checkpoint(path, model, optimizer)
    assert str(path) in str(info.value)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(np.asarray(v.data), before[k])
    assert optimizer.state == {} and get_rng_state() == rng_before


@pytest.mark.parametrize("peak_lr", [None, "x", float("nan"), -1.0, True])
def test_unclear_error_checkpoint_bad_or_missing_peak_lr(files, tmp_path, peak_lr):
    with safe_open(str(files["checkpoint"]), framework="numpy") as f:
        meta = json.loads(f.metadata()["optimizer"])
    if peak_lr is None:
        del meta["peak_lr"]
    else:
        meta["peak_lr"] = peak_lr
    path = _resign(files["checkpoint"], tmp_path / "c.safetensors",
                   {"optimizer": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="metadata 'optimizer' is malformed"):
        load_checkpoint(path)


# --- a silent wrong result: tinygpt.load of a saved None ----------------------------------


def test_silent_wrong_result_load_of_saved_none(tmp_path):
    path = tmp_path / "none.pth"
    tinygpt.save(None, path)
    assert tinygpt.load(path) is None  # (it came back as {}, a plain file's empty dict)
    other = tmp_path / "none-with-tensor.pth"
    _resign(_save_tensor(tmp_path), other, {"tinygpt.object": "null"})
    with pytest.raises(CheckpointError, match="belongs to no part of the object"):
        tinygpt.load(other)


def _save_tensor(tmp_path):
    path = tmp_path / "t.pth"
    tinygpt.save({"w": np.arange(3, dtype=np.float32)}, path)
    return path
