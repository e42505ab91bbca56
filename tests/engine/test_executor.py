"""The executor: accumulation, requires-grad paths, retained grads, streaming, memory, depth."""

from __future__ import annotations

import gc
import tracemalloc
import weakref

import numpy as np
import pytest

from gradserve.engine import Cancelled, Graph, Leaf, Node, backward, evaluate, plan

F64 = np.dtype(np.float64)
F32 = np.dtype(np.float32)


def leaf(i, shape=(2,), rg=True, dtype=F64):
    return Leaf(i, shape, dtype, rg)


def run(graph, values, roots, grads, seeds=None, **kw):
    p = plan(graph)
    if seeds is None:
        seeds = {r: np.ones(p.spec(r).shape, p.spec(r).dtype) for r in roots}
    return list(backward(p, values, roots, seeds, grads, **kw))


def grad_map(results):
    return {r.id: r.array for r in results if r.kind == "grad"}


def test_fan_out_accumulates():
    # d(x*x + x)/dx at 3 = 7
    g = Graph([leaf(0, ())], [Node(1, "mul", (0, 0)), Node(2, "add", (1, 0))])
    out = grad_map(run(g, {0: np.array(3.0)}, [2], [0]))
    assert out[0] == 7.0


def test_only_requires_grad_paths_are_differentiated():
    calls = []
    g = Graph([leaf(0), leaf(1, rg=False)],
              [Node(2, "mul", (0, 1)), Node(3, "exp", (1,)), Node(4, "add", (2, 3)),
               Node(5, "sum", (4,))])
    p = plan(g)
    assert [p.requires_grad[p.pos[i]] for i in range(6)] == [True, False, True, False, True, True]
    out = grad_map(run(g, {0: np.ones(2), 1: np.array([2.0, 3.0])}, [5], [0, 1],
                       should_stop=lambda: calls.append(1) or False))
    np.testing.assert_array_equal(out[0], [2, 3])
    assert out[1] is None            # does not require grad: None, not zeros
    # 4 forward nodes, then backward visits only sum, add, mul (exp is off the grad path)
    assert len(calls) == 4 + 3


def test_retained_non_leaf_grad_and_multiple_roots():
    g = Graph([leaf(0)], [Node(1, "mul", (0,), {"other": 3.0}), Node(2, "sum", (1,)),
                          Node(3, "mul", (1, 1)), Node(4, "sum", (3,))])
    x = np.array([1.0, 2.0])
    results = run(g, {0: x}, [2, 4], [1, 0])
    assert [(r.kind, r.id) for r in results[:2]] == [("value", 2), ("value", 4)]
    out = grad_map(results)
    np.testing.assert_array_equal(out[1], 1 + 2 * 3 * x)        # d/dy [sum(y) + sum(y*y)]
    np.testing.assert_array_equal(out[0], 3 * (1 + 2 * 3 * x))


def test_unreachable_requested_grad_is_none():
    g = Graph([leaf(0), leaf(1)], [Node(2, "sum", (0,)), Node(3, "sum", (1,))])
    results = run(g, {0: np.ones(2), 1: np.ones(2)}, [2], [1, 0, 3])
    out = grad_map(results)
    assert out[1] is None and out[3] is None
    np.testing.assert_array_equal(out[0], [1, 1])


def test_leaf_grad_streams_before_backward_finishes():
    # x is used only by the last node: its grad is final after the first backward step
    steps = []
    nodes = [Node(2, "exp", (1,))]
    nodes += [Node(i, "tanh", (i - 1,)) for i in range(3, 50)]
    nodes += [Node(50, "mul", (49, 0)), Node(51, "sum", (50,))]
    g = Graph([leaf(0), leaf(1)], nodes)
    p = plan(g)
    it = backward(p, {0: np.ones(2), 1: np.ones(2)}, [51], {51: np.array(1.0)}, [0, 1],
                  should_stop=lambda: steps.append(1) or False)
    first = next(it)
    assert first.kind == "value"
    forward_steps = len(steps)
    second = next(it)
    assert (second.kind, second.id) == ("grad", 0)
    assert len(steps) - forward_steps <= 3          # sum, mul: the tanh chain has not run yet
    third = next(it)
    assert third.id == 1 and len(steps) - forward_steps == 50


def test_results_are_owned_arrays():
    # add passes one gradient array to both inputs; results must not alias each other or the seed
    g = Graph([leaf(0), leaf(1)], [Node(2, "add", (0, 1))])
    seed = np.ones(2)
    out = grad_map(run(g, {0: np.ones(2), 1: np.ones(2)}, [2], [0, 1], seeds={2: seed}))
    assert not np.shares_memory(out[0], out[1])
    assert not np.shares_memory(out[0], seed) and not np.shares_memory(out[1], seed)
    value = evaluate(plan(Graph([leaf(0, (2, 3))], [Node(1, "transpose", (0,),
                                                         {"dim0": 0, "dim1": 1})])),
                     {0: np.ones((2, 3))}, [1])[1]
    assert value.flags.c_contiguous and value.base is None
    x = np.ones(3)
    same = evaluate(plan(Graph([leaf(0, (3,))], [Node(1, "contiguous", (0,))])), {0: x}, [0, 1])
    assert not np.shares_memory(same[0], x) and not np.shares_memory(same[1], x)


