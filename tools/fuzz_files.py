"""Fuzz tinygpt's file readers with damaged and hostile files.

    python tools/fuzz_files.py --cases 2000 --seed 0
    python tools/fuzz_files.py --kinds model,tf --cases 200 --verbose
    python tools/fuzz_files.py --seed 0 --case 17 --verbose       # rerun one case

Writes small valid files once (a GPT model of emb_dim 16, 2 layers, vocab 64), then,
case by case, mutates one at random and loads it with the reader of its kind:

=============  ===============================================  ======================
kind           the valid file                                   read with
=============  ===============================================  ======================
model          ``save_model``                                   ``load_model``
checkpoint     ``save_checkpoint`` (after two AdamW steps)      ``load_checkpoint``
                                                                (half the cases into an
                                                                existing model+AdamW)
object         ``tinygpt.save`` of the book's checkpoint dict   ``tinygpt.load``
tf             an OpenAI-layout TF checkpoint                   ``load_tf_ckpt_into_gpt``
               (tests/helpers/gpt2_fixtures.py's writer)
tf_fixture     the TensorFlow-written tests/fixtures/tf_written ``CheckpointReader``,
                                                                reading every variable
=============  ===============================================  ======================

Mutations: bytes flipped, the file truncated, bytes appended, a range cut out or
inserted; for safetensors files also the header length field set to extremes, the JSON
header padded or garbled, a tensor's shape, offsets or dtype set to extremes, a metadata
value (config sizes, optimizer and training state, the object tree, format keys)
replaced; for TF checkpoints the index rewritten (with valid block checksums, so the
parser sees it) with a tensor's dtype, shape, shard, offset, size or checksum, or the
header's shard count, byte order or version, set to extremes. Some edits are
*re-signed*: the header checksum is recomputed (or, for TF, the tensor's checksum still
holds), as a deliberate edit would be, so they reach the checks behind the checksum.

Each case runs in a forked child under a memory cap (``RLIMIT_AS``: the child's address
space may grow by ``--memory-mb``) and a time limit (``--seconds``), and ends as one of:

- **clean error**: a tinygpt error, ValueError or OSError whose message names the file;
- **loaded, identical**: loaded, same data as the valid file (e.g. a flip in JSON
  whitespace, or a re-signed edit that does not change a value);
- **loaded, as edited**: a re-signed edit that makes another valid file, loaded as
  that file says (e.g. n_heads 2 -> 4: the same tensors, another model);
- **loaded, different**: a silent success on corrupted data (failure);
- **changed on error**: it failed but changed the model, optimizer or generator passed
  in (failure);
- **traceback**: any other exception, or an error whose message does not name the file
  (failure);
- **over memory** (MemoryError or killed), **over time**, **crashed** (a signal).

The bar: 0 in every failure column. Prints a markdown table of kind
x outcome, and with ``--verbose`` each failure: case, mutation, exception, traceback tail.
"""

import argparse
import hashlib
import json
import math
import os
import random
import resource
import select
import shutil
import signal
import sys
import tempfile
import time
import traceback

import numpy
from safetensors.numpy import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import tinygpt  # noqa: E402
from tests.helpers.gpt2_fixtures import (  # noqa: E402
    _field_bytes,
    _field_fixed32,
    _field_varint,
    _write_sstable,
    gpt2_tensors,
    write_tf_checkpoint,
)
from tinygpt.backend import get_rng_state, manual_seed, to_numpy  # noqa: E402
from tinygpt.errors import TinygptError, UnsupportedDtypeError  # noqa: E402
from tinygpt.io import checkpoint as ckpt_io  # noqa: E402
from tinygpt.io.pretrained import load_tf_ckpt_into_gpt  # noqa: E402
from tinygpt.io.tf_checkpoint import _TF_DTYPES as TF_DTYPES  # noqa: E402
from tinygpt.io.tf_checkpoint import (  # noqa: E402
    CheckpointReader,
    _parse_entry,
    _parse_header,
    _read_table,
)
from tinygpt.model import GPTModel  # noqa: E402
from tinygpt.optim import AdamW  # noqa: E402
from tinygpt.tensor import Tensor  # noqa: E402
from tinygpt.train import TrainingState  # noqa: E402

KINDS = ("model", "checkpoint", "object", "tf", "tf_fixture")
OUTCOMES = ("clean error", "loaded, identical", "loaded, as edited", "loaded, different",
            "changed on error", "traceback", "over memory", "over time", "crashed")
FAILURES = OUTCOMES[3:]
CFG = {"vocab_size": 64, "context_length": 16, "emb_dim": 16, "n_heads": 2, "n_layers": 2,
       "drop_rate": 0.0, "qkv_bias": False}
