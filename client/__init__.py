"""gradserve: PyTorch's autograd API, recorded locally and computed by a gradient service.

This module is a lazy namespace (PEP 562): `import gradserve` loads nothing heavy; the first
attribute access imports `gradserve._api` (NumPy, the engine) and copies its public names here.
Spawned server workers import `gradserve.server.worker`, which imports this package first, so it
must stay cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"

# Submodules resolved by attribute access without importing the API.
_SUBMODULES = {"engine", "server", "codec", "v1", "nn", "autograd", "utils"}


def __getattr__(name: str):
    import importlib
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name.startswith("_"):
        # Private names are submodules being imported (`from . import _x` probes them here first).
        raise AttributeError(f"module 'gradserve' has no attribute {name!r}")
    _api = importlib.import_module(f"{__name__}._api")
    g = globals()
    for key, value in _api.PUBLIC.items():
        g.setdefault(key, value)
    if name in _api.PUBLIC:
        return _api.PUBLIC[name]
    raise AttributeError(f"module 'gradserve' has no attribute {name!r}")


def __dir__() -> list[str]:
    import importlib
    _api = importlib.import_module(f"{__name__}._api")
    return sorted(set(globals()) | set(_api.PUBLIC))
