"""AdamW and SGD with PyTorch's semantics, updating parameters in place.

``Optimizer`` holds what they share, as torch's base class does: the param groups, the
per-parameter state, ``zero_grad`` and ``state_dict`` / ``load_state_dict``. AdamW: for
each parameter p with gradient g, at step t (counted per parameter):
    p <- p * (1 - lr * weight_decay)                  (decoupled weight decay)
    m <- beta1 m + (1 - beta1) g
    v <- beta2 v + (1 - beta2) g^2
    p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

Like torch's, the settings live in ``optimizer.param_groups``, a list of dicts
``{"params": [...], "lr": ..., "betas": ..., "eps": ..., "weight_decay": ...}``, read
at every ``step()``: appendix D's ``for g in optimizer.param_groups: g["lr"] = lr``
changes the next step, and ``AdamW([{"params": decay}, {"params": no_decay,
"weight_decay": 0.0}], lr=...)`` gives each group its own settings.

On the CPU the update walks each parameter in slices of ``CHUNK`` elements, so the
handful of elementwise passes run on data that sits in the CPU cache instead of
streaming 163M floats from memory a dozen times. On a GPU each slice would be a dozen
kernel launches, so there a parameter is one CUDA kernel (``cuda/kernels.adamw_update``,
the same bits as the lines below), or with the kernels off, whole-tensor passes.

SGD (appendix A): g <- g + weight_decay p; with momentum, b <- momentum b + (1 - dampening) g
(b = g at the first step) and g <- b (nesterov: g + momentum b); then p <- p - lr g.
"""

import math

import numpy

from .. import cuda
from ..backend import ON_GPU, to_numpy, xp
from ..checks import real_problem, rectangular
from ..grad_mode import enable_grad
from ..tensor import Tensor

CHUNK = 1 << 15


def _first_group_setting(name):
    """Getter and setter of ``optimizer.<name>``: the first param group's value. Setting
    it needs a single group (with several, set ``param_groups[i][name]``)."""

    def get(optimizer):
        return optimizer.param_groups[0][name]

    def set_(optimizer, value):
        if len(optimizer.param_groups) > 1:
            raise ValueError(
                f"this optimizer has {len(optimizer.param_groups)} param groups; set each "
                f"one's value: for g in optimizer.param_groups: g[{name!r}] = ..."
            )
        group = dict(optimizer.param_groups[0], **{name: value})
        problems = []
        hyper = optimizer.checked_settings(group, group, problems)
        if problems:
            raise ValueError("; ".join(problems))
        optimizer.param_groups[0][name] = dict(zip(optimizer.HYPERPARAMETERS, hyper))[name]

    return get, set_


