"""Pulumi mocks for the program tests: record every declared resource with inputs and options.

Import this module before ``program`` or ``components``: it installs the mocks and a stack
transformation that sees each resource's options (protect, ignore_changes, ...), which the
mock monitor itself never receives.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

from lab import s3 as lab_s3
from lab.netns import LabNetwork
from stack_config import StackConfig, parse_stack_config

SEED = "test-seed-" + "s" * 40
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVtbmFydGVzdGtleWZvcnVuaXR0ZXN0cw test@gemnar"
PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nmock-private-key-material\n-----END"
CONTROLLER_PRIVATE_IP = "10.20.0.3"
# The lab's controller public address (lab.netns), so that both platforms render the same
# worker user data (tests/program/test_lab_program.py).
RESERVED_IP = "192.0.2.10"

# What an operator supplies on top of Pulumi.prod.yaml; tests start from here.
BASE_VALUES: dict[str, str] = {
    "platform": "vultr",
    "region": "ams",
    "sshPublicKeys": f'["{SSH_KEY}"]',
    "adminCidrs": '["198.51.100.7/32"]',
    "secretSeed": SEED,
    "mediaClusterId": "2",
    "mediaTierId": "3",
}


# How the mock monitor hands over a secret input: {SECRET_SIG_KEY: SECRET_SIG, "value": v}.
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG_KEY) == SECRET_SIG


def reveal(value: Any) -> Any:
    """The value with every secret wrapper removed, recursively."""
    if is_secret(value):
        return reveal(value["value"])
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


def worker_private_ip(name: str) -> str:
    index = int(name.rsplit("-", 1)[1])
    return f"10.20.0.{10 + index}"


@dataclass
class Declared:
    """One resource as the program declared it."""

    type: str
    name: str
    custom: bool
    resource: pulumi.Resource
    opts: pulumi.ResourceOptions
    inputs: dict[str, Any]

    @property
    def plain(self) -> dict[str, Any]:
        """Inputs with secrets revealed."""
        return reveal(self.inputs)


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.inputs: dict[tuple[str, str], dict[str, Any]] = {}
        # The id handed back for each resource name: what the program must wire onwards.
        self.ids: dict[str, str] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.inputs[(args.typ, args.name)] = dict(args.inputs)
        state = dict(args.inputs)
        if args.typ == "vultr:index/instance:Instance":
            is_worker = args.name.startswith("gemnar-worker-")
            state["internalIp"] = (
                worker_private_ip(args.name) if is_worker else CONTROLLER_PRIVATE_IP
            )
            state["mainIp"] = "192.0.2.1"
            state["defaultPassword"] = "mock-default-root-password"
        elif args.typ == "vultr:index/reservedIp:ReservedIp":
            state["subnet"] = RESERVED_IP
            state["subnetSize"] = 32
        elif args.typ == "vultr:index/blockStorage:BlockStorage":
            state["mountId"] = "ams-0123456789ab"
        elif args.typ == "vultr:index/objectStorage:ObjectStorage":
            state["s3Hostname"] = "fra1.vultrobjects.com"
            state["s3AccessKey"] = "mock-s3-access-key"
            state["s3SecretKey"] = "mock-s3-secret-key"
        elif args.typ == "command:local:Command" and args.name == "gemnar-lab-s3-endpoint":
            # What `python -m lab.hypervisor object-storage` prints, from the real code.
            server = lab_s3.plan(LabNetwork("mock", "10.20.0.0/24"), "mock-lab-access",
                                 "mock-lab-secret")
            state["stdout"] = json.dumps(server.description())
        elif args.typ == "command:remote:Command":
            state["stdout"] = ""
            state["stderr"] = ""
        digest = hashlib.sha256(args.name.encode()).hexdigest()[:12]
        self.ids[args.name] = f"{args.name}-{digest}"
        return self.ids[args.name], state

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        raise AssertionError(f"the default path must make no provider calls: {args.token}")


class Recorder:
    """Collects resources as they are constructed (a stack transformation sees all of them)."""

    def __init__(self, mocks: RecordingMocks) -> None:
        self.mocks = mocks
        self.seen: list[tuple[pulumi.Resource, str, str, pulumi.ResourceOptions]] = []

    def transformation(
        self, args: pulumi.ResourceTransformationArgs
    ) -> pulumi.ResourceTransformationResult | None:
        self.seen.append((args.resource, args.type_, args.name, args.opts))
        return None

    def reset(self) -> None:
        self.seen = []

    def settled(self, exports: Mapping[str, pulumi.Output[Any]]) -> pulumi.Output[list[Declared]]:
        """Resolves once every recorded resource is registered, to what was declared."""
        seen = list(self.seen)
        waits = [resource.urn for resource, *_ in seen]

        def snapshot(_: object) -> list[Declared]:
            return [
                Declared(
                    type=typ,
                    name=name,
                    custom=isinstance(resource, pulumi.CustomResource),
                    resource=resource,
                    opts=opts,
                    inputs=self.mocks.inputs.get((typ, name), {}),
                )
                for resource, typ, name, opts in seen
            ]

        return pulumi.Output.all(*waits, *exports.values()).apply(snapshot)


MOCKS = RecordingMocks()
pulumi.runtime.set_mocks(MOCKS, project="gemnar", stack="prod", preview=False)
RECORDER = Recorder(MOCKS)
pulumi.runtime.register_stack_transformation(RECORDER.transformation)


# --- declaring the program under these mocks ------------------------------------------------

INSTANCE = "vultr:index/instance:Instance"
COMMAND = "command:remote:Command"
Exports = dict[str, pulumi.Output[Any]]


def config(**overrides: str) -> StackConfig:
    """The operator's base values plus ``overrides``, parsed as the program parses them."""
    return parse_stack_config({**BASE_VALUES, **overrides}, secret_keys={"secretSeed"})


def declare(cfg: StackConfig) -> tuple[Exports, pulumi.Output[list[Declared]]]:
    """Run the program on ``cfg``; its exports and, once settled, every declared resource."""
    import program  # after the mocks above are installed

    RECORDER.reset()
    exports = program.build(cfg)
    return exports, RECORDER.settled(exports)


def by_name(declared: list[Declared]) -> dict[str, Declared]:
    return {d.name: d for d in declared}


def each_worker(
    workers: int, check: Callable[[dict[str, Declared], int], None]
) -> pulumi.Output[None]:
    """Declare the program with ``workers`` workers; once settled, ``check(named, i)`` for
    each worker index, ``named`` being every declared resource by name."""
    _, declared = declare(config(workerCount=str(workers)))

    def check_all(resources: list[Declared]) -> None:
        named = by_name(resources)
        for i in range(workers):
            check(named, i)

    return declared.apply(check_all)
