"""Fuzz tinygpt's aliasing (views, in-place changes, autograd through both) against torch.

    python tools/fuzz_alias.py --cases 2000 --seed 0 --store    # the full run, stored
    python tools/fuzz_alias.py --seed 0 --case 17                # one program and its outcome
    python tools/fuzz_alias.py --cases 300 --verbose --shrink    # every failure, shrunk
    python tools/fuzz_alias.py --cases 300 --skip split,chunk    # without some ops
    python tools/fuzz_alias.py --cases 300 --self-check          # torch against itself: 0

Each case is a small random program, written as Python source over ``lib``:

    x1 = lib.tensor([[0.5, -1.0], [2.0, 0.0]], requires_grad=True)   # 1-3 leaves
    v2 = x1.t()                                                      # a view
    y3 = v2.exp()                                                    # a non-leaf
    with lib.no_grad():
        v2[0] += lib.tensor([1.0, 2.0])                              # in place, via a view
    loss = (y3 * lib.tensor([[1.0, 0.5], [2.0, 1.0]])).sum() + x1.sum()
    loss.backward()

The program is run twice, with ``lib = torch`` and ``lib = tinygpt``. After every step
(or, in a fifth of the programs, after the last one only) the runner reads everything
observable of every tensor the program named (bases and views alike): its values, shape
and dtype, ``requires_grad`` and ``.grad`` (``--versions`` adds ``_version``; not
``is_leaf``, which torch refuses to read for some views that are fine to use).
The two runs must read the same, step by step, and raise at the same step, with torch's
error class. The outcome classes and the comparison (NaN equals NaN; shape, dtype and
integers exact; floats within rtol 1e-4) are tools/fuzz_api.py's, via its ``judge`` and
``_same``: same numbers, same error, clear refusal, other class, silent mismatch (a
difference, or computing where torch raised) and raw error (raising where torch computes,
or a Python/NumPy error). The bar: 0 silent mismatches and 0 raw errors.

The steps (at most 8 after the leaves; leaves are float32 or float64, a few int64, many
requiring grad; dims of at most 4 elements):

- **view**: basic indexing, view, reshape, transpose, t, permute, expand, unsqueeze,
  squeeze, narrow, select, chunk, split, unbind, detach, ``.data``, flatten, contiguous,
  of any live tensor (so views of views); arguments valid most of the time;
- **compute**: a non-leaf from live tensors (``x * 2``, exp, tanh, sigmoid, softmax,
  ``x.pow(2)``, ``x * y``, ``x + y``, ``x / y``, ``x @ y``, sum, clone, an advanced index);
- **in-place** (add_, sub_, mul_, div_, zero_, fill_, copy_, masked_fill_, clamp_),
  **augmented** (+=, -=, *=, /=) and **setitem** (``x[idx] = v`` with basic, integer-list
  or mask indices): on a live tensor directly, through an inline view, through ``.data``
  or a ``.detach()`` alias; operands are Python numbers, tensors of the target's shape,
  broadcasting ones, other live tensors (some requiring grad, some overlapping the
  target), other dtypes (int64 into float works, float into int64 torch refuses), and
  now and then a shape that does not fit;
- any view, compute or in-place step may run under ``no_grad``;
- **loss** (a sum or weighted sum of 1-3 live tensors) and **backward**, in 9 programs of 10.

The table counts the programs by the kind of step that decided the outcome: the first
step after which the runs read differently or raised; programs that agree to the end
count under their last step (mostly ``backward``). Then the causes of the failures (the
deciding op and the difference, names and numbers left out), and for the most frequent
causes a program each, shrunk: every step (and what depends on it) and every loss term
the failure does not need is dropped, the step where the runs parted is marked.
``--verbose`` prints every failing program instead (shrunk with ``--shrink``). ``--store``
writes the table, the causes and a shrunk program per cause to
tools/results/fuzz_alias.json with the date, commit, machine and command
(bench/record.py). ``--self-check`` runs torch against torch: the fuzzer's own test.
"""

import argparse
import random
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzz_api import FAILURES, OUTCOMES, _outcome, _same, judge, table, tinygpt, torch  # noqa: E402

VIEWS = ("index", "view", "reshape", "transpose", "t", "permute", "expand", "unsqueeze",
         "squeeze", "narrow", "select", "chunk", "split", "unbind", "detach", "data",
         "flatten", "contiguous")
