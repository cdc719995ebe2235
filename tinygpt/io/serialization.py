"""``torch.save`` / ``torch.load`` for tinygpt: nested dicts, lists and tensors, as safetensors.

So that a learner who writes ``import tinygpt as torch`` can run the book's section
5.4 as printed::

    torch.save(model.state_dict(), "model.pth")
    model.load_state_dict(torch.load("model.pth", map_location=device, weights_only=True))
    torch.save({"model_state_dict": model.state_dict(),
                "optimizer_state_dict": optimizer.state_dict()}, "model_and_optimizer.pth")
    checkpoint = torch.load("model_and_optimizer.pth", weights_only=True)

The file is always a safetensors file, whatever its name ends with (".pth" too);
never a pickle.

* **Tensors** (tinygpt ``Tensor``s, NumPy arrays, CuPy arrays on the GPU backend) are
  the safetensors tensors. Each is named by its keys joined with "." (list and tuple
  items by their index): ``model_state_dict.tok_emb.weight``,
  ``optimizer_state_dict.state.0.exp_avg``. So ``save(model.state_dict(), path)``
  writes exactly the state dict's keys, and ``safetensors.numpy.load_file(path)``
  reads it back as a plain state dict.
* **Everything else** (the nesting, dict key types, list or tuple, numbers, bools,
  strings, None, and which leaves are tensors) is JSON in the metadata under
  ``tinygpt.object`` (``tinygpt.object_version`` is 1). Each node is one of these:
  a JSON null / bool / number / string (the Python leaf itself);
  ``{"tensor": name}``; ``{"float": "nan" | "inf" | "-inf"}`` (JSON has no
  non-finite numbers); ``{"list": [node, ...]}``; ``{"tuple": [node, ...]}``;
  ``{"dict": [[key, node], ...]}``, where the key is a JSON string or integer, so
  the optimizer's int keys come back as ints, and the pairs keep their order.

Names are never parsed back: the metadata says which leaf is which tensor. That is
why any key round-trips, dots and all. Two leaves can still want the same name
(``{"a.b": x, "a": {"b": y}}``, or ``{0: x, "0": y}``). Then the first leaf keeps
it and each later one gets ``#k`` appended, taking the smallest k not used
elsewhere. A tensor at the top (``save(tensor, path)``) would be named ""; it
becomes ``#1``, as would a key named ``__metadata__``, which the format reserves.

The bytes are written by the safetensors library (``safetensors.numpy.save_file``)
through ``checkpoint.py``'s atomic write, which also records a crc32c per tensor and
one over the header (``tinygpt.crc32c``); ``load`` checks them. An interrupted save
leaves the previous file, never half a file.

``load`` returns ``Tensor``s on the active backend, in the dtypes they were saved
in. A safetensors file without ``tinygpt.object`` (written by someone else, or by
``save_model``) loads as a flat dict name -> Tensor. Non-finite values are stored
and loaded as they are, as torch does; only training checkpoints refuse them.

Safety. ``weights_only`` is accepted for the book's sake, but both values do the
same thing: only tensors and plain data can come out, because nothing is ever
unpickled. PyTorch's own files (a ``torch.save`` .pt/.pth file is a zip of
pickles) and raw pickles are recognised by their first bytes and refused, with a
recipe to convert them. Their content is never interpreted: loading a pickle can
run arbitrary code.
"""

import json
import math
import os
from collections import Counter

import numpy

from ..backend import ON_GPU, check_device, xp
from ..errors import CheckpointError
from ..tensor import Tensor
from .checkpoint import (
    _CODES,
    _host_array,
    _metadata_json,
    _open_for_reading,
    _read_container,
    _read_tensors,
    _target_path,
    _write_safetensors,
)

__all__ = ["load", "save"]

OBJECT_KEY = "tinygpt.object"
OBJECT_VERSION_KEY = "tinygpt.object_version"
OBJECT_VERSION = 1
_RESERVED_NAMES = ("", "__metadata__")  # "" reads badly; the format owns "__metadata__"
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_WHAT_FITS = ("save() stores dicts (str or int keys), lists, tuples, tensors, numbers, "
              "bools, strings and None")
