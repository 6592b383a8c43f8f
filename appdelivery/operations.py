"""The controller's operations bundle: the project at the deployed revision and its wheels.

The health monitor and the scaler run on the controller from the project itself, and the
scaler runs ``pulumi up`` there, so the controller needs the project's tree as deployed, a
virtualenv that installs without an index (wheels resolved by the nodes' Python), the pinned
Pulumi CLI (sent once per version, it is large) and the provider plugins. The bundle is named
by the hash of its content, like the app artifact; ``gemnar-install-ops`` installs it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from appdelivery.artifact import _add, cache_root, prune, wheelhouse

# Sections of requirements.txt the controller needs (not the test tools).
RUNTIME_SECTIONS_END = "# Tests and checks"
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
        digest = hashlib.sha256(b"gemnar-ops/1\n")
        for line in self.requirements:
            digest.update(f"req {line}\n".encode())
        for path in project_files(self.root):
            data = path.read_bytes()
            digest.update(f"file {path.relative_to(self.root).as_posix()} {len(data)}\n".encode())
            digest.update(data)
        return digest.hexdigest()[:20]

    @property
    def bundle_name(self) -> str:
        return f"gemnar-ops-{self.content_hash}.tar.gz"


def build_bundle(source: OpsSource, cache: Path | None = None) -> Path:
    """``project/`` + ``wheels/`` + ``requirements.txt``, byte-reproducible, cached by hash."""
    cache = cache or cache_root()
    target = cache / source.bundle_name
    if target.exists():
        return target
    wheels = wheelhouse(source.requirements, cache)
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped, tarfile.open(
        fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT
    ) as tar:
        _add(tar, "SOURCE_HASH", f"{source.content_hash}\n".encode())
        _add(tar, "requirements.txt", "".join(f"{r}\n" for r in source.requirements).encode())
        for path in project_files(source.root):
            name = "project/" + path.relative_to(source.root).as_posix()
            _add(tar, name, path.read_bytes(), 0o755 if os.access(path, os.X_OK) else 0o644)
        for wheel in sorted(wheels.glob("*.whl")):
            _add(tar, f"wheels/{wheel.name}", wheel.read_bytes())
    cache.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=cache, prefix=".ops-")
    with os.fdopen(fd, "wb") as handle:
        handle.write(buffer.getvalue())
    os.replace(temporary, target)
    prune(cache, "gemnar-ops-")
    return target
