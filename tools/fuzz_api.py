"""Fuzz tinygpt's torch-named API against torch itself.

    python tools/fuzz_api.py --cases 2000 --seed 0            # the full run, stored
    python tools/fuzz_api.py --cases 300 --families inplace --verbose
    python tools/fuzz_api.py --seed 0 --case 17 --verbose      # rerun one case

Each case draws one call with random arguments from a family (below), with tiny tensors
(at most 4 elements a dim, 3 dims) of random dtypes, and runs the same call twice: with
``lib = torch`` and with ``lib = tinygpt`` (the same NumPy data converted by each). The
outcomes are compared:

- **same numbers**: both computed; the same shape and dtype, and the values allclose
  (rtol 1e-4, atol 1e-5 times the largest magnitude; NaN equals NaN; integers exact);
- **same error**: both raised, tinygpt's exception an instance of torch's class;
- **clear refusal**: tinygpt raised NotImplementedError, which names the alternative;
- **other class**: both raised, a clear message, but not torch's class (say ValueError
  for torch's RuntimeError);
- **silent mismatch**: tinygpt computed other numbers, shape or dtype, or computed where
  torch raised (failure);
- **raw error**: tinygpt raised where torch computed, or raised an exception no API
  should (AttributeError, ZeroDivisionError, KeyError, ...) or one of NumPy's own
  messages ("tuple index out of range", "axis 5 is out of bounds", ...) (failure).

Families: ``reduce`` (sum, mean, max, min, argmax, argmin, var, std, softmax,
log_softmax; dims in and out of range, keepdim), ``shape`` (transpose, unsqueeze,
squeeze, permute, flatten, reshape, view), ``join`` (cat, stack), ``topk``, ``index``
(ints, slices, int tensors, bool masks, out of range), ``masked_fill``, ``binary`` (+ - *
/ @ with broadcasting and mixed dtypes), ``module`` (Linear, Embedding, LayerNorm with
torch's weights copied in), ``cross_entropy`` (ignore_index, targets out of range),
``tensor`` (``tensor()`` on odd inputs), ``inplace`` (in-place changes of saved tensors
followed by backward: torch's version-counter errors, or the same gradients),
``grad`` (backward through a random chain, gradients compared), ``where`` (conditions of
any dtype, broadcasting), ``triangle`` (tril/triu of any rank and diagonal), ``create``
(zeros, ones, full, arange with odd sizes, fills and ranges).

The bar: 0 silent mismatches and 0 raw errors. Prints a markdown table
of family x outcome, and with ``--verbose`` each failure; ``--store`` writes the table to
tools/results/fuzz_api.json with the date, commit, machine and command (bench/record.py).
"""

import argparse
import random
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402  (the reference; tinygpt itself never imports it)

import tinygpt  # noqa: E402

OUTCOMES = ("same numbers", "same error", "clear refusal", "other class",
            "silent mismatch", "raw error")
FAILURES = ("silent mismatch", "raw error")
CLEAR = (ValueError, TypeError, IndexError, RuntimeError, NotImplementedError)
# NumPy's and Python's own words: an error that escaped tinygpt's checks.
RAW_MESSAGES = re.compile(
    r"tuple index out of range|list index out of range|out of bounds for array of dimension|"
    r"operands could not be broadcast|cannot reshape array|inhomogeneous|"
    r"object has no attribute|not subscriptable|"
    r"setting an array element|only integer scalar arrays|math domain|"
    r"object cannot be interpreted|repeated axis|axes don't match|"
    r"matmul: Input operand|need at least one array|zero-dimensional arrays|"
    r"arrays used as indices must be|must have the same shape|division by zero")


# ----------------------------------------------------------------------------------
# Random arguments, drawn once as NumPy data and handed to both libraries.

DTYPES = (np.float32, np.float32, np.float32, np.int64, np.int64, np.bool_, np.float64)


def rand_shape(rng, max_ndim=3, allow_zero=True):
    ndim = rng.randint(0, max_ndim)
    return tuple(rng.randint(0 if allow_zero and rng.random() < 0.1 else 1, 4)
                 for _ in range(ndim))


