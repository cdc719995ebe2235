"""Read TensorFlow checkpoints (the tensor-bundle format) with NumPy only.

OpenAI published GPT-2 as a TensorFlow 1.x checkpoint. The book reads it with
``tf.train.load_variable``; this module reads the same files without TensorFlow,
so loading pretrained weights needs nothing beyond NumPy.

A checkpoint ``PREFIX`` is two kinds of file:

``PREFIX.index``
    An SSTable (LevelDB's table format) mapping each tensor name to a
    serialized ``BundleEntryProto`` (dtype, shape, shard id, byte offset,
    byte size, masked crc32c). The empty key holds a ``BundleHeaderProto``
    (number of shards, endianness, format version). Layout of the file::

        [data block]* [metaindex block] [index block] [footer: 48 bytes]

    The footer holds two block handles (varint offset, varint size) and ends
    with an 8-byte magic number. Every block is followed by a 5-byte trailer
    (compression type, masked crc32c of block + type byte). Inside a block the
    keys are prefix-compressed: each entry stores how many bytes it shares with
    the previous key, the new bytes, and the value; a table of "restart points"
    at the end of the block lists entries stored with their full key.

``PREFIX.data-0000k-of-0000n``
    The raw tensor bytes, little-endian, back to back; each tensor is found by
    its entry's (shard, offset, size).

Protobuf messages are decoded by hand from the wire format (varints, fixed32
and length-delimited fields), which is all these two messages use.

Memory: ``read`` reads one tensor straight from the file into a fresh array
(``readinto``), so loading a model tensor by tensor never holds more than one
tensor beyond the model itself. (A memory map would do the same, but every page
it touches counts as resident until it is unmapped; reading into the array
keeps the process's peak RSS honest.)
"""

import difflib
import math
import os
import struct

import google_crc32c
import numpy as np

from ..errors import ChecksumError, MissingVariableError, TFCheckpointError, UnsupportedDtypeError
from .files import check_regular_file

__all__ = [
    "CheckpointReader",
    "ChecksumError",
    "MissingVariableError",
    "TFCheckpointError",
    "UnsupportedDtypeError",
    "crc32c",
    "list_variables",
    "load_variable",
    "mask_crc32c",
    "unmask_crc32c",
]

TABLE_MAGIC = 0xDB4775248B80FB57  # LevelDB's table magic, kept by TensorFlow
FOOTER_SIZE = 48  # two padded block handles (40 bytes) + magic (8)
BLOCK_TRAILER_SIZE = 5  # compression type (1) + masked crc32c (4)
_MASK_DELTA = 0xA282EAD8
_SUPPORTED_BUNDLE_VERSION = 1  # TensorFlow's kTensorBundleVersion

# TensorFlow's DataType enum (types.proto) -> little-endian NumPy dtype.
_TF_DTYPES = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    8: np.dtype("<c8"),  # DT_COMPLEX64
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    18: np.dtype("<c16"),  # DT_COMPLEX128
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}
_TF_DTYPE_NAMES = {
    1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8",
    7: "string", 8: "complex64", 9: "int64", 10: "bool", 11: "qint8", 12: "quint8",
    13: "qint32", 14: "bfloat16", 15: "qint16", 16: "quint16", 17: "uint16",
    18: "complex128", 19: "float16", 20: "resource", 21: "variant", 22: "uint32",
    23: "uint64",
}


# --------------------------------------------------------------------------- crc32c

def crc32c(data):
    """CRC-32C (Castagnoli) of a bytes-like object, as an int (google-crc32c's C code)."""
    if not isinstance(data, bytes):
        # google-crc32c takes bytes or a NumPy array (zero-copy), not a memoryview
        data = np.frombuffer(data, dtype=np.uint8)
    return google_crc32c.value(data)


def mask_crc32c(crc):
    """LevelDB/TensorFlow's masked crc: rotate right 15 bits and add a constant.

    Stored checksums are masked so that a crc of data containing crcs stays
    well distributed.
    """
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def unmask_crc32c(masked):
    """Inverse of ``mask_crc32c``."""
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# ------------------------------------------------------------------ protobuf wire format

