"""Round trips and malformed input for gradserve.codec, without a network."""

from __future__ import annotations

import numpy as np
import pytest

from gradserve import codec
from gradserve.engine import Graph, Leaf, Node
from gradserve.v1 import gradserve_pb2 as pb

DTYPES = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64"]


def sample(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(shape) > 0.5
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    return rng.standard_normal(shape).astype(dtype)


def decode_request(messages):
    """Server side of a request: head, then the tensors assembled into fresh buffers."""
    reader = codec.RequestReader(messages)
    head = reader.head()
    arrays = {t.id: np.empty(t.shape, t.dtype) for t in head.tensors}
    reader.read_into({i: memoryview(a.reshape(-1).view(np.uint8)) for i, a in arrays.items()})
    return head, arrays


def results_roundtrip(results):
    messages = [m for kind, id_, a in results for m in codec.result_messages(kind, id_, a)]
    messages.append(codec.summary_message(3, 0.5, "w0"))
    state = codec.ReadState()
    out = list(codec.read_results(iter(messages), state))
    return out, state.summary


# ---------------------------------------------------------------------------------------------
# tensors


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (5,), (2, 3, 4)])
def test_result_roundtrip_every_dtype_and_shape(dtype, shape):
    a = sample(shape, dtype)
    (r,), summary = results_roundtrip([("grad", 7, a)])
    assert (r.kind, r.id) == ("grad", 7)
    assert r.array.dtype == np.dtype(dtype) and r.array.shape == shape
    np.testing.assert_array_equal(r.array, a)
    assert summary.nodes_executed == 3 and summary.worker == "w0"


