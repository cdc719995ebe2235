"""tinygpt.optim.lr_scheduler against torch.optim.lr_scheduler: the same rates step for step,
through a state dict round trip, and torch's warnings and errors for misuse."""

import math
import warnings

import numpy as np
import pytest

import tinygpt

torch = pytest.importorskip("torch")

STEPS = 20


class Warmup:
    """A callable object: LambdaLR's state dict keeps its attributes."""

    def __init__(self, steps):
        self.steps = steps

    def __call__(self, epoch):
        return min(1.0, (epoch + 1) / self.steps)


SCHEDULES = {
    "LambdaLR, one function": ("LambdaLR", lambda lib: {"lr_lambda": lambda e: 0.9**e}),
    "LambdaLR, one per group": ("LambdaLR", lambda lib: {
        "lr_lambda": [Warmup(5), lambda e: 1.0 / (1 + e)]}),
    "StepLR": ("StepLR", lambda lib: {"step_size": 3, "gamma": 0.5}),
    "StepLR, default gamma": ("StepLR", lambda lib: {"step_size": 4}),
    "CosineAnnealingLR": ("CosineAnnealingLR", lambda lib: {"T_max": 7, "eta_min": 1e-4}),
    "CosineAnnealingLR, to 0": ("CosineAnnealingLR", lambda lib: {"T_max": 20}),
}


def _optimizer(lib):
    """SGD over two groups with their own rates (both libraries, the same values)."""
    a = lib.nn.Parameter(lib.tensor(np.ones(3)))
    b = lib.nn.Parameter(lib.tensor(np.ones(2)))
    return lib.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.05}], lr=0.1)


def _schedule(lib, name, optimizer=None, **extra):
    cls, kwargs = SCHEDULES[name]
    optimizer = optimizer or _optimizer(lib)
    return getattr(lib.optim.lr_scheduler, cls)(optimizer, **kwargs(lib), **extra)


def _run(scheduler, steps):
    """The rates after each optimizer step + scheduler step, as get_last_lr and the
    groups hold them."""
    rates = []
    for _ in range(steps):
        scheduler.optimizer.step()
        scheduler.step()
        rates.append(scheduler.get_last_lr())
        assert rates[-1] == [g["lr"] for g in scheduler.optimizer.param_groups]
    return rates


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_rates_match_torch_step_by_step(name):
    ours, theirs = _schedule(tinygpt, name), _schedule(torch, name)
    assert ours.get_last_lr() == theirs.get_last_lr() and ours.last_epoch == theirs.last_epoch
    assert ours.base_lrs == theirs.base_lrs == [0.1, 0.05]
    np.testing.assert_allclose(_run(ours, STEPS), _run(theirs, STEPS), rtol=1e-15, atol=0)
    assert ours.last_epoch == theirs.last_epoch == STEPS


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_state_dict_round_trip_continues_like_torch(name):
    runs = {}
    for lib in (tinygpt, torch):
        scheduler = _schedule(lib, name)
        _run(scheduler, 8)
        saved_scheduler = scheduler.state_dict()
        saved_optimizer = scheduler.optimizer.state_dict()
        optimizer = _optimizer(lib)
        resumed = _schedule(lib, name, optimizer)  # torch's order: scheduler, then loads
        optimizer.load_state_dict(saved_optimizer)
        resumed.load_state_dict(saved_scheduler)
        runs[lib.__name__] = (saved_scheduler, resumed.last_epoch, _run(resumed, STEPS - 8),
                              _run(scheduler, STEPS - 8))
    ours, theirs = runs["tinygpt"], runs["torch"]
    assert ours[0] == theirs[0], "the state dicts hold the same entries and values"
    assert ours[1] == theirs[1] == 8
    np.testing.assert_allclose(ours[2], theirs[2], rtol=1e-15, atol=0)
    np.testing.assert_allclose(ours[2], ours[3], rtol=1e-15, atol=0)


def test_torchs_scheduler_state_dict_loads_into_ours():
    theirs = _schedule(torch, "CosineAnnealingLR")
    _run(theirs, 5)
    ours = _schedule(tinygpt, "CosineAnnealingLR")
    ours.optimizer.load_state_dict(theirs.optimizer.state_dict())
    ours.load_state_dict(theirs.state_dict())
    np.testing.assert_allclose(_run(ours, 6), _run(theirs, 6), rtol=1e-15, atol=0)


