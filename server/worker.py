"""Worker process: runs jobs with the engine on tensors mapped from shared memory.

Imports the engine and the standard library only (no gRPC, no protobuf): workers are spawned
processes, and a heavy or fork-unsafe import here would be paid, or inherited, by every one of them.
Protocol on the duplex pipe (front -> worker: pickled JobSpec, or b"" to exit; worker -> front):
    ("ready", pid)
    ("result", job_id, index, present)      # results[index] is final and written to the block
    ("done", job_id, nodes, seconds)
    ("error", job_id, error_type, message)  # error_type: an engine error class name, "MemoryError"
                                            # or "internal"
"""

from __future__ import annotations

import math
import os
import pickle
import signal
import time
import traceback
from dataclasses import dataclass

import numpy as np

from gradserve import engine
from gradserve.engine import Graph, Leaf, Limits, Node

from .shm import map_block, open_block

BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True, slots=True)
class Slot:
    """Where one tensor lives in a job's block."""

    id: int
    offset: int
    shape: tuple[int, ...]
    dtype: str
    kind: str = ""               # results only: "value" or "grad"


def pack_graph(graph: Graph) -> tuple[tuple, tuple]:
    return (tuple((x.id, x.shape, x.dtype.str, x.requires_grad) for x in graph.leaves),
            tuple((n.id, n.op, n.inputs, n.attrs) for n in graph.nodes))


def unpack_graph(leaves: tuple, nodes: tuple) -> Graph:
    dtypes = {}
    return Graph([Leaf(i, shape, dtypes.get(d) or dtypes.setdefault(d, np.dtype(d)), rg)
                  for i, shape, d, rg in leaves],
                 [Node(*n) for n in nodes])


def slot_array(buf, slot: Slot, writable: bool = False) -> np.ndarray:
    """The tensor in `slot` of a block (any buffer laid out the same way), without a copy."""
    dtype = np.dtype(slot.dtype).newbyteorder("<")
    count = math.prod(slot.shape)
    if count == 0:
        return np.empty(slot.shape, dtype)
    a = np.frombuffer(buf, dtype, count, slot.offset).reshape(slot.shape)
    a.flags.writeable = writable
    return a


@dataclass(frozen=True, slots=True)
class JobSpec:
    job_id: int
    mode: str                    # "evaluate" or "backward"
    leaves: tuple                # (id, shape, dtype name, requires_grad): plain tuples pickle fast
    nodes: tuple                 # (id, op, inputs, attrs)
    limits: Limits
    block: str                   # shared-memory block name
    block_size: int
    inputs: tuple[Slot, ...]     # leaves
    seeds: tuple[Slot, ...]      # seeds[i] pairs with roots[i]; empty: ones
    outputs: tuple[int, ...]
    roots: tuple[int, ...]
    grads: tuple[int, ...]
    results: tuple[Slot, ...]    # where each result is written, in the order the front expects


def main(conn, cancel, name: str) -> None:
    """Process entry point: serve jobs until the pipe closes or an empty message arrives."""
    # Ctrl-C reaches the whole process group; the front shuts its workers down itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            payload = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if not payload:
            return
        job: JobSpec = pickle.loads(payload)
        conn.send(run(job, cancel, lambda *msg: conn.send(msg)))


def run(job: JobSpec, cancel, send) -> tuple:
    """Run one job; `send` reports each result; returns the final "done" or "error" message."""
    if not job.block_size:
        return execute(job, None, lambda: cancel.value == job.job_id, send)
    fd = open_block(job.block)
    try:
        mm = map_block(fd, job.block_size)
        try:
            return execute(job, mm, lambda: cancel.value == job.job_id, send, fd=fd)
        finally:
            try:
                mm.close()
            except BufferError:
                pass      # a view is still alive (e.g. in a traceback); unmapped when it goes
    finally:
        os.close(fd)


def execute(job: JobSpec, buf, should_stop, send, plan=None, fd: int | None = None) -> tuple:
    """Compute `job` on the tensors in `buf` (the job's block, or any writable buffer laid out the
    same way), writing each result in place; `plan`: the graph already planned (the front's inline
    path), else it is decoded from the job and planned here. Returns "done" or "error".

    `fd`: the block's file. Results are then written with pwrite rather than through the mapping:
    the same one copy, but without a page fault per 4 KiB page (shared memory gets no huge pages)
    and without those pages counting in this process's resident set."""
    started = time.perf_counter()
    values = seeds = None
    try:
        values = {s.id: slot_array(buf, s) for s in job.inputs}
        if plan is None:
            plan = engine.plan(unpack_graph(job.leaves, job.nodes), job.limits)
        index = {(s.kind, s.id): k for k, s in enumerate(job.results)}

        def emit(kind: str, id_: int, array) -> None:
            k = index.get((kind, id_))
            if k is None:
                return
            if array is not None:
                slot = job.results[k]
                if (fd is not None and array.flags.c_contiguous
                        and array.dtype == np.dtype(slot.dtype).newbyteorder("<")):
                    _pwrite_all(fd, memoryview(array.reshape(-1)).cast("B"), slot.offset)
                else:
                    np.copyto(slot_array(buf, slot, writable=True), array, casting="same_kind")
            send("result", job.job_id, k, array is not None)

        if job.mode == "evaluate":
            out = engine.evaluate(plan, values, list(job.outputs), should_stop=should_stop)
            for id_ in job.outputs:
                emit("value", id_, out[id_])
            out = None
        else:
            # A root listed twice is seeded with the sum of its seeds, as autograd adds them up.
            seeds = {}
            for k, root in enumerate(job.roots):
                if job.seeds:
                    seed = slot_array(buf, job.seeds[k])
                else:
                    seed = np.ones(plan.spec(root).shape, plan.spec(root).dtype)
                seeds[root] = seed if root not in seeds else seeds[root] + seed
            for r in engine.backward(plan, values, list(seeds), seeds, list(job.grads),
                                     should_stop=should_stop):
                emit(r.kind, r.id, r.array)
                r = None
        return ("done", job.job_id, len(plan.graph.nodes), time.perf_counter() - started)
    except engine.EngineError as e:
        return ("error", job.job_id, type(e).__name__, str(e))
    except MemoryError:
        return ("error", job.job_id, "MemoryError", "the worker ran out of memory")
    except Exception:
        return ("error", job.job_id, "internal", traceback.format_exc())
    finally:
        values = seeds = None


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n