def _varint(buf, pos):
    """Decode a base-128 varint at ``pos``: returns (value, next position)."""
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise TFCheckpointError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise TFCheckpointError("varint longer than 10 bytes")


def _proto_fields(buf):
    """Yield (field_number, value) of a serialized message.

    Varints and fixed-width fields give ints, length-delimited fields bytes.
    """
    pos = 0
    n = len(buf)
    while pos < n:
        tag, pos = _varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:  # varint
            value, pos = _varint(buf, pos)
        elif wire == 1:  # fixed64
            value = int.from_bytes(buf[pos:pos + 8], "little")
            pos += 8
        elif wire == 2:  # length-delimited
            length, pos = _varint(buf, pos)
            value = bytes(buf[pos:pos + length])
            if len(value) != length:
                raise TFCheckpointError("truncated length-delimited protobuf field")
            pos += length
        elif wire == 5:  # fixed32
            value = int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        else:
            raise TFCheckpointError(f"unsupported protobuf wire type {wire} (field {field})")
        if pos > n:
            raise TFCheckpointError("truncated protobuf message")
        yield field, value


def _signed64(value):
    return value - (1 << 64) if value >= (1 << 63) else value


def _parse_shape(buf):
    """TensorShapeProto: repeated Dim dim = 2 (Dim: int64 size = 1); bool unknown_rank = 3."""
    dims = []
    for field, value in _proto_fields(buf):
        if field == 2:
            size = 0
            for f, v in _proto_fields(value):
                if f == 1:
                    size = _signed64(v)
            dims.append(size)
        elif field == 3 and value:
            raise TFCheckpointError("tensor shape of unknown rank")
    if any(d < 0 for d in dims):
        raise TFCheckpointError(f"tensor shape with unknown dimensions {dims}")
    if len(dims) > 64:  # NumPy's limit, and far beyond any real checkpoint's
        raise TFCheckpointError(f"tensor shape with {len(dims)} dimensions (at most 64)")
    return tuple(dims)


def _parse_entry(buf):
    """BundleEntryProto: dtype=1, shape=2, shard_id=3, offset=4, size=5, crc32c=6 (fixed32),
    slices=7."""
    entry = {"dtype": 0, "shape": (), "shard_id": 0, "offset": 0, "size": 0,
             "crc32c": 0, "sliced": False}
    for field, value in _proto_fields(buf):
        if field == 1:
            entry["dtype"] = value
        elif field == 2:
            entry["shape"] = _parse_shape(value)
        elif field == 3:
            entry["shard_id"] = value
        elif field == 4:
            entry["offset"] = value
        elif field == 5:
            entry["size"] = value
        elif field == 6:
            entry["crc32c"] = value
        elif field == 7:
            entry["sliced"] = True
    return entry


def _parse_header(buf):
    """BundleHeaderProto: num_shards=1, endianness=2 (0 little, 1 big), version=3
    (VersionDef: producer=1, min_consumer=2, repeated bad_consumers=3)."""
    header = {"num_shards": 1, "endianness": 0, "producer": 0, "min_consumer": 0,
              "bad_consumers": []}
    header_fields = {1: "num_shards", 2: "endianness"}
    version_fields = {1: "producer", 2: "min_consumer"}
    for field, value in _proto_fields(buf):
        if field in header_fields:
            header[header_fields[field]] = value
        elif field == 3:  # the VersionDef message
            for f, v in _proto_fields(value):
                if f in version_fields:
                    header[version_fields[f]] = v
                elif f == 3:
                    header["bad_consumers"].append(v)
    return header


# ------------------------------------------------------------------------- SSTable

def _block_handle(buf, pos):
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return (offset, size), pos


