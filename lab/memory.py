"""A lab machine's own memory, as a Vultr plan's RAM: a memory cgroup and a /proc/meminfo of it.

systemd-nspawn does not virtualise ``/proc/meminfo``: without this every lab machine reports
the host's memory, and nothing a worker holds moves its node exporter's reading (what the
scaler reads). So each machine runs in a memory cgroup of its own whose limit is its plan's
memory (``create_cgroup``; nspawn, started with ``--keep-unit``, stays in the cgroup it was
started in, and a v1 hierarchy is mounted read-only inside the machine, so its systemd puts
every process of the machine there), and the stack's LXCFS (``start_view``: one FUSE daemon
per lab stack, from Debian's ``lxcfs``) serves a ``meminfo`` computed from the cgroup of the
reading process's machine, which nspawn binds over the machine's ``/proc/meminfo``
(``nspawn_args``). The kernel here has a ``memory.shown_ram_in_bytes`` file, but setting it
changes neither ``/proc/meminfo`` nor ``sysinfo()`` (checked): hence LXCFS.

The machine also gets a cgroup of its own in the hierarchies its systemd tracks units in
(``tracking_dirs``: v1 ``name=systemd`` and the unified tree on this hybrid host): started in
their root, all machines shared nspawn's ``/payload`` there and their units' cgroups collided.

``cgroup_layout``, ``tracking_dirs`` and ``join_argv`` are pure; the rest does the I/O.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from lab import service

# Debian bookworm's lxcfs (5.0.3-1+deb12u1), installed by tools/bootstrap.sh.
LXCFS_VERSION = "5.0.3"
VIEW_START_TIMEOUT_S = 15
CGROUP_EMPTY_TIMEOUT_S = 30
# The smallest machine the lab makes (Vultr's smallest plan with a whole GB) and the largest.
MIN_MEMORY_MB = 512
MAX_MEMORY_MB = 1_048_576


@dataclass(frozen=True)
class CgroupLayout:
    """Where this host's memory controller is and how a limit is written: cgroup v1 and v2
    differ only in these values."""

    mount: Path
    # This process's own cgroup in that hierarchy ("/process_api/…"); machines go under it.
    own: str
    limit_file: str

    @property
    def own_dir(self) -> Path:
        return self.mount / self.own.lstrip("/")


def _hierarchies(proc_self_cgroup: str, proc_mounts: str) -> list[tuple[Path, str, frozenset[str]]]:
    """Each mounted cgroup hierarchy this process is in, in mount order (pure): (its mount,
    this process's cgroup in it, its controllers and ``name=`` ("memory", "name=systemd");
    none for the unified cgroup2 one)."""
    own = {}
    for line in proc_self_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        own[frozenset(filter(None, controllers.split(",")))] = path
    found = []
    for line in proc_mounts.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[2] not in ("cgroup", "cgroup2"):
            continue
        options = set(fields[3].split(","))
        for names, path in own.items():
            # A v1 mount's options name its controllers; cgroup2's entry has none ("0::").
            if (fields[2] == "cgroup2") == (not names) and names <= options:
                found.append((Path(fields[1]), path, names))
                break
    return found


def cgroup_layout(proc_self_cgroup: str, proc_mounts: str) -> CgroupLayout:
    """The memory controller's layout from ``/proc/self/cgroup`` and ``/proc/mounts`` (pure):
    a v1 ``memory`` hierarchy when there is one, else the unified (v2) hierarchy."""
    hierarchies = _hierarchies(proc_self_cgroup, proc_mounts)
    for mount, own, names in hierarchies:
        if "memory" in names:
            return CgroupLayout(mount, own, "memory.limit_in_bytes")
    for mount, own, names in hierarchies:
        if not names:
            return CgroupLayout(mount, own, "memory.max")
    raise RuntimeError("no memory cgroup controller mounted (lab machines need one for their "
                       "memory: mount the cgroup v1 memory hierarchy or cgroup2)")


def tracking_dirs(proc_self_cgroup: str, proc_mounts: str, memory: CgroupLayout) -> list[Path]:
    """This process's own cgroup in each hierarchy a machine's systemd tracks its units in,
    other than the memory one (pure): v1 ``name=systemd`` and the unified cgroup2 (a hybrid
    host like this one has both).

    nspawn puts the machine under ``<its own cgroup>/payload``: started in the hierarchy's
    root, every machine of every stack shared ``/payload``, so machines booting at once
    created and removed the same unit cgroups (``/payload/system.slice/systemd-sysusers.
    service``), and a unit failed with "Failed to attach to cgroup ...: No such file or
    directory" (status 219/CGROUP, seen in CI). Each machine gets its own cgroup in these too.
    """
    return [mount / own.lstrip("/") for mount, own, names in
            _hierarchies(proc_self_cgroup, proc_mounts)
            if (not names or "name=systemd" in names) and mount != memory.mount]


def host_cgroups() -> tuple[CgroupLayout, list[Path]]:
    """This host's memory layout and tracking directories, from one read of its tables."""
    proc_self_cgroup = Path("/proc/self/cgroup").read_text()
    proc_mounts = Path("/proc/mounts").read_text()
    layout = cgroup_layout(proc_self_cgroup, proc_mounts)
    return layout, tracking_dirs(proc_self_cgroup, proc_mounts, layout)


