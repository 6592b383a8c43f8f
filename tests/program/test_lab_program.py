"""The lab platform in the program (Pulumi mocks): machines instead of Vultr resources, and
user data byte-identical to what the Vultr platform renders for the same stack config.

The documented platform data that may differ between the two (docs/lab.md): the controller's
VPC address, which Vultr assigns and which workers' user data names, and the controller's
public address (Vultr's reserved IP), which workers' user data names as the site's only Host
when there is no domain. Everything else Vultr supplies (instance id, SSH keys, the node's own
addresses) travels as metadata, not user data.
"""

from __future__ import annotations

import json

import pulumi
import pytest

import program
from backups.config import offsite_from_env, parse_env_file
from components.lab_nodes import controller_vpc_address
from lab import s3 as lab_s3
from lab.netns import LabNetwork
from stack_config import StackConfig, parse_stack_config
from tests.program.harness import (
    BASE_VALUES,
    CONTROLLER_PRIVATE_IP,
    PRIVATE_KEY,
    RECORDER,
    RESERVED_IP,
    Declared,
    is_secret,
    reveal,
)

MACHINE = "command:local:Command"
LAB_TOKEN = "mock-lab-hypervisor-token"


def config(platform: str, **extra: str) -> StackConfig:
    return parse_stack_config(
        {**BASE_VALUES, "platform": platform, "sshPrivateKey": PRIVATE_KEY,
         "labHypervisorToken": LAB_TOKEN, **extra},
        secret_keys={"secretSeed", "sshPrivateKey", "labHypervisorToken"},
    )


def declared(cfg: StackConfig) -> pulumi.Output[list[Declared]]:
    RECORDER.reset()
    return RECORDER.settled(program.build(cfg))


def test_the_lab_assigns_the_controller_the_addresses_the_vultr_mocks_report() -> None:
    # Precondition of the byte-for-byte comparison below; see the module docstring.
    net = LabNetwork("s", "10.20.0.0/24")
    assert controller_vpc_address(net) == CONTROLLER_PRIVATE_IP
    assert net.controller_public == RESERVED_IP


@pulumi.runtime.test
def test_lab_user_data_is_the_vultr_user_data_byte_for_byte() -> pulumi.Output[None]:
    vultr = declared(config("vultr", workerCount="3", maxWorkers="4"))

    def with_lab(vultr_resources: list[Declared]) -> pulumi.Output[None]:
        expected = {
            d.name.removesuffix("-instance"): reveal(d.inputs["userData"])
            for d in vultr_resources
            if d.type == "vultr:index/instance:Instance"
        }

        def check(lab_resources: list[Declared]) -> None:
            got = {
                d.name.removesuffix("-machine"): json.loads(reveal(d.inputs["stdin"]))[
                    "userData"
                ]
                for d in lab_resources
                if d.type == MACHINE and d.name.endswith("-machine")
            }
            assert sorted(got) == sorted(expected)
            assert len(got) == 4
            for name, user_data in got.items():
                assert user_data == expected[name], name
                assert user_data.startswith("#cloud-config\n")

        return declared(config("lab", workerCount="3", maxWorkers="4")).apply(check)

    return vultr.apply(with_lab)


@pulumi.runtime.test
def test_lab_declares_machines_and_no_cloud_resource() -> pulumi.Output[None]:
    def check(resources: list[Declared]) -> None:
        assert not [d for d in resources if d.type.startswith("vultr:")]
        machines = {d.name: d for d in resources if d.type == "gemnar:infra:LabMachine"}
        assert sorted(machines) == ["gemnar-controller", "gemnar-worker-0", "gemnar-worker-1"]
        commands = {d.name: d for d in resources if d.type == MACHINE}
        controller = commands["gemnar-controller-machine"]
        # The hypervisor's API, as Vultr's: the same call from the host and the controller.
        api = "http://192.0.2.1:8070/v1/machines"
        assert controller.inputs["create"].startswith("curl ")
        assert f"-X POST -H 'Content-Type: application/json' --data-binary @- {api}" in (
            controller.inputs["create"])
        assert f"-X DELETE {api}/controller" in controller.inputs["delete"]
        # The token travels in the environment, secret, and reaches curl on a descriptor.
        environment = controller.inputs["environment"]
        assert is_secret(environment)
        assert reveal(environment)["GEMNAR_LAB_TOKEN"] == LAB_TOKEN
        assert LAB_TOKEN not in controller.inputs["create"]
        assert "Authorization: Bearer ${GEMNAR_LAB_TOKEN}" in controller.inputs["create"]
        body = json.loads(reveal(controller.inputs["stdin"]))
        assert body["role"] == "controller" and body["dataDiskId"] == "gemnar-lab-pgdata"
        assert body["publicAddress"] == "192.0.2.10" and body["dataDiskMb"] == 2048
        worker = json.loads(reveal(commands["gemnar-worker-1-machine"].inputs["stdin"]))
        assert worker["role"] == "worker" and worker["vpcAddress"] == "10.20.0.11"
        # A public address as every Vultr instance has (the way out, e.g. to object storage).
        assert worker["publicAddress"] == "192.0.2.21" and worker["dataDiskMb"] == 0
        assert worker["name"] == "worker-1"
        # Each machine's RAM is its plan's memory, as a Vultr plan's (lab/memory.py).
        assert body["memoryMb"] == 4 * 1024 and worker["memoryMb"] == 2 * 1024
        # Same machine name and addresses: the old one must be gone before the new one boots.
        assert controller.opts.delete_before_replace
        # As on Vultr: a later user-data change does not replace the controller, a worker's does.
        assert controller.opts.ignore_changes == ["triggers", "stdin"]
        assert not commands["gemnar-worker-1-machine"].opts.ignore_changes

    return declared(config("lab", controllerPlan="vc2-2c-4gb",
                               workerPlan="vc2-1c-2gb")).apply(check)


