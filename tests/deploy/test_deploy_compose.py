"""Compose deployment on the real Docker engine: image, health, tutorial, balancing, kill, scale, teardown.

Tests run in file order against one deployment (module fixture); the last one tears it down and
asserts that nothing is left behind.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import compose_harness as harness
import pytest

pytestmark = pytest.mark.docker

TUTORIAL = harness.TUTORIAL


SEEDED = harness.LOAD_SCRIPT.parent / "seeded.py"


def _tutorial(address: str, seeded: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, GRADSERVE_ADDRESS=address)
    cmd = [sys.executable, *([str(SEEDED)] if seeded else []), str(TUTORIAL)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd=TUTORIAL.parent)


def _same(text: str, mask_numbers: bool = False) -> str:
    """Output modulo object addresses (`<AddBackward0 object at 0x7f..>`) and, if asked, numbers."""
    text = re.sub(r"0x[0-9a-f]+", "0x?", text.replace("\r\n", "\n"))
    if mask_numbers:
        # Column alignment depends on the numbers too, so drop spaces within lines.
        text = re.sub(r"[ \t]+", "", re.sub(r"-?\d+(\.\d*)?(e[+-]\d+)?", "#", text))
    return text


@pytest.fixture(scope="module")
def tutorial_expected():
    """The tutorial's output computed in-process on the host, with the random generator seeded."""
    if not TUTORIAL.exists():
        pytest.skip(f"{TUTORIAL.relative_to(harness.ROOT)} does not exist yet")
    local = _tutorial("inprocess")
    assert local.returncode == 0, local.stderr
    return local.stdout


def test_image_is_small_non_root_with_grpc_healthcheck(docker_client, deployment):
    image = docker_client.images.get(deployment.image)
    config = image.attrs["Config"]
    assert config["User"] == "10001:10001"
    assert "50051/tcp" in config["ExposedPorts"]
    assert config["Entrypoint"] == ["gradserve"]
    assert config["Cmd"] == ["serve"]
    assert config["Healthcheck"]["Test"][:3] == ["CMD", "gradserve", "health"]
    assert image.attrs["Size"] < 400e6, f"image is {image.attrs['Size'] / 1e6:.0f} MB"
    replica = deployment.replicas_now()[0]
    code, out = replica.exec_run(["python3", "-c", "import os; print(os.getuid())"])
    assert (code, out.decode().strip()) == (0, "10001")


def test_replicas_run_with_health_limits_restart_policy_and_ports(deployment):
    replicas = deployment.replicas_now()
    assert len(replicas) == 3
    for c in replicas:
        c.reload()
        host = c.attrs["HostConfig"]
        assert c.attrs["State"]["Health"]["Status"] == "healthy"
        assert host["RestartPolicy"]["Name"] == "unless-stopped"
        assert host["NanoCpus"] > 0 and host["Memory"] > 0
        assert host["ShmSize"] >= 512 * 2**20
        assert host["Init"] is True
        env = dict(e.split("=", 1) for e in c.attrs["Config"]["Env"])
        assert env["GRADSERVE_WORKERS"] == "2" and env["GRADSERVE_HOST"] == "0.0.0.0"
        # The in-flight and cache budgets fit in shm_size, so the server did not have to cap them.
        assert "limiting max_inflight_bytes" not in c.logs().decode(errors="replace")
    ports = deployment.published_ports()
    assert len(ports) == 3 and len(set(ports)) == 3


def test_tutorial_from_a_client_container_in_the_network(deployment, tutorial_expected, progress):
    # Exactly the documented command; the tutorial draws random numbers, so compare all but those.
    result = deployment.run_client()
    assert result.returncode == 0, result.stdout + result.stderr
    assert _same(result.stdout, mask_numbers=True) == _same(tutorial_expected, mask_numbers=True)
    # Seeded, the output is identical to the in-process run on the host, digit for digit.
    seeded = deployment.run_client("-v", f"{SEEDED.parent}:/load:ro", "client",
                                   "/load/seeded.py", "-m", "gradserve.examples.autograd_tutorial")
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    assert _same(seeded.stdout) == _same(tutorial_expected)
    progress("tutorial from the client container: same output as the in-process run")


def test_tutorial_from_the_host_through_a_published_port(deployment, tutorial_expected):
    port = deployment.published_ports()[0]
    result = _tutorial(f"127.0.0.1:{port}")
    assert result.returncode == 0, result.stderr
    assert _same(result.stdout) == _same(tutorial_expected)
    plain = _tutorial(f"127.0.0.1:{port}", seeded=False)
    assert plain.returncode == 0, plain.stderr


def test_load_from_the_host_through_every_published_port(deployment):
    for port in deployment.published_ports():
        out = subprocess.run([sys.executable, str(harness.LOAD_SCRIPT), "--target", f"127.0.0.1:{port}",
                              "--requests", "20", "--threads", "2"],
                             capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]


