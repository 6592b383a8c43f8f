"""The controller's operations bundle: the project at the deployed revision and its wheels.

The health monitor and the scaler run on the controller from the project itself, and the
scaler runs ``pulumi up`` there, so the controller needs the project's tree as deployed, a
virtualenv that installs without an index (wheels resolved by the nodes' Python), the pinned
Pulumi CLI (sent once per version, it is large) and the provider plugins. The bundle is named
by the hash of its content, like the app artifact; ``gemnar-install-ops`` installs it.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from appdelivery import bundle
from appdelivery.artifact import cache_root, wheelhouse

# Sections of requirements.txt the controller needs (not the test tools).
RUNTIME_SECTIONS_END = "# Tests and checks"
OPS_KIND = "gemnar-ops-"
_SKIP_DIRS = {".venv", ".state", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache",
              ".hypothesis", ".git"}


def runtime_requirements(requirements_txt: str) -> tuple[str, ...]:
    """Every pinned line before the test tools' section."""
    lines = []
    for raw in requirements_txt.splitlines():
        line = raw.strip()
        if line == RUNTIME_SECTIONS_END:
            break
        if line and not line.startswith("#"):
            lines.append(line)
    return tuple(lines)


def project_files(root: Path) -> list[Path]:
    """The project's files as git sees them (tracked and new, not ignored), else a walk."""
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=False,
    )
    if listed.returncode == 0:
        names = [n for n in listed.stdout.decode().split("\0") if n]
        paths = [root / n for n in names]
    else:
        paths = [p for p in root.rglob("*")
                 if not set(p.relative_to(root).parts) & _SKIP_DIRS]
    return sorted(p for p in paths if p.is_file() and not p.is_symlink())


@dataclass(frozen=True)
class OpsSource:
    root: Path
    requirements: tuple[str, ...]

    @classmethod
    def of_project(cls, root: Path) -> OpsSource:
        return cls(root, runtime_requirements((root / "requirements.txt").read_text()))

    @property
    def content_hash(self) -> str:
        return bundle.tree_hash("gemnar-ops/1", self.requirements, self.root,
                                project_files(self.root))

    @property
    def bundle_name(self) -> str:
        return f"{OPS_KIND}{self.content_hash}.tar.gz"


def build_bundle(source: OpsSource, cache: Path | None = None) -> Path:
    """``project/`` + ``wheels/`` + ``requirements.txt``, byte-reproducible, cached by hash."""
    cache = cache or cache_root()
    target = cache / source.bundle_name
    if target.exists():
        return target
    return bundle.write(cache, OPS_KIND, source.content_hash, source.requirements, source.root,
                        project_files(source.root), "project",
                        wheelhouse(source.requirements, cache))
