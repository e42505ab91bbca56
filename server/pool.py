"""The worker pool: spawned worker processes fed from one central queue, with fault handling.

One thread (the pool loop) watches every worker's pipe and process sentinel. Jobs are dispatched per
request to whichever worker is idle, from the submitting thread when one is free, else by the loop
when a worker finishes. A worker that dies (SIGKILL, OOM) is replaced at once and its job is retried
once on another worker; a job that is cancelled stops at the next node via a shared cancel word, and
a worker that does not become free within `kill_after` seconds is killed and replaced.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Callable

from gradserve import engine

from . import worker
from .faults import ShuttingDown, WorkerFailure, WorkerLost

log = logging.getLogger("gradserve.server.pool")

MAX_ATTEMPTS = 2              # the first run and one retry: gradient computation is idempotent
MAX_START_FAILURES = 5        # consecutive workers dying before "ready": stop respawning
_JOB_IDS = itertools.count(1)  # process-wide: a worker's cancel word must never match a stale id


@dataclass(eq=False)
class Job:
    """One request's work; `events` feeds the RPC thread that streams the results."""

    request_id: str
    job_id: int = field(default_factory=lambda: next(_JOB_IDS))
    payload: bytes = b""                             # pickled worker.JobSpec with this job_id
    events: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    on_release: Callable[[], None] | None = None     # runs when the pool no longer needs the block
    attempts: int = 0
    state: str = "new"                               # new, queued, running, finished
    cancel_reason: Exception | None = None
    kill_at: float | None = None
    delivered: set[int] = field(default_factory=set)

    def finish(self, event: tuple) -> None:
        self.state = "finished"
        self.events.put(event)
        release, self.on_release = self.on_release, None
        if release is not None:
            release()


@dataclass(eq=False)
class _Worker:
    index: int
    process: mp.process.BaseProcess
    conn: mp.connection.Connection
    cancel: object                                   # shared int64: id of the job to stop
    ready: bool = False
    job: Job | None = None
    killed: bool = False
    pid: int = 0

    @property
    def name(self) -> str:
        return f"worker-{self.index}/{self.pid}"