TF_CFG = dict(CFG, qkv_bias=True)  # GPT-2 has biases in c_attn
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "tf_written", "model.ckpt")
EXTREME_INTS = (0, 1, 2, 3, 7, 255, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**62, 2**63 - 1, 2**63,
                2**64 - 1, 10**30)
ODD_VALUES = (-1, 0, 1.5, "16", None, True, [], {}, 10**30, -(2**63), float("nan"))


# ----------------------------------------------------------------------------------
# The valid files, and what loading each gives (a "canon": comparable plain data).


def _array_canon(a):
    a = numpy.ascontiguousarray(to_numpy(a.array if isinstance(a, Tensor) else a))
    return [a.dtype.str, list(a.shape), hashlib.sha1(a.tobytes()).hexdigest()]


def _json_canon(value):
    return json.loads(json.dumps(value, default=ckpt_io._json_default))


def _object_canon(value):
    """Plain data with types tagged, tensors as (dtype, shape, sha1)."""
    if isinstance(value, (Tensor, numpy.ndarray)):
        return ["tensor", *_array_canon(value)]
    if isinstance(value, dict):
        return ["dict", [[k, _object_canon(v)] for k, v in value.items()]]
    if isinstance(value, (list, tuple)):
        return [type(value).__name__, [_object_canon(v) for v in value]]
    if isinstance(value, float) and not math.isfinite(value):
        return ["float", repr(value)]
    return [type(value).__name__, value]


def _model_canon(model):
    return {"config": _json_canon(model.cfg),
            "tensors": {k: _array_canon(v) for k, v in model.state_dict().items()}}


def _checkpoint_canon(c):
    opt = c.optimizer
    canon = _model_canon(c.model)
    canon["tensors"] = {f"model.{k}": v for k, v in canon["tensors"].items()}
    steps = {}
    for i, s in opt.state.items():
        steps[str(i)] = s["step"]
        canon["tensors"][f"optimizer.{i}.exp_avg"] = _array_canon(s["exp_avg"])
        canon["tensors"][f"optimizer.{i}.exp_avg_sq"] = _array_canon(s["exp_avg_sq"])
    peak = getattr(opt, "peak_lr", None)
    canon.update({
        "optimizer": _json_canon({"class": type(opt).__name__,
                                  "hyperparameters": opt.hyperparameters(),
                                  "peak_lr": peak, "num_parameters": len(opt.params),
                                  "steps": steps}),
        "training_state": _json_canon(c.state.to_dict()), "rng_state": _json_canon(c.rng_state),
        "extra": _json_canon(c.extra),
    })
    return canon


def _tf_reader_canon(prefix, unsupported=None):
    """Every variable of the checkpoint read; ``unsupported``: the names that may raise
    UnsupportedDtypeError (those of the valid file; None: any)."""
    with CheckpointReader(prefix) as reader:
        out = {}
        for name, (shape, _) in sorted(reader.variables().items()):
            try:
                out[name] = _array_canon(reader.read(name))
            except UnsupportedDtypeError:
                if unsupported is not None and name not in unsupported:
                    raise
                out[name] = ["unsupported", list(shape), None]
        return out


def make_originals(folder):
    """Write the valid files into ``folder``; returns {kind: (paths, canon, tensors)}, where
    ``tensors`` maps the file's tensor names to their canons (for the object kind)."""
    manual_seed(123)
    model = GPTModel(CFG)
    optimizer = AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
    for _ in range(2):
        for p in model.parameters():
            p.grad = tinygpt.tensor(numpy.random.default_rng(len(p.shape)).standard_normal(
                p.shape).astype(numpy.float32))  # on the device, as torch wants a Tensor
        optimizer.step()
    optimizer.peak_lr = 4e-4
    state = TrainingState(epoch=1, batch_in_epoch=2, epoch_order=[2, 0, 1, 3], global_step=5,
                          tokens_seen=640, train_losses=[9.5, 8.25], val_losses=[9.75, 9.0],
                          track_tokens_seen=[128, 640])
    files = {}
    os.makedirs(folder)
    path = os.path.join(folder, "model.safetensors")
    ckpt_io.save_model(model, path)
    files["model"] = ([path], _model_canon(model), None)

    path = os.path.join(folder, "checkpoint.safetensors")
    ckpt_io.save_checkpoint(path, model, optimizer, state, extra={"lr": 4e-4, "text": "v.txt"})
    files["checkpoint"] = ([path], _checkpoint_canon(ckpt_io.load_checkpoint(path)), None)

    path = os.path.join(folder, "object.pth")
    obj = {"model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict(),
           "epoch": 3, "losses": [1.5, float("nan")], "names": ("a", "b"), 7: None}
    tinygpt.save(obj, path)
    tensors = {k: ["tensor", *_array_canon(a)] for k, a in load_file(path).items()}
    files["object"] = ([path], _object_canon(tinygpt.load(path)), tensors)

    prefix = os.path.join(folder, "tf", "model.ckpt")
    write_tf_checkpoint(prefix, gpt2_tensors(2, 16, n_ctx=16, n_vocab=64, seed=1))
    gpt = load_tf_ckpt_into_gpt(GPTModel(TF_CFG), prefix)
    files["tf"] = ([f"{prefix}.index", f"{prefix}.data-00000-of-00001"], _model_canon(gpt), None)

    prefix = os.path.join(folder, "tf_fixture", "model.ckpt")
    os.makedirs(os.path.dirname(prefix))
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copyfile(FIXTURE + suffix, prefix + suffix)
    files["tf_fixture"] = ([f"{prefix}.index", f"{prefix}.data-00000-of-00001"],
                           _tf_reader_canon(prefix), None)
    return files


