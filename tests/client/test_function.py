"""torch.autograd.Function against PyTorch 2.13: forward/backward run on the client, the
backward request is cut at the Function, and every error text is PyTorch's."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import gradserve as torch
from gradserve._autograd import ERR_BACKWARD_TWICE
from gradserve.autograd import Function


def raises(exc, message):
    return pytest.raises(exc, match="^" + re.escape(message) + "$")


def same(t, expected) -> bool:
    return t is not None and np.allclose(t.detach().numpy(), np.asarray(expected, np.float64))


class Exp(Function):
    @staticmethod
    def forward(ctx, i):
        result = i.exp()
        ctx.save_for_backward(result)
        return result

    @staticmethod
    def backward(ctx, grad_output):
        (result,) = ctx.saved_tensors
        return grad_output * result


class Square(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return a * a

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return 2 * a * g


class MulAdd(Function):
    """Two inputs, two outputs: (a*b, a+b)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b, a + b

    @staticmethod
    def backward(ctx, g1, g2):
        a, b = ctx.saved_tensors
        return g1 * b + g2, g1 * a + g2


def one_function(name: str, backward, forward=lambda ctx, a: a * 1) -> type:
    return type(name, (Function,), {"forward": staticmethod(forward), "backward": staticmethod(backward)})


# ---------------------------------------------------------------------------------------------
# the reference example


def test_exp_function_matches_the_reference():
    x = torch.tensor([0.0, 1.0], requires_grad=True)
    y = Exp.apply(x)
    assert repr(y) == "tensor([1.0000, 2.7183], grad_fn=<ExpBackward>)"
    assert re.fullmatch(r"<torch\.autograd\.function\.ExpBackward object at 0x[0-9a-f]+>", repr(y.grad_fn))
    assert y.grad_fn.name() == "ExpBackward"
    assert isinstance(y.grad_fn, torch.autograd.function.BackwardCFunction)
    assert y.grad_fn.next_functions[0][0].variable is x
    assert y.grad_fn.saved_tensors[0] is y
    y.sum().backward()
    assert repr(x.grad) == "tensor([1.0000, 2.7183])"
    with raises(RuntimeError, ERR_BACKWARD_TWICE):
        y.sum().backward()
    with raises(RuntimeError, ERR_BACKWARD_TWICE):
        y.grad_fn.saved_tensors  # noqa: B018


def test_forward_runs_without_grad_and_its_ops_are_not_in_the_outer_graph():
    seen = {}

    class Probe(Function):
        @staticmethod
        def forward(ctx, a):
            seen["forward"] = torch.is_grad_enabled()
            inner = a * 3
            seen["inner"] = (inner.requires_grad, inner.grad_fn)
            return inner + 1

        @staticmethod
        def backward(ctx, g):
            seen["backward"] = (torch.is_grad_enabled(), g.requires_grad)
            return g * 3

    x = torch.ones(2, requires_grad=True)
    y = Probe.apply(x)
    assert y.grad_fn.name() == "ProbeBackward"
    assert [type(f).__name__ for f, _ in y.grad_fn.next_functions] == ["AccumulateGrad"]
    y.sum().backward()
    assert seen == {"forward": False, "inner": (False, None), "backward": (False, False)}
    assert same(x.grad, [3, 3])


def test_retain_graph_allows_a_second_backward_and_nodes_saving_nothing_rerun():
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = Square.apply(Square.apply(x)).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert same(x.grad, [8, 64, 216])
    with raises(RuntimeError, ERR_BACKWARD_TWICE):
        y.backward()
    Twice = one_function("Twice", lambda ctx, g: g * 2)
    x.grad = None
    out = Twice.apply(x).sum()
    out.backward()
    out.backward()
    assert same(x.grad, [4, 4, 4])


# ---------------------------------------------------------------------------------------------
# ctx


