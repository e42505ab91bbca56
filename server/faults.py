"""The service's own failure types (besides engine and codec errors); errors.py maps them to codes."""

from __future__ import annotations


class ServiceFault(Exception):
    """Base class of failures the service raises on purpose."""


class Overloaded(ServiceFault):
    """Admission control: too many requests or bytes in flight, or one request too big."""


class WorkerLost(ServiceFault):
    """The worker running the request died, and so did the retry."""


class ShuttingDown(ServiceFault):
    """The server is stopping and takes no new work."""


class RequestCancelled(ServiceFault):
    """The client cancelled the call."""


class DeadlineExceeded(ServiceFault):
    """The call's deadline passed before the result was complete."""


class WorkerFailure(ServiceFault):
    """A worker hit an unexpected error: a bug in the server, not in the request."""
