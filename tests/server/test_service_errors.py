"""Malformed and oversized requests get the right status code, and the server keeps serving."""

from __future__ import annotations

import threading

import grpc
import numpy as np
import pytest
from server_helpers import (
    F32,
    Background,
    evaluate,
    running,
    stub_for,
    tanh_chain,
    tutorial_graph,
    worker_running,
)

from gradserve import codec
from gradserve.engine import Graph, Leaf, Node
from gradserve.v1 import gradserve_pb2 as pb

BIG = 300_000            # floats: the leaf spans two chunks


def request(outputs=(2,), **graph_changes):
    graph = Graph([Leaf(0, (BIG,), F32, True)],
                  [Node(1, "tanh", (0,), {}), Node(2, "mul", (1, 0), {})])
    values = {0: np.ones(BIG, np.float32)}
    return list(codec.request_messages(graph=graph, values=values, outputs=outputs))


def call(stub, messages, method="Evaluate"):
    with pytest.raises(grpc.RpcError) as info:
        list(codec.read_results(getattr(stub, method)(iter(messages), timeout=30)))
    return info.value.code(), info.value.details()


@pytest.fixture(scope="module")
def channel(shared_server):
    with grpc.insecure_channel(shared_server.address) as channel:
        yield channel


def call_raw(channel, method, frames):
    """A call whose request messages are given as bytes, exactly as they go on the wire."""
    path = f"/gradserve.v1.Gradients/{method}"
    with pytest.raises(grpc.RpcError) as info:
        if method.endswith("Batch"):
            channel.unary_unary(path)(frames, timeout=30)
        else:
            list(channel.stream_stream(path)(iter(frames), timeout=30))
    return info.value.code(), info.value.details()


def nested_value(depth: int) -> bytes:
    """A Value holding a list holding a list ... `depth` levels deep, encoded by hand (protobuf
    itself refuses to build what it could not parse)."""
    value = pb.Value(i=1).SerializeToString()
    for _ in range(depth):
        items = b"\x0a" + codec._varint(len(value)) + value          # ValueList.items
        value = b"\x32" + codec._varint(len(items)) + items          # Value.list
    return value


@pytest.fixture(autouse=True)
def server_still_serves(stub):
    yield
    graph, values, seeds = tutorial_graph()
    out, _ = evaluate(stub, graph, values, outputs=[3], timeout=10)
    np.testing.assert_allclose(out[3], 3 * (values[0] + 2) ** 2)


def test_truncated_chunk(stub):
    messages = request()
    messages[-1].chunk.data = messages[-1].chunk.data[:100]
    code, details = call(stub, messages)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == f"tensor 0: stream ended after {codec.CHUNK_BYTES + 100} of {BIG * 4} bytes"


def test_missing_chunk(stub):
    code, details = call(stub, request()[:-1])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "tensor 0" in details


def test_chunk_sent_twice(stub):
    messages = request()
    code, details = call(stub, [*messages, messages[-1]])
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith(f"tensor 0: chunk at offset {codec.CHUNK_BYTES}, expected {BIG * 4}")


def test_chunk_beyond_the_tensor(stub):
    messages = request()
    messages[-1].chunk.data += b"\0" * 8
    code, details = call(stub, messages)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "outside" in details and "tensor 0" in details


def test_wrong_byte_length(stub):
    messages = request()
    messages[1].graph.leaves[0].nbytes = 4
    code, details = call(stub, messages)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("leaf 0: nbytes is 4")


def test_unknown_dtype(stub):
    messages = request()
    messages[1].graph.leaves[0].dtype = "bfloat16"
    code, details = call(stub, messages)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details == "leaf 0: unknown dtype 'bfloat16'"


@pytest.mark.parametrize("shape, nbytes, message", [
    ((0, 2**62), 0, "more than 64-bit sizes hold"),          # empty, yet NumPy cannot hold it
    ((2**31, 2**31, 0), 0, "more than 64-bit sizes hold"),
    ((2**40, 2**40), 0, "more than 64-bit sizes hold"),     # the product overflows int64
    ((-1, 4), 0, "negative dimension"),
])
def test_shapes_no_array_can_have(stub, shape, nbytes, message):
    header = pb.ComputeRequest(header=pb.Header(protocol_version=1, outputs=[0]))
    part = pb.ComputeRequest(graph=pb.GraphPart(
        leaves=[pb.TensorSpec(id=0, dtype="float32", shape=shape, nbytes=nbytes)]))
    code, details = call(stub, [header, part])
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("leaf 0:") and message in details


