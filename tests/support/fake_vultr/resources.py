"""What Vultr's API would answer, derived from a resource's inputs (pure).

``created`` gives the id and outputs of a new resource: its inputs plus the outputs the
program reads (addresses, the block device's mount id, bucket credentials), each derived from
the URN and inputs, so the same program always gets the same answers. In preview those
outputs are unknown, as with the real provider. ``diff`` says which changed inputs force a
replacement, from the provider's documented ForceNew fields (FACTS.md, Vultr provider).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pulumi.runtime import rpc

INSTANCE = "vultr:index/instance:Instance"
RESERVED_IP = "vultr:index/reservedIp:ReservedIp"
BLOCK_STORAGE = "vultr:index/blockStorage:BlockStorage"
OBJECT_STORAGE = "vultr:index/objectStorage:ObjectStorage"
FIREWALL_RULE = "vultr:index/firewallRule:FirewallRule"

# Private addresses: the program's VPC (Pulumi.prod.yaml gemnar:vpcSubnet); public ones come
# from the documentation ranges, so nothing here names a routable host.
PRIVATE_NET = ipaddress.ip_network("10.20.0.0/24")
PUBLIC_NET = ipaddress.ip_network("192.0.2.0/24")
RESERVED_NET = ipaddress.ip_network("203.0.113.0/24")
WORKER = re.compile(r"^worker-(\d+)$")

# Inputs whose change replaces the resource (ForceNew in the provider); ALL: every input.
ALL = frozenset({"*"})
FORCE_NEW: Mapping[str, frozenset[str]] = {
    INSTANCE: frozenset({"hostname", "osId", "sshKeyIds", "scriptId", "reservedIpId",
                         "userScheme", "snapshotId", "userData", "region"}),
    FIREWALL_RULE: ALL,
    RESERVED_IP: frozenset({"region", "ipType"}),
    BLOCK_STORAGE: frozenset({"region", "blockType"}),
    "vultr:index/vpc:Vpc": frozenset({"region", "v4Subnet", "v4SubnetMask"}),
    "vultr:index/sSHKey:SSHKey": frozenset({"sshKey"}),
}

# What a create computes, per type: the outputs the program reads.
COMPUTED: Mapping[str, tuple[str, ...]] = {
    INSTANCE: ("internalIp", "mainIp", "defaultPassword", "status", "powerStatus"),
    RESERVED_IP: ("subnet", "subnetSize"),
    BLOCK_STORAGE: ("mountId", "attachedToInstance"),
    OBJECT_STORAGE: ("s3Hostname", "s3AccessKey", "s3SecretKey"),
}


def _digest(*parts: object) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _host(net: ipaddress.IPv4Network | ipaddress.IPv6Network, number: int) -> str:
    return str(net.network_address + number)


def resource_name(urn: str) -> str:
    return urn.rsplit("::", 1)[1]


def computed(type_token: str, urn: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The outputs Vultr computes for a new resource of ``type_token``."""
    seed = int(_digest(urn, inputs)[:8], 16)
    if type_token == INSTANCE:
        worker = WORKER.match(str(inputs.get("hostname", "")))
        # Workers at .10 + index, the controller at .3: distinct, and stable across runs.
        private = 10 + int(worker[1]) if worker else 3
        return {"internalIp": _host(PRIVATE_NET, private),
                "mainIp": _host(PUBLIC_NET, 1 + seed % 250),
                "defaultPassword": rpc.wrap_rpc_secret(_digest("password", urn)[:16]),
                "status": "active", "powerStatus": "running"}
    if type_token == RESERVED_IP:
        return {"subnet": _host(RESERVED_NET, 1 + seed % 250), "subnetSize": 32}
    if type_token == BLOCK_STORAGE:
        return {"mountId": f"{inputs.get('region', 'ams')}-{_digest(urn)[:12]}",
                "attachedToInstance": inputs.get("attachedToInstance", "")}
    if type_token == OBJECT_STORAGE:
        return {"s3Hostname": f"{inputs.get('clusterId', 'ams')}.vultrobjects.com",
                "s3AccessKey": _digest("access", urn)[:20],
                "s3SecretKey": rpc.wrap_rpc_secret(_digest("secret", urn)[:40])}
    return {}


@dataclass(frozen=True)
class Created:
    id: str
    outputs: dict[str, Any]


def created(type_token: str, urn: str, inputs: Mapping[str, Any], preview: bool) -> Created:
    """A create's answer: an id derived from the inputs, and the outputs (unknown in preview)."""
    if preview:
        unknown = dict.fromkeys(COMPUTED.get(type_token, ()), rpc.UNKNOWN)
        return Created("", {**inputs, **unknown})
    resource_id = f"{resource_name(urn)}-{_digest(type_token, urn, inputs)[:12]}"
    return Created(resource_id, {**inputs, **computed(type_token, urn, inputs)})


@dataclass(frozen=True)
class Diff:
    changed: tuple[str, ...]
    replaces: tuple[str, ...]


def _same(old: Any, new: Any) -> bool:
    if isinstance(old, int | float) and isinstance(new, int | float):
        return float(old) == float(new)
    return bool(old == new)


def diff(type_token: str, olds: Mapping[str, Any], news: Mapping[str, Any]) -> Diff:
    """Which inputs changed (an unknown new value counts), and which of them replace."""
    keys = sorted((set(olds) | set(news)) - {"__defaults"})
    changed = tuple(k for k in keys if news.get(k) is rpc.UNKNOWN
                    or not _same(olds.get(k), news.get(k)))
    force = FORCE_NEW.get(type_token, frozenset())
    replaces = tuple(k for k in changed if force is ALL or k in force)
    return Diff(changed, replaces)


def updated(olds: Mapping[str, Any], news: Mapping[str, Any]) -> dict[str, Any]:
    """An in-place update keeps what Vultr computed and takes the new inputs."""
    return {**olds, **news}
