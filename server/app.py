"""Starting and stopping a server: worker pool first, then the gRPC front with health and reflection.

The front is the synchronous grpc.server, not grpc.aio: measured, the two are equal in latency and
throughput here, all CPU work happens in the worker processes, and the sync server lets an RPC
thread simply block on its job's event queue while gRPC's `context.add_callback` delivers
cancellation and deadlines. The cost is one thread per admitted
stream, which admission control bounds (Options.grpc_threads).
"""

from __future__ import annotations

import logging
import multiprocessing.resource_tracker
import os
import threading
from concurrent import futures

from .options import Options
from .pool import WorkerPool
from .shm import SHM_DIR, BlockPool

log = logging.getLogger("gradserve.server")

SERVICE_NAME = "gradserve.v1.Gradients"


def start(host: str = "127.0.0.1", port: int = 0, workers: int = 2, **options) -> "RunningServer":
    """Start a server and return once it accepts calls and every worker is ready.

    `options` are the fields of gradserve.server.Options (max_inflight, max_inflight_bytes,
    blas_threads, max_elements, kill_after, max_connection_age, shutdown_grace, ...).
    """
    return RunningServer(Options(host=host, port=port, workers=workers, **options))


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _fit_shared_memory(options: Options) -> Options:
    """Cap the bytes in flight to what /dev/shm can hold.

    NOTE: Docker gives containers a 64 MiB /dev/shm by default (`shm_size` raises it). Blocks are
    created sparse, so an oversized one only fails when written, with SIGBUS in the front process.
    """
    try:
        st = os.statvfs(SHM_DIR)
    except OSError:
        return options
    room = st.f_bavail * st.f_frsize
    if options.max_inflight_bytes + options.shm_cache_bytes <= room:
        return options
    capped = max(room * 3 // 4, 1 << 20)
    log.warning("%s has %d bytes free: limiting max_inflight_bytes to %d and shm_cache_bytes to "
                "%d (raise the container's shm_size to allow more)", SHM_DIR, room,
                min(options.max_inflight_bytes, capped), min(options.shm_cache_bytes, capped))
    return options.replace(max_inflight_bytes=min(options.max_inflight_bytes, capped),
                           shm_cache_bytes=min(options.shm_cache_bytes, capped))


class RunningServer:
    """A started server: `.address` ("host:port"), `.port`, `.stop(grace)`; a context manager."""

    def __init__(self, options: Options, ready_timeout: float = 60.0) -> None:
        self.options = options
        # Start the resource tracker (a helper process) now, before gRPC has threads.
        multiprocessing.resource_tracker.ensure_running()
        options = self.options = _fit_shared_memory(options)
        self.blocks = BlockPool(options.shm_cache_bytes)
        # NOTE: workers are spawned before gRPC is imported or initialised in this module
        # (https://github.com/grpc/grpc/blob/master/doc/fork_support.md).
        self.pool = WorkerPool(options.workers, kill_after=options.kill_after,
                               blas_threads=options.blas_threads)
        self._stopped = threading.Event()
        self.draining = threading.Event()     # set once new calls are refused
        self._stop_lock = threading.Lock()
        try:
            self._server, self.health, self.port = self._start_grpc(options)
            if not self.pool.wait_until(lambda p: p.ready_count() == options.workers, ready_timeout):
                raise RuntimeError(f"workers not ready within {ready_timeout}s")
            # Serving only once every worker can take a job: probes and balancers wait till then.
            from grpc_health.v1 import health_pb2
            self._set_health(self.health, health_pb2.HealthCheckResponse.SERVING)
        except BaseException:
            self._release()
            raise
        self.address = format_address(options.host, self.port)
        log.info("serving %s on %s with %d workers", SERVICE_NAME, self.address, options.workers)

    def _start_grpc(self, o: Options):
        import grpc
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc
        from grpc_reflection.v1alpha import reflection

        from .errors import ErrorInterceptor
        from .front import Front
        from .service import GradientsServicer, add_to_server

        self.front = Front(o, self.pool, self.blocks)
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=o.grpc_threads, thread_name_prefix="gradserve-rpc"),
            interceptors=[ErrorInterceptor()],
            maximum_concurrent_rpcs=o.grpc_threads,
            options=[
                # NOTE: gRPC turns SO_REUSEPORT on by default, so a second server on the same port
                # would bind silently and steal connections (grpc#16005, grpc#19773).
                ("grpc.so_reuseport", 0),
                # Clients behind dns:/// + round_robin only re-resolve when a connection closes
                # (grpc#12295, gRFC A9); the grace lets the longest request finish first.
                ("grpc.max_connection_age_ms", int(o.max_connection_age * 1000)),
                ("grpc.max_connection_age_grace_ms", int(o.max_connection_age_grace * 1000)),
            ])
        add_to_server(GradientsServicer(self.front), server)
        health_servicer = health.HealthServicer(experimental_non_blocking=True)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection([
            SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ], server)
        try:
            port = server.add_insecure_port(format_address(o.host, o.port))
        except RuntimeError as e:
            raise OSError(f"cannot bind {format_address(o.host, o.port)}: {e}") from None
        if not port:   # old grpcio versions return 0 instead of raising (grpc#16920)
            raise OSError(f"cannot bind {format_address(o.host, o.port)}")
        server.start()
        self._set_health(health_servicer, health_pb2.HealthCheckResponse.NOT_SERVING)
        return server, health_servicer, port

    @staticmethod
    def _set_health(health_servicer, status) -> None:
        for service in ("", SERVICE_NAME):
            health_servicer.set(service, status)

    def stop(self, grace: float | None = None) -> None:
        """Health goes NOT_SERVING, new calls are refused, in-flight calls get `grace` seconds
        (default Options.shutdown_grace); then workers exit and shared memory is unlinked."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            grace = self.options.shutdown_grace if grace is None else grace
            log.info("shutting down (grace %.1fs)", grace)
            self.health.enter_graceful_shutdown()
            done = self._server.stop(grace)
            self.draining.set()
            done.wait()
            self._release()
            self._stopped.set()
            log.info("stopped")

    def _release(self) -> None:
        self.pool.close()
        self.blocks.close()

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop(grace=1.0)
