"""Fast paths: chunk frames, the front's inline computation of tiny graphs, and the client's choice
between the one-message batch calls and the stream."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from google.protobuf.message import DecodeError
from server_helpers import F32, backward, evaluate, running, stub_for, tutorial_graph

from gradserve import ServiceError, codec
from gradserve._executor import RemoteExecutor
from gradserve.engine import Graph, Leaf, Node
from gradserve.server.faults import DeadlineExceeded, RequestCancelled
from gradserve.server.front import Front
from gradserve.server.options import Options
from gradserve.v1 import gradserve_pb2 as pb

# ---------------------------------------------------------------------------------------------
# chunk frames


@pytest.mark.parametrize("id_, offset, size", [(0, 0, 0), (1, 0, 5), (300, 1 << 40, 1000)])
def test_frames_are_the_protobuf_encoding_and_decode_without_copies(id_, offset, size):
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    frame = codec._chunk_frame(codec._REQUEST_CHUNK_TAG, id_, offset, memoryview(data))
    parsed = pb.ComputeRequest.FromString(frame)
    assert frame == parsed.SerializeToString()
    assert (parsed.chunk.id, parsed.chunk.offset, parsed.chunk.data) == (id_, offset, data)
    msg = codec.decode_request(frame)
    assert msg.WhichOneof("kind") == "chunk"
    assert (msg.chunk.id, msg.chunk.offset, bytes(msg.chunk.data)) == (id_, offset, data)
    assert isinstance(msg.chunk.data, memoryview)
    response = codec._chunk_frame(codec._RESPONSE_CHUNK_TAG, id_, offset, memoryview(data))
    assert pb.ComputeResponse.FromString(response).chunk.data == data
    assert bytes(codec.decode_response(response).chunk.data) == data


def test_frames_from_plain_protobuf_peers_and_anything_else_decode_as_protobuf():
    plain = pb.ComputeRequest(chunk=pb.Chunk(id=3, offset=7, data=b"xyz")).SerializeToString()
    assert bytes(codec.decode_request(plain).chunk.data) == b"xyz"
    header = pb.ComputeRequest(header=pb.Header(request_id="r")).SerializeToString()
    assert isinstance(codec.decode_request(header), pb.ComputeRequest)
    # a chunk followed by a second oneof member: protobuf's "last one wins" must apply
    both = plain + header
    assert codec.decode_request(both).WhichOneof("kind") == "header"
    # an unknown field inside the chunk: protobuf keeps the known ones
    odd = pb.Chunk(id=3, data=b"ab").SerializeToString() + b"\x20\x01"
    msg = codec.decode_request(bytes([0x1a, len(odd)]) + odd)
    assert isinstance(msg, pb.ComputeRequest) and msg.chunk.data == b"ab"
    with pytest.raises(DecodeError):        # truncated: protobuf's error, as without frames
        codec.decode_request(plain[:-1])


def test_request_stream_and_request_messages_carry_the_same_bytes():
    graph = Graph([Leaf(0, (3 * codec.CHUNK_BYTES // 4 + 5,), F32)], [Node(1, "neg", (0,), {})])
    values = {0: np.arange(graph.leaves[0].shape[0], dtype=np.float32)}
    plain = [m.SerializeToString() for m in codec.request_messages(graph=graph, values=values,
                                                                   outputs=[1])]
    framed = [codec.encode(m) for m in codec.request_stream(graph=graph, values=values, outputs=[1])]
    assert plain == framed and len(framed) == 2 + -(-values[0].nbytes // codec.CHUNK_BYTES)


# ---------------------------------------------------------------------------------------------
# inline computation in the front


def test_tiny_graphs_are_computed_in_the_front(stub):
    graph, values, seeds = tutorial_graph()
    results, summary = backward(stub, graph, values, roots=[3], grads=[0], seeds=seeds)
    assert summary.worker == "front" and summary.nodes_executed == 3
    np.testing.assert_allclose({r.id: r.array for r in results if r.kind == "grad"}[0],
                               6 * (values[0] + 2) / 4)


def test_the_inline_gate_is_on_inferred_sizes():
    # a 1-element leaf expanded to 100k elements: tiny on the wire, big once planned
    graph = Graph([Leaf(0, (1,), F32)], [Node(1, "expand", (0,), {"shape": (100_000,)}),
                                         Node(2, "sum", (1,), {})])
    with running(workers=1, inline_max_elements=50_000) as srv:
        out, summary = evaluate(stub_for(srv), graph, {0: np.ones(1, np.float32)}, outputs=[2])
        assert out[2] == 100_000 and summary.worker.startswith("worker-")
        small = Graph([Leaf(0, (1,), F32)], [Node(1, "expand", (0,), {"shape": (1000,)}),
                                             Node(2, "sum", (1,), {})])
        _, summary = evaluate(stub_for(srv), small, {0: np.ones(1, np.float32)}, outputs=[2])
        assert summary.worker == "front"


def test_inline_can_be_turned_off_and_a_busy_inline_slot_sends_work_to_a_worker():
    graph, values, seeds = tutorial_graph()
    with running(workers=1, inline_max_nodes=0) as srv:
        _, summary = backward(stub_for(srv), graph, values, roots=[3], grads=[0], seeds=seeds)
        assert summary.worker.startswith("worker-")
    with running(workers=1) as srv:
        assert srv.front._inline.acquire()          # as if another inline request were running
        try:
            results, summary = backward(stub_for(srv), graph, values, roots=[3], grads=[0],
                                        seeds=seeds)
        finally:
            srv.front._inline.release()
        assert summary.worker.startswith("worker-")
        np.testing.assert_allclose([r.array for r in results if r.kind == "grad"][0],
                                   6 * (values[0] + 2) / 4)


def test_inline_requests_honour_limits_and_report_engine_errors_like_workers():
    graph, values, seeds = tutorial_graph()
    with running(workers=1, max_elements=3) as srv:
        with pytest.raises(grpc.RpcError) as info:
            backward(stub_for(srv), graph, values, roots=[3], grads=[0], seeds=seeds)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    bad = Graph([Leaf(0, (3,), F32), Leaf(1, (2,), np.dtype("int64"))],
                [Node(2, "index_select", (0, 1), {"dim": 0})])
    values = {0: np.ones(3, np.float32), 1: np.array([0, 7])}
    with running(workers=1) as srv:
        for limit in (0, 64):               # the worker and the inline path agree
            srv.front.options = srv.front.options.replace(inline_max_nodes=limit)
            with pytest.raises(grpc.RpcError) as info:
                evaluate(stub_for(srv), bad, values, outputs=[2])
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "node 2 (index_select)" in info.value.details()


class _Context:
    def __init__(self, active_for: int, remaining: float | None) -> None:
        self.polls, self.active_for, self.remaining = 0, active_for, remaining

    def is_active(self) -> bool:
        self.polls += 1
        return self.polls <= self.active_for

    def time_remaining(self):
        return self.remaining


@pytest.mark.parametrize("remaining, error", [(None, RequestCancelled), (5.0, RequestCancelled),
                                              (0.0, DeadlineExceeded)])
def test_inline_computation_stops_when_the_call_ends(remaining, error):
    graph = Graph([Leaf(0, (4,), F32)], [Node(k, "tanh", (k - 1,), {}) for k in range(1, 21)])
    messages = codec.request_messages(graph=graph, values={0: np.ones(4, np.float32)}, outputs=[20])
    front = Front(Options(), pool=None, blocks=None)
    context = _Context(active_for=3, remaining=remaining)
    with pytest.raises(error):
        list(front.compute("evaluate", messages, context))
    assert context.polls < 10                        # stopped between nodes, not at the end
    assert front.admission.requests == 0 and front.admission.bytes == 0


# ---------------------------------------------------------------------------------------------
# the client's choice


@pytest.fixture(scope="module")
def remote(shared_server):
    executor = RemoteExecutor(shared_server.address, timeout=60)
    yield executor
    executor.close()


def test_small_requests_use_the_batch_call(remote):
    graph, values, _ = tutorial_graph()
    grads = {r.id: r.array for r in remote.backward(graph, values, [3], {3: np.full((2, 2), 0.25,
                                                                                    np.float32)}, [0])}
    assert remote.last_call == "batch" and remote.last_summary.worker == "front"
    np.testing.assert_allclose(grads[0], 6 * (values[0] + 2) / 4)
    out = remote.evaluate(graph, values, [3])
    assert remote.last_call == "batch"
    np.testing.assert_allclose(out[3], 3 * (values[0] + 2) ** 2)


def test_big_inputs_stream(remote):
    x = np.linspace(-1, 1, codec.BATCH_BYTES // 4 + 1, dtype=np.float32)
    graph = Graph([Leaf(0, x.shape, F32, True)], [Node(1, "mul", (0, 0), {}), Node(2, "sum", (1,), {})])
    results = list(remote.backward(graph, {0: x}, [2], {2: np.ones((), np.float32)}, [0]))
    assert remote.last_call == "stream"
    np.testing.assert_allclose(results[-1].array, 2 * x)


def test_small_request_with_a_big_result_streams(remote):
    n = codec.BATCH_BYTES // 4 + 1
    graph = Graph([Leaf(0, (1,), F32)], [Node(1, "expand", (0,), {"shape": (n,)}),
                                         Node(2, "mul", (1,), {"other": 2.0})])
    out = remote.evaluate(graph, {0: np.full(1, 1.5, np.float32)}, [2])
    assert remote.last_call == "stream" and out[2].shape == (n,) and (out[2] == 3.0).all()


def test_a_batch_rejected_as_too_big_falls_back_to_the_stream(remote, monkeypatch):
    from gradserve import _executor

    monkeypatch.setattr(_executor, "_result_bytes", lambda *a: 0)     # a wrong estimate
    n = codec.BATCH_BYTES // 4 + 1
    graph = Graph([Leaf(0, (1,), F32)], [Node(1, "expand", (0,), {"shape": (n,)})])
    out = remote.evaluate(graph, {0: np.ones(1, np.float32)}, [1])
    assert remote.last_call == "stream" and out[1].shape == (n,)


class _Unavailable(grpc.RpcError):
    def code(self):
        return grpc.StatusCode.UNAVAILABLE

    def details(self):
        return "try again"


def test_batch_calls_retry_unavailable_and_map_errors(remote, monkeypatch):
    calls = []
    real = remote._stub.BackwardBatch

    def flaky(request, timeout=None):
        calls.append(request)
        if len(calls) == 1:
            raise _Unavailable()
        return real(request, timeout=timeout)

    monkeypatch.setattr(remote._stub, "BackwardBatch", flaky)
    graph, values, seeds = tutorial_graph()
    list(remote.backward(graph, values, [3], seeds, [0]))
    assert len(calls) == 2 and calls[0] is calls[1]         # the same request, same request id
    bad = Graph([Leaf(0, (2,), F32, True)], [Node(1, "no_such_op", (0,), {})])
    with pytest.raises(ServiceError) as info:
        list(remote.backward(bad, {0: np.ones(2, np.float32)}, [1], {1: np.ones(2, np.float32)}, [0]))
    assert info.value.code == grpc.StatusCode.UNIMPLEMENTED
