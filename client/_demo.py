"""`gradserve demo`: start a local server, run the seed autograd tutorial through it, and say where
the gradients were computed."""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from typing import Sequence

# The seed tutorial as shipped in gradserve/examples (also runnable as
# `python -m gradserve.examples.autograd_tutorial`).
TUTORIAL = (resources.files("gradserve.examples") / "autograd_tutorial.py").read_text()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gradserve demo", description=__doc__)
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the local server")
    parser.add_argument("--address", default=None,
                        help="use this running server (host:port) instead of starting one")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))

    import gradserve

    server = None
    address = args.address
    if address is None:
        from gradserve.server import start
        server = start(host="127.0.0.1", port=0, workers=args.workers)
        address = server.address
        print(f"# started a gradserve server at {address} with {args.workers} workers\n")
    try:
        executor = gradserve.connect(address)
        exec(compile(TUTORIAL, "autograd_tutorial.py", "exec"), {"__name__": "__gradserve_demo__"})
        info = executor.info()
        summary = executor.last_summary
        worker = summary.worker if summary else ""
        if worker == "front":
            worker = (", the last one in its front process (graphs this small skip the hand-off to "
                      "a worker)")
        elif worker:
            worker = f", the last one by {worker}"
        print(f"\n# the graphs above were recorded here and computed by the gradserve server at {address} "
              f"({info.workers} workers, server {info.server_version}){worker}")
    finally:
        gradserve.disconnect()
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