_CONVERT = (
    "Convert it once, in PyTorch: `import torch; from safetensors.torch import save_file; "
    "save_file(torch.load(path, weights_only=True), 'model.safetensors')` for a state dict "
    "(for the book's {'model_state_dict': ..., 'optimizer_state_dict': ...} checkpoint, "
    "pass torch.load(path, weights_only=True)['model_state_dict']), then load that file "
    "with tinygpt.load"
)


# ----------------------------------------------------------------------------------
# Saving.


def save(obj, f):
    """Write ``obj`` (dicts, lists, tuples, tensors, numbers, strings, None) to the path ``f``.

    The file is safetensors, whatever the name ends with; see the module docstring.
    Raises TypeError, before anything is written, if ``obj`` holds something it cannot
    store. A model or an optimizer itself is refused: save ``model.state_dict()``."""
    path = _path_argument(f, "save")
    leaves = []  # (natural name, array, its {"tensor": ...} node), in the order met
    try:
        tree = _encode(obj, [], leaves, set())
    except RecursionError:
        raise TypeError("save(): the object is nested too deeply to store") from None
    tensors = {}
    for name, (_, array, node) in zip(_tensor_names([n for n, _, _ in leaves]), leaves):
        node["tensor"] = name
        # to the host only now: a refused object costs no GPU -> host copy
        tensors[name] = _host_array(array)
    metadata = {
        OBJECT_KEY: json.dumps(tree, separators=(",", ":"), allow_nan=False),
        OBJECT_VERSION_KEY: str(OBJECT_VERSION),
    }
    _write_safetensors(path, tensors, metadata)


def _encode(value, where, leaves, open_containers):
    """The JSON node of ``value``. Tensor leaves go to ``leaves``; their nodes are named
    later, since a name depends on all the others."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _plain(value)
    if isinstance(value, numpy.generic):
        if isinstance(value, (numpy.bool_, numpy.integer, numpy.floating)):
            return _encode(value.item(), where, leaves, open_containers)
        raise TypeError(f"save(): cannot store {_at(where)}: a NumPy {value.dtype} scalar; "
                        f"{_WHAT_FITS}")
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        value = float(value)
        if math.isfinite(value):
            return value
        return {"float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    array = _array_of(value)
    if array is not None:
        if (array.dtype.kind, array.dtype.itemsize) not in _CODES:
            raise TypeError(
                f"save(): cannot store {_at(where)}: an array of dtype {array.dtype}, which "
                "safetensors has no code for; convert it (e.g. .astype(numpy.float64))"
            )
        node = {"tensor": None}
        leaves.append((".".join(where), array, node))
        return node
    if isinstance(value, (dict, list, tuple)):
        if id(value) in open_containers:
            raise TypeError(f"save(): {_at(where)} contains itself; cannot store a cycle")
        open_containers.add(id(value))
        if isinstance(value, dict):
            pairs = []
            for key, item in value.items():
                key = _key(key, where)
                pairs.append([key, _encode(item, [*where, str(key)], leaves, open_containers)])
            node = {"dict": pairs}
        else:
            items = [_encode(item, [*where, str(i)], leaves, open_containers)
                     for i, item in enumerate(value)]
            node = {"tuple" if isinstance(value, tuple) else "list": items}
        open_containers.discard(id(value))
        return node
    raise TypeError(_unstorable(value, where))


def _plain(value):
    """A str subclass (numpy.str_, an enum) as the plain str JSON will store."""
    return str.__str__(value)


def _array_of(value):
    """The array behind a tensor leaf (Tensor, NumPy or CuPy array), else None."""
    if isinstance(value, Tensor):
        return value.array
    if isinstance(value, numpy.ndarray):
        return value
    if ON_GPU and isinstance(value, xp.ndarray):
        return value
    return None


def _key(key, where):
    if isinstance(key, bool) or not isinstance(key, (str, int, numpy.integer)):
        raise TypeError(
            f"save(): cannot store the key {key!r} ({type(key).__name__}) in {_at(where)}: "
            "dict keys must be str or int"
        )
    return _plain(key) if isinstance(key, str) else int(key)


def _at(where):
    return "obj" + "".join(f"[{part!r}]" for part in where) if where else "the object"


def _unstorable(value, where):
    kind = type(value).__name__
    if callable(getattr(value, "state_dict", None)):
        # a Module (it has parameters()) or an optimizer (it has step()): tinygpt stores
        # data, never objects (that needs pickle)
        noun = ("model" if callable(getattr(value, "parameters", None)) else
                "optimizer" if callable(getattr(value, "step", None)) else "obj")
        return (
            f"save(): cannot store {_at(where)}, a {kind} object: tinygpt saves tensors and "
            f"plain data, not objects. Save its state dict instead: save({noun}.state_dict(), "
            f"path), and later {noun}.load_state_dict(load(path)) into a freshly built {kind}"
        )
    return f"save(): cannot store {_at(where)}: a {kind} ({value!r:.60}); {_WHAT_FITS}"


def _tensor_names(natural):
    """A unique safetensors name per leaf: its natural name where free, else name#k."""
    claimed = {}
    for i, name in enumerate(natural):
        if name not in _RESERVED_NAMES:
            claimed.setdefault(name, i)
    used = set(claimed)
    names = []
    for i, name in enumerate(natural):
        if claimed.get(name) != i:
            k = 1
            while f"{name}#{k}" in used:
                k += 1
            name = f"{name}#{k}"
            used.add(name)
        names.append(name)
    return names


