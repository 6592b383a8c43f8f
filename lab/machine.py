"""One lab machine: an overlay of the image, a NoCloud seed, systemd-nspawn booting it.

A machine's files live in ``<stack dir>/machines/<name>/``: ``upper`` and ``work`` (the
overlay's writable layer over the shared image), ``root`` (the mount point), ``disk.img``
(the controller's data volume, attached through a loop device), ``console.log`` and
``state.json`` (pids, loop device, veth, memory cgroup) so that ``delete`` undoes exactly what
``create`` did, also from another process. A machine has its own memory, as a Vultr plan has
(``lab/memory.py``): a memory cgroup limited to ``memory_mb`` and a ``/proc/meminfo`` of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab import memory, netns, service
from lab.netns import LabNetwork
from lab.seed import (
    PLATFORM_CLOUD_CFG,
    PLATFORM_CLOUD_CFG_PATH,
    PUBLIC_INTERFACE,
    SEED_DIR,
    SeedSpec,
    seed_files,
)
from localnode.supervise import alive

# Where the data volume appears inside the machine: Vultr's block storage naming.
DATA_DEVICE_PREFIX = "/dev/disk/by-id/virtio-"
BOOT_TIMEOUT_S = 90
STOP_TIMEOUT_S = 60


@dataclass(frozen=True)
class MachineSpec:
    name: str
    vpc_address: str
    user_data: str
    public_address: str = ""
    # Size of the data volume in MiB; 0 means none.
    data_disk_mb: int = 0
    data_disk_id: str = ""
    public_keys: tuple[str, ...] = ()
    # The machine's RAM in MiB (its plan's memory): its cgroup's limit and its MemTotal.
    memory_mb: int = 1024


@dataclass
class MachineState:
    name: str
    instance_id: str
    nspawn_pid: int = 0
    loop_device: str = ""
    host_veth: str = ""
    mounted: bool = False
    # The machine's memory cgroup (a directory in the host's memory hierarchy).
    cgroup: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def machines_dir(stack_dir: Path) -> Path:
    return stack_dir / "machines"


def machine_dir(stack_dir: Path, name: str) -> Path:
    return machines_dir(stack_dir) / name


def _save(directory: Path, state: MachineState) -> None:
    tmp = directory / "state.json.tmp"
    tmp.write_text(json.dumps(asdict(state), sort_keys=True))
    tmp.replace(directory / "state.json")


def load_state(stack_dir: Path, name: str) -> MachineState | None:
    path = machine_dir(stack_dir, name) / "state.json"
    if not path.exists():
        return None
    return MachineState(**json.loads(path.read_text()))


def _run(argv: Sequence[str]) -> str:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True).stdout.strip()


def init_pid(nspawn_pid: int) -> int:
    """Host pid of the machine's PID 1 (a child of nspawn whose own pid namespace says 1)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        fields = dict(
            line.split(":", 1) for line in status.splitlines() if ":" in line
        )
        nspid = fields.get("NSpid", "").split()
        if int(fields.get("PPid", "0").strip()) == nspawn_pid and nspid[-1:] == ["1"]:
            return int(entry.name)
    return 0


