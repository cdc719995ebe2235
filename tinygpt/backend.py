"""The one place that knows which array library runs the maths, and where random numbers
come from.

NumPy by default; set ``TINYGPT_BACKEND=cupy`` (before importing tinygpt) to run the
same code on an NVIDIA GPU through CuPy. Everything else imports ``xp`` from here and
never names an array library itself. If the chosen backend cannot run (CuPy missing, no
GPU), importing still works and the first use of ``xp`` raises ``BackendError`` with a
one-line message saying what to do.

On CuPy some fused ops run as CUDA kernels (``tinygpt/cuda/``); each one has a twin in
plain array code (the lines in ``ops.py`` that the CPU runs), and ``kernels_disabled()``
or ``TINYGPT_KERNELS=0`` switches to the twins, for tests and parity runs.

Randomness. Init, shuffling and sampling draw from one NumPy ``Generator`` on the CPU
(``get_rng``), so a seeded model starts the same on either backend. Dropout masks come
from one of two sources (``set_dropout_rng`` or ``TINYGPT_DROPOUT_RNG``):

* ``"numpy"`` (the default on NumPy): float32 uniforms from that same Generator
  (they train like float64 ones and like torch's masks: ``docs/curve-study.md``);
  on CuPy they are drawn on the CPU and copied over, which reproduces the CPU's masks
  exactly (slow: use it for parity runs);
* ``"philox"`` (the default on CuPy): the counter-based Philox4x32-10 generator
  (``philox4x32`` below), computed where the data is, so masks are drawn on the GPU.
  Its whole state is a seed and a count of masks drawn; the NumPy twin gives the same
  masks on the CPU.

``manual_seed`` reseeds both; ``get_rng_state`` / ``set_rng_state`` carry both, so a
checkpoint resumes exactly on either backend.
"""

import contextlib
import numbers
import os
import warnings

import numpy

from .errors import TinygptError


class BackendError(TinygptError, RuntimeError):
    """The array backend or device asked for cannot be used; the message says what to do."""


BACKEND = os.environ.get("TINYGPT_BACKEND", "numpy").strip().lower() or "numpy"


class _Unavailable:
    """Stands in for the array module when the chosen backend cannot run: importing
    tinygpt works (so ``tinygpt --help`` does), any use raises ``BackendError``."""

    def __init__(self, message):
        object.__setattr__(self, "_message", message)

    def __getattr__(self, name):
        raise BackendError(self._message)


def _load_cupy():
    """(cupy module, None), or (None, the reason it cannot be used)."""
    advice = "unset TINYGPT_BACKEND to run on the CPU with NumPy"
    try:
        import cupy  # the only place tinygpt names CuPy
    except ImportError as exc:
        return None, (
            f"TINYGPT_BACKEND=cupy, but CuPy cannot be imported ({exc}); install it with "
            f"pip install 'tinygpt[gpu]' (cupy-cuda12x) or the CuPy build for your CUDA, "
            f"or {advice}"
        )
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - CUDARuntimeError and friends: no driver or GPU
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, (
            f"TINYGPT_BACKEND=cupy, but CuPy finds no usable NVIDIA GPU ({reason}); {advice}"
        )
    if count < 1:
        return None, f"TINYGPT_BACKEND=cupy, but CuPy sees no NVIDIA GPU; {advice}"
    return cupy, None


if BACKEND == "numpy":
    xp = numpy
elif BACKEND == "cupy":
    _cupy, _problem = _load_cupy()
    xp = _cupy if _problem is None else _Unavailable(_problem)
else:
    xp = _Unavailable(f"TINYGPT_BACKEND must be 'numpy' or 'cupy', not {BACKEND!r}")

ON_GPU = BACKEND == "cupy" and not isinstance(xp, _Unavailable)


def check_available():
    """Raise BackendError (saying what to do) if the chosen backend cannot run."""
    if isinstance(xp, _Unavailable):
        raise BackendError(xp._message)


DEFAULT_DTYPE = numpy.float32


# ----------------------------------------------------------------------------------
# Devices: the book's ``device`` argument, and moving arrays between host and device.