# ----------------------------------------------------------------------------------
# Loading.


def load(f, map_location=None, weights_only=True):
    """Read what ``save`` wrote (or any safetensors file) from the path ``f``.

    Tensors come back as tinygpt ``Tensor``s on the active backend, in their saved
    dtype; everything else as saved (int keys as ints, tuples as tuples).
    ``map_location``: None or a device tinygpt computes on ("cpu" on NumPy, "cuda" /
    "cuda:0" on CuPy, or an object whose str() is one of those); anything else raises
    BackendError. ``weights_only``: True or False, the same either way: nothing is
    ever unpickled. A PyTorch or pickle file raises CheckpointError saying how to
    convert it."""
    if isinstance(map_location, dict) or callable(map_location):
        raise TypeError(
            "load(): map_location must be a device such as 'cpu' or 'cuda' (tinygpt puts "
            "tensors on the device it computes on); dicts and functions are not supported"
        )
    check_device(map_location)
    if weights_only not in (None, True, False):
        raise TypeError(f"load(): weights_only must be True or False, got {weights_only!r}")
    path, file = _open_for_reading(_path_argument(f, "load"))
    with file:
        _refuse_pickles(path, file)
        container = _read_container(path, file)
        if OBJECT_KEY not in container.metadata:  # plain safetensors: name -> Tensor, in order
            names = sorted(container.entries, key=lambda n: container.entries[n][2:])
            arrays = _read_tensors(container, file, names)
            return {name: Tensor(arrays[name]) for name in names}
        tree = _object_tree(container)
        names = _check_tree(container, tree)
        arrays = _read_tensors(container, file, names)
    try:
        return _decode(tree, {name: Tensor(arrays[name]) for name in names})
    except RecursionError:
        raise CheckpointError(path, "its object is nested too deeply to load") from None


def _path_argument(f, verb):
    if isinstance(f, (str, os.PathLike)):
        return _target_path(f)
    if hasattr(f, "read") or hasattr(f, "write"):
        raise TypeError(
            f"{verb}(): pass a file path (str or os.PathLike), not a file object: tinygpt "
            "writes its files atomically by path, e.g. save(model.state_dict(), 'model.pth')"
        )
    raise TypeError(f"{verb}(): f must be a file path (str or os.PathLike), got "
                    f"{type(f).__name__}")


