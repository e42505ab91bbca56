"""Executors: where recorded graphs are computed (the engine in this process, or a gRPC service).

`current()` resolves the process-wide executor: the one set by `connect()`, else the
`GRADSERVE_ADDRESS` environment variable, else a private local server started on first use.
"""

from __future__ import annotations

import atexit
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Callable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from gradserve import engine
from gradserve.engine import Graph, Result

__all__ = ["Executor", "InProcessExecutor", "RemoteExecutor", "ServiceError", "connect", "current",
           "disconnect"]

DEFAULT_RETRIES = 5
ROUND_ROBIN = '{"loadBalancingConfig": [{"round_robin": {}}]}'


class ServiceError(RuntimeError):
    """A computation failed in the executor: transport errors and server-side rejections alike.

    `.code` is the `grpc.StatusCode`, `.details` the server's message.
    """

    def __init__(self, code, details: str, target: str | None = None) -> None:
        self.code = code
        self.details = details
        self.target = target
        name = getattr(code, "name", str(code))
        where = f" (executor {target})" if target else ""
        super().__init__(f"{name}: {details}{where}")


class Executor(Protocol):
    target: str

    def evaluate(self, graph: Graph, values: Mapping[int, np.ndarray],
                 outputs: Sequence[int]) -> dict[int, np.ndarray]: ...

    def backward(self, graph: Graph, values: Mapping[int, np.ndarray], roots: Sequence[int],
                 seeds: Mapping[int, np.ndarray], grads: Sequence[int]) -> Iterator[Result]: ...

    def close(self) -> None: ...


def _engine_status(e: Exception):
    # The service's own mapping, so an error reads the same whichever executor computed the graph.
    from gradserve.server.errors import status_for
    return status_for(e)[0]


# ---------------------------------------------------------------------------------------------
# In-process


class InProcessExecutor:
    """Runs the engine in this process; errors are reported exactly as the service reports them."""

    target = "inprocess"

    def __init__(self, limits: engine.Limits | None = None) -> None:
        self.limits = limits or engine.Limits()

    def evaluate(self, graph, values, outputs):
        try:
            out = engine.evaluate(engine.plan(graph, self.limits), values, outputs)
        except engine.EngineError as e:
            raise ServiceError(_engine_status(e), str(e), self.target) from e
        return out   # the engine's results never alias its inputs or each other

    def backward(self, graph, values, roots, seeds, grads):
        try:
            results = list(engine.backward(engine.plan(graph, self.limits), values, roots, seeds, grads))
        except engine.EngineError as e:
            raise ServiceError(_engine_status(e), str(e), self.target) from e
        return iter(results)

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return "InProcessExecutor()"


# ---------------------------------------------------------------------------------------------
# Remote


