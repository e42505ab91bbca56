"""The gradserve.v1.Gradients servicer: a thin adapter from RPCs to the Front (no error handling here)."""

from __future__ import annotations

from gradserve.v1 import gradserve_pb2 as pb
from gradserve.v1 import gradserve_pb2_grpc as pb_grpc

from .front import Front


class GradientsServicer(pb_grpc.GradientsServicer):
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
