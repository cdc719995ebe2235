"""Model files and training checkpoints: round trips, bad input, atomic writes, kills."""

import errno
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from safetensors import SafetensorError, safe_open

import tinygpt
import tinygpt.io.checkpoint as checkpoint_module
from tinygpt import AdamW, GPTModel
from tinygpt.backend import get_rng, get_rng_state, manual_seed
from tinygpt.errors import CheckpointError
from tinygpt.grad_mode import no_grad
from tinygpt.io.checkpoint import (
    Checkpoint,
    load_checkpoint,
    load_model,
    save_checkpoint,
    save_model,
)
from tinygpt.io.files import remove_stale_temporaries
from tinygpt.io.tf_checkpoint import crc32c
from tinygpt.train import TrainingState, calc_loss_batch

from .helpers.assertions import host

REPO = Path(__file__).resolve().parents[1]
TINY = dict(vocab_size=64, context_length=16, emb_dim=8, n_heads=2, n_layers=2, drop_rate=0.1,
            qkv_bias=True)


def train_steps(model, optimizer, steps, seed=0):
    """A few AdamW steps on random tokens, so the moments and step counts exist."""
    data = np.random.default_rng(seed)
    for _ in range(steps):
        x = data.integers(0, model.cfg["vocab_size"], (2, model.cfg["context_length"]))
        y = data.integers(0, model.cfg["vocab_size"], (2, model.cfg["context_length"]))
        optimizer.zero_grad()
        calc_loss_batch(x, y, model).backward()
        optimizer.step()


def trained(cfg=TINY, seed=1, steps=3):
    manual_seed(seed)
    model = GPTModel(cfg)
    optimizer = AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    optimizer.peak_lr = 2e-3
    train_steps(model, optimizer, steps, seed)
    state = TrainingState(epoch=1, batch_in_epoch=2, epoch_order=[2, 0, 3, 1], global_step=6,
                          tokens_seen=448, train_losses=[4.25, 4.0], val_losses=[4.5, float("nan")],
                          track_tokens_seen=[64, 384])
    return model, optimizer, state


def logits_of(model, seed=5):
    ids = np.random.default_rng(seed).integers(0, model.cfg["vocab_size"], (2, 9))
    model.eval()
    with no_grad():
        return model(ids).array.copy()


def same_floats(a, b):
    return len(a) == len(b) and all(x == y or (math.isnan(x) and math.isnan(y))
                                    for x, y in zip(a, b))


def snapshot(model=None, optimizer=None):
    """Everything load_checkpoint might touch, copied."""
    snap = {"rng": get_rng_state()}
    if model is not None:
        snap["weights"] = {k: host(v).copy() for k, v in model.state_dict().items()}
    if optimizer is not None:
        snap["moments"] = {i: (s["step"], s["exp_avg"].copy(), s["exp_avg_sq"].copy())
                           for i, s in optimizer.state.items()}
        snap["hyper"] = optimizer.hyperparameters()
        snap["peak_lr"] = getattr(optimizer, "peak_lr", None)
    return snap


def assert_unchanged(snap, model=None, optimizer=None):
    assert get_rng_state() == snap["rng"], "the random generator changed"
    if model is not None:
        now = model.state_dict()
        assert now.keys() == snap["weights"].keys()
        for k, v in snap["weights"].items():
            assert np.array_equal(host(now[k]), host(v)), f"model weight {k} changed"
    if optimizer is not None:
        assert optimizer.state.keys() == snap["moments"].keys()
        for i, (step, m, v) in snap["moments"].items():
            s = optimizer.state[i]
            assert s["step"] == step and np.array_equal(host(s["exp_avg"]), host(m))
            assert np.array_equal(host(s["exp_avg_sq"]), host(v))
        assert optimizer.hyperparameters() == snap["hyper"]
        assert getattr(optimizer, "peak_lr", None) == snap["peak_lr"]


def read_raw(path):
    with safe_open(str(path), "np") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())


def write_raw(path, tensors, metadata, fix_crc=True):
    """Write with the safetensors package, recomputing our checksums (as a writer that
    made the edit on purpose would)."""
    metadata = dict(metadata)
    if fix_crc and "tinygpt.crc32c" in metadata:
        entries = {k: (checkpoint_module._CODES[v.dtype.kind, v.dtype.itemsize], v.shape)
                   for k, v in tensors.items()}
        metadata["tinygpt.crc32c"] = json.dumps({
            "tensors": {k: crc32c(np.ascontiguousarray(v).tobytes()) for k, v in tensors.items()},
            "header": checkpoint_module._header_crc(metadata, entries),
        })
    safetensors.numpy.save_file(tensors, str(path), metadata=metadata)
    return path


