"""Exceptions -> gRPC status codes, in this one place, applied to every RPC by an interceptor."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError

from gradserve import codec, engine

from . import faults

log = logging.getLogger("gradserve.server")

# First match wins: subclasses before their bases.
_CODES: list[tuple[type[BaseException], grpc.StatusCode]] = [
    (engine.UnknownOpError, grpc.StatusCode.UNIMPLEMENTED),
    (engine.LimitError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (engine.Cancelled, grpc.StatusCode.CANCELLED),
    # Every other engine error is about the graph or values the client sent (messages name node
    # and op); never INTERNAL for those.
    (engine.EngineError, grpc.StatusCode.INVALID_ARGUMENT),
    (codec.WireError, grpc.StatusCode.INVALID_ARGUMENT),
    (faults.Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (MemoryError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (faults.RequestCancelled, grpc.StatusCode.CANCELLED),
    (faults.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (faults.WorkerLost, grpc.StatusCode.UNAVAILABLE),
    (faults.ShuttingDown, grpc.StatusCode.UNAVAILABLE),
    # The request stream broke off: the client cancelled or its deadline passed mid-upload.
    (grpc.RpcError, grpc.StatusCode.CANCELLED),
    (GeneratorExit, grpc.StatusCode.CANCELLED),
]


# NOTE: details travel in trailing metadata, which clients refuse beyond 16 KiB (and may refuse
# beyond 8 KiB), reporting RESOURCE_EXHAUSTED instead of the real status
# (https://github.com/grpc/grpc/issues/37852). Messages can quote what the client sent (attribute
# values, ids), and percent-encoding can triple their bytes.
MAX_DETAILS_BYTES = 2048


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and details a client sees for `exc`."""
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code, _bounded(str(exc) or kind.__name__)
    return grpc.StatusCode.INTERNAL, f"internal server error ({type(exc).__name__})"


def _bounded(details: str) -> str:
    raw = details.encode()
    if len(raw) <= MAX_DETAILS_BYTES:
        return details
    return raw[:MAX_DETAILS_BYTES].decode(errors="ignore") + " [truncated]"


@dataclass(frozen=True, slots=True)
class _Undecodable:
    """Stands in for a request message protobuf could not parse (malformed, or nested deeper
    than its recursion limit)."""

    error: str


def _tolerant(deserializer):
    # NOTE: when a request deserializer raises, gRPC answers INTERNAL ("Exception deserializing
    # request!", https://github.com/grpc/grpc/blob/master/src/python/grpcio/grpc/_server.py). The
    # bytes are the client's, so the message is handed on and rejected where it is used.
    def deserialize(data: bytes):
        try:
            return deserializer(data)
        except DecodeError as e:
            return _Undecodable(str(e))

    return deserialize


def _parsed(message):
    if type(message) is _Undecodable:
        raise codec.WireError(f"a request message is not valid protobuf: {message.error}")
    return message


def _abort(exc: Exception, context: grpc.ServicerContext, method: str):
    code, details = status_for(exc)
    if code is grpc.StatusCode.INTERNAL:
        log.error("%s failed", method, exc_info=exc)
    context.abort(code, details)


class ErrorInterceptor(grpc.ServerInterceptor):
    """Wraps every handler so servicer methods contain no try/except of their own."""

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        deserialize = _tolerant(handler.request_deserializer)
        if handler.unary_unary:
            inner = handler.unary_unary

            def unary_unary(request, context):
                try:
                    return inner(_parsed(request), context)
                except Exception as e:
                    _abort(e, context, method)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, deserialize, handler.response_serializer)
        if handler.stream_stream:
            inner_stream = handler.stream_stream

            def stream_stream(requests, context):
                try:
                    yield from inner_stream(map(_parsed, requests), context)
                except Exception as e:
                    _abort(e, context, method)

            return grpc.stream_stream_rpc_method_handler(
                stream_stream, deserialize, handler.response_serializer)
        return handler       # health and reflection: their own status handling
