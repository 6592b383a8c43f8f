"""The lab's machine image: Debian 12 from Debian's packages, cached by its package list.

Like a Vultr snapshot, the image already holds every package the prod cloud-config installs,
so cloud-init's ``packages`` step finds them installed. The lab has no route to the internet,
so the image's apt source is an empty local repository (``apt-get update`` succeeds, nothing
new is offered) and pip reads a wheelhouse baked into the image. Those two are image data,
never user data.

The build runs in a temporary directory beside the cache entry and is renamed into place
when complete, so an interrupted build never leaves a half image behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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
    "openssh-server",
    "sudo",
    "ca-certificates",
    "curl",
    "procps",
    "python3",
)
# Python packages the app install needs (pip finds them in the image's wheelhouse).
WHEEL_REQUIREMENTS_SECTION = "# Application (app/)"
LOCAL_REPO = "/var/lib/gemnar-lab/apt"
WHEELHOUSE = "/var/lib/gemnar-lab/wheels"
# Bump when the build recipe below changes, so cached images are rebuilt.
RECIPE_VERSION = "1"


def prod_packages() -> tuple[str, ...]:
    """Every package the prod cloud-configs install, in a stable order."""
    return tuple(sorted({*COMMON_PACKAGES, *CONTROLLER_PACKAGES, *WORKER_PACKAGES}))


def app_requirements(requirements_txt: str) -> tuple[str, ...]:
    """The pinned lines of the app section of the project's requirements.txt."""
    lines: list[str] = []
    inside = False
    for raw in requirements_txt.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            inside = line == WHEEL_REQUIREMENTS_SECTION
            continue
        if inside and line:
            lines.append(line)
    return tuple(lines)


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
    requirements = (project_root / "requirements.txt").read_text()
    return ImageSpec(
        packages=tuple(sorted({*BASE_PACKAGES, *prod_packages()})),
        wheels=(*app_requirements(requirements), "pip"),
    )


def cache_dir() -> Path:
    base = os.environ.get("GEMNAR_LAB_IMAGES") or str(
        Path.home() / ".cache" / "gemnar" / "lab-images"
    )
    return Path(base)


def image_path(spec: ImageSpec, cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / spec.key


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


def _bake(root: Path, spec: ImageSpec) -> None:
    # Packaged daemons must not start inside the build chroot.
    _write(root, "/usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", 0o755)
    for mount in ("proc", "sys", "dev"):
        (root / mount).mkdir(exist_ok=True)
    _run(["mount", "-t", "proc", "proc", str(root / "proc")])
    try:
        _chroot(
            root,
            "apt-get update -q && apt-get install -y -q --no-install-recommends "
            + " ".join(spec.packages),
        )
    finally:
        _run(["umount", str(root / "proc")])
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
    # The lab has no internet: apt reads an empty local repository instead of Debian's mirror.
    repo = root / LOCAL_REPO.lstrip("/")
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "Packages").write_text("")
    _write(root, "/etc/apt/sources.list", f"deb [trusted=yes] file:{LOCAL_REPO} ./\n")
    _chroot(
        root,
        "rm -f /usr/sbin/policy-rc.d /etc/machine-id /var/lib/dbus/machine-id "
        "&& touch /etc/machine-id "
        "&& rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb "
        "&& rm -f /etc/ssh/ssh_host_* "
        "&& systemctl enable systemd-networkd "
        "&& sed -i 's/^# *en_US.UTF-8/en_US.UTF-8/' /etc/locale.gen && locale-gen",
    )


def build(spec: ImageSpec, cache: Path | None = None) -> Path:
    """The image for ``spec``: from the cache, or built there first (atomically)."""
    final = image_path(spec, cache)
    if (final / "etc" / "os-release").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{spec.key}-", dir=final.parent))
    root = work / "root"
    try:
        print(f"lab image: building {final} (first use; Debian {spec.suite})", flush=True)
        _run(
            [
                "debootstrap", "--variant=minbase",
                "--include=systemd,systemd-sysv,dbus,iproute2",
                spec.suite, str(root), spec.mirror,
            ]
        )
        _bake(root, spec)
        root.rename(final)
        print(f"lab image: ready at {final}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final