@pytest.mark.parametrize("name", ["Float32", "f4", "<f4", "float32 ", "float", "double", ""])
def test_dtype_names_are_exact(stub, name):
    messages = request()
    messages[1].graph.leaves[0].dtype = name
    code, details = call(stub, messages)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details == f"leaf 0: unknown dtype {name!r}"


def test_no_header(stub):
    code, details = call(stub, request()[1:])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "Header" in details


@pytest.mark.parametrize("method", ["Evaluate", "Backward", "EvaluateBatch", "BackwardBatch"])
def test_undecodable_message_is_invalid_argument_not_internal(channel, method):
    header = request()[0].SerializeToString()
    frames = header + b"\xff\xff\xff" if method.endswith("Batch") else [header, b"\xff\xff\xff"]
    code, details = call_raw(channel, method, frames)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not valid protobuf" in details


def test_attribute_nested_beyond_the_protobuf_recursion_limit(channel):
    messages = request()
    value = nested_value(200)
    entry = b"\x0a\x04deep" + b"\x12" + codec._varint(len(value)) + value    # map entry "deep"
    node = pb.Node(id=3, op="neg", inputs=[0]).SerializeToString()
    node += b"\x22" + codec._varint(len(entry)) + entry                          # Node.attrs
    part = b"\x12" + codec._varint(len(node)) + node                            # GraphPart.nodes
    frames = [m.SerializeToString() for m in messages]
    frames.insert(2, b"\x12" + codec._varint(len(part)) + part)                 # ComputeRequest.graph
    code, details = call_raw(channel, "Evaluate", frames)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not valid protobuf" in details


def test_long_error_details_are_cut_to_fit_the_trailers(stub):
    messages = request()
    messages[1].graph.nodes.add(id=3, op="add", inputs=[0]).attrs["other"].CopyFrom(
        pb.Value(s="ü" * 50_000))                                              # quoted in the error
    code, details = call(stub, messages)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("node 3 (add):")
    assert details.endswith("[truncated]") and len(details.encode()) < 2100


def test_bad_graph_names_node_and_op(stub):
    messages = request()
    messages[1].graph.leaves.add(id=5, dtype="float32", shape=[3], nbytes=12)
    messages[1].graph.nodes.add(id=6, op="add", inputs=[0, 5])
    messages.append(pb.ComputeRequest(chunk=pb.Chunk(id=5, offset=0, data=b"\0" * 12)))
    code, details = call(stub, messages)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("node 6 (add):") and "300000" in details


