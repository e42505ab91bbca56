"""Tensor reprs match PyTorch 2.13 byte for byte (expected strings from its printed output)."""

import numpy as np
import pytest

from gradserve._format import tensor_repr

f32, f64 = np.float32, np.float64

CASES = [
    (np.ones((2, 2), f32), {"requires_grad": True},
     "tensor([[1., 1.],\n        [1., 1.]], requires_grad=True)"),
    (np.full((2, 2), 3, f32), {"grad_fn": "AddBackward0"},
     "tensor([[3., 3.],\n        [3., 3.]], grad_fn=<AddBackward0>)"),
    (np.array(3.0, f32), {"grad_fn": "MeanBackward0"}, "tensor(3., grad_fn=<MeanBackward0>)"),
    (np.array(3.0, f32), {"requires_grad": True}, "tensor(3., requires_grad=True)"),
    (np.array([1.5, 2.0, -3.25], f32), {}, "tensor([ 1.5000,  2.0000, -3.2500])"),
    (np.array([1.5, 2.0], f64), {}, "tensor([1.5000, 2.0000], dtype=torch.float64)"),
    (np.array([3.0, 4.0], f64), {"grad_fn": "MulBackward0"},
     "tensor([3., 4.], dtype=torch.float64, grad_fn=<MulBackward0>)"),
    (np.array([1, 2, 3]), {}, "tensor([1, 2, 3])"),
    (np.array([1, 2], np.int32), {}, "tensor([1, 2], dtype=torch.int32)"),
    (np.array([1, 2], np.float16), {}, "tensor([1., 2.], dtype=torch.float16)"),
    (np.array([True, False]), {}, "tensor([ True, False])"),
    (np.array([], f32), {}, "tensor([])"),
    (np.array([], f32), {"requires_grad": True}, "tensor([], requires_grad=True)"),
    (np.zeros((0, 3), f32), {}, "tensor([], size=(0, 3))"),
    (np.zeros((0, 3), f32), {"requires_grad": True}, "tensor([], size=(0, 3), requires_grad=True)"),
    (np.array([1e-5, 1e5, 1.0], f32), {}, "tensor([1.0000e-05, 1.0000e+05, 1.0000e+00])"),
    (np.array([1e-9, 1.0], f32), {}, "tensor([1.0000e-09, 1.0000e+00])"),
    (np.array([1.23456, 2.0], f32), {}, "tensor([1.2346, 2.0000])"),
    (np.array([[-1.0, 2.0], [3.0, -4.0]], f32), {}, "tensor([[-1.,  2.],\n        [ 3., -4.]])"),
    (np.array([np.inf, np.nan, 1.0], f32), {}, "tensor([inf, nan, 1.])"),
    (np.array([np.nan], f32), {}, "tensor([nan])"),
    (np.array([1.0, 10.0, 100.0], f32), {}, "tensor([  1.,  10., 100.])"),
    (np.array([-0.0, 1.0], f32), {}, "tensor([-0., 1.])"),
    (np.array([1.0, 1e5], f32), {}, "tensor([1.0000e+00, 1.0000e+05])"),
    (np.array([1e8, 1.0], f32), {}, "tensor([1.0000e+08, 1.0000e+00])"),
    (np.array([1.2346e5, 1.0], f32), {}, "tensor([1.2346e+05, 1.0000e+00])"),
    (np.array([0.001, 0.5], f32), {}, "tensor([0.0010, 0.5000])"),
    (np.array(5), {}, "tensor(5)"),
    (np.array(5.0, f64), {}, "tensor(5., dtype=torch.float64)"),
    (np.array([1099511627776, -3]), {}, "tensor([1099511627776,            -3])"),
    (np.arange(1001), {}, "tensor([   0,    1,    2,  ...,  998,  999, 1000])"),
    (np.arange(2000.0, dtype=f32), {},
     "tensor([0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 1.9970e+03, 1.9980e+03,\n        1.9990e+03])"),
    (np.arange(12, dtype=f32) * 1.5, {},
     "tensor([ 0.0000,  1.5000,  3.0000,  4.5000,  6.0000,  7.5000,  9.0000, 10.5000,\n"
     "        12.0000, 13.5000, 15.0000, 16.5000])"),
    (np.arange(24.0, dtype=f32).reshape(2, 3, 4), {},
     "tensor([[[ 0.,  1.,  2.,  3.],\n         [ 4.,  5.,  6.,  7.],\n         [ 8.,  9., 10., 11.]],\n\n"
     "        [[12., 13., 14., 15.],\n         [16., 17., 18., 19.],\n         [20., 21., 22., 23.]]])"),
    (np.ones((2, 1, 2), f32), {"grad_fn": "MulBackward0"},
     "tensor([[[1., 1.]],\n\n        [[1., 1.]]], grad_fn=<MulBackward0>)"),
    (np.array([2.5128, -0.5399, -4.2966], f64), {"grad_fn": "SumBackward1"},
     "tensor([ 2.5128, -0.5399, -4.2966], dtype=torch.float64,\n       grad_fn=<SumBackward1>)"),
]


@pytest.mark.parametrize("array, kwargs, expected", CASES, ids=[c[2][:40] for c in CASES])
def test_repr_matches_pytorch(array, kwargs, expected):
    assert tensor_repr(array, **kwargs) == expected
