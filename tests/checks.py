"""Assertion helpers that report like llm.c's check_tensor: name, max |diff|, worst element."""

import numpy as np


def assert_close(name, ours, ref, tol, scale_by_max=True, floor=0.0):
    """Assert |ours - ref| <= tol * |ref| + atol elementwise, atol = tol * max(max|ref|, floor).

    ``floor`` gives a scale to tensors whose true value is zero (e.g. the key bias's
    gradient, which softmax makes exactly 0): pass a fraction of the model's largest."""
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
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
