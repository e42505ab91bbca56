"""Seeded random program generator: records PyTorch's behaviour on small autograd programs.

Run with the PyTorch venv (torch is never a project or CI dependency; the test replays the
recorded cases with gradserve only):

    /work/torchenv/bin/python tests/conformance/generate.py            # writes cases.json
    /work/torchenv/bin/python tests/conformance/generate.py --count 500 --seed 0 --exclude TAGS

Options:
  --count N       number of programs (default 500)
  --seed S        base seed (default 0); program i uses its own RNG seeded from (S, i)
  --exclude TAGS  comma-separated feature tags the generator must not use. A tag names one op
                  builder (see `BUILDERS`, e.g. "cross_entropy.label_smoothing") or an error
                  program kind (see `ERRORS`, e.g. "error.int_requires_grad"). Use it only for a
                  client bug that is recorded in /work/findings-client.md; the tags excluded from
                  the committed cases.json are stored in its "exclude" field. Default: DEFAULT_EXCLUDE.
  --out PATH      output file (default: cases.json beside this script)

Each program is Python source run with `torch` bound to either torch or gradserve and `F` to its
`nn.functional`. The generator builds it step by step against live PyTorch values, so it can keep
data away from kinks, ties and domain edges (a discarded step leaves no trace in the source),
except in "edge" programs whose exactly representable data tests the tie/kink conventions on
purpose. A repr is only recorded when it is robust: unchanged when every value moves by a few
float32 ulps (or the program is exact), so the exact-string comparison tests formatting, not
rounding noise.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path
from typing import Callable

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import harness  # noqa: E402

F = torch.nn.functional

# Tags excluded from the committed cases.json: client bugs, each described in
# /work/findings-client.md (remove a tag once its bug is fixed, and regenerate).
DEFAULT_EXCLUDE: tuple[str, ...] = (
    "view.noncontiguous_input",       # C7: strides of elementwise results not modelled (Reshape names)
    "error.index_lazy",               # C12: out-of-range index values computed by the graph raise lazily
    "finish.hooked_input",            # C13: autograd.grad of a hooked non-leaf: hook applied or not
)

MAX_NUMEL = 48
MARGIN = 1e-3          # distance kept from kinks, ties, domain edges and rounding points
REL_NOISE32 = 4e-6     # relative perturbation (~32 float32 ulps) a printed repr must survive
REL_NOISE64 = 1e-11
REL_NOISE16 = 4e-3     # ~4 float16 ulps
ABS_NOISE32 = 1e-6     # absolute floor: values that are cancellation noise (~1e-8) are not printed
ABS_NOISE64 = 1e-14
ABS_NOISE16 = 1e-3
LARGE_NUMEL = 2000     # the "large" builder's tensors (summarised reprs start above 1000 elements)


class Skip(Exception):
    """The chosen op does not fit the current values; the generator tries another one."""


def need(cond) -> None:
    if not bool(cond):
        raise Skip


def away(t: torch.Tensor, point, margin: float = MARGIN) -> bool:
    t = t.detach().double()
    if torch.is_tensor(point):
        point = point.detach().double()
    return bool(((t - point).abs() > margin).all())


def gap_ok(t: torch.Tensor, dim=None, margin: float = MARGIN) -> bool:
    """The largest and the smallest entries (along `dim`, or overall) are unique by a margin."""
    t = t.detach().double()
    if t.numel() == 0:
        return False
    if dim is None:
        t = t.reshape(-1)
        dim = 0
    if t.dim() == 0 or t.shape[dim] < 2:
        return True
    s, _ = t.sort(dim=dim)
    n = s.shape[dim]
    lo = s.narrow(dim, 1, 1) - s.narrow(dim, 0, 1)
    hi = s.narrow(dim, n - 1, 1) - s.narrow(dim, n - 2, 1)
    return bool((lo > margin).all() and (hi > margin).all())


def fmt(v: float) -> str:
    r = repr(float(v))
    return r[:-2] + "." if r.endswith(".0") else r


def literal(values, shape) -> str:
    """A nested Python list literal of `values` (flat) with `shape`."""
    if not shape:
        return values[0]
    step = len(values) // shape[0] if shape[0] else 0
    parts = [literal(values[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]
    return "[" + ", ".join(parts) + "]"


def numel(shape) -> int:
    return math.prod(shape)


class Program:
    """One program under construction: source lines plus the live PyTorch namespace."""

    def __init__(self, rng: random.Random, mode: str, exclude: set[str]) -> None:
        self.rng = rng
        self.mode = mode                  # "normal" | "edge" | "error"
        self.exclude = exclude
        self.lines: list[str] = []
        self.ns: dict = {"torch": torch, "F": F}
        self.names: list[str] = []        # every recorded variable, in order
        self.leaves: list[str] = []       # tensors created by the program with requires_grad=True
        self.used: set[str] = set()
        self.counter = 0
        self.float64_only = True
        self.half = False                 # a float16 value was computed: float16 tolerances
        self.tags: set[str] = set()
        self.retained: str | None = None
        self.extra_grads: list[str] = []  # non-leaves whose .grad backward(inputs=...) fills
        self.expanded: set[str] = set()   # views (chains) of an expand() result

    # ----- bookkeeping --------------------------------------------------------------------

    def feature(self, tag: str) -> bool:
        """Whether a sub-feature of a builder (a tag of its own, see FEATURES) may be used."""
        return tag not in self.exclude

    def use(self, tag: str) -> None:
        self.tags.add(tag)

    def val(self, name: str):
        return self.ns[name]

    def fresh(self) -> str:
        self.counter += 1
        return f"t{self.counter}"

    def snapshot(self):
        return (len(self.lines), len(self.names), len(self.leaves), self.counter, set(self.used),
                self.float64_only, self.half, self.mode)

    def rollback(self, snap) -> None:
        nl, nn_, nleaf, counter, used, f64, half, self.mode = snap
        for name in self.names[nn_:]:
            self.ns.pop(name, None)
        del self.lines[nl:], self.names[nn_:], self.leaves[nleaf:]
        self.counter, self.used, self.float64_only, self.half = counter, used, f64, half

    @property
    def precision(self) -> str:
        return "float16" if self.half else "float64" if self.float64_only else "float32"

    def emit(self, expr: str, uses=(), check: Callable | None = None, *, within: tuple[str, ...] = (),
             max_numel: int = MAX_NUMEL) -> str:
        """Assign `expr` to a new variable; Skip (after undoing it) if it fails or looks unsafe.

        `within`: context managers (outermost first) the assignment runs under, e.g. torch.no_grad().
        """
        name = self.fresh()
        line = f"{name} = {expr}"
        for ctx in reversed(within):
            line = f"with {ctx}:\n" + "\n".join("    " + part for part in line.split("\n"))
        try:
            exec(line, self.ns)
        except Exception:
            self.counter -= 1
            self.ns.pop(name, None)
            raise Skip
        value = self.ns[name]
        if torch.is_tensor(value):
            ok = value.numel() <= max_numel and value.dim() <= 4
            if ok and value.is_floating_point():
                if value.dtype != torch.float64:
                    self.float64_only = False
                if value.dtype == torch.float16:
                    self.half = True
                finite = bool(torch.isfinite(value).all())
                ok = finite and (value.numel() == 0 or float(value.detach().abs().max()) < 1e4)
            if ok and check is not None:
                ok = bool(check(value))
            if not ok:
                self.counter -= 1
                del self.ns[name]
                raise Skip
        self.lines.append(line)
        self.names.append(name)
        self.used.update(uses)
        if ".expand(" in expr:
            self.expanded.add(name)
        return name

    def stmt(self, line: str) -> None:
        """Run a statement; one PyTorch rejects ends the program as an error program."""
        self.lines.append(line)
        try:
            exec(line, self.ns)
        except Exception:
            self.mode = "error"
            raise Skip from None

    def assign(self, expr: str, uses=()) -> str:
        """Like `stmt` (a rejected statement ends the program as an error program), for a value
        that is recorded but not checked (tuples, results of torch.autograd.grad)."""
        name = self.fresh()
        self.stmt(f"{name} = {expr}")
        self.names.append(name)
        self.used.update(uses)
        return name

    # ----- data ---------------------------------------------------------------------------

    def random_shape(self, max_ndim: int = 3) -> tuple[int, ...]:
        ndim = self.rng.choices(range(max_ndim + 1), weights=[1, 3, 4, 2][:max_ndim + 1])[0]
        while True:
            shape = tuple(self.rng.choice([1, 2, 2, 3, 3, 4]) for _ in range(ndim))
            if numel(shape) <= 24:
                return shape

    def float_values(self, n: int, low: float = -2.0, high: float = 2.0) -> list[str]:
        if self.mode == "edge":
            return [fmt(self.rng.randint(int(low * 2), int(high * 2)) / 2) for _ in range(n)]
        return [fmt(round(self.rng.uniform(low, high), 3)) for _ in range(n)]

    def leaf(self, shape, dtype: str = "float32", requires_grad: bool = True, low: float = -2.0,
             high: float = 2.0, values: list[str] | None = None) -> str:
        n = numel(shape)
        need(n > 0)   # a nested-list literal cannot spell a zero-size dim (see the "empty" builder)
        if dtype in ("float32", "float64", "float16"):
            vals = values or self.float_values(n, low, high)
        elif dtype in ("int64", "int32"):
            vals = values or [str(self.rng.randint(int(low), int(high))) for _ in range(n)]
        else:
            vals = values or [self.rng.choice(["True", "False"]) for _ in range(n)]
        args = [literal(vals, tuple(shape))]
        if dtype in ("float64", "float16", "int32"):
            args.append(f"dtype=torch.{dtype}")
        if requires_grad:
            args.append("requires_grad=True")
        name = self.emit(f"torch.tensor({', '.join(args)})")
        if requires_grad:
            self.leaves.append(name)
        return name

    def float_vars(self, grad_only: bool = False) -> list[str]:
        out = []
        for n in self.names:
            v = self.ns.get(n)
            if torch.is_tensor(v) and v.is_floating_point() and (v.requires_grad or not grad_only):
                out.append(n)
        return out

    def partner_shape(self, shape) -> tuple[int, ...]:
        """A shape that broadcasts with `shape` (the result stays within MAX_NUMEL)."""
        r = self.rng.random()
        if r < 0.35 or not shape:
            if not shape and r < 0.3:
                return self.random_shape(2)
            return tuple(shape)
        if r < 0.55:
            return tuple(shape[self.rng.randint(1, len(shape)):])
        if r < 0.8:
            return tuple(1 if self.rng.random() < 0.5 else s for s in shape)
        if r < 0.9 and numel(shape) * 3 <= MAX_NUMEL and len(shape) < 4:
            return (self.rng.choice([2, 3]),) + tuple(1 if self.rng.random() < 0.3 else s for s in shape)
        return ()

    def partner(self, x: str, allow_int: bool = True, allow_bool: bool = False, low=-2.0, high=2.0) -> str:
        """An existing variable or a new leaf that broadcasts with `x` (fan-out or a fresh input)."""
        xv = self.val(x)
        if self.rng.random() < 0.3:
            candidates = [n for n in self.float_vars() if n != x and _broadcasts(self.val(n).shape, xv.shape)
                          and numel(torch.broadcast_shapes(self.val(n).shape, xv.shape)) <= MAX_NUMEL]
            if candidates:
                return self.rng.choice(candidates)
        shape = self.partner_shape(tuple(xv.shape))
        r = self.rng.random()
        if allow_int and r < 0.07 and self.mode != "edge":
            return self.leaf(shape, "int64", False, -3, 3)
        if allow_bool and r < 0.12:
            return self.leaf(shape, "bool", False)
        dtype = "float64" if (xv.dtype == torch.float64) != (self.rng.random() < 0.12) else "float32"
        return self.leaf(shape, dtype, self.rng.random() < 0.75, low, high)


def _broadcasts(a, b) -> bool:
    try:
        torch.broadcast_shapes(a, b)
        return True
    except RuntimeError:
        return False


# ---------------------------------------------------------------------------------------------
# Op builders: builder(p, x) -> new variable name (or raise Skip). `x` is a float tensor variable.

BUILDERS: dict[str, tuple[float, Callable]] = {}
EDGE_SAFE: set[str] = set()
# Tags for single forms inside a builder, so one form can be excluded without losing the builder.
FEATURES = {"matmul.batch_broadcast", "view.contiguous", "index.full_slice", "index.scalar_tensor",
            "div.floordiv_operator", "view.noncontiguous_input", "error.index_lazy",
            "finish.hooks", "finish.autograd_grad", "finish.backward_inputs", "finish.train_step",
            "finish.hooked_input"}


def builder(tag: str, weight: float = 1.0, edge: bool = False):
    def deco(fn):
        BUILDERS[tag] = (weight, fn)
        if edge:
            EDGE_SAFE.add(tag)
        return fn
    return deco


@builder("arith.binary", 4, edge=True)
def _arith(p: Program, x: str) -> str:
    op = p.rng.choice(["+", "-", "*", "/"] if p.mode != "edge" else ["+", "-", "*"])
    y = p.partner(x, allow_bool=op in "*+")
    if op == "/":
        need(away(p.val(y), 0, 0.2))
    a, b = (x, y) if p.rng.random() < 0.7 else (y, x)
    if op == "/" and b == x:
        need(away(p.val(x), 0, 0.2))
    form = p.rng.random()
    if form < 0.6:
        expr = f"{a} {op} {b}"
    else:
        name = {"+": "add", "-": "sub", "*": "mul", "/": "div"}[op]
        alpha = p.rng.choice(["", ", alpha=2", ", alpha=0.5"]) if op in "+-" else ""
        expr = (f"{a}.{name}({b}{alpha})" if form < 0.8 else f"torch.{name}({a}, {b}{alpha})")
    return p.emit(expr, (x, y))


@builder("arith.scalar", 4, edge=True)
def _arith_scalar(p: Program, x: str) -> str:
    s = p.rng.choice(["2", "3", "0.5", "1.5", "-2.5", "-1"])
    xv = p.val(x)
    forms = [f"{x} + {s}", f"{s} + {x}", f"{x} - {s}", f"{s} - {x}", f"{x} * {s}", f"{s} * {x}",
             f"{x}.add({s})", f"torch.rsub({x}, {s})", f"-{x}", f"{x}.neg()", f"torch.add({x}, {s})"]
    if p.mode != "edge":
        forms += [f"{x} / {s}"]
        if away(xv, 0, 0.2):
            forms += [f"{s} / {x}"]
    return p.emit(p.rng.choice(forms), (x,))


@builder("pow", 2)
def _pow(p: Program, x: str) -> str:
    xv = p.val(x)
    forms = [f"{x} ** 2", f"{x}.square()", f"torch.pow({x}, 3)", f"{x}.pow(2)", f"2 ** {x}",
             f"torch.pow(2, {x})", f"0.5 ** {x}"]
    if away(xv, 0, 0.2):
        forms += [f"{x} ** -1", f"{x}.pow(-2)"]
    if bool((xv > 0.05).all()):
        forms += [f"{x} ** 0.5", f"{x} ** 1.5", f"{x}.pow(-0.5)"]
        y = p.partner(x, allow_int=False, low=-1.5, high=1.5)
        forms += [f"{x} ** {y}", f"{x}.pow({y})", f"torch.pow({x}, {y})"]
        expr = p.rng.choice(forms)
        return p.emit(expr, (x, y) if y in expr else (x,))
    return p.emit(p.rng.choice(forms), (x,))


@builder("pow.zero_exponent", 0.2, edge=True)
def _pow0(p: Program, x: str) -> str:
    return p.emit(f"{x} ** 0", (x,))


UNARY_DOMAIN: dict[str, Callable] = {
    "exp": lambda t: bool((t < 4).all()),
    "expm1": lambda t: bool((t < 4).all()),
    "log": lambda t: bool((t > 0.05).all()),
    "log2": lambda t: bool((t > 0.05).all()),
    "log10": lambda t: bool((t > 0.05).all()),
    "log1p": lambda t: bool((t > -0.9).all()),
    "sqrt": lambda t: bool((t > 0.05).all()),
    "rsqrt": lambda t: bool((t > 0.05).all()),
    "reciprocal": lambda t: away(t, 0, 0.2),
    "sin": lambda t: True,
    "cos": lambda t: True,
    "tan": lambda t: bool((t.abs() < 1.2).all()),
    "tanh": lambda t: True,
    "sigmoid": lambda t: True,
    "abs": lambda t: away(t, 0),
    "sign": lambda t: away(t, 0),
    "floor": lambda t: away(t, torch.round(t)),
    "ceil": lambda t: away(t, torch.round(t)),
    "trunc": lambda t: away(t, torch.round(t)),
    "round": lambda t: away(t, torch.floor(t) + 0.5),
}
EDGE_UNARY = ["abs", "sign", "floor", "ceil", "trunc", "round", "neg"]


@builder("unary", 5, edge=True)
def _unary(p: Program, x: str) -> str:
    xv = p.val(x).detach()
    if p.mode == "edge":
        op = p.rng.choice(EDGE_UNARY)
    else:
        ops = [op for op, ok in UNARY_DOMAIN.items() if ok(xv)]
        need(ops)
        op = p.rng.choice(ops)
    form = p.rng.random()
    expr = f"{x}.{op}()" if form < 0.6 else f"torch.{op}({x})"
    return p.emit(expr, (x,))


@builder("unary.shifted", 1.5)
def _unary_shifted(p: Program, x: str) -> str:
    # a positive argument built inline, so log/sqrt appear on any data
    op = p.rng.choice(["log", "sqrt", "rsqrt", "log2", "log1p"])
    return p.emit(f"({x}.abs() + 0.5).{op}()", (x,))


@builder("relu", 2, edge=True)
def _relu(p: Program, x: str) -> str:
    if p.mode != "edge":
        need(away(p.val(x), 0))
    return p.emit(p.rng.choice([f"{x}.relu()", f"torch.relu({x})", f"F.relu({x})"]), (x,))


@builder("clamp", 2, edge=True)
def _clamp(p: Program, x: str) -> str:
    if p.mode == "edge":
        lo, hi = -1.0, 1.0
    else:
        lo = round(p.rng.uniform(-1.5, 0.2), 2)
        hi = round(lo + p.rng.uniform(0.3, 2.0), 2)
        need(away(p.val(x), lo) and away(p.val(x), hi))
    forms = [f"{x}.clamp({fmt(lo)}, {fmt(hi)})", f"torch.clamp({x}, min={fmt(lo)})",
             f"{x}.clamp(max={fmt(hi)})", f"{x}.clamp_min({fmt(lo)})", f"{x}.clamp_max({fmt(hi)})",
             f"{x}.clip({fmt(lo)}, {fmt(hi)})", f"torch.clamp({x}, {fmt(lo)}, {fmt(hi)})"]
    return p.emit(p.rng.choice(forms), (x,))


@builder("clamp.tensor", 0.7, edge=True)
def _clamp_tensor(p: Program, x: str) -> str:
    b = p.partner(x, allow_int=False)
    if p.mode != "edge":
        need(away(p.val(x), p.val(b)))
    kw = p.rng.choice(["min", "max"])
    return p.emit(f"{x}.clamp({kw}={b})", (x, b))


@builder("maximum", 1.5, edge=True)
def _maximum(p: Program, x: str) -> str:
    y = p.partner(x, allow_int=False)
    if p.mode != "edge":
        need(away(p.val(x), p.val(y)))
    fn = p.rng.choice(["maximum", "minimum"])
    expr = p.rng.choice([f"torch.{fn}({x}, {y})", f"{x}.{fn}({y})"])
    return p.emit(expr, (x, y))


@builder("where", 2, edge=True)
def _where(p: Program, x: str) -> str:
    xv = p.val(x)
    c = 0.0 if p.mode == "edge" else round(p.rng.uniform(-1, 1), 2)
    if p.mode != "edge":
        need(away(xv, c))
    cmp = p.rng.choice([">", "<", ">=", "<="])
    cond = f"{x} {cmp} {fmt(c)}"
    r = p.rng.random()
    if r < 0.4:
        y = p.partner(x, allow_int=False)
        expr = f"torch.where({cond}, {x}, {y})"
        return p.emit(expr, (x, y))
    if r < 0.6:
        return p.emit(f"torch.where({cond}, {x}, {p.rng.choice(['0.0', '1.5', '-1.0'])})", (x,))
    if r < 0.7:
        return p.emit(f"torch.where({cond}, 0.5, {x})", (x,))
    mask = p.emit(f"{cond}", (x,))
    y = p.partner(x, allow_int=False)
    return p.emit(p.rng.choice([f"torch.where({mask}, {y}, {x})", f"{x}.where({mask}, {y})"]), (x, y, mask))


def _dim(p: Program, t) -> int:
    need(t.dim() > 0)
    d = p.rng.randrange(t.dim())
    return d - t.dim() if p.rng.random() < 0.3 else d


@builder("reduce.sum_mean", 4, edge=True)
def _sum_mean(p: Program, x: str) -> str:
    t = p.val(x)
    fn = p.rng.choice(["sum", "mean"]) if p.mode != "edge" else "sum"
    r = p.rng.random()
    if r < 0.2 or t.dim() == 0:
        expr = p.rng.choice([f"{x}.{fn}()", f"torch.{fn}({x})"])
    elif r < 0.55:
        expr = f"{x}.{fn}({_dim(p, t)})"
    elif r < 0.8:
        expr = f"{x}.{fn}(dim={_dim(p, t)}, keepdim=True)"
    elif t.dim() >= 2:
        dims = sorted(p.rng.sample(range(t.dim()), 2))
        expr = f"{x}.{fn}(({dims[0]}, {dims[1]}))"
    else:
        expr = f"torch.{fn}({x}, dim={_dim(p, t)})"
    return p.emit(expr, (x,))


@builder("reduce.max_min", 1.5, edge=True)
def _max_all(p: Program, x: str) -> str:
    t = p.val(x)
    if p.mode != "edge":
        need(gap_ok(t))
    fn = p.rng.choice(["max", "min", "amax", "amin"])
    if fn in ("amax", "amin") and t.dim() > 0 and p.rng.random() < 0.6:
        d = _dim(p, t)
        if p.mode != "edge":
            need(gap_ok(t, d))
        return p.emit(f"{x}.{fn}({d}{p.rng.choice(['', ', keepdim=True'])})", (x,))
    return p.emit(p.rng.choice([f"{x}.{fn}()", f"torch.{fn}({x})"]), (x,))


@builder("reduce.max_dim", 1.5, edge=True)
def _max_dim(p: Program, x: str) -> str:
    t = p.val(x)
    d = _dim(p, t)
    if p.mode != "edge":
        need(gap_ok(t, d))
    fn = p.rng.choice(["max", "min"])
    keep = p.rng.choice(["", ", keepdim=True"])
    res = p.emit(p.rng.choice([f"{x}.{fn}(dim={d}{keep})", f"torch.{fn}({x}, {d}{keep})"]), (x,))
    if p.rng.random() < 0.3:
        p.emit(f"{res}.indices", ())
    return p.emit(p.rng.choice([f"{res}.values", f"{res}[0]"]), (x,))


@builder("reduce.prod", 0.5)
def _prod(p: Program, x: str) -> str:
    t = p.val(x)
    need(t.numel() <= 8 and away(t, 0, 0.1))
    if t.dim() > 0 and p.rng.random() < 0.5:
        return p.emit(f"{x}.prod({_dim(p, t)})", (x,))
    return p.emit(f"{x}.prod()", (x,))


@builder("reduce.var_std", 2)
def _var(p: Program, x: str) -> str:
    t = p.val(x)
    fn = p.rng.choice(["var", "std"])
    r = p.rng.random()
    if r < 0.3 or t.dim() == 0:
        need(t.numel() >= 2)
        sub = t
        arg = p.rng.choice(["", "unbiased=False", "correction=0"])
    else:
        d = _dim(p, t)
        need(t.shape[d] >= 2)
        sub = t
        arg = p.rng.choice([f"{d}", f"dim={d}, keepdim=True", f"{d}, unbiased=False",
                            f"dim={d}, correction=0"])
    if fn == "std":
        need(float(sub.detach().std()) > 0.05)
    return p.emit(f"{x}.{fn}({arg})", (x,))


@builder("reduce.logsumexp", 1)
def _logsumexp(p: Program, x: str) -> str:
    t = p.val(x)
    d = _dim(p, t)
    return p.emit(p.rng.choice([f"{x}.logsumexp({d})", f"torch.logsumexp({x}, dim={d}, keepdim=True)"]), (x,))


@builder("reduce.norm", 1)
def _norm(p: Program, x: str) -> str:
    t = p.val(x)
    need(float(t.detach().abs().sum()) > 0.1)
    forms = [f"{x}.norm()", f"torch.norm({x})"]
    if t.dim() > 0:
        forms.append(f"{x}.norm(dim={_dim(p, t)})")
        forms.append(f"{x}.norm(2, {_dim(p, t)}, keepdim=True)")
    if away(t, 0):
        forms.append(f"{x}.norm(p=1)")
    return p.emit(p.rng.choice(forms), (x,))


@builder("matmul", 3)
def _matmul(p: Program, x: str) -> str:
    t = p.val(x)
    nd = t.dim()
    need(nd >= 1)
    dt = "float64" if t.dtype == torch.float64 else "float32"
    k = p.rng.choice([1, 2, 3])

    def mat(shape):
        return p.leaf(shape, dt, p.rng.random() < 0.8, -1, 1)
    if nd == 1:
        n = t.shape[0]
        r = p.rng.random()
        if r < 0.25:
            w = mat((n, k))
            return p.emit(p.rng.choice([f"{x} @ {w}", f"torch.matmul({x}, {w})"]), (x, w))
        if r < 0.5:
            v = mat((n,))
            return p.emit(p.rng.choice([f"{x} @ {v}", f"torch.dot({x}, {v})", f"{x}.dot({v})"]), (x, v))
        if r < 0.75:
            m = mat((k, n))
            return p.emit(p.rng.choice([f"{m} @ {x}", f"torch.mv({m}, {x})", f"{m}.mv({x})"]), (x, m))
        need(n * k <= MAX_NUMEL)
        v = mat((k,))
        return p.emit(p.rng.choice([f"torch.outer({x}, {v})", f"{x}.outer({v})"]), (x, v))
    if nd == 2:
        m, n = t.shape
        r = p.rng.random()
        if r < 0.35:
            w = mat((n, k))
            return p.emit(p.rng.choice([f"{x} @ {w}", f"{x}.mm({w})", f"torch.mm({x}, {w})"]), (x, w))
        if r < 0.55:
            v = mat((n,))
            return p.emit(p.rng.choice([f"{x} @ {v}", f"{x}.mv({v})"]), (x, v))
        if r < 0.8:
            w = mat((k, n))
            if p.rng.random() < 0.6:
                b = mat((k,))
                return p.emit(f"F.linear({x}, {w}, {b})", (x, w, b))
            return p.emit(f"F.linear({x}, {w})", (x, w))
        need(p.feature("matmul.batch_broadcast"))    # 2-D @ 3-D
        p.use("matmul.batch_broadcast")
        bsz = p.rng.choice([1, 2])
        w = mat((bsz, n, k))
        return p.emit(f"{x} @ {w}", (x, w))
    b = t.shape[:-2]
    n = t.shape[-1]
    r = p.rng.random()
    if r < 0.4:
        w = mat((n, k))
        return p.emit(p.rng.choice([f"{x} @ {w}", f"torch.matmul({x}, {w})"]), (x, w))
    if r < 0.8 and nd == 3:
        w = mat((b[0], n, k))
        return p.emit(p.rng.choice([f"{x} @ {w}", f"torch.bmm({x}, {w})", f"{x}.bmm({w})"]), (x, w))
    if r < 0.9:
        v = mat((n,))
        return p.emit(f"{x} @ {v}", (x, v))
    w = mat((k, n))
    return p.emit(f"F.linear({x}, {w}, {mat((k,))})", (x, w))


def _factor_shape(p: Program, n: int) -> tuple[int, ...]:
    if n == 0:
        return (0,)
    divs = [d for d in range(1, n + 1) if n % d == 0]
    a = p.rng.choice(divs)
    rest = n // a
    if p.rng.random() < 0.5:
        b = p.rng.choice([d for d in range(1, rest + 1) if rest % d == 0])
        return (a, b, rest // b)
    return (a, rest)


@builder("view", 5)
def _view(p: Program, x: str) -> str:
    t = p.val(x)
    if not t.is_contiguous() or x in p.expanded:
        # reshape/view/contiguous names depend on PyTorch's strides (expanded, permuted-elementwise)
        need(p.feature("view.noncontiguous_input"))
        p.use("view.noncontiguous_input")
    nd = t.dim()
    r = p.rng.random()
    if r < 0.2:
        shape = _factor_shape(p, t.numel())
        if p.rng.random() < 0.3:
            i = p.rng.randrange(len(shape))
            shape = tuple(-1 if j == i else s for j, s in enumerate(shape))
        fn = p.rng.choice(["reshape", "view", "reshape"])
        return p.emit(f"{x}.{fn}({', '.join(map(str, shape))})", (x,))
    if r < 0.28:
        return p.emit(p.rng.choice([f"{x}.reshape(-1)", f"{x}.view(-1)", f"{x}.flatten()",
                                    f"torch.flatten({x})"]), (x,))
    if r < 0.45 and nd >= 2:
        d0, d1 = p.rng.sample(range(nd), 2)
        return p.emit(p.rng.choice([f"{x}.transpose({d0}, {d1})", f"torch.transpose({x}, {d0}, {d1})",
                                    f"{x}.permute({', '.join(map(str, p.rng.sample(range(nd), nd)))})",
                                    f"{x}.t()" if nd == 2 else f"{x}.mT",
                                    f"{x}.T" if nd == 2 else f"{x}.mT"]),
                      (x,))
    if r < 0.6:
        if 1 in t.shape and p.rng.random() < 0.7:
            d = [i for i, s in enumerate(t.shape) if s == 1][0]
            return p.emit(p.rng.choice([f"{x}.squeeze()", f"{x}.squeeze({d})", f"torch.squeeze({x}, {d})"]),
                          (x,))
        d = p.rng.randint(-nd - 1, nd)
        return p.emit(p.rng.choice([f"{x}.unsqueeze({d})", f"torch.unsqueeze({x}, {d})", f"{x}[None]",
                                    f"{x}[..., None]"]), (x,))
    if r < 0.75:
        need(t.numel() * 3 <= MAX_NUMEL and nd < 4)
        n = p.rng.choice([2, 3])
        shape = tuple(p.rng.choice([2, 3]) if s == 1 else s for s in t.shape)
        if p.rng.random() < 0.5:
            return p.emit(f"{x}.expand({', '.join(map(str, (n,) + shape))})", (x,))
        return p.emit(f"{x}.expand({', '.join(map(str, shape or (n,)))})" if shape else
                      f"{x}.expand({n})", (x,))
    if r < 0.85 and nd >= 2:
        # a non-contiguous tensor reshaped (UnsafeViewBackward0) or made contiguous (CloneBackward0)
        return p.emit(p.rng.choice([f"{x}.transpose(0, 1).reshape(-1)", f"{x}.transpose(0, 1).contiguous()",
                                    f"{x}.transpose(0, 1).flatten()"]), (x,))
    form = p.rng.choice([f"{x}.clone()", f"{x}.contiguous()", f"{x}.view_as({x})"])
    if form.endswith(".contiguous()"):
        need(p.feature("view.contiguous"))
        p.use("view.contiguous")
    return p.emit(form, (x,))


@builder("join", 2.5)
def _join(p: Program, x: str) -> str:
    t = p.val(x)
    nd = t.dim()
    r = p.rng.random()
    dt = "float64" if t.dtype == torch.float64 else "float32"
    if r < 0.45:
        need(nd >= 1 and t.numel() * 2 <= MAX_NUMEL)
        d = _dim(p, t)
        shape = list(t.shape)
        shape[d] = p.rng.choice([1, 2])
        y = p.leaf(tuple(shape), dt, p.rng.random() < 0.7) if p.rng.random() < 0.6 else None
        other = y if y is not None else f"{x} * 2"
        if y is None:
            shape[d] = t.shape[d]
        lst = [x, other] if p.rng.random() < 0.7 else [other, x]
        return p.emit(f"torch.cat([{', '.join(lst)}], {'dim=' if p.rng.random() < 0.5 else ''}{d})",
                      (x,) + ((y,) if y else ()))
    need(t.numel() * 2 <= MAX_NUMEL)
    d = p.rng.randint(-nd - 1, nd)
    y = p.leaf(tuple(t.shape), dt, p.rng.random() < 0.7) if p.rng.random() < 0.6 else None
    other = y if y is not None else f"{x}.exp()" if bool((t < 4).all()) else f"-{x}"
    return p.emit(f"torch.stack([{x}, {other}], dim={d})", (x,) + ((y,) if y else ()))


@builder("split", 2)
def _split(p: Program, x: str) -> str:
    t = p.val(x)
    d = _dim(p, t)
    n = t.shape[d]
    need(n >= 2)
    r = p.rng.random()
    if r < 0.3:
        k = p.rng.randint(1, n - 1)
        parts = -(-n // k)
        return p.emit(f"{x}.split({k}, {d})[{p.rng.randrange(parts)}]", (x,))
    if r < 0.45:
        a = p.rng.randint(1, n - 1)
        return p.emit(f"{x}.split([{a}, {n - a}], dim={d})[{p.rng.randrange(2)}]", (x,))
    if r < 0.7:
        c = p.rng.randint(2, n)
        step = -(-n // c)
        parts = -(-n // step)
        return p.emit(p.rng.choice([f"{x}.chunk({c}, {d})[{p.rng.randrange(parts)}]",
                                    f"torch.chunk({x}, {c}, dim={d})[{p.rng.randrange(parts)}]"]), (x,))
    if r < 0.85:
        return p.emit(p.rng.choice([f"{x}.unbind({d})[{p.rng.randrange(n)}]",
                                    f"torch.unbind({x}, {d})[{p.rng.randrange(n)}]"]), (x,))
    reps = tuple(p.rng.choice([1, 2]) for _ in range(max(t.dim(), 1) + p.rng.choice([0, 0, 1])))
    need(t.numel() * math.prod(reps) <= MAX_NUMEL)
    return p.emit(f"{x}.repeat({', '.join(map(str, reps))})", (x,))


@builder("index.basic", 4)
def _index_basic(p: Program, x: str) -> str:
    t = p.val(x)
    need(t.dim() >= 1)
    n0 = t.shape[0]
    forms = [f"{x}[{p.rng.randrange(-n0, n0)}]", f"{x}[{p.rng.randrange(n0)}:]", f"{x}[::2]", f"{x}[1::2]",
             f"{x}[:{max(1, n0 - 1)}]", f"{x}[None]", f"{x}[..., {p.rng.randrange(t.shape[-1])}]",
             f"{x}[...]" if t.dim() > 1 else f"{x}[:]" if p.feature("index.full_slice") else f"{x}[0:]"]
    if t.dim() >= 2:
        n1 = t.shape[1]
        forms += [f"{x}[:, {p.rng.randrange(n1)}]", f"{x}[{p.rng.randrange(n0)}, {p.rng.randrange(n1)}]",
                  f"{x}[:, ::2]", f"{x}[{p.rng.randrange(n0)}][{p.rng.randrange(n1)}]", f"{x}[:, None, 1:]",
                  f"{x}[..., None, :]", f"{x}[-1, ...]"]
    return p.emit(p.rng.choice(forms), (x,))


@builder("index.advanced", 3)
def _index_adv(p: Program, x: str) -> str:
    t = p.val(x)
    need(t.dim() >= 1)
    n0 = t.shape[0]
    r = p.rng.random()
    if r < 0.25:
        idx = [p.rng.randrange(n0) for _ in range(p.rng.randint(1, 4))]
        return p.emit(f"{x}[{idx}]", (x,))
    if r < 0.45:
        shape = p.rng.choice([(2,), (3,), (2, 2), ()])
        if shape == ():
            need(p.feature("index.scalar_tensor"))     # a 0-dim integer tensor index
            p.use("index.scalar_tensor")
        ix = p.leaf(shape, "int64", False, 0, n0 - 1)
        return p.emit(f"{x}[{ix}]", (x, ix))
    if r < 0.7:
        c = round(p.rng.uniform(-1, 1), 2)
        need(away(t, c) and bool((t > c).any()))
        return p.emit(p.rng.choice([f"{x}[{x} > {fmt(c)}]", f"{x}[{x}.abs() > {fmt(abs(c))}]"]), (x,))
    if r < 0.85 and t.dim() >= 2:
        idx = [p.rng.randrange(t.shape[1]) for _ in range(p.rng.randint(1, 3))]
        second = f"{x}[..., {idx}]" if t.dim() == 2 else f"{x}[0, {idx}]"
        return p.emit(p.rng.choice([f"{x}[:, {idx}]", second]), (x,))
    mask = p.leaf(tuple(t.shape), "bool", False)
    need(bool(p.val(mask).any()))
    return p.emit(f"{x}[{mask}]", (x, mask))


@builder("index.gather", 2.5)
def _gather(p: Program, x: str) -> str:
    t = p.val(x)
    need(t.dim() >= 1)
    d = _dim(p, t)
    n = t.shape[d]
    r = p.rng.random()
    if r < 0.4:
        shape = list(t.shape)
        shape[d] = p.rng.choice([1, 2, 3])
        ix = p.leaf(tuple(shape), "int64", False, 0, n - 1)
        return p.emit(p.rng.choice([f"{x}.gather({d}, {ix})", f"torch.gather({x}, {d}, {ix})"]), (x, ix))
    if r < 0.7:
        ix = p.leaf((p.rng.choice([1, 2, 3]),), "int64", False, 0, n - 1)
        return p.emit(p.rng.choice([f"{x}.index_select({d}, {ix})", f"torch.index_select({x}, {d}, {ix})"]),
                      (x, ix))
    if p.rng.random() < 0.5:
        c = round(p.rng.uniform(-1, 1), 2)
        need(away(t, c))
        mask = f"{x} > {fmt(c)}"
    else:
        mask = p.leaf(p.partner_shape(tuple(t.shape)), "bool", False)
        need(_broadcasts(p.val(mask).shape, t.shape) and torch.broadcast_shapes(p.val(mask).shape, t.shape)
             == t.shape)
    v = p.rng.choice(["0.0", "-1.5", "2"])
    return p.emit(f"{x}.masked_fill({mask}, {v})", (x,))


@builder("softmax", 2.5)
def _softmax(p: Program, x: str) -> str:
    t = p.val(x)
    d = _dim(p, t) if t.dim() else 0
    forms = [f"{x}.softmax({d})", f"F.softmax({x}, dim={d})", f"torch.softmax({x}, {d})",
             f"F.log_softmax({x}, dim={d})", f"{x}.log_softmax({d})", f"torch.log_softmax({x}, {d})"]
    return p.emit(p.rng.choice(forms), (x,))


def _logits(p: Program, x: str) -> tuple[str, int, int]:
    """(2-D logits (N, C) derived from x, N, C)."""
    t = p.val(x)
    need(t.numel() >= 2)
    if t.dim() == 2 and t.shape[1] >= 2:
        return x, t.shape[0], t.shape[1]
    n = t.numel()
    c = [d for d in (4, 3, 2) if n % d == 0]
    need(c)
    return f"{x}.reshape(-1, {c[0]})", n // c[0], c[0]


@builder("loss.cross_entropy", 1.5)
def _cross_entropy(p: Program, x: str) -> str:
    z, n, c = _logits(p, x)
    red = p.rng.choice(["", ", reduction='sum'", ", reduction='none'", ", reduction='mean'"])
    target = p.leaf((n,), "int64", False, 0, c - 1)
    return p.emit(f"F.cross_entropy({z}, {target}{red})", (x,))


@builder("cross_entropy.ignore_index", 0.6)
def _cross_entropy_ignore(p: Program, x: str) -> str:
    z, n, c = _logits(p, x)
    need(n >= 2)
    vals = [str(p.rng.randrange(c)) for _ in range(n)]
    ignore = p.rng.choice(["-100", "1"])
    vals[p.rng.randrange(n)] = ignore
    need(any(v != ignore for v in vals))
    target = p.leaf((n,), "int64", False, values=vals)
    kw = "" if ignore == "-100" else f", ignore_index={ignore}"
    return p.emit(f"F.cross_entropy({z}, {target}{kw})", (x,))


@builder("cross_entropy.label_smoothing", 0.5)
def _cross_entropy_ls(p: Program, x: str) -> str:
    z, n, c = _logits(p, x)
    target = p.leaf((n,), "int64", False, 0, c - 1)
    red = p.rng.choice(["", ", reduction='sum'"])
    return p.emit(f"F.cross_entropy({z}, {target}, label_smoothing=0.1{red})", (x,))


@builder("cross_entropy.probs", 0.6)
def _cross_entropy_probs(p: Program, x: str) -> str:
    z, n, c = _logits(p, x)
    y = p.leaf((n, c), "float32" if p.val(x).dtype == torch.float32 else "float64", p.rng.random() < 0.5)
    red = p.rng.choice(["", ", reduction='sum'"])
    return p.emit(f"F.cross_entropy({z}, {y}.softmax(1){red})", (x, y))


@builder("loss.nll", 0.8)
def _nll(p: Program, x: str) -> str:
    z, n, c = _logits(p, x)
    target = p.leaf((n,), "int64", False, 0, c - 1)
    red = p.rng.choice(["", ", reduction='sum'"])
    return p.emit(f"F.nll_loss(F.log_softmax({z}, dim=1), {target}{red})", (x,))


@builder("loss.regression", 1.5)
def _regression(p: Program, x: str) -> str:
    t = p.val(x)
    fn = p.rng.choice(["mse_loss", "l1_loss", "smooth_l1_loss"])
    dt = "float64" if t.dtype == torch.float64 else "float32"
    y = p.leaf(tuple(t.shape), dt, p.rng.random() < 0.4)
    diff = t.detach() - p.val(y).detach()
    if fn == "l1_loss":
        need(away(diff, 0))
    if fn == "smooth_l1_loss":
        need(away(diff.abs(), 1.0))
    red = p.rng.choice(["", ", reduction='sum'", ", reduction='none'"])
    return p.emit(f"F.{fn}({x}, {y}{red})", (x, y))


@builder("loss.bce", 1.2)
def _bce(p: Program, x: str) -> str:
    t = p.val(x)
    dt = "float64" if t.dtype == torch.float64 else "float32"
    y = p.leaf(tuple(t.shape), dt, False, 0, 1)
    red = p.rng.choice(["", ", reduction='sum'", ", reduction='none'"])
    if p.rng.random() < 0.5:
        return p.emit(f"F.binary_cross_entropy({x}.sigmoid(), {y}{red})", (x,))
    if p.rng.random() < 0.3:
        w = p.leaf(tuple(t.shape), dt, False, 0, 2)
        return p.emit(f"F.binary_cross_entropy_with_logits({x}, {y}, weight={w}{red})", (x,))
    return p.emit(f"F.binary_cross_entropy_with_logits({x}, {y}{red})", (x,))


@builder("activation", 4)
def _activation(p: Program, x: str) -> str:
    t = p.val(x)
    forms = [f"F.gelu({x})", f"F.gelu({x}, approximate='tanh')", f"F.silu({x})", f"torch.sigmoid({x})",
             f"torch.tanh({x})", f"F.softplus({x})", f"{x}.sigmoid()", f"{x}.tanh()"]
    if away(t, 0):
        forms += [f"F.leaky_relu({x})", f"F.leaky_relu({x}, 0.2)", f"F.elu({x})", f"F.elu({x}, alpha=0.5)"]
    if away(t, -1) and away(t, 1):
        forms += [f"F.hardtanh({x})"]
    if away(t, -0.5) and away(t, 0.5):
        forms += [f"F.hardtanh({x}, -0.5, 0.5)"]
    if away(t * 2, 5):
        forms += [f"F.softplus({x}, beta=2, threshold=5)"]
    return p.emit(p.rng.choice(forms), (x,))


@builder("activation.edge", 0.3, edge=True)
def _activation_edge(p: Program, x: str) -> str:
    forms = [f"F.leaky_relu({x}, 0.5)", f"F.hardtanh({x})", f"F.relu({x})", f"F.elu({x})"]
    return p.emit(p.rng.choice(forms), (x,))


@builder("cast", 1.5)
def _cast(p: Program, x: str) -> str:
    t = p.val(x)
    if t.dtype == torch.float32:
        forms = [f"{x}.double()", f"{x}.to(torch.float64)", f"{x}.type(torch.float64)", f"{x}.float()"]
    else:
        forms = [f"{x}.float()", f"{x}.to(torch.float32)", f"{x}.to(dtype=torch.float32)", f"{x}.double()"]
    return p.emit(p.rng.choice(forms), (x,))


@builder("cast.int", 0.8)
def _cast_int(p: Program, x: str) -> str:
    # integer and bool results (no grad) that flow back into float arithmetic
    t = p.val(x)
    r = p.rng.random()
    if r < 0.4:
        need(away(t, torch.round(t)))
        i = p.emit(p.rng.choice([f"{x}.long()", f"{x}.to(torch.int64)"]), (x,))
        forms = [f"{x} * {i}", f"{i} + {x}", f"{i} / 2 + {x}", f"{i}.float() - {x}"]
        return p.emit(p.rng.choice(forms), (x, i))
    c = round(p.rng.uniform(-1, 1), 2)
    need(away(t, c))
    m = p.emit(f"({x} > {fmt(c)})", (x,))
    return p.emit(p.rng.choice([f"{x} * {m}", f"{m}.float() * {x}", f"{x} + {m}.sum()",
                                f"{x} * {m}.to(torch.float64)"]), (x, m))


@builder("int_ops", 0.5)
def _int_ops(p: Program, x: str) -> str:
    t = p.val(x)
    i = p.leaf(tuple(t.shape), "int64", False, -4, 4)
    r = p.rng.random()
    if r < 0.3:
        forms = [f"{i}.sum()", f"{i}.sum(0)" if t.dim() else f"{i} * 3", f"{i}.argmax()"]
        s = p.emit(p.rng.choice(forms), (i,))
        return p.emit(f"{x} * {s}", (x, s))
    return p.emit(p.rng.choice([f"{x} + {i}", f"{i} * {x}", f"{x} / ({i}.abs() + 1)", f"{i} - {x}"]), (x, i))


@builder("empty", 0.15)
def _empty(p: Program, x: str) -> str:
    # zero-size leaves: reductions over them and broadcasting with them
    e = p.emit("torch.zeros(0, 3, requires_grad=True)", ())
    p.leaves.append(e)
    s = p.emit(p.rng.choice([f"{e}.sum(0)", f"{e}.sum(0, keepdim=True)", f"({e} * 2).sum(0)"]), (e,))
    return p.emit(f"{x} + {s}.sum()", (x, s))


@builder("reduce.variants", 2)
def _reduce_variants(p: Program, x: str) -> str:
    """Reductions with a dtype, dim tuples, other norms and corrections."""
    t = p.val(x)
    forms = [f"{x}.sum(dtype=torch.float64)", f"{x}.mean(dtype=torch.float64)",
             f"{x}.norm(p=3)"]
    if t.dim() >= 1:
        d = _dim(p, t)
        forms += [f"{x}.logsumexp(dim=({d},))", f"{x}.amax(dim=({d},), keepdim=True)" if gap_ok(t, d) else
                  f"{x}.sum(({d},))", f"{x}.norm(p=1.5, dim={d})"]
        if gap_ok(t, d):
            forms.append(f"{x}.norm(p=float('inf'), dim={d})")
        if t.shape[d] >= 3:
            forms.append(f"{x}.var({d}, correction=2)")
    if t.dim() >= 2:
        forms += [f"{x}.logsumexp((0, 1))", f"{x}.mean((-1, 0), keepdim=True)", f"{x}.norm(dim=(0, 1))",
                  f"{x}.var((0, 1))" if t.shape[0] * t.shape[1] >= 2 else f"{x}.sum()"]
    if gap_ok(t):
        forms.append(f"{x}.norm(p=float('inf'))")
    return p.emit(p.rng.choice(forms), (x,))


@builder("pattern.normalize", 1.5)
def _normalize(p: Program, x: str) -> str:
    """Fan-out through a reduction broadcast back (layer-norm and softmax-like patterns)."""
    t = p.val(x)
    need(t.dim() >= 1)
    d = _dim(p, t)
    r = p.rng.random()
    if r < 0.3:
        return p.emit(f"{x} - {x}.mean({d}, keepdim=True)", (x,))
    if r < 0.55:
        need(t.shape[d] >= 2 and float(t.detach().std(d).min()) > 0.05)
        return p.emit(f"({x} - {x}.mean({d}, keepdim=True)) / {x}.std({d}, keepdim=True)", (x,))
    if r < 0.75:
        need(float(t.detach().norm(dim=d).min()) > 0.1)
        return p.emit(p.rng.choice([f"{x} / {x}.norm(dim={d}, keepdim=True)", f"F.normalize({x}, dim={d})"]),
                      (x,))
    return p.emit(f"({x} - {x}.logsumexp({d}, keepdim=True)).exp()", (x,))


@builder("index.multi", 1.5)
def _index_multi(p: Program, x: str) -> str:
    """Several advanced indices at once (broadcast together, adjacent or not)."""
    t = p.val(x)
    need(t.dim() >= 2)
    n0, n1 = t.shape[0], t.shape[1]
    k = p.rng.randint(1, 3)
    i0 = [p.rng.randrange(n0) for _ in range(k)]
    i1 = [p.rng.randrange(n1) for _ in range(k)]
    forms = [f"{x}[{i0}, {i1}]", f"{x}[{i0}, 1:]" if n1 > 1 else f"{x}[{i0}, :]", f"{x}[1:, {i1}]" if n0 > 1
             else f"{x}[:, {i1}]"]
    if t.dim() >= 3:
        i2 = [p.rng.randrange(t.shape[2]) for _ in range(k)]
        forms += [f"{x}[{i0}, :, {i2}]", f"{x}[:, {i1}, {i2}]", f"{x}[..., {i2}]"]
    ix = p.leaf((2, 1), "int64", False, 0, n0 - 1)
    iy = p.leaf((3,), "int64", False, 0, n1 - 1)
    forms += [f"{x}[{ix}, {iy}]"]
    expr = p.rng.choice(forms)
    return p.emit(expr, (x,))


@builder("setitem", 1)
def _setitem(p: Program, x: str) -> str:
    """`y[index] = value` on a non-leaf copy (CopySlices), then used further."""
    t = p.val(x)
    need(t.dim() >= 1)
    y = p.emit(p.rng.choice([f"{x} * 1", f"{x}.clone()", f"{x} + 0.0"]), (x,))
    n0 = t.shape[0]
    r = p.rng.random()
    if r < 0.4:
        p.stmt(f"{y}[{p.rng.randrange(n0)}] = {p.rng.choice(['0.0', '2.5', '-1'])}")
    elif r < 0.7:
        v = p.leaf(tuple(t.shape[1:]), "float32" if t.dtype == torch.float32 else "float64", True)
        p.stmt(f"{y}[{p.rng.randrange(n0)}] = {v}")
    else:
        c = round(p.rng.uniform(-1, 1), 2)
        need(away(t, c))
        p.stmt(f"{y}[{y} > {fmt(c)}] = 0.5")
    return p.emit(f"{y} * 2", (y,))


def _inplace_operand(p: Program, t) -> str:
    """A leaf that broadcasts *into* t's shape (an in-place op cannot grow its target)."""
    shape = tuple(t.shape)
    r = p.rng.random()
    if r < 0.3 and shape:
        shape = shape[p.rng.randint(1, len(shape)):]
    elif r < 0.6:
        shape = tuple(1 if p.rng.random() < 0.4 else n for n in shape)
    dt = "float64" if t.dtype == torch.float64 else "float32"
    return p.leaf(shape, dt, p.rng.random() < 0.7)


