"""`gradserve demo`: start a local server, run the seed autograd tutorial through it, and say where
the gradients were computed."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

# The seed tutorial, exactly as shipped in examples/autograd_tutorial.py (a test keeps them equal).
TUTORIAL = '''\
import gradserve as torch

x = torch.ones(2, 2, requires_grad=True)
print(x)

y = x + 2
print(y)

print(y.grad_fn)

z = y * y * 3
out = z.mean()
print(z, out)

a = torch.randn(2, 2)
a = ((a * 3) / (a - 1))
print(a.requires_grad)
a.requires_grad_(True)
print(a.requires_grad)
b = (a * a).sum()
print(b.grad_fn)

out.backward()

print(x.grad)

x = torch.randn(3, requires_grad=True)
y = x * 2
while y.data.norm() < 1000:
    y = y * 2
print(y)

gradients = torch.tensor([0.1, 1.0, 0.0001], dtype=torch.float)
y.backward(gradients)
print(x.grad)

print(x.requires_grad)
print((x ** 2).requires_grad)
with torch.no_grad():
    print((x ** 2).requires_grad)
'''


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
        worker = f", the last one by worker {summary.worker}" if summary and summary.worker else ""
        print(f"\n# the graphs above were recorded here and computed by the gradserve server at {address} "
              f"({info.workers} workers, server {info.server_version}){worker}")
    finally:
        gradserve.disconnect()
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
