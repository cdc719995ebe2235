"""Adam, AdamW and SGD with PyTorch's semantics, updating parameters in place; the
learning-rate schedulers are in ``lr_scheduler.py``.

``Optimizer`` holds what they share, as torch's base class does: the param groups, the
per-parameter state, ``zero_grad`` and ``state_dict`` / ``load_state_dict``. Adam: for
each parameter p with gradient g, at step t (counted per parameter):
    g <- g + weight_decay p                           (Adam's L2 penalty), or
    p <- p * (1 - lr * weight_decay)                  (AdamW's decoupled weight decay)
    m <- beta1 m + (1 - beta1) g
    v <- beta2 v + (1 - beta2) g^2                    (amsgrad: v' = max(v', v), used below)
    p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

Like torch's, the settings live in ``optimizer.param_groups``, a list of dicts
``{"params": [...], "lr": ..., "betas": ..., "eps": ..., "weight_decay": ..., ...}``
(with torch's keys, switches such as ``amsgrad`` included), read at every ``step()``:
appendix D's ``for g in optimizer.param_groups: g["lr"] = lr`` changes the next step,
and ``AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=...)``
gives each group its own settings. ``AdamW(model.named_parameters())`` keeps the names,
in each group's ``"param_names"``, as torch 2.13 does.

``load_state_dict`` follows torch's: each group takes the saved group's settings (a
setting the saved group lacks is missing afterwards, so a state dict of another kind of
optimizer fails at ``step()`` with torch's KeyError; the switches newer than some state
dicts default as torch's do). Unlike torch's it checks everything first, raises
ValueError listing what is wrong, and then changes nothing.

``Adam.step`` writes the update's steps out; beside them, as in the model's layers, the
fast path (the default; ``tinygpt.use_fused(False)`` turns it off) runs the same steps
fused, in place and in cache-sized slices (``fused.adamw_update``), or on a GPU as one
CUDA kernel per parameter (``cuda/kernels.adamw_update``, the same bits).

SGD (appendix A): g <- g + weight_decay p; with momentum, b <- momentum b + (1 - dampening) g
(b = g at the first step) and g <- b (nesterov: g + momentum b); then p <- p - lr g.
(``maximize``: g <- -g first, in both.)
"""

import copy
import math

import numpy

from .. import cuda
from ..backend import to_numpy, xp
from ..checks import real_problem, rectangular
from ..fast_path import is_fused_enabled
from ..fused import adamw_update
from ..grad_mode import enable_grad
from ..tensor import Tensor


class _MissingStateKey(ValueError, KeyError):
    """A state dict refused for a key torch's ``load_state_dict`` looks up (an Adam
    state without "step"): a ValueError like tinygpt's other refusals, and the KeyError
    torch raises."""

    __str__ = ValueError.__str__  # KeyError's would quote the whole message


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
        problems = []
        settings = optimizer.checked_settings(
            dict(optimizer.param_groups[0], **{name: value}), problems)
        if problems:
            raise ValueError("; ".join(problems))
        optimizer.param_groups[0][name] = settings[name]

    return get, set_


