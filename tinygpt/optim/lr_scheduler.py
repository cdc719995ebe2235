"""``torch.optim.lr_scheduler`` for tinygpt: ``LambdaLR``, ``StepLR``, ``CosineAnnealingLR``.

A scheduler drives an optimizer's learning rates, group by group. Made, it records each
group's ``"lr"`` as ``"initial_lr"`` (its ``base_lrs``) and sets epoch 0's rate; each
``step()`` then moves ``last_epoch`` on by one and writes the next rate into every
group's ``"lr"``, which the optimizer reads at its next step. The loop, as in torch:

    for epoch in range(num_epochs):
        for batch in loader:
            ...; optimizer.step()
        scheduler.step()                      # after the optimizer's, never before

The rates equal torch's step for step (the same formulas, evaluated in the same order:
CosineAnnealingLR's is torch's recursive form, not the closed one). So do the warnings
for misuse (stepping the scheduler before the optimizer, ``get_lr()`` for the current
rate, ``step(epoch)``) and ``state_dict()`` / ``load_state_dict()``: everything but the
optimizer, the lambdas of a LambdaLR kept only when they are objects (their attributes).
"""

import functools
import math
import types
import warnings
import weakref

from . import Optimizer

__all__ = ["CosineAnnealingLR", "LRScheduler", "LambdaLR", "StepLR"]

_EPOCH_DEPRECATED = (
    "The epoch parameter in `scheduler.step()` was not necessary and is being deprecated "
    "where possible. Please use `scheduler.step()` to step the scheduler. During the "
    "deprecation, if epoch is different from None, the closed form is used instead of the "
    "new chainable form, where available."
)


class LRScheduler:
    """``torch.optim.lr_scheduler.LRScheduler``: what the schedulers share. A subclass
    computes the next rates in ``get_lr()`` (and, for ``step(epoch)``, the rates at
    ``last_epoch`` straight from ``base_lrs`` in ``_get_closed_form_lr()``).

    ``last_epoch=-1`` starts a schedule; another value resumes one, and then each group
    must already hold its ``"initial_lr"`` (a KeyError otherwise, as in torch)."""

    _get_lr_called_within_step = False  # get_lr() warns when called from outside step()
    _is_initial = False  # True during the step() that sets epoch 0's rates

    def __init__(self, optimizer, last_epoch=-1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"param 'initial_lr' is not specified in param_groups[{i}] when "
                        "resuming scheduler with last_epoch >= 0: load the optimizer's state "
                        "dict first, or start a fresh schedule with last_epoch=-1"
                    )
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        _mark_optimizer_steps(optimizer)
        self._step_count = 0
        self._is_initial = True  # the first step() sets epoch 0's rates
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self):
        """The rates for ``last_epoch``, one per param group (called by ``step()``)."""
        raise NotImplementedError

    def get_last_lr(self):
        """The rates the last ``step()`` set, one per param group."""
        return self._last_lr

    def step(self, epoch=None):
        """Move to the next epoch and write its rates into the param groups; call it after
        ``optimizer.step()``. ``epoch`` (deprecated in torch, with its warning) jumps to
        that epoch, through the closed form where there is one."""
        if self._step_count == 1:
            if not hasattr(self.optimizer.step, "_wrapped_by_lr_sched"):
                warnings.warn(
                    "Seems like `optimizer.step()` has been overridden after learning rate "
                    "scheduler initialization. Please, make sure to call `optimizer.step()` "
                    "before `lr_scheduler.step()`.", UserWarning, stacklevel=2)
            elif not getattr(self.optimizer, "_opt_called", False):
                warnings.warn(
                    "Detected call of `lr_scheduler.step()` before `optimizer.step()`. In "
                    "PyTorch 1.1.0 and later, you should call them in the opposite order: "
                    "`optimizer.step()` before `lr_scheduler.step()`.  Failure to do this "
                    "will result in PyTorch skipping the first value of the learning rate "
                    "schedule.", UserWarning, stacklevel=2)
        self._step_count += 1
        if epoch is not None:
            warnings.warn(_EPOCH_DEPRECATED, UserWarning, stacklevel=2)
        self._get_lr_called_within_step = True
        try:
            if epoch is None:
                self.last_epoch += 1
                rates = self.get_lr()
            else:
                self.last_epoch = epoch
                closed_form = getattr(self, "_get_closed_form_lr", self.get_lr)
                rates = closed_form()
        finally:
            self._get_lr_called_within_step = False
        for group, lr in zip(self.optimizer.param_groups, rates, strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self):
        """Everything the scheduler holds but the optimizer (as torch's)."""
        return {key: value for key, value in self.__dict__.items() if key != "optimizer"}

    def load_state_dict(self, state_dict):
        """Take back what ``state_dict()`` gave (torch's too)."""
        self.__dict__.update(state_dict)

    def _warn_unless_stepping(self):
        if not self._get_lr_called_within_step:
            warnings.warn("To get the last learning rate computed by the scheduler, please "
                          "use `get_last_lr()`.", UserWarning, stacklevel=3)

    def _current_lrs(self):
        return [group["lr"] for group in self.optimizer.param_groups]