class Optimizer:
    """What torch's optimizers share: ``param_groups`` (dicts of settings, read at every
    ``step()``), ``state`` (per parameter, indexed across the groups in order),
    ``zero_grad`` and ``state_dict`` / ``load_state_dict``. A subclass names its settings
    (``HYPERPARAMETERS``, checked by ``checked_settings``) and the arrays it keeps per
    parameter (``STATE_ARRAYS``), and implements ``step``."""

    HYPERPARAMETERS = ()
    STATE_ARRAYS = ()
    STEP_COUNTED = True  # state[i]["step"] is kept (AdamW) or not (SGD)

    def __init__(self, params, defaults):
        self.defaults = defaults
        if isinstance(params, (Tensor, dict, str)) or not hasattr(params, "__iter__"):
            raise TypeError(
                "params must be an iterable of Tensors or of param-group dicts, e.g. "
                f"model.parameters() or [p]; got {type(params).__name__}"
            )
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.param_groups = []
        for group in groups:
            self.add_param_group(group)
        self.state = {}  # index -> {"step": int (if counted), <STATE_ARRAYS>: array}

    def add_param_group(self, param_group):
        """Add a group ``{"params": [...], <settings>}``; missing settings take the
        optimizer's defaults (the constructor's arguments)."""
        if not isinstance(param_group, dict) or "params" not in param_group:
            raise TypeError(
                "a param group is a dict with a 'params' list, e.g. {'params': "
                f"model.parameters(), 'weight_decay': 0.0}}; got {param_group!r:.80}"
            )
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, (dict, str)) or not (
                isinstance(params, Tensor) or hasattr(params, "__iter__")):
            raise TypeError(f"a param group's 'params' must be Tensors, got "
                            f"{type(params).__name__}")
        params = [params] if isinstance(params, Tensor) else list(params)
        if not params:
            raise ValueError(f"{type(self).__name__} got a param group with an empty "
                             "parameter list")
        for p in params:
            if not isinstance(p, (Tensor, numpy.ndarray, xp.ndarray)):
                raise TypeError(f"{type(self).__name__} can only optimize Tensors, but one "
                                f"of the params "
                                f"is {type(p).__name__}")
            if isinstance(p, Tensor) and p.creator is not None:
                raise ValueError(f"{type(self).__name__} can't optimize a non-leaf Tensor "
                                 "(the result of an operation); pass the parameters "
                                 "themselves, e.g. model.parameters()")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        problems = []
        hyper = self.checked_settings(group, group, problems)
        if problems:
            raise ValueError("; ".join(problems))
        known = {id(p) for p in self.params}
        if len({id(p) for p in params}) != len(params) or any(id(p) in known for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        group.update(zip(self.HYPERPARAMETERS, hyper))
        group["params"] = params
        self.param_groups.append(group)

    @property
    def params(self):
        """Every parameter, group after group: index i here is ``state[i]``'s."""
        return [p for group in self.param_groups for p in group["params"]]


    def zero_grad(self, set_to_none=True):
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.array[...] = 0

    def _indexed_params(self):
        """(i, parameter, its group) for every parameter, i counted across the groups."""
        i = 0
        for group in self.param_groups:
            for p in group["params"]:
                yield i, p, group
                i += 1

    def state_dict(self):
        """Like torch's: ``{"state": {i: {"step", <STATE_ARRAYS>}}, "param_groups":
        [{<HYPERPARAMETERS>, "params": [i, ...]}, ...]}`` (AdamW: "exp_avg", "exp_avg_sq";
        SGD: "momentum_buffer"), the arrays as Tensors over the optimizer's own (no copy,
        as in torch)."""
        groups, first = [], 0
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            if "betas" in packed:
                packed["betas"] = tuple(group["betas"])
            packed["params"] = list(range(first, first + len(group["params"])))
            first += len(group["params"])
            groups.append(packed)
        return {
            "state": {
                i: {k: Tensor(v) if k in self.STATE_ARRAYS else v for k, v in s.items()}
                for i, s in self.state.items()
            },
            "param_groups": groups,
        }

    def load_state_dict(self, state_dict):
        """Restore moments, steps and each group's settings from ``state_dict()``'s shape
        (moments as Tensors or arrays, e.g. from ``tinygpt.load``). Everything is checked
        before anything changes: on a problem this raises ValueError listing them all,
        and the optimizer keeps its state."""
        try:
            groups = list(state_dict["param_groups"])
            states = dict(state_dict["state"])
        except (KeyError, TypeError):
            raise ValueError(
                f"not an {type(self).__name__} state dict: expected keys 'state' and "
                "'param_groups'"
            ) from None
        problems = []
        if len(groups) != len(self.param_groups):
            problems.append(
                f"expected {len(self.param_groups)} param group(s), found {len(groups)}"
            )
        # saved parameter id -> index into self.params, group by group, in order
        index_of, settings, first = {}, [], 0
        for g, (saved, ours) in enumerate(zip(groups, self.param_groups)):
            saved_ids = saved.get("params", []) if isinstance(saved, dict) else []
            if not isinstance(saved_ids, (list, tuple)):
                problems.append(f"param group {g}: 'params' must be a list of parameter "
                                f"ids, got {type(saved_ids).__name__}")
                saved_ids = []
            if len(saved_ids) != len(ours["params"]):
                problems.append(
                    f"param group {g}: state is for {len(saved_ids)} parameters, this "
                    f"optimizer's group has {len(ours['params'])}"
                )
            for k, saved_id in enumerate(saved_ids):
                if _as_int(saved_id) is None:
                    problems.append(f"param group {g}: parameter id {saved_id!r:.40} is not "
                                    "an integer")
                elif _as_int(saved_id) in index_of:  # would load one state into two params
                    problems.append(f"param group {g}: parameter id {saved_id!r} appears "
                                    "more than once")
                index_of[_as_int(saved_id)] = first + k
            first += len(ours["params"])
            settings.append(self.checked_settings(
                saved if isinstance(saved, dict) else {}, ours, problems))

        params = self.params
        new_state = {}
        for key, s in states.items():
            i = index_of.get(_as_int(key))
            if i is None or i >= len(params):
                problems.append(f"state for parameter {key}, which does not exist")
                continue
            if i in new_state:
                problems.append(f"state for parameter {key} is given twice")
                continue
            loaded = _checked_parameter_state(key, s, params[i], problems, self.STATE_ARRAYS,
                                              self.STEP_COUNTED)
            if loaded is not None:
                new_state[i] = loaded
        if problems:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict failed; the optimizer keeps its "
                "state. Problems:\n  "
                + "\n  ".join(problems)
            )
        self.state = new_state
        for group, hyper in zip(self.param_groups, settings, strict=True):
            group.update(zip(self.HYPERPARAMETERS, hyper))