def test_300_requests_are_spread_over_every_replica(deployment, progress):
    before = deployment.served_counts()
    report = deployment.finish_load(deployment.start_load("--requests", "300", "--threads", "4"))
    assert report["failed"] == 0 and report["ok"] == 300, report
    per_replica = deployment.served_since(before, 300)
    progress(f"300 requests over round_robin in {report['seconds']} s: {per_replica}")
    deployment.figures["requests per replica (300, round_robin)"] = ", ".join(map(str, per_replica.values()))
    assert len(per_replica) == 3
    assert all(n > 0 for n in per_replica.values()), per_replica
    assert sum(per_replica.values()) >= 300


def test_replica_killed_mid_load_no_request_fails_and_it_comes_back(deployment, progress):
    victim = deployment.replicas_now()[1]
    victim.reload()
    restarts = victim.attrs["RestartCount"]
    before = deployment.served_counts()
    # Requests of ~40 ms of compute (512 x 512 matmul, 1 MiB each way) from 6 threads: about two
    # are in flight on every replica at any moment, so the kill cuts some off mid-request.
    load = deployment.start_load("--requests", "300", "--threads", "6", "--size", "512")
    done = _wait_progress(load, 100)
    at_kill = deployment.served_counts()
    how = deployment.crash(victim)
    killed_at = time.monotonic()
    progress(f"killed {victim.name} ({how}) after {done} of 300 requests")
    report = deployment.finish_load(load)
    retried = report["attempts"] - report["ok"]
    deployment.figures["failed requests during the kill"] = (
        f"{report['failed']} of {report['requests']} ({how}; {retried} client retries)")
    assert report["failed"] == 0, report
    assert report["ok"] == 300
    # The victim was taking its share of this load when it died.
    assert at_kill[victim.name] > before.get(victim.name, 0)
    # The restart policy (not this test) brings the replica back, and it turns healthy again.
    back = deployment.wait_healthy(
        predicate=lambda c: c.id != victim.id or c.attrs["RestartCount"] > restarts)
    recovered = time.monotonic() - killed_at
    assert victim.id in {c.id for c in back}
    deployment.figures["killed replica healthy again after"] = f"{recovered:.1f} s (restart policy)"
    served = deployment.served_since(before, 300, timeout=5)
    others = {name: n for name, n in served.items() if name != victim.name}
    progress(f"load finished: {report['ok']} ok, 0 failed, {retried} retried; replica back after "
             f"{recovered:.1f} s; served by the others during the load: {others}")


def test_scale_up_a_running_client_finds_the_new_replica_then_scale_down(deployment, progress):
    # One long-lived client, paced: it must discover the new replica by itself. Servers close
    # connections after GRADSERVE_MAX_CONNECTION_AGE seconds, the client re-resolves DNS (gRPC
    # allows that once per 30 s by default) and round_robin adds the new address.
    load = deployment.start_load("--requests", "5000", "--threads", "2", "--interval", "0.05")
    _wait_progress(load, 20)
    scaled_at = time.monotonic()
    deployment.scale(4)
    deployment.wait_healthy(4)
    [new] = [c for c in deployment.replicas_now() if c.labels["com.docker.compose.container-number"] == "4"]
    deadline = time.monotonic() + 120
    while not harness.SERVED.search(new.logs().decode(errors="replace")):
        assert time.monotonic() < deadline, "the running client never sent a request to the new replica"
        load.reload()
        assert load.status == "running", load.logs().decode(errors="replace")[-3000:]
        time.sleep(0.25)
    found = time.monotonic() - scaled_at
    load.stop(timeout=30)   # SIGTERM: the load stops issuing requests and reports
    report = deployment.finish_load(load)
    assert report["failed"] == 0, report
    progress(f"scaled to 4: the running client reached the new replica {found:.1f} s after "
             f"`--scale`; {report['ok']} requests, 0 failed, {report['attempts'] - report['ok']} retried")
    deployment.figures["new replica used by a running client"] = (
        f"{found:.1f} s after scale-up (connection age 5 s)")
    assert len(deployment.published_ports()) == 4

    deployment.scale(3)
    assert len([c for c in deployment.replicas_now() if c.status == "running"]) == 3
    deployment.wait_healthy(3)


def _wait_progress(load, at_least: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while True:
        found = re.findall(rb"^progress (\d+)$", load.logs(stdout=True, stderr=False), re.M)
        done = int(found[-1]) if found else 0
        if done >= at_least:
            return done
        load.reload()
        assert load.status == "running" and time.monotonic() < deadline, load.logs().decode(errors="replace")
        time.sleep(0.05)


def test_teardown_leaves_no_containers_networks_or_volumes(deployment):
    deployment.down()
    assert deployment.leftover_containers() == []
    assert deployment.leftover_networks() == []
    assert deployment.leftover_volumes() == []