def rand_array(rng, shape=None, dtype=None):
    shape = rand_shape(rng) if shape is None else shape
    dtype = rng.choice(DTYPES) if dtype is None else dtype
    gen = np.random.default_rng(rng.getrandbits(32))
    if dtype == np.bool_:
        return np.asarray(gen.random(shape) < 0.5)  # an array even when 0-d
    if np.issubdtype(dtype, np.integer):
        return gen.integers(-5, 6, size=shape).astype(dtype)
    return gen.standard_normal(shape).astype(dtype)


def rand_dim(rng, ndim):
    """A dim, in range most of the time, sometimes just outside or far outside."""
    lo, hi = -max(ndim, 1), max(ndim, 1) - 1
    r = rng.random()
    if r < 0.75:
        return rng.randint(lo, hi)
    if r < 0.9:
        return rng.choice((lo - 1, hi + 1))
    return rng.choice((-9, 5, 7))


def T(lib, array, requires_grad=False):
    """The array as ``lib``'s tensor (a copy)."""
    if lib is torch:
        x = torch.from_numpy(np.array(array, copy=True))
    else:
        x = tinygpt.tensor(np.array(array, copy=True))
    if requires_grad:
        x.requires_grad_(True)
    return x


# ----------------------------------------------------------------------------------
# Families: each returns (description, call); call(lib) gives the result to compare.


def fam_reduce(rng):
    a = rand_array(rng)
    op = rng.choice(("sum", "mean", "max", "min", "argmax", "argmin", "var", "std",
                     "softmax", "log_softmax"))
    dim = None if op not in ("softmax", "log_softmax") and rng.random() < 0.25 else \
        rand_dim(rng, a.ndim)
    keepdim = rng.random() < 0.3
    as_function = rng.random() < 0.3

    def call(lib):
        x = T(lib, a)
        if op in ("softmax", "log_softmax"):
            return getattr(lib, op)(x, dim=dim) if as_function else getattr(x, op)(dim)
        if dim is None:
            return getattr(x, op)()
        return getattr(x, op)(dim, keepdim=keepdim)

    return f"{op}(shape {a.shape} {a.dtype}, dim={dim}, keepdim={keepdim})", call


def fam_shape(rng):
    a = rand_array(rng)
    n = a.ndim
    op = rng.choice(("transpose", "unsqueeze", "squeeze", "permute", "flatten", "reshape",
                     "view", "t"))
    if op == "transpose":
        args = (rand_dim(rng, n), rand_dim(rng, n))
    elif op == "unsqueeze":
        args = (rand_dim(rng, n + 1),)
    elif op == "squeeze":
        args = () if rng.random() < 0.2 else (rand_dim(rng, n),)
    elif op == "permute":
        perm = list(range(n))
        rng.shuffle(perm)
        if perm and rng.random() < 0.3:
            perm[rng.randrange(len(perm))] = rand_dim(rng, n)
        args = tuple(perm)
    elif op == "flatten":
        args = (rand_dim(rng, n), rand_dim(rng, n)) if rng.random() < 0.7 else ()
    elif op in ("reshape", "view"):
        size = a.size
        choices = [(size,), (-1,), (1, -1), (-1, 1), (size, 1), (2, -1), (size + 1,), (-1, -1)]
        args = rng.choice(choices)
    else:
        args = ()

    def call(lib):
        return getattr(T(lib, a), op)(*args)

    return f"{op}{args} of shape {a.shape}", call


def fam_join(rng):
    op = rng.choice(("cat", "stack"))
    base = rand_shape(rng, 3, allow_zero=False)
    count = rng.choice((0, 1, 2, 2, 3))
    arrays = []
    for _ in range(count):
        shape = list(base)
        if shape and rng.random() < 0.3:
            shape[rng.randrange(len(shape))] = rng.randint(1, 3)
        arrays.append(rand_array(rng, tuple(shape),
                                 rng.choice((np.float32, np.float32, np.int64, np.bool_))))
    dim = rand_dim(rng, len(base) + (op == "stack"))

    def call(lib):
        return getattr(lib, op)([T(lib, a) for a in arrays], dim=dim)

    return f"{op}({[(a.shape, str(a.dtype)) for a in arrays]}, dim={dim})", call