def test_dangling_input_and_unknown_output(stub):
    messages = request()
    messages[1].graph.nodes.add(id=7, op="tanh", inputs=[42])
    code, details = call(stub, messages)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("node 7 (tanh):")
    code, details = call(stub, request(outputs=(99,)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "99" in details


def test_unknown_op_is_unimplemented(stub):
    messages = request()
    messages[1].graph.nodes[0].op = "frobnicate"
    code, details = call(stub, messages)
    assert code == grpc.StatusCode.UNIMPLEMENTED
    assert details == "node 1 (frobnicate): unknown op 'frobnicate'"


def test_root_without_grad_is_invalid(stub):
    graph = Graph([Leaf(0, (2,), F32)], [Node(1, "exp", (0,), {})])
    messages = codec.request_messages(graph=graph, values={0: np.ones(2, np.float32)}, roots=[1],
                                      grads=[0])
    code, details = call(stub, messages, "Backward")
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "root 1" in details


def test_seed_of_the_wrong_shape(stub):
    graph, values, _ = tutorial_graph()
    messages = codec.request_messages(graph=graph, values=values, roots=[3], grads=[0],
                                      seeds={3: np.ones(3, np.float32)})
    code, details = call(stub, messages, "Backward")
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "seed for root 3" in details


@pytest.mark.parametrize("inline", [True, False])
def test_a_root_listed_twice_is_seeded_with_the_sum_of_its_seeds(inline):
    graph = Graph([Leaf(0, (2,), F32, True)], [Node(1, "mul", (0,), {"other": 3.0})])
    header = pb.ComputeRequest(header=pb.Header(
        protocol_version=1, roots=[1, 1], grads=[0],
        seeds=[codec.spec_to_proto(10, (2,), F32), codec.spec_to_proto(11, (2,), F32)]))
    tensors = {0: np.ones(2, np.float32), 10: np.full(2, 1.0, np.float32),
               11: np.full(2, 5.0, np.float32)}
    messages = [header, *(pb.ComputeRequest(graph=p) for p in codec.graph_parts(graph)),
                *(pb.ComputeRequest(chunk=pb.Chunk(id=i, data=a.tobytes())) for i, a in tensors.items())]
    with running(workers=1, inline_max_nodes=64 if inline else 0) as srv:
        state = codec.ReadState()
        results = list(codec.read_results(stub_for(srv).Backward(iter(messages), timeout=30), state))
    assert state.summary.worker.startswith("front" if inline else "worker-")
    assert [(r.kind, r.id) for r in results] == [("value", 1), ("grad", 0)]
    np.testing.assert_array_equal(results[1].array, [18.0, 18.0])          # 3 * (1 + 5)


def test_seeds_of_another_dtype_are_cast_to_the_root_dtype(stub):
    graph = Graph([Leaf(0, (2,), F32, True)], [Node(1, "mul", (0,), {"other": 3.0})])
    for seed in (np.full(2, 2.0), np.full(2, 2), np.full(2, True)):
        messages = codec.request_messages(graph=graph, values={0: np.ones(2, np.float32)},
                                          roots=[1], grads=[0], seeds={1: seed})
        results = list(codec.read_results(stub.Backward(messages, timeout=30)))
        assert results[1].array.dtype == F32
        np.testing.assert_array_equal(results[1].array, 3 * seed.astype(np.float32))


# ---------------------------------------------------------------------------------------------
# limits


def test_element_limit_is_resource_exhausted():
    with running(workers=1, max_elements=1000) as srv:
        code, details = call(stub_for(srv), request())
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "over the limit of 1000" in details
        graph = Graph([Leaf(0, (100, 1), F32), Leaf(1, (1, 100), F32)], [Node(2, "mul", (0, 1), {})])
        messages = codec.request_messages(graph=graph, outputs=[2], values={
            0: np.ones((100, 1), np.float32), 1: np.ones((1, 100), np.float32)})
        code, details = call(stub_for(srv), messages)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and details.startswith("node 2 (mul):")


def endless_graph(part: pb.GraphPart, stop: threading.Event):
    yield pb.ComputeRequest(header=pb.Header(protocol_version=1, outputs=[0]))
    while not stop.is_set():
        yield pb.ComputeRequest(graph=part)


@pytest.mark.parametrize("part, message", [
    (pb.GraphPart(nodes=[pb.Node(id=k, op="neg", inputs=[k - 1]) for k in range(1, 1001)]),
     "graph has over 5000 nodes"),
    (pb.GraphPart(leaves=[pb.TensorSpec(id=k, dtype="float32") for k in range(1000)]),
     "graph has over 5000 leaves"),
    (pb.GraphPart(nodes=[pb.Node(id=1, op="neg", attrs={"pad": pb.Value(s="x" * 100_000)})]),
     "graph has over 1000000 bytes"),
])
def test_a_graph_that_never_ends_is_cut_off_while_it_arrives(part, message):
    stop = threading.Event()
    with running(workers=1, max_nodes=5000, max_inflight_bytes=1_000_000) as srv:
        try:
            code, details = call(stub_for(srv), endless_graph(part, stop))
        finally:
            stop.set()
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and details.startswith(message)


def test_empty_graph_parts_are_accepted(stub):
    messages = request()
    messages[1:1] = [pb.ComputeRequest(graph=pb.GraphPart())] * 3
    assert [r.id for r in codec.read_results(stub.Evaluate(iter(messages), timeout=30))] == [2]


def test_inflight_bytes_limit_is_resource_exhausted():
    with running(workers=1, max_inflight_bytes=2 * BIG * 4 - 1) as srv:
        code, details = call(stub_for(srv), request())           # leaf + result > limit
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "over the limit" in details
        out, _ = evaluate(stub_for(srv), *tutorial_graph()[:2], outputs=[3])   # small ones pass


def test_inflight_requests_limit_is_resource_exhausted():
    with running(workers=1, max_inflight=1) as srv:
        stub = stub_for(srv)
        graph, values, n = tanh_chain(2500)
        busy = Background(stub.Evaluate, graph, values, outputs=[n], timeout=60)
        worker_running(srv.pool, busy.request_id)
        code, details = call(stub, request())
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "1 requests in flight" in details
        busy.result()
        evaluate(stub, *tutorial_graph()[:2], outputs=[3])          # admitted again
