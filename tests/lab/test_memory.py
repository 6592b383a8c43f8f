"""A lab machine's own memory (lab/memory.py): the cgroup layout as data (tables), and a real
machine whose /proc/meminfo shows its plan's RAM and moves when a process on it holds memory.

The lab_net fixture fails the test if the machine's cgroup, the stack's LXCFS process or its
mount is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from lab import machine, memory, service
from lab.netns import LabNetwork
from localnode.supervise import alive
from tests.lab.memory_load import parse_meminfo_kb
from tests.support.waiting import wait_until

V1_CGROUP = "4:memory:/process_api/abc\n1:cpu:/\n9:name=systemd:/\n0::/\n"
V1_MOUNTS = ("tmpfs /sys/fs/cgroup tmpfs rw 0 0\n"
             "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n"
             "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n"
             "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n")
V2_CGROUP = "0::/user.slice/session-1.scope\n"
V2_MOUNTS = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n"


@pytest.mark.parametrize(("cgroup", "mounts", "expected"), [
    (V1_CGROUP, V1_MOUNTS,
     memory.CgroupLayout(Path("/sys/fs/cgroup/memory"), "/process_api/abc",
                         "memory.limit_in_bytes")),
    (V2_CGROUP, V2_MOUNTS,
     memory.CgroupLayout(Path("/sys/fs/cgroup"), "/user.slice/session-1.scope", "memory.max")),
    # A v1 memory line without its hierarchy mounted: the unified one.
    ("4:memory:/x\n0::/y\n", V2_MOUNTS,
     memory.CgroupLayout(Path("/sys/fs/cgroup"), "/y", "memory.max")),
    ("3:cpu,memory:/x\n", "cgroup /c cgroup rw,cpu,memory 0 0\n",
     memory.CgroupLayout(Path("/c"), "/x", "memory.limit_in_bytes")),
])
def test_the_memory_controller_is_found_in_either_hierarchy(
    cgroup: str, mounts: str, expected: memory.CgroupLayout
) -> None:
    assert memory.cgroup_layout(cgroup, mounts) == expected


def test_no_memory_controller_is_an_error_that_says_so() -> None:
    with pytest.raises(RuntimeError, match="memory cgroup"):
        memory.cgroup_layout("1:cpu:/\n", "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n")


def test_the_machine_joins_every_cgroup_before_it_runs(tmp_path: Path) -> None:
    # Stand-ins for cgroup directories: each join is a write of the shell's pid.
    groups = [tmp_path / "memory", tmp_path / "systemd"]
    for group in groups:
        group.mkdir()
        (group / "cgroup.procs").write_text("")
    argv = memory.join_argv(groups, ["sh", "-c", "echo ran as $$", "a b"])
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    pid = done.stdout.split()[-1]
    # exec keeps the pid: the program that runs is the process that joined.
    assert [(g / "cgroup.procs").read_text().strip() for g in groups] == [pid, pid]
    # A join that fails (no such cgroup) stops it: the program must not run outside one.
    failed = subprocess.run(memory.join_argv([groups[0], tmp_path / "gone"], ["echo", "ran"]),
                            capture_output=True, text=True)
    assert failed.returncode != 0 and "ran" not in failed.stdout


HYBRID_CGROUP = ("9:name=systemd:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n")
HYBRID_MOUNTS = ("cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n"
                 "cgroup /sys/fs/cgroup/unified cgroup2 rw,nosuid 0 0\n"
                 "cgroup /sys/fs/cgroup/systemd cgroup rw,xattr,name=systemd 0 0\n"
                 "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n")


@pytest.mark.parametrize(("cgroup", "mounts", "expected"), [
    # This host: the machine needs its own cgroup in name=systemd and in the unified tree.
    (HYBRID_CGROUP, HYBRID_MOUNTS,
     [Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup/systemd")]),
    # A process in no unified cgroup (no "0::" line): name=systemd only, under its own path.
    ("9:name=systemd:/a/b\n4:memory:/m\n",
     V1_MOUNTS + "cgroup /sys/fs/cgroup/systemd cgroup rw,name=systemd 0 0\n",
     [Path("/sys/fs/cgroup/systemd/a/b")]),
    # cgroup v2 only: the memory cgroup is the one tree, nothing else to join.
    (V2_CGROUP, V2_MOUNTS, []),
])
def test_a_machine_also_gets_its_own_cgroup_where_systemd_tracks_units(
    cgroup: str, mounts: str, expected: list[Path]
) -> None:
    layout = memory.cgroup_layout(cgroup, mounts)
    assert memory.tracking_dirs(cgroup, mounts, layout) == expected


def test_a_machine_outside_the_plans_range_is_refused(tmp_path: Path) -> None:
    layout = memory.CgroupLayout(tmp_path, "/", "memory.limit_in_bytes")
    for mb in (memory.MIN_MEMORY_MB - 1, memory.MAX_MEMORY_MB + 1):
        with pytest.raises(ValueError, match="memory"):
            memory.create_cgroup(layout, "g", "worker-0", mb)


def _meminfo_kb(stack_dir: Path, name: str) -> dict[str, int]:
    return parse_meminfo_kb(machine.exec_in(stack_dir, name, ["cat", "/proc/meminfo"]).stdout)


def test_a_machine_sees_its_own_memory_and_what_is_held_on_it(
    lab_image: str, lab_net: tuple[LabNetwork, Path]
) -> None:
    net, stack_dir = lab_net
    spec = machine.MachineSpec(name="worker-0", vpc_address=net.vpc_host(10),
                               user_data="#cloud-config\n{}\n", memory_mb=768)
    state = machine.create(net, stack_dir, lab_image, spec)
    cgroup = Path(state.cgroup)
    assert cgroup.name == "worker-0" and cgroup.parent.name == net.namespace
    assert (cgroup / "memory.limit_in_bytes").read_text().strip() == str(768 * 1024 * 1024)
    # The machine's init, and so every process it starts, is in the machine's cgroup.
    init = machine.init_pid(state.nspawn_pid)
    assert str(init) in (cgroup / "cgroup.procs").read_text().split()

    # Boot settles first: units still starting would take memory while it is held and hide
    # part of its release (CI saw 194 of the 256 MiB come back).
    machine.exec_in(stack_dir, "worker-0", ["systemctl", "is-system-running", "--wait"],
                    timeout=120)
    before = _meminfo_kb(stack_dir, "worker-0")
    assert before["MemTotal"] == 768 * 1024
    assert 0 < before["MemAvailable"] <= before["MemTotal"]
    # A process on the machine holds 256 MiB, written so that it is resident.
    held = machine.exec_in(stack_dir, "worker-0", [
        "systemd-run", "--unit=hold-memory", "python3", "-c",
        "import signal; b = bytearray(b'Z') * (256 << 20); print('held', flush=True); "
        "signal.pause()"])
    assert held.returncode == 0, held.stderr

    def meminfo_when(shown: Callable[[int], bool], what: str) -> dict[str, int]:
        """The machine's meminfo once its MemAvailable (kB) is ``shown``."""
        def reading() -> dict[str, int] | None:
            now = _meminfo_kb(stack_dir, "worker-0")
            return now if shown(now["MemAvailable"]) else None
        return wait_until(reading, timeout_s=30, interval_s=0.5,
                          what=f"{what} in the machine's MemAvailable")

    during = meminfo_when(lambda kb: kb <= before["MemAvailable"] - 256 * 1024,
                          "the held memory")
    assert during["MemTotal"] == 768 * 1024
    stopped = machine.exec_in(stack_dir, "worker-0", ["systemctl", "stop", "hold-memory"])
    assert stopped.returncode == 0, stopped.stderr
    after = meminfo_when(lambda kb: kb >= during["MemAvailable"] + 200 * 1024,
                         "the released memory back")
    print(f"worker-0 (768 MiB) MemAvailable kB: before {before['MemAvailable']}, "
          f"holding 256 MiB {during['MemAvailable']}, released {after['MemAvailable']}")

    machine.delete(net, stack_dir, "worker-0")
    assert not cgroup.exists() and not cgroup.parent.exists()


def test_a_killed_lxcfs_leaves_no_mount_behind(lab_available: None, tmp_path: Path) -> None:
    # A run killed mid-way (SIGKILL: no clean shutdown) leaves LXCFS's FUSE mount dead; the
    # mount table still lists it though stat on it fails, and the stop must unmount it.
    stack_dir = tmp_path / "stack"
    record = memory.start_view(stack_dir)
    mount = Path(record.mount)
    try:
        assert service.mounted(mount) and not service.mounted(tmp_path)
        os.kill(record.pid, signal.SIGKILL)
        wait_until(lambda: not alive(record.pid), timeout_s=10, what="LXCFS to die")
        # Once the kernel's cached attributes expire, stat fails ("not connected"), and so
        # did os.path.ismount, which left such mounts behind until the fix.
        wait_until(lambda: stat_fails(mount), timeout_s=30, interval_s=0.2,
                   what="stat on the dead mount to fail")
        assert service.mounted(mount), "a dead FUSE mount is still a mount"
    finally:
        memory.stop_view(stack_dir)
    assert not service.mounted(mount)


def stat_fails(path: Path) -> bool:
    try:
        path.stat()
    except OSError:
        return True
    return False
