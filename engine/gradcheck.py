"""gradcheck: central finite differences in float64 against the VJP-built Jacobian.

Same defaults and message as torch.autograd.gradcheck (slow mode). The core, `check_jacobians`,
works on two callables so a client can drive it through any executor; `gradcheck` builds them from
a graph as data and runs them through the engine's plan/evaluate/backward.
"""

from __future__ import annotations

import warnings
from typing import Callable, Mapping, Sequence

import numpy as np

from .errors import EngineError
from .executor import backward, evaluate, plan
from .graph import Graph, Limits

Forward = Callable[[Sequence[np.ndarray]], Sequence[np.ndarray]]
Vjp = Callable[[Sequence[np.ndarray], int, np.ndarray], Sequence[np.ndarray | None]]

NOT_DOUBLE = ("Input #{} requires gradient and is not a double precision floating point or "
              "complex. This check will likely fail if all the inputs are not of double precision "
              "floating point or complex. ")


class GradcheckError(EngineError):
    """The analytical and numerical Jacobians disagree (torch's GradcheckError)."""


def format_tensor(a: np.ndarray) -> str:
    """A compact torch-like rendering for the failure message."""
    body = np.array2string(np.asarray(a), precision=4, separator=", ", prefix="tensor(",
                           suppress_small=True)
    dtype = "" if a.dtype == np.float32 else f", dtype=torch.{a.dtype.name}"
    return f"tensor({body}{dtype})"


def check_jacobians(forward: Forward, vjp: Vjp, inputs: Sequence[np.ndarray], *,
                    eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
                    raise_exception: bool = True,
                    formatter: Callable[[np.ndarray], str] = format_tensor,
                    warn_not_double: bool = True) -> bool:
    """Compare d outputs / d inputs two ways.

    forward(inputs) -> outputs; vjp(inputs, output_index, cotangent) -> one gradient (or None,
    meaning zero) per input. Jacobians are laid out like PyTorch's: (input numel, output numel);
    the analytical one has the input's dtype, the numerical one the output's. A caller that numbers
    inputs differently (torch counts every argument) passes warn_not_double=False and warns itself.
    """
    inputs = [np.array(x, order="C") for x in inputs]   # reshape(-1) below must be a view
    for k, x in enumerate(inputs):
        if warn_not_double and x.dtype != np.float64:
            warnings.warn(NOT_DOUBLE.format(k), UserWarning, stacklevel=2)
    outputs = [np.asarray(o) for o in forward(inputs)]
    for j, out in enumerate(outputs):
        analytical = [np.zeros((x.size, out.size), x.dtype) for x in inputs]
        for col in range(out.size):
            cotangent = np.zeros(out.size, out.dtype)
            cotangent[col] = 1
            grads = vjp(inputs, j, cotangent.reshape(out.shape))
            for k, gk in enumerate(grads):
                if gk is not None:
                    analytical[k][:, col] = np.asarray(gk).reshape(-1)
        for k in range(len(inputs)):
            numerical = _numerical_jacobian(forward, inputs, k, j, out, eps)
            if not np.allclose(analytical[k], numerical, rtol=rtol, atol=atol, equal_nan=True):
                if not raise_exception:
                    return False
                raise GradcheckError(
                    f"Jacobian mismatch for output {j} with respect to input {k},\n"
                    f"numerical:{formatter(numerical)}\nanalytical:{formatter(analytical[k])}\n")
    return True


def _numerical_jacobian(forward: Forward, inputs: list[np.ndarray], k: int, j: int,
                        out: np.ndarray, eps: float) -> np.ndarray:
    """Central differences computed as torch does: in the output's dtype, minus side first."""
    x = inputs[k]
    dtype = out.dtype if out.dtype.kind == "f" else np.dtype(np.float64)
    jac = np.zeros((x.size, out.size), dtype)
    flat = x.reshape(-1)          # a view: perturbing it perturbs inputs[k]
    for i in range(x.size):
        orig = flat[i]
        flat[i] = orig - eps
        minus = np.array(forward(inputs)[j], dtype)   # a copy: may view x
        flat[i] = orig + eps
        plus = np.array(forward(inputs)[j], dtype)
        flat[i] = orig
        diff = plus - minus
        if dtype == np.float16:   # torch divides a half tensor by a scalar in float32
            jac[i] = (diff.astype(np.float32) / np.float32(2 * eps)).reshape(-1)
        else:
            jac[i] = (diff / dtype.type(2 * eps)).reshape(-1)
    return jac


def gradcheck(graph: Graph, values: Mapping[int, np.ndarray], outputs: Sequence[int],
              wrt: Sequence[int] | None = None, *, eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3, raise_exception: bool = True, limits: Limits | None = None,
              formatter: Callable[[np.ndarray], str] = format_tensor) -> bool:
    """gradcheck a graph: d `outputs` / d `wrt` (default: every leaf that requires grad).

    Leaves not in `wrt` keep their values. Input k of the message is wrt[k], output j outputs[j].
    """
    p = plan(graph, limits)
    if wrt is None:
        wrt = [leaf.id for leaf in graph.leaves if leaf.requires_grad]
    fixed = dict(values)

    def run_forward(xs: Sequence[np.ndarray]) -> list[np.ndarray]:
        vals = {**fixed, **dict(zip(wrt, xs, strict=True))}
        result = evaluate(p, vals, outputs)
        return [result[o] for o in outputs]

    def run_vjp(xs: Sequence[np.ndarray], j: int, cotangent: np.ndarray) -> list:
        vals = {**fixed, **dict(zip(wrt, xs, strict=True))}
        if not p.requires_grad[p.pos[outputs[j]]]:
            return [None] * len(wrt)
        found = {r.id: r.array for r in backward(p, vals, [outputs[j]], {outputs[j]: cotangent},
                                                 wrt) if r.kind == "grad"}
        return [found.get(i) for i in wrt]

    return check_jacobians(run_forward, run_vjp, [values[i] for i in wrt], eps=eps, atol=atol,
                           rtol=rtol, raise_exception=raise_exception, formatter=formatter)
