"""torch.nn.utils's names on tinygpt: ``clip_grad_norm_`` (appendix D's gradient clipping)."""

import math

import numpy

from ..backend import xp
from ..tensor import Tensor

__all__ = ["clip_grad_norm", "clip_grad_norm_"]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale all gradients in place so that their global norm (the ``norm_type`` norm of
    all gradients taken as one vector) is at most ``max_norm``. Returns that norm
    before clipping, as a 0-d Tensor (like torch). ``parameters``: an iterable of
    Parameters (or one); those without a gradient are skipped.

        total = ||(g_1, ..., g_n)||,  g_i <- g_i * min(1, max_norm / (total + 1e-6))"""
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    grads = [p.grad.array for p in parameters if p.grad is not None]
    if not grads:
        return Tensor(xp.zeros((), dtype=xp.float32))
    norm_type = float(norm_type)
    if norm_type == math.inf:
        per_grad = xp.stack([xp.abs(g).max() for g in grads]).astype(xp.float64)
        total = float(per_grad.max())
    elif norm_type == -math.inf:
        total = float(xp.stack([xp.abs(g).min() for g in grads]).min())
    elif norm_type == 0.0:  # torch's: the count of non-zero gradients' non-zero counts
        total = float(sum(int(xp.count_nonzero(g)) > 0 for g in grads))
    elif norm_type == 2.0:  # dot products: no temporary of each gradient's size
        squares = xp.stack([xp.vdot(g.ravel(), g.ravel()) for g in grads])
        total = math.sqrt(float(squares.astype(xp.float64).sum()))  # one host sync for all
    else:
        with numpy.errstate(divide="ignore"):  # 0 ** negative order is inf, as in torch
            powers = xp.stack([(xp.abs(g.astype(xp.float64)) ** norm_type).sum()
                               for g in grads])
        total = float(powers.sum()) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"the total norm of order {norm_type} of the gradients is non-finite ({total}), "
            "so they cannot be clipped; error_if_nonfinite=False scales them anyway"
        )
    scale = max_norm / (total + 1e-6)
    if scale < 1.0:
        # a gradient array can be shared by two parameters (the backward of a + b hands
        # the same array to both): scale each array once
        for g in {id(g): g for g in grads}.values():
            g *= scale
    return Tensor(xp.asarray(total, dtype=grads[0].dtype))


clip_grad_norm = clip_grad_norm_  # torch.nn.utils.clip_grad_norm, torch's other name
