"""Typed errors: each names the node and op, and bad graphs fail in plan before allocating."""

from __future__ import annotations

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
     "shapes (2, 3) and (4, 5) cannot be multiplied"),
    (Graph([x(), Leaf(1, (4,), F32)], [Node(7, "add", (0, 1))]), ShapeError,
     "cannot be broadcast"),
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
