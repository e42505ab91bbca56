"""Neural-network ops: softmax/log_softmax, losses, activations, dropout.

Losses take `reduction` ("mean" default, "sum", "none"). Class weights and pos_weight are inputs,
not differentiated (PyTorch does not differentiate them either).
"""

from __future__ import annotations

import math

import numpy as np

from ..dtypes import parse_dtype, result_type
from ..errors import AttributeValueError, DTypeError, GraphError, ShapeError
from ..graph import TensorSpec
from ..registry import INPUTS, OUTPUT, Attrs, attr, broadcast_shapes, keep_max, keep_min, norm_dim, register
from .unary import sigmoid

SQRT_HALF = math.sqrt(0.5)
INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
GELU_BETA = math.sqrt(2 / math.pi)
GELU_KAPPA = 0.044715
BCE_EPS = 1e-12

_erf_object = np.frompyfunc(math.erf, 1, 1)


def erf(x: np.ndarray) -> np.ndarray:
    """math.erf elementwise: exact to float64, no SciPy."""
    return np.asarray(_erf_object(x)).astype(x.dtype) if x.size else x.copy()


def require_float(spec: TensorSpec, op: str) -> None:
    if spec.dtype.kind != "f":
        raise DTypeError(f"{op}: expected a floating point tensor, got {spec.dtype.name}")


def float_same_infer(specs, attrs):
    require_float(specs[0], "activation")
    return specs[0]


# ---------------------------------------------------------------------------------------------
# softmax, log_softmax (attrs: dim, required; dtype, optional: cast before computing)


def softmax_infer(specs, attrs):
    spec = specs[0]
    norm_dim(attr(attrs, "dim", int), spec.ndim)
    dtype = parse_dtype(attrs["dtype"]) if attrs.get("dtype") is not None else spec.dtype
    require_float(TensorSpec(spec.shape, dtype), "softmax")
    return TensorSpec(spec.shape, dtype)


def log_softmax(x: np.ndarray, dim: int) -> np.ndarray:
    if x.size == 0:
        return x.copy()
    shifted = x - np.max(x, axis=dim, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=dim, keepdims=True))


def _softmax(xs, attrs):
    x = xs[0].astype(softmax_infer([TensorSpec(xs[0].shape, xs[0].dtype)], attrs).dtype, copy=False)
    if x.size == 0:
        return x.copy()
    dim = norm_dim(attrs["dim"], x.ndim)
    e = np.exp(x - np.max(x, axis=dim, keepdims=True))
    e /= np.sum(e, axis=dim, keepdims=True)
    return e


def row_sum(a: np.ndarray, dim: int) -> np.ndarray:
    """The backward sums of (log_)softmax with ATen's signed zeros: along the last dim its kernel
    adds from the first element, so a row of -0. (a zero gradient through a negation) sums to -0.
    and the gradient comes out +0.; along another dim it starts from +0."""
    return np.sum(a, axis=dim, keepdims=True, initial=-0.0 if dim == a.ndim - 1 else 0.0)


def _softmax_backward(g, xs, out, attrs):
    dim = norm_dim(attrs["dim"], out.ndim)
    return (out * (g - row_sum(g * out, dim)),)


def _log_softmax(xs, attrs):
    x = xs[0].astype(softmax_infer([TensorSpec(xs[0].shape, xs[0].dtype)], attrs).dtype, copy=False)
    return log_softmax(x, norm_dim(attrs["dim"], x.ndim))


def _log_softmax_backward(g, xs, out, attrs):
    dim = norm_dim(attrs["dim"], out.ndim)
    return (g - np.exp(out) * row_sum(g, dim),)


register("softmax", infer=softmax_infer, forward=_softmax, backward=_softmax_backward,
         saves=(OUTPUT,))
register("log_softmax", infer=softmax_infer, forward=_log_softmax,
         backward=_log_softmax_backward, saves=(OUTPUT,))


# ---------------------------------------------------------------------------------------------
# reductions shared by the losses


def _reduction(attrs: Attrs) -> str:
    r = attr(attrs, "reduction", str, "mean")
    if r not in ("mean", "sum", "none"):
        raise AttributeValueError(f"{r} is not a valid value for reduction")
    return r


def _reduce(loss: np.ndarray, attrs: Attrs) -> np.ndarray:
    r = _reduction(attrs)
    if r == "none":
        return loss
    if r == "sum":
        return np.sum(loss)
    with np.errstate(invalid="ignore"):
        return np.mean(loss) if loss.size else np.asarray(np.nan, loss.dtype)


