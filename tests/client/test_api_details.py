"""Smaller API details checked against PyTorch 2.13: legacy constructors, Parameter, .T/.mT,
modulo and floor division, scalar conversion warnings, nll_loss on images, C++ node names."""

from __future__ import annotations

import re
import warnings

import pytest

import gradserve as torch
import gradserve.nn.functional as F
from gradserve import _ops


def raises(exc, message):
    return pytest.raises(exc, match="^" + re.escape(message) + "$")


def test_isinstance_and_legacy_constructors():
    x = torch.ones(3, requires_grad=True)
    p = torch.nn.Parameter(torch.ones(1))
    assert all(isinstance(t, torch.Tensor) for t in (x, x * 2, p))
    assert type(x * 2) is torch.Tensor and type(p).__name__ == "Parameter"
    assert repr(torch.Tensor()) == "tensor([])"
    assert repr(torch.Tensor([1, 2])) == "tensor([1., 2.])"
    assert torch.Tensor(2, 3).shape == (2, 3)
    assert repr(torch.FloatTensor([1, 2])) == "tensor([1., 2.])"
    assert repr(torch.LongTensor(2)) == "tensor([0, 0])"
    assert repr(torch.DoubleTensor([1])) == "tensor([1.], dtype=torch.float64)"


def test_parameter():
    p = torch.nn.Parameter(torch.ones(2))
    assert repr(p) == "Parameter containing:\ntensor([1., 1.], requires_grad=True)"
    assert (p.is_leaf, p.requires_grad) == (True, True)
    q = torch.nn.Parameter(torch.ones(2, requires_grad=True) * 2)
    assert (q.is_leaf, q.grad_fn) == (True, None)
    with raises(RuntimeError, "Only Tensors of floating point and complex dtype can require gradients"):
        torch.nn.Parameter(torch.tensor([1, 2]))


def test_transpose_properties(monkeypatch):
    monkeypatch.setattr(_ops, "_WARNED", set())
    x = torch.ones(3, requires_grad=True)
    with pytest.warns(UserWarning, match=r"^The use of `x\.T` on tensors of dimension other than 2"):
        assert x.T.shape == (3,)
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # TORCH_WARN_ONCE
        assert torch.ones(2, 3, 4).T.shape == (4, 3, 2)
    with pytest.warns(UserWarning, match=r"^Tensor\.T is deprecated on 0-D tensors\. This function is the "
                                         r"identity in these cases\.$"):
        torch.tensor(2.0).T  # noqa: B018
    with raises(RuntimeError, "tensor.mT is only supported on matrices or batches of matrices. Got 1-D "
                              "tensor."):
        x.mT  # noqa: B018


def test_float_of_a_tensor_requiring_grad_warns():
    x = torch.ones(1, requires_grad=True)
    with pytest.warns(UserWarning, match="^Converting a tensor with requires_grad=True to a scalar may "
                                         "lead to unexpected behavior.\nConsider using tensor.detach\\(\\) "
                                         "first.$"):
        assert float(x.sum()) == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert int(x.sum()) == 1 and x.sum().item() == 1.0


def test_new_tensor_and_friends():
    x = torch.ones(3, dtype=torch.float64, requires_grad=True)
    assert repr(x.new_tensor([1, 2])) == "tensor([1., 2.], dtype=torch.float64)"
    with pytest.warns(UserWarning, match=r"rather than tensor\.new_tensor\(sourceTensor\)\.$"):
        copy = x.new_tensor(x)
    assert (copy.requires_grad, copy.grad_fn) == (False, None)
    assert repr(torch.tensor([1, 2]).new_ones(2)) == "tensor([1, 1])"
    assert repr(x.new_zeros(2, requires_grad=True)) == \
        "tensor([0., 0.], dtype=torch.float64, requires_grad=True)"
    assert repr(x.select(0, 1)) == "tensor(1., dtype=torch.float64, grad_fn=<SelectBackward0>)"


