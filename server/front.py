"""The front process's request path: admission, validation, shared-memory layout, streaming results.

A request is checked with engine.plan (shapes, dtypes, ops, limits) before anything is allocated;
the plan also gives the size of every result, so one block holds the leaves, the seeds and the
results. Chunks are copied straight from the gRPC messages into the block; the worker reads the
leaves and writes each result in place, and the RPC thread streams a result the moment the worker
says it is final.

Tiny requests are computed inline, in the RPC thread, when no other inline request is running: the
hand-off to a worker and back (pickling, two pipe hops, the pool thread, a second plan) costs more
than their whole computation. The gate is on the plan's inferred sizes, never on what the client
claims: at most Options.inline_max_nodes nodes and Options.inline_max_elements elements summed over
every leaf and node, so an inline request holds the front's GIL for at most a few milliseconds (the
costliest op, a matmul, is O(elements^1.5)). Such a request is admitted like any other, polls
cancellation and its deadline between nodes, and reports the same errors.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import pickle
import threading
import time
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from gradserve import codec, engine
from gradserve.v1 import gradserve_pb2 as pb

from . import errors
from .faults import DeadlineExceeded, Overloaded, RequestCancelled
from .options import Options
from .pool import Job, WorkerPool, worker_error
from .shm import BlockPool
from .worker import JobSpec, Slot, execute, pack_graph, slot_array

log = logging.getLogger("gradserve.server.requests")

ALIGN = 64                    # every tensor starts on a cache line


class Admission:
    """Bounds the requests and tensor bytes in flight; beyond them, Overloaded."""

    def __init__(self, max_requests: int, max_bytes: int) -> None:
        self.max_requests, self.max_bytes = max_requests, max_bytes
        self._lock = threading.Lock()
        self.requests = 0
        self.bytes = 0

    def admit(self) -> None:
        with self._lock:
            if self.requests >= self.max_requests:
                raise Overloaded(f"{self.requests} requests in flight, the limit is {self.max_requests}")
            self.requests += 1

    def reserve(self, nbytes: int) -> None:
        with self._lock:
            if nbytes > self.max_bytes:
                raise Overloaded(f"the request needs {nbytes} bytes of tensors and results, over "
                                 f"the limit of {self.max_bytes}")
            if self.bytes + nbytes > self.max_bytes:
                raise Overloaded(f"{self.bytes} bytes in flight; {nbytes} more would exceed "
                                 f"{self.max_bytes}")
            self.bytes += nbytes

    def release(self, nbytes: int) -> None:
        with self._lock:
            self.requests -= 1
            self.bytes -= nbytes


class _Lease:
    """The request's admission and block, freed when both the RPC thread and the pool let go."""

    def __init__(self, admission: Admission, blocks: BlockPool) -> None:
        self._admission, self._blocks = admission, blocks
        self._lock = threading.Lock()
        self._refs = 1
        self.nbytes = 0
        self.block = None

    def hold(self) -> None:
        with self._lock:
            self._refs += 1

    def drop(self) -> None:
        with self._lock:
            self._refs -= 1
            if self._refs:
                return
        if self.block is not None:
            self._blocks.release(self.block)
        self._admission.release(self.nbytes)


def _unique(ids: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(ids))


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


@dataclass(frozen=True)
class Layout:
    """Where each input and result lives in the request's block."""

    inputs: tuple[Slot, ...]
    seeds: tuple[Slot, ...]
    results: tuple[Slot, ...]
    size: int
    result_bytes: int

    @classmethod
    def build(cls, mode: str, head: codec.RequestHead, plan: engine.Plan) -> "Layout":
        offset = 0

        def place(id_: int, shape: tuple[int, ...], dtype: np.dtype, kind: str = "") -> Slot:
            nonlocal offset
            slot = Slot(id_, offset, tuple(shape), codec.DTYPE_NAMES[dtype], kind)
            offset += _aligned(math.prod(shape) * dtype.itemsize)
            return slot

        inputs = tuple(place(t.id, t.shape, t.dtype) for t in head.leaves)
        seeds = tuple(place(t.id, t.shape, t.dtype) for t in head.seeds)
        if mode == "evaluate":
            wanted = [("value", i) for i in _unique(head.outputs)]
        else:
            for root, seed in zip(head.roots, head.seeds, strict=False):  # no seeds: ones
                expected = plan.spec(root).shape
                if seed.shape != expected:
                    raise engine.GraphError(f"seed for root {root} has shape {seed.shape}, "
                                            f"expected {expected}")
            wanted = ([("value", i) for i in _unique(head.roots)]
                      + [("grad", i) for i in _unique(head.grads)])
        results = []
        start = offset
        for kind, id_ in wanted:
            spec = plan.spec(id_)       # raises the engine's ReferenceError_ for an unknown id
            results.append(place(id_, spec.shape, spec.dtype, kind))
        return cls(inputs, seeds, tuple(results), offset, offset - start)

    def buffers(self, buf: memoryview | None) -> dict[int, memoryview]:
        """Writable byte views of every input (leaves and seeds), for codec.RequestReader."""
        out = {}
        for s in (*self.inputs, *self.seeds):
            n = math.prod(s.shape) * codec.DTYPES[s.dtype].itemsize
            out[s.id] = buf[s.offset:s.offset + n] if n else memoryview(b"")
        return out