def _reduce_grad(g: np.ndarray, shape: tuple[int, ...], attrs: Attrs) -> np.ndarray:
    """d(reduced loss)/d(elementwise loss), broadcast to the elementwise shape."""
    r = _reduction(attrs)
    if r == "mean":
        g = g / max(math.prod(shape), 1) if math.prod(shape) else g * np.nan
    return np.broadcast_to(g, shape)


def _loss_spec(shape: tuple[int, ...], dtype: np.dtype, attrs: Attrs) -> TensorSpec:
    return TensorSpec(shape if _reduction(attrs) == "none" else (), dtype)


# ---------------------------------------------------------------------------------------------
# nll_loss and cross_entropy: inputs (input, target[, weight]); the class dim is 1 (0 for 1-D
# input). attrs: reduction, ignore_index (-100); cross_entropy also label_smoothing (0.0).
# Integer targets are class indices; floating targets (cross_entropy only) are probabilities.


def _class_dim(ndim: int) -> int:
    return 0 if ndim == 1 else 1


def nll_infer(specs, attrs, op="nll_loss"):
    x, target = specs[0], specs[1]
    require_float(x, op)
    if x.ndim == 0:
        raise ShapeError(f"{op}: input must have at least 1 dimension")
    attr(attrs, "ignore_index", int, -100)
    smoothing = attr(attrs, "label_smoothing", float, 0.0)
    if not 0.0 <= smoothing <= 1.0:
        raise AttributeValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {smoothing}")
    cdim = _class_dim(x.ndim)
    n_classes = x.shape[cdim]
    if len(specs) == 3 and specs[2].shape != (n_classes,):
        raise ShapeError(f"weight tensor should be defined either for all {n_classes} classes "
                         f"or no classes but got weight tensor of shape: {list(specs[2].shape)}")
    batch = x.shape[:cdim] + x.shape[cdim + 1:]
    if target.dtype.kind == "f" and op == "cross_entropy":
        if target.shape != x.shape:
            raise ShapeError(f"Expected target size {list(x.shape)}, got {list(target.shape)}")
    elif target.dtype.kind in "iu":
        # PyTorch's checks in order (LossNLL.cpp nll_loss_nd, then nll_loss / nll_loss2d)
        if x.ndim != 1 and target.ndim and x.shape[0] != target.shape[0]:
            raise ShapeError(f"Expected input batch_size ({x.shape[0]}) to match target batch_size "
                             f"({target.shape[0]}).")
        if x.ndim <= 2 and target.ndim > 1:
            raise ShapeError("0D or 1D target tensor expected, multi-target not supported")
        if target.shape != batch:
            raise ShapeError(f"Expected target size {list(batch)}, got {list(target.shape)}")
    else:
        raise DTypeError(f"{op}: expected integer class indices"
                         + (" or floating point probabilities" if op == "cross_entropy" else "")
                         + f" as target, got {target.dtype.name}")
    if target.dtype.kind == "f" and target.dtype != x.dtype:
        # probabilities multiply log_softmax(input): the loss takes the promoted dtype
        return _loss_spec(batch, np.promote_types(x.dtype, target.dtype), attrs)
    return _loss_spec(batch, x.dtype, attrs)


def _classes_last(a: np.ndarray) -> np.ndarray:
    return np.moveaxis(a, _class_dim(a.ndim), -1) if a.ndim > 1 else a


def _classes_back(a: np.ndarray, ndim: int) -> np.ndarray:
    return np.moveaxis(a, -1, _class_dim(ndim)) if ndim > 1 else a


def _picked(logp: np.ndarray, target: np.ndarray, weight, attrs: Attrs):
    """Per-sample -w[t]*logp[t] (0 where ignored), the per-sample weights, and target indices."""
    lp = _classes_last(logp)
    n_classes = lp.shape[-1]
    valid = target != attr(attrs, "ignore_index", int, -100)
    safe = np.where(valid, target, 0)
    bad = valid & ((safe < 0) | (safe >= n_classes))
    if bad.any():
        raise GraphError(f"Target {target[bad].flat[0]} is out of bounds.")
    w = valid.astype(logp.dtype)
    if weight is not None:
        w = w * weight[safe]
    picked = np.take_along_axis(lp, safe[..., None], axis=-1)[..., 0]
    return -picked * w, w, safe