# ----------------------------------------------------------------------------------
# Mutations. Each takes (rng, data: bytes) and returns (new bytes, description, edit):
# ``edit`` is None, or how a re-signed edit legitimately changes what loads.


def flip_bytes(rng, data, header_end):
    data = bytearray(data)
    where = []
    for _ in range(rng.randint(1, 4)):
        hi = header_end if rng.random() < 0.5 and header_end else len(data)
        i = rng.randrange(max(hi, 1)) if data else 0
        if i < len(data):
            data[i] ^= rng.randint(1, 255)
            where.append(i)
    return bytes(data), f"flip bytes at {where}", None


def truncate(rng, data, header_end):
    n = rng.randrange(min(len(data), 64)) if rng.random() < 0.3 else rng.randrange(len(data))
    return data[:n], f"truncate to {n} of {len(data)} bytes", None


def extend(rng, data, header_end):
    n = rng.choice((1, 7, 8, 100, 4096))
    tail = bytes(n) if rng.random() < 0.5 else rng.randbytes(n)
    return data + tail, f"append {n} bytes", None


def splice(rng, data, header_end):
    i = rng.randrange(len(data))
    if rng.random() < 0.5:
        n = rng.randint(1, 64)
        return data[:i] + data[i + n:], f"cut bytes {i}..{i + n}", None
    n = rng.randint(1, 64)
    return data[:i] + rng.randbytes(n) + data[i:], f"insert {n} bytes at {i}", None


BYTE_MUTATIONS = (flip_bytes, truncate, extend, splice)


def _split_safetensors(data):
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]), data[8 + n:]


def _join_safetensors(header, body, resign):
    """The file with ``header`` (re-signed: the header checksum recomputed, as a deliberate
    edit would be)."""
    if resign:
        meta = header.get("__metadata__", {})
        try:
            crcs = json.loads(meta[ckpt_io.CRC_KEY])
            entries = {k: (e["dtype"], e["shape"]) for k, e in header.items()
                       if k != "__metadata__"}
            crcs["header"] = ckpt_io._header_crc(meta, entries)
            meta[ckpt_io.CRC_KEY] = json.dumps(crcs)
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError):
            pass  # a header too broken to sign: left as it is
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + body


def header_length(rng, data, header_end):
    n = int.from_bytes(data[:8], "little")
    value = rng.choice((0, 1, 2, n - 1, n + 1, n + 8, len(data) - 8, len(data), 100_000_000,
                        100_000_001, *EXTREME_INTS))
    return (value % 2**64).to_bytes(8, "little") + data[8:], f"header length {n} -> {value}", None