def fam_topk(rng):
    a = rand_array(rng, rand_shape(rng, 3, allow_zero=False),
                   rng.choice((np.float32, np.float32, np.int64)))
    dim = rand_dim(rng, a.ndim)
    k = rng.choice((0, 1, 1, 2, 3, 5))
    largest = rng.random() < 0.7
    a = a + np.arange(a.size, dtype=a.dtype).reshape(a.shape) * 0.001 if a.dtype.kind == "f" \
        else np.arange(a.size, dtype=a.dtype)[::-1].reshape(a.shape).copy()  # no ties

    def call(lib):
        return lib.topk(T(lib, a), k, dim=dim, largest=largest)

    return f"topk(shape {a.shape} {a.dtype}, k={k}, dim={dim}, largest={largest})", call


def fam_index(rng):
    a = rand_array(rng, rand_shape(rng, 3, allow_zero=False))
    n0 = a.shape[0] if a.ndim else 0
    kind = rng.choice(("int", "slice", "ints", "mask", "pair", "negative"))
    if kind == "int":
        key = rng.choice((0, n0 - 1, n0, -n0 - 1, -1))
    elif kind == "negative":
        key = -rng.randint(1, n0 + 2)
    elif kind == "slice":
        key = slice(rng.randint(-3, 3), rng.choice((None, rng.randint(-3, 4))))
    elif kind == "ints":
        key = np.array([rng.randint(-n0 - 1, n0) for _ in range(rng.randint(0, 3))],
                       dtype=np.int64)
    elif kind == "mask":
        shape = a.shape if rng.random() < 0.7 else (max(n0 + 1, 1),)
        key = np.asarray(np.random.default_rng(rng.getrandbits(32)).random(shape) < 0.5)
    else:
        key = (rng.randint(-1, 1), rng.randint(-2, 3))

    def call(lib):
        k = T(lib, key) if isinstance(key, np.ndarray) else key
        return T(lib, a)[k]

    return f"shape {a.shape}[{kind}: {key!r:.60}]", call


def fam_masked_fill(rng):
    a = rand_array(rng, rand_shape(rng, 3, allow_zero=False),
                   rng.choice((np.float32, np.float32, np.int64)))
    shape = a.shape if rng.random() < 0.5 else rand_shape(rng, 3, allow_zero=False)
    mask = np.random.default_rng(rng.getrandbits(32)).random(shape) < 0.5
    value = rng.choice((0.0, -np.inf, 2, 1.5, True))
    mask_dtype = rng.choice((np.bool_, np.bool_, np.bool_, np.int64))
    inplace = rng.random() < 0.4

    def call(lib):
        x, m = T(lib, a), T(lib, mask.astype(mask_dtype))
        if inplace:
            x.masked_fill_(m, value)
            return x
        return x.masked_fill(m, value)

    return (f"masked_fill{'_' if inplace else ''}(shape {a.shape} {a.dtype}, mask {shape} "
            f"{np.dtype(mask_dtype)}, {value})"), call


def fam_binary(rng):
    a = rand_array(rng)
    if rng.random() < 0.6:  # broadcastable most of the time
        shape = tuple(rng.choice((d, 1)) for d in a.shape[rng.randint(0, a.ndim):])
    else:
        shape = rand_shape(rng)
    b = rand_array(rng, shape) if rng.random() < 0.8 else rng.choice((2, 0.5, True, -1))
    op = rng.choice(("+", "-", "*", "/", "@"))
    if op == "/" and isinstance(b, np.ndarray) and b.dtype != np.bool_:
        b = np.where(b == 0, 1, b).astype(b.dtype)
    if isinstance(b, np.ndarray) and b.dtype == np.bool_ and op == "-":
        op = "+"  # torch refuses bool subtraction by design; not an interesting case

    def call(lib):
        x = T(lib, a)
        y = T(lib, b) if isinstance(b, np.ndarray) else b
        return {"+": lambda: x + y, "-": lambda: x - y, "*": lambda: x * y,
                "/": lambda: x / y, "@": lambda: x @ y}[op]()

    bdesc = f"{b.shape} {b.dtype}" if isinstance(b, np.ndarray) else repr(b)
    return f"({a.shape} {a.dtype}) {op} ({bdesc})", call


def _copy_state(theirs, ours):
    ours.load_state_dict({k: tinygpt.tensor(v.detach().numpy().copy())
                          for k, v in theirs.state_dict().items()})