NEED_DIMS = ("t", "transpose", "permute", "narrow", "select", "chunk", "split", "unbind",
             "flatten")  # views a 0-d tensor refuses (left out 9 times in 10, as t of 3-d)
COMPUTES = ("scale", "exp", "tanh", "sigmoid", "softmax", "pow", "mul", "add", "div",
            "matmul", "sum", "clone", "gather")
IN_PLACE = ("add_", "sub_", "mul_", "div_", "zero_", "fill_", "copy_", "masked_fill_",
            "clamp_")
AUGMENTED = ("+=", "-=", "*=", "/=")
OPS = VIEWS + COMPUTES + IN_PLACE + AUGMENTED + ("setitem",)
KINDS = ("leaf", "view", "compute", "in-place", "augmented", "setitem", "loss", "backward")
ROWS = tuple(k + s for k in KINDS for s in ("", " under no_grad")
             if not (s and k in ("leaf", "loss", "backward")))


@dataclass
class Step:
    kind: str       # the table's row: view, compute, in-place, ...
    op: str         # one of OPS (or tensor, loss, backward; written: by hand)
    code: str       # Python source over ``lib`` and the tensors named before it
    defines: tuple  # the names it binds

    def __post_init__(self):
        self.compiled = compile(self.code, "<program>", "exec")


@dataclass
class Program:
    steps: list = field(default_factory=list)
    observe: bool = True  # read every tensor after every step (else after the last only)

    def source(self, mark=None, note=""):
        """The program as Python source, ``mark``ing one step with ``note``."""
        lines = ["lib = torch  # or tinygpt"]
        for i, step in enumerate(self.steps):
            code = step.code.splitlines()
            if i == mark:
                code[-1] += f"  # <- {note}"
            lines += code
        return "\n".join(lines)

    @classmethod
    def of(cls, source, observe=True):
        """A hand-written program: a step per top-level line (a ``with`` and its block
        make one; comment lines are left out); the names each binds are read off its
        assignment."""
        steps = []
        for line in source.strip().splitlines():
            if line.startswith("#"):
                continue
            if line.startswith((" ", "\t")) and steps:
                steps[-1] += "\n" + line
            else:
                steps.append(line)
        out = []
        for code in steps:
            bound = re.match(r"\s*([\w, ]+?),?\s*=(?!=)", code.splitlines()[-1])
            names = tuple(n.strip() for n in bound.group(1).split(",")) if bound else ()
            out.append(Step("written", "written", code,
                            tuple(n for n in names if n and n != "_")))
        return cls(out, observe)

    def names(self, upto):
        return [n for s in self.steps[:upto + 1] for n in s.defines]


# ----------------------------------------------------------------------------------
# Running a program: the trace of what each step leaves observable.


def _read(t, versions):
    """Everything observable of tensor ``t``, as (label, value) pairs."""
    values = np.array(t.detach().cpu().numpy(), copy=True)
    grad = t.grad  # torch warns for a non-leaf's .grad (the warnings are silenced)
    out = [("", values), (".requires_grad", np.array(bool(t.requires_grad))),
           (".grad", None if grad is None else np.array(grad.detach().cpu().numpy()))]
    if versions:
        out.append(("._version", np.array(t._version)))
    return out


@dataclass
class Run:
    trace: list      # (step, label, value): what each completed step left observable
    stop: int        # the step that raised, or len(steps) when all ran
    exc: Exception   # what it raised, or None


def run(lib, program, versions=False):
    """Run ``program`` with ``lib``, reading its tensors after each step."""
    ns = {"lib": lib}
    trace, last = [], len(program.steps) - 1

    def step(i):
        exec(program.steps[i].compiled, ns)
        if not (program.observe or i == last):
            return []
        return [(i, name + label, value) for name in program.names(i)
                for label, value in _read(ns[name], versions)]

    for i in range(len(program.steps)):
        entries, exc = _outcome(lambda: step(i))  # noqa: B023 - called at once
        if exc is not None:
            return Run(trace, i, exc)
        trace += entries
    return Run(trace, len(program.steps), None)


