"""What a bundled app artifact is made of, and the hash that names it (pure, offline).

The hash covers every file of the app tree (path and bytes) and the pinned dependency lines,
so an unchanged app keeps its hash and is not sent again; any change to either gives a new one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from appdelivery.bundle import tree_hash

# The app section of requirements.txt (the lab image reads the same section).
REQUIREMENTS_SECTION = "# Application (app/)"
# Bump when the artifact's layout or install recipe changes: every hash changes with it.
RECIPE_VERSION = "1"
ARTIFACT_KIND = "gemnar-app-"
_SKIP_DIRS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", "media",
              "staticfiles"}
_SKIP_SUFFIXES = {".pyc", ".pyo", ".sqlite3"}


def app_requirements(requirements_txt: str) -> tuple[str, ...]:
    """The pinned lines of the app section of the project's requirements.txt."""
    lines: list[str] = []
    inside = False
    for raw in requirements_txt.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            inside = line == REQUIREMENTS_SECTION
            continue
        if inside and line:
            lines.append(line)
    return tuple(lines)


def app_files(app_dir: Path) -> Iterator[Path]:
    """The app tree's files in a stable order, without caches and local state."""
    for path in sorted(app_dir.rglob("*")):
        relative = path.relative_to(app_dir)
        if any(part in _SKIP_DIRS for part in relative.parts[:-1]) or path.is_dir():
            continue
        if path.suffix in _SKIP_SUFFIXES or relative.parts[0] in _SKIP_DIRS:
            continue
        yield path


@dataclass(frozen=True)
class AppSource:
    """The app tree and its pinned requirements."""

    app_dir: Path
    requirements: tuple[str, ...]

    @classmethod
    def at(cls, app_dir: Path, project_root: Path) -> AppSource:
        """The app in ``app_dir`` with the project's pinned app requirements."""
        text = (project_root / "requirements.txt").read_text()
        return cls(app_dir, app_requirements(text))

    @classmethod
    def of_project(cls, project_root: Path) -> AppSource:
        """The bundled app, ``app/``."""
        return cls.at(project_root / "app", project_root)

    @property
    def content_hash(self) -> str:
        return tree_hash(f"gemnar-app/{RECIPE_VERSION}", self.requirements, self.app_dir,
                         list(app_files(self.app_dir)))

    @property
    def artifact_name(self) -> str:
        return f"{ARTIFACT_KIND}{self.content_hash}.tar.gz"