class Optimizer:
    """What torch's optimizers share: ``param_groups`` (dicts of settings, read at every
    ``step()``), ``state`` (per parameter, indexed across the groups in order),
    ``zero_grad`` and ``state_dict`` / ``load_state_dict``. A subclass checks its settings
    (``checked_settings``), names the switches torch fills in on loading (``FLAGS``) and
    the arrays it keeps per parameter (``STATE_ARRAYS``), and implements ``step``."""

    FLAGS = {}  # switch -> the value torch's __setstate__ gives a loaded group without it
    FORCED = {}  # settings a loaded group always gets (AdamW's decoupled weight decay)
    STATE_ARRAYS = ()
    STEP_COUNTED = True  # state[i]["step"] is kept (Adam) or not (SGD)

    def __init__(self, params, defaults):
        self.defaults = defaults
        if isinstance(params, (Tensor, dict, str)) or not hasattr(params, "__iter__"):
            raise TypeError(
                "params must be an iterable of Tensors, of (name, Tensor) pairs or of "
                "param-group dicts, e.g. model.parameters(), model.named_parameters() or "
                f"[p]; got {type(params).__name__}"
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
        optimizer's defaults (the constructor's arguments). The params may be
        (name, Tensor) pairs, as ``named_parameters()`` gives: the names go to the
        group's ``"param_names"``."""
        if not isinstance(param_group, dict) or "params" not in param_group:
            raise TypeError(
                "a param group is a dict with a 'params' list, e.g. {'params': "
                f"model.parameters(), 'weight_decay': 0.0}}; got {param_group!r:.80}"
            )
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered "
                            "collections, but the ordering of tensors in sets will change "
                            "between runs. Please use a list instead.")
        if isinstance(params, (dict, str)) or not (
                isinstance(params, Tensor) or hasattr(params, "__iter__")):
            raise TypeError(f"a param group's 'params' must be Tensors, got "
                            f"{type(params).__name__}")
        params = [params] if isinstance(params, Tensor) else list(params)
        names = [p[0] for p in params if isinstance(p, tuple)]
        params = [p[1] if isinstance(p, tuple) else p for p in params]
        if names and len(names) != len(params):
            raise ValueError("all optimizer params should be with/without names. Some param "
                             "names are missing")
        if not params:
            raise ValueError(f"{type(self).__name__} got a param group with an empty "
                             "parameter list")
        for p in params:
            if not isinstance(p, (Tensor, numpy.ndarray, xp.ndarray)):
                raise TypeError(f"{type(self).__name__} can only optimize Tensors, but one "
                                f"of the params is {type(p).__name__}")
            if isinstance(p, Tensor) and p.creator is not None:
                raise ValueError(f"{type(self).__name__} can't optimize a non-leaf Tensor "
                                 "(the result of an operation); pass the parameters "
                                 "themselves, e.g. model.parameters()")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        problems = []
        settings = self.checked_settings(group, problems)
        if problems:
            raise ValueError("; ".join(problems))
        self._refuse_unsupported(group)
        known = {id(p) for p in self.params}
        if len({id(p) for p in params}) != len(params) or any(id(p) in known for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        named = bool(names) or "param_names" in group
        if self.param_groups and named != ("param_names" in self.param_groups[0]):
            raise ValueError("all optimizer param groups should be with/without names. cannot "
                             f"add param group {'with' if named else 'without'} names to the "
                             "optimizer")
        group.update(settings)
        group["params"] = params
        if names:
            group["param_names"] = names
        self.param_groups.append(group)

    def _refuse_unsupported(self, group):
        """NotImplementedError for the switches tinygpt cannot follow; torch's error for
        fused with foreach."""
        for switch in ("differentiable", "capturable"):
            if group.get(switch):
                raise NotImplementedError(
                    f"{type(self).__name__}({switch}=True) is not supported by tinygpt; "
                    f"leave {switch}=False (tinygpt's step is not part of the graph and "
                    "records no CUDA graphs)"
                )
        if group.get("fused") and group.get("foreach"):
            raise RuntimeError("`fused` and `foreach` cannot be `True` together.")

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

    def _indexed_groups(self):
        """(group, [(i, parameter), ...]) per group, i counted across the groups."""
        first = 0
        for group in self.param_groups:
            yield group, list(enumerate(group["params"], first))
            first += len(group["params"])

    def state_dict(self):
        """Like torch's: ``{"state": {i: {"step", <arrays>}}, "param_groups":
        [{<settings>, "params": [i, ...], "param_names" (if named)}, ...]}`` (Adam:
        "exp_avg", "exp_avg_sq", "max_exp_avg_sq" with amsgrad; SGD: "momentum_buffer"),
        the arrays as Tensors over the optimizer's own (no copy, as in torch)."""
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
                i: {k: Tensor(v) if k in self.STATE_ARRAYS and isinstance(
                    v, (numpy.ndarray, xp.ndarray)) else v for k, v in s.items()}
                for i, s in self.state.items()
            },
            "param_groups": groups,
        }

    def load_state_dict(self, state_dict):
        """Take the settings, steps and arrays of ``state_dict()``'s shape (arrays as
        Tensors or arrays, e.g. from ``tinygpt.load``), as torch does: each group becomes
        the saved group (its "params" ours). Everything is checked before anything
        changes: on a problem this raises ValueError listing them all (which is also
        torch's KeyError where torch raises one), and the optimizer keeps its state."""
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
        index_of, new_groups, group_of, first = {}, [], [], 0
        for g, (saved, ours) in enumerate(zip(groups, self.param_groups)):
            if not isinstance(saved, dict):
                problems.append(f"param group {g} must be a dict, got {type(saved).__name__}")
                saved = {}
            saved_ids = saved.get("params", [])
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
            new = {k: copy.deepcopy(v) for k, v in saved.items() if k != "params"}
            new.update(self.checked_settings(new, problems))
            new["params"] = ours["params"]
            if "param_names" in ours and "param_names" not in new:
                new["param_names"] = ours["param_names"]
            for key, value in self.FLAGS.items():  # what torch's __setstate__ fills in
                new.setdefault(key, value)
            new.update(self.FORCED)
            new_groups.append(new)
            group_of += [new] * len(ours["params"])

        params = self.params
        new_state, missing_key = {}, False
        for key, s in states.items():
            i = index_of.get(_as_int(key))
            if i is None or i >= len(params):
                problems.append(f"state for parameter {key}, which does not exist")
                continue
            if i in new_state:
                problems.append(f"state for parameter {key} is given twice")
                continue
            if self.STEP_COUNTED and isinstance(s, dict) and s and "step" not in s:
                missing_key = True  # torch's KeyError('step')
            loaded = self._checked_parameter_state(key, s, params[i], group_of[i], problems)
            if loaded is not None:
                new_state[i] = loaded
        if problems:
            error = _MissingStateKey if missing_key else ValueError
            raise error(
                f"{type(self).__name__}.load_state_dict failed; the optimizer keeps its "
                "state. Problems:\n  "
                + "\n  ".join(problems)
            )
        for group in new_groups:
            self._refuse_unsupported(group)
        self.state = new_state
        self.param_groups = new_groups

    def _state_arrays(self, group):
        """(the arrays a parameter's state must hold, those it may hold) under ``group``."""
        return (), self.STATE_ARRAYS

    def _checked_parameter_state(self, key, s, param, group, problems):
        """A saved parameter state for ``param``: its arrays copied onto the device in the
        parameter's dtype, "step" as an int, any other entry kept as it is; None (and
        entries in ``problems``) when something is missing or wrong."""
        if not isinstance(s, dict):
            problems.append(f"parameter {key}: its state must be a dict, got "
                            f"{type(s).__name__}")
            return None
        if not s:
            return {}
        before = len(problems)
        loaded = dict(s)
        required, optional = self._state_arrays(group)
        for name in required + optional:
            if name in optional and s.get(name) is None:
                continue
            array = _checked_array(key, name, s.get(name), param, problems)
            if array is not None:
                loaded[name] = array
        if self.STEP_COUNTED:
            step = s.get("step")
            step = step.array if isinstance(step, Tensor) else step
            loaded["step"] = _whole_number(step)
            if step is None:
                problems.append(f"parameter {key}: missing 'step' (its state holds "
                                f"{sorted(map(str, s))}: a state dict of another optimizer?)")
            elif loaded["step"] is None:
                problems.append(f"parameter {key}: step must be a whole number >= 0, got "
                                f"{step!r:.60}")
        return None if len(problems) > before else loaded


