"""``Parameter`` and ``Module``: torch.nn's machinery, on tinygpt tensors.

A Module keeps what it owns in three ordered dicts, as torch does: ``_parameters``
(what an optimizer updates), ``_buffers`` (tensors that belong to the model but are not
trained, such as the book's causal ``mask``) and ``_modules`` (children). Assigning an
attribute files it in the right dict, which keeps the module's attribute of that name in
step with it (``_Store``), so reading ``self.weight`` is a plain attribute read. From
those dicts come
the names (``trf_blocks.0.att.W_query.weight``), ``state_dict`` / ``load_state_dict``,
``to(dtype)``, ``train()`` / ``eval()`` and the printed module tree.
"""

import contextlib
from collections import OrderedDict, namedtuple

import numpy

from ..backend import DEFAULT_DTYPE, to_numpy, xp
from ..checks import rectangular
from ..tensor import Tensor, to_arguments


class Parameter(Tensor):
    """A tensor that a Module owns and an optimizer updates.

    ``Parameter(data)``: ``data`` is a Tensor (its array is shared, as torch shares
    storage), an array or a (nested) list."""

    __slots__ = ()

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = xp.empty(0, dtype=DEFAULT_DTYPE)
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """What ``load_state_dict`` returns, as torch: the keys it did not find or use."""

    __slots__ = ()

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()


class _Store(OrderedDict):
    """One of a Module's three dicts. Every change to it is made to the module's attributes
    too, so a forward reads ``self.W_query`` as a plain attribute (torch finds it through
    ``__getattr__`` after a failed lookup, ~0.6 us a read; a GPT-2 token reads ~500)."""

    def __init__(self, owner=None):
        super().__init__()
        self.owner = owner  # None while unpickling: the owner's own __dict__ comes back whole

    def __setitem__(self, name, value):
        super().__setitem__(name, value)
        if self.owner is not None:
            self.owner.__dict__[name] = value

    def __delitem__(self, name):
        super().__delitem__(name)
        self.owner.__dict__.pop(name, None)

    def pop(self, name, *default):
        if name in self:
            self.owner.__dict__.pop(name, None)
        return super().pop(name, *default)

    def popitem(self, last=True):
        name, value = super().popitem(last)
        self.owner.__dict__.pop(name, None)
        return name, value

    def clear(self):
        for name in self:
            self.owner.__dict__.pop(name, None)
        super().clear()


