"""torch.autograd.gradcheck: PyTorch's defaults, warning and failure message, computed
through the current executor (float64 end to end through a real server)."""

from __future__ import annotations

import re

import pytest

import gradserve as torch
from gradserve.autograd import Function
from gradserve.autograd.gradcheck import GradcheckError

NOT_DOUBLE = ("Input #{} requires gradient and is not a double precision floating point or complex. "
              "This check will likely fail if all the inputs are not of double precision floating point "
              "or complex. ")


class ScaledExp(Function):
    """exp, with a backward scaled by `scale` (1.0 is right, anything else is wrong)."""

    @staticmethod
    def forward(ctx, i, scale):
        ctx.scale = scale
        ctx.save_for_backward(i)
        return i.exp()

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output * ctx.saved_tensors[0].exp() * ctx.scale, None


def exp(x):
    return ScaledExp.apply(x, 1.0)


def half_exp(x):
    return ScaledExp.apply(x, 0.5)


X = [-1.5, 0.8]


def test_signature_is_torchs():
    import inspect
    params = inspect.signature(torch.autograd.gradcheck).parameters
    assert list(params) == ["func", "inputs", "eps", "atol", "rtol", "raise_exception", "nondet_tol",
                            "check_undefined_grad", "check_grad_dtypes", "check_batched_grad",
                            "check_batched_forward_grad", "check_forward_ad", "check_backward_ad",
                            "fast_mode", "masked"]
    assert [params[k].default for k in ("eps", "atol", "rtol", "raise_exception")] == [1e-6, 1e-5, 1e-3, True]


def test_passes_for_correct_gradients():
    x = torch.tensor(X, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(exp, (x,)) is True
    assert torch.autograd.gradcheck(torch.sin, x) is True
    w = torch.tensor([[1.0, 2.0], [3.0, -4.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, k, b: (a @ b * k).tanh(), (x[None].detach().requires_grad_(),
                                                                       2.0, w))


def test_failure_message_is_torchs():
    x = torch.tensor(X, dtype=torch.float64, requires_grad=True)
    expected = ("Jacobian mismatch for output 0 with respect to input 0,\n"
                "numerical:tensor([[0.2231, 0.0000],\n        [0.0000, 2.2255]], dtype=torch.float64)\n"
                "analytical:tensor([[0.1116, 0.0000],\n        [0.0000, 1.1128]], dtype=torch.float64)\n")
    with pytest.raises(GradcheckError) as info:
        torch.autograd.gradcheck(half_exp, (x,))
    assert str(info.value) == expected
    assert isinstance(info.value, RuntimeError)
    assert torch.autograd.gradcheck(half_exp, (x,), raise_exception=False) is False
    with pytest.raises(GradcheckError, match="^Jacobian mismatch for output 1 with respect to input 0,\n"):
        torch.autograd.gradcheck(lambda a: (a.sin(), half_exp(a)), x)


def test_float32_warns_and_fails_as_in_torch():
    xf = torch.tensor([0.3, 1.2], requires_grad=True)
    expected = ("Jacobian mismatch for output 0 with respect to input 0,\n"
                "numerical:tensor([[3.0994],\n        [2.8610]])\nanalytical:tensor([[3.],\n        [3.]])\n")
    with pytest.warns(UserWarning, match="^" + re.escape(NOT_DOUBLE.format(0)) + "$") as record:
        with pytest.raises(GradcheckError, match="^" + re.escape(expected) + "$"):
            torch.autograd.gradcheck(lambda a: (a * 3).sum(), (xf,))
    assert len(record) == 1
    # the warning numbers inputs by their position among all inputs
    d = torch.ones(2, dtype=torch.float64, requires_grad=True)
    with pytest.warns(UserWarning, match=re.escape(NOT_DOUBLE.format(2))):
        torch.autograd.gradcheck(lambda a, k, b: a * b, (d, 1.0, torch.ones(2, requires_grad=True)),
                                 raise_exception=False)


def test_input_errors_and_what_is_not_supported():
    with pytest.raises(ValueError, match="^gradcheck expects at least one input tensor to require gradient, "
                                         "but none of them have requires_grad=True.$"):
        torch.autograd.gradcheck(exp, (torch.ones(2, dtype=torch.float64),))
    x = torch.tensor(X, dtype=torch.float64, requires_grad=True)
    with pytest.raises(NotImplementedError, match="create_graph"):
        torch.autograd.gradgradcheck(torch.sin, x)
    with pytest.raises(NotImplementedError, match="check_forward_ad"):
        torch.autograd.gradcheck(torch.sin, x, check_forward_ad=True)


def test_gradcheck_computes_through_a_real_server_in_float64(remote, monkeypatch):
    calls = []
    for name in ("evaluate", "backward"):
        real = getattr(remote, name)
        monkeypatch.setattr(remote, name, lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
    assert torch.executor() is remote
    x = torch.tensor(X, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: exp(a * 2).sum(), (x,)) is True
    # 2 inputs x 2 sides of the difference, then one VJP (Function: 2 backwards + 1 evaluate)
    assert calls.count("evaluate") >= 4 and calls.count("backward") == 2
    with pytest.raises(GradcheckError):
        torch.autograd.gradcheck(half_exp, (x,))
