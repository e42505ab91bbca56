"""The op tables. Importing this package fills `registry.OPS`; each module is one family.

Op reference for graph builders (the client). Inputs are tensors (node inputs); Python scalars
and options are attrs. `dim` is an int (negative wraps); `dims` a tuple of ints; "dim*" means
None / int / tuple (None and () reduce every dim). Dtypes are wire names ("float32", ...).
Every node has ONE output: multi-output torch functions are several nodes.

elementwise.py  (binary: 2 tensors broadcast, or 1 tensor + attrs["other"] a Python scalar)
  add, sub            (a, b) | (a; other)        alpha=1        a + alpha*b / a - alpha*b
  rsub                (a; other)                 alpha=1        other - alpha*a   (1 - a)
  mul                 (a, b) | (a; other)
  div                 (a, b) | (a; other)        rounding_mode=None|"trunc"|"floor"
  pow                 (a, b) | (a; other=exponent)
  rpow                (a; other=base)                           base ** a   (2 ** a)
  maximum, minimum    (a, b)                                    ties: half the gradient each
  eq ne lt le gt ge   (a, b) | (a; other)                       -> bool, no grad
  logical_and/or/xor  (a, b) | (a; other);  logical_not, isnan, isinf, isfinite (a) -> bool
  clamp               (x; min=, max=) scalars (one may be None)
  clamp_tensor        (x[, min][, max]; has_min=False, has_max=False) tensor bounds
  clamp_min/max       (x; min= / max=) | (x, bound)
unary.py  (one tensor; ints -> float32 where the result is floating)
  exp expm1 log log1p log2 log10 sqrt rsqrt reciprocal square sin cos tan tanh sigmoid
  neg abs sign floor ceil trunc | round (decimals=0)     sign..round: zero gradients
reduce.py
  sum                 (x; dim*=None, keepdim=False, dtype=None)   int/bool -> int64
  mean                (x; dim*, keepdim, dtype)  integer input without float dtype -> DTypeError
  prod                (x; dim=None|int, keepdim, dtype)
  var, std            (x; dim*, correction=1 | unbiased=bool, keepdim)
  amax, amin          (x; dim*, keepdim)         ties share the gradient evenly
  max, min            (x)                        full reduction, ties shared evenly
  max_dim, min_dim    (x; dim, keepdim)          values; gradient one-hot at the first extreme
  argmax, argmin      (x; dim=None|int, keepdim) -> int64 (the indices of max(dim)/min(dim))
  logsumexp           (x; dim*, keepdim)
  norm                (x; p=2 (float, inf, -inf, 0, "fro"), dim*, keepdim)  vector norm
  all, any            (x; dim*, keepdim) -> bool
shape.py
  reshape (x; shape) with one -1 | flatten (x; start_dim=0, end_dim=-1)
  squeeze (x; dim*=None) | unsqueeze (x; dim) | permute (x; dims) | transpose (x; dim0, dim1)
  movedim (x; source, destination tuples) | expand (x; shape, -1 keeps) | flip (x; dims)
  cast (x; dtype) gradient cast back | clone (x) | contiguous (x)
  cat, stack          (x1, x2, ...; dim=0)       dtypes promote
  split               (x; split_size=int|tuple, dim=0, index)   part `index`
  chunk               (x; chunks, dim=0, index) | unbind (x; dim=0, index)
  repeat              (x; repeats)
  pad                 (x; pad=(left_last, right_last, ...), value=0.0)  constant; negative crops
index.py
  getitem             (x, *index tensors; index)        index item grammar in index.py:
                      int | None | "..." | ("slice", start, stop, step) | "tensor" |
                      ("mask", n_true) (bool mask input; n_true declared so shapes are static)
  index_put           (x, value, *index tensors; index, accumulate=False) | (x, *index; value=s)
                      out-of-place `x[index] = value` (setitem on non-leaves)
  gather (x, index; dim) | index_select (x, index; dim)
  masked_fill         (x, mask; value=scalar) | (x, mask, value 0-dim tensor)
  where               (cond, x, y) | (cond, y; input=scalar) | (cond, x; other=scalar)
linalg.py  (operands share one dtype)
  matmul (a, b) 1-D/2-D/batched/broadcast | mm | bmm | mv | dot | outer
  linear              (x, W[, b])                x @ W.T + b
  addmm               (bias, m1, m2; beta=1, alpha=1)
nn.py
  softmax, log_softmax  (x; dim, dtype=None)
  cross_entropy       (logits, target[, weight]; reduction="mean", ignore_index=-100,
                      label_smoothing=0.0)  int target = class indices, float = probabilities
  nll_loss            (logp, target[, weight]; reduction, ignore_index)
  mse_loss, l1_loss   (input, target; reduction)
  smooth_l1_loss      (input, target; reduction, beta=1.0)
  binary_cross_entropy  (p, target[, weight]; reduction)
  binary_cross_entropy_with_logits  (x, target[, weight][, pos_weight]; reduction,
                      pos_weight=False: True when the LAST input is pos_weight)
  relu | leaky_relu (negative_slope=0.01) | elu (alpha=1, scale=1, input_scale=1)
  softplus (beta=1, threshold=20) | hardtanh (min_val=-1, max_val=1; boundaries get 0)
  gelu (approximate="none"|"tanh") | silu | erf
  dropout             (x; p=0.5, seed) deterministic mask | (x, mask; p): x * mask / (1-p)
Weights, pos_weight, targets of class indices and index tensors get no gradient (None).
"""

from . import elementwise, index, linalg, nn, reduce, shape, unary  # noqa: F401
