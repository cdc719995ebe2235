"""tinygpt.io.serialization: torch.save / torch.load as safetensors; round trips, names,
refusals."""

import json
import math
import os
import pickle

import numpy as np
import pytest
import safetensors.numpy
from safetensors import safe_open

import tinygpt
from tinygpt import AdamW, GPTModel
from tinygpt.backend import BACKEND, BackendError, device_name
from tinygpt.errors import CheckpointError
from tinygpt.io.checkpoint import save_model
from tinygpt.io.serialization import OBJECT_KEY, load, save
from tinygpt.nn import Linear
from tinygpt.tensor import Tensor
from tinygpt.train import calc_loss_batch

from .helpers.assertions import host

TINY = dict(vocab_size=64, context_length=16, emb_dim=8, n_heads=2, n_layers=2, drop_rate=0.1,
            qkv_bias=True)


def _array(shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def assert_same(got, expected, where="obj"):
    """Same nesting, same container and key types, same numbers; tensors equal in dtype,
    shape and bits (NaN included) and returned as tinygpt Tensors."""
    if isinstance(expected, (Tensor, np.ndarray)):
        assert isinstance(got, Tensor), f"{where}: {type(got).__name__}, expected a Tensor"
        want = host(expected)
        have = host(got)
        assert have.dtype == want.dtype, f"{where}: dtype {have.dtype} != {want.dtype}"
        assert have.shape == want.shape, f"{where}: shape {have.shape} != {want.shape}"
        assert np.array_equal(have, want, equal_nan=want.dtype.kind == "f"), where
        return
    assert type(got) is type(expected), f"{where}: {type(got).__name__} != {type(expected)}"
    if isinstance(expected, dict):
        assert list(got) == list(expected), f"{where}: keys {list(got)} != {list(expected)}"
        for (k, v), k2 in zip(expected.items(), got):
            assert type(k2) is type(k), f"{where}: key {k2!r} is {type(k2).__name__}"
            assert_same(got[k], v, f"{where}[{k!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected), where
        for i, (a, b) in enumerate(zip(got, expected)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(got), where
    else:
        assert got == expected, f"{where}: {got!r} != {expected!r}"
        if isinstance(expected, float):
            assert math.copysign(1.0, got) == math.copysign(1.0, expected), where


def _state_dict():
    return {
        "tok_emb.weight": Tensor(_array((5, 4), seed=1)),
        "trf_blocks.0.att.W_query.weight": Tensor(_array((4, 4), seed=2)),
        "final_norm.scale": Tensor(np.ones(4, np.float32)),
        "out_head.weight": Tensor(_array((5, 4), seed=3)),
    }


def _optimizer_state_dict():
    """Torch's AdamW.state_dict() shape, built by hand."""
    return {
        "state": {
            0: {"step": 3, "exp_avg": Tensor(_array((5, 4), seed=4)),
                "exp_avg_sq": Tensor(np.abs(_array((5, 4), seed=5)))},
            1: {"step": 3, "exp_avg": Tensor(_array(4, seed=6)),
                "exp_avg_sq": Tensor(np.abs(_array(4, seed=7)))},
        },
        "param_groups": [{"lr": 4e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.1,
                          "amsgrad": False, "foreach": None, "params": [0, 1]}],
    }


# --- round trips ---------------------------------------------------------------------------


def test_flat_state_dict_round_trip_with_a_pth_name(tmp_path):
    sd = _state_dict()
    save(sd, tmp_path / "model.pth")
    assert_same(load(tmp_path / "model.pth"), sd)
    assert_same(load(str(tmp_path / "model.pth"), map_location=device_name(),
                     weights_only=True), sd)


def test_flat_file_is_a_plain_safetensors_state_dict(tmp_path):
    sd = _state_dict()
    save(sd, tmp_path / "model.pth")
    plain = safetensors.numpy.load_file(tmp_path / "model.pth")
    assert sorted(plain) == sorted(sd)
    for name, tensor in sd.items():
        assert np.array_equal(plain[name], host(tensor)), name
    with safe_open(tmp_path / "model.pth", framework="np") as f:
        assert sorted(f.keys()) == sorted(sd)


def test_model_and_optimizer_round_trip_with_book_names(tmp_path):
    obj = {"model_state_dict": _state_dict(), "optimizer_state_dict": _optimizer_state_dict()}
    path = tmp_path / "model_and_optimizer.pth"
    save(obj, path)
    checkpoint = load(path, weights_only=True)
    assert_same(checkpoint, obj)
    group = checkpoint["optimizer_state_dict"]["param_groups"][0]
    assert group["betas"] == (0.9, 0.999) and isinstance(group["betas"], tuple)
    assert list(checkpoint["optimizer_state_dict"]["state"]) == [0, 1]
    names = set(safetensors.numpy.load_file(path))
    assert "model_state_dict.tok_emb.weight" in names
    assert "optimizer_state_dict.state.0.exp_avg" in names
    assert "optimizer_state_dict.state.1.exp_avg_sq" in names


def test_plain_data_leaves_round_trip(tmp_path):
    obj = {
        "none": None, "true": True, "false": False, "int": 3, "big": 2**80, "neg": -7,
        "float": 0.1, "whole_float": 4.0, "minus_zero": -0.0, "nan": math.nan,
        "inf": math.inf, "-inf": -math.inf, "str": "Every effort moves you", "unicode": "é ☃ \n",
        "empty_str": "", "empty_list": [], "empty_tuple": (), "empty_dict": {},
        "nested": [(1, [2, (3,)]), {"a": (None, "x")}],
        7: "int key", -1: [0.5], "7": "str key",
    }
    save(obj, tmp_path / "data.pth")
    assert_same(load(tmp_path / "data.pth"), obj)
    assert safetensors.numpy.load_file(tmp_path / "data.pth") == {}


def test_numpy_scalars_come_back_as_python_numbers(tmp_path):
    save({"a": np.float32(1.5), "b": np.int64(3), "c": np.bool_(True), "d": np.float64(-0.25),
          np.int64(5): "numpy int key"}, tmp_path / "s.pth")
    assert_same(load(tmp_path / "s.pth"),
                {"a": 1.5, "b": 3, "c": True, "d": -0.25, 5: "numpy int key"})


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int64, np.int32,
                                   np.uint8, np.bool_])
def test_tensor_dtypes_are_kept(tmp_path, dtype):
    values = (_array((3, 2), np.float64) * 10).astype(dtype)
    save({"t": Tensor(values), "raw": values}, tmp_path / "t.pth")
    got = load(tmp_path / "t.pth")
    assert_same(got, {"t": values, "raw": values})


def test_zero_d_empty_and_non_finite_tensors(tmp_path):
    obj = {
        "scalar": Tensor(np.array(2.5, np.float32)),
        "scalar_int": np.array(7, np.int64),
        "empty": Tensor(np.zeros((0, 3), np.float32)),
        "empty_int": np.zeros(0, np.int64),
        "non_finite": Tensor(np.array([np.nan, np.inf, -np.inf, 1.0], np.float32)),
    }
    save(obj, tmp_path / "t.pth")
    got = load(tmp_path / "t.pth")
    assert_same(got, obj)
    assert got["scalar"].shape == () and got["empty"].shape == (0, 3)


def test_a_tensor_alone_and_a_list_of_tensors(tmp_path):
    t = Tensor(_array((2, 3)))
    save(t, tmp_path / "t.pth")
    assert_same(load(tmp_path / "t.pth"), t)
    save([t, (t, 1)], tmp_path / "l.pth")
    assert_same(load(tmp_path / "l.pth"), [t, (t, 1)])
    assert set(safetensors.numpy.load_file(tmp_path / "l.pth")) == {"0", "1.0"}


def test_colliding_and_reserved_keys_round_trip(tmp_path):
    a, b, c, d, e, f, g = (Tensor(np.full(2, float(i), np.float32)) for i in range(7))
    obj = {"a.b": a, "a": {"b": b}, 0: c, "0": d, "": e, "__metadata__": f, "a.b#1": g,
           "x": [{"y": a}], "x.0.y": b}
    save(obj, tmp_path / "c.pth")
    assert_same(load(tmp_path / "c.pth"), obj)
    names = safetensors.numpy.load_file(tmp_path / "c.pth")
    # first comers and unique names keep their natural name; later twins get "#k"
    assert host(names["a.b"])[0] == 0 and host(names["a.b#1"])[0] == 6
    assert host(names["a.b#2"])[0] == 1
    assert host(names["0"])[0] == 2 and host(names["0#1"])[0] == 3
    assert host(names["#1"])[0] == 4 and host(names["__metadata__#1"])[0] == 5
    assert host(names["x.0.y"])[0] == 0 and host(names["x.0.y#1"])[0] == 1


def test_plain_safetensors_file_loads_as_flat_dict_of_tensors(tmp_path):
    arrays = {"w": _array((2, 2)), "ids": np.arange(5, dtype=np.int64)}
    safetensors.numpy.save_file(arrays, tmp_path / "plain.safetensors")
    got = load(tmp_path / "plain.safetensors")
    assert sorted(got) == ["ids", "w"]
    assert_same(got, {name: arrays[name] for name in got})


def test_tinygpt_model_file_loads_as_its_state_dict(tmp_path):
    model = GPTModel(TINY)
    save_model(model, tmp_path / "model.safetensors")
    got = load(tmp_path / "model.safetensors")
    assert list(got) == [n for n, _ in model.named_parameters()]  # the weights, no masks
    GPTModel(TINY).load_state_dict(got)


# --- the book's section 5.4, on a tinygpt model ---------------------------------------------


def test_book_section_5_4_model(tmp_path):
    model = GPTModel(TINY)
    saved = {k: host(v).copy() for k, v in model.state_dict().items()}
    save(model.state_dict(), tmp_path / "model.pth")
    fresh = GPTModel(TINY)
    fresh.load_state_dict(load(tmp_path / "model.pth", map_location=device_name(),
                               weights_only=True))
    for name, value in fresh.state_dict().items():
        assert np.array_equal(host(value), saved[name]), name


def test_book_section_5_4_model_and_optimizer(tmp_path):
    model = GPTModel(TINY)
    optimizer = AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
    ids = np.random.default_rng(0).integers(0, TINY["vocab_size"], (2, 3, TINY["context_length"]))
    calc_loss_batch(ids[0], ids[1], model).backward()
    optimizer.step()  # so the state holds moments
    save({"model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict()},
         tmp_path / "model_and_optimizer.pth")
    expected = {k: host(v).copy() for k, v in model.state_dict().items()}
    moments = {i: host(s["exp_avg_sq"]).copy() for i, s in optimizer.state.items()}

    model = GPTModel(TINY)  # a fresh model and optimizer, as in a new session
    optimizer = AdamW(model.parameters(), lr=1.0, weight_decay=0.0)
    checkpoint = load(tmp_path / "model_and_optimizer.pth", weights_only=True)
    model.load_state_dict(checkpoint["model_state_dict"])
    optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
    for name, value in model.state_dict().items():
        assert np.array_equal(host(value), expected[name]), name
    assert sorted(optimizer.state) == sorted(moments)
    for i, s in optimizer.state.items():
        assert s["step"] == 1 and np.array_equal(host(s["exp_avg_sq"]), moments[i]), i
    assert optimizer.hyperparameters()["lr"] == 4e-4


# --- what save refuses ------------------------------------------------------------------------


def _cycle():
    items = [1]
    items.append(items)
    return items


@pytest.mark.parametrize("obj, words", [
    (lambda: 0, "function"),
    ({"s": {1, 2}}, "set"),
    ({"c": 1 + 2j}, "complex"),
    ({"b": b"bytes"}, "bytes"),
    ({(1, 2): 0}, "dict keys must be str or int"),
    ({1.5: 0}, "dict keys must be str or int"),
    ({True: 0}, "dict keys must be str or int"),
    ({"o": np.array([object()])}, "dtype object"),
    ({"c": np.zeros(2, np.complex64)}, "complex64"),
    (_cycle(), "contains itself"),
])
def test_save_refuses_what_it_cannot_store(tmp_path, obj, words):
    with pytest.raises(TypeError, match=words):
        save(obj, tmp_path / "x.pth")
    assert os.listdir(tmp_path) == []


def test_save_refuses_a_model_or_optimizer_and_says_what_to_pass(tmp_path):
    model = Linear(3, 2)
    with pytest.raises(TypeError, match=r"save\(model\.state_dict\(\), path\)"):
        save(model, tmp_path / "m.pth")
    with pytest.raises(TypeError, match=r"save\(optimizer\.state_dict\(\), path\)"):
        save({"opt": AdamW(model.parameters())}, tmp_path / "m.pth")
    assert os.listdir(tmp_path) == []


def test_failed_save_leaves_the_previous_file(tmp_path):
    path = tmp_path / "model.pth"
    save(_state_dict(), path)
    before = path.read_bytes()
    with pytest.raises(TypeError):
        save({"w": Tensor(np.ones(2, np.float32)), "bad": {1}}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.pth"]  # no temporary file left behind


def test_file_objects_are_refused_clearly(tmp_path):
    import io

    with pytest.raises(TypeError, match="file path"):
        save({}, io.BytesIO())
    with pytest.raises(TypeError, match="file path"):
        load(io.BytesIO(b""))


# --- what load refuses, and never unpickles ---------------------------------------------------


class _MakesMarker:
    """Unpickling this creates the folder ``path``: proof that something was unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


def test_pickle_payload_really_would_fire(tmp_path):
    """The marker trick works, so its absence below proves nothing was unpickled."""
    marker = tmp_path / "fired"
    pickle.loads(pickle.dumps(_MakesMarker(marker)))
    assert marker.exists()


def test_torch_save_file_is_refused_without_unpickling(tmp_path):
    torch = pytest.importorskip("torch")
    path, marker = tmp_path / "model.pth", tmp_path / "unpickled"
    torch.save({"w": torch.zeros(2), "payload": _MakesMarker(marker)}, path)
    assert path.read_bytes()[:4] == b"PK\x03\x04"
    with pytest.raises(CheckpointError) as info:
        load(path, weights_only=True)
    message = str(info.value)
    assert str(path) in message and "PyTorch" in message
    assert "never unpickles" in message and "save_file" in message
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="never unpickles"):
        load(path, weights_only=False)
    assert not marker.exists()


def test_torch_state_dict_file_is_refused_too(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pth"
    torch.save({"tok_emb.weight": torch.zeros(3, 2)}, path)
    with pytest.raises(CheckpointError, match="zip archive.*safetensors.torch"):
        load(path)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_raw_pickle_is_refused_without_unpickling(tmp_path, protocol):
    path, marker = tmp_path / "model.pth", tmp_path / "unpickled"
    path.write_bytes(pickle.dumps({"w": _MakesMarker(marker)}, protocol=protocol))
    with pytest.raises(CheckpointError, match="pickle.*never unpickles.*save_file"):
        load(path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 1])
def test_old_protocol_pickle_is_refused_without_unpickling(tmp_path, protocol):
    path, marker = tmp_path / "model.pth", tmp_path / "unpickled"
    path.write_bytes(pickle.dumps({"w": _MakesMarker(marker)}, protocol=protocol))
    with pytest.raises(CheckpointError):
        load(path)
    assert not marker.exists()


def test_truncated_empty_and_garbage_files(tmp_path):
    path = tmp_path / "model.pth"
    save(_state_dict(), path)
    data = path.read_bytes()
    for cut in (len(data) - 1, len(data) // 2, 20, 5):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated") as info:
            load(path)
        assert str(path) in str(info.value)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load(path)
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(CheckpointError):
        load(path)
    path.write_bytes(b"hello, this is text and not a checkpoint\n")
    with pytest.raises(CheckpointError, match="text file"):
        load(path)


def test_flipped_bit_is_caught(tmp_path):
    path = tmp_path / "model.pth"
    save(_state_dict(), path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nothing.pth")
    with pytest.raises(CheckpointError, match="folder"):
        load(tmp_path)


def _with_object(tmp_path, tree, tensors=None, version="1"):
    path = tmp_path / "crafted.pth"
    metadata = {OBJECT_KEY: tree if isinstance(tree, str) else json.dumps(tree)}
    if version is not None:
        metadata["tinygpt.object_version"] = version
    safetensors.numpy.save_file(tensors or {"w": np.ones(2, np.float32)}, path, metadata=metadata)
    return path


@pytest.mark.parametrize("tree, words", [
    ({"dict": [["a", {"tensor": "nope"}]]}, "does not hold"),
    ({"dict": [["a", 1]]}, "belongs to no part"),
    ({"list": [{"tensor": "w"}, {"tensor": "w"}]}, "used twice"),
    ("{not json", "not valid JSON"),
    ({"set": [1]}, "malformed"),
    ({"dict": [["a", {"tensor": "w"}], ["a", 2]]}, "repeated key"),
    ({"dict": [[1.5, {"tensor": "w"}]]}, "bad or repeated key"),
    ({"list": [{"tensor": "w"}, {"float": "huge"}]}, "float"),
    ({"list": [{"tensor": "w", "extra": 1}]}, "malformed"),
])
def test_metadata_that_does_not_match_the_tensors(tmp_path, tree, words):
    path = _with_object(tmp_path, tree)
    with pytest.raises(CheckpointError, match=words) as info:
        load(path)
    assert str(path) in str(info.value)


def test_newer_format_is_refused(tmp_path):
    path = _with_object(tmp_path, {"tensor": "w"}, version="2")
    with pytest.raises(CheckpointError, match="newer tinygpt"):
        load(path)


# --- map_location and weights_only ---------------------------------------------------------


def test_map_location_on_the_active_device(tmp_path):
    save(_state_dict(), tmp_path / "m.pth")
    for where in (None, device_name(), f"{device_name()}:0" if BACKEND == "cupy" else "cpu"):
        assert_same(load(tmp_path / "m.pth", map_location=where), _state_dict())
    if hasattr(tinygpt, "device"):
        assert_same(load(tmp_path / "m.pth", map_location=tinygpt.device(device_name())),
                    _state_dict())
    torch = pytest.importorskip("torch")
    assert_same(load(tmp_path / "m.pth", map_location=torch.device(device_name())),
                _state_dict())


@pytest.mark.skipif(BACKEND == "cupy", reason="on CuPy, 'cuda' is where tinygpt computes")
def test_map_location_cuda_on_numpy_raises(tmp_path):
    save(_state_dict(), tmp_path / "m.pth")
    with pytest.raises(BackendError, match="GPU"):
        load(tmp_path / "m.pth", map_location="cuda")


def test_unknown_device_raises(tmp_path):
    save(_state_dict(), tmp_path / "m.pth")
    with pytest.raises(BackendError, match="unknown device"):
        load(tmp_path / "m.pth", map_location="tpu")


def test_map_location_dict_or_function_and_bad_weights_only(tmp_path):
    save(_state_dict(), tmp_path / "m.pth")
    with pytest.raises(TypeError, match="map_location"):
        load(tmp_path / "m.pth", map_location={"cuda:0": "cpu"})
    with pytest.raises(TypeError, match="map_location"):
        load(tmp_path / "m.pth", map_location=lambda storage, loc: storage)
    with pytest.raises(TypeError, match="weights_only"):
        load(tmp_path / "m.pth", weights_only="yes")
    assert_same(load(tmp_path / "m.pth", weights_only=False), _state_dict())
