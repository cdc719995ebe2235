"""Helpers that write synthetic GPT-2 checkpoints for the tests and the benchmark.

``write_tf_checkpoint`` is a small TensorFlow tensor-bundle writer in plain
Python (the mirror image of ``tinygpt.io.tf_checkpoint``): the tests check that
TensorFlow reads what it writes, so the download and loading tests can make
OpenAI-layout checkpoints quickly and without importing TensorFlow. It streams,
so the benchmark can write a 6 GB gpt2-xl checkpoint holding one tensor at a time.
"""

import json
import os
import struct

import numpy as np

from tinygpt.io.files import sha256_hex
from tinygpt.io.tf_checkpoint import TABLE_MAGIC, crc32c, mask_crc32c

GPT2_FILES = (
    "checkpoint",
    "encoder.json",
    "hparams.json",
    "model.ckpt.data-00000-of-00001",
    "model.ckpt.index",
    "model.ckpt.meta",
    "vocab.bpe",
)

# NumPy dtype -> TensorFlow DataType enum value
_TF_ENUM = {
    np.dtype("float32"): 1, np.dtype("float64"): 2, np.dtype("int32"): 3,
    np.dtype("uint8"): 4, np.dtype("int16"): 5, np.dtype("int8"): 6,
    np.dtype("complex64"): 8, np.dtype("int64"): 9, np.dtype("bool"): 10,
    np.dtype("uint16"): 17, np.dtype("complex128"): 18, np.dtype("float16"): 19,
    np.dtype("uint32"): 22, np.dtype("uint64"): 23,
}


# ------------------------------------------------------------------ protobuf encoding

def _varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_varint(field, value):
    return _varint(field << 3) + _varint(value)


def _field_bytes(field, payload):
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _field_fixed32(field, value):
    return _varint(field << 3 | 5) + struct.pack("<I", value)


def _entry_proto(dtype_enum, shape, offset, size, crc):
    shape_proto = b"".join(_field_bytes(2, _field_varint(1, d) if d else b"") for d in shape)
    msg = _field_varint(1, dtype_enum) + _field_bytes(2, shape_proto)
    if offset:  # proto3 leaves default values out, as TensorFlow does
        msg += _field_varint(4, offset)
    if size:
        msg += _field_varint(5, size)
    return msg + _field_fixed32(6, crc)


def _header_proto(num_shards=1):
    return _field_varint(1, num_shards) + _field_bytes(3, _field_varint(1, 1))


# ------------------------------------------------------------------ SSTable writing

def _encode_block(items, restart_interval=16):
    out = bytearray()
    restarts = []
    prev = b""
    for i, (key, value) in enumerate(items):
        if i % restart_interval == 0:
            restarts.append(len(out))
            shared = 0
        else:
            shared = 0
            while shared < min(len(prev), len(key)) and prev[shared] == key[shared]:
                shared += 1
        out += _varint(shared) + _varint(len(key) - shared) + _varint(len(value))
        out += key[shared:] + value
        prev = key
    for r in restarts or [0]:
        out += struct.pack("<I", r)
    out += struct.pack("<I", len(restarts or [0]))
    return bytes(out)


def _write_sstable(path, items, block_size=4096):
    """Write sorted (key, value) pairs as a LevelDB-format table, blocks of ~block_size."""
    with open(path, "wb") as f:
        pos = 0

        def put_block(contents):
            nonlocal pos
            handle = (pos, len(contents))
            trailer = b"\x00" + struct.pack("<I", mask_crc32c(crc32c(contents + b"\x00")))
            f.write(contents + trailer)
            pos += len(contents) + len(trailer)
            return handle

        index_items = []
        block, size = [], 0
        for key, value in items:
            block.append((key, value))
            size += len(key) + len(value) + 3
            if size >= block_size:
                handle = put_block(_encode_block(block))
                index_items.append((block[-1][0], _varint(handle[0]) + _varint(handle[1])))
                block, size = [], 0
        if block:
            handle = put_block(_encode_block(block))
            index_items.append((block[-1][0], _varint(handle[0]) + _varint(handle[1])))
        meta = put_block(_encode_block([]))
        index = put_block(_encode_block(index_items, restart_interval=1))
        footer = _varint(meta[0]) + _varint(meta[1]) + _varint(index[0]) + _varint(index[1])
        footer = footer.ljust(40, b"\x00") + struct.pack("<Q", TABLE_MAGIC)
        f.write(footer)


