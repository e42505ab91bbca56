"""The one op registry: each op is a record with its forward, backward and shape rule side by side.

Rule signatures (every op, no exceptions):

    infer(specs: list[TensorSpec], attrs) -> TensorSpec           # no allocation, raises GraphError
    forward(xs: list[ndarray], attrs) -> ndarray
    backward(g, xs: list[ndarray], out: ndarray, attrs) -> tuple[ndarray | None, ...]

`backward` returns one gradient (or None) per input. A gradient may have the broadcast shape of the
op's output: the executor sums it back to the input's shape (`sum_to`) and casts it to the input's
dtype, once, centrally. `saves` says what backward reads: "inputs" (all of them), "output", or
input positions (ints); it may also be a function of the number of inputs returning those (so `mul`
by a Python scalar saves nothing while `mul` of two tensors saves both). Values backward does not
read are freed early; backward then receives zero-strided stand-ins that carry only shape and dtype.

Rules whose per-input work is expensive (the matmul family) may be registered with
`masks_inputs=True`: backward is then also passed `needs_input_grad=` (a tuple of bools, like
torch's ctx.needs_input_grad) and may return None where it is False.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .errors import ArityError, AttributeValueError, ShapeError
from .graph import TensorSpec

Attrs = Mapping[str, Any]
Infer = Callable[[Sequence[TensorSpec], Attrs], TensorSpec]
Forward = Callable[[Sequence[np.ndarray], Attrs], np.ndarray]
Backward = Callable[[np.ndarray, Sequence[np.ndarray], np.ndarray, Attrs], Sequence[np.ndarray | None]]

INPUTS, OUTPUT = "inputs", "output"
Saves = Sequence[str | int]


@dataclass(frozen=True, slots=True)
class Op:
    name: str
    arity: tuple[int, int | None]          # (min, max); max None means variadic
    infer: Infer
    forward: Forward
    backward: Backward | None              # None: not differentiable (comparisons, arg-ops, ...)
    saves: frozenset[str | int] | Callable[[int], Saves] = frozenset({INPUTS, OUTPUT})
    masks_inputs: bool = False             # backward accepts needs_input_grad=

    @property
    def differentiable(self) -> bool:
        return self.backward is not None

    def reads(self, n_inputs: int) -> tuple[tuple[int, ...], bool]:
        """Which input positions and whether the output backward reads, for `n_inputs` inputs."""
        saves = self.saves(n_inputs) if callable(self.saves) else self.saves
        if INPUTS in saves:
            return tuple(range(n_inputs)), OUTPUT in saves
        return tuple(j for j in range(n_inputs) if j in saves), OUTPUT in saves

    def check_arity(self, n: int) -> None:
        lo, hi = self.arity
        if n < lo or (hi is not None and n > hi):
            want = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi is not None else f"at least {lo}"
            raise ArityError(f"expects {want} inputs, got {n}")


OPS: dict[str, Op] = {}


def register(name: str, *, infer: Infer, forward: Forward, backward: Backward | None,
             arity: int | tuple[int, int | None] = 1,
             saves: Saves | Callable[[int], Saves] = (INPUTS, OUTPUT),
             masks_inputs: bool = False) -> Op:
    if name in OPS:
        raise ValueError(f"op {name!r} registered twice")
    if isinstance(arity, int):
        arity = (arity, arity)
    op = Op(name, arity, infer, forward, backward, saves if callable(saves) else frozenset(saves),
            masks_inputs)
    OPS[name] = op
    return op


# ---------------------------------------------------------------------------------------------
# Helpers shared by the op tables


def sum_to(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a broadcast gradient back to `shape`: leading dims first, then every dim of size 1."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    if lead:
        g = g.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return np.asarray(g.reshape(shape))   # a full reduction gives a NumPy scalar, not an array


def keep_max(a, b):
    """torch.maximum / clamp's lower bound: NaN propagates and a tie keeps `a`, so clamping -0.0
    at 0 gives -0.0 as in PyTorch (NumPy's maximum may return either zero)."""
    return _keep(np.maximum, a, b)


def keep_min(a, b):
    """torch.minimum / clamp's upper bound, with the same tie and NaN rules as `keep_max`."""
    return _keep(np.minimum, a, b)


def _keep(pick, a, b):
    # pick() then a masked copy for the ties: an order of magnitude faster than np.where here.
    out = np.asarray(pick(a, b))
    np.copyto(out, a, where=(a == b))
    return out


def spec_of(x: np.ndarray) -> TensorSpec:
    return TensorSpec(x.shape, x.dtype)


def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        pass
    # PyTorch's infer_size message, for the first pair (left to right) that does not broadcast.
    out = tuple(shapes[0])
    for b in shapes[1:]:
        n = max(len(out), len(b))
        for i in range(1, min(len(out), len(b)) + 1):
            x, y = out[-i], b[-i]
            if x != y and x != 1 and y != 1:
                raise ShapeError(f"The size of tensor a ({x}) must match the size of tensor b ({y}) "
                                 f"at non-singleton dimension {n - i}")
        out = tuple(np.broadcast_shapes(out, tuple(b)))
    raise ShapeError("shapes " + ", ".join(str(tuple(s)) for s in shapes) + " cannot be broadcast together")


def attr(attrs: Attrs, name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    """Read one attribute, checking its type. A missing or None value gives `default`
    (`...`, the default, makes the attribute required). Ints are accepted (as floats) where floats
    are and ints are not; bools are never taken for ints."""
    value = attrs.get(name)
    if value is None:
        if default is ...:
            raise AttributeValueError(f"missing attribute {name!r}")
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        pass
    elif float in kinds and int not in kinds and isinstance(value, int):
        return float(value)
    elif isinstance(value, kinds):
        return value
    names = "/".join(k.__name__ for k in kinds)
    raise AttributeValueError(f"attribute {name!r} must be {names}, got {value!r}")


def norm_dim(dim: int, ndim: int) -> int:
    """Wrap a possibly negative dim; 0-dim tensors accept dim 0 and -1 as PyTorch does."""
    n = max(ndim, 1)
    if not isinstance(dim, int) or isinstance(dim, bool) or not -n <= dim < n:
        raise AttributeValueError(
            f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})")
    return dim % n


def norm_dims(dims: Any, ndim: int) -> tuple[int, ...]:
    """None or () mean every dim; ints and tuples of ints are wrapped and deduplicated."""
    if dims is None or dims == ():
        return tuple(range(ndim))
    if isinstance(dims, int):
        dims = (dims,)
    out = tuple(sorted({norm_dim(d, ndim) for d in dims}))
    if len(out) != len(dims):
        raise AttributeValueError(f"dim {tuple(dims)} appears multiple times in the list of dims")
    return tuple(d for d in out if d < ndim)
