"""tinygpt.Generator against torch.Generator: the same API, seeds and errors; its own numbers.

A generator's stream is its own: seeding it repeats its numbers whatever the package
generator (``tinygpt.manual_seed``) did, and drawing from it leaves the package generator
as it was. The numbers themselves are NumPy's, not torch's (documented in backend.py)."""

import numpy as np
import pytest

import tinygpt
from tinygpt.backend import get_rng_state

from .helpers.assertions import host
from .helpers.torch_twins import error_class

pytestmark = pytest.mark.usefixtures("keep_global_rng")

PROBS = [0.1, 0.2, 0.3, 0.4]


def _draws(generator, n=8):
    return tinygpt.multinomial(tinygpt.tensor(PROBS), n, replacement=True,
                               generator=generator).tolist()


def test_seeds_and_api_like_torch():
    torch = pytest.importorskip("torch")
    ours, theirs = tinygpt.Generator(), torch.Generator()
    assert ours.initial_seed() == theirs.initial_seed() == 67280421310721
    assert str(ours.device) == str(theirs.device) == "cpu"
    assert ours.manual_seed(5) is ours and theirs.manual_seed(5) is theirs
    for seed in (0, 7, -1, -(1 << 63), (1 << 64) - 1):
        assert ours.manual_seed(seed).initial_seed() == theirs.manual_seed(seed).initial_seed()
    for bad in (1.5, "3", True, None, 1 << 64, -(1 << 63) - 1, np.int64(3), np.float64(2)):
        expected = error_class(lambda bad=bad: theirs.manual_seed(bad))
        assert expected in (RuntimeError, ValueError, TypeError)
        with pytest.raises(expected):
            ours.manual_seed(bad)
    seed = ours.seed()
    assert ours.initial_seed() == seed and 0 <= seed < 1 << 64


def test_a_seeded_generator_repeats_whatever_the_package_seed():
    tinygpt.manual_seed(0)
    first = _draws(tinygpt.Generator().manual_seed(42))
    tinygpt.manual_seed(99)
    before = get_rng_state()
    again = _draws(tinygpt.Generator().manual_seed(42))
    assert first == again
    assert get_rng_state() == before, "drawing from a Generator must not touch the package's"
    assert _draws(tinygpt.Generator().manual_seed(43)) != first
    assert _draws(tinygpt.Generator()) == _draws(tinygpt.Generator())  # torch's default seed


def test_state_round_trip_and_torchs_errors():
    torch = pytest.importorskip("torch")
    g = tinygpt.Generator().manual_seed(3)
    _draws(g, 3)
    state = g.get_state()
    assert state.dtype == tinygpt.uint8 and state.ndim == 1
    ahead = _draws(g)
    g.manual_seed(11)
    assert g.set_state(state) is g
    assert _draws(g) == ahead and g.initial_seed() == 3
    clone = g.set_state(state).clone_state()
    assert _draws(clone) == _draws(g)

    theirs = torch.Generator()
    good = theirs.get_state()
    for ours_bad, their_bad in (("x", "x"), (state.float(), good.float()),
                                (state[:10], good[:10])):
        expected = error_class(lambda b=their_bad: theirs.set_state(b))
        assert expected in (TypeError, RuntimeError)
        with pytest.raises(expected):
            g.set_state(ours_bad)
    broken = host(state).copy()
    broken[16] = 0  # an even PCG64 increment: no state get_state() gives
    with pytest.raises(RuntimeError, match="Invalid"):
        g.set_state(tinygpt.tensor(broken))


def test_device_argument():
    assert tinygpt.Generator(device="cpu").device == "cpu"
    if tinygpt.backend.BACKEND == "numpy":
        with pytest.raises(RuntimeError, match="GPU"):
            tinygpt.Generator(device="cuda")
    with pytest.raises(RuntimeError, match="unknown device"):
        tinygpt.Generator(device="tpu")


def test_nn_init_draws_from_a_generator():
    torch = pytest.importorskip("torch")
    w = tinygpt.nn.Parameter(tinygpt.zeros(2, 3))
    tinygpt.nn.init.normal_(w, generator=tinygpt.Generator().manual_seed(1))
    first = host(w).copy()
    tinygpt.nn.init.normal_(w, generator=tinygpt.Generator().manual_seed(1))
    np.testing.assert_array_equal(host(w), first)
    expected = error_class(lambda: torch.nn.init.normal_(torch.zeros(2), generator=5))
    with pytest.raises(expected, match="generator"):
        tinygpt.nn.init.normal_(w, generator=5)
