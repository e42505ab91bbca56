"""Reverse mode on the client: grad_fn nodes, saved-tensor checks, and backward as requests.

The client keeps PyTorch's bookkeeping (grad_fn objects, leaves, hooks, retain_grad, version
counters, freed graphs); the executor computes. `execute` turns the autograd graph reachable from
the roots into one engine graph: each grad_fn becomes a node, each use of a leaf that requires
grad becomes an engine leaf that gradients flow into, and every other input becomes a constant
(its known value, or the nodes computing it). Where Python must run in the middle of the pass
(a custom Function's backward, a hook on a non-leaf that changes its gradient) the pass is cut:
one more request, seeded with the gradient leaving the cut, carries it on.
"""

from __future__ import annotations

import re
import weakref
from typing import TYPE_CHECKING, Sequence

import numpy as np

from . import _executor, _graph
from ._size import Size

if TYPE_CHECKING:
    from ._tensor import Tensor

ERR_BACKWARD_TWICE = (
    "Trying to backward through the graph a second time (or directly access saved tensors after "
    "they have already been freed). Saved intermediate values of the graph are freed when you call "
    ".backward() or autograd.grad(). Specify retain_graph=True if you need to backward through the "
    "graph a second time or if you need to access saved tensors after calling backward.")


# ---------------------------------------------------------------------------------------------
# grad_fn nodes


class SavedRef:
    """One tensor a node saved for backward: which version of it the gradient needs."""

    __slots__ = ("counter", "version", "tensor", "role", "producer", "index")

    def __init__(self, tensor: "Tensor", role: str, producer: str | None = None,
                 index: int | None = None) -> None:
        self.counter = tensor._vc
        self.version = tensor._vc.value
        self.tensor = weakref.ref(tensor)
        self.role = role
        self.producer = producer       # for a saved output: the node that produced (and saved) it
        self.index = index             # for a saved input: its position among the op's inputs

    def check(self) -> None:
        current = self.counter.value
        if current == self.version:
            return
        t = self.tensor()
        # A saved output names the op that produced it; a saved input names its current grad_fn.
        fn_name = self.producer or (t._grad_fn.name() if t is not None and t._grad_fn is not None else None)
        # torch prints the node's name without "Backward" (and a 0 overload): Mul, Clamp1
        where = f", which is output 0 of {re.sub(r'Backward(0$)?', '', fn_name)}," if fn_name else ""
        spec = t._expr.spec if t is not None else None
        desc = (f"[torch.{_legacy_name(spec.dtype)} [{', '.join(map(str, spec.shape))}]]"
                if spec is not None else "[tensor]")
        raise RuntimeError(
            "one of the variables needed for gradient computation has been modified by an inplace "
            f"operation: {desc}{where} is at version {current}; expected version {self.version} "
            "instead. Hint: enable anomaly detection to find the operation that failed to compute its "
            "gradient, with torch.autograd.set_detect_anomaly(True, check_nan=False).")


def _legacy_name(np_dtype) -> str:
    from ._dtypes import from_numpy_dtype
    return from_numpy_dtype(np_dtype)._legacy