def _refuse_pickles(path, file):
    """Refuse PyTorch zip checkpoints and raw pickles from their first bytes.

    Only bytes are compared, so nothing in them is ever interpreted. A real safetensors
    file can start with the same bytes (they are its header length), so a file whose
    header plausibly opens with "{" is left to the safetensors reader."""
    head = file.read(9)
    file.seek(0)
    looks_like_safetensors = len(head) == 9 and head[8:9] == b"{" and (
        int.from_bytes(head[:8], "little") <= os.fstat(file.fileno()).st_size - 8)
    if looks_like_safetensors:
        return
    if head.startswith(b"PK\x03\x04"):
        raise CheckpointError(
            path, "is a zip archive, most likely a PyTorch checkpoint written by torch.save "
            "(a .pt/.pth file is a zip of pickles). tinygpt never unpickles files, because "
            f"loading a pickle can run arbitrary code, so it does not read it. {_CONVERT}"
        )
    if head.startswith(b"\x80"):
        raise CheckpointError(
            path, "is a Python pickle (e.g. from pickle.dump or an old-style torch.save). "
            "tinygpt never unpickles files, because loading a pickle can run arbitrary code, "
            f"so it does not read it. {_CONVERT}"
        )


def _object_tree(container):
    """The parsed ``tinygpt.object`` metadata (which may be JSON null: the object None)."""
    try:
        version = int(container.metadata.get(OBJECT_VERSION_KEY, ""))
    except ValueError:
        raise CheckpointError(container.path, f"is corrupted: bad {OBJECT_VERSION_KEY!r}") from None
    if version > OBJECT_VERSION:
        raise CheckpointError(
            container.path, f"was written by a newer tinygpt ({OBJECT_VERSION_KEY} {version}; "
            f"this one reads up to {OBJECT_VERSION}): upgrade tinygpt"
        )
    return _metadata_json(container, OBJECT_KEY)


def _check_tree(container, tree):
    """Check every node of ``tree`` and that its tensors are exactly the file's; returns
    their names. All of it runs before any tensor data is read."""
    path = container.path
    names, stack = [], [(tree, "the object")]
    while stack:
        node, where = stack.pop()
        if node is None or isinstance(node, (bool, int, float, str)):
            continue
        if not (isinstance(node, dict) and len(node) == 1):
            raise CheckpointError(path, f"is corrupted: {where} in {OBJECT_KEY!r} is malformed")
        (kind, body), = node.items()
        if kind == "tensor":
            if not isinstance(body, str) or body not in container.entries:
                raise CheckpointError(
                    path, f"its metadata does not match its tensors: {where} is tensor "
                    f"{body!r}, which the file does not hold"
                )
            names.append(body)
        elif kind == "float":
            if body not in _NON_FINITE:
                raise CheckpointError(path, f"is corrupted: {where} is the float {body!r}")
        elif kind in ("list", "tuple") and isinstance(body, list):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(body))
        elif kind == "dict" and isinstance(body, list):
            keys = set()
            for pair in body:
                key = pair[0] if isinstance(pair, list) and len(pair) == 2 else None
                if isinstance(key, bool) or not isinstance(key, (str, int)) or key in keys:
                    raise CheckpointError(
                        path, f"is corrupted: {where} in {OBJECT_KEY!r} has a bad or repeated key"
                    )
                keys.add(key)
                stack.append((pair[1], f"{where}[{key!r}]"))
        else:
            raise CheckpointError(path, f"is corrupted: {where} in {OBJECT_KEY!r} is malformed")
    repeated = [name for name, count in Counter(names).items() if count > 1]
    unused = set(container.entries) - set(names)
    if repeated or unused:
        problem = (f"tensor {sorted(repeated)[0]!r} is used twice" if repeated else
                   f"tensor {sorted(unused)[0]!r} belongs to no part of the object")
        raise CheckpointError(path, f"its metadata does not match its tensors: {problem}")
    return names


def _decode(node, tensors):
    """The Python value of a node ``_check_tree`` accepted."""
    if not isinstance(node, dict):
        return node
    (kind, body), = node.items()
    if kind == "tensor":
        return tensors[body]
    if kind == "float":
        return _NON_FINITE[body]
    if kind == "dict":
        return {key: _decode(item, tensors) for key, item in body}
    items = [_decode(item, tensors) for item in body]
    return tuple(items) if kind == "tuple" else items
