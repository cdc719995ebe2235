"""torch.nn.init's names: fill a tensor in place, as torch does, from tinygpt's generator.

The fan of a weight follows torch: for a (out, in, *kernel) tensor, fan_in = in * prod(kernel)
and fan_out = out * prod(kernel) (a Linear's (out, in) weight: fan_in = in). The bounds
equal torch's; the numbers drawn are tinygpt's (seeded by ``manual_seed``), not torch's.

    kaiming_uniform_:  U(-b, b),  b = gain * sqrt(3 / fan),  gain = calculate_gain(...)
    xavier_uniform_:   U(-b, b),  b = gain * sqrt(6 / (fan_in + fan_out))
"""

import math

import numpy

from ..backend import resolve_rng, xp
from ..tensor import Tensor
from ..tensors import Generator

__all__ = ["calculate_gain", "constant_", "kaiming_normal_", "kaiming_uniform_", "normal_",
           "ones_", "uniform_", "xavier_normal_", "xavier_uniform_", "zeros_"]


def calculate_gain(nonlinearity, param=None):
    """torch's recommended gain for a nonlinearity (relu: sqrt(2), tanh: 5/3, ...)."""
    if nonlinearity in ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                        "conv_transpose2d", "conv_transpose3d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError(f"negative_slope {slope} not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _calculate_fan_in_and_fan_out(tensor):
    shape = tuple(tensor.shape)
    if len(shape) < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than "
                         "2 dimensions")
    receptive = 1
    for n in shape[2:]:
        receptive *= n
    return shape[1] * receptive, shape[0] * receptive


def _fan(tensor, mode):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _fill(tensor, values):
    """Write ``values`` (host NumPy) into ``tensor`` in place, in its dtype; no graph."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"nn.init fills a Tensor (e.g. a Parameter), got {type(tensor).__name__}")
    tensor.array[...] = xp.asarray(numpy.asarray(values), dtype=tensor.array.dtype)
    tensor._counter.bump("nn.init")  # an in-place change, as torch counts it
    return tensor


def _generator(generator):
    if generator is not None and not isinstance(generator, (Generator, numpy.random.Generator)):
        raise TypeError("nn.init takes generator=None (tinygpt's generator, seeded by "
                        f"manual_seed), a tinygpt.Generator or a numpy.random.Generator, got "
                        f"{type(generator).__name__}")
    return resolve_rng(generator, "generator")


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """Fill with U(a, b)."""
    return _fill(tensor, _generator(generator).uniform(a, b, tuple(tensor.shape)))


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    """Fill with N(mean, std^2)."""
    return _fill(tensor, _generator(generator).normal(mean, std, tuple(tensor.shape)))


def constant_(tensor, val):
    return _fill(tensor, numpy.full(tuple(tensor.shape), val))


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He init: U(-b, b) with b = gain * sqrt(3 / fan) (appendix E's LoRA A matrix uses
    ``a=math.sqrt(5)``, which gives Linear's own bound 1/sqrt(fan_in))."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    return normal_(tensor, 0.0, std, generator)


def xavier_uniform_(tensor, gain=1.0, generator=None):
    """Glorot init: U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(6.0 / float(fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / float(fan_in + fan_out)), generator)
