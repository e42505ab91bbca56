"""The `gradserve` command: `serve`, `health`, and subcommands registered in COMMANDS.

Imports stay inside the subcommands: when workers are spawned, multiprocessing re-imports the
script that started the process (this console script), and a worker must not load gRPC.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys
from typing import Callable, Sequence

# name -> ("module:function", help). Each function takes the remaining argv and returns an exit code.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("gradserve.server.cli:serve", "run the gradient service"),
    "health": ("gradserve.server.cli:health", "exit 0 iff a server's health service says SERVING"),
    "demo": ("gradserve._demo:main", "record a graph and compute its gradients remotely"),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        out = sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr
        print("usage: gradserve {" + ",".join(COMMANDS) + "} [options]\n", file=out)
        for name, (_, help_) in COMMANDS.items():
            print(f"  {name:8} {help_}", file=out)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nunknown command {argv[0]!r}", file=out)
        return 0 if out is sys.stdout else 2
    return int(_load(COMMANDS[argv[0]][0])(argv[1:]) or 0)


def _load(target: str) -> Callable[[list[str]], int]:
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


# ---------------------------------------------------------------------------------------------
# serve


def serve_parser() -> argparse.ArgumentParser:
    from .options import Options, env_name

    parser = argparse.ArgumentParser(
        prog="gradserve serve", description="Run the gradient service. Every flag also reads an "
        "environment variable (shown in brackets); flags win.")
    for f in dataclasses.fields(Options):
        flag = "--" + f.name.replace("_", "-")
        help_ = f"{f.metadata['help']} (default {f.default!r}) [{env_name(f.name)}]"
        kind = f.metadata.get("parse") or type(f.default)
        parser.add_argument(flag, dest=f.name, type=kind, default=None, help=help_)
    return parser


def serve(argv: list[str]) -> int:
    import logging
    import signal
    import threading

    from .options import Options

    args = serve_parser().parse_args(argv)
    try:
        options = Options.from_env(**vars(args))
    except ValueError as e:
        print(f"gradserve serve: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=options.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    from .app import start

    fields = {f.name for f in dataclasses.fields(Options)} - {"host", "port", "workers"}
    try:
        server = start(options.host, options.port, options.workers,
                       **{name: getattr(options, name) for name in fields})
    except OSError as e:
        print(f"gradserve serve: {e}", file=sys.stderr)
        return 1
    print(server.address, flush=True)        # first stdout line: the bound address
    try:
        while not stop.wait(3600):
            pass
    finally:
        server.stop()
    return 0


# ---------------------------------------------------------------------------------------------
# health


def _default_health_address() -> str:
    host = os.environ.get("GRADSERVE_HOST", "") or "127.0.0.1"
    if host in ("0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    return f"{host}:{os.environ.get('GRADSERVE_PORT', '') or 50051}"


def health(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gradserve health",
                                     description="Exit 0 iff the server's health service says SERVING.")
    parser.add_argument("--address", default=None,
                        help="host:port (default: 127.0.0.1 and GRADSERVE_PORT or 50051)")
    parser.add_argument("--service", default="", help="service name to check (default: the server)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    args = parser.parse_args(argv)
    address = args.address or _default_health_address()

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout)
        except grpc.RpcError as e:
            print(f"{address}: {e.code().name}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{address}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
