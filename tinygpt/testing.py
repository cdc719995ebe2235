"""The two checks tinygpt's numbers are held to, shared by ``tinygpt selftest`` and the
test suite:

* ``check_gradient(name, fn, arrays)``: an op's backward against float64 central finite
  differences of its forward;
* ``assert_close(name, ours, ref, tol)``: two tensors equal within a tolerance, reported
  the way llm.c's ``check_tensor`` does: the tensor's name, max |diff| and the worst
  element.

A failure of either raises ``CheckFailed`` (an AssertionError, so pytest shows it as one)
carrying the worst error seen. Both bring arrays to the host through ``host``, so the
same checks run on NumPy and on CuPy.
"""

import numpy

from .backend import get_rng_state, manual_seed, set_rng_state, to_numpy
from .tensor import Tensor

GRAD_EPS = 1e-6  # the central-difference step, on float64 inputs
GRAD_RTOL = 1e-6  # the largest relative error a gradient may show at that step
GRAD_RESEED = 1234  # the package generator's seed before every evaluation (dropout masks repeat)

__all__ = ["GRAD_EPS", "GRAD_RTOL", "CheckFailed", "assert_close", "check_gradient", "host",
           "op_names"]


class CheckFailed(AssertionError):
    """A check whose numbers are out of tolerance; ``error`` is the worst error seen (None
    where the check failed before it had a number, e.g. a missing gradient)."""

    def __init__(self, message, error=None):
        super().__init__(message)
        self.error = error


def host(x):
    """``x`` on the host: a NumPy array from a Tensor (its ``.data``), a CuPy or NumPy
    array, or a list/tuple of those; Python numbers and other objects are returned as is."""
    if isinstance(x, Tensor):
        x = x.array
    if isinstance(x, (list, tuple)):
        return numpy.asarray([host(v) for v in x])
    if isinstance(x, (int, float, complex, str, bytes)) or x is None:
        return x
    return to_numpy(x)


def assert_close(name, ours, ref, tol, scale_by_max=True, floor=0.0):
    """Assert |ours - ref| <= tol * |ref| + atol elementwise, atol = tol * max(max|ref|, floor)
    (atol = tol when not ``scale_by_max``); returns max |diff| / max |ref|.

    ``floor`` gives a scale to tensors whose true value is zero (e.g. the key bias's
    gradient, which softmax makes exactly 0): pass a fraction of the model's largest.
    ``tol=0`` asks for bit-identical values."""
    ours = numpy.asarray(host(ours), dtype=numpy.float64)
    ref = numpy.asarray(host(ref), dtype=numpy.float64)
    if ours.shape != ref.shape:
        raise CheckFailed(f"{name}: shape {ours.shape} != reference {ref.shape}")
    diff = numpy.abs(ours - ref)
    atol = tol * max(float(numpy.abs(ref).max()), floor) if (scale_by_max and ref.size) else tol
    allowed = atol + tol * numpy.abs(ref)
    relative = float(diff.max() / max(float(numpy.abs(ref).max()), 1e-30)) if ref.size else 0.0
    if not numpy.all(diff <= allowed):
        worst = numpy.unravel_index(int(numpy.argmax(diff - allowed)), diff.shape)
        raise CheckFailed(
            f"{name}: max |diff| {diff.max():.3e} (tol {tol:g}, atol {atol:.3e}); worst element "
            f"{tuple(int(i) for i in worst)}: ours {ours[worst]:.9g} vs ref {ref[worst]:.9g}",
            relative,
        )
    return relative