def fam_module(rng):
    kind = rng.choice(("Linear", "Embedding", "LayerNorm"))
    if kind == "Linear":
        n_in, n_out = rng.choice((0, 1, 2, 3, 3, -1)), rng.choice((0, 1, 2, 3))
        bias = rng.random() < 0.7
        x = rand_array(rng, rand_shape(rng, 2, allow_zero=False) + (
            n_in if rng.random() < 0.8 and n_in >= 0 else 2,),
            rng.choice((np.float32, np.float32, np.float32, np.int64)))
        args, kwargs = (n_in, n_out), {"bias": bias}
    elif kind == "Embedding":
        n, d = rng.choice((1, 3, 5)), rng.choice((1, 2))
        x = np.random.default_rng(rng.getrandbits(32)).integers(
            -1 if rng.random() < 0.2 else 0, n + (rng.random() < 0.2),
            size=rand_shape(rng, 2))
        if rng.random() < 0.1:
            x = x.astype(np.float32)
        args, kwargs = (n, d), {}
    else:
        n = rng.choice((1, 2, 3))
        x = rand_array(rng, rand_shape(rng, 2, allow_zero=False) + (
            n if rng.random() < 0.85 else n + 1,),
            rng.choice((np.float32, np.float32, np.int64)))
        args, kwargs = (n,), {}

    def call(lib):  # torch runs first: tinygpt's module takes its weights
        if lib is torch:
            REFERENCE[0] = None
        module = getattr(lib.nn, kind)(*args, **kwargs)
        if lib is torch:
            REFERENCE[0] = module
        elif REFERENCE[0] is not None:
            _copy_state(REFERENCE[0], module)
        return module(T(lib, x))

    return f"{kind}{args}{kwargs or ''}(shape {x.shape} {x.dtype})", call


REFERENCE = [None]  # the torch module of the case, whose weights tinygpt's copies


def fam_cross_entropy(rng):
    n, v = rng.randint(1, 4), rng.randint(1, 4)
    logits = rand_array(rng, (n, v), np.float32)
    ignore = rng.choice((-100, -100, 0, 1, -1))
    targets = np.random.default_rng(rng.getrandbits(32)).integers(0, v, size=(n,))
    r = rng.random()
    if r < 0.15:
        targets[0] = v  # out of range
    elif r < 0.3:
        targets[:] = ignore  # all ignored: torch's nan
    elif r < 0.45:
        targets[0] = ignore
    elif r < 0.5:
        targets = targets[:-1] if n > 1 else np.zeros((2,), np.int64)
    reduction = rng.choice(("mean", "mean", "sum", "none"))
    grad = rng.random() < 0.5

    def call(lib):
        x = T(lib, logits, requires_grad=grad)
        loss = lib.nn.functional.cross_entropy(x, T(lib, targets), ignore_index=ignore,
                                               reduction=reduction)
        if grad and loss.ndim == 0:
            loss.backward()
            return loss, x.grad
        return loss

    return (f"cross_entropy(({n}, {v}), targets {targets.tolist()}, ignore_index={ignore}, "
            f"reduction={reduction})"), call


ODD_DATA = ("abc", b"x", None, {}, set(), [None], [1, "a"], [[1, 2], [3]], [[1], [2, 3]],
            [], [[]], [1, 2.5], [True, 2], [True, False], 2**62, 2**70, 1.5, True,
            [1.5, float("nan")], [[1.0], [2.0]], (1, 2), [(1, 2), (3, 4)], [1, None],
            range(3), [np.float32(1), 2.5], np.array([1, 2], dtype=np.int32), 1 + 2j)


def fam_tensor(rng):
    data = rng.choice(ODD_DATA)
    dtype = rng.choice((None, None, "float32", "int64", "bool"))
    if dtype in ("bool", "int64") and "np.float" in repr(data):
        dtype = None  # torch's converter refuses NumPy floats for these: a quirk, not a rule

    def call(lib):
        return lib.tensor(data, dtype=None if dtype is None else getattr(lib, dtype))

    return f"tensor({data!r:.50}, dtype={dtype})", call