class Node:
    """Base of every grad_fn class; instances are named per op as PyTorch names them."""

    __slots__ = ("_op", "_attrs", "_inputs", "_edges", "_out", "_refs", "_saves", "_freed",
                 "_tensor", "_metadata", "__weakref__")
    _is_function = False           # a custom autograd.Function: backward runs on the client

    def __init__(self, op: str | None, attrs, inputs: tuple, edges: tuple, out) -> None:
        self._op = op
        self._attrs = attrs
        self._inputs = inputs          # the input Exprs, as they were when the op ran
        self._edges = edges            # per input: grad_fn, AccumulateGrad, or None
        self._out = out
        self._refs: tuple[SavedRef, ...] = ()  # saved tensors, for the version check
        self._saves = False
        self._freed = False
        self._tensor = None            # weakref to the tensor this node produced
        self._metadata = None

    def name(self) -> str:
        name = type(self).__name__
        return f"torch::autograd::{name}" if name in _CPP_NODES else name

    def _output_tensors(self) -> tuple:
        t = self._tensor() if self._tensor is not None else None
        return (t,) if t is not None else ()

    @property
    def next_functions(self) -> tuple:
        edges = tuple((e, e._output_index(x) if e is not None and e._is_function else 0)
                      for e, x in zip(self._edges, self._inputs, strict=True))
        if self._op in _WRAPPED_SCALAR_OPS and "other" in self._attrs:
            # torch wraps the Python scalar of `a * 2` in a tensor: an input with no gradient.
            edges += ((None, 0),)
        return edges

    @property
    def metadata(self) -> dict:
        if self._metadata is None:
            self._metadata = {}
        return self._metadata

    def _free(self) -> None:
        """Backward without retain_graph is done with this node: its saved tensors are gone."""
        self._freed = True

    def _check_saved(self) -> None:
        if self._freed and self._saves:
            raise RuntimeError(ERR_BACKWARD_TWICE)
        for s in self._refs:
            s.check()

    def _get_saved(self, index: int):
        from ._tensor import Tensor
        if self._freed:
            raise RuntimeError(ERR_BACKWARD_TWICE)
        if index < len(self._inputs):
            return Tensor._from_expr(self._inputs[index])
        return self._attrs["other"]

    def register_hook(self, fn):
        raise NotImplementedError("gradserve: hooks on grad_fn nodes are not supported; "
                                  "use Tensor.register_hook")

    register_prehook = register_hook

    def __call__(self, *args):
        raise NotImplementedError("gradserve: grad_fn nodes cannot be called directly; "
                                  "gradients are computed by the executor")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} object at {hex(id(self))}>"

    __str__ = __repr__


class AccumulateGrad(Node):
    """The node standing for a leaf that requires grad; `.variable` is that leaf."""

    __slots__ = ("variable",)

    def __init__(self, variable: "Tensor") -> None:
        super().__init__(None, {}, (), (), None)
        self.variable = variable


class NotImplementedNode(Node):
    """torch's `NotImplemented` grad_fn: an op with no derivative; backward through it raises."""

    __slots__ = ("_aten",)         # the aten op torch names in the error

    def _check_saved(self) -> None:
        raise RuntimeError(f"derivative for aten::{getattr(self, '_aten', self._op)} is not implemented")


_WRAPPED_SCALAR_OPS = {"add", "sub", "mul", "div"}
# Nodes torch writes by hand in C++: name() has the namespace, the Python class name has not.
_CPP_NODES = {"AccumulateGrad", "CopySlices", "CopyBackwards", "NotImplemented"}
_classes: dict[tuple[str, int], type] = {("AccumulateGrad", 0): AccumulateGrad}
for _n in range(3):
    _classes["NotImplemented", _n] = type("NotImplemented", (NotImplementedNode,), {"__slots__": ()})


def _saved_property(index: int) -> property:
    return property(lambda self: self._get_saved(index),
                    doc="A saved input (raises once the graph has been freed by backward).")


def node_class(name: str, saved_inputs: int = 0) -> type:
    """The grad_fn class called `name`; nodes whose op saves its inputs expose `_saved_self`
    (and `_saved_other`), as PyTorch's do."""
    saved_inputs = min(saved_inputs, 2)
    cls = _classes.get((name, saved_inputs))
    if cls is None:
        ns: dict = {"__slots__": ()}
        if saved_inputs:
            ns["_saved_self"] = _saved_property(0)
        if saved_inputs > 1:
            ns["_saved_other"] = _saved_property(1)
        cls = _classes[name, saved_inputs] = type(name, (Node,), ns)
    return cls


# ---------------------------------------------------------------------------------------------
# Backward


