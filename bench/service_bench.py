"""Service benchmark: latency, large-tensor throughput with server memory, and worker scaling.

Runs real servers as separate processes (`gradserve serve --port 0`), so client and server never
share a GIL, and prints one table with the targets of issue 3 next to the measurements:

    python bench/service_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

# NOTE: no grpc at module level: this script is the __main__ that spawned processes re-import
# (it starts no workers itself, but keep it safe to import anywhere).

MiB = 1024 * 1024


class Server:
    """`gradserve serve` in a subprocess; the first stdout line is its address."""

    def __init__(self, workers: int, **options) -> None:
        args = [sys.executable, "-m", "gradserve.server.cli", "serve", "--port", "0",
                "--workers", str(workers)]
        for k, v in options.items():
            args += [f"--{k.replace('_', '-')}", str(v)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        self.address = self.proc.stdout.readline().strip()
        if not self.address:
            raise RuntimeError("server did not start")

    def pids(self) -> list[int]:
        with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
            children = [int(p) for p in f.read().split()]
        return [self.proc.pid, *children]

    def reset_peaks(self) -> None:
        for pid in self.pids():
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")              # resets VmHWM (peak RSS) of that process

    def peaks(self) -> list[int]:
        out = []
        for pid in self.pids():
            with open(f"/proc/{pid}/status") as f:
                hwm = [line for line in f if line.startswith("VmHWM:")][0]
            out.append(int(hwm.split()[1]) * 1024)
        return out

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def stub(address: str):
    import grpc

    from gradserve.v1 import gradserve_pb2_grpc as pb_grpc

    channel = grpc.insecure_channel(address, options=[
        ("grpc.max_receive_message_length", -1), ("grpc.use_local_subchannel_pool", 1)])
    return channel, pb_grpc.GradientsStub(channel)


def backward_call(gstub, graph, values, roots, grads, seeds=None):
    """BackwardBatch when the request fits one message, else the Backward stream."""
    from gradserve import codec

    kw = dict(graph=graph, values=values, roots=roots, grads=grads, seeds=seeds)
    batch = codec.request_batch(**kw)
    if batch is not None:
        return list(codec.read_results(gstub.BackwardBatch(batch)))
    return list(codec.read_results(gstub.Backward(codec.request_messages(**kw))))


def backward_stream(gstub, graph, values, roots, grads, seeds=None):
    from gradserve import codec

    messages = codec.request_messages(graph=graph, values=values, roots=roots, grads=grads, seeds=seeds)
    return list(codec.read_results(gstub.Backward(messages)))


def percentiles(samples: list[float]) -> tuple[float, float]:
    import numpy as np

    return float(np.percentile(samples, 50)), float(np.percentile(samples, 99))


# ---------------------------------------------------------------------------------------------
# 1. latency of the seed tutorial graph vs a bare round trip


def tutorial_graph():
    import numpy as np

    from gradserve.engine import OPS, Graph, Leaf, Node

    f32 = np.dtype("float32")
    nodes = [Node(1, "add", (0,), {"other": 2.0}), Node(2, "mul", (1, 1), {}),
             Node(3, "mul", (2,), {"other": 3.0})]
    if "mean" in OPS:
        nodes.append(Node(4, "mean", (3,), {}))
        root, seeds = 4, None
    else:      # the same gradient: seed the (2, 2) output with 1/4
        root, seeds = 3, {3: np.full((2, 2), 0.25, np.float32)}
    graph = Graph([Leaf(0, (2, 2), f32, True)], nodes)
    return graph, {0: np.array([[1, 2], [3, 4]], np.float32)}, root, seeds


def bench_latency(n: int) -> dict:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    server = Server(workers=2)
    try:
        channel, gstub = stub(server.address)
        health = health_pb2_grpc.HealthStub(channel)
        graph, values, root, seeds = tutorial_graph()
        request = health_pb2.HealthCheckRequest()
        bare, remote, stream = [], [], []
        for _ in range(n // 10):                                      # warm-up
            health.Check(request)
            backward_call(gstub, graph, values, [root], [0], seeds)
        for _ in range(n):                                            # interleaved: same noise
            t = time.perf_counter()
            health.Check(request)
            bare.append(time.perf_counter() - t)
            t = time.perf_counter()
            backward_call(gstub, graph, values, [root], [0], seeds)
            remote.append(time.perf_counter() - t)
        for _ in range(n // 4):
            t = time.perf_counter()
            backward_stream(gstub, graph, values, [root], [0], seeds)
            stream.append(time.perf_counter() - t)
        channel.close()
    finally:
        server.close()
    return {"bare": percentiles(bare), "remote": percentiles(remote), "stream": percentiles(stream)}


# ---------------------------------------------------------------------------------------------
# 2. a 256 MiB leaf through (x*x).sum() backward


def bench_throughput(runs: int, mib: int = 256) -> dict:
    import numpy as np

    from gradserve.engine import OPS, Graph, Leaf, Node

    n = mib * MiB // 4
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    nodes = [Node(1, "mul", (0, 0), {})]
    if "sum" in OPS:
        nodes.append(Node(2, "sum", (1,), {}))
        root, seeds = 2, None
    else:
        root, seeds = 1, {1: np.ones(n, np.float32)}
    graph = Graph([Leaf(0, (n,), np.dtype("float32"), True)], nodes)
    server = Server(workers=2)
    try:
        channel, gstub = stub(server.address)
        backward_call(gstub, graph, {0: x}, [root], [0], seeds)        # warm-up: blocks cached
        server.reset_peaks()
        base = server.peaks()
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            results = backward_call(gstub, graph, {0: x}, [root], [0], seeds)
            times.append(time.perf_counter() - t)
        grad = [r.array for r in results if r.kind == "grad"][0]
        assert np.allclose(grad[:1000], 2 * x[:1000])
        peaks = server.peaks()
        channel.close()
    finally:
        server.close()
    moved = x.nbytes + grad.nbytes
    best = min(times)
    return {"seconds": best, "median": sorted(times)[len(times) // 2], "rate": moved / best,
            "payload": x.nbytes, "front_peak": peaks[0], "worker_peak": max(peaks[1:]),
            "base": base}


# ---------------------------------------------------------------------------------------------
# 3. CPU-bound concurrent load, 1 vs 2 workers


def evaluate_call(gstub, graph, values, outputs):
    from gradserve import codec

    batch = codec.request_batch(graph=graph, values=values, outputs=outputs)
    if batch is not None:
        return list(codec.read_results(gstub.EvaluateBatch(batch)))
    return list(codec.read_results(gstub.Evaluate(
        codec.request_messages(graph=graph, values=values, outputs=outputs))))


def run_load(stubs, graph, values, outputs, requests: int) -> float:
    """Requests per second with one client thread per stub pulling from a shared counter."""
    remaining = [requests]
    lock = threading.Lock()

    def client(gstub):
        while True:
            with lock:
                if remaining[0] == 0:
                    return
                remaining[0] -= 1
            evaluate_call(gstub, graph, values, outputs)

    t = time.perf_counter()
    with ThreadPoolExecutor(len(stubs)) as ex:
        list(ex.map(client, stubs))
    return requests / (time.perf_counter() - t)


def bench_scaling(requests: int, clients: int = 4) -> dict:
    import numpy as np

    from gradserve.engine import Graph, Leaf, Node

    size, depth = 1 << 18, 600          # ~60 ms of tanh per request on a 1 MiB leaf
    graph = Graph([Leaf(0, (size,), np.dtype("float32"))],
                  [Node(k, "tanh", (k - 1,), {}) for k in range(1, depth + 1)]
                  + [Node(depth + 1, "sum", (depth,), {})])
    values = {0: np.linspace(-1, 1, size, dtype=np.float32)}
    rates = {}
    for workers in (1, 2):
        server = Server(workers=workers)
        try:
            stubs = [stub(server.address) for _ in range(clients)]
            evaluate_call(stubs[0][1], graph, values, [depth + 1])
            rates[workers] = run_load([s for _, s in stubs], graph, values, [depth + 1], requests)
            for channel, _ in stubs:
                channel.close()
        finally:
            server.close()
    return rates


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args(argv)
    os.environ.setdefault("GRADSERVE_LOG_LEVEL", "WARNING")
    n_lat, n_thr, n_cpu = (300, 2, 16) if args.quick else (2000, 5, 40)

    lat = bench_latency(n_lat)
    thr = bench_throughput(n_thr)
    cpu = bench_scaling(n_cpu)

    (b50, b99), (r50, r99) = lat["bare"], lat["remote"]
    payload = thr["payload"]
    rows = [
        ("bare gRPC round trip (health Check) p50 / p99", f"{b50 * 1e3:.3f} / {b99 * 1e3:.3f} ms", ""),
        ("tutorial graph BackwardBatch p50 / p99", f"{r50 * 1e3:.3f} / {r99 * 1e3:.3f} ms", "p50 <= 1 ms"),
        ("tutorial p50 / bare p50", f"{r50 / b50:.2f}x", "<= 2.5x"),
        ("tutorial graph, Backward stream p50 / p99",
         f"{lat['stream'][0] * 1e3:.3f} / {lat['stream'][1] * 1e3:.3f} ms", ""),
        ("256 MiB (x*x).sum() backward, best / median", f"{thr['seconds']:.3f} / {thr['median']:.3f} s", ""),
        ("effective throughput (up + down) / time", f"{thr['rate'] / 1024**3:.2f} GiB/s", ">= 1 GiB/s"),
        ("server peak RSS: front process", f"{thr['front_peak'] / payload:.2f}x payload "
         f"({thr['front_peak'] / MiB:.0f} MiB)", "<= 3x"),
        ("server peak RSS: busiest worker", f"{thr['worker_peak'] / payload:.2f}x payload "
         f"({thr['worker_peak'] / MiB:.0f} MiB)", "<= 3x"),
        ("CPU-bound load, 1 worker", f"{cpu[1]:.2f} req/s", ""),
        ("CPU-bound load, 2 workers", f"{cpu[2]:.2f} req/s", ""),
        ("2 workers / 1 worker", f"{cpu[2] / cpu[1]:.2f}x", ">= 1.7x"),
    ]
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print(f"{'measurement':{width}}  {'result':{vwidth}}  target")
    print(f"{'-' * width}  {'-' * vwidth}  {'-' * 12}")
    for name, value, target in rows:
        print(f"{name:{width}}  {value:{vwidth}}  {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