def compare(theirs, ours):
    """(outcome, deciding step, detail) of torch's run against tinygpt's."""
    upto = min(theirs.stop, ours.stop)
    for (i, label, want), (_, _, got) in zip(theirs.trace, ours.trace):
        if i >= upto:
            break
        diff = _same(got, want)
        if diff:  # _same names "result 0"; the label names the tensor
            return "silent mismatch", i, f"{label}: {diff.split(': ', 1)[-1]}"
    if theirs.stop == ours.stop:  # both ran to the end, or raised at the same step
        at, torch_exc, our_exc = upto if theirs.exc else upto - 1, theirs.exc, ours.exc
    elif ours.stop > theirs.stop:  # computed where torch raised
        at, torch_exc, our_exc = theirs.stop, theirs.exc, None
    else:  # raised where torch computed
        at, torch_exc, our_exc = ours.stop, None, ours.exc
    outcome, detail = judge(None, torch_exc, None, our_exc)
    return outcome, at, detail


def classify(program, ours=tinygpt, versions=False):
    """(outcome, deciding step, detail) of ``program`` on torch and on ``ours``."""
    return compare(run(torch, program, versions), run(ours, program, versions))


# ----------------------------------------------------------------------------------
# Drawing a program. Each step is run on torch as it is drawn, so the next one can
# pick arguments that fit the shapes torch made; a step torch refuses ends the program.


def _literal(array):
    """``array`` as ``lib.tensor(...)`` source (float32 is the default dtype)."""
    dtype = "" if array.dtype == np.float32 else f", dtype=lib.{array.dtype.name}"
    return f"lib.tensor({array.tolist()!r}{dtype})"


def _broadcasting(rng, shape):
    """A shape that broadcasts to ``shape``: a suffix, some dims 1."""
    return tuple(rng.choice((n, 1)) for n in shape[rng.randint(0, len(shape)):])


def _factor_shape(rng, numel):
    """A random shape with ``numel`` elements (sometimes with a -1)."""
    factors, n = [], numel
    for p in (2, 3, 5, 7):
        while n and n % p == 0:
            factors.append(p)
            n //= p
    if n > 1:
        factors.append(n)
    dims = [1] * rng.randint(1, 3) if numel else [0, rng.randint(1, 3)]
    for p in factors:
        dims[rng.randrange(len(dims))] *= p
    rng.shuffle(dims)
    if rng.random() < 0.3 and numel:
        dims[rng.randrange(len(dims))] = -1
    return tuple(dims)


