"""Errors of opening a stack that callers tell apart, in a module with no heavy imports."""

from __future__ import annotations


class StackNotDeployed(RuntimeError):
    """The stack has no finished update yet (its first ``up`` is still running), so there is
    no recorded config to work from: nothing to do until it has one."""
