"""Validation, forward evaluation and reverse mode over graphs as data.

Everything is iterative (no recursion), so a 150,000-node chain works. Per-request state lives in
lists indexed by position (leaves first, then nodes); nothing is written into shared node objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from .dtypes import SUPPORTED, is_float
from .errors import (
    Cancelled,
    CycleError,
    EngineError,
    GraphError,
    LimitError,
    ReferenceError_,
    UnknownOpError,
)
from .graph import Graph, Limits, Node, TensorSpec
from .registry import OPS, Op, sum_to

ShouldStop = Callable[[], bool] | None


@dataclass(frozen=True, slots=True)
class Result:
    kind: str                      # "value" or "grad"
    id: int
    array: np.ndarray | None       # None: a requested gradient no root depends on


@dataclass(slots=True)
class Plan:
    """A validated graph with every tensor's spec inferred; nothing allocated yet."""

    graph: Graph
    pos: dict[int, int]                    # id -> position; leaves first, then nodes
    ids: list[int]                         # position -> id
    spec_list: list[TensorSpec]            # position -> spec
    requires_grad: list[bool]              # position -> does a gradient flow here
    ops: list[Op]                          # node index -> op
    inputs: list[tuple[int, ...]]          # node index -> input positions
    n_leaves: int
    reads: list[tuple[tuple[int, ...], bool]]  # node index -> (input positions backward reads,
                                               #                 does it read the output)

    @property
    def specs(self) -> dict[int, TensorSpec]:
        return dict(zip(self.ids, self.spec_list, strict=True))

    def spec(self, id_: int) -> TensorSpec:
        return self.spec_list[self._position(id_)]

    def _position(self, id_: int) -> int:
        try:
            return self.pos[id_]
        except KeyError:
            raise ReferenceError_(f"id {id_} is not a leaf or node of this graph") from None


# ---------------------------------------------------------------------------------------------
# Validation and inference


def infer_node(op_name: str, specs: Sequence[TensorSpec], attrs: Mapping[str, object]) -> TensorSpec:
    """The output spec of one op application; raises the same typed errors as `plan`."""
    op = OPS.get(op_name)
    if op is None:
        raise UnknownOpError(f"unknown op {op_name!r}")
    op.check_arity(len(specs))
    try:
        return op.infer(specs, attrs)
    except EngineError:
        raise
    except (TypeError, ValueError, IndexError, KeyError, OverflowError) as e:
        raise GraphError(f"invalid attributes or inputs: {e}") from None


def plan(graph: Graph, limits: Limits | None = None) -> Plan:
    """Check the whole graph and infer every shape and dtype before anything is allocated."""
    limits = limits or Limits()
    if len(graph.nodes) > limits.max_nodes:
        raise LimitError(f"graph has {len(graph.nodes)} nodes, over the limit of {limits.max_nodes}")
    pos: dict[int, int] = {}
    ids: list[int] = []
    specs: list[TensorSpec] = []
    rg: list[bool] = []
    for leaf in graph.leaves:
        if leaf.id in pos:
            raise ReferenceError_(f"leaf id {leaf.id} is used twice")
        spec = leaf.spec
        if spec.dtype not in SUPPORTED:
            raise GraphError(f"leaf {leaf.id}: unsupported dtype {spec.dtype}")
        if any(s < 0 for s in spec.shape):
            raise GraphError(f"leaf {leaf.id}: negative dimension in shape {spec.shape}")
        _check_elements(spec, limits, f"leaf {leaf.id}")
        if leaf.requires_grad and not is_float(spec.dtype):
            raise GraphError(f"leaf {leaf.id}: only floating point tensors can require grad, "
                             f"got {spec.dtype.name}")
        pos[leaf.id] = len(ids)
        ids.append(leaf.id)
        specs.append(spec)
        rg.append(bool(leaf.requires_grad))
    n_leaves = len(ids)

    ops: list[Op] = []
    inputs: list[tuple[int, ...]] = []
    reads: list[tuple[tuple[int, ...], bool]] = []
    reads_of: dict[tuple[str, int], tuple[tuple[int, ...], bool]] = {}
    max_elements = limits.max_elements
    # NOTE: the hot loop of every request; kept flat (no helper calls on the common path).
    for index, node in enumerate(graph.nodes):
        op = OPS.get(node.op)
        if op is None:
            raise UnknownOpError(f"unknown op {node.op!r}", node=node.id, op=node.op)
        if node.id in pos:
            raise ReferenceError_(f"id {node.id} is used twice", node=node.id, op=node.op)
        try:
            lo, hi = op.arity
            n = len(node.inputs)
            if n < lo or (hi is not None and n > hi):
                op.check_arity(n)
            ins = tuple([pos[i] if i in pos else _input_position(pos, graph.nodes, index, i)
                         for i in node.inputs])
            spec = op.infer([specs[p] for p in ins], node.attrs)
            if math.prod(spec.shape) > max_elements:
                _check_elements(spec, limits, "output")
        except EngineError as e:
            raise e.at(node.id, node.op)
        except (TypeError, ValueError, IndexError, KeyError, OverflowError) as e:
            raise GraphError(f"invalid attributes or inputs: {e}", node=node.id, op=node.op) from None
        pos[node.id] = len(ids)
        ids.append(node.id)
        specs.append(spec)
        grad = False
        if op.backward is not None and spec.dtype.kind == "f":
            for p in ins:
                if rg[p]:
                    grad = True
                    break
        rg.append(grad)
        ops.append(op)
        inputs.append(ins)
        key = (node.op, n)
        read = reads_of.get(key)
        if read is None:
            read = reads_of[key] = op.reads(n)
        read_ins, read_out = read
        reads.append((tuple([ins[j] for j in read_ins]), read_out))
    return Plan(graph, pos, ids, specs, rg, ops, inputs, n_leaves, reads)


