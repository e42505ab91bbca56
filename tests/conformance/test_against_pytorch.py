"""Differential conformance: gradserve replays programs whose PyTorch behaviour is in cases.json.

cases.json is written by generate.py (run with a real PyTorch; this test never imports torch).
Per program it compares: reprs (exact strings), grad_fn class names, dtypes, shapes,
requires_grad, values and leaf/retained gradients (within tolerance), and exceptions (type and
message). Every program runs in-process; a strided subset also runs through a real server.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from harness import TOLERANCE, run

import gradserve

CASES = json.loads((Path(__file__).with_name("cases.json")).read_text())
PROGRAMS = CASES["programs"]
SERVER_STRIDE = 7       # every 7th program also goes through a real gRPC server


def _floats(values) -> np.ndarray:
    return np.array([float(v) for v in values], dtype=np.float64)


def _close(expected: dict, actual: dict, precision: str) -> bool:
    e, a = _floats(expected["values"]), _floats(actual["values"])
    if e.shape != a.shape:
        return False
    if e.size == 0:
        return True
    if expected["dtype"] in ("torch.bool", "torch.int64", "torch.int32"):
        return bool(np.array_equal(e, a))
    rtol, atol = TOLERANCE[precision]
    finite = np.isfinite(e)
    scale = max(1.0, float(np.abs(e[finite]).max())) if finite.any() else 1.0
    return bool(np.allclose(a, e, rtol=rtol, atol=atol * scale, equal_nan=True))


def compare(program: dict, actual: dict) -> list[str]:
    """Every difference between the recorded PyTorch run and the gradserve run, as readable lines."""
    expected = program["expected"]
    precision = program["precision"]
    problems: list[str] = []
    if expected["error"] != actual["error"]:
        problems.append(f"exception: expected {expected['error']}, got {actual['error']}")
    missing = [n for n in expected["vars"] if n not in actual["vars"]]
    extra = [n for n in actual["vars"] if n not in expected["vars"]]
    if missing or extra:
        problems.append(f"variables: missing {missing}, unexpected {extra}")
    for name, exp in expected["vars"].items():
        act = actual["vars"].get(name)
        if act is None:
            continue
        for key in ("type", "dtype", "shape", "grad_fn", "requires_grad"):
            if exp.get(key) != act.get(key):
                problems.append(f"{name}.{key}: expected {exp.get(key)!r}, got {act.get(key)!r}")
        if "values" in exp and exp.get("shape") == act.get("shape") and exp.get("dtype") == act.get("dtype"):
            if not _close(exp, act, precision):
                problems.append(f"{name} values: expected {exp['values']}, got {act['values']}")
        if "repr" in exp and exp["repr"] != act.get("repr"):
            problems.append(f"{name} repr:\n  expected {exp['repr']!r}\n  got      {act.get('repr')!r}")
    if set(expected["grads"]) != set(actual["grads"]):
        problems.append(f"grads recorded for {sorted(expected['grads'])}, got {sorted(actual['grads'])}")
    for name, exp in expected["grads"].items():
        if name not in actual["grads"]:
            continue
        act = actual["grads"][name]
        if (exp is None) != (act is None):
            problems.append(f"{name}.grad: expected {exp}, got {act}")
            continue
        if exp is None:
            continue
        for key in ("dtype", "shape"):
            if exp[key] != act[key]:
                problems.append(f"{name}.grad {key}: expected {exp[key]!r}, got {act[key]!r}")
        if exp["shape"] == act["shape"] and not _close(exp, act, precision):
            problems.append(f"{name}.grad values: expected {exp['values']}, got {act['values']}")
    return problems


def check(program: dict, target: str) -> None:
    if gradserve.executor().target != target:   # whatever order the tests run in
        gradserve.connect(target)
    actual = run(gradserve, program)
    problems = compare(program, actual)
    if problems:
        pytest.fail(f"program {program['id']} ({program['mode']}):\n{program['source']}\n"
                    + "\n".join(problems), pytrace=False)


@pytest.fixture(scope="module", autouse=True)
def _disconnect_after():
    yield
    gradserve.disconnect()


@pytest.mark.parametrize("program", PROGRAMS, ids=[f"p{p['id']}" for p in PROGRAMS])
def test_inprocess(program):
    check(program, "inprocess")


@pytest.fixture(scope="module")
def server():
    from gradserve import server as server_mod
    running = server_mod.start(port=0, workers=2)
    try:
        yield running
    finally:
        gradserve.disconnect()
        running.stop(grace=1.0)


SERVER_PROGRAMS = PROGRAMS[::SERVER_STRIDE]


@pytest.mark.parametrize("program", SERVER_PROGRAMS, ids=[f"p{p['id']}" for p in SERVER_PROGRAMS])
def test_through_server(server, program):
    check(program, server.address)
    assert type(gradserve.executor()).__name__ == "RemoteExecutor"


def test_cases_cover_every_mode():
    modes = {p["mode"] for p in PROGRAMS}
    assert modes == {"normal", "edge", "error"}
    assert len(PROGRAMS) >= 300