def _traverse(starts: Sequence[Node | None]) -> list[Node]:
    """Every grad_fn node reachable from `starts`, inputs before the nodes using them
    (iterative post-order, so deep chains do not recurse)."""
    order: list[Node] = []
    seen: set[int] = set()
    stack: list[tuple[Node, bool]] = [(n, False) for n in starts
                                      if n is not None and not isinstance(n, AccumulateGrad)]
    while stack:
        n, expanded = stack.pop()
        if expanded:
            order.append(n)
            continue
        if id(n) in seen:
            continue
        seen.add(id(n))
        stack.append((n, True))
        for e in n._edges:
            if e is not None and not isinstance(e, AccumulateGrad) and id(e) not in seen:
                stack.append((e, False))
    return order


def make_seeds(roots: Sequence["Tensor"], grads: Sequence) -> list:
    """`torch.autograd._make_grads`: check given gradients, create implicit ones for scalars."""
    from ._tensor import Tensor
    seeds = []
    for i, (out, g) in enumerate(zip(roots, grads, strict=True)):
        if isinstance(g, Tensor):
            if g.shape != out.shape:
                raise RuntimeError(f"Mismatch in shape: grad_output[{i}] has a shape of {g.shape} and "
                                   f"output[{i}] has a shape of {out.shape}.")
            seeds.append(g)
        elif g is None:
            if out.requires_grad:
                if out.numel() != 1:
                    raise RuntimeError("grad can be implicitly created only for scalar outputs")
                if not out.dtype.is_floating_point:
                    raise RuntimeError("grad can be implicitly created only for real scalar outputs "
                                       f"but got {out.dtype}")
            seeds.append(None)
        else:
            raise TypeError("gradients can be either Tensors or None, but got "
                            f"{type(g).__name__}")
    for i, out in enumerate(roots):
        if not out.requires_grad:
            raise RuntimeError(f"element {i} of tensors does not require grad and does not have a grad_fn")
    return seeds


class _Plan:
    """One backward's engine graph and where each gradient shows up in it.

    A Function node is a cut: each of its outputs is an engine leaf that requires grad (so the
    gradient arriving there can be requested), and the gradient leaving it is a later request
    seeded at its inputs.
    """

    def __init__(self) -> None:
        self.builder = _graph.GraphBuilder()
        self.node_ids: dict[int, int] = {}                 # id(grad_fn) -> engine id
        self.leaf_ids: dict[int, list[int]] = {}           # id(AccumulateGrad) -> engine leaf ids
        self.fn_outputs: dict[int, list[int | None]] = {}  # id(Function node) -> output leaf ids
        self.fn_inputs: dict[int, list[int | None]] = {}   # id(Function node) -> input engine ids
        self.root_ids: list[int] = []
        self._seen_leaf: dict[tuple[int, int], int] = {}

    def leaf_input(self, acc: AccumulateGrad, expr) -> int:
        key = (id(acc), expr.id)
        i = self._seen_leaf.get(key)
        if i is None:
            i = self._seen_leaf[key] = self.builder.add_leaf(expr.value, requires_grad=True)
            self.leaf_ids.setdefault(id(acc), []).append(i)
        return i

    def source(self, edge: Node, expr) -> int:
        """The engine id whose gradient is the gradient flowing into `edge` for value `expr`."""
        if isinstance(edge, AccumulateGrad):
            return self.leaf_input(edge, expr)
        if edge._is_function:
            return self.fn_outputs[id(edge)][edge._output_index(expr)]
        return self.node_ids[id(edge)]

    def slot(self, t: "Tensor") -> int | None:
        """The engine id carrying the gradient of non-leaf `t` (None if not in this graph)."""
        fn = t._grad_fn
        if fn._is_function:
            outs = self.fn_outputs.get(id(fn))
            return None if outs is None else outs[fn._output_index(t._expr)]
        return self.node_ids.get(id(fn))


