"""Typed errors: each names the node and op, and bad graphs fail in plan before allocating."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from gradserve.engine import (
    ArityError,
    AttributeValueError,
    CycleError,
    DTypeError,
    EngineError,
    GradcheckError,
    Graph,
    GraphError,
    Leaf,
    LimitError,
    Limits,
    Node,
    ReferenceError_,
    ShapeError,
    TensorSpec,
    UnknownOpError,
    backward,
    check_jacobians,
    evaluate,
    infer_node,
    plan,
)

F32 = np.dtype(np.float32)


def x(i=0, shape=(2, 3), rg=True):
    return Leaf(i, shape, F32, rg)


@pytest.mark.parametrize("graph, error, text", [
    (Graph([x()], [Node(7, "frobnicate", (0,))]), UnknownOpError, "unknown op 'frobnicate'"),
    (Graph([x()], [Node(7, "exp", (0, 0))]), ArityError, "expects 1 inputs, got 2"),
    (Graph([x()], [Node(7, "sum", (0,), {"keepdim": "yes"})]), AttributeValueError, "keepdim"),
    (Graph([x()], [Node(7, "sum", (0,), {"dim": 5})]), AttributeValueError, "Dimension out of range"),
    (Graph([x()], [Node(7, "div", (0,), {"rounding_mode": "up"})]), AttributeValueError,
     "rounding_mode"),
    (Graph([x(), Leaf(1, (4, 5), F32)], [Node(7, "matmul", (0, 1))]), ShapeError,
     "mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"),
    (Graph([x(), Leaf(1, (4,), F32)], [Node(7, "add", (0, 1))]), ShapeError,
     "The size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 1"),
    (Graph([x()], [Node(7, "reshape", (0,), {"shape": (4, 2)})]), ShapeError,
     "shape '[4, 2]' is invalid for input of size 6"),
    (Graph([Leaf(0, (2,), np.dtype(np.int64))], [Node(7, "mean", (0,))]), DTypeError,
     "Got: Long"),
    (Graph([x()], [Node(7, "exp", (8,)), Node(8, "exp", (0,))]), ReferenceError_,
     "refers forward"),
    (Graph([x()], [Node(7, "exp", (99,))]), ReferenceError_, "input 99 is not a leaf or an earlier"),
    (Graph([x()], [Node(7, "exp", (8,)), Node(8, "exp", (7,))]), CycleError, "cycle"),
    (Graph([x()], [Node(7, "exp", (7,))]), CycleError, "cycle"),
    (Graph([x()], [Node(0, "exp", (0,))]), ReferenceError_, "used twice"),
])
def test_plan_errors_name_node_and_op(graph, error, text):
    with pytest.raises(error) as e:
        plan(graph)
    assert text in str(e.value)
    node = graph.nodes[0]
    assert str(e.value).startswith(f"node {node.id} ({node.op}): ")
    assert (e.value.node, e.value.op) == (node.id, node.op)
    assert isinstance(e.value, GraphError)


def test_element_limit_fails_in_plan_without_allocating():
    # a 10**12-element intermediate: plan must refuse before any array exists
    g = Graph([Leaf(0, (10**6, 1), F32), Leaf(1, (1, 10**6), F32)],
              [Node(5, "mul", (0, 1))])
    with pytest.raises(LimitError) as e:
        plan(g)
    assert str(e.value).startswith("node 5 (mul): output of shape (1000000, 1000000)")
    g = Graph([Leaf(0, (10,), F32)], [Node(3, "expand", (0,), {"shape": (10**6, 10**6, 10)})])
    with pytest.raises(LimitError):
        plan(g)
    with pytest.raises(LimitError):
        plan(Graph([Leaf(0, (100,), F32)], [Node(1, "exp", (0,))]), Limits(max_elements=99))
    with pytest.raises(LimitError):
        plan(Graph([Leaf(0, (1,), F32)], [Node(i, "exp", (i - 1,)) for i in range(1, 12)]),
             Limits(max_nodes=10))


def test_infer_node_raises_the_same_errors():
    with pytest.raises(UnknownOpError):
        infer_node("nope", [], {})
    with pytest.raises(ArityError):
        infer_node("add", [], {})


def test_runtime_data_errors_name_the_node():
    g = Graph([x(), Leaf(1, (2,), np.dtype(np.int64))],
              [Node(4, "getitem", (0, 1), {"index": ("tensor",)})])
    with pytest.raises(ShapeError) as e:
        evaluate(plan(g), {0: np.ones((2, 3), F32), 1: np.array([0, 5])}, [4])
    assert str(e.value) == "node 4 (getitem): index 5 is out of bounds for dimension 0 with size 2"


def test_leaf_value_and_seed_mismatches():
    g = Graph([x()], [Node(1, "sum", (0,))])
    p = plan(g)
    with pytest.raises(GraphError, match="declared float32"):
        evaluate(p, {0: np.ones((2, 3))}, [1])
    with pytest.raises(ReferenceError_):
        evaluate(p, {}, [1])
    with pytest.raises(GraphError, match="seed for root 1"):
        list(backward(p, {0: np.ones((2, 3), F32)}, [1], {1: np.ones(2)}, [0]))
    with pytest.raises(GraphError, match="does not require grad"):
        list(backward(plan(Graph([x(rg=False)], [Node(1, "sum", (0,))])),
                      {0: np.ones((2, 3), F32)}, [1], {1: np.array(1.0)}, [0]))


def test_gradcheck_failure_message():
    def forward(xs):
        return [xs[0] * 2]

    def wrong_vjp(xs, j, cotangent):
        return [cotangent * 3]

    with pytest.raises(GradcheckError) as e:
        check_jacobians(forward, wrong_vjp, [np.array([1.0])])
    assert str(e.value).startswith("Jacobian mismatch for output 0 with respect to input 0,\n"
                                   "numerical:tensor([[2.]], dtype=torch.float64)\n"
                                   "analytical:tensor([[3.]], dtype=torch.float64)")
    assert not check_jacobians(forward, wrong_vjp, [np.array([1.0])], raise_exception=False)
    assert isinstance(e.value, EngineError)
    with pytest.warns(UserWarning, match="Input #0 requires gradient and is not a double"):
        # like torch: with float32 inputs the default eps makes the check fail
        assert not check_jacobians(forward, lambda xs, j, c: [c * 2], [np.array([1.0], F32)],
                                   raise_exception=False)


# PyTorch's own texts for operands the matmul family cannot multiply (found by the conformance
# programs; the client shows the engine's detail as the RuntimeError message).
@pytest.mark.parametrize("op, a, b, text", [
    ("matmul", (4,), (5, 2), "mat1 and mat2 shapes cannot be multiplied (1x4 and 5x2)"),
    ("matmul", (3, 3), (4, 2), "mat1 and mat2 shapes cannot be multiplied (3x3 and 4x2)"),
    ("matmul", (3, 4), (5,), "size mismatch, got input (3), mat (3x4), vec (5)"),
    ("matmul", (4,), (5,), "inconsistent tensor size, expected tensor [4] and src [5] to have the same "
                           "number of elements, but got 4 and 5 elements respectively"),
    ("matmul", (2, 3, 4), (5, 2), "mat1 and mat2 shapes cannot be multiplied (6x4 and 5x2)"),
    ("matmul", (2, 3, 4), (5,), "size mismatch, got input (6), mat (6x4), vec (5)"),
    ("matmul", (2, 3, 4), (2, 5, 2),
     "Expected size for first two dimensions of batch2 tensor to be: [2, 4] but got: [2, 5]."),
    ("matmul", (4,), (2, 5, 2),
     "Expected size for first two dimensions of batch2 tensor to be: [2, 4] but got: [2, 5]."),
    ("matmul", (2, 3, 4), (3, 4, 2),
     "The size of tensor a (2) must match the size of tensor b (3) at non-singleton dimension 0"),
    ("matmul", (2, 2, 3, 4), (3, 4, 2),
     "The size of tensor a (2) must match the size of tensor b (3) at non-singleton dimension 1"),
    ("mm", (3, 3), (4, 2), "mat1 and mat2 shapes cannot be multiplied (3x3 and 4x2)"),
    ("mm", (2, 3, 3), (3, 2), "self must be a matrix"),
    ("bmm", (2, 3, 4), (3, 4, 2),
     "Expected size for first two dimensions of batch2 tensor to be: [2, 4] but got: [3, 4]."),
    ("bmm", (3, 4), (4, 2), "batch1 must be a 3D tensor"),
    ("mv", (3, 4), (5,), "size mismatch, got input (3), mat (3x4), vec (5)"),
    ("mv", (3, 4), (4, 1), "vector + matrix @ vector expected, got 1, 2, 2"),
    ("dot", (2, 2), (4,), "1D tensors expected, but got 2D and 1D tensors"),
    ("outer", (2, 2), (3,), "outer: Expected 1-D argument self, but got 2-D"),
    ("linear", (2, 3, 4), (2, 5), "mat1 and mat2 shapes cannot be multiplied (6x4 and 5x2)"),
    ("linear", (4,), (2, 5), "mat1 and mat2 shapes cannot be multiplied (1x4 and 5x2)"),
])
def test_matmul_family_shape_errors_use_pytorch_text(op, a, b, text):
    with pytest.raises(ShapeError) as e:
        infer_node(op, [TensorSpec(a, F32), TensorSpec(b, F32)], {})
    assert e.value.detail == text


def test_linear_bias_and_outer_dtypes_follow_pytorch():
    with pytest.raises(ShapeError) as e:
        infer_node("linear", [TensorSpec((3, 4), F32), TensorSpec((2, 4), F32), TensorSpec((3,), F32)], {})
    assert e.value.detail == ("The expanded size of the tensor (2) must match the existing size (3) at "
                              "non-singleton dimension 1.  Target sizes: [3, 2].  Tensor sizes: [3]")
    # outer promotes like mul (conformance: float32 x float64 -> float64)
    spec = infer_node("outer", [TensorSpec((3,), F32), TensorSpec((2,), np.dtype(np.float64))], {})
    assert spec == TensorSpec((3, 2), np.dtype(np.float64))


I64 = np.dtype(np.int64)


@pytest.mark.parametrize("op, specs, attrs, text", [
    ("gather", [((3, 4), F32), ((2, 4), F32)], {"dim": 0}, "gather(): Expected dtype int32/int64 for index"),
    ("index_select", [((3, 4), F32), ((2,), F32)], {"dim": 0},
     "index_select(): Expected dtype int32 or int64 for index"),
    # the vector check comes before the dtype check
    ("index_select", [((3, 4), F32), ((2, 2), F32)], {"dim": 0},
     "index_select(): Index is supposed to be a vector"),
    ("cross_entropy", [((1, 3), F32), ((2,), I64)], {},
     "Expected input batch_size (1) to match target batch_size (2)."),
    ("nll_loss", [((2, 3), F32), ((3,), I64)], {},
     "Expected input batch_size (2) to match target batch_size (3)."),
    ("cross_entropy", [((2, 3), F32), ((2, 1), I64)], {},
     "0D or 1D target tensor expected, multi-target not supported"),
    ("cross_entropy", [((2, 3, 4), F32), ((2, 5), I64)], {}, "Expected target size [2, 4], got [2, 5]"),
])
def test_index_and_loss_errors_use_pytorch_text(op, specs, attrs, text):
    with pytest.raises(GraphError) as e:
        infer_node(op, [TensorSpec(s, d) for s, d in specs], attrs)
    assert e.value.detail == text


def test_index_select_out_of_range_text():
    g = Graph([x(), Leaf(1, (1,), I64)], [Node(4, "index_select", (0, 1), {"dim": 0})])
    with pytest.raises(ShapeError) as e:
        evaluate(plan(g), {0: np.ones((2, 3), F32), 1: np.array([5])}, [4])
    assert e.value.detail == "index out of range in self"


@pytest.mark.parametrize("op, a, b, text", [
    # shapes are checked before dtypes (conformance program: float64 vector @ float32 matrix) ...
    ("matmul", (3,), (4, 2), "mat1 and mat2 shapes cannot be multiplied (1x3 and 4x2)"),
    ("mm", (3, 3), (4, 2), "mat1 and mat2 shapes cannot be multiplied (3x3 and 4x2)"),
    ("linear", (3, 3), (2, 4), "mat1 and mat2 shapes cannot be multiplied (3x3 and 4x2)"),
    ("matmul", (2, 3), (4,), "size mismatch, got input (2), mat (2x3), vec (4)"),
    # ... except by dot
    ("matmul", (3,), (4,), "dot : expected both vectors to have same dtype, but found Float and Double"),
    ("dot", (3,), (4,), "dot : expected both vectors to have same dtype, but found Float and Double"),
])
def test_matmul_family_checks_shapes_before_dtypes(op, a, b, text):
    with pytest.raises(GraphError) as e:
        infer_node(op, [TensorSpec(a, F32), TensorSpec(b, np.dtype(np.float64))], {})
    assert e.value.detail == text


def test_gradcheck_numerical_jacobian_takes_the_output_dtype():
    # torch: float64 output of a float32 input prints the numerical Jacobian as float64 (and the
    # analytical one as float32); warn_not_double=False leaves the warning to the caller.
    x = np.array([1.0, 2.0], F32)

    def forward(xs):
        return [(xs[0].astype(np.float64) * 3).sum()]

    def vjp(xs, j, cotangent):
        return [np.full(2, cotangent * 3, F32)]

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(GradcheckError) as e:
            check_jacobians(forward, vjp, [x], warn_not_double=False)
    numerical, analytical = str(e.value).split("\n", 1)[1].split("\nanalytical:")
    assert numerical.endswith("dtype=torch.float64)") and "dtype" not in analytical
    assert "2.9504" in numerical    # (f(x + eps) - f(x - eps)) / 2eps of float32 x, not of 3x