def _check_elements(spec: TensorSpec, limits: Limits, what: str) -> None:
    if spec.numel > limits.max_elements:
        raise LimitError(f"{what} of shape {spec.shape} has {spec.numel} elements, "
                         f"over the limit of {limits.max_elements}")


def _input_position(pos: dict[int, int], nodes: Sequence[Node], index: int, input_id: int) -> int:
    p = pos.get(input_id)
    if p is not None:
        return p
    later = {n.id: k for k, n in enumerate(nodes) if k >= index}
    if input_id not in later:
        raise ReferenceError_(f"input {input_id} is not a leaf or an earlier node")
    if _reaches(nodes, later, later[input_id], nodes[index].id):
        raise CycleError(f"input {input_id} depends on this node: the graph has a cycle")
    raise ReferenceError_(f"input {input_id} refers forward to a later node; "
                          "nodes must be in topological order")


def _reaches(nodes: Sequence[Node], index_of: dict[int, int], start: int, target: int) -> bool:
    """Does node `nodes[start]` depend, through inputs, on id `target`? (iterative DFS)"""
    stack, seen = [start], set()
    while stack:
        k = stack.pop()
        if k in seen:
            continue
        seen.add(k)
        for i in nodes[k].inputs:
            if i == target:
                return True
            if i in index_of:
                stack.append(index_of[i])
    return False


# ---------------------------------------------------------------------------------------------
# Execution


def evaluate(plan: Plan, values: Mapping[int, np.ndarray], outputs: Sequence[int],
             should_stop: ShouldStop = None) -> dict[int, np.ndarray]:
    """Forward values of `outputs`, computing only their ancestors."""
    out_pos = [plan._position(i) for i in outputs]
    needed = _ancestors(plan, out_pos)
    uses = _forward_uses(plan, needed)
    for p in out_pos:
        uses[p] += 1
    vals = _forward(plan, values, needed, uses, should_stop)
    leaf_arrays = {id(a) for a in values.values()}
    return {i: _owned(vals[p], leaf_arrays) for i, p in zip(outputs, out_pos, strict=True)}