@builder("inplace.nonleaf", 2)
def _inplace(p: Program, x: str) -> str:
    """An in-place op on a non-leaf copy (or on a view of it), then used further."""
    t = p.val(x)
    y = p.emit(p.rng.choice([f"{x} * 1", f"{x}.clone()", f"{x} + 0.0", f"{x} * 2"]), (x,))
    yv = p.val(y).detach()
    s = p.rng.choice(["2", "0.5", "-1.5", "3"])
    r = p.rng.random()
    if r < 0.3:
        line = p.rng.choice([f"{y}.add_({s})", f"{y}.mul_({s})", f"{y}.sub_({s}, alpha=2)", f"{y}.div_({s})",
                             f"{y} += {s}", f"{y} *= {s}", f"{y}.neg_()"])
    elif r < 0.6:
        z = _inplace_operand(p, t)
        forms = [f"{y}.add_({z})", f"{y}.mul_({z})", f"{y}.sub_({z})", f"{y} += {z}", f"{y} *= {z}",
                 f"{y}.add_({z}, alpha=0.5)", f"{y} -= {z}"]
        if away(p.val(z), 0, 0.2):
            forms += [f"{y}.div_({z})", f"{y} /= {z}"]
        line = p.rng.choice(forms)
    elif r < 0.85:
        forms = [f"{y}.sin_()", f"{y}.tanh_()", f"{y}.sigmoid_()", f"{y}.pow_(2)", f"{y}.mul_({y})"]
        if away(yv, 0):
            forms += [f"{y}.abs_()", f"{y}.relu_()"]
        if bool((yv < 4).all()):
            forms.append(f"{y}.exp_()")
        if away(yv, -0.5) and away(yv, 0.5):
            forms.append(f"{y}.clamp_(-0.5, 0.5)")
        line = p.rng.choice(forms)
    else:
        need(t.dim() >= 1)
        i = p.rng.randrange(t.shape[0])
        forms = [f"{y}[{i}].mul_({s})", f"{y}[{i}].add_({s})", f"{y}[{i}].sin_()", f"{y}[{i}:].neg_()"]
        if t.dim() >= 2:
            forms += [f"{y}[:, {p.rng.randrange(t.shape[1])}].mul_({s})", f"{y}.select(1, 0).zero_()"]
        line = p.rng.choice(forms)
    if p.rng.random() < 0.12:
        # the old value was saved by another op: PyTorch's backward then fails (version counter)
        u = p.emit(p.rng.choice([f"{y}.sin()", f"{y} * {y}", f"{y}.exp()" if bool((yv < 4).all()) else
                                 f"{y}.cos()"]), (y,))
        p.stmt(line)
        return p.emit(f"{u} + {y}", (u, y))
    p.stmt(line)
    need(bool(torch.isfinite(p.val(y)).all()) and float(p.val(y).detach().abs().max()) < 1e4)
    return y