def fam_inplace(rng):
    """y = f(x) (saved for backward, or not); an in-place change of y or of another
    input; then backward. torch raises when a saved tensor changed."""
    shape = rand_shape(rng, 2, allow_zero=False) or (2,)
    a = rand_array(rng, shape, np.float32)
    b = rand_array(rng, shape, np.float32)
    f = rng.choice(("exp", "tanh", "mul", "add", "softmax", "matmul_t", "sqrt_abs", "clone"))
    change = rng.choice(("masked_fill_", "setitem", "add_", "mul_", "zero_", "fill_",
                         "other_setitem", "none"))
    after = rng.choice(("sum", "times2", "plus_y"))
    mask = np.random.default_rng(rng.getrandbits(32)).random(shape) < 0.5

    def call(lib):
        x = T(lib, a, requires_grad=True)
        other = T(lib, b)
        y = {"exp": lambda: x.exp(), "tanh": lambda: x.tanh(), "mul": lambda: x * other,
             "add": lambda: x + other, "softmax": lambda: lib.softmax(x, dim=-1),
             "matmul_t": lambda: x * (other @ other.transpose(0, -1) if other.ndim == 2
                                      else other * other).sum(),
             "sqrt_abs": lambda: (x.abs() + 1.0).sqrt(), "clone": lambda: x * 1.0}[f]()
        z = {"sum": lambda: y.sum(), "times2": lambda: (y * 2.0).sum(),
             "plus_y": lambda: (y * y).sum()}[after]()
        target = other if change == "other_setitem" else y
        with lib.no_grad() if change in ("other_setitem",) else _nothing():
            if change == "masked_fill_":
                target.masked_fill_(T(lib, mask), 0.0)
            elif change in ("setitem", "other_setitem"):
                target[0] = 100.0
            elif change == "add_":
                target.add_(1.0)
            elif change == "mul_":
                target.mul_(3.0)
            elif change == "zero_":
                target.zero_()
            elif change == "fill_":
                target.fill_(2.0)
        (z + y.sum()).backward()
        return x.grad

    return f"y = {f}(x {shape}); z = {after}; y.{change}; (z + y.sum()).backward()", call


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def fam_grad(rng):
    a = rand_array(rng, rand_shape(rng, 3, allow_zero=False) or (3,), np.float32)
    steps = [rng.choice(("exp", "tanh", "square", "sum_dim", "mean_dim", "softmax", "t",
                         "unsqueeze", "index", "max_dim", "var_dim"))
             for _ in range(rng.randint(1, 3))]

    def call(lib):
        x = T(lib, a, requires_grad=True)
        y = x
        for s in steps:
            n = y.ndim
            if s == "exp":
                y = (y * 0.1).exp()
            elif s == "tanh":
                y = y.tanh()
            elif s == "square":
                y = y * y
            elif s == "sum_dim" and n:
                y = y.sum(-1)
            elif s == "mean_dim" and n:
                y = y.mean(0, keepdim=True)
            elif s == "softmax" and n:
                y = lib.softmax(y, dim=-1)
            elif s == "t" and n >= 2:
                y = y.transpose(0, 1)
            elif s == "unsqueeze":
                y = y.unsqueeze(0)
            elif s == "index" and n and y.shape[0] > 0:
                y = y[-1]
            elif s == "max_dim" and n:
                y = y.max(-1)[0]
            elif s == "var_dim" and n and y.shape[-1] > 1:
                y = y.var(-1)
        (y.sum() if y.ndim else y).backward()
        return x.grad

    return f"backward through {steps} from shape {a.shape}", call


def fam_where(rng):
    cond = rand_array(rng, rand_shape(rng, 3), rng.choice((np.bool_, np.bool_, np.int64)))
    a = rand_array(rng, rand_shape(rng, 3)) if rng.random() < 0.8 else rng.choice((0.0, 2))
    b = rand_array(rng, rand_shape(rng, 3)) if rng.random() < 0.8 else rng.choice((1.5, -1))

    def call(lib):
        x = T(lib, a) if isinstance(a, np.ndarray) else a
        y = T(lib, b) if isinstance(b, np.ndarray) else b
        return lib.where(T(lib, cond), x, y)

    show = lambda v: f"{v.shape} {v.dtype}" if isinstance(v, np.ndarray) else repr(v)  # noqa: E731
    return f"where({show(cond)}, {show(a)}, {show(b)})", call