def _index_losses(logp, target, weight, attrs):
    """The reduced class-index loss; label smoothing mixes in -sum_c w_c logp_c / C."""
    nll, w, _ = _picked(logp, target, weight, attrs)
    eps = attrs.get("label_smoothing") or 0.0
    r = _reduction(attrs)
    total = nll
    if eps:
        lp = _classes_last(logp)
        wc = 1 if weight is None else weight
        valid = target != attrs.get("ignore_index", -100)
        smooth = np.where(valid, -np.sum(lp * wc, axis=-1), 0)
        total = (1 - eps) * nll + (eps / lp.shape[-1]) * smooth
    if r == "none":
        return total
    if r == "sum":
        return np.sum(total)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(total) / np.sum(w)


def _index_dlogp(g, logp, target, weight, attrs):
    """d loss / d logp for class-index targets."""
    _, w, safe = _picked(logp, target, weight, attrs)
    lp = _classes_last(logp)
    r = _reduction(attrs)
    if r == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            coef = np.broadcast_to(g / np.sum(w), w.shape)
    else:
        coef = np.broadcast_to(g, w.shape)
    d = np.zeros(lp.shape, logp.dtype)
    eps = attrs.get("label_smoothing") or 0.0
    # Ignored rows are never written, as in PyTorch's kernel: they stay +0. (-coef * 0 would be
    # -0.) and stay finite when every target is ignored under "mean" (coef is then inf).
    valid = target != attrs.get("ignore_index", -100)
    with np.errstate(invalid="ignore"):
        picked = np.where(valid, -(1 - eps) * coef * w, 0)
    np.put_along_axis(d, safe[..., None], picked[..., None].astype(d.dtype, copy=False), axis=-1)
    if eps:
        wc = 1 if weight is None else weight
        d -= (eps / lp.shape[-1]) * np.where(valid, coef, 0)[..., None] * wc
    return _classes_back(d, logp.ndim)


def _nll_loss(xs, attrs):
    weight = xs[2] if len(xs) == 3 else None
    return _index_losses(xs[0], xs[1], weight, attrs)


def _nll_loss_backward(g, xs, out, attrs):
    weight = xs[2] if len(xs) == 3 else None
    return (_index_dlogp(g, xs[0], xs[1], weight, attrs), None) + (None,) * (len(xs) - 2)


def nll_loss_infer(specs, attrs):
    if attrs.get("label_smoothing"):
        raise AttributeValueError("nll_loss has no label_smoothing; use cross_entropy")
    if specs[1].dtype.kind == "f":
        raise DTypeError("nll_loss: expected integer class indices as target")
    return nll_infer(specs, attrs)


register("nll_loss", arity=(2, 3), infer=nll_loss_infer, forward=_nll_loss,
         backward=_nll_loss_backward, saves=(INPUTS,))


def _prob_targets(target: np.ndarray, n_classes: int, attrs: Attrs) -> np.ndarray:
    eps = attrs.get("label_smoothing") or 0.0
    return target * (1 - eps) + eps / n_classes if eps else target


