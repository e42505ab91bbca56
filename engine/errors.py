"""Typed engine errors; each names the node and op it concerns."""

from __future__ import annotations


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""

    def __init__(self, message: str, *, node: int | None = None, op: str | None = None) -> None:
        super().__init__(message)
        self.detail = message
        self.node = node
        self.op = op

    def at(self, node: int, op: str) -> "EngineError":
        """Attach the node and op this error belongs to (kept if already set)."""
        if self.node is None:
            self.node, self.op = node, op
        return self

    def __str__(self) -> str:
        if self.node is None:
            return self.detail
        return f"node {self.node} ({self.op}): {self.detail}"


class GraphError(EngineError):
    """The graph itself is malformed; the client sent something invalid."""


class UnknownOpError(GraphError):
    """The op name is not in the registry."""


class ArityError(GraphError):
    """Wrong number of inputs for the op."""


class AttributeValueError(GraphError):
    """A missing, unexpected or ill-typed attribute."""


class ShapeError(GraphError):
    """Input shapes the op cannot accept."""


class DTypeError(GraphError):
    """Input dtypes the op cannot accept."""


class ReferenceError_(GraphError):
    """An input id that is dangling, duplicated or refers forward."""


class CycleError(GraphError):
    """The nodes depend on each other in a cycle."""


class LimitError(EngineError):
    """A configured limit (elements per tensor, nodes per graph) would be exceeded."""


class Cancelled(EngineError):
    """The caller asked the executor to stop."""
