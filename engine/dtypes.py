"""PyTorch's dtype rules (not NumPy's): categories, promotion, defaults."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from .errors import DTypeError
from .graph import TensorSpec

DEFAULT_FLOAT = np.dtype(np.float32)
INT64 = np.dtype(np.int64)
BOOL = np.dtype(np.bool_)

SUPPORTED = {np.dtype(n) for n in (
    "bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64")}
BY_NAME = {d.name: d for d in SUPPORTED}


def is_float(dtype: np.dtype) -> bool:
    return dtype.kind == "f"


def is_bool(dtype: np.dtype) -> bool:
    return dtype.kind == "b"


def category(dtype: np.dtype) -> int:
    """0 bool, 1 integer, 2 floating."""
    return {"b": 0, "u": 1, "i": 1, "f": 2}[dtype.kind]


def promote(a: np.dtype | None, b: np.dtype | None) -> np.dtype | None:
    """torch.promote_types: an int/float mix gives the float type, bool gives way to anything."""
    if a is None:
        return b
    if b is None:
        return a
    ca, cb = category(a), category(b)
    if ca != cb:
        return a if ca > cb else b
    return np.promote_types(a, b)


def scalar_dtype(value: object) -> np.dtype:
    """The dtype a Python scalar operand takes part in promotion with (a 'wrapped number')."""
    if isinstance(value, (bool, np.bool_)):
        return BOOL
    if isinstance(value, (int, np.integer)):
        return INT64
    return DEFAULT_FLOAT


def _combine(higher: np.dtype | None, lower: np.dtype | None) -> np.dtype | None:
    if higher is None:
        return lower
    if lower is None or is_float(higher):
        return higher
    if is_bool(higher) or is_float(lower):
        return promote(higher, lower)
    return higher


def result_type(specs: Sequence[TensorSpec], scalars: Iterable[object] = ()) -> np.dtype:
    """torch.result_type over tensors and Python scalars.

    Three priority levels: tensors with dims, 0-dim tensors, Python scalars. A lower level only
    changes the result when it is of a higher category (float over int over bool).
    """
    if specs:  # fast path: one tensor dtype that no operand can change
        first = specs[0].dtype
        if (first.kind == "f" or not scalars) and all(s.dtype == first for s in specs):
            return first
    dim = zero = wrapped = None
    for s in specs:
        if s.ndim:
            dim = promote(dim, s.dtype)
        else:
            zero = promote(zero, s.dtype)
    for v in scalars:
        wrapped = promote(wrapped, scalar_dtype(v))
    out = _combine(dim, _combine(zero, wrapped))
    if out is None:
        raise DTypeError("cannot infer a result dtype without operands")
    return out


def floating_result(dtype: np.dtype) -> np.dtype:
    """Ops like true division and exp turn integers and bools into the default float dtype."""
    return dtype if is_float(dtype) else DEFAULT_FLOAT


def require_float(dtype: np.dtype, what: str) -> None:
    if not is_float(dtype):
        raise DTypeError(f"{what} expects a floating point tensor, got {dtype.name}")


# PyTorch's scalar-type names, for messages that quote them ("... Got: Long").
TORCH_NAMES = {"bool": "Bool", "uint8": "Byte", "int8": "Char", "int16": "Short", "int32": "Int",
               "int64": "Long", "float16": "Half", "float32": "Float", "float64": "Double"}


def parse_dtype(value: object) -> np.dtype:
    """A dtype attribute: one of the wire names ("float32", ...)."""
    from .errors import AttributeValueError
    if not isinstance(value, str) or value not in BY_NAME:
        raise AttributeValueError(f"unsupported dtype {value!r}; expected one of "
                                  + ", ".join(sorted(BY_NAME)))
    return BY_NAME[value]