def exec_in(
    stack_dir: Path, name: str, argv: Sequence[str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside the machine (all its namespaces), as root."""
    state = load_state(stack_dir, name)
    if state is None:
        raise LookupError(f"no lab machine {name}")
    leader = init_pid(state.nspawn_pid)
    if not leader:
        raise LookupError(f"lab machine {name} is not running")
    return subprocess.run(
        ["nsenter", f"--target={leader}", "--mount", "--uts", "--ipc", "--net", "--pid",
         "--", *argv],
        capture_output=True, text=True, timeout=timeout,
    )


def create(net: LabNetwork, stack_dir: Path, lower: str, spec: MachineSpec) -> MachineState:
    """Boot a new machine; returns once its systemd has started (like Vultr's ``running``).

    ``lower`` is the overlay's ``lowerdir`` (the image layers, top first).
    """
    directory = machine_dir(stack_dir, spec.name)
    if directory.exists():
        delete(net, stack_dir, spec.name)
    for sub in ("upper", "work", "root"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    state = MachineState(name=spec.name, instance_id=f"i-{uuid.uuid4().hex}")
    _save(directory, state)
    root = directory / "root"
    try:
        _run(["mount", "-t", "overlay", "overlay", "-o",
              f"lowerdir={lower},upperdir={directory / 'upper'},workdir={directory / 'work'}",
              str(root)])
        state.mounted = True
        _save(directory, state)
        seed = SeedSpec(
            instance_id=state.instance_id,
            hostname=spec.name,
            vpc_address=spec.vpc_address,
            vpc_prefixlen=net.vpc_prefixlen,
            public_address=spec.public_address,
            public_prefixlen=net.public_prefixlen,
            public_gateway=net.gateway if spec.public_address else "",
            public_keys=spec.public_keys,
        )
        cloud_cfg = root / PLATFORM_CLOUD_CFG_PATH.lstrip("/")
        cloud_cfg.parent.mkdir(parents=True, exist_ok=True)
        cloud_cfg.write_text(PLATFORM_CLOUD_CFG)
        seed_dir = root / SEED_DIR.lstrip("/")
        seed_dir.mkdir(parents=True, exist_ok=True)
        for filename, content in seed_files(seed, spec.user_data).items():
            (seed_dir / filename).write_text(content)
        memory.start_view(stack_dir)  # the stack's LXCFS, kept when it runs
        layout, tracking = memory.host_cgroups()
        cgroups = memory.create_cgroups(layout, tracking, net.namespace, spec.name,
                                        spec.memory_mb)
        state.cgroup = str(cgroups[0])
        _save(directory, state)
        argv = [
            "nsenter", f"--net={net.netns_path}", "--",
            "systemd-nspawn", "--quiet", "-D", str(root), "--boot", "--register=no",
            "--keep-unit", f"--machine={spec.name}", f"--network-bridge={netns.VPC_BRIDGE}",
            "--console=read-only", "--link-journal=no", *memory.nspawn_args(stack_dir),
        ]
        if spec.data_disk_mb:
            disk = directory / "disk.img"
            with disk.open("wb") as handle:
                handle.truncate(spec.data_disk_mb * 1024 * 1024)
            state.loop_device = _run(["losetup", "--find", "--show", str(disk)])
            _save(directory, state)
            argv.append(f"--bind={state.loop_device}:{DATA_DEVICE_PREFIX}{spec.data_disk_id}")
            # Also under its kernel name, as /dev/vdb is on Vultr: with no udev in the
            # machine, blkid finds a filesystem UUID (mount UUID=...) by probing /dev/<name>.
            argv.append(f"--bind={state.loop_device}")
            argv.append(f"--property=DeviceAllow={state.loop_device} rwm")
        if spec.public_address:
            # nspawn takes one bridge; the public side is an extra veth pair that nspawn makes
            # (it cannot look an existing interface up: /sys is the host's, not the lab's).
            state.host_veth = f"vp-{state.instance_id[2:12]}"
            _save(directory, state)
            argv.append(f"--network-veth-extra={state.host_veth}:{PUBLIC_INTERFACE}")
        console = (directory / "console.log").open("ab")
        process = subprocess.Popen(
            memory.join_argv(cgroups, argv), stdin=subprocess.DEVNULL, stdout=console,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        console.close()
        state.nspawn_pid = process.pid
        _save(directory, state)
        if state.host_veth:
            _attach(net, state.host_veth, process)
        _wait_booted(stack_dir, spec.name, process)
    except BaseException:
        delete(net, stack_dir, spec.name)
        raise
    return state


def _attach(net: LabNetwork, veth: str, process: subprocess.Popen[bytes]) -> None:
    """Put the host side of the public veth on the public bridge as soon as nspawn made it."""
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        done = subprocess.run(
            ["ip", "-n", net.namespace, "link", "set", veth, "master", netns.PUBLIC_BRIDGE, "up"],
            capture_output=True,
        )
        if done.returncode == 0:
            return
        # nspawn creates the link right after it starts; nothing to wait on but the link.
        time.sleep(0.1)
    raise RuntimeError(f"nspawn did not create {veth}")


def _wait_booted(stack_dir: Path, name: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (machine_dir(stack_dir, name) / "console.log").read_text(errors="replace")
            raise RuntimeError(f"lab machine {name} exited during boot:\n{log[-3000:]}")
        try:
            result = exec_in(stack_dir, name, ["systemctl", "is-system-running"], timeout=10)
        except (LookupError, subprocess.TimeoutExpired):
            result = None
        if result is not None and result.stdout.strip() not in ("", "offline"):
            return
        # Polling an event with no notification to wait on; bounded by the deadline.
        time.sleep(0.5)
    raise TimeoutError(f"lab machine {name} did not start systemd within {BOOT_TIMEOUT_S} s")


def delete(net: LabNetwork, stack_dir: Path, name: str) -> None:
    """Stop the machine and remove everything ``create`` made; idempotent."""
    directory = machine_dir(stack_dir, name)
    state = load_state(stack_dir, name)
    if state is not None:
        _stop(state.nspawn_pid)
        if state.host_veth and netns.exists(net):
            subprocess.run(["ip", "-n", net.namespace, "link", "del", state.host_veth],
                           capture_output=True)
        root = directory / "root"
        if service.mounted(root):
            _run(["umount", str(root)])
        if state.loop_device:
            subprocess.run(["losetup", "-d", state.loop_device], capture_output=True)
        if state.cgroup:
            memory.remove_machine_cgroups(Path(state.cgroup))
    shutil.rmtree(directory, ignore_errors=True)


def _stop(pid: int) -> None:
    if not alive(pid):
        return
    # nspawn turns SIGTERM into a clean shutdown of the booted system.
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.2)
    if alive(pid):
        os.killpg(pid, signal.SIGKILL)
        while alive(pid):
            _reap(pid)
            time.sleep(0.1)
    _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def names(stack_dir: Path) -> list[str]:
    base = machines_dir(stack_dir)
    return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.exists() else []
