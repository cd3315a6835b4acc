"""The named registries of the training tool chain, all of the one :class:`Registry` kind (the runtime's, so that
its eval data sets are registered the same way): edits, teachers, training sources, backbones, losses."""

from __future__ import annotations

from redaes_lite._registry import Registry

__all__ = ["BACKBONES", "EDITS", "LOSSES", "Registry", "SOURCES", "TEACHERS"]

EDITS: Registry = Registry("edit")
TEACHERS: Registry = Registry("teacher")
SOURCES: Registry = Registry("source")
BACKBONES: Registry = Registry("backbone")
LOSSES: Registry = Registry("loss")