def device_name():
    """'cuda' on the CuPy backend, 'cpu' on NumPy."""
    return "cuda" if BACKEND == "cupy" else "cpu"


class Device:
    """torch.device's counterpart (``tinygpt.device``): a name, "cpu" or "cuda", with an
    optional index ("cuda:0"). It compares equal to a string of the same name."""

    def __init__(self, type, index=None):  # noqa: A002 - torch's argument name
        if isinstance(type, Device):
            type, index = type.type, type.index if index is None else index
        name = str(type).strip().lower()
        if ":" in name:
            name, number = name.split(":", 1)
            index = int(number)
        self.type, self.index = name, index

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        index = "" if self.index is None else f", index={self.index}"
        return f"device(type={self.type!r}{index})"

    def __eq__(self, other):
        if isinstance(other, (str, Device)):
            return str(self) == str(Device(other))
        return NotImplemented

    def __hash__(self):
        return hash(str(self))


_warned_cpu_on_gpu = False


def check_device(device):
    """Accept a ``device`` argument (a string, a ``Device`` or a torch.device) when it
    names where tinygpt computes: None or "cpu" on NumPy, "cuda" / "cuda:0" on CuPy.

    "cuda" on NumPy raises BackendError saying how to use the GPU; "cpu" on CuPy keeps
    the data on the GPU (the backend is chosen once, per process) and warns once, since
    the book moves the model to "cpu" only to generate. Anything else raises."""
    global _warned_cpu_on_gpu
    if device is None:
        return
    name = str(device).strip().lower()
    kind = name.split(":")[0]
    if kind == "cuda":
        if BACKEND != "cupy":
            raise BackendError(
                f"device {str(device)!r} asks for a GPU, but tinygpt is running on NumPy (the "
                f"CPU); set TINYGPT_BACKEND=cupy before importing tinygpt to use an NVIDIA "
                f"GPU, or pass device='cpu'"
            )
        if name not in ("cuda", "cuda:0"):
            raise BackendError(f"device {name!r}: tinygpt uses one GPU, 'cuda' (or 'cuda:0')")
        check_available()
        return
    if kind == "cpu" and name == "cpu":
        if BACKEND == "cupy" and not _warned_cpu_on_gpu:
            _warned_cpu_on_gpu = True
            warnings.warn(
                "device 'cpu' asked for, but TINYGPT_BACKEND=cupy keeps every array on the "
                "GPU; the data stays there (use .numpy() or .tolist() for values on the host)",
                stacklevel=3,
            )
        return
    raise BackendError(
        f"unknown device {str(device)!r}: tinygpt runs on 'cpu' (NumPy) or 'cuda' "
        f"(TINYGPT_BACKEND=cupy); it is now on {device_name()!r}"
    )


def widest_float():
    """The widest float dtype the backend computes in: NumPy's long double where it is
    wider than float64 (x86 Linux), else float64 (CuPy has no long double)."""
    if not ON_GPU and numpy.finfo(numpy.longdouble).bits > 64:
        return numpy.longdouble
    return numpy.float64


def to_numpy(array):
    """A NumPy array from either backend (a no-op on NumPy)."""
    if isinstance(array, numpy.ndarray):
        return array
    if hasattr(array, "get") and not isinstance(array, dict):  # a CuPy array
        return array.get()
    return numpy.asarray(array)


def asarray(array, dtype=None):
    """An array on the active backend (copies to the GPU under CuPy)."""
    return xp.asarray(array, dtype=dtype)


def synchronize():
    """Wait until the device has finished all queued work (a no-op on NumPy); for timing."""
    if ON_GPU:
        xp.cuda.Device().synchronize()


# ----------------------------------------------------------------------------------
# Fused CUDA kernels: on by default on CuPy; TINYGPT_KERNELS=0 or kernels_disabled()
# runs the plain array code (the kernels' twins) instead.

_kernels_on = ON_GPU and hasattr(xp, "RawModule") and os.environ.get("TINYGPT_KERNELS", "1") != "0"


def kernels_enabled():
    """True when the fused ops run as CUDA kernels."""
    return _kernels_on


