"""The GPU floor: tinygpt's own CUDA kernels for the CuPy backend.

    kernels.cu     the kernels' source, compiled once per process by CuPy (NVRTC)
    kernels.py     one Python function per kernel: its arguments and its launch
    overrides.py   kernel classes that run in place of ``ops.py``'s fused layers
    decode.py      the KV cache's one-position step as a fixed sequence of kernels
    philox.py      the counter-based generator of the dropout masks, in array code

Every kernel has a twin, the plain array code that runs with the kernels off
(``TINYGPT_KERNELS=0`` or ``backend.kernels_disabled()``) and on the CPU; the tests
compare the two (tests/test_cuda_kernels.py). ``available(*arrays)`` says whether the
kernels run these arrays.

The package also answers torch.cuda's questions (``torch.cuda.is_available()``, ...), so
that ``import tinygpt as torch`` finds them where the book looks.
"""

from .. import backend
from .kernels import available


def is_available():
    """True when tinygpt computes on a GPU (``TINYGPT_BACKEND=cupy``)."""
    return backend.ON_GPU


def device_count():
    return 1 if backend.ON_GPU else 0


def synchronize(device=None):
    backend.synchronize()


def manual_seed(seed):
    """Nothing to do: ``tinygpt.manual_seed`` seeds the GPU's dropout generator too."""


__all__ = ["available", "device_count", "is_available", "manual_seed", "synchronize"]