def header_garble(rng, data, header_end):
    header, body = _split_safetensors(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    i = rng.randrange(len(text))
    if rng.random() < 0.4:
        pad = b" " * rng.choice((1, 8, 1000))
        what = f"{len(pad)} spaces"
        i = text.index(b",", i) + 1 if b"," in text[i:] else i  # between tokens: still JSON
    else:
        pad = rng.choice((b"{", b"}", b'"', b"\\", b"[" * 100_000, b"\x00", b"\xff\xfe",
                          b'"__metadata__":{},', b",", rng.randbytes(8)))
        what = repr(pad[:20])
    text = text[:i] + pad + text[i:]
    return len(text).to_bytes(8, "little") + text + body, f"insert {what} into header at {i}", None


def tensor_field(rng, data, header_end):
    header, body = _split_safetensors(data)
    names = [k for k in header if k != "__metadata__"]
    name = rng.choice(names)
    e = header[name]
    field = rng.choice(("shape", "shape", "data_offsets", "dtype"))
    edit = None
    if field == "shape":
        shape = list(e["shape"])
        choice = rng.randrange(5)
        if choice == 0 and shape:
            shape[rng.randrange(len(shape))] = rng.choice(EXTREME_INTS + ODD_VALUES)
        elif choice == 1:
            shape = shape[::-1] if len(shape) > 1 else [1, *shape]  # same bytes
        elif choice == 2:
            shape = [math.prod(shape)] if len(shape) != 1 else [1, shape[0]]  # same bytes
        elif choice == 3:
            shape = shape + [1] * rng.choice((1, 70))
        else:
            shape = [0, 2**62] if rng.random() < 0.5 else []
        e["shape"] = shape
        edit = ("tensor", name, {"shape": shape})
    elif field == "data_offsets":
        a, b = e["data_offsets"]
        e["data_offsets"] = rng.choice(([b, a], [a, rng.choice(EXTREME_INTS)],
                                        [rng.choice(EXTREME_INTS), b], [a + 4, b + 4], [-1, b]))
    else:
        e["dtype"] = rng.choice(("F16", "F64", "I32", "U32", "BOOL", "BF16", "F8_E4M3", "X", 7))
        edit = ("tensor", name, {"dtype": e["dtype"]})
    resign = rng.random() < 0.6
    return (_join_safetensors(header, body, resign),
            f"tensor {name!r} {field} -> {e[field]!r}" + (" (re-signed)" if resign else ""),
            edit if resign else None)


_CONFIG_VALUES = {
    "vocab_size": (63, 65, 8192, 50257, 2**40),
    "context_length": (15, 17, 1024, 10**9),
    "emb_dim": (8, 32, 8192, 2**31),
    "n_heads": (1, 3, 4, 8, 16, 32),
    "n_layers": (1, 3, 20000, 10**9),
    "drop_rate": (0.5, 1.0, -0.1, 1e308),
    "qkv_bias": (True, 1, "false"),
}
_STATE_VALUES = {
    "epoch": (2**62, -1, "1"), "batch_in_epoch": (10**30, -5), "global_step": (-2, 10**18),
    "tokens_seen": (-1, 2**63), "epoch_order": ([0, 0, 1, 2], [10**18], list(range(100_000)),
                                                "x", [0.5]),
    "train_losses": (["x"], [1e308], [True]), "finished": ("yes", True),
}
_OPTIMIZER_VALUES = {
    "num_parameters": (0, 17, 19, 10**12, -1), "class": ("SGD", None),
    "steps": ({"99999": 1}, {}, {"x": 1}),
    "hyperparameters": ({"lr": -1}, {"foo": 1}, []),
    "peak_lr": ("x", -1.0, None, 1e-3),
}


def _edit_json(rng, key, value):
    """A change to the JSON metadata ``key`` (parsed: ``value``); returns (new, description)."""
    table = {"config": _CONFIG_VALUES, "training_state": _STATE_VALUES,
             "optimizer": _OPTIMIZER_VALUES}.get(key)
    if table and isinstance(value, dict) and rng.random() < 0.8:
        field = rng.choice(sorted(table))
        new = dict(value)
        if rng.random() < 0.1:
            new.pop(field, None)
            return new, f"{key}: drop {field!r}"
        old = new.get(field)
        if isinstance(old, dict) and old and rng.random() < 0.7:  # one entry of a map
            sub = rng.choice(sorted(old))
            new[field] = dict(old, **{sub: rng.choice((10**30, 2**63, 0, -1, 1.5, "x", None,
                                                       [2, 3], 1e308))})
            return new, f"{key}.{field}.{sub} -> {str(new[field][sub])[:40]}"
        new[field] = rng.choice(table[field] + ODD_VALUES[:4])
        return new, f"{key}.{field} -> {str(new[field])[:40]}"
    if key == tinygpt.io.serialization.OBJECT_KEY and rng.random() < 0.8:
        return _edit_tree(rng, value)
    new = rng.choice((None, [], {}, "x", 0, [[[[]]]], {"a": 1}))
    return new, f"{key} -> {new!r}"


def _edit_tree(rng, tree):
    """Change one node of a ``tinygpt.object`` tree."""
    nodes, stack = [], [(tree, None, None)]
    while stack:
        node, parent, slot = stack.pop()
        nodes.append((node, parent, slot))
        if isinstance(node, dict) and len(node) == 1:
            (kind, body), = node.items()
            if kind in ("list", "tuple") and isinstance(body, list):
                stack += [(item, body, i) for i, item in enumerate(body)]
            elif kind == "dict" and isinstance(body, list):
                stack += [(pair[1], pair, 1) for pair in body]
    node, parent, slot = rng.choice(nodes[1:])
    new = rng.choice(({"tensor": "nope"}, {"tensor": "epoch"}, {"float": "x"}, {"list": 5},
                      {"dict": [[1, 2], [1, 3]]}, {"dict": [[True, 2]]}, 4, "s", None,
                      {"a": 1, "b": 2}, nodes[-1][0], {"float": "inf"}))
    if rng.random() < 0.1:
        for _ in range(100):
            new = {"list": [new]}
    elif rng.random() < 0.1:  # nested deeper than JSON parsers recurse: written as text
        depth = 100_000
        parent[slot] = "@deep@"
        text = json.dumps(tree).replace('"@deep@"', '{"list":[' * depth + "1" + "]}" * depth)
        return _Text(text), f"object node -> {depth} nested lists"
    parent[slot] = new
    return tree, f"object node -> {json.dumps(new)[:40]}"


class _Text(str):
    """Metadata already written as JSON text (too deep for json.dumps)."""


_SIZED_KEYS = ("config", "optimizer", "training_state", "tinygpt.object")


def metadata_value(rng, data, header_end):
    header, body = _split_safetensors(data)
    meta = header.setdefault("__metadata__", {})
    sized = sorted(k for k in meta if k in _SIZED_KEYS)  # the values worth the most cases
    key = rng.choice(sized if sized and rng.random() < 0.6 else sorted(meta))
    try:
        value = json.loads(meta[key])
        is_json = key not in (ckpt_io.FORMAT_KEY, "dtype", "created")
    except ValueError:
        value, is_json = meta[key], False
    if is_json and key not in (ckpt_io.VERSION_KEY, ckpt_io.CRC_KEY) and rng.random() < 0.9:
        new, what = _edit_json(rng, key, value)
        meta[key] = new if isinstance(new, _Text) else json.dumps(new)
        edit = None if isinstance(new, _Text) else ("meta", key, new)
    elif rng.random() < 0.15:
        del meta[key]
        what, edit = f"drop metadata {key!r}", ("drop", key, None)
    else:
        meta[key] = rng.choice(("", "x", "1", "2", "3", "-1", "model", "training-checkpoint",
                                "99999999999999999999999", "[" * 10_000, "{}", "null"))
        what = f"metadata {key!r} -> {meta[key][:20]!r}"
        try:
            edit = ("meta", key, json.loads(meta[key]))
        except (ValueError, RecursionError):
            edit = None
    resign = rng.random() < 0.6
    return (_join_safetensors(header, body, resign), what + (" (re-signed)" if resign else ""),
            edit if resign else None)


SAFETENSORS_MUTATIONS = (header_length, header_garble, tensor_field, metadata_value,
                         metadata_value)


def _varint_bytes(n):
    out = bytearray()
    n %= 2**64
    while True:
        out.append((n & 0x7F) | (0x80 if n >> 7 else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _tf_entry(e):
    """Encode a parsed BundleEntryProto (any 64-bit values, negatives as two's complement)."""
    shape = b"".join(b"\x12" + _varint_bytes(len(d)) + d for d in
                     (b"\x08" + _varint_bytes(n) for n in e["shape"]))
    msg = b"\x08" + _varint_bytes(e["dtype"]) + _field_bytes(2, shape)
    msg += b"\x18" + _varint_bytes(e["shard_id"]) + b"\x20" + _varint_bytes(e["offset"])
    msg += b"\x28" + _varint_bytes(e["size"]) + _field_fixed32(6, e["crc32c"] % 2**32)
    return msg + (_field_bytes(7, b"") if e["sliced"] else b"")


def _tf_header(h):
    version = _field_varint(1, h["producer"]) + _field_varint(2, h["min_consumer"])
    version += b"".join(_field_varint(3, v) for v in h["bad_consumers"])
    return (b"\x08" + _varint_bytes(h["num_shards"]) + b"\x10" + _varint_bytes(h["endianness"])
            + _field_bytes(3, version))


def tf_index_field(rng, data, header_end, path):
    """Rewrite the index (valid block checksums) with one field set to an extreme."""
    items = _read_table(path)
    edit = None
    if rng.random() < 0.25:
        h = _parse_header(items[0][1])
        field = rng.choice(("num_shards", "num_shards", "endianness", "min_consumer",
                            "bad_consumers"))
        h[field] = [1] if field == "bad_consumers" else rng.choice((0, 2, 5, *EXTREME_INTS))
        items[0] = (b"", _tf_header(h))
        what = f"index header {field} -> {h[field]}"
    else:
        i = rng.randrange(1, len(items))
        name, e = items[i][0], _parse_entry(items[i][1])
        field = rng.choice(("dtype", "shape", "shape", "shard_id", "offset", "size", "crc32c",
                            "sliced"))
        if field == "shape":
            shape = list(e["shape"])
            choice = rng.randrange(4)
            if choice == 0 and shape:
                shape[rng.randrange(len(shape))] = rng.choice(EXTREME_INTS + (-1,))
            elif choice == 1:
                shape = shape[::-1] if len(shape) > 1 else [1, *shape]
                edit = ("tensor", name.decode(), {"shape": shape})
            elif choice == 2:
                shape = shape + [1] * rng.choice((1, 70))
                edit = ("tensor", name.decode(), {"shape": shape})
            else:
                shape = [0, 2**62]
            e["shape"] = tuple(shape)
        elif field == "sliced":
            e["sliced"] = True
        else:
            e[field] = rng.choice((0, 1, 2, 7, 14, 99, e[field] + 4, e[field] - 4,
                                   *EXTREME_INTS)) % 2**64
            if field == "dtype":  # e.g. bool -> int8: the same bytes, another valid tensor
                edit = ("tensor", name.decode(), {"dtype": e["dtype"]})
        items[i] = (name, _tf_entry(e))
        what = f"index entry {name.decode()!r} {field} -> {e[field]}"
    tmp = path + ".rewrite"
    _write_sstable(tmp, items)
    with open(tmp, "rb") as f:
        new = f.read()
    os.remove(tmp)
    return new, what, edit


# ----------------------------------------------------------------------------------
# One case.


def _names_file(exc, names):
    return any(n in str(exc) for n in names)


def _expected_object(tree, tensors):
    """What a re-signed ``tinygpt.object`` tree should load as (None: it should fail)."""
    if not isinstance(tree, dict):
        return [type(tree).__name__, tree]
    (kind, body), = tree.items()
    if kind == "tensor":
        return tensors[body]
    if kind == "float":
        return ["float", repr(float(body))]
    if kind == "dict":
        return ["dict", [[k, _expected_object(v, tensors)] for k, v in body]]
    return [kind, [_expected_object(v, tensors) for v in body]]


def _as_edited(kind, canon, edit, tensors, tree):
    """The canon a re-signed ``edit`` legitimately loads as (another valid file), or None.
    ``tensors``, ``tree``: the object kind's tensor canons and ``tinygpt.object`` tree."""
    what, key, value = edit
    if kind in ("model", "checkpoint") and what in ("meta", "drop") and key in canon:
        if key == "training_state" and isinstance(value, dict):  # absent fields: defaults
            try:
                value = TrainingState.from_dict(value).to_dict()
            except (TypeError, ValueError):
                return None
        return dict(canon, **{key: _json_canon(value)})
    if kind == "object":
        if what == "meta" and key == tinygpt.io.serialization.OBJECT_KEY:
            tree = value
        elif what == "tensor" and key in tensors:
            _, dtype, shape, sha = tensors[key]
            if "dtype" in value:
                dtype = ckpt_io._DTYPES.get(value["dtype"], numpy.dtype("V1")).str
            tensors = dict(tensors, **{key: ["tensor", dtype, value.get("shape", shape), sha]})
        elif what == "drop" and key == tinygpt.io.serialization.OBJECT_KEY:
            return ["dict", sorted([k, v] for k, v in tensors.items())]  # a plain file's dict
        elif what != "meta":
            return None
        try:
            return _expected_object(tree, tensors)
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError):
            return None
    if kind == "tf_fixture" and what == "tensor" and key in canon:
        dtype, shape, sha = canon[key]
        if "dtype" in value:
            dtype = TF_DTYPES.get(value["dtype"], numpy.dtype("V1")).str
        return dict(canon, **{key: [dtype, list(value.get("shape", shape)), sha]})
    return None


def load_case(kind, paths, canon, rng_choice):
    """Load the (mutated) files of ``kind``; returns the canon of what loaded. A failure
    that changed the model / optimizer / generator passed in raises _Changed from it."""
    if kind == "model":
        return _model_canon(ckpt_io.load_model(paths[0]))
    if kind == "checkpoint":
        if rng_choice:
            manual_seed(7)
            model = GPTModel(CFG)
            optimizer = AdamW(model.parameters(), lr=1e-3)
            before = (_model_canon(model), get_rng_state())
            try:
                c = ckpt_io.load_checkpoint(paths[0], model, optimizer)
            except Exception as exc:
                changed = (_model_canon(model), get_rng_state()) != before or optimizer.state
                raise (_Changed() if changed else _Unchanged()) from exc
        else:
            c = ckpt_io.load_checkpoint(paths[0])
        return _checkpoint_canon(c)
    if kind == "object":
        return _object_canon(tinygpt.load(paths[0]))
    prefix = paths[0][:-len(".index")]
    if kind == "tf":
        manual_seed(7)
        gpt = GPTModel(TF_CFG)
        before = _model_canon(gpt)
        try:
            load_tf_ckpt_into_gpt(gpt, prefix)
        except Exception as exc:
            raise (_Changed() if _model_canon(gpt) != before else _Unchanged()) from exc
        return _model_canon(gpt)
    return _tf_reader_canon(prefix, {n for n, c in canon.items() if c[2] is None})


class _Changed(Exception):
    """Raised from inside ``except``: the load failed (the cause) and changed its target."""


class _Unchanged(Exception):
    """Raised from inside ``except``: the load failed (the cause), its target unchanged."""


def classify(kind, paths, canon, edit, tensors, tree, rng_choice):
    """Run one load (in the child); returns (outcome, detail)."""
    try:
        got = load_case(kind, paths, canon, rng_choice)
    except MemoryError:
        return "over memory", "MemoryError"
    except (_Changed, _Unchanged) as wrapper:
        exc = wrapper.__cause__
        if isinstance(exc, MemoryError):
            return "over memory", "MemoryError"
        outcome = _error_outcome(exc, paths)
        if isinstance(wrapper, _Changed) and outcome == "clean error":
            outcome = "changed on error"
        return outcome, _describe(exc)
    except Exception as exc:  # noqa: BLE001 - the point is to see every kind
        return _error_outcome(exc, paths), _describe(exc)
    except BaseException as exc:  # e.g. a Rust panic (pyo3's PanicException)
        return "traceback", _describe(exc)
    if got == canon:
        return "loaded, identical", ""
    want = _as_edited(kind, canon, edit, tensors, tree) if edit else None
    if want is not None and (got == want or _sorted_pairs(got) == want):
        return "loaded, as edited", ""
    diff = sorted(k for k in set(got) | set(canon) if got.get(k) != canon.get(k))[:4] if (
        isinstance(got, dict) and isinstance(canon, dict)) else "the object"
    return "loaded, different", f"differs in {diff}"


def _sorted_pairs(canon):
    """A dict's canon with its pairs sorted (a plain safetensors file's order is its own)."""
    if isinstance(canon, list) and len(canon) == 2 and canon[0] == "dict":
        return ["dict", sorted(canon[1])]
    return canon


def _error_outcome(exc, paths):
    names = list(paths) + [p[:-len(".index")] for p in paths if p.endswith(".index")]
    if isinstance(exc, (TinygptError, ValueError, OSError)) and _names_file(exc, names):
        return "clean error"
    return "traceback"


def _describe(exc):
    tail = "".join(traceback.format_exception(exc)[-4:])
    return f"{type(exc).__name__}: {str(exc)[:300]}\n{tail[-1500:]}"


def _vm_bytes():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmSize:")) * 1024


def run_forked(fn, memory_bytes, seconds):
    """``fn()`` in a forked child with its address space capped at its start + memory_bytes
    and ``seconds`` of CPU and wall time; returns (outcome, detail, seconds taken)."""
    r, w = os.pipe()
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(r)
        try:
            limit = _vm_bytes() + memory_bytes
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            signal.alarm(seconds)  # the default action ends the child
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - report, never unwind into the parent
            result = ("over memory" if isinstance(exc, MemoryError) else "traceback",
                      _describe(exc))
        os.write(w, json.dumps(result).encode()[:60_000])
        os._exit(0)
    os.close(w)
    chunks, deadline = [], started + seconds + 10
    while True:
        ready, _, _ = select.select([r], [], [], max(0.0, deadline - time.perf_counter()))
        if not ready:  # the alarm did not stop it: stop it
            os.kill(pid, signal.SIGKILL)
            break
        chunk = os.read(r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    took = time.perf_counter() - started
    if chunks:
        try:
            outcome, detail = json.loads(b"".join(chunks))
            return outcome, detail, took
        except ValueError:
            pass
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGALRM or took >= seconds:
            return "over time", f"killed after {took:.1f} s", took
        if sig == signal.SIGKILL:
            return "over memory", "killed (SIGKILL)", took
        return "crashed", f"signal {signal.Signals(sig).name}", took
    return "crashed", f"exit status {status}", took


def plan_case(seed, case, kinds, originals, work):
    """Choose and write the mutated file(s) of one case; returns what the child needs."""
    rng = random.Random(f"{seed}:{case}")
    kind = rng.choice(kinds)
    paths, canon, tensors = originals[kind]
    tf = kind.startswith("tf")
    target = rng.choice((0, 0, 0, 1)) if tf else 0
    with open(paths[target], "rb") as f:
        data = f.read()
    tree, header_end = None, 0
    if not tf:
        header, _ = _split_safetensors(data)
        tree = json.loads(header["__metadata__"].get(tinygpt.io.serialization.OBJECT_KEY, "null"))
        header_end = 8 + int.from_bytes(data[:8], "little")
    if tf and target == 0 and rng.random() < 0.6:
        new, what, edit = tf_index_field(rng, data, header_end, paths[0])
    elif not tf and rng.random() < 0.6:
        new, what, edit = rng.choice(SAFETENSORS_MUTATIONS)(rng, data, header_end)
    else:
        new, what, edit = rng.choice(BYTE_MUTATIONS)(rng, data, header_end)
    folder = os.path.join(work, "case")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    case_paths = [os.path.join(folder, os.path.basename(p)) for p in paths]
    for i, (src, dst) in enumerate(zip(paths, case_paths)):
        if i == target:
            with open(dst, "wb") as f:
                f.write(new)
        else:
            shutil.copyfile(src, dst)
    description = f"{os.path.basename(paths[target])}: {what}"
    return kind, case_paths, canon, edit, tensors, tree, rng.random() < 0.5, description


def fuzz(cases, seed=0, kinds=KINDS, memory_mb=1536, seconds=20, only_case=None, log=None):
    """Run the cases; returns (counts {kind: {outcome: n}}, failures [dict], seconds,
    slowest (seconds, case, kind, mutation))."""
    work = tempfile.mkdtemp(prefix="tinygpt-fuzz-")
    try:
        originals = make_originals(os.path.join(work, "originals"))
        counts = {k: dict.fromkeys(OUTCOMES, 0) for k in kinds}
        failures, slowest = [], (0.0, None, None, None)
        started = time.perf_counter()
        for case in ([only_case] if only_case is not None else range(cases)):
            kind, paths, canon, edit, tensors, tree, choice, what = plan_case(
                seed, case, kinds, originals, work)

            def one(kind=kind, paths=paths, canon=canon, edit=edit, tensors=tensors, tree=tree,
                    choice=choice):
                return classify(kind, paths, canon, edit, tensors, tree, choice)

            outcome, detail, took = run_forked(one, memory_mb << 20, seconds)
            counts[kind][outcome] += 1
            slowest = max(slowest, (took, case, kind, what), key=lambda t: t[0])
            if outcome in FAILURES:
                failures.append({"case": case, "kind": kind, "mutation": what,
                                 "outcome": outcome, "detail": detail, "seconds": took})
            if log:
                log(f"case {case} {kind}: {what} -> {outcome} ({took:.2f} s)"
                    + (f"\n    {detail}" if detail and outcome in FAILURES else ""))
        return counts, failures, time.perf_counter() - started, slowest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def table(counts):
    used = OUTCOMES  # every outcome, so a zero in a failure column is visible
    lines = ["| kind | " + " | ".join(used) + " | total |",
             "|---|" + "---:|" * (len(used) + 1)]
    for kind, c in counts.items():
        lines.append(f"| {kind} | " + " | ".join(str(c[o]) for o in used)
                     + f" | {sum(c.values())} |")
    totals = {o: sum(c[o] for c in counts.values()) for o in OUTCOMES}
    lines.append("| **all** | " + " | ".join(f"**{totals[o]}**" for o in used)
                 + f" | **{sum(totals.values())}** |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated: {KINDS}")
    parser.add_argument("--memory-mb", type=int, default=1536,
                        help="how far a case's address space may grow (RLIMIT_AS)")
    parser.add_argument("--seconds", type=int, default=20, help="time limit per case")
    parser.add_argument("--case", type=int, help="run only this case (with --seed)")
    parser.add_argument("--verbose", action="store_true", help="a line per case")
    args = parser.parse_args(argv)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    counts, failures, took, slowest = fuzz(args.cases, args.seed, kinds, args.memory_mb,
                                           args.seconds, args.case,
                                           log=print if args.verbose else None)
    n = sum(sum(c.values()) for c in counts.values())
    print(f"\n{n} cases, seed {args.seed}, {took:.1f} s ({took / max(n, 1) * 1000:.0f} ms a case); "
          f"memory cap +{args.memory_mb} MiB, {args.seconds} s a case; slowest: case "
          f"{slowest[1]} ({slowest[2]}, {slowest[0]:.2f} s): {slowest[3][:100]}\n")
    print(table(counts))
    for f in failures:
        print(f"\ncase {f['case']} ({f['kind']}): {f['mutation']}\n  -> {f['outcome']}: "
              f"{f['detail']}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
