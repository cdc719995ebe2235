"""Settings of the whole process, which tinygpt changes only when asked.

* ``set_num_threads(n)`` / ``get_num_threads()``: the threads of the BLAS library that
  NumPy's matrix products run on (torch's names), changed at run time through
  threadpoolctl, so no environment variable has to be set before import.
* ``keep_freed_memory_for_reuse()``: glibc malloc tuning that makes a training step
  faster. The training entry points call it (``tinygpt train``, the demo through
  ``tinygpt.app.workflow.pretrain``, ``train_model``); importing tinygpt never does.
"""

import ctypes
import os
import sys

from threadpoolctl import ThreadpoolController

from .checks import positive_int

_controller = None
_malloc_tuned = False


def _blas():
    global _controller
    if _controller is None:  # inspecting the loaded libraries takes a few milliseconds
        _controller = ThreadpoolController()
    return _controller.select(user_api="blas")


def set_num_threads(n):
    """Run NumPy's matrix products on ``n`` threads from now on (torch.set_num_threads).

    It applies to the BLAS libraries loaded in this process (OpenBLAS, MKL, BLIS, Apple's
    Accelerate); on a GPU the device does the work and this only limits the host's."""
    _blas().limit(limits=positive_int("n", n))


def get_num_threads():
    """The number of threads NumPy's matrix products run on (torch.get_num_threads);
    the largest over the BLAS libraries loaded, 1 when none reports."""
    return max((lib.num_threads for lib in _blas().lib_controllers), default=1)


def keep_freed_memory_for_reuse():
    """Ask glibc to keep large freed blocks instead of handing them back to the OS.

    A training step frees and reallocates the same large arrays (logits, the dense
    embedding gradient, activations); returned to the OS, each comes back as fresh pages
    that fault in one by one on first touch. Keeping them cuts that cost (a 124M step on
    two cores: see bench/bench_train.py). The process's other allocations see the same
    thresholds, which is why only training entry points call this. Does nothing off
    glibc, or when TINYGPT_MALLOC_TUNING=0. Returns True when the tuning is in effect."""
    global _malloc_tuned
    if _malloc_tuned:
        return True
    if os.environ.get("TINYGPT_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl): nothing to tune
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt parameter numbers (malloc.h)
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, (1 << 31) - 1)
    _malloc_tuned = True
    return True
