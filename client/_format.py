"""PyTorch's tensor repr, reproduced from `torch/_tensor_str.py` (default print options)."""

from __future__ import annotations

import math

import numpy as np

PRECISION = 4
THRESHOLD = 1000
EDGEITEMS = 3
LINEWIDTH = 80

# Dtypes whose name is left out of the repr: the default float, int64 and bool.
_IMPLIED = {"float32", "int64", "bool"}


def dtype_name(dtype: np.dtype) -> str:
    return f"torch.{np.dtype(dtype).name}"


def tensor_repr(array: np.ndarray, *, grad_fn: str | None = None, requires_grad: bool = False) -> str:
    """`repr(tensor)`: values, then `dtype=`, then `grad_fn=<Name>` or `requires_grad=True`."""
    prefix = "tensor("
    indent = len(prefix)
    suffixes = []
    name = array.dtype.name
    if array.size == 0:
        if array.ndim != 1:
            suffixes.append(f"size={tuple(array.shape)}")
        if name != "float32":
            suffixes.append(f"dtype={dtype_name(array.dtype)}")
        body = "[]"
    else:
        if name not in _IMPLIED:
            suffixes.append(f"dtype={dtype_name(array.dtype)}")
        body = _tensor_str(array, indent)
    if grad_fn is not None:
        suffixes.append(f"grad_fn=<{grad_fn}>")
    elif requires_grad:
        suffixes.append("requires_grad=True")
    return _add_suffixes(prefix + body, suffixes, indent)


def _add_suffixes(text: str, suffixes: list[str], indent: int) -> str:
    parts = [text]
    last_line_len = len(text) - text.rfind("\n") + 1
    for suffix in suffixes:
        if last_line_len + len(suffix) + 2 > LINEWIDTH:
            parts.append(",\n" + " " * indent + suffix)
            last_line_len = indent + len(suffix)
        else:
            parts.append(", " + suffix)
            last_line_len += len(suffix) + 2
    parts.append(")")
    return "".join(parts)


class _Formatter:
    """Chooses integer, fixed or scientific notation and the common width, from the values shown."""

    def __init__(self, values: np.ndarray) -> None:
        self.floating = values.dtype.kind == "f"
        self.int_mode = True
        self.sci_mode = False
        self.max_width = 1
        flat = values.reshape(-1)
        if not self.floating:
            for v in flat.tolist():
                self.max_width = max(self.max_width, len(f"{v}"))
            return
        finite = flat[np.isfinite(flat) & (flat != 0)].astype(np.float64)
        if finite.size == 0:
            return
        abs_ = np.abs(finite)
        lo, hi = float(abs_.min()), float(abs_.max())
        self.int_mode = bool(np.all(finite == np.ceil(finite)))
        vals = finite.tolist()
        if self.int_mode:
            if hi / lo > 1000.0 or hi > 1.0e8:
                self.sci_mode = True
                self.max_width = max(len(f"{v:.{PRECISION}e}") for v in vals)
            else:
                self.max_width = max(len(f"{v:.0f}") + 1 for v in vals)
        elif hi / lo > 1000.0 or hi > 1.0e8 or lo < 1.0e-4:
            self.sci_mode = True
            self.max_width = max(len(f"{v:.{PRECISION}e}") for v in vals)
        else:
            self.max_width = max(len(f"{v:.{PRECISION}f}") for v in vals)

    def format(self, value) -> str:
        if not self.floating:
            text = f"{value}"
        elif self.sci_mode:
            text = f"{value:{self.max_width}.{PRECISION}e}"
        elif self.int_mode:
            text = f"{value:.0f}"
            if not (math.isinf(value) or math.isnan(value)):
                text += "."
        else:
            text = f"{value:.{PRECISION}f}"
        return (self.max_width - len(text)) * " " + text


def _tensor_str(array: np.ndarray, indent: int) -> str:
    if array.dtype == np.float16:
        array = array.astype(np.float32)
    summarize = array.size > THRESHOLD
    formatter = _Formatter(_summarized(array) if summarize else array)
    return _str_with_formatter(array, indent, summarize, formatter)


def _summarized(a: np.ndarray) -> np.ndarray:
    if a.ndim == 0:
        return a
    if a.ndim == 1:
        if a.shape[0] > 2 * EDGEITEMS:
            return np.concatenate((a[:EDGEITEMS], a[-EDGEITEMS:]))
        return a
    rows = range(a.shape[0])
    if a.shape[0] > 2 * EDGEITEMS:
        rows = [*range(EDGEITEMS), *range(a.shape[0] - EDGEITEMS, a.shape[0])]
    return np.stack([_summarized(a[i]) for i in rows])


def _str_with_formatter(a: np.ndarray, indent: int, summarize: bool, fmt: _Formatter) -> str:
    if a.ndim == 0:
        return fmt.format(a.item())
    if a.ndim == 1:
        return _vector_str(a, indent, summarize, fmt)
    n = a.shape[0]
    if summarize and n > 2 * EDGEITEMS:
        slices = ([_str_with_formatter(a[i], indent + 1, summarize, fmt) for i in range(EDGEITEMS)]
                  + ["..."]
                  + [_str_with_formatter(a[i], indent + 1, summarize, fmt) for i in range(n - EDGEITEMS, n)])
    else:
        slices = [_str_with_formatter(a[i], indent + 1, summarize, fmt) for i in range(n)]
    return "[" + ("," + "\n" * (a.ndim - 1) + " " * (indent + 1)).join(slices) + "]"


def _vector_str(a: np.ndarray, indent: int, summarize: bool, fmt: _Formatter) -> str:
    element_length = fmt.max_width + 2
    per_line = max(1, (LINEWIDTH - indent) // element_length)
    if summarize and a.shape[0] > 2 * EDGEITEMS:
        data = ([fmt.format(v) for v in a[:EDGEITEMS].tolist()] + [" ..."]
                + [fmt.format(v) for v in a[-EDGEITEMS:].tolist()])
    else:
        data = [fmt.format(v) for v in a.tolist()]
    lines = [", ".join(data[i:i + per_line]) for i in range(0, len(data), per_line)]
    return "[" + ("," + "\n" + " " * (indent + 1)).join(lines) + "]"