def test_intermediates_are_freed_as_soon_as_possible():
    """A chain of exp nodes: backward reads each output once, so while the backward pass runs the
    live set stays small; in forward, values only backward reads are kept."""
    refs: list[weakref.ref] = []

    def alive() -> int:
        return sum(r() is not None for r in refs)

    from gradserve.engine import OPS
    exp = OPS["exp"]
    original = exp.forward

    def tracking_forward(xs, attrs):
        out = original(xs, attrs)
        refs.append(weakref.ref(out))
        return out

    object.__setattr__(exp, "forward", tracking_forward)
    try:
        n = 30
        nodes = [Node(1, "mul", (0,), {"other": 1.0})]
        nodes += [Node(i, "exp", (i - 1,)) for i in range(2, n)]
        nodes += [Node(n, "sum", (n - 1,))]
        g = Graph([leaf(0, (1000,))], nodes)
        p = plan(g)
        counts = []
        it = backward(p, {0: np.zeros(1000)}, [n], {n: np.array(1.0)}, [0],
                      should_stop=lambda: counts.append(alive()) or False)
        list(it)
        gc.collect()
        assert alive() == 0
        # backward frees each exp output after its own step: the live count falls steadily
        backward_counts = counts[n:]
        assert backward_counts[0] == n - 2
        assert backward_counts[-1] <= 2
        # evaluate keeps nothing but the requested output
        counts.clear()
        evaluate(p, {0: np.zeros(1000)}, [n], should_stop=lambda: counts.append(alive()) or False)
        assert max(counts) <= 1
    finally:
        object.__setattr__(exp, "forward", original)


def test_square_then_sum_peaks_at_one_payload_of_temporaries():
    # (x*x).sum() backward: the forward product is freed before backward, whose rule allocates one
    # full-size temporary; the leaf itself is not counted (it was allocated before tracing).
    n = 1 << 20
    x = np.random.default_rng(0).random(n, dtype=np.float32)
    g = Graph([Leaf(0, (n,), np.dtype(np.float32), True)],
              [Node(1, "mul", (0, 0)), Node(2, "sum", (1,))])
    tracemalloc.start()
    try:
        results = list(backward(plan(g), {0: x}, [2], {2: np.array(1, np.float32)}, [0]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(results[1].array, 2 * x)
    assert peak < 1.2 * x.nbytes


def test_long_chain_forward_and_backward():
    n = 150_000
    nodes = [Node(i, "mul", (i - 1,), {"other": 1.0}) for i in range(1, n + 1)]
    g = Graph([leaf(0, (), dtype=F32)], nodes)
    results = run(g, {0: np.array(2.0, F32)}, [n], [0])
    assert results[0].array == 2.0
    assert grad_map(results)[0] == 1.0
    assert evaluate(plan(g), {0: np.array(3.0, F32)}, [n])[n] == 3.0


def test_should_stop_raises_cancelled():
    g = Graph([leaf(0)], [Node(1, "exp", (0,)), Node(2, "sum", (1,))])
    p = plan(g)
    with pytest.raises(Cancelled):
        evaluate(p, {0: np.ones(2)}, [2], should_stop=lambda: True)
    calls = iter([False, False, True])
    with pytest.raises(Cancelled):
        list(backward(p, {0: np.ones(2)}, [2], {2: np.array(1.0)}, [0],
                      should_stop=lambda: next(calls)))


def test_linear_skips_gradients_nobody_needs_and_matches_numpy():
    rng = np.random.default_rng(0)
    xv, wv, bv = rng.standard_normal((4, 3)), rng.standard_normal((5, 3)), rng.standard_normal(5)
    g = Graph([leaf(0, (4, 3), rg=False), leaf(1, (5, 3)), leaf(2, (5,))],
              [Node(3, "linear", (0, 1, 2)), Node(4, "sum", (3,))])
    out = grad_map(run(g, {0: xv, 1: wv, 2: bv}, [4], [0, 1, 2]))
    assert out[0] is None
    np.testing.assert_allclose(out[1], np.ones((5, 4)) @ xv)
    np.testing.assert_allclose(out[2], np.full(5, 4.0))


def test_zero_dim_gradient_reaching_a_rule_that_writes_into_its_copy():
    # conformance programs 84/187 (`y = x * 1; y[1] = 2.5`): the value's gradient is summed to 0-d
    # (a NumPy scalar) and index_put's backward zeroes a copy of it; the overwritten element must
    # get no gradient through the old value.
    f32 = np.dtype(np.float32)
    g = Graph([Leaf(1, (3,), f32, True)], [
        Node(2, "mul", (1,), {"other": 1}),
        Node(3, "getitem", (2,), {"index": (1,)}),
        Node(4, "index_put", (3,), {"index": ("...",), "value": 2.5}),
        Node(5, "index_put", (2, 4), {"index": (("slice", 1, 2, None),)}),
        Node(6, "mul", (5,), {"other": 2}),
        Node(7, "sum", (6,), {})])
    results = list(backward(plan(g), {1: np.array([1, 2, 3], f32)}, [7], {7: np.array(1, f32)}, [1]))
    grad = [r.array for r in results if r.kind == "grad"][0]
    np.testing.assert_array_equal(grad, np.array([2, 0, 2], f32))


@pytest.mark.parametrize("order", [(1, 0), (0, 1)])
def test_two_leaves_sharing_one_array_are_not_x_times_x(order):
    # conformance: `t.detach() * t` gave t a zero gradient: the client sends the constant and the
    # leaf as one array object, which mul's backward took for `x * x` of a single node
    x = np.array([0.669, 0.994])
    g = Graph([leaf(0), leaf(1, rg=False)], [Node(2, "mul", order), Node(3, "sum", (2,))])
    grads = grad_map(run(g, {0: x, 1: x}, [3], [0]))
    np.testing.assert_array_equal(grads[0], x)
    g = Graph([leaf(0)], [Node(1, "mul", (0, 0)), Node(2, "sum", (1,))])
    np.testing.assert_array_equal(grad_map(run(g, {0: x}, [2], [0]))[0], 2 * x)
