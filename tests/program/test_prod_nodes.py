"""The Vultr platform's controller under mocks: reserved IP as main IP, the data volume command,
SSH key order, and user data that leaves the node's own address to the boot."""

from __future__ import annotations

import itertools
import stat
import subprocess
from pathlib import Path
from typing import Any

import pulumi

import program
from provisioning.settings import VPC_ADDRESS_AT_BOOT
from stack_config import StackConfig, parse_stack_config
from tests.program.harness import BASE_VALUES, PRIVATE_KEY, RECORDER, SSH_KEY, Declared

INSTANCE = "vultr:index/instance:Instance"
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE90aGVya2V5Zm9ydGVzdHNvZmtleW9yZGVyaW5n o@x"


def _config(**overrides: str) -> StackConfig:
    return parse_stack_config({**BASE_VALUES, **overrides},
                              secret_keys={"secretSeed", "sshPrivateKey"})


def _declare(cfg: StackConfig) -> pulumi.Output[list[Declared]]:
    RECORDER.reset()
    return RECORDER.settled(program.build(cfg))


def _one(declared: list[Declared], name: str) -> Declared:
    (found,) = [d for d in declared if d.name == name]
    return found


@pulumi.runtime.test
def test_controller_is_created_with_the_reserved_ip_as_main_ip() -> pulumi.Output[Any]:
    def check(declared: list[Declared]) -> pulumi.Output[None]:
        instance = _one(declared, "gemnar-controller-instance")
        reserved = _one(declared, "gemnar-controller-ip")
        assert reserved.opts.protect is True
        assert "instanceId" not in reserved.inputs, "attached later = an extra, unconfigured IP"
        assert instance.opts.protect is True and instance.opts.delete_before_replace is True

        def compare(reserved_id: str) -> None:
            assert instance.inputs["reservedIpId"] == reserved_id

        return reserved.resource.id.apply(compare)  # type: ignore[attr-defined,no-any-return]

    return _declare(_config()).apply(check)


@pulumi.runtime.test
def test_data_volume_is_mounted_by_device_id_before_secrets() -> pulumi.Output[Any]:
    def check(declared: list[Declared]) -> pulumi.Output[None]:
        mount = _one(declared, "gemnar-controller-data-mount")
        volume = _one(declared, "gemnar-controller-pgdata")
        secrets = _one(declared, "gemnar-controller-secrets")
        assert any(dep is _one(declared, "gemnar-controller-data").resource
                   for dep in secrets.opts.depends_on or [])  # type: ignore[union-attr]

        def compare(mount_id: str) -> None:
            create = mount.plain["create"]
            assert create.startswith(f"/usr/local/sbin/gemnar-data-volume "
                                     f"/dev/disk/by-id/virtio-{mount_id} && ")
            assert create.endswith("gemnar-postgres-setup")

        return volume.resource.mount_id.apply(compare)  # type: ignore[attr-defined,no-any-return]

    return _declare(_config()).apply(check)


def _instance_inputs(declared: list[Declared]) -> dict[str, Any]:
    return {d.name: d.plain for d in declared if d.type == INSTANCE}


@pulumi.runtime.test
def test_reordering_ssh_keys_changes_no_instance_input() -> pulumi.Output[Any]:
    first = _declare(_config(sshPublicKeys=f'["{SSH_KEY}", "{OTHER_KEY}"]'))

    def second(a: list[Declared]) -> pulumi.Output[None]:
        def compare(b: list[Declared]) -> None:
            assert _instance_inputs(a) == _instance_inputs(b)

        return _declare(_config(sshPublicKeys=f'["{OTHER_KEY}", "{SSH_KEY}"]')).apply(compare)

    return first.apply(second)


GIT_APP = "https://github.com/example/site.git"


@pulumi.runtime.test
def test_a_new_git_app_version_rolls_instead_of_replacing_workers() -> pulumi.Output[Any]:
    """The version is not in any instance's inputs (the user data): only each worker's roll
    turn changes, an update in place (same triggers), chained one worker after another."""
    first = _declare(_config(appSource=GIT_APP, appVersion="v1.0.0", workerCount="2"))

    def second(a: list[Declared]) -> pulumi.Output[None]:
        def compare(b: list[Declared]) -> None:
            assert _instance_inputs(a) == _instance_inputs(b)
            for i in range(2):
                old = _one(a, f"gemnar-worker-{i}-roll-install").plain
                new = _one(b, f"gemnar-worker-{i}-roll-install").plain
                assert old["update"].endswith(f"worker-{i} 10.20.0.{10 + i} 300 "
                                              "git-v1.0.0 v1.0.0")
                assert new["update"].endswith(" git-v1.0.1 v1.0.1")
                assert new["create"] == new["update"]
                assert old["triggers"] == new["triggers"]  # the same machine: no re-create
                back = _one(b, f"gemnar-worker-{i}-roll-back").plain
                assert "--release git-v1.0.1" in back["update"]
            later_gate = _one(b, "gemnar-worker-1-roll-gate")
            earlier_back = _one(b, "gemnar-worker-0-roll-back")
            assert earlier_back.resource in (later_gate.opts.depends_on or [])  # type: ignore[operator]

        return _declare(_config(appSource=GIT_APP, appVersion="v1.0.1", workerCount="2")
                        ).apply(compare)

    return first.apply(second)


