"""Executors: where recorded graphs are computed (the engine in this process, or a gRPC service).

`current()` resolves the process-wide executor: the one set by `connect()`, else the
`GRADSERVE_ADDRESS` environment variable, else a private local server started on first use.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Callable, Iterable, Iterator, Mapping, Protocol, Sequence

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


def _status(name: str):
    import grpc
    return getattr(grpc.StatusCode, name)


def _engine_status(e: Exception):
    if isinstance(e, engine.UnknownOpError):
        return _status("UNIMPLEMENTED")
    if isinstance(e, engine.LimitError):
        return _status("RESOURCE_EXHAUSTED")
    if isinstance(e, engine.Cancelled):
        return _status("CANCELLED")
    if isinstance(e, engine.GraphError):
        return _status("INVALID_ARGUMENT")
    return _status("INTERNAL")


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
        return {i: _own(a) for i, a in out.items()}

    def backward(self, graph, values, roots, seeds, grads):
        try:
            results = list(engine.backward(engine.plan(graph, self.limits), values, roots, seeds, grads))
        except engine.EngineError as e:
            raise ServiceError(_engine_status(e), str(e), self.target) from e
        return iter([Result(r.kind, r.id, None if r.array is None else _own(r.array)) for r in results])

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return "InProcessExecutor()"


def _own(a: np.ndarray) -> np.ndarray:
    # The engine may hand back views of the leaf arrays it was given; a tensor's value must not
    # alias another tensor's (`.numpy()` exposes it for writing).
    return a.copy() if a.base is not None else a


# ---------------------------------------------------------------------------------------------
# Remote


class RemoteExecutor:
    """One gRPC channel to a gradserve service, reused for every request.

    Requests are idempotent (a graph and its leaf values), so UNAVAILABLE is retried with backoff,
    each retry carrying the same request id. Responses are read completely before any result is
    handed on, which is what makes a retry after a half-read stream safe.
    """

    def __init__(self, target: str, *, options: Sequence[tuple[str, object]] | None = None,
                 timeout: float | None = None, retries: int = DEFAULT_RETRIES,
                 credentials=None) -> None:
        import grpc

        from gradserve.v1 import gradserve_pb2_grpc as pb_grpc

        self.target = target
        self.timeout = timeout
        self.retries = max(1, retries)
        opts = dict(options or ())
        if target.startswith("dns:") and "grpc.service_config" not in opts:
            # NOTE: replicas behind one DNS name are balanced per RPC only with round_robin
            # (../shared/reference/grpc-transport.md §0.5).
            opts["grpc.service_config"] = ROUND_ROBIN
        opts.setdefault("grpc.enable_retries", 1)
        items = list(opts.items())
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=items)
        else:
            self._channel = grpc.secure_channel(target, credentials, options=items)
        self._stub = pb_grpc.GradientsStub(self._channel)
        self.last_summary = None

    def evaluate(self, graph, values, outputs):
        from gradserve import codec

        def requests():
            return codec.request_messages(graph=graph, values=values, outputs=list(outputs),
                                          request_id=rid)
        rid = uuid.uuid4().hex
        results = self._call(self._stub.Evaluate, requests)
        return {r.id: r.array for r in results}

    def backward(self, graph, values, roots, seeds, grads):
        from gradserve import codec

        def requests():
            return codec.request_messages(graph=graph, values=values, roots=list(roots),
                                          seeds=dict(seeds), grads=list(grads), request_id=rid)
        rid = uuid.uuid4().hex
        return iter(self._call(self._stub.Backward, requests))

    def info(self):
        from gradserve.v1 import gradserve_pb2 as pb

        return self._retrying(lambda: self._stub.GetInfo(pb.InfoRequest(), timeout=self.timeout))

    def _call(self, method, requests: Callable[[], Iterable]) -> list[Result]:
        from gradserve import codec

        def once():
            state = codec.ReadState()
            results = list(codec.read_results(method(requests(), timeout=self.timeout), state))
            self.last_summary = state.summary
            return results
        return self._retrying(once)

    def _retrying(self, call):
        import grpc

        delay = 0.05
        for attempt in range(self.retries):
            try:
                return call()
            except grpc.RpcError as e:
                code = e.code() if hasattr(e, "code") else _status("UNKNOWN")
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
    kwargs = {} if target == "inprocess" else dict(timeout=timeout, options=options, retries=retries,
                                                   credentials=credentials)
    executor = _make(target, **kwargs)
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
            _current = _make(target, **({} if target == "inprocess" else kwargs))
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