@contextlib.contextmanager
def kernels_disabled():
    """Run the twins (plain array code) of the fused kernels inside the block."""
    global _kernels_on
    previous, _kernels_on = _kernels_on, False
    try:
        yield
    finally:
        _kernels_on = previous


# ----------------------------------------------------------------------------------
# Random numbers.

_rng = numpy.random.default_rng(0)
_DROPOUT_RNGS = ("numpy", "philox")
_dropout_rng = os.environ.get("TINYGPT_DROPOUT_RNG", "").strip().lower() or (
    "philox" if BACKEND == "cupy" else "numpy"
)
_philox = {"seed": 0, "draws": 0}


def manual_seed(seed):
    """Reseed the generators that init, dropout, shuffling and sampling draw from.

    As torch.manual_seed: an integer in [-2**63, 2**64 - 1]; a negative seed is remapped
    to 2**64 - 1 + seed. Anything else is a ValueError (a float is never truncated)."""
    global _rng
    if isinstance(seed, bool) or not isinstance(seed, (int, numpy.integer)):
        raise ValueError(f"manual_seed expects an integer seed, got {seed!r}")
    seed = int(seed)
    if not -(1 << 63) <= seed < (1 << 64):
        raise ValueError(f"manual_seed: seed {seed} is outside [-2**63, 2**64 - 1]")
    if seed < 0:
        seed += (1 << 64) - 1  # torch's remapping
    _rng = numpy.random.default_rng(seed)
    _philox.update(seed=seed % (1 << 64), draws=0)
    return _rng


def get_rng():
    """The package's random generator (a ``numpy.random.Generator``)."""
    return _rng


def resolve_rng(rng, name="rng"):
    """A NumPy Generator from ``rng``: None -> the package generator, an int seed >= 0 ->
    a new generator seeded with it (resolve once per generation, so steps draw successive
    numbers), a ``tinygpt.Generator`` -> its stream, a NumPy Generator -> itself.
    ``name`` is the argument's name in errors."""
    if rng is None:
        return get_rng()  # looked up per call: manual_seed replaces the generator
    if isinstance(getattr(rng, "stream", None), numpy.random.Generator):
        return rng.stream  # a tinygpt.Generator: drawing from it advances it
    if isinstance(rng, numpy.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {int(rng)}; {name} is a "
                             "seed (an integer >= 0), None (the package generator), a "
                             "tinygpt.Generator or a numpy.random.Generator")
        return numpy.random.default_rng(int(rng))
    raise ValueError(
        f"{name} must be None (use tinygpt.backend.get_rng()), an int seed, a "
        f"tinygpt.Generator or a numpy.random.Generator, got {rng!r} ({type(rng).__name__})"
    )


def dropout_rng():
    """Where dropout masks come from: "numpy" or "philox" (see the module docstring)."""
    if _dropout_rng not in _DROPOUT_RNGS:
        raise BackendError(
            f"TINYGPT_DROPOUT_RNG must be 'numpy' or 'philox', not {_dropout_rng!r}"
        )
    return _dropout_rng


def set_dropout_rng(kind):
    """Choose the source of dropout masks: "numpy" (the CPU's masks, drawn on the host)
    or "philox" (counter-based, drawn where the data is)."""
    global _dropout_rng
    if kind not in _DROPOUT_RNGS:
        raise ValueError(f"dropout rng must be 'numpy' or 'philox', got {kind!r}")
    _dropout_rng = kind


def next_philox_draw():
    """(seed, draw index) for the next Philox dropout mask; each mask takes one index."""
    draw = (_philox["seed"], _philox["draws"])
    _philox["draws"] += 1
    return draw


def get_rng_state():
    """A JSON-serialisable snapshot of the generators, for checkpoints: the NumPy
    Generator's state plus the Philox seed and draw count under "philox"."""
    return dict(_rng.bit_generator.state, philox=dict(_philox))


def _restored(state):
    """(a Generator in ``state``, the Philox state or None); ValueError if ``state`` is not
    a snapshot from ``get_rng_state``. Touches nothing of the package's."""
    try:
        state = dict(state)
        philox = state.pop("philox", None)
        rng = numpy.random.default_rng()
        rng.bit_generator.state = state
        if philox is not None:
            philox = {"seed": int(philox["seed"]), "draws": int(philox["draws"])}
            if not all(0 <= v < 1 << 64 for v in philox.values()):
                raise ValueError("philox seed and draws must lie in [0, 2**64)")
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ValueError(f"not a tinygpt random generator state ({exc})") from None
    return rng, philox


