"""Views, strides and indexing details against PyTorch 2.13: which basic indices are slices or
aliases, contiguity of indexing views, reshape/view of strided views, matmul folding names and
eager index errors."""

from __future__ import annotations

import re

import pytest

import gradserve as torch


def raises(exc, message):
    return pytest.raises(exc, match="^" + re.escape(message) + "$")


# (index, grad_fn name, is_contiguous) for a (2, 3) tensor, as PyTorch 2.13 prints them
BASIC = [
    (slice(None), "SliceBackward0", True),
    ((slice(None),), "AliasBackward0", True),
    ((slice(None), slice(0, None)), "AliasBackward0", True),
    ((slice(None), slice(0, 5)), "AliasBackward0", True),
    ((slice(-2, None),), "SliceBackward0", True),
    ((slice(0, 2), 1), "SelectBackward0", False),
    ((Ellipsis, 1), "SelectBackward0", False),
    ((1, Ellipsis), "SelectBackward0", True),
    ((slice(None), slice(None, None, 2)), "SliceBackward0", False),
    ((slice(None), slice(1, 3)), "SliceBackward0", False),
    ((slice(1, 2), slice(0, 3)), "SliceBackward0", True),
    ((slice(None), None, 0), "SelectBackward0", False),
    ("tensor0", "SelectBackward0", True),
    ("col_tensor1", "SelectBackward0", False),
]


@pytest.mark.parametrize(("index", "name", "contiguous"), BASIC)
def test_basic_index_names_and_contiguity(index, name, contiguous):
    x = torch.ones(2, 3, requires_grad=True)
    if index == "tensor0":
        index = torch.tensor(0)
    elif index == "col_tensor1":
        index = (slice(None), torch.tensor(1))
    y = x[index]
    assert y.grad_fn.name() == name
    assert y.is_contiguous() is contiguous
    assert y.contiguous().grad_fn.name() == (name if contiguous else "CloneBackward0")


def test_parts_along_inner_dims_are_not_contiguous():
    z = torch.ones(2, 3, 4)
    assert [z.unbind(d)[0].is_contiguous() for d in range(3)] == [True, False, False]
    assert [z.split(1, d)[0].is_contiguous() for d in range(3)] == [True, False, False]
    assert [z.chunk(2, d)[0].is_contiguous() for d in range(3)] == [True, False, False]


def test_reshape_and_view_follow_strides():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    assert x.T.reshape(2, 2).grad_fn.name() == "ReshapeAliasBackward0"
    assert x.T.reshape(4).grad_fn.name() == "UnsafeViewBackward0"
    t = torch.ones(4, 1, 2, 2, requires_grad=True) * 1
    u = t[::2].unbind(2)[1][1::2]          # size-1 dims make this contiguous again
    assert u.is_contiguous() and u.reshape(-1).grad_fn.name() == "ViewBackward0"
    w = torch.ones(3, 2, 3, requires_grad=True)[:, None, 1:]
    assert not w.is_contiguous()
    assert w.view_as(w).grad_fn.name() == "ViewBackward0"
    with raises(RuntimeError, "view size is not compatible with input tensor's size and stride (at least one "
                              "dimension spans across two contiguous subspaces). Use .reshape(...) instead."):
        w.view(-1)
    with raises(RuntimeError, "shape '[-1, 3, 2]' is invalid for input of size 2"):
        torch.ones(4)[1::2].view(-1, 3, 2)


@pytest.mark.parametrize(("s1", "s2", "grad1", "name"), [
    ((1, 2), (1, 2, 1), True, "TransposeBackward0"),
    ((2, 3), (2, 3, 2), True, "CloneBackward0"),
    ((2, 3), (2, 3, 2), False, "UnsafeViewBackward0"),
    ((2, 3), (4, 3, 1), True, "TransposeBackward0"),
    ((3,), (2, 3, 2), True, "UnsafeViewBackward0"),
    ((2, 3), (2, 2, 3, 2), True, "CloneBackward0"),
])
def test_matmul_of_a_matrix_with_a_batch(s1, s2, grad1, name):
    a = torch.ones(*s1, requires_grad=grad1)
    b = torch.ones(*s2, requires_grad=True)
    assert (a @ b).grad_fn.name() == name


def test_index_errors_are_index_errors_and_eager_for_known_indices():
    x = torch.ones(2, 3)
    with raises(IndexError, "too many indices for tensor of dimension 2"):
        x[0, 0, 0]
    with raises(IndexError, "index 5 is out of bounds for dimension 0 with size 2"):
        x[5]
    with raises(IndexError, "index 5 is out of bounds for dimension 0 with size 3"):
        x[:, torch.tensor([5])]
    with raises(IndexError, "index 7 is out of bounds for dimension 1 with size 3"):
        x[torch.tensor([0]), torch.tensor([7])]
    with raises(IndexError, "index 4 is out of bounds for dimension 0 with size 2"):
        x[torch.tensor(4)]
    with raises(IndexError, "index out of range in self"):
        x.index_select(0, torch.tensor([2]))
    with raises(RuntimeError, "index -1 is out of bounds for dimension 1 with size 3"):
        x.gather(1, torch.tensor([[-1]]))
    with raises(ValueError, "Expected input batch_size (1) to match target batch_size (2)."):
        torch.nn.functional.cross_entropy(torch.tensor([[1.0, 2.0]]), torch.tensor([0, 1]))