class Builder:
    """Draws a program step by step, running each on torch (its namespace ``ns``)."""

    def __init__(self, rng, ops):
        self.rng, self.ops = rng, ops
        self.gen = np.random.default_rng(rng.getrandbits(32))
        self.ns = {"lib": torch}
        self.program = Program(observe=rng.random() < 0.8)
        self.names = []  # every tensor the program named, in order
        self.count = 0

    # --- helpers ---------------------------------------------------------------------
    def new_name(self, prefix):
        self.count += 1
        return f"{prefix}{self.count}"

    def add(self, kind, op, code, defines=()):
        """Append the step; False when torch raised at it (the program ends there)."""
        step = Step(kind, op, code, tuple(defines))
        self.program.steps.append(step)
        _, exc = _outcome(lambda: exec(step.compiled, self.ns))
        if exc is not None:
            return False
        self.names += defines
        return True

    def array(self, shape, dtype=np.float32, nonzero=False):
        values = np.asarray(self.gen.integers(-4, 5, size=shape) / 2)  # exact, short
        if nonzero:
            values[values == 0] = 0.5
        if dtype == np.bool_:
            return values > 0
        return values.astype(dtype)

    def tensor(self, name):
        return self.ns[name]

    def pick(self, want=None):
        """A live tensor's name (one that satisfies ``want`` when any does)."""
        good = [n for n in self.names if want is None or want(self.tensor(n))]
        return self.rng.choice(good or self.names)

    def dim(self, ndim, extra=0, bad=0.05):
        """A dim for a tensor of ``ndim`` dims (+ ``extra``): rarely out of range."""
        n = ndim + extra
        if n == 0 or self.rng.random() < bad:
            return self.rng.choice((n, -n - 1, 3))
        return self.rng.randint(-n, n - 1)

    def no_grad(self, code, p=0.2):
        """``code``, under ``lib.no_grad()`` with probability ``p``."""
        if self.rng.random() >= p:
            return code, ""
        return "with lib.no_grad():\n    " + code.replace("\n", "\n    "), " under no_grad"

    def choose(self, ops):
        allowed = [o for o in ops if o in self.ops]
        return self.rng.choice(allowed) if allowed else None

    # --- leaves ----------------------------------------------------------------------
    def leaf(self):
        rng = self.rng
        shape = tuple(rng.randint(1, 4) for _ in range(rng.choice((0, 1, 1, 2, 2, 2, 3))))
        dtype = rng.choice((np.float32,) * 6 + (np.float64,) * 3 + (np.int64,))
        if not self.names:  # the first leaf: a float that requires grad
            dtype, grad = dtype if dtype != np.int64 else np.float32, True
        else:
            grad = dtype != np.int64 and rng.random() < 0.6
        name = self.new_name("x")
        code = _literal(self.array(shape, dtype))
        if grad:
            code = code[:-1] + ", requires_grad=True)"
        return self.add("leaf", "tensor", f"{name} = {code}", (name,))

    # --- views -----------------------------------------------------------------------
    def index_key(self, shape, bad=0.05):
        """Source of a basic index (ints, slices, None, ...) for ``shape``."""
        rng, parts = self.rng, []
        dims = list(shape)
        if not dims:
            return rng.choice(("...", "None", "()"))
        if rng.random() < 0.2:
            parts.append("...")
            dims = dims[len(dims) - rng.randint(1, len(dims)):]
        for n in dims[:rng.randint(1, 3)]:
            r = rng.random()
            if r < 0.1:
                parts.append("None")
            if r < 0.45 and n:
                parts.append(str(n if rng.random() < bad else rng.randint(-n, n - 1)))
            else:
                start = rng.choice(("", str(rng.randint(-n, n))))
                stop = rng.choice(("", str(rng.randint(-n, n + 1))))
                parts.append(f"{start}:{stop}" + rng.choice(("", "", ":2")))
        return ", ".join(parts)

    def view_call(self, op, t):
        """Source of view ``op``'s call on a tensor like ``t`` ('' for no call)."""
        rng, shape, n = self.rng, tuple(t.shape), t.ndim
        if op == "index":
            return f"[{self.index_key(shape)}]"
        if op in ("view", "reshape"):
            size = t.numel() + (rng.random() < 0.05)
            return f".{op}{_factor_shape(rng, size)}".replace(",)", ")")
        if op == "transpose":
            return f".transpose({self.dim(n)}, {self.dim(n)})"
        if op == "t":
            return ".t()"
        if op == "permute":
            perm = list(range(n))
            rng.shuffle(perm)
            if perm and rng.random() < 0.05:
                perm[0] = perm[-1]
            return f".permute({', '.join(map(str, perm))})" if perm else ".permute()"
        if op == "expand":
            sizes = [rng.randint(1, 3) for _ in range(rng.choice((0, 0, 1)))]
            sizes += [rng.choice((1, 2, 3, -1)) if d == 1 else rng.choice((d, -1)) for d in shape]
            sizes = sizes or [rng.randint(1, 3)]
            if rng.random() < 0.05:
                sizes[-1] += 1
            return f".expand({', '.join(map(str, sizes))})"
        if op == "unsqueeze":
            return f".unsqueeze({self.dim(n, extra=1)})"
        if op == "squeeze":
            return ".squeeze()" if rng.random() < 0.3 else f".squeeze({self.dim(n)})"
        if op in ("narrow", "select", "chunk", "split", "unbind"):
            d = self.dim(n)
            size = shape[d] if -n <= d < n else 2
            if op == "narrow":
                start = rng.randint(-size, size - 1) if size else 0
                length = rng.randint(0, size - start % size if size else 0)
                return f".narrow({d}, {start}, {length})"
            if op == "select":
                return f".select({d}, {rng.randint(-size, size - 1) if size else 0})"
            if op == "chunk":
                return f".chunk({rng.randint(1, 3)}, {d})"
            if op == "unbind":
                return f".unbind({d})"
            if rng.random() < 0.5 or size == 0:
                return f".split({rng.randint(1, 3)}, {d})"
            cut = rng.randint(0, size)
            return f".split([{cut}, {size - cut + (rng.random() < 0.05)}], {d})"
        if op == "flatten":
            return ".flatten()" if rng.random() < 0.4 else f".flatten({self.dim(n)}, -1)"
        return {"detach": ".detach()", "data": ".data", "contiguous": ".contiguous()"}[op]

    def view(self):
        source = self.pick()
        ndim, usual = self.tensor(source).ndim, self.rng.random() < 0.9
        op = self.choose([v for v in VIEWS if not usual or (ndim or v not in NEED_DIMS)
                          and (ndim <= 2 or v != "t")])
        if op is None:
            return True
        expr = source + self.view_call(op, self.tensor(source))
        if op in ("chunk", "split", "unbind"):  # as many names as torch gives parts
            parts, exc = _outcome(lambda: eval(expr, self.ns))
            names = [self.new_name("v") for _ in (range(1) if exc else parts)]
            bound = ", ".join(names) + ("," if len(names) == 1 else "") if names else "()"
        else:
            names = [self.new_name("v")]
            bound = names[0]
        code, under = self.no_grad(f"{bound} = {expr}")
        return self.add("view" + under, op, code, names)

    # --- non-leaves ------------------------------------------------------------------
    def operand_like(self, t, live=0.3, scalar=0.3, nonzero=False):
        """Source of an operand for a tensor like ``t``: a Python number, another live
        tensor, or a constant of t's shape, a broadcasting shape or (rarely) a bad one,
        mostly of t's dtype."""
        rng, r = self.rng, self.rng.random()
        if r < scalar:
            return repr(rng.choice((2, -1, 0.5, 1.5, -2.0, 3)))
        if r < scalar + live:
            return self.pick()
        shape = tuple(t.shape)
        r = rng.random()
        if r < 0.3:
            shape = _broadcasting(rng, shape)
        elif r < 0.35:
            shape = tuple(rng.randint(1, 4) for _ in range(rng.randint(1, 2)))
        dtype = _np_dtype(t) if t.dtype.is_floating_point else np.float32
        dtype = rng.choice((dtype,) * 8 + (np.float32, np.float64, np.int64))
        return _literal(self.array(shape, dtype, nonzero))

    def compute(self):
        op = self.choose(COMPUTES)
        if op is None:
            return True
        x = self.pick(lambda t: t.dtype.is_floating_point and (op != "matmul" or t.ndim))
        t, rng = self.tensor(x), self.rng
        fits = lambda u: u.dtype == t.dtype and _broadcasts(u.shape, t.shape)  # noqa: E731
        if op == "scale":
            expr = f"{x} * {rng.choice((2, 0.5, -1.5))}"
        elif op in ("exp", "tanh", "sigmoid", "clone"):
            expr = f"{x}.{op}()"
        elif op == "softmax":
            expr = f"{x}.softmax({self.dim(t.ndim)})"
        elif op == "pow":
            expr = f"{x}.pow(2)"
        elif op in ("mul", "add", "div"):
            other = self.pick(fits) if rng.random() < 0.5 else self.operand_like(
                t, live=0, nonzero=op == "div")
            expr = f"{x} {dict(mul='*', add='+', div='/')[op]} {other}"
        elif op == "matmul":
            k = t.shape[-1] if t.ndim else 2
            fit = [n for n in self.names if self.tensor(n).dtype == t.dtype
                   and self.tensor(n).ndim == 2 and self.tensor(n).shape[0] == k]
            other = rng.choice(fit) if fit and rng.random() < 0.5 else _literal(
                self.array((k, rng.randint(1, 3)), _np_dtype(t)))
            expr = f"{x} @ {other}"
        elif op == "sum":
            expr = f"{x}.sum({self.dim(t.ndim)})" if t.ndim and rng.random() < 0.6 \
                else f"{x}.sum()"
        else:  # gather: an advanced index, a copy in torch
            x = self.pick(lambda u: u.ndim and u.shape[0])
            n = self.tensor(x).shape[0] if self.tensor(x).ndim else 1
            expr = f"{x}[{[rng.randint(-n, n - 1) for _ in range(rng.randint(1, 3))]}]"
        name = self.new_name("y")
        code, under = self.no_grad(f"{name} = {expr}", p=0.1)
        return self.add("compute" + under, op, code, (name,))

    # --- in-place changes ------------------------------------------------------------
    def target(self, route):
        """Source of what an in-place op writes into: a live tensor (route "direct"), or
        an inline view of one: x[...], x.data, x.detach(), or ("view") another view."""
        x = self.pick()
        views = [v for v in ("t", "transpose", "view", "unsqueeze", "expand", "narrow")
                 if v in self.ops]
        if route == "direct" or route == "view" and not views:
            return x
        op = self.rng.choice(views) if route == "view" else route
        return x + self.view_call(op, self.tensor(x))

    def in_place(self):
        rng = self.rng
        op = self.choose(IN_PLACE * 2 + AUGMENTED * 2 + ("setitem",) * 4)
        if op is None:
            return True
        routes = ["direct"] * 6 + ["index"] * 2 + ["view", "data", "detach"]
        routes = [r for r in routes if r not in ("data", "detach") or r in self.ops]
        if op in AUGMENTED:
            routes = [r for r in routes if r in ("direct", "index", "data")]
        target = self.target(rng.choice(routes))
        t, exc = _outcome(lambda: eval(target, self.ns))
        if exc is not None:  # a bad index: the step will raise; any operand will do
            t = torch.zeros(())
        if op == "setitem":
            kind = "setitem"
            r = rng.random()
            if r < 0.7 or not t.ndim or not t.shape[0]:
                key = self.index_key(tuple(t.shape))
            elif r < 0.85:
                key = repr([rng.randint(-t.shape[0], t.shape[0] - 1) for _ in range(2)])
            else:
                key = _literal(self.array(tuple(t.shape), np.bool_))
            part, exc = _outcome(lambda: eval(f"({target})[{key}]", self.ns))
            value = self.operand_like(part if exc is None else t, live=0.2, scalar=0.5)
            code = f"{target}[{key}] = {value}"
        elif op in AUGMENTED:
            kind = "augmented"
            code = f"{target} {op} {self.operand_like(t, nonzero=op == '/=')}"
        else:
            kind = "in-place"
            if op in ("add_", "sub_", "mul_", "div_"):
                arg = self.operand_like(t, nonzero=op == "div_")
                if op in ("add_", "sub_") and rng.random() < 0.2:
                    arg += ", alpha=2"
            elif op == "fill_":
                arg = repr(rng.choice((0.5, -1, 2.0)))
            elif op == "copy_":
                arg = self.operand_like(t, scalar=0, live=0.4)
            elif op == "masked_fill_":
                shape = tuple(t.shape) if rng.random() < 0.7 else _broadcasting(rng, tuple(t.shape))
                arg = f"{_literal(self.array(shape, np.bool_))}, {rng.choice((0.0, -1.5, 2))}"
            elif op == "clamp_":
                arg = rng.choice(("min=0.0", "max=0.5", "-0.5, 1.0", "min=-1, max=1"))
            else:
                arg = ""
            code = f"{target}.{op}({arg})"
        base = getattr(t, "_base", None)
        guarded, _ = _outcome(lambda: t.requires_grad and (
            t.is_leaf or base is not None and base.is_leaf))
        code, under = self.no_grad(code, p=0.95 if guarded else 0.2)  # else torch refuses
        return self.add(kind + under, op, code)

    # --- the loss --------------------------------------------------------------------
    def loss(self):
        rng, terms = self.rng, []
        floats = [n for n in self.names if self.tensor(n).dtype.is_floating_point]
        grads = [n for n in floats if self.tensor(n).requires_grad]
        for _ in range(rng.randint(1, 3)):
            pool = grads if grads and rng.random() < 0.95 else (floats or self.names)
            x = rng.choice(pool)
            if rng.random() < 0.5:
                terms.append(f"{x}.sum()")
            else:
                w = self.array(tuple(self.tensor(x).shape))
                terms.append(f"({x} * {_literal(w)}).sum()")
        if not self.add("loss", "loss", f"loss = {' + '.join(terms)}", ("loss",)):
            return False
        return self.add("backward", "backward", "loss.backward()")