def _build(nodes: list[Node], roots: Sequence["Tensor"]) -> _Plan:
    plan = _Plan()
    b = plan.builder
    for n in nodes:
        if n._is_function:
            plan.fn_outputs[id(n)] = [None if x is None else b.add_leaf(x.value, requires_grad=True)
                                      for x in n._outputs]
            plan.fn_inputs[id(n)] = [None if e is None else plan.source(e, x)
                                     for e, x in zip(n._edges, n._inputs, strict=True)]
            continue
        ins = [b.constant(x) if e is None else plan.source(e, x)
               for e, x in zip(n._edges, n._inputs, strict=True)]
        plan.node_ids[id(n)] = b.add_node(n._op, ins, n._attrs)
    for r in roots:
        fn = r._grad_fn
        plan.root_ids.append(plan.leaf_input(r._accumulate_grad(), r._expr) if fn is None
                             else plan.source(fn, r._expr))
    return plan


def _leads(nodes: list[Node], wanted_leaves: dict, watched_fns: set[int]) -> dict[int, bool]:
    """Per node id: whether a gradient leaving the node reaches a wanted leaf or a watched node.
    (`nodes` lists inputs before the nodes using them.)"""
    leads: dict[int, bool] = {}
    reaches: dict[int, bool] = {}          # leads, or is itself watched
    for n in nodes:
        below = any(id(e) in wanted_leaves if isinstance(e, AccumulateGrad) else reaches[id(e)]
                    for e in n._edges if e is not None)
        leads[id(n)] = below
        reaches[id(n)] = below or id(n) in watched_fns
    return leads


def _seed_arrays(root_ids: list[int], roots: Sequence["Tensor"], seeds: Sequence) -> dict[int, np.ndarray]:
    """The gradient each root starts with (ones for an implicit seed); a root listed twice gets
    the sum of its seeds."""
    arrays: dict[int, np.ndarray] = {}
    for rid, r, s in zip(root_ids, roots, seeds, strict=True):
        spec = r._expr.spec
        arr = (np.ones(spec.shape, spec.dtype) if s is None
               else np.asarray(_graph.value(s._expr), dtype=spec.dtype))
        arrays[rid] = arr if rid not in arrays else arrays[rid] + arr
    return arrays


