"""The NumPy TensorFlow-checkpoint reader against a checkpoint TensorFlow wrote
(tests/fixtures/tf_written, made by tests/fixtures/write_tf_fixture.py): these run
without TensorFlow, so the reader always meets TensorFlow's own bytes. The tests in
test_tf_checkpoint.py that need TensorFlow itself (the `tf` extra) skip without it."""

import json
import shutil

import numpy as np
import pytest

from tinygpt.errors import ChecksumError, UnsupportedDtypeError
from tinygpt.io import tf_checkpoint
from tinygpt.io.tf_checkpoint import CheckpointReader

from .fixtures.write_tf_fixture import FOLDER, PREFIX, fixture_tensors


def test_variables_are_those_tensorflow_listed():
    listed = json.loads((FOLDER / "variables.json").read_text(encoding="utf-8"))["variables"]
    with CheckpointReader(str(PREFIX)) as reader:
        ours = reader.variables()
    assert {name: list(shape) for name, (shape, _) in ours.items()} == listed
    assert ours["unsupported/string"][1] == "string"


def test_every_tensor_bitwise_equal_to_what_was_saved():
    with CheckpointReader(str(PREFIX)) as reader:
        for name, array in fixture_tensors().items():
            ours = reader.read(name)
            array = np.asarray(array)
            assert (ours.dtype, ours.shape) == (array.dtype, array.shape), name
            assert ours.tobytes() == array.tobytes(), f"{name}: bytes differ"


def test_unsupported_dtype_is_named():
    with CheckpointReader(str(PREFIX)) as reader, pytest.raises(UnsupportedDtypeError,
                                                                 match="string"):
        reader.read("unsupported/string")


def test_a_flipped_byte_in_tensorflows_data_is_caught(tmp_path):
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copy(str(PREFIX) + suffix, tmp_path / ("model.ckpt" + suffix))
    data = tmp_path / "model.ckpt.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    with CheckpointReader(str(PREFIX)) as reader:
        offset = reader._entries["model/wte"]["offset"]  # the first byte of wte's data
    raw[offset] ^= 0x01
    data.write_bytes(bytes(raw))
    with pytest.raises(ChecksumError, match="model/wte"):
        tf_checkpoint.load_variable(str(tmp_path / "model.ckpt"), "model/wte")
