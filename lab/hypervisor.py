"""The lab's "hypervisor" on the host: network, S3 server, API agent and machines of a stack.

On prod the program calls Vultr's API; on the lab it calls the API this command's ``net-up``
starts (``lab/agent.py``). ``create``/``delete``/``exec`` are the operator's and the tests'
tools: everything a machine needs comes in as arguments and, for the user data, the
environment variable ``GEMNAR_USER_DATA`` (it is long and must reach the seed byte for byte).

    python -m lab.hypervisor net-up|net-down --stack S --vpc-subnet CIDR
    python -m lab.hypervisor image
    python -m lab.hypervisor create --stack S --vpc-subnet CIDR --name N --vpc-address A \
        [--public-address P] [--memory-mb M] [--data-disk-mb M --data-disk-id ID]
    python -m lab.hypervisor delete --stack S --vpc-subnet CIDR --name N
    python -m lab.hypervisor exec --stack S --name N -- CMD...
    python -m lab.hypervisor destroy-all --stack S --vpc-subnet CIDR
    python -m lab.hypervisor object-storage --stack S

``net-up`` also starts the stack's S3 server (``lab/s3.py``: state, media, backups), its
hypervisor API (``lab/agent.py``: what the program calls to create and delete machines, from
the host or the controller) and its LXCFS (``lab/memory.py``: each machine's own
``/proc/meminfo``), and ``destroy-all`` stops all three; ``object-storage`` prints the S3
server's endpoint and keys as JSON, which the program reads as it reads Vultr's
``ObjectStorage`` outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from engine.toolchain import PROJECT_ROOT, tool_paths
from lab import agent, image, machine, memory, netns, s3
from lab.netns import LabNetwork
from stack_schema import KEYS


def stack_dir(stack: str) -> Path:
    return tool_paths().state_dir / "lab" / stack


def _network(args: argparse.Namespace) -> LabNetwork:
    # The hypervisor API checks addresses against the VPC: the stack's default when not given.
    subnet = args.vpc_subnet or str(KEYS["vpcSubnet"].default)
    return LabNetwork(stack=args.stack, vpc_subnet=subnet)


def network_up(net: LabNetwork, directory: Path) -> None:
    """The stack's namespace, S3 server, LXCFS and, last, its API (what creates machines)."""
    netns.create(net)
    s3.start(net, directory)
    memory.start_view(directory)
    agent.start(net, directory)


def destroy_all(net: LabNetwork, directory: Path) -> None:
    """Every machine of the stack, then its namespace: ``destroy`` leaves nothing behind."""
    agent.stop(directory)  # first: nothing may create a machine while they go
    for name in machine.names(directory):
        machine.delete(net, directory, name)
    memory.remove_stack_cgroups(net.namespace)
    memory.stop_view(directory)
    s3.stop(directory)
    netns.delete(net)
    shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.hypervisor", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("image")
    p.add_argument("--role", action="append", choices=sorted(image.ROLE_PACKAGES))
    for action in ("net-up", "net-down", "create", "delete", "destroy-all"):
        p = sub.add_parser(action)
        p.add_argument("--stack", required=True)
        # Only creating a machine needs the subnet (its addresses); the rest find things by name.
        p.add_argument("--vpc-subnet", required=action == "create", default="")
        if action in ("create", "delete"):
            p.add_argument("--name", required=True)
        if action == "create":
            p.add_argument("--vpc-address", required=True)
            p.add_argument("--role", required=True, choices=sorted(image.ROLE_PACKAGES))
            p.add_argument("--public-address", default="")
            p.add_argument("--memory-mb", type=int, default=machine.MachineSpec.memory_mb)
            p.add_argument("--data-disk-mb", type=int, default=0)
            p.add_argument("--data-disk-id", default="")
            p.add_argument("--public-key", action="append", default=[])
    p = sub.add_parser("object-storage")
    p.add_argument("--stack", required=True)
    p = sub.add_parser("exec")
    p.add_argument("--stack", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)

    if args.action == "image":
        for role in args.role or sorted(image.ROLE_PACKAGES):
            print(image.lower_dirs(image.default_spec(PROJECT_ROOT), role))
        return 0
    if args.action == "exec":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        result = machine.exec_in(stack_dir(args.stack), args.name, command, timeout=600)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        return result.returncode
    if args.action == "object-storage":
        server = s3.load(stack_dir(args.stack))
        if server is None:
            print(f"lab stack {args.stack} has no S3 server: run `bash tools/lab.sh` "
                  "(net-up starts it)", file=sys.stderr)
            return 1
        print(json.dumps(server.description(), sort_keys=True))
        return 0
    net = _network(args)
    directory = stack_dir(args.stack)
    if args.action == "net-up":
        network_up(net, directory)
        print(net.namespace)
    elif args.action == "net-down":
        agent.stop(directory)
        memory.stop_view(directory)
        s3.stop(directory)
        netns.delete(net)
    elif args.action == "destroy-all":
        destroy_all(net, directory)
    elif args.action == "delete":
        machine.delete(net, directory, args.name)
    else:
        user_data = os.environ.get("GEMNAR_USER_DATA")
        if user_data is None:
            parser.error("create needs the user data in GEMNAR_USER_DATA")
        netns.create(net)
        lower = image.lower_dirs(image.default_spec(PROJECT_ROOT), args.role)
        state = machine.create(
            net, directory, lower,
            machine.MachineSpec(
                name=args.name, vpc_address=args.vpc_address, user_data=user_data,
                public_address=args.public_address, memory_mb=args.memory_mb,
                data_disk_mb=args.data_disk_mb,
                data_disk_id=args.data_disk_id, public_keys=tuple(args.public_key),
            ),
        )
        print(json.dumps({"instanceId": state.instance_id, "name": state.name}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