class Module:
    """Base class of every layer and model. Subclasses call ``super().__init__()`` first,
    then assign Parameters, Modules and ``register_buffer`` tensors as attributes."""

    # state-dict key endings of buffers a subclass builds itself, which a state dict may
    # leave out (GPTModel: the causal masks, which tinygpt's own files do not hold)
    _optional_state_keys = ()

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", _Store(self))
        object.__setattr__(self, "_buffers", _Store(self))
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", _Store(self))

    # --- attributes: Parameters, buffers and Modules live in their dicts ---------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"call super().__init__() first in {type(self).__name__}.__init__")
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, Parameter):
            if name not in params:  # replacing one keeps its place in the order, as torch
                self._forget(name)
            params[name] = value
        elif name in params:
            if value is not None:  # torch refuses this too: a Tensor is not trained
                raise TypeError(
                    f"cannot assign {type(value).__name__} as parameter {name!r} "
                    f"(nn.Parameter or None expected); wrap it: nn.Parameter(value)"
                )
            params[name] = None
        elif isinstance(value, Module):
            if name not in modules:  # replacing a child keeps its place, as torch (and
                self._forget(name)   # a loop over named_children() may replace them)
            modules[name] = value
        elif name in modules:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} as child module {name!r} "
                    "(a Module or None expected)"
                )
            modules[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(
                    f"cannot assign {type(value).__name__} as buffer {name!r} (a Tensor or "
                    "None expected); wrap it: torch.tensor(value)"
                )
            buffers[name] = value
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__[name] = value  # the store set its owner's; a shallow copy shares stores

    def __getattr__(self, name):  # only called when ordinary lookup fails (see _Store)
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        if not self._forget(name):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _forget(self, name):
        """Remove ``name`` from wherever it is kept; True if it was anywhere."""
        found = False
        for store in (self._parameters, self._buffers, self._modules, self.__dict__):
            if name in store:
                del store[name]
                found = True
        self._non_persistent_buffers.discard(name)
        return found

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers)
                      | set(self._modules))

    def register_parameter(self, name, param):
        """Add ``param`` (a Parameter, or None for an absent one such as a bias) as ``name``."""
        self._register("_parameters", name, param, Parameter,
                       f"cannot register {type(param).__name__} as parameter {name!r} "
                       "(nn.Parameter or None expected)")

    def register_buffer(self, name, tensor, persistent=True):
        """Add a tensor that is part of the model's state but not trained (the book's
        causal ``mask``). It is an attribute, moves with ``to(dtype)``, and is in
        ``state_dict()`` unless ``persistent=False``."""
        self._register("_buffers", name, tensor, Tensor,
                       f"cannot register {type(tensor).__name__} as buffer {name!r} "
                       "(a Tensor or None expected); wrap it: torch.tensor(value)")
        if not persistent:
            self._non_persistent_buffers.add(name)

    def add_module(self, name, module):
        """Add a child module as ``name`` (what assigning an attribute does)."""
        self._register("_modules", name, module, Module,
                       f"{type(module).__name__} is not a Module")

    def _register(self, store, name, value, kind, refusal):
        """The one way into ``_parameters``, ``_buffers`` and ``_modules``: torch's name
        rules, then ``value`` must be a ``kind`` or None (else TypeError ``refusal``)."""
        self._check_new_name(name, store)
        if value is not None and not isinstance(value, kind):
            raise TypeError(refusal)
        self._forget(name)
        getattr(self, store)[name] = value

    register_module = add_module

    def _check_new_name(self, name, store):
        """torch's rules: a plain name, not already taken by something else."""
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"call super().__init__() first in {type(self).__name__}.__init__")
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"the name must be a non-empty string without '.', got {name!r}")
        if hasattr(self, name) and name not in getattr(self, store):
            raise KeyError(f"attribute {name!r} already exists")

    # --- calling ----------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(
            f'Module [{type(self).__name__}] is missing the required "forward" function'
        )

    # --- traversal --------------------------------------------------------------------
    def named_children(self):
        for name, module in self._modules.items():
            if module is not None:
                yield name, module

    def children(self):
        for _, module in self.named_children():
            yield module

    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        """(name, module) for this module and every descendant, parents first; a module
        reachable twice is listed once (unless ``remove_duplicate=False``)."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self.named_children():
            yield from module.named_modules(memo, f"{prefix}.{name}" if prefix else name,
                                            remove_duplicate)

    def modules(self):
        """This module and every descendant, parents first, each once: named_modules'
        order without building the names."""
        found, seen, stack = [], set(), [self]
        while stack:
            module = stack.pop()
            if module is None or id(module) in seen:  # None: a child slot left empty
                continue
            seen.add(id(module))
            found.append(module)
            stack.extend(reversed(module._modules.values()))
        return found

    def _named_members(self, store, prefix, recurse, remove_duplicate=True):
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        seen = set()
        for module_name, module in modules:
            for name, value in getattr(module, store).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield (f"{module_name}.{name}" if module_name else name), value

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """(name, Parameter) pairs; a parameter shared by two modules is listed once."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        """The parameters, one after the other (a generator, as torch's)."""
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        return [b for _, b in self.named_buffers(recurse=recurse)]

    def num_parameters(self):
        return sum(p.numel() for p in self.parameters())

    def apply(self, fn):
        """Call ``fn(module)`` on every child (recursively), then on this module."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # --- modes and gradients ----------------------------------------------------------
    def train(self, mode=True):
        if not isinstance(mode, (bool, numpy.bool_)):
            raise ValueError(f"training mode is expected to be boolean, got {mode!r}")
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.array[...] = 0

    # --- devices and dtypes -----------------------------------------------------------
    def to(self, *args, **kwargs):
        """``to(device)``, ``to(dtype)``, ``to(device, dtype)``, ``to(tensor)``, like torch;
        returns the module itself. The device must be where tinygpt computes ("cpu" on
        NumPy, "cuda" on CuPy: see ``backend.check_device``). A dtype converts the
        floating-point parameters and buffers in place (e.g. float64 for gradient
        checks); integer and bool buffers keep theirs, as in torch."""
        dtype = to_arguments(args, kwargs)
        if dtype is None:
            return self
        if dtype.kind != "f":
            raise TypeError(f"Module.to only accepts floating point dtypes, but got {dtype}")
        for module in self.modules():
            for p in module._parameters.values():
                if p is not None and p.dtype.kind == "f" and p.dtype != dtype:
                    p.array = p.array.astype(dtype)
                    if p.grad is not None:
                        p.grad = Tensor(p.grad.array.astype(dtype))
            for name, b in module._buffers.items():
                if b is not None and b.dtype.kind == "f" and b.dtype != dtype:
                    module._buffers[name] = b.detach().to(dtype)
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to("cuda" if device is None else device)

    def float(self):
        return self.to(numpy.float32)

    def double(self):
        return self.to(numpy.float64)

    def half(self):
        raise NotImplementedError(
            "float16 is not supported: tinygpt computes in float32 (float64 for checks)"
        )

    bfloat16 = half

    @property
    def dtype(self):
        """The NumPy dtype of the first parameter (tinygpt's; torch modules have no .dtype)."""
        first = next(self.parameters(), None)
        return first.array.dtype if first is not None else xp.dtype(DEFAULT_DTYPE)

    # --- state dicts ------------------------------------------------------------------
    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """Name -> Tensor for every parameter and persistent buffer, in registration
        order: each module's own parameters, then its buffers, then its children's.

        As in torch the tensors share memory with the model (``p.detach()``): a step of
        training changes them too, so copy what must stay (``v.clone()``)."""
        if destination is None:
            destination = OrderedDict()
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers:
                destination[prefix + name] = b if keep_vars else b.detach()
        for name, module in self.named_children():
            module.state_dict(destination, prefix + name + ".", keep_vars)
        return destination

    def _state_entries(self, prefix=""):
        """Name -> (module, attribute, is_parameter) for what ``state_dict`` holds."""
        entries = OrderedDict()
        for name, p in self._parameters.items():
            if p is not None:
                entries[prefix + name] = (self, name, True)
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers:
                entries[prefix + name] = (self, name, False)
        for name, module in self.named_children():
            entries.update(module._state_entries(prefix + name + "."))
        return entries

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """Copy the values of ``state_dict`` (Tensors, NumPy or CuPy arrays, or torch
        tensors) into the parameters and buffers, all or nothing.

        Returns torch's report, ``(missing_keys, unexpected_keys)``. Everything is
        checked before anything is written: with ``strict=True`` (the default) missing
        or unexpected keys are an error; a shape mismatch, a non-numeric value, a NaN
        in a parameter or a value the model's dtype cannot hold (float64 1e300 would
        become inf in float32) always is. On error a ValueError lists every problem and
        the model keeps its previous values. Values are cast to the model's dtypes (a
        float64 state dict loads into a float32 model); ``assign=True`` takes them as
        they are instead (their dtype, and their memory where possible)."""
        if not hasattr(state_dict, "items"):
            raise TypeError(f"load_state_dict expects a dict of name -> tensor, got "
                            f"{type(state_dict).__name__}")
        bad_key = next((k for k in state_dict.keys() if not isinstance(k, str)), None)
        if bad_key is not None:
            raise TypeError(f"load_state_dict expects string keys (parameter names such "
                            f"as 'tok_emb.weight'), got {bad_key!r:.60} "
                            f"({type(bad_key).__name__})")
        entries = self._state_entries()
        given = OrderedDict(state_dict.items())
        missing = [k for k in entries if k not in given
                   and not any(k.endswith(s) for s in self._optional_state_keys)]
        unexpected = [k for k in given if k not in entries]
        errors = []
        if strict and missing:
            errors.append("Missing key(s) in state_dict: "
                          + ", ".join(f'"{k}"' for k in missing) + ". ")
        if strict and unexpected:
            errors.append("Unexpected key(s) in state_dict: "
                          + ", ".join(f'"{k}"' for k in unexpected) + ". ")
        arrays = {}
        for name, value in given.items():
            if name not in entries:
                continue
            module, attr, is_parameter = entries[name]
            current = getattr(module, attr)
            try:
                array = _array_of(value, name)
            except ValueError as exc:
                errors.append(f"{exc}.")
                continue
            if tuple(array.shape) != tuple(current.shape):
                errors.append(
                    f"size mismatch for {name}: copying a param with shape "
                    f"{tuple(array.shape)} from checkpoint, the shape in current model is "
                    f"{tuple(current.shape)}."
                )
            elif array.dtype.kind not in "fiub":
                errors.append(f"{name}: dtype {array.dtype} is not numeric.")
            elif is_parameter and array.dtype.kind == "f" and not _all_finite(array):
                errors.append(f"{name}: contains NaN or infinite values.")
            elif (problem := _cast_problem(array, array.dtype if assign else current.dtype,
                                           is_parameter)) is not None:
                errors.append(f"{name}: {problem}.")
            elif (problem := self._state_value_problem(name, array)) is not None:
                errors.append(f"{name}: {problem}.")
            else:
                arrays[name] = array
        if errors:
            raise ValueError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                + "\n\t".join(errors)
                + "\nNothing was loaded: the model keeps its previous weights."
            )
        for name, array in arrays.items():
            module, attr, is_parameter = entries[name]
            current = getattr(module, attr)
            if assign:
                current.array = xp.asarray(array)
            else:
                current.array[...] = xp.asarray(array, dtype=current.dtype)
                current._counter.bump("load_state_dict")
        return _IncompatibleKeys(missing, unexpected)

    def _state_value_problem(self, name, array):
        """What a subclass's own rule finds wrong with ``array`` (shape and dtype already
        fit) as the value of ``name``, or None."""
        return None

    # --- printing ---------------------------------------------------------------------
    def extra_repr(self):
        """What goes inside this module's parentheses in ``repr`` (e.g. Linear's sizes)."""
        return ""

    def _get_name(self):
        return type(self).__name__

    def __repr__(self):
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): " + _indent(repr(module))
                       for name, module in self._modules.items()]
        lines = extra_lines + child_lines
        if not lines:
            return self._get_name() + "()"
        if len(extra_lines) == 1 and not child_lines:
            return f"{self._get_name()}({extra_lines[0]})"
        return self._get_name() + "(\n  " + "\n  ".join(lines) + "\n)"


