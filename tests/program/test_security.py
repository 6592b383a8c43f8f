"""Security defaults, checked on every declared resource so a new one cannot slip past them."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Any

import pulumi
import pytest
import yaml

from components.host_secrets import (
    CONTROLLER_SECRETS,
    PGBOUNCER_ADMIN_PURPOSE,
    WORKER_SECRETS,
    controller_secret_env,
    derive_secret,
)
from stack_config import StackConfig, parse_stack_config
from tests.program.harness import (
    BASE_VALUES,
    PRIVATE_KEY,
    RESERVED_IP,
    SEED,
    Declared,
    declare,
    is_secret,
    reveal,
)

PRIVATE_ONLY_PORTS = {5432, 6432, 6379, 8000, 8080, 9100}
PUBLIC_TO_ANYONE = {80, 443}
STATEFUL = {
    "vultr:index/reservedIp:ReservedIp",
    "vultr:index/blockStorage:BlockStorage",
    "vultr:index/dnsDomain:DnsDomain",
    # Off-site backups: deleting the subscription deletes every copy.
    "vultr:index/objectStorage:ObjectStorage",
}


def config(**overrides: str) -> StackConfig:
    values = {**BASE_VALUES, "sshPrivateKey": PRIVATE_KEY, **overrides}
    return parse_stack_config(values, secret_keys={"secretSeed", "sshPrivateKey"})


def secret_values() -> list[str]:
    purposes = {*CONTROLLER_SECRETS.values(), *WORKER_SECRETS.values(), PGBOUNCER_ADMIN_PURPOSE}
    return [SEED, PRIVATE_KEY, "mock-default-root-password",
            *controller_secret_env(SEED).values()] + [derive_secret(SEED, p) for p in purposes]


def ports(port: str) -> range:
    low, _, high = port.partition(":")
    return range(int(low), int(high or low) + 1)


def contains_secret(value: Any) -> str | None:
    text = json.dumps(reveal(value)) if not isinstance(value, str) else value
    for secret in secret_values():
        if secret in text:
            return secret[:6] + "..."
    return None


# --- the per-type checks ------------------------------------------------------------------


def check_instance(d: Declared) -> None:
    i = d.plain
    assert i.get("vpcIds"), "instance outside the VPC"
    assert i.get("firewallGroupId"), "instance without a firewall group"
    assert i.get("ddosProtection") is not None, "ddos_protection must be explicit (replace hazard)"
    assert i.get("enableIpv6") is False, "IPv6 is not filtered by the rule set"
    assert i.get("activationEmail") is False
    assert "vpc2Ids" not in i, "VPC 2.0 is deprecated"
    assert i.get("sshKeyIds"), "instance without admin keys"
    assert contains_secret(i.get("userData", "")) is None, "secret in user data"
    assert str(i.get("userData", "")).startswith("#cloud-config")
    if d.name == "gemnar-controller-instance":
        # The reserved IP is the controller's main IP only when given at create
        # (tests/program/test_prod_nodes.py checks it is the declared one).
        assert i.get("reservedIpId"), "controller without its reserved IP as main IP"
        assert d.opts.protect is True
        assert d.opts.delete_before_replace is True, "reserved IP holder must delete first"
        assert "userData" in (d.opts.ignore_changes or [])
        assert i.get("backups") == "enabled" and i.get("backupsSchedule", {}).get("type")
    else:
        assert "reservedIpId" not in i, "workers have no public address of their own"
        assert i.get("backups") == "disabled"


def check_firewall_rule(d: Declared) -> None:
    i = d.plain
    assert i["protocol"] == i["protocol"].lower()
    opened = set(ports(i["port"]))
    assert not opened & PRIVATE_ONLY_PORTS, f"{d.name} opens a private-only port"
    network = ipaddress.ip_network(f"{i['subnet']}/{int(i['subnetSize'])}")
    if network.prefixlen == 0:
        assert opened <= PUBLIC_TO_ANYONE, f"{d.name} opens {i['port']} to everyone"
        assert "worker" not in d.name, "workers have no public port"
    if 22 in opened:
        assert network.prefixlen > 0, "SSH open to everyone"


def check_component(d: Declared) -> None:
    assert d.type.startswith("gemnar:infra:"), d.type


def check_command(d: Declared) -> None:
    i = d.inputs
    assert is_secret(i["connection"]), "connection (private key) must be secret"
    for field in ("create", "update", "delete"):
        assert contains_secret(i.get(field, "")) is None, f"secret on a {field} command line"
    stdin = i.get("stdin")
    if stdin is not None and contains_secret(stdin):
        assert is_secret(stdin), f"{d.name}: stdin carries secrets but is not secret"
    host = ipaddress.ip_address(d.plain["connection"]["host"])
    if host in ipaddress.ip_network("10.20.0.0/24"):  # the default gemnar:vpcSubnet
        assert "proxy" in d.plain["connection"], "private hosts are reached via the controller"


def check_stateful(d: Declared) -> None:
    assert d.opts.protect is True, f"{d.name} must be protected"
    if d.type == "vultr:index/blockStorage:BlockStorage":
        assert d.plain["live"] is True, "attaching without live restarts the instance"


def check_vpc(d: Declared) -> None:
    assert ipaddress.ip_network(f"{d.plain['v4Subnet']}/{int(d.plain['v4SubnetMask'])}").is_private


def no_check(d: Declared) -> None:
    return None


def check_local_command(d: Declared) -> None:
    """Commands on the deployer: no secret on the command line, secrets only in the
    environment, and every environment value that holds one is secret."""
    i = d.inputs
    for field in ("create", "update", "delete"):
        assert contains_secret(i.get(field, "")) is None, f"secret on a {field} command line"
    environment = i.get("environment") or {}
    if not is_secret(environment):
        for key, value in environment.items():
            if contains_secret(value) or key == "GEMNAR_SSH_PRIVATE_KEY":
                assert is_secret(value), f"{d.name}: {key} carries a secret but is not secret"


CHECKS: dict[str, Callable[[Declared], None]] = {
    "vultr:index/instance:Instance": check_instance,
    "vultr:index/firewallRule:FirewallRule": check_firewall_rule,
    "vultr:index/firewallGroup:FirewallGroup": no_check,
    "vultr:index/vpc:Vpc": check_vpc,
    "vultr:index/sSHKey:SSHKey": no_check,
    "vultr:index/dnsRecord:DnsRecord": no_check,
    "command:remote:Command": check_command,
    "command:local:Command": check_local_command,
    **{t: check_stateful for t in STATEFUL},
}


def walk(resources: list[Declared]) -> None:
    assert resources
    for d in resources:
        if not d.custom:
            check_component(d)
            continue
        assert d.type in CHECKS, f"{d.type} has no security check: add one to CHECKS"
        assert isinstance(d.opts.parent, pulumi.ComponentResource), f"{d.name} needs parent=self"
        assert contains_secret({k: v for k, v in d.inputs.items() if not is_secret(v)}) is None, (
            f"{d.name} has a secret in a non-secret input"
        )
        CHECKS[d.type](d)


@pulumi.runtime.test
def test_every_resource_meets_the_security_defaults() -> pulumi.Output[None]:
    _, declared = declare(
        config(
            workerCount="3",
            domain="example.com",
            tlsEmail="ops@example.com",
            manageDns="true",
            adminCidrs='["198.51.100.7/32", "2001:db8::/48"]',
            workerSshFromAdmin="true",
        )
    )
    return declared.apply(walk)


@pulumi.runtime.test
def test_no_rule_opens_private_ports_or_ssh_to_the_world() -> pulumi.Output[None]:
    _, declared = declare(
        config(adminCidrs='["198.51.100.0/24", "2001:db8::1/128"]', workerSshFromAdmin="true")
    )

    def check(resources: list[Declared]) -> None:
        rules = [d.plain for d in resources if d.type == "vultr:index/firewallRule:FirewallRule"]
        assert rules
        for rule in rules:
            opened = set(ports(rule["port"]))
            assert not opened & {5432, 6432, 6379, 8000, 9100}
            if 22 in opened:
                assert (rule["subnet"], rule["subnetSize"]) not in {("0.0.0.0", 0), ("::", 0)}
        public = {(r["port"], r["subnet"], r["subnetSize"]) for r in rules if r["subnetSize"] == 0}
        assert public == {("80", "0.0.0.0", 0), ("443", "0.0.0.0", 0)}

    return declared.apply(check)


@pulumi.runtime.test
def test_no_secret_in_user_data_or_outputs() -> pulumi.Output[None]:
    exports, declared = declare(config(workerCount="2"))
    names = list(exports)

    def check(values: list[Any]) -> None:
        resources, outputs = values[0], dict(zip(names, values[1:], strict=True))
        user_data = [d.plain["userData"] for d in resources if "userData" in d.plain]
        assert len(user_data) == 3
        for text in user_data:
            assert contains_secret(text) is None
        for key, value in outputs.items():
            assert contains_secret(value) is None, f"output {key} leaks a secret"
        # ...and the secrets do reach the hosts, as secret stdin of the write commands.
        writes = [d for d in resources if d.name.endswith("-secrets-write")]
        assert len(writes) == 3
        for write in writes:
            assert is_secret(write.inputs["stdin"])
            assert derive_secret(SEED, "django-secret-key") in reveal(write.inputs["stdin"])
            assert "/etc/gemnar/secrets" in write.plain["create"]
        # The controller's carries the admin console's verifier for PgBouncer's auth file.
        controller = next(w for w in writes if w.name.startswith("gemnar-controller-"))
        verifier = controller_secret_env(SEED)["GEMNAR_PGBOUNCER_ADMIN_VERIFIER"]
        assert f"GEMNAR_PGBOUNCER_ADMIN_VERIFIER='{verifier}'" in reveal(controller.inputs["stdin"])

    return pulumi.Output.all(declared, *exports.values()).apply(check)


def app_env_value(user_data: str, key: str) -> str:
    """``KEY="value"`` from the app's environment file inside a worker's cloud-config."""
    document = yaml.safe_load(user_data)
    for entry in document["write_files"]:
        for line in str(entry.get("content", "")).splitlines():
            if line.startswith(f"{key}="):
                return line.split("=", 1)[1].strip('"')
    raise AssertionError(f"{key} is not in the worker's user data")


@pytest.mark.parametrize(
    ("overrides", "hosts", "origins"),
    [
        # No domain: the reserved IP, which exists before the controller, is the only name.
        ({}, RESERVED_IP, f"https://{RESERVED_IP}"),
        ({"domain": "example.com", "tlsEmail": "ops@example.com"},
         "example.com,www.example.com", "https://example.com,https://www.example.com"),
    ],
)
@pulumi.runtime.test
def test_workers_answer_only_to_the_site_names(
    overrides: dict[str, str], hosts: str, origins: str
) -> pulumi.Output[None]:
    _, declared = declare(config(workerCount="2", **overrides))

    def check(resources: list[Declared]) -> None:
        workers = [d.plain["userData"] for d in resources
                   if d.type == "vultr:index/instance:Instance" and "worker" in d.name]
        assert len(workers) == 2
        for user_data in workers:
            assert app_env_value(user_data, "GEMNAR_ALLOWED_HOSTS") == hosts
            assert app_env_value(user_data, "GEMNAR_CSRF_TRUSTED_ORIGINS") == origins

    return declared.apply(check)


@pulumi.runtime.test
def test_the_alert_webhook_reaches_the_controller_only_over_ssh() -> pulumi.Output[None]:
    """It may carry a token: a stack secret, in the controller's secrets file (secret stdin),
    in no user data and no output."""
    token = "T0K3N-b5e1f0c2"
    url = f"https://hooks.example/services/{token}"
    values = {**BASE_VALUES, "sshPrivateKey": PRIVATE_KEY, "alertWebhookUrl": url}
    cfg = parse_stack_config(values,
                             secret_keys={"secretSeed", "sshPrivateKey", "alertWebhookUrl"})
    exports, declared = declare(cfg)

    def check(values: list[Any]) -> None:
        resources, outputs = values[0], values[1:]
        user_data = [d.plain["userData"] for d in resources if "userData" in d.plain]
        assert user_data
        assert not [text for text in user_data if token in text]
        assert token not in json.dumps(reveal(outputs))
        writes = [d for d in resources if d.name == "gemnar-controller-secrets-write"]
        assert len(writes) == 1 and is_secret(writes[0].inputs["stdin"])
        assert f"GEMNAR_ALERT_WEBHOOK_URL='{url}'" in reveal(writes[0].inputs["stdin"])

    return pulumi.Output.all(declared, *exports.values()).apply(check)
