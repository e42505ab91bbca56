"""Autograd semantics against PyTorch 2.13: backward, .grad, leaves, hooks, autograd.grad, and the
exact error types and messages (strings as PyTorch 2.13 prints them)."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import gradserve as torch
from gradserve._autograd import ERR_BACKWARD_TWICE
from gradserve._core import NON_LEAF_GRAD_WARNING


def raises(exc, message):
    return pytest.raises(exc, match="^" + re.escape(message) + "$")


def same(t, expected) -> bool:
    return t is not None and np.allclose(t.detach().numpy(), np.asarray(expected, np.float64))


# ---------------------------------------------------------------------------------------------
# backward


def test_seed_tutorial_gradient():
    x = torch.ones(2, 2, requires_grad=True)
    out = ((x + 2) * (x + 2) * 3).mean()
    out.backward()
    assert repr(x.grad) == "tensor([[4.5000, 4.5000],\n        [4.5000, 4.5000]])"


def test_backward_errors():
    x = torch.ones(2, 2, requires_grad=True)
    with raises(RuntimeError, "grad can be implicitly created only for scalar outputs"):
        (x * 2).backward()
    with raises(RuntimeError, "element 0 of tensors does not require grad and does not have a grad_fn"):
        torch.ones(2).sum().backward()
    with raises(RuntimeError, "Mismatch in shape: grad_output[0] has a shape of torch.Size([3]) and "
                              "output[0] has a shape of torch.Size([2, 2])."):
        (x * 2).backward(torch.ones(3))
    with raises(RuntimeError, "Mismatch in shape: grad_output[0] has a shape of torch.Size([2]) and "
                              "output[0] has a shape of torch.Size([2, 2])."):
        (x * 2).backward(torch.ones(2))
    with raises(RuntimeError, "element 0 of tensors does not require grad and does not have a grad_fn"):
        (x * 2).long().sum().backward()


def test_backward_twice_needs_retain_graph_only_when_tensors_were_saved():
    x = torch.ones(2, 2, requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with raises(RuntimeError, ERR_BACKWARD_TWICE):
        y.backward()
    x.grad = None
    y = (x + 2).sum()
    y.backward()
    y.backward()
    assert same(x.grad, [[2, 2], [2, 2]])
    x.grad = None
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert same(x.grad, [[4, 4], [4, 4]])


def test_saved_tensors_are_exposed_until_freed():
    x = torch.ones(2, requires_grad=True)
    y = x * x
    assert [n for n in dir(y.grad_fn) if n.startswith("_saved")] == ["_saved_other", "_saved_self"]
    assert same(y.grad_fn._saved_self, [1, 1])
    y.sum().backward()
    with raises(RuntimeError, ERR_BACKWARD_TWICE):
        y.grad_fn._saved_self  # noqa: B018


def test_accumulation_is_in_place_and_resettable():
    x = torch.ones(2, requires_grad=True)
    (x * 3).sum().backward()
    first = x.grad
    assert same(first, [3, 3])
    (x * 3).sum().backward()
    assert x.grad is first and same(first, [6, 6])
    assert (x.grad.requires_grad, x.grad.is_leaf, x.grad.grad_fn) == (False, True, None)
    x.grad.zero_()
    assert repr(x.grad) == "tensor([0., 0.])"
    x.grad = None
    (x * 2).sum().backward()
    assert repr(x.grad) == "tensor([2., 2.])"


def test_broadcast_gradients_are_summed_to_each_shape():
    a = torch.ones(3, 4, requires_grad=True)
    b = torch.ones(4, requires_grad=True)
    c = torch.ones(3, 1, requires_grad=True)
    d = torch.tensor(2.0, requires_grad=True)
    (a * b * c * d).sum().backward()
    assert repr((b.grad, c.grad, d.grad, b.grad.shape, c.grad.shape, d.grad.shape)) == (
        "(tensor([6., 6., 6., 6.]), tensor([[8.],\n        [8.],\n        [8.]]), tensor(12.), "
        "torch.Size([4]), torch.Size([3, 1]), torch.Size([]))")


def test_fan_out_views_inputs_and_multiple_roots():
    x = torch.tensor(3.0, requires_grad=True)
    (x * x + x).backward()
    assert repr(x.grad) == "tensor(7.)"
    m = torch.ones(2, 2, requires_grad=True)
    m[0].sum().backward()
    assert repr(m.grad) == "tensor([[1., 1.],\n        [0., 0.]])"
    a, b = torch.tensor(1.0, requires_grad=True), torch.tensor(2.0, requires_grad=True)
    (a * 3 + b).backward(inputs=[a])
    assert repr((a.grad, b.grad)) == "(tensor(3.), None)"
    v = torch.ones(2, requires_grad=True)
    torch.autograd.backward([(v * 2).sum(), (v * 3).sum()])
    assert repr(v.grad) == "tensor([5., 5.])"
    s = torch.ones(2, 2, requires_grad=True)
    (s * 2).sum().backward(torch.tensor(3.0))
    assert same(s.grad, [[6, 6], [6, 6]])
    w = torch.ones(2, 2, requires_grad=True)
    (w * 3).backward(torch.ones_like(w))
    assert same(w.grad, np.full((2, 2), 3))


def test_unused_leaf_keeps_none_and_gradient_dtype_follows_leaf():
    a = torch.ones(2, requires_grad=True)
    b = torch.ones(2, requires_grad=True)
    c = torch.ones(2, dtype=torch.float64, requires_grad=True)
    (a * 2 + c).sum().backward()
    assert (b.grad, a.grad.dtype, c.grad.dtype) == (None, torch.float32, torch.float64)


def test_backward_works_inside_no_grad():
    x = torch.ones(2, requires_grad=True)
    y = (x * 2).sum()
    with torch.no_grad():
        y.backward()
    assert repr(x.grad) == "tensor([2., 2.])"


def test_create_graph_is_reported_as_not_supported():
    x = torch.tensor(3.0, requires_grad=True)
    with pytest.raises(NotImplementedError, match="create_graph=True"):
        torch.autograd.grad(x ** 3, x, create_graph=True)


# ---------------------------------------------------------------------------------------------
# .grad, leaves and requires_grad


def test_non_leaf_grad_warns_and_retain_grad_populates_it():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    with pytest.warns(UserWarning) as record:
        assert y.grad is None
    assert str(record[0].message) == NON_LEAF_GRAD_WARNING
    y.retain_grad()
    y.retain_grad()
    (y * 2).sum().backward()
    assert repr((y.grad, y.retains_grad, x.retains_grad)) == "(tensor([2., 2.]), True, False)"
    x.retain_grad()
    assert x.retains_grad is False
    with raises(RuntimeError, "can't retain_grad on Tensor that has requires_grad=False"):
        torch.ones(2).retain_grad()


def test_leaf_rules():
    x = torch.ones(2, requires_grad=True)
    assert (x.is_leaf, (x * 2).is_leaf, torch.ones(2).is_leaf, (torch.ones(2) * 2).is_leaf,
            (x * 2).detach().is_leaf) == (True, False, True, True, True)
    assert ((x * 2).requires_grad, torch.ones(2).requires_grad) == (True, False)
    assert torch.zeros_like(x).requires_grad is False
    t = torch.ones(2) * 2
    r = t.requires_grad_()
    assert r is t and repr((t, t.is_leaf, t.grad_fn)) == "(tensor([2., 2.], requires_grad=True), True, None)"
    y = torch.ones(2)
    y.requires_grad = True
    assert (y.requires_grad, y.is_leaf) == (True, True)


def test_requires_grad_errors():
    leaf_msg = ("you can only change requires_grad flags of leaf variables. If you want to use a computed "
                "variable in a subgraph that doesn't require differentiation use var_no_grad = var.detach().")
    y = torch.ones(2, requires_grad=True) * 2
    with raises(RuntimeError, leaf_msg):
        y.requires_grad_(False)
    with raises(RuntimeError, leaf_msg):
        y.requires_grad = False
    with raises(RuntimeError, "only Tensors of floating point dtype can require gradients"):
        torch.tensor([1, 2]).requires_grad_()
    with raises(RuntimeError, "Only Tensors of floating point and complex dtype can require gradients"):
        torch.tensor([1, 2], requires_grad=True)


def test_grad_assignment_checks():
    x = torch.ones(2, requires_grad=True)
    with raises(RuntimeError, "attempting to assign a gradient of size '[3]' to a tensor of size '[2]'. "
                              "Please ensure that the gradient and the tensor are the same size"):
        x.grad = torch.ones(3)
    with pytest.raises(RuntimeError, match=re.escape(
            "attempting to assign a gradient with dtype 'double' to a tensor with grad_dtype 'Float'.")):
        x.grad = torch.ones(2, dtype=torch.float64)


def test_detach_and_data():
    x = torch.ones(3, requires_grad=True)
    d = x.detach()
    d.add_(4)
    assert (d.requires_grad, x.requires_grad, x._version, d._version) == (False, True, 1, 1)
    assert repr(x) == "tensor([5., 5., 5.], requires_grad=True)"
    y = x.exp()
    y.data.zero_()
    assert y._version == 0
    assert repr(y) == "tensor([0., 0., 0.], grad_fn=<ExpBackward0>)"
    z = x * 2
    z.detach_()
    assert (z.requires_grad, z.grad_fn, z.is_leaf) == (False, None, True)
    with pytest.raises(RuntimeError, match="^Can't detach views in-place. Use detach\\(\\) instead."):
        (x * 2)[0:2].detach_()


# ---------------------------------------------------------------------------------------------
# hooks


def test_leaf_hook_changes_gradient_and_can_be_removed():
    x = torch.tensor([1.0, 1.0], requires_grad=True)
    h = x.register_hook(lambda g: g * 10)
    (x * 3).sum().backward()
    first = x.grad.clone()
    h.remove()
    x.grad = None
    (x * 3).sum().backward()
    assert repr((first, x.grad)) == "(tensor([30., 30.]), tensor([3., 3.]))"
    assert type(h).__name__ == "RemovableHandle"


def test_hooks_run_in_registration_order_and_none_keeps_gradient():
    x = torch.ones(2, requires_grad=True)
    order = []
    x.register_hook(lambda g: order.append(1))
    x.register_hook(lambda g: order.append(2))
    (x * 3).sum().backward()
    assert order == [1, 2] and repr(x.grad) == "tensor([3., 3.])"


def test_non_leaf_hook_sees_its_gradient_and_can_replace_it():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = x * x
    seen = []
    y.register_hook(seen.append)
    (y * 2).sum().backward()
    assert repr(seen) == "[tensor([2., 2.])]" and repr(x.grad) == "tensor([4., 8.])"
    a = torch.ones(2, requires_grad=True)
    b = a * 2
    b.retain_grad()
    b.register_hook(lambda g: g * 10)
    b.sum().backward()
    assert repr((b.grad, a.grad)) == "(tensor([10., 10.]), tensor([20., 20.]))"


def test_nested_hooks_compose():
    x = torch.ones(2, requires_grad=True)
    y = x * 3
    z = y * 2
    z.register_hook(lambda g: g * 10)
    y.register_hook(lambda g: g + 1)
    z.sum().backward()
    assert same(x.grad, [(20 + 1) * 3] * 2)


def test_register_hook_on_tensor_without_grad():
    with raises(RuntimeError, "cannot register a hook on a tensor that doesn't require gradient"):
        torch.ones(2).register_hook(print)


def test_post_accumulate_grad_hook_sees_the_accumulated_grad():
    x = torch.ones(2, requires_grad=True)
    seen = []
    x.register_hook(lambda g: seen.append(("pre", repr(g))))
    handle = x.register_post_accumulate_grad_hook(lambda t: seen.append(("post", t is x, repr(t.grad))))
    (x * 2).sum().backward()
    (x * 2).sum().backward()
    assert seen == [("pre", "tensor([2., 2.])"), ("post", True, "tensor([2., 2.])"),
                    ("pre", "tensor([2., 2.])"), ("post", True, "tensor([4., 4.])")]
    handle.remove()
    seen.clear()
    (x * 2).sum().backward()
    assert seen == [("pre", "tensor([2., 2.])")]
    # autograd.grad accumulates nothing, so post-accumulate hooks do not run
    y = torch.ones(2, requires_grad=True)
    y.register_post_accumulate_grad_hook(lambda t: seen.append("y"))
    torch.autograd.grad((y * 2).sum(), y)
    assert seen == [("pre", "tensor([2., 2.])")]
    (y * 2).sum().backward(inputs=[y])
    assert seen[-1] == "y"


def test_post_accumulate_grad_hook_errors():
    with raises(RuntimeError, "post accumulate grad hooks cannot be registered on non-leaf tensors"):
        (torch.ones(2, requires_grad=True) * 2).register_post_accumulate_grad_hook(print)
    with raises(RuntimeError, "cannot register a hook on a tensor that doesn't require gradient"):
        torch.ones(2).register_post_accumulate_grad_hook(print)
    x = torch.ones(2, requires_grad=True)
    x.register_post_accumulate_grad_hook(lambda t: 5)
    with raises(TypeError, "expected Variable, but hook returned 'int'"):
        (x * 2).sum().backward()


# ---------------------------------------------------------------------------------------------
# autograd.grad


def test_autograd_grad():
    x = torch.tensor(3.0, requires_grad=True)
    b = torch.tensor(2.0, requires_grad=True)
    assert repr(torch.autograd.grad(x * 2, x)) == "(tensor(2.),)"
    assert x.grad is None
    assert repr(torch.autograd.grad(x * 2, [x, b], allow_unused=True)) == "(tensor(2.), None)"
    assert repr(torch.autograd.grad(x * 2, [x, b], materialize_grads=True)) == "(tensor(2.), tensor(0.))"
    with raises(RuntimeError, "The differentiated Tensor at index 1 appears to not have been used in the "
                              "graph. Set allow_unused=True if this is the desired behavior."):
        torch.autograd.grad(x * 2, [x, b])
    (g,) = torch.autograd.grad(x ** 3, x)
    assert repr((g, g.requires_grad)) == "(tensor(27.), False)"
    with raises(RuntimeError, "element 0 of tensors does not require grad and does not have a grad_fn"):
        torch.autograd.grad(g, x)
    v = torch.tensor([1.0, 2.0], requires_grad=True)
    with raises(RuntimeError, "grad can be implicitly created only for scalar outputs"):
        torch.autograd.grad(v * v, v)
    assert repr(torch.autograd.grad(v * v, v, torch.ones(2))) == "(tensor([2., 4.]),)"
    with raises(RuntimeError, "One of the differentiated Tensors does not require grad"):
        torch.autograd.grad((v * 2).sum(), torch.ones(2))


def test_grad_of_non_leaf_input():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    (gy,) = torch.autograd.grad((y * y).sum(), y)
    assert repr(gy) == "tensor([ 6., 12.])"


# ---------------------------------------------------------------------------------------------
# grad_fn objects


def test_grad_fn_graph():
    x = torch.ones(2, 2, requires_grad=True)
    y = x + 2
    assert y.grad_fn.name() == "AddBackward0" and str(y.grad_fn) == repr(y.grad_fn)
    assert re.fullmatch(r"<AddBackward0 object at 0x[0-9a-f]+>", repr(y.grad_fn))
    z = y * 3
    (fn, _), none = z.grad_fn.next_functions
    assert fn is y.grad_fn and none == (None, 0)
    sq = (x * x).grad_fn.next_functions
    assert sq[0][0] is sq[1][0] and sq[0][0].variable is x
    assert sq[0][0].name() == "torch::autograd::AccumulateGrad"
    assert y.grad_fn.metadata == {}
    assert x.grad_fn is None


def test_max_dim_named_tuple_repr():
    out = torch.tensor([[1.0, 5.0], [3.0, 2.0]], requires_grad=True).max(dim=1)
    assert repr(out) == ("torch.return_types.max(\nvalues=tensor([5., 3.], grad_fn=<MaxBackward0>),\n"
                         "indices=tensor([1, 0]))")
    values, indices = out
    assert out.values is values and out.indices is indices


def test_subgradient_conventions():
    def grad(f, values):
        x = torch.tensor(values, requires_grad=True)
        f(x).sum().backward()
        return x.grad
    assert repr(grad(lambda x: x.max(), [1.0, 3.0, 3.0])) == "tensor([0.0000, 0.5000, 0.5000])"
    assert repr(grad(lambda x: x.max(0)[0], [1.0, 3.0, 3.0])) == "tensor([0., 1., 0.])"
    assert repr(grad(lambda x: x.relu(), [-1.0, 0.0, 1.0])) == "tensor([0., 0., 1.])"
    assert repr(grad(lambda x: x.abs(), [-1.0, 0.0, 1.0])) == "tensor([-1.,  0.,  1.])"
    assert repr(grad(lambda x: x.clamp(0, 1), [-1.0, 0.0, 1.0])) == "tensor([0., 1., 1.])"
    assert repr(grad(lambda x: x.sqrt(), [0.0])) == "tensor([inf])"
    assert repr(grad(lambda x: x[torch.tensor([0, 0, 2])], [1.0, 1.0, 1.0])) == "tensor([2., 0., 1.])"
    assert repr(grad(lambda x: x / 0, [1.0, 2.0])) == "tensor([inf, inf])"


# ---------------------------------------------------------------------------------------------
# conversions


def test_conversions_and_their_errors():
    x = torch.ones(2, requires_grad=True)
    with raises(RuntimeError, "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() "
                              "instead."):
        x.numpy()
    assert (x * 2).sum().item() == 4.0
    with raises(RuntimeError, "a Tensor with 2 elements cannot be converted to Scalar"):
        x.item()
    assert x.tolist() == [1.0, 1.0]
    with raises(ValueError, "only one element tensors can be converted to Python scalars"):
        float(x)
    with raises(RuntimeError, "Boolean value of Tensor with more than one value is ambiguous"):
        bool(x)
    assert float(torch.tensor([2.5])) == 2.5 and int(torch.tensor(3)) == 3 and bool(torch.tensor([1]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(x.detach().numpy(), np.ndarray)


def test_copy_construct_warns():
    with pytest.warns(UserWarning, match="^To copy construct from a tensor, it is recommended"):
        t = torch.tensor(torch.ones(2))
    assert repr(t) == "tensor([1., 1.])"
