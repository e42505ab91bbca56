"""Starting and stopping: graceful shutdown, port conflicts, the CLI, and one request over 1 GiB."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from server_helpers import (
    F32,
    Background,
    evaluate,
    running,
    stub_for,
    tanh_chain,
    tutorial_graph,
    worker_running,
)

from gradserve import server
from gradserve.engine import Graph, Leaf, Node
from gradserve.v1 import gradserve_pb2 as pb

SHM = "/dev/shm"


def shm_segments(prefix: str) -> list[str]:
    return [name for name in os.listdir(SHM) if name.startswith(prefix)]


def test_graceful_shutdown_finishes_in_flight_work_and_releases_everything():
    srv = server.start("127.0.0.1", 0, workers=2)
    stub = stub_for(srv)
    graph, values, n = tanh_chain(1)                             # too big to compute inline
    evaluate(stub, graph, values, outputs=[n])
    prefix = srv.blocks.prefix
    assert shm_segments(prefix)                                  # a block is cached for reuse
    pids = [w["pid"] for w in srv.pool.status()]

    watch = health_pb2_grpc.HealthStub(grpc.insecure_channel(srv.address)).Watch(
        health_pb2.HealthCheckRequest(service=""))
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING

    graph, values, n = tanh_chain(2500)                          # ~1 s of work
    busy = Background(stub.Evaluate, graph, values, outputs=[n], timeout=60)
    worker_running(srv.pool, busy.request_id)
    stopper = threading.Thread(target=srv.stop, kwargs={"grace": 60})
    stopper.start()

    assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
    watch.cancel()                                               # a watcher is in flight too
    assert srv.draining.wait(10)
    with pytest.raises(grpc.RpcError) as info:
        evaluate(stub_for(srv), *tutorial_graph()[:2], outputs=[3], timeout=10)
    # UNAVAILABLE once the listener is gone; CANCELLED when the call still reached the closing server
    assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)

    (result,) = busy.result()                                    # the in-flight call completes
    assert result.array.shape == values[0].shape
    stopper.join(30)
    assert not stopper.is_alive()
    assert shm_segments(prefix) == []
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_second_server_on_the_same_port_fails_loudly():
    with running(workers=1) as first:
        with pytest.raises(OSError, match=str(first.port)):
            server.start("127.0.0.1", first.port, workers=1)
        evaluate(stub_for(first), *tutorial_graph()[:2], outputs=[3])    # the first one is unharmed


def test_connection_age_and_grace_are_configurable():
    with running(workers=1, max_connection_age=0.2, max_connection_age_grace=30) as srv:
        stub = stub_for(srv)
        graph, values, n = tanh_chain(1500)
        for _ in range(2):     # calls outlive the connection age; the grace lets them finish
            out, _ = evaluate(stub, graph, values, outputs=[n], timeout=30)
            assert out[n].shape == values[0].shape


# ---------------------------------------------------------------------------------------------
# CLI


def gradserve(*args, **kw):
    return [sys.executable, "-m", "gradserve.server.cli", *args]


def test_cli_serve_prints_the_address_first_and_stops_on_sigterm():
    env = {**os.environ, "GRADSERVE_WORKERS": "1", "GRADSERVE_LOG_LEVEL": "DEBUG"}
    proc = subprocess.Popen(gradserve("serve", "--port", "0"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        address = proc.stdout.readline().strip()          # the CLI's contract: first line
        assert re.fullmatch(r"127\.0\.0\.1:\d+", address)
        assert subprocess.run(gradserve("health", "--address", address), capture_output=True,
                              timeout=30).returncode == 0
        stub = stub_for(type("S", (), {"address": address}))
        assert stub.GetInfo(pb.InfoRequest(), timeout=10).workers == 1
        out, _ = evaluate(stub, *tutorial_graph()[:2], outputs=[3], request_id="cli-1", timeout=10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        log = proc.stderr.read()
        assert "rpc=evaluate status=OK" in log and "request_id=cli-1" in log
        assert shm_segments(f"gradserve_{proc.pid}_") == []
        assert subprocess.run(gradserve("health", "--address", address, "--timeout", "1"),
                              capture_output=True, timeout=30).returncode == 1
    finally:
        proc.kill()
        proc.wait()


def test_cli_help_lists_commands_and_rejects_unknown_ones():
    done = subprocess.run(gradserve("--help"), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and all(c in done.stdout for c in ("serve", "health", "demo"))
    assert subprocess.run(gradserve("frobnicate"), capture_output=True, timeout=30).returncode == 2
    done = subprocess.run(gradserve("serve", "--help"), capture_output=True, text=True, timeout=30)
    assert "--max-inflight-bytes" in done.stdout and "GRADSERVE_BLAS_THREADS" in done.stdout


# ---------------------------------------------------------------------------------------------
# big


@pytest.mark.slow
def test_one_request_over_one_gibibyte(shared_server):
    n = 136 * 1024 * 1024                    # 2 leaves x 544 MiB = 1.06 GiB up, 544 MiB down
    a = np.ones(n, np.float32)
    b = np.arange(n, dtype=np.float32)
    graph = Graph([Leaf(0, (n,), F32), Leaf(1, (n,), F32)], [Node(2, "add", (0, 1), {})])
    out, summary = evaluate(stub_for(shared_server), graph, {0: a, 1: b}, outputs=[2], timeout=300)
    got = out[2]
    assert got.shape == (n,)
    np.testing.assert_array_equal(got[:1000], b[:1000] + 1)
    np.testing.assert_array_equal(got[-1000:], b[-1000:] + 1)
    assert np.array_equal(got, b + 1)


def test_inflight_bytes_are_capped_to_what_dev_shm_holds(monkeypatch):
    from gradserve.server.app import _fit_shared_memory

    small = os.statvfs_result((4096, 4096, 0, 0, 16384, 0, 0, 0, 0, 255))     # 64 MiB free
    monkeypatch.setattr(os, "statvfs", lambda path: small)
    fitted = _fit_shared_memory(server.Options())
    assert fitted.max_inflight_bytes == fitted.shm_cache_bytes == 48 * 1024 * 1024