def test_remainder_fmod_and_floor_division():
    i = torch.tensor([5, -3])
    assert repr((i % 3, 7 % torch.tensor([2, 3]), i // 2, 7 // i)) == \
        "(tensor([2, 0]), tensor([1, 1]), tensor([ 2, -2]), tensor([ 1, -3]))"
    assert repr(torch.fmod(i, 2)) == "tensor([ 1, -1])"
    a = torch.tensor([5.5, -3.5], requires_grad=True)
    b = torch.tensor([2.0, 1.5], requires_grad=True)
    assert repr(a % 2) == "tensor([1.5000, 0.5000], grad_fn=<RemainderBackward0>)"
    assert repr(torch.fmod(a, 2)) == "tensor([ 1.5000, -1.5000], grad_fn=<FmodBackward0>)"
    (a % b).sum().backward()
    assert repr((a.grad, b.grad)) == "(tensor([1., 1.]), tensor([-2.,  3.]))"
    a.grad = b.grad = None
    torch.fmod(a, b).sum().backward()
    assert repr((a.grad, b.grad)) == "(tensor([1., 1.]), tensor([-2.,  2.]))"
    y = a // 2
    assert repr(y) == "tensor([ 2., -2.], grad_fn=<NotImplemented>)"
    assert y.grad_fn.name() == "torch::autograd::NotImplemented"
    with raises(RuntimeError, "derivative for aten::floor_divide is not implemented"):
        y.sum().backward()
    with raises(RuntimeError, "derivative for aten::remainder is not implemented"):
        (7 % a).sum().backward()


def test_cpp_node_names_carry_the_namespace():
    x = torch.ones(3, requires_grad=True)
    b = x * 1
    b[0] = 2.0
    assert repr(b) == "tensor([2., 1., 1.], grad_fn=<CopySlices>)"
    assert b.grad_fn.name() == "torch::autograd::CopySlices"
    acc = (x * 2).grad_fn.next_functions[0][0]
    assert acc.name() == "torch::autograd::AccumulateGrad" and repr(acc).startswith("<AccumulateGrad object")


def test_binary_cross_entropy_with_logits_pos_weight():
    x = torch.tensor([0.2, -1.0], requires_grad=True)
    out = F.binary_cross_entropy_with_logits(x, torch.tensor([1.0, 0.0]), pos_weight=torch.tensor([2.0, 0.5]))
    out.backward()
    assert repr((out, x.grad)) == ("(tensor(0.7548, grad_fn=<BinaryCrossEntropyWithLogitsBackward0>), "
                                   "tensor([-0.4502,  0.1345]))")
    x.grad = None
    out = F.binary_cross_entropy_with_logits(x, torch.tensor([1.0, 0.0]), weight=torch.tensor([3.0, 1.0]),
                                             pos_weight=torch.tensor([2.0, 0.5]), reduction="none")
    out.sum().backward()
    assert repr(out) == "tensor([3.5888, 0.3133], grad_fn=<BinaryCrossEntropyWithLogitsBackward0>)"
    assert repr(x.grad) == "tensor([-2.7010,  0.2689])"


@pytest.mark.parametrize(("shape", "names"), [
    ((2, 3, 4), {"mean": "NllLoss2DBackward0", "none": "ViewBackward0"}),
    ((2, 3, 4, 5), {"mean": "NllLoss2DBackward0", "none": "NllLoss2DBackward0"}),
    ((2, 3, 2, 2, 2), {"sum": "NllLoss2DBackward0", "none": "ViewBackward0"}),
])
def test_nll_loss_on_spatial_inputs_is_nll_loss2d(shape, names):
    n = 1
    for s in shape:
        n *= s
    x = torch.arange(float(n)).reshape(shape).sin().requires_grad_()
    t = (torch.arange(float(n // shape[1])).reshape((shape[0], *shape[2:])) % 3).long()
    for reduction, name in names.items():
        out = F.cross_entropy(x, t, reduction=reduction)
        assert out.grad_fn.name() == name
        assert out.shape == (() if reduction != "none" else (shape[0], *shape[2:]))
    out = F.cross_entropy(x, t, reduction="sum")
    out.backward()
    ref = -x.detach().log_softmax(1).gather(1, t.unsqueeze(1)).sum()
    assert abs(out.item() - ref.item()) < 1e-4
    with raises(RuntimeError, "Expected target size [2, 4], got [2, 5]"):
        F.nll_loss(torch.zeros(2, 3, 4), torch.zeros(2, 5).long())
