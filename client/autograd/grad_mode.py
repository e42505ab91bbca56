"""Grad modes: `no_grad`, `enable_grad`, `set_grad_enabled`, `inference_mode` (thread-local)."""

from __future__ import annotations

import functools
import inspect
import threading

__all__ = ["no_grad", "enable_grad", "set_grad_enabled", "inference_mode",
           "is_grad_enabled", "is_inference_mode_enabled"]


class _State(threading.local):
    # Each thread starts with grad enabled, as in PyTorch (the mode is thread-local there too).
    grad_enabled = True
    inference = False


_state = _State()


def is_grad_enabled() -> bool:
    return _state.grad_enabled


def is_inference_mode_enabled() -> bool:
    return _state.inference


def _set(grad: bool, inference: bool | None = None) -> None:
    _state.grad_enabled = grad
    if inference is not None:
        _state.inference = inference


class _DecoratorContextManager:
    """A context manager that also decorates functions (and generator functions)."""

    def __call__(self, func):
        if inspect.isclass(func):
            raise RuntimeError("grad-mode decorators can only decorate functions, not classes")
        if inspect.isgeneratorfunction(func):
            @functools.wraps(func)
            def gen_wrapper(*args, **kwargs):
                gen = func(*args, **kwargs)
                with self.clone():
                    response = gen.send(None)
                while True:
                    try:
                        request = yield response
                    except GeneratorExit:
                        gen.close()
                        raise
                    with self.clone():
                        try:
                            response = gen.send(request)
                        except StopIteration as e:
                            return e.value
            return gen_wrapper

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with self.clone():
                return func(*args, **kwargs)
        return wrapper

    def clone(self):
        return self.__class__()


class _FixedGradMode(_DecoratorContextManager):
    """Sets grad mode to `_enabled` inside; also usable bare, as `@no_grad` without parentheses."""

    _enabled: bool

    def __new__(cls, orig_func=None):
        if orig_func is None:
            return super().__new__(cls)
        return cls()(orig_func)

    def __init__(self, orig_func=None) -> None:
        self.prev = False

    def __enter__(self) -> None:
        self.prev = is_grad_enabled()
        _set(self._enabled)

    def __exit__(self, *exc) -> None:
        _set(self.prev)


class no_grad(_FixedGradMode):  # noqa: N801
    """Disable gradient recording: results have requires_grad=False and no grad_fn."""

    _enabled = False


class enable_grad(_FixedGradMode):  # noqa: N801
    """Re-enable gradient recording inside `no_grad`."""

    _enabled = True


class set_grad_enabled(_DecoratorContextManager):  # noqa: N801
    """Sets the mode on construction (so a plain call works); as a context it restores on exit."""

    def __init__(self, mode: bool) -> None:
        self.prev = is_grad_enabled()
        self.mode = bool(mode)
        _set(self.mode)

    def __call__(self, func):
        _set(self.prev)
        return super().__call__(func)

    def __enter__(self) -> None:
        _set(self.mode)

    def __exit__(self, *exc) -> None:
        _set(self.prev)

    def clone(self):
        return self.__class__(self.mode)


class inference_mode(_DecoratorContextManager):  # noqa: N801
    """Like no_grad, and tensors created inside are inference tensors (`is_inference()`)."""

    def __new__(cls, mode=True):
        if isinstance(mode, bool):
            return super().__new__(cls)
        return cls()(mode)

    def __init__(self, mode: bool = True) -> None:
        self.mode = mode
        self.prev = (True, False)

    def __enter__(self) -> None:
        self.prev = (_state.grad_enabled, _state.inference)
        # c10::InferenceMode(enabled) sets grad mode to `not enabled`.
        _set(not self.mode, self.mode)

    def __exit__(self, *exc) -> None:
        _set(*self.prev)

    def clone(self):
        return self.__class__(self.mode)
