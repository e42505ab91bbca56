"""Faults: workers killed mid-request, deadlines, cancellation, workers that will not stop."""

from __future__ import annotations

import os
import signal
import threading
import time

import grpc
import numpy as np
import pytest
from server_helpers import (
    Background,
    all_ready_and_idle,
    evaluate,
    running,
    stub_for,
    tanh_chain,
    tutorial_graph,
    worker_running,
)

from gradserve import codec

CHAIN = 2500          # ~1 s of forward work on 1M floats, in 0.4 ms steps


def expected_chain(values, n):
    y = values[0]
    for _ in range(n):
        y = np.tanh(y)
    return y


def quick_request_succeeds(stub, within: float = 2.0):
    graph, values, _ = tutorial_graph()
    started = time.monotonic()
    out, _ = evaluate(stub, graph, values, outputs=[3], timeout=within)
    np.testing.assert_allclose(out[3], 3 * (values[0] + 2) ** 2)
    return time.monotonic() - started


def test_worker_killed_mid_request_is_replaced_and_request_retried(fresh_server):
    stub = stub_for(fresh_server)
    pool = fresh_server.pool
    graph, values, n = tanh_chain(CHAIN)
    call = Background(stub.Evaluate, graph, values, outputs=[n], timeout=60)
    victim = worker_running(pool, call.request_id)
    os.kill(victim, signal.SIGKILL)
    (result,) = call.result()
    np.testing.assert_allclose(result.array, expected_chain(values, n), rtol=1e-6)
    assert str(victim) not in call.summary.worker
    assert pool.wait_until(all_ready_and_idle(2), 30)
    assert victim not in {w["pid"] for w in pool.status()}
    quick_request_succeeds(stub)


def test_request_fails_unavailable_when_the_retry_dies_too(fresh_server):
    stub = stub_for(fresh_server)
    pool = fresh_server.pool
    graph, values, n = tanh_chain(CHAIN)
    call = Background(stub.Evaluate, graph, values, outputs=[n], timeout=60)
    first = worker_running(pool, call.request_id)
    os.kill(first, signal.SIGKILL)
    assert pool.wait_until(
        lambda p: any(w["request_id"] == call.request_id and w["pid"] != first for w in p.status()), 30)
    second = worker_running(pool, call.request_id)
    os.kill(second, signal.SIGKILL)
    with pytest.raises(grpc.RpcError) as info:
        call.result()
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "worker lost" in info.value.details()
    assert pool.wait_until(all_ready_and_idle(2), 30)          # pool replaced
    assert not {first, second} & {w["pid"] for w in pool.status()}
    quick_request_succeeds(stub)


def test_deadline_stops_the_job_and_frees_the_worker(fresh_server):
    stub = stub_for(fresh_server)
    pool = fresh_server.pool
    pids = {w["pid"] for w in pool.status()}
    graph, values, n = tanh_chain(CHAIN * 20)                   # far longer than the deadline
    call = Background(stub.Evaluate, graph, values, outputs=[n], timeout=1.0)
    worker_running(pool, call.request_id)
    with pytest.raises(grpc.RpcError) as info:
        call.result()
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert pool.wait_until(all_ready_and_idle(2), 1.0)          # free within a second ...
    assert {w["pid"] for w in pool.status()} == pids            # ... by stopping, not killing
    assert quick_request_succeeds(stub) < 1.0


def test_cancellation_stops_the_job_and_frees_the_worker(fresh_server):
    stub = stub_for(fresh_server)
    pool = fresh_server.pool
    pids = {w["pid"] for w in pool.status()}
    graph, values, n = tanh_chain(CHAIN * 20)
    call = Background(stub.Evaluate, graph, values, outputs=[n], timeout=60)
    worker_running(pool, call.request_id)
    call.call.cancel()
    with pytest.raises(grpc.RpcError) as info:
        call.result()
    assert info.value.code() == grpc.StatusCode.CANCELLED
    assert pool.wait_until(all_ready_and_idle(2), 1.0)
    assert {w["pid"] for w in pool.status()} == pids
    assert quick_request_succeeds(stub) < 1.0


def test_cancelled_request_still_queued_never_runs():
    with running(workers=1) as srv:
        stub = stub_for(srv)
        graph, values, n = tanh_chain(CHAIN)
        busy = Background(stub.Evaluate, graph, values, outputs=[n], timeout=60)
        worker_running(srv.pool, busy.request_id)
        queued = Background(stub.Evaluate, graph, values, outputs=[n], timeout=60)
        assert srv.pool.wait_until(lambda p: len(p._queue) == 1, 10)
        queued.call.cancel()
        with pytest.raises(grpc.RpcError) as info:
            queued.result()
        assert info.value.code() == grpc.StatusCode.CANCELLED
        assert srv.pool.wait_until(lambda p: len(p._queue) == 0, 1.0)
        (result,) = busy.result()
        np.testing.assert_allclose(result.array, expected_chain(values, n), rtol=1e-6)


def test_a_request_whose_chunks_never_come_ends_at_its_deadline_and_frees_its_bytes(fresh_server):
    graph, values, n = tanh_chain(1)                          # a block in shared memory
    messages = list(codec.request_messages(graph=graph, values=values, outputs=[n]))
    stalled = threading.Event()

    def upload():
        yield from messages[:3]                               # header, graph, the first chunk
        stalled.wait(30)

    try:
        with pytest.raises(grpc.RpcError) as info:
            list(stub_for(fresh_server).Evaluate(upload(), timeout=1.0))
    finally:
        stalled.set()
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    admission = fresh_server.front.admission
    # The client's deadline fires on its side; the server lets go once it sees the cancellation.
    deadline = time.monotonic() + 5
    while (admission.requests or admission.bytes) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (admission.requests, admission.bytes) == (0, 0)
    quick_request_succeeds(stub_for(fresh_server))


def test_worker_that_does_not_stop_is_killed_and_replaced():
    with running(workers=2, kill_after=0.2) as srv:
        stub = stub_for(srv)
        pool = srv.pool
        graph, values, n = tanh_chain(CHAIN)
        call = Background(stub.Evaluate, graph, values, outputs=[n], timeout=60)
        stuck = worker_running(pool, call.request_id)
        os.kill(stuck, signal.SIGSTOP)            # it can no longer notice the cancel flag
        call.call.cancel()
        with pytest.raises(grpc.RpcError) as info:
            call.result()
        assert info.value.code() == grpc.StatusCode.CANCELLED
        assert pool.wait_until(lambda p: stuck not in {w["pid"] for w in p.status()}, 1.5)
        assert pool.wait_until(all_ready_and_idle(2), 30)
        quick_request_succeeds(stub)