def test_ctx_needs_input_grad_attributes_and_non_tensor_arguments():
    class MulConst(Function):
        @staticmethod
        def forward(ctx, a, k):
            ctx.k = k
            return a * k

        @staticmethod
        def backward(ctx, g):
            ctx.seen = ctx.needs_input_grad
            return g * ctx.k, None

    x = torch.ones(2, requires_grad=True)
    y = MulConst.apply(x, 5.0)
    assert y.grad_fn.k == 5.0
    y.sum().backward()
    assert repr(x.grad) == "tensor([5., 5.])"
    assert y.grad_fn.seen == (True, False)
    z = MulAdd.apply(torch.ones(2), x * 1)
    assert z[0].grad_fn.needs_input_grad == (False, True)
    assert [f if f is None else f.name() for f, _ in z[0].grad_fn.next_functions] == [None, "MulBackward0"]


def test_setup_context_style_binds_keyword_arguments():
    class Scale(Function):
        @staticmethod
        def forward(a, k=2.0):
            return a * k

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.k = inputs[1]
            ctx.output_grad_fn = output.grad_fn
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx, g):
            return g * ctx.k, None

    x = torch.ones(2, requires_grad=True)
    y = Scale.apply(x, k=3.0)
    assert y.grad_fn.output_grad_fn is None
    y.sum().backward()
    assert repr(x.grad) == "tensor([3., 3.])"
    x.grad = None
    Scale.apply(x).sum().backward()
    assert repr(x.grad) == "tensor([2., 2.])"
    with raises(TypeError, "forward() got an unexpected keyword argument 'k'"):
        Exp.apply(x, k=3.0)


def test_no_input_requiring_grad_or_no_grad_mode_gives_a_plain_tensor():
    out = Exp.apply(torch.ones(2))
    assert (out.requires_grad, out.grad_fn) == (False, None)
    x = torch.ones(2, requires_grad=True)
    with torch.no_grad():
        out = Exp.apply(x)
    assert (out.requires_grad, out.grad_fn) == (False, None)


def test_mark_non_differentiable_and_non_tensor_outputs():
    got = []

    class ArgMax(Function):
        @staticmethod
        def forward(ctx, a):
            idx = a.argmax()
            ctx.mark_non_differentiable(idx)
            return a * 2, idx, a * 3, "label"

        @staticmethod
        def backward(ctx, g, g_idx, g3, g_label):
            got.extend([g, g_idx, g3, g_label])
            return g * 2

    x = torch.tensor([1.0, 3.0], requires_grad=True)
    out, idx, out3, label = ArgMax.apply(x)
    assert (idx.requires_grad, idx.grad_fn, label) == (False, None, "label")
    assert out3.grad_fn is out.grad_fn
    out.sum().backward()
    assert [repr(g) for g in got] == ["tensor([1., 1.])", "tensor(0)", "tensor([0., 0.])", "None"]
    assert repr(x.grad) == "tensor([2., 2.])"

    class Half(Function):
        @staticmethod
        def forward(ctx, a):
            out = a * 2
            ctx.mark_non_differentiable(out)
            return out

    out = Half.apply(x)
    assert (out.requires_grad, out.grad_fn) == (False, None)


def test_set_materialize_grads():
    got = []

    def forward(ctx, a, materialize=True):
        ctx.set_materialize_grads(materialize)
        return a * 2, a * 3

    def backward(ctx, g1, g2):
        got.append((g1, g2))
        return sum(g * k for g, k in ((g1, 2), (g2, 3)) if g is not None), None

    Pair = type("Pair", (Function,), {"forward": staticmethod(forward), "backward": staticmethod(backward)})
    x = torch.ones(2, requires_grad=True)
    Pair.apply(x, True)[1].sum().backward()
    assert repr(got[-1]) == "(tensor([0., 0.]), tensor([1., 1.]))"
    Pair.apply(x, False)[1].sum().backward()
    assert repr(got[-1]) == "(None, tensor([1., 1.]))"
    assert repr(x.grad) == "tensor([6., 6.])"


