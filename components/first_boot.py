"""First boot: wait on a node until cloud-init has finished, and fail if it ended in error.

Why: a new instance answers SSH long before cloud-init is done (Vultr reports it running as
soon as it boots; packages take minutes). The commands the program runs next call scripts that
cloud-init installs at the end of its run (``gemnar-data-volume``, ``gemnar-worker-ready``,
``gemnar-lb-apply``); run earlier, they are "not found" (exit 127). Seen first on the lab
platform, where machines boot in a second. When cloud-init ends in error the node is broken:
the command fails with cloud-init's own account of what went wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.component import Component, Outputs
from components.node_command import OnNode, on_node
from components.nodes import as_root

# `--wait` blocks on cloud-init itself (no polling here); `--long` names the failed module.
CLOUD_INIT_WAIT = (
    "out=$(cloud-init status --wait --long 2>&1); rc=$?; "
    "printf '%s\\n' \"$out\" | sed 's/^[.]*//'; exit $rc"
)


@dataclass(frozen=True)
class FirstBootArgs(OnNode):
    wait_command: str
    ssh_user: str = "root"


class FirstBoot(Component[FirstBootArgs]):
    """Create returns once the node's first boot is over (and failed if it went wrong)."""

    def build(self, name: str, args: FirstBootArgs) -> Outputs:
        # A new machine boots once more.
        on_node(f"{name}-wait", self, args, create=as_root(args.wait_command, args.ssh_user))
        return {}
