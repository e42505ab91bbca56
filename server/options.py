"""Server options: one dataclass, read from keyword arguments, CLI flags or GRADSERVE_* variables."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Mapping

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
          "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4, "tib": 1024**4}


def parse_bytes(text: str | int) -> int:
    """'4GiB', '512MiB', '1000000' -> bytes."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a byte size: {text!r} (use e.g. 4GiB, 512MiB or a number of bytes)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _opt(default, help: str, parse=None):
    return field(default=default, metadata={"help": help, "parse": parse})


@dataclass(frozen=True)
class Options:
    """Every tunable of a server. Field `foo_bar` is flag `--foo-bar` and env `GRADSERVE_FOO_BAR`."""

    host: str = _opt("127.0.0.1", "address to bind")
    port: int = _opt(50051, "port to bind; 0 picks a free one")
    workers: int = _opt(2, "worker processes (each uses blas_threads cores)")
    blas_threads: int = _opt(1, "BLAS/OpenMP threads per worker")
    max_inflight: int = _opt(16, "requests admitted at once (queued or running); more get "
                                 "RESOURCE_EXHAUSTED")
    max_inflight_bytes: int = _opt(4 * 1024**3, "tensor bytes (inputs + results) pinned in shared "
                                                "memory by admitted requests", parse_bytes)
    max_elements: int = _opt(2**31, "elements per tensor, leaves and every intermediate")
    max_nodes: int = _opt(10_000_000, "nodes per graph")
    inline_max_nodes: int = _opt(64, "requests with at most this many nodes ... (see "
                                     "inline_max_elements); 0 never computes in the front")
    inline_max_elements: int = _opt(16384, "... and at most this many elements in all their tensors "
                                           "together (inferred) are computed in the front process, "
                                           "one at a time, without the hand-off to a worker")
    shm_cache_bytes: int = _opt(1024**3, "free shared-memory blocks kept for reuse", parse_bytes)
    kill_after: float = _opt(1.0, "seconds a cancelled job may take to stop before its worker "
                                  "is killed and replaced")
    max_connection_age: float = _opt(30.0, "seconds before a client connection is asked to "
                                           "reconnect (DNS re-resolution behind round_robin)")
    max_connection_age_grace: float = _opt(3600.0, "seconds an aged connection may keep running "
                                                   "calls; longer than the longest request")
    shutdown_grace: float = _opt(25.0, "seconds in-flight requests get to finish on SIGTERM")
    log_level: str = _opt("INFO", "DEBUG logs one line per request")

    @property
    def grpc_threads(self) -> int:
        # Every admitted streaming call holds a thread; the rest serve health checks, GetInfo and
        # quick rejections.
        return self.max_inflight + 8

    def replace(self, **changes) -> "Options":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides) -> "Options":
        """Defaults, then GRADSERVE_* variables, then `overrides` (None values are ignored)."""
        values = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(env_name(f.name))
            if raw is not None and raw != "":
                values[f.name] = convert(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def env_name(field_name: str) -> str:
    return "GRADSERVE_" + field_name.upper()


def convert(f: dataclasses.Field, raw: str):
    parse = f.metadata.get("parse")
    if parse is not None:
        return parse(raw)
    kind = type(f.default)
    return kind(raw)