class AdamW(Optimizer):
    """``torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)``.

    ``params``: the parameters (e.g. ``model.parameters()``), or a list of dicts, one
    per param group, each with its ``"params"`` and any settings of its own (the others
    come from the arguments). ``optimizer.lr`` (and ``betas``, ``eps``,
    ``weight_decay``) read the first group's value; setting one needs a single group.
    ``state[i]`` holds the step count and moments of parameter ``i``, counted across
    the groups in order.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                 amsgrad=False, *, maximize=False):
        if amsgrad:
            raise NotImplementedError(
                "AdamW(amsgrad=True) is not supported by tinygpt; use amsgrad=False (the "
                "default, as in the book)"
            )
        if maximize:
            raise NotImplementedError(
                "AdamW(maximize=True) is not supported by tinygpt; minimise the negated "
                "objective instead"
            )
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay})

    HYPERPARAMETERS = ("lr", "betas", "eps", "weight_decay")
    STATE_ARRAYS = ("exp_avg", "exp_avg_sq")  # state[i] also holds "step"

    @staticmethod
    def checked_settings(group, current, problems):
        return _checked_hyperparameters(group, current, problems)

    # The first group's settings as attributes (tinygpt's spelling, used by code that
    # builds one group, e.g. AdamW(model.parameters(), lr=...)).
    lr = property(*_first_group_setting("lr"))
    betas = property(*_first_group_setting("betas"))
    eps = property(*_first_group_setting("eps"))
    weight_decay = property(*_first_group_setting("weight_decay"))

    def step(self, closure=None):
        """One AdamW update of every parameter that has a gradient, each with its group's
        settings as they are now. ``closure`` (torch's): re-evaluates and returns the loss."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        scratch = None
        for i, p, group in self._indexed_params():
            if p.grad is None:
                continue
            beta1, beta2 = (float(b) for b in group["betas"])
            lr, eps, wd = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
            state = self.state.get(i)
            if state is None:
                state = self.state[i] = {
                    "step": 0,
                    "exp_avg": xp.zeros_like(p.array),
                    "exp_avg_sq": xp.zeros_like(p.array),
                }
            state["step"] += 1
            t = state["step"]
            step_size = lr / (1.0 - beta1**t)
            bias2_sqrt = math.sqrt(1.0 - beta2**t)
            decay = 1.0 - lr * wd

            grad = p.grad.array
            p._counter.bump("AdamW.step")  # in place, as torch's step under no_grad
            if cuda.available(p.array, grad) and p.array.flags.c_contiguous:
                cuda.kernels.adamw_update(p.array, grad, state["exp_avg"], state["exp_avg_sq"],
                                          decay, beta1, beta2, eps, step_size, bias2_sqrt)
                continue
            flat_p = p.array.reshape(-1)
            flat_g = grad.reshape(-1)
            flat_m = state["exp_avg"].reshape(-1)
            flat_v = state["exp_avg_sq"].reshape(-1)
            chunk = flat_p.size if ON_GPU else CHUNK
            if scratch is None or scratch.dtype != flat_p.dtype or scratch.size < chunk:
                scratch = xp.empty(chunk, dtype=flat_p.dtype)
            for start in range(0, flat_p.size, chunk):
                end = min(start + chunk, flat_p.size)
                pp, g = flat_p[start:end], flat_g[start:end]
                m, v = flat_m[start:end], flat_v[start:end]
                tmp = scratch[: end - start]
                pp *= decay
                # m <- m + (1 - beta1) (g - m)   (torch's lerp)
                xp.subtract(g, m, out=tmp)
                tmp *= 1.0 - beta1
                m += tmp
                # v <- beta2 v + (1 - beta2) g^2
                v *= beta2
                xp.multiply(g, g, out=tmp)
                tmp *= 1.0 - beta2
                v += tmp
                # p <- p - step_size * m / (sqrt(v) / sqrt(bias2) + eps)
                xp.sqrt(v, out=tmp)
                tmp /= bias2_sqrt
                tmp += eps
                xp.divide(m, tmp, out=tmp)
                tmp *= step_size
                pp -= tmp
        return loss

    # --- checkpoints ------------------------------------------------------------------
    def hyperparameters(self):
        """The settings of the (single) param group, as plain numbers: what
        ``tinygpt.io.checkpoint`` stores. With several groups use ``state_dict()``."""
        if len(self.param_groups) > 1:
            raise ValueError(
                f"this optimizer has {len(self.param_groups)} param groups, and "
                "hyperparameters() describes one; save the optimizer with tinygpt.save("
                "{'optimizer_state_dict': optimizer.state_dict()}, path) instead"
            )
        group = self.param_groups[0]
        return {
            "lr": float(group["lr"]),
            "betas": [float(b) for b in group["betas"]],
            "eps": float(group["eps"]),
            "weight_decay": float(group["weight_decay"]),
        }

class SGD(Optimizer):
    """``torch.optim.SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
    nesterov=False)``, with param groups and a state dict like AdamW's; ``state[i]``
    holds the ``momentum_buffer`` of parameter ``i`` once a step with momentum ran."""

    HYPERPARAMETERS = ("lr", "momentum", "dampening", "weight_decay", "nesterov")
    STATE_ARRAYS = ("momentum_buffer",)
    STEP_COUNTED = False

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, *, maximize=False, foreach=None, differentiable=False,
                 fused=None):
        if maximize or differentiable or fused:
            raise NotImplementedError(
                "SGD(maximize=/differentiable=/fused=) is not supported by tinygpt; leave "
                "them at their defaults (minimise the negated objective to maximise)"
            )
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening,
                                  "weight_decay": weight_decay, "nesterov": nesterov})

    @staticmethod
    def checked_settings(group, current, problems):
        """(lr, momentum, dampening, weight_decay, nesterov) as numbers and a bool; the
        problems added to ``problems`` (then None) as torch checks them."""
        before = len(problems)
        values = {name: _number(group.get(name, current[name])) for name in SGD.HYPERPARAMETERS}
        for name, low in (("lr", 0), ("momentum", 0), ("dampening", None), ("weight_decay", 0)):
            problem = real_problem(name, values[name], low)
            if problem is not None:
                problems.append(problem)
        if not isinstance(values["nesterov"], (bool, numpy.bool_)):
            problems.append(f"nesterov must be True or False, got {values['nesterov']!r:.40}")
        elif len(problems) == before and values["nesterov"] and (
                values["momentum"] <= 0 or values["dampening"] != 0):
            problems.append("Nesterov momentum requires a momentum and zero dampening")
        if len(problems) > before:
            return None
        return (float(values["lr"]), float(values["momentum"]), float(values["dampening"]),
                float(values["weight_decay"]), bool(values["nesterov"]))

    def step(self, closure=None):
        """p <- p - lr * d,  d = g + weight_decay p, through the momentum buffer when
        momentum > 0 (the buffer starts as the first step's d)."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for i, p, group in self._indexed_params():
            if p.grad is None:
                continue
            lr, momentum = float(group["lr"]), float(group["momentum"])
            d = p.grad.array
            if group["weight_decay"] != 0:
                d = d + float(group["weight_decay"]) * p.array
            if momentum != 0:
                state = self.state.setdefault(i, {})
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = d.copy()
                else:
                    buf *= momentum
                    buf += (1.0 - float(group["dampening"])) * d
                d = d + momentum * buf if group["nesterov"] else buf
            p.array -= lr * d
            p._counter.bump("SGD.step")
        return loss


def _as_int(key):
    """A state dict's parameter id (an int, or its string after some round trips)."""
    try:
        return int(key)
    except (TypeError, ValueError):
        return None


