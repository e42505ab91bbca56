"""Recording: values as expressions (op, inputs, attrs) with eagerly inferred specs and lazy values.

An `Expr` is one immutable value in the graph. Its spec (shape, dtype) is inferred by the engine's
own shape rules the moment it is recorded, so errors surface before any request. Its value is
computed on demand by the executor; once known it is cached and the expression forgets its inputs,
so later requests ship it as a leaf and old history can be freed.
"""

from __future__ import annotations

import itertools
from typing import Iterable, Mapping, Sequence

import numpy as np

from gradserve import engine
from gradserve.engine import Graph, Leaf, Node, TensorSpec

from . import _executor

_ids = itertools.count(1)


class Expr:
    __slots__ = ("id", "op", "inputs", "attrs", "spec", "value", "__weakref__")

    def __init__(self, op: str | None, inputs: tuple["Expr", ...], attrs: Mapping[str, object],
                 spec: TensorSpec, value: np.ndarray | None = None) -> None:
        self.id = next(_ids)
        self.op = op
        self.inputs = inputs
        self.attrs = attrs
        self.spec = spec
        self.value = value

    def set_value(self, value: np.ndarray) -> None:
        self.value = value
        self.inputs = ()          # a known value is a leaf from now on; its history can go

    def __repr__(self) -> str:
        state = "known" if self.value is not None else self.op
        return f"Expr({self.id}, {state}, {self.spec.shape}, {self.spec.dtype})"


def leaf(value: np.ndarray) -> Expr:
    return Expr(None, (), {}, TensorSpec(tuple(value.shape), value.dtype), value)


def infer(op: str, specs: Sequence[TensorSpec], attrs: Mapping[str, object]) -> TensorSpec:
    """The engine's shape/dtype rule, with its errors turned into the types PyTorch raises."""
    try:
        return engine.infer_node(op, specs, attrs)
    except engine.UnknownOpError:
        raise NotImplementedError(
            f"gradserve: the engine has no op {op!r} yet, so this operation is not supported") from None
    except engine.EngineError as e:
        raise error_type(e.detail)(e.detail) from None


# The engine words its errors as PyTorch does; PyTorch raises these ones as IndexError/ValueError.
_INDEX_ERRORS = ("Dimension out of range", "too many indices", "is out of bounds for dimension",
                 "index out of range in self", "Index is supposed to be a vector",
                 "tensors used as indices")
_VALUE_ERRORS = ("Expected input batch_size", "For 1D input, 1D target")


def error_type(detail: str) -> type[Exception]:
    if any(s in detail for s in _INDEX_ERRORS):
        return IndexError
    if any(detail.startswith(s) for s in _VALUE_ERRORS):
        return ValueError
    return RuntimeError


def node(op: str, inputs: Sequence[Expr], attrs: Mapping[str, object]) -> Expr:
    attrs = dict(attrs)
    return Expr(op, tuple(inputs), attrs, infer(op, [e.spec for e in inputs], attrs))


# ---------------------------------------------------------------------------------------------
# Turning expressions into engine graphs


class GraphBuilder:
    """Collects engine leaves and nodes; ids are allocated per request so one Expr can appear in
    two roles (a constant and, separately, a leaf gradients flow into)."""

    def __init__(self) -> None:
        self.leaves: list[Leaf] = []
        self.nodes: list[Node] = []
        self.values: dict[int, np.ndarray] = {}
        self._ids = itertools.count(1)
        self._const: dict[int, int] = {}          # Expr.id -> engine id of its constant value

    def fresh(self) -> int:
        return next(self._ids)

    def add_leaf(self, value: np.ndarray, requires_grad: bool = False) -> int:
        i = self.fresh()
        self.leaves.append(Leaf(i, tuple(value.shape), value.dtype, requires_grad))
        self.values[i] = value
        return i

    def add_node(self, op: str, inputs: Sequence[int], attrs: Mapping[str, object]) -> int:
        i = self.fresh()
        self.nodes.append(Node(i, op, tuple(inputs), dict(attrs)))
        return i

    def constant(self, expr: Expr) -> int:
        """The engine id of `expr`'s value, with no gradient flowing into it: a leaf if the value
        is known, else the nodes computing it from known values (iterative post-order)."""
        done = self._const.get(expr.id)
        if done is not None:
            return done
        stack: list[tuple[Expr, bool]] = [(expr, False)]
        while stack:
            e, expanded = stack.pop()
            if e.id in self._const:
                continue
            if e.value is not None:
                self._const[e.id] = self.add_leaf(e.value)
            elif expanded:
                self._const[e.id] = self.add_node(e.op, [self._const[i.id] for i in e.inputs], e.attrs)
            else:
                stack.append((e, True))
                stack.extend((i, False) for i in e.inputs if i.id not in self._const)
        return self._const[expr.id]

    def graph(self) -> Graph:
        return Graph(self.leaves, self.nodes)


def materialize(exprs: Iterable[Expr]) -> None:
    """Compute and cache the values of `exprs` in one request (only the unknown part is shipped)."""
    todo: dict[int, Expr] = {}
    for e in exprs:
        if e.value is None:
            todo[e.id] = e
    if not todo:
        return
    b = GraphBuilder()
    outputs = {b.constant(e): e for e in todo.values()}
    results = _executor.current().evaluate(b.graph(), b.values, list(outputs))
    for i, e in outputs.items():
        e.set_value(results[i])


def value(expr: Expr) -> np.ndarray:
    if expr.value is None:
        materialize([expr])
    return expr.value
