"""Diff: decide between no-op, update and replace for a Command, property by property.

Pure. Mirrors the upstream provider's input-based diff (pulumi-go-provider v1.3.0
infer/resource.go `diff`: old inputs against new inputs with the engine's ObjectDiff): any
changed input is an update (which re-runs `update`, or `create` when there is no `update`), and
a changed `triggers` is a replace. As the engine's `PropertyValue.DeepEquals` (pulumi sdk
go/common/resource/properties_diff.go), a value that becomes secret, or stops being secret,
is a change even when the value is the same.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .props import contains_unknown, is_secret, unwrap

REPLACE_ON_CHANGE = frozenset({"triggers"})
OUTPUT_ONLY = frozenset({"stdout", "stderr", "assets", "archive"})


class Kind(enum.Enum):
    """Mirrors `PropertyDiff.Kind` in provider.proto."""

    ADD = 0
    ADD_REPLACE = 1
    DELETE = 2
    DELETE_REPLACE = 3
    UPDATE = 4
    UPDATE_REPLACE = 5


@dataclass(frozen=True)
class DiffResult:
    detailed: Mapping[str, Kind] = field(default_factory=dict)

    @property
    def changes(self) -> bool:
        return bool(self.detailed)

    @property
    def replaces(self) -> tuple[str, ...]:
        return tuple(
            sorted(
                k
                for k, kind in self.detailed.items()
                if kind in (Kind.ADD_REPLACE, Kind.DELETE_REPLACE, Kind.UPDATE_REPLACE)
            )
        )


def diff(
    old_inputs: Mapping[str, Any],
    new_inputs: Mapping[str, Any],
    ignore_changes: Iterable[str] = (),
) -> DiffResult:
    ignored = set(ignore_changes)
    keys = (set(old_inputs) | set(new_inputs)) - OUTPUT_ONLY - ignored
    detailed: dict[str, Kind] = {}
    for key in sorted(keys):
        if key.startswith("__"):
            continue
        kind = _kind(old_inputs.get(key), new_inputs.get(key))
        if kind is None:
            continue
        if key in REPLACE_ON_CHANGE:
            kind = _as_replace(kind)
        detailed[key] = kind
    return DiffResult(detailed)


def _kind(old: Any, new: Any) -> Kind | None:
    if old is None and new is None:
        return None
    if old is None:
        return Kind.ADD
    if new is None:
        return Kind.DELETE
    if contains_unknown(new):
        return Kind.UPDATE
    return None if _same(old, new) else Kind.UPDATE


def _same(old: Any, new: Any) -> bool:
    if is_secret(old) or is_secret(new):
        return is_secret(old) and is_secret(new) and _same(unwrap(old), unwrap(new))
    # Numbers travel as doubles, so 22 and 22.0 are the same port; bools are not numbers here.
    if isinstance(old, bool) or isinstance(new, bool):
        return type(old) is type(new) and old == new
    if isinstance(old, int | float) and isinstance(new, int | float):
        return float(old) == float(new)
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        return old.keys() == new.keys() and all(_same(old[k], new[k]) for k in old)
    if isinstance(old, list) and isinstance(new, list):
        return len(old) == len(new) and all(_same(a, b) for a, b in zip(old, new, strict=True))
    return bool(old == new)


def _as_replace(kind: Kind) -> Kind:
    return {
        Kind.ADD: Kind.ADD_REPLACE,
        Kind.DELETE: Kind.DELETE_REPLACE,
        Kind.UPDATE: Kind.UPDATE_REPLACE,
    }.get(kind, kind)
