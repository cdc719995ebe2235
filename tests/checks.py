"""Assertion helpers that report like llm.c's check_tensor: name, max |diff|, worst element.

Every comparison in the tests goes through ``host``, so the same suite runs on NumPy and
on CuPy (``TINYGPT_BACKEND=cupy``, or the fake CuPy in ``tests/fake_cupy`` on a CPU)."""

import numpy as np

from tinygpt.autograd import Tensor
from tinygpt.backend import to_numpy


def host(x):
    """``x`` on the host: a NumPy array from a Tensor (its ``.data``), a CuPy or NumPy
    array, or a list/tuple of those; Python numbers and other objects are returned as is."""
    if isinstance(x, Tensor):
        x = x.data
    if isinstance(x, (list, tuple)):
        return np.asarray([host(v) for v in x])
    if isinstance(x, (int, float, complex, str, bytes)) or x is None:
        return x
    return to_numpy(x)


def assert_close(name, ours, ref, tol, scale_by_max=True, floor=0.0):
    """Assert |ours - ref| <= tol * |ref| + atol elementwise, atol = tol * max(max|ref|, floor).

    ``floor`` gives a scale to tensors whose true value is zero (e.g. the key bias's
    gradient, which softmax makes exactly 0): pass a fraction of the model's largest."""
    ours = np.asarray(host(ours), dtype=np.float64)
    ref = np.asarray(host(ref), dtype=np.float64)
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape} != reference {ref.shape}"
    diff = np.abs(ours - ref)
    atol = tol * max(float(np.abs(ref).max()), floor) if (scale_by_max and ref.size) else tol
    allowed = atol + tol * np.abs(ref)
    if not np.all(diff <= allowed):
        worst = np.unravel_index(int(np.argmax(diff - allowed)), diff.shape) if diff.ndim else ()
        raise AssertionError(
            f"{name}: max |diff| {diff.max():.3e} (tol {tol:g}, atol {atol:.3e}); worst element "
            f"{tuple(int(i) for i in worst)}: ours {ours[worst]:.9g} vs ref {ref[worst]:.9g}"
        )
    return float(diff.max() / max(float(np.abs(ref).max()), 1e-30))
