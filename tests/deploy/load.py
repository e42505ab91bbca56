"""Load generator for the deployment tests: the seed tutorial's backward pass, N times over T threads.

Runs inside a container on the compose network (target dns:///gradserve:50051, round_robin) or on
the host. Prints `progress N` lines as requests complete, then one JSON line:
{"ok": .., "failed": .., "errors": [...], "seconds": ..}. Exit status 0 iff nothing failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

import numpy as np

import gradserve as torch

EXPECTED = np.array([[4.5, 6.0], [7.5, 9.0]], dtype=np.float32)   # d mean(3 (x+2)^2) / dx


def step() -> None:
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = x + 2
    z = y * y * 3
    out = z.mean()
    out.backward()
    grad = np.asarray(x.grad.numpy())
    if not np.allclose(grad, EXPECTED):
        raise AssertionError(f"wrong gradient {grad.tolist()}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--target", required=True)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--interval", type=float, default=0.0, help="seconds each thread waits between requests")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request deadline, seconds")
    args = p.parse_args()

    torch.connect(args.target, timeout=args.timeout)
    lock = threading.Lock()
    counts = {"ok": 0, "failed": 0}
    errors: list[str] = []
    next_index = iter(range(args.requests))

    def worker() -> None:
        while True:
            with lock:
                if next(next_index, None) is None:
                    return
            try:
                step()
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
                time.sleep(args.interval)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = dict(counts, errors=errors, seconds=round(time.monotonic() - started, 3),
                  requests=args.requests, threads=args.threads)
    print(json.dumps(report), flush=True)
    return 0 if counts["failed"] == 0 and counts["ok"] == args.requests else 1


if __name__ == "__main__":
    sys.exit(main())
