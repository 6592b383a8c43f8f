"""Program tests with Pulumi mocks: the declared resources, scaling stability, outputs."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

# Mocks are installed by the harness import above, before the program is imported.
import program
from components.firewall import _slug
from components.host_secrets import derive_secret
from components.ssh_keys import key_fingerprint
from stack_config import parse_stack_config
from tests.program.harness import (
    BASE_VALUES,
    COMMAND,
    CONTROLLER_PRIVATE_IP,
    INSTANCE,
    MOCKS,
    PRIVATE_KEY,
    RECORDER,
    RESERVED_IP,
    SSH_KEY,
    Declared,
    by_name,
    config,
    declare,
    each_worker,
    is_secret,
    reveal,
    worker_private_ip,
)


def expected_resources(count: int, admin_cidr: str = "198.51.100.7/32") -> set[tuple[str, str]]:
    infra = "gemnar:infra:"
    fp = key_fingerprint(SSH_KEY)
    names = {
        (f"{infra}PrivateNetwork", "gemnar-network"),
        ("vultr:index/vpc:Vpc", "gemnar-network-vpc"),
        (f"{infra}Firewall", "gemnar-firewall"),
        ("vultr:index/firewallGroup:FirewallGroup", "gemnar-firewall-controller"),
        ("vultr:index/firewallGroup:FirewallGroup", "gemnar-firewall-worker"),
        ("vultr:index/firewallRule:FirewallRule", "gemnar-firewall-controller-http"),
        ("vultr:index/firewallRule:FirewallRule", "gemnar-firewall-controller-https"),
        (
            "vultr:index/firewallRule:FirewallRule",
            f"gemnar-firewall-controller-ssh-{_slug(admin_cidr)}",
        ),
        (f"{infra}SshKeys", "gemnar-admin-key"),
        ("vultr:index/sSHKey:SSHKey", f"gemnar-admin-key-{fp}"),
        (f"{infra}Controller", "gemnar-controller"),
        (INSTANCE, "gemnar-controller-instance"),
        ("vultr:index/reservedIp:ReservedIp", "gemnar-controller-ip"),
        ("vultr:index/blockStorage:BlockStorage", "gemnar-controller-pgdata"),
        (f"{infra}FirstBoot", "gemnar-controller-boot"),
        (COMMAND, "gemnar-controller-boot-wait"),
        (f"{infra}DataVolume", "gemnar-controller-data"),
        (COMMAND, "gemnar-controller-data-mount"),
        (f"{infra}ControllerOperations", "gemnar-controller-ops"),
        ("command:local:Command", "gemnar-controller-ops-push"),
        # The controller commands the deploy runs, written by it (components.operations).
        (COMMAND, "gemnar-controller-ops-command-gemnar-install-ops"),
        (COMMAND, "gemnar-controller-ops-command-gemnar-lb-apply"),
        (COMMAND, "gemnar-controller-ops-command-gemnar-lb-wait"),
        (f"{infra}HostKeyPin", "gemnar-controller-hostkey"),
        ("command:local:Command", "gemnar-controller-hostkey-scan"),
        (f"{infra}WorkerPool", "gemnar-worker"),
        (f"{infra}HostSecrets", "gemnar-controller-secrets"),
        (COMMAND, "gemnar-controller-secrets-write"),
        (f"{infra}Membership", "gemnar-membership"),
        (COMMAND, "gemnar-membership-sync"),
        (f"{infra}OffsiteStorage", "gemnar-backups"),
        (f"{infra}HostSecrets", "gemnar-backups-env"),
        (COMMAND, "gemnar-backups-env-write"),
        # Media: a subscription in the nodes' region, its bucket, the controller's /media/.
        (f"{infra}VultrMediaStorage", "gemnar-media-store"),
        ("vultr:index/objectStorage:ObjectStorage", "gemnar-media-store-subscription"),
        (f"{infra}MediaStorage", "gemnar-media"),
        ("command:local:Command", "gemnar-media-bucket"),
        (COMMAND, "gemnar-media-nginx"),
    }
    # Every worker's resources: (type, suffix of "gemnar-worker-<i>").
    per_worker = [
        (INSTANCE, ""),
        (f"{infra}HostSecrets", "-secrets"),
        (COMMAND, "-secrets-write"),
        (f"{infra}WorkerReadiness", "-ready"),
        (COMMAND, "-ready-gate"),
        (f"{infra}SshGate", "-ssh"),
        (COMMAND, "-ssh-wait"),
        (f"{infra}FirstBoot", "-boot"),
        (COMMAND, "-boot-wait"),
        (f"{infra}HostKeyPin", "-hostkey"),
        (COMMAND, "-hostkey-scan"),
        (f"{infra}AppDelivery", "-app"),
        ("command:local:Command", "-app-push"),
        # The worker's turn in a rolling update; its install step is the push above.
        (f"{infra}AppRoll", "-roll"),
        (COMMAND, "-roll-gate"),
        (COMMAND, "-roll-back"),
    ]
    names |= {
        (typ, f"gemnar-worker-{i}{suffix}") for i in range(count) for typ, suffix in per_worker
    }
    return names


@pytest.mark.parametrize("count", [2, 10])
@pulumi.runtime.test
def test_exact_resources_for_worker_count(count: int) -> pulumi.Output[None]:
    _, declared = declare(config(workerCount=str(count)))

    def check(resources: list[Declared]) -> None:
        found = [(d.type, d.name) for d in resources]
        assert len(found) == len(set(found)), "duplicate resource"
        assert set(found) == expected_resources(count)
        workers = [
            d for d in resources if d.type == INSTANCE and d.name != "gemnar-controller-instance"
        ]
        assert len(workers) == count
        hostnames = [w.inputs["hostname"] for w in workers]
        assert sorted(hostnames) == sorted(f"worker-{i}" for i in range(count))
        assert len(set(hostnames)) == count
        # The ids the engine (here: the mocks) handed back for these resources.
        vpc = MOCKS.ids["gemnar-network-vpc"]
        worker_group = MOCKS.ids["gemnar-firewall-worker"]
        for worker in workers:
            assert worker.inputs["vpcIds"] == [vpc]
            assert worker.inputs["firewallGroupId"] == worker_group

    return declared.apply(check)


@pulumi.runtime.test
def test_exports() -> pulumi.Output[None]:
    exports, declared = declare(config(workerCount="3"))

    def check(values: list[Any]) -> None:
        out = dict(zip(exports, values[1:], strict=True))
        assert out["siteUrl"] == f"http://{RESERVED_IP}"
        assert out["controllerPublicIp"] == RESERVED_IP
        assert out["controllerPrivateIp"] == CONTROLLER_PRIVATE_IP
        assert out["workerNames"] == ["worker-0", "worker-1", "worker-2"]
        assert out["workerPrivateIps"] == [worker_private_ip(f"w-{i}") for i in range(3)]
        assert out["workerCount"] == 3
        assert json.loads(out["loadBalancerMembers"]) == [
            f"{worker_private_ip(f'w-{i}')}:8000" for i in range(3)
        ]
        # What the scaler probes: memory from node exporter, health from the app itself.
        assert [(w["metricsUrl"], w["healthUrl"]) for w in out["workers"]] == [
            (f"http://{worker_private_ip(f'w-{i}')}:9100/metrics",
             f"http://{worker_private_ip(f'w-{i}')}:8000/health/") for i in range(3)
        ]

    return pulumi.Output.all(declared, *exports.values()).apply(check)


@pulumi.runtime.test
def test_site_url_uses_domain() -> pulumi.Output[None]:
    exports, declared = declare(
        config(domain="example.com", tlsEmail="ops@example.com", manageDns="true")
    )

    def check(values: list[Any]) -> None:
        resources, url = values
        assert url == "https://example.com"
        records = [d for d in resources if d.type == "vultr:index/dnsRecord:DnsRecord"]
        assert sorted(r.inputs.get("name", "") for r in records) == ["", "www"]
        assert all(r.inputs["data"] == RESERVED_IP and r.inputs["type"] == "A" for r in records)

    return pulumi.Output.all(declared, exports["siteUrl"]).apply(check)


@pulumi.runtime.test
def test_scale_2_to_3_keeps_surviving_workers() -> pulumi.Output[None]:
    _, before = declare(config(workerCount="2"))

    def then(first: list[Declared]) -> pulumi.Output[None]:
        old = {d.name: d.inputs for d in first}
        _, after = declare(config(workerCount="3"))

        def check(second: list[Declared]) -> None:
            new = {d.name: d.inputs for d in second}
            for name in (
                "gemnar-worker-0",
                "gemnar-worker-1",
                "gemnar-worker-0-secrets-write",
                "gemnar-worker-1-secrets-write",
                "gemnar-worker-0-ready-gate",
                "gemnar-worker-1-ready-gate",
                "gemnar-worker-0-ssh-wait",
                "gemnar-worker-1-ssh-wait",
            ):
                assert new[name] == old[name], name
            assert "gemnar-worker-2" in new and "gemnar-worker-2" not in old
            # Membership is the one thing that changes, and only in its member list.
            old_sync, new_sync = old["gemnar-membership-sync"], new["gemnar-membership-sync"]
            assert {k: v for k, v in old_sync.items() if k != "stdin"} == {
                k: v for k, v in new_sync.items() if k != "stdin"
            }
            assert len(json.loads(new_sync["stdin"])) == 3

        return after.apply(check)

    return before.apply(then)


@pulumi.runtime.test
def test_membership_unchanged_when_members_unchanged() -> pulumi.Output[None]:
    _, before = declare(config(workerCount="2"))

    def then(first: list[Declared]) -> pulumi.Output[None]:
        old = by_name(first)["gemnar-membership-sync"].inputs
        _, after = declare(config(workerCount="2", scaleUpThreshold="85"))
        return after.apply(
            lambda second: _same(old, by_name(second)["gemnar-membership-sync"].inputs)
        )

    return before.apply(then)


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a == b


@pulumi.runtime.test
def test_workers_reached_through_controller() -> pulumi.Output[None]:
    def check(named: dict[str, Declared], i: int) -> None:
        for suffix in ("ready-gate", "secrets-write"):
            conn = named[f"gemnar-worker-{i}-{suffix}"].plain["connection"]
            assert conn["host"] == worker_private_ip(f"w-{i}")
            assert conn["proxy"]["host"] == RESERVED_IP
        gate = named[f"gemnar-worker-{i}-ready-gate"].inputs
        ip = worker_private_ip(f"w-{i}")
        assert gate["create"] == f"/usr/local/sbin/gemnar-worker-ready {ip}"
        assert gate["delete"] == f"/usr/local/sbin/gemnar-worker-drain {ip}"

    return each_worker(2, check)


@pulumi.runtime.test
def test_membership_sync_runs_on_the_controller_directly() -> pulumi.Output[None]:
    _, declared = declare(config(workerCount="2"))

    def check(resources: list[Declared]) -> None:
        sync = by_name(resources)["gemnar-membership-sync"].plain
        assert sync["connection"]["host"] == RESERVED_IP
        assert "proxy" not in sync["connection"]
        assert sync["create"] == sync["update"] == "/usr/local/sbin/gemnar-lb-apply"

    return declared.apply(check)


def test_local_platform_needs_its_ssh_key() -> None:
    cfg = parse_stack_config(
        {"platform": "local", "secretSeed": BASE_VALUES["secretSeed"]}, secret_keys={"secretSeed"}
    )
    with pytest.raises(ValueError, match="sshPrivateKey"):
        program.build(cfg)


@pulumi.runtime.test
def test_local_platform_declares_local_nodes_and_no_cloud_resources() -> pulumi.Output[None]:
    cfg = parse_stack_config(
        {
            "platform": "local",
            "secretSeed": BASE_VALUES["secretSeed"],
            "sshPrivateKey": PRIVATE_KEY,
            "sshPublicKeys": BASE_VALUES["sshPublicKeys"],
            "workerCount": "3",
            "maxWorkers": "4",
        },
        secret_keys={"secretSeed", "sshPrivateKey"},
    )
    RECORDER.reset()
    exports = program.build(cfg)

    def check(declared: list[Declared]) -> None:
        types = [d.type for d in declared]
        assert not [t for t in types if t.startswith("vultr:")]
        nodes = sorted(d.name for d in declared if d.type == "gemnar:infra:LocalNode")
        assert nodes == [
            "gemnar-controller", "gemnar-worker-0", "gemnar-worker-1", "gemnar-worker-2"
        ]
        for d in declared:
            if d.type == "command:local:Command" and d.name.endswith("-processes"):
                env = reveal(d.inputs["environment"])
                assert "GEMNAR_DB_PASSWORD" in env
                if "worker" in d.name:
                    # A worker gets only what its app reads, never the controller's set.
                    assert {k for k in env if k.startswith("GEMNAR_")} == {
                        "GEMNAR_NODE_SPEC", "GEMNAR_DB_PASSWORD", "GEMNAR_REDIS_PASSWORD",
                        "GEMNAR_SECRET_KEY"}
                raw = d.inputs["environment"]
                assert is_secret(raw) or is_secret(raw["GEMNAR_DB_PASSWORD"])
                spec = env["GEMNAR_NODE_SPEC"]
                assert "GEMNAR" not in spec.split('"settings"')[0]  # no secret in the spec
                assert derive_secret(BASE_VALUES["secretSeed"], "postgres-app-password") not in spec

    return RECORDER.settled(exports).apply(check)


def test_main_rejects_bad_config_before_any_resource() -> None:
    from stack_config import ConfigError

    values = {f"gemnar:{k}": v for k, v in BASE_VALUES.items()} | {"gemnar:workerCount": "99"}
    pulumi.runtime.set_all_config(values, secret_keys=["gemnar:secretSeed"])
    RECORDER.reset()
    try:
        with pytest.raises(ConfigError) as err:
            program.main()
        assert list(err.value.problems) == ["workerCount"]
        assert RECORDER.seen == []
    finally:
        pulumi.runtime.set_all_config({}, secret_keys=[])


def test_main_rejects_a_plain_text_seed() -> None:
    from stack_config import ConfigError

    values = {f"gemnar:{k}": v for k, v in BASE_VALUES.items()}
    pulumi.runtime.set_all_config(values, secret_keys=[])
    try:
        with pytest.raises(ConfigError, match=r"gemnar:secretSeed: .*--secret"):
            program.main()
    finally:
        pulumi.runtime.set_all_config({}, secret_keys=[])
