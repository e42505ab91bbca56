"""`torch.nn.functional`: activations and losses, each one engine op with PyTorch's grad_fn name."""

from __future__ import annotations

import warnings

from .._core import apply
from .._ops import is_tensor, scalar

__all__ = [
    "relu", "gelu", "silu", "leaky_relu", "elu", "softplus", "hardtanh", "sigmoid", "tanh", "softmax",
    "log_softmax", "dropout", "linear", "mse_loss", "l1_loss", "smooth_l1_loss", "nll_loss",
    "cross_entropy", "binary_cross_entropy", "binary_cross_entropy_with_logits", "pad", "normalize",
    "relu6",
]

SOFTMAX_DIM_WARNING = ("Implicit dimension choice for {} has been deprecated. Change the call to include "
                       "dim=X as an argument.")
_REDUCTIONS = ("none", "mean", "sum")


def _implicit_dim(name: str, ndim: int) -> int:
    warnings.warn(SOFTMAX_DIM_WARNING.format(name), UserWarning, stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


def _reduction(reduction: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return reduction


# ---------------------------------------------------------------------------------------------
# activations


def relu(input, inplace: bool = False):
    return input.relu_() if inplace else input.relu()


def relu6(input, inplace: bool = False):
    return hardtanh(input, 0.0, 6.0)


def gelu(input, approximate: str = "none"):
    return apply("gelu", [input], {"approximate": approximate}, "GeluBackward0")


def silu(input, inplace: bool = False):
    return apply("silu", [input], None, "SiluBackward0")


def leaky_relu(input, negative_slope: float = 0.01, inplace: bool = False):
    return apply("leaky_relu", [input], {"negative_slope": float(negative_slope)}, "LeakyReluBackward0")


def elu(input, alpha: float = 1.0, inplace: bool = False):
    return apply("elu", [input], {"alpha": float(alpha)}, "EluBackward0")


def softplus(input, beta: float = 1.0, threshold: float = 20.0):
    return apply("softplus", [input], {"beta": float(beta), "threshold": float(threshold)},
                 "SoftplusBackward0")


def hardtanh(input, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
    return apply("hardtanh", [input], {"min_val": float(min_val), "max_val": float(max_val)},
                 "HardtanhBackward0")


def sigmoid(input):
    return input.sigmoid()


def tanh(input):
    return input.tanh()


def softmax(input, dim=None, _stacklevel: int = 3, dtype=None):
    if dim is None:
        dim = _implicit_dim("softmax", input.dim())
    return input.softmax(dim, dtype=dtype)


def log_softmax(input, dim=None, _stacklevel: int = 3, dtype=None):
    if dim is None:
        dim = _implicit_dim("log_softmax", input.dim())
    return input.log_softmax(dim, dtype=dtype)


def dropout(input, p: float = 0.5, training: bool = True, inplace: bool = False):
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    from .._factories import _rng
    from .._tensor import Tensor
    keep = (_rng().random(tuple(input.shape)) >= p).astype(input._expr.spec.dtype)
    if p < 1.0:
        keep = keep / (1.0 - p)
    return input * Tensor._from_array(keep.astype(input._expr.spec.dtype))


def linear(input, weight, bias=None):
    nd = input.dim()
    if bias is None:   # at::matmul: 1-D is unsqueezed and squeezed back, N-D folded into mm
        name = "MmBackward0" if nd == 2 else "SqueezeBackward4" if nd == 1 else "UnsafeViewBackward0"
        return apply("linear", [input, weight], None, name)
    # at::linear: addmm for 2-D, a viewed addmm for other contiguous input, else matmul + add_(bias)
    name = "AddmmBackward0" if nd == 2 else "ViewBackward0" if input.is_contiguous() else "AddBackward0"
    return apply("linear", [input, weight, bias], None, name)


def normalize(input, p: float = 2.0, dim: int = 1, eps: float = 1e-12):
    denom = input.norm(p, dim, keepdim=True).clamp_min(eps).expand_as(input)
    return input / denom


def pad(input, pad, mode: str = "constant", value=None):
    if mode != "constant":
        raise NotImplementedError(f"gradserve: F.pad mode {mode!r} is not supported yet")
    return apply("pad", [input], {"pad": tuple(int(p) for p in pad), "value": scalar(value or 0.0)},
                 "ConstantPadNdBackward0")


# ---------------------------------------------------------------------------------------------
# losses


def mse_loss(input, target, size_average=None, reduce=None, reduction: str = "mean"):
    return apply("mse_loss", [input, target], {"reduction": _reduction(reduction)}, "MseLossBackward0")


def l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean"):
    diff = (input - target).abs()
    r = _reduction(reduction)
    return diff if r == "none" else diff.mean() if r == "mean" else diff.sum()


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean",
                   beta: float = 1.0):
    return apply("smooth_l1_loss", [input, target], {"reduction": _reduction(reduction), "beta": float(beta)},
                 "SmoothL1LossBackward0")


def nll_loss(input, target, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
             reduction: str = "mean"):
    attrs = {"reduction": _reduction(reduction), "ignore_index": int(ignore_index)}
    extra = [weight] if weight is not None else []
    if input.dim() <= 2:
        return apply("nll_loss", [input, target, *extra], attrs, "NllLossBackward0")
    if input.dim() == 4:
        return apply("nll_loss", [input, target, *extra], attrs, "NllLoss2DBackward0")
    # torch's nll_loss_nd: other ranks are viewed as (N, C, 1, -1) for nll_loss2d, and an
    # unreduced loss is viewed back.
    n, c = input.shape[0], input.shape[1]
    if tuple(target.shape[1:]) != tuple(input.shape[2:]):
        raise RuntimeError(f"Expected target size {[n, *input.shape[2:]]}, got {list(target.shape)}")
    flat = input.contiguous().view(n, c, 1, -1 if input.numel() else 0)
    flat_target = target.contiguous().view(n, 1, -1 if target.numel() else 0)
    out = apply("nll_loss", [flat, flat_target, *extra], attrs, "NllLoss2DBackward0")
    return out.view(n, *input.shape[2:]) if attrs["reduction"] == "none" else out


def cross_entropy(input, target, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                  reduction: str = "mean", label_smoothing: float = 0.0):
    r = _reduction(reduction)
    probabilities = is_tensor(target) and target.is_floating_point()
    if label_smoothing <= 0.0 and not probabilities:
        return nll_loss(log_softmax(input, 1 if input.dim() > 1 else 0), target, weight,
                        ignore_index=ignore_index, reduction=reduction)
    # PyTorch composes these from several ops; the engine computes them as one (same values and
    # gradients). The grad_fn is the name of torch's last op.
    if probabilities:
        name = "DivBackward1" if r == "mean" else "NegBackward0"
    else:
        name = "AddBackward0"
    tensors = [input, target] + ([weight] if weight is not None else [])
    attrs = {"reduction": r, "ignore_index": int(ignore_index)}
    if label_smoothing > 0.0:
        attrs["label_smoothing"] = float(label_smoothing)
    return apply("cross_entropy", tensors, attrs, name)


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction: str = "mean"):
    tensors = [input, target] + ([weight] if weight is not None else [])
    return apply("binary_cross_entropy", tensors, {"reduction": _reduction(reduction)},
                 "BinaryCrossEntropyBackward0")


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction: str = "mean", pos_weight=None):
    tensors = [input, target] + [t for t in (weight, pos_weight) if t is not None]
    attrs = {"reduction": _reduction(reduction), "pos_weight": pos_weight is not None}
    return apply("binary_cross_entropy_with_logits", tensors, attrs, "BinaryCrossEntropyWithLogitsBackward0")
