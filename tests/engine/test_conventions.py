"""PyTorch's edge conventions (reference §A16) and forward values, as explicit expected numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from engine_util import Const, forward, grads

F32 = np.float32


def a(*values, dtype=F32):
    return np.array(values, dtype)


# ---------------------------------------------------------------------------------------------
# §A16 subgradients and special points


@pytest.mark.parametrize("op, x, attrs, expected", [
    ("relu", a(-1, 0, 1), {}, a(0, 0, 1)),
    ("abs", a(-1, 0, 1), {}, a(-1, 0, 1)),
    ("clamp", a(-1, 0, 1), {"min": 0, "max": 1}, a(0, 1, 1)),
    ("clamp", a(-2, .5, 2), {"min": -1, "max": 1}, a(0, 1, 0)),
    ("clamp_min", a(-1, 0, 1), {"min": 0}, a(0, 1, 1)),
    ("clamp_max", a(-1, 0, 1), {"max": 0}, a(1, 1, 0)),
    ("hardtanh", a(-1, 0, 1), {}, a(0, 1, 0)),
    ("sqrt", a(0), {}, a(np.inf)),
    ("pow", a(0), {"other": 0}, a(0)),
    ("pow", a(0), {"other": 2}, a(0)),
    ("pow", a(0), {"other": 0.5}, a(np.inf)),
    ("max", a(1, 3, 3), {}, a(0, .5, .5)),
    ("min", a(1, 1, 3), {}, a(.5, .5, 0)),
    ("amax", a(1, 3, 3), {"dim": 0}, a(0, .5, .5)),
    ("max_dim", a(1, 3, 3), {"dim": 0}, a(0, 1, 0)),
    ("min_dim", a(2, 1, 1), {"dim": 0}, a(0, 1, 0)),
    ("sign", a(-2, 0, 3), {}, a(0, 0, 0)),
    ("floor", a(-1.5, 0.5), {}, a(0, 0)),
    ("ceil", a(-1.5, 0.5), {}, a(0, 0)),
    ("round", a(-1.5, 0.5), {}, a(0, 0)),
    ("trunc", a(-1.5, 0.5), {}, a(0, 0)),
    ("norm", a(0, 0), {}, a(0, 0)),
    ("leaky_relu", a(-1, 0, 1), {}, a(0.01, 0.01, 1)),
    ("elu", a(-1, 0, 1), {}, a(math.exp(-1), 1, 1)),
])
def test_unary_edge_gradients(op, x, attrs, expected):
    (g,) = grads(op, x, **attrs)
    np.testing.assert_allclose(g, expected, rtol=1e-6)
    assert g.dtype == x.dtype


def test_maximum_minimum_ties_share_half():
    ga, gb = grads("maximum", a(1, 2, 3), a(1, 5, 0))
    np.testing.assert_array_equal(ga, a(.5, 0, 1))
    np.testing.assert_array_equal(gb, a(.5, 1, 0))
    ga, gb = grads("minimum", a(1, 2, 3), a(1, 5, 0))
    np.testing.assert_array_equal(ga, a(.5, 1, 0))


def test_pow_tensor_exponent_edges():
    # d/dy 0**y = 0 for y >= 0, -inf for y = -1; (-2)**2.5 w.r.t. the exponent is nan
    _, gy = grads("pow", a(0, 0, 0, 0), a(2, .5, 0, -1))
    np.testing.assert_array_equal(gy, a(0, 0, 0, -np.inf))
    _, gy = grads("pow", a(-2), a(2.5))
    assert np.isnan(gy).all()


def test_rpow_gradient():
    (g,) = grads("rpow", a(0, 1, 2), other=2.0)
    np.testing.assert_allclose(g, a(1, 2, 4) * math.log(2), rtol=1e-6)


def test_where_untaken_branch_is_not_masked():
    x = a(0, 1)
    graph_value = forward("log", x)
    assert graph_value[0] == -np.inf
    # where(a > 0, a.log(), 0): the log branch's gradient 1/0 = inf times 0 gives nan in torch;
    # in the engine that product happens in the log node: grad of log at 0 with a zero seed
    (g,) = grads("log", x, cotangent=a(0, 1))
    assert np.isnan(g[0]) and g[1] == 1


def test_division_by_zero_gradient_is_inf():
    ga, _ = grads("div", a(1), a(0))
    assert ga[0] == np.inf


def test_repeated_indices_accumulate():
    (g, _) = grads("getitem", a(1, 2, 3), np.array([0, 0, 2]), index=("tensor",))
    np.testing.assert_array_equal(g, a(2, 0, 1))
    (g, _) = grads("index_select", a(1, 2, 3), np.array([0, 0, 2]), dim=0)
    np.testing.assert_array_equal(g, a(2, 0, 1))


def test_var_std_default_unbiased():
    x = a(1, 2, 3, 4)
    assert forward("var", x) == pytest.approx(1.6667, abs=1e-4)
    assert forward("var", x, correction=0) == pytest.approx(1.25)
    assert forward("var", x, unbiased=False) == pytest.approx(1.25)
    assert forward("std", x) == pytest.approx(math.sqrt(5 / 3))


def test_mean_of_empty_is_nan():
    out = forward("mean", np.zeros((0,), F32))
    assert out.shape == () and np.isnan(out)
    assert forward("sum", np.zeros((0,), F32)) == 0


def test_cross_entropy_mean_over_non_ignored():
    z = np.array([[1., 2., 3.], [1., 1., 1.], [0., 0., 5.]], F32)
    t = np.array([2, -100, 0])
    loss = forward("cross_entropy", z, t)
    sm = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    expected = -(np.log(sm[0, 2]) + np.log(sm[2, 0])) / 2
    assert loss == pytest.approx(expected, rel=1e-6)
    (g, _) = grads("cross_entropy", z, t)
    onehot = np.zeros_like(z)
    onehot[0, 2] = onehot[2, 0] = 1
    want = (sm - onehot) / 2
    want[1] = 0
    np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-7)


def test_cross_entropy_label_smoothing_and_weight_values():
    z = np.array([[0.5, -1., 2.], [1., 0., -1.]])
    t = np.array([2, 0])
    w = np.array([1., 2., 3.])
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    eps, n = 0.1, 3
    nll = -(w[t] * logp[[0, 1], t]).sum() / w[t].sum()
    smooth = -(logp * w).sum() / w[t].sum()
    expected = (1 - eps) * nll + eps / n * smooth
    assert forward("cross_entropy", z, t, Const(w), label_smoothing=eps) == pytest.approx(expected)


def test_cross_entropy_probability_targets():
    z = np.array([[0.5, -1., 2.], [1., 0., -1.]])
    p = np.array([[0.2, 0.3, 0.5], [1., 0., 0.]])
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    assert forward("cross_entropy", z, Const(p)) == pytest.approx(-(logp * p).sum() / 2)
    np.testing.assert_allclose(forward("cross_entropy", z, Const(p), reduction="none"),
                               -(logp * p).sum(1))


def test_nll_and_cross_entropy_reject_out_of_range_targets():
    from gradserve.engine import GraphError
    with pytest.raises(GraphError, match="Target 3 is out of bounds"):
        forward("nll_loss", np.zeros((2, 3)), np.array([0, 3]))


def test_gelu_and_erf_match_math_erf():
    x = np.linspace(-4, 4, 17)
    np.testing.assert_allclose(forward("erf", x), [math.erf(v) for v in x], rtol=0, atol=1e-16)
    exact = forward("gelu", x)
    np.testing.assert_allclose(exact, [v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])
    tanh = forward("gelu", x, approximate="tanh")
    np.testing.assert_allclose(tanh, exact, atol=1e-3)


def test_softplus_threshold_and_sigmoid_extremes():
    np.testing.assert_allclose(forward("softplus", a(30, 0)), a(30, math.log(2)), rtol=1e-6)
    out = forward("sigmoid", a(-1000, 0, 1000))
    np.testing.assert_array_equal(out, a(0, .5, 1))


def test_dropout_seed_is_deterministic_and_scaled():
    x = np.ones((100,), F32)
    first = forward("dropout", x, p=0.25, seed=3)
    assert np.array_equal(first, forward("dropout", x, p=0.25, seed=3))
    assert set(np.unique(first)) <= {0.0, np.float32(1 / 0.75)}
    (g,) = grads("dropout", x, p=0.25, seed=3)
    np.testing.assert_array_equal(g, first)
    masked = forward("dropout", x[:4], np.array([True, False, True, False]), p=0.5)
    np.testing.assert_array_equal(masked, a(2, 0, 2, 0))


def test_getitem_follows_torch_not_numpy_for_separated_tensor_indices():
    x = np.arange(60.).reshape(3, 4, 5)
    # torch: x[0, :, [1, 2]] selects first (a view), then indexes -> (4, 2); NumPy gives (2, 4)
    out = forward("getitem", x, np.array([1, 2]), index=(0, ("slice", None, None, None), "tensor"))
    np.testing.assert_array_equal(out, x[0][:, [1, 2]])
    out = forward("getitem", x, np.array([0, 1]), np.array([2, 3]),
                  index=("tensor", ("slice", None, None, None), "tensor"))
    assert out.shape == (2, 4)
    out = forward("getitem", x, x[:, 0, 0] > 10, index=(("mask", 2), None, "...", 1))
    np.testing.assert_array_equal(out, x[x[:, 0, 0] > 10][:, None, ..., 1])


def test_index_put_values_and_gradients():
    x = np.zeros((3, 2))
    v = np.array([1., 2.])
    out = forward("index_put", x, v, np.array([2, 0]), index=("tensor",))
    np.testing.assert_array_equal(out, [[1, 2], [0, 0], [1, 2]])
    gx, gv, _ = grads("index_put", x, v, np.array([2, 0]), index=("tensor",))
    np.testing.assert_array_equal(gx, [[0, 0], [1, 1], [0, 0]])
    np.testing.assert_array_equal(gv, [2, 2])
    acc = forward("index_put", x, v, np.array([1, 1]), index=("tensor",), accumulate=True)
    np.testing.assert_array_equal(acc, [[0, 0], [2, 4], [0, 0]])
    filled = forward("index_put", x, index=(("slice", 1, None, None),), value=7.0)
    np.testing.assert_array_equal(filled, [[0, 0], [7, 7], [7, 7]])


def test_split_chunk_unbind_parts():
    x = np.arange(10.)
    assert forward("split", x, split_size=4, index=2).tolist() == [8, 9]
    assert forward("chunk", x, chunks=3, index=2).tolist() == [8, 9]
    assert forward("chunk", np.arange(6.), chunks=4, index=2).tolist() == [4, 5]
    assert forward("unbind", x.reshape(2, 5), index=1).tolist() == [5, 6, 7, 8, 9]
    assert forward("repeat", a(1, 2), repeats=(2, 2)).tolist() == [[1, 2, 1, 2], [1, 2, 1, 2]]


def test_prod_gradient_with_zeros():
    (g,) = grads("prod", a(2, 0, 3))
    np.testing.assert_array_equal(g, a(0, 6, 0))
    (g,) = grads("prod", a(0, 0, 3))
    np.testing.assert_array_equal(g, a(0, 0, 0))


def test_binary_cross_entropy_clamps_logs():
    assert forward("binary_cross_entropy", a(0, 1), a(1, 0)) == pytest.approx(100)
    from gradserve.engine import GraphError
    with pytest.raises(GraphError, match="between 0 and 1"):
        forward("binary_cross_entropy", a(1.5), a(1))


def test_div_rounding_modes():
    x, y = np.array([7, -7, 7, -7]), np.array([2, 2, -2, -2])
    assert forward("div", x, y).tolist() == [3.5, -3.5, -3.5, 3.5]
    assert forward("div", x, y, rounding_mode="floor").tolist() == [3, -4, -4, 3]
    assert forward("div", x, y, rounding_mode="trunc").tolist() == [3, -3, -3, 3]
    assert forward("div", x.astype(F32), y.astype(F32), rounding_mode="trunc").tolist() == \
        [3, -3, -3, 3]


def test_pad_and_smooth_l1_values():
    out = forward("pad", a(1, 2, 3), pad=(1, -1), value=9.0)
    np.testing.assert_array_equal(out, a(9, 1, 2))
    loss = forward("smooth_l1_loss", a(0, 0), a(0.5, 3), reduction="none")
    np.testing.assert_allclose(loss, a(0.125, 2.5))


# Signed zeros (conformance programs 375, 444): PyTorch's max/clamp keep the first operand on a
# tie, so -0.0 survives relu/clamp/maximum, and max(dim) returns the value at its index.
@pytest.mark.parametrize("op, inputs, attrs, expected", [
    ("relu", [a(-0.0, 0.0, -1.0)], {}, a(-0.0, 0.0, 0.0)),
    ("clamp", [a(-0.0, 0.0)], {"min": 0.0, "max": 1.0}, a(-0.0, 0.0)),
    ("clamp", [a(0.0, -0.0)], {"min": -1.0, "max": -0.0}, a(0.0, -0.0)),
    ("clamp_min", [a(-0.0)], {"min": 0.0}, a(-0.0)),
    ("clamp_max", [a(0.0)], {"max": -0.0}, a(0.0)),
    ("hardtanh", [a(-0.0, 0.0)], {"min_val": 0.0, "max_val": 1.0}, a(-0.0, 0.0)),
    ("maximum", [a(-0.0, 0.0), a(0.0, -0.0)], {}, a(-0.0, 0.0)),
    ("minimum", [a(-0.0, 0.0), a(0.0, -0.0)], {}, a(-0.0, 0.0)),
    ("max_dim", [a(0.0, -0.0, -0.0, -0.0).reshape(2, 2)], {"dim": 0}, a(0.0, -0.0)),
    ("min_dim", [a(-0.0, 0.0)], {"dim": 0}, np.array(-0.0, F32)),
    ("maximum", [a(np.nan, 1.0), a(1.0, np.nan)], {}, a(np.nan, np.nan)),
    ("elu", [a(-0.0, 0.0)], {}, a(-0.0, 0.0)),
])
def test_signed_zero_ties_follow_pytorch(op, inputs, attrs, expected):
    out = forward(op, *inputs, **attrs)
    np.testing.assert_array_equal(out, expected)
    assert (np.signbit(out) == np.signbit(expected)).all()


# p-norm gradients where the norm or an element is zero (conformance: norm(p=1.5) of zeros gave NaN)
@pytest.mark.parametrize("p, x, expected", [
    (1.5, a(0, 0), a(0, 0)),
    (0.5, a(0, 0), a(0, 0)),
    (3.0, a(0, 0), a(0, 0)),
    (1.5, a(0, 2, -1), a(0, 0.9040, -0.6392)),
    (0.5, a(0, 2, -1), a(0, 1.7071, -2.4142)),
])
def test_p_norm_gradient_at_zeros(p, x, expected):
    (g,) = grads("norm", x, p=p)
    np.testing.assert_allclose(g, expected, atol=1e-4)


def test_std_gradient_of_a_constant_slice_is_zero():
    # conformance: std over equal values gave NaN; torch masks grad / (2 std) where std == 0
    x = np.array([[1, 1, 1], [1, 2, 4]], F32)
    (g,) = grads("std", x, dim=1)
    np.testing.assert_allclose(g, np.array([[0, 0, 0], [-0.4364, -0.1091, 0.5455]], F32), atol=1e-4)
    (g,) = grads("std", a(2, 2))
    np.testing.assert_array_equal(g, a(0, 0))
    (g,) = grads("std", a(2))            # one element: N - 1 = 0, NaN as in torch
    assert np.isnan(g).all()


@pytest.mark.parametrize("shape, attrs", [((0,), {}), ((3, 0), {"dim": 1}), ((0, 3), {"dim": 1})])
def test_prod_gradient_of_an_empty_tensor(shape, attrs):
    # conformance: prod over a masked selection with no elements failed in backward
    (g,) = grads("prod", np.zeros(shape, F32), **attrs)
    assert g.shape == shape


# Rows whose target is ignored are never written by PyTorch's nll_loss backward: +0. (was -0.),
# and still 0 when every target is ignored under "mean" (the loss is NaN, the gradient is not).
@pytest.mark.parametrize("op, attrs", [
    ("nll_loss", {}), ("nll_loss", {"reduction": "sum"}), ("nll_loss", {"reduction": "none"}),
    ("cross_entropy", {}), ("cross_entropy", {"reduction": "none"}),
    ("cross_entropy", {"label_smoothing": 0.2}),
])
@pytest.mark.parametrize("target", [np.array([0, -100, 2]), np.array([-100, -100, -100])])
def test_ignored_targets_get_positive_zero_gradients(op, attrs, target):
    z = np.array([[0.2, -1.0, 0.5], [1.0, 0.3, -0.4], [0.1, 0.2, 0.3]], F32)
    (g, _) = grads(op, z, target, **attrs)
    ignored = g[target == -100]
    np.testing.assert_array_equal(ignored, np.zeros_like(ignored))
    assert not np.signbit(ignored).any()


# p-norms to the bit as ATen's NormOps (values recorded with PyTorch 2.13): powers added one by one
# in float, and one reduced element is |x| itself (conformance: `x - x.norm(p=3)` printed 2.3842e-07).
NORM_X = a(0.13, -2.5, 0.71, 1.9, -0.02, 3.3, 0.5, -1.1, 0.9, 0.37, -0.6, 2.2, 1.05, -0.33, 0.8, 1.7,
           -2.9)


@pytest.mark.parametrize("p, expected", [(3.0, 4.685853481292725), (0.5, 295.5578918457031),
                                         (1.5, 9.366215705871582), (1.0, 21.010000228881836),
                                         (4.0, 4.081149101257324)])
def test_p_norm_is_bit_identical_to_aten(p, expected):
    assert forward("norm", NORM_X, p=p) == F32(expected)
    assert forward("norm", NORM_X.reshape(1, -1), p=p, dim=1)[0] == F32(expected)
    assert forward("norm", NORM_X.astype(np.float16), p=2.0) == np.float16(6.484375)


@pytest.mark.parametrize("p", [3.0, 1.5, 0.5, 4.0])
def test_p_norm_of_one_element_is_its_magnitude(p):
    x = a(0.13, -0.37, 3.13, -0.01)
    np.testing.assert_array_equal(forward("norm", x.reshape(4, 1), p=p, dim=1), np.abs(x))
    assert forward("norm", x[1:2], p=p) == F32(0.37)
    assert forward("norm", np.float64(-3.13), p=p) == 3.13


def test_relu_gradient_where_cut_is_positive_zero():
    # conformance: a negative upstream gradient through relu's cut gave -0. (g * mask); torch's
    # threshold_backward writes 0
    (g,) = grads("relu", a(-1.0, 2.0, 0.0), cotangent=a(-2.0, -2.0, -2.0))
    np.testing.assert_array_equal(g, a(0.0, -2.0, 0.0))
    assert not np.signbit(g[[0, 2]]).any()


# Signed zeros of (log_)softmax backward (conformance: cross_entropy with probability targets under
# `** 0` gave -0.): along the last dim ATen sums from the first element, along others from +0.
Z = a(-0.0, 0.0, -0.0, -0.0, -0.0, -0.0).reshape(2, 3)


@pytest.mark.parametrize("op, dim, expected", [
    ("softmax", 1, a(-0.0, 0.0, -0.0, 0.0, 0.0, 0.0)), ("log_softmax", 1, a(-0.0, 0.0, -0.0, 0.0, 0.0, 0.0)),
    ("softmax", 0, a(-0.0, 0.0, -0.0, -0.0, -0.0, -0.0)),
    ("log_softmax", 0, a(-0.0, 0.0, -0.0, -0.0, -0.0, -0.0)),
])
def test_softmax_gradient_signed_zeros(op, dim, expected):
    x = a(0.5, -1.0, 2.0, 1.0, 0.2, 0.3).reshape(2, 3)
    (g,) = grads(op, x, dim=dim, cotangent=Z)
    np.testing.assert_array_equal(np.signbit(g).reshape(-1), np.signbit(expected))


def test_cross_entropy_probability_targets_zero_gradient_is_positive():
    x = a(0.5, -1.0, 2.0, 1.0, 0.2, 0.3).reshape(2, 3)
    t = Const(a(0.2, 0.3, 0.5, 0.1, 0.8, 0.1).reshape(2, 3))
    (g, _) = grads("cross_entropy", x, t, reduction="sum", cotangent=np.float32(0.0))
    assert not np.signbit(g).any()


def test_cross_entropy_probability_targets_promote_the_loss_dtype():
    x = np.array([[0.5, -1.0, 2.0], [1.0, 0.2, 0.3]], np.float16)
    t = Const(np.array([[0.2, 0.3, 0.5], [0.1, 0.8, 0.1]]))
    assert forward("cross_entropy", x, t).dtype == np.float64
    (g, _) = grads("cross_entropy", x, t, reduction="none")
    assert g.dtype == np.float16


def test_var_of_a_constant_slice_is_exactly_zero():
    # conformance: var over equal values printed 7.3956e-32 (ATen's Welford update gives 0.)
    x = np.array([[2.5, 2.5, 2.5], [1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(forward("var", x, dim=1), [0.0, 1.0])
    assert forward("var", np.full(7, 0.1, F32)) == 0


# remainder takes the divisor's sign, fmod the dividend's (values and zeros as PyTorch 2.13 prints)
@pytest.mark.parametrize("op, x, y, expected", [
    ("remainder", a(5.5, -3.2, 4.0, -0.0, 2.0), a(2.0, 2.5, -1.5, 2.0, -2.0), a(1.5, 1.8, -0.5, -0.0, 0.0)),
    ("fmod", a(5.5, -3.2, 4.0, -0.0), a(2.0, 2.5, -1.5, 2.0), a(1.5, -0.7, 1.0, -0.0)),
    ("remainder", np.array([5, -3, 4, -7]), np.array([2, 2, -3, -2]), np.array([1, 1, -2, -1])),
    ("fmod", np.array([5, -3, 4, -7]), np.array([2, 2, -3, -2]), np.array([1, -1, 1, -1])),
])
def test_remainder_and_fmod_signs(op, x, y, expected):
    out = forward(op, x, y)
    assert out.dtype == expected.dtype
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert (np.signbit(out) == np.signbit(expected)).all()


def test_remainder_scalar_promotion_gradients_and_integer_zero_division():
    from gradserve.engine import GraphError
    x = np.array([5, -3, 4, -7])
    np.testing.assert_allclose(forward("remainder", x, other=2.5), a(0.0, 2.0, 1.5, 0.5))
    np.testing.assert_allclose(forward("fmod", x, other=2.5), a(0.0, -0.5, 1.5, -2.0))
    assert np.isnan(forward("remainder", a(5.0, -5.0), other=0.0)).all()
    with pytest.raises(GraphError, match="ZeroDivisionError"):
        forward("remainder", x, np.array([1, 0, 1, 1]))
    ga, gb = grads("remainder", a(5.5, -3.2, 4.0), a(2.0, 2.5, -1.5))
    np.testing.assert_array_equal(gb, a(-2.0, 2.0, 3.0))
    _, gb = grads("fmod", a(5.5, -3.2, 4.0), a(2.0, 2.5, -1.5))
    np.testing.assert_array_equal(gb, a(-2.0, 1.0, 2.0))


def test_max_of_everything_writes_positive_zeros_amax_negative():
    # conformance: torch's max() backward writes +0. off the maximum; amax's (g * mask / count)
    # gives -0. for a negative upstream gradient, and so do we
    x = a(1.0, 3.0, 3.0, 0.0)
    (g,) = grads("max", x, cotangent=np.float32(-2.0))
    np.testing.assert_array_equal(np.signbit(g), [False, True, True, False])
    (g,) = grads("amax", x, dim=0, cotangent=np.float32(-2.0))
    np.testing.assert_array_equal(np.signbit(g), [True, True, True, True])