def check_rng_state(state):
    """Raise ValueError unless ``set_rng_state(state)`` would succeed."""
    _restored(state)


def set_rng_state(state):
    """Restore a snapshot taken by ``get_rng_state`` (a bare NumPy Generator state, without
    "philox", leaves the Philox state as it is)."""
    global _rng
    _rng, philox = _restored(state)
    if philox is not None:
        _philox.update(philox)


# ----------------------------------------------------------------------------------
# Philox4x32-10: the counter-based random numbers behind dropout on the GPU.
#
# A counter-based generator is a pure function, ``block = philox(counter, key)``: four
# random 32-bit words for every 128-bit counter. Nothing has to be advanced in order, so
# each GPU thread computes the random numbers of its own elements, and the backward pass
# recomputes a dropout mask instead of storing it. (Salmon, Moraes, Dror and Shaw,
# "Parallel random numbers: as easy as 1, 2, 3", SC 2011; cuRAND and PyTorch use the same
# generator on GPUs.)
#
# tinygpt's dropout draw number ``d`` (the d-th mask since ``manual_seed(seed)``), for
# element ``i`` of the flattened array:
#
#     key      = (seed mod 2^32, seed div 2^32)
#     counter  = (i div 4 mod 2^32, i div 2^34, d mod 2^32, d div 2^32)
#     u_i      = (word (i mod 4) of philox(counter, key)  >> 8) * 2^-24     in [0, 1)
#     keep_i   = u_i >= p
#
# ``u_i`` has 24 random bits, so it is exact in float32. The CUDA kernels compute exactly
# this (``kernels.cu``); the functions below are their twin in array code, run on the
# CPU with NumPy, or on the GPU with CuPy by the tests that compare the two.

# The multipliers and the key increments (Weyl sequence) of Philox4x32.
M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
ROUNDS = 10
_LOW32 = 0xFFFFFFFF


def philox4x32(counter, key, xp=numpy):
    """Philox4x32-10 of each counter.

    counter: four uint32 arrays of one shape (or Python ints); key: two Python ints.
    Returns the four uint32 words of each block, as four arrays of that shape."""
    u64 = numpy.uint64  # every operand uint64: NumPy 1.x turns uint64 (op) Python int into float64
    c0, c1, c2, c3 = (xp.asarray(c, dtype=xp.uint64) for c in counter)
    k0, k1 = int(key[0]) & _LOW32, int(key[1]) & _LOW32
    m0, m1, low32, shift = u64(M0), u64(M1), u64(_LOW32), u64(32)
    for r in range(ROUNDS):
        if r > 0:
            k0, k1 = (k0 + W0) & _LOW32, (k1 + W1) & _LOW32
        p0 = c0 * m0  # 32 x 32 -> 64-bit products: exact in uint64
        p1 = c2 * m1
        c0, c1, c2, c3 = ((p1 >> shift) ^ c1 ^ u64(k0), p1 & low32,
                          (p0 >> shift) ^ c3 ^ u64(k1), p0 & low32)
    return tuple(c.astype(xp.uint32) for c in (c0, c1, c2, c3))


def philox_uniforms(shape, seed, draw, xp=numpy):
    """float32 uniforms in [0, 1) of dropout draw ``draw`` after ``manual_seed(seed)``."""
    n = int(numpy.prod(shape, dtype=numpy.int64))
    blocks = xp.arange((n + 3) // 4, dtype=xp.uint64)
    draw = int(draw)
    words = philox4x32(
        (blocks & _LOW32, blocks >> 32, draw & _LOW32, (draw >> 32) & _LOW32),
        (seed & _LOW32, (seed >> 32) & _LOW32), xp,
    )
    words = xp.stack(words, axis=-1).reshape(-1)[:n]  # element i: word i % 4 of block i // 4
    return ((words >> 8).astype(xp.float32) * xp.float32(2.0**-24)).reshape(shape)
