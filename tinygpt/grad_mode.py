"""Grad mode: whether operations record a graph (torch.no_grad, enable_grad, is_grad_enabled).

``Function.apply`` (autograd.py) asks ``is_grad_enabled()`` before it records anything;
the rest of this module is the context-manager and decorator plumbing torch's switches
promise (nesting, threads, generator functions).
"""

import contextlib
import functools
import inspect
import threading


class _State(threading.local):
    grad_enabled = True  # each thread starts with gradients on, as in torch


_state = _State()


def is_grad_enabled():
    return _state.grad_enabled


class no_grad(contextlib.ContextDecorator):
    """Context manager (or decorator) in which no graph is recorded.

    Re-entrant, like torch's: each ``with`` pushes the previous setting and its exit
    pops it (so one instance may be nested), and a decorated function gets a fresh
    context per call (recursion and threads each restore their own setting). As in
    torch, ``@no_grad`` works with or without parentheses, and a decorated generator
    function runs its body, not its consumer, without a graph."""

    _grad_enabled = False  # what the block sets

    def __new__(cls, orig_func=None):
        if orig_func is None:
            return super().__new__(cls)
        if not callable(orig_func):
            raise TypeError(f"{cls.__name__}() takes no arguments (or, as a bare "
                            f"decorator, a function), got {orig_func!r:.60}")
        return cls()(orig_func)  # bare @no_grad

    def __init__(self):
        self._previous = []  # a stack: one entry per open ``with`` of this instance

    def __enter__(self):
        self._previous.append(is_grad_enabled())
        _state.grad_enabled = self._grad_enabled
        return self

    def __exit__(self, *exc):
        _state.grad_enabled = self._previous.pop()
        return False

    def _recreate_cm(self):  # contextlib's hook: the context a decorated call uses
        return type(self)()

    def __call__(self, func):
        if not inspect.isgeneratorfunction(func):
            return super().__call__(func)

        @functools.wraps(func)
        def generator(*args, **kwargs):  # the setting holds while the body runs
            gen = func(*args, **kwargs)
            try:
                with self._recreate_cm():
                    response = gen.send(None)
                while True:
                    try:
                        request = yield response
                    except GeneratorExit:
                        with self._recreate_cm():
                            gen.close()
                        raise
                    except BaseException as exc:  # noqa: BLE001 - handed to the body
                        with self._recreate_cm():
                            response = gen.throw(exc)
                    else:
                        with self._recreate_cm():
                            response = gen.send(request)
            except StopIteration as stop:
                return stop.value

        return generator


class enable_grad(no_grad):
    """Context manager that turns graph recording back on inside ``no_grad``."""

    _grad_enabled = True
