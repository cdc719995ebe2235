"""The Philox dropout generator on the CPU: known answers, the uniforms' layout, masks
drawn with it, its state in snapshots, and that the CUDA kernels that compute it compile."""

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import tinygpt
import tinygpt.nn.functional as F
from tinygpt import backend, fused
from tinygpt.backend import philox4x32
from tinygpt.backend import philox_uniforms as uniforms
from tinygpt.tensor import Tensor

from .helpers.assertions import host

pytestmark = pytest.mark.usefixtures("keep_global_rng")


@pytest.fixture
def philox_masks():
    previous = backend.dropout_rng()
    backend.set_dropout_rng("philox")
    yield
    backend.set_dropout_rng(previous)


# Random123's known-answer vectors for Philox4x32-10 (counter, key -> output); the last
# row's output was also checked against randomgen 2.5.1's Philox(number=4, width=32).
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter,key,expected", KNOWN_ANSWERS)
def test_known_answers(counter, key, expected):
    assert tuple(int(w) for w in philox4x32(counter, key)) == expected


def test_uniforms_are_words_of_consecutive_blocks():
    seed, draw = (7 << 32) + 5, (3 << 32) + 9  # both halves of key and draw in use
    u = uniforms((3, 7), seed, draw)  # 21 values: blocks 0..5
    assert u.dtype == np.float32 and u.shape == (3, 7)
    flat = u.reshape(-1)
    for i in (0, 1, 2, 3, 4, 13, 20):
        words = philox4x32((i // 4, 0, draw & 0xFFFFFFFF, draw >> 32), (5, 7))
        assert flat[i] == np.float32((int(words[i % 4]) >> 8) * 2.0**-24), i


def test_uniforms_have_24_bits_and_the_right_moments():
    u = uniforms((400_000,), 123, 0).astype(np.float64)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert np.all(u * 2**24 == np.floor(u * 2**24))
    n = u.size
    assert abs(u.mean() - 0.5) < 6 * math.sqrt(1 / 12 / n)
    assert abs(u.var() - 1 / 12) < 0.002
    # neighbours (same block and across blocks) and two draws are uncorrelated
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 6 / math.sqrt(n)
    other = uniforms((400_000,), 123, 1).astype(np.float64)
    assert abs(np.corrcoef(u, other)[0, 1]) < 6 / math.sqrt(n)


def test_block_counter_uses_its_upper_word():
    low = philox4x32((5, 0, 0, 0), (1, 2))
    high = philox4x32((5, 1, 0, 0), (1, 2))  # element index past 2**34
    assert tuple(map(int, low)) != tuple(map(int, high))


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_philox_masks_drop_p_and_scale_exactly(philox_masks, p):
    x = np.random.default_rng(0).uniform(0.5, 1.5, size=300_000).astype(np.float32)
    tinygpt.manual_seed(11)
    y = host(F.dropout(Tensor(backend.asarray(x)), p))
    dropped = y == 0.0
    assert abs(dropped.mean() - p) <= 6 * math.sqrt(p * (1 - p) / x.size)
    np.testing.assert_array_equal(y[~dropped], x[~dropped] * np.float32(1 / (1 - p)))


def test_philox_masks_repeat_under_a_seed_and_differ_between_draws(philox_masks):
    tinygpt.manual_seed(3)
    first = host(fused.dropout_mask((50, 40), 0.3, np.float32))
    second = host(fused.dropout_mask((50, 40), 0.3, np.float32))
    tinygpt.manual_seed(3)
    np.testing.assert_array_equal(host(fused.dropout_mask((50, 40), 0.3, np.float32)), first)
    assert not np.array_equal(first, second)
    # the mask is uniforms(draw) >= p: draw 0, then draw 1
    tinygpt.manual_seed(3)
    expected = (uniforms((50, 40), 3, 0) >= np.float32(0.3)).astype(np.float32) / np.float32(0.7)
    np.testing.assert_array_equal(first, expected)


def test_snapshot_restores_the_philox_draw(philox_masks):
    tinygpt.manual_seed(8)
    fused.dropout_mask((10,), 0.5, np.float32)
    state = tinygpt.get_rng_state()
    assert state["philox"] == {"seed": 8, "draws": 1}
    mask = host(fused.dropout_mask((1000,), 0.5, np.float32))
    tinygpt.manual_seed(99)
    tinygpt.set_rng_state(state)
    np.testing.assert_array_equal(host(fused.dropout_mask((1000,), 0.5, np.float32)), mask)


def test_old_snapshots_without_philox_still_restore():
    tinygpt.manual_seed(4)
    state = tinygpt.get_rng_state()
    state.pop("philox")
    numbers = tinygpt.backend.get_rng().random(3)
    tinygpt.set_rng_state(state)
    np.testing.assert_array_equal(tinygpt.backend.get_rng().random(3), numbers)


@pytest.mark.parametrize("bad", [{"seed": -1, "draws": 0}, {"seed": 1}, {"seed": "x", "draws": 0}])
def test_bad_philox_state_is_refused_before_anything_changes(bad):
    tinygpt.manual_seed(4)
    before = tinygpt.get_rng_state()
    with pytest.raises(ValueError, match="random generator state"):
        tinygpt.set_rng_state(dict(before, philox=bad))
    assert tinygpt.get_rng_state() == before


def test_dropout_gradient_uses_the_same_philox_mask(philox_masks):
    x = Tensor(backend.asarray(np.full((30, 40), 2.0)), requires_grad=True)
    tinygpt.manual_seed(2)
    y = F.dropout(x, 0.4)
    y.backward(backend.asarray(np.ones((30, 40))))
    np.testing.assert_array_equal(host(x.grad), host(y) / 2.0)


def test_model_trains_with_philox_masks(philox_masks):
    cfg = {"vocab_size": 50, "context_length": 8, "emb_dim": 16, "n_heads": 2, "n_layers": 2,
           "drop_rate": 0.2, "qkv_bias": False}
    ids = np.random.default_rng(0).integers(0, 50, size=(2, 9))
    tinygpt.manual_seed(1)
    model = tinygpt.GPTModel(cfg).train()
    opt = tinygpt.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = tinygpt.cross_entropy(model(ids[:, :-1]), ids[:, 1:])
        losses.append(loss.item())
        loss.backward()
        opt.step()
    assert losses[-1] < 0.5 * losses[0]


KERNELS = Path(__file__).resolve().parents[1] / "tinygpt" / "cuda" / "kernels.cu"


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (CUDA toolkit) not installed")
def test_cuda_kernels_compile(tmp_path):
    """The GPU path's source compiles for Hopper (sm_90) without warnings, so a typo is
    caught without a GPU; CuPy compiles the same file with NVRTC at run time."""
    out = subprocess.run(
        ["nvcc", "-arch=sm_90", "--std=c++17", "-Werror", "all-warnings", "-c",
         str(KERNELS), "-o", str(tmp_path / "kernels.o")],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