class Adam(Optimizer):
    """``torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
    amsgrad=False, *, foreach=None, maximize=False, capturable=False, differentiable=False,
    fused=None, decoupled_weight_decay=False)``.

    ``weight_decay`` adds ``weight_decay * p`` to the gradient (an L2 penalty), unless
    ``decoupled_weight_decay`` (then it is AdamW). ``amsgrad`` keeps the running maximum of
    the second moment (``state[i]["max_exp_avg_sq"]``) and divides by it; ``maximize``
    climbs the gradient. ``foreach`` and ``fused`` pick how torch runs the same update and
    change nothing here; ``differentiable`` and ``capturable`` raise NotImplementedError.

    ``params``: the parameters (e.g. ``model.parameters()`` or
    ``model.named_parameters()``), or a list of dicts, one per param group, each with its
    ``"params"`` and any settings of its own (the others come from the arguments).
    ``optimizer.lr`` (and ``betas``, ``eps``, ``weight_decay``) read the first group's
    value; setting one needs a single group. ``state[i]`` holds the step count and moments
    of parameter ``i``, counted across the groups in order.
    """

    FLAGS = {"amsgrad": False, "maximize": False, "foreach": None, "capturable": False,
             "differentiable": False, "decoupled_weight_decay": False, "fused": None}
    STATE_ARRAYS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")  # state[i] also holds "step"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False, fused=None, decoupled_weight_decay=False):
        super().__init__(params, {
            "lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
            "amsgrad": amsgrad, "maximize": maximize, "foreach": foreach,
            "capturable": capturable, "differentiable": differentiable, "fused": fused,
            "decoupled_weight_decay": decoupled_weight_decay,
        })

    @staticmethod
    def checked_settings(group, problems):
        return _checked_adam_settings(group, problems)

    # The first group's settings as attributes (tinygpt's spelling, used by code that
    # builds one group, e.g. AdamW(model.parameters(), lr=...)).
    lr = property(*_first_group_setting("lr"))
    betas = property(*_first_group_setting("betas"))
    eps = property(*_first_group_setting("eps"))
    weight_decay = property(*_first_group_setting("weight_decay"))

    def _state_arrays(self, group):
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group.get("amsgrad")
                                            else ()), ()

    def step(self, closure=None):
        """One update of every parameter that has a gradient, each with its group's
        settings as they are now. ``closure`` (torch's): re-evaluates and returns the loss."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        scratch = None
        for group, indexed in self._indexed_groups():
            beta1, beta2 = (float(b) for b in group["betas"])  # torch's KeyError if absent
            lr, eps, wd = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
            amsgrad, maximize = group["amsgrad"], group["maximize"]
            decoupled = group["decoupled_weight_decay"]
            for i, p in indexed:
                if p.grad is None:
                    continue
                state = self.state.get(i)
                if not state:
                    state = self.state[i] = {"step": 0, "exp_avg": xp.zeros_like(p.array),
                                             "exp_avg_sq": xp.zeros_like(p.array)}
                    if amsgrad:
                        state["max_exp_avg_sq"] = xp.zeros_like(p.array)
                state["step"] += 1
                t = state["step"]
                step_size = lr / (1.0 - beta1**t)
                bias2_sqrt = math.sqrt(1.0 - beta2**t)
                decay = 1.0 - lr * wd if decoupled else 1.0

                grad = p.grad.array
                if maximize:
                    grad = -grad
                if wd != 0 and not decoupled:
                    grad = grad + wd * p.array  # the L2 penalty's gradient, a new array
                p._counter.bump(f"{type(self).__name__}.step")  # in place, as torch's
                m, v = state["exp_avg"], state["exp_avg_sq"]
                vmax = state["max_exp_avg_sq"] if amsgrad else None
                if is_fused_enabled():  # the fast path: the steps below, fused in place
                    if vmax is None and cuda.available(p.array, grad) and \
                            p.array.flags.c_contiguous:
                        cuda.kernels.adamw_update(p.array, grad, m, v, decay, beta1, beta2,
                                                  eps, step_size, bias2_sqrt)
                    else:
                        scratch = adamw_update(p.array, grad, m, v, vmax, decay, beta1, beta2,
                                               eps, step_size, bias2_sqrt, scratch)
                    continue
                # The update's steps (Loshchilov & Hutter's AdamW, as torch computes it):
                p.array *= decay  # decoupled weight decay: p <- p (1 - lr wd)
                m += (1.0 - beta1) * (grad - m)  # m <- beta1 m + (1 - beta1) g
                v *= beta2  # v <- beta2 v + (1 - beta2) g^2
                v += (1.0 - beta2) * (grad * grad)
                if vmax is not None:  # amsgrad: the largest v so far
                    v = xp.maximum(vmax, v, out=vmax)
                # p <- p - lr m_hat / (sqrt(v_hat) + eps),  m_hat = m / (1 - beta1^t),
                # v_hat = v / (1 - beta2^t); step_size and bias2_sqrt fold the two in
                p.array -= step_size * m / (xp.sqrt(v) / bias2_sqrt + eps)
        return loss


class AdamW(Adam):
    """``torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
    weight_decay=0.01, amsgrad=False, *, maximize=False, foreach=None, capturable=False,
    differentiable=False, fused=None)``: Adam with ``decoupled_weight_decay=True`` (as
    torch's AdamW is, and stays when it loads an Adam state dict)."""

    FORCED = {"decoupled_weight_decay": True}

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, foreach=None, capturable=False,
                 differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, capturable=capturable,
                         differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)

    # --- checkpoints ------------------------------------------------------------------
    def hyperparameters(self):
        """The settings of the (single) param group, as plain numbers: what
        ``tinygpt.io.checkpoint`` stores. With several groups, or amsgrad / maximize
        (which it does not store), use ``state_dict()``."""
        if len(self.param_groups) > 1:
            raise ValueError(
                f"this optimizer has {len(self.param_groups)} param groups, and "
                "hyperparameters() describes one; save the optimizer with tinygpt.save("
                "{'optimizer_state_dict': optimizer.state_dict()}, path) instead"
            )
        group = self.param_groups[0]
        for switch in ("amsgrad", "maximize"):
            if group.get(switch):
                raise ValueError(
                    f"hyperparameters() describes AdamW without {switch}; save this "
                    "optimizer with tinygpt.save({'optimizer_state_dict': "
                    "optimizer.state_dict()}, path) instead"
                )
        return {
            "lr": float(group["lr"]),
            "betas": [float(b) for b in group["betas"]],
            "eps": float(group["eps"]),
            "weight_decay": float(group["weight_decay"]),
        }