def _checked_parameter_state(key, s, param, problems, names, step_counted):
    """{"step" (if ``step_counted``), *names} for ``param``, the arrays copied onto the
    device in its dtype; None (and entries in ``problems``) when something is missing or
    wrong."""
    before = len(problems)
    moments = {}
    for name in names:
        value = s.get(name) if isinstance(s, dict) else None
        value = value.array if isinstance(value, Tensor) else value
        if value is not None and not isinstance(value, (numpy.ndarray, xp.ndarray)):
            try:
                value = rectangular(value, f"{name} of parameter {key}",
                                    "it needs the parameter's shape")
            except ValueError as exc:
                problems.append(str(exc))
                continue
        if value is None:
            problems.append(f"parameter {key}: missing {name!r}")
        elif tuple(value.shape) != tuple(param.shape):
            problems.append(
                f"parameter {key}: {name} has shape {tuple(value.shape)}, "
                f"parameter has {tuple(param.shape)}"
            )
        elif value.dtype.kind not in "fiu":
            problems.append(f"parameter {key}: {name} must hold real numbers, got dtype "
                            f"{value.dtype}")
        else:
            with numpy.errstate(over="ignore"):  # overflow is reported just below
                moments[name] = xp.array(value, dtype=param.dtype)  # a copy, on the device
            if not bool(xp.isfinite(moments[name]).all()):
                problems.append(f"parameter {key}: {name} contains NaN or infinite values "
                                f"(in the parameter's dtype {numpy.dtype(param.dtype)})")
            elif name == "exp_avg_sq" and bool((moments[name] < 0).any()):
                problems.append(f"parameter {key}: exp_avg_sq (a running mean of squared "
                                "gradients) has negative values; it must be >= 0")
    if not step_counted:
        return None if len(problems) > before else moments
    step = s.get("step") if isinstance(s, dict) else None
    step = step.array if isinstance(step, Tensor) else step
    step_value = _whole_number(step)
    if step is None:
        problems.append(f"parameter {key}: missing 'step'")
    elif step_value is None:
        problems.append(f"parameter {key}: step must be a whole number >= 0, got {step!r:.60}")
    if len(problems) > before:
        return None
    return {"step": step_value, **moments}


