"""The program survives the upstream command provider's quirks (see tools/command_provider).

Upstream pulumi-command 1.2.1 (provider/pkg/provider/remote/connection.go) retries a failed
proxied handshake on a closed tunnel, and (commandOutputs.go) sends `environment` and
PULUMI_COMMAND_* as SSH `env` requests that a stock sshd refuses. These tests check, on the
declared resources, that the program does not depend on either.
"""

from __future__ import annotations

from typing import Any

import pulumi

from components.host_secrets import derive_secret
from tests.program.harness import (
    BASE_VALUES,
    COMMAND,
    RESERVED_IP,
    Declared,
    config,
    declare,
    each_worker,
    worker_private_ip,
)


@pulumi.runtime.test
def test_no_remote_command_uses_the_ssh_environment() -> pulumi.Output[None]:
    _, declared = declare(config(workerCount="3"))

    def check(resources: list[Declared]) -> None:
        commands = [d for d in resources if d.type == COMMAND]
        names = {d.name for d in commands}
        for i in range(3):
            assert {f"gemnar-worker-{i}-{s}" for s in ("ssh-wait", "secrets-write")} <= names
        assert {"gemnar-controller-secrets-write", "gemnar-membership-sync"} <= names
        for command in commands:
            inputs = command.plain
            assert inputs.get("environment") in (None, {}), command.name
            assert inputs["addPreviousOutputInEnv"] is False, command.name

    return declared.apply(check)


@pulumi.runtime.test
def test_secrets_travel_on_stdin_only() -> pulumi.Output[None]:
    _, declared = declare(config(workerCount="2"))
    seed = BASE_VALUES["secretSeed"]
    secret = derive_secret(seed, "redis-password")

    def check(resources: list[Declared]) -> None:
        for command in (d for d in resources if d.type == COMMAND):
            inputs = command.plain
            text = " ".join(str(inputs.get(k, "")) for k in ("create", "update", "delete"))
            assert secret not in text, command.name
        writes = [d for d in resources if d.name.endswith("-secrets-write")]
        assert len(writes) == 3
        for write in writes:
            assert secret in write.plain["stdin"]

    return declared.apply(check)


@pulumi.runtime.test
def test_worker_commands_wait_for_a_steady_ssh_handshake() -> pulumi.Output[None]:
    def check(named: dict[str, Declared], i: int) -> None:
        wait = named[f"gemnar-worker-{i}-ssh-wait"].plain
        # Runs on the controller, dialled directly: upstream retries that dial anew.
        assert wait["connection"]["host"] == RESERVED_IP
        assert "proxy" not in wait["connection"]
        assert f"ssh-keyscan -T 5 -p 22 {worker_private_ip(f'w-{i}')}" in wait["create"]
        gate = named[f"gemnar-worker-{i}-ssh"].resource
        secrets_deps = named[f"gemnar-worker-{i}-secrets"].opts.depends_on
        assert isinstance(secrets_deps, list) and gate in secrets_deps
        ready_deps = named[f"gemnar-worker-{i}-ready"].opts.depends_on
        assert isinstance(ready_deps, list)
        assert named[f"gemnar-worker-{i}-secrets"].resource in ready_deps

    return each_worker(2, check)


@pulumi.runtime.test
def test_worker_secrets_roll_one_worker_at_a_time() -> pulumi.Output[None]:
    def check(named: dict[str, Declared], i: int) -> None:
        secrets = named[f"gemnar-worker-{i}-secrets"]
        deps: Any = secrets.opts.depends_on
        others = {j: named[f"gemnar-worker-{j}-secrets"].resource for j in range(3) if j != i}
        # Each waits for the one before it (and so, transitively, for all before it).
        assert [j for j, other in others.items() if other in deps] == ([i - 1] if i else [])
        # ... and its own restart counts as done only once the app is healthy again.
        script = named[f"gemnar-worker-{i}-secrets-write"].plain["create"]
        ip = worker_private_ip(f"w-{i}")
        assert f"/usr/local/sbin/gemnar-worker-ready {ip}" in script
        assert script.index("gemnar-apply-secrets") < script.index("gemnar-worker-ready")

    return each_worker(3, check)
