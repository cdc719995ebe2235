"""One case, two libraries: ``same(case)`` runs ``case(lib)`` with ``lib`` = torch and
``lib`` = tinygpt and asserts that tinygpt gives what torch gives.

* torch returns: tinygpt returns the same structure (tuples, lists, numbers, bools,
  dtypes), each tensor with torch's shape, dtype and values (NaN equal to NaN; floats
  within ``TOL`` of their dtype, relative to the largest finite value; integers and
  bools exactly);
* torch raises (the test says it expects that with ``raises=True`` or ``match``, so an
  error in the case itself cannot pass as torch's): tinygpt raises an instance of
  torch's exception class (a NotImplementedError, which Python makes a RuntimeError,
  only where torch raises one too), and where ``match`` is given both messages match it
  (checked on torch's first, so a wrong expectation fails as the test's fault);
* ``alt``: where tinygpt may refuse instead, a NotImplementedError whose message matches
  ``alt`` (the alternative it names) passes.

``grads(body, *arrays)`` makes a case that also differentiates: leaves from ``arrays``
(float64 unless told), ``body(lib, *leaves)`` -> a tensor or a tuple of them, then
``backward`` of ``sum(out * weights)`` (fixed uneven weights, so a gradient sent to the
wrong element shows); the case returns the outputs and each leaf's ``.grad``.

To check the tests themselves, run them with TINYGPT_SEMANTICS_SELF_CHECK=1: "ours" is
then torch as well, and every case must pass.
"""

import math
import os
import re

import numpy
import pytest

import tinygpt

torch = pytest.importorskip("torch")

OURS = torch if os.environ.get("TINYGPT_SEMANTICS_SELF_CHECK") else tinygpt
TOL = {"float32": 1e-6, "float64": 1e-12}

__all__ = ["OURS", "grads", "same", "torch", "weights"]


def _run(case, lib):
    try:
        return case(lib), None
    except Exception as exc:  # noqa: BLE001 - the class is what we compare
        return None, exc


def _refusal_allowed(error, alt):
    return alt is not None and isinstance(error, NotImplementedError) and re.search(
        alt, str(error)) is not None


def same(case, *, raises=False, match=None, alt=None):
    """Assert ``case(tinygpt)`` gives what ``case(torch)`` gives (see the module's text)."""
    raises = raises or match is not None
    theirs, their_error = _run(case, torch)
    if raises != (their_error is not None):
        expected = "to raise" if raises else "a result"
        got = f"{type(their_error).__name__}: {their_error}" if their_error else repr(theirs)
        raise AssertionError(f"the test expects {expected} from torch; torch gave {got}") from (
            their_error)
    ours, our_error = _run(case, OURS)
    if _refusal_allowed(our_error, alt):
        return
    if their_error is not None:
        _same_error(their_error, ours, our_error, match)
    elif our_error is not None:
        raise AssertionError(f"torch gives {theirs!r}; tinygpt raised "
                             f"{type(our_error).__name__}: {our_error}") from our_error
    else:
        _same_result("result", theirs, ours)


def _same_error(their_error, ours, our_error, match):
    said = f"torch raises {type(their_error).__name__}: {their_error}"
    if match is not None and not re.search(match, str(their_error)):
        pytest.fail(f"the test expects torch's message to say {match!r}; {said}")
    if our_error is None:
        pytest.fail(f"{said}; tinygpt returned {ours!r}")
    refuses = isinstance(our_error, NotImplementedError) and not isinstance(
        their_error, NotImplementedError)
    if refuses or not isinstance(our_error, type(their_error)):
        raise AssertionError(f"{said}; tinygpt raised {type(our_error).__name__}: "
                             f"{our_error}") from our_error
    if match is not None and not re.search(match, str(our_error)):
        pytest.fail(f"{said}; tinygpt's message lacks {match!r}: {our_error}")


def _dtype_name(dtype):
    return str(dtype).removeprefix("torch.")


def _same_result(where, theirs, ours):
    if isinstance(theirs, torch.Tensor):
        _same_tensor(where, theirs, ours)
    elif isinstance(theirs, torch.dtype):
        assert _dtype_name(ours) == _dtype_name(theirs), f"{where}: dtype {ours} != {theirs}"
    elif isinstance(theirs, (tuple, list)):  # torch.Size and (values, indices) too
        assert isinstance(ours, (tuple, list)), f"{where}: {ours!r} is not a sequence"
        assert len(ours) == len(theirs), f"{where}: {len(ours)} items != torch's {len(theirs)}"
        for i, (t, o) in enumerate(zip(theirs, ours)):
            _same_result(f"{where}[{i}]", t, o)
        for name in ("values", "indices"):
            if hasattr(theirs, name):
                _same_result(f"{where}.{name}", getattr(theirs, name), getattr(ours, name))
    elif isinstance(theirs, float) and math.isnan(theirs):
        assert isinstance(ours, float) and math.isnan(ours), f"{where}: {ours!r} is not nan"
    else:
        assert type(ours) is type(theirs) and ours == theirs, (
            f"{where}: tinygpt {ours!r} != torch {theirs!r}")


def _same_tensor(where, theirs, ours):
    assert isinstance(ours, OURS.Tensor), f"{where}: tinygpt gave {ours!r}, not a Tensor"
    assert tuple(ours.shape) == tuple(theirs.shape), (
        f"{where}: shape {tuple(ours.shape)} != torch's {tuple(theirs.shape)}")
    assert _dtype_name(ours.dtype) == _dtype_name(theirs.dtype), (
        f"{where}: dtype {ours.dtype} != torch's {theirs.dtype}")
    expected = theirs.detach().numpy()
    got = numpy.asarray(ours.detach().numpy())
    if expected.dtype.kind != "f":
        numpy.testing.assert_array_equal(got, expected, err_msg=where)
        return
    tol = TOL[_dtype_name(theirs.dtype)]
    finite = numpy.abs(expected[numpy.isfinite(expected)])
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    numpy.testing.assert_allclose(got, expected, rtol=tol, atol=tol * scale, equal_nan=True,
                                  err_msg=where)


def weights(shape):
    """Fixed, uneven output weights for a loss: 1.0, 1.25, 1.5, ... in ``shape``."""
    n = int(numpy.prod(shape))
    return (1.0 + 0.25 * numpy.arange(n)).reshape(shape)


def grads(body, *arrays, dtype="float64"):
    """A case for ``same``: outputs of ``body`` and the gradients of its leaves."""

    def case(lib):
        leaves = [lib.tensor(a, dtype=getattr(lib, dtype), requires_grad=True) for a in arrays]
        out = body(lib, *leaves)
        outs = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        differentiable = [o for o in outs if o.requires_grad]
        if differentiable:
            sum((o * lib.tensor(weights(tuple(o.shape)), dtype=o.dtype)).sum()
                for o in differentiable).backward()
        return outs, tuple(leaf.grad for leaf in leaves)

    return case
