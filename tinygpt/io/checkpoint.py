"""Saving and loading models and training checkpoints: safetensors files, no pickle.

Two kinds of file, both plain safetensors (readable by the ``safetensors``
package and any tool that speaks the format):

* a **model file** (``save_model`` / ``load_model``): the state dict under the
  book's keys (``tok_emb.weight``, ``trf_blocks.0.att.W_query.weight``, ...) with
  the model config in the metadata, so the file alone rebuilds the model;
* a **training checkpoint** (``save_checkpoint`` / ``load_checkpoint``): the
  weights as ``model.<key>``, AdamW's moments as ``optimizer.<i>.exp_avg`` and
  ``optimizer.<i>.exp_avg_sq`` (``i`` indexes ``model.parameters()``), and in the
  metadata the config, each parameter's step count, the optimizer's class and
  hyper-parameters (and ``peak_lr``), the ``TrainingState`` (epoch, batch within
  the epoch and that epoch's batch order, global step, tokens seen, loss
  histories), the random generator's state, the caller's ``extra`` settings and
  a creation time. Loading it and calling ``train_model(..., state=ckpt.state)``
  carries on bit for bit as if the run had never stopped.

The book's section 5.4 maps onto it directly::

    # torch.save({"model_state_dict": model.state_dict(),
    #             "optimizer_state_dict": optimizer.state_dict()}, "model_and_optimizer.pth")
    save_checkpoint("model_and_optimizer.safetensors", model, optimizer, state)

    # checkpoint = torch.load("model_and_optimizer.pth")
    # model.load_state_dict(checkpoint["model_state_dict"])
    # optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
    ckpt = load_checkpoint("model_and_optimizer.safetensors", model, optimizer)
    # or build both from the file: ckpt = load_checkpoint(path); ckpt.model, ckpt.optimizer

``ckpt.model_state_dict`` and ``ckpt.optimizer_state_dict`` are those two dicts.

The bytes are the safetensors format, written and read by the ``safetensors``
library: a JSON header (each tensor's dtype, shape and place, and a
``__metadata__`` map of strings, so structured values are JSON text), then the
raw tensor bytes. Our own metadata keys are ``tinygpt.format`` (``"model"`` or
``"training-checkpoint"``), ``tinygpt.format_version`` (2) and ``tinygpt.crc32c``:
``{"tensors": {name: crc32c of its bytes}, "header": crc32c}``, where the header
checksum covers every other metadata entry and each tensor's name, dtype and
shape. So a flipped bit in the data, or an edited loss history, step or setting,
is caught, not trained on.

Safety: loading never runs code (no pickle, no ``allow_pickle``). Every check
(format, truncation, checksums, config, shapes, dtypes, finite values, optimizer
kind, generator state) runs before anything changes; a failure raises
``CheckpointError`` (see ``tinygpt.errors``) naming the file and the problem, and
the model, optimizer and random generator keep their state. No size in a file is
trusted: the config is checked against the tensors' names and shapes in the header
(``gpt_state_shapes``) before any data is read or any model built, and the library
checks that the tensors tile the file, so the file's length bounds what loading
allocates (a 300-byte file claiming emb_dim 8192 is refused in microseconds,
not after 8 GB). Tensors are read one
at a time with ``pread`` into their own arrays, not through a memory map (whose
touched pages would count as resident too), so loading needs the tensors' size in
memory and no more. Writes are atomic (``files.atomic_write``): the bytes go to a hidden
temporary folder beside the target (``.NAME.tmp-XXXXXXXX``), are flushed to disk, and the
file is renamed over the target, so a crash, a kill or a full disk leaves the previous
file intact (at worst a stray hidden folder, which no loader takes for a checkpoint). A
symbolic link is written through to its target, as ``torch.save`` does. Loading first
checks that the path is a regular file: a named pipe or a device is refused by name.
"""

import datetime
import json
import math
import os
from dataclasses import dataclass

import numpy
from safetensors import SafetensorError, safe_open

from ..backend import check_rng_state, get_rng, get_rng_state, set_rng_state, to_numpy
from ..checks import int_problem
from ..errors import CheckpointError, ModelFileNotCheckpointError
from ..model import GPTModel, validate_config
from ..optim import AdamW
from ..tensor import Tensor
from .files import (
    atomic_write,
    check_regular_file,
    regular_file_problem,
)
from .files import save_safetensors as _save_file
from .progress import file_growth_bar, progress_bar
from .records import TrainingState
from .tf_checkpoint import crc32c

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "save_model",
    "tinygpt_format",
]

FORMAT_KEY = "tinygpt.format"
VERSION_KEY = "tinygpt.format_version"
CRC_KEY = "tinygpt.crc32c"  # {"tensors": {name: crc}, "header": crc}
MODEL_FORMAT = "model"
CHECKPOINT_FORMAT = "training-checkpoint"
FORMAT_VERSION = 2

