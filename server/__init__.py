"""gradserve server: gRPC front process, worker pool and CLI.

Lazy on purpose: spawned workers import gradserve.server.worker, which must load the engine only,
so nothing here imports numpy or grpc until `start` (or another public name) is used.
"""

from __future__ import annotations

from importlib import import_module

_PUBLIC = {"start": ".app", "RunningServer": ".app", "Options": ".options"}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module, __name__), name)
