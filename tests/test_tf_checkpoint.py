"""The NumPy TensorFlow-checkpoint reader against TensorFlow itself.

Checkpoints are written with ``tf.raw_ops.SaveV2`` (the op behind tf.train.Saver,
so OpenAI's layout) and read back with ``tinygpt.io.tf_checkpoint``; every tensor
must equal ``tf.train.load_variable`` bit for bit.
"""

import os
import shutil

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tinygpt.errors import (  # noqa: E402
    ChecksumError,
    MissingVariableError,
    TFCheckpointError,
    UnsupportedDtypeError,
)
from tinygpt.io import tf_checkpoint  # noqa: E402
from tinygpt.io.tf_checkpoint import (  # noqa: E402
    CheckpointReader,
    crc32c,
    mask_crc32c,
    unmask_crc32c,
)

from .fixtures.write_tf_fixture import fixture_tensors  # noqa: E402
from .helpers.gpt2_fixtures import gpt2_tensors, write_tf_checkpoint  # noqa: E402


def _tensors():
    """Names and arrays: the committed fixture's tensors (a tiny GPT-2, every dtype, edge
    cases) and two realistic GPT-2 shapes."""
    rng = np.random.default_rng(0)
    t = fixture_tensors()
    t["real/h0/attn/c_attn/w"] = rng.standard_normal((1, 768, 2304), dtype=np.float32)
    t["real/wpe"] = rng.standard_normal((1024, 768), dtype=np.float32)
    return t


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def tf_ckpt(tf, tmp_path_factory):
    """A checkpoint written by TensorFlow: (prefix, {name: array})."""
    prefix = str(tmp_path_factory.mktemp("tfckpt") / "model.ckpt")
    tensors = _tensors()
    names = list(tensors)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names + ["unsupported/string",
                                                           "unsupported/bfloat16"],
                      shape_and_slices=[""] * (len(names) + 2),
                      tensors=[tensors[n] for n in names]
                      + [tf.constant([b"ab", b"c"]), tf.constant([1.5, 2.0], tf.bfloat16)])
    return prefix, tensors


def _same_bits(ours, ref, name):
    ref = np.asarray(ref)
    assert ours.dtype == ref.dtype, f"{name}: dtype {ours.dtype} != {ref.dtype}"
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape} != {ref.shape}"
    assert ours.tobytes() == ref.tobytes(), f"{name}: bytes differ"


def test_variables_match_tensorflow(tf, tf_ckpt):
    prefix, tensors = tf_ckpt
    with CheckpointReader(prefix) as reader:
        ours = reader.variables()
    theirs = dict(tf.train.list_variables(prefix))
    assert set(ours) == set(theirs)
    for name, (shape, dtype) in ours.items():
        assert list(shape) == list(theirs[name]), name
        if name in tensors:
            assert dtype == np.asarray(tensors[name]).dtype, name
    assert ours["unsupported/string"][1] == "string"
    assert ours["unsupported/bfloat16"][1] == "bfloat16"
    assert ours["real/h0/attn/c_attn/w"] == ((1, 768, 2304), np.dtype("float32"))
    assert tf_checkpoint.list_variables(prefix) == sorted(
        (n, list(s)) for n, s in theirs.items())


def test_every_tensor_bitwise_equal_to_tensorflow(tf, tf_ckpt):
    prefix, tensors = tf_ckpt
    with CheckpointReader(prefix) as reader:
        for name, array in tensors.items():
            ours = reader.read(name)
            _same_bits(ours, tf.train.load_variable(prefix, name), name)
            _same_bits(ours, array, name)  # and what was saved
            assert ours.flags.writeable and ours.flags.c_contiguous


def test_realistic_wte_shape(tf, tmp_path):
    """GPT-2's largest tensor shape, (50257, 768), through TensorFlow and back."""
    prefix = str(tmp_path / "model.ckpt")
    wte = np.random.default_rng(1).standard_normal((50257, 768), dtype=np.float32)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=["model/wte"], shape_and_slices=[""],
                      tensors=[wte])
    assert tf_checkpoint.load_variable(prefix, "model/wte").tobytes() == wte.tobytes()


def test_prefix_or_index_path_accepted(tf_ckpt):
    prefix, tensors = tf_ckpt
    for spelling in (prefix, prefix + ".index", prefix + ".data-00000-of-00001"):
        with CheckpointReader(spelling) as reader:
            assert reader.read("model/wte").tobytes() == tensors["model/wte"].tobytes()


def test_tensorflow_reads_our_test_writer(tf, tmp_path):
    """gpt2_fixtures.write_tf_checkpoint (used by the other tests) writes what TF reads.

    Its 4 KB blocks give an index of many data blocks, so the reader's block walk,
    restart points and prefix-compressed keys are exercised well beyond TF's own
    single-block indexes of small checkpoints."""
    tensors = dict(gpt2_tensors(n_layer=40, n_embd=4, n_ctx=8, n_vocab=10))
    tensors.update({k: v for k, v in _tensors().items() if not k.startswith("real/")})
    prefix = str(tmp_path / "model.ckpt")
    write_tf_checkpoint(prefix, tensors)
    assert os.path.getsize(prefix + ".index") > 3 * 4096  # four or more data blocks
    with CheckpointReader(prefix) as reader:
        assert set(reader.variables()) == set(tensors)
        for name, array in tensors.items():
            _same_bits(reader.read(name), array, name)
            _same_bits(np.asarray(tf.train.load_variable(prefix, name)), array, name)