def test_saved_tensors_are_the_saved_objects_and_checked_for_in_place_changes():
    class Keep(Function):
        @staticmethod
        def forward(ctx, a, b):
            r = (a * b).exp()
            ctx.save_for_backward(a, None, b, r)
            return r

        @staticmethod
        def backward(ctx, g):
            a, nothing, b, r = ctx.saved_tensors
            assert nothing is None
            return g * r * b, g * r * a

    x = torch.ones(2, requires_grad=True)
    b = torch.full((2,), 2.0)
    r = Keep.apply(x, b)
    saved = r.grad_fn.saved_tensors
    assert saved[0] is x and saved[2] is b and saved[3] is r
    y = x * 1
    r = Keep.apply(y, b)
    y.add_(1)
    with raises(RuntimeError, "one of the variables needed for gradient computation has been modified by "
                              "an inplace operation: [torch.FloatTensor [2]], which is output 0 of Add, "
                              "is at version 1; expected version 0 instead. Hint: enable anomaly detection "
                              "to find the operation that failed to compute its gradient, with "
                              "torch.autograd.set_detect_anomaly(True, check_nan=False)."):
        r.sum().backward()
    r = Keep.apply(x * 1, b)
    r.add_(1)
    with pytest.raises(RuntimeError, match=r"\[torch.FloatTensor \[2\]\], which is output 0 of Keep, is "
                                           r"at version 1; expected version 0 instead"):
        r.sum().backward()


# ---------------------------------------------------------------------------------------------
# errors


def test_backward_result_errors():
    x = torch.ones(2, requires_grad=True)
    BadNumGrads = one_function("BadNumGrads", lambda ctx, g: g, lambda ctx, a, b: a * b)
    with raises(RuntimeError, "function BadNumGradsBackward returned an incorrect number of gradients "
                              "(expected 2, got 1)"):
        BadNumGrads.apply(x, torch.ones(2)).sum().backward()
    BadShape = one_function("BadShape", lambda ctx, g: torch.ones(3))
    with raises(RuntimeError, "Function BadShapeBackward returned an invalid gradient at index 0 - got [3] "
                              "but expected shape compatible with [2]"):
        BadShape.apply(x).sum().backward()
    BadSecond = one_function("BadSecond", lambda ctx, g: (None, g, torch.ones(3)),
                             lambda ctx, k, a, b: a * b * k)
    with raises(RuntimeError, "Function BadSecondBackward returned an invalid gradient at index 1 - got "
                              "[3] but expected shape compatible with [2]"):
        BadSecond.apply(2.0, torch.ones(2), x * 1).sum().backward()
    # a wrong gradient for an input that needs none is ignored, as in torch
    BadSecond.apply(2.0, x, torch.ones(2)).sum().backward()
    TooMany = one_function("TooMany", lambda ctx, g: (g, g))
    with raises(RuntimeError, "function TooManyBackward returned an incorrect number of gradients "
                              "(expected 1, got 2)"):
        TooMany.apply(x).sum().backward()
    x.grad = None
    one_function("ExtraNones", lambda ctx, g: (g, None, None)).apply(x).sum().backward()
    assert repr(x.grad) == "tensor([1., 1.])"
    NotNone = one_function("NotNone", lambda ctx, g: (g, g), lambda ctx, a, k: a * k)
    with raises(RuntimeError, "function NotNoneBackward returned a gradient different than None at "
                              "position 2, but the corresponding forward input was not a Variable"):
        NotNone.apply(x, 2.0).sum().backward()
    Scalar = one_function("Scalar", lambda ctx, g: 3.0)
    with raises(RuntimeError, "expected Variable or None (got float)"):
        Scalar.apply(x).sum().backward()