def join_argv(cgroups: Sequence[Path], argv: Sequence[str]) -> list[str]:
    """``argv`` run as a process that joined every one of ``cgroups`` before it exec'd:
    nspawn and every process of the machine are then in them from the first instruction
    (pure). A failed join stops it before ``argv`` runs."""
    joins = "".join(f'echo $$ > "${index}/cgroup.procs" || exit 1; '
                    for index in range(1, len(cgroups) + 1))
    return ["sh", "-c", f'{joins}shift {len(cgroups)}; exec "$@"', "join-cgroups",
            *map(str, cgroups), *argv]


def create_cgroups(layout: CgroupLayout, tracking: Sequence[Path], group: str, name: str,
                   memory_mb: int) -> list[Path]:
    """The machine's cgroups ``<own>/<group>/<name>``: the memory one first, with its limit,
    then one in each of the ``tracking`` hierarchies (``tracking_dirs``)."""
    memory_cgroup = create_cgroup(layout, group, name, memory_mb)
    others = [own / group / name for own in tracking]
    for path in others:
        path.mkdir(parents=True, exist_ok=True)
    return [memory_cgroup, *others]


def check_memory_mb(memory_mb: int, field: str = "memory") -> None:
    """Refuse a machine size outside the plans' range, naming ``field``."""
    if not MIN_MEMORY_MB <= memory_mb <= MAX_MEMORY_MB:
        raise ValueError(f"{field}: {MIN_MEMORY_MB} to {MAX_MEMORY_MB} MiB, not {memory_mb}")


def create_cgroup(layout: CgroupLayout, group: str, name: str, memory_mb: int) -> Path:
    """The machine's cgroup ``<own>/<group>/<name>`` with its memory limit; returns its path."""
    check_memory_mb(memory_mb)
    path = layout.own_dir / group / name
    path.mkdir(parents=True, exist_ok=True)
    limit = path / layout.limit_file
    if not limit.exists():
        raise RuntimeError(f"{path} has no {layout.limit_file}: the memory controller is not "
                           "enabled for this cgroup (cgroup v2: add +memory to the parent's "
                           "cgroup.subtree_control)")
    limit.write_text(str(memory_mb * 1024 * 1024))
    return path