@builder("no_grad", 1.2)
def _no_grad(p: Program, x: str) -> str:
    """A value computed with grad mode off (a constant), or back on inside such a block."""
    t = p.val(x)
    ctx = p.rng.choice(["torch.no_grad()", "torch.no_grad()", "torch.set_grad_enabled(False)",
                        "torch.inference_mode()"])
    within: tuple[str, ...] = (ctx,)
    if ctx != "torch.inference_mode()" and p.rng.random() < 0.2:
        within = (ctx, "torch.enable_grad()")
    forms = [f"{x} * 2", f"{x}.sin()", f"{x} + 1", f"{x}.detach() * 3", f"{x}.sum()"]
    if bool((t < 4).all()):
        forms.append(f"{x}.exp()")
    c = p.emit(p.rng.choice(forms), (x,), within=within)
    return p.emit(p.rng.choice([f"{x} * {c}", f"{x} + {c}", f"{c} - {x}", f"{x}.detach() * {x}"]), (x, c))


@builder("dropout.eval", 0.5)
def _dropout_eval(p: Program, x: str) -> str:
    """Dropout that is the identity (eval mode, p=0) or all zeros (p=1): deterministic."""
    form = p.rng.choice([f"F.dropout({x}, p=0.3, training=False)", f"F.dropout({x}, 0.5, False)",
                         f"F.dropout({x} * 2, p=0.2, training=False)", f"F.dropout({x}, p=0.0)",
                         f"torch.dropout({x}, 0.4, False)", f"F.dropout({x}, p=1.0)"])
    return p.emit(form, (x,))