def backward(plan: Plan, values: Mapping[int, np.ndarray], roots: Sequence[int],
             seeds: Mapping[int, np.ndarray], grads: Sequence[int],
             should_stop: ShouldStop = None) -> Iterator[Result]:
    """Reverse mode from `roots`: yields each root's value, then each requested gradient as soon
    as no later node can add to it."""
    n_leaves, rg, specs = plan.n_leaves, plan.requires_grad, plan.spec_list
    root_pos = [plan._position(i) for i in roots]
    for i, p in zip(roots, root_pos, strict=True):
        if not rg[p]:
            raise GraphError(f"root {i} does not require grad and has no gradient function")
        seed = seeds.get(i)
        if seed is None or np.shape(seed) != specs[p].shape:
            raise GraphError(f"seed for root {i} has shape "
                             f"{None if seed is None else np.shape(seed)}, "
                             f"expected {specs[p].shape}")
    wanted = {plan._position(i): i for i in grads}
    steps, leads, needed = _backward_steps(plan, root_pos, wanted)

    # What forward must keep for backward, and how many gradient contributions each position
    # still awaits (a wanted leaf's gradient is final when its count reaches zero).
    uses = _forward_uses(plan, needed)
    pending = [0] * len(specs)
    reads = plan.reads
    inputs = plan.inputs
    for k in steps:
        ins = inputs[k]
        read_ins, read_out = reads[k]
        if read_out:
            uses[n_leaves + k] += 1
        for i in read_ins:
            uses[i] += 1
        for i in ins:
            if leads[i]:
                pending[i] += 1
    for p in root_pos:
        uses[p] += 1

    vals = _forward(plan, values, needed, uses, should_stop)
    for i, p in zip(roots, root_pos, strict=True):
        yield Result("value", i, _owned(vals[p], {id(a) for a in values.values()}))
        _release(vals, uses, p)

    acc: list = [None] * len(specs)
    for i, p in zip(roots, root_pos, strict=True):
        seed = np.array(seeds[i], dtype=specs[p].dtype)   # a copy: results never alias inputs
        acc[p] = seed if acc[p] is None else acc[p] + seed

    given: dict[int, np.ndarray] = {}
    reachable = {p for p in wanted if leads[p] and (needed[p] or p in root_pos)}
    for p, i in wanted.items():
        if p not in reachable:
            yield Result("grad", i, None)
        elif p < n_leaves and pending[p] == 0:
            yield _final(i, acc[p], specs[p], given)

    # NOTE: the backward hot loop, kept flat. Results are collected in `ready` and yielded between
    # errstate blocks, so the caller never runs inside our floating-point error settings.
    ops, nodes, reads, inputs = plan.ops, plan.graph.nodes, plan.reads, plan.inputs
    standins: dict[int, np.ndarray] = {}
    summed: set[int] = set()   # positions whose accumulated gradient is an array made here
    ready: list[Result] = []
    position = len(steps)
    while position:
        with np.errstate(all="ignore"):
            while position and not ready:
                position -= 1
                k = steps[position]
                if should_stop is not None and should_stop():
                    raise Cancelled("cancelled")
                p = n_leaves + k
                g = acc[p]
                if g is not None and type(g) is not np.ndarray:
                    # NumPy reduces and adds 0-d arrays to scalars; rules may write into copies of g
                    g = np.asarray(g)
                acc[p] = None
                if p in wanted:  # a copy: backward keeps using g after the caller has it
                    ready.append(_final(wanted[p], None if g is None else g.copy(), specs[p],
                                        given))
                ins = inputs[k]
                read_ins, read_out = reads[k]
                if g is not None:
                    xs = [vals[i] if i in read_ins else _standin(specs[i], standins) for i in ins]
                    if len(xs) == 2 and xs[0] is xs[1] and ins[0] != ins[1]:
                        # Two ids sharing one array (a leaf and its detached value): rules read
                        # `a is b` as "x op x" (one node), so hand them distinct objects.
                        xs[1] = xs[1].view()
                    out = vals[p] if read_out else _standin(specs[p], standins)
                    node = nodes[k]
                    op = ops[k]
                    try:
                        if op.masks_inputs:
                            in_grads = op.backward(g, xs, out, node.attrs,
                                                   needs_input_grad=[leads[i] for i in ins])
                        else:
                            in_grads = op.backward(g, xs, out, node.attrs)
                    except EngineError as e:
                        raise e.at(node.id, node.op)
                    except Exception as e:  # a rule bug or unexpected data: still name the node
                        raise EngineError(f"backward failed: {type(e).__name__}: {e}",
                                          node=node.id, op=node.op) from e
                    for i, gi in zip(ins, in_grads, strict=False):
                        if gi is None or not leads[i]:
                            continue
                        spec = specs[i]
                        if type(gi) is not np.ndarray:
                            gi = np.asarray(gi)
                        if gi.shape != spec.shape:
                            gi = sum_to(gi, spec.shape)
                        if gi.dtype != spec.dtype:
                            gi = gi.astype(spec.dtype)
                        prev = acc[i]
                        if prev is None:
                            acc[i] = gi
                        elif i in summed and type(prev) is np.ndarray:
                            np.add(prev, gi, out=prev)   # an array this loop made: add in place
                        else:
                            acc[i] = prev + gi
                            summed.add(i)
                for i in ins:
                    if leads[i]:
                        pending[i] -= 1
                        if pending[i] == 0 and i < n_leaves and i in wanted:
                            ready.append(_final(wanted[i], acc[i], specs[i], given))
                            acc[i] = None
                if read_out:
                    _release(vals, uses, p)
                for i in read_ins:
                    _release(vals, uses, i)
            # Nothing of this step may stay alive while the caller holds the results.
            g = xs = out = in_grads = gi = prev = None
        yield from ready
        ready.clear()


def _backward_steps(plan: Plan, root_pos: Sequence[int], wanted: Mapping[int, int]):
    """The node indices backward visits (ancestors of a root on a path to a wanted gradient), in
    topological order, plus the per-position `leads` and `needed` flags."""
    n_leaves, rg, inputs = plan.n_leaves, plan.requires_grad, plan.inputs
    leads = [rg[p] and p in wanted for p in range(n_leaves)]
    for k, ins in enumerate(inputs):
        p = n_leaves + k
        lead = False
        if rg[p]:
            if p in wanted:
                lead = True
            else:
                for i in ins:
                    if leads[i]:
                        lead = True
                        break
        leads.append(lead)
    needed = _ancestors(plan, root_pos)
    steps = [k for k in range(len(inputs)) if needed[n_leaves + k] and leads[n_leaves + k]]
    return steps, leads, needed