def test_large_tensor_is_chunked_and_reassembled():
    a = sample((5 * 1024 * 1024 // 8 + 3,), "float64")      # > 4 MiB, not a chunk multiple
    messages = list(codec.result_messages("value", 1, a))
    chunks = [m.chunk for m in messages if m.WhichOneof("kind") == "chunk"]
    assert len(chunks) == 6 and all(len(c.data) <= codec.CHUNK_BYTES for c in chunks)
    assert max(m.ByteSize() for m in messages) < 4 * 1024 * 1024 - 1024
    (r,), _ = results_roundtrip([("value", 1, a)])
    np.testing.assert_array_equal(r.array, a)


def test_non_contiguous_and_big_endian_arrays_travel_as_little_endian_c_order():
    a = sample((4, 6), "float32").T
    b = sample((3,), "int32").astype(">i4")
    out, _ = results_roundtrip([("value", 1, a), ("value", 2, b)])
    np.testing.assert_array_equal(out[0].array, a)
    np.testing.assert_array_equal(out[1].array, b)
    assert out[1].array.dtype == np.dtype("<i4")


def test_absent_gradient_is_none():
    out, _ = results_roundtrip([("value", 1, np.float32(2)), ("grad", 5, None)])
    assert [(r.kind, r.id, r.array is None) for r in out] == [("value", 1, False), ("grad", 5, True)]


# ---------------------------------------------------------------------------------------------
# attributes and graphs


@pytest.mark.parametrize("value", [
    None, True, False, 0, -3, 2**62, 1.5, float("inf"), "", "mean", (), (1, 2),
    ((1, (2.5, None)), "x", (True,)),
])
def test_attr_values_roundtrip(value):
    assert codec.attrs_from_proto(codec.attrs_to_proto({"a": value})) == {"a": value}
    back = codec.attrs_from_proto(codec.attrs_to_proto({"a": value}))["a"]
    assert type(back) is type(value)


def test_attr_lists_become_tuples_and_numpy_scalars_become_python():
    attrs = {"dims": [0, [1, 2]], "alpha": np.float32(0.5), "k": np.int64(3), "flag": np.bool_(True)}
    assert codec.attrs_from_proto(codec.attrs_to_proto(attrs)) == {
        "dims": (0, (1, 2)), "alpha": 0.5, "k": 3, "flag": True}


def test_unsupported_attr_values_are_rejected():
    with pytest.raises(codec.WireError, match="dict"):
        codec.attrs_to_proto({"a": {"b": 1}})
    with pytest.raises(codec.WireError, match="64 bits"):
        codec.attrs_to_proto({"a": 2**70})


def chain_graph(n_nodes, shape=(2, 3)):
    leaves = [Leaf(0, shape, np.dtype("float32"), True), Leaf(1, (), np.dtype("float64"))]
    nodes = [Node(2, "add", (0, 1), {"alpha": 2.0})]
    for k in range(3, n_nodes + 2):
        nodes.append(Node(k, "mul", (k - 1,), {"other": float(k), "tag": ("x", (k, None))}))
    return Graph(leaves, nodes)


def test_request_roundtrip_splits_graph_into_parts():
    graph = chain_graph(25_000)
    values = {0: sample((2, 3), "float32"), 1: np.float64(0.5)}
    seeds = {25_001: np.ones((2, 3), np.float32)}
    messages = list(codec.request_messages(graph=graph, values=values, roots=[25_001], seeds=seeds,
                                           grads=[0, 2], request_id="r1"))
    kinds = [m.WhichOneof("kind") for m in messages]
    assert kinds == ["header", "graph", "graph", "graph", "chunk", "chunk", "chunk"]
    head, arrays = decode_request(iter(messages))
    assert (head.request_id, head.roots, head.grads, head.outputs) == ("r1", [25_001], [0, 2], [])
    assert head.graph.leaves == graph.leaves
    assert head.graph.nodes == graph.nodes
    (seed,) = head.seeds
    assert seed.id not in {n.id for n in graph.nodes} and seed.shape == (2, 3)
    np.testing.assert_array_equal(arrays[0], values[0])
    assert arrays[1].shape == () and arrays[1] == 0.5
    np.testing.assert_array_equal(arrays[seed.id], seeds[25_001])


def test_request_with_large_zero_size_and_scalar_leaves():
    big = sample((3 * 1024 * 1024 + 5,), "float16")
    graph = Graph([Leaf(0, big.shape, np.dtype("float16")), Leaf(1, (0, 4), np.dtype("int64")),
                   Leaf(2, (), np.dtype("bool"))], [Node(3, "add", (0, 2), {})])
    values = {0: big, 1: np.zeros((0, 4), np.int64), 2: np.bool_(True)}
    head, arrays = decode_request(codec.request_messages(graph=graph, values=values, outputs=[3]))
    assert head.outputs == [3] and head.seeds == []
    for i, v in values.items():
        np.testing.assert_array_equal(arrays[i], v)
        assert arrays[i].dtype == np.asarray(v).dtype


def test_request_rejects_values_that_do_not_match_their_leaf():
    graph = Graph([Leaf(0, (2,), np.dtype("float32"))], [])
    with pytest.raises(codec.WireError, match="leaf 0"):
        list(codec.request_messages(graph=graph, values={0: np.zeros(3, np.float32)}))
    with pytest.raises(codec.WireError, match="leaf 0"):
        list(codec.request_messages(graph=graph, values={}))


# ---------------------------------------------------------------------------------------------
# malformed streams


def simple_request(**kw):
    graph = Graph([Leaf(0, (4,), np.dtype("float32"), True)], [Node(1, "tanh", (0,), {})])
    return list(codec.request_messages(graph=graph, values={0: np.arange(4, dtype=np.float32)},
                                       roots=[1], grads=[0], **kw))


def test_unknown_dtype_names_the_tensor():
    messages = simple_request()
    messages[1].graph.leaves[0].dtype = "complex64"
    with pytest.raises(codec.WireError, match="leaf 0: unknown dtype 'complex64'"):
        decode_request(iter(messages))


def test_wrong_byte_length_names_the_tensor():
    messages = simple_request()
    messages[1].graph.leaves[0].nbytes = 12
    with pytest.raises(codec.WireError, match="leaf 0: nbytes is 12"):
        decode_request(iter(messages))


def test_shape_numpy_cannot_hold_names_the_tensor_even_when_empty():
    messages = simple_request()
    del messages[1].graph.leaves[0].shape[:]
    messages[1].graph.leaves[0].shape.extend([0, 2**62])
    messages[1].graph.leaves[0].nbytes = 0
    with pytest.raises(codec.WireError, match="leaf 0: shape .* more than 64-bit sizes hold"):
        decode_request(iter(messages[:2]))


def test_truncated_chunk_names_the_tensor():
    messages = simple_request()
    messages[-1].chunk.data = messages[-1].chunk.data[:10]
    with pytest.raises(codec.WireError, match="tensor 0: stream ended after 10 of 16 bytes"):
        decode_request(iter(messages))


def test_missing_chunks_name_the_tensor():
    with pytest.raises(codec.WireError, match="tensor 0: stream ended after 0 of 16"):
        decode_request(iter(simple_request()[:-1]))


def test_chunk_outside_its_tensor():
    messages = simple_request()
    messages[-1].chunk.data = messages[-1].chunk.data + b"xxxx"
    with pytest.raises(codec.WireError, match="tensor 0: chunk .* outside"):
        decode_request(iter(messages))


def test_chunk_out_of_order_or_unknown():
    messages = simple_request()
    messages[-1].chunk.offset = 4
    with pytest.raises(codec.WireError, match="tensor 0: chunk at offset 4, expected 0"):
        decode_request(iter(messages))
    messages = simple_request()
    messages[-1].chunk.id = 9
    with pytest.raises(codec.WireError, match="unknown tensor 9"):
        decode_request(iter(messages))


def test_a_chunk_sent_twice_is_rejected():
    messages = simple_request()
    with pytest.raises(codec.WireError, match="tensor 0: chunk at offset 0, expected 16"):
        decode_request(iter([*messages, messages[-1]]))


def test_a_tensor_may_have_a_value_and_a_grad_result():
    out, _ = results_roundtrip([("value", 3, np.arange(4.0)), ("grad", 3, np.ones(4))])
    assert [(r.kind, r.id, r.array.tolist()) for r in out] == [
        ("value", 3, [0.0, 1.0, 2.0, 3.0]), ("grad", 3, [1.0, 1.0, 1.0, 1.0])]


def test_duplicate_ids_and_missing_header():
    messages = simple_request()
    messages[1].graph.leaves.append(messages[1].graph.leaves[0])
    with pytest.raises(codec.WireError, match="tensor 0: id used twice"):
        decode_request(iter(messages))
    with pytest.raises(codec.WireError, match="must start with a Header"):
        decode_request(iter(simple_request()[1:]))
    with pytest.raises(codec.WireError, match="must start with a Header"):
        decode_request(iter([]))


def test_seed_count_must_match_roots():
    messages = simple_request(seeds={1: np.ones(4, np.float32)})
    messages[0].header.roots.append(0)
    with pytest.raises(codec.WireError, match="1 seeds for 2 roots"):
        decode_request(iter(messages))


def test_bad_attribute_value_names_the_node():
    messages = simple_request()
    messages[1].graph.nodes[0].attrs["x"].CopyFrom(pb.Value())
    with pytest.raises(codec.WireError, match=r"node 1 \(tanh\): attribute value has no kind"):
        decode_request(iter(messages))


def test_response_stream_errors():
    header, chunk = list(codec.result_messages("value", 3, np.arange(4.0)))
    with pytest.raises(codec.WireError, match="without a Summary"):
        list(codec.read_results([header, chunk]))
    with pytest.raises(codec.WireError, match="tensor 3: summary after 0 of 32"):
        list(codec.read_results([header, codec.summary_message()]))
    with pytest.raises(codec.WireError, match="chunk for unknown tensor 3"):
        list(codec.read_results([chunk]))
    with pytest.raises(codec.WireError, match="tensor 3: new TensorHeader before its bytes"):
        list(codec.read_results([header, header]))
    with pytest.raises(codec.WireError, match="tensor 3: chunk at offset 0, expected 32"):
        list(codec.read_results([header, chunk, chunk]))
    bad = pb.ComputeResponse()
    bad.CopyFrom(header)
    bad.tensor.spec.dtype = "float128"
    with pytest.raises(codec.WireError, match="tensor 3: unknown dtype"):
        list(codec.read_results([bad]))
