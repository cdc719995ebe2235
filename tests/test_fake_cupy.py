"""The fake CuPy of tests/fake_cupy fails where real CuPy fails: host/device mixing.

It is loaded by path under another name, so these run in the normal (NumPy) suite and
under ``TINYGPT_BACKEND=cupy`` alike."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

PATH = Path(__file__).resolve().parent / "fake_cupy" / "cupy" / "__init__.py"


@pytest.fixture(scope="module")
def cp():
    spec = importlib.util.spec_from_file_location("fake_cupy_under_test", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # __array_function__ finds its functions there
    spec.loader.exec_module(module)
    yield module
    for name in [n for n in sys.modules if n.startswith(spec.name)]:
        del sys.modules[name]


def test_implicit_conversion_to_numpy_raises(cp):
    x = cp.arange(3.0)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        np.asarray(x)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.testing.assert_allclose(x, [0.0, 1.0, 2.0])


def test_get_and_asnumpy_copy_to_the_host_and_asarray_copies_back(cp):
    host = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    x = cp.asarray(host)
    assert isinstance(x, cp.ndarray) and not isinstance(x, np.ndarray)
    back = x.get()
    assert type(back) is np.ndarray and back.dtype == np.float32
    np.testing.assert_array_equal(back, host)
    back[0, 0] = 99.0  # a copy, not a view of the device array
    assert float(x[0, 0]) == 1.0
    np.testing.assert_array_equal(cp.asnumpy(x), host)


@pytest.mark.parametrize("mix", [
    lambda cp, x, h: x + h,
    lambda cp, x, h: h * x,
    lambda cp, x, h: x @ h,
    lambda cp, x, h: x == h,
    lambda cp, x, h: x.__iadd__(h),
    lambda cp, x, h: cp.exp(h),
    lambda cp, x, h: cp.where(x > 0, x, h),
    lambda cp, x, h: np.concatenate([x, h]),
    lambda cp, x, h: x.dot(h),
], ids=["add", "rmul", "matmul", "eq", "iadd", "ufunc", "where", "concatenate", "dot"])
def test_mixing_with_numpy_arrays_raises(cp, mix):
    with pytest.raises(TypeError, match="Unsupported type <class 'numpy.ndarray'>"):
        mix(cp, cp.ones(3), np.ones(3))


def test_scalars_mix_and_numpy_functions_dispatch_to_the_device(cp):
    x = cp.arange(4, dtype=np.float32)
    assert (x * np.float32(2)).dtype == np.float32 and float((x + 1).sum()) == 10.0
    for result in (np.concatenate([x, x]), np.exp(x), x.max(), x[1], np.isfinite(x).all()):
        assert isinstance(result, cp.ndarray)  # reductions and scalars stay 0-d arrays
    with pytest.raises(TypeError):
        range(x.max())  # no __index__: a count must be fetched explicitly with int()
    assert int(x.max()) == 3 and x.tolist() == [0.0, 1.0, 2.0, 3.0] and len(list(x)) == 4


def test_setitem_refuses_host_arrays_and_takes_device_arrays_and_scalars(cp):
    x = cp.zeros((2, 3))
    with pytest.raises(TypeError, match="cannot assign a host ndarray"):
        x[0] = np.ones(3)
    with pytest.raises(TypeError, match="cannot assign a host list"):
        x[0] = [1.0, 2.0, 3.0]
    x[0] = cp.ones(3)
    x[1, np.array([0, 2])] = 5.0  # NumPy index arrays are fine (CuPy copies them over)
    np.testing.assert_array_equal(x.get(), [[1, 1, 1], [5, 0, 5]])


def test_in_place_updates_write_through_views_and_ufunc_out_and_at(cp):
    x = cp.zeros(4)
    view = x[1:]
    x += 1.0
    np.multiply(x, 2.0, out=x)
    cp.add.at(x, np.array([0, 0]), 1.0)  # repeated indices accumulate
    np.testing.assert_array_equal(view.get(), [2.0, 2.0, 2.0])
    assert float(x[0]) == 4.0


def test_operand_priority_and_no_kernels_and_devices(cp, monkeypatch):
    class Deferring:
        __array_ufunc__ = None

        def __radd__(self, other):
            return "deferred"

    class SamePriority:  # like tinygpt's Tensor: CuPy does not defer to it
        __array_priority__ = 100

        def __radd__(self, other):
            return "deferred"

    assert cp.ones(2) + Deferring() == "deferred"
    with pytest.raises(TypeError):
        cp.ones(2) + SamePriority()
    assert not any(hasattr(cp, k) for k in ("RawModule", "RawKernel", "ElementwiseKernel"))
    assert cp.cuda.runtime.getDeviceCount() == 1
    cp.cuda.Device().synchronize()
    monkeypatch.setenv("FAKE_CUPY_NO_GPU", "1")
    with pytest.raises(RuntimeError, match="cudaErrorNoDevice"):
        cp.cuda.runtime.getDeviceCount()