def check_gradient(name, fn, arrays, *, n_elements=3, seed=0, eps=GRAD_EPS, rtol=GRAD_RTOL):
    """Check ``fn``'s analytic gradient with respect to each array of ``arrays`` (made
    float64) against central differences; returns the worst relative error.

    ``fn`` takes one Tensor per array and returns a Tensor; anything else it needs (token
    ids, targets, an index, options) is closed over. The analytic side is one
    ``backward(w)`` for a random output weight ``w``; the numeric side differences
    ``f(x) = sum(fn(x) * w)`` as ``(f(x + eps d) - f(x - eps d)) / 2 eps`` along one random
    direction ``d`` over all inputs, and along single elements of each input: the largest
    gradient entry and ``n_elements`` random clearly non-zero ones. An element whose
    analytic gradient is exactly zero (masked, an unused row) must not move the output
    either. The package generator is reseeded before every evaluation, so an op that
    draws (dropout) draws the same mask each time, and is left as it was.

    Raises ``CheckFailed`` naming ``name``, the input and element and both values when a
    relative error exceeds ``rtol``, or when a gradient is missing or of the wrong shape
    or dtype."""
    rng = numpy.random.default_rng(seed)
    arrays = [numpy.array(a, dtype=numpy.float64) for a in arrays]
    rng_state = get_rng_state()

    def evaluate(values, requires_grad=False):
        manual_seed(GRAD_RESEED)
        tensors = [Tensor(v, requires_grad=requires_grad) for v in values]
        return fn(*tensors), tensors

    def numeric(dirs):
        # Difference the outputs elementwise before weighting: outputs that do not
        # depend on the perturbed entries cancel exactly instead of adding round-off.
        plus = host(evaluate([a + eps * d for a, d in zip(arrays, dirs)])[0])
        minus = host(evaluate([a - eps * d for a, d in zip(arrays, dirs)])[0])
        return float(((plus - minus) * w).sum() / (2.0 * eps))

    def unit(i, j):  # the direction of input i's element j alone
        dirs = [numpy.zeros_like(b) for b in arrays]
        dirs[i].flat[j] = 1.0
        return dirs

    try:
        out, tensors = evaluate(arrays, requires_grad=True)
        if out.dtype != numpy.float64:
            raise CheckFailed(f"{name}: output dtype {out.dtype}, expected float64")
        w = rng.standard_normal(out.shape)
        out.backward(w)
        grads = _analytic_gradients(name, tensors, arrays)

        checks = []  # (where, analytic, numeric)
        dirs = [rng.standard_normal(a.shape) for a in arrays]
        analytic = sum(float((g * d).sum()) for g, d in zip(grads, dirs))
        checks.append(("random direction", analytic, numeric(dirs)))
        for i, g in enumerate(grads):
            checks += _element_checks(name, i, g, rng, n_elements,
                                      lambda j, i=i: numeric(unit(i, j)))
    finally:
        set_rng_state(rng_state)

    errors = [abs(ana - num) / max(abs(ana), abs(num), 1e-300) for _, ana, num in checks]
    worst = max(range(len(checks)), key=errors.__getitem__)
    if errors[worst] > rtol:
        where, ana, num = checks[worst]
        raise CheckFailed(
            f"{name}: {where}: analytic {ana:.12g} vs finite difference {num:.12g} "
            f"(relative error {errors[worst]:.2e} > {rtol:g})", errors[worst])
    return errors[worst]


def _analytic_gradients(name, tensors, arrays):
    """Each input's gradient as a host array; CheckFailed if one is missing or is not
    float64 of its input's shape."""
    grads = []
    for i, (t, a) in enumerate(zip(tensors, arrays)):
        g = None if t.grad is None else host(t.grad)
        if g is None or g.shape != a.shape or g.dtype != numpy.float64:
            got = "no gradient" if g is None else f"a gradient of {g.dtype}{g.shape}"
            raise CheckFailed(f"{name}: input {i} got {got}, expected float64{a.shape}")
        grads.append(g)
    return grads


def _element_checks(name, i, g, rng, n_elements, numeric):
    """(where, analytic, numeric) for input ``i``'s largest gradient entry and
    ``n_elements`` random clearly non-zero ones (``numeric(j)``: the finite difference
    along element j alone). One entry whose gradient is exactly 0 must not move the
    output: CheckFailed if it does."""
    flat = numpy.abs(g).ravel()
    largest = float(flat.max()) if flat.size else 0.0
    if largest == 0.0:
        return []
    candidates = numpy.flatnonzero(flat > 1e-3 * largest)
    picks = {int(numpy.argmax(flat))}
    picks.update(int(j) for j in rng.choice(candidates, min(n_elements, candidates.size),
                                            replace=False))
    checks = [(f"input {i} element {numpy.unravel_index(j, g.shape)}", float(g.flat[j]),
               numeric(j)) for j in sorted(picks)]
    zeros = numpy.flatnonzero(flat == 0.0)
    if zeros.size:
        j = int(rng.choice(zeros))
        moved = numeric(j)
        if abs(moved) > 1e-8 * largest:
            raise CheckFailed(
                f"{name}: input {i} element {numpy.unravel_index(j, g.shape)} has "
                f"analytic gradient 0 but finite differences give {moved:.3e}",
                abs(moved) / largest)
    return checks


def op_names():
    """The names of the ops the gradient checks walk: every public Function class of
    ops.py and fused.py that has a gradient (a private base such as _DerivativeFromOutput
    is no op of its own; floor division has no gradient, as in torch)."""
    from . import fused, ops
    from .autograd import Function

    return sorted(name for module in (ops, fused) for name, obj in vars(module).items()
                  if isinstance(obj, type) and issubclass(obj, Function)
                  and obj.__module__ == module.__name__ and not name.startswith("_")
                  and obj.differentiable)