def test_lab_platform_needs_its_ssh_key() -> None:
    cfg = parse_stack_config(
        {"platform": "lab", "secretSeed": BASE_VALUES["secretSeed"]},
        secret_keys={"secretSeed"},
    )
    with pytest.raises(ValueError, match="sshPrivateKey"):
        program.build(cfg)


def test_lab_platform_needs_its_hypervisor_token() -> None:
    """The lab's Vultr API key: without it no machine can be created (or deleted)."""
    cfg = parse_stack_config(
        {**BASE_VALUES, "platform": "lab", "sshPrivateKey": PRIVATE_KEY},
        secret_keys={"secretSeed", "sshPrivateKey"},
    )
    with pytest.raises(ValueError, match="labHypervisorToken"):
        program.build(cfg)


@pytest.mark.parametrize("platform", ["vultr", "lab"])
@pulumi.runtime.test
def test_node_commands_wait_for_the_first_boot(platform: str) -> pulumi.Output[None]:
    """Scripts cloud-init installs are called only after cloud-init has finished."""

    def deps(d: Declared) -> list[object]:
        return list(d.opts.depends_on or [])  # type: ignore[arg-type]  # a list here

    def check(resources: list[Declared]) -> None:
        by = {d.name: d for d in resources}
        boot = by["gemnar-controller-boot"].resource
        assert boot in deps(by["gemnar-controller-data"])
        for worker in ("worker-0", "worker-1"):
            # No tunnel through the controller before its host firewall is loaded (a tunnel
            # older than the ruleset hangs: docs/lab.md).
            assert boot in deps(by[f"gemnar-{worker}-ssh"]), worker
            worker_boot = by[f"gemnar-{worker}-boot"].resource
            assert worker_boot in deps(by[f"gemnar-{worker}-secrets"])
            wait = by[f"gemnar-{worker}-boot-wait"].inputs["create"]
            assert "cloud-init status --wait" in wait

    return declared(config(platform)).apply(check)


@pulumi.runtime.test
def test_lab_backups_go_to_the_labs_s3_server_as_prod_to_object_storage() -> pulumi.Output[None]:
    """The lab's S3 server stands in for Vultr Object Storage: its endpoint and keys (from the
    hypervisor, as Vultr's ObjectStorage outputs them) reach only the secret stdin of the write
    into the controller's root-only backup.env, and the backup tool reads them from there."""
    server = lab_s3.plan(LabNetwork("mock", "10.20.0.0/24"), "mock-lab-access", "mock-lab-secret")

    def check(resources: list[Declared]) -> None:
        endpoint = next(d for d in resources if d.name == "gemnar-lab-s3-endpoint")
        assert "lab.hypervisor object-storage" in endpoint.inputs["create"]
        assert "stdout" in (endpoint.opts.additional_secret_outputs or [])
        write = next(d for d in resources if d.name == "gemnar-backups-env-write")
        assert is_secret(write.inputs["stdin"])
        env = parse_env_file(reveal(write.inputs["stdin"]))
        location = offsite_from_env(env)
        assert location is not None, env
        assert location.endpoint == server.endpoint == "http://192.0.2.2:9000"
        assert env["GEMNAR_BACKUP_S3_ACCESS_KEY"] == "mock-lab-access"
        assert env["GEMNAR_BACKUP_S3_SECRET_KEY"] == "mock-lab-secret"

    return declared(config("lab")).apply(check)


@pulumi.runtime.test
def test_the_stray_sweep_finds_every_lab_worker_s_machine_in_the_state() -> pulumi.Output[None]:
    # strays.core.HOLDERS names the resource that makes a lab worker exist; if the program
    # renamed it, the sweep would take every worker for a stray.
    from strays.core import held

    def check(found: list[Declared]) -> None:
        deployment = {"resources": [{"urn": f"urn:pulumi:lab::gemnar::{d.type}::{d.name}",
                                     "type": d.type} for d in found]}
        assert held(deployment, "lab") == {"worker-0", "worker-1", "worker-2"}

    return declared(config("lab", workerCount="3")).apply(check)
