"""The op tables. Importing this package fills `registry.OPS`; each module is one family."""

from . import elementwise  # noqa: F401
