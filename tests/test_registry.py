"""The one Registry (redaes_lite._registry, re-exported by distill.registry): names, aliases, lazy entries,
duplicates refused, close matches for typos."""

from __future__ import annotations

import pytest

from distill import registry as distill_registry
from redaes_lite._registry import Registry


def test_names_aliases_and_lazy_entries() -> None:
    r: Registry = Registry("thing")
    r.add("alpha", 1, aliases=("a",))
    r.register("beta")(2)
    r.register_lazy("gamma", "math:pi")
    assert r.names() == ["alpha", "beta", "gamma"] and len(r) == 3 and list(r) == r.names()
    assert r.get("a") == 1 and "a" in r and r.names("b*") == ["beta"]
    assert r.get("gamma") == pytest.approx(3.14159, abs=1e-5)


def test_duplicates_raise_and_typos_get_close_matches() -> None:
    r: Registry = Registry("thing")
    r.add("alpha", 1, aliases=("a",))
    for name in ("alpha", "a"):
        with pytest.raises(ValueError, match=f"thing '{name}' is already registered"):
            r.add(name, 2)
    with pytest.raises(KeyError, match="did you mean 'alpha'"):
        r.get("alpah")
    with pytest.raises(KeyError, match="known: alpha"):
        r.get("zzz")


def test_distill_uses_the_runtime_registry() -> None:
    assert distill_registry.Registry is Registry
    for name in ("EDITS", "TEACHERS", "SOURCES", "BACKBONES", "LOSSES"):
        assert isinstance(getattr(distill_registry, name), Registry)
