"""AdamW with PyTorch's semantics, updating parameters in place.

For each parameter p with gradient g, at step t (counted per parameter):
    p <- p * (1 - lr * weight_decay)                  (decoupled weight decay)
    m <- beta1 m + (1 - beta1) g
    v <- beta2 v + (1 - beta2) g^2
    p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

On the CPU the update walks each parameter in slices of ``CHUNK`` elements, so the
handful of elementwise passes run on data that sits in the CPU cache instead of
streaming 163M floats from memory a dozen times. On a GPU each slice would be a dozen
kernel launches, so there a parameter is one fused kernel (``cuda_kernels.adamw_update``,
the same bits as the lines below), or with the kernels off, whole-tensor passes.
"""

import math

import numpy

from . import cuda_kernels as fused
from .backend import ON_GPU, to_numpy, xp

CHUNK = 1 << 15


class AdamW:
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        params = list(params)
        if not params:
            raise ValueError("AdamW got an empty parameter list")
        if not lr >= 0.0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must each be in [0, 1), got {betas}")
        if not eps >= 0.0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if not weight_decay >= 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.params = params
        self.lr, self.betas, self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)
        self.weight_decay = float(weight_decay)
        self.state = {}  # index -> {"step": int, "exp_avg": array, "exp_avg_sq": array}

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        beta1, beta2 = self.betas
        lr, eps, wd = self.lr, self.eps, self.weight_decay
        scratch = None
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            state = self.state.get(i)
            if state is None:
                state = self.state[i] = {
                    "step": 0,
                    "exp_avg": xp.zeros_like(p.data),
                    "exp_avg_sq": xp.zeros_like(p.data),
                }
            state["step"] += 1
            t = state["step"]
            step_size = lr / (1.0 - beta1**t)
            bias2_sqrt = math.sqrt(1.0 - beta2**t)
            decay = 1.0 - lr * wd

            if fused.usable(p.data, p.grad) and p.data.flags.c_contiguous:
                fused.adamw_update(p.data, p.grad, state["exp_avg"], state["exp_avg_sq"],
                                   decay, beta1, beta2, eps, step_size, bias2_sqrt)
                continue
            flat_p = p.data.reshape(-1)
            flat_g = p.grad.reshape(-1)
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

    # --- checkpoints ------------------------------------------------------------------
    def hyperparameters(self):
        return {
            "lr": self.lr,
            "betas": list(self.betas),
            "eps": self.eps,
            "weight_decay": self.weight_decay,
        }

    def state_dict(self):
        """Like torch's: {"state": {i: {step, exp_avg, exp_avg_sq}}, "param_groups": [...]}."""
        group = dict(self.hyperparameters(), params=list(range(len(self.params))))
        group["betas"] = tuple(group["betas"])
        return {
            "state": {
                i: {"step": s["step"], "exp_avg": s["exp_avg"], "exp_avg_sq": s["exp_avg_sq"]}
                for i, s in self.state.items()
            },
            "param_groups": [group],
        }

    def load_state_dict(self, state_dict):
        """Restore moments, steps and hyper-parameters; all checked before anything changes."""
        problems = []
        try:
            groups = state_dict["param_groups"]
            states = state_dict["state"]
        except (KeyError, TypeError):
            raise ValueError(
                "not an AdamW state dict: expected keys 'state' and 'param_groups'"
            ) from None
        if len(groups) != 1:
            problems.append(f"expected 1 param group, found {len(groups)}")
        group = groups[0] if groups else {}
        n_params = len(group.get("params", []))
        if n_params != len(self.params):
            problems.append(
                f"state is for {n_params} parameters, this optimizer has {len(self.params)}"
            )
        new_state = {}
        for key, s in states.items():
            i = int(key)
            if not 0 <= i < len(self.params):
                problems.append(f"state for parameter {i}, which does not exist")
                continue
            shape = self.params[i].shape
            for name in ("exp_avg", "exp_avg_sq"):
                if name not in s:
                    problems.append(f"parameter {i}: missing {name!r}")
                elif tuple(numpy.shape(s[name])) != tuple(shape):
                    problems.append(
                        f"parameter {i}: {name} has shape {tuple(numpy.shape(s[name]))}, "
                        f"parameter has {tuple(shape)}"
                    )
                elif not bool(numpy.isfinite(to_numpy(s[name])).all()):
                    problems.append(f"parameter {i}: {name} contains NaN or infinite values")
            if "step" not in s:
                problems.append(f"parameter {i}: missing 'step'")
            if any(p.startswith(f"parameter {i}:") for p in problems):
                continue
            dtype = self.params[i].dtype
            new_state[i] = {
                "step": int(to_numpy(xp.asarray(s["step"])).item()),
                "exp_avg": xp.array(s["exp_avg"], dtype=dtype),
                "exp_avg_sq": xp.array(s["exp_avg_sq"], dtype=dtype),
            }
        # hyper-parameters are checked here too: failing after self.state was replaced
        # would leave the optimizer half loaded
        hyper = _checked_hyperparameters(group, self.hyperparameters(), problems)
        if problems:
            raise ValueError(
                "AdamW.load_state_dict failed; the optimizer keeps its state. Problems:\n  "
                + "\n  ".join(problems)
            )
        self.state = new_state
        self.lr, self.betas, self.eps, self.weight_decay = hyper


def _checked_hyperparameters(group, current, problems):
    """(lr, betas, eps, weight_decay) from ``group`` (``current`` where absent); each
    invalid value is added to ``problems``."""
    try:
        lr = float(group.get("lr", current["lr"]))
        betas = tuple(float(b) for b in group.get("betas", current["betas"]))
        eps = float(group.get("eps", current["eps"]))
        weight_decay = float(group.get("weight_decay", current["weight_decay"]))
    except (TypeError, ValueError) as exc:
        problems.append(f"hyper-parameters must be numbers: {exc}")
        return None
    if not lr >= 0.0:
        problems.append(f"lr must be >= 0, got {lr}")
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        problems.append(f"betas must be two numbers in [0, 1), got {betas}")
    if not eps >= 0.0:
        problems.append(f"eps must be >= 0, got {eps}")
    if not weight_decay >= 0.0:
        problems.append(f"weight_decay must be >= 0, got {weight_decay}")
    return lr, betas, eps, weight_decay
