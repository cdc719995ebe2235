"""How a tensor prints: ``tensor([1., 0.])``, character for character as torch prints it.

``tensor_repr(values, extras=...)`` turns a host NumPy array into torch's text;
``set_printoptions`` holds torch's settings (``precision``, ``threshold``, ``edgeitems``,
``linewidth``, ``sci_mode``). The rules, all torch's (``torch/_tensor_str.py``):

* one format for all the numbers of a tensor, chosen from its nonzero finite values
  (only the printed ones when it is summarised):
  - whole numbers print with a point and no digits after it: ``tensor([1., 0.])``;
  - otherwise ``precision`` digits after the point: ``tensor([0.5000, 2.0000])``;
  - scientific notation (``1.0000e-05``) when the largest is over 1000 times the
    smallest, over 1e8, or the smallest under 1e-4 (``sci_mode`` forces it on or off);
* every number is padded on the left to the widest of those values, so columns line
  up (``tensor([4.5100,   -inf])``, ``tensor([ True, False])``);
* over ``threshold`` elements, each dimension shows its first and last ``edgeitems``
  entries around ``...``;
* rows wrap to fit ``linewidth``, indented under the opening bracket;
* ``dtype=`` is shown only for dtypes other than float32, int64 and bool (an empty
  tensor shows every dtype but float32), ``size=`` for empty tensors of other than one
  dimension (and for every tensor while ``edgeitems`` is 0).
"""

import contextlib
import math

import numpy

_DEFAULTS = {"precision": 4, "threshold": 1000, "edgeitems": 3, "linewidth": 80}
_PROFILES = {
    "default": _DEFAULTS,
    "short": {"precision": 2, "threshold": 1000, "edgeitems": 2, "linewidth": 80},
    "full": {"precision": 4, "threshold": math.inf, "edgeitems": 3, "linewidth": 80},
}
PRINT_OPTIONS = dict(_DEFAULTS, sci_mode=None)

# what prints without a dtype= (torch: the default float dtype, int64, bool)
_DEFAULT_FLOAT = numpy.dtype(numpy.float32)
_UNNAMED_DTYPES = (_DEFAULT_FLOAT, numpy.dtype(numpy.int64), numpy.dtype(numpy.bool_))


def set_printoptions(precision=None, threshold=None, edgeitems=None, linewidth=None,
                     profile=None, sci_mode=None):
    """torch.set_printoptions: digits, summarising, line width, scientific notation.

    ``profile`` ("default", "short" or "full") sets the first four first; as in torch,
    every call sets ``sci_mode`` (leaving it out means None: chosen per tensor)."""
    if profile in _PROFILES:
        PRINT_OPTIONS.update(_PROFILES[profile])
    for name, value in (("precision", precision), ("threshold", threshold),
                        ("edgeitems", edgeitems), ("linewidth", linewidth)):
        if value is not None:
            PRINT_OPTIONS[name] = value
    PRINT_OPTIONS["sci_mode"] = sci_mode


def get_printoptions():
    """The current settings, as keyword arguments for ``set_printoptions``."""
    return dict(PRINT_OPTIONS)


@contextlib.contextmanager
def printoptions(**options):
    """``set_printoptions(**options)`` for the duration of a ``with`` block."""
    saved = get_printoptions()
    set_printoptions(**options)
    try:
        yield
    finally:
        set_printoptions(**saved)


class _NumberFormat:
    """The one format every number of a tensor is printed with, and its column width."""

    def __init__(self, values):  # values: the numbers that will be printed, any shape
        precision = PRINT_OPTIONS["precision"]
        self.is_float = values.dtype.kind == "f"
        self.text = str  # ints and bools: Python's text (``True``, ``-3``)
        self.width = 1
        if not self.is_float:
            self.width = max([len(str(v)) for v in values.ravel().tolist()], default=1)
            return
        nonzero = values[numpy.isfinite(values) & (values != 0)]
        if nonzero.size == 0:  # only zeros, nan or inf: torch's whole-number format
            self.text = _whole
            return
        magnitude = numpy.abs(nonzero).astype(numpy.float64)
        smallest, largest = float(magnitude.min()), float(magnitude.max())
        sci_mode = PRINT_OPTIONS["sci_mode"]
        if sci_mode is None:
            sci_mode = largest / smallest > 1000.0 or largest > 1.0e8 or smallest < 1.0e-4
        if sci_mode:
            self.text = f"{{:.{precision}e}}".format
        elif bool(numpy.all(nonzero == numpy.ceil(nonzero))):
            self.text = _whole
        else:
            self.text = f"{{:.{precision}f}}".format
        self.width = max(len(self.text(v)) for v in nonzero.tolist())

    def __call__(self, value):  # a Python number -> its text, padded to the column width
        return self.text(value).rjust(self.width)