class RemoteExecutor:
    """One gRPC channel to a gradserve service, reused for every request.

    Small requests (tensors and results each within codec.BATCH_BYTES) go as one message each way
    through EvaluateBatch/BackwardBatch: a bidi stream costs about 1.5 ms more per call. Bigger ones
    stream, with chunks sent and received as pre-serialized frames (codec.request_stream).

    Requests are idempotent (a graph and its leaf values), so UNAVAILABLE is retried with backoff,
    each retry carrying the same request id. Responses are read completely before any result is
    handed on, which is what makes a retry after a half-read stream safe.
    """

    # Graphs up to this many nodes are planned here, when needed, to learn whether their results
    # fit a batch response; bigger graphs stream (their call overhead is small next to the work).
    MAX_PLANNED_NODES = 4096

    def __init__(self, target: str, *, options: Sequence[tuple[str, object]] | None = None,
                 timeout: float | None = None, retries: int = DEFAULT_RETRIES,
                 credentials=None) -> None:
        import grpc

        self.target = target
        self.timeout = timeout
        self.retries = max(1, retries)
        opts = dict(options or ())
        if target.startswith("dns:") and "grpc.service_config" not in opts:
            # NOTE: replicas behind one DNS name are balanced per RPC only with round_robin; the
            # default pick_first sends everything to the first address
            # (https://github.com/grpc/grpc/blob/master/doc/load-balancing.md).
            opts["grpc.service_config"] = ROUND_ROBIN
            # gRPC re-resolves a name at most every 30 s by default: a running client would take
            # that long to use a replica added by a scale-up.
            opts.setdefault("grpc.dns_min_time_between_resolutions_ms", 5000)
        opts.setdefault("grpc.enable_retries", 1)
        items = list(opts.items())
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=items)
        else:
            self._channel = grpc.secure_channel(target, credentials, options=items)
        self._stub = _Stub(self._channel)
        self.last_summary = None
        self.last_call = ""          # "batch" or "stream": how the last request travelled

    def evaluate(self, graph, values, outputs):
        outputs = list(outputs)
        results = self._compute("Evaluate", [outputs],
                                dict(graph=graph, values=values, outputs=outputs))
        return {r.id: r.array for r in results}

    def backward(self, graph, values, roots, seeds, grads):
        roots, seeds, grads = list(roots), dict(seeds), list(grads)
        return iter(self._compute("Backward", [roots, grads], dict(
            graph=graph, values=values, roots=roots, seeds=seeds, grads=grads)))

    def info(self):
        from gradserve.v1 import gradserve_pb2 as pb

        return self._retrying(lambda: self._stub.GetInfo(pb.InfoRequest(), timeout=self.timeout))

    def _compute(self, method: str, wanted: Sequence[Sequence[int]], request: dict) -> list[Result]:
        """`method` ("Evaluate" or "Backward") as its one-message batch call when the request and
        its results (`wanted`: lists of ids) fit one, else as the stream."""
        from gradserve import codec

        request["request_id"] = uuid.uuid4().hex        # the same on every retry
        batch = None
        seeds = request.get("seeds") or {}
        if _result_bytes(request["graph"], seeds, wanted, self.MAX_PLANNED_NODES) <= codec.BATCH_BYTES:
            batch = codec.request_batch(**request)
        if batch is not None:
            try:
                return self._call(method + "Batch", lambda: batch)
            except ServiceError as e:
                # The results were estimated to fit one message; should the server disagree
                # (another engine version), the stream carries any size.
                if not (getattr(e.code, "name", "") == "INVALID_ARGUMENT"
                        and codec.is_batch_overflow(e.details)):
                    raise
        return self._call(method, lambda: codec.request_stream(**request))

    def _call(self, method: str, request: Callable[[], object]) -> list[Result]:
        """Every result of `method` called with `request()`, retried while UNAVAILABLE."""
        from gradserve import codec

        def once():
            state = codec.ReadState()
            # The stub is looked up per call: tests and tools may wrap its methods.
            call = getattr(self._stub, method)(request(), timeout=self.timeout)
            results = list(codec.read_results(call, state))
            self.last_summary = state.summary
            self.last_call = "batch" if method.endswith("Batch") else "stream"
            return results

        return self._retrying(once)

    def _retrying(self, call):
        import grpc

        delay = 0.05
        for attempt in range(self.retries):
            try:
                return call()
            except grpc.RpcError as e:
                code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
                if code == grpc.StatusCode.UNAVAILABLE and attempt + 1 < self.retries:
                    time.sleep(delay)
                    delay = min(delay * 3, 2.0)
                    continue
                details = e.details() if hasattr(e, "details") else str(e)
                raise ServiceError(code, details or "", self.target) from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._channel.close()

    def __repr__(self) -> str:
        return f"RemoteExecutor({self.target!r})"


class _Stub:
    """The Gradients methods on one channel; the streams use the codec's frame (de)serializers."""

    def __init__(self, channel) -> None:
        from gradserve import codec
        from gradserve.v1 import gradserve_pb2 as pb

        def method(kind, name, serializer, deserializer):
            return getattr(channel, kind)(f"/gradserve.v1.Gradients/{name}",
                                          request_serializer=serializer,
                                          response_deserializer=deserializer, _registered_method=True)

        def encode_pb(message):
            return message.SerializeToString()

        self.Evaluate = method("stream_stream", "Evaluate", codec.encode, codec.decode_response)
        self.Backward = method("stream_stream", "Backward", codec.encode, codec.decode_response)
        self.EvaluateBatch = method("unary_unary", "EvaluateBatch", encode_pb,
                                    pb.ResponseBatch.FromString)
        self.BackwardBatch = method("unary_unary", "BackwardBatch", encode_pb,
                                    pb.ResponseBatch.FromString)
        self.GetInfo = method("unary_unary", "GetInfo", encode_pb, pb.InfoResponse.FromString)


