"""torch dtypes (`gradserve.float32` ...), mapped one to one onto NumPy dtypes."""

from __future__ import annotations

import numpy as np


class dtype:  # noqa: N801  (named as torch names it)
    """A tensor element type; `repr` is `torch.float32` as in PyTorch."""

    __slots__ = ("name", "numpy", "is_floating_point", "is_signed", "itemsize", "_legacy", "_scalar",
                 "_cname")

    def __init__(self, name: str, legacy: str, scalar: str, cname: str) -> None:
        self.name = name
        self.numpy = np.dtype(name)
        self.is_floating_point = self.numpy.kind == "f"
        self.is_signed = self.numpy.kind in "fi"
        self.itemsize = self.numpy.itemsize
        self._legacy = legacy      # torch.FloatTensor, in version-counter messages
        self._scalar = scalar      # c10::ScalarType name: Float, Long, ...
        self._cname = cname        # caffe2 TypeMeta name: float, long int, ...

    @property
    def is_complex(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"torch.{self.name}"

    def __reduce__(self):
        return (from_numpy_dtype, (self.numpy.name,))


float32 = dtype("float32", "FloatTensor", "Float", "float")
float64 = dtype("float64", "DoubleTensor", "Double", "double")
float16 = dtype("float16", "HalfTensor", "Half", "c10::Half")
int64 = dtype("int64", "LongTensor", "Long", "long int")
int32 = dtype("int32", "IntTensor", "Int", "int")
int16 = dtype("int16", "ShortTensor", "Short", "short int")
int8 = dtype("int8", "CharTensor", "Char", "signed char")
uint8 = dtype("uint8", "ByteTensor", "Byte", "unsigned char")
bool_ = dtype("bool", "BoolTensor", "Bool", "bool")

_BY_NUMPY = {d.numpy: d for d in (float32, float64, float16, int64, int32, int16, int8, uint8, bool_)}

# Aliases exported under torch's names (`float`, `double`, `long`, `int`, `half`, `short`, `bool`).
ALIASES = {
    "float32": float32, "float": float32, "float64": float64, "double": float64,
    "float16": float16, "half": float16, "int64": int64, "long": int64, "int32": int32, "int": int32,
    "int16": int16, "short": int16, "int8": int8, "uint8": uint8, "bool": bool_,
}

_default = float32


def from_numpy_dtype(np_dtype) -> dtype:
    d = np.dtype(np_dtype)
    try:
        return _BY_NUMPY[d]
    except KeyError:
        raise TypeError(f"can't convert np.ndarray of type numpy.{d.name}. The only supported types "
                        "are: float64, float32, float16, int64, int32, int16, int8, uint8, and bool."
                        ) from None


def to_numpy(d: "dtype | np.dtype | type | str | None") -> np.dtype | None:
    """Accept a torch dtype, a NumPy dtype or a Python type; None passes through."""
    if d is None:
        return None
    if isinstance(d, dtype):
        return d.numpy
    if d is float:
        return _default.numpy
    if d is int:
        return int64.numpy
    if d is bool:
        return bool_.numpy
    return from_numpy_dtype(d).numpy


def get_default_dtype() -> dtype:
    return _default


def set_default_dtype(d: dtype) -> None:
    global _default
    if not isinstance(d, dtype) or not d.is_floating_point or d is float16:
        raise TypeError("only floating-point types are supported as the default type")
    _default = d


def default_float() -> np.dtype:
    return _default.numpy
