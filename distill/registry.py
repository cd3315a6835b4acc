"""Named registries (edits, teachers, backbones, losses, data sets): duplicates raise, typos get hints."""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["Registry", "EDITS", "TEACHERS", "BACKBONES", "LOSSES"]

T = TypeVar("T")


class Registry(Generic[T]):
    """A dict of name -> entry filled by a decorator; entries may be registered lazily by import path."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._map: dict[str, T] = {}
        self._lazy: dict[str, str] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            key = name or getattr(obj, "name", None) or obj.__name__
            self.add(key, obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        if name in self._map or name in self._lazy:
            raise KeyError(f"{self.kind} {name!r} registered twice")
        self._map[name] = obj

    def register_lazy(self, name: str, target: str) -> None:
        """Register ``"package.module:attr"``, imported on first :meth:`get`."""
        if name in self._map or name in self._lazy:
            raise KeyError(f"{self.kind} {name!r} registered twice")
        self._lazy[name] = target

    def get(self, name: str) -> T:
        if name in self._map:
            return self._map[name]
        if name in self._lazy:
            module, _, attr = self._lazy.pop(name).partition(":")
            self._map[name] = getattr(importlib.import_module(module), attr)
            return self._map[name]
        hint = difflib.get_close_matches(name, self.names(), n=3)
        extra = f"; did you mean {', '.join(map(repr, hint))}?" if hint else f"; known: {', '.join(self.names())}"
        raise KeyError(f"unknown {self.kind} {name!r}{extra}")

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(fnmatch.filter([*self._map, *self._lazy], pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._map or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._map) + len(self._lazy)


EDITS: Registry = Registry("edit")
TEACHERS: Registry = Registry("teacher")
BACKBONES: Registry = Registry("backbone")
LOSSES: Registry = Registry("loss")