def _whole(value):
    """A float that is a whole number: ``1.``, ``-0.``; nan and inf stay as they are."""
    text = f"{value:.0f}"
    return text if math.isinf(value) or math.isnan(value) else text + "."


def _shown_indices(n, summarize):
    """The indices along a dimension of size n that print: all, or both ends."""
    edge = PRINT_OPTIONS["edgeitems"]
    if summarize and n > 2 * edge:
        return list(range(edge)) + list(range(n - edge, n))
    return list(range(n))


def _shown_values(values, summarize):
    """The elements that print (their format decides every element's)."""
    if values.ndim == 0:
        return values
    return values[numpy.ix_(*[_shown_indices(n, summarize) for n in values.shape])]


def _body(values, indent, summarize, fmt):
    """The bracketed numbers of a (sub)tensor whose ``[`` sits at column ``indent``."""
    if values.ndim == 0:
        return fmt(values.item())
    edge = PRINT_OPTIONS["edgeitems"]
    n = values.shape[0]
    elided = summarize and n > 2 * edge
    if values.ndim == 1:
        if summarize and not edge:
            items = ["..."]
        elif elided:
            items = ([fmt(v) for v in values[:edge].tolist()] + [" ..."]
                     + [fmt(v) for v in values[n - edge:].tolist()])
        else:
            items = [fmt(v) for v in values.tolist()]
        # as many ", "-separated columns as fit the line width, at least one
        per_line = max(1, math.floor((PRINT_OPTIONS["linewidth"] - indent) / (fmt.width + 2)))
        lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
        return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"
    rows = [_body(values[i], indent + 1, summarize, fmt) for i in range(edge if elided else n)]
    if elided:
        rows += ["..."] + [_body(values[i], indent + 1, summarize, fmt)
                           for i in range(n - edge, n)]
    # sub-tensors one per line, a blank line between matrices of a 3-d tensor, and so on
    return "[" + ("," + "\n" * (values.ndim - 1) + " " * (indent + 1)).join(rows) + "]"


def _with_suffixes(text, suffixes, indent):
    """``text`` + ", suffix" for each suffix, on a new line where it would pass the width."""
    # torch's count for the last line (one more than its length, two if it is the first)
    line_length = len(text) - text.rfind("\n") + 1
    for suffix in suffixes:
        if line_length + len(suffix) + 2 > PRINT_OPTIONS["linewidth"]:
            text += ",\n" + " " * indent + suffix
            line_length = indent + len(suffix)
        else:
            text += ", " + suffix
            line_length += len(suffix) + 2
    return text + ")"


def tensor_repr(values, *, extras=(), device=None):
    """torch's ``repr`` of a tensor holding ``values`` (a NumPy array).

    ``extras``: the autograd suffixes, e.g. ``("requires_grad=True",)`` or
    ``("grad_fn=<MulBackward0>",)``; ``dtype=`` and ``size=`` are added here.
    ``device``: a device to name, e.g. ``"cuda:0"`` (torch names any but the default)."""
    values = numpy.asarray(values)
    prefix = "tensor("
    shape = tuple(int(n) for n in values.shape)
    suffixes = [f"device='{device}'"] if device is not None else []
    if values.size == 0:  # nothing to tell the dtype from, so only float32 goes unnamed
        body = "[]"
        if values.ndim != 1:
            suffixes.append(f"size={shape}")
        named = values.dtype != _DEFAULT_FLOAT
    else:
        summarize = values.size > PRINT_OPTIONS["threshold"]
        fmt = _NumberFormat(_shown_values(values, summarize))
        body = _body(values, len(prefix), summarize, fmt)
        if not PRINT_OPTIONS["edgeitems"]:
            suffixes.append(f"size={shape}")
        named = values.dtype not in _UNNAMED_DTYPES
    if named:
        suffixes.append(f"dtype=torch.{values.dtype.name}")
    return _with_suffixes(prefix + body, suffixes + list(extras), len(prefix))
