"""Load generator for the deployment tests: the seed tutorial's backward pass, N times over T threads.

Runs inside a container on the compose network (target dns:///gradserve:50051, round_robin) or on
the host. Prints `progress N` lines as requests complete, then one JSON line:
{"ok": .., "failed": .., "attempts": .., "errors": [...], "seconds": ..}; `attempts` counts RPCs
sent, so attempts - ok is the number of client retries. SIGTERM stops it early (no new requests;
the report says "stopped": true). Exit status 0 iff nothing failed.
With --size N each request is the same graph on N x N tensors with a matmul instead of the
elementwise square, so requests take long enough to be in flight when a replica is killed.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

import numpy as np

import gradserve as torch

EXPECTED = np.array([[4.5, 6.0], [7.5, 9.0]], dtype=np.float32)   # d mean(3 (x+2)^2) / dx


def step(size: int) -> None:
    if not size:
        x = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
        y = x + 2
        z = y * y * 3
        expected = EXPECTED
    else:
        x = torch.ones(size, size, requires_grad=True)
        y = x + 2
        z = (y @ y) * 3
        # d mean(3 y @ y) / dy[i, j] = 3 / n^2 * (row sum + column sum of y) = 3 / n^2 * 6n.
        expected = np.full((size, size), 18.0 / size, dtype=np.float32)
    out = z.mean()
    out.backward()
    grad = np.asarray(x.grad.numpy())
    if not np.allclose(grad, expected, rtol=1e-4):
        raise AssertionError(f"wrong gradient {grad.ravel()[:4].tolist()}...")


class _Counted:
    """Counts the calls made through a gRPC multicallable: one per attempt, retries included."""

    def __init__(self, method, counter: dict, lock: threading.Lock) -> None:
        self._method, self._counter, self._lock = method, counter, lock

    def __call__(self, *args, **kwargs):
        with self._lock:
            self._counter["attempts"] += 1
        return self._method(*args, **kwargs)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--target", required=True)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--interval", type=float, default=0.0, help="seconds each thread waits between requests")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request deadline, seconds")
    p.add_argument("--size", type=int, default=0, help="N x N tensors and a matmul (0: the tutorial's 2 x 2)")
    args = p.parse_args()

    executor = torch.connect(args.target, timeout=args.timeout)
    lock = threading.Lock()
    counts = {"ok": 0, "failed": 0, "attempts": 0}
    # Peeks at the client's stub only to count attempts; the retries themselves are the SDK's own.
    stub = getattr(executor, "_stub", None)
    if stub is not None:
        # Every computing RPC (streams, and one-message batch calls for small requests).
        for name in [n for n in vars(stub) if n[:1].isupper() and n != "GetInfo"]:
            setattr(stub, name, _Counted(getattr(stub, name), counts, lock))
    errors: list[str] = []
    next_index = iter(range(args.requests))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def worker() -> None:
        while not stop.is_set():
            with lock:
                if next(next_index, None) is None:
                    return
            try:
                step(args.size)
                outcome = "ok"
            except Exception as e:   # every failure is counted and reported, none is fatal
                outcome = "failed"
                with lock:
                    if len(errors) < 10:
                        errors.append(f"{type(e).__name__}: {e}")
            with lock:
                counts[outcome] += 1
                done = counts["ok"] + counts["failed"]
            if done % 10 == 0:
                print(f"progress {done}", flush=True)
            if args.interval:
                stop.wait(args.interval)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():   # join in slices, so the main thread can run the SIGTERM handler
            t.join(0.2)
    report = dict(counts, errors=errors, seconds=round(time.monotonic() - started, 3),
                  requests=args.requests, threads=args.threads, stopped=stop.is_set())
    print(json.dumps(report), flush=True)
    complete = stop.is_set() or counts["ok"] == args.requests
    return 0 if counts["failed"] == 0 and complete else 1


if __name__ == "__main__":
    sys.exit(main())