@builder("dtype.int32", 0.6)
def _int32(p: Program, x: str) -> str:
    t = p.val(x)
    i = p.leaf(p.partner_shape(tuple(t.shape)), "int32", False, -3, 3)
    forms = [f"{x} + {i}", f"{i} * {x}", f"{x} / ({i}.abs() + 1)", f"{i}.float() * {x}",
             f"{x} * ({i} * 2)", f"{x} - {i}.to(torch.float32)"]
    if p.val(i).numel() <= 8:
        forms += [f"{x} * {i}.sum()", f"{x} + {i}.max()"]
    return p.emit(p.rng.choice(forms), (x, i))


@builder("dtype.float16", 0.8)
def _float16(p: Program, x: str) -> str:
    """A detour through float16 (computed in float on CPU, rounded to half), or a half leaf."""
    t = p.val(x)
    if p.rng.random() < 0.3:
        h = p.leaf(tuple(t.shape), "float16", True)
        r = p.emit(p.rng.choice([f"{h} * 2", f"{h}.sin()", f"{h} + {h}", f"({h} * {h}).sum()"]), (h,))
        return p.emit(f"{x} + {r}.float()" if p.rng.random() < 0.5 else f"{r} + {x}", (x, r))
    h = p.emit(p.rng.choice([f"{x}.half()", f"{x}.to(torch.float16)"]), (x,))
    forms = [f"{h} * 2", f"{h} - 0.5", f"{h}.sin()", f"{h}.sum()", f"{h}.mean()", f"{h}.sigmoid()",
             f"{h} * {h}", f"{h}.tanh()"]
    if bool((t < 4).all()):
        forms.append(f"{h}.exp()")
    if t.dim() >= 1:
        forms.append(f"{h}.softmax(-1)")
    r = p.emit(p.rng.choice(forms), (h,))
    return p.emit(p.rng.choice([f"{r}.float()", f"{r}.to(torch.float32)", f"{r} * {x}"]), (r, x))