def test_forward_and_definition_errors():
    x = torch.ones(2, requires_grad=True)

    class SaveInt(Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a, 3)
            return a * 2

    with raises(TypeError, "save_for_backward can only save variables, but argument 1 is of type int"):
        SaveInt.apply(x)
    SaveInt.apply(torch.ones(2))          # nothing is saved when no gradient is needed
    with pytest.warns(DeprecationWarning, match="should not be instantiated"):
        legacy = Exp()
    with raises(RuntimeError, "Legacy autograd function with non-static forward method is deprecated. "
                              "Please use new-style autograd function with static forward method. "
                              "(Example: https://pytorch.org/docs/stable/autograd.html#torch.autograd.Function)"):
        legacy(x)

    class NoForward(Function):
        pass

    with raises(NotImplementedError, "You must implement the forward function for custom autograd.Function."):
        NoForward.apply(x)

    class NoBackward(Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

    with raises(NotImplementedError, "You must implement either the backward or vjp method for your custom "
                                     "autograd.Function to use it with backward mode AD."):
        NoBackward.apply(x).sum().backward()


def test_gradient_is_summed_to_the_input_shape_and_cast_to_its_dtype():
    x = torch.ones(2, requires_grad=True)
    one_function("Wide", lambda ctx, g: torch.ones(3, 2)).apply(x).sum().backward()
    assert repr(x.grad) == "tensor([3., 3.])"
    x.grad = None
    one_function("Double", lambda ctx, g: g.double() * 2).apply(x).sum().backward()
    assert repr(x.grad) == "tensor([2., 2.])"


# ---------------------------------------------------------------------------------------------
# in place: mark_dirty


def test_mark_dirty():
    class Double(Function):
        @staticmethod
        def forward(ctx, a):
            a.mul_(2)
            ctx.mark_dirty(a)
            return a

        @staticmethod
        def backward(ctx, g):
            return g * 3

    x = torch.ones(3, requires_grad=True)
    y = x * 1
    z = Double.apply(y)
    assert z is y and y._version == 2
    assert repr(z) == "tensor([2., 2., 2.], grad_fn=<DoubleBackward>)"
    z.sum().backward()
    assert repr(x.grad) == "tensor([3., 3., 3.])"
    with raises(RuntimeError, "a leaf Variable that requires grad has been used in an in-place operation."):
        Double.apply(torch.ones(2, requires_grad=True))

    # through a view: the base's history becomes CopySlices, the view's is rebuilt from it
    x.grad = None
    base = x * 1
    view = base[0:2]
    out = Double.apply(view)
    assert out is view and (view._version, base._version) == (2, 2)
    assert repr(out) == "tensor([2., 2.], grad_fn=<AsStridedBackward0>)"
    assert repr(base) == "tensor([2., 2., 1.], grad_fn=<CopySlices>)"
    base.sum().backward()
    assert repr(x.grad) == "tensor([3., 3., 1.])"
    with raises(RuntimeError, "a view of a leaf Variable that requires grad is being used in an in-place "
                              "operation."):
        Double.apply(x[0:2])

    class Forgot(Function):
        @staticmethod
        def forward(ctx, a):
            a.mul_(2)
            ctx.mark_dirty(a)
            return a * 1

    with raises(RuntimeError, "Some elements marked as dirty during the forward method were not returned "
                              "as output. The inputs that are modified inplace must all be outputs of the "
                              "Function."):
        Forgot.apply(x * 1)


def test_returning_an_input_gives_a_view_of_it():
    Same = one_function("Same", lambda ctx, g: g * 7, lambda ctx, a: a)
    b = torch.ones(2, requires_grad=True)
    out = Same.apply(b)
    assert out is not b and out._base is b
    assert repr(out) == "tensor([1., 1.], grad_fn=<SameBackward>)"
    out.sum().backward()
    assert repr(b.grad) == "tensor([7., 7.])"


# ---------------------------------------------------------------------------------------------
# the cut in the backward pass


def test_functions_hooks_and_retained_grads_compose_as_in_torch():
    # Values printed by PyTorch 2.13 for the same program.
    order = []
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    w = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    h = x * 2
    h.register_hook(lambda g: order.append("h") or g * 3)
    s = Square.apply(h)
    s.register_hook(lambda g: order.append("s"))
    p, q = MulAdd.apply(s, w)
    q.retain_grad()
    p.register_hook(lambda g: order.append("p") or g + 1)
    (p * 3 + q.exp() + x.sin()).sum().backward()
    assert order == ["p", "s", "h"]
    assert np.allclose(x.grad.numpy(), [2.2090e03, 1.5691e08, 2.2936e18], rtol=1e-4)
    assert np.allclose(w.grad.numpy(), [1.0602e02, 3.2691e06, 3.1856e16], rtol=1e-4)
    assert np.allclose(q.grad.numpy(), [9.0017e01, 3.2690e06, 3.1856e16], rtol=1e-4)


def test_multiple_outputs_share_one_grad_fn_with_output_numbers():
    x = torch.ones(2, requires_grad=True)
    p, q = MulAdd.apply(x, x * 1)
    assert p.grad_fn is q.grad_fn
    nf = (p + q).grad_fn.next_functions
    assert nf[0][0] is p.grad_fn and [nr for _, nr in nf] == [0, 1]
    assert (q * 1).grad_fn.next_functions[0][1] == 1


def test_autograd_grad_and_backward_inputs_through_functions():
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    w = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    p, q = MulAdd.apply(Square.apply(x), w)
    loss = (p * q).sum()
    gp, gq, gx, gw = torch.autograd.grad(loss, [p, q, x, w], retain_graph=True)
    assert repr(gp) == "tensor([ 1.5000,  3.0000, 11.0000])"
    assert repr(gq) == "tensor([ 0.5000, -4.0000, 18.0000])"
    assert repr(gx) == "tensor([  2.5000, -28.0000, 240.0000])"
    assert repr(gw) == "tensor([  2.,   8., 117.])"
    assert x.grad is None
    p, q = MulAdd.apply(Square.apply(x), w)
    (p + q).sum().backward(inputs=[w])
    assert x.grad is None and repr(w.grad) == "tensor([ 2.,  5., 10.])"


def test_same_tensor_twice_output_used_twice_and_float64():
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    MulAdd.apply(x, x)[0].sum().backward()
    assert repr(x.grad) == "tensor([2., 4., 6.])"
    x.grad = None
    out = Square.apply(x)
    (out * out).sum().backward()
    assert repr(x.grad) == "tensor([  4.,  32., 108.])"
    d = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    Square.apply(d).backward(torch.ones(2, dtype=torch.float64))
    assert repr(d.grad) == "tensor([2., 4.], dtype=torch.float64)"


def test_unreached_function_backward_does_not_run():
    ran = []
    Noisy = one_function("Noisy", lambda ctx, g: ran.append(1) or g)
    x = torch.ones(2, requires_grad=True)
    w = torch.ones(2, requires_grad=True)
    (Noisy.apply(x) + w).sum().backward(inputs=[w])
    assert ran == [] and x.grad is None and repr(w.grad) == "tensor([1., 1.])"


def test_a_function_costs_one_evaluate_and_one_follow_up_request(counting):
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = Square.apply(x * 2)
    counting.calls.clear()
    (y * 3).sum().backward()
    assert [kind for kind, _ in counting.calls] == ["evaluate", "backward", "evaluate", "backward"]
    # the first request stops at the Function's output: an engine leaf, not the ops of forward
    first = counting.calls[1][1]
    assert [n.op for n in first.nodes] == ["mul", "mul", "sum"]
    assert repr(x.grad) == "tensor([24., 48.])"


def test_function_through_a_real_server(remote):
    x = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
    y = Exp.apply(x * 2)
    (y * 3).sum().backward()
    assert np.allclose(x.grad.numpy(), 6 * np.exp([0.0, 2.0]))


def test_functions_import_like_torch():
    from gradserve.autograd.function import FunctionCtx, InplaceFunction, once_differentiable

    assert torch.autograd.Function is Function
    assert issubclass(InplaceFunction, Function)

    class Once(Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        @once_differentiable
        def backward(ctx, g):
            return g * 2

    x = torch.ones(1, requires_grad=True)
    Once.apply(x).sum().backward()
    assert repr(x.grad) == "tensor([2.])"
    assert isinstance(Once.apply(x).grad_fn, FunctionCtx)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Once.apply(x)