def _np_dtype(t):
    return {torch.float64: np.float64, torch.int64: np.int64,
            torch.bool: np.bool_}.get(t.dtype, np.float32)


def _broadcasts(a, b):
    try:
        return np.broadcast_shapes(tuple(a), tuple(b)) == tuple(b)
    except ValueError:
        return False


def plan_program(seed, case, ops=OPS):
    """The program of case ``case`` of run ``seed`` (the same on every machine)."""
    b = Builder(random.Random(f"alias:{seed}:{case}"), set(ops))
    rng = b.rng
    for _ in range(rng.choice((1, 1, 2, 2, 3))):
        if not b.leaf():
            return b.program
    steps = [b.view] * 7 + [b.compute] * 4 + [b.in_place] * 9
    for _ in range(rng.randint(1, 6)):
        if not rng.choice(steps)():
            return b.program
    if rng.random() < 0.9:
        b.loss()
    return b.program


# ----------------------------------------------------------------------------------
# Shrinking a failing program: drop steps the failure does not need.


def without(program, i):
    """``program`` less step ``i`` and every later step that reads what it bound."""
    gone, kept = set(program.steps[i].defines), []
    for j, step in enumerate(program.steps):
        if j == i or (j > i and any(re.search(rf"\b{n}\b", step.code) for n in gone)):
            gone |= set(step.defines)
        else:
            kept.append(step)
    return Program(kept, program.observe)