@builder("large", 0.12)
def _large(p: Program, x: str) -> str:
    """A tensor above 1000 elements (summarised repr), reduced back to a small one."""
    n, shape = p.rng.choice([(1001, (1001,)), (1200, (40, 30)), (1200, (30, 40)), (2000, (2, 1000)),
                             (1024, (4, 16, 16))])
    dims = ", ".join(map(str, shape))
    if p.rng.random() < 0.5:
        big = p.emit(f"torch.linspace(0.5, 2, {n}, requires_grad=True)", (), max_numel=LARGE_NUMEL)
        p.leaves.append(big)
        big = p.emit(f"{big}.reshape({dims})", (big,), max_numel=LARGE_NUMEL) if len(shape) > 1 else big
    else:
        big = p.emit(p.rng.choice([f"torch.arange({n}).reshape({dims}) * 0.01",
                                   f"torch.arange({n}, dtype=torch.float32).reshape({dims}) / {n}",
                                   f"torch.ones({dims}) * 0.5"]), (), max_numel=LARGE_NUMEL)
    s = p.emit(p.rng.choice([f"{x}.sum()", f"{x}.mean()"]), (x,))
    y = p.emit(p.rng.choice([f"{big} * {s}", f"({big} + {s}).sin()", f"{s} - {big}"]), (big, s),
               max_numel=LARGE_NUMEL)
    if shape[-1] <= MAX_NUMEL and len(shape) > 1 and p.rng.random() < 0.5:
        return p.emit(f"{y}.sum({tuple(range(len(shape) - 1))})", (y,))
    return p.emit(p.rng.choice([f"{y}.sum()", f"{y}.mean()", f"{y}.amax()"]), (y,))


