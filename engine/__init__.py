"""gradserve's math core: the op registry and a reverse-mode executor over graphs as data.

NumPy and the standard library only: no gRPC, no protobuf, no client code.
"""

from . import ops as _ops  # noqa: F401  (fills the registry)
from .dtypes import BY_NAME as DTYPES
from .dtypes import result_type
from .errors import (
                     ArityError,
                     AttributeValueError,
                     Cancelled,
                     CycleError,
                     DTypeError,
                     EngineError,
                     GraphError,
                     LimitError,
                     ReferenceError_,
                     ShapeError,
                     UnknownOpError,
)
from .executor import Plan, Result, backward, evaluate, infer_node, plan
from .gradcheck import GradcheckError, check_jacobians, gradcheck
from .graph import Graph, Leaf, Limits, Node, TensorSpec
from .registry import OPS, Op, sum_to

__all__ = [
    "ArityError", "AttributeValueError", "Cancelled", "CycleError", "DTYPES", "DTypeError",
    "EngineError", "GradcheckError", "Graph", "GraphError", "Leaf", "LimitError", "Limits", "Node",
    "OPS", "Op", "Plan", "ReferenceError_", "Result", "ShapeError", "TensorSpec", "UnknownOpError",
    "backward", "check_jacobians", "evaluate", "gradcheck", "infer_node", "plan", "result_type",
    "sum_to",
]
