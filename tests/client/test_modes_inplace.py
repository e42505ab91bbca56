"""Grad modes (thread-local), inference mode, in-place ops and the version counter."""

from __future__ import annotations

import re
import threading

import pytest

import gradserve as torch


def raises(exc, message):
    return pytest.raises(exc, match="^" + re.escape(message) + "$")


VERSION_ERROR = (
    "one of the variables needed for gradient computation has been modified by an inplace operation: "
    "[torch.FloatTensor [3]]{} is at version 1; expected version 0 instead. Hint: enable anomaly detection "
    "to find the operation that failed to compute its gradient, with "
    "torch.autograd.set_detect_anomaly(True, check_nan=False).")


# ---------------------------------------------------------------------------------------------
# grad modes


def test_no_grad_context_and_decorators():
    x = torch.ones(2, requires_grad=True)
    with torch.no_grad():
        y = x * 2
        enabled = torch.is_grad_enabled()
        z = torch.ones(2, requires_grad=True)
    assert (y.requires_grad, y.grad_fn, y.is_leaf, enabled, torch.is_grad_enabled()) == (
        False, None, True, False, True)
    assert (z.requires_grad, z.is_leaf) == (True, True)

    @torch.no_grad()
    def f():
        return (x * 2).requires_grad

    @torch.no_grad
    def g():
        return (x * 2).requires_grad

    assert (f(), g()) == (False, False)
    assert re.fullmatch(r"<gradserve\.autograd\.grad_mode\.no_grad object at 0x[0-9a-f]+>",
                        repr(torch.no_grad()))


def test_enable_and_set_grad_enabled():
    x = torch.ones(2, requires_grad=True)
    with torch.no_grad():
        with torch.enable_grad():
            inner = (x * 2).requires_grad

        @torch.enable_grad()
        def f():
            return (x * 2).requires_grad
        decorated = f()
    assert (inner, decorated) == (True, True)
    with torch.set_grad_enabled(False):
        a = (x * 2).requires_grad
    torch.set_grad_enabled(False)
    b = (x * 2).requires_grad
    torch.set_grad_enabled(True)
    c = (x * 2).requires_grad
    assert (a, b, c) == (False, False, True)
    with torch.no_grad():
        with torch.set_grad_enabled(True):
            nested = torch.is_grad_enabled()
        after = torch.is_grad_enabled()
    assert (nested, after) == (True, False)


def test_grad_mode_is_thread_local():
    seen = {}
    entered, release = threading.Event(), threading.Event()

    def worker():
        with torch.no_grad():
            entered.set()
            release.wait(5)
            seen["worker"] = torch.is_grad_enabled()

    t = threading.Thread(target=worker)
    t.start()
    entered.wait(5)
    seen["main"] = torch.is_grad_enabled()
    x = torch.ones(2, requires_grad=True)
    seen["main_records"] = (x * 2).requires_grad
    release.set()
    t.join()
    assert seen == {"worker": False, "main": True, "main_records": True}


def test_inference_mode():
    x = torch.ones(2, requires_grad=True)
    with torch.inference_mode():
        y = x * 2
    assert (y.requires_grad, y.is_inference(), x.is_inference()) == (False, True, False)
    with raises(RuntimeError, "Inference tensors cannot be saved for backward. Please do not use Tensors "
                              "created in inference mode in computation tracked by autograd. To work "
                              "around this, you can make a clone to get a normal tensor and use it in "
                              "autograd, or use `torch.no_grad()` instead of `torch.inference_mode()`."):
        y * x
    with raises(RuntimeError, "Inplace update to inference tensor outside InferenceMode is not allowed.You "
                              "can make a clone to get a normal tensor before doing inplace update.See "
                              "https://github.com/pytorch/rfcs/pull/17 for more details."):
        y.add_(1)
    with torch.inference_mode(False):
        assert (x * 2).requires_grad


# ---------------------------------------------------------------------------------------------
# in-place ops and the version counter


def test_version_counter():
    a = torch.ones(3)
    v0 = a._version
    a.add_(1)
    a[0] = 2
    a.mul_(2)
    assert (v0, a._version) == (0, 3)
    assert repr(a) == "tensor([4., 4., 4.])"