def _copy_ckpt(prefix, folder):
    os.makedirs(folder, exist_ok=True)
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copy(prefix + suffix, os.path.join(folder, "model.ckpt" + suffix))
    return os.path.join(folder, "model.ckpt")


def test_flipped_byte_names_tensor_and_file(tf_ckpt, tmp_path):
    prefix = _copy_ckpt(tf_ckpt[0], tmp_path)
    name = "model/h1/mlp/c_fc/w"
    with CheckpointReader(prefix) as reader:
        path, offset, size = reader.locate(name)
    with open(path, "r+b") as f:
        f.seek(offset + size // 2)
        byte = f.read(1)
        f.seek(offset + size // 2)
        f.write(bytes([byte[0] ^ 0x10]))
    with CheckpointReader(prefix) as reader:
        with pytest.raises(ChecksumError) as info:
            reader.read(name)
        assert name in str(info.value) and path in str(info.value)
        assert "download it again" in str(info.value)
        reader.read("model/h1/mlp/c_fc/b")  # the neighbours are intact
    with CheckpointReader(prefix, verify=False) as reader:
        reader.read(name)  # verify=False skips the check


def test_index_of_another_format(tmp_path):
    prefix = str(tmp_path / "model.ckpt")
    with open(prefix + ".index", "wb") as f:
        f.write(b'{"this": "is json, not an SSTable", "padding": "' + b"x" * 100 + b'"}')
    with pytest.raises(TFCheckpointError, match="not a TensorFlow checkpoint index"):
        CheckpointReader(prefix)
    with open(prefix + ".index", "wb") as f:
        f.write(b"short")
    with pytest.raises(TFCheckpointError, match="shorter than an SSTable footer"):
        CheckpointReader(prefix)


def test_corrupted_index_block(tf_ckpt, tmp_path):
    prefix = _copy_ckpt(tf_ckpt[0], tmp_path)
    with open(prefix + ".index", "r+b") as f:
        f.seek(30)
        byte = f.read(1)
        f.seek(30)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ChecksumError, match="index file is corrupted"):
        CheckpointReader(prefix)


def test_sstable_without_bundle_header(tmp_path):
    from .helpers.gpt2_fixtures import _write_sstable

    _write_sstable(str(tmp_path / "x.index"), [(b"a", b"1"), (b"b", b"2")])
    with pytest.raises(TFCheckpointError, match="no tensor-bundle header"):
        CheckpointReader(str(tmp_path / "x"))


def test_missing_files(tf_ckpt, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.index"):
        CheckpointReader(str(tmp_path / "nothere"))
    prefix = _copy_ckpt(tf_ckpt[0], tmp_path / "nodata")
    os.remove(prefix + ".data-00000-of-00001")
    with CheckpointReader(prefix) as reader:
        with pytest.raises(FileNotFoundError, match=r"model\.ckpt\.data-00000-of-00001"):
            reader.read("model/wte")


def test_missing_variable(tf_ckpt):
    with CheckpointReader(tf_ckpt[0]) as reader:
        with pytest.raises(MissingVariableError, match="model/h0/attn/c_attn/w") as info:
            reader.read("model/h0/attn/c_atn/w")
        assert isinstance(info.value, KeyError)


def test_truncated_data_file(tf_ckpt, tmp_path):
    prefix = _copy_ckpt(tf_ckpt[0], tmp_path)
    data = prefix + ".data-00000-of-00001"
    with CheckpointReader(prefix) as reader:
        _, offset, size = reader.locate("real/wpe")
    with open(data, "r+b") as f:
        f.truncate(offset + size - 1)
    with CheckpointReader(prefix) as reader:
        with pytest.raises(TFCheckpointError, match="truncated") as info:
            reader.read("real/wpe")
        assert "real/wpe" in str(info.value) and data in str(info.value)
        assert reader.expected_data_sizes()[data] > os.path.getsize(data)


def test_unsupported_dtypes(tf_ckpt):
    with CheckpointReader(tf_ckpt[0]) as reader:
        for name, tf_name in (("unsupported/string", "string"),
                              ("unsupported/bfloat16", "bfloat16")):
            with pytest.raises(UnsupportedDtypeError, match=tf_name) as info:
                reader.read(name)
            assert name in str(info.value)


def test_crc32c_known_answer_on_any_buffer():
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    data = np.random.default_rng(0).integers(0, 256, 100_003, dtype=np.uint8)
    expected = crc32c(data.tobytes())
    assert crc32c(data) == crc32c(memoryview(data)) == crc32c(bytearray(data)) == expected
    assert crc32c(data[:100_000].view(np.float32)) == crc32c(data[:100_000].tobytes())
    assert crc32c(b"") == 0
    for value in (0, 1, 0xFFFFFFFF, 0x12345678):
        assert unmask_crc32c(mask_crc32c(value)) == value