def _result_bytes(graph: Graph, seeds: Mapping[int, np.ndarray], wanted: Sequence[Sequence[int]],
                  max_planned_nodes: int) -> float:
    """Bytes of the results for `wanted` (lists of ids: values of roots or outputs, gradients), as
    far as the graph tells without running it; infinity when that would take planning a big graph."""
    sizes = {leaf.id: math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize for leaf in graph.leaves}
    for root, seed in seeds.items():
        sizes.setdefault(root, np.asarray(seed).nbytes)    # a root's value has its seed's shape
    if any(i not in sizes for ids in wanted for i in ids):
        if len(graph.nodes) > max_planned_nodes:
            return math.inf
        try:
            specs = engine.plan(graph).specs
        except engine.EngineError:
            return 0          # the server reports the error, from a one-message call as well
        for i in (i for ids in wanted for i in ids):
            spec = specs.get(i)
            if spec is not None:
                sizes.setdefault(i, spec.numel * spec.dtype.itemsize)
    return sum(sizes.get(i, 0) for ids in wanted for i in dict.fromkeys(ids))


# ---------------------------------------------------------------------------------------------
# A private local server, started on first use when nothing is configured


class LocalServer:
    """`gradserve serve --port 0` in a subprocess; the first stdout line is its address."""

    def __init__(self, workers: int | None = None, startup_timeout: float = 60.0) -> None:
        cmd = [sys.executable, "-m", "gradserve.server.cli", "serve", "--host", "127.0.0.1",
               "--port", "0"]
        if workers is not None:
            cmd += ["--workers", str(workers)]
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, text=True,
                                        stdin=subprocess.DEVNULL)
        line = _readline(self.process, startup_timeout)
        if not line:
            self.stop()
            self._log.seek(0)
            log = self._log.read().decode(errors="replace").strip()
            raise RuntimeError(f"gradserve: could not start a local server ({' '.join(cmd)}):\n{log}")
        self.address = line.strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _readline(process: subprocess.Popen, timeout: float) -> str:
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return out[0] if out else ""


# ---------------------------------------------------------------------------------------------
# The process-wide executor


_lock = threading.RLock()
_current: Executor | None = None
_local: LocalServer | None = None


def _make(target: str, **kwargs) -> Executor:
    if target == "inprocess":
        return InProcessExecutor()
    return RemoteExecutor(target, **kwargs)


def connect(target: str = "inprocess", *, timeout: float | None = None,
            options: Sequence[tuple[str, object]] | None = None, retries: int = DEFAULT_RETRIES,
            credentials=None) -> Executor:
    """Compute on `target` from now on: "host:port", "dns:///name:port" or "inprocess"."""
    global _current
    executor = _make(target, timeout=timeout, options=options, retries=retries,
                     credentials=credentials)
    with _lock:
        old, _current = _current, executor
    if old is not None:
        old.close()
    return executor


def disconnect() -> None:
    """Forget the current executor (and stop the private local server, if one was started)."""
    global _current, _local
    with _lock:
        old, _current = _current, None
        local, _local = _local, None
    if old is not None:
        old.close()
    if local is not None:
        local.stop()


def current() -> Executor:
    global _current, _local
    with _lock:
        if _current is not None:
            return _current
        target = os.environ.get("GRADSERVE_ADDRESS", "").strip()
        timeout = os.environ.get("GRADSERVE_TIMEOUT")
        kwargs = {} if not timeout else {"timeout": float(timeout)}
        if target:
            _current = _make(target, **kwargs)
            return _current
        _local = LocalServer()
        atexit.register(_stop_local)
        print(f"gradserve: started a local gradient server at {_local.address} "
              f"(pid {_local.process.pid}); it stops when this process exits. "
              "Set GRADSERVE_ADDRESS or call gradserve.connect() to use another.", file=sys.stderr)
        _current = RemoteExecutor(_local.address, **kwargs)
        return _current


def _stop_local() -> None:
    global _local
    with _lock:
        local, _local = _local, None
    if local is not None:
        local.stop()