def execute(roots: Sequence["Tensor"], seeds: Sequence, targets: Sequence["Tensor"] | None, *,
            accumulate: bool, retain_graph: bool, create_graph: bool) -> list[np.ndarray | None]:
    """Run backward from `roots`: one request, plus one per cut that changes or creates gradients.

    With `accumulate` (Tensor.backward), gradients go into `.grad` of the leaves (only `targets`
    if given) and of tensors that retain their grad; otherwise (autograd.grad) the gradients of
    `targets` are returned.

    The first request computes every gradient the engine can reach from the roots. The cuts are
    then visited outputs first: a custom Function runs its Python backward on the gradient that
    reached its outputs and a request seeded at its inputs carries the result on; a hook on a
    non-leaf that changes its gradient sends the change on from there (by linearity). Each
    follow-up adds into the gradients already received, so a cut sees its final gradient once
    every cut above it has been visited.
    """
    from ._tensor import Tensor
    if create_graph:
        raise NotImplementedError(
            "gradserve: create_graph=True (higher-order gradients, and gradients with a grad_fn) "
            "is not supported yet; the service computes first-order gradients only")
    starts = [r._grad_fn if r._grad_fn is not None else r._accumulate_grad() for r in roots]
    nodes = _traverse(starts)

    leaves: dict[int, AccumulateGrad] = {}
    for n in nodes:
        for e in n._edges:
            if isinstance(e, AccumulateGrad):
                leaves[id(e)] = e
    for s in starts:
        if isinstance(s, AccumulateGrad):
            leaves[id(s)] = s
    produced: list[Tensor] = []            # live non-leaf tensors whose grad_fn is in the graph
    for n in nodes:
        for t in n._output_tensors():
            if t is not None and t._grad_fn is n:
                produced.append(t)

    # Non-leaf tensors whose gradient is reported back: targets, retained grads and hooks.
    if targets is not None:
        wanted_leaves = {}
        for t in targets:
            if t._grad_fn is None:
                acc = t._accumulate_grad()
                wanted_leaves[id(acc)] = acc
        watched = [t for t in targets if t._grad_fn is not None]
    else:
        wanted_leaves = leaves
        watched = []
    retained = [t for t in produced if t._retains_grad]
    if targets is None:
        runs = nodes
    else:
        # With inputs given, PyTorch runs only the nodes on a path to them: only those check their
        # saved tensors, and a tensor's retained grad is filled when it is an input or its grad_fn
        # leads to one (also in autograd.grad).
        target_fns = {id(t._grad_fn) for t in watched}
        leads = _leads(nodes, wanted_leaves, target_fns)
        runs = [n for n in nodes if leads[id(n)]]
        retained = [t for t in retained if id(t._grad_fn) in target_fns or leads[id(t._grad_fn)]]
    for n in reversed(runs):     # in PyTorch's execution order: the node nearest the root fails first
        n._check_saved()
    targeted = list(watched)
    watched += retained
    hooked = [t for t in produced if t._hooks]
    watched += hooked
    # The Function nodes whose backward must run.
    leads = _leads(nodes, wanted_leaves, {id(t._grad_fn) for t in watched})
    needed = {id(n) for n in nodes if n._is_function and leads[id(n)]}

    # Values every request needs before it can be sent: leaves whose value is still lazy (e.g.
    # `requires_grad_()` on a computed tensor), Function outputs (leaves of the request) and seeds.
    pending = [x for n in nodes for e, x in zip(n._edges, n._inputs, strict=True)
               if isinstance(e, AccumulateGrad)]
    pending += [r._expr for r, s in zip(roots, starts, strict=True) if isinstance(s, AccumulateGrad)]
    pending += [s._expr for s in seeds if isinstance(s, Tensor)]
    pending += [x for n in nodes if n._is_function for x in n._outputs if x is not None]
    _graph.materialize(pending)

    plan = _build(nodes, roots)
    seed_arrays = _seed_arrays(plan.root_ids, roots, seeds)
    grads_wanted = [i for k in wanted_leaves for i in plan.leaf_ids.get(k, [])]
    grads_wanted += [i for t in watched if (i := plan.slot(t)) is not None]
    grads_wanted += [i for n in nodes if id(n) in needed for i in plan.fn_outputs[id(n)]
                     if i is not None]
    grads_wanted = list(dict.fromkeys(grads_wanted))

    executor = _executor.current()
    graph = plan.builder.graph()
    got: dict[int, np.ndarray] = {}

    def request(seeds: dict[int, np.ndarray], wanted: list[int]) -> None:
        for res in executor.backward(graph, plan.builder.values, list(seeds), seeds, wanted):
            if res.kind == "grad" and res.array is not None:
                old = got.get(res.id)
                got[res.id] = res.array if old is None else old + res.array

    root_exprs = {rid: r._expr for rid, r in zip(plan.root_ids, roots, strict=True)}
    for res in executor.backward(graph, plan.builder.values, list(seed_arrays), seed_arrays,
                                 grads_wanted):
        if res.kind == "value":
            e = root_exprs.get(res.id)
            if e is not None and e.value is None and res.array is not None:
                e.set_value(res.array)
        elif res.array is not None:
            got[res.id] = res.array

    hooked_by_fn = {id(t._grad_fn): t for t in hooked if not t._grad_fn._is_function}
    for n in reversed(nodes):
        if n._is_function:
            out_ids = plan.fn_outputs[id(n)]
            grads = []
            for k, i in enumerate(out_ids):
                g = None if i is None else got.get(i)
                t = n._output_tensor(k)
                if g is not None and t is not None and t._hooks:
                    g = got[i] = _run_hooks(t, g)
                grads.append(g)
            if id(n) not in needed:
                continue
            follow: dict[int, np.ndarray] = {}
            for i, g in zip(plan.fn_inputs[id(n)], n._run_backward(grads), strict=True):
                if i is not None and g is not None:
                    follow[i] = g if i not in follow else follow[i] + g
            if follow:
                request(follow, grads_wanted)
        elif id(n) in hooked_by_fn:
            nid = plan.node_ids[id(n)]
            g = got.get(nid)
            if g is None:
                continue
            new = _run_hooks(hooked_by_fn[id(n)], g)
            if new is not g:
                got[nid] = new
                request({nid: new - g}, [i for i in grads_wanted if i != nid])

    def slot_grad(t: "Tensor") -> np.ndarray | None:
        i = plan.slot(t)
        return None if i is None else got.get(i)

    def leaf_grad(acc_key: int) -> np.ndarray | None:
        """The sum over every use of the leaf (each use is its own engine leaf)."""
        parts = [g for i in plan.leaf_ids.get(acc_key, []) if (g := got.get(i)) is not None]
        return sum(parts[1:], parts[0]) if parts else None

    if not retain_graph:
        for n in nodes:
            n._free()

    if accumulate:
        for k, acc in wanted_leaves.items():
            g = leaf_grad(k)
            if g is None:
                continue
            v = acc.variable
            if v._hooks:
                g = _run_hooks(v, g)
            _accumulate(v, g)
            if v._post_hooks:
                _run_post_hooks(v)
        for t in dict.fromkeys(targeted + retained):
            g = slot_grad(t)
            if g is not None:
                _accumulate(t, g)
        return []

    for t in dict.fromkeys(retained):
        g = slot_grad(t)
        if g is not None:
            _accumulate(t, g)
    out: list[np.ndarray | None] = []
    for t in targets:
        if t._grad_fn is None:
            g = leaf_grad(id(t._accumulate_grad()))
            if g is not None and t._hooks:
                g = _run_hooks(t, g)
        else:
            g = slot_grad(t)
        out.append(g)
    return out