def _mark_optimizer_steps(optimizer):
    """Wrap ``optimizer.step`` (once) so that it sets ``optimizer._opt_called``: the
    scheduler's first ``step()`` warns when the optimizer has not stepped yet."""
    if hasattr(optimizer.step, "_wrapped_by_lr_sched"):
        return
    step = optimizer.step.__func__
    owner = weakref.ref(optimizer)  # no cycle through the instance's own attribute

    @functools.wraps(step)
    def counted_step(*args, **kwargs):
        opt = owner()
        opt._opt_called = True
        return step(opt, *args, **kwargs)

    counted_step._wrapped_by_lr_sched = True
    optimizer.step = counted_step


class LambdaLR(LRScheduler):
    """``torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda, last_epoch=-1)``: each
    group's rate is its ``initial_lr`` times ``lr_lambda(epoch)`` (one function for all
    groups, or a list of one per group)."""

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        self.optimizer = optimizer
        if not isinstance(lr_lambda, (list, tuple)):
            self.lr_lambdas = [lr_lambda] * len(optimizer.param_groups)
        elif len(lr_lambda) != len(optimizer.param_groups):
            raise ValueError(f"Expected {len(optimizer.param_groups)} lr_lambdas, but got "
                             f"{len(lr_lambda)}")
        else:
            self.lr_lambdas = list(lr_lambda)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        self._warn_unless_stepping()
        return [base_lr * factor(self.last_epoch)
                for factor, base_lr in zip(self.lr_lambdas, self.base_lrs, strict=True)]

    def state_dict(self):
        """As the base class's, with ``lr_lambdas`` as a list holding, per group, the
        attributes of a callable object, or None for a function (it cannot be saved)."""
        state = {key: value for key, value in self.__dict__.items()
                 if key not in ("optimizer", "lr_lambdas")}
        state["lr_lambdas"] = [None if isinstance(fn, types.FunctionType) else fn.__dict__.copy()
                               for fn in self.lr_lambdas]
        return state

    def load_state_dict(self, state_dict):
        """As the base class's; saved attributes go back into the lambdas' objects."""
        state = dict(state_dict)
        saved_lambdas = state.pop("lr_lambdas")
        self.__dict__.update(state)
        for fn, attributes in zip(self.lr_lambdas, saved_lambdas, strict=False):
            if attributes is not None:
                fn.__dict__.update(attributes)


class StepLR(LRScheduler):
    """``torch.optim.lr_scheduler.StepLR(optimizer, step_size, gamma=0.1, last_epoch=-1)``:
    every ``step_size`` epochs each group's rate is multiplied by ``gamma``."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        self._warn_unless_stepping()
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current_lrs()
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self):
        return [base_lr * self.gamma ** (self.last_epoch // self.step_size)
                for base_lr in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """``torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max, eta_min=0.0,
    last_epoch=-1)``: each group's rate follows half a cosine from its ``initial_lr`` down
    to ``eta_min`` over ``T_max`` epochs, and back up after, without restarts.

    Like torch's, each step scales the current rate (so a rate changed by hand carries
    on from there):  lr_t = eta_min + (lr_{t-1} - eta_min)
    * (1 + cos(pi t / T_max)) / (1 + cos(pi (t - 1) / T_max)); the closed form
    eta_min + (base_lr - eta_min) (1 + cos(pi t / T_max)) / 2 is used for ``step(epoch)``
    and when resuming."""

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):  # noqa: N803 - torch's
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        self._warn_unless_stepping()
        if self._is_initial:
            return self._current_lrs()
        if self._step_count == 1 and self.last_epoch > 0:  # resuming: the closed form
            return [self.eta_min + (base_lr - self.eta_min)
                    * (1 + math.cos(self.last_epoch * math.pi / self.T_max)) / 2
                    for base_lr in self.base_lrs]
        if (self.last_epoch - 1 - self.T_max) % (2 * self.T_max) == 0:  # past the bottom
            return [group["lr"] + (base_lr - self.eta_min)
                    * (1 - math.cos(math.pi / self.T_max)) / 2
                    for base_lr, group in zip(self.base_lrs, self.optimizer.param_groups,
                                              strict=True)]
        return [(1 + math.cos(math.pi * self.last_epoch / self.T_max))
                / (1 + math.cos(math.pi * (self.last_epoch - 1) / self.T_max))
                * (group["lr"] - self.eta_min) + self.eta_min
                for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self):
        return [self.eta_min + (base_lr - self.eta_min)
                * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
                for base_lr in self.base_lrs]