class SGD(Optimizer):
    """``torch.optim.SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
    nesterov=False, *, maximize=False, foreach=None, differentiable=False, fused=None)``,
    with param groups and a state dict like Adam's; ``state[i]`` holds the
    ``momentum_buffer`` of parameter ``i`` once a step with momentum ran. ``foreach``
    and ``fused`` change nothing here; ``differentiable`` raises NotImplementedError."""

    FLAGS = {"nesterov": False, "maximize": False, "foreach": None, "differentiable": False,
             "fused": False}
    STATE_ARRAYS = ("momentum_buffer",)
    STEP_COUNTED = False

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, *, maximize=False, foreach=None, differentiable=False,
                 fused=None):
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening,
                                  "weight_decay": weight_decay, "nesterov": nesterov,
                                  "maximize": maximize, "foreach": foreach,
                                  "differentiable": differentiable, "fused": fused})

    @staticmethod
    def checked_settings(group, problems):
        """The settings present in ``group`` (lr, momentum, dampening, weight_decay as
        floats; nesterov and maximize as bools), checked as torch checks them; each
        problem is added to ``problems`` (and the setting left out)."""
        out = _checked_numbers(group, problems, {"lr": 0, "momentum": 0, "dampening": None,
                                                 "weight_decay": 0})
        out.update(_checked_switches(group, problems, ("nesterov", "maximize")))
        if out.get("nesterov") and (out.get("momentum", 1) <= 0 or out.get("dampening", 0)):
            problems.append("Nesterov momentum requires a momentum and zero dampening")
        return out

    def step(self, closure=None):
        """p <- p - lr * d,  d = g + weight_decay p, through the momentum buffer when
        momentum > 0 (the buffer starts as the first step's d)."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group, indexed in self._indexed_groups():
            momentum = float(group["momentum"])  # torch reads it first: its KeyError if absent
            wd, lr = float(group["weight_decay"]), float(group["lr"])
            dampening, nesterov = float(group["dampening"]), group["nesterov"]
            maximize = group["maximize"]
            for i, p in indexed:
                if p.grad is None:
                    continue
                d = -p.grad.array if maximize else p.grad.array
                if wd != 0:
                    d = d + wd * p.array
                if momentum != 0:
                    state = self.state.setdefault(i, {})
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = d.copy()
                    else:
                        buf *= momentum
                        buf += (1.0 - dampening) * d
                    d = d + momentum * buf if nesterov else buf
                p.array -= lr * d
                p._counter.bump("SGD.step")
        return loss


def _as_int(key):
    """A state dict's parameter id (an int, or its string after some round trips)."""
    try:
        return int(key)
    except (TypeError, ValueError):
        return None


