"""The one place that knows which array library runs the maths.

NumPy by default; set ``TINYGPT_BACKEND=cupy`` (before importing tinygpt) to run
the same code on an NVIDIA GPU through CuPy. Everything else imports ``xp`` from
here and never names an array library itself.

Randomness comes from one NumPy ``Generator`` (``manual_seed``): init, dropout,
shuffling and sampling all draw from it on the CPU, so a seeded run gives the
same numbers on either backend.
"""

import ctypes
import os
import sys

import numpy

BACKEND = os.environ.get("TINYGPT_BACKEND", "numpy").strip().lower()

if BACKEND == "numpy":
    xp = numpy
elif BACKEND == "cupy":
    try:
        import cupy as xp  # noqa: F401  (only this file may name CuPy)
    except ImportError as exc:  # pragma: no cover - needs a GPU machine
        raise ImportError(
            "TINYGPT_BACKEND=cupy but CuPy is not installed: "
            "pip install cupy-cuda12x, or unset TINYGPT_BACKEND to use NumPy"
        ) from exc
else:
    raise ValueError(f"TINYGPT_BACKEND must be 'numpy' or 'cupy', not {BACKEND!r}")

DEFAULT_DTYPE = numpy.float32


def _keep_freed_memory_for_reuse():
    """Ask glibc to keep large freed blocks instead of handing them back to the OS.

    A training step frees and reallocates the same large arrays (logits, the
    dense embedding gradient, activations); returned to the OS, each comes back
    as fresh pages that fault in one by one on first touch. Keeping them cuts
    that cost. Set TINYGPT_MALLOC_TUNING=0 to leave malloc alone.
    """
    if os.environ.get("TINYGPT_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl): nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt parameter numbers (malloc.h)
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, (1 << 31) - 1)


_keep_freed_memory_for_reuse()

_rng = numpy.random.default_rng(0)


def manual_seed(seed):
    """Reseed the generator that init, dropout, shuffling and sampling draw from."""
    global _rng
    _rng = numpy.random.default_rng(int(seed))
    return _rng


def get_rng():
    """The package's random generator (a ``numpy.random.Generator``)."""
    return _rng


def get_rng_state():
    """A JSON-serialisable snapshot of the generator, for checkpoints."""
    return _rng.bit_generator.state


def set_rng_state(state):
    """Restore a snapshot taken by ``get_rng_state``."""
    rng = numpy.random.default_rng()
    rng.bit_generator.state = state
    global _rng
    _rng = rng


def to_numpy(array):
    """A NumPy array from either backend (a no-op on NumPy)."""
    if isinstance(array, numpy.ndarray):
        return array
    if hasattr(array, "get"):  # a CuPy array
        return array.get()
    return numpy.asarray(array)


def asarray(array, dtype=None):
    """An array on the active backend (copies to the GPU under CuPy)."""
    return xp.asarray(array, dtype=dtype)
