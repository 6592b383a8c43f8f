"""Admin SSH public keys registered with Vultr, for instances to authorize at create."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import ediri_vultr as vultr
import pulumi

from components.component import Component, Outputs


def key_fingerprint(public_key: str) -> str:
    """A short stable id of a key, so reordering the config list renames nothing."""
    return hashlib.sha256(public_key.split()[1].encode()).hexdigest()[:10]


@dataclass(frozen=True)
class SshKeysArgs:
    public_keys: Sequence[str]


class SshKeys(Component[SshKeysArgs]):
    """One ``vultr.SSHKey`` per configured public key."""

    key_ids: pulumi.Output[list[str]]

    def build(self, name: str, args: SshKeysArgs) -> Outputs:
        keys = [
            vultr.SSHKey(
                f"{name}-{key_fingerprint(text)}",
                name=f"gemnar-admin-{key_fingerprint(text)}",
                ssh_key=text,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for text in args.public_keys
        ]
        self.key_ids = pulumi.Output.all(*[key.id for key in keys])
        return {"keyIds": self.key_ids}