def _checked_array(key, name, value, param, problems):
    """A saved state array for ``param`` (a Tensor, an array or nested lists) copied onto
    the device in the parameter's dtype; None (and an entry in ``problems``) when it is
    missing, mis-shaped, not real, not finite, or a negative squared-gradient mean."""
    value = value.array if isinstance(value, Tensor) else value
    if value is not None and not isinstance(value, (numpy.ndarray, xp.ndarray)):
        try:
            value = rectangular(value, f"{name} of parameter {key}",
                                "it needs the parameter's shape")
        except ValueError as exc:
            problems.append(str(exc))
            return None
    if value is None:
        problems.append(f"parameter {key}: missing {name!r}")
    elif tuple(value.shape) != tuple(param.shape):
        problems.append(f"parameter {key}: {name} has shape {tuple(value.shape)}, parameter "
                        f"has {tuple(param.shape)}")
    elif value.dtype.kind not in "fiu":
        problems.append(f"parameter {key}: {name} must hold real numbers, got dtype "
                        f"{value.dtype}")
    else:
        with numpy.errstate(over="ignore"):  # overflow is reported just below
            array = xp.array(value, dtype=param.dtype)  # a copy, on the device
        if not bool(xp.isfinite(array).all()):
            problems.append(f"parameter {key}: {name} contains NaN or infinite values (in the "
                            f"parameter's dtype {numpy.dtype(param.dtype)})")
        elif name.endswith("exp_avg_sq") and bool((array < 0).any()):
            problems.append(f"parameter {key}: {name} (a running mean of squared gradients) "
                            "has negative values; it must be >= 0")
        else:
            return array
    return None


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