def fewer_terms(program):
    """``program`` with one term less in its loss, each way (no term holds " + ")."""
    out = []
    for i, step in enumerate(program.steps):
        terms = step.code.removeprefix("loss = ").split(" + ") if step.op == "loss" else []
        for j in range(len(terms) if len(terms) > 1 else 0):
            loss = Step("loss", "loss", "loss = " + " + ".join(terms[:j] + terms[j + 1:]),
                        ("loss",))
            out.append(Program(program.steps[:i] + [loss] + program.steps[i + 1:],
                               program.observe))
    return out


def _signature(outcome, detail):
    """What a shrunk program must keep: the outcome and the kind of difference (what
    it read: values, .grad, ...; how they differ: element, dtype, ...; the error)."""
    error = re.search(r"\b(\w+(?:Error|Exception|Warning))\b", detail)
    read = re.match(r"\w+(\.\w+)?: (\w+)", detail)
    return (outcome, "computed where" in detail, error.group(1) if error else None,
            read.groups() if read and not error else None)


def shrink(program, ours=tinygpt, versions=False):
    """The smallest program (greedily) that fails in the same way as ``program``."""
    outcome, _, detail = classify(program, ours, versions)
    want = _signature(outcome, detail)

    def candidates(p):  # reading after every step, fewer loss terms, fewer steps
        return ([Program(p.steps, True)] * (not p.observe) + fewer_terms(p)
                + [without(p, i) for i in reversed(range(len(p.steps)))])

    changed = True
    while changed:
        changed = False
        for candidate in candidates(program):
            got = classify(candidate, ours, versions)
            if candidate.steps and _signature(got[0], got[2]) == want:
                program, changed = candidate, True
                break
    return program