# safetensors dtype codes NumPy can hold (BF16 and the F8 kinds have no NumPy dtype).
_DTYPES = {
    "BOOL": numpy.dtype("bool"),
    "U8": numpy.dtype("u1"),
    "I8": numpy.dtype("i1"),
    "U16": numpy.dtype("<u2"),
    "I16": numpy.dtype("<i2"),
    "U32": numpy.dtype("<u4"),
    "I32": numpy.dtype("<i4"),
    "U64": numpy.dtype("<u8"),
    "I64": numpy.dtype("<i8"),
    "F16": numpy.dtype("<f2"),
    "F32": numpy.dtype("<f4"),
    "F64": numpy.dtype("<f8"),
}
_CODES = {(d.kind, d.itemsize): code for code, d in _DTYPES.items()}
_MAX_HEADER = 100_000_000  # the safetensors library's own limit
_MAX_DIMS = 64  # NumPy's


@dataclass
class Checkpoint:
    """What ``load_checkpoint`` restored. ``state`` goes to ``train_model(state=...)``."""

    model: GPTModel
    optimizer: AdamW
    state: TrainingState
    rng_state: dict
    extra: object
    config: dict
    path: str
    created: str = None

    @property
    def model_state_dict(self):
        """The book's ``checkpoint["model_state_dict"]``."""
        return self.model.state_dict()

    @property
    def optimizer_state_dict(self):
        """The book's ``checkpoint["optimizer_state_dict"]``."""
        return self.optimizer.state_dict()


# ----------------------------------------------------------------------------------
# Saving.


def save_model(model, path):
    """Write ``model``'s weights and config to ``path`` (a safetensors file), atomically."""
    path = _target_path(path)
    config = _model_config(path, model)
    # the weights only: GPTModel builds its causal-mask buffers itself
    tensors = {name: _host_array(p) for name, p in model.named_parameters()}
    _check_finite_for_save(path, tensors)
    metadata = {
        FORMAT_KEY: MODEL_FORMAT,
        VERSION_KEY: str(FORMAT_VERSION),
        "config": json.dumps(config),
        "dtype": str(model.dtype),
        "created": _now(),
    }
    _write_safetensors(path, tensors, metadata)
    return path