def write_tf_checkpoint(prefix, tensors):
    """Write a one-shard TensorFlow V2 checkpoint at ``prefix``.

    ``tensors`` is a dict or an iterable of (name, array); arrays are written in
    the order given, one at a time, so a generator keeps memory to one tensor.
    """
    os.makedirs(os.path.dirname(os.fspath(prefix)) or ".", exist_ok=True)
    items = tensors.items() if isinstance(tensors, dict) else tensors
    entries = []
    offset = 0
    with open(f"{prefix}.data-00000-of-00001", "wb") as f:
        for name, array in items:
            array = np.asarray(array)  # (not ascontiguousarray: it turns scalars into (1,))
            if not array.flags.c_contiguous:
                array = array.copy()
            le = array.astype(array.dtype.newbyteorder("<"), copy=False)
            raw = le.reshape(-1).view(np.uint8)
            f.write(raw.data)
            crc = mask_crc32c(crc32c(raw))
            entries.append((name.encode(), _entry_proto(
                _TF_ENUM[array.dtype.newbyteorder("=")], array.shape, offset, raw.size, crc)))
            offset += raw.size
            del array, le, raw
    entries.sort()
    _write_sstable(f"{prefix}.index", [(b"", _header_proto())] + entries)


# ------------------------------------------------------------------ GPT-2 layouts

def gpt2_tensor_shapes(n_layer, n_embd, n_ctx=1024, n_vocab=50257):
    """[(OpenAI variable name, shape)] of a GPT-2 checkpoint, in a natural order."""
    C = n_embd
    shapes = [("model/wte", (n_vocab, C)), ("model/wpe", (n_ctx, C))]
    for i in range(n_layer):
        h = f"model/h{i}"
        shapes += [
            (f"{h}/ln_1/g", (C,)), (f"{h}/ln_1/b", (C,)),
            (f"{h}/attn/c_attn/w", (1, C, 3 * C)), (f"{h}/attn/c_attn/b", (3 * C,)),
            (f"{h}/attn/c_proj/w", (1, C, C)), (f"{h}/attn/c_proj/b", (C,)),
            (f"{h}/ln_2/g", (C,)), (f"{h}/ln_2/b", (C,)),
            (f"{h}/mlp/c_fc/w", (1, C, 4 * C)), (f"{h}/mlp/c_fc/b", (4 * C,)),
            (f"{h}/mlp/c_proj/w", (1, 4 * C, C)), (f"{h}/mlp/c_proj/b", (C,)),
        ]
    shapes += [("model/ln_f/g", (C,)), ("model/ln_f/b", (C,))]
    return shapes


def gpt2_tensors(n_layer, n_embd, n_ctx=1024, n_vocab=50257, seed=0, fast=False):
    """Yield (name, float32 array) of a synthetic GPT-2 checkpoint.

    Values look like a trained model's scale (weights ~0.02, gains ~1) so a
    forward pass stays finite. ``fast`` fills large tensors with a cheap
    pattern instead of random numbers (for multi-GB benchmark checkpoints).
    """
    rng = np.random.default_rng(seed)
    for k, (name, shape) in enumerate(gpt2_tensor_shapes(n_layer, n_embd, n_ctx, n_vocab)):
        n = int(np.prod(shape))
        if fast and n > 1 << 20:
            a = np.empty(n, dtype=np.float32)
            a[:] = (k % 7 + 1) * 1e-3
            a[::3] = -0.01
            array = a.reshape(shape)
        elif name.endswith("/g"):
            array = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            array = (0.02 * rng.standard_normal(shape)).astype(np.float32)
        yield name, array


def write_gpt2_folder(folder, n_layer, n_embd, n_head, n_ctx=1024, n_vocab=50257, seed=0,
                      fast=False):
    """A folder laid out like OpenAI's ``models/124M``: the seven files, with a
    synthetic checkpoint and small stand-ins for encoder.json / vocab.bpe / meta.

    Returns {file name: sha256 hex} of what it wrote.
    """
    os.makedirs(folder, exist_ok=True)
    hparams = {"n_vocab": n_vocab, "n_ctx": n_ctx, "n_embd": n_embd, "n_head": n_head,
               "n_layer": n_layer}
    small = {
        "checkpoint": b'model_checkpoint_path: "model.ckpt"\n'
                      b'all_model_checkpoint_paths: "model.ckpt"\n',
        "encoder.json": json.dumps({"!": 0, "hello": 1, "<|endoftext|>": 2}).encode(),
        "hparams.json": json.dumps(hparams, indent=2).encode(),
        "model.ckpt.meta": bytes(range(256)) * 7,
        "vocab.bpe": b"#version: 0.2\nh e\nhe llo\n",
    }
    for name, data in small.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
    write_tf_checkpoint(os.path.join(folder, "model.ckpt"),
                        gpt2_tensors(n_layer, n_embd, n_ctx, n_vocab, seed=seed, fast=fast))
    return {name: sha256_hex(os.path.join(folder, name)) for name in GPT2_FILES}

