"""Engine benchmark: a 1,000-op elementwise chain and an MLP training step, each next to a
hand-written NumPy forward+backward of the same computation. Prints a table; not a test.

    python tests/benchmarks/engine_bench.py [--repeat N]
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np

from gradserve.engine import Graph, Leaf, Node, backward, plan

F32 = np.dtype(np.float32)
CHAIN_OPS = 1000


def best_of_pair(first: Callable[[], object], second: Callable[[], object],
                 repeat: int) -> tuple[float, float]:
    """Best wall time of each of two functions, run alternately (after a warm-up) so that both
    see the same machine conditions: this is a shared 2-core box."""
    first()
    second()
    best = [float("inf"), float("inf")]
    for _ in range(repeat):
        for slot, fn in enumerate((first, second)):
            start = time.perf_counter()
            fn()
            best[slot] = min(best[slot], time.perf_counter() - start)
    return best[0], best[1]


# ---------------------------------------------------------------------------------------------
# (a) the chain: tanh, *2, *1.0001, +0.0001 repeated: 4 nodes a round, 1,000 nodes in all


def chain_graph() -> Graph:
    nodes, prev = [], 0
    steps = [("tanh", {}), ("mul", {"other": 2.0}), ("mul", {"other": 1.0001}),
             ("add", {"other": 0.0001})]
    for i in range(CHAIN_OPS):
        op, attrs = steps[i % 4]
        nodes.append(Node(i + 1, op, (prev,), attrs))
        prev = i + 1
    return Graph([Leaf(0, (16,), F32, True)], nodes)


def chain_engine(x: np.ndarray) -> np.ndarray:
    graph = chain_graph()
    p = plan(graph)
    root = graph.nodes[-1].id
    out = list(backward(p, {0: x}, [root], {root: np.ones(16, F32)}, [0]))
    return out[1].array


def chain_numpy(x: np.ndarray) -> np.ndarray:
    outs, h = [], x
    for i in range(CHAIN_OPS):
        k = i % 4
        if k == 0:
            h = np.tanh(h)
            outs.append(h)
        elif k == 1:
            h = h * np.float32(2.0)
        elif k == 2:
            h = h * np.float32(1.0001)
        else:
            h = h + np.float32(0.0001)
    g = np.ones(16, F32)
    for i in range(CHAIN_OPS - 1, -1, -1):
        k = i % 4
        if k == 0:
            t = outs.pop()
            g = g * (1 - t * t)
        elif k == 1:
            g = g * np.float32(2.0)
        elif k == 2:
            g = g * np.float32(1.0001)
    return g


# ---------------------------------------------------------------------------------------------
# (b) MLP step: 784 -> 1024 -> 1024 -> 10, ReLU, cross-entropy (mean), batch 256


def mlp_graph() -> Graph:
    leaves = [Leaf(0, (256, 784), F32), Leaf(1, (256,), np.dtype(np.int64)),
              Leaf(2, (1024, 784), F32, True), Leaf(3, (1024,), F32, True),
              Leaf(4, (1024, 1024), F32, True), Leaf(5, (1024,), F32, True),
              Leaf(6, (10, 1024), F32, True), Leaf(7, (10,), F32, True)]
    nodes = [Node(10, "linear", (0, 2, 3)), Node(11, "relu", (10,)),
             Node(12, "linear", (11, 4, 5)), Node(13, "relu", (12,)),
             Node(14, "linear", (13, 6, 7)), Node(15, "cross_entropy", (14, 1))]
    return Graph(leaves, nodes)


def mlp_values(rng: np.random.Generator) -> dict[int, np.ndarray]:
    def init(*shape):
        return (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(F32)
    return {0: rng.standard_normal((256, 784)).astype(F32), 1: rng.integers(0, 10, 256),
            2: init(1024, 784), 3: np.zeros(1024, F32), 4: init(1024, 1024),
            5: np.zeros(1024, F32), 6: init(10, 1024), 7: np.zeros(10, F32)}


def mlp_engine(values: dict[int, np.ndarray]) -> list:
    p = plan(mlp_graph())
    return list(backward(p, values, [15], {15: np.array(1.0, F32)}, [2, 3, 4, 5, 6, 7]))


def mlp_numpy(v: dict[int, np.ndarray]) -> list:
    x, t, w1, b1, w2, b2, w3, b3 = (v[i] for i in range(8))
    h1 = x @ w1.T
    h1 += b1
    a1 = np.maximum(h1, 0)
    h2 = a1 @ w2.T
    h2 += b2
    a2 = np.maximum(h2, 0)
    z = a2 @ w3.T
    z += b3
    shifted = z - z.max(1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    loss = -logp[np.arange(256), t].mean()
    dz = np.exp(logp)
    dz[np.arange(256), t] -= 1
    dz /= 256
    dw3, db3 = dz.T @ a2, dz.sum(0)
    da2 = dz @ w3
    da2 *= a2 > 0
    dw2, db2 = da2.T @ a1, da2.sum(0)
    da1 = da2 @ w2
    da1 *= a1 > 0
    dw1, db1 = da1.T @ x, da1.sum(0)
    return [loss, dw1, db1, dw2, db2, dw3, db3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    x = np.random.default_rng(0).standard_normal(16).astype(F32)
    np.testing.assert_allclose(chain_engine(x), chain_numpy(x), rtol=1e-4)
    chain_e, chain_n = best_of_pair(lambda: chain_engine(x), lambda: chain_numpy(x), args.repeat)

    values = mlp_values(np.random.default_rng(0))
    by_id = {r.id: r.array for r in mlp_engine(values)}
    numpy_results = mlp_numpy(values)
    for e, n in zip([by_id[i] for i in (15, 2, 3, 4, 5, 6, 7)], numpy_results, strict=True):
        np.testing.assert_allclose(e, n, rtol=1e-3, atol=1e-6)
    mlp_e, mlp_n = best_of_pair(lambda: mlp_engine(values), lambda: mlp_numpy(values),
                                args.repeat)

    rows = [
        ("chain 1,000 ops, 16 x f32 (fwd+bwd, plan incl.)", chain_e, chain_n,
         f"{chain_e / CHAIN_OPS * 1e6:.2f} us/op (target <= 8)"),
        ("MLP step 256x784-1024-1024-10, ReLU, CE, f32", mlp_e, mlp_n,
         f"{mlp_e / mlp_n:.2f}x NumPy (target <= 1.2x)"),
    ]
    print(f"{'benchmark':<50} {'engine':>10} {'numpy':>10}  result")
    for name, e, n, note in rows:
        print(f"{name:<50} {e * 1e3:>8.2f}ms {n * 1e3:>8.2f}ms  {note}")


if __name__ == "__main__":
    main()