def save_checkpoint(path, model, optimizer, state, extra=None):
    """Write a training checkpoint (weights, AdamW state, ``state``, generator, ``extra``).

    ``state`` is the ``TrainingState`` that ``train_model`` returns or passes to
    ``on_epoch_end`` (None: a run that has not started). ``extra``: anything
    JSON can hold (numbers, strings, lists, dicts), e.g. the training settings,
    returned as ``Checkpoint.extra``. The write is atomic.
    """
    path = _target_path(path)
    config = _model_config(path, model)
    if not isinstance(optimizer, AdamW):
        raise CheckpointError(
            path, f"can only save an AdamW optimizer's state, got {type(optimizer).__name__}"
        )
    params = list(model.parameters())
    if len(optimizer.params) != len(params) or any(
        a is not b for a, b in zip(optimizer.params, params)
    ):
        raise CheckpointError(
            path, "the optimizer does not hold this model's parameters in order: build it as "
            "AdamW(model.parameters(), ...) so a checkpoint can restore it"
        )
    if state is None:
        state = TrainingState()
    if not isinstance(state, TrainingState):
        raise CheckpointError(path, f"state must be a TrainingState, got {type(state).__name__}")
    try:
        extra_json = json.dumps(extra, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(path, f"extra cannot be stored as JSON: {exc}") from None

    tensors = {f"model.{k}": _host_array(p) for k, p in model.named_parameters()}
    steps = {}
    for i in sorted(optimizer.state):
        s = optimizer.state[i]
        steps[str(i)] = int(s["step"])
        tensors[f"optimizer.{i}.exp_avg"] = _host_array(s["exp_avg"])
        tensors[f"optimizer.{i}.exp_avg_sq"] = _host_array(s["exp_avg_sq"])
    _check_finite_for_save(path, tensors)
    peak_lr = getattr(optimizer, "peak_lr", None)
    optimizer_meta = {
        "class": type(optimizer).__name__,
        "hyperparameters": optimizer.hyperparameters(),
        "peak_lr": None if peak_lr is None else float(peak_lr),
        "num_parameters": len(optimizer.params),
        "steps": steps,
    }
    metadata = {
        FORMAT_KEY: CHECKPOINT_FORMAT,
        VERSION_KEY: str(FORMAT_VERSION),
        "config": json.dumps(config),
        "dtype": str(model.dtype),
        "optimizer": json.dumps(optimizer_meta),
        "training_state": json.dumps(state.to_dict()),
        "rng_state": json.dumps(get_rng_state(), default=_json_default),
        "extra": extra_json,
        "created": _now(),
    }
    _write_safetensors(path, tensors, metadata)
    return path


def _target_path(path):
    path = os.fspath(path)
    if not isinstance(path, str):
        path = os.fsdecode(path)
    return path


def _model_config(path, model):
    cfg = getattr(model, "cfg", None)
    if not isinstance(model, GPTModel) or cfg is None:
        raise CheckpointError(path, f"expected a GPTModel, got {type(model).__name__}")
    return validate_config(cfg)


def _host_array(value):
    """A C-contiguous little-endian NumPy array (copies only from a GPU or odd layouts)."""
    if isinstance(value, Tensor):
        value = value.array  # (a NumPy or CuPy array's own .data is a raw buffer: not that)
    host = to_numpy(value)
    array = numpy.ascontiguousarray(host).reshape(numpy.shape(host))  # keeps 0-d arrays 0-d
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return array


def _check_finite_for_save(path, tensors):
    bad = [n for n, a in tensors.items() if a.dtype.kind == "f" and not numpy.isfinite(a).all()]
    if bad:
        raise CheckpointError(
            path, f"not saved: {', '.join(bad[:5])} contain NaN or infinite values (the run has "
            "diverged; a file with them could not be loaded). Any previous file is unchanged"
        )


def _json_default(value):
    if isinstance(value, numpy.integer):
        return int(value)
    if isinstance(value, numpy.floating):
        return float(value)
    if isinstance(value, numpy.bool_):
        return bool(value)
    if isinstance(value, numpy.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON serialisable")


def _now():
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _write_safetensors(path, tensors, metadata):
    """Write ``tensors`` (name -> host array) and ``metadata`` with the safetensors library,
    atomically, adding the checksums (``CRC_KEY``)."""
    entries = {}
    for name, array in tensors.items():
        code = _CODES.get((array.dtype.kind, array.dtype.itemsize))
        if code is None:
            raise CheckpointError(path, f"tensor {name!r} has dtype {array.dtype}, not storable")
        entries[name] = (code, array.shape)
    metadata = dict(metadata)
    metadata[CRC_KEY] = json.dumps({
        "tensors": {name: crc32c(_bytes_of(array)) for name, array in tensors.items()},
        "header": _header_crc(metadata, entries),
    })
    total = sum(array.nbytes for array in tensors.values())

    def write(tmp):
        with file_growth_bar(tmp, total, f"writing {os.path.basename(path)}"):
            _save_file(tmp, tensors, metadata)

    atomic_write(path, write)


def _header_crc(metadata, entries):
    """crc32c of the header but ``CRC_KEY``: the metadata, each tensor's dtype and shape."""
    text = json.dumps({
        "metadata": {k: v for k, v in metadata.items() if k != CRC_KEY},
        "tensors": {name: [code, [int(n) for n in shape]]
                    for name, (code, shape, *_) in entries.items()},
    }, sort_keys=True, separators=(",", ":"))
    return crc32c(text.encode("utf-8"))


def _bytes_of(array):
    return memoryview(array.reshape(-1)).cast("B")


# ----------------------------------------------------------------------------------
# Reading the container.


class _Container:
    """A safetensors file opened by the library: ``metadata``, ``entries`` name -> (dtype
    code, shape, place in the order saved), ``reader`` (reads one tensor at a time), and
    the crc32c to verify each tensor with (``crcs``: name -> value)."""

    def __init__(self, path, metadata, entries, reader):
        self.path = path
        self.metadata = metadata
        self.entries = entries
        self.reader = reader
        self.crcs = {}

    @property
    def format(self):
        return self.metadata.get(FORMAT_KEY)


def _open_for_reading(path):
    path = _target_path(path)
    check_regular_file(path, "a model file or checkpoint", CheckpointError)
    return path, open(path, "rb")


def _sniff(head):
    """What a file that is not safetensors seems to be, from its first bytes."""
    if not head:
        return "the file is empty (0 bytes); the save that made it was probably interrupted"
    if head.startswith(b"PK\x03\x04"):
        return ("it is a zip archive, probably a PyTorch .pt/.pth file (torch.save) or a NumPy "
                ".npz; those hold pickles, which tinygpt never loads because loading a pickle can "
                "run arbitrary code. Re-save the weights as safetensors")
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return ("it is a Python pickle (e.g. an old torch.save file); tinygpt never loads "
                "pickles because loading one can run arbitrary code. Re-save the weights as "
                "safetensors")
    if head.startswith(b"\x93NUMPY"):
        return "it is a NumPy .npy array file, not a safetensors file"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "it is an HDF5 file (e.g. a Keras .h5 checkpoint), not a safetensors file"
    if head.startswith(b"\x1f\x8b"):
        return "it is a gzip-compressed file; decompress it first"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head[:64]):
        return "it is a text file, not a safetensors file"
    return "it is not a safetensors file (its header length field makes no sense)"


def _explain(f, problem):
    """Why the safetensors library refused the file (its ``problem``), in our words."""
    size = os.fstat(f.fileno()).st_size
    f.seek(0)
    head = f.read(64)
    if 0 < size < 8:
        return f"is truncated or not a safetensors file ({size} bytes)"
    n = int.from_bytes(head[:8], "little") if size >= 8 else 0
    if not 2 <= n <= _MAX_HEADER or head[8:9] != b"{":
        return _sniff(head)
    if n > size - 8:
        return (f"is truncated: its header alone should be {n} bytes but the file has {size} "
                "(the write was interrupted or the copy is incomplete)")
    if "not fully covered" in problem:  # the tensors end before or after the file does
        f.seek(8)
        try:
            header = json.loads(f.read(n))
            end = max((e["data_offsets"][1] for k, e in header.items() if k != "__metadata__"),
                      default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError):
            end = None
        available = size - 8 - n
        if isinstance(end, int) and end > available:
            return (f"is truncated: its header describes {end} bytes of tensor data but only "
                    f"{available} follow (the write was interrupted or the copy is incomplete)")
        if isinstance(end, int):
            return f"is corrupted: {available - end} unexpected bytes follow the tensor data"
    return f"is corrupted: its header is malformed ({problem.split(': ', 1)[-1]})"


def _read_container(path, f):
    """Open ``path`` (``f``: the same file, opened) with the safetensors library, which checks
    the header and that the tensors tile the file; then our checks: dtypes NumPy can hold,
    the format version, the header checksum."""
    try:
        reader = safe_open(path, framework="numpy", backend="pread")
        entries = {}
        for i, name in enumerate(reader.offset_keys()):
            info = reader.get_slice(name)
            entries[name] = (info.get_dtype(), tuple(info.get_shape()), i)
        metadata = reader.metadata() or {}
    except SafetensorError as exc:
        raise CheckpointError(path, _explain(f, str(exc))) from None
    for name, (code, shape, _) in entries.items():
        if code not in _DTYPES:
            raise CheckpointError(
                path, f"tensor {name!r} has dtype {code}, which NumPy (and tinygpt) cannot hold"
            )
        if len(shape) > _MAX_DIMS:
            raise CheckpointError(path, f"is corrupted: tensor {name!r} has {len(shape)} "
                                  f"dimensions (NumPy holds at most {_MAX_DIMS})")
    container = _Container(path, metadata, entries, reader)
    if VERSION_KEY in metadata:
        try:
            version = int(metadata[VERSION_KEY])
        except ValueError:
            raise CheckpointError(path, f"is corrupted: bad {VERSION_KEY!r}") from None
        if version > FORMAT_VERSION:
            raise CheckpointError(
                path, f"was written by a newer tinygpt (format version {version}; this one "
                f"reads {FORMAT_VERSION}): upgrade tinygpt"
            )
        if version != FORMAT_VERSION:
            raise CheckpointError(path, f"has format version {version}; this tinygpt reads "
                                  f"only version {FORMAT_VERSION}")
    _check_checksums(container)
    # the library lays tensors out by dtype and name; our checksum map keeps the saved order
    names = [n for n in container.crcs if n in entries] + [
        n for n in entries if n not in container.crcs]
    container.entries = {name: (*entries[name][:2], i) for i, name in enumerate(names)}
    return container


def _check_checksums(container):
    """Check the header checksum now and keep the tensors' for ``_read_tensors``."""
    path = container.path
    if CRC_KEY in container.metadata:
        crcs = _metadata_json(container, CRC_KEY)
        ok = (isinstance(crcs, dict) and isinstance(crcs.get("tensors"), dict)
              and isinstance(crcs.get("header"), int)
              and crcs["tensors"].keys() == container.entries.keys())  # every tensor checked
        if not ok:
            raise CheckpointError(path, f"is corrupted: metadata {CRC_KEY!r} is malformed")
        if _header_crc(container.metadata, container.entries) != crcs["header"]:
            raise CheckpointError(
                path, "is corrupted: its metadata or tensor list does not match the checksum "
                "recorded when it was saved (an entry was edited or damaged)"
            )
        container.crcs = crcs["tensors"]


def _check_tag(container, what):
    """Refuse safetensors files tinygpt did not write, saying what they seem to be."""
    path, fmt = container.path, container.format
    if fmt is None:
        names = list(container.entries)
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        if any(n.split(".", 2)[-1].startswith(("wte.", "h.0.")) or n in ("wte.weight",)
               for n in names):
            guess = ("its tensors look like Hugging Face GPT-2 weights: load those with "
                     "tinygpt.io.hf_gpt2.load_hf_gpt2")
        elif "tok_emb.weight" in names:
            guess = ("its tensors look like a bare tinygpt/book state dict without a config: "
                     "build GPTModel(cfg) yourself and call model.load_state_dict("
                     "safetensors.numpy.load_file(path))")
        else:
            guess = f"it holds {len(names)} tensors ({shown})"
        raise CheckpointError(
            path, f"is a safetensors file but not {what} written by tinygpt (no {FORMAT_KEY!r} in "
            f"its metadata); {guess}"
        )
    if fmt not in (MODEL_FORMAT, CHECKPOINT_FORMAT):
        raise CheckpointError(path, f"has an unknown tinygpt format {fmt!r}")
    if VERSION_KEY not in container.metadata:
        raise CheckpointError(path, f"is corrupted: metadata {VERSION_KEY!r} is missing")
    if CRC_KEY not in container.metadata:
        raise CheckpointError(path, f"is corrupted: metadata {CRC_KEY!r} is missing")


def _metadata_json(container, key, required=True):
    text = container.metadata.get(key)
    if text is None:
        if required:
            raise CheckpointError(container.path, f"is corrupted: metadata {key!r} is missing")
        return None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(
            container.path, f"is corrupted: metadata {key!r} is not valid JSON ({exc})"
        ) from None


def _read_tensors(container, f, names):
    """Read ``names`` into fresh arrays, one at a time, checking each one's checksum."""
    arrays = {}
    for name in progress_bar(names, desc=f"reading {os.path.basename(container.path)}",
                             unit="tensor"):
        try:
            array = container.reader.get_tensor(name)
        except (SafetensorError, ValueError) as exc:  # a shape NumPy cannot hold; a changed file
            raise CheckpointError(
                container.path, f"is corrupted: tensor {name!r} cannot be read ({exc})"
            ) from None
        if name in container.crcs and crc32c(_bytes_of(array)) != container.crcs[name]:
            raise CheckpointError(
                container.path, f"is corrupted: the bytes of tensor {name!r} do not match the "
                "checksum recorded when it was saved"
            )
        arrays[name] = array
    return arrays


def _check_weights(path, arrays, what):
    """All floating point, one dtype, finite; returns that dtype."""
    problems = []
    dtypes = {}
    for name, a in arrays.items():
        if a.dtype.kind != "f":
            problems.append(f"{what} {name!r} has dtype {a.dtype}, expected floating point")
        else:
            dtypes.setdefault(a.dtype, []).append(name)
    if len(dtypes) > 1:
        common = max(dtypes, key=lambda d: len(dtypes[d]))
        for dtype, names in dtypes.items():
            if dtype != common:
                problems += [f"{what} {n!r} has dtype {dtype}, the others {common}" for n in names]
    for name, a in arrays.items():
        if a.dtype.kind == "f" and not numpy.isfinite(a).all():
            problems.append(f"{what} {name!r} contains NaN or infinite values")
    if problems:
        raise CheckpointError(path, _listing("has bad tensors", problems))
    return next(iter(dtypes)) if dtypes else numpy.dtype(numpy.float32)


def _listing(head, problems):
    shown = problems[:12] + ([f"... and {len(problems) - 12} more"] if len(problems) > 12 else [])
    return head + ":\n  " + "\n  ".join(shown)


def _config_from(container):
    cfg = _metadata_json(container, "config")
    try:
        return validate_config(cfg)
    except ValueError as exc:
        raise CheckpointError(container.path, f"holds an invalid model config: {exc}") from None


def _check_against_model(path, model, weights, head="does not fit the model"):
    """Names and shapes of ``weights`` against ``model``'s parameters."""
    params = dict(model.named_parameters())
    problems = [f"tensor {k!r} is missing" for k in params if k not in weights]
    problems += [f"unexpected tensor {k!r}" for k in weights if k not in params]
    for k, a in weights.items():
        if k in params and tuple(a.shape) != tuple(params[k].shape):
            problems.append(
                f"tensor {k!r} has shape {tuple(a.shape)}, the model's is {tuple(params[k].shape)}"
            )
    if problems:
        raise CheckpointError(path, _listing(head, problems))


_NOT_ITS_CONFIG = "is corrupted: its tensors do not fit the model config stored with them"


def gpt_state_shapes(cfg):
    """Yield (name, shape) of ``GPTModel(cfg)``'s parameters (what a tinygpt file holds), in
    order, without building the model: the config's sizes, to check against a file's
    tensors before trusting them.
    Lazy, so a config claiming 10**9 layers costs nothing until its names are asked for."""
    V, T, C = cfg["vocab_size"], cfg["context_length"], cfg["emb_dim"]
    yield "tok_emb.weight", (V, C)
    yield "pos_emb.weight", (T, C)
    for i in range(cfg["n_layers"]):
        att, ff = f"trf_blocks.{i}.att", f"trf_blocks.{i}.ff.layers"
        for proj in ("W_query", "W_key", "W_value"):
            yield f"{att}.{proj}.weight", (C, C)
            if cfg["qkv_bias"]:
                yield f"{att}.{proj}.bias", (C,)
        yield f"{att}.out_proj.weight", (C, C)
        yield f"{att}.out_proj.bias", (C,)
        yield f"{ff}.0.weight", (4 * C, C)
        yield f"{ff}.0.bias", (4 * C,)
        yield f"{ff}.2.weight", (C, 4 * C)
        yield f"{ff}.2.bias", (C,)
        for norm in ("norm1", "norm2"):
            yield f"trf_blocks.{i}.{norm}.scale", (C,)
            yield f"trf_blocks.{i}.{norm}.shift", (C,)
    yield "final_norm.scale", (C,)
    yield "final_norm.shift", (C,)
    yield "out_head.weight", (V, C)


def _check_shapes_fit_config(path, config, shapes, head=_NOT_ITS_CONFIG):
    """The file's tensors (``shapes``: key -> shape, from the header: no data read) are
    exactly those ``GPTModel(config)`` holds, so building the model costs what the file
    holds and no more. Returns the parameters' shapes in order. Stops at the 12th problem:
    a config claiming far more than the file holds costs no more than the file."""
    problems, expected = [], []
    for key, shape in gpt_state_shapes(config):
        if key not in shapes:
            problems.append(f"tensor {key!r} is missing")
        elif tuple(shapes[key]) != shape:
            problems.append(f"tensor {key!r} has shape {tuple(shapes[key])}, the config "
                            f"implies {shape}")
        if len(problems) > 11:
            problems[11:] = ["... (stopped there)"]
            break
        expected.append((key, shape))
    else:
        known = {key for key, _ in expected}
        problems += [f"unexpected tensor {k!r}" for k in shapes if k not in known]
    if problems:
        raise CheckpointError(path, _listing(head, problems))
    return [shape for _, shape in expected]


def _check_float_codes(path, entries, names):
    """Weights and moments are floating point: from the header, before any data is read."""
    bad = [f"tensor {n!r} has dtype {entries[n][0]}, expected floating point"
           for n in names if _DTYPES[entries[n][0]].kind != "f"]
    if bad:
        raise CheckpointError(path, _listing("has bad tensors", bad))


def _build_model(config, dtype):
    """A fresh GPTModel whose random init leaves the package generator's state as it was."""
    rng = get_rng()
    before = rng.bit_generator.state
    try:
        return GPTModel(config, dtype=dtype)
    finally:
        rng.bit_generator.state = before


# ----------------------------------------------------------------------------------
# Loading.


def load_model(path, dtype=None):
    """Rebuild a GPTModel from a model file (or from a training checkpoint's weights).

    ``dtype``: convert the weights to float32 or float64 (anything else is a ValueError);
    default: as saved. The config in the file is checked against its tensors' names and
    shapes before any data is read or the model built. The model comes back in training
    mode, like ``GPTModel(cfg)``; call ``.eval()`` before generating. The package's random
    generator is left as it was.
    """
    dtype = _float_dtype(dtype)
    path, f = _open_for_reading(path)
    with f:
        container = _read_container(path, f)
        _check_tag(container, "a model file")
        config = _config_from(container)
        prefix = "model." if container.format == CHECKPOINT_FORMAT else ""
        names = [n for n in container.entries if n.startswith(prefix)]
        _check_shapes_fit_config(
            path, config, {n[len(prefix):]: container.entries[n][1] for n in names})
        _check_float_codes(path, container.entries, names)
        arrays = _read_tensors(container, f, names)
    weights = {n[len(prefix):]: a for n, a in arrays.items()}
    saved_dtype = _check_weights(path, weights, "tensor")
    model = _build_model(config, dtype or saved_dtype)
    _check_against_model(path, model, weights, _NOT_ITS_CONFIG)
    model.load_state_dict(weights)
    return model


def tinygpt_format(path):
    """The tinygpt format the safetensors file ``path`` says it holds (``"model"`` or
    ``"training-checkpoint"``), or None: another kind of file, or one that cannot be read.
    Reads the header only and checks nothing further: a peek, not a load."""
    if regular_file_problem(path) is not None:
        return None
    try:
        with safe_open(path, framework="numpy", backend="pread") as f:
            return (f.metadata() or {}).get(FORMAT_KEY)
    except (OSError, SafetensorError):
        return None


def _float_dtype(dtype):
    """``load_model``'s dtype argument: None, or a floating dtype tinygpt computes in."""
    if dtype is None:
        return None
    try:
        dt = numpy.dtype(dtype)
    except TypeError:
        dt = None  # (not compared with ==: numpy takes None for float64)
    if dt is None or dt.kind != "f" or dt.itemsize not in (4, 8):
        raise ValueError(
            f"load_model: dtype must be float32 or float64 (tinygpt computes in those), got "
            f"{dtype!r}; an integer, bool or complex dtype would change the weights"
        )
    return dt


def load_checkpoint(path, model=None, optimizer=None, restore_rng=True):
    """Restore a training checkpoint into ``model`` and ``optimizer`` (built if None).

    Returns a ``Checkpoint``; continue with ``train_model(ckpt.model, ..., ckpt.optimizer,
    state=ckpt.state)``. With ``restore_rng`` the package's random generator gets
    the saved state last, so the shuffles and dropout masks go on as they would
    have. Everything is checked first: on any problem a ``CheckpointError`` names
    the file and what is wrong, and ``model``, ``optimizer`` and the generator
    are left exactly as they were.
    """
    if optimizer is not None and model is None:
        raise ValueError(
            "load_checkpoint: pass the model the optimizer updates (model=...) along with the "
            "optimizer, or neither"
        )
    path, f = _open_for_reading(path)
    with f:
        container = _read_container(path, f)
        if container.format == MODEL_FORMAT:
            raise ModelFileNotCheckpointError(
                path, "this is a model file, not a training checkpoint: it holds weights and a "
                "config but no optimizer or training state. Load it with load_model(), or start "
                "a new run from those weights"
            )
        _check_tag(container, "a training checkpoint")
        config = _config_from(container)
        opt_meta = _optimizer_meta(container)
        state = _training_state(container)
        rng_state = _rng_state(container)
        extra = _metadata_json(container, "extra", required=False)
        _check_checkpoint_layout(path, config, opt_meta, container.entries)
        arrays = _read_tensors(container, f, list(container.entries))

    weights, moments = _split_tensors(path, arrays, opt_meta)
    moment_arrays = {f"optimizer.{i}.{k}": a for i, m in moments.items() for k, a in m.items()}
    dtype = _check_weights(path, {**weights, **moment_arrays}, "tensor")
    _check_hyperparameters(path, opt_meta["hyperparameters"])
    if model is not None:
        _check_model_matches(path, model, config, dtype)
        _check_against_model(path, model, weights)
    if optimizer is not None:
        _check_optimizer(path, optimizer, model, len(weights))
    if model is None:
        model = _build_model(config, dtype)  # leaves the generator as it was
        _check_against_model(path, model, weights, _NOT_ITS_CONFIG)
    if optimizer is None:
        optimizer = AdamW(model.parameters(), **opt_meta["hyperparameters"])

    # Everything is checked: from here on nothing can fail half-way.
    optimizer_sd = {
        "state": {
            i: {"step": opt_meta["steps"][i], "exp_avg": m["exp_avg"],
                "exp_avg_sq": m["exp_avg_sq"]}
            for i, m in moments.items()
        },
        "param_groups": [dict(opt_meta["hyperparameters"], params=list(range(len(weights))))],
    }
    try:  # AdamW checks all of it before changing anything; so first, before the model
        optimizer.load_state_dict(optimizer_sd)
    except ValueError as exc:
        raise CheckpointError(path, f"holds an optimizer state AdamW refuses: {exc}") from None
    model.load_state_dict(weights)
    if opt_meta["peak_lr"] is not None:
        optimizer.peak_lr = float(opt_meta["peak_lr"])
    elif hasattr(optimizer, "peak_lr"):
        del optimizer.peak_lr  # the saved run had not started: train_model sets it afresh
    if restore_rng:
        set_rng_state(rng_state)
    return Checkpoint(
        model=model, optimizer=optimizer, state=state, rng_state=rng_state, extra=extra,
        config=config, path=path, created=container.metadata.get("created"),
    )


def _check_checkpoint_layout(path, config, opt_meta, entries):
    """From the header alone (entries: name -> (dtype code, shape, ...)): the weights are
    the config's, the moments match their parameters, all floating point."""
    weights, moments = _split_tensors(path, {n: e[1] for n, e in entries.items()}, opt_meta)
    param_shapes = _check_shapes_fit_config(path, config, weights)
    if len(weights) != opt_meta["num_parameters"]:
        raise CheckpointError(
            path, f"is corrupted: its optimizer covers {opt_meta['num_parameters']} parameters "
            f"but it holds {len(weights)} weight tensors"
        )
    for i, m in moments.items():
        for k, shape in m.items():
            if tuple(shape) != param_shapes[i]:
                raise CheckpointError(
                    path, f"tensor 'optimizer.{i}.{k}' has shape {tuple(shape)}, its parameter "
                    f"{param_shapes[i]}"
                )
    _check_float_codes(path, entries, list(entries))


def _optimizer_meta(container):
    path = container.path
    meta = _metadata_json(container, "optimizer")
    if not isinstance(meta, dict):
        raise CheckpointError(path, "is corrupted: metadata 'optimizer' is not a map")
    name = meta.get("class")
    if name != "AdamW":
        raise CheckpointError(
            path, f"was saved with a {name} optimizer; tinygpt can only continue AdamW runs"
        )
    steps = meta.get("steps")
    n = meta.get("num_parameters")
    ok = (
        isinstance(meta.get("hyperparameters"), dict)
        and isinstance(n, int) and n >= 0
        and isinstance(steps, dict)
        and all(k.isdigit() and isinstance(v, int) and v >= 1 for k, v in steps.items())
        and "peak_lr" in meta and (meta["peak_lr"] is None or (
            isinstance(meta["peak_lr"], (int, float)) and not isinstance(meta["peak_lr"], bool)
            and math.isfinite(meta["peak_lr"]) and meta["peak_lr"] >= 0))
    )
    if not ok:
        raise CheckpointError(path, "is corrupted: metadata 'optimizer' is malformed")
    meta["steps"] = {int(k): v for k, v in steps.items()}
    return meta


def _check_hyperparameters(path, hyper):
    try:
        AdamW([numpy.zeros(1, dtype=numpy.float32)], **hyper)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(path, f"holds bad AdamW hyper-parameters {hyper}: {exc}") from None


def _split_tensors(path, arrays, opt_meta):
    """``model.<key>`` -> weights; ``optimizer.<i>.<moment>`` -> moments[i][moment]."""
    weights, moments, problems = {}, {}, []
    for name, a in arrays.items():
        if name.startswith("model."):
            weights[name[len("model."):]] = a
            continue
        parts = name.split(".")
        if (len(parts) == 3 and parts[0] == "optimizer" and parts[1].isdigit()
                and parts[2] in ("exp_avg", "exp_avg_sq")):
            moments.setdefault(int(parts[1]), {})[parts[2]] = a
        else:
            problems.append(f"unexpected tensor {name!r}")
    steps = opt_meta["steps"]
    for i in sorted(set(moments) | set(steps)):
        have = moments.get(i, {})
        for k in ("exp_avg", "exp_avg_sq"):
            if k not in have:
                problems.append(f"tensor 'optimizer.{i}.{k}' is missing")
        if i not in steps:
            problems.append(f"no step count for optimizer parameter {i}")
        if i >= opt_meta["num_parameters"]:
            problems.append(f"optimizer state for parameter {i}, which does not exist")
    if problems:
        raise CheckpointError(path, _listing("is corrupted", problems))
    return weights, dict(sorted(moments.items()))


def _check_model_matches(path, model, config, dtype):
    cfg = getattr(model, "cfg", None)
    if not isinstance(model, GPTModel) or cfg is None:
        raise CheckpointError(path, f"expected a GPTModel to load into, got {type(model).__name__}")
    mine = validate_config(cfg)
    diff = [f"{k}: checkpoint {config.get(k)!r}, model {mine.get(k)!r}"
            for k in sorted(set(config) | set(mine)) if config.get(k) != mine.get(k)]
    if diff:
        raise CheckpointError(
            path, _listing("was saved from a model with another config (pass model=None to "
                           "build the checkpoint's own)", diff)
        )
    if numpy.dtype(model.dtype) != dtype:
        raise CheckpointError(
            path, f"holds {dtype} weights but the model is {numpy.dtype(model.dtype)}; build the "
            f"model with dtype={dtype} (or pass model=None) so training resumes exactly"
        )


def _check_optimizer(path, optimizer, model, n_weights):
    """``optimizer`` is an AdamW over exactly ``model``'s parameters."""
    if not isinstance(optimizer, AdamW):
        raise CheckpointError(
            path, f"holds AdamW state, which cannot go into a {type(optimizer).__name__}"
        )
    if len(optimizer.params) != n_weights:
        raise CheckpointError(
            path, f"holds AdamW state for {n_weights} parameters but the optimizer has "
            f"{len(optimizer.params)}; build it as AdamW(model.parameters(), ...)"
        )
    if any(a is not b for a, b in zip(optimizer.params, model.parameters())) or len(
            optimizer.param_groups) != 1:
        raise CheckpointError(
            path, "the optimizer does not hold the model's parameters in order, in one "
            "group; build it as AdamW(model.parameters(), ...)"
        )


_STATE_INTS = {"epoch": 0, "batch_in_epoch": 0, "global_step": -1, "tokens_seen": 0}


def _training_state(container):
    path = container.path
    d = _metadata_json(container, "training_state")
    if not isinstance(d, dict):
        raise CheckpointError(path, "is corrupted: metadata 'training_state' is not a map")
    problems = [int_problem(key, d.get(key), low) for key, low in _STATE_INTS.items()]
    problems = [p for p in problems if p is not None]
    order = d.get("epoch_order")
    if order is not None and not (
        isinstance(order, list) and all(isinstance(i, int) and not isinstance(i, bool)
                                        for i in order)
        and sorted(order) == list(range(len(order)))
    ):
        problems.append("epoch_order must be a permutation of 0..n-1")
    for key in ("train_losses", "val_losses", "track_tokens_seen"):
        v = d.get(key, [])
        if not isinstance(v, list) or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in v
        ):
            problems.append(f"{key} must be a list of numbers")
    if "finished" in d and not isinstance(d["finished"], bool):
        problems.append("finished must be true or false")
    if problems:
        raise CheckpointError(path, _listing("holds a bad training state", problems))
    return TrainingState.from_dict(d)


def _rng_state(container):
    state = _metadata_json(container, "rng_state")
    try:
        check_rng_state(state)  # a trial on spare generators
    except ValueError as exc:
        raise CheckpointError(
            container.path, f"holds a random generator state this NumPy cannot restore ({exc})"
        ) from None
    return state