def _final(id_: int, g: np.ndarray | None, spec: TensorSpec,
           given: dict[int, np.ndarray]) -> Result:
    """A finished gradient as an array the caller owns: C-contiguous, writeable, and shared with
    no other result (rules may pass one array to several inputs) and no forward value."""
    if g is None:  # reachable, but every contribution was None: a zero gradient
        return Result("grad", id_, np.zeros(spec.shape, spec.dtype))
    if (not g.flags.c_contiguous or not g.flags.writeable or g.base is not None
            or id(g) in given):
        g = np.array(g, order="C")
    given[id(g)] = g
    return Result("grad", id_, g)


def _owned(v: np.ndarray, leaf_arrays: set[int]) -> np.ndarray:
    """A C-contiguous array that is neither a leaf value nor a view of one or of another result."""
    if v.base is not None or not v.flags.c_contiguous or id(v) in leaf_arrays:
        return np.array(v, order="C")
    return v


_ZERO = np.zeros(8, np.uint8)


def _standin(spec: TensorSpec, cache: dict[int, np.ndarray]) -> np.ndarray:
    """Zero-strided placeholder with the right shape and dtype, for values backward does not read.
    Cached per spec object (inference shares spec objects between same-shaped tensors)."""
    standin = cache.get(id(spec))
    if standin is None:
        standin = np.ndarray(spec.shape, spec.dtype, buffer=_ZERO, strides=(0,) * len(spec.shape))
        standin.flags.writeable = False
        cache[id(spec)] = standin
    return standin


def _release(vals: list, uses: list[int], p: int) -> None:
    uses[p] -= 1
    if uses[p] == 0:
        vals[p] = None


def _ancestors(plan: Plan, targets: Sequence[int]) -> list[bool]:
    needed = [False] * len(plan.spec_list)
    for p in targets:
        needed[p] = True
    n = plan.n_leaves
    inputs = plan.inputs
    for k in range(len(inputs) - 1, -1, -1):
        if needed[n + k]:
            for i in inputs[k]:
                needed[i] = True
    return needed


def _forward_uses(plan: Plan, needed: list[bool]) -> list[int]:
    uses = [0] * len(plan.spec_list)
    n = plan.n_leaves
    for k, ins in enumerate(plan.inputs):
        if needed[n + k]:
            for i in ins:
                uses[i] += 1
    return uses


def _forward(plan: Plan, values: Mapping[int, np.ndarray], needed: list[bool], uses: list[int],
             should_stop: ShouldStop) -> list:
    n = plan.n_leaves
    vals: list = [None] * len(plan.spec_list)
    for p in range(n):
        if needed[p]:
            vals[p] = _leaf_value(plan, values, p)
    nodes, ops, inputs, specs = plan.graph.nodes, plan.ops, plan.inputs, plan.spec_list
    with np.errstate(all="ignore"):
        for k in range(len(ops)):
            p = n + k
            if not needed[p]:
                continue
            if should_stop is not None and should_stop():
                raise Cancelled("cancelled")
            ins = inputs[k]
            node = nodes[k]
            try:
                out = ops[k].forward([vals[i] for i in ins], node.attrs)
            except EngineError as e:
                raise e.at(node.id, node.op)
            except Exception as e:  # a rule bug or unexpected data: still name the node
                raise EngineError(f"forward failed: {type(e).__name__}: {e}",
                                  node=node.id, op=node.op) from e
            spec = specs[p]
            if type(out) is not np.ndarray:
                out = np.asarray(out)
            if out.dtype != spec.dtype:
                out = out.astype(spec.dtype)
            if out.shape != spec.shape:
                raise EngineError(f"internal: forward produced shape {out.shape}, "
                                  f"inferred {spec.shape}", node=node.id, op=node.op)
            vals[p] = out
            for i in ins:
                uses[i] -= 1
                if uses[i] == 0:
                    vals[i] = None
    return vals


def _leaf_value(plan: Plan, values: Mapping[int, np.ndarray], p: int) -> np.ndarray:
    id_, spec = plan.ids[p], plan.spec_list[p]
    try:
        v = values[id_]
    except KeyError:
        raise ReferenceError_(f"leaf {id_} has no value") from None
    if v.shape != spec.shape or v.dtype != spec.dtype:
        raise GraphError(f"leaf {id_}: value is {v.dtype.name}{list(v.shape)}, "
                         f"declared {spec.dtype.name}{list(spec.shape)}")
    return v