def _read_block(data, handle, path, what):
    """The contents of the block at ``handle``, after checking its trailer."""
    offset, size = handle
    end = offset + size + BLOCK_TRAILER_SIZE
    if end > len(data) - FOOTER_SIZE:
        raise TFCheckpointError(
            f"{path}: {what} block at bytes {offset}..{end} runs past the end of the "
            f"{len(data)}-byte file; the index file is truncated or corrupted"
        )
    block = data[offset:offset + size]
    compression = data[offset + size]
    (stored,) = struct.unpack_from("<I", data, offset + size + 1)
    actual = mask_crc32c(crc32c(data[offset:offset + size + 1]))
    if stored != actual:
        raise ChecksumError(
            f"{path}: {what} block at byte {offset} fails its crc32c check "
            f"(stored {stored:#010x}, computed {actual:#010x}); the index file is corrupted: "
            "download it again",
            path=path,
        )
    if compression != 0:
        raise TFCheckpointError(
            f"{path}: {what} block is compressed (type {compression}, 1 = snappy); "
            "TensorFlow's checkpoint writer never compresses, and this reader doesn't "
            "decompress"
        )
    return block


def _block_entries(block, path):
    """Yield (key, value) of one block, undoing the prefix compression."""
    if len(block) < 4:
        raise TFCheckpointError(f"{path}: block of {len(block)} bytes is too short")
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * num_restarts  # entries end where the restart table starts
    if limit < 0:
        raise TFCheckpointError(f"{path}: block restart table is larger than the block")
    key = b""
    pos = 0
    while pos < limit:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        if shared > len(key) or pos + non_shared + value_len > limit:
            raise TFCheckpointError(f"{path}: corrupted block entry at byte {pos}")
        key = key[:shared] + bytes(block[pos:pos + non_shared])
        pos += non_shared
        yield key, bytes(block[pos:pos + value_len])
        pos += value_len