def _run_post_hooks(t: "Tensor") -> None:
    for hook in list(t._post_hooks.values()):
        r = hook(t)
        if r is not None:
            raise TypeError(f"expected Variable, but hook returned '{type(r).__name__}'")


def _run_hooks(t: "Tensor", g: np.ndarray) -> np.ndarray:
    from ._tensor import Tensor
    for hook in list(t._hooks.values()):
        r = hook(Tensor._from_array(g))
        if r is not None:
            if not isinstance(r, Tensor):
                raise TypeError(f"hook returned an object of type {type(r).__name__}, expected a Tensor")
            if tuple(r.shape) != tuple(g.shape):
                raise RuntimeError(f"hook 'hook' has changed the size of value: expected {Size(g.shape)}"
                                   f" but got {r.shape}")
            g = np.asarray(_graph.value(r._expr), dtype=g.dtype)
    return g


def _accumulate(t: "Tensor", g: np.ndarray) -> None:
    """`.grad` accumulation: the first gradient is stored, later ones are added in place."""
    from ._tensor import Tensor
    if t._grad is None:
        t._grad = Tensor._from_array(np.array(g, copy=True))
        return
    current = _graph.value(t._grad._expr)
    if current.flags.writeable and current.dtype == g.dtype and current.shape == g.shape:
        np.add(current, g, out=current)
        t._grad._set_value_expr(_graph.leaf(current))
    else:
        t._grad._set_value_expr(_graph.leaf(np.asarray(current + g)))
    t._grad._vc.value += 1


__all__ = ["AccumulateGrad", "ERR_BACKWARD_TWICE", "Node", "execute", "make_seeds", "node_class",
           "_executor"]
