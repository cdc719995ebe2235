"""Twin models: one model written against torch's names, built once with ``lib`` = torch and
once with ``lib`` = tinygpt, the tinygpt twin given the torch twin's weights in float64, so
outputs, gradients and parameters after optimizer steps can be compared."""

import tinygpt

from .assertions import assert_close

TOL = 1e-9  # float64 on both sides


def copy_weights(ours, ref):
    """Give ``ours`` (tinygpt, made float64) the weights of ``ref`` (torch); returns ``ours``."""
    ours.to(tinygpt.float64)
    ours.load_state_dict({k: v.detach().numpy().copy() for k, v in ref.state_dict().items()})
    return ours


def compare_parameters(ours, ref, what, tol=TOL):
    ref_params = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(f"{what} {name}", p, ref_params[name].detach().numpy(), tol)


def error_class(call):
    """The class of the exception ``call()`` raises (None if it returns): run it with
    torch to learn which error tinygpt must raise."""
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the class is what we compare
        return type(exc)
    return None