@builder("modulo", 0.6)
def _modulo(p: Program, x: str) -> str:
    """remainder (`%`, the divisor's sign) and fmod (the dividend's), away from their jumps."""
    t = p.val(x)
    if p.rng.random() < 0.5:
        s = p.rng.choice([0.7, 2.0, -1.5, 3.0])
        q = t.detach() / s
        need(away(q, torch.round(q)))
        return p.emit(p.rng.choice([f"{x} % {fmt(s)}", f"{x}.remainder({fmt(s)})",
                                    f"torch.fmod({x}, {fmt(s)})", f"{x}.fmod({fmt(s)})"]), (x,))
    y = p.partner(x, allow_int=False, low=0.5, high=2.0)
    yv = p.val(y)
    if p.rng.random() < 0.3:
        y = p.emit(f"-{y}", (y,))
        yv = p.val(y)
    q = t.detach() / yv.detach()
    need(away(q, torch.round(q)))
    return p.emit(p.rng.choice([f"{x} % {y}", f"torch.remainder({x}, {y})", f"{x}.fmod({y})"]), (x, y))


@builder("div.rounding", 0.8)
def _div_rounding(p: Program, x: str) -> str:
    t = p.val(x)
    s = p.rng.choice([0.5, 2.0, 3.0, -1.5])
    q = t.detach() / s
    need(away(q, torch.round(q)) and away(q, torch.floor(q) + 0.5))
    mode = p.rng.choice(["floor", "trunc"])
    expr = p.rng.choice([f"{x} // {fmt(s)}", f"torch.div({x}, {fmt(s)}, rounding_mode='{mode}')",
                         f"{x}.div({fmt(s)}, rounding_mode='{mode}')"])
    if "//" in expr:
        need(p.feature("div.floordiv_operator"))
        p.use("div.floordiv_operator")
    y = p.emit(expr, (x,))
    return p.emit(f"{y} * {x}", (x, y))


