"""The gradserve.v1.Gradients servicer: a thin adapter from RPCs to the Front (no error handling here).

The streaming methods are registered with the codec's frame-aware (de)serializers instead of the
generated ones: received chunks are memoryviews of the received bytes and outgoing chunks are
pre-serialized, which saves four copies of every tensor byte (codec, "Chunks as pre-serialized
frames"). The bytes on the wire are the same protobuf messages either way.
"""

from __future__ import annotations

import grpc

from gradserve import codec
from gradserve.v1 import gradserve_pb2 as pb

from .app import SERVICE_NAME
from .front import Front


class GradientsServicer:
    def __init__(self, front: Front) -> None:
        self._front = front

    def Evaluate(self, request_iterator, context):
        return self._front.compute("evaluate", request_iterator, context)

    def Backward(self, request_iterator, context):
        return self._front.compute("backward", request_iterator, context)

    def EvaluateBatch(self, request, context):
        return pb.ResponseBatch(messages=self._front.compute("evaluate", request.messages, context,
                                                             batch=True))

    def BackwardBatch(self, request, context):
        return pb.ResponseBatch(messages=self._front.compute("backward", request.messages, context,
                                                             batch=True))

    def GetInfo(self, request, context):
        return self._front.info()


def add_to_server(servicer: GradientsServicer, server: grpc.Server) -> None:
    def stream(method):
        return grpc.stream_stream_rpc_method_handler(
            method, request_deserializer=codec.decode_request, response_serializer=codec.encode)

    def unary(method, request):
        return grpc.unary_unary_rpc_method_handler(
            method, request_deserializer=request.FromString,
            response_serializer=lambda m: m.SerializeToString())

    handlers = {
        "Evaluate": stream(servicer.Evaluate),
        "Backward": stream(servicer.Backward),
        "EvaluateBatch": unary(servicer.EvaluateBatch, pb.RequestBatch),
        "BackwardBatch": unary(servicer.BackwardBatch, pb.RequestBatch),
        "GetInfo": unary(servicer.GetInfo, pb.InfoRequest),
    }
    missing = set(pb.DESCRIPTOR.services_by_name["Gradients"].methods_by_name) - set(handlers)
    if missing:      # a method added to the .proto must be served here too
        raise RuntimeError(f"no handler for {sorted(missing)}")
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
