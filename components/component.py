"""The base of every gemnar component: its type token and its constructor, in one place.

A component's type token is ``gemnar:infra:<class name>``; it is part of every child's URN,
so a component class is never renamed without a Pulumi alias. Each is built the same way,
``Cls(name, args, opts=None)``: the subclass declares its children (parented to ``self``)
in ``build`` and returns the outputs to register.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import pulumi

TYPE_PREFIX = "gemnar:infra:"

ArgsT = TypeVar("ArgsT")
Outputs = dict[str, Any]


class Component(pulumi.ComponentResource, Generic[ArgsT]):
    """A component resource of this project (see the module's docstring)."""

    def __init__(self, name: str, args: ArgsT, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE_PREFIX + type(self).__name__, name, None, opts)
        self.register_outputs(self.build(name, args))

    def build(self, name: str, args: ArgsT) -> Outputs:
        """Declare the children and return the outputs to register."""
        raise NotImplementedError
