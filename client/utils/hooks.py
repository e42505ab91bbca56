"""`RemovableHandle`, returned by `Tensor.register_hook`."""

from __future__ import annotations

import itertools
import weakref

_ids = itertools.count()


class RemovableHandle:
    """Removes the hook it was returned for; usable as a context manager."""

    def __init__(self, hooks_dict: dict) -> None:
        self.hooks_dict_ref = weakref.ref(hooks_dict)
        self.id = next(_ids)

    def remove(self) -> None:
        hooks = self.hooks_dict_ref()
        if hooks is not None:
            hooks.pop(self.id, None)

    def __enter__(self) -> "RemovableHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class HookDict(dict):
    """A tensor's hooks in registration order (a dict subclass so handles can refer to it weakly)."""