def _cross_entropy(xs, attrs):
    x, target = xs[0], xs[1]
    weight = xs[2] if len(xs) == 3 else None
    cdim = _class_dim(x.ndim)
    logp = log_softmax(x, cdim)
    if target.dtype.kind != "f":
        return _index_losses(logp, target, weight, attrs)
    n_classes = x.shape[cdim]
    t = _prob_targets(target, n_classes, attrs)
    wc = 1 if weight is None else _classes_back(np.broadcast_to(weight, _classes_last(x).shape),
                                                x.ndim)
    loss = -np.sum(logp * t * wc, axis=cdim)
    if _reduction(attrs) == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sum(loss) / (x.size // n_classes if n_classes else 0)
    return _reduce(loss, attrs)


def _cross_entropy_backward(g, xs, out, attrs):
    x, target = xs[0], xs[1]
    weight = xs[2] if len(xs) == 3 else None
    cdim = _class_dim(x.ndim)
    logp = log_softmax(x, cdim)
    gt = None
    if target.dtype.kind != "f":
        dlogp = _index_dlogp(g, logp, target, weight, attrs)
    else:
        n_classes = x.shape[cdim]
        wc = 1 if weight is None else _classes_back(
            np.broadcast_to(weight, _classes_last(x).shape), x.ndim)
        batch = x.shape[:cdim] + x.shape[cdim + 1:]
        coef = np.expand_dims(_reduce_grad(g, batch, attrs), cdim)
        dlogp = -_prob_targets(target, n_classes, attrs) * wc * coef
        gt = -logp * wc * coef * (1 - (attrs.get("label_smoothing") or 0.0))
    gx = dlogp - np.exp(logp) * row_sum(dlogp, cdim)
    return (gx, gt) + (None,) * (len(xs) - 2)


def cross_entropy_infer(specs, attrs):
    return nll_infer(specs, attrs, "cross_entropy")


register("cross_entropy", arity=(2, 3), infer=cross_entropy_infer, forward=_cross_entropy,
         backward=_cross_entropy_backward, saves=(INPUTS,))


# ---------------------------------------------------------------------------------------------
# mse_loss, l1_loss (inputs broadcast), binary_cross_entropy(_with_logits)


def pair_loss_infer(specs, attrs):
    shape = broadcast_shapes(specs[0].shape, specs[1].shape)
    dtype = result_type(specs[:2])
    require_float(TensorSpec(shape, dtype), "loss")
    return _loss_spec(shape, dtype, attrs)


def _diff(xs):
    return xs[0] - xs[1]


def _pair_backward(derivative):
    def backward(g, xs, out, attrs):
        d = _diff(xs)
        gd = _reduce_grad(g, d.shape, attrs) * derivative(d)
        return gd, -gd
    return backward


register("mse_loss", arity=2, infer=pair_loss_infer, saves=(INPUTS,),
         forward=lambda xs, attrs: _reduce(np.square(_diff(xs)), attrs),
         backward=_pair_backward(lambda d: 2 * d))
register("l1_loss", arity=2, infer=pair_loss_infer, saves=(INPUTS,),
         forward=lambda xs, attrs: _reduce(np.abs(_diff(xs)), attrs),
         backward=_pair_backward(np.sign))


def _smooth_l1(d: np.ndarray, attrs: Attrs) -> np.ndarray:
    beta = attr(attrs, "beta", float, 1.0)
    a = np.abs(d)
    return a if beta == 0 else np.where(a < beta, 0.5 * d * d / beta, a - 0.5 * beta)


def _smooth_l1_backward(g, xs, out, attrs):
    beta = attr(attrs, "beta", float, 1.0)
    d = _diff(xs)
    slope = np.sign(d) if beta == 0 else np.where(np.abs(d) < beta, d / beta, np.sign(d))
    gd = _reduce_grad(g, d.shape, attrs) * slope
    return gd, -gd


def smooth_l1_infer(specs, attrs):
    if attr(attrs, "beta", float, 1.0) < 0:
        raise AttributeValueError("smooth_l1_loss does not support negative values for beta.")
    return pair_loss_infer(specs, attrs)


register("smooth_l1_loss", arity=2, infer=smooth_l1_infer, saves=(INPUTS,),
         forward=lambda xs, attrs: _reduce(_smooth_l1(_diff(xs), attrs), attrs),
         backward=_smooth_l1_backward)


def bce_infer(specs, attrs):
    x, target = specs[0], specs[1]
    require_float(x, "binary_cross_entropy")
    if target.shape != x.shape:
        raise ShapeError(f"Using a target size ({list(target.shape)}) that is different to the "
                         f"input size ({list(x.shape)}) is deprecated. Please ensure they have "
                         "the same size.")
    for extra in specs[2:]:
        broadcast_shapes(extra.shape, x.shape)
    attr(attrs, "pos_weight", bool, False)
    return _loss_spec(x.shape, x.dtype, attrs)


def _bce(xs, attrs):
    x, t = xs[0], xs[1].astype(xs[0].dtype, copy=False)
    if x.size and ((x < 0) | (x > 1)).any():
        raise GraphError("all elements of input should be between 0 and 1")
    with np.errstate(divide="ignore"):
        log_x = np.maximum(np.log(x), -100)
        log_1mx = np.maximum(np.log1p(-x), -100)
    loss = -(t * log_x + (1 - t) * log_1mx)
    if len(xs) == 3:
        loss = loss * xs[2]
    return _reduce(loss, attrs)


def _bce_backward(g, xs, out, attrs):
    x, t = xs[0], xs[1]
    gl = _reduce_grad(g, x.shape, attrs)
    if len(xs) == 3:
        gl = gl * xs[2]
    gx = gl * (x - t) / np.maximum((1 - x) * x, BCE_EPS)
    with np.errstate(divide="ignore"):
        gt = gl * (np.maximum(np.log1p(-x), -100) - np.maximum(np.log(x), -100))
    return (gx, gt) + (None,) * (len(xs) - 2)


register("binary_cross_entropy", arity=(2, 3), infer=bce_infer, forward=_bce,
         backward=_bce_backward, saves=(INPUTS,))


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


def _logit_parts(xs, attrs):
    """(input, target, weight or None, pos_weight or None) from the inputs and the flag."""
    x, t = xs[0], xs[1]
    extra = list(xs[2:])
    pos_weight = extra.pop() if attrs.get("pos_weight") else None
    return x, t, (extra[0] if extra else None), pos_weight


def _bce_logits(xs, attrs):
    x, t, w, pw = _logit_parts(xs, attrs)
    ls = log_sigmoid(x)
    if pw is not None:
        ls = ls * ((pw - 1) * t + 1)
    loss = (1 - t) * x - ls
    if w is not None:
        loss = loss * w
    return _reduce(loss, attrs)


def _bce_logits_backward(g, xs, out, attrs):
    x, t, w, pw = _logit_parts(xs, attrs)
    gl = _reduce_grad(g, x.shape, attrs)
    if w is not None:
        gl = gl * w
    s = sigmoid(x)
    if pw is None:
        gx, gt = gl * (s - t), -gl * x
    else:
        pt = pw * t
        gx = gl * ((pt + 1 - t) * s - pt)
        gt = -gl * (x + (pw - 1) * log_sigmoid(x))
    return (gx, gt) + (None,) * (len(xs) - 2)


def bce_logits_infer(specs, attrs):
    if attr(attrs, "pos_weight", bool, False) and len(specs) < 3:
        raise AttributeValueError("pos_weight=True needs a pos_weight input (the last one)")
    return bce_infer(specs, attrs)


register("binary_cross_entropy_with_logits", arity=(2, 4), infer=bce_logits_infer,
         forward=_bce_logits, backward=_bce_logits_backward, saves=(INPUTS,))


# ---------------------------------------------------------------------------------------------
# activations


def _relu_backward(g, xs, out, attrs):
    grad = g * (out > 0)
    grad += 0    # -0. (a negative g where cut) becomes +0., as torch's threshold_backward writes
    return (grad,)


register("relu", infer=lambda specs, attrs: specs[0], saves=(OUTPUT,),
         forward=lambda xs, attrs: keep_max(xs[0], xs[0].dtype.type(0)), backward=_relu_backward)


def _slope(attrs):
    return attr(attrs, "negative_slope", float, 0.01)


register("leaky_relu", infer=float_same_infer, saves=(INPUTS,),
         forward=lambda xs, attrs: np.where(xs[0] > 0, xs[0], xs[0] * _slope(attrs)),
         backward=lambda g, xs, out, attrs: (np.where(xs[0] > 0, g, g * _slope(attrs)),))


def _elu_coefs(attrs):
    return (attr(attrs, "alpha", float, 1.0), attr(attrs, "scale", float, 1.0),
            attr(attrs, "input_scale", float, 1.0))


def _elu(xs, attrs):
    x = xs[0]
    alpha, scale, input_scale = _elu_coefs(attrs)
    # keep_min: elu(-0.0) is -0.0 in PyTorch (expm1 of the input itself)
    neg = alpha * np.expm1(keep_min(x, x.dtype.type(0)) * input_scale)
    return scale * np.where(x > 0, x, neg)


def _elu_backward(g, xs, out, attrs):
    x = xs[0]
    alpha, scale, input_scale = _elu_coefs(attrs)
    neg = input_scale * alpha * np.exp(np.minimum(x, 0) * input_scale)
    return (g * scale * np.where(x > 0, 1, neg),)


register("elu", infer=float_same_infer, forward=_elu, backward=_elu_backward, saves=(INPUTS,))


def _softplus_coefs(attrs):
    return attr(attrs, "beta", float, 1.0), attr(attrs, "threshold", float, 20.0)


def _softplus(xs, attrs):
    x = xs[0]
    beta, threshold = _softplus_coefs(attrs)
    bx = x * beta
    soft = (np.maximum(bx, 0) + np.log1p(np.exp(-np.abs(bx)))) / beta
    return np.where(bx > threshold, x, soft)


def _softplus_backward(g, xs, out, attrs):
    x = xs[0]
    beta, threshold = _softplus_coefs(attrs)
    bx = x * beta
    return (np.where(bx > threshold, g, g * sigmoid(bx)),)


register("softplus", infer=float_same_infer, forward=_softplus, backward=_softplus_backward,
         saves=(INPUTS,))


def _hardtanh_bounds(attrs):
    return attr(attrs, "min_val", float, -1.0), attr(attrs, "max_val", float, 1.0)


def _hardtanh(x, lo, hi):
    return keep_min(keep_max(x, x.dtype.type(lo)), x.dtype.type(hi))


def _hardtanh_backward(g, xs, out, attrs):
    """Unlike clamp, hardtanh's boundaries are excluded: the gradient there is 0."""
    lo, hi = _hardtanh_bounds(attrs)
    x = xs[0]
    return (np.where((x > lo) & (x < hi), g, 0),)


register("hardtanh", infer=lambda specs, attrs: specs[0], saves=(INPUTS,),
         forward=lambda xs, attrs: _hardtanh(xs[0], *_hardtanh_bounds(attrs)),
         backward=_hardtanh_backward)


def _approximate(attrs):
    mode = attr(attrs, "approximate", str, "none")
    if mode not in ("none", "tanh"):
        raise AttributeValueError(f"approximate argument must be either none or tanh, got {mode}")
    return mode


def _gelu(xs, attrs):
    x = xs[0]
    if _approximate(attrs) == "tanh":
        return 0.5 * x * (1 + np.tanh(GELU_BETA * (x + GELU_KAPPA * x ** 3)))
    return x * 0.5 * (1 + erf(x * SQRT_HALF))


def _gelu_backward(g, xs, out, attrs):
    x = xs[0]
    if _approximate(attrs) == "tanh":
        inner = np.tanh(GELU_BETA * (x + GELU_KAPPA * x ** 3))
        left = 0.5 * x
        right_derivative = left * (1 - inner * inner) * GELU_BETA * (1 + 3 * GELU_KAPPA * x * x)
        return (g * (0.5 * (1 + inner) + right_derivative),)
    cdf = 0.5 * (1 + erf(x * SQRT_HALF))
    pdf = np.exp(-0.5 * x * x) * INV_SQRT_2PI
    return (g * (cdf + x * pdf),)


register("gelu", infer=float_same_infer, forward=_gelu, backward=_gelu_backward, saves=(INPUTS,))


def _silu(xs, attrs):
    return xs[0] * sigmoid(xs[0])


def _silu_backward(g, xs, out, attrs):
    x = xs[0]
    s = sigmoid(x)
    return (g * s * (1 + x * (1 - s)),)


register("silu", infer=float_same_infer, forward=_silu, backward=_silu_backward, saves=(INPUTS,))
register("erf", infer=float_same_infer, saves=(INPUTS,),
         forward=lambda xs, attrs: erf(xs[0]),
         backward=lambda g, xs, out, attrs: (g * (2 * INV_SQRT_2PI * math.sqrt(2))
                                             * np.exp(-xs[0] * xs[0]),))


# ---------------------------------------------------------------------------------------------
# dropout: inputs (x) with attrs p and seed (a deterministic mask), or (x, mask) with attrs p;
# kept elements are scaled by 1/(1-p). Training mode only: in eval mode the client skips the op.


def dropout_infer(specs, attrs):
    x = specs[0]
    require_float(x, "dropout")
    p = attr(attrs, "p", float, 0.5)
    if not 0.0 <= p <= 1.0:
        raise AttributeValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if len(specs) == 2:
        broadcast_shapes(specs[1].shape, x.shape)
        if broadcast_shapes(specs[1].shape, x.shape) != x.shape:
            raise ShapeError(f"dropout mask of shape {specs[1].shape} does not broadcast to "
                             f"{x.shape}")
    else:
        attr(attrs, "seed", int)
    return x


def _dropout_scale(x: np.ndarray, mask: np.ndarray | None, attrs: Attrs) -> np.ndarray:
    """The multiplier: keep-mask / (1 - p), 0 everywhere when p == 1."""
    p = attr(attrs, "p", float, 0.5)
    if mask is None:
        rng = np.random.default_rng(attrs["seed"])
        mask = rng.random(x.shape) >= p
    if p == 1.0:
        return np.zeros(mask.shape, x.dtype)
    return mask.astype(x.dtype) * x.dtype.type(1 / (1 - p))


register("dropout", arity=(1, 2), infer=dropout_infer, saves=lambda n: (1,) if n == 2 else (),
         forward=lambda xs, attrs: xs[0] * _dropout_scale(xs[0], xs[1] if len(xs) == 2 else None,
                                                          attrs),
         backward=lambda g, xs, out, attrs: (
             g * _dropout_scale(xs[0], xs[1] if len(xs) == 2 else None, attrs),)
         + ((None,) if len(xs) == 2 else ()))
