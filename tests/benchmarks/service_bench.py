"""Service benchmark: latency, large-tensor throughput with server memory, and worker scaling.

Runs real servers as separate processes (`gradserve serve --port 0`, a fresh one per section), so
client and server never share a GIL, and drives them through the client's own RemoteExecutor (which
picks the one-message batch call or the stream by itself). Prints one table: measured value, the
target, met or not. The machine's load average is printed before and after each section
(the figures are only comparable between runs at similar load), and CPU seconds per process show
where the time went:

    python tests/benchmarks/service_bench.py [--quick]
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


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def executor(address: str):
    from gradserve._executor import RemoteExecutor

    # its own connection per executor (a channel per client thread, as separate clients would have)
    return RemoteExecutor(address, timeout=600, options=[
        ("grpc.max_receive_message_length", -1), ("grpc.use_local_subchannel_pool", 1)])


def stub(address: str):
    import grpc

    from gradserve.v1 import gradserve_pb2_grpc as pb_grpc

    channel = grpc.insecure_channel(address, options=[
        ("grpc.max_receive_message_length", -1), ("grpc.use_local_subchannel_pool", 1)])
    return channel, pb_grpc.GradientsStub(channel)


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
    """Tutorial backward through RemoteExecutor vs a bare unary call (health Check), interleaved so
    both see the same noise; plus the Backward stream for comparison."""
    import numpy as np
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    server = Server(workers=2)
    try:
        channel, gstub = stub(server.address)
        health = health_pb2_grpc.HealthStub(channel)
        remote = executor(server.address)
        graph, values, root, seeds = tutorial_graph()
        seeds = seeds or {root: np.ones((), np.float32)}
        request = health_pb2.HealthCheckRequest()

        def tutorial():
            return list(remote.backward(graph, values, [root], seeds, [0]))

        bare, latency, stream = [], [], []
        for _ in range(n // 10):                                      # warm-up
            health.Check(request)
            tutorial()
        for _ in range(n):
            t = time.perf_counter()
            health.Check(request)
            bare.append(time.perf_counter() - t)
            t = time.perf_counter()
            tutorial()
            latency.append(time.perf_counter() - t)
        path = f"{remote.last_call}, computed by {remote.last_summary.worker.split('/')[0]}"
        for _ in range(n // 4):
            t = time.perf_counter()
            backward_stream(gstub, graph, values, [root], [0], seeds)
            stream.append(time.perf_counter() - t)
        remote.close()
        channel.close()
    finally:
        server.close()
    return {"bare": percentiles(bare), "remote": percentiles(latency), "stream": percentiles(stream),
            "path": path}


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
        root, seeds = 2, {2: np.ones((), np.float32)}
    else:
        root, seeds = 1, {1: np.ones(n, np.float32)}
    graph = Graph([Leaf(0, (n,), np.dtype("float32"), True)], nodes)
    server = Server(workers=2)
    try:
        remote = executor(server.address)

        def call():
            return list(remote.backward(graph, {0: x}, [root], seeds, [0]))

        call()                                                         # warm-up: blocks cached
        server.reset_peaks()
        pids = server.pids()
        times, cpu = [], []
        for _ in range(runs):
            before = [cpu_seconds(p) for p in pids] + [time.process_time()]
            t = time.perf_counter()
            results = call()
            times.append(time.perf_counter() - t)
            after = [cpu_seconds(p) for p in pids] + [time.process_time()]
            cpu.append([b - a for a, b in zip(before, after, strict=True)])
        grad = [r.array for r in results if r.kind == "grad"][0]
        assert np.allclose(grad[:1000], 2 * x[:1000])
        peaks = server.peaks()
        remote.close()
    finally:
        server.close()
    moved = x.nbytes + grad.nbytes
    median = sorted(times)[len(times) // 2]
    cpu_median = [sorted(c[k] for c in cpu)[len(cpu) // 2] for k in range(len(cpu[0]))]
    return {"best": min(times), "median": median, "rate": moved / median,
            "payload": x.nbytes, "front_peak": peaks[0], "worker_peak": max(peaks[2:]),
            "cpu_front": cpu_median[0], "cpu_workers": sum(cpu_median[2:-1]),
            "cpu_client": cpu_median[-1]}


# ---------------------------------------------------------------------------------------------
# 3. CPU-bound concurrent load, 1 vs 2 workers


def run_load(executors, graph, values, outputs, requests: int) -> float:
    """Requests per second with one client thread per executor pulling from a shared counter."""
    remaining = [requests]
    lock = threading.Lock()

    def client(remote):
        while True:
            with lock:
                if remaining[0] == 0:
                    return
                remaining[0] -= 1
            remote.evaluate(graph, values, outputs)

    t = time.perf_counter()
    with ThreadPoolExecutor(len(executors)) as ex:
        list(ex.map(client, executors))
    return requests / (time.perf_counter() - t)


def bench_scaling(requests: int, clients: int = 4) -> dict:
    """CPU-bound requests (~60 ms of tanh each in a worker, far above the inline gate), more
    concurrent clients than workers; CPU seconds per process show the work is in the workers."""
    import numpy as np

    from gradserve.engine import Graph, Leaf, Node

    size, depth = 1 << 18, 600
    graph = Graph([Leaf(0, (size,), np.dtype("float32"))],
                  [Node(k, "tanh", (k - 1,), {}) for k in range(1, depth + 1)]
                  + [Node(depth + 1, "sum", (depth,), {})])
    values = {0: np.linspace(-1, 1, size, dtype=np.float32)}
    out = {}
    for workers in (1, 2):
        server = Server(workers=workers)
        try:
            remotes = [executor(server.address) for _ in range(clients)]
            for remote in remotes:
                remote.evaluate(graph, values, [depth + 1])
            pids = server.pids()
            before = [cpu_seconds(p) for p in pids]
            t = time.perf_counter()
            rate = run_load(remotes, graph, values, [depth + 1], requests)
            wall = time.perf_counter() - t
            used = [cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)]
            out[workers] = {"rate": rate, "front_cores": used[0] / wall,
                            "worker_cores": sum(used[2:]) / wall}
            for remote in remotes:
                remote.close()
        finally:
            server.close()
    return out


def _numpy_work(rounds: int) -> float:
    import numpy as np

    x = np.linspace(-1, 1, 1 << 18, dtype=np.float32)
    t = time.perf_counter()
    for _ in range(rounds):
        x = np.tanh(x)
    return time.perf_counter() - t


def machine_parallelism(rounds: int = 1500) -> float:
    """What the machine itself gives two processes: the same NumPy work as a worker job, run by
    two processes at once vs one alone (2.0 on two free cores). The scaling target is only
    reachable when this is well above 1.7."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        pool.map(_numpy_work, [10, 10])                         # start-up and imports
        one = pool.apply(_numpy_work, (rounds,))
        t = time.perf_counter()
        pool.map(_numpy_work, [rounds, rounds])
        both = time.perf_counter() - t
    return 2 * one / both


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args(argv)
    os.environ.setdefault("GRADSERVE_LOG_LEVEL", "WARNING")
    n_lat, n_thr, n_cpu = (300, 3, 16) if args.quick else (2000, 5, 40)

    loads = [os.getloadavg()[0]]
    lat = bench_latency(n_lat)
    loads.append(os.getloadavg()[0])
    thr = bench_throughput(n_thr)
    loads.append(os.getloadavg()[0])
    cpu = bench_scaling(n_cpu)
    parallel = machine_parallelism()
    loads.append(os.getloadavg()[0])

    (b50, b99), (r50, r99) = lat["bare"], lat["remote"]
    payload = thr["payload"]
    scale = cpu[2]["rate"] / cpu[1]["rate"]

    def met(ok: bool) -> str:
        return "met" if ok else "NOT MET"

    rows = [
        ("bare gRPC round trip (health Check) p50 / p99", f"{b50 * 1e3:.3f} / {b99 * 1e3:.3f} ms", "", ""),
        (f"tutorial backward p50 / p99 ({lat['path']})", f"{r50 * 1e3:.3f} / {r99 * 1e3:.3f} ms",
         "p50 <= 1 ms", met(r50 <= 1e-3)),
        ("tutorial p50 / bare p50", f"{r50 / b50:.2f}x", "<= 2.5x", met(r50 / b50 <= 2.5)),
        ("tutorial, Backward stream p50 / p99",
         f"{lat['stream'][0] * 1e3:.3f} / {lat['stream'][1] * 1e3:.3f} ms", "", ""),
        ("256 MiB (x*x).sum() backward, median / best", f"{thr['median']:.3f} / {thr['best']:.3f} s",
         "", ""),
        ("effective throughput (up + down) / median time", f"{thr['rate'] / 1024**3:.2f} GiB/s",
         ">= 1 GiB/s", met(thr["rate"] >= 1024**3)),
        ("  CPU s per request: client / front / workers",
         f"{thr['cpu_client']:.2f} / {thr['cpu_front']:.2f} / {thr['cpu_workers']:.2f}", "", ""),
        ("server peak RSS: front process", f"{thr['front_peak'] / payload:.2f}x payload "
         f"({thr['front_peak'] / MiB:.0f} MiB)", "<= 3x", met(thr["front_peak"] <= 3 * payload)),
        ("server peak RSS: busiest worker", f"{thr['worker_peak'] / payload:.2f}x payload "
         f"({thr['worker_peak'] / MiB:.0f} MiB)", "<= 3x", met(thr["worker_peak"] <= 3 * payload)),
        ("CPU-bound load, 1 worker (cores busy: front, workers)",
         f"{cpu[1]['rate']:.2f} req/s ({cpu[1]['front_cores']:.2f}, {cpu[1]['worker_cores']:.2f})",
         "", ""),
        ("CPU-bound load, 2 workers (cores busy: front, workers)",
         f"{cpu[2]['rate']:.2f} req/s ({cpu[2]['front_cores']:.2f}, {cpu[2]['worker_cores']:.2f})",
         "", ""),
        ("2 workers / 1 worker", f"{scale:.2f}x", ">= 1.7x", met(scale >= 1.7)),
        ("  machine: 2 processes of the same NumPy work / 1", f"{parallel:.2f}x", "", ""),
    ]
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print(f"{os.cpu_count()} CPUs; load average (1 min) before/after each section: "
          + " / ".join(f"{x:.2f}" for x in loads))
    print(f"{'measurement':{width}}  {'result':{vwidth}}  {'target':12}  status")
    print(f"{'-' * width}  {'-' * vwidth}  {'-' * 12}  {'-' * 7}")
    for name, value, target, status in rows:
        print(f"{name:{width}}  {value:{vwidth}}  {target:12}  {status}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