# ----------------------------------------------------------------------------------
# The run.


def check(program, ours=tinygpt, versions=False, case=None):
    """A record of ``program``'s outcome (what --verbose prints and --store keeps)."""
    outcome, at, detail = classify(program, ours, versions)
    step = program.steps[at]
    note = outcome + (f": {detail[:160]}" if detail else "")
    return {"case": case, "kind": step.kind, "op": step.op, "step": at, "outcome": outcome,
            "detail": detail, "program": program.source(at, note)}


def fuzz(cases, seed=0, ops=OPS, only_case=None, ours=tinygpt, versions=False, log=None):
    """Run the programs; returns (counts {row: {outcome: n}}, failures, others, seconds).
    Failures and others are records (``check``) with their programs, unshrunk."""
    counts = {row: dict.fromkeys(OUTCOMES, 0) for row in ROWS}
    failures, others = [], []
    started = time.perf_counter()
    for case in ([only_case] if only_case is not None else range(cases)):
        program = plan_program(seed, case, ops)
        record = check(program, ours, versions, case)
        counts[record["kind"]][record["outcome"]] += 1
        if record["outcome"] in FAILURES:
            failures.append(record)
        elif record["outcome"] == "other class":
            others.append(record)
        if log:
            log(f"case {case}: {record['kind']} {record['op']} -> {record['outcome']}"
                + (f"\n    {record['detail'][:300]}" if record["detail"] else ""))
    return counts, failures, others, time.perf_counter() - started


def cause(record):
    """A failure's op and detail with names, numbers and shapes left out: the failures of
    one cause share it."""
    detail = re.sub(r"\(torch: (\w+): .*", r"(torch: \1)", record["detail"])
    detail = re.sub(r"\b([xvy]\d+|loss)\b", "T", detail)
    detail = re.sub(r"\[[^]]*\]|\([^)]*\)", "..", detail)
    detail = re.sub(r"-?\d+(\.\d+)?(e-?\d+)?", "#", detail)
    return f"{record['op']} -> {record['outcome']}: {detail[:110]}"


