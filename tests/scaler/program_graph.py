"""The real program's resource graph and exports under Pulumi mocks, for the scaler's tests.

``graph(platform, count)`` runs ``program.build`` for a stack of ``count`` workers (Vultr is
mocked; nothing else is) and returns every registered resource — URN, type, parent and the
dependencies the program declared, explicit and through inputs — and the resolved exports.
The scaler's fakes are built from this, so they can only name types and outputs the program
really has. Each graph is computed in a child process (``python -m tests.scaler.program_graph``)
because the mocks are process-wide state that other tests also install.
"""

from __future__ import annotations

import asyncio
import functools
import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from engine.toolchain import PROJECT_ROOT

STACK = "prod"
PLATFORMS = ("vultr", "local")
COUNTS = range(1, 7)


@dataclass(frozen=True)
class Graph:
    """One program run: resources in registration order, and the stack's exports."""

    resources: tuple[dict[str, Any], ...]
    outputs: dict[str, Any]

    def by_name(self, name: str) -> dict[str, Any]:
        matches = [r for r in self.resources if r["urn"].rsplit("::", 1)[1] == name]
        assert len(matches) == 1, (name, matches)
        return matches[0]

    @property
    def urns(self) -> set[str]:
        return {r["urn"] for r in self.resources}

    def deployment(self) -> dict[str, Any]:
        """What ``Stack.export_stack().deployment`` holds for this graph (the fields used)."""
        stack_urn = f"urn:pulumi:{STACK}::gemnar::pulumi:pulumi:Stack::gemnar-{STACK}"
        return {"resources": [{"urn": stack_urn, "type": "pulumi:pulumi:Stack"},
                              *[{**r, "parent": r["parent"] or stack_urn}
                                for r in self.resources]]}


@functools.cache
def _all() -> dict[tuple[str, int], Graph]:
    out = subprocess.run(
        [sys.executable, "-m", "tests.scaler.program_graph"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=True, timeout=300,
    ).stdout
    raw = json.loads(out)
    return {
        (platform, int(count)): Graph(tuple(g["resources"]), g["outputs"])
        for platform, counts in raw.items() for count, g in counts.items()
    }


def graph(platform: str, count: int) -> Graph:
    return _all()[(platform, count)]


# ---- the child process ----------------------------------------------------------------------


def _values(platform: str, count: int) -> dict[str, str]:
    from tests.program.harness import BASE_VALUES, PRIVATE_KEY

    values = {**BASE_VALUES, "platform": platform, "workerCount": str(count),
              "minWorkers": "1", "maxWorkers": "6"}
    if platform == "local":
        values |= {"sshPrivateKey": PRIVATE_KEY, "localStateDir": "/nonexistent/gemnar-graph"}
    return values


def _run(platform: str, count: int) -> dict[str, Any]:
    import pulumi
    from pulumi.runtime import mocks

    import program
    from stack_config import parse_stack_config
    from tests.program import harness

    recorded: list[dict[str, Any]] = []
    original = mocks.MockMonitor.RegisterResource

    def register(self: mocks.MockMonitor, request: Any) -> Any:
        response = original(self, request)
        if request.type != "pulumi:pulumi:Stack":
            deps = set(request.dependencies)
            for property_deps in request.propertyDependencies.values():
                deps.update(property_deps.urns)
            recorded.append({"urn": response.urn, "type": request.type,
                             "parent": request.parent or None, "dependencies": sorted(deps)})
        return response

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    pulumi.runtime.settings.ROOT.set(None)
    mocks.MockMonitor.RegisterResource = register  # type: ignore[method-assign]
    try:
        pulumi.runtime.set_mocks(harness.MOCKS, project="gemnar", stack=STACK, preview=False)
        cfg = parse_stack_config(_values(platform, count),
                                 secret_keys={"secretSeed", "sshPrivateKey"})
        outputs: dict[str, Any] = {}

        @pulumi.runtime.test
        def declare() -> pulumi.Output[None]:
            exports = program.build(cfg)
            return pulumi.Output.all(**exports).apply(outputs.update)

        declare()
    finally:
        mocks.MockMonitor.RegisterResource = original  # type: ignore[method-assign]
        loop.close()
    return {"resources": recorded, "outputs": outputs}


def main() -> None:
    import tests.program.harness  # noqa: F401  (installs the mocks before the program loads)

    result = {p: {str(n): _run(p, n) for n in COUNTS} for p in PLATFORMS}
    json.dump(result, sys.stdout, default=str)


if __name__ == "__main__":
    main()