@builder("join.promote", 0.8)
def _join_promote(p: Program, x: str) -> str:
    """cat/stack/where/maximum over mixed dtypes (float32, float64, int64, bool)."""
    t = p.val(x)
    other = "float64" if t.dtype == torch.float32 else "float32"
    r = p.rng.random()
    if r < 0.3 and t.dim() >= 1:
        y = p.leaf(tuple(t.shape), p.rng.choice([other, "int64"]), p.rng.random() < 0.5)
        return p.emit(f"torch.cat([{x}, {y}], 0)", (x,))
    if r < 0.5:
        y = p.leaf(tuple(t.shape), p.rng.choice([other, "int64"]), False)
        return p.emit(f"torch.stack([{y}, {x}])", (x,))
    if r < 0.75:
        c = round(p.rng.uniform(-1, 1), 2)
        need(away(t, c))
        y = p.leaf(tuple(t.shape[1:]) if t.dim() else (), p.rng.choice(["int64", other]), False)
        return p.emit(f"torch.where({x} > {fmt(c)}, {x}, {y})", (x,))
    y = p.leaf(tuple(t.shape), "int64", False, -2, 2)
    need(away(t, p.val(y).double()))
    return p.emit(p.rng.choice([f"torch.maximum({x}, {y})", f"torch.minimum({y}, {x})"]), (x,))


@builder("pad", 0.5)
def _pad(p: Program, x: str) -> str:
    t = p.val(x)
    need(t.dim() >= 1)
    pads = [p.rng.choice([0, 1, 2]) for _ in range(2 * min(t.dim(), p.rng.choice([1, 2])))]
    need(numel([s + pads[2 * i] + pads[2 * i + 1] if i < len(pads) // 2 else s
                for i, s in enumerate(reversed(t.shape))]) <= MAX_NUMEL)
    value = p.rng.choice(["", ", value=1.5"])
    return p.emit(f"F.pad({x}, {tuple(pads)}{value})", (x,))


@builder("cross_entropy.weight", 0.6)
def _cross_entropy_weight(p: Program, x: str) -> str:
    z, n, c = _logits(p, x)
    dt = "float64" if p.val(x).dtype == torch.float64 else "float32"
    w = p.leaf((c,), dt, False, 0.2, 2)
    target = p.leaf((n,), "int64", False, 0, c - 1)
    fn = p.rng.choice(["cross_entropy", "nll_loss"])
    red = p.rng.choice(["", ", reduction='sum'", ", reduction='none'"])
    zz = z if fn == "cross_entropy" else f"F.log_softmax({z}, 1)"
    return p.emit(f"F.{fn}({zz}, {target}, weight={w}{red})", (x,))


@builder("cross_entropy.spatial", 0.5)
def _cross_entropy_spatial(p: Program, x: str) -> str:
    t = p.val(x)
    need(t.dim() == 3 and t.shape[1] >= 2)
    target = p.leaf((t.shape[0], t.shape[2]), "int64", False, 0, t.shape[1] - 1)
    red = p.rng.choice(["", ", reduction='sum'", ", reduction='none'"])
    return p.emit(f"F.cross_entropy({x}, {target}{red})", (x,))


@builder("bce.pos_weight", 0.4)
def _bce_pos_weight(p: Program, x: str) -> str:
    t = p.val(x)
    need(t.dim() >= 1)
    dt = "float64" if t.dtype == torch.float64 else "float32"
    y = p.leaf(tuple(t.shape), dt, False, 0, 1)
    pw = p.leaf((t.shape[-1],), dt, False, 0.5, 2)
    return p.emit(f"F.binary_cross_entropy_with_logits({x}, {y}, pos_weight={pw})", (x,))


@builder("prod.zeros", 0.3, edge=True)
def _prod_zeros(p: Program, x: str) -> str:
    t = p.val(x)
    need(t.numel() <= 8 and t.dim() >= 1)
    y = p.emit(f"{x}.relu()" if p.mode == "edge" else f"torch.where({x} > 0, {x}, 0.0)", (x,))
    if p.mode != "edge":
        need(away(t, 0))
    return p.emit(p.rng.choice([f"{y}.prod()", f"{y}.prod({_dim(p, t)})"]), (y,))


# ---------------------------------------------------------------------------------------------
# Error programs: a valid prefix, then one statement PyTorch rejects (the type and text are compared).

ERRORS: dict[str, Callable] = {}


def error(tag: str):
    def deco(fn):
        ERRORS[tag] = fn
        return fn
    return deco


def _other_shape(shape) -> tuple[int, ...]:
    s = list(shape) or [2]
    s[-1] = s[-1] + 2
    return tuple(s)


@error("error.broadcast")
def _e_broadcast(p: Program, x: str) -> str:
    t = p.val(x)
    need(t.dim() >= 1 and t.shape[-1] > 1)
    y = p.leaf(_other_shape(t.shape), "float32", False)
    return p.rng.choice([f"{x} + {y}", f"{y} * {x}", f"torch.maximum({x}, {y})", f"F.mse_loss({x}, {y})"])


@error("error.matmul")
def _e_matmul(p: Program, x: str) -> str:
    t = p.val(x)
    need(t.dim() in (1, 2))
    w = p.leaf((t.shape[-1] + 1, 2), "float32", False)
    forms = [f"{x} @ {w}", f"torch.matmul({x}, {w})"] + ([f"{x}.mm({w})"] if t.dim() == 2 else [])
    return p.rng.choice(forms)


@error("error.matmul_0d")
def _e_matmul0(p: Program, x: str) -> str:
    s = p.leaf((), "float32", True)
    return f"{x} @ {s}"


@error("error.nonscalar_backward")
def _e_nonscalar(p: Program, x: str) -> str:
    need(p.val(x).numel() > 1 and p.val(x).requires_grad)
    return f"{x}.backward()"


@error("error.grad_shape")
def _e_grad_shape(p: Program, x: str) -> str:
    t = p.val(x)
    need(t.requires_grad and t.dim() >= 1)
    return f"{x}.backward(torch.ones({', '.join(map(str, _other_shape(t.shape)))}))"


@error("error.dim_range")
def _e_dim(p: Program, x: str) -> str:
    nd = p.val(x).dim()
    d = p.rng.choice([nd + 1, -nd - 2]) if nd else 2
    return p.rng.choice([f"{x}.sum({d})", f"{x}.softmax({d})", f"{x}.unsqueeze({d + (1 if d > 0 else -1)})",
                         f"{x}.transpose(0, {d})", f"{x}.mean(dim={d})"])


@error("error.reshape")
def _e_reshape(p: Program, x: str) -> str:
    n = p.val(x).numel()
    return p.rng.choice([f"{x}.reshape({n + 1})", f"{x}.view(-1, {n + 1}, 2)", f"{x}.reshape(-1, -1)"])


@error("error.view_noncontiguous")
def _e_view(p: Program, x: str) -> str:
    t = p.val(x)
    need(t.dim() == 2 and t.shape[0] > 1 and t.shape[1] > 1)
    return f"{x}.t().view(-1)"


@error("error.cat")
def _e_cat(p: Program, x: str) -> str:
    t = p.val(x)
    need(t.dim() >= 1)
    if t.dim() >= 2 and p.rng.random() < 0.5:
        y = p.leaf(_other_shape(t.shape), "float32", False)
        return f"torch.cat([{x}, {y}], dim=0)" if t.shape[-1] else f"torch.stack([{x}, {y}])"
    y = p.leaf(_other_shape(t.shape), "float32", False)
    return f"torch.stack([{x}, {y}])"


@error("error.index")
def _e_index(p: Program, x: str) -> str:
    t = p.val(x)
    need(t.dim() >= 1)
    return p.rng.choice([f"{x}[{t.shape[0] + 2}]", f"{x}[-{t.shape[0] + 1}]",
                         f"{x}[0, 0, 0, 0, 0]", f"{x}[[0, {t.shape[0] + 3}]]"])


@error("error.int_requires_grad")
def _e_int_rg(p: Program, x: str) -> str:
    return p.rng.choice(["torch.tensor([1, 2], requires_grad=True)", f"{x}.long().requires_grad_()",
                         "torch.tensor([True, False], requires_grad=True)"])


@error("error.mean_int")
def _e_mean_int(p: Program, x: str) -> str:
    return p.rng.choice([f"{x}.long().mean()", "torch.tensor([1, 2, 3]).mean()"])


@error("error.backward_twice_saved")
def _e_twice_saved(p: Program, x: str) -> str:
    need(p.val(x).requires_grad)
    y = p.emit(f"({x} * {x}).sum()", (x,))
    p.stmt(f"{y}.backward()")
    return f"{y}.backward()"


@error("error.no_grad_backward")
def _e_no_grad(p: Program, x: str) -> str:
    return p.rng.choice([f"{x}.detach().sum().backward()", "torch.ones(2).sum().backward()",
                         f"({x} > 0).sum().backward()"])


@error("error.inplace_leaf")
def _e_inplace(p: Program, x: str) -> str:
    leaf = p.leaves[0]
    return p.rng.choice([f"{leaf}.add_(1)", f"{leaf}.mul_(2)", f"{leaf}[0] = 1.0" if p.val(leaf).dim() else
                         f"{leaf}.zero_()"])


@error("error.item")
def _e_item(p: Program, x: str) -> str:
    need(p.val(x).numel() > 1)
    return p.rng.choice([f"{x}.item()", f"float({x})", f"bool({x} > 0)"])


@error("error.cross_entropy_target")
def _e_ce(p: Program, x: str) -> str:
    z, n, c = _logits(p, x)
    target = p.leaf((n + 1,), "int64", False, 0, c - 1)
    return f"F.cross_entropy({z}, {target})"


@error("error.gather_dtype")
def _e_gather(p: Program, x: str) -> str:
    t = p.val(x)
    need(t.dim() >= 1)
    return p.rng.choice([f"{x}.gather(0, {x})", f"{x}[{x}]"])


@error("error.index_select_vector")
def _e_index_select(p: Program, x: str) -> str:
    t = p.val(x)
    need(t.dim() >= 1)
    forms = [f"{x}.index_select(0, {x})"]
    if t.dim() > 1 or p.feature("error.index_lazy"):
        forms.append(f"{x}.index_select(0, {x}.long())")
    expr = p.rng.choice(forms)
    if t.dim() == 1 and ".long()" in expr:
        # a 1-D index computed by the graph: only its values can be wrong, checked lazily (C12)
        p.use("error.index_lazy")
    return expr


# ---------------------------------------------------------------------------------------------
# Program assembly


