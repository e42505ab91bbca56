"""The service end to end: round trips, large tensors, concurrency, info, health and reflection."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from server_helpers import F32, backward, evaluate, running, stub_for, tutorial_graph

from gradserve import codec
from gradserve.engine import OPS, Graph, Leaf, Node
from gradserve.v1 import gradserve_pb2 as pb

DTYPES = list(codec.DTYPES)


def test_tutorial_graph_backward(stub):
    graph, values, seeds = tutorial_graph()
    results, summary = backward(stub, graph, values, roots=[3], grads=[0, 1], seeds=seeds)
    by_kind = {(r.kind, r.id): r.array for r in results}
    y = values[0] + 2
    np.testing.assert_allclose(by_kind["value", 3], 3 * y * y)
    np.testing.assert_allclose(by_kind["grad", 0], 6 * y / 4)     # d mean(3y^2)/dx
    np.testing.assert_allclose(by_kind["grad", 1], 6 * y / 4)
    assert [r.kind for r in results][0] == "value"                 # root value first
    assert summary.worker and summary.nodes_executed == 3


def test_backward_without_seeds_uses_ones_and_absent_grads_are_none(stub):
    graph = Graph([Leaf(0, (3,), F32, True), Leaf(1, (3,), F32)],
                  [Node(2, "exp", (0,), {}), Node(3, "mul", (1,), {"other": 2.0})])
    x = np.array([0.0, 1.0, -1.0], np.float32)
    results, _ = backward(stub, graph, {0: x, 1: x}, roots=[2], grads=[0, 1, 3])
    by = {(r.kind, r.id): r.array for r in results}
    np.testing.assert_allclose(by["grad", 0], np.exp(x), rtol=1e-6)
    assert by["grad", 1] is None and by["grad", 3] is None


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_round_trips_including_empty_and_scalar(stub, dtype):
    rng = np.random.default_rng(1)
    arrays = {0: rng.integers(0, 100, (3, 5)).astype(dtype), 1: np.zeros((0, 7), dtype),
              2: np.asarray(rng.integers(0, 2), dtype=dtype)}
    graph = Graph([Leaf(i, a.shape, a.dtype) for i, a in arrays.items()], [])
    out, _ = evaluate(stub, graph, arrays, outputs=[0, 1, 2])
    for i, a in arrays.items():
        assert out[i].dtype == a.dtype and out[i].shape == a.shape
        np.testing.assert_array_equal(out[i], a)


def test_tensors_over_4_mib_both_ways(stub):
    x = np.random.default_rng(2).standard_normal(3 * 1024 * 1024).astype(np.float32)   # 12 MiB
    graph = Graph([Leaf(0, x.shape, F32, True)],
                  [Node(1, "tanh", (0,), {}), Node(2, "mul", (1, 0), {})])
    results, _ = backward(stub, graph, {0: x}, roots=[2], grads=[0])
    by = {(r.kind, r.id): r.array for r in results}
    t = np.tanh(x)
    np.testing.assert_allclose(by["value", 2], t * x, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(by["grad", 0], (1 - t * t) * x + t, rtol=1e-4, atol=1e-5)


def test_many_concurrent_clients(shared_server):
    graph = Graph([Leaf(0, (256, 1024), F32, True)],
                  [Node(1, "tanh", (0,), {}), Node(2, "exp", (1,), {}), Node(3, "mul", (2, 0), {})])

    def client(k: int):
        stub = stub_for(shared_server)            # its own channel, i.e. its own connection
        workers = set()
        for j in range(4):
            x = np.full((256, 1024), (k * 4 + j) / 100, np.float32)
            results, summary = backward(stub, graph, {0: x}, roots=[3], grads=[0],
                                        request_id=f"c{k}-{j}", timeout=60)
            by = {(r.kind, r.id): r.array for r in results}
            e = np.exp(np.tanh(x))
            np.testing.assert_allclose(by["value", 3], e * x, rtol=1e-5)
            np.testing.assert_allclose(by["grad", 0], e * (1 - np.tanh(x) ** 2) * x + e, rtol=1e-4)
            workers.add(summary.worker)
        return workers

    with ThreadPoolExecutor(16) as ex:
        used = set().union(*ex.map(client, range(16)))
    assert len(used) == 2          # one central queue feeds both workers


def test_get_info_reports_ops_versions_and_limits(stub, shared_server):
    info = stub.GetInfo(pb.InfoRequest())
    assert {op.name for op in info.ops} == set(OPS)
    assert {op.name: op.differentiable for op in info.ops}["tanh"] is True
    assert info.protocol_version == 1 and info.server_version and info.numpy_version == np.__version__
    assert info.workers == 2 and info.chunk_bytes == codec.CHUNK_BYTES
    assert info.max_inflight_requests == 32 and set(info.dtypes) == set(DTYPES)
    assert info.max_elements == shared_server.options.max_elements


def test_health_serving(shared_server):
    channel = grpc.insecure_channel(shared_server.address)
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "gradserve.v1.Gradients"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_and_describes_the_service(shared_server):
    db = ProtoReflectionDescriptorDatabase(grpc.insecure_channel(shared_server.address))
    services = set(db.get_services())
    assert {"gradserve.v1.Gradients", "grpc.health.v1.Health"} <= services
    methods = {m.name for m in db.FindFileContainingSymbol("gradserve.v1.Gradients").service[0].method}
    assert methods >= {"Evaluate", "Backward", "GetInfo"}


def _mapped_files(pid: int) -> str:
    with open(f"/proc/{pid}/maps") as f:
        return f.read()


def _environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        pairs = [item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item]
    return {k.decode(): v.decode() for k, v in pairs}


def test_workers_load_the_engine_but_not_grpc_and_get_one_blas_thread(shared_server):
    for w in shared_server.pool.status():
        maps = _mapped_files(w["pid"])
        assert "numpy" in maps
        assert "grpc" not in maps and "protobuf" not in maps
        env = _environ(w["pid"])
        assert {env[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")} == {"1"}
    assert os.getpid() not in {w["pid"] for w in shared_server.pool.status()}



def test_blas_threads_reach_the_workers_and_leave_the_callers_environment_alone():
    names = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    before = {k: os.environ.get(k) for k in names}
    with running(workers=1, blas_threads=3) as srv:
        for w in srv.pool.status():
            env = _environ(w["pid"])
            assert {env[k] for k in names} == {"3"}
        assert {k: os.environ.get(k) for k in names} == before


def test_batch_calls_match_the_streams(stub):
    graph, values, seeds = tutorial_graph()
    batch = codec.request_batch(graph=graph, values=values, roots=[3], grads=[0], seeds=seeds)
    streamed, _ = backward(stub, graph, values, roots=[3], grads=[0], seeds=seeds)
    state = codec.ReadState()
    batched = list(codec.read_results(stub.BackwardBatch(batch, timeout=10), state))
    assert [(r.kind, r.id) for r in batched] == [(r.kind, r.id) for r in streamed]
    for a, b in zip(batched, streamed, strict=True):
        np.testing.assert_array_equal(a.array, b.array)
    assert state.summary.worker
    batch = codec.request_batch(graph=graph, values=values, outputs=[1, 3])
    out = {r.id: r.array for r in codec.read_results(stub.EvaluateBatch(batch, timeout=10))}
    np.testing.assert_array_equal(out[1], values[0] + 2)


def test_batch_limits(stub):
    big = np.zeros(codec.BATCH_BYTES // 4 + 1, np.float32)
    graph = Graph([Leaf(0, big.shape, F32)], [Node(1, "exp", (0,), {})])
    assert codec.request_batch(graph=graph, values={0: big}, outputs=[1]) is None
    # small inputs, results too big for one message: the stream is the way
    graph = Graph([Leaf(0, (1024, 1), F32), Leaf(1, (1, 1024), F32)], [Node(2, "mul", (0, 1), {})])
    values = {0: np.ones((1024, 1), np.float32), 1: np.ones((1, 1024), np.float32)}
    with pytest.raises(grpc.RpcError) as info:
        stub.EvaluateBatch(codec.request_batch(graph=graph, values=values, outputs=[2]), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "use the stream" in info.value.details()
