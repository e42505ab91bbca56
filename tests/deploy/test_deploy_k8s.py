"""Static checks of deploy/k8s: kinds, selectors matching labels, headless Service, gRPC probes, limits."""

from __future__ import annotations

from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
SERVER_OPTIONS = {"GRADSERVE_HOST", "GRADSERVE_PORT", "GRADSERVE_WORKERS", "GRADSERVE_BLAS_THREADS",
                  "GRADSERVE_LOG_LEVEL", "GRADSERVE_MAX_CONNECTION_AGE",
                  "GRADSERVE_MAX_CONNECTION_AGE_GRACE", "GRADSERVE_SHUTDOWN_GRACE",
                  "GRADSERVE_MAX_INFLIGHT_BYTES", "GRADSERVE_SHM_CACHE_BYTES"}


def _documents() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _one(kind: str) -> dict:
    found = [d for d in _documents() if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def test_every_document_has_api_version_kind_and_name():
    docs = _documents()
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "Kustomization"}
    for d in docs:
        assert d["apiVersion"] and d["kind"]
        if d["kind"] != "Kustomization":
            assert d["metadata"]["name"]


def test_kustomization_lists_existing_files():
    kustomization = _one("Kustomization")
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource


def test_service_is_headless_and_selects_the_deployment_pods():
    deployment, service = _one("Deployment"), _one("Service")
    assert deployment["apiVersion"] == "apps/v1" and service["apiVersion"] == "v1"
    assert service["spec"]["clusterIP"] == "None"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    [port] = service["spec"]["ports"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port["port"] == 50051 and named[port["targetPort"]] == 50051


def test_server_container_has_grpc_probes_limits_env_and_shared_memory():
    deployment = _one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] >= 2
    [container] = pod["containers"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["grpc"]["port"] == 50051, probe
    limits = container["resources"]["limits"]
    assert limits["cpu"] and limits["memory"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert SERVER_OPTIONS <= env.keys()
    assert env["GRADSERVE_HOST"] == "0.0.0.0" and env["GRADSERVE_PORT"] == "50051"
    assert pod["securityContext"]["runAsNonRoot"] is True
    # The worker pool exchanges tensors through /dev/shm, which must be larger than the default.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    # Graceful shutdown: Kubernetes must wait longer than the server's own grace.
    assert pod["terminationGracePeriodSeconds"] > float(env["GRADSERVE_SHUTDOWN_GRACE"])


def test_env_names_are_real_server_options():
    options = pytest.importorskip("gradserve.server.options")
    known = {options.env_name(f) for f in options.Options.__dataclass_fields__}
    for doc in _documents():
        if doc["kind"] != "Deployment":
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            names = {e["name"] for e in container.get("env", [])}
            assert names <= known, names - known


def test_shared_memory_volume_holds_what_the_server_may_put_there():
    options = pytest.importorskip("gradserve.server.options")
    pod = _one("Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    size = {v["name"]: v for v in pod["volumes"]}[mounts["/dev/shm"]]["emptyDir"]["sizeLimit"]
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    limit = int(size[:-2]) * units[size[-2:]]
    needed = sum(options.parse_bytes(env[n]) for n in ("GRADSERVE_MAX_INFLIGHT_BYTES",
                                                        "GRADSERVE_SHM_CACHE_BYTES"))
    assert needed < limit


def test_client_job_targets_the_headless_service_by_dns():
    job = _one("Job")
    [container] = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    service = _one("Service")
    assert env["GRADSERVE_ADDRESS"] == f"dns:///{service['metadata']['name']}:50051"