def build(rng: random.Random, exclude: set[str]) -> dict | None:
    r = rng.random()
    mode = "edge" if r < 0.12 else "error" if r < 0.24 else "normal"
    p = Program(rng, mode, exclude)
    dt = "float64" if rng.random() < 0.15 else "float32"
    try:
        x = p.leaf(p.random_shape(), dt, True)
        for _ in range(rng.choice([0, 0, 1, 2])):
            p.leaf(p.random_shape(), "float64" if rng.random() < 0.15 else "float32", rng.random() < 0.8)
    except Skip:
        return None
    tags = [t for t in BUILDERS if t not in exclude and (mode != "edge" or t in EDGE_SAFE)]
    weights = [BUILDERS[t][0] for t in tags]
    steps = rng.randint(3, 12) if mode != "error" else rng.randint(1, 5)
    cur = x
    done = 0
    attempts = 0
    while done < steps and attempts < steps * 25:
        attempts += 1
        src = cur
        if rng.random() < 0.2:
            pool = p.float_vars(grad_only=True)
            if pool:
                src = rng.choice(pool)
        tag = rng.choices(tags, weights)[0]
        snap = p.snapshot()
        try:
            out = BUILDERS[tag][1](p, src)
        except (Skip, ValueError, IndexError, RuntimeError):  # an op that does not fit the values
            p.rollback(snap)
            continue
        done += 1
        p.tags.add(tag)
        if src in p.expanded and tag in ("view", "index.basic", "split"):   # still a view of it
            p.expanded.add(out)
        v = p.val(out)
        if torch.is_tensor(v) and v.is_floating_point() and (v.requires_grad or not p.val(cur).requires_grad):
            cur = out
    if done < min(steps, 3):
        return None
    if mode == "error":
        kinds = [k for k in ERRORS if k not in exclude]
        for _ in range(30):
            kind = rng.choice(kinds)
            snap = p.snapshot()
            try:
                line = ERRORS[kind](p, cur)
                exec(line, p.ns)
            except Skip:
                p.rollback(snap)
                continue
            except Exception:
                p.lines.append(line)
                p.tags.add(kind)
                break
            p.rollback(snap)
        else:
            return None
    else:
        try:
            if not finish(p, cur):
                return None
        except Skip:
            if p.mode != "error":
                return None
    return p


def finish(p: Program, cur: str) -> bool:
    """End in a scalar (sum/mean) + backward, or backward with an explicit gradient.

    Variants (each a feature tag): hooks that change gradients, torch.autograd.grad instead of
    backward, backward(inputs=...), and an optimizer-like update under no_grad followed by a
    second backward that accumulates into the leaves' .grad.
    """
    rng = p.rng
    cv = p.val(cur)
    if not (torch.is_tensor(cv) and cv.requires_grad):
        return False
    dangling = [n for n in p.float_vars(grad_only=True) if n not in p.used and n != cur
                and n not in p.leaves]
    retained = None
    non_leaves = [n for n in p.float_vars(grad_only=True) if p.val(n).grad_fn is not None and n != cur]
    if non_leaves and rng.random() < 0.3:
        retained = rng.choice(non_leaves)
    if retained:
        p.stmt(f"{retained}.retain_grad()")
    hooked: set[str] = set()
    if p.feature("finish.hooks") and rng.random() < 0.15:
        p.use("finish.hooks")
        targets = non_leaves + p.leaves
        for target in rng.sample(targets, min(len(targets), rng.choice([1, 1, 2]))):
            change = rng.choice(["g * 2", "g + 1", "None", "g.clamp(-0.5, 0.5)", "-g"])
            p.stmt(f"{target}.register_hook(lambda g: {change})")
            hooked.add(target)
    if not p.feature("finish.hooked_input"):
        non_leaves = [n for n in non_leaves if n not in hooked]
    r = rng.random()
    if r < 0.2 and cv.numel() > 1 and cv.numel() <= MAX_NUMEL:
        values = p.float_values(cv.numel(), -1, 1)
        dtype = "" if cv.dtype == torch.float32 else f", dtype={cv.dtype}"
        seed = f"torch.tensor({literal(values, tuple(cv.shape))}{dtype})"
        p.stmt(f"{cur}.backward({seed})")
        p.retained = retained
        return True
    terms = [f"{cur}.{rng.choice(['sum', 'mean'] if p.mode != 'edge' else ['sum'])}()"]
    for d in dangling[:2]:
        if rng.random() < 0.6:
            terms.append(f"{d}.sum()")
    root = p.emit(" + ".join(terms), (cur,) + tuple(dangling))
    r = rng.random()
    if r < 0.1 and p.feature("finish.autograd_grad") and p.leaves:
        p.use("finish.autograd_grad")
        wrt = rng.sample(p.leaves, min(len(p.leaves), rng.choice([1, 2])))
        kw = rng.choice(["", "", ", retain_graph=True", ", allow_unused=True", ", materialize_grads=True"])
        if non_leaves and rng.random() < 0.3:
            wrt.append(rng.choice(non_leaves))
            if wrt[-1] in hooked:
                p.use("finish.hooked_input")
        if rng.random() < 0.3:
            # a leaf the root does not depend on: None (allow_unused), zeros (materialize) or an error
            wrt.append(p.leaf(p.random_shape(2), "float32", True))
        g = p.assign(f"torch.autograd.grad({root}, [{', '.join(wrt)}]{kw})", (root,))
        for k in range(len(wrt)):
            p.assign(f"{g}[{k}]")
    elif r < 0.2 and p.feature("finish.backward_inputs") and p.leaves:
        p.use("finish.backward_inputs")
        inputs = rng.sample(p.leaves, min(len(p.leaves), rng.choice([1, 2])))
        if non_leaves and rng.random() < 0.4:
            extra = rng.choice(non_leaves)
            inputs.append(extra)
            p.extra_grads.append(extra)
            if extra in hooked:
                p.use("finish.hooked_input")
        lst = inputs[0] if len(inputs) == 1 and rng.random() < 0.3 else f"[{', '.join(inputs)}]"
        p.stmt(rng.choice([f"{root}.backward(inputs={lst})",
                           f"torch.autograd.backward({root}, inputs={lst})"]))
    else:
        if rng.random() < 0.08:
            p.stmt(f"{root}.backward(retain_graph=True)")
        p.stmt(f"{root}.backward()")
        if p.feature("finish.train_step") and rng.random() < 0.1 and p.mode == "normal":
            p.use("finish.train_step")
            leaf = rng.choice(p.leaves)
            need(p.val(leaf).grad is not None and p.val(leaf).dtype != torch.float16)
            p.stmt(rng.choice([f"with torch.no_grad():\n    {leaf}.sub_(0.1 * {leaf}.grad)",
                               f"with torch.no_grad():\n    {leaf} -= 0.1 * {leaf}.grad"]))
            if rng.random() < 0.4:
                p.stmt(rng.choice([f"{leaf}.grad.zero_()", f"{leaf}.grad = None"]))
            again = p.emit(rng.choice([f"({leaf} * {leaf}).sum()", f"{leaf}.sin().mean()"]), (leaf,))
            p.stmt(f"{again}.backward()")
    p.retained = retained
    return True


def robust(p: Program, value) -> bool:
    """The repr survives moving every nonzero value by a few ulps (exact programs always do)."""
    if isinstance(value, tuple):
        return all(robust(p, v) for v in value)
    if not torch.is_tensor(value) or not value.is_floating_point() or value.numel() == 0:
        return True
    if p.mode == "edge":
        return True
    d = value.detach()
    base = repr(d)
    rel, floor = {"float16": (REL_NOISE16, ABS_NOISE16), "float64": (REL_NOISE64, ABS_NOISE64),
                  "float32": (REL_NOISE32, ABS_NOISE32)}[p.precision]
    scale = max(float(d.abs().max()) * rel, floor)
    gen = torch.Generator().manual_seed(0)
    signs = torch.randint(0, 2, d.shape, generator=gen).to(d.dtype) * 2 - 1
    nz = (d != 0).to(d.dtype)
    noise = d.abs() * rel + scale
    for s in (torch.ones_like(d), -torch.ones_like(d), signs):
        if repr(d + s * nz * noise) != base:
            return False
    # a value within noise of an integer may be that integer elsewhere (1.0000 vs 1.)
    near = (d - d.round()).abs() <= noise
    return repr(torch.where(near, d.round(), d)) == base


def record(p: Program, index: int) -> dict:
    source = "\n".join(p.lines) + "\n"
    names = [n for n in p.names]
    printed = [n for n in names if robust(p, p.ns.get(n))]
    grads = list(p.leaves)
    for name in [p.retained] + p.extra_grads:
        if name and name not in grads:
            grads.append(name)
    program = {"id": index, "mode": p.mode, "tags": sorted(p.tags), "source": source, "vars": names,
               "print": printed, "grads": grads if p.mode != "error" else [],
               "precision": p.precision}
    program["expected"] = harness.run(torch, program)
    return program


def grads_ok(program: dict) -> bool:
    """Reject programs whose gradients are not finite or are huge (ill-conditioned)."""
    exp = program["expected"]
    if program["mode"] == "error":
        return exp["error"] is not None
    if exp["error"] is not None:
        return False
    for g in exp["grads"].values():
        if g is None:
            continue
        for v in g["values"]:
            if isinstance(v, str) or abs(v) > 1e4:
                return program["mode"] == "edge"
    return True


def generate(count: int, seed: int, exclude: set[str]) -> list[dict]:
    out = []
    i = 0
    attempt = 0
    while len(out) < count:
        rng = random.Random(f"{seed}:{i}:{attempt}")
        p = build(rng, exclude)
        if p is not None:
            try:
                program = record(p, len(out))
            except RuntimeError:   # e.g. PyTorch refuses to show a view its in-place update broke
                program = None
            if program is not None and grads_ok(program):
                out.append(program)
                i += 1
                attempt = 0
                continue
        attempt += 1
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--exclude", default=",".join(DEFAULT_EXCLUDE))
    ap.add_argument("--out", default=str(HERE / "cases.json"))
    args = ap.parse_args(argv)
    exclude = {t for t in args.exclude.split(",") if t}
    unknown = exclude - set(BUILDERS) - set(ERRORS) - FEATURES
    if unknown:
        ap.error(f"unknown tags: {sorted(unknown)}")
    torch.manual_seed(0)
    programs = generate(args.count, args.seed, exclude)
    doc = {"torch": torch.__version__, "seed": args.seed, "exclude": sorted(exclude),
           "tolerance": harness.TOLERANCE, "programs": programs}
    text = json.dumps(doc, indent=None, separators=(",", ":"))
    Path(args.out).write_text(text + "\n")
    modes = {m: sum(1 for q in programs if q["mode"] == m) for m in ("normal", "edge", "error")}
    print(f"wrote {len(programs)} programs ({modes}) to {args.out}: {len(text) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
