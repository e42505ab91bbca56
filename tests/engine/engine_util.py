"""Helpers for the engine tests: one-node graphs from arrays, forward values and gradients."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from gradserve.engine import Graph, Leaf, Node, backward, evaluate, gradcheck, plan

F64 = np.dtype(np.float64)


class Const:
    """A floating input that does not require grad (targets, weights, masks as floats)."""

    def __init__(self, array: Any) -> None:
        self.array = np.asarray(array)


def one_node_graph(op: str, inputs: Sequence[Any], attrs: Mapping[str, object] | None = None):
    """Leaves 0..n-1 for the inputs (floating arrays require grad), node n applies `op`."""
    leaves, values = [], {}
    for i, x in enumerate(inputs):
        const = isinstance(x, Const)
        arr = x.array if const else np.asarray(x)
        leaves.append(Leaf(i, arr.shape, arr.dtype, arr.dtype.kind == "f" and not const))
        values[i] = arr
    node = Node(len(inputs), op, tuple(range(len(inputs))), dict(attrs or {}))
    return Graph(leaves, [node]), values, node.id


def forward(op: str, *inputs: Any, **attrs: object) -> np.ndarray:
    graph, values, out = one_node_graph(op, inputs, attrs)
    return evaluate(plan(graph), values, [out])[out]


def grads(op: str, *inputs: Any, cotangent: Any = None,
          **attrs: object) -> list[np.ndarray | None]:
    """Gradients of op(inputs) (seeded with ones, or `cotangent`) w.r.t. every input."""
    graph, values, out = one_node_graph(op, inputs, attrs)
    p = plan(graph)
    spec = p.spec(out)
    seed = np.ones(spec.shape, spec.dtype) if cotangent is None else np.asarray(cotangent, spec.dtype)
    found = {r.id: r.array for r in backward(p, values, [out], {out: seed},
                                             list(range(len(inputs)))) if r.kind == "grad"}
    return [found.get(i) for i in range(len(inputs))]


def check(op: str, inputs: Sequence[Any], attrs: Mapping[str, object] | None = None) -> bool:
    graph, values, out = one_node_graph(op, inputs, attrs)
    return gradcheck(graph, values, [out])