def _indent(text):
    """Indent every line of ``text`` after the first by two spaces (torch's layout)."""
    return text.replace("\n", "\n  ")


def _all_finite(array):
    library = numpy if isinstance(array, numpy.ndarray) else xp
    return bool(library.isfinite(array).all())  # one sync per tensor on a GPU


def _array_of(value, name="value"):
    """The array behind a state-dict value: a Tensor's own array (kept on the device),
    a NumPy or CuPy array, a torch tensor (via NumPy, without importing torch), or
    anything ``numpy.asarray`` takes (a ragged list is a ValueError naming ``name``)."""
    if isinstance(value, Tensor):
        return value.array
    if isinstance(value, (numpy.ndarray, xp.ndarray)):
        return value
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        return value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)):
        return rectangular(value, name, "every row needs the same length")
    return numpy.asarray(to_numpy(value))


def _cast_problem(array, dtype, finite):
    """What casting ``array`` (numeric) to ``dtype`` would get wrong, or None: a value
    that becomes infinite (float64 1e300 into float32; any non-finite value when
    ``finite``, i.e. for a parameter), or one an integer dtype cannot hold exactly."""
    dtype = numpy.dtype(dtype)
    if array.dtype == dtype or dtype.kind == "b" or array.size == 0:
        return None
    library = numpy if isinstance(array, numpy.ndarray) else xp
    if dtype.kind == "f":
        if array.dtype.kind != "f" and numpy.finfo(dtype).max >= 2.0**64:
            return None  # every integer fits (to rounding)
        with numpy.errstate(over="ignore"):
            cast = array.astype(dtype)
        overflow = ~library.isfinite(cast)
        if not finite and array.dtype.kind == "f":  # a buffer's own inf may be meant
            overflow &= library.isfinite(array)
        if bool(overflow.any()):
            return (f"values such as {to_numpy(array[overflow][:1]).item()!r} become "
                    f"infinite in the model's dtype {dtype}")
        return None
    if dtype.kind in "iu" and array.dtype.kind in "fiu":
        info = numpy.iinfo(dtype)
        lo, hi = (to_numpy(v).item() for v in (array.min(), array.max()))
        whole = array.dtype.kind != "f" or bool(library.all(library.floor(array) == array))
        if not (whole and info.min <= lo and hi <= info.max):
            return f"holds values that {dtype} cannot hold exactly (range [{lo}, {hi}])"
    return None


@contextlib.contextmanager
def eval_mode(model, modules=None):
    """Eval mode inside the block; afterwards every submodule gets its own old mode back
    (generation runs in eval mode and leaves a model in training mode as it found it).

    modules: ``model.modules()`` when the caller holds it already: the KV-cache decoder
    walks the model once, not for every token (a GPT-2 walk costs about a tenth of the
    Python work of a decoded token)."""
    training = [m for m in (model.modules() if modules is None else modules) if m.training]
    for module in training:
        object.__setattr__(module, "training", False)
    try:
        yield model
    finally:
        for module in training:
            object.__setattr__(module, "training", True)
