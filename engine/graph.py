"""Graphs as data: leaves, nodes, tensor specs and limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True, slots=True)
class TensorSpec:
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    def __repr__(self) -> str:
        return f"TensorSpec({self.shape}, {self.dtype})"


@dataclass(frozen=True, slots=True)
class Leaf:
    id: int
    shape: tuple[int, ...]
    dtype: np.dtype
    requires_grad: bool = False

    @property
    def spec(self) -> TensorSpec:
        return TensorSpec(tuple(self.shape), np.dtype(self.dtype))


@dataclass(frozen=True, slots=True)
class Node:
    id: int
    op: str
    inputs: tuple[int, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Graph:
    leaves: list[Leaf]
    nodes: list[Node]


@dataclass(frozen=True, slots=True)
class Limits:
    max_elements: int = 2**31          # per tensor, leaves and every inferred intermediate
    max_nodes: int = 10_000_000