def _whole_number(value):
    """A saved step (an int, a whole float as torch stores it, or a one-element array or
    Tensor of either) as an int >= 0; None for anything else (bool, NaN, inf, -1, 1.5)."""
    try:
        value = to_numpy(value)
        if value.size != 1 or value.dtype.kind not in "iuf":
            return None
        number = value.reshape(()).item()
    except (TypeError, ValueError, OverflowError):
        return None
    if not (math.isfinite(number) and number >= 0 and number == int(number)):
        return None
    return int(number)


def _checked_hyperparameters(group, current, problems):
    """(lr, betas, eps, weight_decay) from ``group`` (``current`` where absent), as
    floats; each invalid value is added to ``problems`` (then None is returned).
    Like torch's checks, and also refusing NaN, infinities, bools and strings."""
    before = len(problems)
    values = {name: group.get(name, current[name]) for name in AdamW.HYPERPARAMETERS}
    for name in ("lr", "eps", "weight_decay"):
        problem = real_problem(name, _number(values[name]), 0)
        if problem is not None:
            problems.append(problem)
    betas = values["betas"]
    try:
        betas = tuple(_number(b) for b in betas)
    except TypeError:
        betas = None  # not a sequence
    if betas is None or len(betas) != 2:
        problems.append(f"betas must be two numbers in [0, 1), e.g. (0.9, 0.999), got "
                        f"{values['betas']!r:.60}")
    else:
        problems.extend(p for i, b in enumerate(betas)
                        if (p := real_problem(f"betas[{i}]", b, 0, 1)) is not None)
    if len(problems) > before:
        return None
    return (float(values["lr"]), tuple(float(b) for b in betas), float(values["eps"]),
            float(values["weight_decay"]))


def _number(value):
    """A 0-d array or one-element Tensor (torch allows a Tensor lr) as its Python number;
    anything else as it is, for ``real_problem`` to judge."""
    if isinstance(value, Tensor):
        value = value.array
    if getattr(value, "ndim", None) == 0 and getattr(value, "dtype", None) is not None:
        return value.item()
    return value
