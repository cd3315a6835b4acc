"""The one registry of named entries (eval data sets here; edits, teachers, sources, backbones and losses in
``distill.registry``): a name or alias taken twice raises, an unknown name gets close matches.

It lives in the runtime so that both the runtime and the training tool chain can use it (``redaes_lite`` never
imports ``distill``). Plain Python: no torch, nothing done at import.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """``name -> entry``, filled by :meth:`add` or the :meth:`register` decorator.

    An entry may have aliases (looked up like its name, not listed by :meth:`names`) or be registered by
    import path (:meth:`register_lazy`: imported on the first :meth:`get`, for entries whose module is heavy).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._map: dict[str, T] = {}
        self._lazy: dict[str, str] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: add the object under ``name``, else its ``name`` attribute, else its ``__name__``."""

        def deco(obj: T) -> T:
            self.add(name or getattr(obj, "name", None) or obj.__name__, obj)
            return obj

        return deco

    def add(self, name: str, obj: T, *, aliases: Iterable[str] = ()) -> None:
        aliases = tuple(aliases)
        self._check_free(name, *aliases)
        self._map[name] = obj
        self._aliases.update(dict.fromkeys(aliases, name))

    def register_lazy(self, name: str, target: str) -> None:
        """Register ``"package.module:attr"``, imported on first :meth:`get`."""
        self._check_free(name)
        self._lazy[name] = target

    def _check_free(self, *keys: str) -> None:
        for key in keys:
            if key in self:
                raise ValueError(f"{self.kind} {key!r} is already registered")

    def get(self, name: str) -> T:
        """The entry called ``name`` (or an alias of it); ``KeyError`` with close matches when there is none."""
        name = self._aliases.get(name, name)
        if name in self._map:
            return self._map[name]
        if name in self._lazy:
            module, _, attr = self._lazy.pop(name).partition(":")
            self._map[name] = getattr(importlib.import_module(module), attr)
            return self._map[name]
        hint = self.close_matches(name)
        extra = f"; did you mean {', '.join(map(repr, hint))}?" if hint else f"; known: {', '.join(self.names())}"
        raise KeyError(f"unknown {self.kind} {name!r}{extra}")

    def close_matches(self, name: str, n: int = 3) -> list[str]:
        """Up to ``n`` names or aliases that look like ``name`` (for error messages)."""
        return difflib.get_close_matches(name, [*self._map, *self._lazy, *self._aliases], n=n)

    def names(self, pattern: str = "*") -> list[str]:
        """The registered names (aliases left out) matching the shell-style ``pattern``, sorted."""
        return sorted(fnmatch.filter([*self._map, *self._lazy], pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._map or name in self._lazy or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._map) + len(self._lazy)
