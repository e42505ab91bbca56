"""Helpers for service tests: servers, requests, graphs and pool predicates."""

from __future__ import annotations

import contextlib
import uuid
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from gradserve import codec, server
from gradserve.engine import Graph, Leaf, Node
from gradserve.v1 import gradserve_pb2_grpc as pb_grpc

F32 = np.dtype("float32")


@contextlib.contextmanager
def running(**options):
    options.setdefault("workers", 2)
    srv = server.start("127.0.0.1", 0, **options)
    try:
        yield srv
    finally:
        srv.stop(grace=2.0)


def stub_for(srv) -> pb_grpc.GradientsStub:
    channel = grpc.insecure_channel(srv.address)
    return pb_grpc.GradientsStub(channel)


# ---------------------------------------------------------------------------------------------
# requests


def evaluate(stub, graph, values, outputs, **kw):
    """(results by id, summary) of an Evaluate call."""
    state = codec.ReadState()
    messages = codec.request_messages(graph=graph, values=values, outputs=outputs,
                                      request_id=kw.pop("request_id", ""))
    results = list(codec.read_results(stub.Evaluate(messages, **kw), state))
    return {r.id: r.array for r in results}, state.summary


def backward(stub, graph, values, roots, grads, seeds=None, **kw):
    """(list of Results, summary) of a Backward call."""
    state = codec.ReadState()
    messages = codec.request_messages(graph=graph, values=values, roots=roots, seeds=seeds,
                                      grads=grads, request_id=kw.pop("request_id", ""))
    results = list(codec.read_results(stub.Backward(messages, **kw), state))
    return results, state.summary


def tutorial_graph():
    """x (2x2) -> y = x + 2 -> z = y * y * 3; the seed 1/4 everywhere makes z.mean() the root."""
    graph = Graph([Leaf(0, (2, 2), F32, True)],
                  [Node(1, "add", (0,), {"other": 2.0}), Node(2, "mul", (1, 1), {}),
                   Node(3, "mul", (2,), {"other": 3.0})])
    x = np.array([[1, 2], [3, 4]], np.float32)
    return graph, {0: x}, {3: np.full((2, 2), 0.25, np.float32)}


def tanh_chain(n_nodes: int, size: int = 1 << 20):
    """Forward work in many short steps (~0.4 ms each on 1M floats): cancellable between nodes."""
    graph = Graph([Leaf(0, (size,), F32)],
                  [Node(k, "tanh", (k - 1,), {}) for k in range(1, n_nodes + 1)])
    values = {0: np.linspace(-1, 1, size, dtype=np.float32)}
    return graph, values, n_nodes


def rpc_error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


class Background:
    """Runs a streaming call in a thread; `.call` is the live call object (for cancel())."""

    def __init__(self, method, graph, values, *, outputs=(), roots=(), grads=(), timeout=None):
        self.request_id = uuid.uuid4().hex
        messages = codec.request_messages(graph=graph, values=values, outputs=outputs, roots=roots,
                                          grads=grads, request_id=self.request_id)
        self.call = method(messages, timeout=timeout)
        self.summary = None
        self._pool = ThreadPoolExecutor(1)
        self._future = self._pool.submit(self._read)

    def _read(self):
        state = codec.ReadState()
        results = list(codec.read_results(self.call, state))
        self.summary = state.summary
        return results

    def result(self, timeout=60):
        try:
            return self._future.result(timeout)
        finally:
            self._pool.shutdown(wait=False)


def busy_with(request_id: str):
    """Pool predicate: some worker is running `request_id`; returns that worker's pid via .pid."""
    def predicate(pool):
        return any(w["request_id"] == request_id for w in pool.status())
    return predicate


def worker_running(pool, request_id: str) -> int:
    assert pool.wait_until(busy_with(request_id), 30), f"request {request_id} never started"
    (pid,) = [w["pid"] for w in pool.status() if w["request_id"] == request_id]
    return pid


def all_ready_and_idle(n: int):
    def predicate(pool):
        s = pool.status()
        return len(s) == n and all(w["ready"] and w["alive"] and w["request_id"] is None for w in s)
    return predicate

