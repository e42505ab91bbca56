"""Runs one recorded conformance program against a torch-like module and records what it observed.

Shared by the generator (run with real PyTorch) and the test (run with gradserve), so both sides
observe a program in exactly the same way. It never imports torch: the module is passed in.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

# Float values are stored with 9 significant digits: enough to round-trip float32 exactly and to
# keep float64 values far inside the float64 tolerance.
_DIGITS = 9

TOLERANCE = {
    # (rtol, atol relative to the largest magnitude in the tensor, floored at 1)
    "float32": (1e-4, 1e-5),
    "float64": (1e-7, 1e-9),
    "float16": (1e-2, 1e-3),
}
# Tensors above this size record a strided sample of their values plus their sum (their repr is
# recorded whole), which keeps cases.json small.
_SAMPLED_ABOVE = 256
_SAMPLES = 64


def _is_tensor(x: Any) -> bool:
    t = type(x)   # the class: reading a property could raise (a view invalidated by an in-place op)
    return hasattr(t, "grad_fn") and hasattr(t, "dtype") and hasattr(t, "shape")


def _number(v):
    if isinstance(v, bool) or isinstance(v, int):
        return v
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return float(f"{v:.{_DIGITS}g}")


def _flat(values):
    if isinstance(values, list):
        out = []
        for v in values:
            out.extend(_flat(v))
        return out
    return [values]


def tensor_record(t) -> dict:
    """dtype, shape and flattened values of a tensor (no autograd state)."""
    values = _flat(t.detach().tolist())
    if len(values) > _SAMPLED_ABOVE:
        step = -(-len(values) // _SAMPLES)
        values = values[::step] + [sum(values)]
    return {"dtype": str(t.dtype), "shape": list(t.shape), "values": [_number(v) for v in values]}


def run(torch_module: Any, program: dict) -> dict:
    """Execute `program["source"]` with `torch` and `F` bound to `torch_module` and its functional.

    Returns {"vars": {name: {...}}, "grads": {name: record | None}, "error": [type, message] | None}.
    Tensors named in `program["vars"]` get dtype, shape, values, grad_fn name and requires_grad;
    those in `program["print"]` also their repr (other objects, e.g. max(dim) results, only a repr).
    """
    ns: dict[str, Any] = {"torch": torch_module, "F": torch_module.nn.functional}
    error = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            exec(compile(program["source"], "<program>", "exec"), ns)
        except Exception as e:  # the recorded outcome, compared type and message
            error = [type(e).__name__, str(e)]
        printed = set(program.get("print", ()))
        out_vars: dict[str, dict] = {}
        for name in program["vars"]:
            if name not in ns:
                continue
            value = ns[name]
            if _is_tensor(value):
                rec = tensor_record(value)
                fn = value.grad_fn
                rec["grad_fn"] = None if fn is None else type(fn).__name__
                rec["requires_grad"] = bool(value.requires_grad)
            else:
                rec = {"type": type(value).__name__}
            if name in printed:
                rec["repr"] = repr(value)
            out_vars[name] = rec
        grads: dict[str, dict | None] = {}
        if error is None:
            for name in program.get("grads", ()):
                g = ns[name].grad
                grads[name] = None if g is None else tensor_record(g)
    return {"vars": out_vars, "grads": grads, "error": error}