def as_version_1(tensors, meta):
    """What the format-1 writer stored: a zlib CRC-32 per tensor, no header checksum."""
    meta = {k: v for k, v in meta.items() if k != "tinygpt.crc32c"}
    meta["tinygpt.format_version"] = "1"
    meta["tinygpt.crc32"] = json.dumps(
        {k: zlib.crc32(np.ascontiguousarray(v).tobytes()) for k, v in tensors.items()})
    return tensors, meta


def temp_files(folder):
    return sorted(p.name for p in Path(folder).iterdir() if ".tmp-" in p.name)


@pytest.fixture
def saved(tmp_path):
    """A tiny trained run saved as a checkpoint and as a model file."""
    model, optimizer, state = trained()
    ckpt = save_checkpoint(tmp_path / "ckpt.safetensors", model, optimizer, state,
                           extra={"batch_size": 2, "text_sha256": "ab" * 32})
    weights = save_model(model, tmp_path / "model.safetensors")
    return dict(model=model, optimizer=optimizer, state=state, ckpt=Path(ckpt),
                weights=Path(weights), rng=get_rng_state())


# --- round trips -----------------------------------------------------------------------


def test_model_file_round_trip_is_bitwise_and_gives_the_same_logits(saved):
    model = saved["model"]
    before = get_rng_state()
    loaded = load_model(saved["weights"])
    assert get_rng_state() == before, "building the model must not move the generator"
    assert loaded.cfg == model.cfg
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and a.dtype == b.dtype and np.array_equal(host(a), host(b)), k
    assert np.array_equal(host(logits_of(loaded)), host(logits_of(model)))


def test_model_file_is_plain_safetensors_with_book_keys_and_config(saved):
    tensors, meta = read_raw(saved["weights"])
    assert set(tensors) == {n for n, _ in saved["model"].named_parameters()}  # no masks
    assert "trf_blocks.0.att.W_query.bias" in tensors
    assert json.loads(meta["config"]) == saved["model"].cfg
    assert meta["tinygpt.format"] == "model" and meta["tinygpt.format_version"] == "2"


def test_load_model_converts_dtype_and_keeps_float64(tmp_path, saved):
    as64 = load_model(saved["weights"], dtype=np.float64)
    assert as64.dtype == np.float64
    path = save_model(as64, tmp_path / "m64.safetensors")
    again = load_model(path)
    assert again.dtype == np.float64
    ref = saved["model"].state_dict()
    for k, v in again.state_dict().items():
        assert np.array_equal(host(v), host(ref[k]).astype(np.float64))


def test_load_model_takes_the_weights_of_a_training_checkpoint(saved):
    loaded = load_model(saved["ckpt"])
    assert np.array_equal(host(logits_of(loaded)), host(logits_of(saved["model"])))


def test_checkpoint_round_trip_restores_everything(saved):
    model, optimizer, state = saved["model"], saved["optimizer"], saved["state"]
    manual_seed(999)  # something else: loading must bring the saved state back
    ckpt = load_checkpoint(saved["ckpt"])
    assert isinstance(ckpt, Checkpoint) and ckpt.path == str(saved["ckpt"])
    assert ckpt.config == model.cfg and ckpt.created
    assert ckpt.extra == {"batch_size": 2, "text_sha256": "ab" * 32}
    for (k, a), (k2, b) in zip(model.state_dict().items(), ckpt.model.state_dict().items()):
        assert k == k2 and a.dtype == b.dtype and np.array_equal(host(a), host(b)), k
    assert optimizer.state.keys() == ckpt.optimizer.state.keys()
    for i, s in optimizer.state.items():
        t = ckpt.optimizer.state[i]
        assert t["step"] == s["step"] == 3
        assert t["exp_avg"].dtype == s["exp_avg"].dtype
        assert np.array_equal(host(t["exp_avg"]), host(s["exp_avg"]))
        assert np.array_equal(host(t["exp_avg_sq"]), host(s["exp_avg_sq"]))
    assert ckpt.optimizer.hyperparameters() == optimizer.hyperparameters()
    assert ckpt.optimizer.peak_lr == 2e-3
    got, want = ckpt.state.to_dict(), state.to_dict()
    assert same_floats(got.pop("val_losses"), want.pop("val_losses"))  # a NaN survives too
    assert got == want
    assert ckpt.rng_state == saved["rng"] == get_rng_state()
    assert np.array_equal(host(logits_of(ckpt.model)), host(logits_of(model)))
    # the book's pair of state dicts
    assert ckpt.model_state_dict.keys() == model.state_dict().keys()
    assert ckpt.optimizer_state_dict["param_groups"] == optimizer.state_dict()["param_groups"]


