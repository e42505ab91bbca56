"""Recording without a network: graphs as data, eager shape checks, lazy values, one request per
backward, and only the unknown part of a graph shipped."""

from __future__ import annotations

import subprocess
import sys

import pytest

import gradserve as torch
from gradserve.engine import Graph


def test_import_is_lazy():
    code = ("import sys, gradserve; assert 'numpy' not in sys.modules and 'grpc' not in sys.modules; "
            "gradserve.nn.functional; gradserve.autograd.grad; print(gradserve.float32)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "torch.float32"


def test_dtypes_and_sizes():
    assert repr(torch.float32) == "torch.float32" and torch.float is torch.float32
    assert torch.double is torch.float64 and torch.long is torch.int64 and torch.int is torch.int32
    assert repr(torch.tensor([1.0, 2.0]).dtype) == "torch.float32"
    assert torch.tensor([1, 2]).dtype is torch.int64 and torch.tensor([True]).dtype is torch.bool
    assert torch.get_default_dtype() is torch.float32
    s = torch.ones(2, 3).shape
    assert repr(s) == "torch.Size([2, 3])" and s == (2, 3) and torch.ones(2, 3).size(1) == 3
    x = torch.ones(2, 3)
    assert (x.dim(), x.numel(), x.T.shape, torch.ones(()).shape) == (2, 6, (3, 2), ())


def test_recording_does_not_compute(counting):
    x = torch.ones(2, 2, requires_grad=True)
    y = (x + 2) * 3
    z = y.mean()
    assert counting.calls == [] and z.shape == () and z.dtype is torch.float32
    assert repr(z) == "tensor(9., grad_fn=<MeanBackward0>)"
    assert [kind for kind, _ in counting.calls] == ["evaluate"]


def test_shape_errors_raise_before_any_request(counting):
    with pytest.raises(RuntimeError, match=r"^The size of tensor a \(2\) must match the size of tensor b "
                                           r"\(3\) at non-singleton dimension 0$"):
        torch.ones(2) + torch.ones(3)
    with pytest.raises(RuntimeError):
        torch.ones(2, 3) @ torch.ones(2, 3)
    with pytest.raises(IndexError, match="^Dimension out of range"):
        torch.ones(2).sum(3)
    assert counting.calls == []


def test_values_are_cached_and_only_the_unknown_part_is_shipped(counting):
    x = torch.ones(3)
    y = x * 2
    y.tolist()
    z = y + 1
    z.tolist()
    (_, first), (_, second) = counting.calls
    assert [n.op for n in first.nodes] == ["mul"]
    assert [n.op for n in second.nodes] == ["add"] and len(second.leaves) == 1
    z.tolist()
    assert len(counting.calls) == 2


def test_backward_is_one_request_carrying_the_graph_as_data(counting):
    x = torch.ones(2, requires_grad=True)
    w = torch.tensor([1.0, 2.0])
    loss = ((x * w).exp()).sum()
    loss.backward()
    assert len(counting.calls) == 1
    kind, graph = counting.calls[0]
    assert kind == "backward" and isinstance(graph, Graph)
    assert [n.op for n in graph.nodes] == ["mul", "exp", "sum"]
    assert sorted(leaf.requires_grad for leaf in graph.leaves) == [False, True]
    assert loss._expr.value is not None            # the root's value came back with the gradients


def test_control_flow_on_values():
    x = torch.tensor([0.25, -0.5, 0.125], requires_grad=True)
    y = x * 2
    steps = 1
    while y.data.norm() < 1000:
        y = y * 2
        steps += 1
    y.backward(torch.tensor([0.1, 1.0, 0.0001]))
    scale = 2.0 ** steps
    assert x.grad.tolist() == pytest.approx([0.1 * scale, 1.0 * scale, 0.0001 * scale])


def test_requires_grad_on_a_computed_tensor_becomes_a_leaf():
    a = torch.tensor([2.0, 3.0])
    a = (a * 3) / (a - 1)
    a.requires_grad_(True)
    b = (a * a).sum()
    assert b.grad_fn.name() == "SumBackward0"
    b.backward()
    assert a.grad.tolist() == pytest.approx([12.0, 9.0])


def test_errors_keep_pytorch_types_for_unsupported_features():
    x = torch.ones(2, requires_grad=True)
    with pytest.raises(NotImplementedError, match="You must implement the forward function"):
        torch.autograd.Function.apply(x)
    with pytest.raises(NotImplementedError, match="einsum"):
        torch.einsum("i->i", x)


def test_factories():
    torch.manual_seed(0)
    a = torch.rand(2, 3)
    torch.manual_seed(0)
    assert torch.rand(2, 3).tolist() == a.tolist()
    assert torch.randn(4, dtype=torch.float64).dtype is torch.float64
    assert torch.randint(0, 5, (3,)).dtype is torch.int64
    assert repr(torch.arange(4)) == "tensor([0, 1, 2, 3])"
    assert repr(torch.arange(0, 1, 0.25)) == "tensor([0.0000, 0.2500, 0.5000, 0.7500])"
    assert repr(torch.linspace(0, 1, 3)) == "tensor([0.0000, 0.5000, 1.0000])"
    assert repr(torch.eye(2)) == "tensor([[1., 0.],\n        [0., 1.]])"
    assert repr(torch.full((2,), 7)) == "tensor([7, 7])"
    assert repr(torch.zeros(0, 3, requires_grad=True)) == "tensor([], size=(0, 3), requires_grad=True)"
    assert repr(torch.empty_like(torch.ones(2, dtype=torch.int32))) == "tensor([0, 0], dtype=torch.int32)"
    import numpy as np
    arr = np.arange(3.0)
    t = torch.from_numpy(arr)
    arr[0] = 5
    assert t.dtype is torch.float64 and t.tolist() == [5.0, 1.0, 2.0]
    assert torch.tensor(arr).dtype is torch.float64 and torch.as_tensor([1, 2]).dtype is torch.int64
    assert repr(torch.nn.Parameter(torch.ones(2))) == (
        "Parameter containing:\ntensor([1., 1.], requires_grad=True)")


def test_dtype_promotion_follows_pytorch():
    assert (torch.tensor([1, 2]) * 2.5).dtype is torch.float32
    assert repr(torch.tensor([3, 4]) / torch.tensor([2, 2])) == "tensor([1.5000, 2.0000])"
    assert (torch.ones(2) + torch.ones(2, dtype=torch.float64)).dtype is torch.float64
    assert (torch.ones(2) + torch.tensor(1.0, dtype=torch.float64)).dtype is torch.float32
    assert repr(torch.tensor([True, False]).sum()) == "tensor(1)"
    with pytest.raises(RuntimeError, match="^mean\\(\\): could not infer output dtype"):
        torch.tensor([1, 2]).mean()
    c = torch.tensor([1.0, 2.0]) > torch.tensor([2.0, 1.0])
    assert repr((c, c.requires_grad, c.dtype)) == "(tensor([False,  True]), False, torch.bool)"


def test_seed_draws_a_fresh_seed_and_returns_it():
    first, second = torch.seed(), torch.seed()
    assert isinstance(first, int) and first != second
    torch.manual_seed(first)
    drawn = torch.rand(4).tolist()
    torch.manual_seed(first)
    assert torch.rand(4).tolist() == drawn
