"""PyTorch's dtype rules, through infer_node (what the client sees) and real evaluation."""

from __future__ import annotations

import numpy as np
import pytest
from engine_util import forward, grads

from gradserve.engine import DTypeError, TensorSpec, infer_node

F32, F64, I64, I32, B = (np.dtype(n) for n in ("float32", "float64", "int64", "int32", "bool"))


def spec(shape, dtype):
    return TensorSpec(tuple(shape), np.dtype(dtype))


@pytest.mark.parametrize("op, specs, attrs, dtype", [
    ("mul", [spec((2,), F32)], {"other": 2.5}, F32),             # Python scalars do not promote
    ("mul", [spec((2,), I64)], {"other": 2.5}, F32),             # int * float scalar -> default
    ("add", [spec((2,), I32)], {"other": 3}, I32),
    ("add", [spec((2,), B)], {"other": 3}, I64),
    ("add", [spec((2,), F32), spec((), F64)], {}, F32),         # 0-dim does not promote
    ("add", [spec((2,), F32), spec((1,), F64)], {}, F64),       # 1-dim does
    ("add", [spec((2,), I32), spec((), F64)], {}, F64),         # ...unless higher category
    ("add", [spec((2,), I64), spec((), F32)], {}, F32),
    ("div", [spec((2,), I64), spec((2,), I64)], {}, F32),       # int / int -> float32
    ("div", [spec((2,), I64), spec((2,), I64)], {"rounding_mode": "floor"}, I64),
    ("lt", [spec((2,), F32), spec((2,), F64)], {}, B),
    ("eq", [spec((2,), I64)], {"other": 1.5}, B),
    ("sum", [spec((2,), B)], {}, I64),
    ("sum", [spec((2,), I32)], {}, I64),
    ("sum", [spec((2,), I32)], {"dtype": "float64"}, F64),
    ("prod", [spec((2,), B)], {}, I64),
    ("mean", [spec((2,), I64)], {"dtype": "float32"}, F32),
    ("exp", [spec((2,), I64)], {}, F32),
    ("sqrt", [spec((2,), B)], {}, F32),
    ("abs", [spec((2,), I32)], {}, I32),
    ("square", [spec((2,), B)], {}, I64),
    ("pow", [spec((2,), I64)], {"other": 2}, I64),
    ("pow", [spec((2,), I64)], {"other": 0.5}, F32),
    ("rpow", [spec((2,), I64)], {"other": 2.0}, F32),
    ("argmax", [spec((2, 3), F32)], {"dim": 1}, I64),
    ("cat", [spec((2,), I32), spec((2,), F32)], {}, F32),
    ("where", [spec((2,), B), spec((2,), F32)], {"other": 0}, F32),
    ("where", [spec((2,), B), spec((2,), I64)], {"other": 0.5}, F32),
    ("clamp", [spec((2,), I64)], {"min": 0.5}, F32),
    ("maximum", [spec((2,), I32), spec((2,), F64)], {}, F64),
    ("logsumexp", [spec((2,), I64)], {"dim": 0}, F32),
    ("isnan", [spec((2,), F32)], {}, B),
    ("any", [spec((2,), F32)], {}, B),
    ("cast", [spec((2,), F32)], {"dtype": "int32"}, I32),
])
def test_result_dtype(op, specs, attrs, dtype):
    assert infer_node(op, specs, attrs).dtype == dtype


def test_mean_of_int_raises_torch_message():
    with pytest.raises(DTypeError) as e:
        infer_node("mean", [spec((2,), I64)], {})
    assert str(e.value) == ("mean(): could not infer output dtype. Input dtype must be either a "
                            "floating point or complex dtype. Got: Long")


def test_var_of_int_and_matmul_of_mixed_dtypes_raise():
    with pytest.raises(DTypeError):
        infer_node("var", [spec((2,), I64)], {})
    with pytest.raises(DTypeError, match="float != double"):
        infer_node("matmul", [spec((2, 2), F32), spec((2, 2), F64)], {})


def test_values_have_torch_dtypes_not_numpy_ones():
    assert forward("div", np.array([3, 4]), np.array([2, 2])).tolist() == [1.5, 2.0]
    assert forward("div", np.array([3, 4]), np.array([2, 2])).dtype == F32
    assert forward("mul", np.array([1, 2]), other=2.5).dtype == F32
    assert forward("add", np.ones(2, F32), np.float64(1.0) * np.ones((), F64)).dtype == F32
    assert forward("sum", np.array([True, True, False])).dtype == I64
    assert forward("sum", np.array([True, True, False])) == 2


def test_gradients_have_their_inputs_dtype():
    g32, g64 = grads("mul", np.ones(2, F32), np.ones(2, F64))
    assert g32.dtype == F32 and g64.dtype == F64
    (g,) = grads("cast", np.ones(2, F32), dtype="float64")
    assert g.dtype == F32
