"""A git ``appSource`` installs the tag or full commit it is given, and refuses a branch.

The repository is a local one made here (file URL), with a branch and a tag of the same code;
the rendered ``gemnar-install-app`` runs against it with no network.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from provisioning.files import render_install_app
from provisioning.settings import WorkerPaths, WorkerSettings
from tests.support.tooling import require_executable


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env=env).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    require_executable("git")
    origin = tmp_path / "origin"
    origin.mkdir()
    _git(origin, "init", "-q", "-b", "main")
    (origin / "manage.py").write_text("print('v1')\n")
    _git(origin, "add", ".")
    _git(origin, "commit", "-q", "-m", "one")
    _git(origin, "tag", "v1.0.0")
    return origin


def _install(tmp_path: Path, repo: Path, version: str) -> subprocess.CompletedProcess[str]:
    root = tmp_path / f"node-{version}"
    settings = WorkerSettings(
        private_address="10.20.0.5", controller_address="10.20.0.3", vpc_subnet="10.20.0.0/24",
        memory_mb=512, vcpus=1, app_source=f"file://{repo}", paths=WorkerPaths.under(root),
    )
    script = render_install_app(settings)
    path = root / "gemnar-install-app"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script.content)
    path.chmod(0o755)
    # The version comes from the deploy's roll, as an argument (never from the user data).
    result = subprocess.run(["unshare", "-n", str(path), *([version] if version else [])],
                            capture_output=True, text=True, check=False, timeout=300)
    return result


@pytest.mark.parametrize("kind", ["tag", "commit"])
def test_a_tag_or_a_commit_is_installed(kind: str, repo: Path, tmp_path: Path) -> None:
    require_executable("unshare")
    version = "v1.0.0" if kind == "tag" else _git(repo, "rev-parse", "HEAD")
    result = _install(tmp_path, repo, version)
    assert result.returncode == 0, result.stderr
    app = tmp_path / f"node-{version}" / "opt" / "gemnar" / "app"
    assert app.is_symlink() and (app / "manage.py").read_text() == "print('v1')\n"


def test_a_branch_is_refused(repo: Path, tmp_path: Path) -> None:
    require_executable("unshare")
    result = _install(tmp_path, repo, "main")
    assert result.returncode == 1
    assert "refusing a branch that can move" in result.stderr
    assert not (tmp_path / "node-main" / "opt" / "gemnar" / "app").exists()


def test_without_a_version_nothing_is_installed_yet(repo: Path, tmp_path: Path) -> None:
    """First boot: the user data names no version; the roll installs it later."""
    require_executable("unshare")
    result = _install(tmp_path, repo, "")
    assert result.returncode == 0, result.stderr
    assert "no version yet" in result.stdout
    assert not (tmp_path / "node-" / "opt" / "gemnar" / "app").exists()
