"""Fixtures: every test computes in-process unless it asks for `remote` (a real server)."""

from __future__ import annotations

import pytest

import gradserve


@pytest.fixture(autouse=True)
def inprocess():
    executor = gradserve.connect("inprocess")
    yield executor
    gradserve.disconnect()


@pytest.fixture(scope="session")
def server():
    from gradserve.server import start

    srv = start(host="127.0.0.1", port=0, workers=2)
    yield srv
    srv.stop()


@pytest.fixture
def remote(server, inprocess):
    executor = gradserve.connect(server.address, timeout=60)
    yield executor
    gradserve.connect("inprocess")


class CountingExecutor:
    """The in-process executor, recording every request it gets."""

    def __init__(self) -> None:
        self.inner = gradserve.InProcessExecutor()
        self.target = "counting"
        self.calls: list[tuple[str, object]] = []

    def evaluate(self, graph, values, outputs):
        self.calls.append(("evaluate", graph))
        return self.inner.evaluate(graph, values, outputs)

    def backward(self, graph, values, roots, seeds, grads):
        self.calls.append(("backward", graph))
        return self.inner.backward(graph, values, roots, seeds, grads)

    def close(self) -> None:
        pass


@pytest.fixture
def counting(monkeypatch):
    from gradserve import _executor

    ex = CountingExecutor()
    monkeypatch.setattr(_executor, "_current", ex)
    return ex