def test_the_generator_continues_where_it_was_saved(tmp_path):
    model, optimizer, state = trained()
    path = save_checkpoint(tmp_path / "c.safetensors", model, optimizer, state)
    expected = get_rng().random(5)
    get_rng().random(100)
    load_checkpoint(path, model, optimizer)
    assert np.array_equal(get_rng().random(5), expected)


def test_load_into_given_model_and_optimizer_then_training_matches(saved):
    model, optimizer = saved["model"], saved["optimizer"]
    other, other_opt, _ = trained(seed=7, steps=1)
    del other_opt.peak_lr
    ckpt = load_checkpoint(saved["ckpt"], other, other_opt)
    assert ckpt.model is other and ckpt.optimizer is other_opt and other_opt.peak_lr == 2e-3
    # two more steps from there give the same weights as the original run's two more steps
    train_steps(other, other_opt, 2, seed=11)
    built = load_checkpoint(saved["ckpt"])
    train_steps(built.model, built.optimizer, 2, seed=11)
    tinygpt.set_rng_state(saved["rng"])  # where the original run's generator was at the save
    train_steps(model, optimizer, 2, seed=11)
    for k, v in model.state_dict().items():
        assert np.array_equal(host(other.state_dict()[k]), host(v)), k
        assert np.array_equal(host(built.model.state_dict()[k]), host(v)), k


def test_restore_rng_false_leaves_the_generator_alone(saved):
    manual_seed(42)
    before = get_rng_state()
    ckpt = load_checkpoint(saved["ckpt"], restore_rng=False)
    assert get_rng_state() == before
    assert ckpt.rng_state == saved["rng"]


def test_a_checkpoint_saved_before_training_restores_no_peak_lr(tmp_path):
    manual_seed(0)
    model = GPTModel(TINY)
    optimizer = AdamW(model.parameters(), lr=5e-4)
    path = save_checkpoint(tmp_path / "c.safetensors", model, optimizer, None)
    other, other_opt, _ = trained()
    ckpt = load_checkpoint(path, other, other_opt)
    assert ckpt.state.to_dict() == TrainingState().to_dict()
    assert other_opt.state == {} and other_opt.lr == 5e-4 and not hasattr(other_opt, "peak_lr")


def test_checkpoint_layout_is_readable_by_the_safetensors_package(saved):
    tensors, meta = read_raw(saved["ckpt"])
    model, optimizer = saved["model"], saved["optimizer"]
    assert meta["tinygpt.format"] == "training-checkpoint"
    for k, v in model.named_parameters():
        assert np.array_equal(tensors[f"model.{k}"], host(v))
    for i, s in optimizer.state.items():
        assert np.array_equal(tensors[f"optimizer.{i}.exp_avg"], host(s["exp_avg"]))
        assert np.array_equal(tensors[f"optimizer.{i}.exp_avg_sq"], host(s["exp_avg_sq"]))
    opt = json.loads(meta["optimizer"])
    assert opt["class"] == "AdamW" and opt["peak_lr"] == 2e-3
    assert opt["hyperparameters"] == optimizer.hyperparameters()
    assert opt["steps"] == {str(i): 3 for i in optimizer.state}
    assert json.loads(meta["rng_state"]) == saved["rng"]
    assert json.loads(meta["config"]) == model.cfg
    with open(saved["ckpt"], "rb") as f:  # data starts 8-byte aligned
        assert int.from_bytes(f.read(8), "little") % 8 == 0


# --- bad input: an error naming the file, and nothing changes ---------------------------


def _truncate(n):
    def make(good, out):
        data = good.read_bytes()
        out.write_bytes(data[:n] if n >= 0 else data[:len(data) + n])
        return out
    return make


def _bytes(content):
    def make(good, out):
        out.write_bytes(content)
        return out
    return make


def _edit(tensors_fn=None, meta_fn=None, fix_crc=True):
    def make(good, out):
        tensors, meta = read_raw(good)
        if tensors_fn:
            tensors_fn(tensors)
        if meta_fn:
            meta_fn(meta)
        return write_raw(out, tensors, meta, fix_crc)
    return make