def test_leaf_in_place_errors_and_no_grad_updates():
    x = torch.ones(3, requires_grad=True)
    with raises(RuntimeError, "a leaf Variable that requires grad is being used in an in-place operation."):
        x.add_(1)
    with raises(RuntimeError, "a view of a leaf Variable that requires grad is being used in an in-place "
                              "operation."):
        x[0] = 2.0
    with raises(RuntimeError, "a view of a leaf Variable that requires grad is being used in an in-place "
                              "operation."):
        x[0:2].mul_(2)
    with torch.no_grad():
        x.mul_(2)
    assert repr(x) == "tensor([2., 2., 2.], requires_grad=True)" and x._version == 1 and x.is_leaf


def test_optimizer_style_update():
    w = torch.ones(2, requires_grad=True)
    for _ in range(3):
        loss = (w * w).sum()
        loss.backward()
        with torch.no_grad():
            w -= 0.25 * w.grad
        w.grad.zero_()
    assert repr(w) == "tensor([0.1250, 0.1250], requires_grad=True)"


def test_in_place_on_non_leaf_rebases_history():
    a = torch.ones(3, requires_grad=True)
    b = a * 2
    b.add_(1)
    b.sum().backward()
    assert b.grad_fn.name() == "AddBackward0" and repr(a.grad) == "tensor([2., 2., 2.])"


def test_saved_tensor_modified_in_place():
    x = torch.ones(3, requires_grad=True)
    y = x.exp()
    y.detach().zero_()
    with raises(RuntimeError, VERSION_ERROR.format(", which is output 0 of Exp,")):
        y.sum().backward()
    s = x.sigmoid()
    s.mul_(2)
    with raises(RuntimeError, VERSION_ERROR.format(", which is output 0 of Sigmoid,")):
        s.sum().backward()
    b = x + 1
    c = b * b
    b.add_(1)
    with raises(RuntimeError, VERSION_ERROR.format(", which is output 0 of Add,")):
        c.sum().backward()
    leaf = torch.ones(3, requires_grad=True)
    other = torch.ones(3)
    d = leaf * other
    other.add_(1)
    with raises(RuntimeError, VERSION_ERROR.format("")):
        d.sum().backward()


def test_in_place_through_views_of_non_leaves():
    a = torch.ones(3, requires_grad=True)
    b = a * 2
    v = b[0:2]
    v.mul_(3)
    b.sum().backward()
    assert (b.grad_fn.name(), v.grad_fn.name()) == ("torch::autograd::CopySlices", "AsStridedBackward0")
    assert repr(a.grad) == "tensor([6., 6., 2.])" and repr(b) == "tensor([6., 6., 2.], grad_fn=<CopySlices>)"
    m = torch.ones(2, 3, requires_grad=True)
    n = m * 1
    n[0] = 5.0
    n.sum().backward()
    assert n.grad_fn.name() == "torch::autograd::CopySlices"
    assert repr(m.grad) == "tensor([[0., 0., 0.],\n        [1., 1., 1.]])"


def test_views_follow_their_base():
    base = torch.zeros(2, 3)
    row = base[1]
    flat = base.view(6)
    base.add_(1)
    row.mul_(5)
    assert repr(base) == "tensor([[1., 1., 1.],\n        [5., 5., 5.]])"
    assert repr(flat) == "tensor([1., 1., 1., 5., 5., 5.])"
    t = base.t()
    assert not t.is_contiguous()
    with pytest.raises(RuntimeError, match="^view size is not compatible"):
        t.view(6)


def test_setitem_with_tensors_and_masks():
    x = torch.zeros(2, 3)
    x[:, 1] = torch.tensor([1.0, 2.0])
    x[x == 0] = -1.0
    x[[0, 1], [2, 2]] = 7.0
    assert repr(x) == "tensor([[-1.,  1.,  7.],\n        [-1.,  2.,  7.]])"
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    y = torch.zeros(2, 2)
    y[0] = w * 3
    y.sum().backward()
    assert y.grad_fn.name() == "torch::autograd::CopySlices" and repr(w.grad) == "tensor([3., 3.])"
