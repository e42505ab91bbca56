"""Fixtures for service tests: real servers on 127.0.0.1:0 with real worker processes."""

from __future__ import annotations

import pytest
from server_helpers import running, stub_for


@pytest.fixture(scope="module")
def shared_server():
    """One server for the tests that leave it intact."""
    with running(max_inflight=32) as srv:
        yield srv


@pytest.fixture
def fresh_server():
    """A server of its own, for tests that kill workers or stop the server."""
    with running() as srv:
        yield srv


@pytest.fixture(scope="module")
def stub(shared_server):
    return stub_for(shared_server)