def _flip(where):
    def make(good, out):
        data = bytearray(good.read_bytes())
        n = int.from_bytes(data[:8], "little")
        i = {"header": 8 + n // 2, "data": len(data) - 3, "length": 6}[where]
        data[i] ^= 0x5A
        out.write_bytes(bytes(data))
        return out
    return make


def _torch_like_zip(good, out):
    with zipfile.ZipFile(out, "w") as z:  # what torch.save writes: a zip holding a pickle
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    return out


def _npy(good, out):
    with open(out, "wb") as f:
        np.save(f, np.zeros(3))
    return out


def _plain_state_dict(good, out):
    manual_seed(0)
    state = {k: host(v) for k, v in GPTModel(TINY).state_dict().items()}
    safetensors.numpy.save_file(state, str(out))
    return out


def _model_file(good, out):
    return Path(str(good).replace("ckpt.", "model."))


def _set(key, value):
    def fn(meta):
        meta[key] = value
    return fn


def _edit_json(key, fn):
    def edit(meta):
        d = json.loads(meta[key])
        fn(d)
        meta[key] = json.dumps(d)
    return edit


def _tensor(name, fn):
    def edit(tensors):
        tensors[name] = fn(tensors[name])
    return edit


def _nan(a):
    a = a.copy()
    a.flat[3] = np.nan
    return a


def _inf(a):
    a = a.copy()
    a.flat[0] = np.inf
    return a


BAD_CHECKPOINTS = {
    "empty file": (_bytes(b""), "empty"),
    "cut in the length field": (_truncate(5), "truncated"),
    "cut in the header": (_truncate(40), "truncated"),
    "cut in the data": (_truncate(-1000), "truncated"),
    "one byte short": (_truncate(-1), "truncated"),
    "trailing garbage": (lambda g, o: _bytes(g.read_bytes() + b"junk")(g, o), "unexpected bytes"),
    "random bytes": (_bytes(bytes(np.random.default_rng(1).integers(0, 256, 4000, np.uint8))),
                     "not a safetensors file"),
    "a pickle": (_bytes(b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01s."),
                 "pickle"),
    "a torch.save zip": (_torch_like_zip, "zip archive"),
    "a .npy file": (_npy, ".npy"),
    "a text file": (_bytes(b"model_state_dict = {...}\n" * 10), "text file"),
    "flipped byte in the header": (_flip("header"), "corrupted"),
    "flipped byte in the data": (_flip("data"), "checksum"),
    "flipped byte in the length": (_flip("length"), "safetensors"),
    "plain safetensors state dict": (_plain_state_dict, "not a training checkpoint written by"),
    "a model file": (_model_file, "this is a model file, not a training checkpoint"),
    "wrong shape": (_edit(_tensor("model.tok_emb.weight", lambda a: np.zeros((65, 8), a.dtype))),
                    "shape"),
    "moment of wrong shape": (_edit(_tensor("optimizer.0.exp_avg", lambda a: a[:10])), "shape"),
    "float64 tensor": (_edit(_tensor("model.final_norm.scale", lambda a: a.astype(np.float64))),
                       "dtype"),
    "integer tensor": (_edit(_tensor("model.pos_emb.weight", lambda a: a.astype(np.int32))),
                       "dtype"),
    "NaN weight": (_edit(_tensor("model.out_head.weight", _nan)), "NaN"),
    "infinite moment": (_edit(_tensor("optimizer.2.exp_avg_sq", _inf)), "infinite"),
    "missing moment": (_edit(lambda t: t.pop("optimizer.1.exp_avg")), "missing"),
    "missing weight": (_edit(lambda t: t.pop("model.final_norm.shift")), "missing"),
    "extra tensor": (_edit(lambda t: t.update({"model.spare": np.zeros(2, np.float32)})),
                     "unexpected"),
    "another optimizer": (
        _edit(meta_fn=_edit_json("optimizer", lambda d: d.update({"class": "SGD"}))), "SGD"),
    "config not matching the tensors": (
        _edit(meta_fn=_edit_json("config", lambda d: d.update(emb_dim=12))), "config"),
    "invalid config": (_edit(meta_fn=_edit_json("config", lambda d: d.pop("n_heads"))), "config"),
    "newer format": (_edit(meta_fn=_set("tinygpt.format_version", "3")), "newer tinygpt"),
    "bad generator state": (
        _edit(meta_fn=_set("rng_state", json.dumps({"bit_generator": "MT19937", "state": 1}))),
        "random generator state"),
    "bad training state": (
        _edit(meta_fn=_edit_json("training_state", lambda d: d.update(epoch=-1))),
        "training state"),
    "bad epoch order": (
        _edit(meta_fn=_edit_json("training_state", lambda d: d.update(epoch_order=[0, 0, 1]))),
        "permutation"),
    "bad hyper-parameters": (
        _edit(meta_fn=_edit_json("optimizer", lambda d: d["hyperparameters"].update(lr=-1.0))),
        "hyper-parameters"),
    "metadata not JSON": (_edit(meta_fn=_set("optimizer", "{not json")), "not valid JSON"),
    "stale checksum": (_edit(_tensor("model.out_head.weight", lambda a: a * 2), fix_crc=False),
                       "checksum"),
    # the training state is covered by the header checksum too
    "one more train loss": (_edit(meta_fn=_edit_json(
        "training_state", lambda d: d["train_losses"].append(3.5)), fix_crc=False), "checksum"),
    "edited step": (_edit(meta_fn=_edit_json(
        "training_state", lambda d: d.update(global_step=7)), fix_crc=False), "checksum"),
    "edited settings": (_edit(meta_fn=_edit_json(
        "extra", lambda d: d.update(batch_size=4)), fix_crc=False), "checksum"),
    "edited generator state": (_edit(meta_fn=_edit_json(
        "rng_state", lambda d: d["state"].update(inc=1)), fix_crc=False), "checksum"),
    "reshaped tensor": (_edit(_tensor("model.final_norm.scale", lambda a: a.reshape(1, -1)),
                              fix_crc=False), "checksum"),
    "checksums stripped": (_edit(meta_fn=lambda m: m.pop("tinygpt.crc32c")), "missing"),
    "a tensor's checksum stripped": (_edit(meta_fn=_edit_json(
        "tinygpt.crc32c", lambda d: d["tensors"].pop("model.out_head.weight")), fix_crc=False),
        "malformed"),
}


@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_bad_checkpoint_raises_naming_the_file_and_changes_nothing(tmp_path, saved, case):
    make, words = BAD_CHECKPOINTS[case]
    bad = make(saved["ckpt"], tmp_path / "bad.safetensors")
    model, optimizer, _ = trained(seed=3, steps=2)
    snap = snapshot(model, optimizer)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad, model, optimizer)
    message = str(info.value)
    assert str(bad) in message and words in message, message
    assert_unchanged(snap, model, optimizer)
    # building the model and optimizer from the file fails the same way, generator untouched
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    assert str(bad) in str(info.value)
    assert_unchanged(snap)


def test_an_edited_loss_history_names_the_file_and_says_why(tmp_path, saved):
    """One extra train_losses entry, no other change, is refused as corruption."""
    bad = BAD_CHECKPOINTS["one more train loss"][0](saved["ckpt"], tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    assert info.value.path == str(bad) and str(bad) in str(info.value)
    assert "metadata" in info.value.problem and "edited or damaged" in info.value.problem


def test_a_version_1_file_is_refused(tmp_path, saved):
    """Only the current format is read: a file tagged version 1 (a zlib CRC-32 per tensor,
    no header checksum) is a CheckpointError naming the file and the version."""
    for name, load in (("ckpt", load_checkpoint), ("weights", load_model)):
        v1 = write_raw(tmp_path / f"v1-{name}.safetensors", *as_version_1(*read_raw(saved[name])))
        with pytest.raises(CheckpointError, match="format version 1") as info:
            load(v1)
        assert str(v1) in str(info.value)


def _raw_file(header, data=b""):
    """A file with this header (a dict, or raw JSON bytes) and data, made byte by byte."""
    def make(path):
        blob = header if isinstance(header, bytes) else json.dumps(header).encode()
        path.write_bytes(len(blob).to_bytes(8, "little") + blob + data)
        return path
    return make


def _tensor_entry(shape, dtype="F32", nbytes=0):
    return {"dtype": dtype, "shape": shape, "data_offsets": [0, nbytes]}


_DEEP = "[" * 100_000 + "]" * 100_000
HOSTILE_FILES = {
    "shape [2^62, 2^62, 0]": _raw_file({"w": _tensor_entry([2**62, 2**62, 0])}),
    "shape [0, 2^62, 2^62]": _raw_file({"w": _tensor_entry([0, 2**62, 2**62])}),
    "65 dimensions": _raw_file({"w": _tensor_entry([1] * 65, nbytes=4)}, bytes(4)),
    "true in a shape": _raw_file({"w": _tensor_entry([True, 2], nbytes=8)}, bytes(8)),
    "header nested 100k deep": _raw_file(_DEEP.encode()),
    "tensor entry nested 100k deep": _raw_file(f'{{"w": {_DEEP}}}'.encode()),
    "metadata nested 100k deep": _raw_file({"__metadata__": {
        "tinygpt.format": "model", "tinygpt.format_version": "2", "config": _DEEP,
        "tinygpt.object": _DEEP, "tinygpt.object_version": "1"}}),
    "bfloat16": _raw_file({"w": _tensor_entry([2], "BF16", 4)}, bytes(4)),
}


@pytest.mark.parametrize("case", list(HOSTILE_FILES))
def test_hostile_headers_end_in_one_clear_error(tmp_path, case):
    """Never a RecursionError, TypeError or a huge allocation: a CheckpointError naming it."""
    path = HOSTILE_FILES[case](tmp_path / "hostile.safetensors")
    for load in (load_model, load_checkpoint, tinygpt.load):
        with pytest.raises(CheckpointError) as info:
            load(path)
        assert str(path) in str(info.value), (load.__name__, str(info.value))


# name -> (make, words, which good file to damage)
BAD_MODEL_FILES = {
    name: (*BAD_CHECKPOINTS[name], "ckpt")
    for name in ("empty file", "cut in the header", "cut in the data", "a pickle",
                 "a torch.save zip", "wrong shape", "float64 tensor", "NaN weight",
                 "config not matching the tensors", "newer format", "missing weight")
}
BAD_MODEL_FILES["plain safetensors state dict"] = (_plain_state_dict, "bare tinygpt/book state",
                                                   "ckpt")
BAD_MODEL_FILES["flipped byte in the data"] = (_flip("data"), "checksum", "weights")
BAD_MODEL_FILES["one byte short"] = (_truncate(-1), "truncated", "weights")


@pytest.mark.parametrize("case", list(BAD_MODEL_FILES))
def test_bad_model_file_raises_naming_the_file(tmp_path, saved, case):
    make, words, source = BAD_MODEL_FILES[case]
    bad = make(saved[source], tmp_path / "bad.safetensors")
    before = get_rng_state()
    with pytest.raises(CheckpointError) as info:
        load_model(bad)
    assert str(bad) in str(info.value) and words in str(info.value), str(info.value)
    assert get_rng_state() == before


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.safetensors"
    for load in (load_checkpoint, load_model):
        with pytest.raises(FileNotFoundError, match="nope.safetensors"):
            load(path)


def test_a_folder_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="folder"):
        load_checkpoint(tmp_path)


def _other_config_model():
    manual_seed(2)
    return GPTModel(dict(TINY, emb_dim=12))


def _other_drop_rate_model():
    manual_seed(2)
    return GPTModel(dict(TINY, drop_rate=0.0))


def _float64_model():
    manual_seed(2)
    return GPTModel(TINY, dtype=np.float64)


@pytest.mark.parametrize("make_model, words", [
    (_other_config_model, "another config"),
    (_other_drop_rate_model, "drop_rate"),
    (_float64_model, "float64"),
])
def test_a_model_that_does_not_match_is_refused(saved, make_model, words):
    model = make_model()
    optimizer = AdamW(model.parameters())
    train_steps(model, optimizer, 1)
    snap = snapshot(model, optimizer)
    with pytest.raises(CheckpointError, match=words) as info:
        load_checkpoint(saved["ckpt"], model, optimizer)
    assert str(saved["ckpt"]) in str(info.value)
    assert_unchanged(snap, model, optimizer)


class NotAdam:
    def __init__(self, params):
        self.params = list(params)
        self.state = {}

    def hyperparameters(self):
        return {}


@pytest.mark.parametrize("make_optimizer, words", [
    (lambda model: NotAdam(model.parameters()), "NotAdam"),
    (lambda model: AdamW(list(model.parameters())[:-1]), "parameters"),
    (lambda model: AdamW(trained(seed=9, steps=0)[0].parameters()), "in order"),
])
def test_an_optimizer_that_does_not_match_is_refused(saved, make_optimizer, words):
    model, _, _ = trained(seed=3, steps=1)
    optimizer = make_optimizer(model)
    snap = snapshot(model)
    with pytest.raises(CheckpointError, match=words) as info:
        load_checkpoint(saved["ckpt"], model, optimizer)
    assert str(saved["ckpt"]) in str(info.value)
    assert_unchanged(snap, model)
    assert optimizer.state == {}


def test_an_optimizer_without_its_model_is_a_usage_error(saved):
    _, optimizer, _ = trained()
    with pytest.raises(ValueError, match="model"):
        load_checkpoint(saved["ckpt"], optimizer=optimizer)


# --- saving: refuse bad input, never damage the previous file ----------------------------


def test_saving_a_diverged_model_is_refused_and_keeps_the_old_file(saved):
    model, optimizer, state = saved["model"], saved["optimizer"], saved["state"]
    before = saved["ckpt"].read_bytes()
    model.out_head.weight.data[0, 0] = np.nan
    with pytest.raises(CheckpointError, match="NaN") as info:
        save_checkpoint(saved["ckpt"], model, optimizer, state)
    assert str(saved["ckpt"]) in str(info.value)
    with pytest.raises(CheckpointError, match="NaN"):
        save_model(model, saved["weights"])
    assert saved["ckpt"].read_bytes() == before
    assert temp_files(saved["ckpt"].parent) == []


def test_save_input_errors(tmp_path, saved):
    model, optimizer, state = saved["model"], saved["optimizer"], saved["state"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_checkpoint(tmp_path / "no" / "such" / "c.safetensors", model, optimizer, state)
    with pytest.raises(CheckpointError, match="JSON"):
        save_checkpoint(tmp_path / "c.safetensors", model, optimizer, state, extra={"f": open})
    other = AdamW(trained(seed=4, steps=0)[0].parameters())
    with pytest.raises(CheckpointError, match="in order"):
        save_checkpoint(tmp_path / "c.safetensors", model, other, state)
    with pytest.raises(CheckpointError, match="AdamW"):
        save_checkpoint(tmp_path / "c.safetensors", model, NotAdam(model.parameters()), state)
    with pytest.raises(CheckpointError, match="GPTModel"):
        save_model(object(), tmp_path / "m.safetensors")
    assert not (tmp_path / "c.safetensors").exists() and temp_files(tmp_path) == []


_LIBRARY_ENOSPC = SafetensorError(
    'Error while serializing: I/O error: No space left on device (os error 28) at path "x"')


@pytest.mark.parametrize("failure", [
    OSError(errno.ENOSPC, "No space left on device"),
    _LIBRARY_ENOSPC,  # how the safetensors library reports a full disk
    KeyboardInterrupt(),
])
def test_a_failed_write_leaves_the_previous_file_and_no_temporary(saved, monkeypatch, failure):
    """A full disk (or Ctrl-C) half-way through writing the file."""
    model, optimizer, state = saved["model"], saved["optimizer"], saved["state"]
    before = saved["ckpt"].read_bytes()
    train_steps(model, optimizer, 1, seed=8)  # new content that would replace it
    real = safetensors.numpy.save_file

    def fail_half_way(tensors, filename, metadata=None):
        real(dict(list(tensors.items())[: len(tensors) // 2]), filename, metadata=metadata)
        raise failure

    monkeypatch.setattr(safetensors.numpy, "save_file", fail_half_way)
    expected = OSError if failure is _LIBRARY_ENOSPC else type(failure)
    with pytest.raises(expected) as info:
        save_checkpoint(saved["ckpt"], model, optimizer, state)
    if expected is OSError:
        assert info.value.errno == errno.ENOSPC and str(saved["ckpt"]) in str(info.value)
        assert "previous file there is unchanged" in str(info.value)
    assert saved["ckpt"].read_bytes() == before
    assert temp_files(saved["ckpt"].parent) == []
    monkeypatch.undo()
    load_checkpoint(saved["ckpt"])  # still good


def test_saved_files_get_the_usual_permissions(tmp_path, saved):
    """The library writes through a 0600 temporary file; ours follow the umask."""
    umask = os.umask(0o022)
    try:
        path = save_model(saved["model"], tmp_path / "m.safetensors")
    finally:
        os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o644


# --- a process killed while writing -------------------------------------------------------

KILL_CHILD = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
import tinygpt, tinygpt.io.checkpoint as ck
from tinygpt.io.checkpoint import save_checkpoint
path, pause_at = sys.argv[2], int(sys.argv[3])
tinygpt.manual_seed(0)
cfg = dict(vocab_size=50257, context_length=64, emb_dim=48, n_heads=2, n_layers=2,
           drop_rate=0.1, qkv_bias=False)
model = tinygpt.GPTModel(cfg)
opt = tinygpt.AdamW(model.parameters())
for i, p in enumerate(opt.params):
    opt.state[i] = {"step": 1, "exp_avg": p.array.copy(), "exp_avg_sq": p.array.copy()}
real = ck._save_file
iteration = [0]
def write(tmp, tensors, metadata):
    real(tmp, tensors, metadata)
    if iteration[0] != pause_at:
        return
    # what a kill half-way through leaves: the library sizes its file first, so the
    # half not yet written reads as zeros
    size = os.path.getsize(tmp)
    with open(tmp, "r+b") as f:
        f.seek(size // 2)
        f.write(bytes(size - size // 2))
    print("MID", flush=True)
    time.sleep(60)
ck._save_file = write
start = int(sys.argv[4])
for i in range(start, start + 10_000):
    iteration[0] = i
    for p in model.parameters():
        p.data[...] = float(i)
    for s in opt.state.values():
        s["step"] = i + 1
        s["exp_avg"][...] = float(i)
        s["exp_avg_sq"][...] = float(i)
    save_checkpoint(path, model, opt, None, extra={"i": i})
    print(i, flush=True)
"""


def _start_child(path, pause_at, start):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(REPO), str(path),
                             str(pause_at), str(start)],
                            stdout=subprocess.PIPE, text=True, env=env)


def _check_intact(path, possible):
    ckpt = load_checkpoint(path)
    i = ckpt.extra["i"]
    assert i in possible, (i, possible)
    for name, value in ckpt.model.named_parameters():
        assert (value == i).all(), name  # all of one save, none of a later one
    for s in ckpt.optimizer.state.values():
        assert s["step"] == i + 1 and (s["exp_avg"] == i).all() and (s["exp_avg_sq"] == i).all()
    return i


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_killing_the_writer_never_damages_the_checkpoint(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    # 1. killed in the middle of the very first save: no checkpoint at all, not half of one
    child = _start_child(path, pause_at=0, start=0)
    try:
        assert child.stdout.readline().strip() == "MID"
        assert temp_files(tmp_path), "the child should be writing its temporary file"
    finally:
        child.kill()
        child.wait()
    assert not path.exists()

    # 2. killed mid-write (paused there on purpose), and 3. at random moments
    rounds = [("mid-write", 2)] * 2 + [("random", None)] * 4
    chooser = random.Random(1234)
    start = 0
    for kind, pause_offset in rounds:
        pause_at = start + pause_offset if kind == "mid-write" else -1
        child = _start_child(path, pause_at, start)
        done = []
        try:
            while len(done) < 2:  # at least one complete save of this child
                line = child.stdout.readline().strip()
                assert line and line != "MID", f"child ended early: {line!r}"
                done.append(int(line))
            if kind == "mid-write":
                while (line := child.stdout.readline().strip()) != "MID":
                    done.append(int(line))
            else:
                time.sleep(chooser.uniform(0.0, 0.4))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        rest = child.stdout.read().split()
        done += [int(x) for x in rest if x != "MID"]
        possible = {done[-1]} if kind == "mid-write" else {done[-1], done[-1] + 1}
        last = _check_intact(path, possible)
        start = last + 1
        # a stray temporary file is hidden and never named like a checkpoint
        assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == [path.name]
        strays = temp_files(tmp_path)
        assert all(name.startswith(f".{path.name}.tmp-") for name in strays)
        if kind == "mid-write":  # and the half-written one is refused
            newest = max(strays, key=lambda n: (tmp_path / n).stat().st_mtime_ns)
            half = [p for p in (tmp_path / newest).iterdir() if p.stat().st_size > 0]
            assert half, "the killed write's folder should hold its half-written file"
            for partial in half:
                with pytest.raises(CheckpointError, match="checksum|truncated"):
                    load_checkpoint(partial)
        # what the killed writes left is one private folder each, which a run removes
        assert sorted(map(Path, remove_stale_temporaries(tmp_path, [path.name]))) == sorted(
            tmp_path / name for name in strays)
        assert not temp_files(tmp_path)


def test_public_names():
    for name in checkpoint_module.__all__:
        assert hasattr(checkpoint_module, name)
    assert issubclass(CheckpointError, ValueError)
    assert tinygpt.GPTModel is GPTModel
