"""The lab's machine images: Debian 12 from Debian's packages, cached by their package lists.

Two layers, like a base image and a snapshot per role: the base (``debootstrap`` plus what a
Debian cloud image has: systemd, cloud-init, sshd, locales, ...) and, over it, one layer per
role holding exactly the packages that role's prod cloud-config installs, so cloud-init's
``packages`` step finds them installed and a worker runs no controller daemon. A machine
mounts ``role:base`` as the lower layers of its overlay root. The lab has no route to the internet,
so the image's apt source is an empty local repository (``apt-get update`` succeeds, nothing
new is offered) and pip reads a wheelhouse baked into the image. Those two are image data,
never user data.

The build runs in a temporary directory beside the cache entry and is renamed into place
when complete, so an interrupted build never leaves a half image behind. One process builds
into a cache at a time (a lock file in it): the test suite's parallel workers and the
background build of ``tools/test.sh`` ask for the same image at once, and two debootstraps of
the same entry would each pay the minutes and race to rename.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from appdelivery.source import app_requirements
from provisioning.cloud_config import COMMON_PACKAGES, CONTROLLER_PACKAGES, WORKER_PACKAGES

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# What a Debian 12 cloud image has and a ``minbase`` root lacks: the init system, the bus,
# the network tools, cloud-init and the locale support its locale module needs.
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "cloud-init",
    "locales",
    # /etc/protocols and /etc/services: nft resolves `ipv6-icmp` through them.
    "netbase",
    "openssh-server",
    "sudo",
    "ca-certificates",
    "curl",
    "procps",
    "python3",
)
LOCAL_REPO = "/var/lib/gemnar-lab/apt"
WHEELHOUSE = "/var/lib/gemnar-lab/wheels"
# Bump when the build recipe below changes, so cached images are rebuilt.
RECIPE_VERSION = "2"
# In the cache directory: held by whoever is building an entry there.
LOCK_FILE = ".build.lock"


ROLE_PACKAGES: dict[str, tuple[str, ...]] = {
    "controller": tuple(sorted({*COMMON_PACKAGES, *CONTROLLER_PACKAGES})),
    "worker": tuple(sorted({*COMMON_PACKAGES, *WORKER_PACKAGES})),
}


def prod_packages() -> tuple[str, ...]:
    """Every package the prod cloud-configs install, in a stable order."""
    return tuple(sorted({p for packages in ROLE_PACKAGES.values() for p in packages}))


@dataclass(frozen=True)
class ImageSpec:
    """What goes into an image; its key names the cache entry."""

    packages: tuple[str, ...]
    wheels: tuple[str, ...]
    suite: str = SUITE
    mirror: str = MIRROR

    @property
    def key(self) -> str:
        text = "\n".join(
            [RECIPE_VERSION, self.suite, self.mirror, *self.packages, "--", *self.wheels]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_spec(project_root: Path) -> ImageSpec:
    """The base layer."""
    requirements = (project_root / "requirements.txt").read_text()
    return ImageSpec(
        packages=tuple(sorted(BASE_PACKAGES)),
        # The app section of requirements.txt, as the app artifact reads it: pip finds
        # them in the image's wheelhouse.
        wheels=(*app_requirements(requirements), "pip"),
    )


def role_key(base: ImageSpec, role: str) -> str:
    """Cache name of ``role``'s layer: changes with the base and with the role's packages."""
    text = "\n".join([base.key, role, *ROLE_PACKAGES[role]])
    return f"{base.key}-{role}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def cache_dir() -> Path:
    base = os.environ.get("GEMNAR_LAB_IMAGES") or str(
        Path.home() / ".cache" / "gemnar" / "lab-images"
    )
    return Path(base)


def image_path(spec: ImageSpec, cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / spec.key


@contextlib.contextmanager
def _build_lock(cache: Path) -> Iterator[None]:
    """Held while this process builds into ``cache``; waits for another builder first."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"lab image: another process is building into {cache}; waiting for it",
                  flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def building(cache: Path | None = None) -> bool:
    """Whether some process is building into the cache right now (it holds the lock)."""
    lock = (cache or cache_dir()) / LOCK_FILE
    if not lock.exists():
        return False
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def _run(argv: Sequence[str], **kwargs: object) -> None:
    print(f"lab image: $ {' '.join(argv)}", flush=True)
    subprocess.run(list(argv), check=True, **kwargs)  # type: ignore[call-overload]


def _chroot(root: Path, script: str) -> None:
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "DEBIAN_FRONTEND": "noninteractive",
        "LC_ALL": "C",
    }
    _run(["chroot", str(root), "/bin/sh", "-euc", script], env=env)