class Front:
    """What the servicer delegates to."""

    def __init__(self, options: Options, pool: WorkerPool, blocks: BlockPool) -> None:
        self.options = options
        self.pool = pool
        self.blocks = blocks
        self.limits = engine.Limits(max_elements=options.max_elements, max_nodes=options.max_nodes)
        self.admission = Admission(options.max_inflight, options.max_inflight_bytes)
        self._inline = threading.Lock()     # one inline computation at a time
        # Repeated small graphs skip decoding and planning (plans are read-only to the engine).
        self._graphs = codec.GraphCache()
        self._plans = codec.GraphCache()

    def compute(self, mode: str, requests: Iterable[pb.ComputeRequest], context,
                batch: bool = False) -> Iterator[pb.ComputeResponse]:
        """One Evaluate or Backward call, from request stream to response stream. `batch`: the
        one-message variant, whose results must fit codec.BATCH_BYTES."""
        started = time.perf_counter()
        facts = {"request_id": "", "nodes": 0, "in_bytes": 0, "out_bytes": 0, "worker": "",
                 "attempts": 0}
        status = ""
        self.admission.admit()
        lease = _Lease(self.admission, self.blocks)
        job = None
        try:
            # The graph is held in this process until planned: bounded like the request's tensors.
            reader = codec.RequestReader(requests, self._graphs, max_nodes=self.limits.max_nodes,
                                         max_graph_bytes=self.options.max_inflight_bytes)
            head = reader.head()
            facts["request_id"], facts["nodes"] = head.request_id, len(head.graph.nodes)
            plan = self._plan(head)
            layout = Layout.build(mode, head, plan)
            if batch and layout.result_bytes > codec.BATCH_BYTES:
                raise codec.batch_overflow(layout.result_bytes)
            self.admission.reserve(layout.size)
            lease.nbytes = layout.size
            small = self._inline_gate(plan)
            if small:         # uploaded before taking the inline slot: a slow client never holds it
                buf = memoryview(bytearray(layout.size))
            elif layout.size:
                lease.block = self.blocks.acquire(layout.size)
                buf = lease.block.buf
            else:
                buf = None
            uploading = time.perf_counter()
            buffers = layout.buffers(buf)
            try:
                reader.read_into(buffers)
            finally:
                for view in buffers.values():   # else a traceback pins the block's mapping
                    view.release()
            facts["upload_ms"] = round((time.perf_counter() - uploading) * 1e3, 2)
            facts["in_bytes"] = sum(t.nbytes for t in head.tensors)
            # The job id, graph and block are filled in by _submit: computing inline needs none.
            spec = JobSpec(job_id=0, mode=mode, leaves=(), nodes=(), limits=self.limits, block="",
                           block_size=0, inputs=layout.inputs, seeds=layout.seeds,
                           outputs=tuple(_unique(head.outputs)), roots=tuple(head.roots),
                           grads=tuple(_unique(head.grads)), results=layout.results)
            if small and self._inline.acquire(blocking=False):
                try:
                    events = self._run_inline(spec, buf, plan, context)
                finally:
                    self._inline.release()
            else:
                if small and layout.size:     # another inline request is running: use a worker
                    lease.block = self.blocks.acquire(layout.size)
                    lease.block.buf[:layout.size] = buf
                    buf = lease.block.buf
                job = Job(head.request_id)
                events = self._submit(job, spec, head.graph, lease, context)
            for event in events:
                if event[0] == "result":
                    slot = layout.results[event[1]]
                    array = slot_array(buf, slot) if event[2] else None
                    facts["out_bytes"] += array.nbytes if array is not None else 0
                    yield from codec.result_messages(slot.kind, slot.id, array, frames=not batch)
                    array = None
                elif event[0] == "done":
                    facts["worker"] = event[3]
                    status = "OK"     # even if the client hangs up right after the summary
                    yield codec.summary_message(event[1], event[2], event[3])
                    return
                else:
                    raise event[1]
        except BaseException as e:
            status = status or errors.status_for(e)[0].name
            raise
        finally:
            buf = array = None          # views of the block, which a traceback would keep
            lease.drop()
            if job is not None:
                facts["attempts"] = job.attempts
            if log.isEnabledFor(logging.DEBUG):
                log.debug("rpc=%s status=%s ms=%.2f %s", mode, status,
                          (time.perf_counter() - started) * 1e3,
                          " ".join(f"{k}={v}" for k, v in facts.items()))

    def _plan(self, head: codec.RequestHead) -> engine.Plan:
        key = head.graph_key
        plan = self._plans.get(key) if key is not None else None
        if plan is None:
            plan = engine.plan(head.graph, self.limits)      # errors are not cached: they re-raise
            if key is not None:
                self._plans.put(key, plan)
        return plan

    def _inline_gate(self, plan: engine.Plan) -> bool:
        """Small enough to compute in the front (see the module docstring)?"""
        o = self.options
        if not o.inline_max_nodes or len(plan.graph.nodes) > o.inline_max_nodes:
            return False
        total = 0
        for spec in plan.spec_list:
            total += math.prod(spec.shape)
            if total > o.inline_max_elements:
                return False
        return True

    def _run_inline(self, spec: JobSpec, buf: memoryview, plan: engine.Plan, context) -> list[tuple]:
        """Compute in this thread; the events the pool would deliver, computed to the end."""
        def stop() -> bool:
            return not context.is_active()

        events: list[tuple] = []
        end = execute(spec, buf, stop, lambda *msg: events.append(("result", msg[2], msg[3])),
                      plan=plan)
        if end[0] == "done":
            events.append(("done", end[2], end[3], "front"))
        elif end[2] == "Cancelled" or not context.is_active():
            events.append(("failed", self._ended(context)))
        else:
            events.append(("failed", worker_error(end[2], end[3])))
        return events

    def _submit(self, job: Job, spec: JobSpec, graph: engine.Graph, lease: _Lease,
                context) -> Iterator[tuple]:
        """Hand the job to the pool; its events as the worker reports them."""
        leaves, nodes = pack_graph(graph)
        block = lease.block
        job.payload = pickle.dumps(dataclasses.replace(
            spec, job_id=job.job_id, leaves=leaves, nodes=nodes, block=block.name if block else "",
            block_size=block.size if block else 0), protocol=pickle.HIGHEST_PROTOCOL)
        lease.hold()
        job.on_release = lease.drop
        try:
            self.pool.submit(job)
        except BaseException:
            job.on_release = None
            lease.drop()
            raise
        if not context.add_callback(lambda: self._rpc_ended(job, context)):
            self._rpc_ended(job, context)
        return iter(job.events.get, None)

    def _rpc_ended(self, job: Job, context) -> None:
        """Called by gRPC when the call ends for any reason; stops the job if it is still going."""
        if job.state != "finished":
            self.pool.cancel(job, self._ended(context))

    @staticmethod
    def _ended(context) -> Exception:
        """Why a call is no longer active: its deadline passed, or the client cancelled it."""
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            return DeadlineExceeded("deadline exceeded")
        return RequestCancelled("cancelled by the client")

    def info(self) -> pb.InfoResponse:
        from importlib import metadata

        try:
            version = metadata.version("gradserve")
        except metadata.PackageNotFoundError:
            version = "unknown"
        o = self.options
        return pb.InfoResponse(
            server_version=version, protocol_version=codec.PROTOCOL_VERSION,
            ops=[pb.OpInfo(name=name, differentiable=op.differentiable)
                 for name, op in sorted(engine.OPS.items())],
            dtypes=list(codec.DTYPES), workers=o.workers, max_elements=o.max_elements,
            max_request_bytes=o.max_inflight_bytes, max_inflight_requests=o.max_inflight,
            max_inflight_bytes=o.max_inflight_bytes, chunk_bytes=codec.CHUNK_BYTES,
            numpy_version=np.__version__)