def _checked_adam_settings(group, problems):
    """The Adam settings present in ``group``: lr, eps, weight_decay as floats >= 0, betas
    as two floats in [0, 1), the switches as bools (foreach, fused: None too); each
    problem (torch's checks, and NaN, infinities, bools and strings) added to
    ``problems``, the setting then left out."""
    out = _checked_numbers(group, problems, {"lr": 0, "eps": 0, "weight_decay": 0})
    if "betas" in group:
        given = group["betas"]
        try:
            betas = tuple(_number(b) for b in given)
        except TypeError:
            betas = None  # not a sequence
        if betas is None or len(betas) != 2:
            problems.append(f"betas must be two numbers in [0, 1), e.g. (0.9, 0.999), got "
                            f"{given!r:.60}")
        elif any(type(b) is int for b in betas):
            problems.append(f"betas must be either both floats or both Tensors, got {given!r}")
        else:
            bad = [p for i, b in enumerate(betas)
                   if (p := real_problem(f"betas[{i}]", b, 0, 1)) is not None]
            problems.extend(bad)
            if not bad:
                out["betas"] = tuple(float(b) for b in betas)
    out.update(_checked_switches(group, problems, ("amsgrad", "maximize", "capturable",
                                                   "differentiable", "decoupled_weight_decay")))
    return out


def _checked_numbers(group, problems, minimums):
    """{name: float} for each ``minimums`` name present in ``group`` and a finite real
    number >= its minimum (None: any); the others reported in ``problems``."""
    out = {}
    for name, low in minimums.items():
        if name in group:
            problem = real_problem(name, _number(group[name]), low)
            if problem is None:
                out[name] = float(_number(group[name]))
            else:
                problems.append(problem)
    return out


def _checked_switches(group, problems, names):
    """{name: bool} for each of ``names`` present in ``group``; a value that is no bool
    is reported in ``problems``. foreach and fused, where present, may also be None."""
    out = {}
    for name in names:
        if name in group:
            if isinstance(group[name], (bool, numpy.bool_)):
                out[name] = bool(group[name])
            else:
                problems.append(f"{name} must be True or False, got {group[name]!r:.40}")
    for name in ("foreach", "fused"):
        if name in group and not (group[name] is None
                                  or isinstance(group[name], (bool, numpy.bool_))):
            problems.append(f"{name} must be None, True or False, got {group[name]!r:.40}")
    return out


def _number(value):
    """A 0-d array or one-element Tensor (torch allows a Tensor lr) as its Python number;
    anything else as it is, for ``real_problem`` to judge."""
    if isinstance(value, Tensor):
        value = value.array
    if getattr(value, "ndim", None) == 0 and getattr(value, "dtype", None) is not None:
        return value.item()
    return value


from . import lr_scheduler as lr_scheduler  # noqa: E402 - torch's address; it needs Optimizer