def fam_triangle(rng):
    a = rand_array(rng)
    op = rng.choice(("tril", "triu"))
    diagonal = rng.choice((0, 0, 1, -1, 5, -5))

    def call(lib):
        return getattr(lib, op)(T(lib, a), diagonal=diagonal)

    return f"{op}(shape {a.shape} {a.dtype}, diagonal={diagonal})", call


def fam_create(rng):
    op = rng.choice(("zeros", "ones", "full", "arange", "empty_like_shape"))
    size = rng.choice(((2, 3), (0,), (3,), (-1,), (2, -2), (1.5,), (np.int64(2),), ()))
    fill = rng.choice((0, 1.5, True, -2))
    start, end, step = rng.choice(((0, 5, 1), (5, 0, -1), (0, 1, 0.25), (0, 5, 0), (2, 2, 1),
                                   (0, 3.5, 1), (0, -3, 1)))

    def call(lib):
        if op == "full":
            return lib.full(size, fill)
        if op == "arange":
            return lib.arange(start, end, step)
        if op == "empty_like_shape":
            return lib.zeros(*size).shape
        return getattr(lib, op)(*size)

    what = f"arange({start}, {end}, {step})" if op == "arange" else (
        f"full({size}, {fill!r})" if op == "full" else f"{op}{size}")
    return what, call


FAMILIES = {"reduce": fam_reduce, "shape": fam_shape, "join": fam_join, "topk": fam_topk,
            "index": fam_index, "masked_fill": fam_masked_fill, "binary": fam_binary,
            "module": fam_module, "cross_entropy": fam_cross_entropy, "tensor": fam_tensor,
            "inplace": fam_inplace, "grad": fam_grad, "where": fam_where,
            "triangle": fam_triangle, "create": fam_create}


# ----------------------------------------------------------------------------------
# Comparing the outcomes.


def _flat(result):
    """A result as a list of NumPy arrays (tuples such as topk's flattened)."""
    if isinstance(result, (tuple, list)):
        return [a for r in result for a in _flat(r)]
    if result is None:
        return [None]
    if hasattr(result, "detach"):
        result = result.detach()
    if hasattr(result, "numpy"):
        return [np.asarray(result.numpy())]
    return [np.asarray(result)]


def _same(ours, theirs):
    """'' if the results agree, else what differs."""
    a, b = _flat(ours), _flat(theirs)
    if len(a) != len(b):
        return f"{len(a)} results, torch {len(b)}"
    for i, (x, y) in enumerate(zip(a, b)):
        if x is None or y is None:
            if (x is None) != (y is None):
                return f"result {i}: {'None' if x is None else 'a tensor'}, torch's isn't"
            continue
        if x.shape != y.shape:
            return f"result {i}: shape {x.shape}, torch {y.shape}"
        if x.dtype != y.dtype:
            return f"result {i}: dtype {x.dtype}, torch {y.dtype}"
        if x.dtype.kind in "biu":
            if not np.array_equal(x, y):
                return f"result {i}: values {x.ravel()[:6]}, torch {y.ravel()[:6]}"
        else:
            finite = np.abs(y[np.isfinite(y)]) if y.size else np.zeros(0)
            scale = float(finite.max()) if finite.size else 1.0
            if not np.allclose(x, y, rtol=1e-4, atol=1e-5 * max(scale, 1.0), equal_nan=True):
                worst = np.nanargmax(np.abs(x.astype(np.float64) - y)) if x.size else 0
                where = tuple(map(int, np.unravel_index(worst, x.shape)))
                return (f"result {i}: element {where} is "
                        f"{x.ravel()[worst]}, torch {y.ravel()[worst]}")
    return ""


def _raw(exc):
    return not isinstance(exc, CLEAR) or bool(RAW_MESSAGES.search(str(exc)))


