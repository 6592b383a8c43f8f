"""Settings to and from JSON, so a node's daemons and tools read the settings it was built with.

The controller's health monitor and ``gemnar-lb-apply`` render the Nginx upstream with the same
``ControllerSettings`` that rendered the rest of the node; cloud-init (prod) and the local node
(local stack) write them as ``controller.json`` beside the other configs.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, TypeVar

from provisioning.settings import ControllerSettings, WorkerSettings

T = TypeVar("T")


def to_json(settings: ControllerSettings | WorkerSettings) -> str:
    return json.dumps(dataclasses.asdict(settings), sort_keys=True)


def _build(cls: type[T], data: dict[str, Any]) -> T:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name not in data:
            continue
        value = data[field.name]
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = _build(hint, value)  # type: ignore[arg-type]
        elif typing.get_origin(hint) is tuple or (
            isinstance(hint, types.GenericAlias) and hint.__origin__ is tuple
        ):
            value = tuple(value)
        kwargs[field.name] = value
    return cls(**kwargs)


def controller_from_json(text: str) -> ControllerSettings:
    return _build(ControllerSettings, json.loads(text))


def worker_from_json(text: str) -> WorkerSettings:
    return _build(WorkerSettings, json.loads(text))