@pulumi.runtime.test
def test_user_data_binds_the_address_found_at_boot() -> pulumi.Output[Any]:
    def check(declared: list[Declared]) -> None:
        for name, inputs in _instance_inputs(declared).items():
            user_data = inputs["userData"]
            assert VPC_ADDRESS_AT_BOOT in user_data, name
            assert "0.0.0.0" not in user_data.replace("0.0.0.0/0", ""), name
            assert "gemnar-vpc-address" in user_data, name

    return _declare(_config()).apply(check)


@pulumi.runtime.test
def test_every_remote_command_checks_the_pinned_host_keys() -> pulumi.Output[Any]:
    def check(declared: list[Declared]) -> None:
        pins = {d.name: d for d in declared if d.type == "gemnar:infra:HostKeyPin"}
        assert set(pins) == {"gemnar-controller-hostkey", "gemnar-worker-0-hostkey",
                             "gemnar-worker-1-hostkey"}
        for d in declared:
            if d.type != "command:remote:Command":
                continue
            connection = d.plain["connection"]
            assert "hostKey" in connection, f"{d.name} does not check the host key"
            if "proxy" in connection:
                assert "hostKey" in connection["proxy"], f"{d.name}: jump host unchecked"
        # A worker's key is read on the (pinned) controller, never from the public side.
        worker_scan = _one(declared, "gemnar-worker-0-hostkey-scan")
        assert "proxy" not in worker_scan.plain["connection"]
        assert "ssh-keyscan" in worker_scan.plain["create"]
        assert "10.20.0.10" in worker_scan.plain["create"]

    return _declare(_config(workerCount="2")).apply(check)


@pulumi.runtime.test
def test_app_is_pushed_by_content_hash_one_worker_at_a_time() -> pulumi.Output[Any]:
    from appdelivery.source import AppSource
    from program import PROJECT_ROOT

    expected = AppSource.of_project(PROJECT_ROOT).content_hash

    def check(declared: list[Declared]) -> None:
        pushes = [_one(declared, f"gemnar-worker-{i}-app-push") for i in range(3)]
        for push in pushes:
            assert f"--source-hash {expected}" in push.plain["create"]
            assert push.plain["triggers"][0] == expected
            assert push.plain["environment"]["GEMNAR_SSH_PRIVATE_KEY"]
            # The push is the worker's turn in a roll: drain, install, healthy or rolled back.
            assert "--roll /usr/local/sbin/gemnar-worker-roll --worker worker-" in push.plain[
                "create"]
        deliveries = [_one(declared, f"gemnar-worker-{i}-app") for i in range(3)]
        gates = [_one(declared, f"gemnar-worker-{i}-roll-gate") for i in range(3)]
        backs = [_one(declared, f"gemnar-worker-{i}-roll-back") for i in range(3)]
        for i, delivery in enumerate(deliveries):
            # gate (controller) -> push -> back in (controller) -> the next worker's gate.
            assert gates[i].resource in (delivery.opts.depends_on or [])  # type: ignore[operator]
            assert delivery.resource in (backs[i].opts.depends_on or [])  # type: ignore[operator]
            secrets = _one(declared, f"gemnar-worker-{i}-secrets")
            assert backs[i].resource in (secrets.opts.depends_on or [])  # type: ignore[operator]
        for earlier, later in itertools.pairwise(range(3)):
            assert backs[earlier].resource in (gates[later].opts.depends_on or [])  # type: ignore[operator]

    return _declare(_config(workerCount="3", sshPrivateKey=PRIVATE_KEY)).apply(check)