def _outcome(call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            try:
                return call(), None
            except Exception as exc:  # noqa: BLE001 - every exception is an outcome
                return None, exc


def classify(call):
    """(outcome, detail) of one call on torch and on tinygpt."""
    theirs, torch_exc = _outcome(lambda: call(torch))
    ours, our_exc = _outcome(lambda: call(tinygpt))
    return judge(theirs, torch_exc, ours, our_exc)


def judge(theirs, torch_exc, ours, our_exc):
    """(outcome, detail) from torch's result or exception and tinygpt's (either None).
    tools/fuzz_alias.py judges each program's run with it too."""
    name = lambda e: f"{type(e).__name__}: {str(e)[:200]}"  # noqa: E731
    if our_exc is None and torch_exc is None:
        diff = _same(ours, theirs)
        return ("silent mismatch", diff) if diff else ("same numbers", "")
    if our_exc is None:
        return "silent mismatch", f"computed where torch raised {name(torch_exc)}"
    if isinstance(our_exc, NotImplementedError):
        return "clear refusal", name(our_exc)
    if torch_exc is None:
        return "raw error", f"raised where torch computes: {name(our_exc)}"
    if _raw(our_exc):
        return "raw error", f"{name(our_exc)} (torch: {name(torch_exc)})"
    if isinstance(our_exc, type(torch_exc)):
        return "same error", ""
    return "other class", f"{name(our_exc)} (torch: {name(torch_exc)})"


def plan_case(seed, case, families):
    rng = random.Random(f"{seed}:{case}")
    family = rng.choice(families)
    description, call = FAMILIES[family](rng)
    return family, description, call


def fuzz(cases, seed=0, families=tuple(FAMILIES), only_case=None, log=None):
    """Run the cases; returns (counts {family: {outcome: n}}, failures, others, seconds)."""
    counts = {f: dict.fromkeys(OUTCOMES, 0) for f in families}
    failures, others = [], []
    started = time.perf_counter()
    for case in ([only_case] if only_case is not None else range(cases)):
        family, description, call = plan_case(seed, case, families)
        outcome, detail = classify(call)
        counts[family][outcome] += 1
        record = {"case": case, "family": family, "call": description, "outcome": outcome,
                  "detail": detail}
        if outcome in FAILURES:
            failures.append(record)
        elif outcome == "other class":
            others.append(record)
        if log:
            log(f"case {case} {family}: {description} -> {outcome}"
                + (f"\n    {detail}" if detail else ""))
    return counts, failures, others, time.perf_counter() - started


def table(counts, row="family"):
    lines = [f"| {row} | cases | " + " | ".join(OUTCOMES) + " |",
             "|---|" + "---:|" * (len(OUTCOMES) + 1)]
    for family, c in counts.items():
        lines.append(f"| {family} | {sum(c.values())} | "
                     + " | ".join(str(c[o]) for o in OUTCOMES) + " |")
    totals = {o: sum(c[o] for c in counts.values()) for o in OUTCOMES}
    lines.append(f"| **all** | **{sum(totals.values())}** | "
                 + " | ".join(f"**{totals[o]}**" for o in OUTCOMES) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help=f"comma-separated: {', '.join(FAMILIES)}")
    parser.add_argument("--case", type=int, help="run only this case (with --seed)")
    parser.add_argument("--verbose", action="store_true", help="a line per case")
    parser.add_argument("--store", action="store_true",
                        help="write tools/results/fuzz_api.json (bench/record.py)")
    args = parser.parse_args(argv)
    families = tuple(f for f in args.families.split(",") if f)
    unknown = set(families) - set(FAMILIES)
    if unknown:
        parser.error(f"unknown families {sorted(unknown)}; known: {', '.join(FAMILIES)}")
    counts, failures, others, took = fuzz(args.cases, args.seed, families, args.case,
                                          log=print if args.verbose else None)
    n = sum(sum(c.values()) for c in counts.values())
    print(f"\n{n} cases, seed {args.seed}, {took:.1f} s, against torch {torch.__version__}\n")
    print(table(counts))
    for f in failures + others:
        print(f"\ncase {f['case']} ({f['family']}): {f['call']}\n  -> {f['outcome']}: "
              f"{f['detail']}")
    if args.store:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
        from record import store  # bench/record.py

        store("fuzz_api", folder=Path(__file__).resolve().parent / "results", figures={
            "cases": n, "seed": args.seed, "seconds": round(took, 1),
            "torch": torch.__version__, "table": counts,
            "totals": {o: sum(c[o] for c in counts.values()) for o in OUTCOMES},
            "failures": failures, "other_class": others,
        })
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
