"""The NoCloud seed a lab machine boots with: what Vultr's metadata service would supply.

Pure. The user data is passed through untouched (it is what the Vultr platform renders);
``meta-data`` carries a fresh instance id so cloud-init runs its first-boot modules, and
``network-config`` (version 2) gives the VPC address statically on ``host0``, as Vultr's
metadata gives the private interface's address, plus the controller's public address.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml  # type: ignore[import-untyped]  # no types-PyYAML in requirements

SEED_DIR = "/var/lib/cloud/seed/nocloud"
# nspawn names the container side of --network-bridge "host0".
VPC_INTERFACE = "host0"
# The container side of the controller's public veth (a name we choose; <= 15 bytes).
PUBLIC_INTERFACE = "public0"


@dataclass(frozen=True)
class SeedSpec:
    instance_id: str
    hostname: str
    vpc_address: str
    vpc_prefixlen: int
    # Vultr hands the instance's SSH keys to cloud-init through metadata, not user data.
    public_keys: tuple[str, ...] = ()
    # The public interface (the controller's only): network-config, as the VPC's.
    public_address: str = ""
    public_prefixlen: int = 24
    public_gateway: str = ""


def meta_data(spec: SeedSpec) -> str:
    data: dict[str, object] = {"instance-id": spec.instance_id, "local-hostname": spec.hostname}
    if spec.public_keys:
        data["public-keys"] = list(spec.public_keys)
    return yaml.safe_dump(data, sort_keys=True)


def network_config(spec: SeedSpec) -> str:
    ethernets: dict[str, object] = {
        VPC_INTERFACE: {
            "match": {"name": VPC_INTERFACE},
            "addresses": [f"{spec.vpc_address}/{spec.vpc_prefixlen}"],
        }
    }
    if spec.public_address:
        public: dict[str, object] = {
            "match": {"name": PUBLIC_INTERFACE},
            "addresses": [f"{spec.public_address}/{spec.public_prefixlen}"],
        }
        if spec.public_gateway:
            public["gateway4"] = spec.public_gateway
        ethernets[PUBLIC_INTERFACE] = public
    return yaml.safe_dump({"version": 2, "ethernets": ethernets}, sort_keys=True)


# What Vultr's Debian image configures for cloud-init: root logs in with the instance's SSH
# keys. The lab reads its metadata from the NoCloud seed only.
PLATFORM_CLOUD_CFG_PATH = "/etc/cloud/cloud.cfg.d/90_gemnar_lab.cfg"
PLATFORM_CLOUD_CFG = "datasource_list: [NoCloud, None]\ndisable_root: false\n"


def seed_files(spec: SeedSpec, user_data: str) -> dict[str, str]:
    """File name (inside ``SEED_DIR``) -> content."""
    return {
        "user-data": user_data,
        "meta-data": meta_data(spec),
        "network-config": network_config(spec),
    }