def _write(root: Path, path: str, content: str, mode: int = 0o644) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content)
    target.chmod(mode)


def _apt_install(root: Path, packages: Sequence[str]) -> None:
    # Packaged daemons must not start inside the build chroot.
    _write(root, "/usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", 0o755)
    (root / "proc").mkdir(exist_ok=True)
    _run(["mount", "-t", "proc", "proc", str(root / "proc")])
    try:
        _chroot(
            root,
            "apt-get update -q && apt-get install -y -q --no-install-recommends "
            + " ".join(packages)
            + " && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin"
            " /var/cache/apt/archives/*.deb && rm -f /usr/sbin/policy-rc.d",
        )
    finally:
        _run(["umount", str(root / "proc")])


def _bake_base(root: Path, spec: ImageSpec) -> None:
    _apt_install(root, spec.packages)
    # The wheelhouse: downloaded on this host (same Debian, same Python) for the image's pip.
    wheels = root / WHEELHOUSE.lstrip("/")
    wheels.mkdir(parents=True, exist_ok=True)
    _run(
        [
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--only-binary=:all:", "--dest", str(wheels), *spec.wheels,
        ]
    )
    _write(root, "/etc/pip.conf", f"[global]\nno-index = true\nfind-links = {WHEELHOUSE}\n")
    repo = root / LOCAL_REPO.lstrip("/")
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "Packages").write_text("")
    _chroot(
        root,
        "rm -f /etc/machine-id /var/lib/dbus/machine-id && touch /etc/machine-id "
        "&& rm -f /etc/ssh/ssh_host_* "
        "&& systemctl enable systemd-networkd "
        "&& sed -i 's/^# *en_US.UTF-8/en_US.UTF-8/' /etc/locale.gen && locale-gen",
    )


def _offline_apt(root: Path) -> None:
    # The lab has no internet: apt reads an empty local repository instead of Debian's mirror.
    _write(root, "/etc/apt/sources.list", f"deb [trusted=yes] file:{LOCAL_REPO} ./\n")


def _build_atomically(final: Path, what: str, make: Callable[[Path], Path]) -> Path:
    """``final``, made by ``make(work)`` in a scratch directory beside it and renamed into
    place whole: the cache never holds a half-built tree, and the scratch always goes."""
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        print(f"lab image: building {what}", flush=True)
        make(work).rename(final)
        print(f"lab image: ready at {final}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def build(spec: ImageSpec, cache: Path | None = None) -> Path:
    """The image for ``spec``: from the cache, or built there first (atomically)."""
    final = image_path(spec, cache)
    if (final / "etc" / "os-release").exists():
        return final
    with _build_lock(final.parent):
        # Another process may have built it while this one waited for the lock.
        if (final / "etc" / "os-release").exists():
            return final
        return _build_base(final, spec)


def _build_base(final: Path, spec: ImageSpec) -> Path:
    def make(work: Path) -> Path:
        root = work / "root"
        _run(
            [
                "debootstrap", "--variant=minbase",
                "--include=systemd,systemd-sysv,dbus,iproute2",
                spec.suite, str(root), spec.mirror,
            ]
        )
        _bake_base(root, spec)
        return root

    return _build_atomically(final, f"{final} (first use; Debian {spec.suite})", make)


def build_role(base: ImageSpec, role: str, cache: Path | None = None) -> Path:
    """``role``'s layer over the base (built first if needed); cached, built atomically.

    The layer is the upper directory of an overlay over the base in which the role's packages
    were installed, so it holds only what they added (and whiteouts for what they removed).
    """
    base_root = build(base, cache)
    final = (cache or cache_dir()) / role_key(base, role)
    if (final / "etc").exists():
        return final
    with _build_lock(final.parent):
        if (final / "etc").exists():
            return final
        return _build_role(final, base_root, role)


def _build_role(final: Path, base_root: Path, role: str) -> Path:
    def make(work: Path) -> Path:
        upper, scratch, merged = work / "upper", work / "work", work / "merged"
        for directory in (upper, scratch, merged):
            directory.mkdir()
        _run(["mount", "-t", "overlay", "overlay", "-o",
              f"lowerdir={base_root},upperdir={upper},workdir={scratch}", str(merged)])
        try:
            _apt_install(merged, ROLE_PACKAGES[role])
            _offline_apt(merged)
        finally:
            _run(["umount", str(merged)])
        return upper

    return _build_atomically(final, f"the {role} layer {final} (first use)", make)


def lower_dirs(base: ImageSpec, role: str, cache: Path | None = None) -> str:
    """The overlay ``lowerdir=`` value for a machine of ``role`` (top layer first)."""
    return f"{build_role(base, role, cache)}:{build(base, cache)}"