def _read_table(path):
    """All (key, value) pairs of an SSTable file, in key order."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < FOOTER_SIZE:
        raise TFCheckpointError(
            f"{path} is {len(data)} bytes, shorter than an SSTable footer ({FOOTER_SIZE}): "
            "not a TensorFlow checkpoint index (or a truncated one)"
        )
    footer = data[-FOOTER_SIZE:]
    (magic,) = struct.unpack_from("<Q", footer, FOOTER_SIZE - 8)
    if magic != TABLE_MAGIC:
        raise TFCheckpointError(
            f"{path} is not a TensorFlow checkpoint index: its last 8 bytes are "
            f"{magic:#018x}, not the table magic {TABLE_MAGIC:#018x}. Pass the checkpoint "
            "prefix (e.g. 'gpt2/124M/model.ckpt', whose index is model.ckpt.index); a "
            "truncated download also looks like this"
        )
    _metaindex, pos = _block_handle(footer, 0)
    index_handle, _ = _block_handle(footer, pos)
    index = _read_block(data, index_handle, path, "index")
    items = []
    for _, handle_bytes in _block_entries(index, path):
        handle, _ = _block_handle(handle_bytes, 0)
        items.extend(_block_entries(_read_block(data, handle, path, "data"), path))
    return items


# ------------------------------------------------------------------------- the reader

def _index_path(prefix):
    return f"{prefix}.index"


def _normalise_prefix(prefix):
    """Accept the prefix itself, or the path of its .index / .data-* file."""
    prefix = os.fspath(prefix)
    if prefix.endswith(".index"):
        return prefix[: -len(".index")]
    head, sep, tail = prefix.rpartition(".data-")
    if sep and "-of-" in tail:
        return head
    return prefix


def _tf_error(path, problem):
    return TFCheckpointError(f"{path} {problem}", path)


class CheckpointReader:
    """Read tensors from a TensorFlow checkpoint without TensorFlow.

    >>> with CheckpointReader("gpt2/124M/model.ckpt") as ckpt:   # doctest: +SKIP
    ...     ckpt.variables()["model/wte"]
    ((50257, 768), dtype('float32'))
    ...     wte = ckpt.read("model/wte")                            # (50257, 768) float32

    ``prefix`` is the checkpoint prefix (``.../model.ckpt``); the path of its
    ``.index`` file is accepted too. Each ``read`` verifies the tensor's stored
    crc32c unless ``verify=False``.
    """

    def __init__(self, prefix, verify=True):
        self.prefix = _normalise_prefix(prefix)
        self.verify = verify
        self.index_path = _index_path(self.prefix)
        if os.path.lexists(self.index_path):
            check_regular_file(self.index_path, "a checkpoint index", _tf_error)
        else:
            folder = os.path.dirname(self.index_path) or "."
            hint = ""
            if os.path.isdir(folder):
                found = sorted(f for f in os.listdir(folder) if f.endswith(".index"))
                hint = f"; index files in {folder}: {found}" if found else f"; {folder} has none"
            raise FileNotFoundError(
                f"TensorFlow checkpoint index {self.index_path} not found (checkpoint prefix "
                f"{self.prefix!r}){hint}. Pass the prefix without extension, e.g. "
                "'gpt2/124M/model.ckpt'"
            )
        items = _read_table(self.index_path)
        if not items or items[0][0] != b"":  # the header sorts first, under the empty key
            raise TFCheckpointError(
                f"{self.index_path} is an SSTable but has no tensor-bundle header entry: "
                "not a TensorFlow V2 checkpoint index"
            )
        self._entries = {}
        key = b""
        try:
            header = _parse_header(items[0][1])
            for key, value in items[1:]:
                self._entries[key.decode("utf-8")] = _parse_entry(value)
        except (TFCheckpointError, UnicodeDecodeError) as exc:
            raise TFCheckpointError(
                f"{self.index_path}: entry {key!r} is not a tensor-bundle entry ({exc}); "
                "not a TensorFlow V2 checkpoint index, or a corrupted one"
            ) from exc
        if header["endianness"] != 0:
            raise TFCheckpointError(
                f"{self.index_path}: checkpoint was written big-endian; only little-endian "
                "checkpoints are supported"
            )
        if (header["min_consumer"] > _SUPPORTED_BUNDLE_VERSION
                or _SUPPORTED_BUNDLE_VERSION in header["bad_consumers"]):
            raise TFCheckpointError(
                f"{self.index_path}: bundle format needs a reader of version >= "
                f"{header['min_consumer']}; this one implements version "
                f"{_SUPPORTED_BUNDLE_VERSION}"
            )
        # The header's count is believed only as far as the entries bear it out: a shard
        # holds at least one tensor, so a 1 KB index can't make us list 2**40 files.
        self.num_shards = header["num_shards"]
        if not 1 <= self.num_shards <= max(1, len(self._entries)):
            raise TFCheckpointError(
                f"{self.index_path}: header says {self.num_shards} data shards for "
                f"{len(self._entries)} tensors; the index is corrupted or not a checkpoint's",
                self.index_path,
            )
        for name, e in self._entries.items():
            if e["shard_id"] >= self.num_shards:
                raise TFCheckpointError(
                    f"{self.index_path}: tensor {name!r} is in shard {e['shard_id']}, but the "
                    f"checkpoint has {self.num_shards} shard(s); the index is corrupted",
                    self.index_path,
                )
        self._files = {}

    # ---- lifetime
    def close(self):
        """Close the data files opened so far."""
        for f in self._files.values():
            f.close()
        self._files = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # ---- listing
    def data_path(self, shard_id):
        """Path of data shard ``shard_id`` (``PREFIX.data-0000k-of-0000n``)."""
        return f"{self.prefix}.data-{shard_id:05d}-of-{self.num_shards:05d}"

    def variables(self):
        """{name: (shape, dtype)}; dtype is a NumPy dtype, or TensorFlow's name
        (e.g. ``'string'``) for dtypes this reader cannot return."""
        out = {}
        for name, e in self._entries.items():
            dtype = _TF_DTYPES.get(e["dtype"])
            if dtype is not None:
                dtype = dtype.newbyteorder("=")
            else:
                dtype = _TF_DTYPE_NAMES.get(e["dtype"], f"dtype enum {e['dtype']}")
            out[name] = (e["shape"], dtype)
        return out

    def __contains__(self, name):
        return name in self._entries

    def __len__(self):
        return len(self._entries)

    def shape(self, name):
        return self._entry(name)["shape"]

    def _entry(self, name):
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=3)
            hint = f"; did you mean {close}?" if close else ""
            raise MissingVariableError(
                f"checkpoint {self.prefix!r} has no variable {name!r} "
                f"({len(self._entries)} variables{hint})"
            ) from None

    def locate(self, name):
        """(data file path, byte offset, byte size) of tensor ``name``."""
        e = self._entry(name)
        return self.data_path(e["shard_id"]), e["offset"], e["size"]

    def expected_data_sizes(self):
        """{shard path: the smallest file size that holds every tensor of that shard}."""
        sizes = {self.data_path(i): 0 for i in range(self.num_shards)}
        for e in self._entries.values():
            path = self.data_path(e["shard_id"])
            sizes[path] = max(sizes.get(path, 0), e["offset"] + e["size"])
        return sizes

    # ---- reading
    def _file(self, shard_id, name):
        if shard_id not in self._files:
            path = self.data_path(shard_id)
            if shard_id >= self.num_shards:
                raise TFCheckpointError(
                    f"{self.index_path}: tensor {name!r} is in shard {shard_id}, but the "
                    f"checkpoint has {self.num_shards} shard(s)"
                )
            try:
                if os.path.lexists(path):
                    check_regular_file(path, "a checkpoint data file", _tf_error)
                self._files[shard_id] = open(path, "rb")
            except FileNotFoundError:
                raise FileNotFoundError(
                    f"checkpoint data file {path} not found (needed for tensor {name!r}); "
                    "the index and data files must lie side by side"
                ) from None
        return self._files[shard_id]

    def read(self, name):
        """Tensor ``name`` as a new NumPy array (native byte order), checksum verified."""
        e = self._entry(name)
        if e["sliced"]:
            raise TFCheckpointError(
                f"tensor {name!r} in {self.index_path} is saved in slices (a partitioned "
                "variable); this reader handles whole tensors only"
            )
        dtype = _TF_DTYPES.get(e["dtype"])
        if dtype is None:
            tf_name = _TF_DTYPE_NAMES.get(e["dtype"], f"enum value {e['dtype']}")
            raise UnsupportedDtypeError(
                f"tensor {name!r} in {self.index_path} has dtype {tf_name}, which this reader "
                f"does not support (supported: "
                f"{sorted(_TF_DTYPE_NAMES[k] for k in _TF_DTYPES)})"
            )
        shape = e["shape"]
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes != e["size"]:
            raise TFCheckpointError(
                f"{self.index_path}: tensor {name!r} of shape {shape} and dtype {dtype} "
                f"needs {nbytes} bytes but its entry says {e['size']}"
            )
        f = self._file(e["shard_id"], name)
        path = f.name
        file_size = os.fstat(f.fileno()).st_size
        if e["offset"] + nbytes > file_size:
            raise TFCheckpointError(
                f"{path} is truncated: tensor {name!r} needs bytes {e['offset']}.."
                f"{e['offset'] + nbytes} but the file has {file_size}; download it again"
            )
        # Read straight into the array's own buffer: one copy, no temporary bytes object.
        array = np.empty(shape, dtype=dtype)  # little-endian, as stored
        buf = memoryview(array.reshape(-1).view(np.uint8))
        f.seek(e["offset"])
        got = 0
        while got < nbytes:
            n = f.readinto(buf[got:])
            if not n:
                raise TFCheckpointError(
                    f"{path}: unexpected end of file reading tensor {name!r} "
                    f"({got} of {nbytes} bytes)"
                )
            got += n
        if self.verify:
            actual = mask_crc32c(crc32c(array.reshape(-1).view(np.uint8)))
            if actual != e["crc32c"]:
                raise ChecksumError(
                    f"tensor {name!r} in {path} fails its crc32c check (stored "
                    f"{e['crc32c']:#010x}, computed {actual:#010x}): the data file is corrupted; "
                    "delete it and download it again",
                    path=path, tensor=name,
                )
        if not dtype.isnative:  # pragma: no cover - big-endian hosts only
            array = array.astype(dtype.newbyteorder("="))
        return array


def list_variables(prefix):
    """[(name, shape)] sorted by name, like ``tf.train.list_variables``."""
    with CheckpointReader(prefix) as reader:
        return [(name, list(shape)) for name, (shape, _) in sorted(reader.variables().items())]


def load_variable(prefix, name):
    """One tensor as a NumPy array, like ``tf.train.load_variable``."""
    with CheckpointReader(prefix) as reader:
        return reader.read(name)
