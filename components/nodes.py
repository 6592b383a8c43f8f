"""The seam between "how a node comes to exist" and everything that acts on nodes.

A platform (``vultr`` or ``local``) turns the stack config into ``Nodes``: one
controller and N workers, each a ``NodeHandle``. Membership, readiness and host secrets consume
only handles, so they take the same path on every platform: SSH to the controller, and to each
worker through the controller as jump host.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import pulumi
from pulumi_command import remote

if TYPE_CHECKING:
    from components.offsite_storage import ExternalS3

Role = Literal["controller", "worker"]


@dataclass(frozen=True)
class NodeHandle:
    """A node as the rest of the program sees it."""

    name: str
    role: Role
    private_address: pulumi.Output[str]
    connection: remote.ConnectionArgs
    # The resource whose replacement means "a new machine": commands re-run when it changes.
    identity: pulumi.Output[str]
    public_address: pulumi.Output[str] | None = None
    # Resources the node's commands must wait for (instance, IP attachment, volume, ...).
    ready_after: Sequence[pulumi.Resource] = field(default_factory=tuple)
    # Non-secret facts only known after the node exists, written beside its secrets
    # (e.g. the controller's PostgreSQL data device).
    host_settings: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    # The controller's PostgreSQL block device, when the platform gives it one after the
    # node exists (Vultr: /dev/disk/by-id/virtio-<mount_id>; lab: a loop device).
    data_device: pulumi.Output[str] | None = None
    # Shell that returns once the node's first boot is over (fails if it went wrong); the
    # node's commands run after it. Empty where nothing boots (the local platform).
    first_boot: str = ""
    # Where the node's filesystem starts: "" on a real machine; on the local platform every
    # node shares this machine, so each has its own directory and prod paths live below it.
    root: str = ""

    def path(self, absolute: str) -> str:
        """A prod path (``/usr/local/sbin/...``) as seen on this node."""
        return f"{self.root}{absolute}"


@dataclass(frozen=True)
class Nodes:
    """What a platform produces: the controller, the workers in index order, the site URL."""

    controller: NodeHandle
    workers: tuple[NodeHandle, ...]
    site_url: pulumi.Output[str]
    extras: dict[str, pulumi.Output[str]] = field(default_factory=dict)
    # Whether nodes receive the app and the controller's operations over SSH (a local node
    # runs this checkout instead).
    delivers_app: bool = True
    # Provider plugins (NAME:VERSION) the controller installs the official way because it
    # reaches the internet (Vultr); the rest are copied from the deployer.
    controller_fetches_plugins: tuple[str, ...] = ()
    # An S3 server the platform brings along (the lab's), used for off-site backups instead
    # of a Vultr Object Storage subscription. None on Vultr (config decides) and local.
    object_storage: ExternalS3 | None = None
    # The S3 API uploads are stored in (components.media_storage): a Vultr Object Storage
    # subscription in the nodes' region, the lab's S3 server. None: the nodes share a media
    # directory instead (local: one host).
    media_storage: ExternalS3 | None = None


@dataclass(frozen=True)
class SshIdentity:
    """How Pulumi logs in to nodes: user plus a private key, or the SSH agent when key is None.

    The upstream command provider connects to ``$SSH_AUTH_SOCK`` whenever it is set, even with
    a key (whose presence then keeps the agent's keys from being offered), and a stale socket
    fails every remote command: run with it unset when a key is configured (docs/prod.md).
    """

    user: str
    private_key: pulumi.Output[str] | None = None


def controller_connection(host: pulumi.Input[str], ssh: SshIdentity) -> remote.ConnectionArgs:
    """SSH straight to the controller."""
    return remote.ConnectionArgs(
        host=host, user=ssh.user, private_key=ssh.private_key, dial_error_limit=60
    )


def worker_connection(
    private_address: pulumi.Input[str], controller_host: pulumi.Input[str], ssh: SshIdentity
) -> remote.ConnectionArgs:
    """SSH to a worker's private address with the controller as jump host.

    Workers have no public SSH (their firewall group opens nothing by default and their
    nftables accept SSH only from the controller), so the controller is the only way in.
    """
    return remote.ConnectionArgs(
        host=private_address,
        user=ssh.user,
        private_key=ssh.private_key,
        dial_error_limit=60,
        proxy=remote.ProxyConnectionArgs(
            host=controller_host, user=ssh.user, private_key=ssh.private_key, dial_error_limit=60
        ),
    )


def as_root(script: str, user: str) -> str:
    """Run ``script`` as root: directly when logged in as root, else through ``sudo -n``."""
    if user == "root":
        return script
    return f"sudo -n sh -c {shlex.quote(script)}"