@pulumi.runtime.test
def test_controller_operations_are_delivered_with_the_scaler_credentials(
) -> pulumi.Output[Any]:
    from appdelivery.operations import OpsSource
    from program import PROJECT_ROOT
    from tests.program.harness import is_secret

    expected = OpsSource.of_project(PROJECT_ROOT).content_hash
    credentials = {"scalerBackendUrl": "s3://state?endpoint=fra1.vultrobjects.com&x=1",
                   "scalerBackendAccessKeyId": "AKIDTEST", "scalerBackendSecretAccessKey":
                   "s3cr3t-value-for-test", "scalerVultrApiKey": "VULTRKEYFORTEST"}
    cfg = parse_stack_config({**BASE_VALUES, **credentials},
                             secret_keys={"secretSeed", *credentials})

    def check(declared: list[Declared]) -> None:
        push = _one(declared, "gemnar-controller-ops-push").plain
        assert f"--source-hash {expected}" in push["create"]
        assert "--fetch-plugin command:1.2.1 --fetch-plugin vultr:2.27.1" in push["create"]
        assert "--app-cache-dir /var/lib/gemnar-scaler/artifacts" in push["create"]
        assert push["triggers"][0] == expected
        written = _one(declared, "gemnar-controller-ops-scaler-credentials")
        assert is_secret(written.inputs["stdin"])
        env = written.plain["stdin"]
        assert "AWS_ACCESS_KEY_ID='AKIDTEST'" in env and "VULTR_API_KEY='VULTRKEYFORTEST'" in env
        assert "PULUMI_BACKEND_URL='s3://state?endpoint=fra1.vultrobjects.com&x=1'" in env
        assert "/etc/gemnar/secrets/scaler.env" in written.plain["create"]
        # The units take the stack's name from this file (the mocks' stack is prod).
        assert "GEMNAR_STACK='prod'" in env.splitlines()
        membership = _one(declared, "gemnar-membership")
        ops = _one(declared, "gemnar-controller-ops").resource
        assert ops in (membership.opts.depends_on or [])  # type: ignore[operator]

    return _declare(cfg).apply(check)


@pulumi.runtime.test
def test_the_deploy_writes_the_controller_commands_it_runs() -> pulumi.Output[Any]:
    """An existing controller ignores user data changes: the deploy writes gemnar-lb-wait
    (and the other commands it runs there) itself, with cloud-init's text, before the push."""
    from components.user_data import controller_settings
    from provisioning.files import DEPLOY_COMMANDS, deploy_commands

    cfg = _config()
    expected = {f.path: f.content for f in deploy_commands(controller_settings(cfg))}

    def check(declared: list[Declared]) -> None:
        assert {path.rsplit("/", 1)[1] for path in expected} == set(DEPLOY_COMMANDS)
        push = _one(declared, "gemnar-controller-ops-push")
        for path, content in expected.items():
            command = _one(declared, f"gemnar-controller-ops-command-{path.rsplit('/', 1)[1]}")
            assert command.plain["stdin"] == content
            assert command.plain["create"].endswith(f"mv -f {path}.new {path}")
            assert command.resource in (push.opts.depends_on or [])  # type: ignore[operator]
        # The roll and the membership run exactly those paths.
        assert _one(declared, "gemnar-worker-0-roll-gate").plain["update"].startswith(
            "/usr/local/sbin/gemnar-lb-wait ")
        assert "/usr/local/sbin/gemnar-lb-wait" in expected

    return _declare(cfg).apply(check)


def test_command_script_installs_and_replaces_an_executable(tmp_path: Path) -> None:
    from components.operations import command_script

    target = tmp_path / "sbin" / "gemnar-lb-wait"
    for text in ("#!/bin/sh\necho one\n", "#!/bin/sh\necho two\n"):
        subprocess.run(["bash", "-c", command_script(str(target))], input=text, text=True,
                       check=True)
        assert target.read_text() == text
        assert stat.S_IMODE(target.stat().st_mode) == 0o755
        assert subprocess.run([str(target)], capture_output=True, text=True,
                              check=True).stdout == text.split("echo ")[1]
    assert sorted(p.name for p in target.parent.iterdir()) == ["gemnar-lb-wait"]


@pulumi.runtime.test
def test_no_credentials_file_without_credentials() -> pulumi.Output[Any]:
    def check(declared: list[Declared]) -> None:
        assert not [d for d in declared if d.name.endswith("-scaler-credentials")]

    return _declare(_config()).apply(check)


def test_roll_and_wait_command_lines() -> None:
    from components.app_roll import roll_command, wait_command

    assert roll_command("/usr/local/sbin/gemnar-worker-roll", "worker-1", "10.0.0.11", 60,
                        "abc", ["/srv/app dir", "abc"]) == (
        "/usr/local/sbin/gemnar-worker-roll worker-1 10.0.0.11 60 abc '/srv/app dir' abc")
    assert wait_command("/usr/local/sbin/gemnar-lb-wait", "spare", "10.0.0.11:8000", 1, 60,
                        "abc") == ("/usr/local/sbin/gemnar-lb-wait --mode spare --member "
                                   "10.0.0.11:8000 --count 1 --timeout 60 --release abc")


@pulumi.runtime.test
def test_instances_carry_the_stack_tag_the_stray_sweep_lists_by() -> pulumi.Output[Any]:
    from strays.vultr import node, stack_tag

    def check(declared: list[Declared]) -> None:
        instances = {d.name: d.inputs for d in declared if d.type == INSTANCE}
        assert all(stack_tag(pulumi.get_stack()) in i["tags"] for i in instances.values())
        # What the sweep would call a worker, by the instance's own label and tags.
        workers = {name for name, i in instances.items()
                   if node({"id": name, **i}).role == "worker"}
        assert workers == {"gemnar-worker-0", "gemnar-worker-1", "gemnar-worker-2"}
        assert "gemnar-controller-instance" in instances

    return _declare(_config(workerCount="3")).apply(check)