def _procs(cgroup: Path) -> list[int]:
    try:
        return [int(pid) for pid in (cgroup / "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return []


def remove_cgroup(cgroup: Path) -> None:
    """Kill whatever is left in the machine's cgroup and the cgroups its systemd made under
    it (left after a kill), remove them and the stack's group when that is empty;
    idempotent. Only a cgroup without processes or children can be removed."""
    if cgroup.exists():
        for directory, _, _ in os.walk(cgroup, topdown=False):
            _remove_one(Path(directory))
    with contextlib.suppress(OSError):
        cgroup.parent.rmdir()  # the stack's group, once its last machine is gone


def remove_machine_cgroups(memory_cgroup: Path) -> None:
    """The machine's memory cgroup and its cgroups in this host's tracking hierarchies."""
    group, name = memory_cgroup.parent.name, memory_cgroup.name
    for own in host_cgroups()[1]:
        remove_cgroup(own / group / name)
    remove_cgroup(memory_cgroup)


def _remove_one(cgroup: Path) -> None:
    deadline = time.monotonic() + CGROUP_EMPTY_TIMEOUT_S
    while cgroup.exists():
        for pid in _procs(cgroup):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            cgroup.rmdir()
        except FileNotFoundError:
            break
        except OSError as error:
            if error.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
            # Killed processes leave the cgroup once reaped; nothing to wait on but that.
            time.sleep(0.1)


def stack_cgroups(group: str) -> list[Path]:
    """Every cgroup directory named ``group`` in the memory hierarchy and under this
    process's own cgroup in the tracking ones (what a lab stack would leave behind)."""
    layout, tracking = host_cgroups()
    found = []
    for top in (layout.mount, *tracking):
        for directory, subdirs, _ in os.walk(top):
            if Path(directory).name == group:
                found.append(Path(directory))
                subdirs.clear()
    return found


def remove_stack_cgroups(group: str) -> None:
    """Every machine cgroup of a stack and the stack's group, also those of machines whose
    state was lost (a crash between mkdir and the state file); idempotent."""
    for stack_group in stack_cgroups(group):
        for child in (p for p in stack_group.iterdir() if p.is_dir()):
            remove_cgroup(child)
        with contextlib.suppress(FileNotFoundError):
            stack_group.rmdir()


# The stack's LXCFS: a FUSE file system whose proc/meminfo answers each reader with the
# memory of the cgroup of its pid namespace's init, i.e. its machine.


def view_dir(stack_dir: Path) -> Path:
    return stack_dir / "lxcfs"


def _mount_point(stack_dir: Path) -> Path:
    return view_dir(stack_dir) / "mnt"


def _record(stack_dir: Path) -> Path:
    return view_dir(stack_dir) / "lxcfs.json"


@dataclass(frozen=True)
class ViewRecord:
    pid: int
    mount: str


# Where the view appears inside a machine, as LXC puts it.
VIEW_IN_MACHINE = "/var/lib/lxcfs"


def nspawn_args(stack_dir: Path) -> list[str]:
    """The machine's /proc/meminfo is the stack's LXCFS view of it. nspawn makes the binds
    under /proc inside the machine, after its /proc is mounted, so their source is a path
    inside the machine: the view is bound in first."""
    return [f"--bind-ro={_mount_point(stack_dir)}:{VIEW_IN_MACHINE}",
            f"--bind-ro={VIEW_IN_MACHINE}/proc/meminfo:/proc/meminfo"]


@contextlib.contextmanager
def _locked(stack_dir: Path) -> Iterator[None]:
    # The agent creates machines in parallel threads: one of them starts the daemon.
    view_dir(stack_dir).mkdir(parents=True, exist_ok=True)
    with (view_dir(stack_dir) / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _version() -> str:
    # It prints '"5.0.3"' on stderr.
    out = subprocess.run(["lxcfs", "--version"], capture_output=True, text=True, check=True)
    return (out.stdout + out.stderr).strip().strip('"')


def start_view(stack_dir: Path) -> ViewRecord:
    """Start the stack's LXCFS (a running one is kept); returns once it serves meminfo."""
    from localnode.supervise import alive, wait_for

    with _locked(stack_dir):
        running = service.load_record(_record(stack_dir), ViewRecord)
        mount = _mount_point(stack_dir)
        if running is not None and alive(running.pid) and service.mounted(mount):
            return running
        if running is not None:
            _stop_locked(stack_dir)
        version = _version()
        if version != LXCFS_VERSION:
            raise RuntimeError(f"lxcfs {version} found, the lab pins {LXCFS_VERSION} "
                               "(Debian bookworm's; bash tools/bootstrap.sh installs it)")
        mount.mkdir(parents=True, exist_ok=True)
        log = view_dir(stack_dir) / "lxcfs.log"
        with log.open("ab") as out:
            # Foreground, so that the pid is the daemon's; its own pid file, not /run's, so
            # that several stacks' daemons coexist; no swap (the host has none).
            process = subprocess.Popen(
                ["lxcfs", "--foreground", "--disable-swap",
                 f"--pidfile={view_dir(stack_dir) / 'lxcfs.pid'}", str(mount)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        record = ViewRecord(pid=process.pid, mount=str(mount))
        service.save_record(_record(stack_dir), record)
        meminfo = mount / "proc" / "meminfo"
        # FUSE gives no notification of the mount: poll for its file, or LXCFS's exit.
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: meminfo.exists() or process.poll() is not None,
                     VIEW_START_TIMEOUT_S, f"lxcfs to mount {mount}")
        if not meminfo.exists():
            _stop_locked(stack_dir)
            raise RuntimeError(f"lxcfs did not mount {mount}:\n"
                               f"{log.read_text(errors='replace')[-2000:]}")
        return record


def _stop_locked(stack_dir: Path) -> None:
    service.retire(_record(stack_dir))
    mount = _mount_point(stack_dir)
    # LXCFS unmounts on SIGTERM; after a SIGKILL the mount stays, dead ("not connected").
    if service.mounted(mount):
        subprocess.run(["umount", "--lazy", str(mount)], capture_output=True)


def stop_view(stack_dir: Path) -> None:
    """Stop the stack's LXCFS and unmount it; idempotent."""
    if view_dir(stack_dir).exists():
        with _locked(stack_dir):
            _stop_locked(stack_dir)