def by_cause(records):
    """{cause: n}, most frequent first."""
    tally = {}
    for r in records:
        tally[cause(r)] = tally.get(cause(r), 0) + 1
    return dict(sorted(tally.items(), key=lambda kv: -kv[1]))


def examples(records, seed, ops, ours, versions, limit=None):
    """The first program of each cause (the most frequent causes first), shrunk."""
    first = {}
    for r in records:
        first.setdefault(cause(r), r)
    out = []
    for key in list(by_cause(records))[:limit]:
        small = shrink(plan_program(seed, first[key]["case"], ops), ours, versions)
        out.append({"cause": key, "count": by_cause(records)[key],
                    **check(small, ours, versions, first[key]["case"])})
    return out


STORED = 40  # --store keeps a shrunk program for each of the 40 most frequent causes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--case", type=int, help="run only this case (with --seed)")
    parser.add_argument("--skip", default="", help=f"comma-separated ops to leave out: "
                        f"{', '.join(OPS)}")
    parser.add_argument("--verbose", action="store_true",
                        help="a line per program, and every failing program in full")
    parser.add_argument("--shrink", action="store_true",
                        help="with --verbose: failing programs shrunk to the steps they need")
    parser.add_argument("--show", type=int, default=8,
                        help="without --verbose: how many failing programs to print, shrunk "
                             "(one per cause, the most frequent first)")
    parser.add_argument("--versions", action="store_true", help="compare _version too")
    parser.add_argument("--self-check", action="store_true",
                        help="run torch against torch: the fuzzer must report 0 failures")
    parser.add_argument("--store", action="store_true",
                        help="write tools/results/fuzz_alias.json (bench/record.py)")
    args = parser.parse_args(argv)
    skip = {o for o in args.skip.split(",") if o}
    if skip - set(OPS):
        parser.error(f"unknown ops {sorted(skip - set(OPS))}; known: {', '.join(OPS)}")
    ops = tuple(o for o in OPS if o not in skip)
    ours = torch if args.self_check else tinygpt
    counts, failures, others, took = fuzz(args.cases, args.seed, ops, args.case, ours,
                                          args.versions, log=print if args.verbose else None)
    counts = {row: c for row, c in counts.items() if sum(c.values())}
    totals = {o: sum(c[o] for c in counts.values()) for o in OUTCOMES}
    against = "torch against itself" if args.self_check else "tinygpt against torch"
    print(f"\n{sum(totals.values())} programs, seed {args.seed}, {took:.1f} s, {against} "
          f"{torch.__version__}\n")
    print(table(counts, row="deciding step"))
    print(f"\nsilent mismatches: {totals['silent mismatch']}, raw errors: {totals['raw error']}")
    causes = by_cause(failures + others)
    if causes:
        print(f"\n{len(causes)} causes (failures and other class by op and detail):")
        print("\n".join(f"{n:5d}  {key}" for key, n in causes.items()))
    stored = examples(failures + others, args.seed, ops, ours, args.versions,
                      max(args.show, STORED * args.store))
    if args.case is not None:  # the one program, whatever its outcome
        shown = [check(plan_program(args.seed, args.case, ops), ours, args.versions, args.case)]
    elif args.verbose:
        shown = [check(shrink(plan_program(args.seed, r["case"], ops), ours, args.versions),
                       ours, args.versions, r["case"]) if args.shrink else r
                 for r in failures + others]
    else:  # one program per cause, shrunk
        shown = stored[:args.show]
    for r in shown:
        print(f"\n--- case {r['case']}: {r['kind']} {r['op']} -> {r['outcome']}\n"
              f"{r['program']}")
    if args.store:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
        from record import store  # bench/record.py

        store("fuzz_alias", folder=Path(__file__).resolve().parent / "results", figures={
            "cases": sum(totals.values()), "seed": args.seed, "seconds": round(took, 1),
            "torch": torch.__version__, "against": against, "skipped_ops": sorted(skip),
            "table": counts, "totals": totals, "causes": causes,
            "examples": stored[:STORED],
        })
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