class WorkerPool:
    def __init__(self, size: int, *, kill_after: float = 1.0, blas_threads: int = 1) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one worker")
        # NOTE: spawn, never fork: gRPC core must not be forked once it has threads
        # (https://github.com/grpc/grpc/blob/master/doc/fork_support.md, grpc#16001). Replacements
        # are spawned later, while gRPC runs: spawn is fork+exec, so nothing of gRPC survives in them.
        self._ctx = mp.get_context("spawn")
        self.size = size
        self.kill_after = kill_after
        self._blas_env = {name: str(blas_threads) for name in worker.BLAS_ENV}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: deque[Job] = deque()
        self._closing = False
        self._start_failures = 0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._workers: list[_Worker] = [self._spawn(i) for i in range(size)]
        self._thread = threading.Thread(target=self._loop, name="gradserve-pool", daemon=True)
        self._thread.start()
        # Runs before multiprocessing's own exit hook (atexit is LIFO), which would otherwise
        # terminate the workers under the loop's feet and have it respawn them.
        atexit.register(self.close, 1.0)

    # -----------------------------------------------------------------------------------------
    # public

    def submit(self, job: Job) -> None:
        with self._lock:
            if self._closing:
                raise ShuttingDown("the server is shutting down")
            job.state = "queued"
            self._queue.append(job)
            self._dispatch()
            self._changed.notify_all()

    def cancel(self, job: Job, reason: Exception) -> None:
        """Stop `job` wherever it is; its RPC thread receives ("failed", reason)."""
        with self._lock:
            if job.state == "queued":
                self._queue.remove(job)
                job.finish(("failed", reason))
            elif job.state == "running" and job.cancel_reason is None:
                job.cancel_reason = reason
                job.kill_at = time.monotonic() + self.kill_after
                for w in self._workers:
                    if w.job is job:
                        w.cancel.value = job.job_id
                self._wake()
            self._changed.notify_all()

    def wait_until(self, predicate: Callable[["WorkerPool"], bool], timeout: float) -> bool:
        """Block until predicate(pool) holds (checked whenever the pool changes); for tests/ops."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)

    def status(self) -> list[dict]:
        """Unlocked snapshot for predicates and diagnostics: one dict per worker slot."""
        return [{"index": w.index, "pid": w.process.pid, "alive": w.process.is_alive(),
                 "ready": w.ready, "request_id": w.job.request_id if w.job else None}
                for w in self._workers]

    def ready_count(self) -> int:
        return sum(1 for w in self._workers if w.ready and not w.killed)

    def close(self, timeout: float = 5.0) -> None:
        """Fail queued jobs, ask idle workers to exit, kill the rest after `timeout`."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            while self._queue:
                self._queue.popleft().finish(("failed", ShuttingDown("the server is shutting down")))
            workers = list(self._workers)
        self._wake()
        self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        for w in workers:
            try:
                w.conn.send_bytes(b"")
            except OSError:
                pass
        for w in workers:
            w.process.join(max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join(1.0)
            with self._lock:
                if w.job is not None:
                    job, w.job = w.job, None
                    job.finish(("failed", ShuttingDown("the server stopped before the result")))
            w.conn.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        atexit.unregister(self.close)

    # -----------------------------------------------------------------------------------------
    # the loop (all state changes happen under self._lock)

    def _spawn(self, index: int) -> _Worker:
        parent, child = self._ctx.Pipe()
        cancel = self._ctx.RawValue("q", 0)
        process = self._ctx.Process(target=worker.main, args=(child, cancel, f"worker-{index}"),
                                    name=f"gradserve-worker-{index}", daemon=True)
        with _environment(self._blas_env):
            process.start()
        child.close()
        return _Worker(index, process, parent, cancel, pid=process.pid)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass                      # already plenty of wake-ups pending

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._closing:
                    return
                watch: dict[object, _Worker] = {}
                for w in self._workers:
                    watch[w.conn] = w
                    watch[w.process.sentinel] = w
                kill_ats = [w.job.kill_at for w in self._workers if w.job and w.job.kill_at]
            timeout = max(0.0, min(kill_ats) - time.monotonic()) if kill_ats else None
            ready = wait([self._wake_r, *watch], timeout)
            with self._lock:
                try:
                    self._handle(ready, watch)
                except Exception:
                    log.exception("pool loop error")
                self._changed.notify_all()

    def _handle(self, ready: list, watch: dict) -> None:
        dead: list[_Worker] = []
        for obj in ready:
            if obj == self._wake_r:
                os.read(self._wake_r, 4096)
                continue
            w = watch[obj]
            if w not in self._workers or w in dead:
                continue
            if obj is w.conn:
                if not self._receive(w):
                    dead.append(w)
            else:
                dead.append(w)
        for w in dead:
            self._on_death(w)
        now = time.monotonic()
        for w in self._workers:
            if w.job and w.job.kill_at and now >= w.job.kill_at and not w.killed:
                log.warning("worker %s did not stop request %s within %.1fs: killing it",
                            w.name, w.job.request_id, self.kill_after)
                w.killed = True
                try:
                    os.kill(w.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._dispatch()

    def _receive(self, w: _Worker) -> bool:
        """Handle every message waiting on the worker's pipe; False once the pipe is closed."""
        try:
            while w.conn.poll():
                self._on_message(w, w.conn.recv())
        except (EOFError, OSError):
            return False
        return True

    def _on_message(self, w: _Worker, msg: tuple) -> None:
        tag = msg[0]
        if tag == "ready":
            w.ready = True
            self._start_failures = 0
            return
        job = w.job
        if job is None or msg[1] != job.job_id:
            return                    # a late message of a job already given up on
        if tag == "result":
            index, present = msg[2], msg[3]
            if index not in job.delivered and job.cancel_reason is None:
                job.delivered.add(index)   # a retry recomputes what was already streamed: skip it
                job.events.put(("result", index, present))
            return
        w.job = None
        if job.cancel_reason is not None:
            job.finish(("failed", job.cancel_reason))
        elif tag == "done":
            job.finish(("done", msg[2], msg[3], w.name))
        else:
            job.finish(("failed", worker_error(msg[2], msg[3])))

    def _on_death(self, w: _Worker) -> None:
        self._receive(w)              # results it sent before dying still count
        w.process.join(1.0)
        code = w.process.exitcode
        job, w.job = w.job, None
        if not w.ready:
            self._start_failures += 1
        w.conn.close()
        if not self._closing:
            if self._start_failures < MAX_START_FAILURES:
                self._workers[w.index] = self._spawn(w.index)
            else:
                log.error("workers keep dying before they are ready; not respawning %s", w.name)
                self._workers.remove(w)
        if job is None:
            log.warning("worker %s exited with code %s while idle; replaced", w.name, code)
            return
        if job.cancel_reason is not None:
            job.finish(("failed", job.cancel_reason))
        elif job.attempts < MAX_ATTEMPTS and self._workers:
            log.warning("worker %s died (exit code %s) running request %s; retrying",
                        w.name, code, job.request_id)
            job.state = "queued"
            self._queue.appendleft(job)
        else:
            log.error("worker %s died (exit code %s) running request %s; giving up after %d attempts",
                      w.name, code, job.request_id, job.attempts)
            job.finish(("failed", WorkerLost(
                f"request {job.request_id or job.job_id}: worker lost (exit code {code}) on "
                f"{job.attempts} attempt(s)")))

    def _dispatch(self) -> None:
        for w in self._workers:
            if not self._queue:
                return
            if w.ready and w.job is None and not w.killed:
                job = self._queue.popleft()
                try:
                    w.conn.send_bytes(job.payload)
                except OSError:
                    self._queue.appendleft(job)   # the sentinel will report this worker's death
                    continue
                job.state = "running"
                job.attempts += 1
                w.job = job


def worker_error(kind: str, message: str) -> Exception:
    """The exception for a worker's (\"error\", job_id, kind, message) report."""
    cls = getattr(engine, kind, None)
    if isinstance(cls, type) and issubclass(cls, engine.EngineError):
        return cls(message)
    if kind == "MemoryError":
        return MemoryError(message)
    log.error("worker failure:\n%s", message)
    return WorkerFailure("the worker failed unexpectedly; see the server log")


@contextlib.contextmanager
def _environment(changes: dict[str, str]):
    """os.environ with `changes` while a worker is spawned: a spawned process starts with the
    parent's environment, and BLAS reads its thread count once, when NumPy loads."""
    saved = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
