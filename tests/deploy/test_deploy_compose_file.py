"""Static checks of deploy/docker-compose.yml with every Compose implementation installed."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"


def _implementations() -> list[list[str]]:
    import shutil

    found = []
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"],
                                                 capture_output=True).returncode == 0:
        found.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        found.append(["docker-compose"])
    return found


@pytest.mark.parametrize("compose", _implementations() or [pytest.param(None, marks=pytest.mark.skip(
    reason="neither `docker compose` nor `docker-compose` is installed"))], ids=lambda c: " ".join(c or []))
def test_compose_accepts_the_file_with_replicas_ports_and_client_profile(compose):
    env = dict(os.environ, GRADSERVE_REPLICAS="4", GRADSERVE_PUBLISH="127.0.0.1:50100-50109")
    out = subprocess.run([*compose, "-p", "gradservecheck", "-f", str(COMPOSE_FILE), "--profile", "client",
                          "config"], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    config = yaml.safe_load(out.stdout)
    server = config["services"]["gradserve"]
    assert server["deploy"]["replicas"] == 4
    assert server["restart"] == "unless-stopped"
    assert server["healthcheck"]["test"][:3] == ["CMD", "gradserve", "health"]
    assert config["services"]["client"]["environment"]["GRADSERVE_ADDRESS"] == "dns:///gradserve:50051"
    assert "50100-50109" in str(server["ports"])


def test_every_gradserve_variable_in_the_compose_file_is_a_server_option():
    options = pytest.importorskip("gradserve.server.options")
    known = {options.env_name(f) for f in options.Options.__dataclass_fields__}
    config = yaml.safe_load(COMPOSE_FILE.read_text())
    names = set(config["services"]["gradserve"]["environment"])
    assert names <= known, names - known
    # Variables only compose itself reads (interpolation), documented in the README's table.
    interpolated = set(re.findall(r"\$\{(GRADSERVE_[A-Z_]+)", COMPOSE_FILE.read_text()))
    readme = (DEPLOY.parent / "README.md").read_text()
    undocumented = {v for v in interpolated if f"| `{v}` |" not in readme}
    assert not undocumented, f"not described in README.md: {sorted(undocumented)}"