def test_lambda_objects_keep_their_attributes_through_the_state_dict():
    runs = {}
    for lib in (tinygpt, torch):
        scheduler = _schedule(lib, "LambdaLR, one per group")
        scheduler.lr_lambdas[0].steps = 9
        saved = scheduler.state_dict()
        fresh = _schedule(lib, "LambdaLR, one per group")
        fresh.load_state_dict(saved)
        runs[lib.__name__] = (saved["lr_lambdas"], fresh.lr_lambdas[0].steps)
    assert runs["tinygpt"] == runs["torch"] == ([{"steps": 9}, None], 9)


def test_resuming_with_last_epoch_like_torch():
    runs = {}
    for lib in (tinygpt, torch):
        optimizer = _optimizer(lib)
        with pytest.raises(KeyError, match="initial_lr"):
            lib.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10, last_epoch=4)
        for group in optimizer.param_groups:
            group["initial_lr"] = group["lr"]
        scheduler = lib.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10, eta_min=0.01,
                                                             last_epoch=4)
        runs[lib.__name__] = [scheduler.get_last_lr()] + _run(scheduler, 8)
    np.testing.assert_allclose(runs["tinygpt"], runs["torch"], rtol=1e-15, atol=0)


def _warnings_of(call):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = call()
    return [str(w.message)[:40] for w in seen], result


def test_misuse_warns_as_torch_does():
    runs = {}
    for lib in (tinygpt, torch):
        scheduler = _schedule(lib, "StepLR")
        scheduler_first = _warnings_of(scheduler.step)[0]  # before any optimizer.step()
        asked = _warnings_of(scheduler.get_lr)[0]
        jumped, _ = _warnings_of(lambda s=scheduler: s.step(7))  # the closed form
        scheduler.optimizer.step()
        in_order = _warnings_of(scheduler.step)[0]
        runs[lib.__name__] = (scheduler_first, asked, jumped, scheduler.get_last_lr(),
                              in_order)
    assert runs["tinygpt"] == runs["torch"]
    first, asked, jumped, rates, in_order = runs["torch"]
    assert first[0].startswith("Detected call of `lr_scheduler.step()`")
    assert asked[0].startswith("To get the last learning rate")
    assert jumped[0].startswith("The epoch parameter") and in_order == []
    assert rates == [0.1 * 0.5**2, 0.05 * 0.5**2]


def test_wrong_arguments_raise_torchs_errors():
    for lib in (tinygpt, torch):
        with pytest.raises(TypeError, match="str is not an Optimizer"):
            lib.optim.lr_scheduler.StepLR("sgd", step_size=2)
        with pytest.raises(ValueError, match="Expected 2 lr_lambdas, but got 1"):
            lib.optim.lr_scheduler.LambdaLR(_optimizer(lib), [lambda e: 1.0])
        scheduler = lib.optim.lr_scheduler.CosineAnnealingLR(_optimizer(lib), T_max=0)
        scheduler.optimizer.step()
        with pytest.raises(ZeroDivisionError):
            scheduler.step()


def test_schedulers_drive_a_training_loop_like_torchs():
    """The rates reach the optimizer: Adam's parameters follow torch's under a warmup."""
    rng = np.random.default_rng(0)
    start, grads = rng.standard_normal(4), rng.standard_normal((10, 4))
    params = {}
    for lib in (tinygpt, torch):
        p = lib.nn.Parameter(lib.tensor(start.copy()))
        optimizer = lib.optim.Adam([p], lr=0.05)
        scheduler = lib.optim.lr_scheduler.LambdaLR(optimizer, Warmup(4))
        for g in grads:
            p.grad = lib.tensor(g)
            optimizer.step()
            scheduler.step()
        params[lib.__name__] = np.asarray(p.tolist())
    np.testing.assert_allclose(params["tinygpt"], params["torch"], rtol=1e-12, atol=1e-14)
    assert not math.isclose(params["tinygpt"][0], start[0])
